"""Raw videos -> the benchmark layout (docs/datasets.md §1).

For every clip: ``<out>/frames/<id>.jpg`` (the middle frame of the clip, or the frame shown at
``frame_time`` seconds into it) and ``<out>/audio/<id>.wav`` (the clip's audio, mono, resampled to
``sample_rate``, 16 kHz by default: the benchmarks' convention). Inputs are either

* a folder of clip files ``<id>.<ext>`` in any container PyAV reads (ids ``<ytid>_<start>`` get their
  start zero-padded to 6 digits, as VGG-Sound's ids are), each file one clip; or
* a folder of full videos ``<ytid>.<ext>`` plus VGG-Sound's CSV (``ytid,start_seconds,label,split``):
  a clip is the 10 s from ``start_seconds``, its id ``<ytid>_<start:06d>`` (a file already named by
  the clip id is used as the clip itself).

The run is parallel over processes, resumable (ids whose two outputs exist are skipped), and atomic
per file (written under a hidden temporary name, then renamed), so an interrupted run leaves no half
files. Clips that cannot be prepared are listed in ``<out>/prepare_failures.csv`` (id, file, reason),
every other file of the input folder that is not used (not a video container, hidden, not named by
the CSV) in ``<out>/prepare_skipped.csv`` (file, reason); the ids of all prepared clips go to
``<out>/<list_name>``.
"""

from __future__ import annotations

import csv
import io
import logging
import multiprocessing
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from fnac import media
from fnac.errors import DataError, MediaError, NoAudioTrackError
from fnac.fileio import atomic_path, atomic_write_text, is_temp_name

log = logging.getLogger("fnac.prepare")

# fnac's video containers, and a few more that FFmpeg reads
VIDEO_EXTS = media.VIDEO_SUFFIXES + (".flv", ".mpg", ".mpeg", ".ts", ".3gp", ".ogv")
CLIP_SECONDS = 10.0  # VGG-Sound: a clip is the 10 s from start_seconds
FAILURES_NAME = "prepare_failures.csv"
SKIPPED_NAME = "prepare_skipped.csv"  # inputs that are not clips: (file, reason)
_CLIP_ID = re.compile(r"^(.+)_(\d{1,6})$")


@dataclass(frozen=True)
class Clip:
    """One clip to prepare: ``duration`` seconds of ``src`` from ``start`` (None = to the end)."""

    id: str
    src: str
    start: float = 0.0
    duration: float | None = None


@dataclass
class PrepareReport:
    """Outcome of ``prepare``; ``failures`` are (id, file, reason) rows."""

    out_dir: str
    clips: int = 0  # clips found in the inputs
    prepared: int = 0  # written by this run
    skipped: int = 0  # outputs already present (resume)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    no_video: int = 0  # CSV rows whose video file is not in the input folder
    list_path: str = ""
    failures_path: str = ""
    files: int = 0  # entries found in the input folder (files, plus hidden folders)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (file, reason) of inputs not used
    ignored_path: str = ""

    def summary(self) -> str:
        text = (
            f"{self.prepared + self.skipped} of {self.clips} clips ready in {self.out_dir} "
            f"({self.prepared} prepared now, {self.skipped} already done, {len(self.failures)} failed)"
        )
        if self.no_video:
            text += f"; {self.no_video} CSV rows have no video file"
        if self.files:
            text += f"; {self.files} files in the input folder, {len(self.ignored)} not used"
            if self.ignored:
                reasons: dict[str, int] = {}
                for _, r in self.ignored:
                    key = r.split(" (")[0].split(":")[0]
                    reasons[key] = reasons.get(key, 0) + 1
                order = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
                text += " (" + ", ".join(f"{n} {k}" for k, n in order) + ")"
        return text


# ------------------------------------------------------------------------------------------- inputs


def clip_id_of(stem: str) -> str:
    """A clip file's id: ``<ytid>_<start>`` with the start zero-padded to 6 digits; other stems as is."""
    m = _CLIP_ID.match(stem)
    return f"{m.group(1)}_{int(m.group(2)):06d}" if m else stem


AUDIO_EXTS = (".m4a", ".mp3", ".wav", ".flac", ".ogg", ".opus", ".aac", ".wma")


def _video_files(folder: Path, skipped: list[tuple[str, str]] | None = None) -> Iterator[Path]:
    """Video files under ``folder`` (recursive, sorted). Every other entry is appended to ``skipped``
    as (file, reason): hidden files and folders, audio-only files, other files."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for d in [d for d in dirnames if d.startswith(".")]:
            if skipped is not None:
                skipped.append((str(Path(dirpath) / d), "hidden folder: not searched"))
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in sorted(filenames):
            ext = os.path.splitext(name)[1].lower()
            if not name.startswith(".") and ext in VIDEO_EXTS:
                yield Path(dirpath) / name
            elif skipped is not None:
                skipped.append((str(Path(dirpath) / name), _skip_reason(name, ext)))


def _skip_reason(name: str, ext: str) -> str:
    if name.startswith("."):
        return "hidden file"
    if ext in AUDIO_EXTS:
        return f"not a video container ({ext}: sound only, no picture)"
    return f"not a video container ({ext or 'no extension'}; videos: {', '.join(VIDEO_EXTS)})"


def _read_vggsound_csv(path: Path, split: str | None) -> list[tuple[str, float]]:
    """(ytid, start_seconds) of VGG-Sound CSV rows (``ytid,start_seconds,label,split``; header tolerated)."""
    if not path.is_file():
        raise DataError(f"VGG-Sound CSV not found: {path}")
    rows: list[tuple[str, float]] = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        for k, row in enumerate(csv.reader(f), start=1):
            if not row or not row[0].strip():
                continue
            if len(row) < 2:
                raise DataError(f"{path}: line {k}: expected ytid,start_seconds,label,split, got {row!r}")
            try:
                start = float(row[1])
            except ValueError:
                if k == 1:  # a header row
                    continue
                raise DataError(f"{path}: line {k}: start_seconds {row[1]!r} is not a number") from None
            if split is not None and (len(row) < 4 or row[3].strip() != split):
                continue
            rows.append((row[0].strip(), start))
    if not rows:
        raise DataError(f"{path}: no clips" + (f" with split {split!r}" if split else ""))
    return rows


def find_clips(
    input_dir: str | os.PathLike,
    csv_path: str | os.PathLike | None = None,
    split: str | None = None,
    skipped: list[tuple[str, str]] | None = None,
) -> tuple[list[Clip], list[tuple[str, str, str]], int]:
    """Clips of the inputs (see the module docstring).

    Returns (clips, problems, no_video): problems are (id, file, reason) rows for inputs that cannot
    be used (duplicate ids); no_video counts CSV rows whose video is not in ``input_dir``. Every
    other entry of the folder that is not used is appended to ``skipped`` as (file, reason): not a
    video container, hidden, or (with a CSV) a video that no selected CSV row names.
    """
    folder = Path(input_dir)
    if not folder.is_dir():
        raise DataError(f"input folder not found: {folder}")
    by_stem: dict[str, str] = {}
    problems: list[tuple[str, str, str]] = []
    clips: list[Clip] = []
    for f in _video_files(folder, skipped):
        key = f.stem if csv_path else clip_id_of(f.stem)
        if key in by_stem:
            problems.append((key, str(f), f"duplicate id (also {by_stem[key]}); this file was not used"))
            continue
        by_stem[key] = str(f)
    if not csv_path:
        clips = [Clip(k, v) for k, v in by_stem.items()]
        if not clips:
            raise DataError(f"no video files ({', '.join(VIDEO_EXTS)}) in {folder}")
        return clips, problems, 0
    by_clip = {clip_id_of(k): v for k, v in by_stem.items()}  # already-cut clips, start padded or not
    no_video = 0
    seen: set[str] = set()
    for ytid, start in _read_vggsound_csv(Path(csv_path), split):
        cid = f"{ytid}_{int(start):06d}"
        if cid in seen:
            continue
        seen.add(cid)
        if cid in by_clip and ytid not in by_stem:  # an already-cut clip
            clips.append(Clip(cid, by_clip[cid]))
        elif ytid in by_stem:
            clips.append(Clip(cid, by_stem[ytid], float(start), CLIP_SECONDS))
        else:
            no_video += 1
    if skipped is not None:
        used = {c.src for c in clips}
        why = f"no CSV row{f' of split {split!r}' if split else ''} names this video"
        skipped.extend((v, why) for v in by_stem.values() if v not in used)
    return clips, problems, no_video


# ---------------------------------------------------------------------------------------- one clip


def output_paths(out_dir: Path, cid: str) -> tuple[Path, Path]:
    return out_dir / "frames" / f"{cid}.jpg", out_dir / "audio" / f"{cid}.wav"


def _reason(e: BaseException, src: str) -> str:
    msg = str(e).strip()
    if msg.startswith(src):
        msg = msg[len(src) :].lstrip(": ").strip()
    return msg or type(e).__name__


def prepare_clip(
    clip: Clip,
    out_dir: str | os.PathLike,
    frame_time: float | None = None,
    sample_rate: int = 16000,
    min_duration: float = 3.0,
) -> str | None:
    """Write the frame and the wav of one clip; None on success, else the reason it failed
    ("no audio track", "no video track", "corrupt: ...", "too short: ...", ...)."""
    out = Path(out_dir)
    jpg, wav = output_paths(out, clip.id)
    try:
        info = media.probe(clip.src)
    except MediaError as e:
        return f"corrupt: {_reason(e, clip.src)}"
    if not info.has_video:
        return "no video track"
    if not info.has_audio:
        return "no audio track"
    try:
        x, sr = media.read_audio(clip.src, sample_rate)
    except NoAudioTrackError:
        return "no audio track"
    except MediaError as e:
        return f"corrupt audio: {_reason(e, clip.src)}"
    total = len(x) / sr
    if clip.start >= total:
        return f"too short: the video's audio ends at {total:.2f} s, before the clip start {clip.start:g} s"
    a0 = int(round(clip.start * sr))
    a1 = len(x) if clip.duration is None else min(len(x), int(round((clip.start + clip.duration) * sr)))
    x = x[a0:a1]
    seconds = len(x) / sr
    if seconds < min_duration:
        return f"too short: {seconds:.2f} s of audio (minimum {min_duration:g} s)"
    if frame_time is not None:
        if frame_time > seconds:
            return f"too short: clip is {seconds:.2f} s, no frame at --frame-time {frame_time:g} s"
        t: float | None = clip.start + frame_time
    elif clip.duration is None and clip.start == 0:
        t = None  # the file's middle frame (fnac.media's definition)
    else:
        video_end = info.duration if info.duration > 0 else clip.start + seconds
        t = clip.start + max(0.0, min(clip.start + (clip.duration or seconds), video_end) - clip.start) / 2
    try:
        img = media.read_frame_at(clip.src, t)
    except MediaError as e:
        return f"corrupt video: {_reason(e, clip.src)}"
    # both written to temporary names, then renamed, the jpg last: a clip counts as prepared when both
    # files exist, so both are complete by then (no fsync: thousands of small files, fnac.fileio)
    with atomic_path(jpg, fsync=False) as tmp_jpg, atomic_path(wav, fsync=False) as tmp_wav:
        media.write_wav(tmp_wav, x, sr)
        img.convert("RGB").save(tmp_jpg, format="JPEG", quality=95)
    return None


def _work(task: tuple[Clip, str, float | None, int, float]) -> tuple[Clip, str | None]:
    """Process-pool entry point: never raises, so one bad file cannot stop the run."""
    clip = task[0]
    try:
        return clip, prepare_clip(*task)
    except Exception as e:  # an unexpected failure is still a per-clip failure
        return clip, f"error: {type(e).__name__}: {_reason(e, clip.src)}"


# --------------------------------------------------------------------------------------------- run


def _clean_tmp(out: Path) -> int:
    """Remove temporary files an interrupted run left behind. Returns how many."""
    n = 0
    for sub in ("frames", "audio"):
        d = out / sub
        if d.is_dir():
            for entry in os.scandir(d):
                if is_temp_name(entry.name) and entry.name.endswith((".jpg", ".wav")):
                    os.unlink(entry.path)
                    n += 1
    return n


def _pool_map(tasks: list, workers: int) -> Iterable[tuple[Clip, str | None]]:
    if workers <= 1 or len(tasks) <= 1:
        for t in tasks:
            yield _work(t)
        return
    # fork where available: the workers only decode/encode media (no torch), and a spawned worker
    # would re-import torch through the fnac package (seconds per worker)
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ctx.Pool(min(workers, len(tasks))) as pool:
        yield from pool.imap_unordered(_work, tasks, chunksize=1)


def prepare(
    input_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    csv_path: str | os.PathLike | None = None,
    split: str | None = None,
    frame_time: float | None = None,
    workers: int = 1,
    sample_rate: int = 16000,
    min_duration: float = 3.0,
    list_name: str = "prepared.txt",
    progress: bool = True,
) -> PrepareReport:
    """Prepare every clip of ``input_dir`` (optionally driven by a VGG-Sound CSV, rows of ``split``
    only) into ``out_dir``; see the module docstring. Returns a PrepareReport."""
    from fnac.data.common import write_id_list  # main process only: keeps pool workers free of torch

    if frame_time is not None and frame_time < 0:
        raise DataError(f"--frame-time must be >= 0, got {frame_time}")
    out = Path(out_dir)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    stale = _clean_tmp(out)
    if stale:
        log.info("removed %d temporary files left by an interrupted run", stale)
    ignored: list[tuple[str, str]] = []
    clips, problems, no_video = find_clips(input_dir, csv_path, split, skipped=ignored)
    out_abs = out.resolve()  # the output folder may sit inside the input folder: not an input
    ignored = [(f, r) for f, r in ignored if not _inside(Path(f), out_abs)]
    used = {c.src for c in clips}
    report = PrepareReport(
        str(out), clips=len(clips), no_video=no_video, ignored=ignored, files=len(used) + len(problems) + len(ignored)
    )
    report.failures.extend(problems)
    todo = [c for c in clips if not all(p.is_file() for p in output_paths(out, c.id))]
    report.skipped = len(clips) - len(todo)
    tasks = [(c, str(out), frame_time, sample_rate, min_duration) for c in todo]
    it = _pool_map(tasks, workers)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(tasks), desc="prepare", unit="clip")
    failed: dict[str, tuple[str, str, str]] = {}
    for clip, reason in it:
        if reason is None:
            report.prepared += 1
        else:
            failed[clip.id] = (clip.id, clip.src, reason)
    report.failures.extend(failed[c.id] for c in todo if c.id in failed)  # input order
    ready = [c.id for c in clips if c.id not in failed and all(p.is_file() for p in output_paths(out, c.id))]
    report.list_path = str(write_id_list(out / list_name, ready))
    report.failures_path = str(out / FAILURES_NAME)
    atomic_write_text(report.failures_path, _csv_text(["id", "file", "reason"], report.failures), newline="")
    report.ignored_path = str(out / SKIPPED_NAME)
    atomic_write_text(report.ignored_path, _csv_text(["file", "reason"], report.ignored), newline="")
    log.info("%s", report.summary())
    return report


def _csv_text(header: list[str], rows: Iterable[Sequence[str]]) -> str:
    """A CSV document (the csv module's default dialect, \\r\\n line ends) as one string."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _inside(p: Path, folder: Path) -> bool:
    try:
        p.resolve().relative_to(folder)
        return True
    except ValueError:
        return False
