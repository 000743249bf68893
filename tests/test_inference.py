"""fnac.inference and `fnac localize`: clips in several containers and codecs written by the test,
a tiny random model, window centring checked against scipy on an independently cut window, writers,
bad inputs, and the temporal score on hand-made results."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.signal
import torch
from PIL import Image

from fnac import media
from fnac.checkpoint import save_checkpoint
from fnac.cli import main
from fnac.config import Config, ModelConfig
from fnac.errors import DataError, MediaError
from fnac.inference import (
    FrameResult,
    VideoResult,
    localize_pair,
    localize_video,
    pick_stills,
    score_clip,
    write_json,
    write_overlay_video,
    write_stills,
)
from fnac.models.fnac import FNAC

FPS = 8  # frame times i / 8 are exact binary fractions
SIZE = 64  # model input: 2 x 2 maps, fast


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FNAC(ModelConfig(width=8, embed_dim=16), load_pretrained=False).eval()


def _frames(n: int, h: int = 32, w: int = 48) -> list[np.ndarray]:
    """Smooth frames (a moving gradient), friendly to lossy codecs."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for i in range(n):
        r = (xx * 255 / w + 10 * i) % 256
        g = yy * 255 / h
        b = np.full_like(r, 40 + 5 * i)
        out.append(np.stack([r, g, b], axis=-1).astype(np.uint8))
    return out


def _sweep(seconds: float, sr: int, amp: float = 0.4) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * (300 * t + 200 * t**2))).astype(np.float32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    n = 8  # 1 s
    sweep = _sweep(n / FPS, 16000)
    stereo = np.stack([_sweep(n / FPS, 11025), 0.5 * _sweep(n / FPS, 11025)], axis=1)
    specs = {
        "mp4": dict(codec="libx264", audio=sweep, sample_rate=16000),
        "mkv": dict(codec="libx264", audio=stereo, sample_rate=11025),  # stereo AAC at 11.025 kHz
        "webm": dict(codec="libvpx-vp9", audio=_sweep(n / FPS, 48000), sample_rate=48000),  # Opus
        "avi": dict(codec="mpeg4", audio=_sweep(n / FPS, 12345), sample_rate=12345),  # PCM, odd rate
    }
    out = {"n": n, "sweep": sweep}
    for ext, kw in specs.items():
        p = d / f"clip_{ext}.{ext}"
        media.write_video(p, _frames(n), FPS, **kw)
        out[ext] = p
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, model):
    p = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    cfg = Config(model=ModelConfig(width=8, embed_dim=16))
    cfg.data.image_size = SIZE
    cfg.data.audio_duration = 1.0
    save_checkpoint(p, model, cfg, epoch=0, step=0)
    return p


# --------------------------------------------------------------------------------------- video


@pytest.mark.parametrize("ext", ["mp4", "mkv", "webm", "avi"])
def test_every_frame_of_each_container(model, clips, ext):
    r = localize_video(model, clips[ext], every=1, window=1.0, batch_size=5, image_size=SIZE, progress=False)
    n = clips["n"]
    assert [f.index for f in r.frames] == list(range(n))
    assert np.allclose([f.time for f in r.frames], np.arange(n) / FPS, atol=1e-3)
    assert r.fps == pytest.approx(FPS) and (r.width, r.height) == (48, 32)
    assert r.image_size == SIZE and r.n_frames == n
    for f in r.frames:
        assert f.map.shape == (SIZE // 32, SIZE // 32)
        assert np.isfinite(f.map).all()
        assert f.map224.shape == (224, 224) and f.map224.min() == 0.0 and f.map224.max() == 1.0
        x, y = f.peak
        x1, y1, x2, y2 = f.box
        assert 0 <= x1 <= x <= x2 <= 1 and 0 <= y1 <= y <= y2 <= 1
        # max_cos is the largest cosine: raw map * tau, within [-1, 1]
        assert f.max_cos == pytest.approx(float(f.map.max()) * model.tau, rel=1e-5)
        assert -1.0 - 1e-5 <= f.max_cos <= 1.0 + 1e-5


def test_every_k_and_batch_size_do_not_change_maps(model, clips):
    a = localize_video(model, clips["mp4"], every=1, window=1.0, batch_size=16, image_size=SIZE, progress=False)
    b = localize_video(model, clips["mp4"], every=3, window=1.0, batch_size=2, image_size=SIZE, progress=False)
    assert [f.index for f in b.frames] == [0, 3, 6]
    for fb in b.frames:
        fa = a.frames[fb.index]
        assert np.allclose(fa.map, fb.map, atol=1e-4)


def test_window_centred_on_each_frame(model, tmp_path):
    """The spectrogram the model hears for the frame at time t equals scipy's spectrogram of the
    samples [start, start + L) with start = max(t - w/2, 0) (moved left at the end), cut by hand."""
    sr, seconds, window = 16000, 3.0, 1.0
    x = (0.3 * np.random.default_rng(5).standard_normal(int(sr * seconds))).clip(-1, 1).astype(np.float32)
    path = tmp_path / "noise.avi"  # PCM: the decoded audio is the signal up to 16-bit rounding
    media.write_video(path, _frames(int(seconds * FPS)), FPS, audio=x, sample_rate=sr, codec="mpeg4")

    seen: list[torch.Tensor] = []
    orig = model.encode_audio

    def spy(specs):
        seen.append(specs.detach().clone())
        return orig(specs)

    model.encode_audio = spy
    try:
        r = localize_video(model, path, every=3, window=window, batch_size=4, image_size=SIZE, progress=False)
    finally:
        del model.encode_audio
    specs = torch.cat(seen)  # (n, 1, 257, T)
    assert specs.shape[0] == len(r.frames) == 8  # t = 0 (clamped at 0) ... 2.625 s (moved left)
    L = int(sr * window)
    times = [f.index / FPS for f in r.frames]
    assert times[0] - window / 2 < 0 and times[-1] + window / 2 > seconds  # both edge rules are exercised
    for k, f in enumerate(r.frames):
        t = f.index / FPS
        start = min(int(max(t - window / 2, 0.0) * sr), len(x) - L)
        _, _, s = scipy.signal.spectrogram(x[start : start + L].astype(np.float64), fs=sr, nperseg=512, noverlap=274)
        expected = np.log(s + 1e-7) / 12
        got = specs[k, 0].double().numpy()
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < 2e-3, f"frame {f.index} at {t} s"
        # one hop (238 samples) off would not match
        if start + 238 + L <= len(x):
            _, _, s2 = scipy.signal.spectrogram(
                x[start + 238 : start + 238 + L].astype(np.float64), fs=sr, nperseg=512, noverlap=274
            )
            assert np.abs(got - np.log(s2 + 1e-7) / 12).max() > 0.1


def test_short_clip_is_tiled_with_a_warning(model, tmp_path):
    sr = 16000
    x = (0.3 * np.random.default_rng(2).standard_normal(sr // 2)).clip(-1, 1).astype(np.float32)  # 0.5 s
    path = tmp_path / "short.avi"
    media.write_video(path, _frames(4), FPS, audio=x, sample_rate=sr, codec="mpeg4")
    seen: list[torch.Tensor] = []
    orig = model.encode_audio
    model.encode_audio = lambda s: (seen.append(s.clone()), orig(s))[1]
    try:
        r = localize_video(model, path, window=1.0, image_size=SIZE, progress=False)
    finally:
        del model.encode_audio
    assert any("shorter than the 1 s window" in w for w in r.warnings)
    tiled = np.concatenate([x, x])[:sr]  # the reference tiles the clip from its start
    _, _, s = scipy.signal.spectrogram(tiled.astype(np.float64), fs=sr, nperseg=512, noverlap=274)
    for spec in torch.cat(seen):  # every frame hears the same tiled window
        assert np.abs(spec[0].double().numpy() - np.log(s + 1e-7) / 12).max() < 2e-3


# ------------------------------------------------------------------------------------- writers


def test_overlay_video_keeps_audio_and_frame_count(model, clips, tmp_path):
    r = localize_video(model, clips["mp4"], every=2, window=1.0, image_size=SIZE, progress=False)
    out = write_overlay_video(r, tmp_path / "o.mp4")
    info = media.probe(out)
    assert info.has_audio and info.has_video
    assert (info.width, info.height) == (48, 32) and info.fps == pytest.approx(FPS)
    frames = [np.asarray(img) for _, _, img in media.iter_video_frames(out)]
    assert len(frames) == clips["n"]
    # the audio is the source's (AAC twice: correlation, not equality)
    a, sr = media.read_audio(out)
    src = clips["sweep"]
    assert sr == 16000 and abs(len(a) - len(src)) < 0.02 * sr
    m = min(len(a), len(src))
    assert np.corrcoef(a[:m], src[:m])[0, 1] > 0.95
    # the heat map is there: frame 0 is far from the source frame, near jet colours blended at 0.5
    src0 = _frames(1)[0].astype(float)
    assert np.abs(frames[0].astype(float) - src0).mean() > 15


def test_output_audio_rates(model, clips, tmp_path):
    # 11.025 kHz stereo in: AAC takes the rate; 12.345 kHz (PCM in avi): resampled to 48 kHz for AAC
    for ext, rate in (("mkv", 11025), ("avi", 48000)):
        r = localize_video(model, clips[ext], every=4, window=1.0, image_size=SIZE, progress=False)
        out = write_overlay_video(r, tmp_path / f"{ext}.mp4")
        info = media.probe(out)
        assert info.has_audio and info.sample_rate == rate
        assert info.duration == pytest.approx(clips["n"] / FPS, abs=0.1)
    webm = write_overlay_video(r, tmp_path / "o.webm")
    assert media.probe(webm).sample_rate == 48000


def test_stills_and_json(model, clips, tmp_path):
    r = localize_video(model, clips["mp4"], every=1, window=1.0, image_size=SIZE, progress=False)
    assert pick_stills(12, 4) == [0, 4, 7, 11]
    assert pick_stills(8, 4) == [0, 2, 5, 7]
    assert pick_stills(3, 10) == [0, 1, 2]
    assert pick_stills(5, 0) == []
    paths = write_stills(r, tmp_path / "stills", 4)
    assert [p.name for p in paths] == [f"clip_mp4_frame{i:06d}.png" for i in (0, 2, 5, 7)]
    for p in paths:
        with Image.open(p) as im:
            assert im.size == (48, 32)
    doc = json.loads(write_json(r.to_dict(), tmp_path / "r.json").read_text())
    assert len(doc["frames"]) == 8
    assert set(doc["frames"][0]) == {"index", "time", "peak", "box", "max_cos", "confidence"}
    s = doc["summary"]
    assert s["frames_localized"] == 8 and s["video_fps"] == FPS and s["window"] == 1.0
    assert s["fps_achieved"] > 0
    assert s["mean_peak"] == pytest.approx(np.mean([f.peak for f in r.frames], axis=0).tolist(), abs=1e-4)


# ----------------------------------------------------------------------------------- bad inputs


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, clips):
    d = tmp_path_factory.mktemp("bad")
    out = {"missing": d / "nope.mp4"}
    media.write_video(d / "mute.mp4", _frames(4), FPS)  # no audio track
    out["mute"] = d / "mute.mp4"
    media.write_video(d / "silent.mp4", _frames(8), FPS, audio=np.zeros(16000, np.float32), sample_rate=16000)
    out["silent"] = d / "silent.mp4"
    media.write_video(d / "tiny.avi", _frames(1), FPS, audio=_sweep(0.05, 16000), sample_rate=16000, codec="mpeg4")
    out["tiny"] = d / "tiny.avi"
    (d / "garbage.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    out["garbage"] = d / "garbage.mp4"
    data = clips["mp4"].read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    out["truncated"] = d / "truncated.mp4"
    (d / "notes.txt").write_text("not a video\n")
    out["text"] = d / "notes.txt"
    Image.fromarray(_frames(1)[0]).save(d / "still.png")
    out["image"] = d / "still.png"
    (d / "empty.mkv").write_bytes(b"")
    out["empty"] = d / "empty.mkv"
    return out


@pytest.mark.parametrize(
    "kind, words",
    [
        ("missing", "not found"),
        ("mute", "no audio track"),
        ("silent", "silent"),
        ("tiny", "0.1 s"),
        ("garbage", "cannot"),
        ("truncated", ""),
        ("text", "cannot"),
        ("image", "no audio track"),
        ("empty", "empty"),
    ],
)
def test_bad_inputs_raise_media_error(model, bad_files, kind, words):
    path = bad_files[kind]
    with pytest.raises(MediaError) as e:
        localize_video(model, path, window=1.0, image_size=SIZE, progress=False)
    assert path.name in str(e.value) and words in str(e.value)


def test_silent_allowed_on_request(model, bad_files):
    r = localize_video(
        model, bad_files["silent"], every=4, window=1.0, image_size=SIZE, progress=False, allow_silent=True
    )
    assert len(r.frames) == 2


def test_cli_bad_inputs_exit_1_without_traceback(checkpoint, bad_files, tmp_path, capsys):
    for kind in ("missing", "mute", "silent", "garbage", "truncated", "text"):
        rc = main(
            ["localize", str(bad_files[kind]), "--checkpoint", str(checkpoint), "--out", str(tmp_path), "--quiet"]
        )
        err = capsys.readouterr().err
        assert rc == 1, kind
        assert bad_files[kind].name in err and "error" in err and "Traceback" not in err
    rc = main(["localize", "--image", str(bad_files["image"]), "--checkpoint", str(checkpoint)])
    assert rc == 1 and "--audio" in capsys.readouterr().err
    rc = main(["localize", str(bad_files["silent"]), "--checkpoint", str(tmp_path / "none.pt")])
    assert rc == 1 and "none.pt" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- CLI


def test_cli_video(checkpoint, clips, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(
        [
            "localize",
            str(clips["mkv"]),
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(out),
            "--every",
            "2",
            "--stills",
            "2",
            "--quiet",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0
    assert "4 frames localized" in text and "frames/s" in text
    doc = json.loads((out / "clip_mkv.json").read_text())
    assert doc["summary"]["image_size"] == SIZE  # from the checkpoint's config
    assert doc["summary"]["window"] == 1.0  # the checkpoint's data.audio_duration
    assert media.probe(out / "clip_mkv_overlay.mp4").has_audio
    assert len(list((out / "stills").glob("*.png"))) == 2


def test_cli_pair(checkpoint, tmp_path, capsys):
    img = tmp_path / "scene.png"
    Image.fromarray(_frames(1, 40, 60)[0]).save(img)
    wav = tmp_path / "sound.wav"
    media.write_wav(wav, np.stack([_sweep(2.0, 22050), _sweep(2.0, 22050)], axis=1), 22050)
    rc = main(
        [
            "localize",
            "--image",
            str(img),
            "--audio",
            str(wav),
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 0 and "peak at" in capsys.readouterr().out
    with Image.open(tmp_path / "o" / "scene_overlay.png") as im:
        assert im.size == (60, 40)
    doc = json.loads((tmp_path / "o" / "scene.json").read_text())
    assert doc["frames"][0]["time"] == pytest.approx(1.0)  # the window is centred in the clip
    assert doc["summary"]["image"] == str(img) and doc["summary"]["audio"] == str(wav)
    assert set(doc["frames"][0]) >= {"peak", "box", "confidence"}


def test_pair_matches_video_frame(model, tmp_path):
    """An image + audio pair gives the map of a one-frame video whose audio is centred the same way."""
    sr = 16000
    x = _sweep(2.0, sr)
    frame = _frames(1, 64, 64)[0]
    Image.fromarray(frame).save(tmp_path / "f.png")
    media.write_wav(tmp_path / "a.wav", x, sr)
    fr = localize_pair(model, tmp_path / "f.png", tmp_path / "a.wav", window=1.0, image_size=SIZE)
    assert fr.time == pytest.approx(1.0)
    from fnac import audio, vision

    spec = audio.to_model_input(torch.from_numpy(scipy_spec(x[sr // 2 : sr // 2 + sr], sr)).float())
    with torch.no_grad():
        img = model.encode_image(vision.test_transform(Image.fromarray(frame), SIZE)[None])
        aud = model.encode_audio(spec[None, None])
    expected = torch.einsum("bchw,bc->bhw", img, aud)[0].numpy() / model.tau
    assert np.allclose(fr.map, expected, atol=1e-3)


def scipy_spec(x: np.ndarray, sr: int) -> np.ndarray:
    return scipy.signal.spectrogram(x.astype(np.float64), fs=sr, nperseg=512, noverlap=274)[2]


# ------------------------------------------------------------------------------- temporal score


def _hand_result(peaks, times=None, indices=None) -> VideoResult:
    """Frames whose raw map is already 224 x 224 (upsampling is then the identity): the top half is
    0.5 except a 56 x 56 square (x 56..111, y 28..83) at 1; the bottom half is 0. Median threshold
    (sorted value at 224*224/2 = 25088 = the first non-zero) -> the prediction is the top half."""
    m = np.zeros((224, 224), np.float32)
    m[:112] = 0.5
    m[28:84, 56:112] = 1.0
    n = len(peaks)
    times = times if times is not None else [i / 10 for i in range(n)]
    indices = indices if indices is not None else list(range(n))
    frames = [
        FrameResult(index=i, time=t, map=m, peak=p, box=(0, 0, 1, 0.5), max_cos=0.5)
        for i, t, p in zip(indices, times, peaks)
    ]
    return VideoResult(
        path="clip.mp4",
        frames=frames,
        fps=10.0,
        n_frames=n,
        width=224,
        height=224,
        duration=n / 10,
        audio_duration=n / 10,
        sample_rate=16000,
        every=1,
        window=3.0,
        image_size=224,
        elapsed=1.0,
    )


def _gt(boxes, silent=None):
    frames = []
    for i, b in enumerate(boxes):
        f = {"index": i, "time": i / 10, "object": 0, "class": "a", "bbox": [b]}
        if silent is not None:
            f["objects"] = [{"object": 0, "class": "a", "bbox": b}, {"object": 1, "class": "b", "bbox": silent[i]}]
        frames.append(f)
    return {"name": "clip_000", "fps": 10, "frames": frames}


def test_score_clip_by_hand(tmp_path):
    square = [0.25, 0.125, 0.5, 0.375]  # pixels x 56..111, y 28..83: inside the predicted top half
    bottom = [0.25, 0.75, 0.5, 1.0]  # outside the prediction
    res = _hand_result(peaks=[(0.3, 0.2), (0.3, 0.2), (0.3, 0.9), (0.9, 0.9)])
    gt = _gt([square, bottom, bottom, square], silent=[bottom, square, square, [0.8, 0.8, 1.0, 1.0]])
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    s = score_clip(res, tmp_path / "gt.json")
    # cIoU: inter 56*56 = 3136; gt 3136; predicted outside the box 224*112 - 3136 = 21952 -> 0.125
    assert [p["ciou"] for p in s["per_frame"]] == pytest.approx([0.125, 0.0, 0.0, 0.125])
    assert s["mean_ciou"] == pytest.approx(0.0625) and s["ciou50"] == 0.0
    # peaks: in the box, in the silent square, in the sounding bottom box, in the silent corner box
    assert [p["peak_in_box"] for p in s["per_frame"]] == [True, False, True, False]
    assert s["peak_in_box"] == 0.5 and s["peak_in_silent"] == pytest.approx(0.5)
    assert s["frames"] == 4 and s["clip"] == "clip_000"


def test_score_clip_matches_by_time_and_checks_format():
    square = [0.25, 0.125, 0.5, 0.375]
    far = [0.7, 0.7, 0.9, 0.9]
    # result frame indices that do not exist in the gt: matched by the nearest time
    res = _hand_result(peaks=[(0.3, 0.2), (0.3, 0.2)], times=[0.0, 0.29], indices=[100, 101])
    s = score_clip(res, _gt([square, far, far, square]))
    assert [p["gt_index"] for p in s["per_frame"]] == [0, 3]
    assert s["peak_in_box"] == 1.0
    with pytest.raises(DataError):
        score_clip(res, {"frames": []})
    with pytest.raises(DataError):
        score_clip(res, {"frames": [{"time": 0.0, "bbox": [1, 2]}]})
    with pytest.raises(DataError):
        score_clip(res, "/nonexistent/gt.json")


def test_cli_scores_a_synthetic_clip(checkpoint, tiny_synth, tmp_path, capsys):
    clip = sorted((tiny_synth / "clips").glob("*.mp4"))[0]
    rc = main(
        [
            "localize",
            str(clip),
            "--checkpoint",
            str(checkpoint),
            "--gt",
            str(clip.with_suffix(".json")),
            "--out",
            str(tmp_path),
            "--every",
            "4",
            "--no-video",
            "--stills",
            "0",
            "--quiet",
        ]
    )
    assert rc == 0
    assert "peak in the sounding object's box" in capsys.readouterr().out
    doc = json.loads((tmp_path / f"{clip.stem}.json").read_text())
    s = doc["score"]
    assert s["frames"] == len(doc["frames"]) > 0
    assert 0.0 <= s["peak_in_box"] <= 1.0 and 0.0 <= s["mean_ciou"] <= 1.0


# ------------------------------------------------------------------ settings from the run config


def test_inference_defaults_are_the_reference_without_a_config():
    from fnac.inference import InferenceDefaults

    d = InferenceDefaults.from_config(None)  # the authors' files carry no config
    assert (d.image_size, d.alpha, d.sample_rate, d.window) == (224, "drop", 0, 3.0)
    assert d == InferenceDefaults()
    # a config left at its defaults says the same as the reference
    assert InferenceDefaults.from_config(Config()) == InferenceDefaults(224, "drop", 0, 3.0)


def test_inference_defaults_come_from_the_data_section():
    from fnac.inference import InferenceDefaults

    cfg = Config()
    cfg.data.image_size, cfg.data.alpha, cfg.data.sample_rate, cfg.data.audio_duration = 96, "white", 8000, 1.5
    d = InferenceDefaults.from_config(cfg)
    assert (d.image_size, d.alpha, d.sample_rate, d.window) == (96, "white", 8000, 1.5)
    assert isinstance(d.image_size, int) and isinstance(d.window, float)
    with pytest.raises(AttributeError):  # frozen: one checkpoint's settings cannot be changed in passing
        d.image_size = 224


def test_load_model_returns_the_config_beside_the_model(checkpoint):
    from fnac.inference import load_model

    loaded = load_model(checkpoint)
    assert loaded.config.data.image_size == SIZE and loaded.config.data.audio_duration == 1.0
    assert loaded.epoch == 0 and not loaded.model.training
    assert not hasattr(loaded.model, "run_config")  # carried beside the model, not on it
    model, cfg = loaded  # unpacks as (model, config)
    assert model is loaded.model and cfg is loaded.config


def test_cli_pair_uses_the_checkpoints_settings(model, tmp_path, capsys):
    """`fnac localize --image --audio` with a checkpoint whose run config sets a 64 px input, 8 kHz
    audio, a 1.5 s window and alpha "white": the peak's cosine is the one computed by hand from the
    image composited over white and the 1.5 s window centred in the clip resampled to 8 kHz."""
    from fnac import audio as faudio
    from fnac import vision

    cfg = Config(model=ModelConfig(width=8, embed_dim=16))
    cfg.data.image_size, cfg.data.sample_rate, cfg.data.audio_duration, cfg.data.alpha = SIZE, 8000, 1.5, "white"
    ckpt = tmp_path / "settings.pt"
    save_checkpoint(ckpt, model, cfg, epoch=4, step=0)
    rgb = _frames(1, 40, 60)[0]
    a = np.full((40, 60), 255, np.uint8)
    a[:, :30] = 0  # the left half transparent: "white" makes it white, "drop" keeps the colours
    Image.fromarray(np.dstack([rgb, a]), "RGBA").save(tmp_path / "scene.png")
    media.write_wav(tmp_path / "sound.wav", _sweep(2.0, 16000), 16000)
    out = tmp_path / "o"
    argv = ["localize", "--image", str(tmp_path / "scene.png"), "--audio", str(tmp_path / "sound.wav")]
    assert main([*argv, "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    capsys.readouterr()
    doc = json.loads((out / "scene.json").read_text())
    s = doc["summary"]
    assert (s["image_size"], s["sample_rate"], s["window"]) == (SIZE, 8000, 1.5)

    x, sr = media.read_audio(tmp_path / "sound.wav", 8000)  # 2 s at 8 kHz: 16000 samples
    assert sr == 8000 and len(x) == 16000
    # centred 1.5 s window: samples [0.25 s, 1.75 s) = [2000, 14000)
    spec = faudio.to_model_input(torch.from_numpy(scipy_spec(x[2000:14000], sr)).float())

    def peak_cos(pixels):
        with torch.no_grad():
            img = model.encode_image(vision.test_transform(Image.fromarray(pixels), SIZE)[None])
            aud = model.encode_audio(spec[None, None])
        return float(torch.einsum("bchw,bc->bhw", img, aud).max())

    white = np.where(a[..., None] == 0, np.uint8(255), rgb)
    # max_cos is written with 5 decimals; the tiny random model's cosines are small (about 0.004)
    assert doc["frames"][0]["max_cos"] == pytest.approx(peak_cos(white), abs=2e-5)
    assert abs(peak_cos(white) - peak_cos(rgb)) > 1e-4  # "drop" would be told apart


def test_localize_video_takes_its_settings_from_the_defaults_passed(model, clips):
    """None settings come from `defaults`, explicit ones win, and no defaults means the reference's
    (224 px, the file's 16 kHz, 3 s: the clip of 1 s is then tiled, with a warning)."""
    from fnac.inference import InferenceDefaults

    d = InferenceDefaults(image_size=SIZE, sample_rate=8000, window=0.5)
    r = localize_video(model, clips["mp4"], every=4, progress=False, defaults=d)
    assert (r.image_size, r.sample_rate, r.window) == (SIZE, 8000, 0.5) and not r.warnings
    assert r.frames[0].map.shape == (SIZE // 32, SIZE // 32)
    r = localize_video(
        model, clips["mp4"], every=4, window=1.0, image_size=32, sample_rate=0, progress=False, defaults=d
    )
    assert (r.image_size, r.sample_rate, r.window) == (32, 16000, 1.0)
    r = localize_video(model, clips["mp4"], every=4, progress=False)
    assert (r.image_size, r.sample_rate, r.window) == (224, 16000, 3.0)
    assert r.frames[0].map.shape == (7, 7) and any("shorter than the 3 s window" in w for w in r.warnings)
