"""fnac export: a checkpoint (ours or the authors') -> a shareable folder read without unpickling."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = "checkpoint (ours or the authors' .pth) -> folder with model.safetensors, config.json, README.md"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint file: ours (best.pt, latest.pt) or the authors' .pth")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to write (created if needed)")
    p.add_argument("--force", action="store_true", help="replace an export already in OUT_DIR")


def run(args: argparse.Namespace) -> int:
    from fnac.export import export_checkpoint

    out = export_checkpoint(args.checkpoint, args.out_dir, force=args.force)
    print(
        f"wrote {out}/model.safetensors, config.json, README.md (load with --checkpoint {out} or fnac.load_checkpoint)"
    )
    return 0
