"""Files written from localization results: the overlay video, PNG stills, the pair's overlay, JSON.

The overlay video is every frame of the source with the heat map of the nearest localized frame blended
over it (`fnac.visualize.heat_overlay`: jet colours, the box of the high-response region and a cross
at the peak), plus the source's audio track. Every file is written to a temporary name and renamed
(`fnac.fileio`), so a reader never sees half of one. Used by `fnac localize` and `fnac serve`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fnac import media, vision
from fnac.errors import MediaError
from fnac.fileio import atomic_write_json
from fnac.results import FrameResult, VideoResult
from fnac.visualize import heat_overlay, save_png

# Video encoder and its options per output container (media.VIDEO_SUFFIXES); the audio encoder is
# media.auto_audio_codec's: AAC in mp4/m4v/mov/mkv, Opus in webm, PCM in avi.
_H264 = ("libx264", {"crf": "23", "preset": "veryfast"})
VIDEO_ENCODERS: dict[str, tuple[str, dict[str, str]]] = {
    ".mp4": _H264,
    ".m4v": _H264,
    ".mov": _H264,
    ".mkv": _H264,
    ".webm": ("libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "crf": "33", "b": "0", "row-mt": "1"}),
    ".avi": ("mpeg4", {"qscale": "4"}),
}
assert set(VIDEO_ENCODERS) == set(media.VIDEO_SUFFIXES)
OUTPUT_SAMPLE_RATE = 48000  # the source's audio is resampled to this when the encoder cannot take its rate


def _even(arr: np.ndarray) -> np.ndarray:
    """Crop a frame to an even width and height (yuv420p needs both even)."""
    h, w = arr.shape[:2]
    return arr[: h - h % 2, : w - w % 2]


def _nearest(frames: list[FrameResult]) -> Callable[[int], FrameResult]:
    """Frame index -> the localized frame with the nearest index (ties: the earlier one)."""
    idx = np.array([f.index for f in frames])

    def pick(i: int) -> FrameResult:
        k = int(np.searchsorted(idx, i))
        if k == 0:
            return frames[0]
        if k >= len(frames):
            return frames[-1]
        return frames[k - 1] if i - idx[k - 1] <= idx[k] - i else frames[k]

    return pick


def _output_audio(path: str, suffix: str) -> tuple[np.ndarray, int]:
    """The source's audio at its native rate (mono downmix), resampled to 48 kHz only when the
    output encoder does not take that rate."""
    x, sr = media.read_audio(path)
    rates = media.encoder_sample_rates(media.auto_audio_codec(suffix))
    if rates is not None and sr not in rates:
        x, sr = media.resample(x, sr, OUTPUT_SAMPLE_RATE), OUTPUT_SAMPLE_RATE
    return x, sr


def _overlay_frames(result: VideoResult, alpha: float, draw_box: bool) -> Iterator[np.ndarray]:
    """Every decoded frame of the source with the nearest localized frame's map (cropped to even size).
    The 224 map of a localized frame is computed once while consecutive frames share it."""
    pick = _nearest(result.frames)
    cache: dict[int, np.ndarray] = {}
    for i, _, img in media.iter_video_frames_checked(result.path, 1):
        fr = pick(i)
        if fr.index not in cache:
            cache.clear()
            cache[fr.index] = fr.map224
        arr = heat_overlay(
            np.asarray(img, dtype=np.uint8), cache[fr.index], alpha, boxes=[fr.box] if draw_box else None, peak=fr.peak
        )
        yield _even(arr)


def write_overlay_video(
    result: VideoResult,
    out_path: str | os.PathLike,
    alpha: float = 0.5,
    audio: bool = True,
    draw_box: bool = True,
) -> Path:
    """Every frame of the source with the heat map of the nearest localized frame blended over it,
    plus the source's audio track. Container by suffix: .mp4/.m4v/.mkv/.mov (H.264 yuv420p + AAC),
    .webm (VP9 + Opus), .avi (MPEG-4 + PCM)."""
    out = Path(out_path)
    suffix = out.suffix.lower()
    if not result.frames:
        raise MediaError(f"{result.path}: no localized frames to write")
    if suffix not in VIDEO_ENCODERS:
        raise MediaError(f"{out}: unsupported output format {suffix!r} (use one of {', '.join(VIDEO_ENCODERS)})")
    codec, options = VIDEO_ENCODERS[suffix]
    a, sr = _output_audio(result.path, suffix) if audio else (None, 16000)
    media.write_video(
        out,
        _overlay_frames(result, alpha, draw_box),
        result.fps or 25.0,
        audio=a,
        sample_rate=sr,
        codec=codec,
        options=options,
    )
    return out


def pick_stills(n_localized: int, n: int) -> list[int]:
    """Positions of n evenly spaced items among n_localized (first and last included)."""
    if n <= 0 or n_localized <= 0:
        return []
    return sorted({int(round(v)) for v in np.linspace(0, n_localized - 1, min(n, n_localized))})


def write_stills(result: VideoResult, out_dir: str | os.PathLike, n: int = 4, alpha: float = 0.5) -> list[Path]:
    """PNG overlays (heat map, box, peak) of n evenly spaced localized frames:
    <out_dir>/<stem>_frame<index>.png."""
    chosen = {result.frames[k].index: result.frames[k] for k in pick_stills(len(result.frames), n)}
    if not chosen:
        return []
    stem = Path(result.path).stem
    paths: list[Path] = []
    last = max(chosen)
    for i, _, img in media.iter_video_frames_checked(result.path, result.every):
        if i in chosen:
            fr = chosen[i]
            arr = heat_overlay(np.asarray(img, dtype=np.uint8), fr.map224, alpha, boxes=[fr.box], peak=fr.peak)
            paths.append(save_png(Path(out_dir) / f"{stem}_frame{i:06d}.png", arr))
        if i >= last:
            break
    return paths


def write_pair_overlay(
    frame: FrameResult, image_path: str | os.PathLike, out_png: str | os.PathLike, alpha: float = 0.5
) -> Path:
    """PNG of the image with the pair's heat map, box and peak."""
    img = np.asarray(vision.open_image(image_path), dtype=np.uint8)
    return save_png(out_png, heat_overlay(img, frame.map224, alpha, boxes=[frame.box], peak=frame.peak))


def write_json(obj: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a JSON document (indent 1; folders created), atomically (`fnac.fileio.atomic_write_json`)."""
    return atomic_write_json(path, obj, indent=1)
