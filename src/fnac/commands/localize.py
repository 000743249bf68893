"""`fnac localize`: where is the sound in this video (or this image + audio pair)?"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fnac.errors import ConfigError, MediaError

if TYPE_CHECKING:  # for the annotation only: fnac.inference (and torch) load when the command runs
    from fnac.inference import InferenceDefaults

NAME = "localize"
HELP = "localize the sound in a video (or an image + audio pair) with a trained checkpoint"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", nargs="?", help="video with an audio track (mp4, mkv, webm, avi, mov, ...)")
    p.add_argument("--image", help="still image (use with --audio instead of a video)")
    p.add_argument("--audio", help="audio file (or any file with an audio track) for --image")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="trained checkpoint (ours or the authors'), or a folder written by fnac export",
    )
    p.add_argument("--out", help="output folder (default: fnac_localize/<video name>)")
    p.add_argument("--every", type=int, default=1, help="localize every K-th frame (default 1)")
    p.add_argument(
        "--window",
        type=float,
        default=None,
        help="seconds of audio centred on each frame (default: the checkpoint's, else 3)",
    )
    p.add_argument("--batch-size", type=int, default=16, help="frames per model batch (default 16)")
    p.add_argument("--stills", type=int, default=4, help="PNG stills of N evenly spaced frames (default 4)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    p.add_argument(
        "--format",
        choices=("mp4", "webm", "mkv"),
        default="mp4",
        help="container of the overlay video (default mp4: H.264 + AAC)",
    )
    p.add_argument("--no-video", action="store_true", help="skip the overlay video (JSON and stills only)")
    p.add_argument("--alpha", type=float, default=0.5, help="heat-map opacity in the overlays (default 0.5)")
    p.add_argument("--allow-silent", action="store_true", help="localize even when the audio is silent")
    p.add_argument("--gt", help="per-frame ground truth of a synthetic clip (clips/<name>.json): print the score")
    p.add_argument(
        "--smooth",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="average each frame's map with those of the localized frames within +-SECONDS/2 "
        "(steadier peak on real clips; default 0 = off)",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar and no warnings on the terminal (warnings stay in the JSON)",
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        default=3600.0,
        help="refuse clips longer than this (the audio is decoded into memory; 0 = no limit)",
    )


def _check_args(args: argparse.Namespace) -> None:
    if args.video and (args.image or args.audio):
        raise ConfigError("give either VIDEO or --image IMG --audio AUDIO, not both")
    if not args.video and not (args.image and args.audio):
        raise ConfigError("give a VIDEO, or both --image IMG and --audio AUDIO")
    if args.every < 1:
        raise ConfigError(f"--every must be >= 1, got {args.every}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.window is not None and not args.window > 0:
        raise ConfigError(f"--window must be > 0 seconds, got {args.window}")
    if not (args.smooth >= 0 and args.smooth < float("inf")):
        raise ConfigError(f"--smooth must be a number of seconds >= 0, got {args.smooth}")
    if args.smooth and not args.video:
        raise ConfigError("--smooth averages the maps of neighbouring frames: give a VIDEO")
    if args.stills < 0:
        raise ConfigError(f"--stills must be >= 0, got {args.stills}")
    if not 0 <= args.alpha <= 1:
        raise ConfigError(f"--alpha must be in [0, 1], got {args.alpha}")
    if args.gt and not args.video:
        raise ConfigError("--gt scores a video: give the clip as VIDEO")
    for name in ("video", "image", "audio"):
        path = getattr(args, name)
        if path and not Path(path).is_file():
            raise MediaError(f"{path}: file not found" if not Path(path).exists() else f"{path}: not a file")


def run(args: argparse.Namespace) -> int:
    from fnac import inference as inf
    from fnac import outputs
    from fnac.scoring import score_clip

    _check_args(args)
    loaded = inf.load_model(args.checkpoint, device="cpu")
    defaults = inf.InferenceDefaults.from_config(loaded.config)  # the checkpoint's image size, rate, window
    if args.image:
        return _run_pair(args, loaded.model, defaults)

    out = Path(args.out) if args.out else Path("fnac_localize") / Path(args.video).stem
    result = inf.localize_video(
        loaded.model,
        args.video,
        every=args.every,
        window=args.window,
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.quiet,
        allow_silent=args.allow_silent,
        max_seconds=args.max_seconds,
        smooth=args.smooth,
        defaults=defaults,
    )
    _warn(args, result.warnings)
    stem = Path(args.video).stem
    written: list[Path] = []
    doc = result.to_dict()
    score = None
    if args.gt:
        score = score_clip(result, args.gt)
        doc["score"] = score
    written.append(outputs.write_json(doc, out / f"{stem}.json"))
    if not args.no_video:
        written.append(outputs.write_overlay_video(result, out / f"{stem}_overlay.{args.format}", alpha=args.alpha))
    written += outputs.write_stills(result, out / "stills", args.stills, alpha=args.alpha)

    s = result.summary()
    print(
        f"{args.video}: {s['frames_localized']} frames localized (every {args.every} of {s['video_frames']}, "
        f"{s['video_fps']:g} fps video, {s['window']:g} s audio windows at {s['sample_rate']} Hz"
        + (f", maps smoothed over {s['smooth']:g} s)" if s["smooth"] else ")")
    )
    print(f"speed: {s['fps_achieved']:.2f} frames/s on {args.device} ({s['elapsed_s']:.1f} s)")
    if score is not None:
        print(
            f"score vs {args.gt}: peak in the sounding object's box {100 * score['peak_in_box']:.2f}% "
            f"(in a silent object's {100 * score['peak_in_silent']:.2f}%), mean cIoU "
            f"{100 * score['mean_ciou']:.2f}%, cIoU@0.5 {100 * score['ciou50']:.2f}% over {score['frames']} frames"
        )
    print("outputs:")
    for p in written:
        print(f"  {p}")
    return 0


def _run_pair(args: argparse.Namespace, model, defaults: InferenceDefaults) -> int:
    from fnac import inference as inf
    from fnac import outputs

    out = Path(args.out) if args.out else Path("fnac_localize") / Path(args.image).stem
    res = inf.localize_pair_result(
        model,
        args.image,
        args.audio,
        window=args.window,
        device=args.device,
        allow_silent=args.allow_silent,
        defaults=defaults,
    )
    _warn(args, res.warnings)
    fr = res.frame
    stem = Path(args.image).stem
    png = outputs.write_pair_overlay(fr, args.image, out / f"{stem}_overlay.png", alpha=args.alpha)
    js = outputs.write_json(res.to_dict(), out / f"{stem}.json")  # the same shape as a video's JSON
    print(
        f"{args.image} + {args.audio}: peak at x={fr.peak[0]:.3f}, y={fr.peak[1]:.3f} (normalised), box "
        + json.dumps([round(v, 3) for v in fr.box])
    )
    print("outputs:")
    for p in (png, js):
        print(f"  {p}")
    return 0


def _warn(args: argparse.Namespace, warnings: list[str]) -> None:
    """Each warning once on stderr, none with --quiet (they are in the JSON either way)."""
    if not args.quiet:
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
