"""Sound-source localization metrics, every protocol variant from one code path (docs/evaluation.md §1-6).

- Ground truth (section 1): `parse_flickr_xml`, `gt_map_flickr` (soft consensus map), `valid_boxes`,
  `gt_map_vggss` (binary union).
- Binary prediction (section 2): `binarize` with the named variants in `THRESHOLD_VARIANTS`.
- Scores (sections 3-4): `ciou`, `auc`, `evaluate` (numpy) and `evaluate_batch_torch` (any device,
  bit-identical per-sample cIoU).
- Extended SLAVC metrics (section 5): `extended_scores`, `confidence`, `extended_metrics`.
- AVSBench (section 6): `miou`, `fscore_curve`, `fscore_dataset`, `fscore_per_video_compat`.

All fractions are returned in [0, 1]; print them x100 with two decimals. Pure numpy/torch; imports
nothing of fnac but errors and localization.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Hashable, Sequence

import numpy as np
import torch

from fnac import localization as loc
from fnac.errors import ConfigError, DataError

THRESHOLD_VARIANTS = ("median_ge", "median_gt", "fixed", "absolute")
FLICKR_FRAME = 256  # Flickr-SoundNet boxes are drawn in a 256 x 256 frame
AUC_THRESHOLDS = [0.05 * k for k in range(21)]  # t_k = 0.05 k, k = 0..20 (docs/evaluation.md §4)
FSCORE_THRESHOLDS = np.linspace(0.0, 1.0 - 1e-10, 255)  # AVSBench F-score thresholds (float64)

__all__ = [
    "AUC_THRESHOLDS",
    "FSCORE_THRESHOLDS",
    "THRESHOLD_VARIANTS",
    "absolute_scores",
    "auc",
    "binarize",
    "ciou",
    "confidence",
    "evaluate",
    "evaluate_batch_torch",
    "extended_metrics",
    "extended_scores",
    "fscore_curve",
    "fscore_dataset",
    "fscore_per_video_compat",
    "gt_map_flickr",
    "gt_map_vggss",
    "miou",
    "parse_flickr_xml",
    "valid_boxes",
]

Box = tuple[int, int, int, int]


# ---------------------------------------------------------------------------------------------
# 1. Ground-truth maps


def parse_flickr_xml(path: str | os.PathLike) -> list[Box]:
    """Boxes (xmin, ymin, xmax, ymax) of a Flickr-SoundNet annotation, ints in the 256 x 256 frame.

    Structure (docs/datasets.md): root -> one child per annotator/object -> `<bbox>` elements; inside a
    `<bbox>` the first child is skipped and the next four hold xmin, ymin, xmax, ymax as integers.
    Elements of other names under an annotator are ignored. Raises DataError naming the file and the
    element when the file is missing or unparsable, a `<bbox>` does not have exactly five children, a
    coordinate is not an integer, or the file holds no `<bbox>` at all.
    """
    p = os.fspath(path)
    try:
        root = ET.parse(p).getroot()
    except FileNotFoundError:
        raise DataError(f"{p}: Flickr annotation file not found") from None
    except (ET.ParseError, OSError) as e:
        raise DataError(f"{p}: not a readable XML annotation ({e})") from None
    boxes: list[Box] = []
    for i, child in enumerate(root):
        for j, bbox in enumerate(el for el in child if el.tag == "bbox"):
            where = f"{p}: element <{root.tag}>/<{child.tag}>[{i}]/<bbox>[{j}]"
            fields = list(bbox)
            if len(fields) != 5:
                raise DataError(
                    f"{where}: expected 5 children (one skipped, then xmin, ymin, xmax, ymax), "
                    f"got {len(fields)} ({', '.join(f.tag for f in fields) or 'none'})"
                )
            coords = []
            for f in fields[1:]:
                try:
                    coords.append(int((f.text or "").strip()))
                except ValueError:
                    raise DataError(f"{where}/<{f.tag}>: expected an integer, got {f.text!r}") from None
            boxes.append((coords[0], coords[1], coords[2], coords[3]))
    if not boxes:
        raise DataError(f"{p}: no <bbox> element found under <{root.tag}>/<annotator>")
    return boxes


def _rasterise(boxes: Sequence[Box], size: int) -> np.ndarray:
    """Sum of box indicators [ymin:ymax, xmin:xmax] (end-exclusive), coordinates clipped to the map."""
    acc = np.zeros((size, size), dtype=np.float32)
    for xmin, ymin, xmax, ymax in boxes:
        x0, x1 = max(xmin, 0), min(xmax, size)
        y0, y1 = max(ymin, 0), min(ymax, size)
        if x1 > x0 and y1 > y0:
            acc[y0:y1, x0:x1] += 1.0
    return acc


def gt_map_flickr(xml_path: str | os.PathLike, size: int = 224) -> np.ndarray:
    """Soft consensus map (docs/evaluation.md §1): coordinates int(size * v / 256), boxes summed, then
    min(sum / 2, 1), i.e. 0.5 under one box, 1 under two or more. Returns (size, size) float32.
    Boxes reaching outside the frame are clipped (the reference's negative slices would wrap)."""
    boxes = [tuple(int(size * v / FLICKR_FRAME) for v in b) for b in parse_flickr_xml(xml_path)]
    return np.minimum(_rasterise(boxes, size) / 2.0, 1.0).astype(np.float32)


def _box_array(boxes: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise DataError(f"VGG-SS boxes: expected a list of [x1, y1, x2, y2], got shape {arr.shape}")
    return arr


def _vggss_pixels(box: np.ndarray, size: int) -> Box:
    """[x1, y1, x2, y2] in [0, 1] -> ints: clip to [0, 1], scale by size, truncate (docs/evaluation.md §1)."""
    x1, y1, x2, y2 = (np.clip(box, 0.0, 1.0) * size).astype(int)
    return int(x1), int(y1), int(x2), int(y2)


def valid_boxes(
    boxes: Sequence[Sequence[float]] | np.ndarray, size: int = 224
) -> tuple[list[tuple[float, float, float, float]], list[tuple[int, str]]]:
    """Split VGG-SS boxes into usable ones and reported problems (docs/datasets.md: 18 degenerate boxes).

    Returns (valid, problems): `valid` the boxes whose rasterisation is non-empty, `problems` a list
    of (index, reason) for each other box: a non-finite coordinate, x1 >= x2 or y1 >= y2, or a box
    that becomes empty after clipping to [0, 1] and scaling to `size`. Never raises for values;
    raises DataError only when the input is not a list of 4-number boxes.
    """
    arr = _box_array(boxes)
    valid: list[tuple[float, float, float, float]] = []
    problems: list[tuple[int, str]] = []
    for i, b in enumerate(arr):
        shown = "[" + ", ".join(f"{v:.6g}" for v in b) + "]"
        if not np.isfinite(b).all():
            problems.append((i, f"box {i} {shown}: non-finite coordinate"))
            continue
        if b[0] >= b[2] or b[1] >= b[3]:
            axis = "x1 >= x2" if b[0] >= b[2] else "y1 >= y2"
            problems.append((i, f"box {i} {shown}: degenerate ({axis})"))
            continue
        x1, y1, x2, y2 = _vggss_pixels(b, size)
        if x2 <= x1 or y2 <= y1:
            problems.append((i, f"box {i} {shown}: empty after clipping to [0, 1] and scaling to {size}"))
            continue
        valid.append((float(b[0]), float(b[1]), float(b[2]), float(b[3])))
    return valid, problems


def gt_map_vggss(boxes: Sequence[Sequence[float]] | np.ndarray, size: int = 224) -> np.ndarray:
    """Binary union of VGG-SS boxes (docs/evaluation.md §1): each [x1, y1, x2, y2] clipped to [0, 1],
    scaled by `size`, truncated to int, rasterised end-exclusive. Degenerate boxes add nothing;
    non-finite ones are skipped (see `valid_boxes` to report them). Returns (size, size) float32;
    all zeros when no box is valid."""
    arr = _box_array(boxes)
    pix = [_vggss_pixels(b, size) for b in arr if np.isfinite(b).all()]
    return (_rasterise(pix, size) > 0).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# 2. Heat map -> binary prediction


def _check_variant(variant: str) -> None:
    if variant not in THRESHOLD_VARIANTS:
        raise ConfigError(f"threshold variant: expected one of {THRESHOLD_VARIANTS}, got {variant!r}")


def absolute_scores(maps: loc.Maps, tau: float = 0.03) -> loc.Maps:
    """SLAVC's absolute scores (docs/evaluation.md §2, §5): (S + 1/tau) / (2/tau) of raw cos/tau maps S,
    i.e. (cos + 1) / 2, no per-sample normalisation. Float32 arithmetic, numpy or torch."""
    if not tau > 0:
        raise ConfigError(f"tau: expected > 0, got {tau}")
    x = loc.nan_to_min(maps)
    inv = 1.0 / tau
    if isinstance(x, torch.Tensor):
        a = torch.tensor(inv, dtype=torch.float32, device=x.device)
        b = torch.tensor(2.0 * inv, dtype=torch.float32, device=x.device)
        return (x + a) / b
    return (x + np.float32(inv)) / np.float32(2.0 * inv)


def binarize(map224: loc.Maps, variant: str = "median_ge", tau: float = 0.03, *, minmaxed: bool = False) -> loc.Maps:
    """Binary prediction (0/1 float32) of (H, W) or (N, H, W) maps already at the gt size.

    Variants (docs/evaluation.md §2):
      median_ge: m = minmax(map); thr = sorted(m.flatten())[int(H*W*0.5)]; m >= thr (EZ-VSL, FNAC)
      median_gt: same thr; m > thr (LVS, HTF, SSL-TIE)
      fixed:     minmax(map) >= 0.5 (SSPL, SACL)
      absolute:  absolute_scores(map, tau) >= 0.5 on the RAW upsampled cos/tau map (SLAVC)
    Non-finite pixels count as their map's minimum. numpy and torch inputs give identical results.
    ``minmaxed=True`` says the maps are already ``loc.minmax`` output and skips normalising them again
    (the same result: minmax maps its own output to itself, bit for bit); not for "absolute".
    """
    pred = _binarize_bool(map224, variant, tau, minmaxed)
    return pred.float() if isinstance(pred, torch.Tensor) else pred.astype(np.float32)


def _binarize_bool(map224: loc.Maps, variant: str, tau: float, minmaxed: bool) -> loc.Maps:
    """`binarize` as booleans."""
    _check_variant(variant)
    x = loc._as_float32(map224)
    if variant == "absolute":
        if minmaxed:
            raise ConfigError("threshold 'absolute' scores the raw map, not a min-max normalised one")
        return absolute_scores(x, tau) >= 0.5
    m = x if minmaxed else loc.minmax(x)
    if variant == "fixed":
        return m >= 0.5
    h, w = m.shape[-2:]
    k = int(h * w * 0.5)  # index into the ascending sort
    if isinstance(m, torch.Tensor):
        flat = m.reshape(*m.shape[:-2], h * w)  # (..., H*W)
        if m.device.type == "cpu":  # numpy's selection is about twice as fast as kthvalue on a CPU
            kth = np.partition(flat.detach().numpy(), k, axis=-1)[..., k]
            thr = torch.from_numpy(np.array(kth))[..., None, None]  # a copy; 0-d for a single map
        else:
            thr = flat.kthvalue(k + 1, dim=-1).values[..., None, None]  # kthvalue is 1-based
        return m >= thr if variant == "median_ge" else m > thr
    flat = m.reshape(*m.shape[:-2], h * w)  # (..., H*W)
    thr = np.partition(flat, k, axis=-1)[..., k][..., None, None]
    return m >= thr if variant == "median_ge" else m > thr


# ---------------------------------------------------------------------------------------------
# 3-4. cIoU and dataset-level numbers


def ciou(pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor) -> float | np.ndarray:
    """Consensus IoU (docs/evaluation.md §3): sum(pred * gt) / (sum(gt) + sum(pred * (gt == 0))).

    pred binary, gt possibly soft; (H, W) -> float, (N, H, W) -> (N,) float64 array. A sample with an
    empty gt (sum(gt) == 0) scores 0 (no 0/0). Sums in float64.
    """
    p = np.asarray(pred.detach().cpu() if isinstance(pred, torch.Tensor) else pred, dtype=np.float64)
    g = np.asarray(gt.detach().cpu() if isinstance(gt, torch.Tensor) else gt, dtype=np.float64)
    if p.shape != g.shape or p.ndim not in (2, 3):
        raise DataError(f"ciou: prediction shape {p.shape} and gt shape {g.shape} must be equal (H, W) or (N, H, W)")
    inter = (p * g).sum(axis=(-2, -1))
    gsum = g.sum(axis=(-2, -1))
    extra = (p * (g == 0)).sum(axis=(-2, -1))
    den = gsum + extra
    out = np.divide(inter, den, out=np.zeros_like(inter), where=gsum > 0)
    return float(out) if out.ndim == 0 else out


def auc(cious: Sequence[float] | np.ndarray) -> float:
    """Area under the success-rate curve (docs/evaluation.md §4): s_k = mean[ciou >= 0.05 k], k = 0..20,
    trapezoid rule over t in [0, 1]."""
    c = np.asarray(cious, dtype=np.float64).ravel()
    if c.size == 0:
        raise DataError("auc: no cIoU values")
    s = [float(np.mean(c >= t)) for t in AUC_THRESHOLDS]
    return float(sum((s[k] + s[k + 1]) / 2.0 * (AUC_THRESHOLDS[k + 1] - AUC_THRESHOLDS[k]) for k in range(len(s) - 1)))


def _to_numpy32(x: np.ndarray | torch.Tensor | Sequence, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=np.float32)
    except ValueError as e:  # ragged lists
        raise DataError(f"{name}: cannot stack into one array ({e})") from None
    return arr


def evaluate(
    maps: np.ndarray | torch.Tensor,
    gt_maps: np.ndarray | torch.Tensor,
    upsample: str = "bicubic",
    threshold: str = "median_ge",
    tau: float = 0.03,
    chunk: int = 256,
) -> dict:
    """cIoU protocol over a test set (docs/evaluation.md §2-4).

    maps: raw (N, h, w) maps (cos/tau, or any map for the relative variants) at any resolution;
    gt_maps: (N, H, W) gt maps (224 x 224). Each map: non-finite -> its minimum, upsampled to (H, W)
    with `upsample` ("bicubic" align_corners=False, "bilinear" align_corners=True; identity when
    already (H, W)), binarised with `threshold` (see `binarize`), scored with `ciou`.

    Returns {"ciou50": mean[ciou >= 0.5] (success rate, papers' "cIoU"), "auc", "mean_ciou",
    "ciou": per-sample list, "n": N, "n_nonfinite": maps that held NaN/inf}. Fractions in [0, 1].
    """
    if upsample not in loc.UPSAMPLE_MODES:
        raise ConfigError(f"upsample: expected one of {loc.UPSAMPLE_MODES}, got {upsample!r}")
    _check_variant(threshold)
    m = _to_numpy32(maps, "maps")
    g = _to_numpy32(gt_maps, "gt maps")
    if m.ndim != 3 or g.ndim != 3:
        raise DataError(f"evaluate: expected maps (N, h, w) and gt maps (N, H, W), got {m.shape} and {g.shape}")
    if m.shape[0] != g.shape[0]:
        raise DataError(f"evaluate: {m.shape[0]} maps but {g.shape[0]} gt maps")
    n = m.shape[0]
    if n == 0:
        raise DataError("evaluate: no samples to evaluate")
    hw = (g.shape[1], g.shape[2])
    n_nonfinite = int((~np.isfinite(m)).any(axis=(1, 2)).sum())
    cious = np.zeros(n, dtype=np.float64)
    for i in range(0, n, max(1, chunk)):
        part = loc.nan_to_min(m[i : i + chunk])  # (n', h, w)
        up = loc.upsample(part, hw, upsample)  # (n', H, W)
        cious[i : i + chunk] = ciou(binarize(up, threshold, tau), g[i : i + chunk])
    return {
        "ciou50": float(np.mean(cious >= 0.5)),
        "auc": auc(cious),
        "mean_ciou": float(np.mean(cious)),
        "ciou": cious.tolist(),
        "n": n,
        "n_nonfinite": n_nonfinite,
    }


def evaluate_batch_torch(
    maps224: torch.Tensor,
    gt: torch.Tensor,
    threshold: str = "median_ge",
    tau: float = 0.03,
    *,
    minmaxed: bool = False,
) -> torch.Tensor:
    """Per-sample cIoU of maps already at the gt size, vectorised on any device.

    maps224 (N, H, W) (raw for "absolute", any map otherwise), gt (N, H, W) -> (N,) cIoU (float64,
    float32 on MPS). Same binarisation as `binarize` (the median is the element of rank int(H*W*0.5)) and
    the same cIoU as `ciou`, so the numbers equal the numpy path exactly whenever the sums are exact
    (binary predictions with gt values in {0, 0.5, 1}, i.e. every benchmark's gt). ``minmaxed``: as
    for `binarize`.
    """
    _check_variant(threshold)
    if not isinstance(maps224, torch.Tensor):
        maps224 = torch.as_tensor(np.asarray(maps224, dtype=np.float32))
    g = torch.as_tensor(gt, device=maps224.device)
    if maps224.ndim != 3 or tuple(maps224.shape) != tuple(g.shape):
        raise DataError(
            f"evaluate_batch_torch: maps {tuple(maps224.shape)} and gt {tuple(g.shape)} must both be (N, H, W)"
        )
    acc = torch.float32 if maps224.device.type == "mps" else torch.float64
    pred = _binarize_bool(maps224, threshold, tau, minmaxed)  # (N, H, W) bool
    # the same float64 sums as sum(pred * g): pred selects gt values or exact zeros
    inter = torch.where(pred, g, g.new_zeros(())).sum(dim=(1, 2), dtype=acc)
    gsum = g.sum(dim=(1, 2), dtype=acc)  # (N,)
    extra = (pred & (g == 0)).sum(dim=(1, 2)).to(acc)  # a count: exact
    den = torch.where(gsum > 0, gsum + extra, torch.ones_like(gsum))
    return torch.where(gsum > 0, inter / den, torch.zeros_like(inter))


# ---------------------------------------------------------------------------------------------
# 5. Extended metrics (SLAVC protocol)


def extended_scores(raw_maps: loc.Maps, tau: float = 0.03, size: int = 224) -> loc.Maps:
    """Absolute scores (S + 1/tau) / (2/tau) of raw (N, h, w) cos/tau maps, upsampled to `size` with
    bicubic, align_corners=True (docs/evaluation.md §5). Feed to `confidence`."""
    return loc.upsample(absolute_scores(raw_maps, tau), size, "bicubic", align_corners=True)


def confidence(scores224: np.ndarray | torch.Tensor) -> float | np.ndarray:
    """Mean of the top 25% pixels (k = max(1, int(0.25 H W))) of each score map (docs/evaluation.md §5).
    (H, W) -> float, (N, H, W) -> (N,) float64. Non-finite pixels count as the map's minimum."""
    s = loc.nan_to_min(_to_numpy32(scores224, "score maps"))
    h, w = s.shape[-2:]
    k = max(1, int(0.25 * h * w))
    flat = s.reshape(*s.shape[:-2], h * w).astype(np.float64)  # (..., H*W)
    top = np.partition(flat, h * w - k, axis=-1)[..., h * w - k :]
    out = top.mean(axis=-1)
    return float(out) if out.ndim == 0 else out


def _precision_recall(
    conf: np.ndarray, hit: np.ndarray, pos: np.ndarray, thrs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """P and R at each confidence threshold (docs/evaluation.md §5 counting rules), (M,) each.

    Detected = conf >= c. TP: positive, detected, ciou >= 0.5. FP: negative detected, or positive
    detected with ciou < 0.5. FN: positive not detected. P = 1 when nothing is detected and R = 1
    when there are no positives (SLAVC's conventions)."""
    det = conf[None, :] >= thrs[:, None]  # (M, N)
    tp = (det & pos & hit).sum(axis=1)
    fp = (det & ~pos).sum(axis=1) + (det & pos & ~hit).sum(axis=1)
    fn = (~det & pos).sum(axis=1)
    p = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    r = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 1.0)
    return p, r


def extended_metrics(
    conf: Sequence[float] | np.ndarray,
    cious: Sequence[float] | np.ndarray,
    is_positive: Sequence[bool] | np.ndarray,
    iou_thr: float = 0.5,
) -> dict:
    """AP, max-F1 and LocAcc of the extended (silent / mismatched audio) test sets (docs/evaluation.md §5).

    conf (N,): `confidence` per sample; cious (N,): per-sample cIoU (relative protocol; ignored for
    negatives); is_positive (N,): True for a sounding pair with boxes. With N samples:
      AP: thresholds sorted(conf)[:-1][::-max(1, N // 200)] (descending); p_i made monotone
          (max over j >= i); AP = sum_i p_i (r_{i+1} - r_i) over consecutive thresholds.
      max-F1: F1 = 2PR / (P + R) (0 when P + R = 0) at sorted(conf)[::max(1, N // 10)]; the maximum.
      LocAcc: mean[ciou >= 0.5] over positives (NaN when there is none).
    Returns {"ap", "max_f1", "loc_acc"} as fractions.
    """
    c = np.asarray(conf, dtype=np.float64).ravel()
    iou = np.asarray(cious, dtype=np.float64).ravel()
    pos = np.asarray(is_positive, dtype=bool).ravel()
    if not (c.size == iou.size == pos.size):
        raise DataError(f"extended_metrics: {c.size} confidences, {iou.size} cIoUs, {pos.size} labels")
    n = c.size
    if n == 0:
        raise DataError("extended_metrics: no samples")
    hit = iou >= iou_thr
    srt = np.sort(c)
    ap_thrs = srt[:-1][:: -max(1, n // 200)]
    p, r = _precision_recall(c, hit, pos, ap_thrs)
    p_mono = np.maximum.accumulate(p[::-1])[::-1]  # p_i = max_{j >= i} p_j
    ap = float(np.sum(p_mono[:-1] * (r[1:] - r[:-1]))) if len(p) > 1 else 0.0
    p, r = _precision_recall(c, hit, pos, srt[:: max(1, n // 10)])
    f1 = np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1.0), 0.0)
    loc_acc = float(np.mean(hit[pos])) if pos.any() else math.nan
    return {"ap": ap, "max_f1": float(f1.max()), "loc_acc": loc_acc}


# ---------------------------------------------------------------------------------------------
# 6. AVSBench


def _pair(
    preds: np.ndarray | torch.Tensor, masks: np.ndarray | torch.Tensor, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) predictions (float dtype kept, others -> float32) and boolean masks (> 0.5)."""
    p = preds.detach().cpu().numpy() if isinstance(preds, torch.Tensor) else np.asarray(preds)
    if not np.issubdtype(p.dtype, np.floating):
        p = p.astype(np.float32)
    m = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    if p.ndim == 2 and m.ndim == 2:
        p, m = p[None], m[None]
    if p.shape != m.shape or p.ndim != 3:
        raise DataError(f"{name}: predictions {p.shape} and masks {m.shape} must both be (N, H, W)")
    return p, m > 0.5


def miou(preds: np.ndarray | torch.Tensor, masks: np.ndarray | torch.Tensor, thr: float = 0.5) -> float:
    """Mean IoU over frames (docs/evaluation.md §6). preds (N, H, W) probabilities / normalised maps,
    binarised pred > thr (official: sigmoid(logit) > 0.5); masks (N, H, W) binary (> 0.5 is object).
    IoU = |P & M| / |P | M|; a frame with an empty mask scores TN / (H*W) = |~P & ~M| / (H*W)."""
    p, m = _pair(preds, masks, "miou")
    b = p > thr  # NaN -> background
    inter = (b & m).sum(axis=(1, 2)).astype(np.float64)
    union = (b | m).sum(axis=(1, 2)).astype(np.float64)
    tn = (~b & ~m).sum(axis=(1, 2)).astype(np.float64)
    empty = m.sum(axis=(1, 2)) == 0
    hw = m.shape[1] * m.shape[2]
    iou = np.where(empty, tn / hw, inter / np.maximum(union, 1.0))
    return float(iou.mean())


def _frame_fscores(
    preds: np.ndarray | torch.Tensor, masks: np.ndarray | torch.Tensor, beta2: float, chunk: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame F curves (N, 255) at FSCORE_THRESHOLDS and the non-empty-mask flag (N,).

    For frame i and threshold t_j: P_ij = TP / #(pred >= t_j) (0 if none predicted),
    R_ij = TP / #mask, F_ij = (1 + b2) P R / (b2 P + R) (0 when P = R = 0). NaN predictions never fire.
    """
    p, m = _pair(preds, masks, "fscore")
    n, nt = p.shape[0], len(FSCORE_THRESHOLDS)
    f = np.zeros((n, nt), dtype=np.float64)
    npos = m.reshape(n, -1).sum(axis=1)  # (N,)
    for i in range(0, n, chunk):
        v = p[i : i + chunk].reshape(-1, p.shape[1] * p.shape[2]).astype(np.float64)  # (n', H*W)
        v = np.where(np.isnan(v), -np.inf, v)
        mm = m[i : i + chunk].reshape(v.shape)  # (n', H*W)
        # number of thresholds <= v: pixel fires at t_j exactly for j < idx
        idx = np.searchsorted(FSCORE_THRESHOLDS, v, side="right")  # (n', H*W) in [0, 255]
        nb = nt + 1
        off = idx + nb * np.arange(v.shape[0])[:, None]  # (n', H*W), one bin range per frame
        hist = np.bincount(off.ravel(), minlength=nb * v.shape[0]).reshape(-1, nb)  # (n', 256)
        hist_tp = np.bincount(off[mm], minlength=nb * v.shape[0]).reshape(-1, nb)
        # count firing at t_j = sum of bins b > j (reverse cumulative sum, then drop bin 0)
        npred = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1:].astype(np.float64)  # (n', 255)
        tp = np.cumsum(hist_tp[:, ::-1], axis=1)[:, ::-1][:, 1:].astype(np.float64)
        prec = np.divide(tp, npred, out=np.zeros_like(tp), where=npred > 0)
        pos = npos[i : i + chunk, None].astype(np.float64)
        rec = np.divide(tp, np.broadcast_to(pos, tp.shape), out=np.zeros_like(tp), where=pos > 0)
        den = beta2 * prec + rec
        f[i : i + chunk] = np.divide((1 + beta2) * prec * rec, den, out=np.zeros_like(den), where=den > 0)
    return f, npos > 0


def fscore_curve(preds: np.ndarray | torch.Tensor, masks: np.ndarray | torch.Tensor, beta2: float = 0.3) -> np.ndarray:
    """Dataset-mean F curve (255,) over FSCORE_THRESHOLDS = linspace(0, 1 - 1e-10, 255) (docs/evaluation.md §6).

    preds (N, H, W) probabilities in [0, 1] (sigmoid of logits, or min-max normalised maps); masks
    (N, H, W) binary. For every frame with a non-empty mask, precision and recall are computed at each
    threshold (pred >= t) and turned into F_beta (see `_frame_fscores`); the curve is the mean of these
    per-frame F curves over ALL such frames of the dataset (frames with empty masks are left out, as
    the official code does). All zeros when no frame has an object.
    """
    f, nonempty = _frame_fscores(preds, masks, beta2)
    if not nonempty.any():
        return np.zeros(len(FSCORE_THRESHOLDS), dtype=np.float64)
    return f[nonempty].mean(axis=0)


def fscore_dataset(preds: np.ndarray | torch.Tensor, masks: np.ndarray | torch.Tensor, beta2: float = 0.3) -> float:
    """AVSBench F-score, batch-size independent: max over thresholds of `fscore_curve` (one
    threshold for the whole dataset; equals the official number with one batch holding every frame)."""
    return float(fscore_curve(preds, masks, beta2).max())


def fscore_per_video_compat(
    preds: np.ndarray | torch.Tensor,
    masks: np.ndarray | torch.Tensor,
    groups: Sequence[Hashable] | None = None,
    batch_size: int = 5,
    beta2: float = 0.3,
) -> float:
    """Compatibility option reproducing the official AVSBench F-score (batch-size dependent).

    Frames are grouped as the official test loop batches them: by `groups` (one key per frame, e.g.
    the video name) or else in consecutive runs of `batch_size` frames (S4/MS3: one video = 5 frames
    per batch). Per group: max over thresholds of the mean F curve of its non-empty-mask frames (0 if
    it has none, as the official code returns); result = mean over groups.
    """
    f, nonempty = _frame_fscores(preds, masks, beta2)
    n = f.shape[0]
    if groups is None:
        if batch_size < 1:
            raise ConfigError(f"fscore batch_size: expected >= 1, got {batch_size}")
        keys: list[Hashable] = [i // batch_size for i in range(n)]
    else:
        keys = list(groups)
        if len(keys) != n:
            raise DataError(f"fscore_per_video_compat: {len(keys)} group keys for {n} frames")
    order: dict[Hashable, list[int]] = {}
    for i, k in enumerate(keys):
        order.setdefault(k, []).append(i)
    scores = []
    for idx in order.values():
        sel = [i for i in idx if nonempty[i]]
        scores.append(float(f[sel].mean(axis=0).max()) if sel else 0.0)
    return float(np.mean(scores)) if scores else 0.0
