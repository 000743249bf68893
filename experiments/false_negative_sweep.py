"""Does FNAC beat EZ-VSL when a batch holds more same-class "negatives"? A sweep over false-negative level,
instance-shortcut strength, recipe and seed.

A cell is (level, shortcut, recipe, seed). A level is a number of classes K, optionally with a class
skew ("K" or "K@skew"): fewer classes (or a skewed class frequency) put more clips of a sample's own
class among its in-batch negatives. The shortcut strength is the synthetic set's per-clip signature in
background and audio (0 = none). The recipe is a built-in config: `reference_synth` (the reference
hyperparameters, visual network from `fnac pretrain`) or `small` (from scratch). Each cell is one
`fnac.demo.run_demo`: fresh data and initialisation from its seed, FNAC and EZ-VSL (the same config with
the three regulariser weights at 0) trained and evaluated on the test split beside the trivial baselines:
each model's checkpoint chosen on validation (best.pt) and its last one (latest.pt, the end of training).

Rows go to <out>/results.jsonl (an interrupted sweep continues where it stopped); the summary
(<out>/summary.md) gives per cell, for best.pt and for the end of training, the mean ± sd over seeds of
both models, the paired difference FNAC - EZ-VSL with its 95 % Student-t interval and the expected
same-class negatives per sample, with the trivial baselines and the epochs FNAC's best.pt came from;
--figure draws the difference against that number, a panel per checkpoint. --add-end completes rows
recorded before the end of training was (their cell folders must still be there).

    .venv/bin/python experiments/false_negative_sweep.py --levels 20 10 4 2 --shortcuts 0 0.5 \\
        --recipes reference_synth small --seeds 0 1 2 3 4 --jobs 2 --threads 1 --out runs/fn_sweep \\
        --figure docs/img/false_negatives.png
    .venv/bin/python experiments/false_negative_sweep.py --out runs/fn_sweep --summary-only
    .venv/bin/python experiments/false_negative_sweep.py --out runs/fn_sweep --add-end --jobs 2 --threads 1
    # experiments/false_negatives.py's diagnostic on one cell's two checkpoints:
    .venv/bin/python experiments/false_negative_sweep.py --diagnose runs/fn_sweep/reference_synth_k4_sh0_s0
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import math
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the experiments' shared helpers
from _cells import Results, run_cells  # noqa: E402

FNAC, EZVSL = "FNAC", "EZ-VSL (FNAC, weights 0)"
BASELINES = ("centre prior", "whole image", "random")
# cell sizes per recipe (data and epochs); timing in docs/synthetic.md, "Pretraining"
RECIPE_SIZES = {
    "reference_synth": {"n_train": 2048, "n_val": 192, "n_test": 384, "epochs": 6},
    "small": {"n_train": 2048, "n_val": 192, "n_test": 384, "epochs": 6},
}
QUICK_PRETRAIN = {"n_train": 128, "n_test": 64, "epochs": 1, "batch_size": 32}


# ------------------------------------------------------------------------------------------- numbers
def t_two_sided_cdf(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with an integer number of degrees of freedom (the closed-form finite
    series of Abramowitz & Stegun 26.7.3-4, in theta = atan(t / sqrt(df)))."""
    if df < 1:
        raise ValueError("df must be >= 1")
    t = abs(t)
    th = math.atan(t / math.sqrt(df))
    s, c = math.sin(th), math.cos(th)
    if df % 2 == 1:
        term, acc = c, c if df > 1 else 0.0
        for k in range(3, df - 1, 2):  # coefficients 2/3, 2*4/(3*5), ...
            term *= (k - 1) / k * c * c
            acc += term
        return 2 / math.pi * (th + s * acc)
    term, acc = 1.0, 1.0
    for k in range(2, df - 1, 2):  # coefficients 1/2, 1*3/(2*4), ...
        term *= (k - 1) / k * c * c
        acc += term
    return s * acc


def t_quantile(p: float, df: int) -> float:
    """The two-sided critical value: the t with P(|T| <= t) = p (bisection on t_two_sided_cdf)."""
    lo, hi = 0.0, 1.0
    while t_two_sided_cdf(hi, df) < p:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_two_sided_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def paired_ci(a: list[float], b: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean of the paired differences a - b and its Student-t confidence interval (nan bounds for one pair)."""
    if len(a) != len(b) or not a:
        raise ValueError("need equally many, at least one, paired values")
    d = [x - y for x, y in zip(a, b)]
    m = statistics.mean(d)
    if len(d) < 2:
        return m, math.nan, math.nan
    half = t_quantile(level, len(d) - 1) * statistics.stdev(d) / math.sqrt(len(d))
    return m, m - half, m + half


def same_class_negatives(class_counts: list[int], batch_size: int) -> float:
    """Expected same-class negatives per sample in a batch of B drawn without replacement from a set with
    these class counts: (B - 1) * sum n_k (n_k - 1) / (N (N - 1))."""
    n = sum(class_counts)
    if n < 2:
        return 0.0
    return (batch_size - 1) * sum(c * (c - 1) for c in class_counts) / (n * (n - 1))


# ----------------------------------------------------------------------------------------------- cells
def parse_level(spec: str) -> tuple[int, float]:
    k, _, skew = str(spec).partition("@")
    return int(k), float(skew or 0)


def level_name(k: int, skew: float) -> str:
    return f"k{k}" + (f"@{skew:g}" if skew else "")


def cell_name(c: dict) -> str:
    v = float(c.get("variation", 0.0))
    return (
        f"{c['recipe']}_{level_name(c['classes'], c['class_skew'])}_sh{c['shortcut']:g}"
        + (f"_v{v:g}" if v else "")
        + f"_s{c['seed']}"
    )


def synth_fields(skew: float, shortcut: float, variation: float = 0.0) -> dict:
    """Extra SynthConfig fields of a cell; a value at its default (0: today's data) is left out, so the
    sweep runs on a SynthConfig that predates the field."""
    from fnac.synth import SynthConfig

    known = {f.name for f in dataclasses.fields(SynthConfig)}
    extra = {}
    for name, value in (("class_skew", skew), ("shortcut", shortcut), ("variation", variation)):
        if value:
            if name not in known:
                raise SystemExit(f"SynthConfig has no field '{name}' in this version: cannot sweep {name}={value}")
            extra[name] = value
    return extra


def _checkpoint_batch(run_dir: Path) -> int:
    import yaml

    return int(yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["batch_size"])


def run_cell(c: dict, args: argparse.Namespace) -> dict:
    from fnac import synth
    from fnac.demo import DemoConfig, run_demo

    out = Path(args.out) / cell_name(c)
    size = dict(RECIPE_SIZES.get(c["recipe"], RECIPE_SIZES["small"]))
    if args.n_train:
        size["n_train"] = args.n_train
    if args.epochs:
        size["epochs"] = args.epochs
    extra = synth_fields(c["class_skew"], c["shortcut"], float(c.get("variation", 0.0)))
    overrides = list(args.set)
    if c.get("pretrained"):
        overrides.append(f"model.pretrained={c['pretrained']}")
    dc = DemoConfig(
        out_dir=str(out),
        seed=c["seed"],
        n_train=size["n_train"],
        n_val=size["n_val"],
        n_test=size["n_test"],
        n_classes=c["classes"],
        epochs=size["epochs"],
        overrides=overrides,
        config=c["recipe"],
        synth=extra,
        jobs=1,  # one model after another in this process (--threads), NCHW: as the cells in docs/results.md ran
        channels_last=False,
    )
    if args.quick:
        dc = dc.shrink()
        dc.n_classes = c["classes"]
    res = run_demo(dc, workers=args.synth_workers)
    print(res["table"], flush=True)
    scenes = json.loads((out / "data" / "scenes.json").read_text())
    counts: dict[int, int] = {}
    for r in scenes:
        if r["split"] == "train":
            counts[r["class_index"]] = counts.get(r["class_index"], 0) + 1
    batch = _checkpoint_batch(out / "fnac")
    expected = None
    if hasattr(synth, "expected_false_negatives"):
        sc = synth.SynthConfig(**json.loads((out / "data" / "synth.json").read_text())["config"])
        expected = float(synth.expected_false_negatives(sc, batch))
    return {
        **c,
        "level": level_name(c["classes"], c["class_skew"]),
        "overrides": list(args.set),
        "epochs": dc.epochs,
        "n_train": dc.n_train,
        "n_test": dc.n_test,
        "batch_size": batch,
        "same_class_negatives": same_class_negatives(list(counts.values()), batch),
        "expected_false_negatives": expected,
        "synth": extra,
        "quick": bool(args.quick),
        "results": res["results"],
        "baselines": res["baselines"],
        "seconds": res["seconds"],
        **end_of_training(out),
    }


def end_of_training(cell_dir: str | Path) -> dict:
    """Each model's last checkpoint (latest.pt, saved after the final epoch) on the cell's test split, and
    the epoch at whose validation its best.pt was chosen (1-based; the row's `results` are best.pt's):
    {"end_results": {model: metrics}, "best_epoch": {model: epoch}, "end_epoch": {model: epoch}}.

    A best.pt chosen before the regularisers switch on is the same network for both models (they train
    identically until then); the end of training compares what the regularisers did."""
    from fnac.checkpoint import load_model_and_config, read_checkpoint, stored_epoch
    from fnac.data import build_dataset
    from fnac.evaluate import Protocol, evaluate_model

    d = Path(cell_dir)
    out: dict = {"end_results": {}, "best_epoch": {}, "end_epoch": {}}
    for name, tag in ((FNAC, "fnac"), (EZVSL, "ezvsl")):
        loaded = load_model_and_config(d / tag / "latest.pt")
        cfg = loaded.config
        cfg.data.root = str(d / "data")  # the cell's own data, wherever the sweep folder now lies
        test = build_dataset(cfg.data, "test", train=False)
        ev = evaluate_model(
            loaded.model, test, Protocol(), batch_size=64, num_workers=0, baselines=False, progress=False
        )
        out["end_results"][name] = ev.metrics
        out["end_epoch"][name] = loaded.epoch
        best = d / tag / "best.pt"
        out["best_epoch"][name] = stored_epoch(read_checkpoint(best).get("epoch")) if best.is_file() else None
    return out


def _set_threads(threads: int) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def add_end_of_training(out: Path, jobs: int, threads: int = 0) -> int:
    """Give every row of <out>/results.jsonl whose cell folder is still there its end_of_training(),
    `jobs` cells at a time (each process with `threads` torch threads); results.jsonl is rewritten
    (atomically) after each cell, so an interrupted call loses nothing done. Returns the number of rows
    completed; a cell that fails is named and left as it is. Not while a sweep is writing to the same
    folder: the rows it appends meanwhile would be overwritten."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    results = Results(out)
    todo = [i for i, r in enumerate(results.rows) if "end_results" not in r and (out / cell_name(r) / "fnac").is_dir()]
    missing = [cell_name(r) for i, r in enumerate(results.rows) if "end_results" not in r and i not in todo]
    if missing:
        print(f"{len(missing)} rows have no cell folder under {out} (left as they are): {', '.join(missing)}")
    done = 0
    with ProcessPoolExecutor(max(1, jobs), get_context("spawn"), _set_threads, (threads,)) as pool:
        futures = {pool.submit(end_of_training, out / cell_name(results.rows[i])): i for i in todo}
        for n, fut in enumerate(as_completed(futures), 1):
            i = futures[fut]
            try:
                results.rows[i].update(fut.result())
            except Exception as e:  # one bad cell (a damaged checkpoint) does not cost the others
                print(f"end of training {n}/{len(todo)}: {out / cell_name(results.rows[i])}: {e}", flush=True)
                continue
            done += 1
            tmp = results.path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in results.rows))
            os.replace(tmp, results.path)
            print(f"end of training {n}/{len(todo)}: {cell_name(results.rows[i])}", flush=True)
    return done


def ensure_pretrained(recipe: str, args: argparse.Namespace) -> str:
    """The weights file a recipe's model.pretrained names (or --pretrained), made with `fnac pretrain`'s
    defaults at the recipe's width when missing; "" for recipes trained from scratch."""
    from fnac.config import load_config, resolve_config_path
    from fnac.models.fnac import NO_WEIGHTS
    from fnac.pretrain import PretrainConfig, pretrain

    cfg = load_config(resolve_config_path(recipe), list(args.set))
    if cfg.model.pretrained in ("", NO_WEIGHTS):  # "none": random initialisation on purpose (`small`)
        return ""
    path = args.pretrained or cfg.model.pretrained
    pc = PretrainConfig(width=cfg.model.width, layers=max(2, cfg.model.visual_layers))
    if args.quick:  # the demo's quick models: width 8, 64 px
        path = str(Path(args.out) / "pretrain_quick_w8.pth")
        pc = PretrainConfig(width=8, layers=max(2, cfg.model.visual_layers), image_size=64, **QUICK_PRETRAIN)
    if not Path(path).is_file():
        print(f"{path}: missing; pretraining the visual network first", flush=True)
        res = pretrain(pc, path, progress=False)
        print(
            f"pretrained: held-out accuracy {100 * res['test_accuracy']:.1f}% (chance {100 * res['chance']:.1f}%)",
            flush=True,
        )
    return os.path.abspath(path)


# --------------------------------------------------------------------------------------------- summary
def _ms(xs: list[float]) -> str:
    if not xs:
        return "-"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.2f} ± {sd:.2f}"


def _ci(d: tuple[float, float, float]) -> str:
    m, lo, hi = d
    return f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]" if not math.isnan(lo) else f"{m:+.2f} [n = 1]"


def group_rows(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Rows by cell without the seed: (recipe, shortcut, classes, class_skew, variation), one row per seed
    (the last)."""
    groups: dict[tuple, dict[int, dict]] = {}
    for r in rows:
        key = (
            r["recipe"],
            float(r["shortcut"]),
            int(r["classes"]),
            float(r["class_skew"]),
            float(r.get("variation", 0.0)),
        )
        groups.setdefault(key, {})[r["seed"]] = r
    return {k: [v[s] for s in sorted(v)] for k, v in sorted(groups.items())}


CHECKPOINTS = {"best": "results", "end": "end_results"}  # which checkpoint -> the row's key
CHECKPOINT_TITLES = {
    "best": "checkpoint chosen on validation (best.pt)",
    "end": "end of training (latest.pt)",
}


def cell_stats(cell: list[dict], checkpoint: str = "best") -> dict:
    """Per metric (percent): both models' values over seeds and the paired FNAC - EZ-VSL difference, for
    the cell's best.pt ("best") or latest.pt ("end"; seeds without it are left out)."""
    key = CHECKPOINTS[checkpoint]
    both = [r for r in cell if FNAC in r.get(key, {}) and EZVSL in r.get(key, {})]
    out: dict = {
        "seeds": len(both),
        "fn": statistics.mean(r["same_class_negatives"] for r in both) if both else math.nan,
        "best_epochs": [r.get("best_epoch", {}).get(FNAC) for r in both],
    }
    for m in ("ciou50", "auc"):
        f = [100 * r[key][FNAC][m] for r in both]
        e = [100 * r[key][EZVSL][m] for r in both]
        out[m] = {
            "fnac": f,
            "ezvsl": e,
            "diff": paired_ci(f, e) if both else (math.nan,) * 3,
            "baselines": {
                b: [100 * r["baselines"][b][m] for r in both if b in r.get("baselines", {})] for b in BASELINES
            },
        }
    return out


def summarise(rows: list[dict], checkpoint: str = "best") -> str:
    """Markdown: one line per (recipe, shortcut, level) and metric with mean ± sd over seeds (percent), the
    paired difference FNAC - EZ-VSL with its 95 % t interval and the expected same-class negatives per
    sample of the cell's training data; for best.pt also the trivial baselines and the epoch at which
    each seed's FNAC best.pt was chosen ("-" where the row predates that record). Cells with no seed
    at `checkpoint` are left out."""
    best = checkpoint == "best"
    head = (
        "| recipe | variation | shortcut | level | same-class negatives / sample | seeds | metric | FNAC | EZ-VSL | "
        "FNAC - EZ-VSL [95 % CI] |" + (" " + " | ".join(BASELINES) + " | FNAC best epochs |" if best else "")
    )
    lines = [head, "|" + "---|" * (10 + (len(BASELINES) + 1 if best else 0))]
    for (recipe, shortcut, k, skew, variation), cell in group_rows(rows).items():
        st = cell_stats(cell, checkpoint)
        if not st["seeds"]:
            continue
        epochs = " ".join("-" if e is None else str(e) for e in st["best_epochs"])
        for m, label in (("ciou50", "cIoU@0.5"), ("auc", "AUC")):
            s = st[m]
            line = (
                f"| {recipe} | {variation:g} | {shortcut:g} | {level_name(k, skew)} | {st['fn']:.2f} | {st['seeds']} | "
                f"{label} | {_ms(s['fnac'])} | {_ms(s['ezvsl'])} | {_ci(s['diff'])} |"
            )
            if best:
                line += " " + " | ".join(_ms(s["baselines"][b]) for b in BASELINES) + f" | {epochs} |"
            lines.append(line)
    return "\n".join(lines)


def summary_text(rows: list[dict]) -> str:
    """summary.md: the best.pt table, and the end-of-training one where any row has it."""
    parts = [f"## {CHECKPOINT_TITLES['best']}\n\n{summarise(rows, 'best')}"]
    if any(CHECKPOINTS["end"] in r for r in rows):
        parts.append(f"## {CHECKPOINT_TITLES['end']}\n\n{summarise(rows, 'end')}")
    return "\n\n".join(parts) + "\n"


def plot(rows: list[dict], path: str | Path, metric: str = "ciou50") -> None:
    """FNAC - EZ-VSL (with 95 % intervals) against same-class negatives per sample, one line per
    (shortcut, recipe); a second panel for the end of training where any row has it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    panels = ["best"] + (["end"] if any(CHECKPOINTS["end"] in r for r in rows) else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.4), sharey=True, squeeze=False)
    for ax, checkpoint in zip(axes[0], panels):
        lines: dict[tuple, list[tuple[float, tuple]]] = {}
        for (recipe, shortcut, _k, _skew, variation), cell in group_rows(rows).items():
            st = cell_stats(cell, checkpoint)
            if st["seeds"]:
                lines.setdefault((shortcut, variation, recipe), []).append((st["fn"], st[metric]["diff"]))
        levels = sorted({p[0] for pts in lines.values() for p in pts})
        for j, ((shortcut, variation, recipe), pts) in enumerate(sorted(lines.items())):
            pts.sort()
            x = [p[0] * 1.04 ** (j - (len(lines) - 1) / 2) for p in pts]  # side by side at each level
            y = [p[1][0] for p in pts]
            err = [
                [0 if math.isnan(p[1][1]) else p[1][0] - p[1][1] for p in pts],
                [0 if math.isnan(p[1][2]) else p[1][2] - p[1][0] for p in pts],
            ]
            ax.errorbar(
                x,
                y,
                yerr=err,
                marker="o",
                capsize=3,
                label=f"{recipe}, shortcut {shortcut:g}" + (f", variation {variation:g}" if variation else ""),
            )
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xticks(levels, [f"{v:.2f}".rstrip("0").rstrip(".") for v in levels])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("same-class negatives per sample (in a training batch)")
        ax.set_title(CHECKPOINT_TITLES[checkpoint], fontsize=10)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel(f"FNAC - EZ-VSL, {'cIoU@0.5' if metric == 'ciou50' else 'AUC'} (points, 95 % CI)")
    fig.suptitle("FNAC's gain over EZ-VSL (mean over seeds)")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ diagnostic
def diagnose(cell_dir: str, batches: int, split: str) -> str:
    """experiments/false_negatives.py on a cell's FNAC and EZ-VSL checkpoints, at the cell's batch size."""
    spec = importlib.util.spec_from_file_location("false_negatives", Path(__file__).with_name("false_negatives.py"))
    fn = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fn)  # type: ignore[union-attr]
    d = Path(cell_dir)
    batch = _checkpoint_batch(d / "fnac")
    res = {}
    for name, tag in (("FNAC", "fnac"), ("EZ-VSL", "ezvsl")):
        ck = d / tag / "best.pt"
        ck = ck if ck.is_file() else d / tag / "latest.pt"
        res[name] = fn.analyse(str(ck), str(d / "data"), split, batch, batches, 0)
    lines = [f"| {d.name}: {split} split, {batches} random batches of {batch} | FNAC | EZ-VSL |", "|---|---|---|"]
    lines += [f"| {label} | {res['FNAC'][key]:.3f} | {res['EZ-VSL'][key]:.3f} |" for label, key in fn.ROWS]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ main
def _child_argv(c: dict, args: argparse.Namespace, row_file: Path) -> list[str]:
    argv = [
        sys.executable,
        os.path.abspath(__file__),
        "--cell",
        json.dumps(c),
        "--out",
        args.out,
        "--threads",
        str(args.threads),
        "--synth-workers",
        str(args.synth_workers),
        "--row-file",
        str(row_file),
    ]
    for o in args.set:
        argv += ["--set", o]
    for name in ("epochs", "n_train"):
        if getattr(args, name):
            argv += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    if args.quick:
        argv.append("--quick")
    return argv


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--levels",
        nargs="+",
        default=["20", "10", "4", "2"],
        help="false-negative levels: number of classes K, or K@skew (a class_skew)",
    )
    p.add_argument("--shortcuts", type=float, nargs="+", default=[0.0, 0.5], help="instance shortcut strengths")
    p.add_argument("--recipes", nargs="+", default=["reference_synth", "small"])
    p.add_argument(
        "--variation",
        type=float,
        default=0.0,
        help="within-class variation of every cell's data (fnac synth --variation; 0 = none)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--epochs", type=int, help="override the recipe's cell size")
    p.add_argument("--n-train", type=int, help="override the recipe's cell size")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every model")
    p.add_argument(
        "--pretrained",
        help="weights for pretrained recipes (default: the config's model.pretrained; "
        "made by `fnac pretrain` defaults when missing)",
    )
    p.add_argument("--jobs", type=int, default=1, help="cells run at once, each in its own process")
    p.add_argument("--threads", type=int, default=0, help="torch threads per cell (0 = torch's default)")
    p.add_argument("--synth-workers", type=int, default=1)
    p.add_argument("--deadline", type=float, default=0, help="start no cell after this many seconds")
    p.add_argument("--quick", action="store_true", help="tiny cells: a smoke test of this script (seconds)")
    p.add_argument("--out", default="runs/fn_sweep")
    p.add_argument("--summary-only", action="store_true", help="summarise results.jsonl, run nothing")
    p.add_argument(
        "--add-end",
        action="store_true",
        help="evaluate the end of training (latest.pt) of rows that lack it (written before it was "
        "recorded), --jobs cells at a time, then summarise; run nothing else",
    )
    p.add_argument("--figure", help="also draw FNAC - EZ-VSL against the false-negative rate here (png)")
    p.add_argument("--diagnose", metavar="CELL_DIR", help="run the false-negative diagnostic on one cell")
    p.add_argument("--batches", type=int, default=200, help="--diagnose: random batches")
    p.add_argument("--split", default="test", help="--diagnose: split")
    p.add_argument("--cell", help=argparse.SUPPRESS)  # child mode: the cell as JSON
    p.add_argument("--row-file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.diagnose:
        print(diagnose(args.diagnose, args.batches, args.split))
        return
    if args.cell:
        row = run_cell(json.loads(args.cell), args)
        Path(args.row_file).write_text(json.dumps(row))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.add_end:
        n = add_end_of_training(out, args.jobs, args.threads)
        print(f"end of training added to {n} rows of {out / 'results.jsonl'}")
        args.summary_only = True
    results = Results(out)
    done = results.rows
    cells = []
    if not args.summary_only:
        weights = {r: ensure_pretrained(r, args) for r in args.recipes}
        for recipe in args.recipes:
            for level in args.levels:
                k, skew = parse_level(level)
                synth_fields(skew, 0.0)
                for sh in args.shortcuts:
                    synth_fields(0.0, sh, args.variation)
                    for seed in args.seeds:
                        cells.append(
                            {
                                "recipe": recipe,
                                "classes": k,
                                "class_skew": skew,
                                "shortcut": sh,
                                "variation": args.variation,
                                "seed": seed,
                                "pretrained": weights[recipe],
                            }
                        )
    names = {cell_name(r) for r in done}
    todo = [c for c in cells if cell_name(c) not in names]
    run_cells(
        todo,
        name=cell_name,
        argv=lambda c, row_file: _child_argv(c, args, row_file),
        out=out,
        jobs=args.jobs,
        deadline=args.deadline,
        record=results.record,
    )
    wanted = {cell_name(c) for c in cells}
    rows = [r for r in done if args.summary_only or cell_name(r) in wanted]
    if rows:
        text = summary_text(rows)
        (out / "summary.md").write_text(text)
        print(text)
        if args.figure:
            plot(rows, args.figure)


if __name__ == "__main__":
    main()
