"""The analysis script experiments/false_negatives.py on a batch whose numbers are worked out by hand."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

_spec = importlib.util.spec_from_file_location(
    "false_negatives", Path(__file__).resolve().parents[1] / "experiments" / "false_negatives.py"
)
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
    argv = [
        sys.executable,
        str(script),
        "--quick",
        "--classes",
        "4",
        "--seeds",
        "0",
        "1",
        "--jobs",
        "2",
        "--threads",
        "1",
        "--tag",
        "t",
        "--set",
        "model.tau=0.05",
        "--out",
        str(tmp_path),
    ]
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


_sspec = importlib.util.spec_from_file_location(
    "false_negative_sweep", Path(__file__).resolve().parents[1] / "experiments" / "false_negative_sweep.py"
)
sweep = importlib.util.module_from_spec(_sspec)
_sspec.loader.exec_module(sweep)


def test_t_quantile_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in list(range(1, 31)) + [45, 60]:
        for p in (0.8, 0.95, 0.99):
            assert sweep.t_quantile(p, df) == pytest.approx(stats.t.ppf((1 + p) / 2, df), rel=1e-9, abs=1e-9)
            assert sweep.t_two_sided_cdf(1.7, df) == pytest.approx(1 - 2 * stats.t.sf(1.7, df), abs=1e-12)


def test_paired_ci_by_hand():
    # differences 2, 3, 4: mean 3, sd 1; t(0.975, 2) = 4.302652729749464 (tables): half-width 4.3027 / sqrt 3
    m, lo, hi = sweep.paired_ci([3.0, 5.0, 7.0], [1.0, 2.0, 3.0])
    half = 4.302652729749464 / math.sqrt(3)
    assert m == 3 and lo == pytest.approx(3 - half) and hi == pytest.approx(3 + half)
    m, lo, hi = sweep.paired_ci([1.0], [0.5])
    assert m == 0.5 and math.isnan(lo) and math.isnan(hi)


def test_same_class_negatives_by_hand():
    # two classes of 2 in a set of 4, batch 4: the one other same-class clip is always in the batch
    assert sweep.same_class_negatives([2, 2], 4) == pytest.approx(1.0)
    assert sweep.same_class_negatives([4], 4) == pytest.approx(3.0)  # one class: every negative
    # 10 equal classes of 100, batch 16: 15 * 99 / 999
    assert sweep.same_class_negatives([100] * 10, 16) == pytest.approx(15 * 99 / 999)


def _row(recipe, k, seed, f, e, prior=0.15, fn=1.5, end=None, best_epoch=None):
    res = {sweep.FNAC: {"ciou50": f, "auc": f + 0.2}, sweep.EZVSL: {"ciou50": e, "auc": e + 0.2}}
    base = {b: {"ciou50": prior, "auc": prior + 0.2} for b in sweep.BASELINES}
    row = {
        "recipe": recipe,
        "classes": k,
        "class_skew": 0.0,
        "shortcut": 0.0,
        "seed": seed,
        "results": res,
        "baselines": base,
        "same_class_negatives": fn,
    }
    if end is not None:
        fe, ee = end
        row["end_results"] = {sweep.FNAC: {"ciou50": fe, "auc": fe}, sweep.EZVSL: {"ciou50": ee, "auc": ee}}
        row["best_epoch"] = {sweep.FNAC: best_epoch, sweep.EZVSL: 1}
    return row


def test_summary_and_figure_on_fabricated_rows(tmp_path):
    rows = [
        _row("small", 4, s, f, e, fn=fn)
        for s, f, e, fn in ((0, 0.30, 0.28, 3.0), (1, 0.33, 0.30, 4.0), (2, 0.36, 0.32, 5.0))
    ]
    rows += [_row("reference_synth", 10, 0, 0.25, 0.27, fn=1.5)]
    rows += [_row("small", 4, 2, 0.36, 0.32, fn=5.0)]  # a repeated seed counts once
    text = sweep.summarise(rows)
    lines = text.splitlines()
    assert len(lines) == 2 + 4  # header, rule, two metrics for each of two cells
    small = next(x for x in lines if x.startswith("| small | 0 | 0 | k4 |") and "cIoU@0.5" in x)
    # FNAC 30/33/36 -> 33 ± 3; EZ-VSL 28/30/32 -> 30 ± 2; differences 2/3/4 -> 3 with the t interval above
    half = 4.302652729749464 / math.sqrt(3)
    assert "| 4.00 | 3 | cIoU@0.5 | 33.00 ± 3.00 | 30.00 ± 2.00 |" in small
    assert f"+3.00 [{3 - half:+.2f}, {3 + half:+.2f}]" in small
    assert small.endswith("| 15.00 ± 0.00 | 15.00 ± 0.00 | 15.00 ± 0.00 | - - - |")  # no best epochs recorded
    ref = next(x for x in lines if x.startswith("| reference_synth |") and "cIoU@0.5" in x)
    assert "| 1 | cIoU@0.5 | 25.00 ± 0.00 | 27.00 ± 0.00 | -2.00 [n = 1] |" in ref
    png = tmp_path / "fig.png"
    sweep.plot(rows, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "end of training" not in sweep.summary_text(rows)  # no row has it


def test_end_of_training_summary_on_fabricated_rows(tmp_path):
    """The end-of-training table pairs latest.pt's metrics by seed, leaves out seeds (and cells) without
    them, and the best.pt table lists FNAC's best epochs per seed."""
    rows = [
        _row("small", 4, 0, 0.30, 0.28, end=(0.10, 0.20), best_epoch=4),
        _row("small", 4, 1, 0.33, 0.30, end=(0.12, 0.16), best_epoch=2),
        _row("small", 4, 2, 0.36, 0.32),  # recorded before the end of training was
        _row("small", 10, 0, 0.25, 0.27),  # no seed at the end: no end line for this cell
    ]
    end = sweep.summarise(rows, "end").splitlines()
    assert len(end) == 2 + 2 and all("| k4 |" in x for x in end[2:])
    ciou = next(x for x in end if "cIoU@0.5" in x)
    # FNAC 10/12 -> 11 ± 1.41; EZ-VSL 20/16 -> 18 ± 2.83; differences -10/-4 -> -7, t(0.975, 1) = 12.706
    half = 12.706204736174707 * 3  # sd 3 * sqrt(2), over sqrt(2)
    assert "| 2 | cIoU@0.5 | 11.00 ± 1.41 | 18.00 ± 2.83 |" in ciou
    assert f"-7.00 [{-7 - half:+.2f}, {-7 + half:+.2f}] |" in ciou
    assert ciou.endswith("] |")  # no baseline columns at the end of training
    best = sweep.summarise(rows, "best").splitlines()
    k4 = next(x for x in best if "| k4 |" in x and "cIoU@0.5" in x)
    assert k4.endswith("| 4 2 - |") and "| 3 | cIoU@0.5 |" in k4
    text = sweep.summary_text(rows)
    assert text.index("best.pt") < text.index("## end of training (latest.pt)")
    png = tmp_path / "fig.png"
    sweep.plot(rows, png)  # two panels
    from PIL import Image

    with Image.open(png) as im:
        assert im.size[0] > 1.8 * im.size[1]


@pytest.mark.parametrize("quick", [False, True])
def test_scratch_recipe_gets_no_weights_file(tmp_path, monkeypatch, quick):
    """`small` sets model.pretrained to "none" (random initialisation): the sweep must neither pretrain
    a file for it nor pass one to its cells, in full or --quick cells."""
    import argparse

    import fnac.pretrain

    def no_pretraining(*a, **k):
        raise AssertionError("pretrain() called for a recipe trained from scratch")

    monkeypatch.setattr(fnac.pretrain, "pretrain", no_pretraining)
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(set=[], pretrained=None, quick=quick, out=str(tmp_path))
    assert sweep.ensure_pretrained("small", args) == ""
    assert list(tmp_path.iterdir()) == []


def test_false_negative_sweep_quick_end_to_end(tmp_path):
    """--quick: both recipes (the pretrained one gets a tiny pretraining first), two cells in parallel, a
    row each, the summary and figure; a second call reruns nothing; --diagnose reads one cell."""
    import json
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "experiments" / "false_negative_sweep.py"
    argv = [
        sys.executable,
        str(script),
        "--quick",
        "--levels",
        "4",
        "--shortcuts",
        "0",
        "--seeds",
        "0",
        "--recipes",
        "reference_synth",
        "small",
        "--jobs",
        "2",
        "--threads",
        "1",
        "--out",
        str(tmp_path),
        "--figure",
        str(tmp_path / "fn.png"),
    ]
    first = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    rows = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted(r["recipe"] for r in rows) == ["reference_synth", "small"]
    for r in rows:
        assert set(r["results"]) == {sweep.FNAC, sweep.EZVSL} and "centre prior" in r["baselines"]
        assert r["batch_size"] == 16 and 0 < r["same_class_negatives"] < 15
    ref = tmp_path / "reference_synth_k4_sh0_s0"
    assert "fns1: 0.0" in (ref / "ezvsl" / "config.yaml").read_text()
    assert "fns1: 10.0" in (ref / "fnac" / "config.yaml").read_text()
    assert "pretrain_quick_w8.pth" in (ref / "fnac" / "config.yaml").read_text()
    for model in ("fnac", "ezvsl"):  # `small` trains from scratch: no weights file reaches it
        assert "pretrained: none\n" in (tmp_path / "small_k4_sh0_s0" / model / "config.yaml").read_text()
    assert "| reference_synth | 0 | 0 | k4 |" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "fn.png").is_file()
    # the end of training: latest.pt of each model, as `fnac eval` (its own loader and options) scores it
    quick_epochs = rows[0]["epochs"]
    for r in rows:
        cell = tmp_path / sweep.cell_name(r)
        assert r["end_epoch"] == {sweep.FNAC: quick_epochs, sweep.EZVSL: quick_epochs}
        assert all(1 <= r["best_epoch"][m] <= quick_epochs for m in (sweep.FNAC, sweep.EZVSL))
        for name, tag in ((sweep.FNAC, "fnac"), (sweep.EZVSL, "ezvsl")):
            ev = subprocess.run(
                [sys.executable, "-m", "fnac", "eval", "--checkpoint", str(cell / tag / "latest.pt"),
                 "--out", str(cell / tag / "eval_latest"), "--no-baselines", "--workers", "0",
                 "--overlays", "0", f"data.root={cell / 'data'}"],
                capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert ev.returncode == 0, ev.stderr[-2000:]
            metrics = json.loads((cell / tag / "eval_latest" / "metrics.json").read_text())[0]["metrics"]
            for m in ("ciou50", "auc"):
                assert r["end_results"][name][m] == pytest.approx(metrics[m], abs=1e-9)
    assert "## end of training (latest.pt)" in (tmp_path / "summary.md").read_text()
    again = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "done (" not in again.stdout
    # --add-end completes a row recorded without the end of training, and names one whose folder is gone
    full = (tmp_path / "results.jsonl").read_text().splitlines()
    stripped = [json.loads(x) for x in full]
    for r in stripped:
        for key in ("end_results", "best_epoch", "end_epoch"):
            del r[key]
    gone = dict(stripped[0], seed=7)
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stripped + [gone]))
    add = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path), "--add-end", "--jobs", "2", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert add.returncode == 0, add.stderr[-3000:]
    assert f"{sweep.cell_name(gone)}" in add.stdout and "end of training added to 2 rows" in add.stdout
    after = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert after[:2] == [json.loads(x) for x in full] and "end_results" not in after[2]
    diag = subprocess.run(
        [sys.executable, str(script), "--diagnose", str(ref), "--batches", "3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert diag.returncode == 0, diag.stderr[-2000:]
    assert "same-class negatives per sample" in diag.stdout and "batches of 16" in diag.stdout
