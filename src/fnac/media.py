"""Decode and encode media files: audio from any container, video frames, wav and video writers.

Pure I/O (docs/method.md §4, "Inputs"): no torch here. Audio comes back as float32 mono in [-1, 1]
at the file's native rate unless a rate is asked for; frames come back as RGB ``PIL.Image``.

Back ends: soundfile for wav/flac (fast path), PyAV (FFmpeg) for everything else. Encoders present in
the pinned PyAV build (av 18.1, checked with ``av.codecs_available``): video ``libx264``/``h264``,
``mpeg4``, ``libvpx-vp9``, ``libvpx`` (VP8), ``mjpeg``, ``png``; audio ``aac``, ``libopus``/``opus``,
``mp3`` (LAME), ``flac``, ``pcm_s16le``, ``vorbis`` (FFmpeg's native one; no ``libvorbis``).
Usual pairs: mp4/mkv with libx264 + aac, avi with mpeg4 + pcm_s16le, webm with libvpx-vp9 + libopus
(Opus takes 8, 12, 16, 24 or 48 kHz only, and FFmpeg decodes Opus at 48 kHz whatever rate was encoded,
so ``read_audio`` of a webm reports 48000 unless asked to resample). AAC in mp4 decodes sample-aligned
with the input (the priming delay is skipped, trailing padding trimmed to the stream's length).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image

from fnac.errors import ConfigError, MediaError, NoAudioTrackError
from fnac.fileio import atomic_path

PathLike = str | os.PathLike

# The video containers fnac reads and writes (`fnac localize` outputs, `fnac serve` uploads, id-list
# extensions); `fnac prepare` also reads a few more (fnac.prepare.VIDEO_EXTS).
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
_SOUNDFILE_SUFFIXES = {".wav", ".flac"}
_OPUS_RATES = {8000, 12000, 16000, 24000, 48000}
_AAC_RATES = {96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000}
_AUTO_AUDIO_CODEC = {".webm": "libopus", ".avi": "pcm_s16le"}  # write_video's audio_codec="auto"; else aac
_AUDIO_CHUNK = 1024  # samples per audio frame given to the encoder


@dataclass
class MediaInfo:
    """What ``probe`` learns about a file. Fields that do not apply are 0 (or False)."""

    duration: float  # seconds (longest stream)
    has_video: bool
    has_audio: bool
    width: int = 0
    height: int = 0
    fps: float = 0.0
    n_frames: int = 0  # container's count when stored, else estimated as round(duration * fps)
    sample_rate: int = 0
    channels: int = 0


# --------------------------------------------------------------------------------------------- helpers


def _check_file(path: PathLike) -> Path:
    """Fail early, naming the file, when it is missing, not a file, or empty."""
    p = Path(path)
    if not p.exists():
        raise MediaError(f"{p}: file not found")
    if not p.is_file():
        raise MediaError(f"{p}: not a regular file")
    if p.stat().st_size == 0:
        raise MediaError(f"{p}: file is empty (0 bytes)")
    return p


def _open_input(p: Path):
    import av

    try:
        return av.open(str(p), mode="r")
    except Exception as e:  # av.error.FFmpegError and friends
        raise MediaError(f"{p}: cannot open as a media file ({_short(e)})") from e


_ERRNO = re.compile(r"\[Errno -?\d+\]\s*")


def _short(e: BaseException) -> str:
    """The reason in words: FFmpeg's and the OS's error numbers (``[Errno 1094995529]``) and the
    file name they repeat are dropped, e.g. "invalid data found when processing input"."""
    words = getattr(e, "strerror", None)
    if isinstance(words, str) and words.strip():
        text = words.strip()
        text = text[0].lower() + text[1:] if text[1:2].islower() else text
    else:
        text = _ERRNO.sub("", str(e)).strip() or type(e).__name__
    return text if len(text) < 200 else text[:200] + "..."


def _finish_audio(x: np.ndarray, p: Path) -> np.ndarray:
    """Common checks on a decoded mono signal."""
    if x.size == 0:
        raise MediaError(f"{p}: audio track contains no samples")
    if not np.all(np.isfinite(x)):
        bad = "NaN" if np.isnan(x).any() else "infinite values"
        raise MediaError(f"{p}: audio contains {bad}")
    return np.clip(x, -1.0, 1.0).astype(np.float32, copy=False)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample a mono float signal with FFmpeg's swresample (PyAV ``AudioResampler``).

    Output length is about ``len(x) * sr_out / sr_in`` (the resampler is flushed at the end).
    """
    import av

    x = np.ascontiguousarray(x, dtype=np.float32)
    if sr_in == sr_out or x.size == 0:
        return x.copy()
    res = av.AudioResampler(format="flt", layout="mono", rate=int(sr_out))
    frame = av.AudioFrame.from_ndarray(x[None, :], format="flt", layout="mono")  # (1, N) packed
    frame.sample_rate = int(sr_in)
    frame.pts = 0
    frame.time_base = Fraction(1, int(sr_in))
    out = [f.to_ndarray().reshape(-1) for f in res.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in res.resample(None)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def _decode_audio_av(p: Path) -> tuple[np.ndarray, int]:
    """All audio frames of the first audio stream, as float, channels averaged (not yet clipped)."""
    import av

    with _open_input(p) as container:
        if not container.streams.audio:
            raise NoAudioTrackError(f"{p}: no audio track")
        stream = container.streams.audio[0]
        if stream.codec_context is None:  # e.g. a corrupt codec id: FFmpeg has no decoder for it
            raise MediaError(f"{p}: no decoder for the audio codec (corrupt or unsupported file)")
        sr = int(stream.codec_context.sample_rate or stream.rate or 0)
        chunks: list[np.ndarray] = []
        resampler = None
        try:
            for frame in container.decode(stream):
                if resampler is None:  # planar float at the native rate and layout
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=frame.sample_rate)
                    sr = int(frame.sample_rate)
                for f in resampler.resample(frame):
                    chunks.append(f.to_ndarray())  # (channels, n)
            if resampler is not None:
                for f in resampler.resample(None):
                    chunks.append(f.to_ndarray())
        except MediaError:
            raise
        except Exception as e:
            raise MediaError(f"{p}: audio is corrupt or cannot be decoded ({_short(e)})") from e
        # Drop encoder padding past the declared stream length (e.g. AAC's last partial frame).
        n_declared = 0
        if stream.duration is not None and stream.time_base is not None and sr > 0:
            n_declared = int(round(float(stream.duration * stream.time_base) * sr))
    if not chunks or sr <= 0:
        raise MediaError(f"{p}: audio track contains no samples")
    x = np.concatenate(chunks, axis=1).astype(np.float32)  # (channels, N)
    if 0 < n_declared < x.shape[1]:
        x = x[:, :n_declared]
    return x.mean(axis=0), sr  # (N,); _finish_audio clips the mono mix, as the reference's downmix saturates


def _read_soundfile(p: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)  # (N, channels)
    except Exception as e:
        raise MediaError(f"{p}: cannot read audio ({_short(e)})") from e
    if data.size == 0:
        raise MediaError(f"{p}: audio track contains no samples")
    return data.mean(axis=1), int(sr)  # clipped after the mix, in _finish_audio


# ----------------------------------------------------------------------------------------------- audio


def read_audio(path: PathLike, sample_rate: int = 0) -> tuple[np.ndarray, int]:
    """Decode a file's audio as float32 mono in [-1, 1] (docs/method.md §4, Audio step 1).

    wav/flac go through soundfile, any other container through PyAV (first audio stream, all frames).
    Channels are averaged, then the mono signal is clipped to [-1, 1] (the reference's order: its
    decoder mixes down, then saturates; a float file whose channels exceed full scale depends on it). ``sample_rate > 0`` resamples
    (swresample); 0 keeps the native rate. Returns ``(x (N,), sr)``.
    Raises MediaError for a missing, empty, unreadable or corrupt file, no audio track, zero samples,
    or NaN/infinite samples.
    """
    p = _check_file(path)
    if p.suffix.lower() in _SOUNDFILE_SUFFIXES:
        try:
            x, sr = _read_soundfile(p)
        except MediaError as first:  # e.g. a wav holding a codec libsndfile lacks: let FFmpeg try
            try:
                x, sr = _decode_audio_av(p)
            except MediaError:
                raise first from None
    else:
        x, sr = _decode_audio_av(p)
    x = _finish_audio(x, p)
    if sample_rate and sample_rate > 0 and sample_rate != sr:
        x = _finish_audio(resample(x, sr, int(sample_rate)), p)
        sr = int(sample_rate)
    return x, sr


def write_wav(path: PathLike, x: np.ndarray, sr: int, subtype: str = "PCM_16") -> None:
    """Write a wav (or flac, by suffix) file. ``x`` is (N,) or (N, C), float in [-1, 1] (clipped) or int16.

    ``subtype`` is soundfile's ("PCM_16", "FLOAT", ...). Written to a temporary name, then renamed
    (``fnac.fileio.atomic_path``).
    """
    import soundfile as sf

    x = np.asarray(x)
    if x.ndim not in (1, 2) or x.shape[0] == 0:
        raise MediaError(f"{path}: expected audio of shape (N,) or (N, C) with N > 0, got {x.shape}")
    if x.dtype.kind == "f":
        if not np.all(np.isfinite(x)):
            raise MediaError(f"{path}: refusing to write audio that contains NaN or infinite values")
        x = np.clip(x, -1.0, 1.0)
    p = Path(path)
    try:  # no fsync: datasets write thousands of these (fnac.fileio)
        with atomic_path(p, fsync=False) as tmp:
            sf.write(str(tmp), x, int(sr), subtype=subtype)
    except (sf.LibsndfileError, OSError, ValueError, TypeError) as e:
        raise MediaError(f"{p}: cannot write audio ({_short(e)})") from e


# ----------------------------------------------------------------------------------------------- video


def probe(path: PathLike) -> MediaInfo:
    """Duration, streams, frame size, fps, frame count, sample rate and channels of a media file."""
    p = _check_file(path)
    try:
        return _probe(p)
    except MediaError:
        raise
    except Exception as e:  # malformed stream parameters (found by tests/test_fuzz.py)
        raise MediaError(f"{p}: cannot read the stream information ({_short(e)})") from e


def _probe(p: Path) -> MediaInfo:
    with _open_input(p) as c:
        durations: list[float] = []
        info = MediaInfo(duration=0.0, has_video=bool(c.streams.video), has_audio=bool(c.streams.audio))
        for s in list(c.streams.video[:1]) + list(c.streams.audio[:1]):
            if s.duration is not None and s.time_base is not None:
                durations.append(float(s.duration * s.time_base))
        if c.duration is not None:
            durations.append(c.duration / 1_000_000)  # container duration is in AV_TIME_BASE units
        if c.streams.video:
            v = c.streams.video[0]
            info.width = int(getattr(v.codec_context, "width", 0) or 0)  # codec_context is None without a decoder
            info.height = int(getattr(v.codec_context, "height", 0) or 0)
            rate = v.average_rate or v.guessed_rate or v.base_rate
            info.fps = float(rate) if rate else 0.0
            info.n_frames = int(v.frames or 0)
        if c.streams.audio:
            a = c.streams.audio[0]
            info.sample_rate = int(getattr(a.codec_context, "sample_rate", 0) or a.rate or 0)
            info.channels = int(getattr(a.codec_context, "channels", 0) or 0)
    info.duration = max(durations) if durations else 0.0
    if info.has_video and info.n_frames == 0 and info.fps > 0:
        info.n_frames = int(round(info.duration * info.fps))
    return info


def iter_video_frames(
    path: PathLike, every: int = 1, counts: dict | None = None
) -> Iterator[tuple[int, float, Image.Image]]:
    """Yield ``(index, time_s, RGB image)`` for every ``every``-th decoded frame of the first video stream.

    ``time_s`` is the frame's presentation time relative to the stream's start (index / fps when the
    file has no timestamps). When the stream has been read to its end, ``counts["decoded"]`` (if a
    dict is given) is the number of frames decoded, skipped ones included.
    """
    if every < 1:
        raise ConfigError(f"every must be >= 1, got {every}")
    p = _check_file(path)
    with _open_input(p) as c:
        if not c.streams.video:
            raise MediaError(f"{p}: no video track")
        v = c.streams.video[0]
        rate = v.average_rate or v.guessed_rate or v.base_rate
        fps = float(rate) if rate else 0.0
        t0 = float(v.start_time * v.time_base) if v.start_time is not None and v.time_base else 0.0
        index = -1
        try:
            for frame in c.decode(v):
                index += 1
                if index % every:
                    continue
                if frame.time is not None:
                    t = float(frame.time) - t0
                else:
                    t = index / fps if fps > 0 else 0.0
                yield index, t, frame.to_image().convert("RGB")
        except MediaError:
            raise
        except Exception as e:
            raise MediaError(f"{p}: video is corrupt or cannot be decoded at frame {index} ({_short(e)})") from e
    if index < 0:
        raise MediaError(f"{p}: video track contains no frames")
    if counts is not None:
        counts["decoded"] = index + 1


def iter_video_frames_checked(
    path: PathLike, every: int = 1, counts: dict | None = None
) -> Iterator[tuple[int, float, Image.Image]]:
    """``iter_video_frames``; any decoder failure surfaces as MediaError naming the file."""
    try:
        yield from iter_video_frames(path, every, counts)
    except MediaError:
        raise
    except (OSError, ValueError, RuntimeError) as e:
        raise MediaError(f"{path}: cannot decode the video ({_short(e)})") from None


def read_frame_at(path: PathLike, t: float | None = None) -> Image.Image:
    """The frame shown at time ``t`` seconds (the last frame whose time is <= t); None = middle frame.

    The middle frame is the one shown at duration / 2 (frame n // 2 for n frames at a constant rate).
    A time past the end gives the last frame.
    """
    p = _check_file(path)
    if t is None:
        info = probe(p)
        t = info.duration / 2
    if t < 0 or not math.isfinite(t):
        raise MediaError(f"{p}: frame time must be a finite number >= 0, got {t}")
    chosen: Image.Image | None = None
    eps = 1e-6
    for _, ft, img in iter_video_frames(p):
        if chosen is not None and ft > t + eps:
            break
        chosen = img
    assert chosen is not None  # iter_video_frames raises on an empty stream
    return chosen


def _as_stereo_or_mono(audio: np.ndarray, path: PathLike) -> np.ndarray:
    """(N,) or (N, C) / int16 or float -> float32 (C, N) with C in {1, 2}."""
    a = np.asarray(audio)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] not in (1, 2) or a.shape[0] == 0:
        raise MediaError(f"{path}: audio must be (N,) mono or (N, 2) stereo with N > 0, got {np.shape(audio)}")
    if a.dtype == np.int16:
        a = a.astype(np.float32) / 32768.0
    a = a.astype(np.float32)
    if not np.all(np.isfinite(a)):
        raise MediaError(f"{path}: refusing to write audio that contains NaN or infinite values")
    return np.ascontiguousarray(np.clip(a, -1.0, 1.0).T)  # (C, N)


def auto_audio_codec(suffix: str) -> str:
    """The audio encoder ``write_video(audio_codec="auto")`` uses for a container suffix: libopus for
    .webm, pcm_s16le for .avi (the avi muxer shifts the video timestamps and keeps the encoder delay
    when given aac or mp3), aac for the others."""
    return _AUTO_AUDIO_CODEC.get(suffix.lower(), "aac")


def encoder_sample_rates(audio_codec: str) -> set[int] | None:
    """Sample rates an audio encoder accepts; None = any (e.g. PCM)."""
    if audio_codec in ("libopus", "opus"):
        return set(_OPUS_RATES)
    if audio_codec == "aac":
        return set(_AAC_RATES)
    return None


class _VideoEncoder:
    """The streams of one output container, fed frame by frame.

    The video stream is created at the first frame (its size fixes the stream's), with the audio stream
    if there is audio; after each frame the audio is encoded up to that frame's end time, so that the
    muxer interleaves the two by time. All errors are MediaError naming the output ``p``, except those
    of FFmpeg while encoding, which ``write_video`` words."""

    def __init__(
        self,
        container,
        p: Path,
        rate: Fraction,
        codec: str,
        pix_fmt: str,
        options: dict[str, str] | None,
        audio: np.ndarray | None,
        audio_codec: str,
        sample_rate: int,
    ) -> None:
        self.container, self.p, self.rate = container, p, rate
        self.codec, self.pix_fmt, self.options = codec, pix_fmt, options
        self.audio, self.audio_codec, self.sample_rate = audio, audio_codec, int(sample_rate)
        self.vstream = None
        self.astream = None
        self.size: tuple[int, int] | None = None  # (h, w) of the first frame
        self.a_pos = 0  # next audio sample to encode
        self.n = 0  # frames encoded

    def _layout(self) -> str:
        assert self.audio is not None
        return "mono" if self.audio.shape[0] == 1 else "stereo"

    def _open_streams(self, h: int, w: int) -> None:
        p = self.p
        if self.pix_fmt == "yuv420p" and (h % 2 or w % 2):
            raise MediaError(f"{p}: yuv420p needs an even frame size, got {w}x{h}")
        try:
            self.vstream = self.container.add_stream(self.codec, rate=self.rate)
        except Exception as e:
            raise MediaError(f"{p}: video encoder {self.codec!r} unavailable ({_short(e)})") from e
        self.vstream.width, self.vstream.height, self.vstream.pix_fmt = w, h, self.pix_fmt
        if self.options:
            self.vstream.codec_context.options = dict(self.options)
        if self.audio is not None:
            try:
                self.astream = self.container.add_stream(self.audio_codec, rate=self.sample_rate, layout=self._layout())
            except Exception as e:
                raise MediaError(f"{p}: audio encoder {self.audio_codec!r} unavailable ({_short(e)})") from e
        self.size = (h, w)

    def _push_audio(self, until: int) -> None:
        """Encode the audio samples [a_pos, until) in chunks of _AUDIO_CHUNK."""
        import av

        a = self.audio
        assert a is not None and self.astream is not None
        until = min(until, a.shape[1])
        while self.a_pos < until:
            end = min(self.a_pos + _AUDIO_CHUNK, until)
            af = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(a[:, self.a_pos : end]), format="fltp", layout=self._layout()
            )  # (C, n) planar
            af.sample_rate = self.sample_rate
            af.pts = self.a_pos
            af.time_base = Fraction(1, self.sample_rate)
            for pkt in self.astream.encode(af):
                self.container.mux(pkt)
            self.a_pos = end

    def add(self, frame: np.ndarray) -> None:
        """Encode one RGB frame, then the audio up to its end time."""
        import av

        arr = np.asarray(frame)
        n, p = self.n, self.p
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise MediaError(f"{p}: frame {n} must be (H, W, 3) uint8, got {arr.shape} {arr.dtype}")
        if self.size is None:
            self._open_streams(*arr.shape[:2])
        elif arr.shape[:2] != self.size:
            h, w = self.size
            raise MediaError(f"{p}: frame {n} is {arr.shape[1]}x{arr.shape[0]}, expected {w}x{h}")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
        vf.pts = n
        vf.time_base = Fraction(1) / self.rate
        for pkt in self.vstream.encode(vf):
            self.container.mux(pkt)
        self.n = n + 1
        if self.audio is not None:
            self._push_audio(int(math.ceil(self.n / float(self.rate) * self.sample_rate)))

    def finish(self) -> None:
        """The rest of the audio, then flush both encoders."""
        if self.vstream is None:
            raise MediaError(f"{self.p}: no frames to write")
        if self.audio is not None:
            self._push_audio(self.audio.shape[1])
            for pkt in self.astream.encode(None):
                self.container.mux(pkt)
        for pkt in self.vstream.encode(None):
            self.container.mux(pkt)


def _close_container(container, p: Path, ok: bool) -> None:
    """Close an output container (FFmpeg writes the trailer). A failure is MediaError after a
    successful encode; after a failed one the encode's own error is the one that matters."""
    try:
        container.close()
    except Exception as e:  # finishing the file (trailer) failed
        if ok:
            raise MediaError(f"{p}: could not finish writing ({_short(e)})") from e


def write_video(
    path: PathLike,
    frames: Iterable[np.ndarray],
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    codec: str = "libx264",
    audio_codec: str = "auto",
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
) -> None:
    """Encode RGB frames (each (H, W, 3) uint8, all the same size) and an optional audio track.

    ``audio`` is (N,) mono or (N, 2) stereo, float in [-1, 1] or int16, at ``sample_rate``; it is
    interleaved with the video by time. ``options`` go to the video encoder (e.g. {"crf": "18"}).
    yuv420p needs an even width and height. See the module docstring for codec/container pairs.
    ``audio_codec="auto"`` picks aac (mp4, mkv, mov, ...), libopus (webm) or pcm_s16le (avi), see
    ``auto_audio_codec``. Written to a temporary name, then renamed (``fnac.fileio.atomic_path``): an
    interrupted write leaves no half file at ``path``.
    """
    import av

    p = Path(path)
    if not fps or fps <= 0:
        raise MediaError(f"{p}: fps must be > 0, got {fps}")
    a = _as_stereo_or_mono(audio, p) if audio is not None else None
    if audio_codec == "auto":
        audio_codec = auto_audio_codec(p.suffix)
    if a is not None and audio_codec in ("libopus", "opus") and int(sample_rate) not in _OPUS_RATES:
        raise MediaError(f"{p}: Opus encodes only {sorted(_OPUS_RATES)} Hz, got sample_rate={sample_rate}")
    rate = Fraction(fps).limit_denominator(10000)
    with atomic_path(p) as tmp:
        try:
            container = av.open(str(tmp), mode="w")
        except Exception as e:
            raise MediaError(f"{p}: cannot create output file ({_short(e)})") from e
        ok = False
        try:
            enc = _VideoEncoder(container, p, rate, codec, pix_fmt, options, a, audio_codec, sample_rate)
            for frame in frames:
                enc.add(frame)
            enc.finish()
            ok = True
        except (av.error.FFmpegError, OSError) as e:  # errors of the caller's frame iterable pass through
            raise MediaError(f"{p}: encoding failed ({_short(e)})") from e
        finally:
            _close_container(container, p, ok)
