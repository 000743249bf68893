"""Shared pieces of the benchmarks: sizes, synthetic data, machine description, timing, tables.

Benchmarks compare paths measured in the same run on the same machine (ratios, not absolute times).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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


def ensure_data(size: Size, folder: str | None, n_train: int | None, n_test: int | None, workers: int = 0) -> Path:
    """The synthetic benchmark at this size (frames of `size.frame` px, `size.duration` s of audio)."""
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
    return root


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


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


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
