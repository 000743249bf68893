"""What a user reads from `fnac localize` and the demo page: the decoded frame count, one JSON shape
for videos and image + audio pairs, warnings printed once (none with --quiet), FFmpeg errors in words,
temporal smoothing (against a hand-computed moving average) and the per-frame confidence."""

from __future__ import annotations

import json
import logging
import math
import time

import numpy as np
import pytest
import torch
from PIL import Image
from starlette.testclient import TestClient

from fnac import inference as inf
from fnac import media
from fnac.checkpoint import save_checkpoint
from fnac.cli import main
from fnac.config import Config, ModelConfig
from fnac.errors import MediaError
from fnac.models.fnac import FNAC
from fnac.serve import Limits, create_app

FPS = 8  # frame times k / 8 are exact binary fractions
SIZE = 64  # 2 x 2 maps
SR = 16000


def _frames(n: int, h: int = 32, w: int = 48) -> list[np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w]
    return [
        np.stack([(xx * 4 + 20 * i) % 256, (yy * 6 + 10 * i) % 256, np.full_like(xx, 90)], -1).astype(np.uint8)
        for i in range(n)
    ]


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(int(round(seconds * SR))) / SR
    return (0.4 * np.sin(2 * np.pi * (300 * t + 200 * t**2))).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FNAC(ModelConfig(width=8, embed_dim=16), load_pretrained=False).eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, model):
    p = tmp_path_factory.mktemp("ck") / "tiny.pt"
    cfg = Config(model=ModelConfig(width=8, embed_dim=16))
    cfg.data.image_size = SIZE
    cfg.data.audio_duration = 1.0
    save_checkpoint(p, model, cfg, epoch=0, step=0)
    return p


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("loc")
    out = {}
    # 10 frames at 8 fps (1.25 s) and 1.6 s of sound: the container's estimate is round(1.6 * 8) = 13
    out["mkv"] = d / "clip.mkv"
    media.write_video(out["mkv"], _frames(10), FPS, audio=_tone(1.6), sample_rate=SR)
    out["mp4"] = d / "clip.mp4"
    media.write_video(out["mp4"], _frames(16), FPS, audio=_tone(2.0), sample_rate=SR)
    out["short"] = d / "short.mp4"  # 0.5 s of sound, shorter than the 1 s window
    media.write_video(out["short"], _frames(4), FPS, audio=_tone(0.5), sample_rate=SR)
    out["png"] = d / "scene.png"
    Image.fromarray(_frames(1, 40, 60)[0]).save(out["png"])
    out["wav"] = d / "sound.wav"
    media.write_wav(out["wav"], _tone(2.0), SR)
    out["garbage"] = d / "garbage.mp4"
    out["garbage"].write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return out


def test_video_frames_counts_the_frames_decoded_with_every(model, files):
    assert media.probe(files["mkv"]).n_frames != 10  # the container's estimate is off (precondition)
    r = inf.localize_video(model, files["mkv"], every=3, window=1.0, image_size=SIZE, progress=False)
    assert [f.index for f in r.frames] == [0, 3, 6, 9]
    assert r.summary()["video_frames"] == 10  # the 10 frames written
    r1 = inf.localize_video(model, files["mkv"], every=1, window=1.0, image_size=SIZE, progress=False)
    assert r1.summary()["video_frames"] == 10


def test_pair_json_has_the_shape_of_the_video_json(checkpoint, files, tmp_path, capsys):
    assert (
        main(
            [
                "localize",
                str(files["mp4"]),
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(tmp_path / "v"),
                "--no-video",
                "--stills",
                "0",
                "--quiet",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "localize",
                "--image",
                str(files["png"]),
                "--audio",
                str(files["wav"]),
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(tmp_path / "p"),
            ]
        )
        == 0
    )
    video = json.loads((tmp_path / "v" / "clip.json").read_text())
    pair = json.loads((tmp_path / "p" / "scene.json").read_text())
    assert set(video) == set(pair) == {"summary", "frames"}
    assert set(video["summary"]) == set(pair["summary"])
    assert set(video["frames"][0]) == set(pair["frames"][0])
    s = pair["summary"]
    assert s["input"] == "image+audio" and video["summary"]["input"] == "video"
    assert s["image"] == str(files["png"]) and s["audio"] == str(files["wav"]) and s["video"] is None
    assert (s["width"], s["height"], s["frames_localized"], s["sample_rate"]) == (60, 40, 1, SR)
    assert s["audio_duration"] == pytest.approx(2.0)
    assert len(pair["frames"]) == 1 and pair["frames"][0]["time"] == pytest.approx(1.0)  # centred in 2 s


def _count(text: str, caplog) -> int:
    return text.count("shorter than the 1 s window") + sum(
        "shorter than the 1 s window" in r.getMessage() for r in caplog.records
    )


def test_short_audio_warning_once_and_not_with_quiet(checkpoint, files, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    args = [str(files["short"]), "--checkpoint", str(checkpoint), "--no-video", "--stills", "0"]
    assert main(["localize", *args, "--out", str(tmp_path / "a")]) == 0
    cap = capsys.readouterr()
    assert _count(cap.err + cap.out, caplog) == 1
    caplog.clear()
    assert main(["localize", *args, "--out", str(tmp_path / "b"), "--quiet"]) == 0
    cap = capsys.readouterr()
    assert _count(cap.err + cap.out, caplog) == 0
    doc = json.loads((tmp_path / "b" / "short.json").read_text())
    assert len(doc["summary"]["warnings"]) == 1  # still in the JSON


def test_ffmpeg_errors_are_said_in_words(checkpoint, files, tmp_path, capsys):
    with pytest.raises(MediaError) as e:
        media.probe(files["garbage"])
    text = str(e.value)
    assert "Errno" not in text and "1094995529" not in text
    assert text == f"{files['garbage']}: cannot open as a media file (invalid data found when processing input)"
    assert main(["localize", str(files["garbage"]), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Errno" not in err and "invalid data found" in err


def _fr(i: int, t: float, m) -> inf.FrameResult:
    return inf.FrameResult(index=i, time=t, map=np.asarray(m, np.float32), peak=(0, 0), box=(0, 0, 1, 1), max_cos=0)


def test_smoothing_is_the_moving_average_of_the_maps():
    maps = [[[1, 0], [0, 0]], [[0, 1], [0, 0]], [[1, 0], [0, 0]], [[0, 0], [0, 1]]]
    frames = [_fr(k, k / FPS, m) for k, m in enumerate(maps)]
    # 0.25 s at 8 fps: +-0.125 s = the frame and its two neighbours (one at the ends)
    out = inf.smooth_frames(frames, 0.25, tau=0.03)
    expected = [
        [[1 / 2, 1 / 2], [0, 0]],
        [[2 / 3, 1 / 3], [0, 0]],
        [[1 / 3, 1 / 3], [0, 1 / 3]],
        [[1 / 2, 0], [0, 1 / 2]],
    ]
    for f, e in zip(out, expected):
        np.testing.assert_allclose(f.map, e, atol=1e-6)
    assert [f.index for f in out] == [0, 1, 2, 3] and [f.time for f in out] == [0, 0.125, 0.25, 0.375]
    assert out[1].peak[0] < 0.5 and out[1].peak[1] < 0.5  # the top-left cell dominates
    assert out[1].max_cos == pytest.approx(2 / 3 * 0.03)
    assert inf.smooth_frames(frames, 0, tau=0.03) is frames  # off by default


def test_smoothing_of_a_video_matches_a_moving_average_of_its_raw_maps(model, files):
    raw = inf.localize_video(model, files["mp4"], window=1.0, image_size=SIZE, progress=False)
    sm = inf.localize_video(model, files["mp4"], window=1.0, image_size=SIZE, progress=False, smooth=0.5)
    assert sm.summary()["smooth"] == 0.5 and raw.summary()["smooth"] == 0.0
    maps = np.stack([f.map for f in raw.frames]).astype(np.float64)
    n = len(maps)
    for k, f in enumerate(sm.frames):  # 0.5 s at 8 fps: frames k-2 .. k+2
        lo, hi = max(0, k - 2), min(n, k + 3)
        np.testing.assert_allclose(f.map, maps[lo:hi].mean(axis=0), rtol=1e-5, atol=1e-6)


def test_confidence_is_the_peak_margin_in_standard_deviations():
    # values 0, 0, 0, 4: median 0, mean 1, std sqrt((3 * 1 + 9) / 4) = sqrt(3)
    assert inf.map_confidence(np.array([[0, 0], [0, 4]])) == pytest.approx(4 / math.sqrt(3))
    assert inf.map_confidence(np.full((3, 3), 7.0)) == 0.0
    # scale and offset do not change it
    assert inf.map_confidence(np.array([[5, 5], [5, 13]])) == pytest.approx(4 / math.sqrt(3))
    f = inf.frame_result(0, 0.0, np.array([[0, 0], [0, 4]], np.float32), tau=0.03)
    assert f.to_dict()["confidence"] == pytest.approx(round(4 / math.sqrt(3), 4))


def test_cli_smooth_option(checkpoint, files, tmp_path, capsys):
    assert (
        main(
            [
                "localize",
                str(files["mp4"]),
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(tmp_path / "s"),
                "--no-video",
                "--stills",
                "0",
                "--quiet",
                "--smooth",
                "0.5",
            ]
        )
        == 0
    )
    doc = json.loads((tmp_path / "s" / "clip.json").read_text())
    assert doc["summary"]["smooth"] == 0.5 and all("confidence" in f for f in doc["frames"])
    assert main(["localize", str(files["mp4"]), "--checkpoint", str(checkpoint), "--smooth", "-1"]) == 1
    assert "--smooth must be" in capsys.readouterr().err


def test_page_smoothing_and_confidence(model, files, tmp_path):
    app = create_app(model, Limits(window=1.0, every=2), tmp_path / "work", checkpoint="/x/synth_best.pt")
    with TestClient(app) as c:
        info = c.get("/api/info").json()
        assert info["checkpoint"]["file"] == "synth_best.pt" and info["max_smooth"] == 10
        for bad in ("-1", "11", "nan"):
            r = c.post("/api/jobs", params={"filename": "a.mp4", "smooth": bad}, content=b"x")
            assert r.status_code == 422, (bad, r.text)
        assert not (tmp_path / "work" / "jobs").exists() or not any((tmp_path / "work" / "jobs").iterdir())
        r = c.post("/api/jobs", params={"filename": "a.mp4", "smooth": "0.5"}, content=files["mp4"].read_bytes())
        assert r.status_code == 202, r.text
        for _ in range(1200):
            job = c.get(f"/api/jobs/{r.json()['job']}").json()
            if job["state"] in ("done", "error"):
                break
            time.sleep(0.05)
        assert job["state"] == "done", job
        assert job["result"]["summary"]["smooth"] == 0.5
        assert all(isinstance(f["confidence"], float) for f in job["result"]["frames"])
        page = c.get("/").text
        assert 'id="smooth"' in page and 'id="confidence-track"' in page
        assert "synthetic" in page and "reference_vggss" in page
