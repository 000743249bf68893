"""audio: spectrogram against scipy, centred window against hand indices, masks, model input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch

from fnac import audio
from fnac.errors import ConfigError, MediaError

RATES = [8000, 16000, 22050, 44100, 48000]


def _scipy_spec(x: np.ndarray, sr: int) -> np.ndarray:
    return scipy.signal.spectrogram(np.asarray(x, dtype=np.float64), fs=sr, nperseg=512, noverlap=274)[2]


def _signal(sr: int, seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """Noise + tones + a DC offset (exercises the detrend) + a silent stretch (tiny bins) + clipping."""
    rng = np.random.default_rng(seed)
    n = int(sr * seconds)
    t = np.arange(n) / sr
    x = 0.1 * rng.standard_normal(n) + 0.4 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3000 * t) + 0.3
    x[: n // 10] = 0.0
    return np.clip(x, -1, 1).astype(np.float32)


def test_window_is_periodic_tukey():
    np.testing.assert_allclose(audio.tukey_periodic(), scipy.signal.get_window(("tukey", 0.25), 512), atol=1e-15)


@pytest.mark.parametrize("sr", RATES)
def test_spectrogram_matches_scipy(sr):
    x = _signal(sr)
    ref = _scipy_spec(x, sr)
    got = audio.spectrogram(torch.from_numpy(x), sr)
    assert got.dtype == torch.float32
    assert tuple(got.shape) == ref.shape == (257, audio.n_frames(len(x)))
    diff = np.abs(np.log(got.numpy().astype(np.float64) + 1e-7) - np.log(ref + 1e-7))
    assert diff.max() < 1e-4


def test_spectrogram_shape_16k_3s():
    assert tuple(audio.spectrogram(torch.zeros(48000), 16000).shape) == (257, 200)
    assert audio.n_frames(48000) == 200


def test_spectrogram_batched_and_float64():
    xs = np.stack([[_signal(16000, 1.0, seed=s) for s in range(3)] for _ in range(2)])  # (2, 3, N)
    got = audio.spectrogram(torch.from_numpy(xs), 16000)
    assert tuple(got.shape) == (2, 3, 257, audio.n_frames(16000))
    for i in range(2):
        for j in range(3):
            ref = _scipy_spec(xs[i, j], 16000)
            assert np.abs(np.log(got[i, j].numpy() + 1e-7) - np.log(ref + 1e-7)).max() < 1e-4
    x64 = torch.from_numpy(xs[0, 0].astype(np.float64))
    got64 = audio.spectrogram(x64, 16000)
    assert got64.dtype == torch.float64
    np.testing.assert_allclose(got64.numpy(), _scipy_spec(xs[0, 0], 16000), rtol=1e-9, atol=1e-16)


def test_spectrogram_too_short():
    with pytest.raises(MediaError, match="512"):
        audio.spectrogram(torch.zeros(511), 16000)


# ------------------------------------------------------------------------------------ centre window


def test_centre_window_long_clip():
    x = np.arange(64000)  # 4 s at 16 kHz: centre 2 s, start 0.5 s = sample 8000
    np.testing.assert_array_equal(audio.centre_window(x, 16000, 3.0), np.arange(8000, 56000))


def test_centre_window_exact_and_odd_lengths():
    np.testing.assert_array_equal(audio.centre_window(np.arange(48000), 16000), np.arange(48000))
    # 48001 samples: start = (48001/32000 - 1.5) s = 0.5 samples -> sample 0
    np.testing.assert_array_equal(audio.centre_window(np.arange(48001), 16000), np.arange(48000))
    # 10 s at 8 kHz: start 3.5 s
    np.testing.assert_array_equal(audio.centre_window(np.arange(80000), 8000), np.arange(28000, 52000))


def test_centre_window_tiles_short_clip():
    x = np.arange(10)
    # sr 4, 3 s -> 12 samples: the clip, then its first two samples again
    np.testing.assert_array_equal(audio.centre_window(x, 4, 3.0), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1])
    np.testing.assert_array_equal(audio.centre_window(np.array([5, 6]), 2, 2.5), [5, 6, 5, 6, 5])


def test_centre_window_explicit_centre():
    x = np.arange(64000)  # 4 s at 16 kHz
    np.testing.assert_array_equal(audio.centre_window(x, 16000, 3.0, centre=1.75), np.arange(4000, 52000))
    np.testing.assert_array_equal(audio.centre_window(x, 16000, 3.0, centre=0.2), np.arange(0, 48000))
    # would run past the end: moved left to the last full window
    np.testing.assert_array_equal(audio.centre_window(x, 16000, 3.0, centre=3.9), np.arange(16000, 64000))


# ----------------------------------------------------------------------------------------------- masks


def _check_contiguous(idx: list[int]) -> None:
    if idx:
        assert idx == list(range(idx[0], idx[0] + len(idx)))
    assert len(idx) <= 9


@pytest.mark.parametrize("mode", ["reference", "specaugment"])
def test_masks_zero_only_in_bands(mode):
    f, t, n = 77, 60, 3000  # F > T as in (257, 200), smaller for speed; bands (<= 9) never cover an axis
    x = torch.rand(n, f, t) + 1.0  # strictly positive: any zero came from a mask
    out = audio.apply_masks(x, mode, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    zero = out == 0
    row_band = zero.all(dim=2)  # (n, f) rows entirely zero
    col_band = zero.all(dim=1)  # (n, t) columns entirely zero
    masked = row_band[:, :, None] | col_band[:, None, :]  # (n, f, t)
    assert torch.equal(zero, masked)  # zeros only as whole rows/columns, and those are all zero
    assert torch.equal(out[~masked], x[~masked])  # untouched elsewhere
    row_starts, row_widths, row_seen, col_seen = [], [], 0, 0
    for k in range(n):
        rows = torch.nonzero(row_band[k]).flatten().tolist()
        cols = torch.nonzero(col_band[k]).flatten().tolist()
        _check_contiguous(rows)
        _check_contiguous(cols)
        if rows:
            row_seen += 1
            row_starts.append(rows[0])
            if rows[-1] < f - 1:
                row_widths.append(len(rows))
        col_seen += bool(cols)
    if mode == "reference":
        # rows (frequency bins) start over [0, T): never at T..F-1
        assert max(row_starts) < t and max(row_starts) >= t - 3
        # columns start over [0, F): only starts < T land inside; visible about 0.9 * T / F
        assert abs(col_seen / n - 0.9 * t / f) < 0.035
    else:
        assert max(row_starts) >= f - 3  # frequency rows start anywhere in [0, F)
        assert abs(col_seen / n - 0.9) < 0.03  # time columns always land inside when width > 0
    assert abs(row_seen / n - 0.9) < 0.03  # width 0 one time in ten
    assert set(row_widths) == set(range(1, 10))


def test_mask_draw_order_hand_case():
    """One item: the documented draw order gives these bands (hand-checked against the draws)."""
    g = torch.Generator().manual_seed(123)
    draws = [int(torch.randint(0, hi, (1,), generator=g)) for hi in (10, 200, 10, 257)]
    w_row, r0, w_col, c0 = draws
    x = torch.ones(257, 200)
    out = audio.apply_masks(x, "reference", torch.Generator().manual_seed(123))
    expect = torch.ones(257, 200)
    for r in range(r0, min(r0 + w_row, 257)):
        for c in range(200):
            expect[r, c] = 0
    for c in range(c0, min(c0 + w_col, 200)):
        for r in range(257):
            expect[r, c] = 0
    assert torch.equal(out, expect)


def test_masks_cut_at_edge():
    # specaugment on a tiny (12, 3) spectrogram: late bands are cut at the edge, never wrap round
    x = torch.ones(500, 12, 3)
    out = audio.apply_masks(x, "specaugment", torch.Generator().manual_seed(1))
    rows_zero = (out == 0).all(dim=2)  # (500, 12)
    cut = 0
    for k in range(500):
        rows = torch.nonzero(rows_zero[k]).flatten().tolist()
        if rows and len(rows) < 12:  # (all 12 = a column band covered every column)
            assert rows == list(range(rows[0], rows[-1] + 1))
            cut += rows[-1] == 11
    assert cut > 0  # some bands did reach the edge


def test_to_model_input():
    s = torch.rand(2, 257, 200, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    ref = np.log(s.numpy().astype(np.float64) + 1e-7) / 12
    # Tolerance: 1e-5 absolute, about 80 float32 ulps at the largest magnitude (1.34). Full-suite runs
    # have (rarely) seen torch's float32 log differ from numpy's by up to 3.4e-6 on ~10 % of elements
    # (CONTRIBUTING.md, "Open work"); every mistake this test is for is far larger: a log10 (x0.43),
    # a scale of 10 (x1.2) or an offset of 1e-6 (1e-2 at the smallest input here, 6.8e-6).
    tol = dict(rtol=0, atol=1e-5)
    np.testing.assert_allclose(audio.to_model_input(s).numpy(), ref, **tol)
    np.testing.assert_allclose(audio.to_model_input(s, train=True, mask="none").numpy(), ref, **tol)
    # hand values: S = 0 gives ln(1e-7) / 12 = -16.118096 / 12 = -1.3431746; S = 1 gives log(1 + 1e-7) / 12 ~ 8.3e-9
    ends = audio.to_model_input(torch.tensor([0.0, 1.0, 1e-5]))
    np.testing.assert_allclose(ends.numpy(), [-1.3431746, 0.0, np.log(1.01e-5) / 12], rtol=0, atol=1e-6)
    a = audio.to_model_input(s, train=True, generator=torch.Generator().manual_seed(5))
    b = audio.to_model_input(s, train=True, generator=torch.Generator().manual_seed(5))
    c = audio.to_model_input(s, train=True, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    zero = a == 0
    assert zero.any()
    np.testing.assert_allclose(a[~zero].numpy(), ref[~zero.numpy()], **tol)
    with pytest.raises(ConfigError, match="spec_mask"):
        audio.to_model_input(s, train=True, mask="bogus")


def test_load_spectrogram(tmp_path):
    x = _signal(16000, 4.0, seed=3)
    sf.write(tmp_path / "a.wav", x, 16000, subtype="FLOAT")
    got = audio.load_spectrogram(tmp_path / "a.wav")
    assert got.shape == (1, 257, 200) and got.dtype == torch.float32
    ref = np.log(_scipy_spec(x[8000:56000], 16000) + 1e-7) / 12
    assert np.abs(got[0].numpy() - ref).max() < 1e-5
