"""Evaluate a model on a dataset split under a named protocol (docs/evaluation.md). Prints nothing.

Three kinds of benchmark, chosen by what the samples carry:
- localization (``gt_map``): cIoU@0.5, AUC, mean cIoU (sections 1-4);
- extended (``positive`` flags, SLAVC): AP, max-F1, LocAcc (section 5);
- segmentation (``mask``, AVSBench): mIoU and F-score (section 6).
Trivial baselines (centre prior, whole image, random map) are scored on the same samples.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from fnac import localization as loc
from fnac import metrics
from fnac.data import as_dataset, collate
from fnac.errors import ConfigError, DataError
from fnac.inputs import model_inputs
from fnac.models.fnac import ObjectNet, localization_maps

log = logging.getLogger(__name__)

MAP_TYPES = ("av", "obj", "av_obj")


@dataclass
class Protocol:
    """How maps become scores. Default: FNAC's (bicubic, median_ge, the audio-visual map alone)."""

    upsample: str = "bicubic"  # "bicubic" (align_corners=False) or "bilinear" (align_corners=True)
    threshold: str = "median_ge"  # "median_ge", "median_gt", "fixed", "absolute"
    map: str = "av"  # "av" (audio-visual), "obj" (object prior only), "av_obj" (OGL combination)
    alpha: float = 0.4  # OGL weight of the AV map
    fscore: str = "dataset"  # AVSBench F: "dataset" (batch-independent) or "per_video" (official)

    def __post_init__(self) -> None:
        if self.upsample not in loc.UPSAMPLE_MODES:
            raise ConfigError(f"upsample: expected one of {loc.UPSAMPLE_MODES}, got {self.upsample!r}")
        if self.threshold not in metrics.THRESHOLD_VARIANTS:
            raise ConfigError(f"threshold: expected one of {metrics.THRESHOLD_VARIANTS}, got {self.threshold!r}")
        if self.map not in MAP_TYPES:
            raise ConfigError(f"map: expected one of {MAP_TYPES}, got {self.map!r}")
        if self.fscore not in ("dataset", "per_video"):
            raise ConfigError(f"fscore: expected 'dataset' or 'per_video', got {self.fscore!r}")

    def describe(self) -> str:
        m = {"av": "AV map", "obj": "object map (OGL prior only)", "av_obj": f"AV+object (OGL, alpha {self.alpha})"}[self.map]
        return f"{m}, {self.upsample} upsampling, threshold {self.threshold}"


@dataclass
class EvalResult:
    dataset: str
    split: str
    kind: str  # "localization", "extended" or "segmentation"
    protocol: Protocol
    n_listed: int
    n_evaluated: int
    missing: list[str]  # listed ids whose files are absent
    failed: list[tuple[str, str]]  # (id, reason) of samples that could not be loaded
    metrics: dict[str, float]
    per_sample: list[dict[str, Any]]
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)

    def header(self) -> str:
        return (f"{self.dataset} {self.split}: {self.n_evaluated} evaluated of {self.n_listed} listed "
                f"({len(self.missing)} missing, {len(self.failed)} failed to load) | {self.protocol.describe()}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["protocol"] = asdict(self.protocol)
        return d


def _baseline_maps(n: int, size: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    centre = loc.centre_prior_map(size)
    whole = loc.whole_image_map(size)
    return {
        "centre prior": np.broadcast_to(centre, (n, size, size)),
        "whole image": np.broadcast_to(whole, (n, size, size)),
        "random": np.stack([loc.random_map(size, rng) for _ in range(n)]) if n else np.zeros((0, size, size), np.float32),
    }


@torch.no_grad()
def evaluate_model(
    model: torch.nn.Module | None,
    dataset: Any,
    protocol: Protocol | None = None,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    object_net: ObjectNet | None = None,
    baselines: bool = True,
    progress: bool = True,
    seed: int = 0,
    device_metrics: bool | None = None,
    pin_memory: bool = True,
) -> EvalResult:
    """Score `model` on every present sample of `dataset` (never skipping silently: failures are
    counted and named). `model` may be None to score only the baselines.

    Maps are computed batch by batch. ``device_metrics`` upsamples, thresholds and scores each batch
    on ``device`` (metrics.evaluate_batch_torch); False moves the raw maps to the CPU and scores them
    with the numpy metrics.evaluate; None (default) scores on the device unless it is the CPU (where
    numpy is faster). Both give the same per-sample cIoU (bit-identical on CPU; docs/performance.md
    for GPUs). ``pin_memory`` pins loader batches when ``device`` is CUDA."""
    protocol = protocol or Protocol()
    device = torch.device(device)
    fast = device.type != "cpu" if device_metrics is None else bool(device_metrics)
    if protocol.map in ("obj", "av_obj") and object_net is None:
        raise ConfigError(
            f"map={protocol.map} needs the ImageNet object network: name a torchvision resnet18 weights "
            "file (without ImageNet weights the object map is meaningless)"
        )
    if model is not None:
        model.eval()
        tau = float(model.tau)
    else:
        tau = 0.03
    dataset = as_dataset(dataset)
    dataset.prepare_for(device)  # a cached dataset: finish samples on the device, or in workers on CPU
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate, pin_memory=pin_memory and device.type == "cuda")
    ids: list[str] = []
    failed: list[tuple[str, str]] = []
    cious: list[float] = []
    confs: list[float] = []
    positives: list[bool] = []
    seg_preds: list[np.ndarray] = []
    seg_masks: list[np.ndarray] = []
    base_cious: dict[str, list[float]] = {}
    peaks: list[tuple[float, float]] = []
    kind = "localization"
    it: Any = loader
    if progress:
        from tqdm import tqdm

        it = tqdm(loader, desc=f"eval {dataset.name} {dataset.split}",
                  leave=False, dynamic_ncols=True)
    for batch, bad in it:
        failed.extend(bad)
        if batch is None:
            continue
        if "gt_map" not in batch:
            raise DataError(
                f"{dataset.list_path}: split '{dataset.split}' has no "
                "annotations (gt maps); cannot evaluate localization"
            )
        gt = batch["gt_map"].numpy()  # (B, 224, 224)
        size = gt.shape[-1]
        n = gt.shape[0]
        if "mask" in batch:
            kind = "segmentation"
        elif "positive" in batch:
            kind = "extended"
        images, specs = model_inputs(batch, device)
        raw = None
        if model is not None:
            raw_t = localization_maps(model, images, specs)  # (B, h, w) on the device
            raw = raw_t.cpu().numpy()
        obj_t = object_net.object_map(images).float() if object_net is not None else None
        obj = obj_t.cpu().numpy() if obj_t is not None else None
        if raw is not None and fast:
            if protocol.map != "av" and protocol.threshold == "absolute":
                raise ConfigError("threshold 'absolute' applies to the raw AV map only (map=av)")
            gt_t = batch["gt_map"].to(device)
            maps_t = raw_t if protocol.map == "av" else loc.ogl_maps(raw_t, obj_t, protocol.alpha, size,
                                                                     protocol.upsample)[protocol.map]
            up_t = loc.upsample(loc.nan_to_min(maps_t), size, protocol.upsample)  # (B, 224, 224), as metrics.evaluate
            cious.extend(metrics.evaluate_batch_torch(up_t, gt_t, protocol.threshold, tau).cpu().tolist())
            m224_t = loc.minmax(up_t)  # (B, 224, 224)
            flat_t = m224_t.reshape(m224_t.shape[0], -1).argmax(dim=1).cpu().tolist()  # (B,) row-major argmax
            for j in flat_t:
                y, x = divmod(int(j), size)
                peaks.append(((x + 0.5) / size, (y + 0.5) / size))
            if kind == "extended":
                scores = metrics.extended_scores(raw, tau, size)
                confs.extend(np.atleast_1d(metrics.confidence(scores)).tolist())
                positives.extend(batch["positive"].tolist())
            if kind == "segmentation":
                seg_preds.append(m224_t.cpu().numpy().astype(np.float32))
                seg_masks.append(batch["mask"].numpy().astype(np.uint8))
        elif raw is not None:
            if protocol.map == "av":
                maps = raw
                up = protocol.upsample
            else:
                three = loc.ogl_maps(raw, obj, protocol.alpha, size, protocol.upsample)
                maps = three[protocol.map]  # already (B, 224, 224) in [0, 1]
                up = protocol.upsample
            if protocol.map != "av" and protocol.threshold == "absolute":
                raise ConfigError("threshold 'absolute' applies to the raw AV map only (map=av)")
            res = metrics.evaluate(maps, gt, upsample=up, threshold=protocol.threshold, tau=tau)
            cious.extend(res["ciou"])
            m224 = loc.minmax(loc.upsample(loc.nan_to_min(maps), size, up))  # (B, 224, 224)
            flat = m224.reshape(m224.shape[0], -1).argmax(axis=1)  # (B,) row-major argmax
            for j in flat:
                y, x = divmod(int(j), size)
                peaks.append(((x + 0.5) / size, (y + 0.5) / size))  # normalised peak position
            if kind == "extended":
                scores = metrics.extended_scores(raw, tau, size)
                confs.extend(np.atleast_1d(metrics.confidence(scores)).tolist())
                positives.extend(batch["positive"].tolist())
            if kind == "segmentation":
                seg_preds.append(m224.astype(np.float32))
                seg_masks.append(batch["mask"].numpy().astype(np.uint8))
        if baselines and protocol.threshold != "absolute":
            for name, bmaps in _baseline_maps(n, size, seed + len(ids)).items():
                if fast:  # the baseline maps are already at the gt size: no upsampling
                    bt = torch.from_numpy(np.ascontiguousarray(bmaps)).to(device)
                    c = metrics.evaluate_batch_torch(bt, batch["gt_map"].to(device), protocol.threshold, tau)
                    base_cious.setdefault(name, []).extend(c.cpu().tolist())
                    continue
                r = metrics.evaluate(bmaps, gt, upsample=protocol.upsample, threshold=protocol.threshold, tau=tau)
                base_cious.setdefault(name, []).extend(r["ciou"])
        ids.extend(batch["id"])
    if not ids:
        raise DataError(f"{dataset.list_path}: no sample could be evaluated ({len(failed)} failed to load)")
    result_metrics: dict[str, float] = {}
    per_sample: list[dict[str, Any]] = []
    if model is not None:
        c = np.asarray(cious)
        result_metrics = {"ciou50": float(np.mean(c >= 0.5)), "auc": metrics.auc(c), "mean_ciou": float(c.mean())}
        for i, sid in enumerate(ids):
            row: dict[str, Any] = {"id": sid, "ciou": cious[i], "peak_x": peaks[i][0], "peak_y": peaks[i][1]}
            if kind == "extended":
                row.update(positive=positives[i], confidence=confs[i])
            per_sample.append(row)
        if kind == "extended":
            pos = np.asarray(positives, dtype=bool)
            ext = metrics.extended_metrics(np.asarray(confs), c, pos)
            result_metrics = {**ext, "ciou50_positives": float(np.mean(c[pos] >= 0.5)) if pos.any() else 0.0}
        if kind == "segmentation":
            preds, masks = np.concatenate(seg_preds), np.concatenate(seg_masks)
            if protocol.fscore == "dataset":
                f = metrics.fscore_dataset(preds, masks)
            else:
                groups = [sid.rsplit("_", 1)[0] for sid in ids]
                f = metrics.fscore_per_video_compat(preds, masks, groups=groups)
            result_metrics = {"miou": metrics.miou(preds, masks), "fscore": f, **result_metrics}
    base = {}
    for name, bc in base_cious.items():
        b = np.asarray(bc)
        base[name] = {"ciou50": float(np.mean(b >= 0.5)), "auc": metrics.auc(b), "mean_ciou": float(b.mean())}
    return EvalResult(
        dataset=dataset.name,
        split=dataset.split,
        kind=kind,
        protocol=protocol,
        n_listed=len(dataset.listed),
        n_evaluated=len(ids),
        missing=list(dataset.missing),
        failed=failed,
        metrics=result_metrics,
        per_sample=per_sample,
        baselines=base,
    )


METRIC_LABELS = {
    "ciou50": "cIoU@0.5",
    "auc": "AUC",
    "mean_ciou": "mean cIoU",
    "ap": "AP",
    "max_f1": "max-F1",
    "loc_acc": "LocAcc",
    "ciou50_positives": "cIoU@0.5 (pos.)",
    "miou": "mIoU",
    "fscore": "F-score",
}


def format_table(rows: dict[str, dict[str, float]], header: str = "") -> str:
    """A plain-text table, metrics in percent with two decimals (as papers print them)."""
    keys: list[str] = []
    for r in rows.values():
        for k in r:
            if k not in keys and k in METRIC_LABELS:
                keys.append(k)
    w0 = max([len("method")] + [len(n) for n in rows]) + 2
    cols = [METRIC_LABELS[k] for k in keys]
    lines = []
    if header:
        lines.append(header)
    lines.append("method".ljust(w0) + "".join(c.rjust(max(len(c), 7) + 2) for c in cols))
    lines.append("-" * len(lines[-1]))
    for name, r in rows.items():
        cells = []
        for k, c in zip(keys, cols):
            v = r.get(k)
            cells.append(("-" if v is None else f"{100 * v:.2f}").rjust(max(len(c), 7) + 2))
        lines.append(name.ljust(w0) + "".join(cells))
    return "\n".join(lines)
