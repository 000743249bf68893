"""fnac.fileio: one atomic-write helper for every writer (a failed write leaves the old file and no
temporary file), and the writers that use it (media.write_video / write_wav, outputs.write_json)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from fnac import fileio, media
from fnac.errors import MediaError


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_write_and_replace(tmp_path):
    p = tmp_path / "sub" / "a.json"  # folders created
    fileio.atomic_write_json(p, {"x": 1})
    assert json.loads(p.read_text()) == {"x": 1}
    fileio.atomic_write_text(p, "new")
    assert p.read_text() == "new"
    fileio.atomic_write_bytes(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    assert _names(p.parent) == ["a.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~umask  # as a plain open would make it, not mkstemp's 0600


def test_failure_midway_keeps_the_old_file(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError, match="midway"):
        with fileio.atomic_path(p) as tmp:
            tmp.write_text("half of the ne")
            raise RuntimeError("midway")
    assert p.read_text() == "old"
    assert _names(tmp_path) == ["a.txt"]


def test_interrupt_and_failed_rename_leave_no_temp(tmp_path, monkeypatch):
    p = tmp_path / "a.txt"
    p.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with fileio.atomic_path(p) as tmp:
            tmp.write_text("x")
            raise KeyboardInterrupt
    assert _names(tmp_path) == ["a.txt"] and p.read_text() == "old"

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        fileio.atomic_write_text(p, "new")
    monkeypatch.undo()
    assert _names(tmp_path) == ["a.txt"] and p.read_text() == "old"


def test_unencodable_json_writes_nothing(tmp_path):
    p = tmp_path / "a.json"
    p.write_text("{}")
    with pytest.raises(TypeError):
        fileio.atomic_write_json(p, {"x": object()})
    assert p.read_text() == "{}" and _names(tmp_path) == ["a.json"]


def test_temp_names_keep_the_suffix_and_are_recognised(tmp_path):
    with fileio.atomic_path(tmp_path / "clip.mp4", fsync=False) as tmp:
        assert tmp.suffix == ".mp4" and tmp.name.startswith(".clip.") and tmp.exists()
        assert fileio.is_temp_name(tmp.name)
    assert fileio.is_temp_name(".clip_000001.4242.tmp.wav")  # the process-id form of older versions
    assert not fileio.is_temp_name("clip.mp4") and not fileio.is_temp_name(".hidden.wav")


def test_media_writers_leave_no_temp_on_failure(tmp_path):
    out = tmp_path / "v.mp4"
    out.write_bytes(b"old")

    def frames():
        yield np.zeros((16, 16, 3), np.uint8)
        yield np.zeros((8, 8, 3), np.uint8)  # another size: refused midway

    with pytest.raises(MediaError, match="expected 16x16"):
        media.write_video(out, frames(), 8.0)
    assert out.read_bytes() == b"old" and _names(tmp_path) == ["v.mp4"]
    with pytest.raises(MediaError):
        media.write_wav(tmp_path / "a.wav", np.array([0.0, np.nan]), 16000)
    assert _names(tmp_path) == ["v.mp4"]
    media.write_video(out, [np.zeros((16, 16, 3), np.uint8)] * 2, 8.0)
    assert media.probe(out).n_frames == 2 and _names(tmp_path) == ["v.mp4"]
