"""Tests for fnac.metrics against hand-computed cases and plain loops written from docs/evaluation.md."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fnac import localization as L
from fnac import metrics as M
from fnac.errors import ConfigError, DataError

# ----------------------------------------------------------------------------- Flickr fixture


def write_flickr_xml(path: Path, annotators: list[list[tuple[int, int, int, int]]]) -> Path:
    """An annotation in the released structure: root -> annotator -> <bbox> (skipped child + 4 ints)."""
    lines = ["<?xml version='1.0'?>", "<annotation>", "  <filename>12345.jpg</filename>"]
    for a, boxes in enumerate(annotators):
        lines.append("  <object>")
        lines.append(f"    <name>annotator{a}</name>")
        for b in boxes:
            lines.append("    <bbox>")
            lines.append("      <id>0</id>")
            for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), b):
                lines.append(f"      <{tag}> {v} </{tag}>")
            lines.append("    </bbox>")
        lines.append("  </object>")
    lines.append("</annotation>")
    path.write_text("\n".join(lines))
    return path


BOXES_256 = [[(0, 0, 128, 128)], [(64, 64, 256, 192), (200, 10, 250, 40)]]


def consensus_loop(boxes_256, size):
    """Per-pixel count of covering boxes (end-exclusive), halved and capped at 1."""
    px = [[int(size * v / 256) for v in b] for b in boxes_256]
    gt = np.zeros((size, size))
    for y in range(size):
        for x in range(size):
            n = sum(1 for x0, y0, x1, y1 in px if x0 <= x < x1 and y0 <= y < y1)
            gt[y, x] = min(n / 2, 1.0)
    return gt


def test_parse_flickr_xml(tmp_path):
    p = write_flickr_xml(tmp_path / "12345.xml", BOXES_256)
    assert M.parse_flickr_xml(p) == [(0, 0, 128, 128), (64, 64, 256, 192), (200, 10, 250, 40)]


@pytest.mark.parametrize("size", [224, 100])
def test_gt_map_flickr_matches_loop(tmp_path, size):
    p = write_flickr_xml(tmp_path / "a.xml", BOXES_256)
    gt = M.gt_map_flickr(p, size)
    assert gt.shape == (size, size) and gt.dtype == np.float32
    flat = [b for a in BOXES_256 for b in a]
    np.testing.assert_array_equal(gt, consensus_loop(flat, size))
    if size == 224:  # spot checks: one box -> 0.5, two -> 1, none -> 0
        assert gt[10, 10] == 0.5 and gt[60, 60] == 1.0 and gt[200, 20] == 0.0
        assert gt[20, 200] == 0.5  # int(224 * 200 / 256) = 175 <= 200 < 218
        assert set(np.unique(gt)) <= {0.0, 0.5, 1.0}


def test_parse_flickr_xml_errors(tmp_path):
    with pytest.raises(DataError, match="missing.xml"):
        M.parse_flickr_xml(tmp_path / "missing.xml")
    bad = tmp_path / "broken.xml"
    bad.write_text("<annotation><object>")
    with pytest.raises(DataError, match="broken.xml"):
        M.parse_flickr_xml(bad)
    short = tmp_path / "short.xml"
    short.write_text(
        "<annotation><object><bbox><id>0</id><xmin>1</xmin><ymin>2</ymin><xmax>3</xmax></bbox></object></annotation>"
    )
    with pytest.raises(DataError, match=r"short.xml.*<object>\[0\]/<bbox>\[0\].*expected 5 children"):
        M.parse_flickr_xml(short)
    notint = tmp_path / "notint.xml"
    notint.write_text(
        "<annotation><object><bbox><id>0</id><xmin>1.5</xmin><ymin>2</ymin><xmax>3</xmax>"
        "<ymax>4</ymax></bbox></object></annotation>"
    )
    with pytest.raises(DataError, match=r"notint.xml.*<xmin>.*integer"):
        M.parse_flickr_xml(notint)
    empty = tmp_path / "empty.xml"
    empty.write_text("<annotation><filename>x.jpg</filename></annotation>")
    with pytest.raises(DataError, match="empty.xml.*no <bbox>"):
        M.parse_flickr_xml(empty)


# -------------------------------------------------------------------------------------- VGG-SS


def test_gt_map_vggss_union_and_truncation():
    gt = M.gt_map_vggss([[0.1, 0.2, 0.5, 0.6], [0.4, 0.5, 0.7, 0.9]])
    ref = np.zeros((224, 224))
    for x1, y1, x2, y2 in [(22, 44, 112, 134), (89, 112, 156, 201)]:  # int(224 * v), by hand
        ref[y1:y2, x1:x2] = 1
    np.testing.assert_array_equal(gt, ref)
    assert gt.max() == 1.0  # union, not sum


def test_vggss_degenerate_boxes_reported_never_crash():
    boxes = [
        [0.1, 0.1, 0.3, 0.3],  # fine
        [0.5, 0.2, 0.4, 0.6],  # x1 >= x2
        [0.2, 0.2, -2.88e16, 0.5],  # huge negative: x1 >= x2
        [0.1, 0.7, 0.3, 0.7],  # y1 >= y2
        [-2.88e16, 0.1, 0.5, 0.6],  # clipped to x1 = 0: valid
        [1.2, 0.1, 1.5, 0.4],  # entirely right of the image: empty after clipping
        [float("nan"), 0.1, 0.5, 0.6],
    ]
    valid, problems = M.valid_boxes(boxes)
    assert valid == [tuple(boxes[0]), tuple(boxes[4])]
    assert [i for i, _ in problems] == [1, 2, 3, 5, 6]
    reasons = dict(problems)
    assert "x1 >= x2" in reasons[1] and "x1 >= x2" in reasons[2] and "-2.88e+16" in reasons[2]
    assert "y1 >= y2" in reasons[3] and "empty after clipping" in reasons[5] and "non-finite" in reasons[6]
    gt = M.gt_map_vggss(boxes)
    ref = np.zeros((224, 224))
    ref[22:67, 22:67] = 1
    ref[22:134, 0:112] = 1
    np.testing.assert_array_equal(gt, ref)


def test_vggss_no_valid_box_gives_empty_gt_and_zero_ciou():
    gt = M.gt_map_vggss([[0.5, 0.5, 0.2, 0.9], [-3e16, -3e16, -1e16, -1e16]])
    assert gt.sum() == 0
    assert M.gt_map_vggss([]).sum() == 0
    assert M.ciou(np.ones((224, 224)), gt) == 0.0
    assert M.ciou(np.zeros((224, 224)), gt) == 0.0  # 0/0 guarded
    with pytest.raises(DataError, match="x1, y1, x2, y2"):
        M.gt_map_vggss([[0.1, 0.2, 0.3]])


# ----------------------------------------------------------------------------------------- cIoU

PRED = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float32)


def test_ciou_binary_gt_hand_computed():
    gt = np.array([[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float32)
    # inter 2, |gt| 4, predicted background 3 -> 2 / 7
    assert M.ciou(PRED, gt) == pytest.approx(2 / 7)


def test_ciou_soft_gt_hand_computed():
    gt = np.array([[0.5, 0.5, 0, 0], [1.0, 1.0, 0.5, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float32)
    # inter 0.5 + 0.5 + 1 + 1 = 3, sum(gt) 3.5, predicted where gt == 0: 1 -> 3 / 4.5
    assert M.ciou(PRED, gt) == pytest.approx(3 / 4.5)
    both = M.ciou(np.stack([PRED, PRED]), np.stack([gt, np.zeros_like(gt)]))
    np.testing.assert_allclose(both, [3 / 4.5, 0.0])


# ------------------------------------------------------------------------------------ binarize


def test_threshold_variants_where_ge_and_gt_differ():
    m = np.array([[1.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    # sorted [0, 1, 1, 1][int(4 * 0.5) = 2] = 1: ">=" keeps the three ties, ">" keeps nothing
    np.testing.assert_array_equal(M.binarize(m, "median_ge"), [[1, 1], [1, 0]])
    np.testing.assert_array_equal(M.binarize(m, "median_gt"), [[0, 0], [0, 0]])
    np.testing.assert_array_equal(M.binarize(m, "fixed"), [[1, 1], [1, 0]])
    m2 = np.array([[0.0, 10.0], [20.0, 100.0]], dtype=np.float32)  # minmax: 0, .1, .2, 1; thr .2
    np.testing.assert_array_equal(M.binarize(m2, "median_ge"), [[0, 0], [1, 1]])
    np.testing.assert_array_equal(M.binarize(m2, "median_gt"), [[0, 0], [0, 1]])
    np.testing.assert_array_equal(M.binarize(m2, "fixed"), [[0, 0], [0, 1]])


def test_absolute_variant_uses_raw_scores():
    tau = 0.1
    s = np.array([[-5.0, 0.0], [2.0, -0.1]], dtype=np.float32)  # scores (S + 10) / 20 = .25 .5 .6 .495
    np.testing.assert_array_equal(M.binarize(s, "absolute", tau=tau), [[0, 1], [1, 0]])
    np.testing.assert_array_equal(M.binarize(s + 50, "absolute", tau=tau), np.ones((2, 2)))  # no normalisation
    np.testing.assert_array_equal(M.binarize(s + 50, "median_ge"), M.binarize(s, "median_ge"))
    with pytest.raises(ConfigError, match="median"):
        M.binarize(s, "median")


def test_whole_image_baseline_selects_everything():
    w = L.whole_image_map(224)
    assert M.binarize(w, "median_ge").sum() == 224 * 224
    assert M.binarize(w, "median_gt").sum() == 0
    gt = np.zeros((224, 224), dtype=np.float32)
    gt[:100, :150] = 0.5
    gt[20:60, 30:90] = 1.0
    res = M.evaluate(w[None], gt[None])
    expected = gt.sum() / (gt.sum() + (gt == 0).sum())  # every background pixel is a false positive
    assert res["ciou"][0] == pytest.approx(expected)


# ------------------------------------------------------------------------------------------ AUC


def auc_loop(cious):
    ts = [0.05 * k for k in range(21)]
    s = [sum(1 for c in cious if c >= t) / len(cious) for t in ts]
    area = 0.0
    for k in range(20):
        area += (ts[k + 1] - ts[k]) * (s[k] + s[k + 1]) / 2
    return area


def test_auc_hand_and_loop():
    assert M.auc([1.0, 1.0]) == pytest.approx(1.0)
    assert M.auc([0.0, 0.0]) == pytest.approx(0.025)  # s_0 = 1 always (ciou >= 0), s_k = 0 after
    # s_0 = 1, s_k = 0.5 for k >= 1: 0.05 * 0.75 + 0.95 * 0.5
    assert M.auc([0.0, 1.0]) == pytest.approx(0.5125)
    rng = np.random.default_rng(0)
    cious = list(rng.random(300)) + [0.05 * k for k in range(21)] + [0.5] * 5
    assert M.auc(cious) == pytest.approx(auc_loop(cious), abs=1e-12)
    with pytest.raises(DataError):
        M.auc([])


# ------------------------------------------------------------------------------------- evaluate


def evaluate_loop(maps, gts, mode):
    """docs/evaluation.md §2-4 written out per sample (torch only for the interpolation itself)."""
    cious = []
    for m, g in zip(maps, gts):
        up = F.interpolate(
            torch.from_numpy(m)[None, None], size=(224, 224), mode=mode, align_corners=(mode == "bilinear")
        )[0, 0].numpy()
        lo, hi = up.min(), up.max()
        norm = (up - lo) / (hi - lo)
        thr = np.sort(norm.flatten())[int(224 * 224 * 0.5)]
        pred = (norm >= thr).astype(np.float64)
        gg = g.astype(np.float64)
        cious.append((pred * gg).sum() / (gg.sum() + (pred * (gg == 0)).sum()))
    return cious


def random_gts(rng, n, soft):
    out = []
    for _ in range(n):
        g = np.zeros((224, 224), dtype=np.float32)
        for _ in range(2 if soft else 1):
            x0, y0 = rng.integers(0, 150, 2)
            w, h = rng.integers(20, 74, 2)
            g[y0 : y0 + h, x0 : x0 + w] += 0.5 if soft else 1.0
        out.append(np.minimum(g, 1.0))
    return np.stack(out)


@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
def test_evaluate_matches_loop(mode):
    rng = np.random.default_rng(1)
    maps = rng.normal(size=(12, 7, 7)).astype(np.float32)
    gts = random_gts(rng, 12, soft=(mode == "bicubic"))
    res = M.evaluate(maps, gts, upsample=mode)
    ref = evaluate_loop(maps, gts, mode)
    np.testing.assert_allclose(res["ciou"], ref, rtol=0, atol=1e-12)
    assert res["n"] == 12 and res["n_nonfinite"] == 0
    assert res["ciou50"] == pytest.approx(sum(c >= 0.5 for c in ref) / 12)
    assert res["mean_ciou"] == pytest.approx(sum(ref) / 12)
    assert res["auc"] == pytest.approx(auc_loop(ref))
    torch_res = M.evaluate(torch.from_numpy(maps), torch.from_numpy(gts), upsample=mode)
    assert torch_res["ciou"] == res["ciou"]


def test_evaluate_absolute_on_raw_maps():
    rng = np.random.default_rng(2)
    tau = 0.03
    maps = (rng.normal(size=(4, 7, 7)) * 0.3 / tau).astype(np.float32)  # cos/tau
    gts = random_gts(rng, 4, soft=False)
    res = M.evaluate(maps, gts, threshold="absolute", tau=tau)
    for m, g, c in zip(maps, gts, res["ciou"]):
        up = (
            F.interpolate(torch.from_numpy(m)[None, None], size=(224, 224), mode="bicubic", align_corners=False)[0, 0]
            .numpy()
            .astype(np.float64)
        )
        pred = ((up + 1 / tau) / (2 / tau) >= 0.5).astype(np.float64)
        ref = (pred * g).sum() / (g.sum() + (pred * (g == 0)).sum())
        assert c == pytest.approx(ref, abs=1e-3)  # float32 vs float64 scores: only pixels at 0.5 may flip


def test_evaluate_constant_and_nan_maps_do_not_crash():
    gts = random_gts(np.random.default_rng(3), 4, soft=True)
    maps = np.random.default_rng(4).normal(size=(4, 7, 7)).astype(np.float32)
    maps[0] = 2.0  # constant
    maps[1, 3, 3] = np.nan
    maps[2] = np.nan
    maps[3, 0, :] = np.inf
    for variant in M.THRESHOLD_VARIANTS:
        res = M.evaluate(maps, gts, threshold=variant)
        assert all(np.isfinite(res["ciou"])) and res["n_nonfinite"] == 3
    res = M.evaluate(maps, gts)
    whole = gts[0].sum() / (gts[0].sum() + (gts[0] == 0).sum())
    assert res["ciou"][0] == pytest.approx(whole)  # constant map: everything predicted
    assert res["ciou"][2] == pytest.approx(gts[2].sum() / (gts[2].sum() + (gts[2] == 0).sum()))


def test_evaluate_bad_input():
    with pytest.raises(DataError, match="3 maps but 2 gt"):
        M.evaluate(np.zeros((3, 7, 7)), np.zeros((2, 224, 224)))
    with pytest.raises(DataError, match="no samples"):
        M.evaluate(np.zeros((0, 7, 7)), np.zeros((0, 224, 224)))
    with pytest.raises(ConfigError, match="threshold"):
        M.evaluate(np.zeros((1, 7, 7)), np.zeros((1, 224, 224)), threshold="otsu")
    with pytest.raises(ConfigError, match="upsample"):
        M.evaluate(np.zeros((1, 7, 7)), np.zeros((1, 224, 224)), upsample="area")


@pytest.mark.parametrize("variant", M.THRESHOLD_VARIANTS)
def test_torch_batch_path_equals_numpy_exactly(variant):
    rng = np.random.default_rng(5)
    n = 10
    maps = L.upsample(rng.normal(size=(n, 7, 7)).astype(np.float32) * 5, 224)
    maps[:4] = np.round(maps[:4] * 2) / 2  # many ties: >= and > differ
    maps[4] = 0.7  # constant
    maps[5, 10:20, 10:20] = np.nan
    maps[6] = np.nan
    gts = np.concatenate(
        [random_gts(rng, 5, soft=True), random_gts(rng, 4, soft=False), np.zeros((1, 224, 224), np.float32)]
    )
    ref = np.array([M.ciou(M.binarize(m, variant, tau=0.03), g) for m, g in zip(maps, gts)])
    got = M.evaluate_batch_torch(torch.from_numpy(maps), torch.from_numpy(gts), threshold=variant)
    assert got.dtype == torch.float64
    np.testing.assert_array_equal(got.numpy(), ref)
    np.testing.assert_array_equal(M.evaluate(maps, gts, threshold=variant)["ciou"], ref)
    assert ref[-1] == 0.0


# ------------------------------------------------------------------------------------- extended


def extended_loop(conf, cious, pos):
    """docs/evaluation.md §5 transcribed literally."""
    n = len(conf)

    def pr(c):
        tp = fp = fn = 0
        for cf, ci, ps in zip(conf, cious, pos):
            if not ps:
                if cf >= c:
                    fp += 1
            elif cf >= c:
                if ci >= 0.5:
                    tp += 1
                else:
                    fp += 1
            else:
                fn += 1
        return (tp / (tp + fp) if tp + fp else 1.0), (tp / (tp + fn) if tp + fn else 1.0)

    thrs = sorted(conf)[:-1][:: -max(1, n // 200)]
    prec, rec = zip(*[pr(c) for c in thrs])
    pm = [max(prec[i:]) for i in range(len(prec))]
    ap = sum(pm[i] * (rec[i + 1] - rec[i]) for i in range(len(pm) - 1))
    f1s = []
    for c in sorted(conf)[:: max(1, n // 10)]:
        p, r = pr(c)
        f1s.append(2 * p * r / (p + r) if p + r else 0.0)
    hits = [ci >= 0.5 for ci, ps in zip(cious, pos) if ps]
    return ap, max(f1s), sum(hits) / len(hits)


def test_extended_hand_computed():
    conf = [0.9, 0.8, 0.7, 0.6]
    pos = [True, False, True, True]
    cious = [0.6, 0.0, 0.3, 0.7]
    res = M.extended_metrics(conf, cious, pos)
    # thresholds .8 .7 .6: (P, R) = (1/2, 1/3), (1/3, 1/2), (1/2, 1); monotone P = 1/2 everywhere
    assert res["ap"] == pytest.approx(0.5 * (1 / 2 - 1 / 3) + 0.5 * (1 - 1 / 2))
    assert res["max_f1"] == pytest.approx(2 / 3)  # at threshold .6: P 1/2, R 1
    assert res["loc_acc"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("n", [37, 450, 2300])
def test_extended_matches_loop(n):
    rng = np.random.default_rng(n)
    conf = np.round(rng.random(n), 2).tolist()  # ties on purpose
    pos = (rng.random(n) < 0.5).tolist()
    cious = [float(rng.random() * (1.0 if p else 0.3)) for p in pos]
    res = M.extended_metrics(conf, cious, pos)
    ap, f1, acc = extended_loop(conf, cious, pos)
    assert res["ap"] == pytest.approx(ap, abs=1e-12)
    assert res["max_f1"] == pytest.approx(f1, abs=1e-12)
    assert res["loc_acc"] == pytest.approx(acc, abs=1e-12)


def test_extended_edge_cases():
    assert math.isnan(M.extended_metrics([0.2, 0.4], [0.9, 0.9], [False, False])["loc_acc"])
    with pytest.raises(DataError, match="3 confidences"):
        M.extended_metrics([0.1, 0.2, 0.3], [0.5], [True])


def test_confidence_and_extended_scores():
    rng = np.random.default_rng(6)
    s = rng.random((3, 224, 224)).astype(np.float32)
    conf = M.confidence(s)
    for m, c in zip(s, conf):
        top = sorted(m.ravel().tolist(), reverse=True)[: 224 * 224 // 4]
        assert c == pytest.approx(sum(top) / len(top), rel=1e-9)
    assert M.confidence(s[0]) == pytest.approx(conf[0])
    tau = 0.03
    raw = rng.normal(size=(2, 7, 7)).astype(np.float32) / tau
    got = M.extended_scores(raw, tau)
    ref = F.interpolate(
        torch.from_numpy((raw.astype(np.float64) + 1 / tau) / (2 / tau))[:, None],
        size=(224, 224),
        mode="bicubic",
        align_corners=True,
    )[:, 0].numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)


# ------------------------------------------------------------------------------------- AVSBench


def test_miou_hand_computed():
    pred = np.array(
        [
            [
                [0.9, 0.6, 0.1, 0.0],
                [0.8, 0.7, 0.0, 0.0],
                [0.0, 0.0, 0.0, 0.0],
                [0.0, 0.0, 0.0, 0.5],
            ],  # 0.5 is not > 0.5
            [[0.9, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
        ],
        dtype=np.float32,
    )
    mask = np.zeros((2, 4, 4), dtype=np.float32)
    mask[0, 0:2, 1:3] = 1  # frame 0: inter 2, union 6
    # frame 1 has an empty mask: TN / 16 = 15 / 16
    assert M.miou(pred, mask) == pytest.approx((2 / 6 + 15 / 16) / 2)
    pred[0, 3, 3] = np.nan
    assert M.miou(pred, mask) == pytest.approx((2 / 6 + 15 / 16) / 2)


def f_curve_loop(pred, mask, beta2=0.3):
    curve = []
    for t in np.linspace(0, 1 - 1e-10, 255):
        fire = pred >= t
        tp = float((fire & mask).sum())
        npred, npos = float(fire.sum()), float(mask.sum())
        p = tp / npred if npred else 0.0
        r = tp / npos if npos else 0.0
        curve.append((1 + beta2) * p * r / (beta2 * p + r) if beta2 * p + r > 0 else 0.0)
    return np.array(curve)


def test_fscore_hand_computed_single_frame():
    pred = np.array([[0.9, 0.2], [0.6, 0.0]])
    mask = np.array([[1, 0], [1, 1]])
    # best threshold in (0.2, 0.6]: P = 1, R = 2/3 -> 1.3 * 2/3 / (0.3 + 2/3) = 26/29
    assert M.fscore_dataset(pred[None], mask[None]) == pytest.approx(26 / 29)


def test_fscore_curve_matches_loop_and_compat():
    rng = np.random.default_rng(7)
    n = 8
    preds = rng.random((n, 12, 12))
    preds[0, 0, :5] = M.FSCORE_THRESHOLDS[[0, 17, 100, 200, 254]]  # values exactly at thresholds
    preds[1, 2, 2] = np.nan
    masks = (rng.random((n, 12, 12)) < 0.3).astype(np.float32)
    masks[6:] = 0  # last video: no object in any frame
    loops = [f_curve_loop(p, m > 0.5) for p, m in zip(preds, masks)]
    curve = M.fscore_curve(preds, masks)
    np.testing.assert_allclose(curve, np.mean(loops[:6], axis=0), atol=1e-12)
    assert M.fscore_dataset(preds, masks) == pytest.approx(float(np.mean(loops[:6], axis=0).max()))
    # official per-batch behaviour: batches of 2 frames, the all-empty batch scores 0
    per_batch = [np.mean(loops[i : i + 2], axis=0).max() for i in (0, 2, 4)] + [0.0]
    assert M.fscore_per_video_compat(preds, masks, batch_size=2) == pytest.approx(np.mean(per_batch))
    groups = ["a", "b", "a", "b", "a", "b", "c", "c"]
    by_key = [
        np.mean([loops[i] for i in (0, 2, 4)], axis=0).max(),
        np.mean([loops[i] for i in (1, 3, 5)], axis=0).max(),
        0.0,
    ]
    assert M.fscore_per_video_compat(preds, masks, groups=groups) == pytest.approx(np.mean(by_key))
    # one batch holding everything = the dataset-level number
    whole = M.fscore_per_video_compat(preds, masks, batch_size=n)
    assert whole == pytest.approx(M.fscore_dataset(preds, masks))
    assert M.fscore_dataset(preds, np.zeros_like(masks)) == 0.0
    with pytest.raises(DataError, match="3 group keys"):
        M.fscore_per_video_compat(preds, masks, groups=["a", "b", "c"])


def test_minmax_is_its_own_fixed_point_and_minmaxed_skips_it():
    """binarize(minmaxed=True) relies on minmax(minmax(x)) == minmax(x) bit for bit (the minimum maps
    to 0 - 0 = 0, the maximum to r / r = 1); checked on wide, tied, constant and non-finite maps."""
    rng = np.random.default_rng(11)
    maps = (rng.normal(size=(8, 224, 224)) * rng.choice([1e-3, 1.0, 30.0, 1e4], size=(8, 1, 1))).astype(np.float32)
    maps[1] = np.round(maps[1])  # ties
    maps[2] = -3.25  # constant
    maps[3, :5] = np.nan
    maps[4, 7, 9] = np.inf
    for x in (maps, torch.from_numpy(maps)):
        m = L.minmax(x)
        m2 = L.minmax(m)
        assert (m2 == m).all()
        for variant in ("median_ge", "median_gt", "fixed"):
            a, b = M.binarize(x, variant), M.binarize(m, variant, minmaxed=True)
            assert (a == b).all(), variant
            assert 0 < float(a[0].sum()) < 224 * 224  # not degenerate: the comparison can fail
    # hand case: already normalised, median index int(4 * 0.5) = 2 of [0, .25, .5, 1] is 0.5
    m = np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32)
    np.testing.assert_array_equal(M.binarize(m, "median_ge", minmaxed=True), [[0, 1], [1, 0]])
    np.testing.assert_array_equal(M.binarize(torch.from_numpy(m), "median_gt", minmaxed=True), [[0, 0], [1, 0]])
    with pytest.raises(ConfigError, match="absolute"):
        M.binarize(m, "absolute", minmaxed=True)
