"""Evaluate a model on a dataset split under a named protocol (docs/evaluation.md). Prints nothing.

Three kinds of benchmark, chosen by what the samples carry:
- localization (``gt_map``): cIoU@0.5, AUC, mean cIoU (sections 1-4);
- extended (``positive`` flags, SLAVC): AP, max-F1, LocAcc (section 5);
- segmentation (``mask``, AVSBench): mIoU and F-score (section 6).
Trivial baselines (centre prior, whole image, random map) are scored on the same samples.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
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
        m = {"av": "AV map", "obj": "object map (OGL prior only)", "av_obj": f"AV+object (OGL, alpha {self.alpha})"}[
            self.map
        ]
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
        return (
            f"{self.dataset} {self.split}: {self.n_evaluated} evaluated of {self.n_listed} listed "
            f"({len(self.missing)} missing, {len(self.failed)} failed to load) | {self.protocol.describe()}"
        )

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
        "random": np.stack([loc.random_map(size, rng) for _ in range(n)])
        if n
        else np.zeros((0, size, size), np.float32),
    }


@dataclass
class EvalOptions:
    """How evaluate_model runs (not what it measures: that is the Protocol)."""

    batch_size: int = 32
    num_workers: int = 0
    pin_memory: bool = True  # pin loader batches when the device is CUDA
    baselines: bool = True  # also score the trivial baselines (not under threshold "absolute")
    progress: bool = True  # a progress bar
    seed: int = 0  # of the random-map baseline
    # NHWC image batches and visual weights (the model is converted in place): faster convolutions on
    # CPUs and GPUs; the maps then equal the default's up to float rounding, not bit for bit
    channels_last: bool = False


@dataclass
class _Scores:
    """Per-sample results gathered batch by batch, and the dataset-level metrics made from them."""

    kind: str = "localization"
    ids: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    cious: list[float] = field(default_factory=list)
    peaks: list[tuple[float, float]] = field(default_factory=list)  # normalised (x, y) of each map's maximum
    confs: list[float] = field(default_factory=list)  # extended: confidence of each map
    positives: list[bool] = field(default_factory=list)
    seg_preds: list[np.ndarray] = field(default_factory=list)  # segmentation: min-max maps at the mask size
    seg_masks: list[np.ndarray] = field(default_factory=list)
    base_cious: dict[str, list[float]] = field(default_factory=dict)

    def add_extras(self, batch: dict, raw: np.ndarray, m224: np.ndarray, tau: float, size: int) -> None:
        """The extended benchmark's confidences and the segmentation benchmark's maps of one batch."""
        if self.kind == "extended":
            scores = metrics.extended_scores(raw, tau, size)
            self.confs.extend(np.atleast_1d(metrics.confidence(scores)).tolist())
            self.positives.extend(batch["positive"].tolist())
        if self.kind == "segmentation":
            self.seg_preds.append(m224.astype(np.float32))
            self.seg_masks.append(batch["mask"].numpy().astype(np.uint8))

    def model_metrics(self, protocol: Protocol) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """Dataset metrics of the kind of benchmark, and one row per sample."""
        c = np.asarray(self.cious)
        result = {"ciou50": float(np.mean(c >= 0.5)), "auc": metrics.auc(c), "mean_ciou": float(c.mean())}
        rows: list[dict[str, Any]] = []
        for i, sid in enumerate(self.ids):
            row: dict[str, Any] = {
                "id": sid,
                "ciou": self.cious[i],
                "peak_x": self.peaks[i][0],
                "peak_y": self.peaks[i][1],
            }
            if self.kind == "extended":
                row.update(positive=self.positives[i], confidence=self.confs[i])
            rows.append(row)
        if self.kind == "extended":
            pos = np.asarray(self.positives, dtype=bool)
            ext = metrics.extended_metrics(np.asarray(self.confs), c, pos)
            result = {**ext, "ciou50_positives": float(np.mean(c[pos] >= 0.5)) if pos.any() else 0.0}
        if self.kind == "segmentation":
            preds, masks = np.concatenate(self.seg_preds), np.concatenate(self.seg_masks)
            if protocol.fscore == "dataset":
                f = metrics.fscore_dataset(preds, masks)
            else:
                groups = [sid.rsplit("_", 1)[0] for sid in self.ids]
                f = metrics.fscore_per_video_compat(preds, masks, groups=groups)
            result = {"miou": metrics.miou(preds, masks), "fscore": f, **result}
        return result, rows

    def baseline_metrics(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, bc in self.base_cious.items():
            b = np.asarray(bc)
            out[name] = {"ciou50": float(np.mean(b >= 0.5)), "auc": metrics.auc(b), "mean_ciou": float(b.mean())}
        return out


def _batch_kind(batch: dict, dataset: Any) -> str | None:
    """The benchmark a batch belongs to (None keeps the current one); DataError without gt maps."""
    if "gt_map" not in batch:
        raise DataError(
            f"{dataset.list_path}: split '{dataset.split}' has no annotations (gt maps); cannot evaluate localization"
        )
    if "mask" in batch:
        return "segmentation"
    if "positive" in batch:
        return "extended"
    return None


def _score_maps(
    raw: torch.Tensor, obj: torch.Tensor | None, gt: torch.Tensor, protocol: Protocol, tau: float
) -> tuple[list[float], torch.Tensor]:
    """cIoU of each map of a batch, on the maps' device: the protocol's map (the AV map, or an OGL
    combination with the object map), upsampled to the gt size, thresholded and scored
    (metrics.evaluate_batch_torch). Also returns the min-max upsampled maps (B, H, W)."""
    if protocol.map != "av" and protocol.threshold == "absolute":
        raise ConfigError("threshold 'absolute' applies to the raw AV map only (map=av)")
    size = gt.shape[-1]
    maps = (
        raw if protocol.map == "av" else loc.ogl_maps(raw, obj, protocol.alpha, size, protocol.upsample)[protocol.map]
    )
    up = loc.upsample(loc.nan_to_min(maps), size, protocol.upsample)  # (B, H, W)
    m = loc.minmax(up)
    if protocol.threshold == "absolute":  # the raw map's scores
        cious = metrics.evaluate_batch_torch(up, gt, protocol.threshold, tau)
    else:  # the normalised maps, normalised once
        cious = metrics.evaluate_batch_torch(m, gt, protocol.threshold, tau, minmaxed=True)
    return cious.cpu().tolist(), m


def _peak_positions(m: torch.Tensor) -> list[tuple[float, float]]:
    """Normalised (x, y) centre of the pixel holding each map's maximum (first in row-major order)."""
    size = m.shape[-1]
    out = []
    for j in m.reshape(m.shape[0], -1).argmax(dim=1).cpu().tolist():
        y, x = divmod(int(j), size)
        out.append(((x + 0.5) / size, (y + 0.5) / size))
    return out


def _score_baselines(scores: _Scores, gt: torch.Tensor, protocol: Protocol, tau: float, seed: int) -> None:
    """The trivial baselines of one batch (maps already at the gt size: no upsampling)."""
    n, size = gt.shape[0], gt.shape[-1]
    for name, bmaps in _baseline_maps(n, size, seed).items():
        bt = torch.from_numpy(np.array(bmaps)).to(gt.device)  # a writable copy (broadcast views are read-only)
        c = metrics.evaluate_batch_torch(bt, gt, protocol.threshold, tau)
        scores.base_cious.setdefault(name, []).extend(c.cpu().tolist())


@torch.no_grad()
def evaluate_model(
    model: torch.nn.Module | None,
    dataset: Any,
    protocol: Protocol | None = None,
    options: EvalOptions | None = None,
    *,
    device: str | torch.device = "cpu",
    object_net: ObjectNet | None = None,
    **option_overrides: Any,
) -> EvalResult:
    """Score `model` on every present sample of `dataset` (never skipping silently: failures are
    counted and named). `model` may be None to score only the baselines.

    Maps are computed batch by batch, then upsampled, thresholded and scored on ``device``
    (metrics.evaluate_batch_torch; on the CPU bit-identical to the per-sample numpy protocol of
    docs/evaluation.md, on GPUs equal to float rounding: docs/performance.md). ``options`` says how
    to run (EvalOptions); its fields may also be given as keywords (``batch_size=64,
    progress=False``), which override ``options``. ``object_net`` is needed by the OGL maps."""
    protocol = protocol or Protocol()
    opts = _options(options, option_overrides)
    device = torch.device(device)
    if protocol.map in ("obj", "av_obj") and object_net is None:
        raise ConfigError(
            f"map={protocol.map} needs the ImageNet object network: name a torchvision resnet18 weights "
            "file (without ImageNet weights the object map is meaningless)"
        )
    if model is not None:
        model.eval()
        if opts.channels_last:
            model.to(memory_format=torch.channels_last)
    tau = float(model.tau) if model is not None else 0.03
    dataset = as_dataset(dataset)
    dataset.prepare_for(device)  # a cached dataset: finish samples on the device, or in workers on CPU
    loader: Any = DataLoader(
        dataset,
        batch_size=opts.batch_size,
        shuffle=False,
        num_workers=opts.num_workers,
        collate_fn=collate,
        pin_memory=opts.pin_memory and device.type == "cuda",
    )
    if opts.progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc=f"eval {dataset.name} {dataset.split}", leave=False, dynamic_ncols=True)
    s = _Scores()
    for batch, bad in loader:
        s.failed.extend(bad)
        if batch is None:
            continue
        s.kind = _batch_kind(batch, dataset) or s.kind
        gt = batch["gt_map"].to(device)  # (B, 224, 224)
        images, specs = model_inputs(batch, device, channels_last=opts.channels_last)
        if model is not None:
            raw = localization_maps(model, images, specs)  # (B, h, w) on the device
            obj = object_net.object_map(images).float() if object_net is not None else None
            cious, m224 = _score_maps(raw, obj, gt, protocol, tau)
            s.cious.extend(cious)
            s.peaks.extend(_peak_positions(m224))
            if s.kind != "localization":
                s.add_extras(batch, raw.cpu().numpy(), m224.cpu().numpy(), tau, gt.shape[-1])
        if opts.baselines and protocol.threshold != "absolute":
            _score_baselines(s, gt, protocol, tau, opts.seed + len(s.ids))
        s.ids.extend(batch["id"])
    if not s.ids:
        raise DataError(f"{dataset.list_path}: no sample could be evaluated ({len(s.failed)} failed to load)")
    result_metrics, per_sample = s.model_metrics(protocol) if model is not None else ({}, [])
    return EvalResult(
        dataset=dataset.name,
        split=dataset.split,
        kind=s.kind,
        protocol=protocol,
        n_listed=len(dataset.listed),
        n_evaluated=len(s.ids),
        missing=list(dataset.missing),
        failed=s.failed,
        metrics=result_metrics,
        per_sample=per_sample,
        baselines=s.baseline_metrics(),
    )


def _options(options: EvalOptions | None, overrides: dict[str, Any]) -> EvalOptions:
    """`options` (default EvalOptions()) with the keyword overrides applied; TypeError for an unknown
    keyword. ``device_metrics`` (of earlier versions) is accepted and ignored: scoring always runs on
    the device."""
    overrides = dict(overrides)
    if overrides.pop("device_metrics", None) is not None:
        warnings.warn(
            "evaluate_model(device_metrics=...) is ignored: maps are always scored on the device",
            DeprecationWarning,
            stacklevel=3,
        )
    known = {f.name for f in fields(EvalOptions)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"evaluate_model() got unexpected keyword argument(s): {', '.join(unknown)}")
    return replace(options or EvalOptions(), **overrides)


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
