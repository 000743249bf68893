"""Localize the sound in a video, or in an image + audio pair, with a trained FNAC model.

For each (every k-th) video frame at time t, the model sees the frame (test transform: bicubic resize
to S x S, ImageNet normalisation) and the audio window of `window` seconds centred on t (the
reference's centred window, `fnac.audio.centre_window`: tiled when the clip is shorter than the
window), as a log spectrogram (docs/method.md §4). The map is the cosine similarity of the frame's
visual features with the window's audio embedding, / tau (docs/method.md §1); it is upsampled to
224 x 224 (bicubic), min-max normalised, and summarised by its peak and the box of the high-response
region around it (`fnac.localization.peak_and_box`).

Frames and audio windows go through the model in batches. Writers: the frames with the heat map
blended over them and the original audio track (mp4 / webm / mkv), PNG stills, JSON. `score_clip`
scores a result against the per-frame ground truth of a synthetic clip (`fnac.synth`).
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from fnac import audio as faudio
from fnac import localization as loc
from fnac import media, metrics, vision
from fnac.checkpoint import load_model_and_config
from fnac.errors import DataError, MediaError
from fnac.models.fnac import FNAC, localization_maps
from fnac.visualize import heat_overlay, save_png

log = logging.getLogger(__name__)

MIN_AUDIO_SECONDS = 0.1  # shorter audio is refused: tiling 0.1 s into 3 s only repeats one sound
SILENCE_PEAK = 10 ** (-60 / 20)  # peak level below -60 dBFS counts as a silent track
MAP_SIZE = 224  # evaluation size of the normalised maps (docs/evaluation.md §1)
MAX_VIDEO_PIXELS = 4096 * 4096  # larger frames are refused from the probe, before any is decoded
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
# Sample rates the output audio encoders take; others are resampled to 48 kHz for the output only.
_AAC_RATES = {96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000}
_OPUS_RATES = {8000, 12000, 16000, 24000, 48000}


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class FrameResult:
    """One localized frame. Coordinates are normalised to [0, 1] of the frame (x right, y down)."""

    index: int  # frame index in the video (0 for an image + audio pair)
    time: float  # seconds: the frame's time = the centre of its audio window
    map: np.ndarray  # (h, w) raw cos / tau map (h = w = S / stride: 32, or 16 / 8 with model.visual_layers)
    peak: tuple[float, float]  # (x, y) of the maximum of the 224 map (pixel centre)
    box: tuple[float, float, float, float]  # (x1, y1, x2, y2) of the region >= 0.5 around the peak
    max_cos: float  # largest cosine similarity in the map (raw max * tau)
    confidence: float = 0.0  # (max - median) / standard deviation of the raw map (`map_confidence`)

    @property
    def map224(self) -> np.ndarray:
        """(224, 224) float32 in [0, 1]: bicubic upsampling (align_corners=False) then min-max
        (docs/evaluation.md §2). Computed on demand so that long videos keep only the small raw maps."""
        return loc.minmax(loc.upsample(self.map, MAP_SIZE, "bicubic"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "time": round(self.time, 6),
            "peak": [round(v, 5) for v in self.peak],
            "box": [round(v, 5) for v in self.box],
            "max_cos": round(self.max_cos, 5),
            "confidence": round(self.confidence, 4),
        }


@dataclass
class VideoResult:
    """Per-frame localization of one video, and how it was computed."""

    path: str
    frames: list[FrameResult]
    fps: float  # the video's frame rate
    n_frames: int  # frames decoded from the video (all of them, also those skipped by `every`)
    width: int
    height: int
    duration: float  # seconds (container)
    audio_duration: float  # seconds of decoded audio
    sample_rate: int  # rate of the audio the model heard
    every: int
    window: float
    image_size: int
    elapsed: float  # seconds spent decoding and running the model
    warnings: list[str] = field(default_factory=list)
    smooth: float = 0.0  # seconds of temporal smoothing of the maps (0 = none)

    @property
    def fps_achieved(self) -> float:
        """Frames localized per second of wall time (decode + transforms + model)."""
        return len(self.frames) / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        peaks = np.array([f.peak for f in self.frames], dtype=np.float64).reshape(-1, 2)
        return {
            "input": "video",
            "video": self.path,
            "image": None,
            "audio": self.path,
            "frames_localized": len(self.frames),
            "video_frames": self.n_frames,
            "video_fps": round(self.fps, 4),
            "width": self.width,
            "height": self.height,
            "duration": round(self.duration, 4),
            "audio_duration": round(self.audio_duration, 4),
            "sample_rate": self.sample_rate,
            "every": self.every,
            "window": self.window,
            "smooth": self.smooth,
            "image_size": self.image_size,
            "elapsed_s": round(self.elapsed, 3),
            "fps_achieved": round(self.fps_achieved, 3),
            "mean_peak": [round(float(v), 5) for v in peaks.mean(axis=0)] if len(peaks) else None,
            "peak_std": [round(float(v), 5) for v in peaks.std(axis=0)] if len(peaks) else None,
            "warnings": list(self.warnings),
        }

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "frames": [f.to_dict() for f in self.frames]}


@dataclass
class PairResult:
    """Localization of a sound in a still image. Its JSON has the same shape as a video's
    (docs/localize.md, "The JSON file"): the fields that only a video has are null."""

    image: str
    audio: str
    frame: FrameResult
    width: int  # of the image
    height: int
    audio_duration: float
    sample_rate: int
    window: float
    image_size: int
    elapsed: float
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "input": "image+audio",
            "video": None,
            "image": self.image,
            "audio": self.audio,
            "frames_localized": 1,
            "video_frames": None,
            "video_fps": None,
            "width": self.width,
            "height": self.height,
            "duration": None,
            "audio_duration": round(self.audio_duration, 4),
            "sample_rate": self.sample_rate,
            "every": None,
            "window": self.window,
            "smooth": 0.0,
            "image_size": self.image_size,
            "elapsed_s": round(self.elapsed, 3),
            "fps_achieved": None,
            "mean_peak": [round(float(v), 5) for v in self.frame.peak],
            "peak_std": [0.0, 0.0],
            "warnings": list(self.warnings),
        }

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "frames": [self.frame.to_dict()]}


# ---------------------------------------------------------------------------------------------
# Model and settings


def load_model(checkpoint: str | os.PathLike, device: str = "cpu") -> FNAC:
    """`fnac.load_checkpoint` plus the run config stored in the checkpoint, kept as the attribute
    `run_config` (a `fnac.config.Config`, None for the authors' files) so that inference uses the
    image size and sample rate the model was trained with."""
    model, run_config = load_model_and_config(checkpoint, map_location=device)  # one read of the file
    model.run_config = run_config
    return model


def _run_data_config(model: FNAC) -> Any:
    cfg = getattr(model, "run_config", None)
    return getattr(cfg, "data", None)


def default_image_size(model: FNAC) -> int:
    """The model's training image size (checkpoint config data.image_size), else 224."""
    data = _run_data_config(model)
    return int(data.image_size) if data is not None and data.image_size > 0 else 224


def default_alpha(model: FNAC) -> str:
    """The checkpoint's data.alpha (how transparent frames become RGB), else "drop" (the reference)."""
    data = _run_data_config(model)
    return str(getattr(data, "alpha", "drop")) if data is not None else "drop"


def default_sample_rate(model: FNAC) -> int:
    """The checkpoint's data.sample_rate (> 0 = resample to it), else 0 = the file's native rate
    (the reference)."""
    data = _run_data_config(model)
    return int(data.sample_rate) if data is not None and data.sample_rate > 0 else 0


def default_window(model: FNAC) -> float:
    """The checkpoint's data.audio_duration, else 3 s (the reference)."""
    data = _run_data_config(model)
    return float(data.audio_duration) if data is not None and data.audio_duration > 0 else 3.0


# ---------------------------------------------------------------------------------------------
# Audio checks


def load_audio_checked(
    path: str | os.PathLike, window: float, sample_rate: int = 0, allow_silent: bool = False
) -> tuple[np.ndarray, int, list[str]]:
    """Decode the audio the model will hear and refuse what would give meaningless maps.

    MediaError: no audio track, shorter than MIN_AUDIO_SECONDS, a window under 512 samples (one
    spectrogram segment), or a silent track (peak below -60 dBFS) unless allow_silent. A clip shorter
    than the window is tiled (the reference's rule, `fnac.audio.centre_window`) with a warning.
    Returns (x (N,), sr, warnings).
    """
    if not window > 0 or not math.isfinite(window):
        raise MediaError(f"{path}: audio window must be a positive number of seconds, got {window}")
    x, sr = media.read_audio(path, sample_rate)
    warnings: list[str] = []
    seconds = x.shape[0] / sr
    if seconds < MIN_AUDIO_SECONDS:
        raise MediaError(
            f"{path}: the audio is only {seconds:.3f} s long; at least {MIN_AUDIO_SECONDS} s is needed"
        )
    if int(round(sr * window)) < faudio.N_FFT:
        raise MediaError(
            f"{path}: a {window} s window at {sr} Hz holds {int(round(sr * window))} samples, fewer than "
            f"the {faudio.N_FFT} one spectrogram segment needs; use a longer --window"
        )
    peak = float(np.max(np.abs(x)))
    if peak < SILENCE_PEAK and not allow_silent:
        level = "digital silence" if peak == 0 else f"peak {20 * math.log10(peak):.1f} dBFS"
        raise MediaError(
            f"{path}: the audio track is silent ({level}); the maps would be meaningless "
            "(pass --allow-silent to localize anyway)"
        )
    if seconds < window:
        msg = (f"{path}: the audio is {seconds:.2f} s long, shorter than the {window:g} s window: "
               "every window is the clip tiled from its start (the reference's rule)")
        warnings.append(msg)  # returned, not logged: the caller shows it once (or not, when quiet)
    return x, sr, warnings


def audio_batch(x: np.ndarray, sr: int, centres: list[float], window: float, device: str | torch.device
                ) -> torch.Tensor:
    """Model input for windows of `window` s centred at each time: (B, 1, 257, T)."""
    wins = np.stack([faudio.centre_window(x, sr, window, centre=c) for c in centres])  # (B, L)
    wav = torch.from_numpy(np.ascontiguousarray(wins, dtype=np.float32)).to(device)
    spec = faudio.spectrogram(wav, sr)  # (B, 257, T)
    return faudio.to_model_input(spec).unsqueeze(1)  # (B, 1, 257, T)


@torch.inference_mode()
def _maps(model: FNAC, images: torch.Tensor, specs: torch.Tensor) -> np.ndarray:
    """(B, 3, S, S), (B, 1, 257, T) -> raw cos/tau maps (B, h, w), float32 numpy."""
    return localization_maps(model, images, specs).cpu().numpy()


def map_confidence(raw: np.ndarray) -> float:
    """How clearly the map's peak stands out: (max - median) / standard deviation of the raw map,
    over its positions (NaN ignored); 0 for a flat map. Unchanged by the scale and offset of the map."""
    m = np.asarray(raw, dtype=np.float64)
    m = m[np.isfinite(m)]
    if m.size == 0:
        return 0.0
    sd = float(m.std())
    if not sd > 1e-12 * max(1.0, float(np.abs(m).max())):
        return 0.0
    return (float(m.max()) - float(np.median(m))) / sd


def smooth_frames(frames: list[FrameResult], seconds: float, tau: float) -> list[FrameResult]:
    """Temporal smoothing: each frame's raw map becomes the mean of the raw maps of the localized
    frames whose times lie within +-seconds/2 of its time (fewer frames at the start and the end),
    then its peak, box, max_cos and confidence are recomputed. seconds <= 0 returns the frames as they are."""
    if not seconds or seconds <= 0 or len(frames) < 2:
        return frames
    times = np.array([f.time for f in frames], dtype=np.float64)
    half = seconds / 2 + 1e-9
    out: list[FrameResult] = []
    acc = np.zeros(frames[0].map.shape, dtype=np.float64)
    lo = hi = 0  # frames[lo:hi] are summed in acc
    for i, f in enumerate(frames):
        while hi < len(frames) and times[hi] <= times[i] + half:
            acc += frames[hi].map
            hi += 1
        while times[lo] < times[i] - half:
            acc -= frames[lo].map
            lo += 1
        out.append(frame_result(f.index, f.time, (acc / (hi - lo)).astype(np.float32), tau))
    return out


def frame_result(index: int, t: float, raw: np.ndarray, tau: float) -> FrameResult:
    """Peak and box of one raw map (evaluated on the 224 min-max map)."""
    m224 = loc.minmax(loc.upsample(raw, MAP_SIZE, "bicubic"))
    pb = loc.peak_and_box(m224, thr=0.5)
    s = float(MAP_SIZE)
    return FrameResult(
        index=int(index),
        time=float(t),
        map=np.asarray(raw, dtype=np.float32),
        peak=((pb.x + 0.5) / s, (pb.y + 0.5) / s),
        box=(pb.x0 / s, pb.y0 / s, pb.x1 / s, pb.y1 / s),
        max_cos=float(np.nanmax(raw)) * float(tau),
        confidence=map_confidence(raw),
    )


# ---------------------------------------------------------------------------------------------
# Localization


MAX_VIDEO_SECONDS = 3600.0  # default cap of `fnac localize`: the whole audio track is decoded into memory


def check_video(path: str | os.PathLike, max_seconds: float = MAX_VIDEO_SECONDS) -> media.MediaInfo:
    """probe() plus the checks localization needs: a video and an audio track, frames of at most
    MAX_VIDEO_PIXELS pixels, at most `max_seconds` long (0 = no limit). MediaError otherwise."""
    info = media.probe(path)
    if max_seconds and info.duration > max_seconds:
        raise MediaError(f"{path}: the clip lasts {info.duration:.0f} s, more than the limit of {max_seconds:.0f} s "
                         "(cut it, or raise the limit with --max-seconds)")
    if not info.has_video:
        raise MediaError(f"{path}: no video track (localization needs pictures; for a still image use "
                         "--image IMG --audio AUDIO)")
    if not info.has_audio:
        raise MediaError(f"{path}: no audio track; localization needs the sound")
    if info.width * info.height > MAX_VIDEO_PIXELS:
        raise MediaError(f"{path}: frames of {info.width}x{info.height} are too large to decode safely "
                         f"(limit {MAX_VIDEO_PIXELS} pixels); downscale the video first")
    return info


def localize_video(
    model: FNAC,
    video_path: str | os.PathLike,
    every: int = 1,
    window: float = 3.0,
    batch_size: int = 16,
    device: str = "cpu",
    image_size: int | None = None,
    progress: bool = True,
    sample_rate: int | None = None,
    allow_silent: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    max_seconds: float = MAX_VIDEO_SECONDS,
    smooth: float = 0.0,
) -> VideoResult:
    """Localize the sound in every `every`-th frame of a video.

    Frame at time t -> audio window of `window` s centred on t (tiled when the clip is shorter than
    the window). image_size None = the checkpoint's data.image_size, else 224; sample_rate None = the
    checkpoint's data.sample_rate when > 0, else the file's native rate. on_progress(done, total)
    is called after each batch (total is an estimate from the container). smooth > 0 averages each
    frame's map with those of the localized frames within +-smooth/2 seconds (`smooth_frames`).
    """
    if not (math.isfinite(smooth) and smooth >= 0):
        raise ValueError(f"smooth must be a number of seconds >= 0, got {smooth}")
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    path = str(video_path)
    size = int(image_size or default_image_size(model))
    sr_req = default_sample_rate(model) if sample_rate is None else int(sample_rate)
    info = check_video(path, max_seconds)
    t0 = time.perf_counter()
    x, sr, warnings = load_audio_checked(path, window, sr_req, allow_silent)
    model = model.to(device).eval()
    total = max(1, math.ceil(info.n_frames / every)) if info.n_frames else 0

    from tqdm import tqdm

    bar = tqdm(total=total or None, desc="localize", unit="frame", disable=not progress, leave=False)
    frames: list[FrameResult] = []
    last_index = -1
    counts: dict[str, int] = {}
    try:
        for batch in _batches(iter_video_frames_checked(path, every, counts), batch_size):
            idx = [b[0] for b in batch]
            times = [b[1] for b in batch]
            images = torch.stack([vision.test_transform(b[2], size) for b in batch]).to(device)  # (B, 3, S, S)
            specs = audio_batch(x, sr, times, window, device)  # (B, 1, 257, T)
            raw = _maps(model, images, specs)  # (B, h, w)
            for i, t, m in zip(idx, times, raw):
                frames.append(frame_result(i, t, m, model.tau))
            last_index = idx[-1]
            bar.update(len(batch))
            if on_progress is not None:
                on_progress(len(frames), max(total, len(frames)))
    finally:
        bar.close()
    frames = smooth_frames(frames, smooth, model.tau)
    elapsed = time.perf_counter() - t0
    n_frames = counts.get("decoded", last_index + 1)  # frames decoded, not the container's estimate
    return VideoResult(
        path=path, frames=frames, fps=info.fps, n_frames=n_frames, width=info.width, height=info.height,
        duration=info.duration, audio_duration=x.shape[0] / sr, sample_rate=sr, every=every,
        window=float(window), image_size=size, elapsed=elapsed, warnings=warnings, smooth=float(smooth),
    )


def iter_video_frames_checked(path: str, every: int = 1, counts: dict | None = None
                              ) -> Iterator[tuple[int, float, Image.Image]]:
    """media.iter_video_frames; any decoder failure surfaces as MediaError naming the file."""
    try:
        yield from media.iter_video_frames(path, every, counts)
    except MediaError:
        raise
    except (OSError, ValueError, RuntimeError) as e:
        raise MediaError(f"{path}: cannot decode the video ({media._short(e)})") from None


def _batches(it: Iterator, n: int) -> Iterator[list]:
    batch: list = []
    for item in it:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def localize_pair(
    model: FNAC,
    image_path: str | os.PathLike,
    audio_path: str | os.PathLike,
    window: float = 3.0,
    device: str = "cpu",
    image_size: int | None = None,
    sample_rate: int | None = None,
    allow_silent: bool = False,
) -> FrameResult:
    """Localize the sound of an audio file (window centred in the clip, the reference's test-time
    input) in a still image. `audio_path` may be any file with an audio track (wav, flac, mp4, ...).
    The frame only; `localize_pair_result` also returns the settings and warnings."""
    return localize_pair_result(model, image_path, audio_path, window, device, image_size, sample_rate,
                                allow_silent).frame


def localize_pair_result(
    model: FNAC,
    image_path: str | os.PathLike,
    audio_path: str | os.PathLike,
    window: float = 3.0,
    device: str = "cpu",
    image_size: int | None = None,
    sample_rate: int | None = None,
    allow_silent: bool = False,
) -> PairResult:
    """`localize_pair` with what a report needs: image size, audio length and rate, warnings."""
    size = int(image_size or default_image_size(model))
    sr_req = default_sample_rate(model) if sample_rate is None else int(sample_rate)
    t0 = time.perf_counter()
    img = vision.open_image(image_path, default_alpha(model))
    x, sr, warnings = load_audio_checked(audio_path, window, sr_req, allow_silent)
    model = model.to(device).eval()
    centre = x.shape[0] / sr / 2.0
    images = vision.test_transform(img, size).unsqueeze(0).to(device)  # (1, 3, S, S)
    specs = audio_batch(x, sr, [centre], window, device)  # (1, 1, 257, T)
    raw = _maps(model, images, specs)[0]  # (h, w)
    fr = frame_result(0, centre, raw, model.tau)
    return PairResult(image=str(image_path), audio=str(audio_path), frame=fr, width=img.width, height=img.height,
                      audio_duration=x.shape[0] / sr, sample_rate=sr, window=float(window), image_size=size,
                      elapsed=time.perf_counter() - t0, warnings=warnings)


# ---------------------------------------------------------------------------------------------
# Writers


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
    rates = _OPUS_RATES if suffix == ".webm" else _AAC_RATES if suffix in (".mp4", ".mkv", ".mov", ".m4v") else None
    if rates is not None and sr not in rates:
        x, sr = media.resample(x, sr, 48000), 48000
    return x, sr


def write_overlay_video(
    result: VideoResult,
    out_path: str | os.PathLike,
    alpha: float = 0.5,
    audio: bool = True,
    draw_box: bool = True,
) -> Path:
    """Every frame of the source with the heat map of the nearest localized frame blended over it,
    plus the source's audio track. Container by suffix: .mp4/.mkv/.mov (H.264 yuv420p + AAC), .webm (VP9 + Opus), .avi (MPEG-4 + PCM)."""
    out = Path(out_path)
    suffix = out.suffix.lower()
    if not result.frames:
        raise MediaError(f"{result.path}: no localized frames to write")
    codecs = {
        ".mp4": ("libx264", {"crf": "23", "preset": "veryfast"}),
        ".m4v": ("libx264", {"crf": "23", "preset": "veryfast"}),
        ".mov": ("libx264", {"crf": "23", "preset": "veryfast"}),
        ".mkv": ("libx264", {"crf": "23", "preset": "veryfast"}),
        ".webm": ("libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "crf": "33", "b": "0",
                                 "row-mt": "1"}),
        ".avi": ("mpeg4", {"qscale": "4"}),
    }
    if suffix not in codecs:
        raise MediaError(f"{out}: unsupported output format {suffix!r} (use one of {', '.join(codecs)})")
    codec, options = codecs[suffix]
    a, sr = _output_audio(result.path, suffix) if audio else (None, 16000)
    pick = _nearest(result.frames)
    cache: dict[int, np.ndarray] = {}

    def frames() -> Iterator[np.ndarray]:
        for i, _, img in iter_video_frames_checked(result.path, 1):
            fr = pick(i)
            if fr.index not in cache:
                cache.clear()
                cache[fr.index] = fr.map224
            arr = heat_overlay(np.asarray(img, dtype=np.uint8), cache[fr.index], alpha,
                               boxes=[fr.box] if draw_box else None, peak=fr.peak)
            yield _even(arr)

    media.write_video(out, frames(), result.fps or 25.0, audio=a, sample_rate=sr, codec=codec,
                      options=options)
    return out


def pick_stills(n_localized: int, n: int) -> list[int]:
    """Positions of n evenly spaced items among n_localized (first and last included)."""
    if n <= 0 or n_localized <= 0:
        return []
    return sorted({int(round(v)) for v in np.linspace(0, n_localized - 1, min(n, n_localized))})


def write_stills(result: VideoResult, out_dir: str | os.PathLike, n: int = 4, alpha: float = 0.5
                 ) -> list[Path]:
    """PNG overlays (heat map, box, peak) of n evenly spaced localized frames:
    <out_dir>/<stem>_frame<index>.png."""
    chosen = {result.frames[k].index: result.frames[k] for k in pick_stills(len(result.frames), n)}
    if not chosen:
        return []
    stem = Path(result.path).stem
    paths: list[Path] = []
    last = max(chosen)
    for i, _, img in iter_video_frames_checked(result.path, result.every):
        if i in chosen:
            fr = chosen[i]
            arr = heat_overlay(np.asarray(img, dtype=np.uint8), fr.map224, alpha, boxes=[fr.box], peak=fr.peak)
            paths.append(save_png(Path(out_dir) / f"{stem}_frame{i:06d}.png", arr))
        if i >= last:
            break
    return paths


def write_pair_overlay(frame: FrameResult, image_path: str | os.PathLike, out_png: str | os.PathLike,
                       alpha: float = 0.5) -> Path:
    """PNG of the image with the pair's heat map, box and peak."""
    img = np.asarray(vision.open_image(image_path), dtype=np.uint8)
    return save_png(out_png, heat_overlay(img, frame.map224, alpha, boxes=[frame.box], peak=frame.peak))


def write_json(obj: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a JSON document (folders created); written to a temporary file, then renamed."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, p)
    return p


# ---------------------------------------------------------------------------------------------
# Temporal sanity on synthetic clips


def _gt_boxes(entry: dict, source: str) -> list[list[float]]:
    b = entry.get("bbox")
    if b is None:
        raise DataError(f"{source}: frame {entry.get('index')} has no 'bbox'")
    arr = np.asarray(b, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise DataError(f"{source}: frame {entry.get('index')}: 'bbox' must be [x1, y1, x2, y2] or a list of them")
    return arr.tolist()


def _inside(p: tuple[float, float], boxes: list[list[float]]) -> bool:
    return any(b[0] <= p[0] <= b[2] and b[1] <= p[1] <= b[3] for b in boxes)


def load_clip_gt(gt_json: str | os.PathLike | dict) -> dict:
    """A synthetic clip's ground truth (`fnac.synth` clips/<name>.json) as a dict; DataError if malformed."""
    if isinstance(gt_json, dict):
        gt, source = gt_json, "ground truth"
    else:
        source = str(gt_json)
        try:
            gt = json.loads(Path(gt_json).read_text())
        except OSError as e:
            raise DataError(f"{source}: cannot read ground truth ({e.strerror or e})") from None
        except ValueError as e:
            raise DataError(f"{source}: not valid JSON ({e})") from None
    if not isinstance(gt, dict) or not isinstance(gt.get("frames"), list) or not gt["frames"]:
        raise DataError(f"{source}: expected a clip ground truth with a non-empty 'frames' list")
    for f in gt["frames"]:
        if not isinstance(f, dict) or "time" not in f:
            raise DataError(f"{source}: every frame needs 'time' and 'bbox'")
        _gt_boxes(f, source)
    gt.setdefault("_source", source)
    return gt


def score_clip(result: VideoResult, gt_json: str | os.PathLike | dict) -> dict[str, Any]:
    """Score each localized frame against the clip's per-frame ground truth.

    A frame is matched to the gt frame with the same index, or else the nearest in time. Returns:
    frames scored; peak_in_box (fraction of frames whose peak lies inside the sounding object's box,
    edges included); peak_in_silent (fraction whose peak lies inside a silent object's box and not in
    the sounding one's, when the gt lists all objects); mean_ciou and ciou50 (cIoU of the median_ge
    thresholded 224 map vs the box's binary map, docs/evaluation.md §2-3); per_frame details.
    """
    gt = load_clip_gt(gt_json)
    source = gt["_source"]
    by_index = {int(f["index"]): f for f in gt["frames"] if "index" in f}
    times = np.array([float(f["time"]) for f in gt["frames"]])
    fps = float(gt.get("fps") or result.fps or 0)
    tol = 0.5 / fps if fps > 0 else 1e-3
    per_frame = []
    cious = []
    for fr in result.frames:
        g = by_index.get(fr.index)
        if g is None or abs(float(g["time"]) - fr.time) > tol:
            g = gt["frames"][int(np.argmin(np.abs(times - fr.time)))]
        boxes = _gt_boxes(g, source)
        gt_map = metrics.gt_map_vggss(boxes, MAP_SIZE)
        pred = metrics.binarize(fr.map224, "median_ge")
        c = float(metrics.ciou(pred, gt_map))
        cious.append(c)
        hit = _inside(fr.peak, boxes)
        silent = [o["bbox"] for o in g.get("objects", []) if o.get("object") != g.get("object")]
        silent_hit = (not hit) and bool(silent) and _inside(fr.peak, [list(b) for b in silent])
        per_frame.append({"index": fr.index, "time": round(fr.time, 6), "gt_index": g.get("index"),
                          "class": g.get("class"), "peak_in_box": hit, "peak_in_silent": silent_hit,
                          "ciou": round(c, 5)})
    if not per_frame:
        raise DataError(f"{source}: no localized frames to score")
    cious = np.array(cious)
    return {
        "clip": gt.get("name", Path(source).stem),
        "frames": len(per_frame),
        "peak_in_box": float(np.mean([p["peak_in_box"] for p in per_frame])),
        "peak_in_silent": float(np.mean([p["peak_in_silent"] for p in per_frame])),
        "mean_ciou": float(cious.mean()),
        "ciou50": float(np.mean(cious >= 0.5)),
        "per_frame": per_frame,
    }
