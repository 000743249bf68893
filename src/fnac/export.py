"""`fnac export`: a checkpoint (ours or the authors' released .pth) -> a folder people can share.

The folder holds ``model.safetensors`` (the model's tensors and nothing else: no optimizer, no pickle),
``config.json`` (the model config, the run config when the checkpoint has one, validation metrics, the
ImageNet weights the run started from, the file it came from) and a short ``README.md`` model card.
`fnac.load_checkpoint(folder)` and every ``--checkpoint`` option read it back without unpickling.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from torch import Tensor

from fnac.checkpoint import (
    EXPORT_CONFIG,
    EXPORT_FORMAT,
    EXPORT_WEIGHTS,
    convert_reference_state,
    infer_model_config,
    is_reference_checkpoint,
    read_checkpoint,
)
from fnac.config import ModelConfig, from_dict, to_dict
from fnac.errors import CheckpointError
from fnac.fileio import atomic_path, atomic_write_text
from fnac.models.fnac import FNAC, load_state_strict
from fnac.weights import sha256_file

EXPORT_VERSION = 1
CARD = "README.md"


def _fnac_version() -> str:
    import fnac

    return fnac.__version__


def _number(x: Any) -> float | int | None:
    try:
        return x if isinstance(x, int) and not isinstance(x, bool) else float(x)
    except (TypeError, ValueError):
        return None


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, force: bool = False) -> Path:
    """Write `out_dir`/{model.safetensors, config.json, README.md} from a checkpoint file. The weights
    are loaded into a model first, so a file that would not load is refused before anything is
    written. An existing export in `out_dir` is replaced only with `force`."""
    from safetensors.torch import save_file

    src = Path(checkpoint)
    if src.is_dir():
        raise CheckpointError(f"{src}: is a folder; give a checkpoint file (.pt / .pth) to export")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{out}: exists and is not a folder")
    if (out / EXPORT_WEIGHTS).exists() and not force:
        raise CheckpointError(f"{out}: already holds an exported model; choose another folder or pass --force")

    obj = read_checkpoint(src)
    run_config = None
    if is_reference_checkpoint(obj):
        kind = "authors"
        sd = convert_reference_state(obj["model"])
        mcfg = infer_model_config(sd)
        best = {k: _number(obj[k]) for k in ("best_cIoU", "best_Auc") if k in obj}
    else:
        kind = "fnac"
        sd = obj["model"]
        cfg = from_dict(obj.get("config", {}), f"{src} (config)")
        mcfg = cfg.model
        run_config = to_dict(cfg)
        best = obj.get("best")
    model = FNAC(dataclasses.replace(mcfg), load_pretrained=False)
    load_state_strict(model, sd, str(src))  # refuse what would not load back
    tensors: dict[str, Tensor] = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}

    out.mkdir(parents=True, exist_ok=True)
    weights = out / EXPORT_WEIGHTS
    with atomic_path(weights) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "producer": "fnac"})
    meta = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "fnac_version": _fnac_version(),
        "model": dataclasses.asdict(mcfg),
        "run_config": run_config,
        "best": best,
        "pretrained": obj.get("pretrained"),
        "source": {
            "file": src.name,
            "kind": kind,
            "sha256": sha256_file(src),
            "epoch": _number(obj.get("epoch")),
            "step": _number(obj.get("step")),
        },
        "weights_sha256": sha256_file(weights),
    }
    text = json.dumps(meta, indent=2, default=str) + "\n"
    atomic_write_text(out / EXPORT_CONFIG, text)
    card = model_card(meta, out)
    atomic_write_text(out / CARD, card)
    return out


def _pct(x: Any) -> str:
    v = _number(x)
    return "-" if v is None else f"{100 * v:.2f}"


def _epoch_number(e: Any) -> str:
    return str(e + 1) if isinstance(e, int) else "-"  # stored counted from 0


def model_card(meta: dict, out: Path) -> str:
    """The README.md of an exported folder: what the model is, what it was trained on, how it scored."""
    m = ModelConfig(**meta["model"])
    run = meta.get("run_config")
    src = meta["source"]
    method = "FNAC"
    if run:
        loss = run.get("loss", {})
        if all(float(loss.get(k, 1)) == 0 for k in ("fns1", "tns", "fns2")):
            method = "EZ-VSL (FNAC with its three extra loss weights at 0)"
    origin = "trained with fnac" if src["kind"] == "fnac" else "a checkpoint released by the FNAC authors"
    lines = [
        f"# {out.name}: audio-visual sound source localization model ({method.split(' ')[0]})",
        "",
        f"Exported by fnac {meta['fnac_version']} from `{src['file']}` ({origin}; sha256 `{src['sha256']}`).",
        "Given a video frame and its sound, it gives a map of where in the picture the sound comes from.",
        "",
        "## Use",
        "",
        "```bash",
        f"fnac localize clip.mp4 --checkpoint {out.name}",
        f"fnac eval --checkpoint {out.name} --config CONFIG data.root=...",
        "```",
        "",
        f'In Python: `fnac.load_checkpoint("{out.name}")`. Loading reads `{EXPORT_CONFIG}` (JSON) and '
        f"`{EXPORT_WEIGHTS}` (tensors only); nothing in this folder is unpickled or run.",
        "",
        "## Model",
        "",
        f"- Method: {method}",
        f"- Visual ResNet-18 (base width {m.width}, {m.visual_layers} stages) and audio ResNet-18, "
        f"{m.embed_dim}-dimensional embeddings, temperature {m.tau}",
    ]
    pre = meta.get("pretrained")
    if pre:
        lines.append(f"- Visual backbone started from `{Path(pre['path']).name}` (sha256 `{pre['sha256']}`)")
    elif src["kind"] == "fnac" and run and run.get("model", {}).get("pretrained") == "none":
        lines.append("- Visual backbone started from random initialisation (on purpose)")
    elif src["kind"] == "fnac":
        lines.append("- Visual backbone start: not recorded in the checkpoint")
    lines += ["", "## Training data", ""]
    if run:
        d, t = run.get("data", {}), run.get("train", {})
        lines += [
            f"- Dataset layout `{d.get('dataset')}`, data root `{d.get('root')}`",
            f"- Training list `{d.get('train_list') or '<root>/train.txt'}`, "
            f"validation list `{d.get('val_list') or '<root>/val.txt'}`",
            f"- {t.get('epochs')} epochs planned, batch {t.get('batch_size')}, seed {t.get('seed')}; "
            f"exported at epoch {src.get('epoch')}, step {src.get('step')}",
            f"- The full run configuration is `run_config` in `{EXPORT_CONFIG}`",
        ]
    else:
        lines.append(
            "- Not recorded in the file (the authors' README says which set each released file was "
            f"trained on); exported at epoch {src.get('epoch')}"
        )
    lines += ["", "## Validation", ""]
    best = meta.get("best")
    if src["kind"] == "fnac" and isinstance(best, dict):
        lines += [
            f"Best validation score, after epoch {_epoch_number(best.get('epoch'))}, on {best.get('n', '-')} "
            "clips of the validation list:",
            "",
            "| cIoU@0.5 (%) | AUC (%) | mean cIoU (%) |",
            "|---|---|---|",
            f"| {_pct(best.get('ciou50'))} | {_pct(best.get('auc'))} | {_pct(best.get('mean_ciou'))} |",
        ]
    elif src["kind"] == "authors" and best:
        lines.append("As stored in the file: " + ", ".join(f"{k} = {v}" for k, v in best.items()))
    else:
        lines.append("No validation metrics in the checkpoint.")
    return "\n".join(lines) + "\n"
