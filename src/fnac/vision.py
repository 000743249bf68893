"""Image loading and the train/test transforms (docs/method.md §4, "Image").

Test: bicubic resize to exactly size x size (Pillow's resize; the aspect ratio is not kept, boxes are
in that frame). Train: resize the shorter side to int(size * 1.1) bicubic, random crop, random
horizontal flip. Both end with /255 and ImageNet mean/std normalisation.
"""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from fnac.errors import ConfigError, MediaError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_MEAN = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)
_STD = torch.tensor(IMAGENET_STD, dtype=torch.float32)


ALPHA_MODES = ("drop", "white")  # data.alpha: what happens to the transparency of a frame


def check_alpha(alpha: str) -> str:
    """``alpha`` if it is a known ``data.alpha`` mode, else ConfigError naming the choices."""
    if alpha not in ALPHA_MODES:
        raise ConfigError(f"data.alpha: unknown mode {alpha!r} (known: {', '.join(ALPHA_MODES)})")
    return alpha


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def _to_rgb(img: Image.Image, alpha: str = "drop") -> Image.Image:
    """Any Pillow mode -> RGB.

    Transparent images (RGBA, LA, PA, and P/L/RGB with a transparency key): ``alpha="drop"`` (the
    reference, which calls ``.convert('RGB')``) discards the transparency and keeps each pixel's stored
    colour, exactly as Pillow's conversion does; ``alpha="white"`` composites them over white.
    16/32-bit greyscale (I;16*, I) is scaled from 0..65535 to 0..255 (Pillow's own conversion would
    clip); float images (F) are taken as 0..1 when their maximum is <= 1, else clipped to 0..255;
    CMYK, YCbCr, L, 1, P use Pillow's conversion. EXIF orientation is not applied (annotations use
    stored pixels).
    """
    check_alpha(alpha)
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(img, dtype=np.float64)
        a = np.clip(np.round(a / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(a, mode="L").convert("RGB")
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        finite = a[np.isfinite(a)]
        if finite.size and finite.max() <= 1.0:
            a = a * 255.0
        a = np.clip(np.nan_to_num(np.round(a)), 0, 255).astype(np.uint8)
        return Image.fromarray(a, mode="L").convert("RGB")
    if _has_alpha(img) and alpha == "white":
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    with warnings.catch_warnings():  # Pillow suggests RGBA for palette transparency: dropping it is the point
        warnings.simplefilter("ignore", UserWarning)
        return img.convert("RGB")


def open_image(path: str | os.PathLike, alpha: str = "drop") -> Image.Image:
    """Open and fully decode an image as RGB (first frame of animations). MediaError on failure.

    ``alpha`` (``data.alpha``): "drop" (default, the reference) or "white" (composite over white)."""
    check_alpha(alpha)
    p = Path(path)
    if not p.exists():
        raise MediaError(f"{p}: image not found")
    if not p.is_file():
        raise MediaError(f"{p}: not a regular file")
    if p.stat().st_size == 0:
        raise MediaError(f"{p}: image file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that: refuse before decoding (bounded memory)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as img:
                img.load()  # decode now: truncated files fail here, not later
                return _to_rgb(img, alpha).copy()
    except UnidentifiedImageError as e:
        raise MediaError(f"{p}: not a recognised image format") from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise MediaError(f"{p}: image is too large to decode safely ({e})") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise MediaError(f"{p}: image is corrupt or truncated ({e})") from e


def to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> (3, H, W) float32 in [0, 1] (uint8 / 255)."""
    a = np.asarray(img.convert("RGB"), dtype=np.uint8)  # (H, W, 3)
    return torch.from_numpy(a.copy()).permute(2, 0, 1).to(torch.float32).div(255.0)  # (3, H, W)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation of (..., 3, H, W): uint8 (0..255, e.g. a batched fast path) or float in [0, 1].

    Runs on x's device; returns float32. uint8 input is first divided by 255.
    """
    if x.dtype == torch.uint8:
        x = x.to(torch.float32).div(255.0)
    else:
        x = x.to(torch.float32)
    mean = _MEAN.to(x.device).view(3, 1, 1)
    std = _STD.to(x.device).view(3, 1, 1)
    return (x - mean) / std


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of ``normalize`` for float input: (..., 3, H, W) back to [0, 1] (clamped), for display."""
    mean = _MEAN.to(x.device).view(3, 1, 1)
    std = _STD.to(x.device).view(3, 1, 1)
    return (x * std + mean).clamp(0.0, 1.0)


def test_transform(img: Image.Image, size: int = 224) -> torch.Tensor:
    """Bicubic resize to exactly (size, size) with Pillow, /255, ImageNet normalisation -> (3, size, size)."""
    return normalize(to_tensor(img.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)))


def resize_shorter(img: Image.Image, shorter: int) -> Image.Image:
    """Bicubic resize so the shorter side is ``shorter``; the longer is int(shorter * long / short)."""
    w, h = img.size
    if w <= h:
        new = (shorter, int(shorter * h / w))
    else:
        new = (int(shorter * w / h), shorter)
    if new == (w, h):
        return img.copy()
    return img.resize(new, Image.Resampling.BICUBIC)


def train_transform(img: Image.Image, size: int = 224, rng: random.Random | None = None) -> torch.Tensor:
    """Resize shorter side to int(size * 1.1) bicubic, random size x size crop, hflip with p = 0.5.

    Draws from ``rng`` in this order: crop top, crop left, flip (rng.random() < 0.5). None uses the
    ``random`` module. Returns (3, size, size) normalised.
    """
    r = rng if rng is not None else random
    img = resize_shorter(img.convert("RGB"), int(size * 1.1))
    w, h = img.size
    top = r.randint(0, h - size)
    left = r.randint(0, w - size)
    img = img.crop((left, top, left + size, top + size))
    if r.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return normalize(to_tensor(img))


def load_image(path: str | os.PathLike, size: int = 224, alpha: str = "drop") -> torch.Tensor:
    """Test-time model input of an image file: (3, size, size) float32."""
    return test_transform(open_image(path, alpha), size)
