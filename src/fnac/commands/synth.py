"""`fnac synth OUT_DIR`: write the built-in synthetic audio-visual benchmark (docs/synthetic.md)."""

from __future__ import annotations

import argparse

NAME = "synth"
HELP = "generate the synthetic audio-visual benchmark (VGG-SS layout, exact boxes and masks, clips)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to write (new, empty, or an earlier synthetic set)")
    p.add_argument("--seed", type=int, default=0, help="seed (same seed, same bytes; default 0)")
    p.add_argument("--n-train", type=int, default=None, help="training samples (default 2000)")
    p.add_argument("--n-val", type=int, default=None, help="validation samples (default 250)")
    p.add_argument("--n-test", type=int, default=None, help="test samples (default 500)")
    p.add_argument("--classes", type=int, default=None, help="number of classes K (default 10, 2..64)")
    p.add_argument("--image-size", type=int, default=None, help="frame side in pixels (default 128)")
    p.add_argument(
        "--distractors", type=int, default=None, help="maximum silent distractor objects per image (default 3)"
    )
    p.add_argument("--min-distractors", type=int, default=None, help="minimum distractors per image (default 0)")
    p.add_argument("--noise", type=float, default=None, help="background noise RMS (default 0.04)")
    p.add_argument(
        "--offscreen", type=float, default=None, help="probability of an added off-screen sound (default 0.2)"
    )
    p.add_argument("--duration", type=float, default=None, help="seconds of audio per sample (default 3.0)")
    p.add_argument("--clips", type=int, default=None, help="videos with objects taking turns (default 4)")
    p.add_argument(
        "--variation",
        type=float,
        default=None,
        help="within-class variation, 0..1: each clip's own look and matching sound (default 0)",
    )
    p.add_argument(
        "--shortcut",
        type=float,
        default=None,
        help="instance shortcut, 0..1: a per-clip signature in the background and the audio, "
        "not on the object (default 0)",
    )
    p.add_argument(
        "--class-skew",
        type=float,
        default=None,
        help="class frequency skew, 0..4: p_k ~ (k + 1)^-skew; 0 = uniform (default 0)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=16,
        help="training batch size for the reported expected same-class negatives (default 16)",
    )
    p.add_argument("--workers", type=int, default=1, help="processes (output does not depend on it)")
    p.add_argument("--force", action="store_true", help="regenerate even if OUT_DIR holds this exact set")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


_FIELDS = {  # argparse dest -> SynthConfig field
    "seed": "seed",
    "n_train": "n_train",
    "n_val": "n_val",
    "n_test": "n_test",
    "classes": "n_classes",
    "image_size": "image_size",
    "distractors": "max_distractors",
    "min_distractors": "min_distractors",
    "noise": "noise_level",
    "offscreen": "offscreen_prob",
    "duration": "duration",
    "clips": "n_clips",
    "variation": "variation",
    "shortcut": "shortcut",
    "class_skew": "class_skew",
}


def run(args: argparse.Namespace) -> int:
    from fnac.synth import SynthConfig, generate

    values = {f: getattr(args, a) for a, f in _FIELDS.items() if getattr(args, a) is not None}
    cfg = SynthConfig(**values)
    if "max_distractors" not in values:  # the default count, as far as K - 1 other classes allow
        cfg.max_distractors = max(0, min(cfg.max_distractors, cfg.n_classes - 1))
    if "min_distractors" not in values:
        cfg.min_distractors = min(cfg.min_distractors, cfg.max_distractors)
    s = generate(
        args.out_dir,
        cfg,
        progress=not args.no_progress,
        workers=args.workers,
        force=args.force,
        batch_size=args.batch_size,
    )
    if s.get("reused"):
        print(f"{s['out_dir']}: already holds this synthetic set (seed {cfg.seed}); use --force to rewrite")
    else:
        n = s["n_train"] + s["n_val"] + s["n_test"]
        rate = n / s["seconds"] * 60 if s["seconds"] > 0 else 0.0
        print(
            f"wrote {s['out_dir']}: {s['n_train']} train / {s['n_val']} val / {s['n_test']} test samples, "
            f"{s['n_classes']} classes, {s['n_clips']} clips"
        )
        print(
            f"  {s['image_size']}px frames, {s['duration']:g} s audio at {s['sample_rate']} Hz; "
            f"{s['mean_distractors']:.2f} distractors per image, {s['offscreen']} with an off-screen sound"
        )
        print(f"  {s['seconds']:.1f} s with {s['workers']} worker(s) ({rate:.0f} samples/min)")
    if cfg.variation or cfg.shortcut or cfg.class_skew:
        p = s["class_probs"]
        print(
            f"  within-class variation {cfg.variation:g}, instance shortcut {cfg.shortcut:g}, "
            f"class skew {cfg.class_skew:g} (class frequencies {max(p):.3f} .. {min(p):.3f})"
        )
    print(
        f"  expected same-class negatives per sample at batch {s['batch_size']}: "
        f"{s['expected_same_class_negatives']:.2f}"
    )
    print(f"  train on it: fnac train data.root={s['out_dir']}")
    return 0
