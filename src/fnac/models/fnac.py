"""FNAC's two encoders (docs/method.md §1). Features only: the losses live in fnac.losses.

Parameter names equal the authors' (``imgnet.*``, ``audnet.*``, ``img_proj.*``, ``aud_proj.*``), so their
released checkpoints load into this module unchanged (see fnac.checkpoint).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fnac.config import ModelConfig
from fnac.errors import CheckpointError, ConfigError
from fnac.models.resnet import (
    ResNet18Trunk,
    imagenet_state_dict,
    reference_init_,
    torch_cache_resnet18,
)
from fnac.safeload import safe_torch_load
from fnac.weights import default_dir, file_record

log = logging.getLogger(__name__)


def load_state_strict(module: nn.Module, sd: dict[str, Tensor], source: str) -> None:
    """load_state_dict(strict=True) with an error that lists missing and unexpected keys and
    shape mismatches, naming the file."""
    own = module.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [
        f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:

        def few(xs: list[str]) -> str:
            return ", ".join(xs[:8]) + (f" ... ({len(xs)} in all)" if len(xs) > 8 else "")

        parts = []
        if missing:
            parts.append(f"missing keys: {few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {few(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches: {few(shapes)}")
        raise CheckpointError(f"{source}: weights do not match the model; " + "; ".join(parts))
    module.load_state_dict(sd, strict=True)


def read_weights_file(path: str | Path) -> dict[str, Tensor]:
    """A torch weights file as a flat state dict (accepts a raw state dict or {'state_dict'|'model': ...})."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"weights file not found: {p}")
    obj = safe_torch_load(p, "weights file")
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{p}: not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


NO_WEIGHTS = "none"  # model.pretrained: random initialisation on purpose (no cache lookup, no warning)
FETCH_HINT = "run `fnac weights fetch resnet18-imagenet` (downloads torchvision's file into the PyTorch cache)"


def resolve_pretrained(cfg: ModelConfig) -> str | None:
    """The ImageNet weights file to use: cfg.pretrained, else torchvision's cache if present.
    None when there is none (or cfg.pretrained is "none": random initialisation on purpose)."""
    if cfg.pretrained == NO_WEIGHTS:
        if cfg.pretrained_required:
            raise ConfigError(
                "model.pretrained is 'none' (random initialisation) but "
                "model.pretrained_required is true; set one of them differently"
            )
        return None
    if cfg.pretrained:
        if not Path(cfg.pretrained).is_file():
            raise CheckpointError(
                f"model.pretrained: file not found: {cfg.pretrained} (or leave it empty to "
                "use the PyTorch cache: fnac weights fetch resnet18-imagenet)"
            )
        return cfg.pretrained
    if cfg.width == 64:
        cached = torch_cache_resnet18()
        if cached:
            return cached
    if cfg.pretrained_required:
        if cfg.width != 64:
            raise CheckpointError(
                f"model.pretrained_required is true but model.width is {cfg.width}: ImageNet weights exist "
                "for width 64 only"
            )
        raise CheckpointError(
            f"model.pretrained is empty and no resnet18 ImageNet weights are in the PyTorch cache "
            f"({default_dir()}): {FETCH_HINT}, or set model.pretrained to a torchvision resnet18 weights file"
        )
    return None


class FNAC(nn.Module):
    """Visual ResNet-18 (dropout 0.9 on the layer4 map, 1x1 projection, per-position L2 norm) and a
    1-channel audio ResNet-18 (global max pool, linear projection, L2 norm)."""

    def __init__(self, cfg: ModelConfig | None = None, load_pretrained: bool = True) -> None:
        super().__init__()
        self.cfg = cfg = cfg or ModelConfig()
        self.tau = cfg.tau
        if cfg.visual_layers not in (2, 3, 4):
            raise ConfigError(f"model.visual_layers must be 2, 3 or 4 (4 = the reference), got {cfg.visual_layers}")
        self.imgnet = ResNet18Trunk(3, cfg.width, cfg.visual_layers)
        self.audnet = ResNet18Trunk(1, cfg.width)
        self.img_dropout = nn.Dropout(cfg.vision_dropout)
        self.aud_dropout = nn.Dropout(cfg.audio_dropout)
        self.img_proj = nn.Conv2d(self.imgnet.out_channels, cfg.embed_dim, kernel_size=1)
        self.aud_proj = nn.Linear(self.audnet.out_channels, cfg.embed_dim)
        # model.proj_bn (not in the reference): centre and scale each embedding channel before the norm
        self.img_proj_bn = nn.BatchNorm2d(cfg.embed_dim) if cfg.proj_bn else None
        self.aud_proj_bn = nn.BatchNorm1d(cfg.embed_dim) if cfg.proj_bn else None
        for m in (self.imgnet, self.audnet, self.img_proj, self.aud_proj):
            reference_init_(m)
        self.pretrained_source: str | None = None
        # {"path", "sha256"} of the ImageNet weights this model started from (None: random
        # initialisation); training writes it into its log and every checkpoint.
        self.pretrained_weights: dict | None = None
        if load_pretrained:
            path = resolve_pretrained(cfg)
            if path:
                sd = imagenet_state_dict(read_weights_file(path), cfg.visual_layers)
                load_state_strict(self.imgnet, sd, path)
                self.pretrained_source = path
                self.pretrained_weights = file_record(path)
                log.info("visual backbone: ImageNet weights from %s", path)
            elif cfg.pretrained != NO_WEIGHTS:
                hint = f"; {FETCH_HINT}" if cfg.width == 64 else ""
                log.warning(
                    "no ImageNet weights for the visual backbone (model.pretrained is empty and the "
                    "PyTorch cache has none): starting from random initialisation%s",
                    hint,
                )

    def encode_image(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) normalised images -> (B, C, S/s, S/s) features, unit norm at every position
        (s = 32 for the reference's four stages, 16 / 8 with model.visual_layers = 3 / 2)."""
        x = self.imgnet(images)  # (B, 8w, h, w)
        x = self.img_proj(self.img_dropout(x))  # (B, C, h, w)
        if self.img_proj_bn is not None:
            x = self.img_proj_bn(x)
        return F.normalize(x, dim=1)

    def encode_audio(self, specs: Tensor) -> Tensor:
        """(B, 1, F, T) log spectrograms -> (B, C) unit-norm embeddings (global max pool)."""
        x = self.audnet(specs).amax(dim=(2, 3))  # (B, 8w)
        x = self.aud_proj(self.aud_dropout(x))  # (B, C)
        if self.aud_proj_bn is not None:
            x = self.aud_proj_bn(x)
        return F.normalize(x, dim=1)

    def forward(self, images: Tensor, specs: Tensor) -> dict[str, Tensor]:
        return {"img": self.encode_image(images), "aud": self.encode_audio(specs)}

    def localize(self, images: Tensor, specs: Tensor) -> Tensor:
        """Raw localization map of each matching pair: <v[b,:,h,w], a[b]> / tau, (B, h, w) float32
        (``localization_maps``)."""
        return localization_maps(self, images, specs)


def pair_maps(img: Tensor, aud: Tensor, tau: float) -> Tensor:
    """Diagonal of the similarity volume: (B, C, h, w), (B, C) -> (B, h, w) = cos / tau."""
    return torch.einsum("bchw,bc->bhw", img, aud) / tau  # (B, h, w)


def localization_maps(model: nn.Module, images: Tensor, specs: Tensor) -> Tensor:
    """Raw localization map of each matching (image, audio) pair, (B, h, w) float32 on the inputs'
    device: <v[b,:,h,w], a[b]> / tau, the cosine of every visual position with the pair's audio
    embedding over the temperature (docs/method.md §1).

    ``model`` is anything with ``encode_image`` (B, 3, S, S) -> (B, C, h, w), ``encode_audio``
    (B, 1, 257, T) -> (B, C) and ``tau``: an FNAC or its torch.compile wrapper (unwrap
    DistributedDataParallel first). Every map of fnac (evaluation, reports, ``fnac localize``, the server) is made
    here; callers choose the gradient mode and move the maps off the device."""
    img = model.encode_image(images)  # (B, C, h, w)
    aud = model.encode_audio(specs)  # (B, C)
    return pair_maps(img, aud, float(model.tau)).float()  # (B, h, w)


class ObjectNet(nn.Module):
    """The frozen ImageNet ResNet-18 of object-guided localization (docs/method.md §5): its object
    map is the mean absolute layer4 activation over channels. Meaningless without ImageNet weights, so
    construction requires a weights file."""

    def __init__(self, weights_path: str | Path) -> None:
        super().__init__()
        self.net = ResNet18Trunk(3, 64)
        load_state_strict(self.net, imagenet_state_dict(read_weights_file(weights_path)), str(weights_path))
        self.net.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> "ObjectNet":  # always frozen, BN in eval mode
        return super().train(False)

    @torch.no_grad()
    def object_map(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) -> (B, S/32, S/32)."""
        return self.net(images).abs().mean(dim=1)  # (B, h, w)
