"""synth: the false-negative options (variation, shortcut, class_skew) and expected_false_negatives.

Checked against hand computations, a numpy simulation of random batches, a chi-square test of the
drawn classes, and simple features computed here from the rendered pixels and samples (matplotlib's
rgb_to_hsv for colours, numpy FFT for pitch and noise bands, scipy for statistics).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from matplotlib.colors import rgb_to_hsv
from scipy.ndimage import binary_dilation, median_filter
from scipy.stats import chisquare, spearmanr

from fnac.cli import main
from fnac.errors import ConfigError
from fnac.synth import SynthConfig, class_probabilities, expected_false_negatives, generate, make_classes, render_sample

# small, fast scenes: one object (the sounding one), no off-screen sound
SMALL = dict(
    seed=11,
    n_classes=6,
    image_size=64,
    duration=1.0,
    min_distractors=0,
    max_distractors=0,
    offscreen_prob=0.0,
    n_clips=0,
)


def _render(n: int, **kw) -> list:
    cfg = SynthConfig(**{**SMALL, **kw})
    classes = make_classes(cfg)
    return [render_sample(cfg, classes, "train", i) for i in range(n)]


def _dominant(x: np.ndarray, sr: int) -> float:
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1.0 / sr)
    w = max(1, int(round(5.0 / (f[1] - f[0]))))
    return float(f[np.argmax(np.convolve(p, np.ones(w) / w, mode="same"))])


def _centroid(x: np.ndarray, sr: int) -> float:
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1.0 / sr)
    return float((p * f).sum() / p.sum())


def _object_hsv(s) -> np.ndarray:
    return rgb_to_hsv(s.image[s.mask].astype(np.float64) / 255.0)  # (n, 3)


def _circ_mean_deg(h_deg: np.ndarray) -> float:
    a = np.deg2rad(h_deg)
    return float(np.rad2deg(np.arctan2(np.sin(a).mean(), np.cos(a).mean())) % 360.0)


# ----------------------------------------------------------------------------- expected false negatives
def test_expected_false_negatives_hand_values():
    assert expected_false_negatives(SynthConfig(n_classes=2), 16) == pytest.approx(7.5)  # 15 / 2
    assert expected_false_negatives(SynthConfig(n_classes=30), 16) == pytest.approx(0.5)  # 15 / 30
    assert expected_false_negatives(SynthConfig(n_classes=10), 16) == pytest.approx(1.5)
    assert expected_false_negatives(SynthConfig(n_classes=10), 32) == pytest.approx(3.1)
    assert expected_false_negatives(SynthConfig(n_classes=10), 1) == 0.0
    # skew 1, K = 3: p = (1, 1/2, 1/3) / (11/6) = (6, 3, 2) / 11; sum p^2 = 49 / 121
    cfg = SynthConfig(n_classes=3, class_skew=1.0)
    assert class_probabilities(cfg) == pytest.approx([6 / 11, 3 / 11, 2 / 11])
    assert expected_false_negatives(cfg, 16) == pytest.approx(15 * 49 / 121)
    # skew 2, K = 2: p = (1, 1/4) / (5/4) = (0.8, 0.2); sum p^2 = 0.68
    assert expected_false_negatives(SynthConfig(n_classes=2, class_skew=2.0), 11) == pytest.approx(6.8)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="batch size"):
            expected_false_negatives(SynthConfig(), bad)


def test_expected_false_negatives_matches_random_batches():
    """Count same-class others in random batches drawn from p_k = (k + 1)^-s / Z (written out here)."""
    rng = np.random.default_rng(0)
    for k_total, skew, batch in ((10, 0.0, 16), (10, 1.5, 16), (4, 0.7, 32), (30, 0.0, 16)):
        p = np.array([(k + 1) ** -skew for k in range(k_total)])
        p /= p.sum()
        labels = rng.choice(k_total, size=(4000, batch), p=p)  # (batches, B)
        same = (labels[:, :, None] == labels[:, None, :]).sum(-1) - 1  # (batches, B): others of my class
        want = expected_false_negatives(SynthConfig(n_classes=k_total, class_skew=skew), batch)
        assert same.mean() == pytest.approx(want, rel=0.03, abs=0.02), (k_total, skew)


def test_levels_half_to_eight_reachable():
    assert expected_false_negatives(SynthConfig(n_classes=30), 16) <= 0.5
    assert expected_false_negatives(SynthConfig(n_classes=2, class_skew=1.0), 16) >= 8.0
    assert expected_false_negatives(SynthConfig(n_classes=4), 32) == pytest.approx(7.75)


def test_drawn_classes_follow_the_skew():
    """The sounding class of generated samples: chi-square against p_k, and the same-class count in
    random batches of the generated labels matches the formula."""
    cfg = SynthConfig(
        seed=3,
        n_classes=5,
        class_skew=1.2,
        image_size=32,
        duration=0.25,
        sample_rate=4000,
        pitch_min=100.0,
        pitch_max=1500.0,
        clutter=0,
        min_distractors=0,
        max_distractors=0,
        n_clips=0,
    )
    classes = make_classes(cfg)
    labels = np.array([render_sample(cfg, classes, "train", i).record["class_index"] for i in range(1200)])
    counts = np.bincount(labels, minlength=5)
    p = np.array([1.0, 2**-1.2, 3**-1.2, 4**-1.2, 5**-1.2])
    p /= p.sum()
    assert chisquare(counts, p * len(labels)).pvalue > 1e-3, counts
    assert counts[0] > 2.5 * counts[4]  # class 0 about 6.9 times as frequent as class 4
    rng = np.random.default_rng(1)
    batches = np.stack([labels[rng.permutation(len(labels))[:16]] for _ in range(3000)])  # (3000, 16)
    same = (batches[:, :, None] == batches[:, None, :]).sum(-1) - 1
    assert same.mean() == pytest.approx(expected_false_negatives(cfg, 16), rel=0.06)
    # uniform at 0 (the standard draw): no class more than twice as frequent as another over 600
    uni = SynthConfig(**{**cfg.to_dict(), "class_skew": 0.0})
    c0 = np.bincount([render_sample(uni, classes, "train", i).record["class_index"] for i in range(600)], minlength=5)
    assert chisquare(c0).pvalue > 1e-3, c0


# ------------------------------------------------------------------------------------------- defaults
def test_options_at_zero_give_the_standard_samples():
    base = SynthConfig(seed=4, image_size=64, duration=1.0, offscreen_prob=0.5)
    explicit = SynthConfig(**{**base.to_dict(), "variation": 0.0, "shortcut": 0.0, "class_skew": 0.0})
    ints = SynthConfig(**{**base.to_dict(), "variation": 0, "shortcut": 0, "class_skew": 0})
    classes = make_classes(base)
    for split, i in (("train", 0), ("train", 5), ("val", 2), ("test", 7)):
        a = render_sample(base, classes, split, i)
        for cfg in (explicit, ints):
            b = render_sample(cfg, classes, split, i)
            assert a.image.tobytes() == b.image.tobytes() and a.mask.tobytes() == b.mask.tobytes()
            assert a.audio.tobytes() == b.audio.tobytes() and a.record == b.record
            assert "variation_code" not in b.record and "shortcut_code" not in b.record


def test_set_written_before_the_options_is_reused(tmp_path):
    cfg = SynthConfig(n_train=2, n_val=0, n_test=0, n_clips=0, image_size=32, duration=0.5)
    generate(tmp_path / "s", cfg, progress=False)
    meta_path = tmp_path / "s" / "synth.json"
    meta = json.loads(meta_path.read_text())
    for key in ("variation", "shortcut", "class_skew"):
        del meta["config"][key]  # as written by a generator without these options
    meta_path.write_text(json.dumps(meta))
    again = generate(tmp_path / "s", cfg, progress=False, batch_size=9)
    assert again["reused"] is True and again["batch_size"] == 9
    assert again["expected_same_class_negatives"] == pytest.approx(0.8)  # 8 / 10
    other = generate(tmp_path / "s", SynthConfig(**{**cfg.to_dict(), "shortcut": 0.5}), progress=False)
    assert other["reused"] is False and other["shortcut"] == 0.5


def test_validation_names_the_field():
    for name, value in (
        ("variation", 1.5),
        ("variation", -0.1),
        ("shortcut", 2.0),
        ("shortcut", float("nan")),
        ("class_skew", -1.0),
        ("class_skew", 5.0),
        ("variation", "high"),
        ("shortcut", True),
    ):
        with pytest.raises(ConfigError, match=name):
            SynthConfig(**{name: value}).validate()
    SynthConfig(variation=1.0, shortcut=1.0, class_skew=4.0).validate()


# ------------------------------------------------------------------------------------------ variation
@pytest.fixture(scope="module")
def varied():
    return {v: _render(96, variation=v) for v in (0.0, 1.0)}


def _pitch_pos(s, classes) -> float:
    lo, hi = classes[s.record["class_index"]].pitch_band
    return math.log(_dominant(s.audio, 16000) / lo) / math.log(hi / lo)


def _brightness(s) -> float:
    return float(np.percentile(_object_hsv(s)[:, 2], 90))  # the untextured (brightest) parts


def _within_class_std(values: list[float], labels: list[int]) -> float:
    v, lab = np.asarray(values), np.asarray(labels)
    return float(np.sqrt(np.mean([v[lab == k].var() for k in set(labels) if (lab == k).sum() > 2])))


def test_variation_makes_same_class_clips_differ(varied):
    classes = make_classes(SynthConfig(**SMALL))
    spread = {}
    for v, samples in varied.items():
        labels = [s.record["class_index"] for s in samples]
        spread[v] = (
            _within_class_std([_brightness(s) for s in samples], labels),
            _within_class_std([math.log(_centroid(s.audio, 16000)) for s in samples], labels),
            _within_class_std(
                [
                    s.mask.sum()
                    / (s.record["bbox"][0][2] - s.record["bbox"][0][0])
                    / (s.record["bbox"][0][3] - s.record["bbox"][0][1])
                    / 64**2
                    for s in samples
                ],
                labels,
            ),
        )
        for s in samples:  # the pitch stays inside the class's band
            lo, hi = classes[s.record["class_index"]].pitch_band
            assert lo <= _dominant(s.audio, 16000) <= hi
    assert spread[1.0][0] > 1.5 * spread[0.0][0], spread  # brightness: 0.75..1 -> 0.5..1
    assert spread[1.0][1] > 1.3 * spread[0.0][1], spread  # spectral centroid (timbre, noise level)


def test_variation_ties_look_to_sound(varied):
    """At 1 a clip's brightness predicts where its pitch lies in the class's band (a model can match
    a sound to its own object among same-class ones); at 0 the two are unrelated."""
    classes = make_classes(SynthConfig(**SMALL))
    rho = {
        v: spearmanr([_brightness(s) for s in ss], [_pitch_pos(s, classes) for s in ss])[0] for v, ss in varied.items()
    }
    assert rho[1.0] > 0.8 and abs(rho[0.0]) < 0.35, rho


def test_class_stays_obvious_under_variation(varied):
    """Nearest class centroid on two simple features (the object's mean hue; the log dominant
    frequency), fitted on half the clips, right on the other half far above chance (1/6)."""
    for v, samples in varied.items():
        hue = np.array([_circ_mean_deg(_object_hsv(s)[:, 0] * 360.0) for s in samples])
        img = np.stack([np.cos(np.deg2rad(hue)), np.sin(np.deg2rad(hue))], 1)  # (n, 2)
        aud = np.array([[math.log(_dominant(s.audio, 16000))] for s in samples])  # (n, 1)
        y = np.array([s.record["class_index"] for s in samples])
        fit, test = slice(0, 48), slice(48, None)
        for x in (img, aud):
            ks = sorted(set(y[fit]))
            cent = np.stack([x[fit][y[fit] == k].mean(0) for k in ks])  # (K, d)
            pred = np.array(ks)[np.argmin(((x[test][:, None] - cent[None]) ** 2).sum(-1), 1)]
            assert (pred == y[test]).mean() >= 0.9, v


# ------------------------------------------------------------------------------------------- shortcut
def _q_image(s) -> float | None:
    """The tint's hue from saturated background pixels (objects and a margin around them excluded)."""
    bg = ~binary_dilation(s.mask, iterations=3)
    hsv = rgb_to_hsv(s.image[bg].astype(np.float64) / 255.0)
    sat = hsv[:, 1] > 0.4
    if sat.sum() < 20:
        return None
    h = _circ_mean_deg(hsv[sat, 0] * 360.0)
    return 0.0 if h > 330 else min(h, 300.0) / 300.0  # hue = 300 q


def _q_audio(x: np.ndarray, sr: int = 16000) -> float:
    """The strongest noise band between 300 Hz and 6 kHz, read as centre = 300 * 20^q: power spectrum
    averaged on a log-frequency grid (48 points an octave), then a median over 21 points (0.44 octave)
    that removes the tone's partials (lines, or FM sweeps up to about 0.2 octave wide)."""
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1.0 / sr)
    edges = 250.0 * 2.0 ** (np.arange(0, 4.9 * 48 + 1) / 48)  # 250 Hz .. 7.5 kHz
    idx = np.digitize(f, edges) - 1
    ok = (idx >= 0) & (idx < len(edges) - 1)
    power = np.bincount(idx[ok], p[ok], len(edges) - 1) / np.maximum(np.bincount(idx[ok], None, len(edges) - 1), 1)
    sm = median_filter(power, size=21, mode="nearest")
    centres = np.sqrt(edges[:-1] * edges[1:])
    band = (centres >= 290) & (centres <= 6200)
    fc = centres[band][np.argmax(sm[band])]
    return float(np.clip(math.log(fc / 300.0) / math.log(20.0), 0, 1))


@pytest.fixture(scope="module")
def shortcut_samples():
    kw = dict(min_object_size=0.3, max_object_size=0.4)
    return {s: _render(40, shortcut=s, **kw) for s in (0.0, 1.0)}


def test_shortcut_signature_agrees_between_image_and_audio(shortcut_samples):
    agree = {}
    for s, samples in shortcut_samples.items():
        pairs = [(_q_image(x), _q_audio(x.audio)) for x in samples]
        agree[s] = np.mean([qi is not None and abs(qi - qa) < 0.1 for qi, qa in pairs])
        if s:
            codes = [x.record["shortcut_code"][0] for x in samples]
            assert np.mean([abs(qi - c) < 0.1 for (qi, _), c in zip(pairs, codes)]) >= 0.85  # image side
            assert np.mean([abs(qa - c) < 0.1 for (_, qa), c in zip(pairs, codes)]) >= 0.85  # audio side
        else:
            assert all("shortcut_code" not in x.record for x in samples)
    assert agree[1.0] >= 0.8 and agree[0.0] <= 0.35, agree


def test_shortcut_leaves_objects_and_ground_truth_untouched():
    """Same seed, shortcut 0 vs 1 (and under variation): same masks, boxes, classes, pitch; the object's
    pixels are identical and the changed pixels are all in the background; the audio differs."""
    for var in (0.0, 1.0):
        cfg0 = SynthConfig(seed=2, image_size=96, duration=1.0, offscreen_prob=0.5, variation=var)
        cfg1 = SynthConfig(**{**cfg0.to_dict(), "shortcut": 1.0})
        classes = make_classes(cfg0)
        for i in range(12):
            a, b = render_sample(cfg0, classes, "train", i), render_sample(cfg1, classes, "train", i)
            assert np.array_equal(a.mask, b.mask)
            assert {k: v for k, v in b.record.items() if k != "shortcut_code"} == a.record
            assert np.array_equal(a.image[a.mask], b.image[b.mask])
            changed = (a.image != b.image).any(-1)  # (H, W)
            assert changed.mean() > 0.2 and not (changed & a.mask).any()
            assert np.abs(a.audio - b.audio).max() > 0.01


# ------------------------------------------------------------------------------------------------- CLI
def test_cli_prints_and_records_same_class_negatives(tmp_path, capsys):
    out = tmp_path / "fn"
    argv = [
        "synth",
        str(out),
        "--n-train",
        "6",
        "--n-val",
        "0",
        "--n-test",
        "0",
        "--clips",
        "0",
        "--classes",
        "3",
        "--image-size",
        "32",
        "--duration",
        "0.5",
        "--variation",
        "0.5",
        "--shortcut",
        "0.25",
        "--class-skew",
        "1",
        "--batch-size",
        "16",
        "--no-progress",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    want = 15 * 49 / 121  # hand value above: 6.07
    assert f"expected same-class negatives per sample at batch 16: {want:.2f}" in text
    meta = json.loads((out / "synth.json").read_text())
    assert (meta["config"]["variation"], meta["config"]["shortcut"], meta["config"]["class_skew"]) == (0.5, 0.25, 1.0)
    assert meta["summary"]["expected_same_class_negatives"] == pytest.approx(want, abs=1e-4)
    assert meta["summary"]["class_probs"] == pytest.approx([6 / 11, 3 / 11, 2 / 11], abs=1e-6)
    assert sum(meta["summary"]["train_class_counts"]) == 6
    assert main(argv[:-3] + ["--batch-size", "32", "--no-progress"]) == 0  # reused, other batch size
    assert f"at batch 32: {31 * 49 / 121:.2f}" in capsys.readouterr().out
    assert (
        main(
            [
                "synth",
                str(tmp_path / "k2"),
                "--classes",
                "2",
                "--n-train",
                "2",
                "--n-val",
                "0",
                "--n-test",
                "0",
                "--clips",
                "0",
                "--image-size",
                "32",
                "--duration",
                "0.5",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "at batch 16: 7.50" in capsys.readouterr().out


def test_cli_rejects_bad_values(tmp_path, capsys):
    for flag, value, name in (
        ("--variation", "1.2", "variation"),
        ("--shortcut", "-1", "shortcut"),
        ("--class-skew", "9", "class_skew"),
        ("--batch-size", "0", "batch size"),
    ):
        assert main(["synth", str(tmp_path / "x"), flag, value, "--no-progress"]) == 1
        err = capsys.readouterr().err
        assert name in err and "Traceback" not in err


def test_options_on_same_bytes_whatever_the_workers(tmp_path):
    cfg = SynthConfig(
        seed=9,
        n_train=6,
        n_val=2,
        n_test=2,
        n_clips=0,
        image_size=48,
        duration=0.5,
        variation=0.7,
        shortcut=0.6,
        class_skew=1.0,
    )
    generate(tmp_path / "one", cfg, progress=False, workers=1)
    generate(tmp_path / "two", cfg, progress=False, workers=2)
    files = sorted(
        p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file() and p.name != "synth.json"
    )
    assert len(files) >= 30
    for rel in files:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes(), rel
