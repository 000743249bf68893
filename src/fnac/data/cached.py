"""Reading the preprocessed cache written by ``fnac cache`` (fnac.cache): no JPEG or audio decoding.

A cache folder holds one sub-folder per split. Each split is cut into shards of consecutive samples;
a shard is a few flat files read through memory maps (docs/training.md, "Fast data: fnac cache"):

    <cache>/<split>/meta.json                 what was cached, from which data config (written last)
    <cache>/<split>/shard_00000.json          the shard's ids, failures and field encodings
    <cache>/<split>/shard_00000.image.u8      frames, uint8 (h, w, 3) one after another
    <cache>/<split>/shard_00000.index.npy     (m, 3) int64: byte offset, h, w of each frame
    <cache>/<split>/shard_00000.wave.npy      (m, L) audio windows (L = sr * audio_duration): int16 (x / 32768)
                                              when the shard's audio is exact 16-bit PCM, else float32
    <cache>/<split>/shard_00000.<field>.npy   annotation fields (gt_map, mask, positive), when annotated

Frames are stored in the *form* their split is used in (docs/method.md §4, "Image"): the training
split after its deterministic first step (shorter side resized to int(1.1 S), bicubic), so the random
crop and flip are done here on the array with the draws of ``vision.train_transform``; the val/test
splits resized to exactly S x S. The audio is the centred window, so the spectrogram, the log and the
training masks run batched on the training device in ``model_inputs`` (docs/method.md §4, "Audio"),
or per sample in the loader workers when the model runs on the CPU (``prepare_for``).
A training sample of the cache equals the plain layout's sample for the same (seed, epoch, index):
the same crop, flip and mask draws (``sample_seed``); the image is bit-identical and the spectrogram
equal to float32 rounding.

A cached sample is ``{"id", "index", "image" (3, S, S) uint8, "wave" (L,), "sr"}`` (``wave`` int16 when
every shard stores 16-bit PCM, converted exactly on the device, else float32), plus
``"spec_mask"`` (4,) int64 (row width, row start, column width, column start; -1 = no masks) for
training and the annotation fields for val/test. ``model_inputs`` turns a batch of either kind (plain
or cached) into the model's float inputs on a device.
"""
from __future__ import annotations

import json
import logging
import mmap
import os
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from fnac import audio, vision
from fnac.config import DataConfig
from fnac.data.common import sample_seed
from fnac.errors import DataError

log = logging.getLogger("fnac.data")

CACHE_FORMAT = "fnac-cache"
CACHE_VERSION = 1
META = "meta.json"
FORMS = ("train", "test")
PCM16 = 32768  # int16 audio windows hold round(x * 32768)
# DataConfig fields that decide what a cached split holds (plus data.<split>_list, and data.exclude_list
# for the training split); a cache is used only when all of them match the config.
CONTENT_FIELDS = ("dataset", "root", "annotations", "extended_list", "image_size", "audio_duration", "sample_rate",
                  "alpha")
PATH_FIELDS = ("root", "train_list", "val_list", "test_list", "annotations", "exclude_list", "extended_list")


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
        raise DataError(f"{p}: cache format version {meta.get('version')}, this fnac reads version "
                        f"{CACHE_VERSION}; rebuild with `fnac cache --force`")
    return meta


def mismatches(meta: dict[str, Any], data_cfg: DataConfig) -> list[str]:
    """'data.field: cache X, config Y' for every content field where the cached split and the config differ."""
    want = content_signature(data_cfg, meta["split"])
    have = meta.get("data", {})
    return [f"data.{k}: cache {have.get(k)!r}, config {v!r}" for k, v in want.items() if have.get(k) != v]


# ------------------------------------------------------------------------------------ field codecs
def decode_field(arr: np.ndarray, enc: dict[str, Any]) -> Any:
    """One stored annotation value back to what the plain dataset returns (see fnac.cache.encode)."""
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


class CachedDataset(Dataset):
    """One split of a cache; the attributes of ``AVDataset`` (``name``, ``split``, ``train``, ``ids``,
    ``listed``, ``missing``, ``missing_reasons``, ``excluded``, ``list_path``, ``annotated``, ``seed``,
    ``epoch``, ``with_positive``, ``set_epoch``, ``summary``) plus ``cache_dir`` and ``form``.

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
            raise DataError(f"{self.cache_dir}: split '{self.split}' is cached in test form; training needs the "
                            "train form (cache the training split)")
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
            raise DataError(f"{self.cache_dir / META}: lists {meta['n']} samples, the shards hold {len(self.ids)}; "
                            "rebuild with `fnac cache --force`")
        self.finish_on_device = True  # see prepare_for
        # int16 windows go to the device as they are when every shard has them (half the bytes)
        self.wave_int16 = bool(self._shards) and all(s.info.get("wave_dtype") == "int16" for s in self._shards)
        n_freq, n_time = audio.N_FREQ, audio.n_frames(self.n_samples)
        # mask start ranges of data.spec_mask (audio.apply_masks): rows over T and columns over F in the
        # reference's swapped-axes mode, the other way round for SpecAugment
        self._mask_ranges = (n_time, n_freq) if data_cfg.spec_mask == "reference" else (n_freq, n_time)

    def __len__(self) -> int:
        return len(self.ids)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose augmentations ``__getitem__`` draws (as AVDataset.set_epoch)."""
        self.epoch = int(epoch)

    def summary(self) -> str:
        text = f"{self.name} {self.split} (cache {self.cache_dir}): {len(self)} of {len(self.listed)} listed ids present"
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

    def _mask_params(self, gen: torch.Generator) -> Tensor:
        """(4,) int64 mask draws in audio.apply_masks' order: row width, row start, column width, column
        start; (-1, -1, -1, -1) when data.spec_mask is "none"."""
        if self.cfg.spec_mask == "none":
            return torch.full((4,), -1, dtype=torch.int64)
        row_range, col_range = self._mask_ranges

        def draw(high: int) -> int:
            return int(torch.randint(0, high, (1,), generator=gen).item())

        w_row = draw(audio.MASK_MAX_WIDTH + 1)
        r0 = draw(row_range)
        w_col = draw(audio.MASK_MAX_WIDTH + 1)
        c0 = draw(col_range)
        return torch.tensor([w_row, r0, w_col, c0], dtype=torch.int64)

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
        out: dict[str, Any] = {"id": sid, "index": index, "image": self._image(shard.frame(j), rng),
                               "wave": torch.from_numpy(np.array(wave)), "sr": self.sample_rate}
        if self.train:
            out["spec_mask"] = self._mask_params(gen)  # type: ignore[arg-type]
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
        ``model_inputs``, unless it is the CPU; then the loader workers finish each sample, so that the
        model's threads never wait for that work. fit and evaluate_model call this."""
        self.finish_on_device = torch.device(device).type != "cpu"


def build(data_cfg: DataConfig, split: str, train: bool, seed: int = 0) -> Dataset:
    """The ``split`` of ``data_cfg.cache`` when it is cached for this config, else the plain dataset.

    Falls back to the plain layout (with a warning naming why) when the split is not cached or is
    cached in the other form; raises DataError when the cache was built from other data settings
    (naming each field that differs). Called by ``build_dataset`` when ``data.cache`` is set."""
    from fnac.data import build_dataset

    plain = replace(data_cfg, cache="")
    folder = split_dir(data_cfg.cache, split)
    if not (folder / META).is_file():
        if not Path(data_cfg.cache).is_dir():
            raise DataError(f"data.cache: {data_cfg.cache} is not a folder (build it with `fnac cache`)")
        log.warning("data.cache %s has no '%s' split: reading the plain layout (slower)", data_cfg.cache, split)
        return build_dataset(plain, split, train, seed)
    meta = read_meta(folder)
    diff = mismatches(meta, data_cfg)
    if diff:
        raise DataError(f"{folder / META}: the cache was built from other data settings ({'; '.join(diff)}); "
                        "rebuild it with `fnac cache` or fix the config")
    if train and meta["form"] != "train":
        log.warning("data.cache %s: split '%s' is cached for evaluation, not training: reading the plain layout",
                    data_cfg.cache, split)
        return build_dataset(plain, split, train, seed)
    if not train and meta["form"] != "test":
        log.warning("data.cache %s: split '%s' is cached for training, not evaluation: reading the plain layout",
                    data_cfg.cache, split)
        return build_dataset(plain, split, train, seed)
    ds = CachedDataset(folder, data_cfg, train, seed)
    log.info("%s", ds.summary())
    return ds


# ----------------------------------------------------------------------------------- device side
def apply_mask_params(logspec: Tensor, params: Tensor) -> Tensor:
    """Training masks from pre-drawn parameters, vectorised: logspec (B, F, T), params (B, 4) int64 =
    (row width, row start, column width, column start) per item. Zeroes rows [r0, r0 + w_row) and
    columns [c0, c0 + w_col), cut at the edges, as audio.apply_masks does item by item (docs/method.md §4,
    Audio step 5). A row of -1 leaves its item unmasked."""
    b, f, t = logspec.shape
    p = params.to(logspec.device)
    rows = torch.arange(f, device=logspec.device)[None, :]  # (1, F)
    cols = torch.arange(t, device=logspec.device)[None, :]  # (1, T)
    w_r, r0, w_c, c0 = (p[:, i : i + 1] for i in range(4))  # (B, 1) each
    in_rows = (rows >= r0) & (rows < r0 + w_r)  # (B, F)
    in_cols = (cols >= c0) & (cols < c0 + w_c)  # (B, T)
    hit = in_rows[:, :, None] | in_cols[:, None, :]  # (B, F, T)
    return logspec.masked_fill(hit, 0.0)


def model_inputs(batch: dict[str, Any], device: torch.device | str, channels_last: bool = False,
                 non_blocking: bool = True) -> tuple[Tensor, Tensor]:
    """(images (B, 3, S, S) float32, specs (B, 1, 257, T) float32) on ``device`` from a collated batch.

    Plain batches already hold both (moved only). Cached batches hold uint8 images (normalised here,
    vision.normalize) and audio windows: spectrogram, log, training masks (``spec_mask``) and /12 are
    computed here in one batch on the device (docs/method.md §4)."""
    device = torch.device(device)
    images = batch["image"].to(device, non_blocking=non_blocking)
    if images.dtype == torch.uint8:
        images = vision.normalize(images)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    if "spec" in batch:
        specs = batch["spec"].to(device, non_blocking=non_blocking)
        return images, specs
    wave = batch["wave"].to(device, non_blocking=non_blocking)  # (B, L)
    if wave.dtype == torch.int16:
        wave = wave.to(torch.float32) / PCM16  # 16-bit PCM back to the decoder's float values, exactly
    srs = batch["sr"]
    sr = int(srs[0]) if isinstance(srs, (Tensor, list, tuple)) else int(srs)
    if isinstance(srs, Tensor) and bool((srs != sr).any()):
        raise DataError(f"batch mixes sample rates {sorted(set(srs.tolist()))}: set data.sample_rate")
    logspec = torch.log(audio.spectrogram(wave, sr) + audio.LOG_EPS)  # (B, 257, T)
    if "spec_mask" in batch:
        logspec = apply_mask_params(logspec, batch["spec_mask"])
    return images, (logspec / audio.LOG_SCALE).unsqueeze(1)  # (B, 1, 257, T)
