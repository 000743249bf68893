"""AVSBench v1 (S4 single source, MS3 multiple sources) as per-frame localization samples
(docs/datasets.md, "Layouts, exactly"; docs/evaluation.md §6).

Each video gives 5 samples, one per frame ``i`` in 1..5 (the file numbering), id ``<name>_<i>``. Frame
``i`` shows second ``i - 1`` to ``i`` of the 5 s clip, so its audio is the usual ``data.audio_duration``
window centred on ``i - 0.5`` s (fnac.audio.centre_window: moved inside the clip at the edges, tiled
when the clip is shorter than the window). Val/test samples carry ``mask`` (224, 224) float32 in {0, 1}
(nonzero pixels of the PNG, nearest-neighbour resize; MS3's palette PNGs included) and the same
array as ``gt_map``.

Metadata: ``data.annotations`` (default ``<root>/s4_meta_data.csv`` or ``<root>/ms3_meta_data.csv``),
a csv with a header naming at least ``split``; the video name is the column ``name`` (else the first
column) and, for S4, the category is ``category`` (else the third column). Videos of the split are
those whose ``split`` equals it; ``data.<split>_list``, when set, further restricts them to its ids.

S4 (``<root>`` = the "Single-source" folder):
``s4_data/visual_frames/<split>/<category>/<name>/<name>_<i>.png``,
``s4_data/gt_masks/<split>/<category>/<name>/<name>_<i>.png``,
``s4_data/audio_wav/<split>/<category>/<name>.wav``.
MS3 (``<root>`` = "Multi-sources"): ``ms3_data/visual_frames/<name>.mp4_<i>.png`` (or inside a
``<name>/`` folder), ``ms3_data/gt_masks/<split>/<name>/<name>_<i>.png``,
``ms3_data/audio_wav/<split>/<name>.wav`` (or ``audio_wav/<name>.wav``).
"""

from __future__ import annotations

import os
from pathlib import Path

from fnac.config import DataConfig
from fnac.data.common import AVDataset, Entry, ListReport, read_csv_rows, read_id_list, resolve_list
from fnac.data.targets import MaskFile
from fnac.errors import DataError

FRAMES_PER_VIDEO = 5


def read_meta(path: Path, subset: str) -> list[dict[str, str]]:
    """Rows of an AVSBench meta csv as {"name", "category", "split"} dicts."""
    rows = read_csv_rows(path, "AVSBench metadata")
    head = [c.strip().lower() for c in rows[0]]
    if "split" not in head:
        raise DataError(f"{path}: expected a header row with a 'split' column, got {','.join(rows[0])!r}")
    i_split = head.index("split")
    i_name = head.index("name") if "name" in head else 0
    i_cat = head.index("category") if "category" in head else 2
    out = []
    for k, r in enumerate(rows[1:], start=2):
        need = max(i_split, i_name, i_cat if subset == "s4" else 0)
        if len(r) <= need:
            raise DataError(f"{path}: line {k} has {len(r)} fields, expected at least {need + 1}")
        out.append(
            {
                "name": r[i_name].strip(),
                "category": r[i_cat].strip() if subset == "s4" else "",
                "split": r[i_split].strip(),
            }
        )
    return out


def _first_file(*candidates: Path) -> str | None:
    for c in candidates:
        if os.path.isfile(c):
            return str(c)
    return None


def build(subset: str, data_cfg: DataConfig, split: str, train: bool, seed: int = 0) -> AVDataset:
    """``avsbench_s4`` (subset "s4") / ``avsbench_ms3`` ("ms3"): see the module docstring."""
    if split not in ("train", "val", "test"):
        raise DataError(f"unknown split {split!r} (expected train, val or test)")
    root = Path(data_cfg.root)
    meta_path = resolve_list(
        data_cfg.annotations,
        [root / f"{subset}_meta_data.csv"],
        f"AVSBench {subset.upper()} metadata (data.annotations)",
    )
    videos = [r for r in read_meta(meta_path, subset) if r["split"] == split]
    restrict = getattr(data_cfg, f"{split}_list")
    if restrict:
        keep = set(read_id_list(restrict))
        videos = [v for v in videos if v["name"] in keep]
    if not videos:
        raise DataError(f"{meta_path}: no {split} videos" + (f" listed in {restrict}" if restrict else ""))
    # exclude_list (training only) may name videos or single frames <name>_<i>
    drop = set(read_id_list(data_cfg.exclude_list)) if split == "train" and data_cfg.exclude_list else set()
    excluded: list[str] = []
    annotated = split != "train"
    d = root / f"{subset}_data"
    listed: list[str] = []
    entries: list[Entry] = []
    missing: dict[str, str] = {}
    for v in videos:
        name, cat = v["name"], v["category"]
        if subset == "s4":
            frame_dir = d / "visual_frames" / split / cat / name
            mask_dir = d / "gt_masks" / split / cat / name
            audio = _first_file(d / "audio_wav" / split / cat / f"{name}.wav")
            where_a = d / "audio_wav" / split / cat / f"{name}.wav"
        else:
            frame_dir = d / "visual_frames"
            mask_dir = d / "gt_masks" / split / name
            audio = _first_file(d / "audio_wav" / split / f"{name}.wav", d / "audio_wav" / f"{name}.wav")
            where_a = d / "audio_wav" / split / f"{name}.wav"
        for i in range(1, FRAMES_PER_VIDEO + 1):
            sid = f"{name}_{i}"
            listed.append(sid)
            if sid in drop or name in drop:
                excluded.append(sid)
                continue
            if subset == "s4":
                image = _first_file(frame_dir / f"{name}_{i}.png")
            else:
                image = _first_file(frame_dir / f"{name}.mp4_{i}.png", frame_dir / name / f"{name}.mp4_{i}.png")
            mask = mask_dir / f"{name}_{i}.png"
            if image is None:
                missing[sid] = f"no frame {i} (looked in {frame_dir})"
            elif audio is None:
                missing[sid] = f"no audio ({where_a})"
            elif annotated and not mask.is_file():
                missing[sid] = f"no mask ({mask})"
            else:
                target = MaskFile(str(mask)) if annotated else None
                entries.append(Entry(sid, image, audio, centre=i - 0.5, target=target))
    ds = AVDataset(
        f"avsbench_{subset}",
        split,
        data_cfg,
        train,
        entries,
        ListReport(str(meta_path), listed, missing, excluded),
        annotated,
        seed,
    )
    ds._log_build()
    return ds
