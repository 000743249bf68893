"""Building the preprocessed cache that ``data.cache`` reads (``fnac cache``; docs/training.md).

Each listed clip is decoded once: its frame resized in the form its split uses (train: shorter side
int(1.1 S), bicubic; val/test: S x S, bicubic; docs/method.md §4), its centred audio window, and,
for annotated splits, its annotation fields. They are written into shards of memory-mappable files
(format in ``fnac.data.cache``). Shards are written under temporary names and renamed when complete,
so an interrupted build resumes where it stopped; ``meta.json`` is written last. Clips that fail to
decode are recorded with their reason and reported by the reader like the plain layout does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.format import open_memmap

from fnac import audio, media, vision
from fnac.config import DataConfig
from fnac.data import build_dataset
from fnac.data.cache.layout import (
    CACHE_FORMAT,
    CACHE_VERSION,
    META,
    content_signature,
    encode_fields,
    field_kind,
    form_for,
    read_meta,
    shard_name,
    split_dir,
    train_short_side,
)
from fnac.data.common import AVDataset, error_text
from fnac.errors import DataError
from fnac.fileio import atomic_write_json
from fnac.inputs import PCM16

log = logging.getLogger("fnac.cache")


@dataclass
class SplitSummary:
    split: str
    n: int  # samples in the cache (present ids)
    n_failed: int  # of which failed to decode (kept, reported as failures when read)
    n_missing: int  # listed ids without files
    n_shards: int
    bytes: int
    seconds: float
    reused: bool  # the cache was already complete for this config
    form: str
    sample_rate: int
    failed: dict[str, str] = field(default_factory=dict)


def _pcm16_exact(wave: np.ndarray) -> bool:
    """Whether every value is q / 32768 for an integer q in [-32768, 32767] (16-bit PCM read as float)."""
    for i in range(0, wave.shape[0], 256):
        x = wave[i : i + 256] * np.float32(PCM16)  # exact: a power of two
        if x.size and (x.min() < -PCM16 or x.max() > PCM16 - 1 or not np.array_equal(x, np.rint(x))):
            return False
    return wave.shape[0] > 0


def write_shard(
    ds: AVDataset,
    folder: Path,
    k: int,
    lo: int,
    hi: int,
    form: str,
    image_size: int,
    sr: int,
    n_samples: int,
    key: dict[str, Any],
    fingerprint: str = "",
) -> dict[str, Any]:
    """Decode samples lo..hi-1 of the plain dataset ``ds`` into shard k of ``folder``; return its info."""
    from PIL import Image

    base = str(folder / shard_name(k))
    m = hi - lo
    index = np.zeros((m, 3), dtype=np.int64)  # byte offset, h, w
    tmp_wave = f"{base}.wave.npy.tmp.npy"
    wave = open_memmap(tmp_wave, mode="w+", dtype=np.float32, shape=(m, n_samples))
    fields: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    failed: dict[str, str] = {}
    ids: list[str] = []
    short = train_short_side(image_size)
    cfg: DataConfig = ds.cfg
    off = 0
    with open(f"{base}.image.u8.tmp", "wb") as fimg:
        for j in range(m):
            e = ds.entries[lo + j]
            ids.append(e.id)
            current = e.image
            try:
                img = vision.open_image(e.image, cfg.alpha)
                if form == "train":  # the deterministic first step of vision.train_transform
                    img = vision.resize_shorter(img.convert("RGB"), short)
                else:  # vision.test_transform before to_tensor
                    img = img.convert("RGB").resize((image_size, image_size), Image.Resampling.BICUBIC)
                arr = np.asarray(img, dtype=np.uint8)  # (h, w, 3)
                current = e.audio
                x, file_sr = media.read_audio(e.audio, cfg.sample_rate)
                if file_sr != sr:
                    raise DataError(
                        f"sample rate {file_sr} Hz differs from the cache's {sr} Hz; set "
                        "data.sample_rate to resample every clip to one rate"
                    )
                win = audio.centre_window(x, sr, duration=cfg.audio_duration, centre=e.centre)
                current = ds.annotation_file(e)
                extra = ds.annotation(e) if ds.annotated else {}
                values = {}
                for name, v in extra.items():
                    kind, a = field_kind(v)
                    if name in fields and (
                        kinds[name] != kind or fields[name].shape[1:] != a.shape or fields[name].dtype != a.dtype
                    ):
                        raise DataError(
                            f"field '{name}' has shape {a.shape} {a.dtype}, the shard's others "
                            f"{fields[name].shape[1:]} {fields[name].dtype}"
                        )
                    values[name] = (kind, a)
            except Exception as ex:  # noqa: BLE001 - recorded, reported when the sample is read
                failed[e.id] = error_text(current, ex)
                index[j] = (off, 0, 0)
                continue
            fimg.write(arr.tobytes())
            index[j] = (off, arr.shape[0], arr.shape[1])
            off += arr.nbytes
            wave[j] = np.asarray(win, dtype=np.float32)
            for name, (kind, a) in values.items():
                if name not in fields:
                    fields[name] = np.zeros((m, *a.shape), dtype=a.dtype)
                    kinds[name] = kind
                fields[name][j] = a
    wave.flush()
    wave_dtype = "float32"
    if _pcm16_exact(wave):  # 16-bit PCM sources: keep the integers, half the bytes (exact: x = q / 32768)
        q = open_memmap(f"{base}.wave16.npy.tmp.npy", mode="w+", dtype=np.int16, shape=(m, n_samples))
        for i in range(0, m, 256):
            q[i : i + 256] = np.rint(wave[i : i + 256] * np.float32(PCM16)).astype(np.int16)
        q.flush()
        del q
        os.remove(tmp_wave)
        tmp_wave = f"{base}.wave16.npy.tmp.npy"
        wave_dtype = "int16"
    del wave
    encodings = encode_fields(fields, kinds, base)
    np.save(f"{base}.index.npy", index)
    os.replace(f"{base}.image.u8.tmp", f"{base}.image.u8")
    os.replace(tmp_wave, f"{base}.wave.npy")
    info = {
        "ids": ids,
        "failed": failed,
        "fields": encodings,
        "wave_dtype": wave_dtype,
        "key": key,
        "fingerprint": fingerprint,
        "bytes": off,
    }
    atomic_write_json(Path(f"{base}.json"), info, indent=None, fsync=False)  # the shard is complete once this exists
    return {"k": k, "n": m, "failed": failed, "bytes": _shard_bytes(folder, k)}


def _shard_bytes(folder: Path, k: int) -> int:
    return sum(p.stat().st_size for p in folder.glob(f"{shard_name(k)}.*") if p.is_file())


_WORKER_DS: AVDataset | None = None


def _init_worker(ds: AVDataset) -> None:
    global _WORKER_DS
    _WORKER_DS = ds


def _worker_shard(args: tuple) -> dict[str, Any]:
    return write_shard(_WORKER_DS, *args)


def _stat(path: str, memo: dict[str, tuple[int, int]]) -> tuple[int, int]:
    if path not in memo:
        try:
            st = os.stat(path)
            memo[path] = (st.st_size, st.st_mtime_ns)
        except OSError:
            memo[path] = (-1, -1)
    return memo[path]


def shard_fingerprint(ds: AVDataset, lo: int, hi: int, memo: dict[str, tuple[int, int]]) -> str:
    """Digest of the size and modification time of every file samples lo..hi-1 are read from (frame,
    audio, annotation file): a shard is rewritten when any of them changes."""
    h = hashlib.sha1()
    for e in ds.entries[lo:hi]:
        files = [e.image, e.audio] + ([ds.annotation_file(e)] if ds.annotated else [])
        h.update(repr((e.id, [(f, _stat(f, memo)) for f in files], e.centre)).encode())
    return h.hexdigest()


def _probe_sample_rate(ds: AVDataset, cfg: DataConfig) -> int:
    """data.sample_rate, else the native rate of the first clip that decodes."""
    if cfg.sample_rate > 0:
        return cfg.sample_rate
    for e in ds.entries[:100]:
        try:
            return int(media.read_audio(e.audio)[1])
        except Exception:  # noqa: BLE001 - that clip is reported when its shard is written
            continue
    raise DataError(f"{ds.list_path}: none of the first clips has decodable audio; cannot choose a sample rate")


def cache_split(
    data_cfg: DataConfig,
    out_dir: str | os.PathLike,
    split: str,
    shard_size: int = 1000,
    workers: int = 1,
    force: bool = False,
    progress: bool = True,
) -> SplitSummary:
    """Cache one split (see the module docstring). Reuses the shards of the same config whose files are
    unchanged (size and modification time), so it resumes an interrupted build and updates a cache
    after media changed; refuses to overwrite a cache of other data settings unless ``force``."""
    if shard_size < 1:
        raise DataError(f"shard size must be >= 1, got {shard_size}")
    t0 = time.perf_counter()
    plain = replace(data_cfg, cache="")
    ds = build_dataset(plain, split, train=False)
    folder = split_dir(out_dir, split)
    form = form_for(split)
    signature = content_signature(data_cfg, split)
    meta_old = read_meta(folder) if (folder / META).is_file() and not force else None
    if meta_old is not None and (meta_old["data"] != signature or meta_old["shard_size"] != shard_size):
        raise DataError(f"{folder}: holds a cache of other data settings (or shard size); use --force to rebuild it")
    if force and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sr = _probe_sample_rate(ds, data_cfg) if len(ds) else max(data_cfg.sample_rate, 16000)
    n_samples = int(round(sr * data_cfg.audio_duration))
    if n_samples < audio.N_FFT:
        raise DataError(
            f"data.audio_duration={data_cfg.audio_duration} s at {sr} Hz is {n_samples} samples, "
            f"fewer than the {audio.N_FFT} a spectrogram needs"
        )
    key = {"data": signature, "form": form, "sample_rate": sr, "n_samples": n_samples, "shard_size": shard_size}
    n_shards = math.ceil(len(ds) / shard_size)
    todo = []
    done: dict[int, dict[str, Any]] = {}
    memo: dict[str, tuple[int, int]] = {}
    for k in range(n_shards):
        lo, hi = k * shard_size, min(len(ds), (k + 1) * shard_size)
        fp = shard_fingerprint(ds, lo, hi, memo)
        p = folder / f"{shard_name(k)}.json"
        if p.is_file():
            try:
                info = json.loads(p.read_text())
                if info.get("key") == key and info.get("ids") == ds.ids[lo:hi] and info.get("fingerprint") == fp:
                    done[k] = {"k": k, "n": hi - lo, "failed": info["failed"], "bytes": _shard_bytes(folder, k)}
                    continue
            except (OSError, json.JSONDecodeError):
                pass
        todo.append((folder, k, lo, hi, form, data_cfg.image_size, sr, n_samples, key, fp))
    if (
        not todo
        and meta_old is not None
        and meta_old["ids"] == ds.ids
        and meta_old["shards"] == [shard_name(k) for k in range(n_shards)]
    ):
        return SplitSummary(
            split,
            meta_old["n"],
            len(meta_old["failed"]),
            len(meta_old["missing"]),
            n_shards,
            meta_old["bytes"],
            time.perf_counter() - t0,
            True,
            form,
            sr,
            dict(meta_old["failed"]),
        )
    (folder / META).unlink(missing_ok=True)
    for stale in folder.glob("shard_*.json"):  # shards beyond the new count
        if int(stale.stem.split("_")[1]) >= n_shards:
            for f in folder.glob(f"{stale.stem}.*"):
                f.unlink()
    if done:
        log.info("%s: %d of %d shards up to date, writing the others", folder, len(done), n_shards)
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=sum(t[3] - t[2] for t in todo), desc=f"cache {split}", unit="clip", dynamic_ncols=True)
    if workers <= 1 or len(todo) <= 1:
        for t in todo:
            r = write_shard(ds, *t)
            done[r["k"]] = r
            if bar is not None:
                bar.update(r["n"])
    else:
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(ds,)
        ) as pool:
            futures = [pool.submit(_worker_shard, t) for t in todo]
            for f in as_completed(futures):
                r = f.result()
                done[r["k"]] = r
                if bar is not None:
                    bar.update(r["n"])
    if bar is not None:
        bar.close()
    failed: dict[str, str] = {}
    for k in range(n_shards):
        failed.update(done[k]["failed"])
    total = sum(done[k]["bytes"] for k in range(n_shards))
    meta = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "split": split,
        "form": form,
        "dataset": ds.name,
        "data": signature,
        "image_size": data_cfg.image_size,
        "sample_rate": sr,
        "n_samples": n_samples,
        "shard_size": shard_size,
        "shards": [shard_name(k) for k in range(n_shards)],
        "n": len(ds),
        "ids": ds.ids,
        "listed": ds.listed,
        "missing": ds.missing_reasons,
        "excluded": ds.excluded,
        "list_path": ds.list_path,
        "annotated": ds.annotated,
        "with_positive": bool(ds.with_positive),
        "failed": failed,
        "bytes": total,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic_write_json(folder / META, meta, indent=None, fsync=False)
    if failed:
        first = "; ".join(f"{i}: {r}" for i, r in list(failed.items())[:3])
        log.warning(
            "%s: %d clips failed to decode and will be reported as failures, e.g. %s", folder, len(failed), first
        )
    return SplitSummary(
        split, len(ds), len(failed), len(ds.missing), n_shards, total, time.perf_counter() - t0, False, form, sr, failed
    )
