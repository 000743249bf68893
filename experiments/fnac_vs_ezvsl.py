"""FNAC vs its EZ-VSL ablation on the synthetic benchmark, over seeds and numbers of classes.

Each (classes, seed) cell is one `fnac demo` run (fresh synthetic data from that seed, both models
trained with the `small` config plus any --set overrides, evaluated on the test split). Results are
appended to a JSONL file so an interrupted sweep can continue; the summary table (mean and standard
deviation over seeds, with the centre-prior baseline of the same data) is printed and written as markdown.

    .venv/bin/python experiments/fnac_vs_ezvsl.py --classes 4 10 20 --seeds 0 1 2 --out runs/sweep
    # a variant of the config, under its own tag, 6 cells at a time (on a GPU machine with 16 cores):
    python experiments/fnac_vs_ezvsl.py --classes 10 --seeds 0 1 2 --tag lr5e-4 --set optim.lr=5e-4 \\
        --set train.device=cuda --jobs 6 --out runs/sweep

With --jobs N each cell runs in its own process (N at a time, each with --threads torch threads); with
--deadline S no new cell starts after S seconds (cells already running finish).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the experiments' shared helpers
from _cells import Results, run_cells  # noqa: E402

METRICS = ("ciou50", "auc", "mean_ciou")
PRIOR = "centre prior"


def _fmt(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.2f} ± {sd:.2f}"


def summarise(rows: list[dict]) -> str:
    """Markdown table: one line per (tag, classes, method), mean ± sd over the seeds, in percent."""
    lines = ["| config | classes | method | seeds | cIoU@0.5 | AUC | mean cIoU |", "|---|---|---|---|---|---|---|"]
    groups = sorted({(r.get("tag", ""), r["classes"]) for r in rows})
    for tag, k in groups:
        cell = [r for r in rows if r.get("tag", "") == tag and r["classes"] == k]
        methods = sorted({m for r in cell for m in r["results"]})
        per_method = [(m, [r["results"][m] for r in cell if m in r["results"]]) for m in methods]
        prior = [r["baselines"][PRIOR] for r in cell if PRIOR in r.get("baselines", {})]
        if prior:
            per_method.append((f"baseline: {PRIOR}", prior))
        for method, vals in per_method:
            cells = [_fmt([100 * v[m] for v in vals]) for m in METRICS]
            lines.append(f"| {tag or 'small'} | {k} | {method} | {len(vals)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_cell(k: int, seed: int, args: argparse.Namespace) -> dict:
    from fnac.demo import DemoConfig, run_demo

    out = Path(args.out) / (f"{args.tag}_k{k}_s{seed}" if args.tag else f"k{k}_s{seed}")
    # one model after another in this process (--threads), NCHW: the set-up the cells in docs/results.md ran with
    dc = DemoConfig(out_dir=str(out), seed=seed, n_classes=k, overrides=list(args.set), jobs=1, channels_last=False)
    if args.epochs:
        dc.epochs = args.epochs
    if args.n_train:
        dc.n_train = args.n_train
    if args.quick:
        dc = dc.shrink()
        dc.n_classes = k
    res = run_demo(dc, workers=args.synth_workers)
    print(res["table"], flush=True)
    return {
        "classes": k,
        "seed": seed,
        "tag": args.tag,
        "overrides": list(args.set),
        "epochs": dc.epochs,
        "n_train": dc.n_train,
        "results": res["results"],
        "baselines": res["baselines"],
        "seconds": res["seconds"],
    }


def _child_argv(k: int, seed: int, args: argparse.Namespace, row_file: Path) -> list[str]:
    argv = [
        sys.executable,
        os.path.abspath(__file__),
        "--classes",
        str(k),
        "--seeds",
        str(seed),
        "--out",
        args.out,
        "--tag",
        args.tag,
        "--threads",
        str(args.threads),
        "--synth-workers",
        str(args.synth_workers),
        "--row-file",
        str(row_file),
    ]
    for o in args.set:
        argv += ["--set", o]
    if args.epochs:
        argv += ["--epochs", str(args.epochs)]
    if args.n_train:
        argv += ["--n-train", str(args.n_train)]
    if args.quick:
        argv.append("--quick")
    return argv


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--classes", type=int, nargs="+", default=[10])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for both models (repeatable); give the variant a --tag",
    )
    p.add_argument("--tag", default="", help="name of this config variant in results and folder names")
    p.add_argument("--jobs", type=int, default=1, help="cells run at once, each in its own process")
    p.add_argument("--threads", type=int, default=0, help="torch threads per cell (0 = torch's default)")
    p.add_argument("--synth-workers", type=int, default=1, help="processes generating each cell's data")
    p.add_argument("--deadline", type=float, default=0, help="start no cell after this many seconds")
    p.add_argument("--quick", action="store_true", help="tiny cells (smoke test of this script)")
    p.add_argument("--out", default="runs/sweep")
    p.add_argument("--row-file", help=argparse.SUPPRESS)  # child mode: run one cell, write its row here
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.row_file:
        row = run_cell(args.classes[0], args.seeds[0], args)
        Path(args.row_file).write_text(json.dumps(row))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = Results(out)
    done = results.rows

    def have(k: int, seed: int) -> bool:
        return any(r["classes"] == k and r["seed"] == seed and r.get("tag", "") == args.tag for r in done)

    todo = [(k, s) for k in args.classes for s in args.seeds if not have(k, s)]
    if args.jobs <= 1:  # in this process, one cell after another
        t0 = time.monotonic()
        while todo and not (args.deadline and time.monotonic() - t0 > args.deadline):
            results.record(run_cell(*todo.pop(0), args))
        if todo:
            print(f"deadline: {len(todo)} cells not started", flush=True)
    else:
        run_cells(
            todo,
            name=lambda c: f"{args.tag or 'small'}_k{c[0]}_s{c[1]}",
            argv=lambda c, row_file: _child_argv(c[0], c[1], args, row_file),
            out=out,
            jobs=args.jobs,
            deadline=args.deadline,
            record=results.record,
            poll=1.0,
        )
    rows = [
        r for r in done if r["classes"] in args.classes and r["seed"] in args.seeds and r.get("tag", "") == args.tag
    ]
    if rows:
        table = summarise(rows)
        (out / (f"summary_{args.tag}.md" if args.tag else "summary.md")).write_text(table + "\n")
        print(table)


if __name__ == "__main__":
    main()
