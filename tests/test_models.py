"""FNAC model: shapes, unit norm, parameter names, gradients, pretrained loading, checkpoints."""

import logging

import pytest
import torch

import fnac
from fnac.checkpoint import load_checkpoint, save_checkpoint
from fnac.config import Config, ModelConfig
from fnac.errors import CheckpointError, ConfigError
from fnac.fileio import is_temp_name
from fnac.models import FNAC, ObjectNet


def _torchvision_resnet18_names():
    """torchvision resnet18 state-dict keys and shapes, written out by hand from its architecture."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    out = {"conv1.weight": (64, 3, 7, 7)}
    out.update({f"bn1.{k}": (64,) if k != "num_batches_tracked" else () for k in bn})
    cin = 64
    for li, ch in enumerate([64, 128, 256, 512], start=1):
        for b in range(2):
            p = f"layer{li}.{b}."
            i = cin if b == 0 else ch
            out[p + "conv1.weight"] = (ch, i, 3, 3)
            out[p + "conv2.weight"] = (ch, ch, 3, 3)
            for n in ("bn1", "bn2"):
                out.update({f"{p}{n}.{k}": (ch,) if k != "num_batches_tracked" else () for k in bn})
            if b == 0 and li > 1:
                out[p + "downsample.0.weight"] = (ch, cin, 1, 1)
                out.update({f"{p}downsample.1.{k}": (ch,) if k != "num_batches_tracked" else () for k in bn})
        cin = ch
    out["fc.weight"] = (1000, 512)
    out["fc.bias"] = (1000,)
    return out


def small():
    return ModelConfig(width=8, embed_dim=16)


def test_shapes_unit_norm_and_map():
    torch.manual_seed(0)
    m = FNAC(small(), load_pretrained=False).eval()
    x, s = torch.randn(3, 3, 96, 96), torch.randn(3, 1, 257, 60)
    v, a = m.encode_image(x), m.encode_audio(s)
    assert v.shape == (3, 16, 3, 3) and a.shape == (3, 16)
    assert torch.allclose(v.norm(dim=1), torch.ones(3, 3, 3), atol=1e-5)
    assert torch.allclose(a.norm(dim=1), torch.ones(3), atol=1e-5)
    maps = m.localize(x, s)
    assert maps.shape == (3, 3, 3)
    # each map entry is cos/tau computed by hand for pair b
    b, i, j = 1, 2, 0
    assert maps[b, i, j].item() == pytest.approx((v[b, :, i, j] @ a[b]).item() / 0.03, rel=1e-5)
    assert maps.abs().max() <= 1 / 0.03 + 1e-3
    # full size: 224 -> 7x7 and 257 x 200 spectrogram, audio net fully convolutional
    big = FNAC(ModelConfig(), load_pretrained=False).eval()
    with torch.no_grad():
        assert big.encode_image(torch.randn(1, 3, 224, 224)).shape == (1, 512, 7, 7)
        assert big.encode_audio(torch.randn(1, 1, 257, 200)).shape == (1, 512)
        assert big.encode_audio(torch.randn(1, 1, 257, 37)).shape == (1, 512)


def test_parameter_names_match_torchvision_and_reference():
    m = FNAC(ModelConfig(), load_pretrained=False)
    tv = _torchvision_resnet18_names()
    trunk = {k: tuple(v.shape) for k, v in m.imgnet.state_dict().items()}
    assert trunk == {k: v for k, v in tv.items() if not k.startswith("fc.")}
    keys = set(m.state_dict())
    assert {"img_proj.weight", "img_proj.bias", "aud_proj.weight", "aud_proj.bias"} <= keys
    assert tuple(m.state_dict()["audnet.conv1.weight"].shape) == (64, 1, 7, 7)
    assert tuple(m.state_dict()["img_proj.weight"].shape) == (512, 512, 1, 1)
    assert all(k.split(".")[0] in {"imgnet", "audnet", "img_proj", "aud_proj"} for k in keys)


def test_every_parameter_gets_a_gradient_and_dropout_only_in_training():
    torch.manual_seed(0)
    m = FNAC(small(), load_pretrained=False).train()
    x, s = torch.randn(4, 3, 64, 64), torch.randn(4, 1, 257, 40)
    out = m(x, s)
    (out["img"].sum() * 0.1 + (out["img"].mean(dim=(2, 3)) * out["aud"]).sum()).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    m.eval()
    with torch.no_grad():
        assert torch.equal(m.encode_image(x), m.encode_image(x))  # deterministic in eval


def test_reference_initialisation_statistics():
    torch.manual_seed(0)
    m = FNAC(ModelConfig(), load_pretrained=False)
    w = m.aud_proj.weight
    assert abs(w.std().item() - 0.01) < 0.001
    bn = torch.cat([mod.weight for mod in m.audnet.modules() if isinstance(mod, torch.nn.BatchNorm2d)])
    assert abs(bn.mean().item() - 1.0) < 0.01 and abs(bn.std().item() - 0.02) < 0.005
    conv = m.audnet.layer3[0].conv1.weight  # fan_out = 256 * 9: std = sqrt(2 / fan_out)
    assert abs(conv.std().item() - (2 / (256 * 9)) ** 0.5) < 0.002


def _fake_imagenet_file(tmp_path):
    torch.manual_seed(1)
    sd = {k: torch.randn(s) if s else torch.tensor(0) for k, s in _torchvision_resnet18_names().items()}
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(sd, path)
    return path, sd


def test_imagenet_weights_load_from_named_file_and_warn_without(tmp_path, caplog):
    path, sd = _fake_imagenet_file(tmp_path)
    m = FNAC(ModelConfig(pretrained=str(path)))
    assert torch.equal(m.imgnet.layer2[0].downsample[0].weight, sd["layer2.0.downsample.0.weight"])
    assert m.pretrained_source == str(path)
    with caplog.at_level(logging.WARNING):
        FNAC(ModelConfig(width=8, embed_dim=8))
    assert "random initialisation" in caplog.text
    with pytest.raises(CheckpointError, match="not found"):
        FNAC(ModelConfig(pretrained=str(tmp_path / "nope.pth")))
    obj = ObjectNet(path)
    assert obj.object_map(torch.randn(2, 3, 64, 64)).shape == (2, 2, 2)


def test_authors_checkpoint_loads_unchanged_and_gives_same_outputs(tmp_path):
    torch.manual_seed(0)
    src = FNAC(small(), load_pretrained=False).eval()
    ref = {
        "model": {"module." + k: v for k, v in src.state_dict().items()},
        "optimizer": {"state": {}, "param_groups": []},
        "epoch": 20,
        "best_cIoU": 0.39,
        "best_Auc": 0.40,
    }
    path = tmp_path / "best.pth"
    torch.save(ref, path)
    loaded = fnac.load_checkpoint(path)
    x, s = torch.randn(2, 3, 64, 64), torch.randn(2, 1, 257, 30)
    with torch.no_grad():
        assert torch.equal(loaded.localize(x, s), src.localize(x, s))
    assert not loaded.training


def test_mismatched_checkpoint_lists_missing_and_unexpected_keys(tmp_path):
    m = FNAC(small(), load_pretrained=False)
    sd = dict(m.state_dict())
    sd.pop("aud_proj.bias")
    sd["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save({"model": sd, "epoch": 1}, path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert "aud_proj.bias" in str(e.value) and "extra.weight" in str(e.value) and "bad.pth" in str(e.value)
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="garbage.pth"):
        load_checkpoint(tmp_path / "garbage.pth")


def test_our_checkpoint_roundtrip_keeps_config(tmp_path):
    cfg = Config()
    cfg.model = ModelConfig(width=8, embed_dim=12)
    m = FNAC(cfg.model, load_pretrained=False)
    save_checkpoint(tmp_path / "latest.pt", m, cfg, epoch=3, step=7)
    loaded = load_checkpoint(tmp_path / "latest.pt")
    assert loaded.cfg.embed_dim == 12 and loaded.cfg.width == 8
    for k, v in m.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    assert not [p for p in tmp_path.iterdir() if is_temp_name(p.name)]


def test_visual_layers_option_stops_early_keeps_names_and_loads_imagenet_stages(tmp_path):
    """model.visual_layers = 2 / 3: the layer2 / layer3 map (stride 8 / 16), only the kept stages are
    built (torchvision names), ImageNet weights of those stages load, and both our checkpoints and an
    authors'-style state dict of such a model load back with the right number of stages."""
    torch.manual_seed(0)
    path, sd = _fake_imagenet_file(tmp_path)
    x, s = torch.randn(2, 3, 128, 128), torch.randn(2, 1, 257, 40)
    for layers, side, chans in ((2, 16, 128), (3, 8, 256), (4, 4, 512)):
        m = FNAC(ModelConfig(visual_layers=layers, pretrained=str(path)), load_pretrained=True).eval()
        names = {k.split(".")[0] for k in m.imgnet.state_dict()}
        assert names == {"conv1", "bn1"} | {f"layer{i}" for i in range(1, layers + 1)}
        assert m.img_proj.weight.shape == (512, chans, 1, 1)
        assert torch.equal(m.imgnet.layer2[0].conv1.weight, sd["layer2.0.conv1.weight"])
        with torch.no_grad():
            assert m.encode_image(x).shape == (2, 512, side, side)
            assert m.encode_audio(s).shape == (2, 512)  # the audio network keeps all four stages
    with pytest.raises(ConfigError, match="visual_layers"):
        FNAC(ModelConfig(visual_layers=1), load_pretrained=False)
    small2 = FNAC(ModelConfig(width=8, embed_dim=16, visual_layers=2), load_pretrained=False).eval()
    ref = tmp_path / "ref.pth"
    torch.save({"model": {"module." + k: v for k, v in small2.state_dict().items()}, "epoch": 1}, ref)
    loaded = load_checkpoint(ref)
    assert loaded.cfg.visual_layers == 2 and loaded.cfg.width == 8
    cfg = Config()
    cfg.model = ModelConfig(width=8, embed_dim=16, visual_layers=2)
    save_checkpoint(tmp_path / "latest.pt", small2, cfg, epoch=1, step=1)
    ours = load_checkpoint(tmp_path / "latest.pt")
    with torch.no_grad():
        assert torch.equal(ours.localize(x, s), small2.localize(x, s))
        assert ours.localize(x, s).shape == (2, 16, 16)


def test_proj_bn_option_centres_embeddings_and_round_trips(tmp_path):
    """model.proj_bn (not in the reference): each embedding channel is batch-normalised before the L2
    norm. Checked against the formula written out here: train mode uses the batch's mean and biased
    variance (over the batch and, for the visual map, every position), eval mode the running ones. The
    default adds no parameters (reference state dicts keep their keys) and our checkpoints restore it."""
    torch.manual_seed(0)
    x, s = torch.randn(4, 3, 64, 64), torch.randn(4, 1, 257, 40)
    plain = FNAC(ModelConfig(width=8, embed_dim=16, visual_layers=2), load_pretrained=False)
    assert not any("proj_bn" in k for k in plain.state_dict())
    m = FNAC(
        ModelConfig(width=8, embed_dim=16, visual_layers=2, proj_bn=True, vision_dropout=0.0), load_pretrained=False
    )
    with torch.no_grad():
        m.img_proj_bn.weight.uniform_(0.5, 1.5)
        m.img_proj_bn.bias.uniform_(-0.2, 0.2)
        m.aud_proj_bn.weight.uniform_(0.5, 1.5)
        m.aud_proj_bn.bias.uniform_(-0.2, 0.2)
    m.train()
    with torch.no_grad():
        raw_a = m.aud_proj(m.audnet(s).amax(dim=(2, 3)))  # (4, 16) before the batch norm
        mu, var = raw_a.mean(0), raw_a.var(0, unbiased=False)
        want_a = (raw_a - mu) / torch.sqrt(var + 1e-5) * m.aud_proj_bn.weight + m.aud_proj_bn.bias
        want_a = want_a / want_a.norm(dim=1, keepdim=True)
        raw_v = m.img_proj(m.imgnet(x))  # (4, 16, 8, 8)
        mu_v = raw_v.mean(dim=(0, 2, 3), keepdim=True)
        var_v = raw_v.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        w, b = m.img_proj_bn.weight.view(1, -1, 1, 1), m.img_proj_bn.bias.view(1, -1, 1, 1)
        want_v = (raw_v - mu_v) / torch.sqrt(var_v + 1e-5) * w + b
        want_v = want_v / want_v.norm(dim=1, keepdim=True)
        got_a, got_v = m.encode_audio(s), m.encode_image(x)  # (also updates the running statistics)
    assert torch.allclose(got_a, want_a, atol=1e-5)
    assert torch.allclose(got_v, want_v, atol=1e-5)
    # the point of the option: centred, the embeddings of different clips no longer all point one way
    with torch.no_grad():
        cos_plain = plain.encode_audio(s) @ plain.encode_audio(s).T
    off = ~torch.eye(4, dtype=torch.bool)
    assert cos_plain[off].mean() > 0.8 and (got_a @ got_a.T)[off].mean() < 0.5
    m.eval()
    cfg = Config()
    cfg.model = ModelConfig(width=8, embed_dim=16, visual_layers=2, proj_bn=True)
    save_checkpoint(tmp_path / "latest.pt", m, cfg, epoch=1, step=1)
    back = load_checkpoint(tmp_path / "latest.pt")
    assert back.cfg.proj_bn
    with torch.no_grad():
        assert torch.equal(back.localize(x, s), m.localize(x, s))
        # eval mode: running statistics, so a single clip's embedding does not depend on its batch
        assert torch.allclose(m.encode_audio(s[:1]), m.encode_audio(s)[:1], atol=1e-6)
