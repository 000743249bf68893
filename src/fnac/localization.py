"""Localization maps: upsampling variants, min-max normalisation, OGL combination, trivial baselines.

Pure functions on numpy arrays or torch tensors (docs/evaluation.md §2 and §7, docs/method.md §5).
Every function that takes maps accepts a single map (h, w) or a batch (N, h, w), numpy or torch, and
returns the same kind (numpy in -> numpy out, torch in -> torch out on the same device), float32.

Non-finite values (NaN, +-inf) never crash anything here: `nan_to_min` replaces each by the minimum of
the finite values of its own map (0 when a map has no finite value at all), so a broken pixel never
becomes a detection. `minmax` applies it first; `upsample` does not (interpolation is kept pure), so
sanitise raw maps before upsampling when they may hold NaN (metrics.evaluate does).

Imports nothing of fnac but errors.
"""

from __future__ import annotations

from typing import NamedTuple, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from fnac.errors import ConfigError, DataError

Maps = TypeVar("Maps", np.ndarray, torch.Tensor)

UPSAMPLE_MODES = ("bicubic", "bilinear")
# FNAC's validation: bicubic, align_corners=False; its test script / EZ-VSL: bilinear, align_corners=True.
DEFAULT_ALIGN_CORNERS = {"bicubic": False, "bilinear": True}

__all__ = [
    "UPSAMPLE_MODES",
    "PeakBox",
    "centre_prior_map",
    "minmax",
    "nan_to_min",
    "object_map_from_features",
    "ogl_combine",
    "ogl_maps",
    "peak_and_box",
    "random_map",
    "upsample",
    "whole_image_map",
]


def _as_float32(
    maps: np.ndarray | torch.Tensor, name: str = "maps", min_ndim: int = 2, max_ndim: int = 3
) -> np.ndarray | torch.Tensor:
    """Float32 view/copy of `maps` (numpy stays numpy, torch stays torch); checks the rank."""
    if isinstance(maps, torch.Tensor):
        out = maps.float()
    else:
        out = np.asarray(maps, dtype=np.float32)
    if not min_ndim <= out.ndim <= max_ndim:
        raise DataError(f"{name}: expected {min_ndim} to {max_ndim} dimensions, got shape {tuple(out.shape)}")
    return out


def _size2(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def nan_to_min(maps: Maps) -> Maps:
    """Replace non-finite pixels by the minimum finite value of their own map (0 if none is finite).

    maps (h, w) or (N, h, w), numpy or torch; returns float32 of the same kind. Finite maps are
    returned unchanged (possibly the same object).
    """
    x = _as_float32(maps)
    if isinstance(x, torch.Tensor):
        finite = torch.isfinite(x)
        if bool(finite.all()):
            return x
        inf = torch.tensor(float("inf"), dtype=x.dtype, device=x.device)
        lo = torch.where(finite, x, inf).amin(dim=(-2, -1), keepdim=True)  # (..., 1, 1)
        lo = torch.where(torch.isfinite(lo), lo, torch.zeros_like(lo))
        return torch.where(finite, x, lo)
    finite = np.isfinite(x)
    if finite.all():
        return x
    lo = np.where(finite, x, np.float32(np.inf)).min(axis=(-2, -1), keepdims=True)  # (..., 1, 1)
    lo = np.where(np.isfinite(lo), lo, np.float32(0)).astype(np.float32)
    return np.where(finite, x, lo).astype(np.float32)


def upsample(
    maps: Maps, size: int | tuple[int, int] = 224, mode: str = "bicubic", align_corners: bool | None = None
) -> Maps:
    """Resize (h, w) or (N, h, w) maps to (size, size) with torch's F.interpolate (docs/evaluation.md §2).

    mode "bicubic" uses align_corners=False (FNAC validation), "bilinear" align_corners=True (FNAC
    test script, EZ-VSL). `align_corners` overrides that default (the SLAVC extended protocol uses
    bicubic with align_corners=True, docs/evaluation.md §5). A map already at the target size is returned
    as is (both interpolations are the identity there). Returns float32, same kind and rank as input.
    """
    if mode not in UPSAMPLE_MODES:
        raise ConfigError(f"upsample mode: expected one of {UPSAMPLE_MODES}, got {mode!r}")
    x = _as_float32(maps)
    out_hw = _size2(size)
    if tuple(x.shape[-2:]) == out_hw:
        return x
    is_torch = isinstance(x, torch.Tensor)
    t = x if is_torch else torch.from_numpy(np.ascontiguousarray(x))
    ac = DEFAULT_ALIGN_CORNERS[mode] if align_corners is None else bool(align_corners)
    t4 = t.reshape(-1, 1, *t.shape[-2:])  # (N, 1, h, w)
    up = F.interpolate(t4, size=out_hw, mode=mode, align_corners=ac)  # (N, 1, H, W)
    up = up.reshape(*t.shape[:-2], *out_hw)  # (..., H, W)
    return up if is_torch else up.numpy()


def minmax(maps: Maps) -> Maps:
    """Per-map (x - min) / (max - min) over the last two axes (docs/evaluation.md §2).

    A constant map is returned unchanged (not zeroed). Non-finite pixels are first replaced by their
    map's finite minimum (`nan_to_min`), so they end up at 0. Computed in float32 with the same
    operations for numpy and torch, so both give bit-identical results.
    """
    if isinstance(maps, torch.Tensor):
        x = _as_float32(maps)
        lo, hi = _extremes(x)
        if not bool(torch.isfinite(lo).all() & torch.isfinite(hi).all()):  # a NaN or inf pixel somewhere
            x = nan_to_min(x)
            lo, hi = _extremes(x)
        rng = hi - lo
        const = rng == 0
        return torch.where(const, x, (x - lo) / torch.where(const, torch.ones_like(rng), rng))
    x = nan_to_min(maps)
    lo = x.min(axis=(-2, -1), keepdims=True)  # (..., 1, 1)
    hi = x.max(axis=(-2, -1), keepdims=True)
    rng = hi - lo
    const = rng == 0
    return np.where(const, x, (x - lo) / np.where(const, np.float32(1), rng)).astype(np.float32)


def _extremes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-map minimum and maximum, (..., 1, 1) each, in one pass (NaN if the map has a NaN)."""
    lo, hi = torch.aminmax(x.reshape(*x.shape[:-2], -1), dim=-1)
    return lo[..., None, None], hi[..., None, None]


def ogl_combine(av: Maps, obj: np.ndarray | torch.Tensor, alpha: float = 0.4) -> Maps:
    """Object-guided localization (docs/method.md §5): minmax(alpha * av + (1 - alpha) * obj).

    Both inputs must already be min-max normalised at the evaluation size (224). `obj` is converted
    to the kind (and device) of `av`. Shapes (h, w) or (N, h, w), equal.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"ogl alpha: expected a value in [0, 1], got {alpha}")
    a = _as_float32(av, "av map")
    if isinstance(a, torch.Tensor):
        o = torch.as_tensor(obj, dtype=torch.float32, device=a.device)
    else:
        o = np.asarray(obj.detach().cpu() if isinstance(obj, torch.Tensor) else obj, dtype=np.float32)
    if tuple(a.shape) != tuple(o.shape):
        raise DataError(f"ogl_combine: av map shape {tuple(a.shape)} != object map shape {tuple(o.shape)}")
    return minmax(alpha * a + (1.0 - alpha) * o)


def object_map_from_features(feats: Maps) -> Maps:
    """Object map of OGL (docs/method.md §5): mean over channels of |features|.

    feats (N, C, h, w) -> (N, h, w), or (C, h, w) -> (h, w); same kind, float32.
    """
    f = _as_float32(feats, "object features", min_ndim=3, max_ndim=4)
    if isinstance(f, torch.Tensor):
        return f.abs().mean(dim=-3)
    return np.abs(f).mean(axis=-3, dtype=np.float32)


def ogl_maps(
    av_raw: Maps, obj_raw: Maps, alpha: float = 0.4, size: int = 224, av_mode: str = "bicubic"
) -> dict[str, Maps]:
    """The three maps OGL reports (docs/method.md §5), each min-max normalised at `size`.

    av_raw: raw cos/tau maps (N, h, w) upsampled with `av_mode`; obj_raw: object maps (N, h', w')
    (see `object_map_from_features`) upsampled bilinear, align_corners=True. Non-finite values are
    replaced before upsampling. Returns {"av", "obj", "av_obj"}.
    """
    av = minmax(upsample(nan_to_min(av_raw), size, av_mode))
    obj = minmax(upsample(nan_to_min(obj_raw), size, "bilinear"))
    return {"av": av, "obj": obj, "av_obj": ogl_combine(av, obj, alpha)}


# ---------------------------------------------------------------------------------------------
# Trivial baselines (docs/evaluation.md §7): print them next to every model result.


def centre_prior_map(size: int = 224, sigma: float = 0.25) -> np.ndarray:
    """Isotropic Gaussian centred in the image, peak 1: exp(-r^2 / (2 (sigma * size)^2)).

    `sigma` is a fraction of the image side; the centre is ((size - 1) / 2, (size - 1) / 2).
    Returns (size, size) float32.
    """
    if sigma <= 0:
        raise ConfigError(f"centre prior sigma: expected > 0, got {sigma}")
    c = (size - 1) / 2.0
    r = np.arange(size, dtype=np.float64) - c
    d2 = r[:, None] ** 2 + r[None, :] ** 2  # (size, size)
    return np.exp(-d2 / (2.0 * (sigma * size) ** 2)).astype(np.float32)


def whole_image_map(size: int = 224) -> np.ndarray:
    """A constant map: under `median_ge` every pixel is predicted (the whole-image baseline)."""
    return np.ones((size, size), dtype=np.float32)


def random_map(size: int = 224, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Uniform noise in [0, 1), (size, size) float32. `rng`: a Generator or a seed."""
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return gen.random((size, size), dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# Per-frame localization output.


class PeakBox(NamedTuple):
    """Peak of a map and the box of the high-response region around it.

    (x, y): column and row of the argmax (first in row-major order on ties); score: the normalised
    value there (1.0 unless the map is constant); box (x0, y0, x1, y1) in pixels, end-exclusive
    (region = map[y0:y1, x0:x1]), the same convention as the ground-truth rasterisation.
    """

    x: int
    y: int
    score: float
    x0: int
    y0: int
    x1: int
    y1: int


def peak_and_box(heatmap: np.ndarray | torch.Tensor, thr: float = 0.5) -> PeakBox:
    """Argmax of a (h, w) map and the bounding box of the 4-connected region containing it where the
    min-max normalised map is >= thr. A constant map's region is the whole map. NaN-safe (minmax).
    """
    if not 0.0 <= thr <= 1.0:
        raise ConfigError(f"peak_and_box thr: expected a value in [0, 1], got {thr}")
    m = _as_float32(heatmap, "map", min_ndim=2, max_ndim=2)
    if isinstance(m, torch.Tensor):
        m = m.detach().cpu().numpy()
    h, w = m.shape
    if h == 0 or w == 0:
        raise DataError(f"peak_and_box: empty map of shape {(h, w)}")
    n = minmax(m)
    flat_idx = int(np.argmax(n))
    py, px = divmod(flat_idx, w)
    if n.max() == n.min():
        return PeakBox(px, py, float(n[py, px]), 0, 0, w, h)
    mask = n >= thr  # the peak (value 1) is always inside
    region = np.zeros_like(mask)
    region[py, px] = True
    while True:  # grow the region by 4-connected dilation inside the mask until it stops changing
        grown = region.copy()
        grown[1:, :] |= region[:-1, :]
        grown[:-1, :] |= region[1:, :]
        grown[:, 1:] |= region[:, :-1]
        grown[:, :-1] |= region[:, 1:]
        grown &= mask
        if np.array_equal(grown, region):
            break
        region = grown
    rows = np.flatnonzero(region.any(axis=1))
    cols = np.flatnonzero(region.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    return PeakBox(px, py, float(n[py, px]), x0, y0, x1 + 1, y1 + 1)
