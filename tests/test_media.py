"""media: audio decoding from wav/flac/containers, video frames, probe, writers, clear errors.

References are built independently: signals written with soundfile directly, hand-computed channel
means and clipping, numpy FFT peaks for resampling, flat grey frames whose level is known.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from fnac import media
from fnac.errors import MediaError

SR = 16000
FPS = 10
N_FRAMES = 20  # 2 s of video
W, H = 64, 48


def _tone(freq: float, seconds: float = 2.0, amp: float = 0.5, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _frames(n: int = N_FRAMES) -> list[np.ndarray]:
    """Flat grey frames; frame i has level 20 + 10 i, so a decoded frame tells its index."""
    return [np.full((H, W, 3), 20 + 10 * i, np.uint8) for i in range(n)]


def _level(img) -> float:
    return float(np.asarray(img, dtype=np.float64).mean())


def _mid(x: np.ndarray) -> slice:
    """Compare away from the ends (codec edge effects)."""
    return slice(len(x) // 8, len(x) - len(x) // 8)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    left, right = _tone(440), _tone(660, amp=0.3)
    out = {"left": left, "right": right}
    specs = {
        "mp4": dict(codec="libx264", audio=left),
        "mkv": dict(codec="libx264", audio=left),
        "avi": dict(codec="mpeg4", audio=left),
        "webm": dict(codec="libvpx-vp9", audio=left),
        "stereo.mp4": dict(codec="libx264", audio=np.stack([left, right], axis=1)),
        "silent.mp4": dict(codec="libx264", audio=None),
    }
    for name, kw in specs.items():
        path = d / f"clip.{name}"
        media.write_video(path, _frames(), FPS, sample_rate=SR, **kw)
        out[name] = path
    return out


# ------------------------------------------------------------------------------------- wav / flac


def test_wav_roundtrip_pcm16(tmp_path):
    x = _tone(440, 1.0)
    media.write_wav(tmp_path / "a.wav", x, SR)
    y, sr = media.read_audio(tmp_path / "a.wav")
    assert sr == SR and y.dtype == np.float32 and y.shape == x.shape
    assert np.abs(y - x).max() <= 1.0 / 32768 + 1e-7  # one PCM_16 step


def test_flac_read_exact(tmp_path):
    ints = np.random.default_rng(0).integers(-32768, 32767, size=8000, dtype=np.int16)
    sf.write(tmp_path / "a.flac", ints, 8000, subtype="PCM_16")
    y, sr = media.read_audio(tmp_path / "a.flac")
    assert sr == 8000
    np.testing.assert_array_equal(y, ints.astype(np.float32) / 32768.0)


@pytest.mark.parametrize("backend", ["soundfile", "pyav"])
def test_stereo_average_then_clip(tmp_path, backend):
    # The reference mixes the channels down first and saturates the mix (its decoder's downmix), so a
    # float file beyond full scale gives mean-then-clip, not clip-then-mean. Hand-computed per segment:
    #   L     R     mean -> clipped   (clipping each channel first would give)
    #   1.5   0     0.75    0.75      0.5
    #   1.5   0.9   1.2     1.0       0.95
    #  -3.0   1.0  -1.0    -1.0       0.0
    #  -0.2   0.6   0.2     0.2       0.2
    seg = 250
    left = np.repeat(np.array([1.5, 1.5, -3.0, -0.2], np.float32), seg)
    right = np.repeat(np.array([0.0, 0.9, 1.0, 0.6], np.float32), seg)
    sf.write(tmp_path / "s.wav", np.stack([left, right], 1), SR, subtype="FLOAT")
    if backend == "soundfile":
        y, _ = media.read_audio(tmp_path / "s.wav")
    else:  # the FFmpeg path (any other container) must agree
        x, _ = media._decode_audio_av(tmp_path / "s.wav")
        y = media._finish_audio(x, tmp_path / "s.wav")
    expected = np.repeat(np.array([0.75, 1.0, -1.0, 0.2], np.float32), seg)
    np.testing.assert_allclose(y, expected, atol=1e-6)


def test_resample_length_and_pitch(tmp_path):
    x = _tone(1000, 1.0, sr=SR)
    sf.write(tmp_path / "a.wav", x, SR, subtype="FLOAT")
    y, sr = media.read_audio(tmp_path / "a.wav", sample_rate=8000)
    assert sr == 8000
    assert abs(len(y) - 8000) <= 32
    spectrum = np.abs(np.fft.rfft(y[: 8000 // 2 * 2]))
    peak_hz = np.argmax(spectrum) * 8000 / (len(y) // 2 * 2)
    assert abs(peak_hz - 1000) < 3
    y44, sr44 = media.read_audio(tmp_path / "a.wav", sample_rate=44100)
    assert sr44 == 44100 and abs(len(y44) - 44100) <= 64


def test_read_audio_nan_is_error(tmp_path):
    x = np.zeros(100, np.float32)
    x[50] = np.nan
    sf.write(tmp_path / "nan.wav", x, SR, subtype="FLOAT")
    with pytest.raises(MediaError, match="nan.wav.*NaN"):
        media.read_audio(tmp_path / "nan.wav")


def test_write_wav_rejects_bad_input(tmp_path):
    with pytest.raises(MediaError, match="NaN"):
        media.write_wav(tmp_path / "x.wav", np.array([0.0, np.nan]), SR)
    with pytest.raises(MediaError, match="shape"):
        media.write_wav(tmp_path / "x.wav", np.zeros((2, 2, 2)), SR)


# ------------------------------------------------------------------------------------ containers


@pytest.mark.parametrize("name, tol", [("mp4", 0.01), ("mkv", 0.01), ("avi", 1e-4)])
def test_read_audio_from_video(videos, name, tol):
    y, sr = media.read_audio(videos[name])
    ref = videos["left"]
    assert sr == SR
    assert len(ref) <= len(y) <= len(ref) + 1024  # at most one codec frame of padding (mkv keeps it)
    s = _mid(ref)
    assert np.abs(y[s] - ref[s]).max() < tol  # sample-aligned: no encoder delay left in


def test_read_audio_from_webm_opus(videos):
    y, sr = media.read_audio(videos["webm"])
    assert sr == 48000  # Opus decodes at 48 kHz
    y16, sr16 = media.read_audio(videos["webm"], sample_rate=SR)
    ref = videos["left"]
    assert sr16 == SR and abs(len(y16) - len(ref)) <= 400
    s = _mid(ref)
    assert np.abs(y16[s] - ref[s]).max() < 0.05


def test_read_audio_stereo_video_is_averaged(videos):
    y, _ = media.read_audio(videos["stereo.mp4"])
    ref = (videos["left"] + videos["right"]) / 2
    s = _mid(ref)
    assert np.abs(y[s] - ref[s]).max() < 0.02
    # and differs clearly from either channel alone
    assert np.abs(y[s] - videos["left"][s]).max() > 0.1


def test_probe(videos):
    info = media.probe(videos["stereo.mp4"])
    assert info.has_video and info.has_audio
    assert (info.width, info.height) == (W, H)
    assert info.fps == pytest.approx(FPS)
    assert info.n_frames == N_FRAMES
    assert info.sample_rate == SR and info.channels == 2
    assert info.duration == pytest.approx(2.0, abs=0.07)
    silent = media.probe(videos["silent.mp4"])
    assert silent.has_video and not silent.has_audio and silent.sample_rate == 0


def test_probe_wav(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros((24000, 2), np.float32), 24000)
    info = media.probe(tmp_path / "a.wav")
    assert info.has_audio and not info.has_video
    assert info.duration == pytest.approx(1.0, abs=1e-3)
    assert (info.sample_rate, info.channels) == (24000, 2)


@pytest.mark.parametrize("name", ["mp4", "avi", "webm", "mkv"])
def test_iter_video_frames(videos, name):
    frames = list(media.iter_video_frames(videos[name]))
    assert [i for i, _, _ in frames] == list(range(N_FRAMES))
    np.testing.assert_allclose([t for _, t, _ in frames], np.arange(N_FRAMES) / FPS, atol=1e-3)
    for i, _, img in frames:
        assert img.mode == "RGB" and img.size == (W, H)
        assert abs(_level(img) - (20 + 10 * i)) < 4


def test_iter_video_frames_every(videos):
    got = [(i, round(t, 3)) for i, t, _ in media.iter_video_frames(videos["mp4"], every=3)]
    assert got == [(i, round(i / FPS, 3)) for i in range(0, N_FRAMES, 3)]


def test_read_frame_at(videos):
    p = videos["mp4"]
    assert abs(_level(media.read_frame_at(p)) - (20 + 10 * (N_FRAMES // 2))) < 4  # middle frame
    assert abs(_level(media.read_frame_at(p, 0.0)) - 20) < 4
    assert abs(_level(media.read_frame_at(p, 0.35)) - (20 + 10 * 3)) < 4  # shown from 0.3 to 0.4
    assert abs(_level(media.read_frame_at(p, 99.0)) - (20 + 10 * (N_FRAMES - 1))) < 4
    with pytest.raises(MediaError):
        media.read_frame_at(p, -1.0)


# ----------------------------------------------------------------------------------------- errors


def test_missing_file():
    with pytest.raises(MediaError, match="nope.mp4.*not found"):
        media.read_audio("/definitely/nope.mp4")
    with pytest.raises(MediaError, match="not found"):
        media.probe("/definitely/nope.mp4")
    with pytest.raises(MediaError, match="not found"):
        next(media.iter_video_frames("/definitely/nope.mp4"))


@pytest.mark.parametrize("name", ["empty.wav", "empty.mp4"])
def test_empty_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(MediaError, match=f"{name}.*empty"):
        media.read_audio(tmp_path / name)


@pytest.mark.parametrize("name", ["junk.wav", "junk.flac", "junk.mp4", "junk.webm"])
def test_garbage_file(tmp_path, name):
    (tmp_path / name).write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError, match=name):
        media.read_audio(tmp_path / name)


def test_truncated_mp4(tmp_path, videos):
    data = videos["mp4"].read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="cut.mp4"):
        media.read_audio(tmp_path / "cut.mp4")


def test_no_audio_track(videos):
    with pytest.raises(MediaError, match="no audio track"):
        media.read_audio(videos["silent.mp4"])


def test_no_video_track(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(1600, np.float32), SR)
    with pytest.raises(MediaError, match="no video track"):
        list(media.iter_video_frames(tmp_path / "a.wav"))


def test_zero_samples(tmp_path):
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), SR)
    with pytest.raises(MediaError, match="zero.wav.*no samples"):
        media.read_audio(tmp_path / "zero.wav")


def test_write_video_errors(tmp_path):
    with pytest.raises(MediaError, match="even"):
        media.write_video(tmp_path / "odd.mp4", [np.zeros((5, 6, 3), np.uint8)], FPS)
    with pytest.raises(MediaError, match="expected 64x48"):
        mixed = [np.zeros((48, 64, 3), np.uint8), np.zeros((50, 64, 3), np.uint8)]
        media.write_video(tmp_path / "mix.mp4", mixed, FPS)
    with pytest.raises(MediaError, match="no frames"):
        media.write_video(tmp_path / "none.mp4", [], FPS)
    with pytest.raises(MediaError, match="uint8"):
        media.write_video(tmp_path / "f.mp4", [np.zeros((48, 64, 3), np.float32)], FPS)
    with pytest.raises(MediaError, match="unavailable"):
        media.write_video(tmp_path / "c.mp4", _frames(2), FPS, codec="no_such_codec")
    assert not any(tmp_path.iterdir())  # failed writes leave nothing behind


def test_write_video_caller_errors_pass_through_and_leave_nothing(tmp_path):
    def frames():
        yield np.zeros((48, 64, 3), np.uint8)
        raise KeyError("caller bug")

    with pytest.raises(KeyError, match="caller bug"):
        media.write_video(tmp_path / "v.mp4", frames(), FPS)
    with pytest.raises(MediaError, match="Opus"):
        media.write_video(
            tmp_path / "o.webm", _frames(2), FPS, codec="libvpx-vp9", audio=_tone(440, 0.2, sr=44100), sample_rate=44100
        )
    assert not any(tmp_path.iterdir())


def test_writers_leave_only_the_target(tmp_path):
    media.write_video(tmp_path / "v.mp4", _frames(3), FPS, audio=_tone(440, 0.3))
    media.write_wav(tmp_path / "a.wav", _tone(440, 0.1), SR)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "v.mp4"]


def test_wav_name_with_other_content_falls_back_to_ffmpeg(tmp_path, videos):
    (tmp_path / "disguised.wav").write_bytes(videos["avi"].read_bytes())  # pcm in avi, named .wav
    y, sr = media.read_audio(tmp_path / "disguised.wav")
    ref = videos["left"]
    assert sr == SR and np.abs(y[_mid(ref)] - ref[_mid(ref)]).max() < 1e-4
