"""fnac.data on Flickr-SoundNet-format fixtures: both test layouts, the training layout, XML boxes,
flickr_test.csv, and SLAVC's Extended Flickr (non-sounding pairs).

Expected consensus maps are drawn by hand from docs/evaluation.md §1 (int(224 v / 256), sum of
boxes, min(sum / 2, 1)); spectrograms come from scipy.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from scipy import signal

from fnac.config import DataConfig
from fnac.data import build_dataset, collate
from fnac.errors import DataError

SR = 16000
IDS = ["10004743663", "2432219254", "3908875357"]  # the last one is "missing from the release"
XML_BOXES = {
    "10004743663": [[(10, 20, 100, 120)], [(50, 60, 200, 256)]],  # two annotators, overlapping
    "2432219254": [[(0, 0, 128, 128), (128, 128, 256, 256)]],  # one annotator, two boxes
}


def xml_text(annotators) -> str:
    parts = ["<annotation>"]
    for boxes in annotators:
        parts.append("<object>")
        for b in boxes:
            parts.append(
                "<bbox><label>thing</label>"
                + "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), b))
                + "</bbox>"
            )
        parts.append("</object>")
    return "".join(parts + ["</annotation>"])


def hand_consensus(annotators) -> np.ndarray:
    acc = np.zeros((224, 224))
    for boxes in annotators:
        for b in boxes:
            x1, y1, x2, y2 = (int(224 * v / 256) for v in b)
            acc[y1:y2, x1:x2] += 1
    return np.minimum(acc / 2, 1)


def noise(seed: int, seconds: float = 3.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, int(SR * seconds)).astype(np.float32)


def spec_of(x: np.ndarray) -> np.ndarray:
    _, _, s = signal.spectrogram(x.astype(np.float64), fs=SR, nperseg=512, noverlap=274)
    return np.log(s + 1e-7)[None] / 12.0


def image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(path)


def audio(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), noise(seed), SR, subtype="FLOAT")


def write_annotations(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, ann in XML_BOXES.items():
        (folder / f"{i}.xml").write_text(xml_text(ann))


@pytest.fixture()
def flat(tmp_path) -> Path:
    """The reference code's test folder: <id>.jpg and <id>.wav side by side, Annotations/ beside."""
    for k, i in enumerate(IDS[:2]):
        image(tmp_path / f"{i}.jpg", k)
        audio(tmp_path / f"{i}.wav", k)
    write_annotations(tmp_path / "Annotations")
    (tmp_path / "flickr_test.csv").write_text("".join(f"{i},{k}\n" for k, i in enumerate(IDS)))
    return tmp_path


@pytest.fixture()
def released(tmp_path) -> Path:
    """The released test set: Annotations/<id>.xml + files spread over Data/0..9."""
    for k, i in enumerate(IDS[:2]):
        image(tmp_path / "Data" / str(3 + k) / f"{i}.jpg", k)
        audio(tmp_path / "Data" / str(7 - k) / f"{i}.wav", k)
    write_annotations(tmp_path / "Annotations")
    (tmp_path / "flickr_test.csv").write_text("".join(f"{i},{k}\n" for k, i in enumerate(IDS)))
    return tmp_path


@pytest.mark.parametrize("layout", ["flat", "released"])
def test_both_test_layouts(layout, request):
    root = request.getfixturevalue(layout)
    ds = build_dataset(DataConfig(dataset="flickr", root=str(root), image_size=16), "test", train=False)
    assert ds.listed == IDS and ds.ids == IDS[:2] and ds.missing == ["3908875357"]
    assert "no image or audio" in ds.missing_reasons["3908875357"]
    for k, i in enumerate(ds.ids):
        s = ds[k]
        assert s["id"] == i and s["image"].shape == (3, 16, 16)
        np.testing.assert_array_equal(s["gt_map"].numpy(), hand_consensus(XML_BOXES[i]))
        np.testing.assert_allclose(s["spec"].numpy(), spec_of(noise(k)), atol=2e-4)
    # soft consensus: 0.5 under one box, 1 where two annotators agree
    assert set(np.unique(ds[0]["gt_map"].numpy())) == {0.0, 0.5, 1.0}


def test_xml_is_parsed_once_at_build(flat):
    ds = build_dataset(DataConfig(dataset="flickr", root=str(flat), image_size=16), "test", train=False)
    for x in (flat / "Annotations").glob("*.xml"):
        x.unlink()  # samples no longer need the XML files
    np.testing.assert_array_equal(ds[0]["gt_map"].numpy(), hand_consensus(XML_BOXES[IDS[0]]))
    copy = pickle.loads(pickle.dumps(ds))  # what a spawned DataLoader worker receives
    np.testing.assert_array_equal(copy[1]["gt_map"].numpy(), hand_consensus(XML_BOXES[IDS[1]]))


def test_annotation_folder_from_config_and_missing_xml(flat, tmp_path_factory):
    other = tmp_path_factory.mktemp("ann")
    (other / f"{IDS[1]}.xml").write_text(xml_text(XML_BOXES[IDS[1]]))
    cfg = DataConfig(dataset="flickr", root=str(flat), annotations=str(other), image_size=16)
    ds = build_dataset(cfg, "test", train=False)
    assert ds.ids == [IDS[1]] and "no annotation" in ds.missing_reasons[IDS[0]]


def test_malformed_xml_fails_loudly(flat):
    (flat / "Annotations" / f"{IDS[0]}.xml").write_text(
        "<annotation><object><bbox><xmin>1</xmin></bbox></object></annotation>"
    )
    with pytest.raises(DataError, match=f"{IDS[0]}.xml"):
        build_dataset(DataConfig(dataset="flickr", root=str(flat)), "test", train=False)


def test_training_layout_frames_audio(tmp_path):
    for k, i in enumerate(["111", "222", "333"]):
        image(tmp_path / "frames" / f"{i}.jpg", k)
        if i != "333":
            audio(tmp_path / "audio" / f"{i}.wav", k)
    (tmp_path / "flickr_10k.txt").write_text("111\n222\n333\n")
    cfg = DataConfig(dataset="flickr", root=str(tmp_path), train_list=str(tmp_path / "flickr_10k.txt"), image_size=16)
    ds = build_dataset(cfg, "train", train=True, seed=1)
    assert ds.ids == ["111", "222"] and ds.missing == ["333"] and "no audio" in ds.missing_reasons["333"]
    batch, failed = collate([ds[0], ds[1]])
    assert failed == [] and batch["image"].shape == (2, 3, 16, 16) and "gt_map" not in batch


def test_extended_flickr_negatives(flat):
    (flat / "flickr_test_plus_silent.csv").write_text(
        f"video,audio,label\n{IDS[0]},{IDS[1]},non-sounding\n{IDS[1]},{IDS[0]},non-sounding\n"
        f"{IDS[1]},{IDS[2]},non-sounding\n"
    )
    cfg = DataConfig(dataset="extended_flickr", root=str(flat), image_size=16)
    ds = build_dataset(cfg, "test", train=False)
    neg = [f"{IDS[0]}+{IDS[1]}", f"{IDS[1]}+{IDS[0]}", f"{IDS[1]}+{IDS[2]}"]
    assert ds.listed == IDS + neg
    assert ds.ids == IDS[:2] + neg[:2]
    assert set(ds.missing) == {IDS[2], neg[2]} and "no audio file for 3908875357" in ds.missing_reasons[neg[2]]
    samples = [ds[k] for k in range(len(ds))]
    assert [s["positive"] for s in samples] == [True, True, False, False]
    np.testing.assert_array_equal(samples[0]["gt_map"].numpy(), hand_consensus(XML_BOXES[IDS[0]]))
    assert samples[2]["gt_map"].sum() == 0 and samples[2]["gt_map"].shape == (224, 224)
    # a negative pairs the image of `video` with the audio of `audio`
    assert np.allclose(samples[2]["image"].numpy(), samples[0]["image"].numpy())
    np.testing.assert_allclose(samples[2]["spec"].numpy(), spec_of(noise(1)), atol=2e-4)
    batch, _ = collate(samples)
    assert batch["positive"].tolist() == [True, True, False, False] and batch["positive"].dtype == torch.bool


def test_extended_csv_header_is_checked(flat):
    (flat / "flickr_test_plus_silent.csv").write_text(f"{IDS[0]},{IDS[1]},non-sounding\n")
    with pytest.raises(DataError, match="video,audio,label"):
        build_dataset(DataConfig(dataset="extended_flickr", root=str(flat)), "test", train=False)
    with pytest.raises(DataError, match="extended test list"):
        build_dataset(
            DataConfig(dataset="extended_flickr", root=str(flat), extended_list=str(flat / "none.csv")),
            "test",
            train=False,
        )
