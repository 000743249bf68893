"""fnac.data on AVSBench-v1-format fixtures (S4 and MS3) and on Extended VGG-SS.

AVSBench: 5 samples per video, frame i's audio window centred on i - 0.5 s (checked against scipy on
the hand-computed window), masks resized with nearest neighbour (checked against np.kron).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from scipy import signal

from fnac.config import DataConfig
from fnac.data import build_dataset, collate
from fnac.errors import DataError

SR = 16000


def noise(seed: int, seconds: float) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, int(SR * seconds)).astype(np.float32)


def spec_of(x: np.ndarray) -> np.ndarray:
    _, _, s = signal.spectrogram(x.astype(np.float64), fs=SR, nperseg=512, noverlap=274)
    return np.log(s + 1e-7)[None] / 12.0


def wav(path: Path, x: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, SR, subtype="FLOAT")


def png(path: Path, arr: np.ndarray, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr)
    if palette:
        img = img.convert("P") if arr.ndim == 3 else Image.fromarray(arr, mode="P")
        img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    img.save(path)


def frame(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)


def small_mask(seed: int, values=(0, 255)) -> np.ndarray:
    m = np.random.default_rng(seed).integers(0, 2, (56, 56)).astype(np.uint8)
    return np.where(m > 0, values[1], values[0]).astype(np.uint8)


@pytest.fixture(scope="module")
def s4(tmp_path_factory) -> Path:
    r = tmp_path_factory.mktemp("s4")
    rows = [("vidA", 0, "dog", "test"), ("vidB", 3, "car", "test"), ("vidC", 0, "dog", "train")]
    (r / "s4_meta_data.csv").write_text(
        "name,start time,category,split\n" + "".join(f"{n},{s},{c},{sp}\n" for n, s, c, sp in rows)
    )
    d = r / "s4_data"
    for v, (name, _, cat, split) in enumerate(rows):
        wav(d / "audio_wav" / split / cat / f"{name}.wav", noise(v, 5.0))
        for i in range(1, 6):
            if name == "vidB" and i == 4:
                continue  # a missing frame
            png(d / "visual_frames" / split / cat / name / f"{name}_{i}.png", frame(10 * v + i))
            if split != "train" or i == 1:
                png(d / "gt_masks" / split / cat / name / f"{name}_{i}.png", small_mask(10 * v + i))
    return r


def test_s4_per_frame_samples_windows_and_masks(s4):
    cfg = DataConfig(dataset="avsbench_s4", root=str(s4), image_size=24, audio_duration=2.0)
    ds = build_dataset(cfg, "test", train=False)
    assert ds.listed == [f"vidA_{i}" for i in range(1, 6)] + [f"vidB_{i}" for i in range(1, 6)]
    assert ds.missing == ["vidB_4"] and len(ds) == 9
    x = noise(0, 5.0)
    # frame i: 2 s window centred on i - 0.5 s, moved inside the clip at the edges
    starts = {1: 0.0, 2: 0.5, 3: 1.5, 4: 2.5, 5: 3.0}
    for k in range(5):
        s = ds[k]
        i = k + 1
        assert s["id"] == f"vidA_{i}"
        a = int(starts[i] * SR)
        np.testing.assert_allclose(s["spec"].numpy(), spec_of(x[a : a + 2 * SR]), atol=2e-4)
        expect = np.kron(small_mask(i) > 0, np.ones((4, 4))).astype(np.float32)  # 56 -> 224 nearest
        np.testing.assert_array_equal(s["mask"].numpy(), expect)
        np.testing.assert_array_equal(s["gt_map"].numpy(), expect)
    batch, failed = collate([ds[k] for k in range(len(ds))])
    assert failed == [] and batch["mask"].shape == (9, 224, 224)


def test_s4_train_split_has_no_masks(s4):
    ds = build_dataset(DataConfig(dataset="avsbench_s4", root=str(s4), image_size=24), "train", train=True)
    assert ds.ids == [f"vidC_{i}" for i in range(1, 6)]
    assert "mask" not in ds[0] and "gt_map" not in ds[0]


def test_ms3_palette_masks(tmp_path):
    (tmp_path / "ms3_meta_data.csv").write_text("name,split\nclipX,test\nclipY,val\n")
    d = tmp_path / "ms3_data"
    wav(d / "audio_wav" / "test" / "clipX.wav", noise(3, 5.0))
    idx = np.zeros((112, 112), np.uint8)
    idx[10:50, 20:60] = 1  # red object
    idx[70:100, 5:30] = 2  # green object
    for i in range(1, 6):
        png(d / "visual_frames" / f"clipX.mp4_{i}.png", frame(i))
        png(d / "gt_masks" / "test" / "clipX" / f"clipX_{i}.png", idx, palette=True)
    assert Image.open(d / "gt_masks" / "test" / "clipX" / "clipX_1.png").mode == "P"
    ds = build_dataset(DataConfig(dataset="avsbench_ms3", root=str(tmp_path), image_size=24), "test", False)
    assert ds.ids == [f"clipX_{i}" for i in range(1, 6)]
    expect = np.kron(idx > 0, np.ones((2, 2))).astype(np.float32)
    np.testing.assert_array_equal(ds[2]["mask"].numpy(), expect)


def test_avsbench_metadata_errors(tmp_path):
    with pytest.raises(DataError, match="s4_meta_data.csv"):
        build_dataset(DataConfig(dataset="avsbench_s4", root=str(tmp_path)), "test", False)
    (tmp_path / "s4_meta_data.csv").write_text("name,category\nvidA,dog\n")
    with pytest.raises(DataError, match="'split' column"):
        build_dataset(DataConfig(dataset="avsbench_s4", root=str(tmp_path)), "test", False)


# ------------------------------------------------------------------------------ Extended VGG-SS


def make_extended_vggss(root: Path) -> tuple[list[str], list[str]]:
    """An Extended VGG-SS fixture: 2 annotated positives, 2 negatives of which one has no files."""
    pos, neg = ["aaaaaaaaaaa_000001", "bbbbbbbbbbb_000002"], ["zzzzzzzzzzz_000009", "yyyyyyyyyyy_000008"]
    for k, i in enumerate(pos):
        png(root / "frames" / f"{i}.jpg", frame(k))
        wav(root / "audio" / f"{i}.wav", noise(k, 3.0))
    png(root / "extend_frames" / f"{neg[0]}.jpg", frame(9))
    wav(root / "extend_audio" / f"{neg[0]}.wav", noise(9, 3.0))
    (root / "test.txt").write_text("\n".join(pos) + "\n")
    (root / "vggss.json").write_text(
        json.dumps(
            [
                {"file": pos[0], "class": "c", "bbox": [[0.0, 0.0, 0.5, 0.5]]},
                {"file": pos[1], "class": "c", "bbox": [[0.5, 0.5, 1.0, 1.0]]},
            ]
        )
    )
    (root / "vggss_test_plus_silent.csv").write_text(
        "video,audio,label\n" + "".join(f"{i},{i},non-sounding\n" for i in neg)
    )
    return pos, neg


def test_extended_vggss(tmp_path):
    pos, neg = make_extended_vggss(tmp_path)
    ds = build_dataset(DataConfig(dataset="extended_vggss", root=str(tmp_path), image_size=16), "test", False)
    assert ds.listed == pos + neg and ds.ids == pos + neg[:1] and ds.missing == [neg[1]]
    s = [ds[k] for k in range(3)]
    assert [x["positive"] for x in s] == [True, True, False]
    assert s[0]["gt_map"][:112, :112].min() == 1 and s[0]["gt_map"].sum() == 112 * 112
    assert s[2]["gt_map"].sum() == 0
    np.testing.assert_allclose(s[2]["spec"].numpy(), spec_of(noise(9, 3.0)), atol=2e-4)
    # train/val splits of an extended set are the base benchmark's
    (tmp_path / "train.txt").write_text(pos[0] + "\n")
    tr = build_dataset(DataConfig(dataset="extended_vggss", root=str(tmp_path)), "train", True)
    assert tr.name == "vggss" and tr.ids == [pos[0]]


def test_meta_and_extended_csv_faults_name_the_file(tmp_path):
    """The two csv readers (AVSBench metadata, SLAVC's extended list) share one reader: a byte-order
    mark is ignored, blank rows are skipped, and an empty or undecodable file is one DataError naming it."""
    from fnac.data.avsbench import read_meta
    from fnac.data.extended import read_extended_csv

    meta = tmp_path / "s4_meta_data.csv"
    meta.write_text("\ufeffname,uid,category,split\n\n v1 ,0,dog, train\n ,,,\n", encoding="utf-8")
    assert read_meta(meta, "s4") == [{"name": "v1", "category": "dog", "split": "train"}]
    ext = tmp_path / "vggss_test_plus_silent.csv"
    ext.write_text("\ufeffvideo,audio,label\na,a,dog\n\nb,c,non-sounding\n", encoding="utf-8")
    assert read_extended_csv(ext) == [("a", "a", "dog"), ("b", "c", "non-sounding")]
    for path, reader, what in ((meta, lambda p: read_meta(p, "s4"), "AVSBench metadata"),
                               (ext, read_extended_csv, "extended id list")):  # fmt: skip
        path.write_text("\n , \n")
        with pytest.raises(DataError, match=f"^{what} is empty: {path}$"):
            reader(path)
        path.write_bytes(b"name,split\n\xff\xfe\xfa\n")
        with pytest.raises(DataError, match=f"^{path}: cannot read"):
            reader(path)
