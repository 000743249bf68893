"""fit's training loader: (epoch, index) keys, one loader per run whose workers live for the whole run
and still draw each epoch's augmentation, bit-identical to reading in the main process."""

import json
import os

import pytest
import torch

from conftest import tiny_overrides
from fnac.config import load_config, resolve_config_path
from fnac.train import EpochIndexed, EpochSampler, fit, make_train_loader


class _EpochProbe:
    """A split whose sample says which process read it and with which epoch (the minimum of the
    Dataset protocol that the loader touches)."""

    def __init__(self, n: int) -> None:
        self.n, self.epoch = n, 0

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict:
        # the "augmentation": a value that depends on (epoch, index) only, as sample_seed does
        value = torch.tensor([float(100 * self.epoch + index)])
        return {"id": f"{os.getpid()}:{self.epoch}:{index}", "index": index, "image": value}


def test_epoch_sampler_keys_shard_and_skip():
    s = EpochSampler(10, 3, seed=7)
    s.set_epoch(2)
    keys = list(s)
    assert len(keys) == 9 == len(s)  # 3 whole batches of 3, the 10th sample dropped
    assert {e for e, _ in keys} == {2}
    idx = [i for _, i in keys]
    assert len(set(idx)) == 9 and set(idx) <= set(range(10))
    s.set_epoch(2, skip_batches=1)
    assert list(s) == keys[3:] and len(s) == 6  # resuming after one batch: the rest of the same epoch
    s.set_epoch(3)
    assert [i for _, i in s] != idx  # another epoch, another order


def test_epoch_indexed_sets_the_epoch_of_each_key():
    ds = _EpochProbe(5)
    wrapped = EpochIndexed(ds)
    assert len(wrapped) == 5
    assert wrapped[(4, 2)]["image"].item() == 402.0 and ds.epoch == 4
    assert wrapped[(1, 3)]["image"].item() == 103.0


@pytest.mark.parametrize("workers", [0, 2])
def test_train_loader_workers_persist_and_draw_each_epoch(workers, tmp_path):
    cfg = load_config(resolve_config_path("small"), [f"data.num_workers={workers}"])
    ds = _EpochProbe(12)
    sampler = EpochSampler(len(ds), 4, seed=0)
    loader = make_train_loader(ds, 4, sampler, cfg, torch.device("cpu"))
    assert loader.persistent_workers == (workers > 0)
    pids_per_epoch = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = [i for _, i in sampler]
        seen = []
        pids = set()
        for batch, failed in loader:
            assert not failed
            for sid, value in zip(batch["id"], batch["image"][:, 0].tolist()):
                pid, e, i = (int(x) for x in sid.split(":"))
                assert e == epoch and value == 100 * epoch + i  # the epoch reached the process that read it
                seen.append(i)
                pids.add(pid)
        assert seen == order  # the sampler's order, whole batches
        pids_per_epoch.append(pids)
    if workers:
        assert os.getpid() not in pids_per_epoch[0] and len(pids_per_epoch[0]) == workers
        assert pids_per_epoch[0] == pids_per_epoch[1] == pids_per_epoch[2]  # the same workers all run
    else:
        assert pids_per_epoch == [{os.getpid()}] * 3


def _steps(out):
    recs = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in recs if r["kind"] == "step"]


@pytest.mark.slow
def test_fit_with_persistent_workers_matches_reading_in_process(tiny_synth, tmp_path):
    """Loader workers (alive for the whole run) change nothing: the same losses, step by step, as
    reading every sample in the training process, over epochs with augmentation."""
    base = load_config(resolve_config_path("small"), tiny_overrides(tiny_synth, tmp_path / "a"))
    fit(base)
    other = load_config(
        resolve_config_path("small"), tiny_overrides(tiny_synth, tmp_path / "b") + ["data.num_workers=2"]
    )
    fit(other)
    a, b = _steps(tmp_path / "a"), _steps(tmp_path / "b")
    assert a[-1][0] == 3 * 6 and a == b  # 18 steps (3 epochs of 6), logged every 2
