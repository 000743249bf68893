"""The analysis script experiments/false_negatives.py on a batch whose numbers are worked out by hand."""
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

_spec = importlib.util.spec_from_file_location(
    "false_negatives", Path(__file__).resolve().parents[1] / "experiments" / "false_negatives.py")
fn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fn)


def test_false_negative_statistics_by_hand():
    # four clips, two classes; each class's clips share one embedding direction (audio and image alike)
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    aud = torch.stack([e1, e1, e2, e2])  # (4, 2)
    img = aud.view(4, 2, 1, 1).clone()  # (4, 2, 1, 1): a 1x1 map
    cls = np.array([0, 0, 1, 1])
    r = fn.batch_stats(img, aud, cls, tau=1.0)
    # every row of S (= A_a = A_v here) is [e, e, 1, 1] up to order: softmax e/(2e+2) on itself and on
    # its same-class twin, 1/(2e+2) on each of the two others
    e = math.e
    assert r["n_fn"] == 1
    for m in ("s", "aa", "av"):
        assert r[f"{m}_self"] == pytest.approx(e / (2 * e + 2))
        assert r[f"{m}_same"] == pytest.approx(e / (2 * e + 2))
        assert r[f"{m}_other"] == pytest.approx(2 / (2 * e + 2))
    # contrastive: two cross-entropies of -log(e / (2e + 2)); the floor for one same-class twin: 2 ln 2
    assert r["contrastive"] == pytest.approx(-2 * math.log(e / (2 * e + 2)), rel=1e-6)
    assert r["floor"] == pytest.approx(2 * math.log(2))
    assert r["fns1"] == pytest.approx(0, abs=1e-7) and r["fns2"] == pytest.approx(0, abs=1e-7)
    assert (r["cos_pos"], r["cos_same"], r["cos_other"]) == (1.0, 1.0, 0.0)
    assert (r["acos_same"], r["acos_other"]) == (1.0, 0.0)
