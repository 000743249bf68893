"""Shared fixtures: a tiny synthetic benchmark generated once per test session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """A tiny synthetic set in the VGG-SS layout: 48 train / 16 val / 16 test, 64 px, 1 s audio."""
    from fnac.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("synth")
    cfg = SynthConfig(
        seed=3, n_train=48, n_val=16, n_test=16, n_classes=4, image_size=64, duration=1.0, n_clips=1, clip_seconds=2.0
    )
    generate(root, cfg, progress=False)
    return root


def tiny_overrides(root, out_dir) -> list[str]:
    """Config overrides for a model small enough to train in seconds on the tiny set."""
    return [
        f"data.root={root}",
        f"train.out_dir={out_dir}",
        "model.width=8",
        "model.embed_dim=16",
        "data.image_size=64",
        "data.audio_duration=1.0",
        "data.num_workers=0",
        "train.batch_size=8",
        "train.epochs=3",
        "train.log_every=2",
        "train.progress=false",
        "loss.warmup_epochs=1",
        "optim.lr=1e-3",
    ]
