"""fnac pretrain: the weights load through model.pretrained like torchvision's, the classifier learns,
resume continues exactly, and the pretraining population never shares a generator with the benchmark."""

import json

import numpy as np
import pytest
import torch

from fnac import synth
from fnac.config import ModelConfig
from fnac.errors import CheckpointError, ConfigError
from fnac.models.fnac import FNAC
from fnac.pretrain import POPULATION_CODES, PretrainConfig, pretrain, render_object, seed_sequence, state_path

# a tiny run that learns in seconds: large objects on a plain background (the default adds clutter)
ACCURACY_RUN = dict(
    width=8,
    layers=2,
    image_size=32,
    n_train=768,
    n_test=128,
    epochs=6,
    batch_size=32,
    lr=3e-3,
    clutter=0,
    min_object_size=0.6,
    max_object_size=0.8,
)
TINY = dict(width=4, layers=2, image_size=32, n_train=64, n_test=32, epochs=1, batch_size=32)


def test_cli_writes_a_torchvision_file_that_model_pretrained_loads(tmp_path, capsys):
    from fnac.cli import main

    out = tmp_path / "w.pth"
    assert (
        main(
            [
                "pretrain",
                "--out",
                str(out),
                "--width",
                "4",
                "--image-size",
                "32",
                "--n-train",
                "64",
                "--n-test",
                "32",
                "--epochs",
                "1",
                "--batch-size",
                "32",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "held-out accuracy" in capsys.readouterr().out
    sd = torch.load(out, weights_only=True)
    # torchvision resnet18 names: stem, kept stages, classifier; nothing after layer2
    assert {
        "conv1.weight",
        "bn1.running_mean",
        "layer1.0.conv1.weight",
        "layer2.0.downsample.0.weight",
        "fc.weight",
        "fc.bias",
    } <= set(sd)
    assert not any(k.startswith(("layer3.", "layer4.")) for k in sd)
    assert tuple(sd["fc.weight"].shape) == (12, 8)  # 12 shapes from the 2*width layer2 channels
    model = FNAC(ModelConfig(width=4, embed_dim=8, visual_layers=2, pretrained=str(out), pretrained_required=True))
    assert model.pretrained_source == str(out)
    for k, v in model.imgnet.state_dict().items():
        assert torch.equal(v, sd[k]), k
    with pytest.raises(CheckpointError, match="missing keys: layer3"):
        FNAC(ModelConfig(width=4, embed_dim=8, visual_layers=3, pretrained=str(out)))
    summary = json.loads((tmp_path / "w.pth.json").read_text())
    assert summary["n_labels"] == 12 and summary["chance"] == pytest.approx(1 / 12)


def test_held_out_accuracy_far_above_chance(tmp_path):
    cfg = PretrainConfig(**ACCURACY_RUN)
    res = pretrain(cfg, tmp_path / "w.pth", progress=False)
    assert res["chance"] == pytest.approx(1 / 12)
    assert res["test_accuracy"] > 3 * res["chance"], res["test_accuracy"]


def test_resume_continues_to_the_same_weights(tmp_path):
    full = pretrain(PretrainConfig(**{**TINY, "epochs": 2}), tmp_path / "full.pth", progress=False)
    pretrain(PretrainConfig(**TINY), tmp_path / "part.pth", progress=False)
    assert torch.load(state_path(tmp_path / "part.pth"), weights_only=True)["epoch"] == 1
    resumed = pretrain(PretrainConfig(**{**TINY, "epochs": 2}), tmp_path / "part.pth", resume=True, progress=False)
    assert resumed["resumed_from"] == 1 and len(resumed["history"]) == 2
    assert resumed["history"] == full["history"]
    a, b = torch.load(tmp_path / "full.pth", weights_only=True), torch.load(tmp_path / "part.pth", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="width"):
        pretrain(
            PretrainConfig(**{**TINY, "width": 8, "epochs": 3}), tmp_path / "part.pth", resume=True, progress=False
        )
    with pytest.raises(CheckpointError, match="no pretraining state"):
        pretrain(PretrainConfig(**TINY), tmp_path / "none.pth", resume=True, progress=False)


def test_population_is_disjoint_from_every_benchmark_split():
    # benchmark sample i of split s (any seed) is drawn from SeedSequence([seed, code(s), i]), code 0..3
    assert not set(POPULATION_CODES.values()) & set(synth._SPLIT_CODE.values())
    for seed in (0, 1, 7):
        bench = {
            tuple(np.random.SeedSequence([seed, code, i]).generate_state(4))
            for code in synth._SPLIT_CODE.values()
            for i in range(300)
        }
        mine = {tuple(seed_sequence(seed, part, i).generate_state(4)) for part in POPULATION_CODES for i in range(300)}
        assert len(mine) == 600 and not mine & bench
    # and the images differ from the benchmark's of the same seed, index and size
    cfg = PretrainConfig(image_size=64)
    sc = synth.SynthConfig(image_size=64)
    classes = synth.make_classes(sc)
    for i in range(3):
        img, label, mask = render_object(cfg, "train", i)
        assert img.shape == (64, 64, 3) and 0 <= label < 12 and mask.any()
        for split in synth.SPLITS:
            assert not np.array_equal(img, synth.render_sample(sc, classes, split, i).image)
    # deterministic: the same image from the same (seed, part, index)
    assert np.array_equal(render_object(cfg, "test", 5)[0], render_object(cfg, "test", 5)[0])


def test_reference_synth_config_is_served_by_the_pretrain_defaults():
    """The built-in reference_synth names a pretrained file that `fnac pretrain`'s defaults can load into it,
    and keeps the reference's tau and optimizer, with a warm-up before the regularisers."""
    from fnac.config import load_config, resolve_config_path

    cfg = load_config(resolve_config_path("reference_synth"))
    d = PretrainConfig()
    assert cfg.model.pretrained and cfg.model.pretrained_required
    assert cfg.model.width == d.width and cfg.model.visual_layers <= d.layers
    assert cfg.model.tau == 0.03 and cfg.optim.name == "adam" and cfg.optim.weight_decay == 1e-4
    assert 0 < cfg.loss.warmup_epochs < cfg.train.epochs
    assert cfg.loss.fns1 == cfg.loss.tns == cfg.loss.fns2 > 0
