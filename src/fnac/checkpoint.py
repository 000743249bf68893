"""Checkpoints that describe themselves and load strictly (CONTRIBUTING.md, habit 6).

Our format: {'format': 'fnac', 'version', 'model', 'optimizer', 'epoch', 'step', 'config', 'best',
'rng', 'history'}; written to a temporary file in the same folder, fsynced, then renamed, so a kill
never leaves a broken file. The authors' files ({'model', 'optimizer', 'epoch', 'best_cIoU',
'best_Auc'}, keys optionally prefixed 'module.') go through `convert_reference_state`.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fnac.config import Config, ModelConfig, from_dict, to_dict
from fnac.errors import CheckpointError
from fnac.models.fnac import FNAC, load_state_strict
from fnac.safeload import safe_torch_load

FORMAT = "fnac"
VERSION = 1


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file beside `path`, fsync, then os.replace (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path: str | Path, model: FNAC, cfg: Config, **state: Any) -> None:
    """Write our checkpoint. `state` holds optimizer, epoch, step, best, rng, history, ..."""
    module = getattr(model, "module", model)  # unwrap DistributedDataParallel
    obj = {
        "format": FORMAT,
        "version": VERSION,
        "model": module.state_dict(),
        "config": to_dict(cfg),
        **state,
    }
    atomic_save(obj, path)


def read_checkpoint(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: checkpoint file is empty")
    obj = safe_torch_load(p, "checkpoint")
    if not isinstance(obj, dict) or "model" not in obj or not isinstance(obj["model"], dict):
        raise CheckpointError(f"{p}: not a checkpoint (expected a dict with a 'model' state dict)")
    return obj


def is_reference_checkpoint(obj: dict) -> bool:
    return obj.get("format") != FORMAT


def convert_reference_state(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """The authors' model state dict -> ours: drop a DistributedDataParallel 'module.' prefix.
    Parameter names are otherwise identical by construction."""
    return {k.removeprefix("module."): v for k, v in sd.items()}


def infer_model_config(sd: dict[str, Tensor]) -> ModelConfig:
    """Width, embedding size and number of visual stages from the tensors of a reference state dict."""
    try:
        width = int(sd["imgnet.conv1.weight"].shape[0])
        embed = int(sd["img_proj.weight"].shape[0])
    except KeyError as e:
        raise CheckpointError(f"not an FNAC/EZ-VSL state dict: key {e} missing") from None
    layers = max((i for i in (2, 3, 4) if f"imgnet.layer{i}.0.conv1.weight" in sd), default=4)
    return ModelConfig(width=width, embed_dim=embed, visual_layers=layers)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> FNAC:
    """An FNAC model (eval mode) from our checkpoint or the authors' released one."""
    obj = read_checkpoint(path)
    if is_reference_checkpoint(obj):
        sd = convert_reference_state(obj["model"])
        mcfg = infer_model_config(sd)
    else:
        sd = obj["model"]
        mcfg = from_dict(obj.get("config", {}), f"{path} (config)").model
    mcfg.pretrained = ""  # the weights come from the checkpoint
    model = FNAC(mcfg, load_pretrained=False)
    load_state_strict(model, sd, str(path))
    return model.to(map_location).eval()


def checkpoint_config(path: str | Path) -> Config | None:
    """The run config stored in one of our checkpoints (None for the authors' files)."""
    obj = read_checkpoint(path)
    if is_reference_checkpoint(obj):
        return None
    return from_dict(obj.get("config", {}), f"{path} (config)")
