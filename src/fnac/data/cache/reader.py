"""Reading the preprocessed cache (format in ``fnac.data.cache``): ``CachedDataset``, one cached split.

A cached sample is ``{"id", "index", "image" (3, S, S) uint8, "wave" (L,), "sr"}`` (``wave`` int16 when
every shard stores 16-bit PCM, converted exactly on the device, else float32), plus
``"spec_mask"`` (4,) int64 (row width, row start, column width, column start; -1 = no masks) for
training and the annotation fields for val/test: the raw batch form of ``fnac.inputs``, which turns a
batch of either form (plain or cached) into the model's float inputs on a device.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset as TorchDataset

from fnac import audio
from fnac.config import DataConfig
from fnac.data.cache.layout import META, decode_field, mismatches, read_meta, split_dir
from fnac.data.common import sample_seed
from fnac.data.protocol import Dataset
from fnac.errors import DataError
from fnac.inputs import PCM16, draw_mask_params, model_inputs

log = logging.getLogger("fnac.data")


class _Shard:
    """Memory maps of one shard, opened on first use in each process (never pickled)."""

    def __init__(self, folder: Path, name: str, info: dict[str, Any]) -> None:
        self.folder, self.name, self.info = folder, name, info
        self._open = False

    def _load(self) -> None:
        base = self.folder / self.name
        self.index = np.load(f"{base}.index.npy")  # (m, 3) int64
        self.images = np.zeros(0, np.uint8)
        if os.path.getsize(f"{base}.image.u8"):
            with open(f"{base}.image.u8", "rb") as f:  # a plain ndarray over the map: cheaper slicing than np.memmap
                self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            self.images = np.frombuffer(self._mm, dtype=np.uint8)
        self.wave = np.asarray(np.load(f"{base}.wave.npy", mmap_mode="r"))  # (m, L) float32, mapped
        self.fields = {k: np.asarray(np.load(f"{base}.{k}.npy", mmap_mode="r")) for k in self.info.get("fields", {})}
        self._open = True

    def frame(self, j: int) -> np.ndarray:
        """(h, w, 3) uint8 view of frame j (no copy)."""
        if not self._open:
            self._load()
        off, h, w = (int(v) for v in self.index[j])
        return self.images[off : off + h * w * 3].reshape(h, w, 3)

    def window(self, j: int) -> np.ndarray:
        if not self._open:
            self._load()
        return self.wave[j]

    def field(self, key: str, j: int) -> Any:
        if not self._open:
            self._load()
        return decode_field(self.fields[key][j], self.info["fields"][key])


class CachedDataset(TorchDataset, Dataset):
    """One split of a cache, a ``fnac.data.Dataset`` (as ``AVDataset`` is), plus ``cache_dir``,
    ``form``, ``failed`` (id -> why it failed to decode when cached) and ``wave_int16``.

    Samples that failed to decode when the cache was built return ``{"id", "index", "error"}`` as the
    plain dataset would."""

    def __init__(self, folder: str | os.PathLike, data_cfg: DataConfig, train: bool, seed: int = 0) -> None:
        self.cache_dir = Path(folder)
        meta = read_meta(self.cache_dir)
        self.meta = meta
        self.cfg = data_cfg
        self.name = meta["dataset"]
        self.split = meta["split"]
        self.form = meta["form"]
        self.train = bool(train)
        if self.train and self.form != "train":
            raise DataError(
                f"{self.cache_dir}: split '{self.split}' is cached in test form; training needs the "
                "train form (cache the training split)"
            )
        self.annotated = bool(meta["annotated"])
        self.with_positive = bool(meta.get("with_positive", False))
        self.list_path = meta["list_path"]
        self.listed = list(meta["listed"])
        self.missing_reasons = dict(meta["missing"])
        self.missing = list(self.missing_reasons)
        self.excluded = list(meta.get("excluded", []))
        self.seed = int(seed)
        self.epoch = 0
        self.sample_rate = int(meta["sample_rate"])
        self.n_samples = int(meta["n_samples"])
        self.image_size = int(meta["image_size"])
        self.ids: list[str] = []
        self.failed: dict[str, str] = dict(meta.get("failed", {}))
        self._where: list[tuple[int, int]] = []  # global index -> (shard, row)
        self._shards: list[_Shard] = []
        for k, name in enumerate(meta["shards"]):
            p = self.cache_dir / f"{name}.json"
            try:
                info = json.loads(p.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise DataError(f"{p}: unreadable shard metadata ({e}); rebuild with `fnac cache --force`") from None
            self._shards.append(_Shard(self.cache_dir, name, info))
            for j, sid in enumerate(info["ids"]):
                self.ids.append(sid)
                self._where.append((k, j))
        if len(self.ids) != int(meta["n"]):
            raise DataError(
                f"{self.cache_dir / META}: lists {meta['n']} samples, the shards hold {len(self.ids)}; "
                "rebuild with `fnac cache --force`"
            )
        self.finish_on_device = True  # see prepare_for
        # int16 windows go to the device as they are when every shard has them (half the bytes)
        self.wave_int16 = bool(self._shards) and all(s.info.get("wave_dtype") == "int16" for s in self._shards)
        self._n_time = audio.n_frames(self.n_samples)  # spectrogram columns, for the mask draws

    def __len__(self) -> int:
        return len(self.ids)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose augmentations ``__getitem__`` draws (as AVDataset.set_epoch)."""
        self.epoch = int(epoch)

    def summary(self) -> str:
        text = (
            f"{self.name} {self.split} (cache {self.cache_dir}): {len(self)} of {len(self.listed)} listed ids present"
        )
        extra = []
        if self.missing:
            extra.append(f"{len(self.missing)} missing")
        if self.failed:
            extra.append(f"{len(self.failed)} failed to decode when cached")
        if extra:
            text += " (" + ", ".join(extra) + ")"
        return text

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers under spawn: reopen the maps there
        state = self.__dict__.copy()
        state["_shards"] = [_Shard(s.folder, s.name, s.info) for s in self._shards]
        return state

    def _image(self, frame: np.ndarray, rng: random.Random | None) -> Tensor:
        """(3, S, S) uint8: the stored frame, or its random crop + flip (vision.train_transform's draws)."""
        if rng is not None:
            size = self.image_size
            h, w = frame.shape[:2]
            top = rng.randint(0, h - size)
            left = rng.randint(0, w - size)
            frame = frame[top : top + size, left : left + size]
            if rng.random() < 0.5:
                frame = frame[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1)))  # (3, S, S)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sid = self.ids[index]
        if sid in self.failed:
            return {"id": sid, "index": index, "error": self.failed[sid]}
        k, j = self._where[index]
        shard = self._shards[k]
        rng = gen = None
        if self.train:
            s = sample_seed(self.seed, self.epoch, index)  # the plain dataset's per-sample seed
            rng, gen = random.Random(s), torch.Generator().manual_seed(s)
        wave = shard.window(j)
        if wave.dtype == np.int16 and not self.wave_int16:
            wave = wave.astype(np.float32) / np.float32(PCM16)  # exact
        out: dict[str, Any] = {
            "id": sid,
            "index": index,
            "image": self._image(shard.frame(j), rng),
            "wave": torch.from_numpy(np.array(wave)),
            "sr": self.sample_rate,
        }
        if self.train:
            out["spec_mask"] = draw_mask_params(self.cfg.spec_mask, self._n_time, gen)  # type: ignore[arg-type]
        if self.annotated:
            for key in shard.info.get("fields", {}):
                out[key] = shard.field(key, j)
        if not self.finish_on_device:  # finish here, per sample: the sample then looks like a plain one
            one = {"image": out["image"][None], "wave": out.pop("wave")[None], "sr": out.pop("sr")}
            if "spec_mask" in out:
                one["spec_mask"] = out.pop("spec_mask")[None]
            images, specs = model_inputs(one, "cpu")
            out["image"], out["spec"] = images[0], specs[0]  # (3, S, S), (1, 257, T)
        return out

    def prepare_for(self, device: torch.device | str) -> None:
        """Where samples are finished (normalisation, spectrogram, log, masks): on ``device``, batched by
        ``fnac.inputs.model_inputs``, unless it is the CPU; then the loader workers finish each sample,
        so that the model's threads never wait for that work. fit and evaluate_model call this."""
        self.finish_on_device = torch.device(device).type != "cpu"


def open_split(data_cfg: DataConfig, split: str, train: bool, seed: int = 0) -> CachedDataset | None:
    """The ``split`` of ``data_cfg.cache`` when it is cached for this config and this use, else None.

    None (after a warning naming why) means "read the plain layout": the split is not cached, or is
    cached in the other form. Raises DataError when ``data.cache`` is not a folder, or when the cache
    was built from other data settings (naming each field that differs). ``fnac.data.build_dataset``
    calls this when ``data.cache`` is set."""
    folder = split_dir(data_cfg.cache, split)
    if not (folder / META).is_file():
        if not Path(data_cfg.cache).is_dir():
            raise DataError(f"data.cache: {data_cfg.cache} is not a folder (build it with `fnac cache`)")
        log.warning("data.cache %s has no '%s' split: reading the plain layout (slower)", data_cfg.cache, split)
        return None
    meta = read_meta(folder)
    diff = mismatches(meta, data_cfg)
    if diff:
        raise DataError(
            f"{folder / META}: the cache was built from other data settings ({'; '.join(diff)}); "
            "rebuild it with `fnac cache` or fix the config"
        )
    if train and meta["form"] != "train":
        log.warning(
            "data.cache %s: split '%s' is cached for evaluation, not training: reading the plain layout",
            data_cfg.cache,
            split,
        )
        return None
    if not train and meta["form"] != "test":
        log.warning(
            "data.cache %s: split '%s' is cached for training, not evaluation: reading the plain layout",
            data_cfg.cache,
            split,
        )
        return None
    ds = CachedDataset(folder, data_cfg, train, seed)
    log.info("%s", ds.summary())
    return ds
