"""Checkpoints that describe themselves and load strictly (CONTRIBUTING.md, habit 6).

Our format: {'format': 'fnac', 'version', 'model', 'optimizer', 'epoch', 'step', 'config', 'best',
'pretrained', 'rng', 'history', 'content_sha256'}; written to a temporary file in the same folder, fsynced, then
renamed, so a kill never leaves a broken file. 'content_sha256' holds a sha256 of every other entry,
checked on every read, so a file damaged after it was written is refused instead of loaded (files
without it, older ones and the authors', load as before). A write that fails (full disk, read-only
folder) raises OutputError naming the file and the cause, removes the temporary file and leaves the
previous checkpoint as it was. The authors' files ({'model', 'optimizer', 'epoch', 'best_cIoU',
'best_Auc'}, keys optionally prefixed 'module.') go through `convert_reference_state`.

Exported folders (`fnac export`, written by fnac.export) hold `model.safetensors` (tensors only) and
`config.json`; every loader here accepts one in place of a checkpoint file, and reading it never
unpickles anything.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fnac.config import Config, ModelConfig, from_dict, to_dict
from fnac.errors import CheckpointError, OutputError, os_error_reason
from fnac.fileio import atomic_path
from fnac.models.fnac import FNAC, load_state_strict
from fnac.safeload import safe_torch_load

FORMAT = "fnac"
VERSION = 1
EXPORT_FORMAT = "fnac-export"
EXPORT_WEIGHTS = "model.safetensors"
EXPORT_CONFIG = "config.json"
DIGESTS = "content_sha256"  # entry name -> sha256 of that entry (see content_digests)


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save through ``fnac.fileio.atomic_path``: a temporary sibling, fsync, then rename.

    A failure to write (no space left, read-only file system, no permission) raises OutputError naming
    `path` and the cause; the temporary file is removed and an existing `path` is left untouched."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            try:
                with open(tmp, "wb") as f:
                    torch.save(obj, f)
            except (OSError, RuntimeError) as e:
                cause = _write_failure(e, path.parent)  # before the partial file is removed (it fills the disk)
                kept = " (the previous file is unchanged)" if path.exists() else ""
                raise OutputError(f"{path}: cannot write the checkpoint: {cause}{kept}") from None
    except OSError as e:  # the folder, the temporary file or the final rename
        kept = " (the previous file is unchanged)" if path.exists() else ""
        raise OutputError(f"{path}: cannot write the checkpoint: {os_error_reason(e)}{kept}") from None


_FULL_BELOW = 16 << 20  # bytes: a failed write with less free space than this was a full disk


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _write_failure(e: BaseException, folder: Path) -> str:
    """Why a checkpoint write failed, in words. torch reports a full disk as a RuntimeError naming no
    cause ('unexpected pos ...', 'file write failed'): the folder's free space tells."""
    if isinstance(e, OSError) and e.errno is not None:
        return os_error_reason(e)
    free = _free_bytes(folder)
    if free is not None and free < _FULL_BELOW:
        return f"no space left on device ({free // 1024} KiB free in {folder})"
    text = str(e).strip().splitlines()
    return f"the write failed ({text[0][:300] if text else type(e).__name__})"


def _remove(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def ensure_writable(folder: str | Path, what: str = "train.out_dir") -> None:
    """Create `folder` if needed and check that a file can be written there; OutputError naming the
    folder and the cause (read-only file system, permission denied, ...) when not."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".fnac-write-test.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise OutputError(f"{what}={folder}: cannot write there: {os_error_reason(e)}") from None
    os.close(fd)
    _remove(tmp)


# --------------------------------------------------------------------------------------- checksums
def _feed(h: Any, x: Any) -> None:
    """Hash a checkpoint entry: tensors by dtype, shape and bytes; containers in a fixed order; numbers
    and strings by type and value (numpy scalars as the Python number they hold)."""
    if isinstance(x, Tensor):
        t = x.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(x, dict):
        h.update(b"D%d;" % len(x))
        for k in sorted(x, key=lambda k: (type(k).__name__, repr(k))):
            _feed(h, k)
            _feed(h, x[k])
    elif isinstance(x, (list, tuple)):
        h.update(b"L%d;" % len(x))
        for v in x:
            _feed(h, v)
    else:
        if hasattr(x, "item") and type(x).__module__ == "numpy":
            x = x.item()
        h.update(f"S{type(x).__name__}:{x!r};".encode())


def content_digests(obj: dict) -> dict[str, str]:
    """sha256 (hex) of each entry of a checkpoint dict, except the digests themselves."""
    out = {}
    for key, value in obj.items():
        if key == DIGESTS:
            continue
        h = hashlib.sha256()
        _feed(h, value)
        out[key] = h.hexdigest()
    return out


def verify_digests(obj: dict, path: str | Path) -> None:
    """CheckpointError naming `path` when an entry differs from the sha256 stored when it was written."""
    want = obj.get(DIGESTS)
    if want is None:
        return  # written before checksums existed
    if not isinstance(want, dict):
        raise CheckpointError(f"{path}: checkpoint is corrupt: its checksum record is damaged")
    got = content_digests({k: obj[k] for k in want if k in obj})
    bad = [k for k in want if got.get(k) != want[k]]
    if bad:
        raise CheckpointError(
            f"{path}: checkpoint is corrupt: its {', '.join(repr(k) for k in bad)} "
            f"{'entry does' if len(bad) == 1 else 'entries do'} not match the sha256 recorded when it was "
            "written (the file was damaged after it was saved); use an earlier or intact copy"
        )


def save_checkpoint(path: str | Path, model: FNAC, cfg: Config, **state: Any) -> None:
    """Write our checkpoint. `state` holds optimizer, epoch, step, best, rng, history, ...
    'pretrained' records the ImageNet weights the model started from ({'path', 'sha256'}, None for a
    random start), taken from the model unless `state` names it."""
    module = getattr(model, "module", model)  # unwrap DistributedDataParallel
    obj = {
        "format": FORMAT,
        "version": VERSION,
        "model": module.state_dict(),
        "config": to_dict(cfg),
        "pretrained": getattr(module, "pretrained_weights", None),
        **state,
    }
    obj[DIGESTS] = content_digests(obj)
    atomic_save(obj, path)


def read_checkpoint(path: str | Path) -> dict:
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(
            f"{p}: is a folder, not a checkpoint file (an exported model folder holds "
            f"{EXPORT_CONFIG} and {EXPORT_WEIGHTS})"
        )
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: checkpoint file is empty")
    obj = safe_torch_load(p, "checkpoint")
    if not isinstance(obj, dict) or "model" not in obj or not isinstance(obj["model"], dict):
        raise CheckpointError(f"{p}: not a checkpoint (expected a dict with a 'model' state dict)")
    if obj.get("format") == FORMAT:
        verify_digests(obj, p)
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


def read_export_meta(folder: str | Path) -> dict:
    """An exported folder's config.json (plain JSON), checked to be one of ours."""
    d = Path(folder)
    cfg_path, weights = d / EXPORT_CONFIG, d / EXPORT_WEIGHTS
    for f in (cfg_path, weights):
        if not f.is_file():
            raise CheckpointError(f"{d}: not an exported model folder ({f.name} is missing)")
    try:
        meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT or not isinstance(meta.get("model"), dict):
        raise CheckpointError(
            f'{cfg_path}: not an fnac export (expected "format": "{EXPORT_FORMAT}" and a "model" section)'
        )
    return meta


def read_export(folder: str | Path) -> tuple[dict, dict[str, Tensor]]:
    """An exported folder's config.json and tensors (safetensors: no pickle, no code)."""
    d = Path(folder)
    cfg_path, weights = d / EXPORT_CONFIG, d / EXPORT_WEIGHTS
    meta = read_export_meta(d)
    expected = meta.get("weights_sha256")
    if expected:
        from fnac.weights import sha256_file

        digest = sha256_file(weights)
        if digest != expected:
            raise CheckpointError(
                f"{weights}: does not match {cfg_path.name} (sha256 {digest[:16]}..., "
                f"{cfg_path.name} says {str(expected)[:16]}...)"
            )
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise CheckpointError(
            f"{d}: reading an exported model needs the safetensors package (pip install safetensors)"
        ) from None
    try:
        sd = load_file(str(weights), device="cpu")
    except Exception as e:  # noqa: BLE001 - a corrupt or foreign file, for the user
        text = str(e).strip().splitlines()
        raise CheckpointError(f"{weights}: cannot read ({type(e).__name__}: {text[0][:300] if text else ''})") from None
    return meta, sd


def export_model_config(meta: dict, source: str) -> ModelConfig:
    return from_dict({"model": meta["model"]}, f"{source} (model)").model


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A model read from a checkpoint file or exported folder, with what the file says beside it.

    ``model, cfg = loaded`` unpacks the model and the config (the epoch is read by name)."""

    model: FNAC  # in eval mode, on the requested device
    config: Config | None  # the run's config; None for the authors' files (and exports of them)
    epoch: int | None = None  # the checkpoint's 'epoch' (the next epoch to train); None where unknown

    def __iter__(self) -> Iterator[Any]:
        yield self.model
        yield self.config


def stored_epoch(value: Any) -> int | None:
    """An 'epoch' entry of one of our checkpoints (or the source epoch of an export) as an int, None
    when absent or not an integer."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def export_epoch(meta: dict) -> int | None:
    """The epoch of the checkpoint an exported folder was made from (``source.epoch`` of its
    config.json, written by fnac.export); None for an export of the authors' file or when not recorded."""
    source = meta.get("source")
    if not isinstance(source, dict) or source.get("kind") != "fnac":
        return None
    return stored_epoch(source.get("epoch"))


def export_run_config(meta: dict, folder: str | Path) -> Config | None:
    """The run config of an exported folder's config.json (`meta`); None for an export of the authors' file."""
    run = meta.get("run_config")
    return from_dict(run, f"{Path(folder) / EXPORT_CONFIG} (run_config)") if run else None


def load_model_and_config(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Read `path` once: the FNAC model (eval mode), the run config it was trained with and the epoch
    the checkpoint was saved at.

    `path` is one of our checkpoints, the authors' released file (no config, no epoch: both None, the
    model's shape is read from its tensors) or a folder written by `fnac export` (model.safetensors +
    config.json, read without unpickling; the epoch is that of the checkpoint it was exported from).
    ``model, cfg = load_model_and_config(path)`` unpacks the first two."""
    return _load(path, map_location, with_config=True)


def _load(path: str | Path, map_location: str | torch.device, with_config: bool) -> LoadedCheckpoint:
    if Path(path).is_dir():
        meta, sd = read_export(path)
        mcfg = export_model_config(meta, str(Path(path) / EXPORT_CONFIG))
        model = FNAC(mcfg, load_pretrained=False)
        load_state_strict(model, sd, str(Path(path) / EXPORT_WEIGHTS))
        model.pretrained_weights = meta.get("pretrained")
        config = export_run_config(meta, path) if with_config else None  # only parsed when asked for
        return LoadedCheckpoint(model.to(map_location).eval(), config, export_epoch(meta))
    obj = read_checkpoint(path)
    config, epoch = None, None
    if is_reference_checkpoint(obj):
        sd = convert_reference_state(obj["model"])
        mcfg = infer_model_config(sd)
    else:
        sd = obj["model"]
        config = from_dict(obj.get("config", {}), f"{path} (config)")
        epoch = stored_epoch(obj.get("epoch"))
        mcfg = copy.deepcopy(config.model)
    mcfg.pretrained = ""  # the weights come from the checkpoint
    model = FNAC(mcfg, load_pretrained=False)
    load_state_strict(model, sd, str(path))
    model.pretrained_weights = obj.get("pretrained")
    return LoadedCheckpoint(model.to(map_location).eval(), config, epoch)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> FNAC:
    """An FNAC model (eval mode) from our checkpoint, the authors' released one, or a folder written
    by `fnac export` (model.safetensors + config.json, read without unpickling). The stable public
    name; `load_model_and_config` also returns the run config without reading the file again."""
    return _load(path, map_location, with_config=False).model


def checkpoint_config(path: str | Path) -> Config | None:
    """The run config stored in one of our checkpoints or exports (None for the authors' files)."""
    if Path(path).is_dir():
        return export_run_config(read_export_meta(path), path)
    obj = read_checkpoint(path)
    if is_reference_checkpoint(obj):
        return None
    return from_dict(obj.get("config", {}), f"{path} (config)")
