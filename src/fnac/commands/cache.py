"""`fnac cache --out DIR`: decode every clip once into memory-mapped shards, read by `data.cache=DIR`."""

from __future__ import annotations

import argparse

NAME = "cache"
HELP = "preprocess a dataset into a memory-mapped cache (no JPEG/audio decoding while training)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        "-o",
        dest="out_dir",
        required=True,
        metavar="DIR",
        help="cache folder (one sub-folder per split); train with data.cache=DIR",
    )
    p.add_argument(
        "--config",
        "-c",
        default="small",
        help="YAML file or built-in config whose data section is cached (default: small)",
    )
    p.add_argument(
        "--splits",
        nargs="+",
        default=["train", "val", "test"],
        choices=["train", "val", "test"],
        help="splits to cache (default: train val test; a split without a list is skipped)",
    )
    p.add_argument("--shard-size", type=int, default=1000, help="clips per shard (default 1000)")
    p.add_argument("--workers", type=int, default=1, help="processes, one shard each at a time (default 1)")
    p.add_argument("--force", action="store_true", help="rebuild even if OUT_DIR holds a cache")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides, e.g. data.root=data/synth data.image_size=224",
    )


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def run(args: argparse.Namespace) -> int:
    import logging

    from fnac.cache import cache_split
    from fnac.config import load_config, resolve_config_path
    from fnac.errors import IdListNotFoundError

    cfg = load_config(resolve_config_path(args.config), list(args.overrides))
    done = []
    for split in args.splits:
        try:
            s = cache_split(
                cfg.data,
                args.out_dir,
                split,
                shard_size=args.shard_size,
                workers=args.workers,
                force=args.force,
                progress=not args.no_progress,
            )
        except IdListNotFoundError as e:  # a split without a list is skipped; train must have one
            if split == "train":
                raise
            logging.getLogger("fnac.cache").warning("split %s skipped: %s", split, e)
            continue
        done.append(split)
        state = "already cached" if s.reused else f"cached in {s.seconds:.1f} s"
        print(
            f"{split}: {s.n} clips ({s.form} form, {s.sample_rate} Hz), {s.n_shards} shards, {_size(s.bytes)}; "
            f"{state}"
            + (f"; {s.n_failed} failed to decode" if s.n_failed else "")
            + (f"; {s.n_missing} listed ids missing" if s.n_missing else "")
        )
        for sid, why in list(s.failed.items())[:5]:
            print(f"  failed {sid}: {why}")
    if done:
        print(f"use it: fnac train --config {args.config} data.cache={args.out_dir} " + " ".join(args.overrides))
    return 0
