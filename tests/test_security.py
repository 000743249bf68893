"""Loading a file never runs code from it: a checkpoint or weights file whose pickle calls a function
when unpickled is refused, on every path that loads one (library, eval, localize, serve, train --resume,
model.pretrained), and the payload never runs. Real files keep loading: ours, the authors' (numpy
scalars pickled under numpy 1.x names), torchvision weight files."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch

import fnac
from conftest import tiny_overrides
from fnac.checkpoint import read_checkpoint
from fnac.cli import main
from fnac.config import ModelConfig
from fnac.errors import CheckpointError
from fnac.models.fnac import FNAC

SMALL = dict(width=8, embed_dim=16)


class _Payload:
    """Unpickling this calls open(marker, 'w'): it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _state():
    torch.manual_seed(0)
    return FNAC(ModelConfig(**SMALL), load_pretrained=False).state_dict()


def _malicious(path, marker, **extra):
    obj = {"model": _state(), "epoch": 1, "evil": _Payload(marker), **extra}
    torch.save(obj, path)
    return path


def test_payload_really_runs_under_a_plain_unpickler(tmp_path):
    """The fixture is a real attack: torch.load without weights_only would run it."""
    marker = tmp_path / "pwned"
    path = _malicious(tmp_path / "evil.pth", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_library_refuses_and_names_file_and_type(tmp_path):
    marker = tmp_path / "pwned"
    path = _malicious(tmp_path / "evil.pth", marker)
    with pytest.raises(CheckpointError) as e:
        fnac.load_checkpoint(path)
    msg = str(e.value)
    assert "evil.pth" in msg and "io.open" in msg and "\n" not in msg
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        read_checkpoint(path)
    assert not marker.exists()


class _SystemPayload:
    """Unpickling this calls os.system, a function of a module torch blocks outright (its error is
    worded differently from that of an ordinary disallowed function)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_blocked_module_payload_is_named_without_advice_to_disable_protection(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": _state(), "evil": _SystemPayload(marker)}, path)
    with pytest.raises(CheckpointError) as e:
        fnac.load_checkpoint(path)
    msg = str(e.value)
    assert "evil.pth" in msg and "'posix.system'" in msg and "not allowed" in msg, msg
    assert "weights_only" not in msg and "\n" not in msg
    assert main(["export", str(path), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "'posix.system'" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "out").exists()
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint at all")  # not a pickle of tensors either
    with pytest.raises(CheckpointError) as e:
        fnac.load_checkpoint(tmp_path / "garbage.pth")
    msg = str(e.value)
    assert "garbage.pth: cannot read checkpoint (Unsupported operand" in msg, msg
    assert "weights_only" not in msg and "file an issue" not in msg and "\n" not in msg


def test_pretrained_weights_path_refuses(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "resnet18.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 7, 7), "x": _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="io.open"):
        FNAC(ModelConfig(pretrained=str(path), **SMALL))
    assert not marker.exists()


def _cli_refuses(argv, marker, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1, err
    assert "io.open" in err and "Traceback" not in err
    assert not marker.exists()


def test_eval_localize_serve_refuse(tmp_path, tiny_synth, capsys):
    marker = tmp_path / "pwned"
    path = str(_malicious(tmp_path / "evil.pth", marker))
    _cli_refuses(["eval", "--checkpoint", path, "--config", "small", f"data.root={tiny_synth}"], marker, capsys)
    clip = str(tiny_synth / "clips" / "clip_000.mp4")
    _cli_refuses(["localize", clip, "--checkpoint", path, "--out", str(tmp_path / "loc"), "--quiet"], marker, capsys)
    _cli_refuses(["serve", "--checkpoint", path, "--port", "8765"], marker, capsys)


def test_train_resume_refuses(tmp_path, tiny_synth, capsys):
    marker = tmp_path / "pwned"
    out = tmp_path / "run"
    out.mkdir()
    _malicious(out / "latest.pt", marker, format="fnac")
    _cli_refuses(["train", "--config", "small", "--resume", *tiny_overrides(tiny_synth, out)], marker, capsys)


def _numpy1_pickle(obj) -> bytes:
    """torch.save of `obj`, with numpy's module written as numpy 1.x wrote it (numpy.core...)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            dst.writestr(info, data)
    return out.getvalue()


def test_authors_file_with_numpy1_scalars_still_loads(tmp_path):
    sd = _state()
    obj = {
        "model": {"module." + k: v for k, v in sd.items()},
        "optimizer": {"state": {}, "param_groups": []},
        "epoch": 20,
        "best_cIoU": np.float64(0.39),
        "best_Auc": np.float64(0.40),
    }
    path = tmp_path / "best.pth"
    path.write_bytes(_numpy1_pickle(obj))
    ck = read_checkpoint(path)
    assert float(ck["best_cIoU"]) == 0.39 and float(ck["best_Auc"]) == 0.40
    model = fnac.load_checkpoint(path)
    assert torch.equal(model.state_dict()["img_proj.weight"], sd["img_proj.weight"])


def test_our_checkpoints_need_nothing_beyond_weights_only(tmp_path, tiny_synth):
    """A checkpoint written by training loads under plain torch.load(weights_only=True), no allow-list."""
    out = tmp_path / "run"
    assert main(["train", "--config", "small", *tiny_overrides(tiny_synth, out), "train.epochs=1"]) == 0
    for name in ("latest.pt", "best.pt"):
        obj = torch.load(out / name, weights_only=True)
        assert obj["format"] == "fnac"
