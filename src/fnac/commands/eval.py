"""fnac eval: evaluate a checkpoint on a dataset split under a named protocol."""

from __future__ import annotations

import argparse

NAME = "eval"
HELP = "evaluate a checkpoint (ours or the authors') on a dataset split; prints a table"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint", "-k", help="checkpoint file, or a folder written by fnac export (omit with --baselines-only)"
    )
    p.add_argument(
        "--config", "-c", help="YAML/built-in config for the data section (default: the checkpoint's own config)"
    )
    p.add_argument("--split", default="test", choices=["test", "val", "train"])
    p.add_argument(
        "--upsample",
        default="bicubic",
        choices=["bicubic", "bilinear"],
        help="map upsampling: bicubic (align_corners=False, FNAC) or bilinear (align_corners=True)",
    )
    p.add_argument("--threshold", default="median_ge", choices=["median_ge", "median_gt", "fixed", "absolute"])
    p.add_argument(
        "--map",
        default="av",
        choices=["av", "obj", "av_obj"],
        help="AV map, object map only, or their OGL combination (needs --object-weights)",
    )
    p.add_argument("--alpha", type=float, default=0.4, help="OGL weight of the AV map")
    p.add_argument("--all-maps", action="store_true", help="report av, obj and av_obj (needs --object-weights)")
    p.add_argument("--object-weights", help="torchvision resnet18 ImageNet weights for the OGL object map")
    p.add_argument(
        "--fscore",
        default="dataset",
        choices=["dataset", "per_video"],
        help="AVSBench F-score: dataset-level (default) or the official per-video variant",
    )
    p.add_argument("--out", help="folder for per-sample CSV, metrics JSON and overlays")
    p.add_argument("--overlays", type=int, default=4, help="overlay images of the K best and K worst samples")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=None, help="data loader processes (default: config)")
    p.add_argument(
        "--channels-last",
        action="store_true",
        help="NHWC images and weights: faster on CPUs and GPUs, maps equal to float rounding (not bit for bit)",
    )
    p.add_argument(
        "--name",
        help="row name of the model in the table (default: from the checkpoint's config: "
        "EZ-VSL when its three FNAC loss weights are 0, else FNAC)",
    )
    p.add_argument("--no-baselines", action="store_true")
    p.add_argument("--baselines-only", action="store_true", help="score the trivial baselines alone")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. data.root=...")


def run(args: argparse.Namespace) -> int:
    from fnac.errors import ConfigError
    from fnac.evaluate import Protocol
    from fnac.report import run_evaluation

    if not args.checkpoint and not args.baselines_only:
        raise ConfigError("--checkpoint is required (or --baselines-only)")
    maps = ["av", "obj", "av_obj"] if args.all_maps else [args.map]
    protocols = [
        Protocol(upsample=args.upsample, threshold=args.threshold, map=m, alpha=args.alpha, fscore=args.fscore)
        for m in maps
    ]
    text = run_evaluation(
        checkpoint=args.checkpoint,
        config=args.config,
        overrides=args.overrides,
        split=args.split,
        protocols=protocols,
        object_weights=args.object_weights,
        out_dir=args.out,
        overlays=args.overlays,
        batch_size=args.batch_size,
        device=args.device,
        workers=args.workers,
        baselines=not args.no_baselines,
        label=args.name,
        channels_last=args.channels_last,
    )
    print(text)
    return 0
