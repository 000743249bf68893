"""The benchmarks' own measuring pieces (bench/): the GPU utilisation sampler and the timed loop."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import _common as C  # noqa: E402
import bench_train  # noqa: E402


def test_parse_utilisation_skips_non_numbers():
    text = "37\n[N/A]\n 80 %\nWARNING: something\n\n100\n"
    assert C.parse_utilisation(text) == [37.0, 80.0, 100.0]


def fake_smi(tmp_path: Path, lines: list[str]) -> Path:
    """An executable that records its arguments, prints `lines` and then waits to be stopped, as
    `nvidia-smi -lms` does."""
    exe = tmp_path / "fake-smi"
    body = "\n".join(f"echo '{x}'" for x in lines)
    exe.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/argv\n{body}\nexec sleep 30\n')
    exe.chmod(0o755)
    return exe


def test_gpu_utilisation_samples_the_window(tmp_path):
    exe = fake_smi(tmp_path, ["50", "[N/A]", "70", "90"])
    with C.GpuUtilisation(torch.device("cuda", 1), interval_ms=50, command=str(exe)) as u:
        deadline = time.time() + 10
        while not (tmp_path / "argv").exists() and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # the lines are written
    assert u.samples == [50.0, 70.0, 90.0]
    assert u.mean == pytest.approx(70.0)
    argv = (tmp_path / "argv").read_text().split()
    assert "--id=1" in argv and "-lms=50" in argv and "--query-gpu=utilization.gpu" in argv


def test_gpu_utilisation_is_none_without_a_gpu_or_tool(tmp_path):
    exe = fake_smi(tmp_path, ["50"])
    with C.GpuUtilisation(torch.device("cpu"), command=str(exe)) as u:  # not a CUDA device: not started
        pass
    assert u.mean is None and not (tmp_path / "argv").exists()
    with C.GpuUtilisation(torch.device("cuda", 0), command=str(tmp_path / "missing")) as u:
        pass
    assert u.mean is None


def test_run_steps_counts_the_wait_for_batches():
    seen = []

    def slow_batches():
        for i in range(100):
            time.sleep(0.05)  # a loader that makes every step wait at least 50 ms
            yield i

    r = bench_train.run_steps(slow_batches(), seen.append, torch.device("cpu"), warmup=2, steps=4, batch=8)
    assert seen == [0, 1, 2, 3, 4, 5]  # 2 untimed steps, then 4 timed ones, in order
    assert r["steps"] == 4 and r["pairs"] == 32
    assert 4 * 0.05 <= r["wait_seconds"] <= r["seconds"]
    assert r["rate"] == pytest.approx(32 / r["seconds"])
    assert r["gpu_util"] is None


def test_on_device_moves_tensors_only():
    b = {"image": torch.zeros(2, 3), "id": ["a", "b"], "sr": 16000}
    out = C.on_device(b, torch.device("cpu"))
    assert out["id"] == ["a", "b"] and out["sr"] == 16000 and torch.equal(out["image"], b["image"])
