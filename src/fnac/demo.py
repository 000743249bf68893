"""The demo: generate a small synthetic benchmark, train FNAC and its EZ-VSL ablation with a CPU-sized
configuration, evaluate both beside the trivial baselines on the synthetic test split, and write one
comparison table, overlays and training curves under the output folder."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from fnac.checkpoint import load_checkpoint
from fnac.config import Config, load_config, resolve_config_path
from fnac.data import build_dataset
from fnac.evaluate import Protocol, evaluate_model, format_table
from fnac.report import write_overlays, write_per_sample
from fnac.synth import SynthConfig, generate
from fnac.train import FitResult, fit, format_epoch, resolve_device

log = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    out_dir: str = "runs/demo"
    seed: int = 0
    n_train: int = 2048
    n_val: int = 192
    n_test: int = 384
    n_classes: int = 10
    epochs: int = 6
    distractors: int = 1  # silent objects of other classes per image
    quick: bool = False  # a tiny smoke version (tests)
    jobs: int = 0  # models trained at once, each in its own process; 0 = 2 on a CPU with >= 2 cores, else 1
    channels_last: bool = True  # train.channels_last for both models (NHWC: 1.5x faster steps on a CPU)
    overrides: list[str] = field(default_factory=list)  # extra KEY=VALUE for both models' configs
    config: str = "small"  # built-in config name or YAML path both models start from
    synth: dict = field(default_factory=dict)  # extra SynthConfig fields of the generated data

    def shrink(self) -> "DemoConfig":
        return dataclasses.replace(
            self,
            n_train=64,
            n_val=16,
            n_test=16,
            n_classes=4,
            epochs=2,
            distractors=1,
            quick=True,
            overrides=list(self.overrides),
            synth=dict(self.synth),
        )


def _overrides(dc: DemoConfig, data_root: Path, run_dir: Path) -> list[str]:
    """Config overrides shared by both models (the EZ-VSL run adds its three zero weights)."""
    overrides = [
        f"data.root={data_root}",
        f"train.out_dir={run_dir}",
        f"train.epochs={dc.epochs}",
        f"train.seed={dc.seed}",
        f"train.channels_last={str(dc.channels_last).lower()}",  # before dc.overrides: --set wins
    ]
    if dc.quick:
        overrides += [
            "model.width=8",
            "model.embed_dim=16",
            "data.image_size=64",
            "train.batch_size=16",
            "loss.warmup_epochs=1",
            "data.num_workers=0",
        ]
    return overrides + list(dc.overrides)


def synth_config(dc: DemoConfig, image_size: int) -> SynthConfig:
    """The demo's data: drawn at the models' input size (128 px for the small config, 64 px in quick
    mode), 1 s clips, `distractors` silent objects; dc.synth's fields (any SynthConfig field) win."""
    base = dict(
        seed=dc.seed,
        n_train=dc.n_train,
        n_val=dc.n_val,
        n_test=dc.n_test,
        n_classes=dc.n_classes,
        image_size=image_size,
        duration=1.0,
        min_distractors=dc.distractors,
        max_distractors=dc.distractors,
        n_clips=1 if dc.quick else 2,
        clip_seconds=2.0 if dc.quick else 6.0,
    )
    return SynthConfig.from_dict({**base, **dc.synth})


RUNS = {"FNAC": [], "EZ-VSL (FNAC, weights 0)": ["loss.fns1=0", "loss.tns=0", "loss.fns2=0"]}


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def demo_jobs(dc: DemoConfig, device_name: str) -> int:
    """How many models train at once: dc.jobs, or (0 = auto) both side by side on a CPU with at least
    two cores (each on half of them: small models use two threads poorly), one after another on a GPU."""
    if dc.jobs:
        return max(1, min(dc.jobs, len(RUNS)))
    return 2 if resolve_device(device_name).type == "cpu" and _cpus() >= 2 else 1


def run_demo(dc: DemoConfig, workers: int = 1) -> dict:
    """Returns {"table": str, "results": {name: metrics}, "seconds": float}."""
    t0 = time.perf_counter()
    out = Path(dc.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_root = out / "data"
    cfgs = {}
    for i, (name, extra) in enumerate(RUNS.items()):
        tag = "fnac" if i == 0 else "ezvsl"
        cfgs[name] = load_config(resolve_config_path(dc.config), _overrides(dc, data_root, out / tag) + extra)
    first = next(iter(cfgs.values()))  # the ablation's zero weights win over dc.overrides
    jobs = demo_jobs(dc, first.train.device)
    sc = synth_config(dc, first.data.image_size)
    log.info("[1/4] synthetic benchmark -> %s", data_root)
    summary = generate(data_root, sc, progress=True, workers=max(workers, jobs))
    log.info(
        "      %d train / %d val / %d test samples, %d classes (%.1f s)",
        summary["n_train"],
        summary["n_val"],
        summary["n_test"],
        summary["n_classes"],
        time.perf_counter() - t0,
    )
    if jobs > 1:
        names = " and ".join(cfgs)
        log.info("[2/4] training %s side by side (%d epochs, %d processes) -> %s", names, first.train.epochs, jobs, out)
        per_epoch = summary["n_train"] // first.train.batch_size
        total = sum(c.train.epochs * min(per_epoch, c.train.max_steps_per_epoch or per_epoch) for c in cfgs.values())
        fits = train_side_by_side(list(cfgs.values()), threads=max(1, _cpus() // jobs), total_steps=total)
    else:
        fits = []
        for i, (name, cfg) in enumerate(cfgs.items()):
            log.info("[%d/4] training %s (%d epochs) -> %s", 2 + i, name, cfg.train.epochs, cfg.train.out_dir)
            fits.append(fit(cfg))
    results: dict[str, dict[str, float]] = {}
    baselines: dict[str, dict[str, float]] = {}
    header = ""
    for i, ((name, cfg), res) in enumerate(zip(cfgs.items(), fits)):
        ev, model, test, device = _evaluate(cfg, res, dc.seed, baselines=(i == 0))
        results[name] = ev.metrics
        if i == 0:
            baselines = ev.baselines
            header = ev.header()
        eval_dir = Path(cfg.train.out_dir) / "eval"
        write_per_sample(ev, eval_dir / "per_sample.csv")
        write_overlays(model, test, ev, eval_dir, 3, device)
    log.info("[4/4] evaluated on the synthetic test split")
    rows = {**results, **{f"baseline: {k}": v for k, v in baselines.items()}}
    table = format_table(rows, header=header)
    seconds = time.perf_counter() - t0
    (out / "results.json").write_text(
        json.dumps({"results": results, "baselines": baselines, "header": header, "seconds": seconds}, indent=2)
    )
    (out / "results.txt").write_text(table + "\n")
    return {"table": table, "results": results, "baselines": baselines, "seconds": seconds}


def _evaluate(cfg: Config, res: FitResult, seed: int, baselines: bool):
    """The run's best checkpoint (latest.pt when no validation chose one) on the test split."""
    ckpt = Path(cfg.train.out_dir) / ("best.pt" if res.best else "latest.pt")
    device = resolve_device(cfg.train.device)
    model = load_checkpoint(ckpt, device)
    test = build_dataset(cfg.data, "test", train=False)
    ev = evaluate_model(
        model,
        test,
        Protocol(),
        batch_size=64,
        device=device,
        num_workers=0,
        baselines=baselines,
        progress=False,
        seed=seed,
    )
    return ev, model, test, device


# ------------------------------------------------------------------------------------ side by side
def _fit_in_child(cfg: Config, threads: int) -> FitResult:
    """One training run in a worker process: `threads` torch threads, samples read in this process
    (no loader workers: the cores are taken), its log lines in <out_dir>/train.log."""
    import torch

    _stop_when_orphaned()
    torch.set_num_threads(threads)
    cfg.data.num_workers = 0
    cfg.train.progress = False  # the parent draws one bar for both runs from their log.jsonl
    out = Path(cfg.train.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "train.log", mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    return fit(cfg)


def _stop_when_orphaned(poll: float = 1.0) -> None:
    """If the demo process dies (killed, not interrupted), send this run SIGTERM: fit saves latest.pt
    at the next step and returns, instead of training on unseen."""
    import signal
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()


def train_side_by_side(cfgs: list[Config], threads: int, total_steps: int | None = None) -> list[FitResult]:
    """fit(cfg) for every config at once, each in its own (spawned) process with `threads` torch
    threads; one progress bar for all, and each run's epoch summaries as they are written. Results come
    back in the order of `cfgs`; a run's error is raised here (the other runs finish first).
    `total_steps` (all runs together) only sizes the progress bar."""
    for cfg in cfgs:  # a stale log from an earlier run in the same folder would be read as progress
        (Path(cfg.train.out_dir) / "log.jsonl").unlink(missing_ok=True)
    with ProcessPoolExecutor(max_workers=len(cfgs), mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_fit_in_child, cfg, threads) for cfg in cfgs]
        _follow(cfgs, futures, total_steps)
        return [f.result() for f in futures]


def _follow(cfgs: list[Config], futures: list, total: int | None, poll: float = 0.5) -> None:
    """Draw the runs' progress from their log.jsonl files until every future is done."""
    from tqdm import tqdm

    names = [Path(c.train.out_dir).name for c in cfgs]
    shown = [0] * len(cfgs)  # epoch records already printed per run
    steps = [0] * len(cfgs)
    with tqdm(total=total, desc="training", unit="step", dynamic_ncols=True, leave=False, disable=None) as bar:
        while True:
            finished = all(f.done() for f in futures)  # read the logs once more after the last run ends
            for i, cfg in enumerate(cfgs):
                for rec in _records(Path(cfg.train.out_dir) / "log.jsonl"):
                    steps[i] = max(steps[i], int(rec.get("step", 0)))
                    if rec.get("kind") == "epoch" and rec["epoch"] >= shown[i]:
                        bar.write(f"{names[i]}: {format_epoch(cfg, rec['epoch'], rec)}")
                        shown[i] = rec["epoch"] + 1
            if sum(steps) != bar.n:
                bar.set_postfix_str(" ".join(f"{n} {s}" for n, s in zip(names, steps)), refresh=False)
                bar.n = sum(steps)
                bar.refresh()
            if finished:
                return
            time.sleep(poll)


def _records(path: Path) -> list[dict]:
    """The complete JSON lines of a log that another process may be appending to."""
    try:
        text = path.read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line still being written
            break
    return out
