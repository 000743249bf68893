"""`fnac data check`: listed vs present, unreadable files, degenerate boxes, train/test overlap.

Expected counts are hand-counted from the fixture below.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from fnac.cli import main
from fnac.config import DataConfig
from fnac.data import build_dataset, read_id_list
from fnac.data.check import box_problems, check_dataset, format_report

SR = 16000
TEST = ["t0_000000", "t1_000001", "t2_000002", "t3_000003", "t4_000004", "t5_000005", "t6_000006"]
TRAIN = ["t1_000001", "t4_000004", "r0_000010", "r1_000011", "r2_000012"]  # overlaps the test list in 2
BOXES = {
    "t0_000000": [[0.1, 0.1, 0.5, 0.5]],
    "t1_000001": [[0.2, 0.1, -2.88e16, 0.9]],  # degenerate + out of range: no valid box
    "t2_000002": [[0.1, 0.1, 0.4, 0.4], [0.6, 0.7, 0.6, 0.9]],  # one degenerate (x1 == x2), one good
    "t3_000003": [[-0.2, 0.0, 0.5, 1.3]],  # out of range, valid after clipping
    "t4_000004": [[0.3, 0.5, 0.6, 0.2]],  # y1 >= y2: no valid box
    "t5_000005": [[0.5, 0.5, 0.501, 0.502]],  # well formed but empty at 224 px: no valid box
}


@pytest.fixture()
def root(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    (tmp_path / "frames").mkdir()
    (tmp_path / "audio").mkdir()
    for i in TEST + TRAIN:
        if i == "t6_000006":
            continue  # listed, absent
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "frames" / f"{i}.jpg")
        sf.write(str(tmp_path / "audio" / f"{i}.wav"), rng.uniform(-0.1, 0.1, SR).astype(np.float32), SR)
    (tmp_path / "audio" / "t3_000003.wav").write_bytes(b"RIFF....WAVEfmt garbage")  # undecodable
    (tmp_path / "frames" / "r2_000012.jpg").write_bytes(b"")  # empty file
    (tmp_path / "test.txt").write_text("\n".join(TEST) + "\n")
    (tmp_path / "train.txt").write_text("\n".join(TRAIN) + "\n")
    (tmp_path / "annotations.json").write_text(
        json.dumps([{"file": i, "class": "c", "bbox": b} for i, b in BOXES.items()])
    )
    return tmp_path


def test_box_problems():
    assert box_problems([0.1, 0.1, 0.5, 0.5], 1.0) == []
    assert box_problems([0.2, 0.1, -2.88e16, 0.9], 1.0) == ["degenerate", "out of range"]
    assert box_problems([0.3, 0.5, 0.6, 0.2], 1.0) == ["degenerate"]
    assert box_problems([-0.2, 0.0, 0.5, 1.3], 1.0) == ["out of range"]
    assert box_problems([10, 20, 200, 256], 256) == []


def test_check_counts(root):
    cfg = DataConfig(root=str(root))
    r = check_dataset(cfg)
    test, train = r["splits"]["test"], r["splits"]["train"]
    assert (test["listed"], test["present"], test["missing"]) == (7, 6, 1)
    assert list(test["missing_ids"]) == ["t6_000006"]
    assert test["unreadable"] == 0  # not decoded without --deep
    assert (train["listed"], train["present"], train["unreadable"]) == (5, 5, 1)
    assert "r2_000012" in train["unreadable_ids"] and "empty" in train["unreadable_ids"]["r2_000012"]
    assert "val" in r["skipped"] and "val.txt" in r["skipped"]["val"]
    b = test["boxes"]  # over the 6 present test samples
    assert b["samples"] == 6 and b["boxes"] == 7
    assert [x["id"] for x in b["degenerate"]] == ["t1_000001", "t2_000002", "t4_000004"]
    assert [x["id"] for x in b["out_of_range"]] == ["t1_000001", "t3_000003"]
    assert b["degenerate"][0]["box"][2] == -2.88e16
    assert b["no_valid_box"] == ["t1_000001", "t4_000004", "t5_000005"]
    assert train["boxes"] is None
    ov = r["overlap"]
    assert (ov["overlap"], ov["test"]) == (2, 7) and ov["ids"] == ["t1_000001", "t4_000004"]
    text = format_report(r)
    assert "train/test overlap: 2 of 7 test ids" in text and "t6_000006" in text


def test_deep_check_finds_undecodable_audio(root):
    r = check_dataset(DataConfig(root=str(root)), splits=["test"], deep=True, workers=2)
    t = r["splits"]["test"]
    assert list(t["unreadable_ids"]) == ["t3_000003"]
    assert t["unreadable_ids"]["t3_000003"].startswith(str(root / "audio" / "t3_000003.wav"))
    assert list(r["splits"]) == ["test"]


def test_overlap_file_feeds_exclude_list(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("o") / "leak.txt"
    other_test = tmp_path_factory.mktemp("o2") / "other_test.csv"
    other_test.write_text("id,x\nr0_000010,1\nr1_000011,1\nnot_there,1\n")
    r = check_dataset(DataConfig(root=str(root)), splits=["train"], test_list=str(other_test), overlap_out=str(out))
    assert r["overlap"]["ids"] == ["r0_000010", "r1_000011"] and r["overlap"]["test"] == 3
    assert read_id_list(out) == ["r0_000010", "r1_000011"]
    ds = build_dataset(DataConfig(root=str(root), exclude_list=str(out)), "train", train=True)
    assert ds.excluded == ["r0_000010", "r1_000011"]
    assert ds.ids == ["t1_000001", "t4_000004", "r2_000012"]


def test_cli_json_and_write_overlap(root, tmp_path_factory, capsys):
    d = tmp_path_factory.mktemp("cli")
    rc = main(
        [
            "data",
            "check",
            f"data.root={root}",
            "--split",
            "test",
            "--json",
            str(d / "r.json"),
            "--train-list",
            str(root / "train.txt"),
            "--test-list",
            str(root / "test.txt"),
            "--write-overlap",
            str(d / "overlap.txt"),
            "--no-progress",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "no valid box" in printed and "2 of 7 test ids" in printed
    rep = json.loads((d / "r.json").read_text())
    assert rep["splits"]["test"]["present"] == 6 and rep["overlap"]["overlap"] == 2
    assert (d / "overlap.txt").read_text().split() == ["t1_000001", "t4_000004"]


def test_cli_errors_are_messages(tmp_path, capsys):
    rc = main(["data", "check", f"data.root={tmp_path}", "--no-progress"])
    assert rc == 1
    assert "nothing to check" in capsys.readouterr().err
    rc = main(["data", "check", f"data.root={tmp_path}", "--split", "test"])
    assert rc == 1 and str(tmp_path / "test.txt") in capsys.readouterr().err


def test_data_split_cli(root, tmp_path_factory, capsys):
    d = tmp_path_factory.mktemp("split")
    assert main(["data", "split", str(root / "test.txt"), "--val-count", "3", "--seed", "1", "--out-dir", str(d)]) == 0
    val = (d / "test_val.txt").read_text().split()
    rest = (d / "test_rest.txt").read_text().split()
    assert len(val) == 3 and len(rest) == 4 and not set(val) & set(rest)
    assert sorted(val + rest) == sorted(TEST)
    assert [i for i in TEST if i in val] == val  # original order kept
    main(["data", "split", str(root / "test.txt"), "--val-count", "3", "--seed", "1", "--out-dir", str(d / "again")])
    assert (d / "again" / "test_val.txt").read_text().split() == val  # seeded
    assert main(["data", "split", str(root / "test.txt"), "--val-count", "7"]) == 1


def test_annotation_file_is_checked_without_any_media(tmp_path, capsys):
    """All entries of the annotation file count, not only those whose media are present."""
    (tmp_path / "test.txt").write_text("\n".join(TEST) + "\n")
    (tmp_path / "annotations.json").write_text(
        json.dumps([{"file": i, "class": "c", "bbox": b} for i, b in BOXES.items()])
    )
    r = check_dataset(DataConfig(root=str(tmp_path)))
    a = r["annotations"]  # hand-counted from BOXES
    assert a["file"] == str(tmp_path / "annotations.json")
    assert (a["entries"], a["boxes"]) == (6, 7)
    assert [x["id"] for x in a["degenerate"]] == ["t1_000001", "t2_000002", "t4_000004"]
    assert [x["id"] for x in a["out_of_range"]] == ["t1_000001", "t3_000003"]
    assert a["no_valid_box"] == ["t1_000001", "t4_000004", "t5_000005"]
    assert r["splits"]["test"]["present"] == 0  # no media at all
    assert main(["data", "check", f"data.root={tmp_path}", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "6 entries, 7 boxes, 3 degenerate, 2 outside the frame, 3 with no valid box" in out


def test_annotation_file_alone_with_no_id_lists(tmp_path, capsys):
    ann = tmp_path / "vggss.json"
    ann.write_text(
        json.dumps(
            [
                {"file": "a_000001.jpg", "class": "c", "bbox": [[0.5, 0.2, 0.4, 0.9]]},
                {"file": "b_000002", "class": "c", "bbox": [[0.1, 0.1, 0.9, 0.9]]},
            ]
        )
    )
    assert main(["data", "check", f"data.root={tmp_path / 'nothing'}", f"data.annotations={ann}", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 entries, 2 boxes, 1 degenerate, 0 outside the frame, 1 with no valid box" in out
    assert "a_000001: [0.5, 0.2, 0.4, 0.9]" in out
