"""Extended Flickr / Extended VGG-SS (SLAVC; docs/datasets.md and docs/evaluation.md §5).

The test split is the base benchmark's positives (its test list, with boxes) plus the negative rows of
SLAVC's ``<set>_test_plus_silent.csv`` (header ``video,audio,label``): a row labelled
``non-sounding`` pairs the image of ``video`` with the audio of ``audio``. In the published files
both kinds occur: Flickr's 250 negatives are each an image with another clip's audio; of VGG-SS's
5,158, 4,779 pair a VGG-SS test image with the audio of a different test clip (``video != audio``)
and 379 are same-id clips (``video == audio``) from outside the VGG-SS test list. Rows with any
other label are extra positives. Every sample carries ``positive`` (bool) and ``gt_map`` (zeros for negatives).

The csv is ``data.extended_list``, default ``<root>/<flickr|vggss>_test_plus_silent.csv`` then
``<root>/metadata/...``. A negative's id is ``video`` when that is unique, else ``video+audio``.
Files are looked up in the base layout plus ``extend_frames/`` and ``extend_audio/``.
The train and val splits are those of the base benchmark (no negatives).
"""

from __future__ import annotations

from pathlib import Path

from fnac.config import DataConfig
from fnac.data import flickr, vggss
from fnac.data.common import (
    AVDataset,
    Entry,
    ListReport,
    read_csv_rows,
    read_id_list,
    resolve_list,
    split_list_path,
)
from fnac.errors import DataError

NEGATIVE_LABEL = "non-sounding"


def read_extended_csv(path: Path) -> list[tuple[str, str, str]]:
    """(video, audio, label) rows of a SLAVC ``*_test_plus_silent.csv``; DataError on a bad header."""
    rows = read_csv_rows(path, "extended id list")
    head = [c.strip().lower() for c in rows[0]]
    if head[:3] != ["video", "audio", "label"]:
        raise DataError(f"{path}: expected the header 'video,audio,label' (SLAVC's format), got {','.join(rows[0])!r}")
    out = []
    for k, r in enumerate(rows[1:], start=2):
        if len(r) < 3:
            raise DataError(f"{path}: line {k} has {len(r)} fields, expected video,audio,label")
        out.append((r[0].strip(), r[1].strip(), r[2].strip()))
    if not out:
        raise DataError(f"extended id list has no rows: {path}")
    return out


class _Base:
    """What the extended builder needs from a base benchmark."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.mod = vggss if name == "vggss" else flickr

    def indexes(self, root: Path):
        return self.mod.layout_indexes(root, extended=True)

    def targets(self, data_cfg: DataConfig):
        """A function id -> target or reason string (why the id has no annotation)."""
        return self.mod.annotation_targets(data_cfg)


def build(base_name: str, data_cfg: DataConfig, split: str, train: bool, seed: int = 0) -> AVDataset:
    """``extended_vggss`` / ``extended_flickr``: see the module docstring."""
    base = _Base(base_name)
    if split != "test":
        return base.mod.build(data_cfg, split, train, seed)
    root = Path(data_cfg.root)
    name = f"extended_{base_name}"
    ext_path = resolve_list(
        data_cfg.extended_list,
        [root / f"{base_name}_test_plus_silent.csv", root / "metadata" / f"{base_name}_test_plus_silent.csv"],
        "extended test list (data.extended_list)",
    )
    rows = read_extended_csv(ext_path)
    list_path = split_list_path(data_cfg, "test", base.mod.LIST_DEFAULTS)
    positives = read_id_list(list_path)
    pos_set = set(positives)
    for video, audio, label in rows:
        if label != NEGATIVE_LABEL and video not in pos_set:
            if video != audio:
                raise DataError(f"{ext_path}: positive row {video},{audio},{label} pairs two different clips")
            positives.append(video)
            pos_set.add(video)
    images, audios, where_i, where_a = base.indexes(root)
    target_of = base.targets(data_cfg)
    listed: list[str] = []
    entries: list[Entry] = []
    missing: dict[str, str] = {}

    def add(sid: str, video: str, audio: str, positive: bool) -> None:
        listed.append(sid)
        img, aud = images.get(video), audios.get(audio)
        if img is None:
            missing[sid] = f"no image file for {video} (looked in {where_i})"
        elif aud is None:
            missing[sid] = f"no audio file for {audio} (looked in {where_a})"
        elif positive:
            t = target_of(video)
            if isinstance(t, str):
                missing[sid] = t
            else:
                entries.append(Entry(sid, img, aud, target=t, positive=True))
        else:
            entries.append(Entry(sid, img, aud, target=None, positive=False))

    for i in positives:
        add(i, i, i, True)
    used = set(positives)
    for video, audio, label in rows:
        if label != NEGATIVE_LABEL:
            continue
        sid = video if (video == audio and video not in used) else f"{video}+{audio}"
        k = 2
        base_sid = sid
        while sid in used:  # the same pair listed twice: keep both, distinctly named
            sid = f"{base_sid}#{k}"
            k += 1
        used.add(sid)
        add(sid, video, audio, False)
    report = ListReport(f"{list_path} + {ext_path}", listed, missing, [])
    ds = AVDataset(name, split, data_cfg, train, entries, report, True, seed)
    ds.with_positive = True
    ds._log_build()
    return ds
