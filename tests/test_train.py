"""Training end to end on the tiny synthetic set: logs, checkpoints, validation-only selection,
exact resume, config errors."""

import json
import math

import pytest
import torch

from conftest import tiny_overrides
from fnac.checkpoint import read_checkpoint
from fnac.cli import main
from fnac.config import load_config, resolve_config_path
from fnac.errors import ConfigError, DataError
from fnac.train import fit


def _cfg(root, out, extra=()):
    return load_config(resolve_config_path("small"), tiny_overrides(root, out) + list(extra))


def _records(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_fit_writes_run_folder_and_selects_on_validation(tiny_synth, tmp_path):
    out = tmp_path / "run"
    res = fit(_cfg(tiny_synth, out))
    for name in ("config.yaml", "log.jsonl", "latest.pt", "best.pt", "curves.png"):
        assert (out / name).is_file(), name
    recs = _records(out)
    assert recs[0]["kind"] == "start" and recs[0]["config"]["model"]["width"] == 8
    steps = [r for r in recs if r["kind"] == "step"]
    epochs = [r for r in recs if r["kind"] == "epoch"]
    assert len(epochs) == 3 and res.steps == 3 * (48 // 8)
    for r in steps:
        for k in ("loss", "contrastive", "fns1", "tns", "fns2", "lr", "samples_per_s"):
            assert math.isfinite(r[k]), k
    # warm-up: epoch 0 trains on the contrastive loss alone, later epochs add 10 x each regulariser
    # (the small config's weight; the reference's is 100)
    e0, e1 = epochs[0], epochs[1]
    assert e0["weights"]["fns1"] == 0 and e1["weights"]["fns1"] == 10
    assert e0["loss"] == pytest.approx(e0["contrastive"], rel=1e-6)
    assert e1["loss"] == pytest.approx(e1["contrastive"] + 10 * (e1["fns1"] + e1["tns"] + e1["fns2"]), rel=1e-4)
    # the best checkpoint is the epoch with the highest validation (cIoU@0.5, AUC): never the test split
    val = [(r["val_ciou50"], r["val_auc"], r["epoch"]) for r in epochs]
    best_epoch = max(val)[2]
    assert read_checkpoint(out / "best.pt")["epoch"] == best_epoch + 1
    assert all(r["val_n"] == 16 for r in epochs)
    assert read_checkpoint(out / "latest.pt")["epoch"] == 3


@pytest.mark.slow
def test_resume_reproduces_the_uninterrupted_run(tiny_synth, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    fit(_cfg(tiny_synth, full))
    fit(_cfg(tiny_synth, part, ["train.epochs=2"]))
    fit(_cfg(tiny_synth, part), resume=True)
    a = [r for r in _records(full) if r["kind"] == "step"]
    b = [r for r in _records(part) if r["kind"] == "step"]
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-5, abs=1e-6), ra["step"]
    wa = read_checkpoint(full / "latest.pt")["model"]
    wb = read_checkpoint(part / "latest.pt")["model"]
    for k in wa:
        assert torch.allclose(wa[k].float(), wb[k].float(), atol=1e-5), k


def test_same_seed_same_run_and_ezvsl_ablation(tiny_synth, tmp_path):
    fit(_cfg(tiny_synth, tmp_path / "a", ["train.epochs=2"]))
    fit(_cfg(tiny_synth, tmp_path / "b", ["train.epochs=2", "loss.fns1=0", "loss.tns=0", "loss.fns2=0"]))
    ea = [r for r in _records(tmp_path / "a") if r["kind"] == "epoch"]
    eb = [r for r in _records(tmp_path / "b") if r["kind"] == "epoch"]
    # identical during warm-up (same seed, same data order), then the objectives differ
    assert ea[0]["loss"] == pytest.approx(eb[0]["loss"], rel=1e-6)
    assert eb[1]["loss"] == pytest.approx(eb[1]["contrastive"], rel=1e-6)
    assert ea[1]["loss"] > ea[1]["contrastive"]


def test_config_errors_fail_before_training(tiny_synth, tmp_path, capsys):
    with pytest.raises(ConfigError, match="train.epoch"):
        load_config(resolve_config_path("small"), ["train.epoch=3"])
    with pytest.raises(ConfigError, match="optim.lr"):
        load_config(resolve_config_path("small"), ["optim.lr=fast"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  widht: 8\n")
    with pytest.raises(ConfigError, match="model.widht"):
        load_config(bad)
    bad.write_text("train:\n  epochs: three\n")
    assert main(["train", "--config", str(bad)]) == 1
    assert "train.epochs" in capsys.readouterr().err
    # an empty or missing split names the path it looked at
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.txt"):
        fit(_cfg(tiny_synth, tmp_path / "x", [f"data.train_list={empty}"]))
    with pytest.raises(DataError, match="nowhere"):
        fit(_cfg(tiny_synth, tmp_path / "x", [f"data.root={tmp_path / 'nowhere'}"]))


def test_cli_train_and_eval(tiny_synth, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["train", "--config", "small", *tiny_overrides(tiny_synth, out), "train.epochs=1"]) == 0
    ev = tmp_path / "eval"
    assert (
        main(["eval", "--checkpoint", str(out / "latest.pt"), "--out", str(ev), "--overlays", "2", "--workers", "0"])
        == 0
    )
    text = capsys.readouterr().out
    assert "16 evaluated of 16 listed" in text and "bicubic" in text and "median_ge" in text
    assert "baseline: whole image" in text and "baseline: centre prior" in text
    rows = (ev / "per_sample.csv").read_text().splitlines()
    assert rows[0].startswith("id,ciou") and len(rows) == 17
    assert len(list((ev / "overlays").glob("*.png"))) == 4
    metrics = json.loads((ev / "metrics.json").read_text())[0]
    assert metrics["n_evaluated"] == 16 and 0 <= metrics["metrics"]["ciou50"] <= 1


def _docs_example(heading: str) -> str:
    """The first python code block under `heading` in docs/training.md."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    section = text.split(heading, 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_docs_own_loop_example_runs(tiny_synth, tmp_path, monkeypatch, capsys):
    """docs/training.md "Writing your own loop", run as written on the tiny set (its one config line
    gets the tiny overrides and 2 epochs); the checkpoint it writes loads with its config."""
    from fnac.checkpoint import load_model_and_config

    code = _docs_example("## Writing your own loop")
    assert code.count('load_config("small")') == 1
    code = code.replace('load_config("small")', 'load_config("small", OVERRIDES)')
    monkeypatch.chdir(tmp_path)
    exec(
        compile(code, "docs/training.md", "exec"),
        {"OVERRIDES": tiny_overrides(tiny_synth, tmp_path / "run") + ["train.epochs=2"]},
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2 and "val cIoU@0.5" in lines[-1]
    model, cfg = load_model_and_config(tmp_path / "my_run.pt")
    assert cfg is not None and cfg.model.width == 8 and cfg.train.epochs == 2
    assert not model.training


def test_train_step_defaults_to_the_models_device_and_epoch_zero(tiny_synth, tmp_path):
    """The public train_step: device and epoch are optional; the same step as with them given."""
    from fnac.data import build_dataset, collate
    from fnac.models.fnac import FNAC
    from fnac.train import build_optimizer, train_step

    cfg = _cfg(tiny_synth, tmp_path)
    ds = build_dataset(cfg.data, "train", train=True)
    batch, _ = collate([ds[i] for i in range(8)])
    out = []
    for kwargs in ({}, {"epoch": 0, "device": torch.device("cpu")}):
        torch.manual_seed(0)
        model = FNAC(cfg.model)
        opt = build_optimizer(model, cfg)
        terms = train_step(model, batch, opt, cfg, **kwargs)
        out.append((terms, [p.detach().clone() for p in model.parameters()]))
    assert out[0][0] == out[1][0] and set(out[0][0]) == {"contrastive", "fns1", "tns", "fns2", "loss"}
    assert out[0][0]["loss"] == pytest.approx(out[0][0]["contrastive"])  # warm-up: contrastive alone
    assert all(torch.equal(a, b) for a, b in zip(out[0][1], out[1][1]))
