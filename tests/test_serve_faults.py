"""`fnac serve` under load and when stopped: the queue bound holds for concurrent uploads, a stalled
upload is answered 408 and its partial file deleted, finished jobs past `keep_jobs` go as jobs
finish, and the default temporary work folder is removed on SIGTERM / SIGINT (docs/reliability.md).
Everything runs against 127.0.0.1 only, with a bounded number of connections and bounded waits."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from starlette.testclient import TestClient

from fnac import media
from fnac.checkpoint import save_checkpoint
from fnac.config import Config, ModelConfig
from fnac.models.fnac import FNAC
from fnac.serve import Limits, create_app

ROOT = Path(__file__).resolve().parents[1]
SR = 16000


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FNAC(ModelConfig(width=8, embed_dim=16), load_pretrained=False).eval()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    p = tmp_path_factory.mktemp("faults") / "clip.mp4"
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR)).astype(np.float32)
    media.write_video(p, [np.full((32, 48, 3), 40 * i, np.uint8) for i in range(4)], 4, audio=tone, sample_rate=SR)
    return p


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live(model, tmp_path):
    """A uvicorn server on 127.0.0.1 in a thread; yields (port, app, work folder) for given limits."""
    import uvicorn

    servers = []

    def start(**kw):
        app = create_app(model, Limits(window=1.0, every=2, **kw), tmp_path / "work")
        port = _free_port()
        srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        th = threading.Thread(target=srv.run, daemon=True)
        th.start()
        servers.append((srv, th))
        for _ in range(200):
            if srv.started:
                break
            time.sleep(0.05)
        assert srv.started
        return port, app, tmp_path / "work"

    yield start
    for srv, th in servers:
        srv.should_exit = True
        th.join(timeout=15)


def _open_upload(port: int, declared: int, first: bytes, name: str = "clip.mp4") -> socket.socket:
    """Start a raw upload that declares `declared` bytes and sends only `first`."""
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(
        (
            f"POST /api/jobs?filename={name} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n"
        ).encode()
        + first
    )
    return s


def _status(s: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = [
        int(v)
        for k, _, v in (ln.partition(b":") for ln in head.split(b"\r\n")[1:])
        if k.strip().lower() == b"content-length"
    ]
    while length and len(rest) < length[0]:
        chunk = s.recv(4096)
        if not chunk:
            break
        rest += chunk
    return int(head.split()[1]), rest


def _job_dirs(work: Path) -> list[Path]:
    jobs = work / "jobs"
    return sorted(jobs.iterdir()) if jobs.exists() else []


def _until(cond, polls: int = 200, pause: float = 0.05) -> bool:
    for _ in range(polls):
        if cond():
            return True
        time.sleep(pause)
    return cond()


def test_uploads_past_the_queue_bound_are_refused_and_nothing_is_written(live, clip):
    port, app, work = live(max_queue=4, body_timeout=20)
    data = clip.read_bytes()
    held = []
    try:
        for k in range(4):  # four uploads in progress: each has sent a part of its body
            held.append(_open_upload(port, len(data), data[:1000]))
            assert _until(lambda: len(_job_dirs(work)) == k + 1), f"upload {k + 1} was not started"
        for _ in range(16):  # 20 uploads in all: the 5th to the 20th are refused at once
            extra = _open_upload(port, len(data), data[:1000])
            code, body = _status(extra)
            extra.close()
            assert code == 429 and b"busy with 4 other videos" in body
        assert len(_job_dirs(work)) == 4  # nothing was written for the refused ones
        assert app.state.manager.active() == 4
    finally:
        for s in held:
            s.close()
    # the dropped uploads give their places back and leave nothing behind
    assert _until(lambda: app.state.manager.active() == 0 and not _job_dirs(work))


def test_stalled_upload_gets_408_and_its_partial_file_is_deleted(live, clip):
    port, app, work = live(body_timeout=1.0)
    s = _open_upload(port, 200_000, b"\0" * 10_000)
    try:
        assert _until(lambda: len(_job_dirs(work)) == 1)
        t0 = time.monotonic()
        code, body = _status(s)
        waited = time.monotonic() - t0
    finally:
        s.close()
    assert code == 408 and b"stalled" in body and b"10000 bytes" in body
    assert waited < 10  # about body_timeout (1 s), far from the old indefinite wait
    assert _until(lambda: not _job_dirs(work))
    assert app.state.manager.active() == 0


def _wait(c, jid):
    for _ in range(1200):
        job = c.get(f"/api/jobs/{jid}").json()
        if job["state"] in ("done", "error"):
            return job
        time.sleep(0.05)
    raise AssertionError(job)


def test_finished_jobs_past_keep_jobs_go_when_a_job_finishes(model, clip, tmp_path):
    app = create_app(model, Limits(window=1.0, every=2, keep_jobs=1), tmp_path / "work")
    with TestClient(app) as c:
        first = c.post("/api/jobs", params={"filename": "a.mp4"}, content=clip.read_bytes()).json()["job"]
        assert _wait(c, first)["state"] == "done"
        second = c.post("/api/jobs", params={"filename": "b.mp4"}, content=clip.read_bytes()).json()["job"]
        assert _wait(c, second)["state"] == "done"
        # no third upload: the first job must already be gone (keep_jobs=1)
        assert _until(lambda: c.get(f"/api/jobs/{first}").status_code == 404)
        assert [p.name for p in _job_dirs(tmp_path / "work")] == [second]
        assert c.get(f"/api/jobs/{second}").json()["state"] == "done"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_removes_the_temporary_work_folder(model, clip, tmp_path, sig):
    ck = tmp_path / "m.pt"
    cfg = Config()
    cfg.model = ModelConfig(width=8, embed_dim=16)
    save_checkpoint(ck, model, cfg)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    port = _free_port()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fnac",
            "serve",
            "--checkpoint",
            str(ck),
            "--port",
            str(port),
            "--window",
            "1",
            "--every",
            "2",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        assert _until(listening, polls=240, pause=0.25), proc.stderr.read() if proc.poll() is not None else ""
        import urllib.request

        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/jobs?filename=a.mp4",
            data=clip.read_bytes(),
            headers={"Content-Type": "application/octet-stream"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 202
        work = [p for p in tmp.iterdir() if p.name.startswith("fnac-serve-")]
        assert len(work) == 1 and any(work[0].rglob("input.mp4"))  # files are there while it runs
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, proc.stderr.read()
    assert not any(p.name.startswith("fnac-serve-") for p in tmp.iterdir())
