"""Flickr-SoundNet (docs/datasets.md, "Layouts, exactly").

Files of an id are looked up, in this order, in:
1. ``<root>/frames/<id>.jpg`` + ``<root>/audio/<id>.wav`` (the prepared training layout);
2. ``<root>/<id>.jpg`` + ``<root>/<id>.wav`` side by side (the reference code's test folder);
3. ``<root>/Data/**`` (the released test set: files spread over ``Data/0`` .. ``Data/9``), found by id.
Images may be .jpg/.jpeg/.png, audio any of common.AUDIO_EXTS (.wav first).

Annotations (val/test): ``<id>.xml`` in data.annotations (a folder), default ``<root>/Annotations``,
then beside the images in ``<root>``. Every XML file of the split is parsed once when the dataset is
built. Id lists: defaults ``<root>/{train,val,test}.txt``, test also ``<root>/flickr_test.csv``
(rows ``id,<int>``: only the first column is read).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fnac.config import DataConfig
from fnac.data.common import (
    AUDIO_EXTS,
    IMAGE_EXTS,
    AVDataset,
    build_listed,
    index_files,
    merged_index,
)
from fnac.data.targets import FlickrBoxes
from fnac.errors import DataError

LIST_DEFAULTS = {"train": ["train.txt"], "val": ["val.txt"], "test": ["test.txt", "flickr_test.csv"]}


def layout_indexes(root: Path, extended: bool = False) -> tuple[dict[str, str], dict[str, str], str, str]:
    """(images, audios, where_images, where_audio) over the three layouts of the module docstring
    (plus SLAVC's extend_frames/ + extend_audio/ when ``extended``)."""
    img_dirs = [(root / "frames", False), (root, False), (root / "Data", True)]
    aud_dirs = [(root / "audio", False), (root, False), (root / "Data", True)]
    if extended:
        img_dirs.insert(1, (root / "extend_frames", False))
        aud_dirs.insert(1, (root / "extend_audio", False))
    images = merged_index(img_dirs, IMAGE_EXTS)
    audios = merged_index(aud_dirs, AUDIO_EXTS)
    where_i = ", ".join(str(d) + ("/**" if rec else "") for d, rec in img_dirs)
    where_a = ", ".join(str(d) + ("/**" if rec else "") for d, rec in aud_dirs)
    return images, audios, where_i, where_a


def annotation_index(data_cfg: DataConfig) -> tuple[dict[str, str], str]:
    """id -> XML path, and a description of where it looked."""
    root = Path(data_cfg.root)
    if data_cfg.annotations:
        folder = Path(data_cfg.annotations)
        if not folder.is_dir():
            raise DataError(f"data.annotations: Flickr annotation folder not found: {folder}")
        return index_files(folder, (".xml",)), str(folder)
    folders = [(root / "Annotations", False), (root, False)]
    return merged_index(folders, (".xml",)), f"{root / 'Annotations'} or {root}"


def build(data_cfg: DataConfig, split: str, train: bool, seed: int = 0) -> AVDataset:
    """The ``flickr`` dataset: see the module docstring. Val and test splits carry ``gt_map``."""
    return build_listed("flickr", data_cfg, split, train, seed, LIST_DEFAULTS, layout_indexes, annotation_targets)


def annotation_targets(data_cfg: DataConfig) -> Callable[[str], FlickrBoxes | str]:
    """id -> its boxes, or the reason it has none. The XML files are indexed now and each parsed when
    its id is asked for (a DataError naming the file on a malformed one)."""
    xmls, where = annotation_index(data_cfg)

    def target(i: str) -> FlickrBoxes | str:
        x = xmls.get(i)
        return FlickrBoxes.from_xml(x) if x is not None else f"no annotation {i}.xml (looked in {where})"

    return target
