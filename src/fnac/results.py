"""What localization returns: one frame's map and summary (`FrameResult`), a video's frames
(`VideoResult`), an image + audio pair (`PairResult`), and their JSON form (docs/localize.md, "The JSON
file").

Plain data: computed by `fnac.inference`, written by `fnac.outputs`, scored by `fnac.scoring`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fnac import localization as loc

MAP_SIZE = 224  # evaluation size of the normalised maps (docs/evaluation.md §1)


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
