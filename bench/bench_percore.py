"""The CPU data path per core: training samples/s from the files to the model's inputs, one process,
one torch thread, no loader workers.

Each path turns a batch of training samples (their indices drawn in a shuffled order) into exactly what
the training step receives at this size: images (B, 3, S, S) float32 normalised, spectrograms
(B, 1, 257, T) float32 (log, training masks, / 12), by calling the dataset in this process
(``dataset[i]``, then collation, then ``fnac.inputs.model_inputs`` on the CPU for the fnac paths):

- reference-style (``reference_style.RefDataset``): Pillow decode, resize, crop, flip, numpy
  normalisation; PyAV decode of the whole file, centred window, scipy spectrogram, log, masks, / 12;
  ``default_collate``;
- fnac, plain layout: ``fnac.data`` on the frames/ and audio/ folders (Pillow + soundfile + torch
  spectrogram), ``fnac.data.collate``;
- fnac, cache: ``data.cache`` after ``prepare_for("cpu")``, as ``fnac train`` on a CPU runs it (each
  sample finished, spectrogram included, in ``__getitem__``);
- fnac, cache, batched finishing: the same cache read raw (as for a GPU) and finished in one
  ``model_inputs`` call per batch on the CPU.

The paths are timed in turns for several rounds (a change of load on a shared machine hits every path
alike), the best round of each reported, every round printed; the files are in the page cache (the
data were just read). Before timing, the plain layout and the cache are checked to give the same model
inputs for the same samples (printed, never asserted). With ``--vggsound-like`` the data are the
VGG-Sound-like copy of the synthetic set (640 x 360 JPEG frames, 10 s 16 kHz wav; _common.vggsound_like_copy).
``--profile N`` also runs cProfile over N samples of each fnac cache path and prints the top functions.

    python bench/bench_percore.py --vggsound-like --n-train 512 --rounds 3
    python bench/bench_percore.py --size small
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # one core: set before numpy/torch load
    os.environ[_v] = "1"

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import pstats  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

import _common as C  # noqa: E402


def batches(n: int, batch: int, seed: int):
    """Index batches of a shuffled order of range(n), reshuffled at each pass."""
    rng = random.Random(seed)
    while True:
        order = list(range(n))
        rng.shuffle(order)
        for k in range(0, n - batch + 1, batch):
            yield order[k : k + batch]


def measure(make_batch, index_batches, batch: int, min_seconds: float) -> dict:
    """Samples/s of `make_batch(indices)` over whole batches, for at least `min_seconds` and 2 batches."""
    n, t0 = 0, time.perf_counter()
    while True:
        make_batch(next(index_batches))
        n += batch
        dt = time.perf_counter() - t0
        if dt >= min_seconds and n >= 2 * batch:
            return {"samples": n, "seconds": dt, "rate": n / dt}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=sorted(C.SIZES), default="full")
    p.add_argument("--data", help="synthetic data folder (default bench/data/<size>; generated if absent)")
    p.add_argument("--cache", help="cache folder (default <data>/cache; built if absent)")
    p.add_argument("--n-train", type=int, default=None, help="synthetic training clips to generate")
    p.add_argument("--n-test", type=int, default=None, help="synthetic test clips to generate")
    p.add_argument(
        "--vggsound-like",
        action="store_true",
        help="read the VGG-Sound-like copy: 640 x 360 JPEG frames, 10 s 16 kHz 16-bit mono wav",
    )
    p.add_argument("--batch", type=int, default=16, help="samples per collated batch (default 16)")
    p.add_argument("--seconds", type=float, default=6.0, help="time each path for about this long per round")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per path, in turns (default 3)")
    p.add_argument("--paths", default="reference,plain,cache,cache-batched")
    p.add_argument("--check", type=int, default=8, help="samples compared between plain layout and cache")
    p.add_argument("--profile", type=int, default=0, help="cProfile this many samples of the cache paths")
    p.add_argument("--build-workers", type=int, default=2, help="processes building data and cache (untimed)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()

    torch.set_num_threads(1)
    from torch.utils.data import default_collate

    from fnac.config import load_config
    from fnac.data import build_dataset, collate
    from fnac.inputs import model_inputs
    from reference_style import RefDataset

    size = C.SIZES[args.size]
    cpu = torch.device("cpu")
    root = C.ensure_data(size, args.data, args.n_train, args.n_test, args.build_workers, args.vggsound_like)
    cache = C.ensure_cache(size, root, args.cache, ["train"], args.build_workers)
    cfg = load_config(None, C.data_overrides(size, root))
    cfg_cache = load_config(None, C.data_overrides(size, root, str(cache)))

    def fnac_batch(ds):
        def make(idx):
            b, failed = collate([ds[i] for i in idx])
            if failed:
                raise RuntimeError(f"samples failed to load: {failed[:3]}")
            return model_inputs(b, cpu)

        return make

    def ref_batch(ds):
        return lambda idx: default_collate([ds[i] for i in idx])[:2]

    paths = args.paths.split(",")
    jobs = []  # (label, make_batch(indices) -> (images, specs))
    plain_ds = build_dataset(cfg.data, "train", train=True)
    cache_ds = build_dataset(cfg_cache.data, "train", train=True)
    cache_ds.prepare_for(cpu)  # as fit does on the CPU: each sample finished in __getitem__
    raw_ds = build_dataset(cfg_cache.data, "train", train=True)  # read raw, finished per batch
    raw_ds.finish_on_device = True
    n = len(plain_ds)
    if "reference" in paths:
        ref_ds = RefDataset(root, "train", size.image_size, size.duration, train=True)
        jobs.append(("reference-style, per sample", ref_batch(ref_ds)))
    if "plain" in paths:
        jobs.append(("fnac, plain layout", fnac_batch(plain_ds)))
    if "cache" in paths:
        jobs.append(("fnac, cache (prepare_for cpu: finished per sample)", fnac_batch(cache_ds)))
    if "cache-batched" in paths:
        jobs.append(("fnac, cache (finished per batch)", fnac_batch(raw_ds)))

    # agreement: the plain layout and the cache give the same model inputs for the same samples
    idx = list(range(min(args.check, n)))
    for ds in (plain_ds, cache_ds, raw_ds):
        ds.set_epoch(1)
    want = fnac_batch(plain_ds)(idx)
    agree = {}
    for label, ds in (("cache, per sample", cache_ds), ("cache, per batch", raw_ds)):
        got = fnac_batch(ds)(idx)
        same = [
            bool(torch.equal(want[0][k], got[0][k]) and torch.equal(want[1][k], got[1][k])) for k in range(len(idx))
        ]
        diff = max(float((want[j] - got[j]).abs().max()) for j in (0, 1))
        agree[label] = {"identical": sum(same), "of": len(idx), "max_abs_diff": diff}
    for ds in (plain_ds, cache_ds, raw_ds):
        ds.set_epoch(0)

    shapes = None
    for label, make in jobs:  # warm-up (first file reads, imports, allocator), untimed
        out = make(list(range(args.batch)))
        shapes = shapes or [tuple(t.shape) for t in out]
    load = [C.load_average()]
    res: dict[str, dict] = {}
    order = {label: batches(n, args.batch, seed=k) for k, (label, _) in enumerate(jobs)}
    for r in range(args.rounds):
        for ds in (plain_ds, cache_ds, raw_ds):
            ds.set_epoch(r + 1)
        for label, make in jobs:
            m = measure(make, order[label], args.batch, args.seconds)
            every = res.get(label, {}).get("rounds", []) + [m["rate"]]
            if label not in res or m["rate"] > res[label]["rate"]:
                res[label] = m
            res[label]["rounds"] = every

    load.append(C.load_average())
    profiles = {}
    if args.profile:
        for label, make in jobs:
            if "cache" not in label:
                continue
            prof = cProfile.Profile()
            it = batches(n, args.batch, seed=99)
            prof.enable()
            for _ in range(max(1, args.profile // args.batch)):
                make(next(it))
            prof.disable()
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(25)
            profiles[label] = s.getvalue()

    ref = res.get("reference-style, per sample", {}).get("rate")
    rows = []
    for name, r in res.items():
        vs = f"{r['rate'] / ref:.1f}x" if ref else "-"
        rows.append([name, C.fmt(r["rate"]), f"{1000 / r['rate']:.2f}", vs, " ".join(C.fmt(x) for x in r["rounds"])])
    what = (
        "VGG-Sound-like files (640 x 360 JPEG, 10 s 16 kHz wav)"
        if args.vggsound_like
        else (f"synthetic files ({size.frame} px JPEG, {size.duration:g} s wav)")
    )
    print(C.machine(cpu))
    print(
        C.table(
            f"CPU data path per core, {size.name} size ({size.image_size} px, {size.duration:g} s window) from "
            f"{what}, {n} training clips, batch {args.batch}, 1 process, 1 thread, no workers; "
            f"best of {args.rounds} rounds",
            ["path", "samples/s", "ms/sample", "vs reference", "each round"],
            rows,
        )
    )
    print(f"load average (1 min) before / after the timed rounds: {load[0]} / {load[1]} on {os.cpu_count()} cores")
    print(f"model inputs per batch: images {shapes[0]}, spectrograms {shapes[1]}" if shapes else "")
    for label, a in agree.items():
        print(
            f"agreement, plain layout vs {label}: {a['identical']} of {a['of']} samples identical "
            f"(max abs diff {a['max_abs_diff']:.3g})"
        )
    for label, text in profiles.items():
        print(f"\ncProfile, {label}, {max(1, args.profile // args.batch) * args.batch} samples (by own time):")
        print(text)
    C.write_json(
        args.json,
        {
            "bench": "percore",
            "size": size.name,
            "vggsound_like": args.vggsound_like,
            "batch": args.batch,
            "n_train": n,
            "machine": C.machine(cpu),
            "paths": res,
            "agreement": agree,
            "load_average": load,
        },
    )


if __name__ == "__main__":
    main()
