"""VGG-Sound training layout and the VGG-SS test set (docs/datasets.md, "Layouts, exactly").

Layout: ``<root>/frames/<id>.jpg`` (or ``.png``), ``<root>/audio/<id>.wav``. Id lists: ``.txt`` or
``.csv`` (see common.read_id_list); defaults ``<root>/{train,val,test}.txt`` (test also
``<root>/vggss_test.csv``). Annotations: the VGG-SS ``vggss.json`` format, a JSON list of
``{"file": id, "class": name, "bbox": [[x1, y1, x2, y2], ...]}`` normalised to [0, 1]; default
``<root>/annotations.json`` (the synthetic benchmark's name), then ``<root>/vggss.json``. The built-in
synthetic benchmark uses this layout.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fnac.config import DataConfig
from fnac.data.common import (
    AUDIO_EXTS,
    IMAGE_EXTS,
    AVDataset,
    _load_json,
    build_listed,
    merged_index,
    resolve_list,
)
from fnac.data.targets import VggssBoxes
from fnac.errors import DataError

LIST_DEFAULTS = {"train": ["train.txt"], "val": ["val.txt"], "test": ["test.txt", "vggss_test.csv"]}
ANNOTATION_DEFAULTS = ["annotations.json", "vggss.json", "metadata/vggss.json"]


@dataclass
class VggssAnnotation:
    """One parsed entry of vggss.json."""

    boxes: list[list[float]]
    cls: str


def annotations_path(data_cfg: DataConfig) -> Path:
    root = Path(data_cfg.root)
    return resolve_list(
        data_cfg.annotations, [root / n for n in ANNOTATION_DEFAULTS], "annotation file (data.annotations)"
    )


def parse_vggss_json(path: str | Path) -> dict[str, VggssAnnotation]:
    """id -> boxes and class of a vggss.json-format file, validated once (structure errors name the
    entry). Boxes are kept as written, degenerate ones included: the metrics clip them
    (docs/evaluation.md §1) and ``fnac data check`` reports them (docs/datasets.md)."""
    p = Path(path)
    entries = _load_json(p)
    if not isinstance(entries, list):
        raise DataError(
            f"{p}: expected a JSON list of {{'file', 'class', 'bbox'}} entries, got {type(entries).__name__}"
        )
    out: dict[str, VggssAnnotation] = {}
    for k, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("file"), str):
            raise DataError(f"{p}: entry {k} has no string 'file' field")
        boxes = e.get("bbox")
        if not isinstance(boxes, list):
            raise DataError(f"{p}: entry {k} ({e['file']}): 'bbox' must be a list of [x1, y1, x2, y2] lists")
        clean: list[list[float]] = []
        for b in boxes:
            if (
                not isinstance(b, (list, tuple))
                or len(b) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in b)
            ):
                raise DataError(f"{p}: entry {k} ({e['file']}): box {b!r} is not 4 numbers [x1, y1, x2, y2]")
            if not all(math.isfinite(float(v)) for v in b):
                raise DataError(f"{p}: entry {k} ({e['file']}): box {b!r} has a non-finite coordinate")
            clean.append([float(v) for v in b])
        fid = e["file"]
        for ext in (".jpg", ".png", ".mp4", ".wav"):
            if fid.lower().endswith(ext):
                fid = fid[: -len(ext)]
        if fid in out:  # keep the boxes of both entries: one id, one union map
            out[fid].boxes.extend(clean)
        else:
            out[fid] = VggssAnnotation(clean, str(e.get("class", "")))
    return out


def layout_indexes(root: Path, extended: bool = False) -> tuple[dict[str, str], dict[str, str], str, str]:
    """(images, audios, where_images, where_audio) of the frames/ + audio/ layout (plus SLAVC's
    extend_frames/ + extend_audio/ when ``extended``)."""
    img_dirs = [(root / "frames", False)] + ([(root / "extend_frames", False)] if extended else [])
    aud_dirs = [(root / "audio", False)] + ([(root / "extend_audio", False)] if extended else [])
    images = merged_index(img_dirs, IMAGE_EXTS)
    audios = merged_index(aud_dirs, AUDIO_EXTS)
    where_i = " or ".join(f"{d}/<id>.jpg|.png" for d, _ in img_dirs)
    where_a = " or ".join(f"{d}/<id>.wav" for d, _ in aud_dirs)
    return images, audios, where_i, where_a


def build(data_cfg: DataConfig, split: str, train: bool, seed: int = 0) -> AVDataset:
    """The ``vggss`` dataset: see the module docstring. Val and test splits carry ``gt_map``."""
    return build_listed("vggss", data_cfg, split, train, seed, LIST_DEFAULTS, layout_indexes, annotation_targets)


def annotation_targets(data_cfg: DataConfig) -> Callable[[str], VggssBoxes | str]:
    """id -> its boxes, or the reason it has none (the annotation file is read now)."""
    path = str(annotations_path(data_cfg))
    ann = parse_vggss_json(path)

    def target(i: str) -> VggssBoxes | str:
        a = ann.get(i)
        return VggssBoxes(a.boxes, path) if a is not None else f"no annotation in {path}"

    return target
