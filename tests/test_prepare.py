"""`fnac prepare`: videos in several containers/codecs -> frames/<id>.jpg + audio/<id>.wav (16 kHz mono),
failure report, resume, atomic outputs, VGG-Sound CSV mode.

Videos are written with fnac.media.write_video. Each second of video has its own flat colour and each
file its own tone, so the kept frame's time and the audio's content are checked against values known
by construction (mean colour, FFT peak), not against the code under test.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from fnac import media
from fnac.cli import main
from fnac.prepare import clip_id_of, find_clips, prepare

W, H, FPS = 32, 24, 10


def colour(second: int) -> np.ndarray:
    return np.array([(37 * second) % 256, 255 - (53 * second) % 256, (90 + 71 * second) % 256], np.uint8)


def frames(seconds: float):
    for n in range(int(round(seconds * FPS))):
        yield np.tile(colour(int(n / FPS)), (H, W, 1))


def tone(freq: float, seconds: float, sr: int, stereo: bool = False) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x, x], axis=1) if stereo else x


# container, video codec, audio codec, input sample rate, stereo, tone
FORMATS = {
    "mp4": ("libx264", "aac", 44100, True, 440.0),
    "mkv": ("libx264", "mp3", 22050, False, 660.0),
    "webm": ("libvpx-vp9", "libopus", 48000, True, 880.0),
    "avi": ("mpeg4", "pcm_s16le", 16000, False, 1000.0),
}
GOOD = {f"vid{ext}abcde_{k + 1}": ext for k, ext in enumerate(FORMATS)}  # ids vid..._00000k after padding


def write(path: Path, seconds: float, ext: str, audio: bool = True) -> None:
    vcodec, acodec, sr, stereo, f = FORMATS[ext]
    media.write_video(
        path,
        frames(seconds),
        FPS,
        audio=tone(f, seconds, sr, stereo) if audio else None,
        sample_rate=sr,
        codec=vcodec,
        audio_codec=acodec,
    )


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("videos")
    for stem, ext in GOOD.items():
        write(d / f"{stem}.{ext}", 4.0, ext)
    write(d / "noaudio_000007.mp4", 4.0, "mp4", audio=False)
    (d / "garbage_000008.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    full = (d / f"{next(iter(GOOD))}.mp4").read_bytes()
    (d / "trunc_000009.mp4").write_bytes(full[: len(full) // 3])
    write(d / "short_000010.mp4", 1.0, "mp4")
    (d / "notes.txt").write_text("not a video")
    return d


def peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))


def test_clip_ids_are_padded():
    assert clip_id_of("vjw8iaJ8XgU_35") == "vjw8iaJ8XgU_000035"
    assert clip_id_of("vjw8iaJ8XgU_000035") == "vjw8iaJ8XgU_000035"
    assert clip_id_of("10004743663") == "10004743663"


def test_prepare_codecs_failures_and_resume(videos, tmp_path):
    out = tmp_path / "out"
    (out / "frames").mkdir(parents=True)
    (out / "frames" / ".stale_000001.123.tmp.jpg").write_bytes(b"half")  # left by an interrupted run
    rep = prepare(videos, out, workers=2, progress=False)
    good_ids = [clip_id_of(s) for s in GOOD]
    assert rep.clips == 8 and rep.prepared == 4 and rep.skipped == 0
    reasons = {i: r for i, _, r in rep.failures}
    assert reasons["noaudio_000007"] == "no audio track"
    assert reasons["garbage_000008"].startswith("corrupt")
    assert reasons["trunc_000009"].startswith("corrupt")
    assert reasons["short_000010"].startswith("too short")
    with open(out / "prepare_failures.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "file", "reason"] and {r[0] for r in rows[1:]} == set(reasons)
    assert all(Path(r[1]).is_file() for r in rows[1:])
    assert sorted((out / "prepared.txt").read_text().split()) == sorted(good_ids)
    assert sorted(p.name for p in (out / "frames").iterdir()) == sorted(f"{i}.jpg" for i in good_ids)
    assert sorted(p.name for p in (out / "audio").iterdir()) == sorted(f"{i}.wav" for i in good_ids)
    for stem, ext in GOOD.items():
        i = clip_id_of(stem)
        x, sr = sf.read(str(out / "audio" / f"{i}.wav"))
        assert sr == 16000 and x.ndim == 1
        assert abs(len(x) / sr - 4.0) < 0.1
        assert abs(peak_hz(x, sr) - FORMATS[ext][4]) < 5
        img = np.asarray(Image.open(out / "frames" / f"{i}.jpg").convert("RGB"), dtype=float)
        assert img.shape == (H, W, 3)
        # middle frame of a 4 s clip: shown at 2.0 s, i.e. second 2's colour
        dists = [np.abs(img.mean(axis=(0, 1)) - colour(s)).sum() for s in range(4)]
        assert int(np.argmin(dists)) == 2 and dists[2] < 30
    # resume: nothing to redo; a deleted output is redone
    rep2 = prepare(videos, out, workers=1, progress=False)
    assert (rep2.prepared, rep2.skipped, len(rep2.failures)) == (0, 4, 4)
    (out / "frames" / f"{good_ids[0]}.jpg").unlink()
    rep3 = prepare(videos, out, workers=1, progress=False)
    assert (rep3.prepared, rep3.skipped) == (1, 3)
    assert (out / "frames" / f"{good_ids[0]}.jpg").is_file()


def test_frame_time_option(videos, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "vidmp4abcde_1.mp4").write_bytes((videos / "vidmp4abcde_1.mp4").read_bytes())
    rep = prepare(src, tmp_path / "out", frame_time=3.5, progress=False)
    assert rep.prepared == 1
    img = np.asarray(Image.open(tmp_path / "out" / "frames" / "vidmp4abcde_000001.jpg").convert("RGB"), dtype=float)
    assert int(np.argmin([np.abs(img.mean(axis=(0, 1)) - colour(s)).sum() for s in range(4)])) == 3
    rep = prepare(src, tmp_path / "out2", frame_time=9.0, progress=False)
    assert rep.prepared == 0 and rep.failures[0][2].startswith("too short")


def test_vggsound_csv_mode(tmp_path):
    src = tmp_path / "full"
    ytid = "Abc-def_123"
    media.write_video(src / f"{ytid}.mp4", frames(14.0), FPS, audio=tone(500.0, 14.0, 16000), sample_rate=16000)
    table = tmp_path / "vggsound.csv"
    table.write_text(
        f"{ytid},2,dog barking,train\n{ytid},30,dog barking,train\nzzzzzzzzzzz,0,cat,train\n{ytid},0,dog barking,test\n"
    )
    clips, _, no_video = find_clips(src, table, split="train")
    assert [c.id for c in clips] == [f"{ytid}_000002", f"{ytid}_000030"] and no_video == 1
    out = tmp_path / "out"
    rep = main(["prepare", str(src), str(out), "--csv", str(table), "--split", "train", "--no-progress"])
    assert rep == 0
    assert (out / "prepared.txt").read_text().split() == [f"{ytid}_000002"]
    x, sr = sf.read(str(out / "audio" / f"{ytid}_000002.wav"))
    assert abs(len(x) / sr - 10.0) < 0.05  # the 10 s from start_seconds
    img = np.asarray(Image.open(out / "frames" / f"{ytid}_000002.jpg").convert("RGB"), dtype=float)
    # clip 2..12 s: its middle frame is at 7 s
    assert int(np.argmin([np.abs(img.mean(axis=(0, 1)) - colour(s)).sum() for s in range(14)])) == 7
    with open(out / "prepare_failures.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    assert [r[0] for r in rows] == [f"{ytid}_000030"] and rows[0][2].startswith("too short")


def test_interrupted_write_leaves_no_outputs(videos, tmp_path, monkeypatch):
    from fnac import prepare as prep

    src = tmp_path / "in"
    src.mkdir()
    (src / "vidmp4abcde_1.mp4").write_bytes((videos / "vidmp4abcde_1.mp4").read_bytes())

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(prep.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        prepare(src, tmp_path / "out", progress=False)
    monkeypatch.undo()
    assert list((tmp_path / "out" / "frames").iterdir()) == []
    assert list((tmp_path / "out" / "audio").iterdir()) == []


def test_every_input_file_is_prepared_failed_or_skipped_with_a_reason(videos, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for p in videos.iterdir():
        (src / p.name).write_bytes(p.read_bytes())
    media.write_wav(src / "sound.wav", tone(440.0, 1.0, 16000), 16000)
    (src / "sound.wav").rename(src / "sound.m4a")  # an audio-only file
    (src / ".DS_Store").write_bytes(b"\0" * 10)
    (src / ".cache").mkdir()
    (src / ".cache" / "x.mp4").write_bytes(b"x")
    everything = {str(p) for p in src.iterdir()}  # 8 videos, notes.txt, sound.m4a, .DS_Store, .cache
    assert len(everything) == 12
    out = tmp_path / "out"
    assert main(["prepare", str(src), str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    with open(out / "prepare_failures.csv", newline="") as f:
        failed = {r[1] for r in list(csv.reader(f))[1:]}
    with open(out / "prepare_skipped.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["file", "reason"]
    skipped = {r[0]: r[1] for r in rows[1:]}
    prepared = {str(src / f"{s}.{e}") for s, e in GOOD.items()}
    assert len(prepared) == 4 and len(failed) == 4 and len(skipped) == 4
    assert prepared | failed | set(skipped) == everything  # each file is accounted for, once
    assert skipped[str(src / "sound.m4a")].startswith("not a video container (.m4a")
    assert skipped[str(src / "notes.txt")].startswith("not a video container (.txt")
    assert skipped[str(src / ".DS_Store")] == "hidden file"
    assert skipped[str(src / ".cache")].startswith("hidden folder")
    assert "4 of 8 clips ready" in text
    assert (
        "12 files in the input folder, 4 not used (2 not a video container, 1 hidden file, 1 hidden folder)" in text
    ), text.splitlines()[0]


def test_csv_mode_reports_videos_no_row_names(tmp_path):
    src = tmp_path / "full"
    media.write_video(src / "aaaaaaaaaaa.mp4", frames(4.0), FPS, audio=tone(500.0, 4.0, 16000), sample_rate=16000)
    media.write_video(src / "bbbbbbbbbbb.mp4", frames(4.0), FPS, audio=tone(500.0, 4.0, 16000), sample_rate=16000)
    table = tmp_path / "vggsound.csv"
    table.write_text("aaaaaaaaaaa,0,dog,train\nbbbbbbbbbbb,0,cat,test\n")
    rep = prepare(src, tmp_path / "out", csv_path=table, split="train", progress=False)
    assert rep.clips == 1 and rep.files == 2
    assert rep.ignored == [(str(src / "bbbbbbbbbbb.mp4"), "no CSV row of split 'train' names this video")]
