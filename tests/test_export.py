"""`fnac export`: checkpoints (ours and the authors') -> model.safetensors + config.json + README.md,
loaded back to identical outputs by fnac.load_checkpoint and every --checkpoint option, never
unpickling; a folder whose parts do not match is refused with one line."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

import fnac
from fnac.checkpoint import checkpoint_config, save_checkpoint
from fnac.cli import main
from fnac.config import Config, ModelConfig, to_dict
from fnac.errors import CheckpointError, FnacError
from fnac.models.fnac import FNAC

X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
S = torch.randn(2, 1, 257, 30, generator=torch.Generator().manual_seed(1))
BEST = {"ciou50": 0.3125, "auc": 0.35, "mean_ciou": 0.3, "n": 16, "epoch": 1}


def _maps(model):
    with torch.no_grad():
        return model.eval().localize(X, S)


def _ours(tmp_path, root="data/somewhere"):
    cfg = Config()
    cfg.model = ModelConfig(width=8, embed_dim=16, visual_layers=2, proj_bn=True, pretrained="none")
    cfg.data.root = str(root)
    cfg.data.image_size = 64
    cfg.data.audio_duration = 1.0
    cfg.data.num_workers = 0
    torch.manual_seed(0)
    model = FNAC(cfg.model).eval()
    path = tmp_path / "best.pt"
    save_checkpoint(path, model, cfg, optimizer={"state": {}, "param_groups": []}, epoch=2, step=12, best=BEST)
    return path, model, cfg


def test_export_of_our_checkpoint_round_trips(tmp_path, capsys):
    path, model, cfg = _ours(tmp_path)
    out = tmp_path / "shared"
    assert main(["export", str(path), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = fnac.load_checkpoint(out)
    assert torch.equal(_maps(loaded), _maps(model))
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert to_dict(checkpoint_config(out)) == to_dict(cfg)
    meta = json.loads((out / "config.json").read_text())
    assert meta["model"]["width"] == 8 and meta["model"]["visual_layers"] == 2
    assert meta["best"] == BEST and meta["source"]["kind"] == "fnac" and meta["source"]["file"] == "best.pt"
    card = (out / "README.md").read_text()
    for text in (
        "data/somewhere",
        "`vggss`",
        f"fnac {fnac.__version__}",
        "| 31.25 | 35.00 | 30.00 |",
        "after epoch 2",
        "random initialisation",
    ):
        assert text in card, text
    # the folder holds tensors only: no optimizer state
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert set(f.keys()) == set(model.state_dict())
    # an existing export is not overwritten by accident
    assert main(["export", str(path), str(out)]) == 1
    assert "--force" in capsys.readouterr().err
    assert main(["export", str(path), str(out), "--force"]) == 0


def test_export_of_an_authors_file_round_trips(tmp_path):
    torch.manual_seed(3)
    src = FNAC(ModelConfig(width=8, embed_dim=16, visual_layers=3), load_pretrained=False).eval()
    ref = {
        "model": {"module." + k: v for k, v in src.state_dict().items()},
        "optimizer": {"state": {}, "param_groups": []},
        "epoch": 20,
        "best_cIoU": np.float64(0.39),
        "best_Auc": np.float64(0.40),
    }
    path = tmp_path / "fnac_vggss144k.pth"
    torch.save(ref, path)
    out = tmp_path / "authors"
    assert main(["export", str(path), str(out)]) == 0
    loaded = fnac.load_checkpoint(out)
    assert torch.equal(_maps(loaded), _maps(src))
    assert torch.equal(_maps(loaded), _maps(fnac.load_checkpoint(path)))
    assert loaded.cfg.visual_layers == 3 and loaded.cfg.embed_dim == 16
    assert checkpoint_config(out) is None  # nothing known about the run: eval takes --config
    meta = json.loads((out / "config.json").read_text())
    assert meta["source"]["kind"] == "authors" and meta["run_config"] is None
    assert meta["best"] == {"best_cIoU": 0.39, "best_Auc": 0.40}
    card = (out / "README.md").read_text()
    assert "released by the FNAC authors" in card and "best_cIoU = 0.39" in card


def _no_unpickling(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(torch.serialization, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)


def test_exported_folder_loads_with_pickle_disabled_everywhere(tmp_path, tiny_synth, monkeypatch, capsys):
    path, model, _ = _ours(tmp_path, root=tiny_synth)
    out = tmp_path / "shared"
    assert main(["export", str(path), str(out)]) == 0
    _no_unpickling(monkeypatch)
    with pytest.raises(FnacError):  # the guard is real: a .pt file cannot be read now
        fnac.load_checkpoint(path)
    assert torch.equal(_maps(fnac.load_checkpoint(out)), _maps(model))
    capsys.readouterr()
    # every --checkpoint option takes the folder
    clip = str(tiny_synth / "clips" / "clip_000.mp4")
    assert main(["localize", clip, "--checkpoint", str(out), "--out", str(tmp_path / "loc"), "--quiet"]) == 0
    assert (tmp_path / "loc").is_dir()
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(out),
                "--no-baselines",
                "--overlays",
                "0",
                "--workers",
                "0",
                "--batch-size",
                "8",
            ]
        )
        == 0
    )
    assert "cIoU" in capsys.readouterr().out
    uvicorn = pytest.importorskip("uvicorn")
    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append(app))  # serve, without serving
    assert main(["serve", "--checkpoint", str(out), "--port", "8765"]) == 0 and len(started) == 1


def _one_line(capsys):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_folder_whose_parts_do_not_match_is_refused_with_one_line(tmp_path, tiny_synth, capsys):
    path, _, _ = _ours(tmp_path)
    out = tmp_path / "shared"
    assert main(["export", str(path), str(out)]) == 0
    good = (out / "config.json").read_text()
    clip = str(tiny_synth / "clips" / "clip_000.mp4")

    def localize():
        assert main(["localize", clip, "--checkpoint", str(out), "--out", str(tmp_path / "loc"), "--quiet"]) == 1
        return _one_line(capsys)

    meta = json.loads(good)
    meta["model"]["embed_dim"] = 32  # the config says one model, the tensors hold another
    (out / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        fnac.load_checkpoint(out)
    line = localize()
    assert "model.safetensors" in line and "img_proj.weight" in line
    meta["model"] = {**json.loads(good)["model"], "visual_layers": 4}  # a stage the tensors lack
    (out / "config.json").write_text(json.dumps(meta))
    assert "missing keys" in localize()
    (out / "config.json").write_text(good.replace('"width"', '"wdith"'))
    assert "unknown config key 'model.wdith'" in localize()
    (out / "config.json").write_text(good[:50])
    assert "config.json: not valid JSON" in localize()
    (out / "config.json").write_text(good)
    other = tmp_path / "other"
    torch.manual_seed(5)
    cfg = Config()
    cfg.model = ModelConfig(width=8, embed_dim=16, visual_layers=2, proj_bn=True)
    save_checkpoint(tmp_path / "other.pt", FNAC(cfg.model, load_pretrained=False), cfg)
    assert main(["export", str(tmp_path / "other.pt"), str(other)]) == 0
    (out / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())  # same shapes
    assert "does not match config.json" in localize()
    (out / "model.safetensors").unlink()
    assert "model.safetensors is missing" in localize()
    assert fnac.load_checkpoint(tmp_path / "other").cfg.width == 8  # the untouched export still loads
