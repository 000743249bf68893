"""fnac.serve through starlette's TestClient: upload, job, result video and JSON; limits, file types,
filename sanitising, JSON errors."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from starlette.testclient import TestClient

from fnac import media
from fnac.config import ModelConfig
from fnac.models.fnac import FNAC
from fnac.serve import Limits, create_app, sanitize_filename

FPS = 8
N = 8


def _clip(path, audio=True, seconds=N / FPS, amp=0.3):
    sr = 16000
    t = np.arange(int(seconds * sr)) / sr
    a = (amp * np.sin(2 * np.pi * 440 * t)).astype(np.float32) if audio else None
    frames = [np.full((32, 48, 3), 30 * i % 256, np.uint8) for i in range(int(seconds * FPS))]
    media.write_video(path, frames, FPS, audio=a, sample_rate=sr)
    return path


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FNAC(ModelConfig(width=8, embed_dim=16), load_pretrained=False).eval()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return _clip(tmp_path_factory.mktemp("serve") / "clip.mp4")


def _app(model, tmp_path, **kw):
    limits = Limits(window=1.0, every=2, **kw)
    return create_app(model, limits, tmp_path / "work")


def _wait(client, jid, polls=1200):
    """Poll the job until it finishes (bounded by a number of polls, not by wall time)."""
    for _ in range(polls):
        r = client.get(f"/api/jobs/{jid}")
        assert r.status_code == 200
        job = r.json()
        if job["state"] in ("done", "error"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {jid} did not finish: {job}")


def test_page_and_info(model, tmp_path):
    with TestClient(_app(model, tmp_path)) as c:
        r = c.get("/")
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        assert 'id="result-video"' in r.text and 'id="peak-track"' in r.text
        assert c.get("/static/app.js").status_code == 200
        info = c.get("/api/info").json()
        assert info["max_upload_bytes"] == 50 * 1024 * 1024 and ".mp4" in info["accepted"]
        assert info["video_type"] == "video/mp4"


def test_upload_localize_and_fetch(model, clip, tmp_path):
    with TestClient(_app(model, tmp_path)) as c:
        r = c.post("/api/jobs", params={"filename": "my clip.mp4"}, content=clip.read_bytes())
        assert r.status_code == 202, r.text
        job = _wait(c, r.json()["job"])
        assert job["state"] == "done", job
        res = job["result"]
        assert job["filename"] == "my clip.mp4"
        assert len(res["frames"]) == N // 2  # every 2nd frame
        assert res["summary"]["video"] == "my clip.mp4"  # the user's name, not the server's path
        for f in res["frames"]:
            assert 0 <= f["peak"][0] <= 1 and 0 <= f["peak"][1] <= 1
        v = c.get(res["video_url"])
        assert v.status_code == 200 and v.headers["content-type"] == "video/mp4"
        assert v.content[4:8] == b"ftyp"
        saved = tmp_path / "saved.mp4"
        saved.write_bytes(v.content)
        info = media.probe(saved)
        assert info.has_audio and info.n_frames == N
        # byte ranges (the video element seeks with them)
        part = c.get(res["video_url"], headers={"Range": "bytes=0-99"})
        assert part.status_code == 206 and len(part.content) == 100
        js = c.get(res["json_url"])
        assert js.status_code == 200 and len(js.json()["frames"]) == N // 2


def test_too_big_is_413_and_nothing_kept(model, clip, tmp_path):
    data = clip.read_bytes()
    with TestClient(_app(model, tmp_path, max_upload_mb=len(data) / 2 / 2**20)) as c:
        r = c.post("/api/jobs", params={"filename": "clip.mp4"}, content=data)
        assert r.status_code == 413 and "limit" in r.json()["error"]

        # a chunked body without Content-Length: cut off while streaming
        def chunks():
            for i in range(0, len(data), 4096):
                yield data[i : i + 4096]

        r = c.post("/api/jobs", params={"filename": "clip.mp4"}, content=chunks())
        assert r.status_code == 413 and "limit" in r.json()["error"]
    jobs = tmp_path / "work" / "jobs"
    assert not jobs.exists() or not any(jobs.iterdir())


def test_too_long_is_refused_from_the_probe(model, tmp_path):
    long = _clip(tmp_path / "long.mp4", seconds=2.0)
    with TestClient(_app(model, tmp_path, max_seconds=1.0)) as c:
        r = c.post("/api/jobs", params={"filename": "long.mp4"}, content=long.read_bytes())
        assert r.status_code == 413 and "2.0 s" in r.json()["error"]


@pytest.mark.parametrize(
    "name, body, status, words",
    [
        ("notes.txt", b"hello", 415, "unsupported file type"),
        ("noext", b"hello", 415, "unsupported file type"),
        ("fake.mp4", b"\x00\x01garbage" * 100, 415, "not a video"),
        ("empty.mp4", b"", 400, "empty"),
    ],
)
def test_wrong_type(model, tmp_path, name, body, status, words):
    with TestClient(_app(model, tmp_path)) as c:
        r = c.post("/api/jobs", params={"filename": name}, content=body)
        assert r.status_code == status
        assert words in r.json()["error"]


def test_no_audio_track_is_422(model, tmp_path):
    mute = _clip(tmp_path / "mute.mp4", audio=False)
    with TestClient(_app(model, tmp_path)) as c:
        r = c.post("/api/jobs", params={"filename": "mute.mp4"}, content=mute.read_bytes())
        assert r.status_code == 422 and "no audio track" in r.json()["error"]


def test_failed_job_reports_the_user_filename(model, tmp_path):
    silent = _clip(tmp_path / "quiet.mp4", amp=0.0)
    with TestClient(_app(model, tmp_path)) as c:
        r = c.post("/api/jobs", params={"filename": "quiet.mp4"}, content=silent.read_bytes())
        assert r.status_code == 202
        job = _wait(c, r.json()["job"])
        assert job["state"] == "error"
        assert job["error"].startswith("quiet.mp4:") and "silent" in job["error"]
        assert str(tmp_path) not in job["error"]
        assert c.get(f"/api/jobs/{job['job']}/overlay").status_code == 404


def test_path_components_in_filenames(model, clip, tmp_path):
    with TestClient(_app(model, tmp_path)) as c:
        for evil, clean in (
            ("../../evil/clip.mp4", "clip.mp4"),
            ("..\\..\\win\\x.mp4", "x.mp4"),
            ("/etc/passwd.mp4", "passwd.mp4"),
        ):
            r = c.post("/api/jobs", params={"filename": evil}, content=clip.read_bytes())
            assert r.status_code == 202, r.text
            assert r.json()["filename"] == clean
            _wait(c, r.json()["job"])
    # nothing was written outside the work folder
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()
    stored = sorted(p.name for p in (tmp_path / "work" / "jobs").glob("*/input*"))
    assert stored == ["input.mp4"] * 3


def test_sanitize_filename():
    assert sanitize_filename("../../a/b/c.mp4") == "c.mp4"
    assert sanitize_filename("C:\\Users\\x\\film.webm") == "film.webm"
    assert sanitize_filename("..hidden.mp4") == "hidden.mp4"
    assert sanitize_filename("a b;rm -rf *.mp4") == "a b_rm -rf _.mp4"
    assert sanitize_filename("") == "upload" and sanitize_filename("..") == "upload"
    assert sanitize_filename("\u00e9t\u00e9.mp4") == "_t_.mp4"
    long = sanitize_filename("x" * 300 + ".mp4")
    assert len(long) == 100 and long.endswith(".mp4")


def test_unknown_and_malformed_job_ids(model, tmp_path):
    with TestClient(_app(model, tmp_path)) as c:
        r = c.get("/api/jobs/" + "0" * 32)
        assert r.status_code == 404 and "error" in r.json()
        assert c.get("/api/jobs/..%2F..%2Fetc/overlay").status_code == 404
        assert c.get("/api/jobs/abc/result.json").status_code == 404


def test_serve_command_checks_before_binding(tmp_path, capsys):
    from fnac.cli import main
    from fnac.commands.serve import _is_loopback

    assert main(["serve", "--checkpoint", str(tmp_path / "none.pt")]) == 1
    assert "none.pt" in capsys.readouterr().err
    assert main(["serve", "--checkpoint", "x.pt", "--port", "70000"]) == 1
    assert "--port" in capsys.readouterr().err
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("localhost")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("192.168.1.2")


def test_app_uses_the_checkpoints_image_size_and_sample_rate(model, clip, tmp_path):
    """A checkpoint trained at 64 px on 8 kHz audio: the app, given the config `load_model` read beside
    the model, localizes at 64 px on the audio resampled to 8 kHz and says where the run's data was;
    without a config (the authors' files) it uses the reference's 224 px and the file's 16 kHz."""
    from fnac import inference as inf
    from fnac.checkpoint import save_checkpoint
    from fnac.config import Config

    cfg = Config(model=ModelConfig(width=8, embed_dim=16))
    cfg.data.image_size, cfg.data.sample_rate, cfg.data.root = 64, 8000, "data/my_set"
    path = tmp_path / "small.pt"
    save_checkpoint(path, model, cfg, epoch=1, step=0)
    loaded = inf.load_model(path)
    cases = [
        (dict(config=loaded.config, checkpoint=path), 64, 8000, "data/my_set"),
        (dict(), 224, 16000, None),
    ]
    for i, (kw, size, rate, root) in enumerate(cases):
        app = create_app(loaded.model, Limits(window=1.0, every=4), tmp_path / f"work{i}", **kw)
        with TestClient(app) as c:
            info = c.get("/api/info").json()
            assert info["image_size"] == size and info["checkpoint"]["trained_on"] == root
            r = c.post("/api/jobs", params={"filename": "clip.mp4"}, content=clip.read_bytes())
            assert r.status_code == 202, r.text
            job = _wait(c, r.json()["job"])
            assert job["state"] == "done", job
            summary = job["result"]["summary"]
            assert (summary["image_size"], summary["sample_rate"], summary["window"]) == (size, rate, 1.0)
