"""Evaluation runs as a user asks for them: load, evaluate under one or more protocols, write the
per-sample CSV, metrics JSON and overlays, and return the printed table. Used by `fnac eval` and the demo.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from fnac import localization as loc
from fnac.checkpoint import (
    LoadedCheckpoint,
    checkpoint_config,
    export_epoch,
    export_run_config,
    is_reference_checkpoint,
    load_model_and_config,
    read_checkpoint,
    read_export_meta,
    stored_epoch,
)
from fnac.config import Config, from_dict, load_config, resolve_config_path
from fnac.data import build_dataset, collate
from fnac.evaluate import EvalResult, Protocol, evaluate_model, format_table
from fnac.inputs import model_inputs
from fnac.models.fnac import ObjectNet, localization_maps
from fnac.train import resolve_device
from fnac.vision import denormalize
from fnac.visualize import heat_overlay, save_png

log = logging.getLogger(__name__)


def resolve_eval_config(
    checkpoint: str | None, config: str | None, overrides: Sequence[str], stored: Config | None = None
) -> Config:
    """--config if given, else the checkpoint's stored config, else defaults; then the overrides.
    ``stored`` is the checkpoint's config when already loaded (the file is then not read again)."""
    if config:
        return load_config(resolve_config_path(config), list(overrides))
    cfg = stored if stored is not None else checkpoint_config(checkpoint) if checkpoint else None
    if cfg is None:
        cfg = load_config(None, [])
    from fnac.config import apply_overrides

    return apply_overrides(cfg, list(overrides))


def model_label(checkpoint: str | Path, loaded: LoadedCheckpoint | None = None) -> str:
    """The row name of a checkpoint's model, from what the file says about its training.

    Our checkpoints carry their config: "EZ-VSL" when loss.fns1, loss.tns and loss.fns2 are all 0,
    "FNAC" otherwise (a partial ablation names its zero weights, e.g. "FNAC (loss.fns2=0)"), plus
    "warm-up only" when the file was saved before the loss warm-up ended (the regularisers never
    applied). The authors' files hold no config: "FNAC or EZ-VSL (authors' checkpoint <file name>)".
    An exported folder is named as the checkpoint it was exported from. ``loaded`` is what
    ``load_model_and_config(checkpoint)`` returned, when the caller has it: the file is then not read.
    """
    if loaded is not None:
        return label_from(loaded.config, loaded.epoch, checkpoint)
    if Path(checkpoint).is_dir():  # an exported folder: its config.json says what the run was
        meta = read_export_meta(checkpoint)
        return label_from(export_run_config(meta, checkpoint), export_epoch(meta), checkpoint)
    obj = read_checkpoint(checkpoint)
    if is_reference_checkpoint(obj):
        return label_from(None, None, checkpoint)
    cfg = from_dict(obj.get("config", {}), f"{checkpoint} (config)")
    return label_from(cfg, stored_epoch(obj.get("epoch")), checkpoint)


def label_from(cfg: Config | None, epoch: int | None, checkpoint: str | Path) -> str:
    """`model_label` from a checkpoint's run config (None: the authors' file, or an export of one), the
    epoch it was saved at (None: unknown) and its path (a folder is an export)."""
    name = Path(checkpoint).name
    if cfg is None:
        if Path(checkpoint).is_dir():
            return f"FNAC or EZ-VSL (authors' checkpoint, exported to {name})"
        return f"FNAC or EZ-VSL (authors' checkpoint {name})"
    weights = {"fns1": cfg.loss.fns1, "tns": cfg.loss.tns, "fns2": cfg.loss.fns2}
    zero = [k for k, w in weights.items() if w == 0]
    if len(zero) == len(weights):
        return "EZ-VSL"
    notes = [f"loss.{k}=0" for k in zero]
    if epoch is not None and epoch <= cfg.loss.warmup_epochs:
        notes.append(f"warm-up only: {epoch} of {cfg.loss.warmup_epochs} warm-up epochs")
    return "FNAC" + (f" ({', '.join(notes)})" if notes else "")


def outline(gt: np.ndarray) -> np.ndarray:
    """Boolean (H, W) mask of the boundary pixels of gt > 0."""
    m = gt > 0
    inner = m.copy()
    inner[1:, :] &= m[:-1, :]
    inner[:-1, :] &= m[1:, :]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    return m & ~inner


@torch.no_grad()
def write_overlays(
    model: torch.nn.Module, dataset: Any, result: EvalResult, out_dir: Path, k: int, device: torch.device
) -> list[Path]:
    """Heat map over the frame with the ground-truth outline (white) for the k best and k worst samples."""
    if k <= 0 or not result.per_sample:
        return []
    index_of = {sid: i for i, sid in enumerate(dataset.ids)}
    rows = sorted(result.per_sample, key=lambda r: r["ciou"])
    chosen = [("worst", r) for r in rows[:k]] + [("best", r) for r in rows[::-1][:k]]
    paths = []
    for tag, row in chosen:
        sample = dataset[index_of[row["id"]]]
        if "error" in sample:
            continue
        # through the same seam as evaluation: a cached sample left unfinished for the device (uint8
        # image, raw audio window) becomes model inputs here, a finished one is only moved
        batch, _ = collate([sample])
        img, spec = model_inputs(batch, device)
        raw = localization_maps(model, img, spec)[0].cpu().numpy()
        frame = (denormalize(img[0].float().cpu()).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        size = frame.shape[0]
        m = loc.minmax(loc.upsample(raw, size, result.protocol.upsample))
        pk = loc.peak_and_box(m)
        over = heat_overlay(frame, m, alpha=0.5, peak=((pk.x + 0.5) / size, (pk.y + 0.5) / size))
        gt = sample["gt_map"].numpy()
        if gt.shape[0] != size:
            gt = loc.upsample(gt, size, "bilinear")
        over[outline(gt)] = (255, 255, 255)
        safe = "".join(c if c.isalnum() or c in "-_+" else "_" for c in row["id"])
        p = out_dir / "overlays" / f"{tag}_{row['ciou']:.3f}_{safe}.png"
        paths.append(save_png(p, over))
    return paths


def write_per_sample(result: EvalResult, path: Path, baseline_rows: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    for r in result.per_sample:
        keys.extend(k for k in r if k not in keys)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys or ["id"])
        w.writeheader()
        for r in result.per_sample:
            w.writerow(r)
        for sid, why in result.failed:
            w.writerow({"id": sid, **({"ciou": ""} if "ciou" in keys else {})})
    if result.failed:
        with open(path.with_name(path.stem + "_failed.csv"), "w", newline="") as f:
            w2 = csv.writer(f)
            w2.writerow(["id", "reason"])
            w2.writerows(result.failed)


def run_evaluation(
    checkpoint: str | None,
    config: str | None = None,
    overrides: Sequence[str] = (),
    split: str = "test",
    protocols: Sequence[Protocol] = (Protocol(),),
    object_weights: str | None = None,
    out_dir: str | Path | None = None,
    overlays: int = 4,
    batch_size: int = 32,
    device: str = "auto",
    workers: int | None = None,
    baselines: bool = True,
    label: str | None = None,
    channels_last: bool = False,
) -> str:
    """Evaluate and write outputs; returns the text to print (one table per protocol).

    ``label`` names the model's row; None derives it from the checkpoint (``model_label``).
    ``channels_last``: EvalOptions.channels_last."""
    dev = resolve_device(device)
    loaded = load_model_and_config(checkpoint, dev) if checkpoint else None  # the one read of the file
    model = loaded.model if loaded is not None else None
    cfg = resolve_eval_config(None, config, overrides, stored=loaded.config if loaded is not None else None)
    if loaded is not None and not label:
        label = model_label(checkpoint, loaded)
    dataset = build_dataset(cfg.data, split, train=False)
    object_net = ObjectNet(object_weights).to(dev) if object_weights else None
    out = Path(out_dir) if out_dir else None
    texts = []
    summary = []
    for i, proto in enumerate(protocols):
        res = evaluate_model(
            model,
            dataset,
            proto,
            batch_size=batch_size,
            device=dev,
            num_workers=cfg.data.num_workers if workers is None else workers,
            object_net=object_net,
            baselines=baselines and i == 0,
            progress=True,
            channels_last=channels_last,
        )
        rows: dict[str, dict[str, float]] = {}
        if model is not None:
            rows[f"{label} ({proto.map})" if len(protocols) > 1 else label] = res.metrics
        rows.update({f"baseline: {n}": v for n, v in res.baselines.items()})
        text = format_table(rows, header=res.header())
        if res.missing:
            shown = ", ".join(res.missing[:10]) + (" ..." if len(res.missing) > 10 else "")
            text += f"\nmissing ({len(res.missing)}): {shown}"
        if res.failed:
            shown = "; ".join(f"{s}: {r}" for s, r in res.failed[:5]) + (" ..." if len(res.failed) > 5 else "")
            text += f"\nfailed to load ({len(res.failed)}): {shown}"
        texts.append(text)
        summary.append(res.to_dict() | {"per_sample": None})
        if out is not None and model is not None:
            tag = proto.map if len(protocols) > 1 else ""
            write_per_sample(res, out / f"per_sample{('_' + tag) if tag else ''}.csv")
            if i == 0 and proto.map == "av":
                write_overlays(model, dataset, res, out, overlays, dev)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(summary, indent=2))
        if dataset.missing:
            (out / "missing.txt").write_text("\n".join(dataset.missing) + "\n")
    return "\n\n".join(texts)
