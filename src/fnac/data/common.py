"""What every benchmark loader shares: id lists, file indexes, the sample pipeline, collation.

A dataset is built once from an id list and the files on disk (docs/datasets.md). Construction parses
every annotation file and scans every folder once; ``__getitem__`` then only decodes the one image
and the one audio file of its sample (docs/method.md §4, "Inputs"). Ids that are listed but whose
files are absent are kept in ``missing`` (with a reason) rather than silently dropped, so that every
result can say "N evaluated of M listed" (docs/evaluation.md §7).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from fnac.config import DataConfig
from fnac.data.protocol import Dataset
from fnac.errors import DataError, FnacError, IdListNotFoundError
from fnac.fileio import atomic_write_text
from fnac.media import VIDEO_SUFFIXES

log = logging.getLogger("fnac.data")

IMAGE_EXTS = (".jpg", ".jpeg", ".png")  # priority order when one id has several
AUDIO_EXTS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac")
MEDIA_EXTS = IMAGE_EXTS + AUDIO_EXTS + VIDEO_SUFFIXES + (".xml",)
# First-row cells of a csv id list that mark a header row (compared case-insensitively).
HEADER_NAMES = {
    "id",
    "ids",
    "file",
    "filename",
    "file_name",
    "name",
    "video",
    "video_id",
    "vid",
    "ytid",
    "youtube_id",
    "clip",
    "clip_id",
}
SPLITS = ("train", "val", "test")


# ------------------------------------------------------------------------------------------ id lists


def _strip_ext(token: str) -> str:
    """'abc.jpg' -> 'abc' for known media extensions only (ids may contain dots elsewhere)."""
    low = token.lower()
    for ext in MEDIA_EXTS:
        if low.endswith(ext):
            return token[: -len(ext)]
    return token


def read_id_list(path: str | os.PathLike) -> list[str]:
    """Ids of an id list file, in file order, duplicates removed (first occurrence kept).

    Formats (docs/datasets.md): ``.txt`` one id per line (blank lines and ``#`` comments skipped);
    ``.csv`` the first column of each row, a header row tolerated (first cell one of HEADER_NAMES);
    ``.json`` a VGG-SS-style annotation list (the ``file`` of each entry). Known media extensions are
    stripped (``abc.jpg`` -> ``abc``). Raises DataError when the file is missing, unreadable or empty.
    """
    p = Path(path)
    if not p.is_file():
        raise IdListNotFoundError(f"id list not found: {p}")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{p}: cannot read id list ({e})") from None
    ids: list[str] = []
    suffix = p.suffix.lower()
    if suffix == ".json":
        entries = _load_json(p, text)
        if not isinstance(entries, list):
            raise DataError(f"{p}: expected a JSON list of {{'file': ...}} entries, got {type(entries).__name__}")
        for k, e in enumerate(entries):
            if not isinstance(e, dict) or not isinstance(e.get("file"), str):
                raise DataError(f"{p}: entry {k} has no string 'file' field")
            ids.append(e["file"])
    elif suffix == ".csv":
        for k, row in enumerate(csv.reader(text.splitlines())):
            if not row or not row[0].strip():
                continue
            cell = row[0].strip()
            if k == 0 and cell.lower() in HEADER_NAMES:
                continue
            ids.append(cell)
    else:
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                ids.append(line.split()[0])
    ids = list(dict.fromkeys(_strip_ext(i) for i in ids))
    if not ids:
        raise DataError(f"id list is empty: {p}")
    return ids


def write_id_list(path: str | os.PathLike, ids: Iterable[str]) -> Path:
    """Write ids one per line (atomically: `fnac.fileio`; folders created). Returns the path."""
    return atomic_write_text(path, "".join(f"{i}\n" for i in ids))


def split_ids(ids: Sequence[str], n_val: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Split ids into (val, rest): ``n_val`` ids drawn without replacement by a seeded generator, both
    parts in the original order. For a validation list carved out of an annotated set, so that
    checkpoints are never selected on the test ids (docs/evaluation.md §7)."""
    if not 0 < n_val < len(ids):
        raise DataError(
            f"validation size must be between 1 and {len(ids) - 1} (the list has {len(ids)} ids), got {n_val}"
        )
    chosen = set(np.random.default_rng(seed).choice(len(ids), size=n_val, replace=False).tolist())
    val = [i for k, i in enumerate(ids) if k in chosen]
    rest = [i for k, i in enumerate(ids) if k not in chosen]
    return val, rest


def _load_json(p: Path, text: str | None = None) -> Any:
    try:
        return json.loads(p.read_text(encoding="utf-8-sig") if text is None else text)
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{p}: cannot read ({e})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{p}: not valid JSON ({e})") from None


def read_csv_rows(path: Path, what: str) -> list[list[str]]:
    """The non-blank rows of a csv file (a UTF-8 byte-order mark ignored), the header included; a
    DataError naming the file when it cannot be read or has no rows ("<what> is empty: <path>")."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"{what} is empty: {path}")
    return rows


def resolve_list(explicit: str, candidates: Sequence[Path], what: str, missing: type[DataError] = DataError) -> Path:
    """The configured list path, else the first existing default; ``missing`` (a DataError) naming
    what was tried."""
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise missing(f"{what} not found: {p}")
        return p
    for c in candidates:
        if c.is_file():
            return c
    tried = ", ".join(str(c) for c in candidates)
    raise missing(f"{what} not found (looked for {tried}); set it in the config")


def split_list_path(data_cfg: DataConfig, split: str, defaults: dict[str, Sequence[str]]) -> Path:
    """Path of the id list of ``split``: data_cfg.<split>_list, else <root>/<default names>."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    explicit = getattr(data_cfg, f"{split}_list")
    root = Path(data_cfg.root)
    return resolve_list(
        explicit,
        [root / n for n in defaults[split]],
        f"{split} id list (data.{split}_list)",
        missing=IdListNotFoundError,
    )


# --------------------------------------------------------------------------------------- file index


def index_files(folder: Path, exts: Sequence[str], recursive: bool = False) -> dict[str, str]:
    """Map id (file stem) -> path for files with one of ``exts`` in ``folder`` (one scan, no stat per id).

    Hidden files (temporary outputs of ``fnac prepare``) are ignored. With several files per id the
    earlier extension in ``exts`` wins; with ``recursive``, sub-folders are walked in sorted order and
    the first file found wins.
    """
    found: dict[str, tuple[int, str]] = {}
    if not folder.is_dir():
        return {}
    rank = {e: k for k, e in enumerate(exts)}

    def add(name: str, path: str) -> None:
        if name.startswith("."):
            return
        stem, ext = os.path.splitext(name)
        r = rank.get(ext.lower())
        if r is None:
            return
        old = found.get(stem)
        if old is None or r < old[0]:
            found[stem] = (r, path)

    if recursive:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            for name in sorted(filenames):
                add(name, os.path.join(dirpath, name))
    else:
        with os.scandir(folder) as it:
            for entry in it:
                if entry.is_file():
                    add(entry.name, entry.path)
    return {k: v[1] for k, v in found.items()}


def merged_index(folders: Sequence[tuple[Path, bool]], exts: Sequence[str]) -> dict[str, str]:
    """index_files over several (folder, recursive) pairs; an earlier folder wins for the same id."""
    out: dict[str, str] = {}
    for folder, rec in folders:
        for k, v in index_files(folder, exts, rec).items():
            out.setdefault(k, v)
    return out


# ------------------------------------------------------------------------------------------ entries


@dataclass(slots=True)
class Entry:
    """One sample to load: its files and what its annotation needs (parsed at construction)."""

    id: str
    image: str
    audio: str
    centre: float | None = None  # audio window centre in seconds (None = the clip's centre)
    target: Any = None  # dataset-specific annotation (boxes, mask path, ...)
    positive: bool = True  # False for SLAVC's non-sounding pairs


@dataclass
class ListReport:
    """What happened between an id list and the files on disk."""

    list_path: str
    listed: list[str]
    missing: dict[str, str] = field(default_factory=dict)  # id -> reason
    excluded: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------- the dataset


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one sample's random augmentation, a pure function of (seed, epoch, index).

    The same sample gets the same crop/flip/masks in the same epoch whatever the worker or process
    that loads it (CONTRIBUTING.md, habit 8).
    """
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, epoch & 0xFFFFFFFF, index & 0xFFFFFFFF]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


class AVDataset(TorchDataset, Dataset):
    """Image + audio samples of one split of one benchmark (the data/ contract in CONTRIBUTING.md), a
    ``fnac.data.Dataset``.

    ``__getitem__(i)`` returns ``{"id", "index", "image" (3, S, S), "spec" (1, 257, T)}`` plus the
    annotation fields of the benchmark (``gt_map`` (224, 224) float32 when the split is annotated), or
    ``{"id", "index", "error": "<file>: <reason>"}`` when the sample cannot be loaded.

    Attributes: ``name`` (registry key), ``split``, ``train`` (augment or not), ``ids`` (present ids,
    list order), ``listed`` (ids in the list file), ``missing`` (listed ids whose files are absent),
    ``missing_reasons`` (id -> reason), ``excluded`` (training ids removed by ``exclude_list``),
    ``list_path``, ``annotated`` (whether samples carry ``gt_map``), ``seed`` and ``epoch``.
    """

    def __init__(
        self,
        name: str,
        split: str,
        data_cfg: DataConfig,
        train: bool,
        entries: list[Entry],
        report: ListReport,
        annotated: bool,
        seed: int = 0,
    ) -> None:
        self.name = name
        self.split = split
        self.cfg = data_cfg
        self.train = bool(train)
        self.entries = entries
        self.annotated = bool(annotated)
        self.list_path = report.list_path
        self.listed = list(report.listed)
        self.missing_reasons = dict(report.missing)
        self.missing = list(report.missing)
        self.excluded = list(report.excluded)
        self.seed = int(seed)
        self.epoch = 0
        self.with_positive = False  # the extended (SLAVC) sets add a "positive" flag to each sample
        self.ids = [e.id for e in entries]
        self._check_ids_unique()

    # -- bookkeeping ---------------------------------------------------------------------------
    def _check_ids_unique(self) -> None:
        if len(set(self.ids)) != len(self.ids):
            dup = next(i for i, n in Counter(self.ids).items() if n > 1)
            raise DataError(f"{self.list_path}: sample id {dup!r} occurs twice after building {self.name}")

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose augmentations ``__getitem__`` draws (call before each epoch's loader
        iterator is created; persistent DataLoader workers keep the value they were started with)."""
        self.epoch = int(epoch)

    def summary(self) -> str:
        """'vggss test: 5000 of 5158 listed ids present (158 missing)' and the exclusions."""
        text = f"{self.name} {self.split}: {len(self)} of {len(self.listed)} listed ids present"
        extra = []
        if self.missing:
            extra.append(f"{len(self.missing)} missing")
        if self.excluded:
            extra.append(f"{len(self.excluded)} excluded by data.exclude_list")
        if extra:
            text += " (" + ", ".join(extra) + ")"
        return text + f" [{self.list_path}]"

    def prepare_for(self, device: torch.device | str) -> None:
        """Nothing to choose: plain samples are always finished (model inputs) in the loader workers."""

    def _log_build(self) -> None:
        log.info("%s", self.summary())
        if self.missing:
            first = ", ".join(f"{i} ({self.missing_reasons[i]})" for i in self.missing[:5])
            log.warning(
                "%s %s: %d listed ids cannot be used (missing files or annotation), e.g. %s",
                self.name,
                self.split,
                len(self.missing),
                first,
            )

    # -- loading -------------------------------------------------------------------------------
    def _generators(self, index: int) -> tuple[random.Random | None, torch.Generator | None]:
        if not self.train:
            return None, None
        s = sample_seed(self.seed, self.epoch, index)
        return random.Random(s), torch.Generator().manual_seed(s)

    def load_image(self, path: str, rng: random.Random | None) -> torch.Tensor:
        """(3, S, S) model input: test_transform, or train_transform with ``rng`` (docs/method.md §4, Image)."""
        from fnac import vision

        img = vision.open_image(path, self.cfg.alpha)
        size = self.cfg.image_size
        if self.train:
            return vision.train_transform(img, size=size, rng=rng)
        return vision.test_transform(img, size=size)

    def load_spec(self, path: str, centre: float | None, gen: torch.Generator | None) -> torch.Tensor:
        """(1, 257, T) model input of the window of ``audio_duration`` s centred at ``centre``
        (None = the clip's centre); training adds the masks of ``data.spec_mask`` (docs/method.md §4, Audio)."""
        from fnac import audio, media

        x, sr = media.read_audio(path, self.cfg.sample_rate)
        w = audio.centre_window(x, sr, duration=self.cfg.audio_duration, centre=centre)
        spec = audio.spectrogram(torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))[None], sr)  # (1, 257, T)
        if self.train:
            return audio.to_model_input(spec, train=True, mask=self.cfg.spec_mask, generator=gen)
        return audio.to_model_input(spec, train=False)

    def annotation_file(self, entry: Entry) -> str:
        """The file named in the error when ``annotation`` fails: the target's source file."""
        return str(getattr(entry.target, "source", self.list_path))

    def annotation(self, entry: Entry) -> dict[str, Any]:
        """Fields of an annotated sample: the target's (``gt_map`` (224, 224), AVSBench's ``mask``),
        an empty ``gt_map`` for a sample without target, and ``positive`` on the extended sets."""
        from fnac.data.targets import zeros_map

        out = entry.target.fields() if entry.target is not None else {"gt_map": zeros_map()}
        if self.with_positive:
            out["positive"] = bool(entry.positive)
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        e = self.entries[index]
        rng, gen = self._generators(index)
        current = e.image
        try:
            image = self.load_image(e.image, rng)
            current = e.audio
            spec = self.load_spec(e.audio, e.centre, gen)
            current = self.annotation_file(e)
            extra = self.annotation(e) if self.annotated else {}
        except Exception as ex:  # one bad file must not stop a 144k-sample epoch: report it instead
            return {"id": e.id, "index": index, "error": error_text(current, ex)}
        return {"id": e.id, "index": index, "image": image, "spec": spec, **extra}


def error_text(path: str, ex: BaseException) -> str:
    """'<file>: <reason>' without repeating the path when the exception already starts with it."""
    msg = str(ex).strip()
    if msg.startswith(str(path)):
        msg = msg[len(str(path)) :].lstrip(": ").strip()
    if not isinstance(ex, FnacError):
        msg = f"{type(ex).__name__}: {msg}" if msg else type(ex).__name__
    return f"{path}: {msg or 'failed to load'}"


# ---------------------------------------------------------------------------------------- collation


def collate(samples: Sequence[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
    """Stack good samples into a batch; return failed ones as ``(id, reason)`` pairs.

    Tensors are stacked (``image`` (B, 3, S, S), ``spec`` (B, 1, 257, T), ``gt_map`` (B, 224, 224) ...),
    bools/ints/floats become tensors, strings (``id``) stay lists. A sample whose tensor shapes differ
    from the majority (e.g. a spectrogram of another sample rate while ``data.sample_rate`` is 0) is
    reported as failed rather than breaking the batch. The batch is None when every sample failed.
    """
    failed: list[tuple[str, str]] = [(str(s.get("id")), str(s["error"])) for s in samples if "error" in s]
    good = [s for s in samples if "error" not in s]
    if not good:
        return None, failed

    # keep the most common shape signature; report the others
    def signature(s: dict[str, Any]) -> tuple:
        return tuple((k, tuple(v.shape)) for k, v in sorted(s.items()) if isinstance(v, torch.Tensor))

    sigs = [signature(s) for s in good]
    common = max(set(sigs), key=sigs.count)
    if len(set(sigs)) > 1:
        keep = []
        for s, sig in zip(good, sigs):
            if sig == common:
                keep.append(s)
            else:
                shapes = {k: v for k, v in sig}
                want = {k: v for k, v in common}
                diff = ", ".join(
                    f"{k} {shapes.get(k)} vs {want.get(k)}"
                    for k in sorted(set(shapes) | set(want))
                    if shapes.get(k) != want.get(k)
                )
                failed.append(
                    (
                        str(s["id"]),
                        f"tensor shapes differ from the batch ({diff}); "
                        "set data.sample_rate to resample every clip to one rate",
                    )
                )
        good = keep
    batch: dict[str, Any] = {}
    for key in good[0]:
        values = [s[key] for s in good]
        v0 = values[0]
        if isinstance(v0, torch.Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(v0, bool):
            batch[key] = torch.tensor(values, dtype=torch.bool)
        elif isinstance(v0, int):
            batch[key] = torch.tensor(values, dtype=torch.long)
        elif isinstance(v0, float):
            batch[key] = torch.tensor(values, dtype=torch.float32)
        else:
            batch[key] = values
    return batch, failed


# ------------------------------------------------------------------------------------------ helpers


def apply_exclusion(ids: list[str], data_cfg: DataConfig) -> tuple[list[str], list[str]]:
    """Remove the ids of data_cfg.exclude_list (training splits only). Returns (kept, excluded)."""
    if not data_cfg.exclude_list:
        return ids, []
    drop = set(read_id_list(data_cfg.exclude_list))
    kept = [i for i in ids if i not in drop]
    excluded = [i for i in ids if i in drop]
    log.info("data.exclude_list %s: removed %d of %d training ids", data_cfg.exclude_list, len(excluded), len(ids))
    return kept, excluded


def match_files(
    ids: Iterable[str],
    images: dict[str, str],
    audios: dict[str, str],
    where_image: str,
    where_audio: str,
    make: Callable[[str, str, str], Entry | str],
) -> tuple[list[Entry], dict[str, str]]:
    """Pair each id with its image and audio; ``make(id, image, audio)`` returns an Entry or a reason
    (str) why the id cannot be used. Returns (entries, missing id -> reason)."""
    entries: list[Entry] = []
    missing: dict[str, str] = {}
    for i in ids:
        img, aud = images.get(i), audios.get(i)
        if img is None and aud is None:
            missing[i] = f"no image or audio file (looked in {where_image} and {where_audio})"
        elif img is None:
            missing[i] = f"no image file (looked in {where_image})"
        elif aud is None:
            missing[i] = f"no audio file (looked in {where_audio})"
        else:
            out = make(i, img, aud)
            if isinstance(out, str):
                missing[i] = out
            else:
                entries.append(out)
    return entries, missing


Indexes = tuple[dict[str, str], dict[str, str], str, str]  # images, audios, where images, where audio


def build_listed(
    name: str,
    data_cfg: DataConfig,
    split: str,
    train: bool,
    seed: int,
    list_defaults: dict[str, Sequence[str]],
    indexes: Callable[[Path], Indexes],
    targets: Callable[[DataConfig], Callable[[str], Any]],
) -> AVDataset:
    """A benchmark whose splits are id lists (VGG-SS, Flickr-SoundNet): the split's ids (for training
    without those of data.exclude_list), each paired with its image and audio file from
    ``indexes(data.root)`` and, on the annotated val and test splits, with its target from
    ``targets(data_cfg)``, a function of an id
    that returns the target or the reason (str) why the id has none. ``targets`` is called only for
    annotated splits, after the list is read and before ``indexes``."""
    list_path = split_list_path(data_cfg, split, list_defaults)
    listed = read_id_list(list_path)
    ids, excluded = apply_exclusion(listed, data_cfg) if split == "train" else (listed, [])
    annotated = split != "train"
    target_of = targets(data_cfg) if annotated else None
    images, audios, where_i, where_a = indexes(Path(data_cfg.root))

    def make(i: str, img: str, aud: str) -> Entry | str:
        if target_of is None:
            return Entry(i, img, aud)
        target = target_of(i)
        return target if isinstance(target, str) else Entry(i, img, aud, target=target)

    entries, missing = match_files(ids, images, audios, where_i, where_a, make)
    report = ListReport(str(list_path), listed, missing, excluded)
    ds = AVDataset(name, split, data_cfg, train, entries, report, annotated, seed)
    ds._log_build()
    return ds
