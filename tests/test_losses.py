"""FNAC losses against plain-loop computations written from docs/method.md §2."""

import math

import pytest
import torch
import torch.nn.functional as F

from fnac.config import LossConfig
from fnac.losses import fnac_losses, loss_weights, weighted_total


def _rand_feats(B=5, C=6, h=3, w=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(B, C, h, w, generator=g, dtype=torch.float64), dim=1)
    aud = F.normalize(torch.randn(B, C, generator=g, dtype=torch.float64), dim=1)
    return img, aud


def _softmax_row(row):
    m = max(row)
    e = [math.exp(x - m) for x in row]
    s = sum(e)
    return [x / s for x in e]


def _loop_losses(img, aud, tau, thr=0.6):
    B, C, H, W = img.shape
    v = img.tolist()
    a = aud.tolist()

    def dot(x, y):
        return sum(p * q for p, q in zip(x, y))

    def vec(n, h, w):
        return [v[n][c][h][w] for c in range(C)]

    logits = [
        [max(dot(vec(n, h, w), a[m]) / tau for h in range(H) for w in range(W)) for m in range(B)] for n in range(B)
    ]
    # cross entropy both ways
    ce_rows = sum(-math.log(_softmax_row(logits[n])[n]) for n in range(B)) / B
    cols = [[logits[n][m] for n in range(B)] for m in range(B)]
    ce_cols = sum(-math.log(_softmax_row(cols[m])[m]) for m in range(B)) / B
    A_a = [[dot(a[n], a[m]) / tau for m in range(B)] for n in range(B)]
    vbar = [[sum(v[n][c][h][w] for h in range(H) for w in range(W)) / (H * W) for c in range(C)] for n in range(B)]
    A_v = [[dot(vbar[n], vbar[m]) / tau for m in range(B)] for n in range(B)]
    f = []
    for n in range(B):
        loc = [[dot(vec(n, h, w), a[n]) / tau for w in range(W)] for h in range(H)]
        lo = min(min(r) for r in loc)
        hi = max(max(r) for r in loc)
        fn = [0.0] * C
        for h in range(H):
            for w in range(W):
                if (loc[h][w] - lo) / (hi - lo + 1e-5) > thr:
                    for c in range(C):
                        fn[c] += v[n][c][h][w]
        f.append([x / (H * W) for x in fn])
    A_f = [[dot(f[n], f[m]) / tau for m in range(B)] for n in range(B)]

    def l1(X, Y):
        tot = 0.0
        for n in range(B):
            sx, sy = _softmax_row(X[n]), _softmax_row(Y[n])
            tot += sum(abs(p - q) for p, q in zip(sx, sy))
        return tot / (B * B)

    return {
        "contrastive": ce_rows + ce_cols,
        "fns1": l1(A_a, logits),
        "tns": l1(A_a, A_f),
        "fns2": l1(A_v, logits),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("tau", [0.03, 0.5])
def test_terms_match_plain_loops(seed, tau):
    img, aud = _rand_feats(seed=seed)
    got = fnac_losses(img, aud, tau=tau)
    want = _loop_losses(img, aud, tau)
    for k in want:
        assert got[k].item() == pytest.approx(want[k], rel=1e-9, abs=1e-12), k


def test_all_equal_embeddings_give_2_log_B():
    B, C = 7, 4
    img = torch.zeros(B, C, 2, 2)
    img[:, 0] = 1.0
    aud = torch.zeros(B, C)
    aud[:, 0] = 1.0
    out = fnac_losses(img, aud)
    assert out["contrastive"].item() == pytest.approx(2 * math.log(B), rel=1e-6)
    # every matrix is constant, so every softmax is uniform and each L1 term is 0
    for k in ("fns1", "tns", "fns2"):
        assert out[k].item() == pytest.approx(0.0, abs=1e-7)


def _sides(img, aud, tau, term, thr=0.6):
    """The two (B, B) matrices an L1 term compares, written here with plain torch ops (docs/method.md §2):
    fns1 = (A_a, logits), tns = (A_a, A_f), fns2 = (A_v, logits)."""
    B, C, H, W = img.shape
    S = (img.unsqueeze(1) * aud.view(1, B, C, 1, 1)).sum(dim=2) / tau  # (B, B, H, W)
    logits = S.reshape(B, B, H * W).max(dim=2).values
    A_a = (aud.unsqueeze(1) * aud.unsqueeze(0)).sum(-1) / tau
    vbar = img.sum(dim=(2, 3)) / (H * W)
    A_v = (vbar.unsqueeze(1) * vbar.unsqueeze(0)).sum(-1) / tau
    loc = torch.stack([S[n, n] for n in range(B)])  # (B, H, W)
    lo = loc.reshape(B, -1).min(dim=1).values.view(B, 1, 1)
    hi = loc.reshape(B, -1).max(dim=1).values.view(B, 1, 1)
    mask = ((loc - lo) / (hi - lo + 1e-5) > thr).double()  # a hard mask: no gradient through it
    f = (img * mask.unsqueeze(1)).sum(dim=(2, 3)) / (H * W)
    A_f = (f.unsqueeze(1) * f.unsqueeze(0)).sum(-1) / tau
    return {"fns1": (A_a, logits), "tns": (A_a, A_f), "fns2": (A_v, logits)}[term]


def _grads(img, aud, loss_fn):
    i = img.clone().requires_grad_(True)
    a = aud.clone().requires_grad_(True)
    gi, ga = torch.autograd.grad(loss_fn(i, a), (i, a), allow_unused=True)
    gi = torch.zeros_like(img) if gi is None else gi  # None: no path from the loss to that input
    ga = torch.zeros_like(aud) if ga is None else ga
    return torch.cat([gi.flatten(), ga.flatten()]), ga.abs().sum().item()


def _l1_variant(term, tau, detach):
    def fn(i, a):
        x, y = _sides(i, a, tau, term)
        if detach == "left":
            x = x.detach()
        elif detach == "right":
            y = y.detach()
        return (torch.softmax(x, dim=1) - torch.softmax(y, dim=1)).abs().mean()

    return fn


@pytest.mark.parametrize("term", ["fns1", "tns", "fns2"])
@pytest.mark.parametrize("seed", [3, 4])
def test_gradients_flow_into_both_sides_of_each_l1_term(term, seed):
    # The reference detaches nothing (docs/method.md §2 d): the gradient of each L1 term is the sum of
    # the paths through its two sides. A loss that detached either side would give one path only.
    tau = 0.5  # a moderate temperature keeps the softmaxes away from saturation, so every path is visible
    img, aud = _rand_feats(B=4, C=5, seed=seed)
    real, real_aud = _grads(img, aud, lambda i, a: fnac_losses(i, a, tau=tau)[term])
    full, _ = _grads(img, aud, _l1_variant(term, tau, None))
    only_right, _ = _grads(img, aud, _l1_variant(term, tau, "left"))  # left side detached
    only_left, left_aud = _grads(img, aud, _l1_variant(term, tau, "right"))  # right side detached
    torch.testing.assert_close(real, full, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(full, only_left + only_right, rtol=1e-9, atol=1e-12)
    scale = full.norm().item()
    assert scale > 0
    for variant in (only_left, only_right):
        assert (real - variant).norm().item() > 1e-3 * scale, "a one-sided variant must differ"
    if term == "tns":
        # A_f depends on the images alone (the mask carries no gradient), so the audio is trained by
        # TNS only through A_a: detaching A_a would leave the audio without any TNS gradient
        assert real_aud > 0
        _, right_only_aud = _grads(img, aud, _l1_variant(term, tau, "left"))
        assert right_only_aud == 0.0 and left_aud > 0


def test_warmup_schedule_and_ezvsl_ablation():
    cfg = LossConfig()
    assert loss_weights(cfg, 4) == {"contrastive": 1.0, "fns1": 0.0, "tns": 0.0, "fns2": 0.0}
    assert loss_weights(cfg, 5) == {"contrastive": 1.0, "fns1": 100.0, "tns": 100.0, "fns2": 100.0}
    terms = {k: torch.tensor(v) for k, v in {"contrastive": 2.0, "fns1": 0.5, "tns": 0.25, "fns2": 0.125}.items()}
    assert weighted_total(terms, loss_weights(cfg, 5)).item() == pytest.approx(2 + 50 + 25 + 12.5)
    ez = LossConfig(fns1=0, tns=0, fns2=0)
    assert weighted_total(terms, loss_weights(ez, 10)).item() == pytest.approx(2.0)
