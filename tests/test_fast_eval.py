"""Batched, on-device evaluation gives exactly the per-sample protocol's numbers.

References: (1) a per-sample loop written here from docs/evaluation.md §2-4 (upsample one map,
min-max by hand, threshold at sorted(map)[int(H*W*0.5)] with numpy's sort, cIoU from float64 sums);
(2) `numpy_evaluate` below, evaluate_model's former CPU path kept here as an oracle: it scores the raw
maps with the numpy metrics.evaluate (upsampling, thresholding and peaks in numpy). The raw maps come
from the same model at the same batch size in every path, so the comparison isolates the scoring.
The model is a small stand-in with FNAC's interface and 7x7 maps (the real model is tested in
test_models.py; here it would only cost time).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fnac import localization as loc
from fnac import metrics
from fnac.config import DataConfig
from fnac.data import as_dataset, build_dataset, collate
from fnac.evaluate import EvalResult, Protocol, _baseline_maps, _batch_kind, _Scores, evaluate_model
from fnac.inputs import model_inputs
from fnac.metrics import THRESHOLD_VARIANTS, gt_map_vggss
from fnac.models.fnac import localization_maps, pair_maps

BATCH = 8


class _Tiny(torch.nn.Module):
    """encode_image: (B, 3, S, S) -> (B, 8, 7, 7) unit-norm; encode_audio: (B, 1, F, T) -> (B, 8)."""

    tau = 0.03

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.img = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.aud = torch.nn.Linear(257, 8)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        x = self.img(F.adaptive_avg_pool2d(images, 7))  # (B, 8, 7, 7)
        return F.normalize(x, dim=1)

    def encode_audio(self, specs: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.aud(specs.mean(dim=(1, 3))), dim=1)  # (B, 8)


class _Memory(torch.utils.data.Dataset):
    def __init__(self, items: list[dict]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


@torch.no_grad()
def numpy_evaluate(
    model, dataset, protocol: Protocol, batch_size: int, baselines: bool = True, seed: int = 0, device: str = "cpu"
) -> EvalResult:
    """evaluate_model's scoring done in numpy on the CPU (the oracle): raw maps from `model` on `device`,
    then metrics.evaluate per batch, numpy min-max and argmax for the peaks and segmentation maps, and
    the baselines through metrics.evaluate. The dataset-level summary is evaluate's own (_Scores)."""
    model.eval()
    tau = float(model.tau)
    dataset = as_dataset(dataset)
    s = _Scores()
    for start in range(0, len(dataset), batch_size):
        batch, bad = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        s.failed.extend(bad)
        if batch is None:
            continue
        s.kind = _batch_kind(batch, dataset) or s.kind
        gt = batch["gt_map"].numpy()
        n, size = gt.shape[0], gt.shape[-1]
        raw = localization_maps(model, *model_inputs(batch, torch.device(device))).cpu().numpy()
        if protocol.map != "av":
            raise NotImplementedError("the oracle scores the AV map only")
        res = metrics.evaluate(raw, gt, upsample=protocol.upsample, threshold=protocol.threshold, tau=tau)
        s.cious.extend(res["ciou"])
        m224 = loc.minmax(loc.upsample(loc.nan_to_min(raw), size, protocol.upsample))  # (B, 224, 224)
        for j in m224.reshape(n, -1).argmax(axis=1):  # row-major argmax
            y, x = divmod(int(j), size)
            s.peaks.append(((x + 0.5) / size, (y + 0.5) / size))
        if s.kind != "localization":
            s.add_extras(batch, raw, m224, tau, size)
        if baselines and protocol.threshold != "absolute":
            for name, bmaps in _baseline_maps(n, size, seed + len(s.ids)).items():
                r = metrics.evaluate(bmaps, gt, upsample=protocol.upsample, threshold=protocol.threshold, tau=tau)
                s.base_cious.setdefault(name, []).extend(r["ciou"])
        s.ids.extend(batch["id"])
    result, rows = s.model_metrics(protocol)
    return EvalResult(
        dataset.name,
        dataset.split,
        s.kind,
        protocol,
        len(dataset.listed),
        len(s.ids),
        list(dataset.missing),
        s.failed,
        result,
        rows,
        s.baseline_metrics(),
    )


@pytest.fixture(scope="module")
def model() -> _Tiny:
    return _Tiny().eval()


@pytest.fixture(scope="module")
def test_set(tiny_synth):
    """The 32 annotated samples (val + test) of the tiny synthetic set, decoded once."""
    cfg = DataConfig(root=str(tiny_synth), image_size=64, audio_duration=1.0, num_workers=0)
    items = []
    for split in ("val", "test"):
        ds = build_dataset(cfg, split, train=False)
        items += [ds[i] for i in range(len(ds))]
    for k, s in enumerate(items):
        s["index"] = k
    return _Memory(items)


def _reference_cious(model, dataset, upsample: str, threshold: str, tau: float) -> list[float]:
    """The per-sample protocol, one map at a time."""
    from fnac.data import collate

    out = []
    for start in range(0, len(dataset), BATCH):
        batch, _ = collate([dataset[i] for i in range(start, min(start + BATCH, len(dataset)))])
        with torch.no_grad():
            raw = pair_maps(model.encode_image(batch["image"]), model.encode_audio(batch["spec"]), tau)  # (B, h, w)
        for m, gt in zip(raw, batch["gt_map"].numpy()):
            align = upsample == "bilinear"  # FNAC's test script: bilinear, align_corners=True
            up = F.interpolate(m[None, None], size=(224, 224), mode=upsample, align_corners=align)[0, 0].numpy()
            if threshold == "absolute":
                pred = (up + np.float32(1 / tau)) / np.float32(2 / tau) >= 0.5
            else:
                lo, hi = up.min(), up.max()
                mm = up if hi == lo else (up - lo) / (hi - lo)
                if threshold == "fixed":
                    pred = mm >= 0.5
                else:
                    thr = np.sort(mm.ravel())[int(224 * 224 * 0.5)]
                    pred = mm >= thr if threshold == "median_ge" else mm > thr
            p, g = pred.astype(np.float64), gt.astype(np.float64)
            den = g.sum() + (p * (g == 0)).sum()
            out.append(float((p * g).sum() / den) if g.sum() > 0 else 0.0)
    return out


@pytest.mark.parametrize("upsample", ["bicubic", "bilinear"])
def test_fast_scores_equal_the_per_sample_protocol(model, test_set, upsample):
    for threshold in THRESHOLD_VARIANTS:
        proto = Protocol(upsample=upsample, threshold=threshold)
        base = threshold == "median_ge"  # the trivial baselines once (they cost more than the model here)
        fast = evaluate_model(model, test_set, proto, batch_size=BATCH, progress=False, baselines=base)
        slow = numpy_evaluate(model, test_set, proto, batch_size=BATCH, baselines=base)
        ref = _reference_cious(model, test_set, upsample, threshold, model.tau)
        got = [r["ciou"] for r in fast.per_sample]
        assert got == ref, threshold  # exactly, sample by sample
        assert got == [r["ciou"] for r in slow.per_sample]
        assert fast.metrics == slow.metrics
        assert fast.metrics["ciou50"] == np.mean(np.asarray(ref) >= 0.5)
        assert [(r["peak_x"], r["peak_y"]) for r in fast.per_sample] == [
            (r["peak_x"], r["peak_y"]) for r in slow.per_sample
        ]
        assert fast.baselines == slow.baselines and (len(fast.baselines) == 3) == base
        assert len(set(got)) > 3  # the maps are not degenerate: the comparison can fail


def _memory_set(kind: str, n: int = 12) -> _Memory:
    """Samples with the extended (``positive``) or segmentation (``mask``) fields, built in memory."""
    g = torch.Generator().manual_seed(5)
    rng = np.random.default_rng(5)
    items = []
    for i in range(n):
        x0, y0 = rng.uniform(0, 0.5, 2)
        gt = torch.from_numpy(gt_map_vggss([[x0, y0, x0 + 0.45, y0 + 0.4]]))
        s = {
            "id": f"v{i // 3}_{i % 3}",
            "index": i,
            "image": torch.randn(3, 64, 64, generator=g),
            "spec": torch.randn(1, 257, 20, generator=g),
            "gt_map": gt,
        }
        if kind == "extended":
            s["positive"] = bool(i % 3)
            if not s["positive"]:
                s["gt_map"] = torch.zeros(224, 224)
        else:
            s["mask"] = gt.clone()
        items.append(s)
    return _Memory(items)


@pytest.mark.parametrize(
    "kind,fscore", [("extended", "dataset"), ("segmentation", "dataset"), ("segmentation", "per_video")]
)
def test_fast_extended_and_segmentation_metrics_equal_numpy_path(model, kind, fscore):
    ds = _memory_set(kind)
    proto = Protocol(fscore=fscore)
    fast = evaluate_model(model, ds, proto, batch_size=5, progress=False)
    slow = numpy_evaluate(model, ds, proto, batch_size=5)
    assert fast.kind == slow.kind == kind
    assert fast.metrics == slow.metrics
    assert fast.per_sample == slow.per_sample
    key = "ap" if kind == "extended" else "miou"
    assert key in fast.metrics


def test_real_dataset_any_batch_size(tiny_synth, model):
    """Through a real AVDataset (loader, workers' collate): the oracle's numbers, at any batch size."""
    ds = build_dataset(DataConfig(root=str(tiny_synth), image_size=64, audio_duration=1.0), "test", train=False)
    a = evaluate_model(model, ds, Protocol(), batch_size=5, progress=False)
    b = evaluate_model(model, ds, Protocol(), batch_size=16, progress=False)
    ref = numpy_evaluate(model, ds, Protocol(), batch_size=5)
    assert a.metrics == b.metrics == ref.metrics and a.n_evaluated == 16
    assert a.per_sample == b.per_sample == ref.per_sample
    assert a.baselines == ref.baselines


def test_options_and_keywords(model, test_set):
    """EvalOptions and its fields as keywords give the same result; an unknown keyword is refused;
    the former device_metrics keyword is accepted with a DeprecationWarning."""
    from fnac.evaluate import EvalOptions

    a = evaluate_model(model, test_set, Protocol(), EvalOptions(batch_size=BATCH, progress=False, baselines=False))
    b = evaluate_model(model, test_set, Protocol(), batch_size=BATCH, progress=False, baselines=False)
    assert a.per_sample == b.per_sample and a.metrics == b.metrics and not a.baselines
    with pytest.raises(TypeError, match="batchsize"):
        evaluate_model(model, test_set, batchsize=4)
    with pytest.warns(DeprecationWarning):
        c = evaluate_model(model, test_set, batch_size=BATCH, progress=False, baselines=False, device_metrics=False)
    assert c.per_sample == a.per_sample


def test_channels_last_option(test_set):
    """EvalOptions.channels_last converts the model in place and scores the same maps up to rounding."""
    plain, nhwc = _Tiny().eval(), _Tiny().eval()  # same seed: the same weights
    a = evaluate_model(plain, test_set, Protocol(), batch_size=BATCH, progress=False, baselines=False)
    b = evaluate_model(
        nhwc, test_set, Protocol(), batch_size=BATCH, progress=False, baselines=False, channels_last=True
    )
    assert nhwc.img.weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain.img.weight.is_contiguous(memory_format=torch.channels_last)
    assert [r["id"] for r in a.per_sample] == [r["id"] for r in b.per_sample]
    d = np.array([abs(x["ciou"] - y["ciou"]) for x, y in zip(a.per_sample, b.per_sample)])
    assert d.max() < 0.01 and (d == 0).mean() >= 0.75
