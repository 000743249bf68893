"""CUDA checks (skipped without a GPU; run on a lent GPU machine, results in docs/performance.md).

(1) The loss terms of one batch on the GPU equal the CPU's (TF32 off, same weights, same inputs).
(2) Scoring on the GPU (metrics.evaluate_batch_torch) agrees with numpy's scoring of the same raw maps
    to float rounding: the GPU upsamples on the GPU, numpy's path on the CPU, and bicubic kernels differ
    in the last bits, which can move a pixel across the median threshold (on an H200: one sample of 16
    differed, by 3.4e-5; the CPU-only test in test_fast_eval.py asserts exact equality).
(3) A short fit on the GPU with bf16 autocast and channels-last trains, logs finite losses, and its
    checkpoint loads on the CPU and evaluates to the numbers it had on the GPU.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import tiny_overrides
from fnac.checkpoint import load_checkpoint
from fnac.config import load_config, resolve_config_path
from fnac.data import build_dataset, collate
from fnac.evaluate import Protocol, evaluate_model
from fnac.models.fnac import FNAC
from fnac.train import compute_terms, fit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _cfg(root, out, extra=()):
    return load_config(resolve_config_path("small"), tiny_overrides(root, out) + list(extra))


def test_loss_terms_on_gpu_equal_cpu(tiny_synth, tmp_path, no_tf32):
    cfg = _cfg(tiny_synth, tmp_path, ["model.vision_dropout=0.0"])
    torch.manual_seed(0)
    model = FNAC(cfg.model).eval()  # eval: no dropout, batch-norm running statistics
    ds = build_dataset(cfg.data, "train", train=True)
    batch, _ = collate([ds[i] for i in range(8)])
    with torch.no_grad():
        cpu = {k: float(v) for k, v in compute_terms(model, batch, cfg, torch.device("cpu")).items()}
        gpu_model = model.to("cuda")
        gpu = {k: float(v) for k, v in compute_terms(gpu_model, batch, cfg, torch.device("cuda")).items()}
    assert set(cpu) >= {"contrastive", "fns1", "tns", "fns2"}
    for k in cpu:
        assert gpu[k] == pytest.approx(cpu[k], rel=1e-4, abs=1e-6), k
    assert cpu["contrastive"] > 0


def test_gpu_scoring_equals_numpy_scoring(tiny_synth):
    cfg = load_config(
        resolve_config_path("small"),
        [f"data.root={tiny_synth}", "data.image_size=64", "model.width=8", "model.embed_dim=16"],
    )
    torch.manual_seed(1)
    model = FNAC(cfg.model).eval().to("cuda")
    ds = build_dataset(cfg.data, "test", train=False)
    from test_fast_eval import numpy_evaluate  # the numpy scoring oracle

    fast = evaluate_model(model, ds, Protocol(), batch_size=8, device="cuda", progress=False)
    slow = numpy_evaluate(model, ds, Protocol(), batch_size=8, device="cuda")
    a = [r["ciou"] for r in fast.per_sample]
    b = [r["ciou"] for r in slow.per_sample]
    assert len(a) == len(ds) and len(set(a)) > 3  # non-degenerate maps: the comparison can fail
    assert np.abs(np.asarray(a) - np.asarray(b)).max() < 1e-3
    assert sum(x == y for x, y in zip(a, b)) >= len(a) // 2  # most samples bit-identical
    for k in fast.metrics:
        assert fast.metrics[k] == pytest.approx(slow.metrics[k], abs=1e-3), k


def test_fit_on_gpu_bf16_channels_last_and_load_on_cpu(tiny_synth, tmp_path):
    out = tmp_path / "run"
    cfg = _cfg(tiny_synth, out, ["train.device=cuda", "train.amp=bf16", "train.channels_last=true", "train.epochs=2"])
    fit(cfg)
    recs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in recs if r["kind"] == "step"]
    assert steps and all(math.isfinite(r["loss"]) for r in steps)
    last = [r for r in recs if r["kind"] == "epoch"][-1]
    model = load_checkpoint(out / "latest.pt", torch.device("cpu"))
    assert next(model.parameters()).device.type == "cpu"
    val = build_dataset(cfg.data, "val", train=False)
    on_cpu = evaluate_model(model, val, Protocol(), batch_size=8, device="cpu", progress=False, baselines=False)
    # the logged validation ran on the GPU in float32 eval mode; the CPU's maps may differ in the last
    # bits (TF32 convolutions on the GPU), so compare the mean cIoU loosely and the sample count exactly
    assert last["val_n"] == len(on_cpu.per_sample)
    assert np.isclose(last["val_mean_ciou"], on_cpu.metrics["mean_ciou"], atol=0.02)
