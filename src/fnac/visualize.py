"""Pictures from arrays: heat-map overlays, PNG stills and training curves.

Knows arrays only (CONTRIBUTING.md: visualize knows nothing about models): a frame is a uint8 (H, W, 3)
array, a map a float (h, w) array in [0, 1], boxes and peaks are normalised coordinates in [0, 1].
Matplotlib is used through its object API (``Figure`` + Agg canvas), never pyplot, so nothing global
is touched.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fnac.errors import ConfigError, MediaError
from fnac.fileio import atomic_path

Box = Sequence[float]  # [x1, y1, x2, y2], normalised to [0, 1]

# The losses of docs/method.md §2 and the validation metrics of docs/evaluation.md §4.
LOSS_KEYS = ("loss", "contrastive", "fns1", "tns", "fns2")
DEFAULT_CURVE_KEYS = (*LOSS_KEYS, "lr", "val_ciou50", "val_auc")


_LUTS: dict[str, np.ndarray] = {}


def _lut(name: str) -> np.ndarray:
    """(N, 3) uint8 colour table of a matplotlib colormap (N = its resolution, 256 for jet)."""
    if name not in _LUTS:
        from matplotlib import colormaps  # lazy: matplotlib import costs ~0.3 s

        cmap = colormaps[name]
        rgba = cmap(np.arange(cmap.N))  # (N, 4) floats
        _LUTS[name] = np.round(rgba[:, :3] * 255.0).astype(np.uint8)
    return _LUTS[name]


def colormap(values: np.ndarray, name: str = "jet") -> np.ndarray:
    """(...,) floats in [0, 1] -> (..., 3) uint8 RGB through a matplotlib colormap (jet by default,
    the colour scale of the reference's heat maps). Same lookup as matplotlib (index = int(v * N),
    N - 1 at v = 1), done with a table so that a 720p frame takes milliseconds. NaN counts as 0."""
    lut = _lut(name)
    n = lut.shape[0]
    x = np.asarray(values, dtype=np.float64) * n  # float64: bin edges fall where matplotlib's do
    np.nan_to_num(x, copy=False, nan=0.0, posinf=n - 1, neginf=0.0)
    np.clip(x, 0, n - 1, out=x)  # v < 0 -> first colour, v >= 1 -> last
    return lut.take(x.astype(np.intp), axis=0)


def resize_map(map01: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w) float map -> (height, width) float32, bilinear (Pillow, pixel-centre aligned)."""
    m = np.asarray(map01, dtype=np.float32)
    if m.ndim != 2 or m.size == 0:
        raise MediaError(f"map must be a non-empty (h, w) array, got shape {m.shape}")
    if m.shape == (height, width):
        return m
    img = Image.fromarray(np.ascontiguousarray(m), mode="F")
    return np.asarray(img.resize((width, height), Image.BILINEAR), dtype=np.float32)


def _line_width(height: int, width: int) -> int:
    return max(1, round(min(height, width) / 112))


def heat_overlay(
    frame: np.ndarray,
    map01: np.ndarray,
    alpha: float = 0.5,
    boxes: Iterable[Box] | None = None,
    peak: Sequence[float] | None = None,
    cmap: str = "jet",
    box_color: tuple[int, int, int] = (255, 255, 255),
    peak_color: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Blend a heat map over a frame: out = (1 - alpha) * frame + alpha * jet(map).

    frame: uint8 (H, W, 3); map01: (h, w) floats in [0, 1] (any size: resized bilinearly to H x W;
    values outside [0, 1] are clipped); boxes: normalised [x1, y1, x2, y2] drawn as rectangle
    outlines; peak: normalised (x, y) drawn as a cross. Returns a new uint8 (H, W, 3) array.
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise MediaError(f"frame must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1], got {alpha}")
    h, w = frame.shape[:2]
    heat = colormap(resize_map(map01, h, w), cmap).astype(np.float32)  # (H, W, 3)
    out = (1.0 - alpha) * frame.astype(np.float32) + alpha * heat
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    if boxes is None and peak is None:
        return out
    img = Image.fromarray(out)
    draw = ImageDraw.Draw(img)
    lw = _line_width(h, w)
    for box in boxes or ():
        x1, y1, x2, y2 = (float(v) for v in box)
        x1, x2 = sorted((x1, x2))
        y1, y2 = sorted((y1, y2))
        # normalised -> pixel: the box covers columns [x1*W, x2*W), so its last column is x2*W - 1
        px1 = int(np.clip(math.floor(x1 * w), 0, w - 1))
        py1 = int(np.clip(math.floor(y1 * h), 0, h - 1))
        px2 = int(np.clip(math.ceil(x2 * w) - 1, px1, w - 1))
        py2 = int(np.clip(math.ceil(y2 * h) - 1, py1, h - 1))
        draw.rectangle((px1, py1, px2, py2), outline=box_color, width=lw)
    if peak is not None:
        px = int(np.clip(round(float(peak[0]) * w - 0.5), 0, w - 1))
        py = int(np.clip(round(float(peak[1]) * h - 0.5), 0, h - 1))
        r = max(3, round(min(h, w) / 40))
        draw.line((px - r, py, px + r, py), fill=peak_color, width=lw)
        draw.line((px, py - r, px, py + r), fill=peak_color, width=lw)
    return np.asarray(img, dtype=np.uint8).copy()


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write a uint8 (H, W, 3) or (H, W) array as PNG (folders created; atomically, `fnac.fileio`).
    Returns the path."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise MediaError(f"{path}: image must be uint8 (H, W), (H, W, 3) or (H, W, 4), got {arr.dtype} {arr.shape}")
    p = Path(path)
    try:
        with atomic_path(p) as tmp:  # a reader never sees half a PNG
            Image.fromarray(arr).save(tmp, format="PNG")
    except OSError as e:
        raise MediaError(f"{p}: cannot write PNG ({e})") from None
    return p


# ----------------------------------------------------------------------------------------------
def _series(records: list[dict], kind: str, key: str, xkey: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in records:
        if r.get("kind") != kind or key not in r or r[key] is None:
            continue
        x = r.get(xkey)
        y = r[key]
        if x is None or not isinstance(y, (int, float)) or isinstance(y, bool):
            continue
        if not math.isfinite(float(y)):
            continue
        xs.append(float(x))
        ys.append(float(y))
    return xs, ys


def plot_curves(
    records: list[dict],
    out_png: str | Path,
    keys: Sequence[str] = DEFAULT_CURVE_KEYS,
    title: str | None = None,
) -> Path:
    """Training curves from JSONL log records, one PNG.

    records: dicts with "kind" = "step" (x axis "step") or "epoch" (x axis "epoch"), e.g.
    {"kind": "step", "epoch": 0, "step": 10, "loss": .., "contrastive": .., "fns1": .., "tns": ..,
    "fns2": .., "lr": ..} and {"kind": "epoch", "epoch": 0, "val_ciou50": .., "val_auc": ..}.
    Panels: loss terms per step (epoch-level values of the same keys drawn as markers at the epoch's
    last step), learning rate per step, validation metrics (keys "val_*", in percent) per epoch, and
    one panel for any other requested key. Keys with no finite value are skipped. Returns the path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    keys = list(keys)
    loss_keys = [k for k in keys if k in LOSS_KEYS]
    val_keys = [k for k in keys if k.startswith("val_")]
    other = [k for k in keys if k not in loss_keys and k not in val_keys]

    def has(key: str) -> bool:
        return any(_series(records, kind, key, x)[0] for kind, x in (("step", "step"), ("epoch", "epoch")))

    panels: list[tuple[str, list[str]]] = []
    if any(has(k) for k in loss_keys):
        panels.append(("loss", [k for k in loss_keys if has(k)]))
    for k in other:
        if has(k):
            panels.append((k, [k]))
    if any(has(k) for k in val_keys):
        panels.append(("validation", [k for k in val_keys if has(k)]))

    n = max(1, len(panels))
    fig = Figure(figsize=(5.0 * n, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    if not panels:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no records to plot", ha="center", va="center")
        ax.set_axis_off()
    for i, (name, ks) in enumerate(panels):
        ax = fig.add_subplot(1, n, i + 1)
        if name == "validation":
            for k in ks:
                xs, ys = _series(records, "epoch", k, "epoch")
                ax.plot(xs, [100.0 * y for y in ys], marker="o", label=k.removeprefix("val_"))
            ax.set_xlabel("epoch")
            ax.set_ylabel("percent")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        else:
            for k in ks:
                xs, ys = _series(records, "step", k, "step")
                (line,) = ax.plot(xs, ys, label=k, linewidth=1.0)
                ex, ey = _series(records, "epoch", k, "step")
                if ex:
                    ax.plot(
                        ex,
                        ey,
                        linestyle="none",
                        marker="o",
                        color=line.get_color(),
                        label=f"{k} (epoch)" if not xs else None,
                    )
                elif not xs:  # epoch-only series without a step: plot against the epoch
                    ex, ey = _series(records, "epoch", k, "epoch")
                    ax.plot(ex, ey, marker="o", color=line.get_color())
                    ax.set_xlabel("epoch")
            if not ax.get_xlabel():
                ax.set_xlabel("step")
            if name == "lr":
                ax.set_ylabel("learning rate")
            # the weighted loss terms span decades (FNS terms x100): a log axis shows all of them
            if name == "loss":
                vals = [y for k in ks for y in _series(records, "step", k, "step")[1]]
                if vals and min(vals) > 0 and max(vals) / min(vals) > 50:
                    ax.set_yscale("log")
        ax.set_title(name)
        ax.grid(True, alpha=0.3)
        if len(ks) > 1 or name in ("loss", "validation"):
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    p = Path(out_png)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, format="png")
    return p
