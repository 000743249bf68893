"""fnac.visualize: overlay pixels against hand-computed values, PNG writing, training curves."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fnac.errors import ConfigError, MediaError
from fnac.visualize import colormap, heat_overlay, plot_curves, resize_map, save_png

# matplotlib's jet at its two ends (0 -> dark blue (0, 0, 0.5), 1 -> dark red (0.5, 0, 0)), in uint8
JET0 = (0, 0, 128)
JET1 = (128, 0, 0)


def test_colormap_ends_are_jet():
    c = colormap(np.array([0.0, 1.0, -3.0, 7.0, np.nan]))
    assert c.dtype == np.uint8 and c.shape == (5, 3)
    assert tuple(c[0]) == JET0 and tuple(c[1]) == JET1
    assert tuple(c[2]) == JET0 and tuple(c[3]) == JET1  # clipped to [0, 1]
    assert tuple(c[4]) == JET0  # NaN counts as 0


def test_alpha_zero_keeps_frame_and_alpha_one_is_pure_colour():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    out0 = heat_overlay(frame, np.ones((7, 7)), alpha=0.0)
    assert np.array_equal(out0, frame)
    out1 = heat_overlay(frame, np.ones((7, 7)), alpha=1.0)
    assert out1.shape == frame.shape and out1.dtype == np.uint8
    assert (out1 == np.array(JET1, np.uint8)).all()
    assert out0 is not frame  # a new array, the input untouched


def test_half_blend_by_hand():
    frame = np.zeros((4, 6, 3), np.uint8)
    frame[:] = (200, 100, 50)
    out = heat_overlay(frame, np.zeros((2, 2)), alpha=0.5)
    # 0.5 * frame + 0.5 * (0, 0, 128), rounded
    assert (out == np.array([100, 50, 89], np.uint8)).all()


def test_map_is_resized_to_the_frame():
    # 2 columns -> 8: bilinear with pixel centres maps output column 0 to input -0.25 (clamped: 0)
    # and column 7 to 1.25 (clamped: 1), so the edges keep the exact end colours
    m = np.array([[0.0, 1.0], [0.0, 1.0]], np.float32)
    out = heat_overlay(np.zeros((6, 8, 3), np.uint8), m, alpha=1.0)
    assert (out[:, 0] == np.array(JET0, np.uint8)).all()
    assert (out[:, 7] == np.array(JET1, np.uint8)).all()
    # values grow from left to right: red channel of jet is non-decreasing past the middle
    r = resize_map(m, 6, 8)[0]
    assert np.all(np.diff(r) >= 0) and r[0] == 0.0 and r[-1] == 1.0


def test_box_outline_pixels():
    frame = np.full((40, 40, 3), 30, np.uint8)
    out = heat_overlay(frame, np.zeros((7, 7)), alpha=0.0, boxes=[[0.25, 0.25, 0.75, 0.75]], box_color=(255, 0, 255))
    changed = np.any(out != frame, axis=2)
    # columns/rows 10..29 (0.25 * 40 = 10, 0.75 * 40 = 30 end-exclusive), a 1-pixel outline of 20 x 20
    expected = np.zeros((40, 40), bool)
    expected[10, 10:30] = expected[29, 10:30] = True
    expected[10:30, 10] = expected[10:30, 29] = True
    assert np.array_equal(changed, expected)
    assert (out[expected] == np.array([255, 0, 255], np.uint8)).all()


def test_peak_cross():
    frame = np.zeros((40, 40, 3), np.uint8)
    out = heat_overlay(frame, np.zeros((3, 3)), alpha=0.0, peak=(10.5 / 40, 20.5 / 40), peak_color=(0, 255, 0))
    changed = np.any(out != frame, axis=2)
    ys, xs = np.nonzero(changed)
    # a cross of radius 3 centred on pixel (x=10, y=20): 7 + 7 - 1 pixels
    assert changed.sum() == 13
    assert set(xs) == set(range(7, 14)) and set(ys) == set(range(17, 24))
    assert tuple(out[20, 10]) == (0, 255, 0)


def test_bad_inputs():
    with pytest.raises(MediaError):
        heat_overlay(np.zeros((4, 4, 3), np.float32), np.zeros((2, 2)))
    with pytest.raises(MediaError):
        heat_overlay(np.zeros((4, 4), np.uint8), np.zeros((2, 2)))
    with pytest.raises(ConfigError):
        heat_overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((2, 2)), alpha=1.5)
    with pytest.raises(MediaError):
        heat_overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((2, 2, 2)))


def test_save_png_roundtrip(tmp_path):
    img = np.random.default_rng(1).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    p = save_png(tmp_path / "a" / "b.png", img)
    back = np.asarray(Image.open(p))
    assert np.array_equal(back, img)
    with pytest.raises(MediaError):
        save_png(tmp_path / "c.png", img.astype(np.float32))


def _records():
    recs = []
    for e in range(3):
        for s in range(5):
            step = e * 5 + s
            recs.append(
                {
                    "kind": "step",
                    "epoch": e,
                    "step": step,
                    "loss": 3.0 - 0.1 * step,
                    "contrastive": 2.0,
                    "fns1": 0.01,
                    "tns": 0.2,
                    "fns2": 0.1 + 0.01 * s,
                    "lr": 1e-4,
                }
            )
        recs.append(
            {"kind": "epoch", "epoch": e, "step": e * 5 + 4, "loss": 2.5, "val_ciou50": 0.1 * e, "val_auc": 0.2 * e}
        )
    return recs


def test_plot_curves_panels(tmp_path):
    # three panels (losses, lr, validation) of 5 x 3.6 inches at 100 dpi
    p = plot_curves(_records(), tmp_path / "curves.png")
    with Image.open(p) as im:
        assert im.size == (1500, 360)
        px = np.asarray(im.convert("RGB"))
    assert px.std() > 10  # something was drawn
    # keys without data are skipped: only the loss panel remains
    p2 = plot_curves(_records(), tmp_path / "one.png", keys=("loss", "val_missing"))
    with Image.open(p2) as im:
        assert im.size == (500, 360)
    # non-finite values and missing fields do not break it
    recs = _records() + [{"kind": "step", "step": 99, "loss": float("nan")}, {"kind": "epoch", "epoch": 3}]
    assert plot_curves(recs, tmp_path / "nan.png").is_file()


def test_plot_curves_empty(tmp_path):
    p = plot_curves([], tmp_path / "empty.png")
    with Image.open(p) as im:
        assert im.size == (500, 360)
