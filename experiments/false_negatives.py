"""Is the false-negative situation present in a batch, and what do FNAC's regularisers change?

For trained checkpoints (say FNAC and its EZ-VSL ablation from one demo run) and a split whose
annotations carry class names (the synthetic set's do), draws random batches of B samples and reports,
averaged over batches, in the model's own similarity matrices (losses.py: MIL logits S, audio adjacency
A_a, visual adjacency A_v; rows are samples, softmax over the row as in the losses):

- same-class negatives per sample: how many "negatives" in a batch are really of the sample's class;
- the softmax mass each matrix puts on the sample itself, on same-class others, on other classes: the
  contrastive loss wants all of S's mass on the diagonal; FNS1 / FNS2 pull S's rows toward A_a's /
  A_v's, so if the intra-modal matrices put mass on same-class others, they tell S that those are not
  true negatives;
- the contrastive loss of the batch and its floor for a model that separates classes perfectly but
  cannot tell two clips of one class apart (2 * mean ln(1 + same-class negatives));
- mean cosine of the pairs: positive, same-class negative, other-class negative (S's max over positions),
  and between the audio embeddings of same- and other-class clips.

    .venv/bin/python experiments/false_negatives.py --data runs/demo/data \\
        --checkpoint FNAC=runs/demo/fnac/best.pt --checkpoint EZ-VSL=runs/demo/ezvsl/best.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from fnac.checkpoint import checkpoint_config, load_checkpoint
from fnac.config import DataConfig
from fnac.data import build_dataset, collate
from fnac.errors import DataError
from fnac.inputs import model_inputs
from fnac.losses import audio_adjacency, fnac_losses, mil_logits, visual_adjacency

ROWS = [
    ("same-class negatives per sample", "n_fn"),
    ("S: softmax mass on the positive", "s_self"),
    ("S: mass on same-class negatives", "s_same"),
    ("S: mass on other-class negatives", "s_other"),
    ("A_a: mass on self", "aa_self"),
    ("A_a: mass on same-class others", "aa_same"),
    ("A_a: mass on other classes", "aa_other"),
    ("A_v: mass on self", "av_self"),
    ("A_v: mass on same-class others", "av_same"),
    ("A_v: mass on other classes", "av_other"),
    ("contrastive loss", "contrastive"),
    ("its floor at class-level discrimination", "floor"),
    ("fns1 (L1 of S vs A_a)", "fns1"),
    ("tns", "tns"),
    ("fns2 (L1 of S vs A_v)", "fns2"),
    ("cos, positive pairs (max over positions)", "cos_pos"),
    ("cos, same-class negatives", "cos_same"),
    ("cos, other-class negatives", "cos_other"),
    ("audio cos, same class", "acos_same"),
    ("audio cos, other class", "acos_other"),
]


def _class_of(root: Path) -> dict[str, str]:
    p = root / "annotations.json"
    if not p.is_file():
        raise DataError(f"{p}: not found (class names come from the annotations)")
    return {e["file"]: e.get("class", "") for e in json.loads(p.read_text())}


@torch.no_grad()
def embed(model, ds, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Visual maps (N, C, h, w), audio embeddings (N, C) and ids of every sample, in eval mode."""
    imgs, auds, ids = [], [], []
    for start in range(0, len(ds), batch):
        b, _ = collate([ds[i] for i in range(start, min(start + batch, len(ds)))])
        x, s = model_inputs(b, "cpu")
        imgs.append(model.encode_image(x))
        auds.append(model.encode_audio(s))
        ids += list(b["id"])
    return torch.cat(imgs), torch.cat(auds), ids


@torch.no_grad()
def batch_stats(img: torch.Tensor, aud: torch.Tensor, cls: np.ndarray, tau: float) -> dict[str, float]:
    """The quantities of ROWS for one batch (img (B, C, h, w), aud (B, C), cls (B,) class indices)."""
    n = len(cls)
    eye = torch.eye(n, dtype=torch.bool)
    same = torch.from_numpy(cls[:, None] == cls[None, :]) & ~eye
    other = ~torch.from_numpy(cls[:, None] == cls[None, :])
    out: dict[str, float] = {"n_fn": float(same.sum(1).float().mean())}
    logits = mil_logits(img, aud, tau)
    for name, m in (("s", logits), ("aa", audio_adjacency(aud, tau)), ("av", visual_adjacency(img, tau))):
        p = m.softmax(dim=1)
        out[f"{name}_self"] = float(p[eye].mean())
        out[f"{name}_same"] = float((p * same).sum(1).mean())
        out[f"{name}_other"] = float((p * other).sum(1).mean())
    terms = fnac_losses(img, aud, tau)
    out.update({k: float(v) for k, v in terms.items()})
    out["floor"] = float(2 * torch.log1p(same.sum(1).float()).mean())
    cos = logits * tau
    out["cos_pos"] = float(cos[eye].mean())
    out["cos_same"] = float(cos[same].mean()) if same.any() else float("nan")
    out["cos_other"] = float(cos[other].mean())
    acos = aud @ aud.t()
    out["acos_same"] = float(acos[same].mean()) if same.any() else float("nan")
    out["acos_other"] = float(acos[other].mean())
    return out


def analyse(ckpt: str, data_root: str, split: str, batch: int, batches: int, seed: int) -> dict[str, float]:
    model = load_checkpoint(ckpt, "cpu")
    run = checkpoint_config(ckpt)
    dc = run.data if run is not None else DataConfig()
    dc.root, dc.num_workers, dc.cache = data_root, 0, ""
    dc.train_list = dc.val_list = dc.test_list = dc.annotations = ""
    ds = build_dataset(dc, split, train=False)
    img, aud, ids = embed(model, ds)
    names = _class_of(Path(data_root))
    labels = sorted({names[i] for i in ids})
    cls = np.array([labels.index(names[i]) for i in ids])
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(batches):
        idx = rng.choice(len(ids), size=batch, replace=False)
        rows.append(batch_stats(img[idx], aud[idx], cls[idx], model.tau))
    return {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="dataset root (VGG-SS layout with class names)")
    p.add_argument("--checkpoint", action="append", required=True, metavar="NAME=PATH")
    p.add_argument("--split", default="test")
    p.add_argument("--batch", type=int, default=16, help="batch size B (the small config's: 16)")
    p.add_argument("--batches", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the numbers here")
    args = p.parse_args()
    res = {}
    for item in args.checkpoint:
        name, _, path = item.partition("=")
        res[name] = analyse(path or name, args.data, args.split, args.batch, args.batches, args.seed)
    names = list(res)
    lines = [
        f"| {args.split} split, {args.batches} random batches of {args.batch} | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for label, key in ROWS:
        lines.append(f"| {label} | " + " | ".join(f"{res[n][key]:.3f}" for n in names) + " |")
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
