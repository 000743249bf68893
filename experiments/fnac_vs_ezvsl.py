"""FNAC vs its EZ-VSL ablation on the synthetic benchmark, over seeds and numbers of classes.

Each (classes, seed) cell is one `fnac demo` run (fresh synthetic data from that seed, both models
trained with the `small` config, evaluated on the test split). Results are appended to a JSONL file so an
interrupted sweep can continue; the summary table (mean and standard deviation over seeds) is printed
and written as markdown.

    .venv/bin/python experiments/fnac_vs_ezvsl.py --classes 6 --seeds 0 1 2 --out runs/sweep
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path

from fnac.demo import DemoConfig, run_demo

METRICS = ("ciou50", "auc", "mean_ciou")


def summarise(rows: list[dict]) -> str:
    lines = ["| classes | method | seeds | cIoU@0.5 | AUC | mean cIoU |", "|---|---|---|---|---|---|"]
    keys = sorted({(r["classes"], m) for r in rows for m in r["results"]})
    for k, method in keys:
        vals = [r["results"][method] for r in rows if r["classes"] == k and method in r["results"]]
        cells = []
        for m in METRICS:
            xs = [100 * v[m] for v in vals]
            sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
            cells.append(f"{statistics.mean(xs):.2f} ± {sd:.2f}")
        lines.append(f"| {k} | {method} | {len(vals)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--classes", type=int, nargs="+", default=[6])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--out", default="runs/sweep")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "results.jsonl"
    done = []
    if log_path.is_file():
        done = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    for k in args.classes:
        for seed in args.seeds:
            if any(r["classes"] == k and r["seed"] == seed for r in done):
                continue
            dc = DemoConfig(out_dir=str(out / f"k{k}_s{seed}"), seed=seed, n_classes=k)
            if args.epochs:
                dc.epochs = args.epochs
            if args.n_train:
                dc.n_train = args.n_train
            res = run_demo(dc)
            row = {"classes": k, "seed": seed, "epochs": dc.epochs, "n_train": dc.n_train,
                   "results": res["results"], "baselines": res["baselines"], "seconds": res["seconds"]}
            with open(log_path, "a") as f:
                f.write(json.dumps(row) + "\n")
            done.append(row)
            print(res["table"], flush=True)
    table = summarise([r for r in done if r["classes"] in args.classes and r["seed"] in args.seeds])
    (out / "summary.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
