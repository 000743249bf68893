"""FNAC's objective as pure functions of the features (docs/method.md §2).

Notation: img (B, C, h, w) unit-norm visual features v, aud (B, C) unit-norm audio embeddings a.
S[n, m, h, w] = <v[n, :, h, w], a[m]> / tau is the similarity volume; rows are images, columns audios.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fnac.config import LossConfig

TERMS = ("contrastive", "fns1", "tns", "fns2")


def similarity_volume(img: Tensor, aud: Tensor, tau: float) -> Tensor:
    """S = v . a / tau: (B, C, h, w), (B', C) -> (B, B', h, w)."""
    return torch.einsum("nchw,mc->nmhw", img, aud) / tau  # (B, B', h, w)


def mil_logits(img: Tensor, aud: Tensor, tau: float) -> Tensor:
    """Multiple-instance logits: max over positions of S, (B, B')."""
    return similarity_volume(img, aud, tau).flatten(2).amax(dim=2)  # (B, B')


def contrastive_loss(logits: Tensor) -> Tensor:
    """L_cl = CE(logits, diag) + CE(logits^T, diag) (two means summed, no 1/2). logits (B, B)."""
    labels = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)


def audio_adjacency(aud: Tensor, tau: float) -> Tensor:
    """A_a = a a^T / tau, (B, B)."""
    return aud @ aud.t() / tau


def visual_adjacency(img: Tensor, tau: float) -> Tensor:
    """A_v = vbar vbar^T / tau with vbar the spatial mean of v (not re-normalised), (B, B)."""
    vbar = img.mean(dim=(2, 3))  # (B, C)
    return vbar @ vbar.t() / tau


def foreground_features(img: Tensor, aud: Tensor, tau: float, threshold: float = 0.6) -> Tensor:
    """f[n] = sum_{hw} v[n] * [minmax(S[n, n]) > threshold] / (h*w): (B, C). The mask is hard (no
    gradient through it); the division is by all positions, as the reference does."""
    loc = torch.einsum("nchw,nc->nhw", img, aud) / tau  # (B, h, w), the diagonal of S
    flat = loc.flatten(1)  # (B, h*w)
    lo = flat.amin(dim=1, keepdim=True)
    hi = flat.amax(dim=1, keepdim=True)
    norm = (flat - lo) / (hi - lo + 1e-5)  # (B, h*w)
    mask = (norm > threshold).to(img.dtype).view_as(loc)  # (B, h, w)
    h, w = loc.shape[1:]
    return (img * mask.unsqueeze(1)).sum(dim=(2, 3)) / (h * w)  # (B, C)


def softmax_l1(a: Tensor, b: Tensor) -> Tensor:
    """mean |softmax(a, 1) - softmax(b, 1)| over all B*B entries."""
    return (a.softmax(dim=1) - b.softmax(dim=1)).abs().mean()


def fnac_losses(
    img_feats: Tensor, aud_feats: Tensor, tau: float = 0.03, tns_threshold: float = 0.6
) -> dict[str, Tensor]:
    """The four loss terms, unweighted: contrastive (EZ-VSL MIL), fns1, tns, fns2.

    img_feats (B, C, h, w) and aud_feats (B, C), both unit norm. Gradients flow into both sides of
    every L1 term (nothing is detached).
    """
    logits = mil_logits(img_feats, aud_feats, tau)  # (B, B)
    a_a = audio_adjacency(aud_feats, tau)  # (B, B)
    a_v = visual_adjacency(img_feats, tau)  # (B, B)
    f = foreground_features(img_feats, aud_feats, tau, tns_threshold)  # (B, C)
    a_f = f @ f.t() / tau  # (B, B)
    return {
        "contrastive": contrastive_loss(logits),
        "fns1": softmax_l1(a_a, logits),
        "tns": softmax_l1(a_a, a_f),
        "fns2": softmax_l1(a_v, logits),
    }


def loss_weights(cfg: LossConfig, epoch: int) -> dict[str, float]:
    """Weight of each term at a (0-based) epoch: the regularisers are off during the loss warm-up."""
    on = epoch >= cfg.warmup_epochs
    return {
        "contrastive": 1.0,
        "fns1": cfg.fns1 if on else 0.0,
        "tns": cfg.tns if on else 0.0,
        "fns2": cfg.fns2 if on else 0.0,
    }


def weighted_total(terms: dict[str, Tensor], weights: dict[str, float]) -> Tensor:
    """L = sum_k w_k L_k (the only place the terms are summed)."""
    total = terms["contrastive"] * weights["contrastive"]
    for k in ("fns1", "tns", "fns2"):
        if weights[k]:
            total = total + weights[k] * terms[k]
    return total
