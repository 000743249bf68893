"""fnac.data on VGG-SS-format fixtures: lists, layout, annotations, samples, augmentation, collation.

Fixtures are written here in the real formats (docs/datasets.md): frames/<id>.jpg|.png, audio/<id>.wav
(16 kHz), id lists (.txt, .csv with header), vggss.json. Expected tensors come from independent code:
Pillow + hand normalisation for images, scipy.signal.spectrogram for audio, numpy slicing for boxes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from scipy import signal

from fnac.config import DataConfig
from fnac.data import DATASETS, build_dataset, collate, read_id_list
from fnac.errors import ConfigError, DataError

SR = 16000
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def noise(seconds: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).uniform(-0.5, 0.5, int(SR * seconds))).astype(np.float32)


def write_image(path: Path, seed: int, size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)


def write_audio(path: Path, x: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, SR, subtype="FLOAT")


def expected_image(path: Path, size: int) -> np.ndarray:
    img = Image.open(path).convert("RGB").resize((size, size), Image.BICUBIC)
    x = np.asarray(img, dtype=np.float64) / 255.0
    return ((x - MEAN) / STD).transpose(2, 0, 1)  # (3, S, S)


def expected_spec(x: np.ndarray, start_s: float, duration: float) -> np.ndarray:
    w = x[int(start_s * SR) : int(start_s * SR) + int(duration * SR)].astype(np.float64)
    _, _, s = signal.spectrogram(w, fs=SR, nperseg=512, noverlap=274)
    return np.log(s + 1e-7)[None] / 12.0  # (1, 257, T)


def hand_vggss_map(boxes) -> np.ndarray:
    gt = np.zeros((224, 224))
    for x1, y1, x2, y2 in boxes:
        c = [int(224 * min(max(v, 0.0), 1.0)) for v in (x1, y1, x2, y2)]
        gt[c[1] : c[3], c[0] : c[2]] = 1
    return gt


BOXES = {
    "aaaaaaaaaaa_000010": [[0.1, 0.2, 0.5, 0.6]],
    "bbbbbbbbbbb_000020": [[0.0, 0.0, 0.25, 0.25], [0.5, 0.5, 1.0, 0.75]],
    "ccccccccccc_000030": [[0.2, 0.1, -2.88e16, 0.9]],  # degenerate: no valid box at all
    "ddddddddddd_000040": [[-0.1, 0.3, 0.4, 1.2]],  # out of range, valid after clipping
}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    r = tmp_path_factory.mktemp("vggss")
    ids = list(BOXES) + ["eeeeeeeeeee_000050", "fffffffffff_000060"]
    for k, i in enumerate(ids):
        write_image(r / "frames" / (f"{i}.png" if k == 1 else f"{i}.jpg"), k)
        write_audio(r / "audio" / f"{i}.wav", noise(4.0, k))
    (r / "frames" / f"{ids[4]}.jpg").unlink()  # e: no image -> missing
    (r / "audio" / f"{ids[5]}.wav").unlink()  # f: no audio -> missing
    (r / "test.txt").write_text("\n".join(ids + ["ggggggggggg_000070"]) + "\n")  # g: nothing at all
    (r / "vggss_test.csv").write_text("file\n" + "\n".join(f"{i}.mp4" for i in list(BOXES)[:2]) + "\n")
    (r / "train.txt").write_text("\n".join(ids[:4] + ["eeeeeeeeeee_000050"]) + "\n")
    (r / "val.txt").write_text(f"{ids[0]}\n{ids[1]}\n")
    entries = [{"file": i, "class": "dog", "bbox": b} for i, b in BOXES.items()]
    (r / "annotations.json").write_text(json.dumps(entries))
    return r


def cfg_for(root: Path, **kw) -> DataConfig:
    return DataConfig(dataset="vggss", root=str(root), image_size=32, **kw)


def test_registry_is_explicit():
    assert set(DATASETS) == {"vggss", "flickr", "extended_vggss", "extended_flickr", "avsbench_s4", "avsbench_ms3"}
    with pytest.raises(ConfigError, match="unknown dataset 'vggss_test'"):
        build_dataset(DataConfig(dataset="vggss_test"), "test", False)


def test_id_lists_txt_csv_json(tmp_path):
    (tmp_path / "a.txt").write_text("x1\n\n# comment\nx2 extra\nx1\n")
    assert read_id_list(tmp_path / "a.txt") == ["x1", "x2"]
    (tmp_path / "b.csv").write_text("id,count\n10004743663,1\n3908875357,2\n")
    assert read_id_list(tmp_path / "b.csv") == ["10004743663", "3908875357"]
    (tmp_path / "c.csv").write_text("10004743663,1\n")  # no header: first row is data
    assert read_id_list(tmp_path / "c.csv") == ["10004743663"]
    (tmp_path / "d.json").write_text(json.dumps([{"file": "q_000001", "bbox": []}]))
    assert read_id_list(tmp_path / "d.json") == ["q_000001"]
    (tmp_path / "e.txt").write_text("\n\n")
    with pytest.raises(DataError, match="empty"):
        read_id_list(tmp_path / "e.txt")


def test_test_split_present_missing_and_samples(root):
    ds = build_dataset(cfg_for(root), "test", train=False)
    assert ds.listed[-1] == "ggggggggggg_000070" and len(ds.listed) == 7
    assert ds.ids == list(BOXES) and len(ds) == 4
    assert set(ds.missing) == {"eeeeeeeeeee_000050", "fffffffffff_000060", "ggggggggggg_000070"}
    assert "no image" in ds.missing_reasons["eeeeeeeeeee_000050"]
    assert "no audio" in ds.missing_reasons["fffffffffff_000060"]
    for k, i in enumerate(ds.ids):
        s = ds[k]
        assert s["id"] == i and s["index"] == k
        ext = ".png" if k == 1 else ".jpg"
        np.testing.assert_allclose(s["image"].numpy(), expected_image(root / "frames" / f"{i}{ext}", 32), atol=1e-4)
        # 4 s clip, 3 s window centred: start at 0.5 s (docs/method.md §4, Audio step 2)
        np.testing.assert_allclose(s["spec"].numpy(), expected_spec(noise(4.0, k), 0.5, 3.0), atol=2e-4)
        assert s["gt_map"].dtype == torch.float32 and s["gt_map"].shape == (224, 224)
        np.testing.assert_array_equal(s["gt_map"].numpy(), hand_vggss_map(BOXES[i]))
    assert ds[2]["gt_map"].sum() == 0  # the -2.88e16 box: nothing valid, no crash


def test_csv_test_list_and_annotation_by_config(root, tmp_path):
    ann = tmp_path / "vggss.json"
    ann.write_text(json.dumps([{"file": "bbbbbbbbbbb_000020", "class": "x", "bbox": [[0.5, 0.5, 0.75, 0.75]]}]))
    ds = build_dataset(cfg_for(root, test_list=str(root / "vggss_test.csv"), annotations=str(ann)), "test", False)
    assert ds.listed == ["aaaaaaaaaaa_000010", "bbbbbbbbbbb_000020"]
    assert ds.ids == ["bbbbbbbbbbb_000020"]  # a has no entry in this annotation file
    assert "no annotation" in ds.missing_reasons["aaaaaaaaaaa_000010"]
    np.testing.assert_array_equal(ds[0]["gt_map"].numpy(), hand_vggss_map([[0.5, 0.5, 0.75, 0.75]]))


def test_train_split_has_no_gt_and_exclusion(root, tmp_path):
    ex = tmp_path / "exclude.txt"
    ex.write_text("aaaaaaaaaaa_000010\nnot_in_list\n")
    ds = build_dataset(cfg_for(root, exclude_list=str(ex)), "train", train=True)
    assert ds.excluded == ["aaaaaaaaaaa_000010"]
    assert "aaaaaaaaaaa_000010" not in ds.ids and len(ds) == 3
    assert ds.missing == ["eeeeeeeeeee_000050"]
    assert "gt_map" not in ds[0]
    # exclusion never touches evaluation splits
    assert "aaaaaaaaaaa_000010" in build_dataset(cfg_for(root, exclude_list=str(ex)), "test", False).ids


def test_val_split_default_list(root):
    ds = build_dataset(cfg_for(root), "val", train=False)
    assert ds.ids == ["aaaaaaaaaaa_000010", "bbbbbbbbbbb_000020"] and "gt_map" in ds[0]


def test_train_augmentation_is_deterministic_per_seed_epoch_index(root):
    cfg = cfg_for(root)
    a = build_dataset(cfg, "train", train=True, seed=7)
    b = build_dataset(cfg, "train", train=True, seed=7)
    for k in range(len(a)):
        sa, sb = a[k], b[k]
        assert torch.equal(sa["image"], sb["image"]) and torch.equal(sa["spec"], sb["spec"])
    # other epochs draw other crops/flips/masks for at least one sample
    before = [a[k] for k in range(len(a))]
    a.set_epoch(1)
    after = [a[k] for k in range(len(a))]
    assert any(
        not torch.equal(x["image"], y["image"]) or not torch.equal(x["spec"], y["spec"]) for x, y in zip(before, after)
    )
    # training images are crops of the 1.1x resized image, not the test resize
    test_like = torch.from_numpy(expected_image(root / "frames" / "aaaaaaaaaaa_000010.jpg", 32)).float()
    assert before[0]["image"].shape == (3, 32, 32) and not torch.allclose(before[0]["image"], test_like, atol=1e-3)


def test_spec_mask_none_equals_test_spectrogram_and_masks_zero_bands(root):
    plain = build_dataset(cfg_for(root, spec_mask="none"), "train", train=True, seed=3)
    ref = expected_spec(noise(4.0, 0), 0.5, 3.0)
    np.testing.assert_allclose(plain[0]["spec"].numpy(), ref, atol=2e-4)
    masked = build_dataset(cfg_for(root, spec_mask="specaugment"), "train", train=True, seed=3)
    specs = [masked[k]["spec"] for k in range(len(masked))]
    # masked cells are exactly 0 (log-spectrum of noise never is); at least one sample got a band
    assert any((s == 0).any() for s in specs)
    for s, k in zip(specs, range(len(masked))):
        keep = s != 0
        ref = torch.from_numpy(expected_spec(noise(4.0, k), 0.5, 3.0)).float()
        assert torch.allclose(s[keep], ref[keep], atol=2e-4)


def test_corrupt_image_returns_error_dict(root, tmp_path):
    r = tmp_path / "bad"
    write_image(r / "frames" / "good.jpg", 1)
    (r / "frames").mkdir(exist_ok=True)
    (r / "frames" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 3)
    write_audio(r / "audio" / "good.wav", noise(1.0, 1))
    write_audio(r / "audio" / "broken.wav", noise(1.0, 2))
    (r / "train.txt").write_text("broken\ngood\n")
    ds = build_dataset(DataConfig(root=str(r), image_size=32, audio_duration=1.0), "train", train=False)
    bad = ds[0]
    assert set(bad) == {"id", "index", "error"} and bad["id"] == "broken" and bad["index"] == 0
    assert bad["error"].startswith(str(r / "frames" / "broken.jpg") + ": ")
    batch, failed = collate([ds[0], ds[1]])
    assert failed == [("broken", bad["error"])]
    assert batch["id"] == ["good"] and batch["image"].shape == (1, 3, 32, 32)
    assert collate([bad]) == (None, [("broken", bad["error"])])


def test_collate_stacks_and_reports_shape_mismatch(root):
    ds = build_dataset(cfg_for(root), "test", train=False)
    batch, failed = collate([ds[k] for k in range(3)])
    assert failed == []
    assert batch["id"] == ds.ids[:3] and batch["index"].tolist() == [0, 1, 2]
    assert batch["image"].shape == (3, 3, 32, 32) and batch["spec"].shape == (3, 1, 257, 200)
    assert batch["gt_map"].shape == (3, 224, 224)
    odd = dict(ds[3])
    odd["spec"] = odd["spec"][..., :100]  # e.g. another sample rate
    batch, failed = collate([ds[0], ds[1], odd])
    assert batch["id"] == ds.ids[:2] and failed[0][0] == ds.ids[3] and "sample_rate" in failed[0][1]


def test_missing_or_empty_list_is_a_data_error_naming_the_path(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "test.txt").replace("\\", "\\\\")):
        build_dataset(DataConfig(root=str(tmp_path)), "test", False)
    with pytest.raises(DataError, match="nope.txt"):
        build_dataset(DataConfig(root=str(tmp_path), train_list=str(tmp_path / "nope.txt")), "train", True)
    (tmp_path / "val.txt").write_text("\n")
    with pytest.raises(DataError, match=f"empty.*{tmp_path.name}"):
        build_dataset(DataConfig(root=str(tmp_path)), "val", False)


def test_bad_annotation_structure_names_entry(root, tmp_path):
    ann = tmp_path / "bad.json"
    ann.write_text(json.dumps([{"file": "aaaaaaaaaaa_000010", "bbox": [[0.1, 0.2, 0.3]]}]))
    with pytest.raises(DataError, match="entry 0.*aaaaaaaaaaa_000010"):
        build_dataset(cfg_for(root, annotations=str(ann)), "test", False)


def test_dataloader_with_workers(root):
    ds = build_dataset(cfg_for(root), "test", train=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate)
    ids = []
    for batch, failed in loader:
        assert failed == []
        ids += batch["id"]
    assert ids == ds.ids


def test_dataset_pickles_for_spawned_workers(root):
    import pickle

    ds = build_dataset(cfg_for(root), "test", train=False)
    copy = pickle.loads(pickle.dumps(ds))
    a, b = ds[1], copy[1]
    assert a["id"] == b["id"] and torch.equal(a["image"], b["image"]) and torch.equal(a["gt_map"], b["gt_map"])
