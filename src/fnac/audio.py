"""Audio model input: centred window, scipy-equivalent spectrogram in torch, log and masks.

docs/method.md §4 ("Audio", steps 2-5). The spectrogram equals
``scipy.signal.spectrogram(x, fs=sr, nperseg=512, noverlap=274)`` with scipy's defaults, computed with
torch so that it batches and runs on the input's device.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from fnac import media
from fnac.errors import ConfigError, MediaError

N_FFT = 512  # nperseg = nfft
N_OVERLAP = 274
HOP = N_FFT - N_OVERLAP  # 238
N_FREQ = N_FFT // 2 + 1  # 257 one-sided bins
TUKEY_ALPHA = 0.25
LOG_EPS = 1e-7
LOG_SCALE = 12.0  # the reference's Normalize(mean=0, std=12)
MASK_MAX_WIDTH = 9  # mask widths are uniform over {0..9}
MASK_MODES = ("reference", "specaugment", "none")


def n_frames(n_samples: int) -> int:
    """Spectrogram columns T for a signal of ``n_samples`` (scipy: (N - nperseg) // hop + 1)."""
    return (n_samples - N_FFT) // HOP + 1 if n_samples >= N_FFT else 0


def tukey_periodic(m: int = N_FFT, alpha: float = TUKEY_ALPHA) -> np.ndarray:
    """Periodic (DFT-even) Tukey window: the symmetric window of length m + 1 without its last point.

    Symmetric Tukey of length M: a cosine taper over the first and last alpha*(M-1)/2 samples, ones
    between (Harris 1978).
    """
    big = m + 1  # symmetric length
    n = np.arange(big, dtype=np.float64)
    width = int(math.floor(alpha * (big - 1) / 2.0))
    w = np.ones(big, dtype=np.float64)
    head = n[: width + 1]
    w[: width + 1] = 0.5 * (1 + np.cos(np.pi * (-1 + 2.0 * head / alpha / (big - 1))))
    tail = n[big - width - 1 :]
    w[big - width - 1 :] = 0.5 * (1 + np.cos(np.pi * (-2.0 / alpha + 1 + 2.0 * tail / alpha / (big - 1))))
    return w[:m]


_WINDOW_CACHE: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}


def _window(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    key = (device, dtype)
    if key not in _WINDOW_CACHE:
        _WINDOW_CACHE[key] = torch.from_numpy(tukey_periodic()).to(device=device, dtype=dtype)
    return _WINDOW_CACHE[key]


def spectrogram(x: torch.Tensor | np.ndarray, sr: int) -> torch.Tensor:
    """Power spectral density per segment, (..., N) -> (..., 257, T) (docs/method.md §4, Audio step 3).

    Segments of 512 samples every 238; each has its mean removed (constant detrend), is multiplied by
    the periodic Tukey(0.25) window w and transformed (rfft, 512 points). S = |X|^2 / (sr * sum(w^2)),
    doubled for every bin except DC and Nyquist. T = (N - 512) // 238 + 1 (200 for 3 s at 16 kHz).
    Float64 input stays float64; anything else is computed in float32.
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if x.dtype != torch.float64:
        x = x.to(torch.float32)
    if x.shape[-1] < N_FFT:
        raise MediaError(f"spectrogram needs at least {N_FFT} samples, got {x.shape[-1]}")
    w = _window(x.device, x.dtype)
    seg = x.unfold(-1, N_FFT, HOP)  # (..., T, 512)
    seg = seg - seg.mean(dim=-1, keepdim=True)
    spec = torch.fft.rfft(seg * w, n=N_FFT, dim=-1)  # (..., T, 257) complex
    power = spec.real.square() + spec.imag.square()
    scale = 1.0 / (float(sr) * float((w.double() ** 2).sum()))
    factor = torch.full((N_FREQ,), 2.0 * scale, dtype=x.dtype, device=x.device)
    factor[0] = scale
    factor[-1] = scale  # nfft even: the last bin is Nyquist
    return (power * factor).transpose(-1, -2).contiguous()  # (..., 257, T)


def centre_window(x: np.ndarray, sr: int, duration: float = 3.0, centre: float | None = None) -> np.ndarray:
    """Exactly round(sr * duration) samples around the clip's centre (docs/method.md §4, Audio step 2).

    start = max(centre - duration / 2, 0) seconds, centre = clip duration / 2 by default; the window
    is moved left when it would run past the end. A clip shorter than the window is tiled from its
    first sample and cut to length.
    """
    x = np.asarray(x)
    if x.ndim != 1 or x.size == 0:
        raise MediaError(f"centre_window expects a non-empty (N,) signal, got shape {x.shape}")
    length = int(round(sr * duration))
    if length <= 0:
        raise ConfigError(f"window of {duration} s at {sr} Hz is empty")
    n = x.shape[0]
    if n < length:
        reps = -(-length // n)  # ceil
        return np.tile(x, reps)[:length]
    if centre is None:
        centre = n / sr / 2.0
    start = int(max(centre - duration / 2.0, 0.0) * sr)
    start = min(start, n - length)
    return x[start : start + length]


def _band(t: torch.Tensor, axis: int, start: int, width: int) -> None:
    """Zero ``width`` entries from ``start`` along ``axis`` (-2 rows, -1 columns); cut at the edge."""
    if width <= 0:
        return
    if axis == -2:
        t[..., start : start + width, :] = 0.0
    else:
        t[..., :, start : start + width] = 0.0


def apply_masks(
    logspec: torch.Tensor, mode: str = "reference", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Training masks on a log spectrogram (..., F, T), one draw per leading item (docs/method.md §4, step 5).

    Draw order per item: row band (width, start), then column band (width, start); widths uniform over
    {0..9}. "reference": rows start uniform over [0, T), columns over [0, F) (the reference's swapped
    axes); "specaugment": rows over [0, F), columns over [0, T). Bands are cut at the edge; filled with 0.
    Returns a new tensor.
    """
    if mode not in MASK_MODES:
        raise ConfigError(f"spec_mask must be one of {MASK_MODES}, got {mode!r}")
    out = logspec.clone()
    if mode == "none":
        return out
    f, t = out.shape[-2], out.shape[-1]
    flat = out.reshape(-1, f, t)  # (B, F, T), a view of out
    row_range, col_range = (t, f) if mode == "reference" else (f, t)

    def draw(high: int) -> int:
        return int(torch.randint(0, high, (1,), generator=generator).item())

    for item in flat:
        w_row = draw(MASK_MAX_WIDTH + 1)
        r0 = draw(row_range)
        w_col = draw(MASK_MAX_WIDTH + 1)
        c0 = draw(col_range)
        _band(item, -2, r0, w_row)
        _band(item, -1, c0, w_col)
    return out


def to_model_input(
    spec: torch.Tensor, train: bool = False, mask: str = "reference", generator: torch.Generator | None = None
) -> torch.Tensor:
    """log(S + 1e-7), the training masks (train only), then / 12 (docs/method.md §4, Audio steps 4-5)."""
    if mask not in MASK_MODES:
        raise ConfigError(f"spec_mask must be one of {MASK_MODES}, got {mask!r}")
    out = torch.log(spec + LOG_EPS)
    if train and mask != "none":
        out = apply_masks(out, mask, generator)
    return out / LOG_SCALE


def load_spectrogram(path: str | os.PathLike, duration: float = 3.0, sample_rate: int = 0) -> torch.Tensor:
    """Test-time model input of an audio (or video) file: (1, 257, T) float32 (docs/method.md §4, Audio)."""
    x, sr = media.read_audio(path, sample_rate)
    window = centre_window(x, sr, duration)
    if window.shape[0] < N_FFT:
        raise MediaError(
            f"{path}: {duration} s at {sr} Hz is {window.shape[0]} samples, fewer than the {N_FFT} a spectrogram needs"
        )
    spec = spectrogram(torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32)), sr)  # (257, T)
    return to_model_input(spec).unsqueeze(0)  # (1, 257, T)
