"""The demo: generate a small synthetic benchmark, train FNAC and its EZ-VSL ablation with a CPU-sized
configuration, evaluate both beside the trivial baselines on the synthetic test split, and write one
comparison table, overlays and training curves under the output folder."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from fnac.checkpoint import load_checkpoint
from fnac.config import load_config, resolve_config_path
from fnac.data import build_dataset
from fnac.evaluate import Protocol, evaluate_model, format_table
from fnac.report import write_overlays, write_per_sample
from fnac.synth import SynthConfig, generate
from fnac.train import fit, resolve_device

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
    overrides: list[str] = field(default_factory=list)  # extra KEY=VALUE for both models' configs
    config: str = "small"  # built-in config name or YAML path both models start from
    synth: dict = field(default_factory=dict)  # extra SynthConfig fields of the generated data

    def shrink(self) -> "DemoConfig":
        return DemoConfig(
            self.out_dir, self.seed, 64, 16, 16, 4, 2, 1, True, list(self.overrides), self.config, dict(self.synth)
        )


def _overrides(dc: DemoConfig, data_root: Path, run_dir: Path) -> list[str]:
    """Config overrides shared by both models (the EZ-VSL run adds its three zero weights)."""
    overrides = [
        f"data.root={data_root}",
        f"train.out_dir={run_dir}",
        f"train.epochs={dc.epochs}",
        f"train.seed={dc.seed}",
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


def run_demo(dc: DemoConfig, workers: int = 1) -> dict:
    """Returns {"table": str, "results": {name: metrics}, "seconds": float}."""
    t0 = time.perf_counter()
    out = Path(dc.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_root = out / "data"
    sc = synth_config(
        dc, load_config(resolve_config_path(dc.config), _overrides(dc, data_root, out / "fnac")).data.image_size
    )
    log.info("[1/4] synthetic benchmark -> %s", data_root)
    summary = generate(data_root, sc, progress=True, workers=workers)
    log.info(
        "      %d train / %d val / %d test samples, %d classes (%.1f s)",
        summary["n_train"],
        summary["n_val"],
        summary["n_test"],
        summary["n_classes"],
        time.perf_counter() - t0,
    )
    runs = {"FNAC": [], "EZ-VSL (FNAC, weights 0)": ["loss.fns1=0", "loss.tns=0", "loss.fns2=0"]}
    results: dict[str, dict[str, float]] = {}
    baselines: dict[str, dict[str, float]] = {}
    header = ""
    for i, (name, extra) in enumerate(runs.items()):
        tag = "fnac" if i == 0 else "ezvsl"
        overrides = _overrides(dc, data_root, out / tag) + extra  # the ablation's zero weights win
        cfg = load_config(resolve_config_path(dc.config), overrides)
        log.info("[%d/4] training %s (%d epochs) -> %s", 2 + i, name, cfg.train.epochs, cfg.train.out_dir)
        res = fit(cfg)
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
            baselines=(i == 0),
            progress=False,
            seed=dc.seed,
        )
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
