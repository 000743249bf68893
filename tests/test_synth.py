"""synth: the built-in synthetic benchmark (docs/synthetic.md).

Everything is checked from the written files with independent tools: Pillow and soundfile to read,
PyAV to decode the clips, matplotlib's rgb_to_hsv for colours, numpy FFT for pitch, plain loops over
mask rows/columns for boxes, and hand-computed class hues and pitch bands for K = 10.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from matplotlib.colors import rgb_to_hsv
from PIL import Image
from scipy.ndimage import binary_erosion

from fnac.cli import main
from fnac.errors import ConfigError, DataError
from fnac.synth import SynthConfig, generate

K = 10
SIZE = 128
SR = 16000
CFG = dict(
    seed=7,
    n_train=24,
    n_val=8,
    n_test=8,
    n_classes=K,
    image_size=SIZE,
    max_distractors=3,
    offscreen_prob=0.3,
    n_clips=1,
    clip_seconds=5.0,
)


def _band(k: int) -> tuple[float, float]:
    """Hand-computed: [140, 2800] Hz split in 10 log-equal bands, class k gets band k."""
    r = (2800.0 / 140.0) ** (1.0 / K)
    return 140.0 * r**k, 140.0 * r ** (k + 1)


def _hue(k: int) -> float:
    return 36.0 * k  # 10 hue families, 36 degrees apart, red = 0


def _hue_dist(a: np.ndarray, b: float) -> np.ndarray:
    d = np.abs((a - b) % 360.0)
    return np.minimum(d, 360.0 - d)


def _dominant(x: np.ndarray, sr: int) -> float:
    """Frequency of the largest peak of the power spectrum smoothed over ~5 Hz."""
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1.0 / sr)
    w = max(1, int(round(5.0 / (f[1] - f[0]))))
    return float(f[np.argmax(np.convolve(p, np.ones(w) / w, mode="same"))])


def _read_json(p: Path):
    return json.loads(p.read_text())


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "set"
    summary = generate(out, SynthConfig(**CFG), progress=False)
    assert summary["n_train"] == 24 and summary["reused"] is False
    return out


@pytest.fixture(scope="module")
def ids(root) -> dict[str, list[str]]:
    return {s: (root / f"{s}.txt").read_text().split() for s in ("train", "val", "test")}


@pytest.fixture(scope="module")
def scenes(root) -> dict[str, dict]:
    return {r["file"]: r for r in _read_json(root / "scenes.json")}


@pytest.fixture(scope="module")
def classes(root) -> list[dict]:
    return _read_json(root / "classes.json")


# ---------------------------------------------------------------------------------------------- layout
def test_id_lists_sizes_and_disjoint(ids):
    assert [len(ids[s]) for s in ("train", "val", "test")] == [24, 8, 8]
    all_ids = ids["train"] + ids["val"] + ids["test"]
    assert len(set(all_ids)) == 40  # no id twice, no id in two splits


def test_frames_masks_audio_formats(root, ids):
    for i in ids["train"] + ids["val"] + ids["test"]:
        with Image.open(root / "frames" / f"{i}.jpg") as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (SIZE, SIZE)
        with Image.open(root / "masks" / f"{i}.png") as m:
            assert m.format == "PNG" and m.size == (SIZE, SIZE)
            assert set(np.unique(np.asarray(m)).tolist()) == {0, 255}
        info = sf.info(str(root / "audio" / f"{i}.wav"))
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (SR, 1, "PCM_16", 3 * SR)


def test_annotations_are_vggss_format(root, ids, classes):
    ann = _read_json(root / "annotations.json")
    assert isinstance(ann, list) and len(ann) == 40
    names = {c["name"] for c in classes}
    assert len(names) == K
    assert [a["file"] for a in ann] == ids["train"] + ids["val"] + ids["test"]
    for a in ann:
        assert set(a) == {"file", "class", "bbox"}
        assert a["class"] in names
        assert isinstance(a["bbox"], list) and len(a["bbox"]) == 1
        x1, y1, x2, y2 = a["bbox"][0]
        assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1
    meta = _read_json(root / "synth.json")
    assert meta["complete"] is True and meta["config"]["seed"] == 7 and meta["config"]["n_classes"] == K


def test_classes_table(classes):
    """Each class: its own hue family (36 degrees apart) and its own pitch band (hand-computed)."""
    assert [c["index"] for c in classes] == list(range(K))
    for k, c in enumerate(classes):
        assert c["hue"] == pytest.approx(_hue(k))
        assert c["pitch_band"] == pytest.approx(list(_band(k)), rel=1e-9)
    assert len({c["shape"] for c in classes}) == K  # K <= 12: shapes differ too


def test_loader_reads_the_layout(root):
    data = pytest.importorskip("fnac.data")
    from fnac.config import DataConfig

    ds = data.build_dataset(
        DataConfig(dataset="vggss", root=str(root), image_size=64, num_workers=0), "test", train=False
    )
    assert len(ds) == 8 and not ds.missing
    s = ds[0]
    assert "error" not in s, s.get("error")
    assert tuple(s["image"].shape) == (3, 64, 64) and s["spec"].shape[:2] == (1, 257)
    assert tuple(s["gt_map"].shape) == (224, 224) and 0 < float(s["gt_map"].mean()) < 0.5


# ---------------------------------------------------------------------------------------- determinism
def test_same_seed_same_bytes_whatever_the_counts_and_workers(root, tmp_path):
    """Per-sample seeds: a smaller set written by 2 processes repeats the first samples byte for byte."""
    cfg = SynthConfig(**{**CFG, "n_train": 5, "n_val": 2, "n_test": 1, "n_clips": 0})
    generate(tmp_path / "a", cfg, progress=False, workers=2)
    for i in ["train_000000", "train_000004", "val_000001", "test_000000"]:
        for sub, ext in (("frames", ".jpg"), ("audio", ".wav"), ("masks", ".png")):
            assert (tmp_path / "a" / sub / f"{i}{ext}").read_bytes() == (root / sub / f"{i}{ext}").read_bytes()


def test_different_seed_differs(root, tmp_path):
    cfg = SynthConfig(**{**CFG, "seed": 8, "n_train": 3, "n_val": 0, "n_test": 0, "n_clips": 0})
    generate(tmp_path / "b", cfg, progress=False)
    for i in ["train_000000", "train_000001", "train_000002"]:
        assert (tmp_path / "b" / "frames" / f"{i}.jpg").read_bytes() != (root / "frames" / f"{i}.jpg").read_bytes()
        a = sf.read(str(tmp_path / "b" / "audio" / f"{i}.wav"))[0]
        b = sf.read(str(root / "audio" / f"{i}.wav"))[0]
        assert np.abs(a - b).max() > 0.05


def test_reuse_and_refusal(root, tmp_path):
    again = generate(root, SynthConfig(**CFG), progress=False)
    assert again["reused"] is True
    other = tmp_path / "user_data"
    other.mkdir()
    (other / "vggss.json").write_text("[]")
    with pytest.raises(DataError, match="synth.json"):
        generate(other, SynthConfig(n_train=2, n_val=0, n_test=0, n_clips=0), progress=False)
    # a new config over an earlier synthetic set: files of ids no longer listed are removed
    small = tmp_path / "small"
    generate(small, SynthConfig(n_train=4, n_val=1, n_test=0, n_clips=0), progress=False)
    generate(small, SynthConfig(n_train=2, n_val=0, n_test=1, n_clips=0), progress=False)
    assert sorted(p.name for p in (small / "frames").iterdir()) == [
        "test_000000.jpg",
        "train_000000.jpg",
        "train_000001.jpg",
    ]
    assert (small / "val.txt").read_text() == ""


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="max_distractors"):
        SynthConfig(n_classes=3, max_distractors=3).validate()
    with pytest.raises(ConfigError, match="n_classes"):
        SynthConfig(n_classes=1).validate()
    with pytest.raises(ConfigError, match="clip_size"):
        SynthConfig(clip_size=161).validate()


# --------------------------------------------------------------------------------------- ground truth
def test_mask_box_equals_stored_box(root, ids):
    ann = {a["file"]: a for a in _read_json(root / "annotations.json")}
    for i in ids["train"] + ids["val"] + ids["test"]:
        m = np.asarray(Image.open(root / "masks" / f"{i}.png")) > 127
        rows = [y for y in range(SIZE) if m[y].any()]
        cols = [x for x in range(SIZE) if m[:, x].any()]
        ref = [cols[0] / SIZE, rows[0] / SIZE, (cols[-1] + 1) / SIZE, (rows[-1] + 1) / SIZE]
        assert np.abs(np.array(ann[i]["bbox"][0]) - ref).max() <= 1.0 / SIZE
        area = (ref[2] - ref[0]) * (ref[3] - ref[1])
        assert 0.01 < area < 0.7  # an object, neither a speck nor the whole image


def test_mask_pixels_have_the_class_colour(root, ids, scenes):
    for i in ids["train"] + ids["val"] + ids["test"]:
        m = binary_erosion(np.asarray(Image.open(root / "masks" / f"{i}.png")) > 127, iterations=2)
        rgb = np.asarray(Image.open(root / "frames" / f"{i}.jpg"), np.float64) / 255.0
        hsv = rgb_to_hsv(rgb[m])  # (n, 3)
        k = scenes[i]["class_index"]
        sat = hsv[:, 1] > 0.45
        assert sat.mean() > 0.9, i
        close = _hue_dist(hsv[sat, 0] * 360.0, _hue(k)) < 6.0 + 12.0  # jitter + JPEG chroma error
        assert close.mean() > 0.9, (i, close.mean())


def test_distractors_are_other_classes(scenes, ids):
    largest_is_sounding, multi = 0, 0
    for i in ids["train"] + ids["val"] + ids["test"]:
        r = scenes[i]
        sounding = [o for o in r["objects"] if o["sounding"]]
        assert len(sounding) == 1 and sounding[0]["class"] == r["class"] and sounding[0]["bbox"] == r["bbox"][0]
        others = [o["class"] for o in r["objects"] if not o["sounding"]]
        assert r["class"] not in others and len(others) <= 3
        if others:
            multi += 1
            areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in (o["bbox"] for o in r["objects"])]
            largest_is_sounding += r["objects"][int(np.argmax(areas))]["sounding"]
    assert multi >= 20
    # a "largest object" guess is right about as often as chance, not always
    assert largest_is_sounding / multi < 0.75


def test_distractor_pixels_have_their_own_colour(root, scenes, ids):
    """Distractors are really drawn, in their own class colour (so they compete for attention)."""
    for i in ids["test"]:
        rgb = np.asarray(Image.open(root / "frames" / f"{i}.jpg"), np.float64) / 255.0
        for o in scenes[i]["objects"]:
            x1, y1, x2, y2 = (int(round(v * SIZE)) for v in o["bbox"])
            hsv = rgb_to_hsv(rgb[y1:y2, x1:x2].reshape(-1, 3))
            ok = (hsv[:, 1] > 0.45) & (_hue_dist(hsv[:, 0] * 360, _hue(o["class_index"])) < 18)
            assert ok.mean() > 0.15, (i, o["class"])


# ------------------------------------------------------------------------------------- sound binding
def test_dominant_frequency_is_in_the_class_pitch_band(root, ids, scenes):
    n_checked = 0
    for i in ids["train"] + ids["val"] + ids["test"]:
        if scenes[i]["offscreen_class"] is not None:
            continue
        x, sr = sf.read(str(root / "audio" / f"{i}.wav"))
        lo, hi = _band(scenes[i]["class_index"])
        assert lo <= _dominant(x, sr) <= hi, i
        n_checked += 1
    assert n_checked >= 20


def test_offscreen_sound_is_of_a_class_not_in_the_picture(root, ids, scenes, classes):
    idx = {c["name"]: c["index"] for c in classes}
    off = [i for i in ids["train"] + ids["val"] + ids["test"] if scenes[i]["offscreen_class"] is not None]
    assert len(off) >= 5
    for i in off:
        r = scenes[i]
        assert r["offscreen_class"] not in {o["class"] for o in r["objects"]}
        x, sr = sf.read(str(root / "audio" / f"{i}.wav"))
        p = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(len(x), 1.0 / sr)
        lo, hi = _band(idx[r["offscreen_class"]])
        band = p[(f >= lo) & (f <= hi)]
        assert band.max() > 100 * np.median(p), i  # the off-screen tone is really there


# ------------------------------------------------------------------------------------------------ clips
def test_clip_ground_truth_and_video(root, classes):
    gt = _read_json(root / "clips" / "clip_000.json")
    fps, n = gt["fps"], gt["n_frames"]
    assert n == 50 and fps == 10
    assert [f["index"] for f in gt["frames"]] == list(range(n))
    assert all(abs(f["time"] - i / fps) < 1e-6 for i, f in enumerate(gt["frames"]))
    objs = {o["object"]: o for o in gt["objects"]}
    assert 2 <= len(objs) <= 3 and len({o["class"] for o in objs.values()}) == len(objs)
    segs = gt["segments"]
    assert segs[0]["start"] == 0 and abs(segs[-1]["end"] - n / fps) < 1e-9
    for a, b in zip(segs, segs[1:]):
        assert a["end"] == b["start"] and a["object"] != b["object"]  # turns
    for s in segs:
        assert 1.0 - 1e-9 <= s["end"] - s["start"] <= 3.0
    for f in gt["frames"]:
        seg = [s for s in segs if s["start"] - 1e-9 <= f["time"] < s["end"] - 1e-9]
        assert len(seg) == 1 and seg[0]["object"] == f["object"] and f["class"] == objs[f["object"]]["class"]
        x1, y1, x2, y2 = f["bbox"][0]
        assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1

    hue = {c["name"]: c["hue"] for c in classes}
    band = {c["name"]: c["pitch_band"] for c in classes}
    with av.open(str(root / "clips" / "clip_000.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert len(c.streams.audio) == 1 and c.streams.audio[0].codec_context.name == "aac"
        frames = [fr.to_ndarray(format="rgb24") for fr in c.decode(video=0)]
    assert len(frames) == n and frames[0].shape == (160, 160, 3)
    for f in gt["frames"][::7]:  # the sounding object is where the box says, in its class colour
        x1, y1, x2, y2 = (int(round(v * 160)) for v in f["bbox"][0])
        hsv = rgb_to_hsv(frames[f["index"]][y1:y2, x1:x2].reshape(-1, 3) / 255.0)
        ok = (hsv[:, 1] > 0.45) & (_hue_dist(hsv[:, 0] * 360, hue[f["class"]]) < 20)
        assert ok.mean() > 0.15

    with av.open(str(root / "clips" / "clip_000.mp4")) as c:
        sr = c.streams.audio[0].rate
        audio = np.concatenate([fr.to_ndarray().mean(axis=0) for fr in c.decode(audio=0)])
    assert sr == SR and abs(len(audio) / sr - n / fps) < 0.2
    for s in segs:  # each turn's audio is the active object's sound
        a = audio[int((s["start"] + 0.15) * sr) : int((s["end"] - 0.15) * sr)]
        lo, hi = band[s["class"]]
        assert lo <= _dominant(a, sr) <= hi, s


# -------------------------------------------------------------------------------------------------- CLI
def test_cli_writes_the_layout(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = [
        "synth",
        str(out),
        "--seed",
        "3",
        "--n-train",
        "4",
        "--n-val",
        "2",
        "--n-test",
        "2",
        "--classes",
        "4",
        "--image-size",
        "64",
        "--distractors",
        "2",
        "--noise",
        "0.02",
        "--clips",
        "0",
        "--no-progress",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "4 train / 2 val / 2 test" in text
    for name in ("annotations.json", "classes.json", "train.txt", "val.txt", "test.txt", "synth.json"):
        assert (out / name).is_file()
    assert len(list((out / "frames").glob("*.jpg"))) == 8 == len(list((out / "audio").glob("*.wav")))
    assert len(_read_json(out / "classes.json")) == 4
    with Image.open(out / "frames" / "train_000000.jpg") as im:
        assert im.size == (64, 64)
    meta = _read_json(out / "synth.json")["config"]
    assert (meta["max_distractors"], meta["noise_level"], meta["n_clips"]) == (2, 0.02, 0)
    assert main(argv) == 0 and "already holds" in capsys.readouterr().out


def test_cli_bad_input_exits_1(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "x"), "--classes", "1", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "n_classes" in err and "Traceback" not in err
