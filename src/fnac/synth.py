"""The built-in synthetic audio-visual benchmark (docs/synthetic.md).

K classes bind sight to sound: each class is a shape + colour family + texture and a sound signature
(pitch band, harmonic structure, noise band, AM/FM, rhythm). Each image holds one sounding object and
0..max_distractors silent objects of other classes, of the same size distribution, on a cluttered
background; the audio is the sounding object's sound + background noise (+ optionally the sound of an
off-screen class). Ground truth (box and pixel mask) is exact because it is taken from the rendered mask.

Three options make false negatives (same-class negatives in a contrastive batch) more frequent and
costly: class_skew (how often classes collide; expected_false_negatives counts it), variation (each
clip's look and sound share a code, so same-class clips can be told apart) and shortcut (a per-clip
signature in the background and the audio, never on the object). All at 0: the standard benchmark.

Written in the VGG-SS layout (CONTRIBUTING.md, "synthetic benchmark"): frames/<id>.jpg, audio/<id>.wav,
masks/<id>.png, annotations.json, train/val/test.txt, classes.json, scenes.json, clips/, synth.json.

Every sample is drawn from its own generator seeded by (seed, split, index), so the output is
byte-identical for a seed whatever the number of workers, and any sample can be regenerated alone.
"""

from __future__ import annotations

import colorsys
import dataclasses
import json
import math
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from fnac import media
from fnac.errors import ConfigError, DataError
from fnac.fileio import atomic_write_text

SYNTH_VERSION = 1
SPLITS = ("train", "val", "test")
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2, "clip": 3}
_CLIP_PREFIX = "clip_"
_ID_RE = re.compile(r"^(train|val|test)_\d{6}$")
_CLIP_RE = re.compile(r"^clip_\d{3}\.(mp4|json)$")


@dataclass
class SynthConfig:
    """Generator knobs. Difficulty grows with n_classes, distractors, noise_level and offscreen_prob."""

    seed: int = 0
    n_train: int = 2000
    n_val: int = 250
    n_test: int = 500
    n_classes: int = 10  # K, 2..64 (pitch bands narrow as K grows; other cues still differ)
    image_size: int = 128  # square frames; the models resize anyway
    sample_rate: int = 16000
    duration: float = 3.0  # seconds of audio per sample (the model's window)
    min_distractors: int = 1  # silent objects of other classes per image
    max_distractors: int = 2
    # object diameter as a fraction of the image side (all objects). Large on purpose: under the field's
    # default protocol (median threshold: half the image predicted) a perfect map scores cIoU =
    # box area / 0.5, so boxes must cover >= 25% of the image for cIoU@0.5 to be reachable at all
    # (real VGG-SS / Flickr boxes are large too). Objects shrink when they cannot all be placed.
    min_object_size: float = 0.60
    max_object_size: float = 0.80
    max_overlap: float = 0.4  # bounding circles may overlap by this fraction of their summed radii;
    # boxes and masks are of the visible pixels (objects drawn later hide earlier ones)
    clutter: int = 14  # background clutter shapes per image
    hue_jitter: float = 6.0  # degrees of colour jitter around the class's hue
    noise_level: float = 0.04  # RMS of the pink background noise (full scale = 1)
    offscreen_prob: float = 0.2  # chance of an added sound of a class that is not in the picture
    offscreen_gain: float = 0.35  # its amplitude relative to the sounding object's, at most
    pitch_min: float = 140.0  # Hz: the K classes split [pitch_min, pitch_max] into log-spaced bands
    pitch_max: float = 2800.0
    n_clips: int = 4  # videos in which objects take turns sounding
    clip_seconds: float = 6.0
    clip_fps: int = 10
    clip_size: int = 160
    clip_min_segment: float = 1.0  # seconds each sounding turn lasts, at least
    clip_max_segment: float = 2.0
    jpeg_quality: int = 90
    # False negatives (docs/synthetic.md, "False negatives"). All three at 0: the standard benchmark.
    variation: float = 0.0  # 0..1: within-class variation, one per-clip code shared by look and sound
    shortcut: float = 0.0  # 0..1: a per-clip signature in the background and the audio (not the object)
    class_skew: float = 0.0  # >= 0: sounding-class frequency p_k ~ (k + 1) ** -class_skew; 0 = uniform

    def validate(self) -> None:
        """Raise ConfigError naming the first invalid field."""

        def bad(name: str, why: str) -> None:
            raise ConfigError(f"synth config '{name}' = {getattr(self, name)!r}: {why}")

        if self.seed < 0:
            bad("seed", "must be >= 0")
        for n in ("n_train", "n_val", "n_test", "n_clips", "clutter", "min_distractors"):
            if getattr(self, n) < 0:
                bad(n, "must be >= 0")
        if self.n_train + self.n_val + self.n_test + self.n_clips == 0:
            bad("n_train", "nothing to generate (all counts are 0)")
        if not 2 <= self.n_classes <= 64:
            bad("n_classes", "must be between 2 and 64")
        if not 32 <= self.image_size <= 2048:
            bad("image_size", "must be between 32 and 2048")
        if not 4000 <= self.sample_rate <= 96000:
            bad("sample_rate", "must be between 4000 and 96000")
        if not 0.25 <= self.duration <= 60:
            bad("duration", "must be between 0.25 and 60 s")
        if self.max_distractors < self.min_distractors:
            bad("max_distractors", "must be >= min_distractors")
        if self.max_distractors > min(self.n_classes - 1, 8):
            bad("max_distractors", f"must be <= min(n_classes - 1, 8) = {min(self.n_classes - 1, 8)}")
        if not 0.05 <= self.min_object_size <= self.max_object_size <= 0.95:
            bad("min_object_size", "need 0.05 <= min_object_size <= max_object_size <= 0.95")
        if not 0 <= self.hue_jitter <= 15:
            bad("hue_jitter", "must be between 0 and 15 degrees")
        if not 0 <= self.noise_level <= 1:
            bad("noise_level", "must be between 0 and 1")
        if not 0 <= self.offscreen_prob <= 1:
            bad("offscreen_prob", "must be between 0 and 1")
        if not 0 <= self.offscreen_gain <= 1:
            bad("offscreen_gain", "must be between 0 and 1")
        if not 20 <= self.pitch_min < self.pitch_max <= 0.4 * self.sample_rate:
            bad("pitch_max", "need 20 <= pitch_min < pitch_max <= 0.4 * sample_rate")
        if not 1 <= self.clip_fps <= 60:
            bad("clip_fps", "must be between 1 and 60")
        if self.clip_size < 32 or self.clip_size % 2:
            bad("clip_size", "must be even and >= 32 (H.264)")
        if not 0.2 <= self.clip_min_segment <= self.clip_max_segment:
            bad("clip_min_segment", "need 0.2 <= clip_min_segment <= clip_max_segment")
        if self.n_clips and self.clip_seconds < self.clip_min_segment:
            bad("clip_seconds", "must be >= clip_min_segment")
        if not 1 <= self.jpeg_quality <= 100:
            bad("jpeg_quality", "must be between 1 and 100")
        for n in ("variation", "shortcut", "class_skew"):
            x = getattr(self, n)
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                bad(n, "must be a number")
        if not 0 <= self.variation <= 1:
            bad("variation", "must be between 0 (none) and 1 (strong)")
        if not 0 <= self.shortcut <= 1:
            bad("shortcut", "must be between 0 (off) and 1 (strong)")
        if not 0 <= self.class_skew <= 4:
            bad("class_skew", "must be between 0 (uniform classes) and 4")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "SynthConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"synth config: unknown keys {unknown} (known: {', '.join(sorted(names))})")
        return cls(**values)


# ------------------------------------------------------------------------------------------------
# Classes: a fixed function of (k, K, pitch range); the seed only varies the instances.
SHAPES = (
    "disc",
    "square",
    "triangle",
    "diamond",
    "star",
    "cross",
    "hexagon",
    "ring",
    "crescent",
    "ellipse",
    "arrow",
    "heart",
)
TEXTURES = ("plain", "stripes", "dots", "checker")
_HUE_NAMES = (
    "red",
    "orange",
    "yellow",
    "chartreuse",
    "green",
    "spring",
    "cyan",
    "azure",
    "blue",
    "violet",
    "magenta",
    "rose",
)  # every 30 degrees from 0
TIMBRES: dict[str, tuple[tuple[int, float], ...]] = {  # (harmonic number, amplitude); fundamental loudest
    "pure": ((1, 1.0),),
    "bright": ((1, 1.0), (2, 0.55), (3, 0.4), (4, 0.3), (5, 0.22), (6, 0.16)),
    "hollow": ((1, 1.0), (3, 0.45), (5, 0.28), (7, 0.18)),
    "mellow": ((1, 1.0), (2, 0.35), (3, 0.12)),
}
MODULATIONS = ("steady", "vibrato", "tremolo", "glide", "warble")
_MOD_EXTENT = {"steady": 0.0, "vibrato": 0.02, "tremolo": 0.0, "glide": 0.06, "warble": 0.012}  # log-pitch
RHYTHMS = ("continuous", "pulses", "rapid", "double")
_NOISE_GAINS = (0.12, 0.25, 0.0)  # band-noise RMS relative to the tone's


@dataclass(frozen=True)
class SynthClass:
    """A class's visual identity (shape, hue family, texture) and acoustic identity."""

    index: int
    name: str
    shape: str
    texture: str
    hue: float  # centre of the colour family, degrees
    hue_range: tuple[float, float]  # hue +- jitter, degrees (lo may be negative: wraps)
    pitch_band: tuple[float, float]  # Hz: the fundamental (incl. modulation) stays inside
    timbre: str
    harmonics: tuple[tuple[int, float], ...]
    modulation: str
    rhythm: str
    noise_band: tuple[float, float]  # Hz
    noise_gain: float

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["harmonics"] = [list(h) for h in self.harmonics]
        d["hue_range"], d["pitch_band"], d["noise_band"] = (
            list(self.hue_range),
            list(self.pitch_band),
            list(self.noise_band),
        )
        return d


def make_classes(cfg: SynthConfig) -> list[SynthClass]:
    """The K classes of a config. Hue families are min(K, 12) evenly spaced hues; classes that share a
    hue (K > 12) differ in shape. Pitch bands split [pitch_min, pitch_max] in K log-equal parts."""
    k_total = cfg.n_classes
    n_hues = min(k_total, 12)
    edges = np.geomspace(cfg.pitch_min, cfg.pitch_max, k_total + 1)
    nyq = cfg.sample_rate / 2
    out: list[SynthClass] = []
    names: set[str] = set()
    for k in range(k_total):
        hue = (k % n_hues) * 360.0 / n_hues
        shape = SHAPES[(k + k // n_hues) % len(SHAPES)]
        texture = TEXTURES[(k + k // n_hues) % len(TEXTURES)]
        colour = _HUE_NAMES[int(round(hue / 30.0)) % 12]
        name = f"{colour} {shape}" + ("" if texture == "plain" else f" {texture}")
        if name in names:
            name = f"{name} {k}"
        names.add(name)
        timbre = tuple(TIMBRES)[k % len(TIMBRES)]
        centre = 900.0 * 6.0 ** ((k * 0.618034) % 1.0)  # 0.9..5.4 kHz, golden-ratio spread
        nlo, nhi = min(centre / 2**0.25, 0.9 * nyq), min(centre * 2**0.25, 0.96 * nyq)
        out.append(
            SynthClass(
                index=k,
                name=name,
                shape=shape,
                texture=texture,
                hue=hue,
                hue_range=(hue - cfg.hue_jitter, hue + cfg.hue_jitter),
                pitch_band=(float(edges[k]), float(edges[k + 1])),
                timbre=timbre,
                harmonics=TIMBRES[timbre],
                modulation=MODULATIONS[k % len(MODULATIONS)],
                rhythm=RHYTHMS[(k // 2) % len(RHYTHMS)],
                noise_band=(float(nlo), float(nhi)),
                noise_gain=_NOISE_GAINS[k % len(_NOISE_GAINS)],
            )
        )
    return out


def class_probabilities(cfg: SynthConfig) -> np.ndarray:
    """(K,) frequency of each class as the sounding object: p_k proportional to (k + 1) ** -class_skew
    (uniform at class_skew = 0; class 0 is the most frequent otherwise)."""
    w = (np.arange(cfg.n_classes, dtype=np.float64) + 1.0) ** -float(cfg.class_skew)
    return w / w.sum()


def expected_false_negatives(cfg: SynthConfig, batch_size: int) -> float:
    """Expected number of same-class negatives per sample in a batch of `batch_size` samples drawn at
    random: (B - 1) * sum_k p_k ** 2 (each of the B - 1 others shares the sample's class with
    probability sum_k p_k ** 2)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch size {batch_size!r}: must be an integer >= 1")
    p = class_probabilities(cfg)
    return float((batch_size - 1) * np.sum(p * p))


def _draw_class(rng: np.random.Generator, cfg: SynthConfig) -> int:
    if cfg.class_skew == 0:
        return int(rng.integers(cfg.n_classes))  # the standard benchmark's draw, unchanged
    cum = np.cumsum(class_probabilities(cfg))
    return min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), cfg.n_classes - 1)


# ------------------------------------------------------------------------------------------------
# Shapes: polygons in unit coordinates (inside the circle of radius 1.05); fill 255 adds, 0 cuts a hole.
def _ngon(n: int, r: float = 1.0, rot: float = -math.pi / 2, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    a = rot + 2 * math.pi * np.arange(n) / n
    return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], 1)


def _build_shapes() -> dict[str, list[tuple[np.ndarray, int]]]:
    star = np.empty((10, 2))
    star[0::2], star[1::2] = _ngon(5, 1.0), _ngon(5, 0.45, rot=-math.pi / 2 + math.pi / 5)
    w = 0.3
    cross = np.array(
        [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w)],
        float,
    )
    arrow = np.array([(-1, -0.25), (0.15, -0.25), (0.15, -0.65), (1, 0), (0.15, 0.65), (0.15, 0.25), (-1, 0.25)], float)
    t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    heart = (
        np.stack([16 * np.sin(t) ** 3, -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))], 1)
        / 17.0
    )
    ellipse = _ngon(40) * np.array([1.0, 0.55])
    return {
        "disc": [(_ngon(40), 255)],
        "square": [(_ngon(4, 1.0, rot=math.pi / 4) * 1.0, 255)],
        "triangle": [(_ngon(3, 1.0) + np.array([0, 0.08]), 255)],
        "diamond": [(np.array([(0, -1), (0.6, 0), (0, 1), (-0.6, 0)], float), 255)],
        "star": [(star, 255)],
        "cross": [(cross, 255)],
        "hexagon": [(_ngon(6, 1.0, rot=0.0), 255)],
        "ring": [(_ngon(40), 255), (_ngon(32, 0.55), 0)],
        "crescent": [(_ngon(40), 255), (_ngon(40, 0.85, cx=0.45, cy=-0.15), 0)],
        "ellipse": [(ellipse, 255)],
        "arrow": [(arrow, 255)],
        "heart": [(heart, 255)],
    }


_SHAPE_POLYS = _build_shapes()
_BOUND = 1.05  # every shape lies inside this radius (unit coordinates)


def _hsv(h_deg: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb((h_deg % 360.0) / 360.0, s, v), np.float32)


def _draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: str,
    cx: float,
    cy: float,
    r: float,
    theta: float,
    fill: Any = 255,
    hole: Any = 0,
    aspect: tuple[float, float] = (1.0, 1.0),
) -> None:
    """aspect scales the shape's own x and y axes (both <= 1 keeps it inside the bounding circle)."""
    c, s = math.cos(theta), math.sin(theta)
    for pts, f in _SHAPE_POLYS[shape]:
        if aspect != (1.0, 1.0):
            pts = pts * np.asarray(aspect)
        xs = cx + r * (pts[:, 0] * c - pts[:, 1] * s)
        ys = cy + r * (pts[:, 0] * s + pts[:, 1] * c)
        draw.polygon(list(zip(xs.tolist(), ys.tolist())), fill=fill if f else hole)


def _texture(kind: str, u: np.ndarray, v: np.ndarray, phase: float) -> np.ndarray:
    """Brightness multiplier (same hue) in the object's own coordinates u, v (radius units)."""
    if kind == "plain":
        return np.ones_like(u)
    if kind == "stripes":
        on = np.floor(u * 2.6 + phase) % 2 == 0
    elif kind == "dots":
        pu, pv = (u * 1.7 + phase) % 1.0 - 0.5, (v * 1.7 + phase) % 1.0 - 0.5
        on = pu * pu + pv * pv < 0.09
    elif kind == "checker":
        on = (np.floor(u * 2.0 + phase) + np.floor(v * 2.0 + phase)) % 2 == 0
    else:  # pragma: no cover - table is fixed
        raise ValueError(kind)
    return np.where(on, np.float32(0.55), np.float32(1.0))


@dataclass
class _Obj:
    cls: SynthClass
    cx: float
    cy: float
    r: float  # radius in pixels (diameter = 2r)
    theta: float
    rgb: np.ndarray  # (3,) base colour in [0, 1]
    tex_phase: float
    aspect: tuple[float, float] = (1.0, 1.0)  # squeeze of the shape's own axes (within-class variation)
    tex_scale: float = 1.0  # texture frequency multiplier (within-class variation)


def _sample_obj(rng: np.random.Generator, cls: SynthClass, cfg: SynthConfig, size: int) -> _Obj:
    diam = rng.uniform(cfg.min_object_size, cfg.max_object_size) * size
    h = cls.hue + rng.uniform(-cfg.hue_jitter, cfg.hue_jitter)
    rgb = _hsv(h, rng.uniform(0.72, 1.0), rng.uniform(0.75, 1.0))
    return _Obj(cls, 0.0, 0.0, diam / 2, rng.uniform(0, 2 * math.pi), rgb, rng.uniform(0, 2))


def _place(
    rng: np.random.Generator, objs: list[_Obj], size: int, margin: float = 2.0, inset: float = 0.0, overlap: float = 0.0
) -> None:
    """Placement with bounding circles at least `margin` px apart (less `overlap` times the sum of the
    two radii, so large objects may partly hide one another) and `inset` + 1 px inside the frame, so
    every box is whole. Shrinks all objects on failure."""
    for _ in range(12):
        placed: list[_Obj] = []
        for o in objs:
            rad = o.r * _BOUND
            lo, hi = rad + 1 + inset, size - rad - 1 - inset
            for _ in range(60):
                cx, cy = rng.uniform(lo, hi), rng.uniform(lo, hi)
                if all(
                    math.hypot(cx - p.cx, cy - p.cy) >= (1 - overlap) * (rad + p.r * _BOUND) + margin for p in placed
                ):
                    o.cx, o.cy = cx, cy
                    placed.append(o)
                    break
            else:
                break
        if len(placed) == len(objs):
            return
        for o in objs:
            o.r *= 0.9
    raise RuntimeError("could not place objects")  # pragma: no cover - 12 shrinks always fit


def _render_obj(canvas: np.ndarray, o: _Obj) -> np.ndarray:
    """Paint o onto canvas (H, W, 3 float32) in place; return its boolean pixel mask (H, W)."""
    hgt, wid = canvas.shape[:2]
    mimg = Image.new("L", (wid, hgt), 0)
    _draw_shape(ImageDraw.Draw(mimg), o.cls.shape, o.cx, o.cy, o.r, o.theta, aspect=o.aspect)
    mask = np.asarray(mimg) > 0
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xx + 0.5 - o.cx, yy + 0.5 - o.cy
    c, s = math.cos(o.theta), math.sin(o.theta)
    u, v = (dx * c + dy * s) / o.r, (-dx * s + dy * c) / o.r  # object's own frame (inverse rotation)
    if o.tex_scale != 1.0:
        u, v = u * np.float32(o.tex_scale), v * np.float32(o.tex_scale)
    tex = _texture(o.cls.texture, u, v, o.tex_phase)  # (h, w)
    m = mask[y0:y1, x0:x1]
    region = canvas[y0:y1, x0:x1]
    region[m] = (tex[..., None] * o.rgb)[m]
    return mask


def _background(rng: np.random.Generator, size: int, n_clutter: int) -> np.ndarray:
    """Cluttered, varied background (H, W, 3) float32 in [0, 1]: low-saturation gradient, blotches,
    clutter shapes (some with the classes' outlines, in grey), a few small saturated specks."""
    c0 = _hsv(rng.uniform(0, 360), rng.uniform(0, 0.3), rng.uniform(0.3, 0.85))
    c1 = _hsv(rng.uniform(0, 360), rng.uniform(0, 0.3), rng.uniform(0.3, 0.85))
    a = rng.uniform(0, 2 * math.pi)
    g = (np.arange(size, dtype=np.float32) + 0.5) / size
    t = np.clip(0.5 + (g[None, :] - 0.5) * math.cos(a) + (g[:, None] - 0.5) * math.sin(a), 0, 1)  # (H, W)
    img = c0 + (c1 - c0) * t[..., None]
    blot = Image.fromarray((rng.random((5, 5, 3)) * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR)
    img = img + (np.asarray(blot, np.float32) / 255.0 - 0.5) * 0.22
    pil = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
    d = ImageDraw.Draw(pil)
    for _ in range(n_clutter):
        col = tuple(int(x * 255) for x in _hsv(rng.uniform(0, 360), rng.uniform(0, 0.3), rng.uniform(0.2, 0.9)))
        kind = rng.integers(5)
        x, y = rng.uniform(-0.1, 1.1, 2) * size
        w, h = rng.uniform(0.05, 0.4, 2) * size
        if kind == 0:
            d.rectangle([x, y, x + w, y + h], fill=col)
        elif kind == 1:
            d.ellipse([x, y, x + w, y + h], fill=col)
        elif kind == 2:
            d.line(
                [x, y, x + rng.uniform(-1, 1) * size, y + rng.uniform(-1, 1) * size],
                fill=col,
                width=int(rng.integers(1, max(2, size // 24))),
            )
        elif kind == 3:
            pts = rng.uniform(-0.2, 1.2, (int(rng.integers(3, 7)), 2)) * size
            d.polygon([tuple(p) for p in pts.tolist()], fill=col)
        else:  # a grey look-alike of some class's outline: shape alone does not find the source
            _draw_shape(d, SHAPES[int(rng.integers(len(SHAPES)))], x, y, w / 2, rng.uniform(0, 6.3), fill=col, hole=col)
    for _ in range(int(rng.integers(0, 4))):
        col = tuple(int(x * 255) for x in _hsv(rng.uniform(0, 360), rng.uniform(0.6, 1), rng.uniform(0.5, 1)))
        x, y = rng.uniform(0, 1, 2) * size
        r = rng.uniform(0.01, 0.03) * size
        d.ellipse([x - r, y - r, x + r, y + r], fill=col)
    out = np.asarray(pil, np.float32) / 255.0
    return out + np.float32(0.04) * (rng.random(out.shape, dtype=np.float32) - np.float32(0.5))


def _box(mask: np.ndarray) -> list[float]:
    """Normalised [x1, y1, x2, y2] of a mask, pixel-edge convention (x2 = last column + 1)."""
    hgt, wid = mask.shape
    ys, xs = np.nonzero(mask)
    return [
        round(float(xs.min()) / wid, 6),
        round(float(ys.min()) / hgt, 6),
        round(float(xs.max() + 1) / wid, 6),
        round(float(ys.max() + 1) / hgt, 6),
    ]


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# ------------------------------------------------------------------------------------------------
# Sound
@dataclass
class _Voice:
    cls: SynthClass
    f0: float
    ext: float  # log-pitch modulation extent actually used
    gain: float
    mod_rate: float
    mod_phase: float
    rhythm_rate: float
    rhythm_phase: float
    phase0: float  # starting phase of the fundamental, in cycles
    harmonics: tuple[tuple[int, float], ...] | None = None  # None: the class's (within-class variation)
    noise_gain: float | None = None  # None: the class's


def _sample_voice(rng: np.random.Generator, cls: SynthClass, gain: float) -> _Voice:
    lo, hi = cls.pitch_band
    width = math.log(hi / lo)
    ext = min(_MOD_EXTENT[cls.modulation], 0.2 * width)
    pad = 0.1 * width + ext  # f0 * exp(+-ext) stays inside the band with a margin
    f0 = lo * math.exp(rng.uniform(pad, width - pad))
    mod_rate = {"steady": 0.0, "vibrato": 5.5, "tremolo": 7.0, "glide": 2.0, "warble": 12.0}[cls.modulation]
    rhythm_rate = {"continuous": 0.0, "pulses": 2.5, "rapid": 6.0, "double": 1.4}[cls.rhythm]
    return _Voice(
        cls,
        f0,
        ext,
        gain,
        mod_rate * rng.uniform(0.85, 1.15),
        rng.uniform(0, 1),
        rhythm_rate * rng.uniform(0.85, 1.15),
        rng.uniform(0, 1),
        rng.uniform(0, 1),
    )


def _ramp(p: np.ndarray, start: float, stop: float, edge: float) -> np.ndarray:
    """Trapezoid gate over phase p: 1 on [start, stop] with linear edges of width `edge`."""
    return np.clip(np.minimum(p - start, stop - p) * (1.0 / edge) + 0.5, 0.0, 1.0)


def _spectral_noise(rng: np.random.Generator, n: int, sr: int, lo: float, hi: float, pink: bool = False) -> np.ndarray:
    """Gaussian noise with power only in [lo, hi] Hz (white, or 1/f when pink), unit RMS, float32.
    Drawn directly as spectrum bins with random phases: one inverse FFT, no forward one."""
    nf = n // 2 + 1
    b0 = max(1, int(math.ceil(lo * n / sr)))
    b1 = min(nf - 1, int(hi * n / sr))
    spec = np.zeros(nf, np.complex64)
    if b1 >= b0:  # random phases, flat (or 1/sqrt(f)) magnitudes: Gaussian by the central limit
        ang = rng.random(b1 - b0 + 1, dtype=np.float32) * np.float32(2 * math.pi)
        z = np.cos(ang) + 1j * np.sin(ang)
        if pink:
            z /= np.sqrt(np.arange(b0, b1 + 1, dtype=np.float32))
        spec[b0 : b1 + 1] = z
    x = np.fft.irfft(spec, n).astype(np.float32)
    return x / (np.sqrt(np.mean(x * x)) + 1e-12)


def _pink_noise(rng: np.random.Generator, n: int, sr: int, rms: float) -> np.ndarray:
    return rms * _spectral_noise(rng, n, sr, 20.0, sr / 2, pink=True)


def _render_voice(rng: np.random.Generator, v: _Voice, n: int, sr: int, fade: float = 0.02) -> np.ndarray:
    """n samples (float32) of one instance's sound: harmonic tone with the class's FM/AM and rhythm,
    plus its noise band."""
    t = np.arange(n, dtype=np.float32) * np.float32(1.0 / sr)  # float32: slow modulations only
    mod = v.cls.modulation
    if mod in ("vibrato", "warble"):
        inst = np.exp(v.ext * np.sin(np.float32(2 * math.pi) * (v.mod_rate * t + v.mod_phase)))
    elif mod == "glide":  # sawtooth sweeps from f0*e^-ext up to f0*e^ext
        ramp = v.mod_rate * t + v.mod_phase
        inst = np.exp(v.ext * (2.0 * (ramp - np.floor(ramp)) - 1.0))
    else:
        inst = np.ones(n, np.float32)
    cycles = np.cumsum(inst, dtype=np.float64) * (v.f0 / sr) + v.phase0  # float64: long sums
    phase = ((cycles - np.floor(cycles)) * (2 * math.pi)).astype(np.float32)
    # sin(h phi) by the Chebyshev recurrence s_{h+1} = 2 cos(phi) s_h - s_{h-1}: one sin, one cos
    harmonics = v.cls.harmonics if v.harmonics is None else v.harmonics
    amps = {h: a for h, a in harmonics if h * v.f0 * math.exp(v.ext) < 0.45 * sr}
    s_prev, s_cur = np.zeros(n, np.float32), np.sin(phase)
    c2 = 2.0 * np.cos(phase)
    tone = amps.get(1, 0.0) * s_cur
    for h in range(2, max(amps) + 1):
        s_prev, s_cur = s_cur, c2 * s_cur - s_prev
        if h in amps:
            tone += amps[h] * s_cur
    tone *= np.float32(1.0 / sum(amps.values()))
    if mod == "tremolo":
        tone *= 1.0 - 0.6 * (0.5 + 0.5 * np.sin(np.float32(2 * math.pi) * (v.mod_rate * t + v.mod_phase)))
    x = tone
    noise_gain = v.cls.noise_gain if v.noise_gain is None else v.noise_gain
    if noise_gain > 0:
        rms = float(np.sqrt(np.mean(tone * tone)))
        x = x + np.float32(noise_gain * rms) * _spectral_noise(rng, n, sr, *v.cls.noise_band)
    rhythm = v.cls.rhythm
    if rhythm != "continuous":
        p = v.rhythm_rate * t + v.rhythm_phase
        p -= np.floor(p)
        edge = 0.012 * v.rhythm_rate  # 12 ms edges
        if rhythm == "double":
            env = np.maximum(_ramp(p, 0.0, 0.18, edge), _ramp(p, 0.3, 0.48, edge))
        else:
            env = _ramp(p, 0.0, 0.55 if rhythm == "pulses" else 0.5, edge)
        x = x * env
    nf = max(1, min(int(fade * sr), n // 4))
    x[:nf] *= np.linspace(0, 1, nf, dtype=np.float32)
    x[n - nf :] *= np.linspace(1, 0, nf, dtype=np.float32)
    return np.float32(v.gain) * x


def _finish(x: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 0.98:
        x = x * (0.98 / peak)
    return x.astype(np.float32)


# ------------------------------------------------------------------------------------------------
# False negatives: within-class variation and an instance shortcut (docs/synthetic.md). Both are drawn
# from their own generators, so switching one on leaves every other draw of a sample unchanged (same
# classes, places, sizes, noise), and at 0 nothing extra is drawn at all.
_VARIATION_KEY, _SHORTCUT_KEY = 1, 2
_VAR_DIMS = 4  # code dims: 0 brightness <-> pitch, 1 texture scale <-> timbre tilt,
# 2 proportions <-> rhythm / modulation rate, 3 hue offset <-> noise-band level
_VAR_HUE = 8.0  # degrees of extra hue offset at variation 1 (on top of hue_jitter)
_VAR_TEX = 0.45  # log texture-scale range
_VAR_SQUEEZE = 0.3  # one axis shrinks by up to this fraction
_VAR_TILT = 0.9  # harmonic amplitude * h ** (tilt * c)
_VAR_RATE = 0.35  # log rate range
_VAR_NOISE = 0.7  # log noise-band-gain range
_SC_ALPHA = 0.6  # peak blend of the background stripes toward the code's colour at shortcut 1
_SC_RMS = 0.1  # RMS of the audio signature at shortcut 1 (the pink noise floor is 0.04)


def _aux_rng(seed: int, code: int, index: int, key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, code, index], spawn_key=(key,)))


def _vary_look(o: _Obj, c: np.ndarray, amount: float) -> None:
    """Give object o its clip-specific look from code c (_VAR_DIMS values in [-1, 1]): brightness,
    texture scale, proportions and a hue offset. The class's shape, hue family and texture stay."""
    h, sat, val = colorsys.rgb_to_hsv(*(float(x) for x in o.rgb))
    val = (1 - amount) * val + amount * (0.5 + 0.25 * (c[0] + 1))  # 0.5..1 at amount 1
    o.rgb = _hsv(h * 360.0 + _VAR_HUE * amount * c[3], sat, val)
    o.tex_scale = math.exp(_VAR_TEX * amount * c[1])
    squeeze = 1.0 - _VAR_SQUEEZE * amount * abs(c[2])
    o.aspect = (1.0, squeeze) if c[2] >= 0 else (squeeze, 1.0)


def _vary_voice(v: _Voice, c: np.ndarray, amount: float) -> None:
    """Give voice v the clip-specific sound of the same code: pitch position in the class's band (tied
    to brightness), harmonic tilt (texture scale), rhythm and modulation rate (proportions), level of
    the class's noise band (hue offset). The pitch stays inside the class's band."""
    lo, hi = v.cls.pitch_band
    width = math.log(hi / lo)
    pad = 0.1 * width + v.ext
    pos = (math.log(v.f0 / lo) - pad) / (width - 2 * pad)  # where the standard draw put it, 0..1
    pos = (1 - amount) * pos + amount * 0.5 * (c[0] + 1)
    v.f0 = lo * math.exp(pad + (width - 2 * pad) * pos)
    tilt = _VAR_TILT * amount * c[1]  # the fundamental stays the loudest partial
    v.harmonics = tuple((h, a if h == 1 else min(0.9, a * h**tilt)) for h, a in v.cls.harmonics)
    rate = math.exp(_VAR_RATE * amount * c[2])
    v.mod_rate *= rate
    v.rhythm_rate *= rate
    v.noise_gain = v.cls.noise_gain * math.exp(_VAR_NOISE * amount * c[3])


def _shortcut_code(srng: np.random.Generator, sr: int) -> dict:
    """One clip's signature: q sets the stripes' colour and the audio band's centre, r the stripes'
    orientation and spacing and the band's flutter rate. The phases are free (not part of the code)."""
    q, r, ph_img, ph_aud = (float(x) for x in srng.random(4))
    f_hi = min(6000.0, 0.4 * sr)
    f_lo = min(300.0, f_hi / 4)
    return {
        "q": q,
        "r": r,
        "hue": 300.0 * q,
        "band_hz": f_lo * (f_hi / f_lo) ** q,
        "angle": 0.9 * math.pi * r,
        "cycles": 3.0 + 4.0 * r,
        "flutter_hz": 0.5 + 3.5 * r,
        "ph_img": ph_img,
        "ph_aud": ph_aud,
    }


def _shortcut_background(canvas: np.ndarray, code: dict, amount: float) -> None:
    """Blend stripes of the code's colour, orientation and spacing into the background, in place.
    Objects are painted afterwards over their whole mask, so their pixels never carry it."""
    size = canvas.shape[0]
    g = (np.arange(size, dtype=np.float32) + 0.5) / size
    proj = g[None, :] * math.cos(code["angle"]) + g[:, None] * math.sin(code["angle"])  # (H, W)
    m = 0.5 + 0.5 * np.sin(np.float32(2 * math.pi) * (code["cycles"] * proj + code["ph_img"]))
    a = (np.float32(_SC_ALPHA * amount) * m)[..., None]  # (H, W, 1)
    canvas *= 1.0 - a
    canvas += a * _hsv(code["hue"], 0.85, 0.9)


def _shortcut_audio(srng: np.random.Generator, code: dict, n: int, sr: int, amount: float) -> np.ndarray:
    """A fluttering third-octave band of noise at the code's centre frequency (a 'room tone')."""
    fc = code["band_hz"]
    x = _spectral_noise(srng, n, sr, fc * 2 ** (-1 / 6), min(fc * 2 ** (1 / 6), 0.48 * sr))
    t = np.arange(n, dtype=np.float32) * np.float32(1.0 / sr)
    env = 0.75 + 0.25 * np.sin(np.float32(2 * math.pi) * (code["flutter_hz"] * t + code["ph_aud"]))
    return np.float32(_SC_RMS * amount) * x * env


# ------------------------------------------------------------------------------------------------
# One image + audio sample
@dataclass
class Sample:
    """One generated scene, in memory. image (S, S, 3) uint8, mask (S, S) bool, audio (N,) float32."""

    id: str
    image: np.ndarray
    mask: np.ndarray
    audio: np.ndarray
    record: dict = field(default_factory=dict)


def sample_id(split: str, index: int) -> str:
    return f"{split}_{index:06d}"


def _rng(seed: int, code: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, code, index]))


def render_sample(cfg: SynthConfig, classes: list[SynthClass], split: str, index: int) -> Sample:
    """Draw sample `index` of `split` from its own seed (cfg.seed, split, index)."""
    code = _SPLIT_CODE[split]
    rng = _rng(cfg.seed, code, index)
    size, k_total = cfg.image_size, len(classes)
    k = _draw_class(rng, cfg)
    n_dis = int(rng.integers(cfg.min_distractors, cfg.max_distractors + 1))
    others = [c for c in range(k_total) if c != k]
    dis = [int(c) for c in rng.choice(others, size=n_dis, replace=False)] if n_dis else []
    objs = [_sample_obj(rng, classes[c], cfg, size) for c in [k] + dis]
    var_codes = None
    if cfg.variation > 0:  # one code per object; the sounding object's is shared with its sound
        var_codes = _aux_rng(cfg.seed, code, index, _VARIATION_KEY).uniform(-1, 1, (len(objs) + 1, _VAR_DIMS))
        for o, c in zip(objs, var_codes):
            _vary_look(o, c, cfg.variation)
    _place(rng, objs, size, overlap=cfg.max_overlap)
    order = rng.permutation(len(objs))  # random drawing order: the sounder is not always on top
    canvas = _background(rng, size, cfg.clutter)
    srng, sc = None, None
    if cfg.shortcut > 0:
        srng = _aux_rng(cfg.seed, code, index, _SHORTCUT_KEY)
        sc = _shortcut_code(srng, cfg.sample_rate)
        _shortcut_background(canvas, sc, cfg.shortcut)
    masks: dict[int, np.ndarray] = {}
    for j in order.tolist():
        masks[j] = _render_obj(canvas, objs[j])
    drawn = order.tolist()
    for i, j in enumerate(drawn):  # visible pixels only: remove what later objects cover
        for later in drawn[i + 1 :]:
            masks[j] = masks[j] & ~masks[later]
    image = _to_uint8(canvas)

    sr = cfg.sample_rate
    n = int(round(cfg.duration * sr))
    main = _sample_voice(rng, classes[k], rng.uniform(0.3, 0.6))
    if var_codes is not None:
        _vary_voice(main, var_codes[0], cfg.variation)
    audio = _render_voice(rng, main, n, sr)
    off_class = None
    spare = [c for c in others if c not in dis]
    if rng.random() < cfg.offscreen_prob and spare and cfg.offscreen_gain > 0:
        off_class = int(spare[int(rng.integers(len(spare)))])
        off = _sample_voice(rng, classes[off_class], main.gain * rng.uniform(0.4, 1.0) * cfg.offscreen_gain)
        if var_codes is not None:
            _vary_voice(off, var_codes[-1], cfg.variation)
        audio = audio + _render_voice(rng, off, n, sr)
    audio = audio + _pink_noise(rng, n, sr, cfg.noise_level)
    if srng is not None:
        audio = audio + _shortcut_audio(srng, sc, n, sr, cfg.shortcut)
    audio = _finish(audio)

    sid = sample_id(split, index)
    box = _box(masks[0])
    record = {
        "file": sid,
        "split": split,
        "class": classes[k].name,
        "class_index": k,
        "bbox": [box],
        "mask_area": round(float(masks[0].mean()), 6),
        "objects": [
            {"class": o.cls.name, "class_index": o.cls.index, "bbox": _box(masks[j]), "sounding": j == 0}
            for j, o in enumerate(objs)
        ],
        "offscreen_class": None if off_class is None else classes[off_class].name,
        "f0": round(main.f0, 3),
    }
    if var_codes is not None:  # analysis only: the sounding object's code (look and sound)
        record["variation_code"] = [round(float(x), 6) for x in var_codes[0]]
    if sc is not None:
        record["shortcut_code"] = [round(sc["q"], 6), round(sc["r"], 6)]
    return Sample(sid, image, masks[0], audio, record)


# ------------------------------------------------------------------------------------------------
# Clips: objects take turns sounding
def render_clip(cfg: SynthConfig, classes: list[SynthClass], index: int) -> tuple[list[np.ndarray], np.ndarray, dict]:
    """Clip `index`: frames (list of (S, S, 3) uint8), mono audio float32, per-frame ground truth."""
    rng = _rng(cfg.seed, _SPLIT_CODE["clip"], index)
    size, fps, sr = cfg.clip_size, cfg.clip_fps, cfg.sample_rate
    n_frames = max(1, int(round(cfg.clip_seconds * fps)))
    n_obj = int(rng.integers(2, min(3, len(classes)) + 1))
    cls_idx = [int(c) for c in rng.choice(len(classes), size=n_obj, replace=False)]
    objs = [_sample_obj(rng, classes[c], cfg, size) for c in cls_idx]
    drift = 0.04 * size  # per axis: an object moves at most drift * sqrt(2) from its place
    _place(rng, objs, size, margin=2 * math.sqrt(2) * drift + 2, inset=drift)
    motion = [
        (rng.uniform(0.1, 0.3), rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi), rng.uniform(-0.5, 0.5))
        for _ in objs
    ]  # drift freq, phase x, phase y, spin rad/s
    voices = [_sample_voice(rng, o.cls, rng.uniform(0.35, 0.6)) for o in objs]
    bg = _background(rng, size, cfg.clutter)

    # turns: segment lengths in frames; each turn goes to a different object than the last
    lo_f, hi_f = max(1, int(round(cfg.clip_min_segment * fps))), max(1, int(round(cfg.clip_max_segment * fps)))
    segments: list[list[int]] = []  # [start_frame, end_frame, object]
    start, prev = 0, -1
    while start < n_frames:
        length = int(rng.integers(lo_f, hi_f + 1))
        if n_frames - (start + length) < lo_f:
            length = n_frames - start
        who = int(rng.choice([j for j in range(n_obj) if j != prev]))
        segments.append([start, start + length, who])
        start, prev = start + length, who

    n_samples = int(round(n_frames / fps * sr))
    audio = np.zeros(n_samples, np.float32)
    for s0, s1, who in segments:
        a0, a1 = int(round(s0 / fps * sr)), min(n_samples, int(round(s1 / fps * sr)))
        audio[a0:a1] += _render_voice(rng, voices[who], a1 - a0, sr, fade=0.015)
    audio = _finish(audio + _pink_noise(rng, n_samples, sr, cfg.noise_level))

    frames, gt_frames = [], []
    active = np.empty(n_frames, int)
    for s0, s1, who in segments:
        active[s0:s1] = who
    base = [(o.cx, o.cy, o.theta) for o in objs]
    for i in range(n_frames):
        t = i / fps
        canvas = bg.copy()
        boxes = []
        for o, (cx, cy, th), (f, px, py, spin) in zip(objs, base, motion):
            o.cx = cx + drift * math.sin(2 * math.pi * f * t + px)
            o.cy = cy + drift * math.sin(2 * math.pi * f * t + py)
            o.theta = th + spin * t
            boxes.append(_box(_render_obj(canvas, o)))
        frames.append(_to_uint8(canvas))
        who = int(active[i])
        gt_frames.append(
            {
                "index": i,
                "time": round(t, 6),
                "object": who,
                "class": objs[who].cls.name,
                "class_index": objs[who].cls.index,
                "bbox": [boxes[who]],
                "objects": [{"object": j, "class": o.cls.name, "bbox": boxes[j]} for j, o in enumerate(objs)],
            }
        )
    name = f"{_CLIP_PREFIX}{index:03d}"
    gt = {
        "name": name,
        "fps": fps,
        "n_frames": n_frames,
        "width": size,
        "height": size,
        "sample_rate": sr,
        "duration": n_frames / fps,
        "objects": [{"object": j, "class": o.cls.name, "class_index": o.cls.index} for j, o in enumerate(objs)],
        "segments": [
            {"start": s0 / fps, "end": s1 / fps, "object": who, "class": objs[who].cls.name} for s0, s1, who in segments
        ],
        "frames": gt_frames,
    }
    return frames, audio, gt


# ------------------------------------------------------------------------------------------------
# Writing
def _write_json(path: Path, obj: Any, one_per_line: bool = False) -> None:
    """Atomic JSON write; one_per_line puts each list item on its own line (compact and diff-able)."""
    if one_per_line:
        text = "[\n" + ",\n".join(json.dumps(x) for x in obj) + "\n]\n"
    else:
        text = json.dumps(obj, indent=1) + "\n"
    atomic_write_text(path, text, fsync=False)


def _work(out_dir: str, cfg_dict: dict, job: tuple[str, list[int]]) -> list[dict]:
    """Worker: write the files of one chunk of samples (or clips) and return their records."""
    cfg = SynthConfig(**cfg_dict)
    classes = make_classes(cfg)
    out = Path(out_dir)
    kind, indices = job
    records = []
    for i in indices:
        if kind == "clip":
            frames, audio, gt = render_clip(cfg, classes, i)
            media.write_video(
                out / "clips" / f"{gt['name']}.mp4", frames, cfg.clip_fps, audio=audio, sample_rate=cfg.sample_rate
            )
            _write_json(out / "clips" / f"{gt['name']}.json", gt)
            records.append({"name": gt["name"], "n_frames": gt["n_frames"], "segments": len(gt["segments"])})
            continue
        s = render_sample(cfg, classes, kind, i)
        Image.fromarray(s.image).save(out / "frames" / f"{s.id}.jpg", quality=cfg.jpeg_quality)
        Image.fromarray(s.mask.astype(np.uint8) * 255).save(out / "masks" / f"{s.id}.png")
        media.write_wav(out / "audio" / f"{s.id}.wav", s.audio, cfg.sample_rate)
        records.append(s.record)
    return records


def _jobs(cfg: SynthConfig, chunk: int) -> list[tuple[str, list[int]]]:
    jobs: list[tuple[str, list[int]]] = [("clip", [i]) for i in range(cfg.n_clips)]  # slowest first
    for split in SPLITS:
        n = getattr(cfg, f"n_{split}")
        jobs += [(split, list(range(a, min(a + chunk, n)))) for a in range(0, n, chunk)]
    return jobs


def _complete(out: Path, cfg: SynthConfig) -> dict | None:
    """The stored summary when out holds a finished set generated from exactly this config."""
    try:
        meta = json.loads((out / "synth.json").read_text())
    except (OSError, ValueError):
        return None
    if not (
        isinstance(meta, dict)
        and meta.get("complete")
        and meta.get("version") == SYNTH_VERSION
        and isinstance(meta.get("config"), dict)
    ):
        return None
    # sets written before the false-negative options existed are those options at 0 (same bytes)
    if {**_LATER_FIELDS, **meta["config"]} != cfg.to_dict():
        return None
    for split in SPLITS:
        n = getattr(cfg, f"n_{split}")
        last = sample_id(split, n - 1) if n else None
        if last and not all(
            (out / d / f"{last}{e}").is_file() for d, e in (("frames", ".jpg"), ("audio", ".wav"), ("masks", ".png"))
        ):
            return None
    if cfg.n_clips and not (out / "clips" / f"{_CLIP_PREFIX}{cfg.n_clips - 1:03d}.mp4").is_file():
        return None
    return meta.get("summary")


_LATER_FIELDS = {"variation": 0.0, "shortcut": 0.0, "class_skew": 0.0}


def _false_negative_summary(cfg: SynthConfig, batch_size: int) -> dict:
    return {
        "batch_size": batch_size,
        "expected_same_class_negatives": round(expected_false_negatives(cfg, batch_size), 4),
        "class_probs": [round(float(x), 6) for x in class_probabilities(cfg)],
    }


def _remove_stale(out: Path, keep: set[str], clips: set[str]) -> None:
    """Remove generator files (our own id patterns only) that the new config does not produce."""
    for sub, ext in (("frames", ".jpg"), ("audio", ".wav"), ("masks", ".png")):
        d = out / sub
        if d.is_dir():
            for p in d.iterdir():
                if p.suffix == ext and _ID_RE.match(p.stem) and p.stem not in keep:
                    p.unlink()
    d = out / "clips"
    if d.is_dir():
        for p in d.iterdir():
            if _CLIP_RE.match(p.name) and p.stem not in clips:
                p.unlink()


def generate(
    out_dir: str | Path,
    cfg: SynthConfig | None = None,
    progress: bool = True,
    workers: int = 1,
    force: bool = False,
    batch_size: int = 16,
) -> dict:
    """Write the benchmark under out_dir and return a summary dict.

    The summary includes the expected number of same-class negatives per sample at `batch_size`
    (expected_false_negatives) and the class frequencies it comes from.

    A folder already holding a complete set from the same config is reused (summary["reused"] = True)
    unless force. A non-empty folder without synth.json is refused (DataError), so a real dataset is
    never overwritten. Output bytes do not depend on `workers`.
    """
    cfg = cfg or SynthConfig()
    cfg.validate()
    if workers < 1:
        raise ConfigError(f"synth: workers = {workers}: must be >= 1")
    fn_summary = _false_negative_summary(cfg, batch_size)  # also checks batch_size
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    if not force:
        done = _complete(out, cfg)
        if done is not None:
            return {
                **done,
                "variation": cfg.variation,
                "shortcut": cfg.shortcut,
                "class_skew": cfg.class_skew,
                **fn_summary,
                "reused": True,
            }
    if out.is_dir() and any(out.iterdir()) and not (out / "synth.json").is_file():
        raise DataError(
            f"{out}: folder is not empty and holds no synth.json (not a synthetic set); choose an empty or new folder"
        )
    t0 = time.perf_counter()
    classes = make_classes(cfg)
    ids = _start_folder(out, cfg)
    jobs = _jobs(cfg, chunk=32)
    results = _run_jobs(out, cfg, jobs, workers, progress)
    scenes = [r for j, job in enumerate(jobs) if job[0] != "clip" for r in results[j]]
    scenes.sort(key=lambda r: (SPLITS.index(r["split"]), r["file"]))
    clips = [r for j, job in enumerate(jobs) if job[0] == "clip" for r in results[j]]
    _write_lists(out, ids, scenes, classes)
    summary = _summary(out, cfg, scenes, clips, fn_summary, time.perf_counter() - t0, workers)
    _write_json(
        out / "synth.json", {"version": SYNTH_VERSION, "complete": True, "config": cfg.to_dict(), "summary": summary}
    )
    return summary


def _start_folder(out: Path, cfg: SynthConfig) -> dict[str, list[str]]:
    """Make the sub-folders, remove the files of an earlier set that this config does not write, and
    mark the set incomplete (synth.json) until `generate` finishes. Returns the sample ids per split."""
    for sub in ("frames", "audio", "masks", "clips"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    ids = {s: [sample_id(s, i) for i in range(getattr(cfg, f"n_{s}"))] for s in SPLITS}
    _remove_stale(out, {i for v in ids.values() for i in v}, {f"{_CLIP_PREFIX}{i:03d}" for i in range(cfg.n_clips)})
    _write_json(out / "synth.json", {"version": SYNTH_VERSION, "complete": False, "config": cfg.to_dict()})
    return ids


def _run_jobs(
    out: Path, cfg: SynthConfig, jobs: list[tuple[str, list[int]]], workers: int, progress: bool
) -> dict[int, list[dict]]:
    """Write the files of every job (`_work`), in this process or in `workers` processes; returns the
    records of job j under key j (their order does not depend on which process finished first)."""
    total = cfg.n_train + cfg.n_val + cfg.n_test + cfg.n_clips
    results: dict[int, list[dict]] = {}
    from tqdm import tqdm

    bar = tqdm(total=total, desc="synth", unit="sample", disable=not progress)
    try:
        if workers == 1:
            for j, job in enumerate(jobs):
                results[j] = _work(str(out), cfg.to_dict(), job)
                bar.update(len(job[1]))
        else:
            # fork: no re-import of fnac (and torch) per worker; the workers never touch torch
            ctx = get_context("fork" if sys.platform.startswith("linux") else "spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futs = {pool.submit(_work, str(out), cfg.to_dict(), job): j for j, job in enumerate(jobs)}
                for fut in as_completed(futs):
                    results[futs[fut]] = fut.result()
                    bar.update(len(jobs[futs[fut]][1]))
    finally:
        bar.close()
    return results


def _write_lists(out: Path, ids: dict[str, list[str]], scenes: list[dict], classes: list[SynthClass]) -> None:
    """The split lists (<split>.txt), annotations.json (VGG-SS layout), scenes.json and classes.json."""
    for s in SPLITS:
        (out / f"{s}.txt").write_text("".join(f"{i}\n" for i in ids[s]))
    _write_json(
        out / "annotations.json",
        [{"file": r["file"], "class": r["class"], "bbox": r["bbox"]} for r in scenes],
        one_per_line=True,
    )
    _write_json(out / "scenes.json", scenes, one_per_line=True)
    _write_json(out / "classes.json", [c.to_dict() for c in classes])


def _summary(
    out: Path,
    cfg: SynthConfig,
    scenes: list[dict],
    clips: list[dict],
    fn_summary: dict,
    seconds: float,
    workers: int,
) -> dict:
    """The summary `generate` returns and stores in synth.json."""
    n_samples = len(scenes)
    train_counts = [0] * cfg.n_classes  # how often each class sounds in the train split
    for r in scenes:
        if r["split"] == "train":
            train_counts[r["class_index"]] += 1
    return {
        "out_dir": str(out),
        "n_train": cfg.n_train,
        "n_val": cfg.n_val,
        "n_test": cfg.n_test,
        "n_classes": cfg.n_classes,
        "n_clips": len(clips),
        "image_size": cfg.image_size,
        "sample_rate": cfg.sample_rate,
        "duration": cfg.duration,
        "offscreen": sum(r["offscreen_class"] is not None for r in scenes),
        "mean_distractors": round(sum(len(r["objects"]) - 1 for r in scenes) / max(1, n_samples), 3),
        "mean_box_area": round(
            sum((r["bbox"][0][2] - r["bbox"][0][0]) * (r["bbox"][0][3] - r["bbox"][0][1]) for r in scenes)
            / max(1, n_samples),
            4,
        ),
        "variation": cfg.variation,
        "shortcut": cfg.shortcut,
        "class_skew": cfg.class_skew,
        **fn_summary,
        "train_class_counts": train_counts,
        "seconds": round(seconds, 2),
        "workers": workers,
        "reused": False,
    }
