"""evaluate_model against an independent per-sample computation, and on each kind of benchmark
(localization, extended SLAVC sets, AVSBench segmentation), through the library and `fnac eval`."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fnac.checkpoint import save_checkpoint
from fnac.cli import main
from fnac.config import Config, DataConfig, ModelConfig
from fnac.data import build_dataset
from fnac.evaluate import Protocol, evaluate_model
from fnac.models import FNAC
from test_data_avsbench import make_extended_vggss, s4  # noqa: F401  (s4 is a fixture)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return FNAC(ModelConfig(width=8, embed_dim=16), load_pretrained=False).eval()


def loop_ciou(raw, gt, upsample):
    """Per-sample protocol written out: upsample, min-max, median threshold (>=), cIoU."""
    t = torch.from_numpy(raw)[None, None].double()
    if upsample == "bicubic":
        up = F.interpolate(t, size=(224, 224), mode="bicubic", align_corners=False)[0, 0].numpy()
    else:
        up = F.interpolate(t, size=(224, 224), mode="bilinear", align_corners=True)[0, 0].numpy()
    up = (up - up.min()) / (up.max() - up.min())
    thr = np.sort(up.flatten())[int(224 * 224 * 0.5)]
    pred = (up >= thr).astype(np.float64)
    inter = (pred * gt).sum()
    return inter / (gt.sum() + (pred * (gt == 0)).sum()) if gt.sum() > 0 else 0.0


@pytest.mark.parametrize("upsample", ["bicubic", "bilinear"])
def test_localization_metrics_equal_a_per_sample_loop(tiny_synth, upsample):
    ds = build_dataset(DataConfig(root=str(tiny_synth), image_size=64, audio_duration=1.0), "test", False)
    model = tiny_model()
    res = evaluate_model(model, ds, Protocol(upsample=upsample), batch_size=5, progress=False)
    want = []
    with torch.no_grad():
        for i in range(len(ds)):
            s = ds[i]
            raw = model.localize(s["image"][None], s["spec"][None])[0].numpy()
            want.append(loop_ciou(raw, s["gt_map"].numpy().astype(np.float64), upsample))
    got = [r["ciou"] for r in res.per_sample]
    assert [r["id"] for r in res.per_sample] == ds.ids
    np.testing.assert_allclose(got, want, atol=1e-3)  # float32 vs float64 interpolation may move a pixel
    w = np.asarray(want)
    assert res.metrics["ciou50"] == pytest.approx(np.mean(w >= 0.5), abs=1 / len(w) + 1e-9)
    assert res.metrics["mean_ciou"] == pytest.approx(w.mean(), abs=1e-3)
    auc = np.trapezoid([np.mean(w >= 0.05 * k) for k in range(21)], [0.05 * k for k in range(21)])
    assert res.metrics["auc"] == pytest.approx(auc, abs=2 / len(w))
    assert res.n_evaluated == res.n_listed == 16 and set(res.baselines) == {"centre prior", "whole image", "random"}
    # whole image under median_ge predicts every pixel: cIoU = gt area / image area
    whole = [ds[i]["gt_map"].numpy().mean() for i in range(len(ds))]
    assert res.baselines["whole image"]["mean_ciou"] == pytest.approx(np.mean(whole), rel=1e-6)


def test_extended_set_reports_ap_f1_locacc_and_missing(tmp_path, capsys):
    pos, neg = make_extended_vggss(tmp_path)
    ds = build_dataset(DataConfig(dataset="extended_vggss", root=str(tmp_path), image_size=64), "test", False)
    res = evaluate_model(tiny_model(), ds, Protocol(), batch_size=2, progress=False)
    assert res.kind == "extended" and res.n_evaluated == 3 and res.n_listed == 4 and res.missing == [neg[1]]
    assert set(res.metrics) >= {"ap", "max_f1", "loc_acc"}
    assert [r["positive"] for r in res.per_sample] == [True, True, False]
    # LocAcc is cIoU@0.5 over the positives alone
    c = [r["ciou"] for r in res.per_sample[:2]]
    assert res.metrics["loc_acc"] == pytest.approx(np.mean(np.asarray(c) >= 0.5))
    # through the command line, from a checkpoint
    cfg = Config()
    cfg.model = ModelConfig(width=8, embed_dim=16)
    save_checkpoint(tmp_path / "m.pt", tiny_model(), cfg)
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(tmp_path / "m.pt"),
                "--workers",
                "0",
                "data.dataset=extended_vggss",
                f"data.root={tmp_path}",
                "data.image_size=64",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "3 evaluated of 4 listed" in out and "AP" in out and "max-F1" in out and neg[1] in out


def test_avsbench_segmentation_miou_and_fscore(s4):  # noqa: F811
    ds = build_dataset(DataConfig(dataset="avsbench_s4", root=str(s4), image_size=64), "test", False)
    res = evaluate_model(tiny_model(), ds, Protocol(), batch_size=4, progress=False)
    assert res.kind == "segmentation" and res.n_evaluated == 9 and res.n_listed == 10
    assert 0 <= res.metrics["miou"] <= 1 and 0 <= res.metrics["fscore"] <= 1
    compat = evaluate_model(tiny_model(), ds, Protocol(fscore="per_video"), batch_size=4, progress=False)
    assert compat.metrics["miou"] == pytest.approx(res.metrics["miou"])
    assert 0 <= compat.metrics["fscore"] <= 1


def test_protocol_names_are_checked(tiny_synth):
    from fnac.errors import ConfigError

    with pytest.raises(ConfigError, match="threshold"):
        Protocol(threshold="mean")
    ds = build_dataset(DataConfig(root=str(tiny_synth), image_size=64, audio_duration=1.0), "test", False)
    with pytest.raises(ConfigError, match="ImageNet"):
        evaluate_model(tiny_model(), ds, Protocol(map="av_obj"), progress=False)


def _tiny_checkpoint(path, root, weights, epoch=3, warmup=1):
    cfg = Config()
    cfg.model = ModelConfig(width=8, embed_dim=16)
    cfg.data = DataConfig(root=str(root), image_size=64, audio_duration=1.0, num_workers=0)
    cfg.loss.fns1, cfg.loss.tns, cfg.loss.fns2 = weights
    cfg.loss.warmup_epochs = warmup
    save_checkpoint(path, tiny_model(), cfg, epoch=epoch)
    return path


def test_row_name_comes_from_the_checkpoint(tmp_path):
    from fnac.report import model_label

    cases = {
        (100.0, 100.0, 100.0): "FNAC",
        (0.0, 0.0, 0.0): "EZ-VSL",
        (10.0, 10.0, 0.0): "FNAC (loss.fns2=0)",
    }
    for i, (weights, name) in enumerate(cases.items()):
        assert model_label(_tiny_checkpoint(tmp_path / f"{i}.pt", tmp_path, weights)) == name
    # saved before the loss warm-up ended: the regularisers never acted
    early = _tiny_checkpoint(tmp_path / "early.pt", tmp_path, (10.0, 10.0, 10.0), epoch=2, warmup=3)
    assert model_label(early) == "FNAC (warm-up only: 2 of 3 warm-up epochs)"
    assert model_label(_tiny_checkpoint(tmp_path / "ez.pt", tmp_path, (0.0, 0.0, 0.0), epoch=1, warmup=3)) == "EZ-VSL"
    # the authors' format holds no config: say what can be known
    torch.save(
        {
            "model": {f"module.{k}": v for k, v in tiny_model().state_dict().items()},
            "epoch": 20,
            "best_cIoU": 0.4,
            "best_Auc": 0.4,
            "optimizer": {},
        },
        tmp_path / "fnac_vggss144k.pth",
    )
    assert model_label(tmp_path / "fnac_vggss144k.pth") == "FNAC or EZ-VSL (authors' checkpoint fnac_vggss144k.pth)"
    # exported folders (fnac export) keep what their source said
    from fnac.export import export_checkpoint

    export_checkpoint(tmp_path / "ez.pt", tmp_path / "ez_export")
    assert model_label(tmp_path / "ez_export") == "EZ-VSL"
    export_checkpoint(tmp_path / "fnac_vggss144k.pth", tmp_path / "authors_export")
    assert model_label(tmp_path / "authors_export").startswith("FNAC or EZ-VSL (authors' checkpoint")


def test_a_warm_up_only_export_is_named_like_its_checkpoint(tmp_path):
    """The export keeps its source's epoch (config.json source.epoch): a checkpoint saved at epoch 2 of
    3 warm-up epochs and its export are both "warm-up only"; after the warm-up both are "FNAC"."""
    from fnac.checkpoint import load_model_and_config
    from fnac.export import export_checkpoint
    from fnac.report import model_label

    early = _tiny_checkpoint(tmp_path / "early.pt", tmp_path, (10.0, 10.0, 10.0), epoch=2, warmup=3)
    export_checkpoint(early, tmp_path / "early_export")
    name = "FNAC (warm-up only: 2 of 3 warm-up epochs)"
    assert model_label(early) == model_label(tmp_path / "early_export") == name
    assert load_model_and_config(tmp_path / "early_export").epoch == 2
    late = _tiny_checkpoint(tmp_path / "late.pt", tmp_path, (10.0, 10.0, 10.0), epoch=4, warmup=3)
    export_checkpoint(late, tmp_path / "late_export")
    assert model_label(late) == model_label(tmp_path / "late_export") == "FNAC"


def test_model_label_uses_what_the_caller_already_loaded(tmp_path):
    """Given the LoadedCheckpoint, model_label names the row from its config and epoch without
    opening the file (here: gone by then), the same name as from the file."""
    from fnac.checkpoint import load_model_and_config
    from fnac.report import model_label

    cases = [
        ((10.0, 10.0, 10.0), 2, 3, "FNAC (warm-up only: 2 of 3 warm-up epochs)"),
        ((10.0, 10.0, 0.0), 5, 3, "FNAC (loss.fns2=0)"),
        ((0.0, 0.0, 0.0), 1, 3, "EZ-VSL"),
    ]
    for i, (weights, epoch, warmup, name) in enumerate(cases):
        path = _tiny_checkpoint(tmp_path / f"{i}.pt", tmp_path, weights, epoch=epoch, warmup=warmup)
        loaded = load_model_and_config(path)
        assert loaded.epoch == epoch and model_label(path) == name
        path.unlink()
        assert model_label(path, loaded) == name
    ref = tmp_path / "authors.pth"
    torch.save({"model": {f"module.{k}": v for k, v in tiny_model().state_dict().items()}, "epoch": 20}, ref)
    loaded = load_model_and_config(ref)
    assert loaded.config is None and loaded.epoch is None  # the authors' epoch is not ours to read
    ref.unlink()
    assert model_label(ref, loaded) == "FNAC or EZ-VSL (authors' checkpoint authors.pth)"


def test_eval_reads_the_checkpoint_once(tiny_synth, tmp_path, monkeypatch, capsys):
    """`fnac eval` opens a checkpoint file once (the model, the config and the row name all come from
    that read), and an exported folder's config.json once; a warm-up-only export keeps its name."""
    from pathlib import Path

    from fnac.export import export_checkpoint

    early = _tiny_checkpoint(tmp_path / "early.pt", tiny_synth, (10.0, 10.0, 10.0), epoch=2, warmup=3)
    export_checkpoint(early, tmp_path / "early_export")
    opened: list[Path] = []
    real_load, real_read_text = torch.load, Path.read_text

    def load(f, *args, **kwargs):
        opened.append(Path(f))
        return real_load(f, *args, **kwargs)

    def read_text(self, *args, **kwargs):
        opened.append(Path(self))
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    monkeypatch.setattr(Path, "read_text", read_text)
    common = ["--workers", "0", "--no-baselines", "--batch-size", "16"]
    name = "FNAC (warm-up only: 2 of 3 warm-up epochs)"
    assert main(["eval", "--checkpoint", str(early), *common]) == 0
    assert opened.count(early) == 1
    assert name in _table_rows(capsys.readouterr().out)
    assert main(["eval", "--checkpoint", str(tmp_path / "early_export"), *common]) == 0
    assert opened.count(tmp_path / "early_export" / "config.json") == 1
    assert name in _table_rows(capsys.readouterr().out)


def _table_rows(text):
    return [line.split("  ")[0].strip() for line in text.splitlines()]


def test_cli_eval_names_the_row_and_name_overrides(tiny_synth, tmp_path, capsys):
    ez = _tiny_checkpoint(tmp_path / "ez.pt", tiny_synth, (0.0, 0.0, 0.0))
    fn = _tiny_checkpoint(tmp_path / "fn.pt", tiny_synth, (100.0, 100.0, 100.0))
    common = ["--workers", "0", "--no-baselines", "--batch-size", "16"]
    assert main(["eval", "--checkpoint", str(ez), *common]) == 0
    rows = _table_rows(capsys.readouterr().out)
    assert "EZ-VSL" in rows and "FNAC" not in rows
    assert main(["eval", "--checkpoint", str(fn), *common]) == 0
    rows = _table_rows(capsys.readouterr().out)
    assert "FNAC" in rows and "EZ-VSL" not in rows
    assert main(["eval", "--checkpoint", str(ez), "--name", "my run", *common]) == 0
    rows = _table_rows(capsys.readouterr().out)
    assert "my run" in rows and "EZ-VSL" not in rows


def test_cli_eval_channels_last_agrees_to_rounding(tiny_synth, tmp_path, capsys):
    """`fnac eval --channels-last` scores the same samples; each cIoU equals the default layout's up to
    float rounding of the convolutions (a pixel may cross the median), most of them exactly."""
    import csv

    ck = _tiny_checkpoint(tmp_path / "fn.pt", tiny_synth, (100.0, 100.0, 100.0))
    common = ["--checkpoint", str(ck), "--workers", "0", "--no-baselines", "--batch-size", "16", "--overlays", "0"]
    assert main(["eval", *common, "--out", str(tmp_path / "nchw")]) == 0
    assert main(["eval", *common, "--channels-last", "--out", str(tmp_path / "nhwc")]) == 0
    capsys.readouterr()

    def cious(folder):
        with open(tmp_path / folder / "per_sample.csv", newline="") as f:
            return {r["id"]: float(r["ciou"]) for r in csv.DictReader(f)}

    a, b = cious("nchw"), cious("nhwc")
    assert sorted(a) == sorted(b) and len(a) == 16
    diffs = [abs(a[k] - b[k]) for k in a]
    assert max(diffs) < 0.01
    assert sum(d == 0 for d in diffs) >= 12
