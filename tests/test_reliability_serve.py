"""Hostile input to `fnac serve` and `fnac localize`: decompression-bomb videos (huge frames in a tiny file),
very long clips, disguised and truncated files, multipart bodies, path components in file names. Each is
refused with a clear message before anything is decoded, and nothing is written outside the work folder
(docs/reliability.md)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from starlette.testclient import TestClient

from fnac import inference, media
from fnac.checkpoint import save_checkpoint
from fnac.cli import main
from fnac.config import Config, ModelConfig
from fnac.errors import MediaError
from fnac.models.fnac import FNAC
from fnac.serve import Limits, create_app

SR = 16000


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FNAC(ModelConfig(width=8, embed_dim=16), load_pretrained=False).eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR)).astype(np.float32)
    out = {}
    # 2 frames of 4104 x 4104 (16.8 M pixels each, past MAX_VIDEO_PIXELS) in a file of a few dozen kB
    big = np.zeros((4104, 4104, 3), np.uint8)
    out["bomb"] = d / "bomb.mp4"
    media.write_video(out["bomb"], [big, big], 2, audio=tone, sample_rate=SR, options={"preset": "ultrafast"})
    # 2 frames 20 minutes apart: a tiny file that lasts 1200 s
    small = [np.zeros((32, 48, 3), np.uint8)] * 2
    out["long"] = d / "long.mp4"
    media.write_video(out["long"], small, 1 / 600, audio=tone, sample_rate=SR)
    out["ok"] = d / "ok.mp4"
    media.write_video(
        out["ok"], [np.full((32, 48, 3), 40 * i, np.uint8) for i in range(4)], 4, audio=tone, sample_rate=SR
    )
    return out


def _client(model, tmp_path, **kw) -> TestClient:
    return TestClient(create_app(model, Limits(window=1.0, every=2, **kw), tmp_path / "work"))


def _no_jobs_left(tmp_path) -> bool:
    jobs = tmp_path / "work" / "jobs"
    return not jobs.exists() or not any(jobs.iterdir())


def test_serve_refuses_huge_frames_from_the_probe(model, files, tmp_path):
    data = files["bomb"].read_bytes()
    assert len(data) < 500_000  # tiny on disk, 2 x 50 MB once decoded
    with _client(model, tmp_path) as c:
        r = c.post("/api/jobs", params={"filename": "bomb.mp4"}, content=data)
        assert r.status_code == 413
        assert "4104x4104 are too large" in r.json()["error"]
    assert _no_jobs_left(tmp_path)


def test_localize_refuses_huge_frames_before_decoding(model, files, tmp_path, capsys):
    with pytest.raises(MediaError, match="bomb.mp4: frames of 4104x4104 are too large"):
        inference.localize_video(model, files["bomb"], window=1.0, progress=False)
    ck = tmp_path / "m.pt"
    cfg = Config()
    cfg.model = ModelConfig(width=8, embed_dim=16)
    save_checkpoint(ck, model, cfg)
    assert (
        main(
            [
                "localize",
                str(files["bomb"]),
                "--checkpoint",
                str(ck),
                "--out",
                str(tmp_path / "o"),
                "--window",
                "1",
                "--quiet",
            ]
        )
        == 1
    )
    assert "too large to decode safely" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_serve_refuses_a_very_long_clip_from_the_probe(model, files, tmp_path):
    assert media.probe(files["long"]).duration >= 1200 - 1
    with _client(model, tmp_path, max_seconds=60) as c:
        r = c.post("/api/jobs", params={"filename": "long.mp4"}, content=files["long"].read_bytes())
        assert r.status_code == 413 and "the limit is 60 s" in r.json()["error"]
    assert _no_jobs_left(tmp_path)


def test_localize_refuses_a_very_long_clip_before_decoding(model, files, tmp_path, capsys):
    with pytest.raises(MediaError, match="long.mp4: the clip lasts 1200 s, more than the limit of 600 s"):
        inference.localize_video(model, files["long"], window=1.0, progress=False, max_seconds=600)
    ck = tmp_path / "m.pt"
    cfg = Config()
    cfg.model = ModelConfig(width=8, embed_dim=16)
    save_checkpoint(ck, model, cfg)
    assert (
        main(
            [
                "localize",
                str(files["long"]),
                "--checkpoint",
                str(ck),
                "--out",
                str(tmp_path / "o"),
                "--window",
                "1",
                "--quiet",
                "--max-seconds",
                "600",
            ]
        )
        == 1
    )
    assert "more than the limit of 600 s" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["png_as_mp4", "truncated", "multipart"])
def test_serve_refuses_disguised_or_broken_bodies(model, files, tmp_path, kind):
    ok = files["ok"].read_bytes()
    with _client(model, tmp_path) as c:
        if kind == "png_as_mp4":
            import io

            from PIL import Image

            buf = io.BytesIO()
            Image.new("RGB", (8, 8)).save(buf, format="PNG")
            r = c.post("/api/jobs", params={"filename": "x.mp4"}, content=buf.getvalue())
            assert r.status_code in (415, 422), r.text  # no audio track at best, unreadable at worst
        elif kind == "truncated":
            r = c.post("/api/jobs", params={"filename": "x.mp4"}, content=ok[: len(ok) // 3])
            assert r.status_code == 415 and "x.mp4: not a video file" in r.json()["error"]
        else:  # a browser form post instead of the raw body: the body is not a video
            r = c.post(
                "/api/jobs",
                params={"filename": "x.mp4"},
                files={"file": ("x.mp4", b"\x01\x02garbage" * 200, "video/mp4")},
            )
            assert r.status_code == 415 and "not a video file" in r.json()["error"]
        assert r.headers["content-type"] == "application/json"
    assert _no_jobs_left(tmp_path)


@pytest.mark.parametrize(
    "name, shown",
    [
        ("../../../../tmp/evil.mp4", "evil.mp4"),
        ("..\\..\\windows\\evil.mp4", "evil.mp4"),
        ("/etc/passwd/.mp4", "mp4"),  # leading dots dropped: no extension left, rejected for its type
        ("a" * 5000 + ".mp4", None),
    ],
)
def test_path_components_never_reach_the_disk(model, files, tmp_path, name, shown):
    before = set(os.listdir(tmp_path)) | {"work"}
    with _client(model, tmp_path) as c:
        r = c.post("/api/jobs", params={"filename": name}, content=files["ok"].read_bytes())
        if name.startswith("a" * 10):  # query parameter longer than the server accepts (1000)
            assert r.status_code == 422
            return
        if shown == "mp4":
            assert r.status_code == 415 and "mp4: unsupported file type" in r.json()["error"]
            return
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["filename"] == shown
        job_dir = tmp_path / "work" / "jobs" / job["job"]
        assert (job_dir / "input.mp4").is_file()  # stored under the job folder, not under the given name
        assert not any("evil" in str(p) for p in (tmp_path / "work").rglob("*"))
    assert set(os.listdir(tmp_path)) == before  # nothing written beside the work folder
