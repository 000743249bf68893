"""Dataset hygiene (``fnac data check``): what is listed vs present, what cannot be decoded, which
boxes are degenerate, and which test ids leak into the training list (docs/evaluation.md §7).

``check_dataset`` returns a JSON-serialisable dict; ``format_report`` renders it as a table.
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fnac.config import DataConfig
from fnac.data.common import SPLITS, AVDataset, Entry, read_id_list, write_id_list
from fnac.data.targets import FlickrBoxes, MaskFile, VggssBoxes
from fnac.errors import DataError

log = logging.getLogger("fnac.data")

FLICKR_FRAME = 256  # Flickr-SoundNet boxes are integers in a 256 x 256 frame (docs/datasets.md)


def box_problems(box: Sequence[float], frame: float) -> list[str]:
    """Why a box [x1, y1, x2, y2] is suspicious: 'degenerate' (x1 >= x2 or y1 >= y2) and/or
    'out of range' (a coordinate outside [0, frame]). Empty list for a good box."""
    x1, y1, x2, y2 = (float(v) for v in box)
    why = []
    if x1 >= x2 or y1 >= y2:
        why.append("degenerate")
    if any(not math.isfinite(v) or v < 0 or v > frame for v in (x1, y1, x2, y2)):
        why.append("out of range")
    return why


def _check_boxes(ds: AVDataset) -> dict[str, Any]:
    """Box statistics over the samples of ``ds`` that will be evaluated (present and annotated)."""
    out: dict[str, Any] = {"samples": 0, "boxes": 0, "degenerate": [], "out_of_range": [], "no_valid_box": []}
    for e in ds.entries:
        t = e.target
        if isinstance(t, VggssBoxes):
            boxes, frame = t.boxes, 1.0
        elif isinstance(t, FlickrBoxes):
            boxes, frame = t.boxes, FLICKR_FRAME
        else:
            continue
        out["samples"] += 1
        out["boxes"] += len(boxes)
        for b in boxes:
            why = box_problems(b, frame)
            item = {"id": e.id, "box": [float(v) for v in b]}
            if "degenerate" in why:
                out["degenerate"].append(item)
            if "out of range" in why:
                out["out_of_range"].append(item)
        # "valid" is what the metric sees: an empty ground-truth map after clipping and rasterising
        if float(t.fields()["gt_map"].sum()) == 0.0:
            out["no_valid_box"].append(e.id)
    return out


def _box_stats(items, out: dict[str, Any]) -> dict[str, Any]:
    """Fill the box counts of ``out`` from (id, boxes, frame, gt_map) tuples (gt_map: the
    ground-truth map the metric sees)."""
    for sid, boxes, frame, gt in items:
        out["entries"] += 1
        out["boxes"] += len(boxes)
        for b in boxes:
            why = box_problems(b, frame)
            item = {"id": sid, "box": [float(v) for v in b]}
            if "degenerate" in why:
                out["degenerate"].append(item)
            if "out of range" in why:
                out["out_of_range"].append(item)
        if float(np.asarray(gt).sum()) == 0.0:
            out["no_valid_box"].append(sid)
    return out


def check_annotations(data_cfg: DataConfig) -> dict[str, Any] | None:
    """Box problems over every entry of the dataset's annotation file (VGG-SS JSON) or folder
    (Flickr XML), whether or not the media are present: the file can be vetted before downloading
    anything. None for datasets without box annotations; DataError when the annotations cannot be
    found or parsed."""
    from fnac import metrics

    out: dict[str, Any] = {
        "file": "",
        "entries": 0,
        "boxes": 0,
        "degenerate": [],
        "out_of_range": [],
        "no_valid_box": [],
    }
    if data_cfg.dataset in ("vggss", "extended_vggss"):
        from fnac.data.vggss import annotations_path, parse_vggss_json

        path = annotations_path(data_cfg)
        ann = parse_vggss_json(path)
        out["file"] = str(path)
        return _box_stats(((i, a.boxes, 1.0, metrics.gt_map_vggss(a.boxes)) for i, a in ann.items()), out)
    if data_cfg.dataset in ("flickr", "extended_flickr"):
        from fnac.data.flickr import annotation_index

        xmls, where = annotation_index(data_cfg)
        if not xmls:
            raise DataError(f"no Flickr annotation files (<id>.xml) in {where}")
        out["file"] = where

        def items():
            for i, x in sorted(xmls.items()):
                yield i, metrics.parse_flickr_xml(x), FLICKR_FRAME, metrics.gt_map_flickr(x)

        return _box_stats(items(), out)
    return None


def _decode(e: Entry) -> str | None:
    """None when the sample's image, audio (and mask) decode; else '<file>: <reason>'."""
    from fnac import media, vision
    from fnac.data.common import error_text

    for path, fn in ((e.image, vision.open_image), (e.audio, media.read_audio)):
        try:
            fn(path)
        except Exception as ex:
            return error_text(path, ex)
    if isinstance(e.target, MaskFile):
        try:
            e.target.fields()
        except Exception as ex:
            return error_text(e.target.source, ex)
    return None


def _empty_files(e: Entry) -> str | None:
    for path in (e.image, e.audio):
        try:
            if os.path.getsize(path) == 0:
                return f"{path}: file is empty (0 bytes)"
        except OSError as ex:
            return f"{path}: {ex.strerror or ex}"
    return None


def _check_split(ds: AVDataset, deep: bool, workers: int, progress: bool) -> dict[str, Any]:
    fn = _decode if deep else _empty_files
    entries = ds.entries
    if workers > 1 and len(entries) > 1:
        with ThreadPoolExecutor(workers) as pool:
            results = list(_progress(pool.map(fn, entries), len(entries), progress, f"check {ds.split}"))
    else:
        results = [fn(e) for e in _progress(entries, len(entries), progress, f"check {ds.split}")]
    unreadable = {e.id: r for e, r in zip(entries, results) if r is not None}
    return {
        "dataset": ds.name,
        "list": ds.list_path,
        "listed": len(ds.listed),
        "present": len(ds),
        "missing": len(ds.missing),
        "missing_ids": dict(ds.missing_reasons),
        "excluded": len(ds.excluded),
        "unreadable": len(unreadable),
        "unreadable_ids": unreadable,
        "deep": deep,
        "boxes": _check_boxes(ds) if ds.annotated else None,
    }


def _progress(it, total: int, enabled: bool, desc: str):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, desc=desc, unit="sample")


def overlap_ids(train_ids: Sequence[str], test_ids: Sequence[str]) -> list[str]:
    """Test ids (in test-list order) that also occur in the training list."""
    train_set = set(train_ids)
    return [i for i in test_ids if i in train_set]


def _default_list(data_cfg: DataConfig, split: str) -> str:
    """The configured/default list path of ``split`` when it exists on disk, else ''."""
    from fnac.data import flickr, vggss
    from fnac.data.common import split_list_path

    mod = flickr if data_cfg.dataset in ("flickr", "extended_flickr") else vggss
    try:
        return str(split_list_path(data_cfg, split, mod.LIST_DEFAULTS))
    except DataError:
        return ""


def check_dataset(
    data_cfg: DataConfig,
    splits: Sequence[str] | None = None,
    deep: bool = False,
    train_list: str = "",
    test_list: str = "",
    overlap_out: str = "",
    workers: int = 1,
    progress: bool = False,
) -> dict[str, Any]:
    """Hygiene report of ``data_cfg``'s dataset (docs/datasets.md; docs/evaluation.md §7).

    For each split (default: every split whose list exists): ids listed / present / missing (with
    reasons) / excluded, files that are empty (or, with ``deep``, that fail to decode), and for
    annotated splits degenerate boxes (x1 >= x2 or y1 >= y2), out-of-range boxes and samples with no
    valid box (empty ground-truth map). The same box counts over every entry of the annotation file
    itself, media or not, are under ``annotations`` (``check_annotations``). Overlap: test ids also in the training list, from
    ``train_list``/``test_list`` or the config's lists; ``overlap_out`` writes them as an id list
    usable as ``data.exclude_list``.
    """
    from fnac.data import build_dataset

    report: dict[str, Any] = {
        "dataset": data_cfg.dataset,
        "root": data_cfg.root,
        "annotations": None,
        "splits": {},
        "skipped": {},
        "overlap": None,
    }
    try:
        report["annotations"] = check_annotations(data_cfg)
    except DataError as e:
        if data_cfg.annotations:  # the file the user named must be there and parse
            raise
        report["skipped"]["annotations"] = str(e)
    explicit = splits is not None and len(splits) > 0
    for split in splits if explicit else SPLITS:
        try:
            ds = build_dataset(data_cfg, split, train=False)
        except DataError as e:
            if explicit:
                raise
            report["skipped"][split] = str(e)
            continue
        report["splits"][split] = _check_split(ds, deep, workers, progress)
    tr = train_list or _default_list(data_cfg, "train")
    te = test_list or _default_list(data_cfg, "test")
    if train_list or test_list:
        if not (tr and te):
            raise DataError("overlap check needs both a training list (--train-list) and a test list (--test-list)")
    if tr and te:
        test_ids = read_id_list(te)
        ov = overlap_ids(read_id_list(tr), test_ids)
        report["overlap"] = {
            "train_list": tr,
            "test_list": te,
            "test": len(test_ids),
            "overlap": len(ov),
            "ids": ov,
            "written_to": "",
        }
        if overlap_out:
            write_id_list(overlap_out, ov)
            report["overlap"]["written_to"] = str(Path(overlap_out))
    if not report["splits"] and report["overlap"] is None and report["annotations"] is None:
        why = "; ".join(f"{k}: {v}" for k, v in report["skipped"].items())
        raise DataError(f"nothing to check for dataset {data_cfg.dataset!r} at {data_cfg.root} ({why})")
    return report


def format_report(report: dict[str, Any], max_items: int = 10) -> str:
    """The report as a table plus the first ``max_items`` problems of each kind."""
    head = [
        "split",
        "listed",
        "present",
        "missing",
        "excluded",
        "unreadable",
        "degenerate",
        "out-of-range",
        "no valid box",
    ]
    rows = []
    for split, r in report["splits"].items():
        b = r["boxes"]
        rows.append(
            [
                split,
                r["listed"],
                r["present"],
                r["missing"],
                r["excluded"],
                r["unreadable"],
                len(b["degenerate"]) if b else "-",
                len(b["out_of_range"]) if b else "-",
                len(b["no_valid_box"]) if b else "-",
            ]
        )
    lines = [f"dataset {report['dataset']} at {report['root']}"]
    if rows:
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        fmt = "  ".join(f"{{:<{w}}}" if k == 0 else f"{{:>{w}}}" for k, w in enumerate(widths))
        lines += [fmt.format(*head), fmt.format(*["-" * w for w in widths])]
        lines += [fmt.format(*map(str, r)) for r in rows]
    for split, why in report["skipped"].items():
        lines.append(f"{split}: not checked ({why})")

    def more(n: int) -> str:
        return f"  ... and {n - max_items} more" if n > max_items else ""

    a = report.get("annotations")
    if a:
        lines.append(
            f"annotations [{a['file']}], all entries, media or not: {a['entries']} entries, "
            f"{a['boxes']} boxes, {len(a['degenerate'])} degenerate, {len(a['out_of_range'])} outside "
            f"the frame, {len(a['no_valid_box'])} with no valid box"
        )
        for key, text in (
            ("degenerate", "degenerate boxes (x1 >= x2 or y1 >= y2)"),
            ("out_of_range", "boxes outside the frame"),
        ):
            if a[key]:
                lines.append(f"  {text}:")
                lines += [f"    {x['id']}: {x['box']}" for x in a[key][:max_items]]
                if more(len(a[key])):
                    lines.append("  " + more(len(a[key])))
        if a["no_valid_box"]:
            lines.append(
                f"  no valid box (these would score 0 cIoU): {', '.join(a['no_valid_box'][:max_items])}"
                + more(len(a["no_valid_box"]))
            )

    for split, r in report["splits"].items():
        lines.append(
            f"{split}: {r['present']} of {r['listed']} listed ids present [{r['list']}]"
            + ("" if r["deep"] else " (files not decoded; use --deep)")
        )
        for title, items in (("missing", r["missing_ids"]), ("unreadable", r["unreadable_ids"])):
            if items:
                lines.append(f"  {title}:")
                lines += [f"    {k}: {v}" for k, v in list(items.items())[:max_items]]
                if more(len(items)):
                    lines.append("  " + more(len(items)))
        b = r["boxes"]
        if b:
            titles = {
                "degenerate": "degenerate boxes (x1 >= x2 or y1 >= y2)",
                "out_of_range": "boxes outside the frame",
            }
            for title, text in titles.items():
                if b[title]:
                    lines.append(f"  {text}:")
                    lines += [f"    {x['id']}: {x['box']}" for x in b[title][:max_items]]
                    if more(len(b[title])):
                        lines.append("  " + more(len(b[title])))
            if b["no_valid_box"]:
                lines.append(
                    f"  no valid box (these score 0 cIoU): {', '.join(b['no_valid_box'][:max_items])}"
                    + more(len(b["no_valid_box"]))
                )
    ov = report["overlap"]
    if ov is not None:
        lines.append(
            f"train/test overlap: {ov['overlap']} of {ov['test']} test ids [{ov['test_list']}] are in the "
            f"training list [{ov['train_list']}]"
        )
        if ov["written_to"]:
            lines.append(f"  overlap ids written to {ov['written_to']} (use as data.exclude_list)")
        elif ov["overlap"]:
            lines.append("  write them with --write-overlap FILE and train with data.exclude_list=FILE")
    return "\n".join(lines)
