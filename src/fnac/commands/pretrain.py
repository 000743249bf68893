"""fnac pretrain: supervised pretraining of the visual ResNet-18 on synthetic objects (the synthetic
world's ImageNet); writes a torchvision-format resnet18 file for model.pretrained."""

from __future__ import annotations

import argparse

NAME = "pretrain"
HELP = "pretrain the visual ResNet-18 on synthetic objects; writes weights for model.pretrained"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from fnac.pretrain import LABELS, PretrainConfig

    d = PretrainConfig()
    p.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="weights file to write (torchvision resnet18 names); FILE.json gets the summary",
    )
    p.add_argument("--width", type=int, default=d.width, help=f"ResNet-18 base width = model.width (default {d.width})")
    p.add_argument(
        "--layers",
        type=int,
        default=d.layers,
        help=f"stages trained; the file serves model.visual_layers <= this (default {d.layers})",
    )
    p.add_argument("--image-size", type=int, default=d.image_size, help=f"default {d.image_size}")
    p.add_argument("--n-train", type=int, default=d.n_train, help=f"training images (default {d.n_train})")
    p.add_argument("--n-test", type=int, default=d.n_test, help=f"held-out images (default {d.n_test})")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    p.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate (default {d.lr})")
    p.add_argument(
        "--labels", choices=LABELS, default=d.labels, help="classes: the object's shape (12) or shape and texture (48)"
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--resume", action="store_true", help="continue from FILE.state.pt")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from fnac.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(
        seed=args.seed,
        width=args.width,
        layers=args.layers,
        image_size=args.image_size,
        n_train=args.n_train,
        n_test=args.n_test,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        labels=args.labels,
    )
    res = pretrain(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    print(
        f"held-out accuracy {100 * res['test_accuracy']:.1f}% on {cfg.n_test} unseen objects "
        f"(chance {100 * res['chance']:.1f}%, {res['n_labels']} classes); {res['seconds']:.0f} s"
    )
    print(
        f"weights: {args.out} (use model.pretrained={args.out} with model.width={cfg.width}, "
        f"model.visual_layers <= {cfg.layers})"
    )
    return 0
