"""Localize the sound in a video, or in an image + audio pair, with a trained FNAC model.

For each (every k-th) video frame at time t, the model sees the frame (test transform: bicubic resize
to S x S, ImageNet normalisation) and the audio window of `window` seconds centred on t (the
reference's centred window, `fnac.audio.centre_window`: tiled when the clip is shorter than the
window), as a log spectrogram (docs/method.md §4). The map is the cosine similarity of the frame's
visual features with the window's audio embedding, / tau (docs/method.md §1); it is upsampled to
224 x 224 (bicubic), min-max normalised, and summarised by its peak and the box of the high-response
region around it (`fnac.localization.peak_and_box`).

Frames and audio windows go through the model in batches. The result types are in `fnac.results`,
the files written from them (overlay video, PNG stills, JSON) in `fnac.outputs`, and the score against
a synthetic clip's per-frame ground truth in `fnac.scoring`; the names that `fnac.inference` offered
before (`FrameResult`, `VideoResult`, `PairResult`, `write_overlay_video`, `write_stills`, `write_json`,
`pick_stills`, `score_clip`) are still importable from here.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from fnac import audio as faudio
from fnac import localization as loc
from fnac import media, vision
from fnac.checkpoint import LoadedCheckpoint, load_model_and_config
from fnac.config import Config
from fnac.errors import ConfigError, MediaError, NoAudioTrackError
from fnac.media import iter_video_frames_checked
from fnac.models.fnac import FNAC, localization_maps
from fnac.outputs import pick_stills, write_json, write_overlay_video, write_stills
from fnac.results import MAP_SIZE, FrameResult, PairResult, VideoResult
from fnac.scoring import score_clip

__all__ = [  # the public names, those defined elsewhere included (kept importable from here)
    "MAP_SIZE",
    "MAX_VIDEO_PIXELS",
    "MAX_VIDEO_SECONDS",
    "MIN_AUDIO_SECONDS",
    "REFERENCE_ALPHA",
    "REFERENCE_IMAGE_SIZE",
    "REFERENCE_SAMPLE_RATE",
    "REFERENCE_WINDOW",
    "SILENCE_PEAK",
    "FrameResult",
    "InferenceDefaults",
    "LoadedCheckpoint",
    "PairResult",
    "VideoResult",
    "audio_batch",
    "check_video",
    "frame_result",
    "iter_video_frames_checked",
    "load_audio_checked",
    "load_model",
    "localize_pair",
    "localize_pair_result",
    "localize_video",
    "map_confidence",
    "pick_stills",
    "score_clip",
    "smooth_frames",
    "write_json",
    "write_overlay_video",
    "write_stills",
]

log = logging.getLogger(__name__)

MIN_AUDIO_SECONDS = 0.1  # shorter audio is refused: tiling 0.1 s into 3 s only repeats one sound
SILENCE_PEAK = 10 ** (-60 / 20)  # peak level below -60 dBFS counts as a silent track
MAX_VIDEO_PIXELS = 4096 * 4096  # larger frames are refused from the probe, before any is decoded


# ---------------------------------------------------------------------------------------------
# Model and settings


REFERENCE_IMAGE_SIZE = 224  # the reference's test input: 224 x 224
REFERENCE_ALPHA = "drop"  # transparent frames: the alpha channel dropped, as the reference's PIL convert
REFERENCE_SAMPLE_RATE = 0  # 0 = the file's native rate (the reference does not resample)
REFERENCE_WINDOW = 3.0  # seconds of audio per frame


@dataclass(frozen=True)
class InferenceDefaults:
    """The input settings a model was trained with, used where a call does not set them: image size,
    how transparent images become RGB, audio sample rate (0 = the file's native rate) and window."""

    image_size: int = REFERENCE_IMAGE_SIZE
    alpha: str = REFERENCE_ALPHA
    sample_rate: int = REFERENCE_SAMPLE_RATE
    window: float = REFERENCE_WINDOW

    @classmethod
    def from_config(cls, cfg: Config | None) -> InferenceDefaults:
        """The run config's data.image_size, data.alpha, data.sample_rate and data.audio_duration
        (each when set, > 0); the reference's values for what it does not set and for no config (the
        authors' files)."""
        if cfg is None:
            return cls()
        data = cfg.data
        return cls(
            image_size=int(data.image_size) if data.image_size > 0 else REFERENCE_IMAGE_SIZE,
            alpha=str(data.alpha),
            sample_rate=int(data.sample_rate) if data.sample_rate > 0 else REFERENCE_SAMPLE_RATE,
            window=float(data.audio_duration) if data.audio_duration > 0 else REFERENCE_WINDOW,
        )


def load_model(checkpoint: str | os.PathLike, device: str = "cpu") -> LoadedCheckpoint:
    """The model (eval mode, on `device`), the run config and the epoch stored in a checkpoint file or
    exported folder, from one read (`fnac.checkpoint.load_model_and_config`). Inference uses the image
    size and sample rate the model was trained with through
    ``InferenceDefaults.from_config(loaded.config)``."""
    return load_model_and_config(checkpoint, map_location=device)


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
        raise MediaError(f"{path}: the audio is only {seconds:.3f} s long; at least {MIN_AUDIO_SECONDS} s is needed")
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
        msg = (
            f"{path}: the audio is {seconds:.2f} s long, shorter than the {window:g} s window: "
            "every window is the clip tiled from its start (the reference's rule)"
        )
        warnings.append(msg)  # returned, not logged: the caller shows it once (or not, when quiet)
    return x, sr, warnings


def audio_batch(
    x: np.ndarray, sr: int, centres: list[float], window: float, device: str | torch.device
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
        raise MediaError(
            f"{path}: the clip lasts {info.duration:.0f} s, more than the limit of {max_seconds:.0f} s "
            "(cut it, or raise the limit with --max-seconds)"
        )
    if not info.has_video:
        raise MediaError(
            f"{path}: no video track (localization needs pictures; for a still image use --image IMG --audio AUDIO)"
        )
    if not info.has_audio:
        raise NoAudioTrackError(f"{path}: no audio track; localization needs the sound")
    if info.width * info.height > MAX_VIDEO_PIXELS:
        raise MediaError(
            f"{path}: frames of {info.width}x{info.height} are too large to decode safely "
            f"(limit {MAX_VIDEO_PIXELS} pixels); downscale the video first"
        )
    return info


def _settings(
    defaults: InferenceDefaults | None, window: float | None, image_size: int | None, sample_rate: int | None
) -> tuple[InferenceDefaults, float, int, int]:
    """(defaults, window, image size, sample rate to ask for) of one call: what it sets, else `defaults`
    (the reference's values when None)."""
    d = defaults if defaults is not None else InferenceDefaults()
    win = d.window if window is None else window
    size = int(image_size or d.image_size)
    sr_req = d.sample_rate if sample_rate is None else int(sample_rate)
    return d, win, size, sr_req


def localize_video(
    model: FNAC,
    video_path: str | os.PathLike,
    every: int = 1,
    window: float | None = None,
    batch_size: int = 16,
    device: str = "cpu",
    image_size: int | None = None,
    progress: bool = True,
    sample_rate: int | None = None,
    allow_silent: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    max_seconds: float = MAX_VIDEO_SECONDS,
    smooth: float = 0.0,
    defaults: InferenceDefaults | None = None,
) -> VideoResult:
    """Localize the sound in every `every`-th frame of a video.

    Frame at time t -> audio window of `window` s centred on t (tiled when the clip is shorter than
    the window). `defaults` holds the checkpoint's settings (``InferenceDefaults.from_config(cfg)``;
    None = the reference's: 3 s, 224 px, the file's native rate); window, image_size and sample_rate
    None take them from it. on_progress(done, total)
    is called after each batch (total is an estimate from the container). smooth > 0 averages each
    frame's map with those of the localized frames within +-smooth/2 seconds (`smooth_frames`).
    """
    if not (math.isfinite(smooth) and smooth >= 0):
        raise ConfigError(f"smooth must be a number of seconds >= 0, got {smooth}")
    if every < 1:
        raise ConfigError(f"every must be >= 1, got {every}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    path = str(video_path)
    _, window, size, sr_req = _settings(defaults, window, image_size, sample_rate)
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
        path=path,
        frames=frames,
        fps=info.fps,
        n_frames=n_frames,
        width=info.width,
        height=info.height,
        duration=info.duration,
        audio_duration=x.shape[0] / sr,
        sample_rate=sr,
        every=every,
        window=float(window),
        image_size=size,
        elapsed=elapsed,
        warnings=warnings,
        smooth=float(smooth),
    )


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
    window: float | None = None,
    device: str = "cpu",
    image_size: int | None = None,
    sample_rate: int | None = None,
    allow_silent: bool = False,
    defaults: InferenceDefaults | None = None,
) -> FrameResult:
    """Localize the sound of an audio file (window centred in the clip, the reference's test-time
    input) in a still image. `audio_path` may be any file with an audio track (wav, flac, mp4, ...).
    The frame only; `localize_pair_result` also returns the settings and warnings."""
    return localize_pair_result(
        model, image_path, audio_path, window, device, image_size, sample_rate, allow_silent, defaults
    ).frame


def localize_pair_result(
    model: FNAC,
    image_path: str | os.PathLike,
    audio_path: str | os.PathLike,
    window: float | None = None,
    device: str = "cpu",
    image_size: int | None = None,
    sample_rate: int | None = None,
    allow_silent: bool = False,
    defaults: InferenceDefaults | None = None,
) -> PairResult:
    """`localize_pair` with what a report needs: image size, audio length and rate, warnings.
    `defaults` and the settings left None as in `localize_video`; a transparent image becomes RGB by
    `defaults.alpha` ("drop" for the reference)."""
    d, window, size, sr_req = _settings(defaults, window, image_size, sample_rate)
    t0 = time.perf_counter()
    img = vision.open_image(image_path, d.alpha)
    x, sr, warnings = load_audio_checked(audio_path, window, sr_req, allow_silent)
    model = model.to(device).eval()
    centre = x.shape[0] / sr / 2.0
    images = vision.test_transform(img, size).unsqueeze(0).to(device)  # (1, 3, S, S)
    specs = audio_batch(x, sr, [centre], window, device)  # (1, 1, 257, T)
    raw = _maps(model, images, specs)[0]  # (h, w)
    fr = frame_result(0, centre, raw, model.tau)
    return PairResult(
        image=str(image_path),
        audio=str(audio_path),
        frame=fr,
        width=img.width,
        height=img.height,
        audio_duration=x.shape[0] / sr,
        sample_rate=sr,
        window=float(window),
        image_size=size,
        elapsed=time.perf_counter() - t0,
        warnings=warnings,
    )
