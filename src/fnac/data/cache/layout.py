"""The cache's on-disk format, shared by the writer and the reader: file names, the forms of the
splits, the config signature a cached split is valid for, meta.json, and the field codecs
(layout described in ``fnac.data.cache``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fnac.config import DataConfig
from fnac.errors import DataError

CACHE_FORMAT = "fnac-cache"
CACHE_VERSION = 1
META = "meta.json"
# DataConfig fields that decide what a cached split holds (plus data.<split>_list, and data.exclude_list
# for the training split); a cache is used only when all of them match the config.
CONTENT_FIELDS = (
    "dataset",
    "root",
    "annotations",
    "extended_list",
    "image_size",
    "audio_duration",
    "sample_rate",
    "alpha",
)
PATH_FIELDS = ("root", "train_list", "val_list", "test_list", "annotations", "exclude_list", "extended_list")
HALVES_MAX = 255  # float fields whose values are multiples of 0.5 in [0, 127.5] are stored as uint8 2v


def form_for(split: str) -> str:
    """The image form a split is cached in: "train" (resized shorter side, cropped per epoch) for the
    training split, "test" (resized to S x S) for val and test."""
    return "train" if split == "train" else "test"


def train_short_side(image_size: int) -> int:
    """Shorter side of a training frame before its random crop: int(S * 1.1) (vision.train_transform)."""
    return int(image_size * 1.1)


def content_fields(split: str) -> tuple[str, ...]:
    """The DataConfig fields a cached ``split`` depends on."""
    extra = ("train_list", "exclude_list") if split == "train" else (f"{split}_list",)
    return CONTENT_FIELDS + extra


def content_signature(data_cfg: DataConfig, split: str) -> dict[str, Any]:
    """The DataConfig values a cached split depends on, paths made absolute (so a cache built from one
    working directory is recognised from another)."""
    out: dict[str, Any] = {}
    for f in content_fields(split):
        v = getattr(data_cfg, f)
        if f in PATH_FIELDS and v:
            v = str(Path(v).expanduser().resolve())
        out[f] = v
    return out


def split_dir(cache: str | os.PathLike, split: str) -> Path:
    return Path(cache) / split


def shard_name(k: int) -> str:
    return f"shard_{k:05d}"


def read_meta(folder: str | os.PathLike) -> dict[str, Any]:
    """meta.json of a cached split; DataError naming the file when absent, unreadable or not a cache."""
    p = Path(folder) / META
    if not p.is_file():
        raise DataError(f"{p}: no cache here (run `fnac cache` to build it)")
    try:
        meta = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{p}: unreadable cache metadata ({e}); rebuild with `fnac cache --force`") from None
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        raise DataError(f"{p}: not an fnac cache")
    if meta.get("version") != CACHE_VERSION:
        raise DataError(
            f"{p}: cache format version {meta.get('version')}, this fnac reads version "
            f"{CACHE_VERSION}; rebuild with `fnac cache --force`"
        )
    return meta


def mismatches(meta: dict[str, Any], data_cfg: DataConfig) -> list[str]:
    """'data.field: cache X, config Y' for every content field where the cached split and the config differ."""
    want = content_signature(data_cfg, meta["split"])
    have = meta.get("data", {})
    return [f"data.{k}: cache {have.get(k)!r}, config {v!r}" for k, v in want.items() if have.get(k) != v]


# ------------------------------------------------------------------------------------ field codecs
def field_kind(v: Any) -> tuple[str, np.ndarray]:
    """The encoding kind and array of one annotation value of a plain sample."""
    if isinstance(v, torch.Tensor):
        return "tensor", v.detach().cpu().numpy()
    if isinstance(v, (bool, np.bool_)):
        return "bool", np.asarray(bool(v))
    if isinstance(v, (int, np.integer)):
        return "int", np.asarray(int(v), dtype=np.int64)
    if isinstance(v, (float, np.floating)):
        return "float", np.asarray(float(v), dtype=np.float64)
    raise DataError(f"cannot cache a sample field of type {type(v).__name__}")


def encode_fields(tmp: dict[str, np.ndarray], kinds: dict[str, str], base: str) -> dict[str, dict[str, Any]]:
    """Write each annotation field as <base>.<key>.npy in its most compact exact form; return encodings."""
    out: dict[str, dict[str, Any]] = {}
    for key, arr in tmp.items():
        kind = kinds[key]
        if kind == "tensor" and arr.dtype == np.float32:
            twice = arr * np.float32(2.0)
            if (
                np.all(np.isfinite(twice))
                and np.all(twice == np.rint(twice))
                and twice.min(initial=0) >= 0
                and twice.max(initial=0) <= HALVES_MAX
            ):
                np.save(f"{base}.{key}.npy", np.rint(twice).astype(np.uint8))
                out[key] = {"kind": "halves", "dtype": "float32", "shape": list(arr.shape[1:])}
                continue
        np.save(f"{base}.{key}.npy", arr)
        out[key] = {"kind": kind, "dtype": str(arr.dtype), "shape": list(arr.shape[1:])}
    return out


def decode_field(arr: np.ndarray, enc: dict[str, Any]) -> Any:
    """One stored annotation value back to what the plain dataset returns (see ``encode_fields``)."""
    kind = enc["kind"]
    if kind == "halves":  # float values that are multiples of 0.5 (gt maps, masks), stored as 2 v
        return torch.from_numpy(arr.astype(np.float32) / np.float32(2.0))
    if kind == "tensor":
        return torch.from_numpy(np.array(arr, dtype=enc["dtype"]))
    if kind == "bool":
        return bool(arr)
    if kind == "int":
        return int(arr)
    if kind == "float":
        return float(arr)
    raise DataError(f"unknown cached field encoding {kind!r}")
