"""Tests for fnac.localization against independent references (hand values, plain loops, scipy)."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from fnac import localization as L
from fnac.errors import ConfigError, DataError

A = -0.75  # the Keys cubic-convolution parameter torch uses


def keys_kernel(x: float) -> float:
    """Keys' cubic convolution kernel, written from its textbook definition."""
    x = abs(x)
    if x <= 1:
        return (A + 2) * x**3 - (A + 3) * x**2 + 1
    if x < 2:
        return A * x**3 - 5 * A * x**2 + 8 * A * x - 4 * A
    return 0.0


def bicubic_ref(img: np.ndarray, out_h: int, out_w: int, align_corners: bool) -> np.ndarray:
    """Plain-loop bicubic resize: edge pixels replicated, separable Keys kernel."""
    h, w = img.shape

    def src(d: int, n_in: int, n_out: int) -> float:
        if align_corners:
            return d * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        return (d + 0.5) * n_in / n_out - 0.5

    out = np.zeros((out_h, out_w))
    for oy in range(out_h):
        sy = src(oy, h, out_h)
        for ox in range(out_w):
            sx = src(ox, w, out_w)
            total = 0.0
            for iy in range(math.floor(sy) - 1, math.floor(sy) + 3):
                for ix in range(math.floor(sx) - 1, math.floor(sx) + 3):
                    v = img[min(max(iy, 0), h - 1), min(max(ix, 0), w - 1)]
                    total += v * keys_kernel(sy - iy) * keys_kernel(sx - ix)
            out[oy, ox] = total
    return out


def minmax_ref(m: np.ndarray) -> np.ndarray:
    vals = [float(v) for v in m.ravel()]
    lo, hi = min(vals), max(vals)
    if hi == lo:
        return m.astype(np.float64)
    return np.array([(v - lo) / (hi - lo) for v in vals]).reshape(m.shape)


# ------------------------------------------------------------------------------------- upsample


@pytest.mark.parametrize("align_corners", [False, True])
def test_bicubic_matches_plain_loop(align_corners):
    rng = np.random.default_rng(0)
    img = rng.normal(size=(3, 5)).astype(np.float32)
    got = L.upsample(img, (7, 11), "bicubic", align_corners=None if not align_corners else True)
    ref = bicubic_ref(img.astype(np.float64), 7, 11, align_corners)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)


def test_bilinear_align_corners_matches_scipy():
    rng = np.random.default_rng(1)
    img = rng.normal(size=(7, 7)).astype(np.float32)
    got = L.upsample(img, 224, "bilinear")
    c = np.arange(224) * 6 / 223  # align_corners=True: corners map to corners
    yy, xx = np.meshgrid(c, c, indexing="ij")
    ref = ndimage.map_coordinates(img.astype(np.float64), [yy, xx], order=1)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert got[0, 0] == img[0, 0] and got[-1, -1] == img[-1, -1]


def test_upsample_kinds_ranks_and_identity():
    rng = np.random.default_rng(2)
    batch = rng.normal(size=(3, 7, 7))  # float64 on purpose
    out = L.upsample(batch, 224)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (3, 224, 224)
    single = L.upsample(batch[1], 224)
    assert single.shape == (224, 224)
    np.testing.assert_array_equal(single, out[1])  # batching changes nothing
    t = L.upsample(torch.from_numpy(batch), 224, "bilinear")
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.shape == (3, 224, 224)
    same = rng.normal(size=(2, 224, 224)).astype(np.float32)
    np.testing.assert_array_equal(L.upsample(same, 224), same)
    # bicubic (align_corners=False) and bilinear (True) are different protocols
    assert not np.allclose(L.upsample(batch, 224, "bicubic"), L.upsample(batch, 224, "bilinear"))


def test_upsample_rejects_bad_input():
    with pytest.raises(ConfigError, match="nearest"):
        L.upsample(np.zeros((7, 7)), 224, "nearest")
    with pytest.raises(DataError, match="dimensions"):
        L.upsample(np.zeros((1, 2, 7, 7)), 224)


# --------------------------------------------------------------------------------------- minmax


def test_minmax_hand_values_and_per_sample():
    maps = np.array([[[1.0, 3.0], [5.0, 2.0]], [[-4.0, 0.0], [-2.0, -4.0]]], dtype=np.float32)
    out = L.minmax(maps)
    np.testing.assert_allclose(out[0], [[0.0, 0.5], [1.0, 0.25]])
    np.testing.assert_allclose(out[1], [[0.0, 1.0], [0.5, 0.0]])


def test_minmax_constant_left_unchanged():
    maps = np.full((2, 3, 3), 0.3, dtype=np.float32)
    maps[1] = -7.0
    np.testing.assert_array_equal(L.minmax(maps), maps)


def test_minmax_matches_plain_loop_and_torch_bitwise():
    rng = np.random.default_rng(3)
    maps = (rng.normal(size=(5, 9, 9)) * 10).astype(np.float32)
    out = L.minmax(maps)
    for m, o in zip(maps, out):
        np.testing.assert_allclose(o, minmax_ref(m), atol=1e-6)
    np.testing.assert_array_equal(L.minmax(torch.from_numpy(maps)).numpy(), out)


def test_minmax_nan_and_inf_become_minimum():
    m = np.array([[np.nan, 2.0], [4.0, np.inf]], dtype=np.float32)
    out = L.minmax(m)
    np.testing.assert_array_equal(out, [[0.0, 0.0], [1.0, 0.0]])
    assert np.isfinite(L.minmax(np.full((3, 3), np.nan))).all()
    np.testing.assert_array_equal(L.minmax(np.full((3, 3), np.nan)), np.zeros((3, 3)))
    t = L.minmax(torch.tensor([[-np.inf, 1.0], [3.0, np.nan]]))
    assert torch.equal(t, torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    src = m.copy()
    L.nan_to_min(m)
    np.testing.assert_array_equal(np.isnan(m), np.isnan(src))  # input not modified


# ------------------------------------------------------------------------------------------ OGL


def test_ogl_combine_hand_computed():
    av = np.array([[0.0, 1.0], [0.5, 0.5]], dtype=np.float32)
    obj = np.array([[1.0, 0.0], [0.5, 1.0]], dtype=np.float32)
    # 0.4 av + 0.6 obj = [[0.6, 0.4], [0.5, 0.8]] -> minmax over [0.4, 0.8]
    np.testing.assert_allclose(L.ogl_combine(av, obj, 0.4), [[0.5, 0.0], [0.25, 1.0]], atol=1e-6)
    np.testing.assert_allclose(L.ogl_combine(av, obj, 1.0), av)
    t = L.ogl_combine(torch.from_numpy(av), obj)
    assert isinstance(t, torch.Tensor)
    with pytest.raises(DataError, match="shape"):
        L.ogl_combine(av, np.zeros((3, 3)))
    with pytest.raises(ConfigError):
        L.ogl_combine(av, obj, 1.5)


def test_object_map_from_features_is_mean_abs():
    rng = np.random.default_rng(4)
    feats = rng.normal(size=(2, 5, 3, 4)).astype(np.float32)
    out = L.object_map_from_features(feats)
    assert out.shape == (2, 3, 4)
    for n in range(2):
        for y in range(3):
            for x in range(4):
                assert out[n, y, x] == pytest.approx(sum(abs(float(v)) for v in feats[n, :, y, x]) / 5, rel=1e-6)
    t = L.object_map_from_features(torch.from_numpy(feats))
    np.testing.assert_allclose(t.numpy(), out, rtol=1e-6)


def test_ogl_maps_pipeline():
    rng = np.random.default_rng(5)
    av = rng.normal(size=(2, 7, 7)).astype(np.float32)
    obj = np.abs(rng.normal(size=(2, 7, 7))).astype(np.float32)
    out = L.ogl_maps(av, obj, alpha=0.4)
    obj_ref = L.minmax(bicubic_free_bilinear(obj[0]))
    np.testing.assert_allclose(out["obj"][0], obj_ref, atol=1e-5)
    for key in ("av", "obj", "av_obj"):
        assert out[key].shape == (2, 224, 224)
        assert out[key].min() == 0.0 and out[key].max() == 1.0


def bicubic_free_bilinear(img: np.ndarray) -> np.ndarray:
    c = np.arange(224) * (img.shape[0] - 1) / 223
    yy, xx = np.meshgrid(c, c, indexing="ij")
    return ndimage.map_coordinates(img.astype(np.float64), [yy, xx], order=1).astype(np.float32)


# ------------------------------------------------------------------------------------ baselines


def test_baselines():
    c = L.centre_prior_map(224, sigma=0.25)
    assert c.shape == (224, 224) and c.dtype == np.float32
    np.testing.assert_allclose(c, c[::-1, :])
    np.testing.assert_allclose(c, c.T)
    assert c[111, 111] == c.max()
    # Gaussian of sigma 0.25 * 224 = 56 px around (111.5, 111.5)
    expected = math.exp(-((111 - 111.5) ** 2 + (167 - 111.5) ** 2) / (2 * 56.0**2))
    assert c[111, 167] == pytest.approx(expected, rel=1e-5)
    assert (L.whole_image_map(10) == 1).all() and L.whole_image_map(10).shape == (10, 10)
    r1, r2 = L.random_map(16, 7), L.random_map(16, np.random.default_rng(7))
    np.testing.assert_array_equal(r1, r2)
    assert r1.min() >= 0 and r1.max() < 1 and r1.std() > 0.1


# -------------------------------------------------------------------------------- peak and box


def test_peak_and_box_hand_drawn():
    m = np.zeros((8, 10), dtype=np.float32)
    m[1:3, 1:4] = 0.8  # blob A (contains the peak)
    m[2, 2] = 1.0
    m[5:7, 6:9] = 0.9  # blob B, separate
    m[3, 4] = 0.9  # diagonal neighbour of A: not 4-connected
    pb = L.peak_and_box(m, thr=0.5)
    assert (pb.x, pb.y) == (2, 2) and pb.score == 1.0
    assert (pb.x0, pb.y0, pb.x1, pb.y1) == (1, 1, 4, 3)
    # lower threshold: still only the connected region
    m[3, 1:3] = 0.3  # (3, 3) stays 0, so (3, 4) is still cut off
    assert L.peak_and_box(m, thr=0.2)[3:] == (1, 1, 4, 4)


def test_peak_and_box_matches_scipy_label():
    rng = np.random.default_rng(6)
    for _ in range(20):
        m = ndimage.gaussian_filter(rng.normal(size=(40, 30)), 2).astype(np.float32)
        pb = L.peak_and_box(m, thr=0.6)
        norm = (m - m.min()) / (m.max() - m.min())
        labels, _ = ndimage.label(norm >= 0.6)  # default structure: 4-connectivity
        py, px = np.unravel_index(np.argmax(m), m.shape)
        ys, xs = np.nonzero(labels == labels[py, px])
        assert (pb.x, pb.y) == (px, py)
        assert (pb.x0, pb.y0, pb.x1, pb.y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_peak_and_box_degenerate_maps():
    assert L.peak_and_box(np.full((5, 6), 0.2))[3:] == (0, 0, 6, 5)
    m = np.zeros((5, 5), dtype=np.float32)
    m[2, 3] = np.nan
    m[1, 1] = 1.0
    pb = L.peak_and_box(torch.from_numpy(m))
    assert (pb.x, pb.y) == (1, 1) and pb[3:] == (1, 1, 2, 2)
    assert L.peak_and_box(np.full((4, 4), np.nan))[3:] == (0, 0, 4, 4)


# ------------------------------------------------------------------------------------- imports


def _fnac_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("fnac")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fnac"):
            names |= {f"{node.module}.{a.name}" if node.module == "fnac" else node.module for a in node.names}
    return names


def test_imports_stay_low():
    src = Path(L.__file__).parent
    assert _fnac_imports(src / "localization.py") == {"fnac.errors"}
    assert _fnac_imports(src / "metrics.py") <= {"fnac.errors", "fnac.localization"}
