"""fnac demo: the whole method on the built-in synthetic benchmark, on a CPU, in minutes."""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = "generate synthetic data, train FNAC and EZ-VSL, evaluate both against trivial baselines"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, help="training epochs per model")
    p.add_argument("--n-train", type=int, help="synthetic training samples")
    p.add_argument("--classes", type=int, help="number of synthetic classes")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for both models (repeatable), e.g. --set train.device=cuda",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="models trained at once, each in its own process (default: 2 on a CPU with 2 or more cores, "
        "each on half of them; 1 on a GPU)",
    )
    p.add_argument("--quick", action="store_true", help="a tiny smoke run (seconds; numbers meaningless)")


def run(args: argparse.Namespace) -> int:
    from fnac.demo import DemoConfig, run_demo

    dc = DemoConfig(out_dir=args.out, seed=args.seed, overrides=list(args.overrides), jobs=args.jobs)
    if args.quick:
        dc = dc.shrink()
    if args.epochs:
        dc.epochs = args.epochs
    if args.n_train:
        dc.n_train = args.n_train
    if args.classes:
        dc.n_classes = args.classes
    res = run_demo(dc)
    print()
    print(res["table"])
    print(f"\nfinished in {res['seconds'] / 60:.1f} min; overlays, curves and checkpoints under {args.out}/")
    return 0
