"""`fnac data check`: dataset hygiene (listed vs present, unreadable files, degenerate boxes, leakage)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "data"
HELP = "inspect datasets: `fnac data check` reports missing/unreadable files, bad boxes and train/test overlap"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    p = sub.add_parser(
        "check",
        help="hygiene report of a dataset",
        description=(
            "Hygiene report: ids listed vs present, unreadable files (--deep decodes every file), degenerate "
            "boxes and samples with no valid box, and overlap between a training and a test id list."
        ),
    )
    p.add_argument("--config", default=None, help="YAML file or built-in config name (its data section is checked)")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. data.dataset=vggss data.root=DIR")
    p.add_argument(
        "--split",
        action="append",
        choices=["train", "val", "test"],
        default=None,
        help="split to check (repeatable; default: every split whose id list exists)",
    )
    p.add_argument("--deep", action="store_true", help="decode every image and audio file")
    p.add_argument("--workers", type=int, default=4, help="threads for --deep (default 4)")
    p.add_argument("--train-list", default="", help="training id list for the overlap check")
    p.add_argument("--test-list", default="", help="test id list for the overlap check")
    p.add_argument(
        "--write-overlap",
        default="",
        metavar="FILE",
        help="write the overlapping ids to FILE (use it as data.exclude_list)",
    )
    p.add_argument("--json", default="", metavar="FILE", help="also write the full report as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    q = sub.add_parser(
        "split",
        help="carve a validation list out of an id list",
        description=(
            "Split an id list into a validation list of N ids (seeded draw) and the rest, written as "
            "<out-dir>/<stem>_val.txt and <out-dir>/<stem>_rest.txt, so that checkpoints are selected on "
            "ids that are not used for the reported test numbers."
        ),
    )
    q.add_argument("list", help="id list (.txt, .csv or a vggss.json-style .json)")
    q.add_argument("--val-count", type=int, required=True, help="number of ids in the validation list")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out-dir", default=None, help="output folder (default: the list's folder)")


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "data_command", None)
    if action == "split":
        return _split(args)
    if action != "check":
        print("usage: fnac data {check,split} ... (see fnac data check --help, fnac data split --help)")
        return 2
    from fnac.config import load_config, resolve_config_path
    from fnac.data.check import check_dataset, format_report

    cfg = load_config(resolve_config_path(args.config) if args.config else None, args.overrides)
    report = check_dataset(
        cfg.data,
        splits=args.split,
        deep=args.deep,
        train_list=args.train_list,
        test_list=args.test_list,
        overlap_out=args.write_overlap,
        workers=args.workers,
        progress=not args.no_progress,
    )
    print(format_report(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
        print(f"report written to {args.json}")
    return 0


def _split(args: argparse.Namespace) -> int:
    from fnac.data.common import read_id_list, split_ids, write_id_list

    src = Path(args.list)
    val, rest = split_ids(read_id_list(src), args.val_count, args.seed)
    out = Path(args.out_dir) if args.out_dir else src.parent
    pv = write_id_list(out / f"{src.stem}_val.txt", val)
    pr = write_id_list(out / f"{src.stem}_rest.txt", rest)
    print(f"{len(val)} validation ids -> {pv}\n{len(rest)} remaining ids -> {pr}")
    return 0
