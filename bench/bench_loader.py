"""Data loading throughput (training samples/s) against the model's consumption, in one run.

Loaders: the reference-style per-sample pipeline (Pillow + PyAV + scipy in the workers), fnac's plain
layout (Pillow + soundfile + torch spectrogram in the workers) and fnac's cache (memory-mapped frames
and audio windows, crop/flip in the workers). Each is timed delivering batches to the main process
and moving them to the device. On a GPU the cache leaves the spectrogram, log, masks and
normalisation to the device: that step is timed on its own ("device finishing"), as it runs in the
training process; on the CPU the workers do it (as fit arranges), inside the loader's time.
The model's consumption is fnac's training step on a batch already on the device. All are timed in
turns for several rounds (a change of load on a shared machine hits every path alike); the best round
of each is reported. Goal: every fnac loader at least 3x the model's consumption.

    python bench/bench_loader.py --size small
    python bench/bench_loader.py --size full --workers 8 --device cuda
"""

from __future__ import annotations

import argparse
import time

import torch

import _common as C


def measure_loader(make_loader, to_device, device: torch.device, min_seconds: float) -> dict:
    """Samples/s of a loader in steady state (the first batch, which pays for worker start-up, is not
    timed), including the host-to-device copy."""
    it = iter(make_loader())
    to_device(next(it))
    C.sync(device)
    n, t0 = 0, time.perf_counter()
    for batch in it:
        to_device(batch)
        n += len(batch[0]["id"]) if isinstance(batch[0], dict) else len(batch[-1])
        if time.perf_counter() - t0 >= min_seconds:
            break
    C.sync(device)
    dt = time.perf_counter() - t0
    return {"samples": n, "seconds": dt, "rate": n / dt}


def measure_repeat(fn, n_per_call: int, device: torch.device, min_seconds: float) -> dict:
    fn()
    C.sync(device)
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += n_per_call
        if time.perf_counter() - t0 >= min_seconds and n >= 2 * n_per_call:
            break
    C.sync(device)
    dt = time.perf_counter() - t0
    return {"samples": n, "seconds": dt, "rate": n / dt}


def model_stepper(cfg, device: torch.device, batch: int):
    """A function running fnac's training step on a resident batch (what the model can consume)."""
    from fnac.audio import n_frames
    from fnac.models.fnac import FNAC
    from fnac.train import build_optimizer, train_step

    model = FNAC(cfg.model, load_pretrained=False).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(model, cfg)
    t = n_frames(int(round(16000 * cfg.data.audio_duration)))
    s = cfg.data.image_size
    b = {
        "image": torch.randn(batch, 3, s, s, device=device),
        "spec": torch.randn(batch, 1, 257, t, device=device),
        "id": [str(i) for i in range(batch)],
    }
    step_model = torch.compile(model, backend=cfg.train.compile_backend) if cfg.train.compile else model
    for _ in range(2):  # warm-up (cuDNN autotuning, compilation)
        train_step(step_model, b, opt, cfg, epoch=99, device=device)
    return lambda: train_step(step_model, b, opt, cfg, epoch=99, device=device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_common_args(p)
    p.add_argument("--batch", type=int, default=None, help="batch size (default: per size and device)")
    p.add_argument("--seconds", type=float, default=10.0, help="time each path for about this long")
    p.add_argument("--amp", default=None, choices=["none", "bf16"], help="model step: default bf16 on CUDA")
    p.add_argument("--channels-last", default=None, action=argparse.BooleanOptionalAction)
    p.add_argument("--rounds", type=int, default=2, help="timed rounds per path, in turns (default 2)")
    p.add_argument(
        "--gpu-layout",
        action="store_true",
        help="on a CPU too, leave the cache's spectrograms to the device step, as on a GPU (shows what "
        "the loader workers deliver to a GPU)",
    )
    p.add_argument("--paths", default="reference,plain,cache")
    args = p.parse_args()

    from fnac.config import load_config
    from fnac.data import build_dataset, collate
    from fnac.inputs import model_inputs
    from reference_style import RefDataset

    size = C.SIZES[args.size]
    device = C.device_of(args.device)
    gpu = device.type == "cuda"
    batch = args.batch or (size.batch_gpu if gpu else size.batch_cpu)
    root = C.ensure_data(size, args.data, args.n_train, args.n_test, vggsound_like=args.vggsound_like)
    cache = C.ensure_cache(size, root, args.cache, ["train"], args.workers)
    amp = args.amp or ("bf16" if gpu else "none")
    cl = args.channels_last if args.channels_last is not None else gpu
    over = C.data_overrides(size, root) + [f"train.amp={amp}", f"train.channels_last={str(cl).lower()}"]
    cfg = load_config(None, over)
    cfg_cache = load_config(None, C.data_overrides(size, root, str(cache)))

    def loader(ds, collate_fn=None):
        kw = dict(
            batch_size=batch,
            shuffle=True,
            drop_last=True,
            num_workers=args.workers,
            pin_memory=gpu,
            persistent_workers=False,
        )
        if args.workers:
            kw["prefetch_factor"] = 4
        if collate_fn is not None:
            kw["collate_fn"] = collate_fn
        return lambda: torch.utils.data.DataLoader(ds, **kw)

    def move_ref(b):
        b[0].to(device, non_blocking=True), b[1].to(device, non_blocking=True)

    def move_fnac(b):
        for k in ("image", "spec", "wave", "spec_mask"):
            if k in b[0]:
                b[0][k].to(device, non_blocking=True)

    paths = args.paths.split(",")
    jobs = []  # (label, measure function)
    if "reference" in paths:
        ref_ds = RefDataset(root, "train", size.image_size, size.duration, train=True)
        jobs.append(("reference-style loader", lambda: measure_loader(loader(ref_ds), move_ref, device, args.seconds)))
    if "plain" in paths:
        plain_ds = build_dataset(cfg.data, "train", train=True)
        jobs.append(
            (
                "fnac loader, plain layout",
                lambda: measure_loader(loader(plain_ds, collate), move_fnac, device, args.seconds),
            )
        )
    if "cache" in paths:
        cache_ds = build_dataset(cfg_cache.data, "train", train=True)
        cache_ds.prepare_for(device)  # as fit does: on CPU the workers also compute the spectrograms
        if args.gpu_layout:
            cache_ds.finish_on_device = True
        where = "spectrograms on the device" if cache_ds.finish_on_device else "spectrograms in the workers"
        jobs.append(
            (
                f"fnac loader, cache ({where})",
                lambda: measure_loader(loader(cache_ds, collate), move_fnac, device, args.seconds),
            )
        )
        if cache_ds.finish_on_device:
            b, _ = collate([cache_ds[i] for i in range(batch)])
            b = C.on_device(b, device)
            jobs.append(
                (
                    "cache: device finishing",
                    lambda: measure_repeat(
                        lambda: model_inputs(b, device, channels_last=cl), batch, device, args.seconds / 2
                    ),
                )
            )
    step = model_stepper(cfg, device, batch)
    jobs.append(("model", lambda: measure_repeat(step, batch, device, args.seconds)))
    # in turns, several rounds (a shared machine's load changes hit every path alike); best round kept
    res: dict[str, dict] = {}
    for _ in range(args.rounds):
        for label, job in jobs:
            r = job()
            every = res.get(label, {}).get("rounds", []) + [r["rate"]]
            if label not in res or r["rate"] > res[label]["rate"]:
                res[label] = r
            res[label]["rounds"] = every
    mr = res.pop("model")
    ref = res.get("reference-style loader", {}).get("rate")
    rows = []
    for name, r in res.items():
        w = "-" if "finishing" in name else args.workers
        vs = f"{r['rate'] / ref:.1f}x" if ref and "finishing" not in name else "-"
        rows.append(
            [name, w, C.fmt(r["rate"]), vs, f"{r['rate'] / mr['rate']:.2f}x", " ".join(C.fmt(x) for x in r["rounds"])]
        )
    rows.append(
        [
            f"model step (amp {amp}, channels_last {cl})",
            "-",
            C.fmt(mr["rate"]),
            "-",
            "1.00x",
            " ".join(C.fmt(x) for x in mr["rounds"]),
        ]
    )
    print(C.machine(device))
    print(
        C.table(
            f"data loading, {size.name} size ({size.image_size} px, {size.duration:g} s), batch {batch}, "
            f"device {device.type}; best of {args.rounds} rounds",
            ["path", "workers", "samples/s", "vs reference", "vs model", "each round"],
            rows,
        )
    )
    C.write_json(
        args.json,
        {
            "bench": "loader",
            "size": size.name,
            "device": str(device),
            "batch": batch,
            "workers": args.workers,
            "machine": C.machine(device),
            "loaders": res,
            "model": mr,
        },
    )


if __name__ == "__main__":
    main()
