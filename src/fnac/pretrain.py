"""Supervised pretraining of the visual ResNet-18 on synthetic objects: the synthetic world's "ImageNet".

Each image holds one object drawn with the synthetic benchmark's own helpers (shapes, textures, colours,
cluttered backgrounds), at a random size, angle and hue; the label is the object's shape (or its shape
and texture). Hues span the whole colour circle, so colour never gives the label away: a network that
classifies well has learned to find an object on clutter and describe its outline, which is what a
localization model needs from its visual backbone.

The population is disjoint from every benchmark split: benchmark sample i of split s is drawn from
numpy's SeedSequence([seed, code(s), i]) with code(s) in synth._SPLIT_CODE (0..3); pretraining images
use the codes in POPULATION_CODES (1000 and above), so for any seed no pretraining image shares a
generator with a benchmark sample.

The output FILE is a torchvision-format resnet18 state dict (conv1.*, bn1.*, layer1..layerL.*, fc.*),
so `model.pretrained=FILE` loads it the way ImageNet weights load (fnac.models.fnac.FNAC). Stages after
`layers` are absent: the file serves any model.visual_layers <= layers with the same model.width.
Progress (weights, optimizer, epoch) is checkpointed atomically beside FILE after every epoch;
`resume=True` continues from there.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fnac import synth
from fnac.checkpoint import atomic_save
from fnac.errors import CheckpointError, ConfigError
from fnac.models.resnet import ResNet18Trunk, reference_init_
from fnac.safeload import safe_torch_load
from fnac.vision import normalize

log = logging.getLogger(__name__)

# seed-sequence codes of the pretraining population; the benchmark uses synth._SPLIT_CODE (0..3)
POPULATION_CODES = {"train": 1000, "test": 1001}
LABELS = ("shape", "shape_texture")


@dataclass
class PretrainConfig:
    seed: int = 0
    width: int = 16  # ResNet-18 base width: must equal the FNAC model's model.width
    layers: int = 2  # stages trained and written; the file loads for model.visual_layers <= layers
    image_size: int = 64
    n_train: int = 3000  # images in the training population (rendered once, kept in memory)
    n_test: int = 500  # held-out images (their own seed stream)
    epochs: int = 6
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    labels: str = "shape"  # "shape": 12 classes; "shape_texture": 48
    min_object_size: float = 0.3  # object diameter as a fraction of the side
    max_object_size: float = 0.8
    clutter: int = 14  # background clutter shapes (the benchmark's default)

    def validate(self) -> None:
        def bad(name: str, why: str) -> None:
            raise ConfigError(f"pretrain '{name}' = {getattr(self, name)!r}: {why}")

        if self.seed < 0:
            bad("seed", "must be >= 0")
        if self.width < 1:
            bad("width", "must be >= 1")
        if self.layers not in (1, 2, 3, 4):
            bad("layers", "must be 1..4")
        if not 32 <= self.image_size <= 512:
            bad("image_size", "must be between 32 and 512")
        if self.n_train < self.batch_size:
            bad("n_train", f"must be at least one batch ({self.batch_size})")
        if self.n_test < 1:
            bad("n_test", "must be >= 1")
        if self.epochs < 1 or self.batch_size < 2:
            bad("epochs", "epochs >= 1 and batch_size >= 2 required")
        if self.labels not in LABELS:
            bad("labels", f"one of {', '.join(LABELS)}")
        if not 0.1 <= self.min_object_size <= self.max_object_size <= 0.9:
            bad("min_object_size", "need 0.1 <= min_object_size <= max_object_size <= 0.9")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def n_labels(self) -> int:
        return len(synth.SHAPES) * (len(synth.TEXTURES) if self.labels == "shape_texture" else 1)


def seed_sequence(seed: int, part: str, index: int) -> np.random.SeedSequence:
    """The generator seed of pretraining image `index` of `part` ("train" or "test")."""
    return np.random.SeedSequence([seed, POPULATION_CODES[part], index])


def render_object(cfg: PretrainConfig, part: str, index: int) -> tuple[np.ndarray, int, np.ndarray]:
    """Image (S, S, 3) uint8, label and the object's mask (S, S) bool of one pretraining image."""
    rng = np.random.default_rng(seed_sequence(cfg.seed, part, index))
    size = cfg.image_size
    s = int(rng.integers(len(synth.SHAPES)))
    t = int(rng.integers(len(synth.TEXTURES)))
    hue = float(rng.uniform(0, 360))
    cls = synth.SynthClass(  # visual identity only; the sound fields are unused placeholders
        index=-1,
        name=f"{synth.SHAPES[s]} {synth.TEXTURES[t]}",
        shape=synth.SHAPES[s],
        texture=synth.TEXTURES[t],
        hue=hue,
        hue_range=(hue, hue),
        pitch_band=(0.0, 0.0),
        timbre="pure",
        harmonics=synth.TIMBRES["pure"],
        modulation="steady",
        rhythm="continuous",
        noise_band=(0.0, 0.0),
        noise_gain=0.0,
    )
    look = synth.SynthConfig(
        image_size=size, min_object_size=cfg.min_object_size, max_object_size=cfg.max_object_size, hue_jitter=0.0
    )
    obj = synth._sample_obj(rng, cls, look, size)
    synth._place(rng, [obj], size)
    canvas = synth._background(rng, size, cfg.clutter)
    mask = synth._render_obj(canvas, obj)
    label = s * len(synth.TEXTURES) + t if cfg.labels == "shape_texture" else s
    return synth._to_uint8(canvas), label, mask


def render_set(cfg: PretrainConfig, part: str, n: int) -> tuple[Tensor, Tensor]:
    """n images of `part` as (n, 3, S, S) uint8 and their labels (n,) int64."""
    imgs = np.empty((n, cfg.image_size, cfg.image_size, 3), np.uint8)
    labels = np.empty(n, np.int64)
    for i in range(n):
        imgs[i], labels[i], _ = render_object(cfg, part, i)
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)


class Classifier(nn.Module):
    """The FNAC visual trunk (torchvision names) + global average pool + a linear classifier `fc`."""

    def __init__(self, width: int, layers: int, n_labels: int) -> None:
        super().__init__()
        self.trunk = ResNet18Trunk(3, width, layers)
        self.fc = nn.Linear(self.trunk.out_channels, n_labels)
        reference_init_(self.trunk)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.trunk(x).mean(dim=(2, 3)))

    def torchvision_state_dict(self) -> dict[str, Tensor]:
        sd = {k: v.detach().clone() for k, v in self.trunk.state_dict().items()}
        sd["fc.weight"] = self.fc.weight.detach().clone()
        sd["fc.bias"] = self.fc.bias.detach().clone()
        return sd


def state_path(out: str | Path) -> Path:
    """Where the resumable state of a pretraining run writing `out` lives."""
    p = Path(out)
    return p.with_name(p.name + ".state.pt")


@torch.no_grad()
def accuracy(model: Classifier, images: Tensor, labels: Tensor, batch: int = 256) -> float:
    model.eval()
    right = 0
    for a in range(0, len(labels), batch):
        logits = model(normalize(images[a : a + batch]))
        right += int((logits.argmax(1) == labels[a : a + batch]).sum())
    return right / len(labels)


def _augment(x: Tensor, g: torch.Generator) -> Tensor:
    """Random horizontal flips of a uint8 batch (B, 3, S, S)."""
    flip = torch.rand(len(x), generator=g) < 0.5
    x = x.clone()
    x[flip] = x[flip].flip(-1)
    return x


def pretrain(cfg: PretrainConfig, out: str | Path, resume: bool = False, progress: bool = True) -> dict:
    """Train, write the weights to `out` (torchvision resnet18 names) and `out`.json (the run's summary).
    Returns the summary: held-out accuracy, chance level, epochs, seconds."""
    cfg.validate()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model = Classifier(cfg.width, cfg.layers, cfg.n_labels)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start, history = 0, []
    sp = state_path(out)
    if resume:
        if not sp.is_file():
            raise CheckpointError(f"--resume: no pretraining state at {sp}")
        st = safe_torch_load(sp, "pretraining state")
        saved = dict(st.get("config", {}))
        mine = cfg.to_dict()
        differ = sorted(k for k in mine if k != "epochs" and saved.get(k) != mine[k])
        if differ:
            raise ConfigError(
                f"--resume: {sp} was written with other settings ({', '.join(differ)}); "
                "use the same ones (only epochs may grow)"
            )
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        start, history = int(st["epoch"]), list(st.get("history", []))
        log.info("resumed from %s after epoch %d", sp, start)

    log.info("rendering %d training and %d held-out objects (%d px)", cfg.n_train, cfg.n_test, cfg.image_size)
    x_train, y_train = render_set(cfg, "train", cfg.n_train)
    x_test, y_test = render_set(cfg, "test", cfg.n_test)
    per_epoch = cfg.n_train // cfg.batch_size
    from tqdm import tqdm

    for epoch in range(start, cfg.epochs):
        model.train()
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)  # a pure function of the epoch
        order = torch.randperm(cfg.n_train, generator=g)
        bar = tqdm(
            total=per_epoch, desc=f"pretrain {epoch + 1}/{cfg.epochs}", unit="batch", disable=not progress, leave=False
        )
        total, right, seen = 0.0, 0, 0
        for b in range(per_epoch):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            x = normalize(_augment(x_train[idx], g))
            y = y_train[idx]
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(y)
            right += int((logits.argmax(1) == y).sum())
            seen += len(y)
            bar.update(1)
            bar.set_postfix(loss=f"{total / seen:.3f}", acc=f"{right / seen:.2f}")
        bar.close()
        history.append({"epoch": epoch + 1, "loss": total / seen, "train_acc": right / seen})
        log.info("epoch %d/%d: loss %.3f, training accuracy %.3f", epoch + 1, cfg.epochs, total / seen, right / seen)
        atomic_save(
            {
                "config": cfg.to_dict(),
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "epoch": epoch + 1,
                "history": history,
            },
            sp,
        )

    acc = accuracy(model, x_test, y_test)
    atomic_save(model.torchvision_state_dict(), out)
    summary = {
        "file": str(out),
        "test_accuracy": acc,
        "chance": 1.0 / cfg.n_labels,
        "n_labels": cfg.n_labels,
        "epochs": cfg.epochs,
        "resumed_from": start if resume else None,
        "seconds": round(time.perf_counter() - t0, 2),
        "config": cfg.to_dict(),
        "history": history,
    }
    tmp = out.with_name(out.name + ".json.tmp")
    tmp.write_text(json.dumps(summary, indent=1) + "\n")
    tmp.replace(out.with_name(out.name + ".json"))
    return summary
