"""Shared pieces of the benchmarks: sizes, synthetic data, machine description, timing, tables.

Benchmarks compare paths measured in the same run on the same machine (ratios, not absolute times).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
if str(REPO / "src") not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO / "src"))


@dataclass(frozen=True)
class Size:
    """A benchmark size: synthetic frames and audio, and the model trained on them."""

    name: str
    frame: int  # synthetic frame side (px)
    image_size: int  # model input side
    duration: float  # audio window (s)
    width: int  # ResNet-18 base width
    embed_dim: int
    batch_cpu: int
    batch_gpu: int


SIZES = {
    # the CPU recipe (src/fnac/configs/small.yaml) on the default synthetic set
    "small": Size("small", 128, 128, 1.0, 16, 64, 64, 256),
    # the reference recipe: ResNet-18 x 2, 224 px, 3 s, C = 512 (docs/method.md §1, §3, §4)
    "full": Size("full", 224, 224, 3.0, 64, 512, 16, 256),
}


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--data", help="synthetic data folder (default bench/data/<size>; generated if absent)")
    p.add_argument("--cache", help="cache folder (default <data>/cache; built if absent)")
    p.add_argument("--device", default="auto", help="cpu, cuda, auto (cuda when available)")
    p.add_argument("--workers", type=int, default=2, help="loader processes (the reference uses 2)")
    p.add_argument("--n-train", type=int, default=None, help="synthetic training clips to generate")
    p.add_argument("--n-test", type=int, default=None, help="synthetic test clips to generate")
    p.add_argument("--json", help="also write the results here")
    p.add_argument(
        "--vggsound-like",
        action="store_true",
        help="read a VGG-Sound-like copy of the synthetic set: 640 x 360 JPEG frames, 10 s 16 kHz 16-bit "
        "mono wav (made next to it as <data>_vggsound on first use; see vggsound_like)",
    )


def load_average() -> str:
    """The 1-minute load average now ("n/a" where the system has none): how busy a shared machine was."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except (AttributeError, OSError):
        return "n/a"


def device_of(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def machine(device: torch.device) -> str:
    """One line: CPU model and cores, memory, GPU, torch version."""
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores{mem}, {gpu}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} intra-op threads"
    )


def ensure_data(
    size: Size,
    folder: str | None,
    n_train: int | None,
    n_test: int | None,
    workers: int = 0,
    vggsound_like: bool = False,
) -> Path:
    """The synthetic benchmark at this size (frames of `size.frame` px, `size.duration` s of audio);
    with `vggsound_like`, its VGG-Sound-like copy (`vggsound_like`), made on first use."""
    from fnac.synth import SynthConfig, generate

    root = Path(folder) if folder else BENCH_DIR / "data" / size.name
    cfg = SynthConfig(
        seed=0,
        n_train=n_train or 1024,
        n_val=16,
        n_test=n_test or 256,
        image_size=size.frame,
        duration=size.duration,
        n_clips=0,
    )
    t = time.perf_counter()
    s = generate(root, cfg, progress=False, workers=workers or (os.cpu_count() or 1))
    if not s.get("reused"):
        print(f"[data] generated {root} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    if vggsound_like:
        return vggsound_like_copy(root, size.duration)
    return root


VGGSOUND_FRAME = (640, 360)  # (width, height) of the frames of the VGG-Sound-like copy
VGGSOUND_SECONDS = 10.0  # VGG-Sound clips are 10 s long
VGGSOUND_MARK = "vggsound_like.json"


def vggsound_like_copy(src: Path, window: float, out: Path | None = None, quality: int = 90) -> Path:
    """A copy of the synthetic set `src` shaped like VGG-Sound files, in the same VGG-SS layout.

    - frames/<id>.jpg: the synthetic frame resized (bicubic, stretched) to 640 x 360 and written as a
      JPEG of `quality` (the synthetic set's own 90). The VGG-SS annotations store boxes normalised to
      [0, 1] (fnac.data.vggss), so a stretch leaves annotations.json valid unchanged; masks/<id>.png
      are stretched alike (nearest neighbour).
    - audio/<id>.wav: 10 s, 16-bit mono at the source rate (16 kHz): the synthetic clip repeated, with
      the repeats placed so that the centred `window`-second training window (audio.centre_window, and
      the reference-style path's own centring) is exactly the original clip whenever the clip is
      `window` s long. Integer samples are copied, so no requantisation.
    - the id lists, annotations.json, scenes.json and classes.json are copied; synth.json is not (the
      copy is not a synthetic set `fnac synth` may rewrite), vggsound_like.json says what it is.

    Written to `out` (default <src>_vggsound); reused while its vggsound_like.json matches `src`'s
    synth.json and these settings. Single process (about 10 ms per clip here)."""
    import hashlib
    import shutil

    import numpy as np
    import soundfile as sf
    from PIL import Image

    out = Path(out) if out else src.parent / f"{src.name}_vggsound"
    mark = {
        "source": str(src),
        "source_synth": hashlib.sha1((src / "synth.json").read_bytes()).hexdigest(),
        "frame": list(VGGSOUND_FRAME),
        "seconds": VGGSOUND_SECONDS,
        "window": window,
        "quality": quality,
        "version": 1,
    }
    try:
        if json.loads((out / VGGSOUND_MARK).read_text()) == mark:
            return out
    except (OSError, ValueError):
        pass
    t = time.perf_counter()
    if out.exists():
        shutil.rmtree(out)
    for sub in ("frames", "audio", "masks"):
        (out / sub).mkdir(parents=True)
    for f in sorted(src.iterdir()):
        if f.is_file() and f.name != "synth.json" and f.suffix in (".txt", ".json"):
            shutil.copyfile(f, out / f.name)
    for f in sorted((src / "frames").iterdir()):
        with Image.open(f) as img:
            big = img.convert("RGB").resize(VGGSOUND_FRAME, Image.Resampling.BICUBIC)
        big.save(out / "frames" / f.name, quality=quality)
    for f in sorted((src / "masks").iterdir()):
        with Image.open(f) as img:
            img.resize(VGGSOUND_FRAME, Image.Resampling.NEAREST).save(out / "masks" / f.name)
    n_clips = 0
    for f in sorted((src / "audio").iterdir()):
        x, sr = sf.read(str(f), dtype="int16")
        if x.ndim != 1:
            raise ValueError(f"{f}: expected mono audio")
        n = int(round(VGGSOUND_SECONDS * sr))
        start = int(max(n / sr / 2.0 - window / 2.0, 0.0) * sr)  # the centred window's first sample
        y = x[(np.arange(n) - start) % len(x)]  # sample `start` is the clip's first
        sf.write(str(out / "audio" / f.name), y, sr, subtype="PCM_16")
        n_clips += 1
    (out / VGGSOUND_MARK).write_text(json.dumps(mark, indent=1))
    print(f"[data] VGG-Sound-like copy {out}: {n_clips} clips in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return out


def data_overrides(size: Size, root: Path, cache: str = "") -> list[str]:
    out = [
        f"data.root={root}",
        f"data.image_size={size.image_size}",
        f"data.audio_duration={size.duration}",
        f"model.width={size.width}",
        f"model.embed_dim={size.embed_dim}",
        "data.dataset=vggss",
    ]
    if cache:
        out.append(f"data.cache={cache}")
    return out


def ensure_cache(size: Size, root: Path, folder: str | None, splits: Iterable[str], workers: int) -> Path:
    from fnac.cache import cache_split
    from fnac.config import load_config
    from fnac.errors import DataError

    out = Path(folder) if folder else root / "cache"
    cfg = load_config(None, data_overrides(size, root))
    for split in splits:
        try:
            s = cache_split(cfg.data, out, split, shard_size=1000, workers=max(1, workers), progress=False)
        except DataError:  # a cache of other settings in the benchmark's own folder: rebuild it
            s = cache_split(cfg.data, out, split, shard_size=1000, workers=max(1, workers), progress=False, force=True)
        if not s.reused:
            print(
                f"[cache] {split}: {s.n} clips in {s.seconds:.0f} s ({s.n / max(s.seconds, 1e-9):.0f} clips/s, "
                f"{s.bytes / 2**20:.0f} MiB)",
                file=sys.stderr,
            )
    return out


def on_device(batch: dict, device: torch.device) -> dict:
    """A collated batch with its tensors moved to `device` (ids and other values as they are)."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


class GpuUtilisation:
    """The GPU's utilisation over a timed window, sampled by `nvidia-smi` every `interval_ms`:

        with GpuUtilisation(device) as u:
            ...  # the timed steps
        u.mean  # percent of the samples' time the GPU ran a kernel (None: not a CUDA device, no nvidia-smi)

    nvidia-smi's figure is the share of its sampling period in which one or more kernels ran, so 100 %
    says the device was never idle, not that it was fully used.
    """

    def __init__(self, device: torch.device, interval_ms: int = 100, command: str = "nvidia-smi"):
        self.samples: list[float] = []
        self._proc: subprocess.Popen | None = None
        exe = shutil.which(command) if device.type == "cuda" else None
        if exe:
            index = device.index if device.index is not None else torch.cuda.current_device()
            self._argv = [exe, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
            self._argv += [f"-lms={interval_ms}", f"--id={index}"]
        else:
            self._argv = None

    def __enter__(self) -> GpuUtilisation:
        if self._argv:
            self._proc = subprocess.Popen(self._argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            out, _ = self._proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            out, _ = self._proc.communicate()
        self.samples = parse_utilisation(out)

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def parse_utilisation(text: str) -> list[float]:
    """The numbers of `nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits` output, one
    per line; lines that are not a number ("[N/A]", warnings) are skipped."""
    out = []
    for line in text.splitlines():
        try:
            out.append(float(line.strip().rstrip("%").strip()))
        except ValueError:
            continue
    return out


def table(title: str, header: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table (numbers formatted by the caller)."""
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("-" * len(lines[-1]))
    for r in cells[1:]:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def write_json(path: str | None, obj: Any) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(obj, indent=1))


def fmt(x: float) -> str:
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"
