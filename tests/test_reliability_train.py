"""Reliability of training: SIGKILL at random moments always leaves a loadable `latest` and --resume reaches
the uninterrupted run's weights; SIGTERM saves and exits 130; a non-finite loss is stopped or skipped as
configured and never reaches a checkpoint (docs/reliability.md)."""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import tiny_overrides
from fnac.checkpoint import read_checkpoint
from fnac.config import load_config, resolve_config_path
from fnac.fileio import is_temp_name
from fnac.train import NonFiniteLossError, fit

STEPS_PER_EPOCH = 3
EPOCHS = 2


def _overrides(root, out, extra=()) -> list[str]:
    # no validation split (the list does not exist: fit only warns), few steps, `latest` after every step
    return tiny_overrides(root, out) + [
        f"train.epochs={EPOCHS}",
        f"train.max_steps_per_epoch={STEPS_PER_EPOCH}",
        "train.save_every_steps=1",
        f"data.val_list={Path(root) / 'no_such_val.txt'}",
        "train.device=cpu",
        *extra,
    ]


def _cfg(root, out, extra=()):
    return load_config(resolve_config_path("small"), _overrides(root, out, extra))


def _spawn(root, out, resume: bool) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "fnac", "train", "--config", "small", *_overrides(root, out)]
    if resume:
        cmd.insert(4, "--resume")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _wait_for_new_checkpoint(proc: subprocess.Popen, latest: Path, after_step: int) -> bool:
    """Poll (bounded count, no wall-clock assertion) until `latest` holds a step past `after_step`.
    False when the process ended first."""
    for _ in range(6000):
        if proc.poll() is not None:
            return False
        if latest.is_file():
            try:
                if read_checkpoint(latest)["step"] > after_step:
                    return True
            except Exception:  # noqa: BLE001 - a reader may race the rename; the next poll sees it
                pass
        time.sleep(0.02)
    raise AssertionError("training never wrote a new checkpoint")


def _assert_finite(ck: dict) -> None:
    for k, v in ck["model"].items():
        if v.is_floating_point():
            assert torch.isfinite(v).all(), k


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_matches_uninterrupted_run(tiny_synth, tmp_path):
    # the reference runs the same command in the same environment (thread count changes float sums)
    proc = _spawn(tiny_synth, tmp_path / "ref", resume=False)
    _, err = proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    want = read_checkpoint(tmp_path / "ref" / "latest.pt")

    out = tmp_path / "killed"
    latest = out / "latest.pt"
    rng = random.Random(20261127)
    step_seen, resume, kills = 0, False, []
    for sig in (signal.SIGKILL, signal.SIGKILL, signal.SIGTERM):
        proc = _spawn(tiny_synth, out, resume)
        if _wait_for_new_checkpoint(proc, latest, step_seen):
            time.sleep(rng.uniform(0.0, 0.6))  # mid-step or mid-write of the next checkpoint
            proc.send_signal(sig)
        _, err = proc.communicate()
        if sig == signal.SIGKILL:
            assert proc.returncode in (-signal.SIGKILL, 0), err.decode()[-2000:]
        else:  # SIGTERM: checkpoint at the next step boundary, exit 130 (or 0 when training had ended)
            assert proc.returncode in (130, 0), err.decode()[-2000:]
            if proc.returncode == 130:
                assert b"stopped by signal" in err
        ck = read_checkpoint(latest)  # always loadable, whatever the moment of the kill
        _assert_finite(ck)
        assert ck["step"] >= step_seen  # never goes backwards
        kills.append((sig, proc.returncode, ck["step"]))
        step_seen, resume = ck["step"], True
        if ck["epoch"] == EPOCHS:  # finished before the signal arrived
            break
    print("kills (signal, exit code, step in latest):", kills)
    # at least one kill landed mid-run (the first process cannot finish within 0.6 s of its first save)
    assert kills[0][1] == -signal.SIGKILL and kills[0][2] < EPOCHS * STEPS_PER_EPOCH, kills
    if read_checkpoint(latest)["epoch"] < EPOCHS:
        proc = _spawn(tiny_synth, out, resume=True)
        _, err = proc.communicate()
        assert proc.returncode == 0, err.decode()[-2000:]
    got = read_checkpoint(latest)
    assert got["step"] == want["step"] and got["epoch"] == want["epoch"] == EPOCHS
    for k, v in want["model"].items():
        assert torch.allclose(v.float(), got["model"][k].float(), atol=1e-5), k
    for name in os.listdir(out):  # an interrupted write may leave a temporary file, never a broken latest
        assert not name.endswith(".pt") or name in ("latest.pt", "best.pt"), name


def _nan_at(monkeypatch, bad_steps: set[int]):
    """Make fnac.train.compute_terms return NaN losses on the given calls (0-based)."""
    import fnac.train as tr

    real = tr.compute_terms
    calls = {"n": 0}

    def fake(model, batch, cfg, device):
        terms = real(model, batch, cfg, device)
        i = calls["n"]
        calls["n"] += 1
        if i in bad_steps:
            terms = {k: v * float("nan") for k, v in terms.items()}
        return terms

    monkeypatch.setattr(tr, "compute_terms", fake)


def _records(out: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_nonfinite_loss_stop_names_the_batch_and_keeps_checkpoint_finite(tiny_synth, tmp_path, monkeypatch):
    _nan_at(monkeypatch, {1})
    out = tmp_path / "stop"
    with pytest.raises(NonFiniteLossError, match="batch ids: .*train_"):
        fit(_cfg(tiny_synth, out, ["train.on_nonfinite=stop", "train.epochs=1"]))
    rec = [r for r in _records(out) if r["kind"] == "nonfinite"]
    assert len(rec) == 1 and rec[0]["step"] == 1 and len(rec[0]["ids"]) == 8
    assert all(i.startswith("train_") for i in rec[0]["ids"])
    ck = read_checkpoint(out / "latest.pt")  # the step before the NaN
    assert ck["step"] == 1
    _assert_finite(ck)


def test_nonfinite_loss_skip_continues_and_never_saves_nan(tiny_synth, tmp_path, monkeypatch):
    _nan_at(monkeypatch, {0, 2})
    out = tmp_path / "skip"
    res = fit(_cfg(tiny_synth, out, ["train.on_nonfinite=skip", "train.epochs=1"]))
    assert res.steps == STEPS_PER_EPOCH  # skipped batches still advance the step counter
    bad = [r for r in _records(out) if r["kind"] == "nonfinite"]
    assert [r["step"] for r in bad] == [0, 2]
    steps = [r for r in _records(out) if r["kind"] == "step"]
    assert steps and all(math.isfinite(r["loss"]) for r in steps)
    epoch = [r for r in _records(out) if r["kind"] == "epoch"]
    assert len(epoch) == 1 and math.isfinite(epoch[0]["loss"])
    ck = read_checkpoint(out / "latest.pt")
    _assert_finite(ck)
    # resuming a run that already finished (e.g. killed after its last save) trains nothing and keeps it
    again = fit(_cfg(tiny_synth, out, ["train.on_nonfinite=skip", "train.epochs=1"]), resume=True)
    assert again.epochs_done == 1 and again.steps == STEPS_PER_EPOCH
    after = read_checkpoint(out / "latest.pt")
    assert all(torch.equal(after["model"][k], ck["model"][k]) for k in ck["model"])


def test_sigkill_in_the_middle_of_a_checkpoint_write_keeps_the_old_one(tmp_path):
    """Deterministic version of a kill during a save: the child SIGKILLs itself after writing part of
    the new checkpoint (before fsync and rename)."""
    from fnac.checkpoint import atomic_save

    latest = tmp_path / "latest.pt"
    atomic_save({"model": {"w": torch.arange(4.0)}, "step": 7}, latest)
    child = (
        "import os, signal, sys, torch\n"
        "from fnac.checkpoint import atomic_save\n"
        "def half(obj, f):\n"
        "    f.write(b'PK' + b'\\0' * 100000); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
        "torch.save = half\n"
        f"atomic_save({{'model': {{'w': torch.zeros(4)}}, 'step': 8}}, {str(latest)!r})\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    proc = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    ck = read_checkpoint(latest)  # the previous checkpoint, intact
    assert ck["step"] == 7 and torch.equal(ck["model"]["w"], torch.arange(4.0))
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "latest.pt"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".latest.") and is_temp_name(leftovers[0])


def test_a_new_run_in_the_folder_removes_stray_checkpoint_temporaries(tiny_synth, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    stray = out / ".latest.9f3a1c0d.tmp.pt"  # what a kill during atomic_save leaves behind
    old = out / ".latest.pt.abc123.tmp"  # the name earlier versions used
    for p in (stray, old):
        p.write_bytes(b"PK" + b"\0" * 1000)
    keep = out / ".notes.txt"
    keep.write_text("not ours")
    fit(_cfg(tiny_synth, out, ["train.epochs=1"]))
    assert not stray.exists() and not old.exists() and keep.exists()
    assert read_checkpoint(out / "latest.pt")["epoch"] == 1
