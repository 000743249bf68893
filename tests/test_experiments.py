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


@pytest.mark.slow
def test_sweep_runs_cells_in_parallel_and_continues(tmp_path):
    """experiments/fnac_vs_ezvsl.py --jobs 2: two tiny cells in their own processes, one row each in
    results.jsonl with the variant's tag and overrides; a second call finds them done and runs nothing."""
    import json
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "experiments" / "fnac_vs_ezvsl.py"
    argv = [sys.executable, str(script), "--quick", "--classes", "4", "--seeds", "0", "1", "--jobs", "2",
            "--threads", "1", "--tag", "t", "--set", "model.tau=0.05", "--out", str(tmp_path)]
    first = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted((r["classes"], r["seed"], r["tag"]) for r in rows) == [(4, 0, "t"), (4, 1, "t")]
    assert all(r["overrides"] == ["model.tau=0.05"] for r in rows)
    assert "tau: 0.05" in (tmp_path / "t_k4_s1" / "ezvsl" / "config.yaml").read_text()
    summary = (tmp_path / "summary_t.md").read_text()
    assert "| t | 4 | FNAC | 2 |" in summary and "baseline: centre prior | 2 |" in summary
    again = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "done (" not in again.stdout  # nothing rerun
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 2
