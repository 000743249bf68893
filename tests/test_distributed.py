"""Distributed training on CPU (gloo, 2 processes): global negatives by gathering embeddings, and a
`fit` run under torchrun that writes one log/checkpoint set and resumes.

What test (a) compares, and why. With loss.gather, each of 2 processes embeds its B/2 samples, the
embeddings are all-gathered (with gradient) and every process computes the FNAC loss over the global
batch of B. That loss and the gradients of every model parameter (after DDP averages them over the
processes) must equal those of one process computing the loss over the same B samples. Train mode
would make the two runs differ for reasons unrelated to gathering (BatchNorm batch statistics over B/2
instead of B, different dropout masks), so the forward runs in eval mode: BatchNorm uses its running
statistics and dropout is off, and the comparison isolates the gather and its backward. All four loss
terms carry weight (100 each, as after the warm-up), so every path of the loss is compared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from conftest import tiny_overrides
from fnac.config import Config, ModelConfig

B = 8  # global batch
WEIGHTS = {"contrastive": 1.0, "fns1": 100.0, "tns": 100.0, "fns2": 100.0}


def _setup() -> tuple[Config, dict]:
    cfg = Config()
    cfg.model = ModelConfig(width=8, embed_dim=16)
    cfg.loss.gather = True
    g = torch.Generator().manual_seed(7)
    batch = {
        "image": torch.randn(B, 3, 64, 64, generator=g),
        "spec": torch.randn(B, 1, 257, 20, generator=g),
        "id": [f"s{i}" for i in range(B)],
    }
    return cfg, batch


def _model(cfg: Config) -> torch.nn.Module:
    from fnac.models.fnac import FNAC

    torch.manual_seed(0)
    m = FNAC(cfg.model, load_pretrained=False)
    with torch.no_grad():  # non-trivial BatchNorm running statistics, identical in every process
        g = torch.Generator().manual_seed(1)
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.copy_(0.1 * torch.randn(mod.running_mean.shape, generator=g))
                mod.running_var.copy_(1.0 + 0.1 * torch.rand(mod.running_var.shape, generator=g))
    return m.eval()


def _loss_and_grads(model: torch.nn.Module, core: torch.nn.Module, batch: dict, cfg: Config) -> dict:
    from fnac.losses import weighted_total
    from fnac.train import compute_terms

    terms = compute_terms(model, batch, cfg, torch.device("cpu"))
    total = weighted_total(terms, WEIGHTS)
    total.backward()
    return {
        "terms": {k: float(v.detach()) for k, v in terms.items()},
        "total": float(total.detach()),
        "grads": {n: p.grad.detach().clone() for n, p in core.named_parameters()},
    }


def _gather_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as tdist

    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        cfg, batch = _setup()
        n = B // world
        local = {
            "image": batch["image"][rank * n : (rank + 1) * n],
            "spec": batch["spec"][rank * n : (rank + 1) * n],
            "id": batch["id"][rank * n : (rank + 1) * n],
        }
        core = _model(cfg)
        ddp = torch.nn.parallel.DistributedDataParallel(core)
        res = _loss_and_grads(ddp, core, local, cfg)
        # the same step without gathering: each process sees only its own B/2 negatives
        cfg.loss.gather = False
        from fnac.train import compute_terms

        with torch.no_grad():
            res["local_contrastive"] = float(compute_terms(core, local, cfg, torch.device("cpu"))["contrastive"])
        torch.save(res, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        tdist.destroy_process_group()


@pytest.mark.slow
def test_gathered_loss_and_gradients_match_one_process(tmp_path):
    cfg, batch = _setup()
    core = _model(cfg)
    ref = _loss_and_grads(core, core, batch, cfg)  # one process, the whole batch (gather is the identity)

    mp.spawn(_gather_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        res = torch.load(tmp_path / f"rank{rank}.pt")
        for k, v in ref["terms"].items():
            assert res["terms"][k] == pytest.approx(v, rel=1e-5, abs=1e-7), (rank, k)
        assert res["total"] == pytest.approx(ref["total"], rel=1e-5)
        assert set(res["grads"]) == set(ref["grads"])
        for name, g in ref["grads"].items():
            scale = float(g.abs().max()) + 1e-12
            assert torch.allclose(res["grads"][name], g, rtol=1e-4, atol=1e-5 * scale), (rank, name)
        # gathering matters: the local-negatives loss of B/2 samples is not the global one
        assert abs(res["local_contrastive"] - ref["terms"]["contrastive"]) > 0.05
    assert ref["total"] > ref["terms"]["contrastive"]  # the regularisers are weighted in


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "fnac",
        "train",
        "--config",
        "small",
        *args,
    ]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_fit_under_torchrun_writes_once_and_resumes(tiny_synth, tmp_path):
    from fnac.checkpoint import read_checkpoint

    base = tiny_overrides(tiny_synth, tmp_path / "run") + ["train.device=cpu", "loss.gather=true", "train.log_every=1"]
    r = _torchrun(base + ["train.epochs=1"], tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = tmp_path / "run"
    recs = _records(out)
    starts = [x for x in recs if x["kind"] == "start"]
    assert len(starts) == 1 and starts[0]["world_size"] == 2
    steps = [x["step"] for x in recs if x["kind"] == "step"]
    assert steps == list(range(1, 48 // 8 + 1))  # each global step logged once (rank 0 only)
    assert len([x for x in recs if x["kind"] == "epoch"]) == 1
    ck = read_checkpoint(out / "latest.pt")
    assert ck["epoch"] == 1 and ck["world_size"] == 2 and ck["step"] == 6
    assert (out / "best.pt").is_file()
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "best.pt",
        "config.yaml",
        "curves.png",
        "latest.pt",
        "log.jsonl",
    ]

    r = _torchrun(base + ["train.epochs=2", "--resume"], tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    recs = _records(out)
    assert [x["kind"] for x in recs].count("resume") == 1
    assert [x["kind"] for x in recs].count("start") == 1
    steps = [x["step"] for x in recs if x["kind"] == "step"]
    assert steps == list(range(1, 2 * 6 + 1))
    ck = read_checkpoint(out / "latest.pt")
    assert ck["epoch"] == 2 and ck["step"] == 12
    assert [x["epoch"] for x in recs if x["kind"] == "epoch"] == [0, 1]
