"""`fnac prepare`: raw videos -> the benchmark layout (frames/<id>.jpg, audio/<id>.wav, an id list)."""

from __future__ import annotations

import argparse

NAME = "prepare"
HELP = "extract the middle frame and 16 kHz mono audio of each clip into frames/ and audio/ (resumable)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input", help="folder of clip files <ytid>_<start>.<ext>, or of full videos <ytid>.<ext> with --csv"
    )
    parser.add_argument(
        "out", help="output folder (gets frames/, audio/, the id list, prepare_failures.csv and prepare_skipped.csv)"
    )
    parser.add_argument(
        "--csv", default=None, help="VGG-Sound CSV (ytid,start_seconds,label,split): cut 10 s clips from full videos"
    )
    parser.add_argument("--split", default=None, help="with --csv: only rows of this split (e.g. train, test)")
    parser.add_argument(
        "--frame-time",
        type=float,
        default=None,
        help="seconds into the clip of the frame to keep (default: the middle frame)",
    )
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="output audio rate in Hz (default 16000)")
    parser.add_argument(
        "--min-duration",
        type=float,
        default=3.0,
        help="clips with less audio than this many seconds fail as 'too short' (default 3.0)",
    )
    parser.add_argument("--list-name", default="prepared.txt", help="id list written in OUT (default prepared.txt)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from fnac.prepare import prepare

    report = prepare(
        args.input,
        args.out,
        csv_path=args.csv,
        split=args.split,
        frame_time=args.frame_time,
        workers=args.workers,
        sample_rate=args.sample_rate,
        min_duration=args.min_duration,
        list_name=args.list_name,
        progress=not args.no_progress,
    )
    print(report.summary())
    print(f"id list: {report.list_path}")
    if report.failures:
        reasons: dict[str, int] = {}
        for _, _, r in report.failures:
            key = r.split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
        print(
            "failures: "
            + ", ".join(f"{n} {k}" for k, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
            + f" (details in {report.failures_path})"
        )
    if report.ignored:
        print(f"not used: {len(report.ignored)} files of the input folder (reasons in {report.ignored_path})")
    return 0
