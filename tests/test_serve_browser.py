"""The demo page in headless Chromium (playwright-core driven from Node): upload a clip, wait for the
result, check that the result video plays and the peak track is drawn.

Needs Debian's chromium and node_modules/playwright-core (`bash scripts/setup_browser.sh`); skipped
with the reason otherwise. Set FNAC_SCREENSHOT=path.png to keep a screenshot of the page.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fnac import media
from fnac.config import ModelConfig
from fnac.models.fnac import FNAC
from fnac.serve import Limits, create_app

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
PLAYWRIGHT = ROOT / "node_modules" / "playwright-core"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
NODE = shutil.which("node")
FPS, N = 8, 16

DRIVER = r"""
const { chromium } = require(process.env.PW_PATH);
(async () => {
  const out = {};
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 800, height: 1000 } });
    await page.goto(process.env.URL);
    await page.waitForFunction(() => document.getElementById('limits').textContent.length > 0);
    await page.setInputFiles('#file', process.env.CLIP);
    await page.click('#go');
    await page.waitForSelector('body[data-state="done"], body[data-state="error"]', { timeout: 40000 });
    out.state = await page.getAttribute('body', 'data-state');
    out.error = await page.textContent('#error');
    if (out.state === 'done') {
      await page.waitForFunction(() => document.getElementById('result-video').readyState >= 2, null,
                                 { timeout: 10000 });
      out.readyState = await page.evaluate(() => document.getElementById('result-video').readyState);
      out.t0 = await page.evaluate(async () => {
        const v = document.getElementById('result-video'); v.muted = true; await v.play(); return v.currentTime; });
      await page.waitForFunction(() => document.getElementById('result-video').currentTime > 0.25, null,
                                 { timeout: 10000 });
      out.t1 = await page.evaluate(() => document.getElementById('result-video').currentTime);
      out.videoSize = await page.evaluate(() => {
        const v = document.getElementById('result-video'); v.pause(); return [v.videoWidth, v.videoHeight]; });
      out.points = await page.getAttribute('#peak-track', 'data-points');
      out.polylines = await page.$$eval('#peak-track polyline',
                                        (ls) => ls.map((l) => l.getAttribute('points').trim().split(/\s+/).length));
      out.resultVisible = await page.isVisible('#result');
      out.statusVisible = await page.isVisible('#status');
      if (process.env.SHOT) await page.screenshot({ path: process.env.SHOT, fullPage: true });
    }
    // a wrong file type is refused with a message on the page
    await page.setInputFiles('#file', process.env.BAD);
    out.badError = await page.textContent('#error');
    out.badVisible = await page.isVisible('#error');
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(out));
})().catch((e) => { console.log(JSON.stringify({ fatal: String(e) })); process.exit(1); });
"""


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return "chromium is not installed (bash scripts/setup_browser.sh)"
    if NODE is None:
        return "node is not installed"
    if not PLAYWRIGHT.is_dir():
        return "node_modules/playwright-core is absent (bash scripts/setup_browser.sh)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    import uvicorn

    torch.manual_seed(0)
    model = FNAC(ModelConfig(width=8, embed_dim=16), load_pretrained=False).eval()
    app = create_app(model, Limits(window=1.0, every=2), tmp_path / "work")
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    for _ in range(200):  # until it listens
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}/"
    srv.should_exit = True
    th.join(timeout=10)


def test_page_uploads_and_plays(server, tmp_path):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    clip = tmp_path / "clip.mp4"
    sr = 16000
    t = np.arange(int(N / FPS * sr)) / sr
    yy, xx = np.mgrid[0:96, 0:128]
    frames = [np.stack([(xx * 2 + 8 * i) % 256, yy * 2, np.full_like(xx, 90)], -1).astype(np.uint8) for i in range(N)]
    media.write_video(clip, frames, FPS, audio=(0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sample_rate=sr)
    bad = tmp_path / "notes.txt"
    bad.write_text("not a video")
    script = tmp_path / "drive.js"
    script.write_text(DRIVER)
    env = {
        **os.environ,
        "PW_PATH": str(PLAYWRIGHT),
        "CHROMIUM": CHROMIUM,
        "URL": server,
        "CLIP": str(clip),
        "BAD": str(bad),
        "SHOT": os.environ.get("FNAC_SCREENSHOT", ""),
    }
    proc = subprocess.run([NODE, str(script)], env=env, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no output from the driver: {proc.stdout}\n{proc.stderr}"
    out = json.loads(lines[-1])
    assert "fatal" not in out, out
    assert out["state"] == "done", out
    assert out["readyState"] >= 2
    assert out["t1"] > out["t0"]  # the video plays
    assert out["videoSize"] == [128, 96]
    assert out["points"] == str(N // 2) and out["polylines"] == [N // 2, N // 2]
    assert out["resultVisible"] and not out["statusVisible"]
    assert out["badVisible"] and "unsupported file type" in out["badError"]
