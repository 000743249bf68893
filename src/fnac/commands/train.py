"""fnac train: train FNAC (or the EZ-VSL ablation) from a YAML config plus key=value overrides."""

from __future__ import annotations

import argparse
import logging

NAME = "train"
HELP = "train FNAC from a YAML config (built-in: small, small_ezvsl, reference_vggss, reference_flickr)"

log = logging.getLogger("fnac.train")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "-c",
        default="small",
        help="YAML file or built-in config name (default: small, the CPU synthetic recipe)",
    )
    p.add_argument("--resume", action="store_true", help="continue from <out_dir>/latest.pt")
    p.add_argument("--out", help="run folder (same as train.out_dir=...)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides, e.g. optim.lr=1e-3 loss.fns1=0 train.epochs=5",
    )


def run(args: argparse.Namespace) -> int:
    import yaml

    from fnac.config import load_config, resolve_config_path, to_dict
    from fnac.train import fit

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"train.out_dir={args.out}")
    cfg = load_config(resolve_config_path(args.config), overrides)
    if args.print_config:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return 0
    res = fit(cfg, resume=args.resume)
    if res.stopped_early:
        print(f"stopped early; resume with: fnac train --config {args.config} --resume train.out_dir={res.out_dir}")
        return 130
    msg = f"trained {res.epochs_done} epochs ({res.steps} steps); run folder {res.out_dir}"
    if res.best:
        msg += (
            f"; best on validation at epoch {res.best['epoch'] + 1}: "
            f"cIoU@0.5 {100 * res.best['ciou50']:.2f}, AUC {100 * res.best['auc']:.2f}"
        )
    print(msg)
    return 0
