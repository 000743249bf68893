"""Temporal sanity on synthetic clips: score a localized video against the per-frame ground truth of a
`fnac.synth` clip (clips/<name>.json: frames[i] = {"index", "time", "object", "class", "bbox",
"objects"}).

`score_clip` is what `fnac localize --gt` prints and writes into the JSON ("score"); the metrics are
those of docs/evaluation.md §2-3 (`fnac.metrics`) computed on each frame's 224 x 224 map.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from fnac import metrics
from fnac.errors import DataError
from fnac.results import MAP_SIZE, VideoResult


def _gt_boxes(entry: dict, source: str) -> list[list[float]]:
    b = entry.get("bbox")
    if b is None:
        raise DataError(f"{source}: frame {entry.get('index')} has no 'bbox'")
    arr = np.asarray(b, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise DataError(f"{source}: frame {entry.get('index')}: 'bbox' must be [x1, y1, x2, y2] or a list of them")
    return arr.tolist()


def _inside(p: tuple[float, float], boxes: list[list[float]]) -> bool:
    return any(b[0] <= p[0] <= b[2] and b[1] <= p[1] <= b[3] for b in boxes)


def load_clip_gt(gt_json: str | os.PathLike | dict) -> dict:
    """A synthetic clip's ground truth (`fnac.synth` clips/<name>.json) as a dict; DataError if malformed."""
    if isinstance(gt_json, dict):
        gt, source = gt_json, "ground truth"
    else:
        source = str(gt_json)
        try:
            gt = json.loads(Path(gt_json).read_text())
        except OSError as e:
            raise DataError(f"{source}: cannot read ground truth ({e.strerror or e})") from None
        except ValueError as e:
            raise DataError(f"{source}: not valid JSON ({e})") from None
    if not isinstance(gt, dict) or not isinstance(gt.get("frames"), list) or not gt["frames"]:
        raise DataError(f"{source}: expected a clip ground truth with a non-empty 'frames' list")
    for f in gt["frames"]:
        if not isinstance(f, dict) or "time" not in f:
            raise DataError(f"{source}: every frame needs 'time' and 'bbox'")
        _gt_boxes(f, source)
    gt.setdefault("_source", source)
    return gt


def score_clip(result: VideoResult, gt_json: str | os.PathLike | dict) -> dict[str, Any]:
    """Score each localized frame against the clip's per-frame ground truth.

    A frame is matched to the gt frame with the same index, or else the nearest in time. Returns:
    frames scored; peak_in_box (fraction of frames whose peak lies inside the sounding object's box,
    edges included); peak_in_silent (fraction whose peak lies inside a silent object's box and not in
    the sounding one's, when the gt lists all objects); mean_ciou and ciou50 (cIoU of the median_ge
    thresholded 224 map vs the box's binary map, docs/evaluation.md §2-3); per_frame details.
    """
    gt = load_clip_gt(gt_json)
    source = gt["_source"]
    by_index = {int(f["index"]): f for f in gt["frames"] if "index" in f}
    times = np.array([float(f["time"]) for f in gt["frames"]])
    fps = float(gt.get("fps") or result.fps or 0)
    tol = 0.5 / fps if fps > 0 else 1e-3
    per_frame = []
    cious = []
    for fr in result.frames:
        g = by_index.get(fr.index)
        if g is None or abs(float(g["time"]) - fr.time) > tol:
            g = gt["frames"][int(np.argmin(np.abs(times - fr.time)))]
        boxes = _gt_boxes(g, source)
        gt_map = metrics.gt_map_vggss(boxes, MAP_SIZE)
        pred = metrics.binarize(fr.map224, "median_ge")
        c = float(metrics.ciou(pred, gt_map))
        cious.append(c)
        hit = _inside(fr.peak, boxes)
        silent = [o["bbox"] for o in g.get("objects", []) if o.get("object") != g.get("object")]
        silent_hit = (not hit) and bool(silent) and _inside(fr.peak, [list(b) for b in silent])
        per_frame.append(
            {
                "index": fr.index,
                "time": round(fr.time, 6),
                "gt_index": g.get("index"),
                "class": g.get("class"),
                "peak_in_box": hit,
                "peak_in_silent": silent_hit,
                "ciou": round(c, 5),
            }
        )
    if not per_frame:
        raise DataError(f"{source}: no localized frames to score")
    cious = np.array(cious)
    return {
        "clip": gt.get("name", Path(source).stem),
        "frames": len(per_frame),
        "peak_in_box": float(np.mean([p["peak_in_box"] for p in per_frame])),
        "peak_in_silent": float(np.mean([p["peak_in_silent"] for p in per_frame])),
        "mean_ciou": float(cious.mean()),
        "ciou50": float(np.mean(cious >= 0.5)),
        "per_frame": per_frame,
    }
