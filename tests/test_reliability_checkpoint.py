"""Checkpoint and training faults (docs/reliability.md, "Checkpoints and training faults"): a kill while
best.pt is written, a full disk or read-only run folder, corrupt or mismatched checkpoints, and the
accounting of training samples that cannot be used."""

from __future__ import annotations

import errno
import os
import random
import shutil
from pathlib import Path

import pytest
import torch

from conftest import tiny_overrides
from fnac import cli
from fnac.checkpoint import (
    atomic_save,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from fnac.config import ModelConfig, load_config, resolve_config_path
from fnac.errors import CheckpointError, DataError, FnacError
from fnac.fileio import is_temp_name
from fnac.models.fnac import FNAC
from fnac.train import fit

STEPS = 3


def _overrides(root, out, extra=()) -> list[str]:
    return tiny_overrides(root, out) + [
        "train.epochs=1",
        f"train.max_steps_per_epoch={STEPS}",
        "train.save_every_steps=1",
        "train.device=cpu",
        *extra,
    ]


def _cfg(root, out, extra=()):
    return load_config(resolve_config_path("small"), _overrides(root, out, extra))


def _no_val(root) -> str:
    return f"data.val_list={Path(root) / 'no_such_val.txt'}"


class _Killed(BaseException):
    """Stands for a SIGKILL: nothing after the raise runs, no handler catches it."""


def _one_line_error(err: str, cmd: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith(f"fnac {cmd}:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


def _tensors_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------ 1. best.pt vs latest.pt
@pytest.mark.parametrize("kill_at", [1, 2])
def test_kill_between_the_end_of_epoch_writes_leaves_a_best_pt_that_resume_completes(
    tiny_synth, tmp_path, monkeypatch, kill_at
):
    """A kill at the first or the second of the two end-of-epoch writes (latest.pt and best.pt, in
    whichever order fit writes them): after --resume, best.pt exists, holds the epoch that latest's
    `best` record names, and equals the best.pt of an uninterrupted run."""
    import fnac.train as tr

    ref = fit(_cfg(tiny_synth, tmp_path / "ref"))
    assert ref.best is not None and ref.best["epoch"] == 0
    want = read_checkpoint(tmp_path / "ref" / "best.pt")

    out = tmp_path / "run"
    real = tr.save_checkpoint
    n_end = {"n": 0}

    def killing(path, model, cfg, **state):
        if state["batch_in_epoch"] == 0:  # an end-of-epoch write
            n_end["n"] += 1
            if n_end["n"] == kill_at:
                raise _Killed(Path(path).name)
        real(path, model, cfg, **state)

    monkeypatch.setattr(tr, "save_checkpoint", killing)
    with pytest.raises(_Killed):
        fit(_cfg(tiny_synth, out))
    monkeypatch.setattr(tr, "save_checkpoint", real)
    fit(_cfg(tiny_synth, out), resume=True)
    latest, best = read_checkpoint(out / "latest.pt"), read_checkpoint(out / "best.pt")
    assert latest["best"] is not None and best["best"] == latest["best"]
    assert best["epoch"] == latest["best"]["epoch"] + 1
    for k, v in want["model"].items():
        assert torch.allclose(v.float(), best["model"][k].float(), atol=1e-5), k


@pytest.mark.parametrize("damage", ["deleted", "stale", "corrupt"])
def test_resume_rebuilds_a_best_pt_that_latest_says_is_newer(tiny_synth, tmp_path, damage):
    """Runs written before best.pt came first could be killed after latest.pt recorded a new best; when
    latest.pt still holds those weights (the best epoch was its last), --resume rewrites best.pt."""
    out = tmp_path / "run"
    fit(_cfg(tiny_synth, out))
    latest = read_checkpoint(out / "latest.pt")
    best_pt = out / "best.pt"
    if damage == "deleted":
        best_pt.unlink()
    elif damage == "stale":  # an older best.pt: same file, earlier epoch and other weights
        old = read_checkpoint(best_pt)
        old["best"] = {**old["best"], "epoch": -1}
        old["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in old["model"].items()}
        old.pop("sha256", None)
        torch.save(old, best_pt)
    else:
        _flip_tensor(best_pt, read_checkpoint(best_pt)["model"], "img_proj.weight")
    fit(_cfg(tiny_synth, out), resume=True)
    got = read_checkpoint(best_pt)
    assert got["best"] == latest["best"]
    assert _tensors_equal(got["model"], latest["model"])


# ------------------------------------------------------------------------- 2. full disk, read-only folder
def _small_checkpoint(path: Path, cfg, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = FNAC(cfg.model, load_pretrained=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = sum((p * torch.randn_like(p)).sum() for p in model.parameters())  # distinct optimizer moments
    x.backward()
    opt.step()
    save_checkpoint(
        path, model, cfg, optimizer=opt.state_dict(), epoch=1, batch_in_epoch=0, step=3, best=None, world_size=1
    )
    return read_checkpoint(path)


@pytest.fixture
def small_cfg(tiny_synth, tmp_path):
    return load_config(resolve_config_path("small"), tiny_overrides(tiny_synth, tmp_path / "cfg"))


def _write_half_then(exc):
    def fake_save(obj, f, *a, **k):
        f.write(b"PK" + b"\0" * 5000)
        raise exc

    return fake_save


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 2368 vs 2262"),
        RuntimeError(
            "[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed writing "
            "file data/3: file write failed"
        ),
    ],
    ids=["oserror", "torch-unexpected-pos", "torch-write-failed"],
)
def test_full_disk_names_the_file_keeps_the_previous_checkpoint_and_no_temp(tmp_path, small_cfg, monkeypatch, exc):
    import fnac.checkpoint as ck

    path = tmp_path / "latest.pt"
    before = _small_checkpoint(path, small_cfg)
    monkeypatch.setattr(torch, "save", _write_half_then(exc))
    # the torch error names no cause: the free space of the folder tells (here: none left)
    monkeypatch.setattr(ck, "_free_bytes", lambda folder: 0)
    with pytest.raises(FnacError, match=r"latest\.pt.*no space left on device") as e:
        atomic_save({"model": {}}, path)
    assert "\n" not in str(e.value)
    monkeypatch.undo()
    assert _tensors_equal(read_checkpoint(path)["model"], before["model"])
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]


def test_torch_write_failure_with_free_space_says_what_torch_said(tmp_path, small_cfg, monkeypatch):
    import fnac.checkpoint as ck

    path = tmp_path / "latest.pt"
    _small_checkpoint(path, small_cfg)
    monkeypatch.setattr(torch, "save", _write_half_then(RuntimeError("[enforce fail] unexpected pos 1 vs 2")))
    monkeypatch.setattr(ck, "_free_bytes", lambda folder: 10 << 30)
    with pytest.raises(FnacError, match=r"latest\.pt: cannot write.*unexpected pos 1 vs 2"):
        atomic_save({"model": {}}, path)


def test_full_disk_during_training_is_one_line_from_the_cli(tiny_synth, tmp_path, monkeypatch, capsys):
    import fnac.checkpoint as ck

    out = tmp_path / "run"
    real = torch.save
    calls = {"n": 0}

    def fills_up(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # the first checkpoint is written, the second finds the disk full
            f.write(b"PK" + b"\0" * 5000)
            raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 2368 vs 2262")
        return real(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", fills_up)
    monkeypatch.setattr(ck, "_free_bytes", lambda folder: 0)
    rc = cli.main(["train", "--config", "small", *_overrides(tiny_synth, out, [_no_val(tiny_synth)])])
    line = _one_line_error(capsys.readouterr().err, "train")
    assert rc == 1
    assert str(out / "latest.pt") in line and "no space left on device" in line
    monkeypatch.undo()
    assert read_checkpoint(out / "latest.pt")["step"] == 1  # the previous checkpoint, still loadable
    assert not [p for p in out.iterdir() if is_temp_name(p.name)]


def _refuse_writes_under(monkeypatch, folder: Path, code: int) -> None:
    """Simulate a read-only (EROFS) or forbidden (EACCES) folder: as root, chmod does not stop writes."""
    import tempfile

    real = tempfile.mkstemp

    def mkstemp(*a, dir=None, **k):
        if dir is not None and Path(dir).resolve().is_relative_to(folder.resolve()):
            raise OSError(code, os.strerror(code), str(Path(dir) / "tmpfile"))
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


@pytest.mark.parametrize("code,cause", [(errno.EROFS, "read-only"), (errno.EACCES, "permission denied")])
@pytest.mark.parametrize("resume", [False, True])
def test_unwritable_run_folder_is_one_line_and_keeps_the_checkpoint(
    tiny_synth, tmp_path, monkeypatch, capsys, code, cause, resume
):
    out = tmp_path / "run"
    args = ["train", "--config", "small", *_overrides(tiny_synth, out, [_no_val(tiny_synth)])]
    if resume:
        fit(_cfg(tiny_synth, out, [_no_val(tiny_synth)]))
        before = read_checkpoint(out / "latest.pt")
        args.insert(3, "--resume")
    else:
        out.mkdir()
    _refuse_writes_under(monkeypatch, out, code)
    rc = cli.main(args)
    line = _one_line_error(capsys.readouterr().err, "train")
    assert rc == 1 and str(out) in line and cause in line.lower()
    if resume:
        assert _tensors_equal(read_checkpoint(out / "latest.pt")["model"], before["model"])


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_chmod_read_only_run_folder(tiny_synth, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    out.chmod(0o555)
    try:
        rc = cli.main(["train", "--config", "small", *_overrides(tiny_synth, out, [_no_val(tiny_synth)])])
    finally:
        out.chmod(0o755)
    line = _one_line_error(capsys.readouterr().err, "train")
    assert rc == 1 and str(out) in line and "permission denied" in line.lower()


# ---------------------------------------------------------------------------- 3. corrupt checkpoints
def _flip_tensor(path: Path, sd: dict, key: str, delta: float = 1e4) -> None:
    """Add `delta` to the first value of tensor `key` where its bytes lie inside the zip."""
    data = bytearray(path.read_bytes())
    t = sd[key].contiguous()
    raw = t.numpy().tobytes()
    at = data.find(raw)
    assert at > 0 and data.find(raw, at + 1) < 0
    changed = t.clone().reshape(-1)
    changed[0] += delta
    data[at : at + len(raw)] = changed.numpy().tobytes()
    path.write_bytes(bytes(data))


def test_a_tensor_changed_inside_the_file_is_refused_naming_it(tmp_path, small_cfg):
    path = tmp_path / "latest.pt"
    good = _small_checkpoint(path, small_cfg)
    _flip_tensor(path, good["model"], "imgnet.conv1.weight")
    with pytest.raises(CheckpointError, match=r"latest\.pt.*(corrupt|checksum|sha256)") as e:
        read_checkpoint(path)
    assert "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match=r"latest\.pt"):
        load_checkpoint(path)  # what `fnac eval` and `fnac localize` load through


def test_an_optimizer_tensor_changed_inside_the_file_is_refused(tmp_path, small_cfg):
    path = tmp_path / "latest.pt"
    good = _small_checkpoint(path, small_cfg)
    exp_avg = good["optimizer"]["state"][0]["exp_avg"]
    _flip_tensor(path, {"m": exp_avg}, "m")
    with pytest.raises(CheckpointError, match=r"latest\.pt.*optimizer"):
        read_checkpoint(path)


def test_eight_random_bytes_changed_are_refused_or_harmless(tmp_path, small_cfg):
    """Whatever 8 bytes change, the file is refused with a one-line CheckpointError naming it, or it
    loads with exactly the content that was written (bytes that only pad the zip)."""
    path = tmp_path / "ck.pt"
    good = _small_checkpoint(path, small_cfg)
    data = path.read_bytes()
    rng = random.Random(13)
    refused = 0
    for i in range(40):
        bad = bytearray(data)
        for pos in rng.sample(range(len(bad)), 8):
            bad[pos] = (bad[pos] + rng.randrange(1, 256)) % 256
        p = tmp_path / f"bad{i}.pt"
        p.write_bytes(bytes(bad))
        try:
            got = read_checkpoint(p)
        except CheckpointError as e:
            assert f"bad{i}.pt" in str(e) and "\n" not in str(e)
            refused += 1
            continue
        assert _tensors_equal(got["model"], good["model"]), i
        assert {k: v for k, v in got.items() if k not in ("model", "optimizer")} == {
            k: v for k, v in good.items() if k not in ("model", "optimizer")
        }, i
    assert refused >= 30  # nearly all of the file is tensor data or structure


def test_checkpoints_without_a_checksum_still_load(tmp_path, small_cfg):
    path = tmp_path / "old.pt"
    good = _small_checkpoint(path, small_cfg)
    old = dict(good)
    old.pop("sha256", None)
    torch.save(old, path)
    assert _tensors_equal(load_checkpoint(path).state_dict(), good["model"])
    # the authors' layout: 'module.'-prefixed keys, no format, numpy scalars for the scores
    import numpy as np

    ref = tmp_path / "ref.pt"
    sd = FNAC(ModelConfig(width=8, embed_dim=16), load_pretrained=False).state_dict()
    torch.save(
        {
            "model": {f"module.{k}": v for k, v in sd.items()},
            "optimizer": {},
            "epoch": 3,
            "best_cIoU": np.float64(0.3),
            "best_Auc": np.float64(0.4),
        },
        ref,
    )
    assert _tensors_equal(load_checkpoint(ref).state_dict(), sd)


def test_resume_from_a_corrupt_latest_is_one_line(tiny_synth, tmp_path, capsys):
    out = tmp_path / "run"
    fit(_cfg(tiny_synth, out, [_no_val(tiny_synth)]))
    _flip_tensor(out / "latest.pt", read_checkpoint(out / "latest.pt")["model"], "img_proj.weight")
    rc = cli.main(["train", "--config", "small", "--resume", *_overrides(tiny_synth, out, [_no_val(tiny_synth)])])
    line = _one_line_error(capsys.readouterr().err, "train")
    assert rc == 1 and str(out / "latest.pt") in line


def test_resume_with_another_model_width_is_refused_in_one_line(tiny_synth, tmp_path, capsys):
    out = tmp_path / "run"
    fit(_cfg(tiny_synth, out, [_no_val(tiny_synth)]))
    before = read_checkpoint(out / "latest.pt")
    rc = cli.main(
        [
            "train",
            "--config",
            "small",
            "--resume",
            *_overrides(tiny_synth, out, [_no_val(tiny_synth), "model.width=16"]),
        ]
    )
    line = _one_line_error(capsys.readouterr().err, "train")
    assert rc == 1
    assert str(out / "latest.pt") in line and "model.width" in line and "8" in line and "16" in line
    assert _tensors_equal(read_checkpoint(out / "latest.pt")["model"], before["model"])


# ------------------------------------------------------------------------ 4. samples that cannot be used
def _copy_set(tiny_synth, tmp_path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(tiny_synth, root)
    return root


BROKEN = ("train_000000", "train_000001", "train_000002")


def _break(root: Path) -> None:
    for sid in BROKEN:
        (root / "frames" / f"{sid}.jpg").unlink()


def _full_epochs(root, out, epochs, frac):
    # every sample visited once per epoch (48 samples, 6 batches of 8); no validation
    return load_config(
        resolve_config_path("small"),
        tiny_overrides(root, out)
        + [f"train.epochs={epochs}", "train.device=cpu", _no_val(root), f"data.max_skip_fraction={frac}"],
    )


def test_skipped_samples_are_counted_per_epoch(tiny_synth, tmp_path):
    root = _copy_set(tiny_synth, tmp_path)
    for sid in BROKEN:
        (root / "frames" / f"{sid}.jpg").write_bytes(b"")  # present but unreadable
    res = fit(_full_epochs(root, tmp_path / "run", 3, 0.5))
    assert [r["skipped"] for r in res.history] == [3, 3, 3]


def _vanish_after_first_epoch(monkeypatch, root: Path) -> None:
    import fnac.train as tr

    real = tr.save_checkpoint

    def save_then_vanish(path, model, cfg, **state):
        real(path, model, cfg, **state)
        if state["epoch"] == 1 and state["batch_in_epoch"] == 0 and (root / "frames" / f"{BROKEN[0]}.jpg").exists():
            _break(root)

    monkeypatch.setattr(tr, "save_checkpoint", save_then_vanish)


def test_files_vanishing_mid_run_stop_an_uninterrupted_and_a_resumed_run_alike(tiny_synth, tmp_path, monkeypatch):
    # uninterrupted: 3 of 48 training files vanish after epoch 1; 3/48 > 0.05
    root = _copy_set(tiny_synth, tmp_path)
    _vanish_after_first_epoch(monkeypatch, root)
    with pytest.raises(DataError, match=r"max_skip_fraction=0\.05"):
        fit(_full_epochs(root, tmp_path / "straight", 2, 0.05))
    monkeypatch.undo()

    # interrupted after epoch 1, the same files vanish, then --resume
    root2 = tmp_path / "data2"
    shutil.copytree(tiny_synth, root2)
    fit(_full_epochs(root2, tmp_path / "resumed", 1, 0.05))
    _break(root2)
    with pytest.raises(DataError, match=r"max_skip_fraction=0\.05") as e:
        fit(_full_epochs(root2, tmp_path / "resumed", 2, 0.05), resume=True)
    assert "train_00000" in str(e.value)


def test_files_vanishing_mid_run_are_counted_alike_below_the_threshold(tiny_synth, tmp_path, monkeypatch):
    root = _copy_set(tiny_synth, tmp_path)
    _vanish_after_first_epoch(monkeypatch, root)
    straight = fit(_full_epochs(root, tmp_path / "straight", 2, 0.5))
    monkeypatch.undo()
    assert [r["skipped"] for r in straight.history] == [0, 3]

    root2 = tmp_path / "data2"
    shutil.copytree(tiny_synth, root2)
    fit(_full_epochs(root2, tmp_path / "resumed", 1, 0.5))
    _break(root2)
    resumed = fit(_full_epochs(root2, tmp_path / "resumed", 2, 0.5), resume=True)
    assert [r["skipped"] for r in resumed.history] == [3]


def test_eval_and_localize_refuse_a_corrupt_checkpoint_in_one_line(tiny_synth, tmp_path, small_cfg, capsys):
    path = tmp_path / "best.pt"
    good = _small_checkpoint(path, small_cfg)
    _flip_tensor(path, good["model"], "imgnet.conv1.weight")
    rc = cli.main(
        [
            "eval",
            "--checkpoint",
            str(path),
            "--config",
            "small",
            "--no-baselines",
            "--device",
            "cpu",
            "--workers",
            "0",
            "--out",
            str(tmp_path / "eval"),
            f"data.root={tiny_synth}",
            "data.image_size=64",
            "data.audio_duration=1.0",
        ]
    )
    line = _one_line_error(capsys.readouterr().err, "eval")
    assert rc == 1 and str(path) in line and "corrupt" in line
    rc = cli.main(
        [
            "localize",
            "--image",
            str(Path(tiny_synth) / "frames" / "test_000000.jpg"),
            "--audio",
            str(Path(tiny_synth) / "audio" / "test_000000.wav"),
            "--checkpoint",
            str(path),
            "--out",
            str(tmp_path / "loc"),
        ]
    )
    line = _one_line_error(capsys.readouterr().err, "localize")
    assert rc == 1 and str(path) in line and "corrupt" in line


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds the file being written through /proc")
def test_sigkill_while_best_pt_is_written_then_resume(tiny_synth, tmp_path):
    """A real SIGKILL in the middle of writing best.pt (the child kills itself once part of the temporary
    file is written); `fnac train --resume` then leaves a best.pt that matches latest's best record."""
    import signal
    import subprocess
    import sys

    out = tmp_path / "run"
    args = _overrides(tiny_synth, out)
    child = (
        "import os, signal, sys, torch\n"
        "real = torch.save\n"
        "def save(obj, f, *a, **k):\n"
        "    if os.path.basename(os.readlink(f'/proc/self/fd/{f.fileno()}')).startswith('.best.'):\n"
        "        f.write(b'PK' + b'\\0' * 100000); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(obj, f, *a, **k)\n"
        "torch.save = save\n"
        "from fnac import cli\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    proc = subprocess.run(
        [sys.executable, "-c", child, "train", "--config", "small", *args], env=env, capture_output=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert not (out / "best.pt").exists()
    proc = subprocess.run(
        [sys.executable, "-m", "fnac", "train", "--config", "small", "--resume", *args], env=env, capture_output=True
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    latest, best = read_checkpoint(out / "latest.pt"), read_checkpoint(out / "best.pt")
    assert latest["best"] is not None and best["best"] == latest["best"] and best["epoch"] == latest["epoch"]
    assert not [p for p in out.iterdir() if is_temp_name(p.name)]


def test_load_model_and_config_reads_once_and_matches_the_two_calls(tmp_path, small_cfg, monkeypatch):
    """load_model_and_config: the model of load_checkpoint and the config of checkpoint_config, from a
    single read of the file; None as the config of the authors' files."""
    import fnac.checkpoint as ck
    from fnac.config import to_dict

    path = tmp_path / "ours.pt"
    good = _small_checkpoint(path, small_cfg)
    reads = []
    real = ck.read_checkpoint
    monkeypatch.setattr(ck, "read_checkpoint", lambda p: reads.append(p) or real(p))
    model, cfg = ck.load_model_and_config(path)
    assert len(reads) == 1
    assert _tensors_equal(model.state_dict(), good["model"]) and not model.training
    assert to_dict(cfg) == to_dict(ck.checkpoint_config(path)) == good["config"]
    assert cfg.model.pretrained == good["config"]["model"]["pretrained"]  # the model's copy is cleared alone
    assert model.pretrained_weights == good.get("pretrained")
    ref = tmp_path / "ref.pt"
    sd = FNAC(ModelConfig(width=8, embed_dim=16), load_pretrained=False).state_dict()
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, ref)
    loaded = ck.load_model_and_config(ref)
    assert loaded.config is None and _tensors_equal(loaded.model.state_dict(), sd)
