"""End-to-end training throughput (pairs/s): loader, device transfer, forward, FNAC loss, backward,
optimizer step, in one run for each path.

Paths: the reference-style pipeline (per-sample Pillow + PyAV + scipy loader, float32 step), fnac on
the plain layout and fnac on the cache (fit's sampler, loader and train_step, with the GPU options:
bf16 autocast and channels-last by default on CUDA, torch.compile with --compile), and the model step
alone ("model": the cache path's train_step repeated on one batch kept on the device, device-side
spectrograms included), the rate an end-to-end path would reach if its data cost nothing. The same
model size and initial weights in every path; the first steps (loader start-up, cuDNN autotuning,
compilation) are not timed; the paths are then timed in turns, several rounds, best round reported.
Each timed window also records the time spent waiting for the next batch and, on CUDA with
nvidia-smi on PATH, the GPU's mean utilisation.

    python bench/bench_train.py --size small
    python bench/bench_train.py --size full --device cuda --workers 12 --steps 30
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

import _common as C


def run_steps(batches, step, device: torch.device, warmup: int, steps: int, batch: int) -> dict:
    """Time `steps` steps after `warmup` untimed ones: rate, seconds spent waiting for the next batch
    and, on CUDA, the GPU's mean utilisation over the timed window."""
    it = iter(batches)
    for _ in range(warmup):
        step(next(it))
    C.sync(device)
    wait = 0.0
    with C.GpuUtilisation(device) as util:
        t0 = time.perf_counter()
        for _ in range(steps):
            w = time.perf_counter()
            b = next(it)
            wait += time.perf_counter() - w
            step(b)
        C.sync(device)
        dt = time.perf_counter() - t0
    return {
        "steps": steps,
        "pairs": steps * batch,
        "seconds": dt,
        "rate": steps * batch / dt,
        "wait_seconds": wait,
        "gpu_util": util.mean,
    }


def cycle(make_loader):
    while True:
        yield from make_loader()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_common_args(p)
    p.add_argument("--batch", type=int, default=None, help="batch size (default: per size and device)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per path (default 5 CPU, 30 GPU)")
    p.add_argument("--ref-steps", type=int, default=None, help="timed steps of the reference-style path")
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed steps first, while the loader fills its queue (default 3 CPU, 5 GPU)",
    )
    p.add_argument("--amp", default=None, choices=["none", "bf16"], help="fnac paths (default: bf16 on CUDA)")
    p.add_argument("--channels-last", default=None, action=argparse.BooleanOptionalAction)
    p.add_argument("--compile", action="store_true", help="torch.compile the model (fnac paths)")
    p.add_argument(
        "--ref-workers",
        type=int,
        default=None,
        help="loader processes of the reference-style path (default: --workers; the reference uses 2)",
    )
    p.add_argument("--rounds", type=int, default=None, help="timed rounds per path, in turns (default 3 CPU, 2 GPU)")
    p.add_argument("--paths", default="reference,plain,cache,model")
    args = p.parse_args()

    import reference_style as R
    from fnac.config import load_config
    from fnac.data import build_dataset
    from fnac.models.fnac import FNAC
    from fnac.train import EpochSampler, build_optimizer, make_train_loader, train_step

    size = C.SIZES[args.size]
    device = C.device_of(args.device)
    gpu = device.type == "cuda"
    batch = args.batch or (size.batch_gpu if gpu else size.batch_cpu)
    steps = args.steps or (30 if gpu else 5)
    warmup = args.warmup if args.warmup is not None else (5 if gpu else 3)
    rounds = args.rounds or (2 if gpu else 3)
    root = C.ensure_data(size, args.data, args.n_train, args.n_test, vggsound_like=args.vggsound_like)
    cache = C.ensure_cache(size, root, args.cache, ["train"], args.workers)
    amp = args.amp or ("bf16" if gpu else "none")
    cl = args.channels_last if args.channels_last is not None else gpu
    opts = [
        f"train.amp={amp}",
        f"train.channels_last={str(cl).lower()}",
        f"train.compile={str(args.compile).lower()}",
        f"train.batch_size={batch}",
        f"data.num_workers={args.workers}",
        "train.device=" + str(device),
    ]
    paths = args.paths.split(",")
    runners: list[tuple[str, object, object, int]] = []  # (label, step function, batch iterator, timed steps)

    def fresh_model():
        torch.manual_seed(0)
        return FNAC(load_config(None, C.data_overrides(size, root)).model, load_pretrained=False).to(device)

    if "reference" in paths:
        ref_model = fresh_model().train()
        ref_opt = torch.optim.Adam(ref_model.parameters(), lr=1e-4, weight_decay=1e-4)
        ref_ds = R.RefDataset(root, "train", size.image_size, size.duration, train=True)
        rw = args.workers if args.ref_workers is None else args.ref_workers
        kw = dict(batch_size=batch, shuffle=True, drop_last=True, num_workers=rw)
        runners.append(
            (
                f"reference-style (fp32, per-sample loader, {rw} workers)",
                lambda b: R.train_step(ref_model, b, ref_opt, device),
                cycle(lambda: torch.utils.data.DataLoader(ref_ds, **kw)),
                args.ref_steps or steps,
            )
        )

    def fnac_setup(use_cache: bool) -> tuple:
        """(cfg, model to call, optimizer, the training loader and its sampler) as fit builds them."""
        cfg = load_config(None, C.data_overrides(size, root, str(cache) if use_cache else "") + opts)
        ds = build_dataset(cfg.data, "train", train=True)  # the cache when cfg.data.cache is set
        ds.prepare_for(device)  # as fit does
        core = fresh_model()
        if cl:
            core = core.to(memory_format=torch.channels_last)
        model = torch.compile(core, backend=cfg.train.compile_backend) if args.compile else core
        opt = build_optimizer(core, cfg)
        model.train()
        sampler = EpochSampler(len(ds), batch, cfg.train.seed)
        loader = make_train_loader(ds, batch, sampler, cfg, device)  # fit's one loader per run
        return cfg, model, opt, loader, sampler

    settings = f"amp {amp}, channels_last {cl}" + (", compiled" if args.compile else "")

    def fnac_runner(use_cache: bool) -> tuple:
        cfg, model, opt, loader, sampler = fnac_setup(use_cache)
        epoch = [0]

        def make_loader():  # what fit does each epoch: the next epoch of the same loader
            sampler.set_epoch(epoch[0])
            epoch[0] += 1
            return loader

        return (
            f"fnac, {'cache' if use_cache else 'plain layout'} ({settings})",
            lambda b: train_step(model, b, opt, cfg, 99, device),
            (b for b, _failed in cycle(make_loader)),
            steps,
        )

    for name, use_cache in (("plain", False), ("cache", True)):
        if name in paths:
            runners.append(fnac_runner(use_cache))
    if "model" in paths:  # the cache path's step on one batch that stays on the device: no data cost
        m_cfg, m_model, m_opt, loader, _ = fnac_setup(True)
        first, _failed = next(iter(loader))
        resident = C.on_device(first, device)
        del loader
        runners.append(
            (
                f"model step only (cache settings, {settings}, one batch on the device)",
                lambda b: train_step(m_model, b, m_opt, m_cfg, 99, device),
                itertools.repeat(resident),
                steps,
            )
        )
    # warm up every path (loader start-up and queue, autotuning, compilation), then time them in turns so
    # that a change of load on a shared machine hits every path alike; report each path's best round
    for label, step, batches, _ in runners:
        run_steps(batches, step, device, 0, warmup, batch)
    res: dict[str, dict] = {}
    for _ in range(rounds):
        for label, step, batches, n in runners:
            r = run_steps(batches, step, device, 0, n, batch)
            every = res.get(label, {}).get("rounds", []) + [r["rate"]]
            if label not in res or r["rate"] > res[label]["rate"]:
                res[label] = r
            res[label]["rounds"] = every
    ref = next((r["rate"] for k, r in res.items() if k.startswith("reference")), None)
    alone = next((r["rate"] for k, r in res.items() if k.startswith("model step only")), None)
    rows = [
        [
            k,
            f"{rounds} x {r['steps']}",
            C.fmt(r["rate"]),
            f"{r['rate'] / ref:.1f}x" if ref else "-",
            f"{100 * r['rate'] / alone:.0f} %" if alone else "-",
            f"{100 * r['wait_seconds'] / r['seconds']:.0f} %",
            "-" if r["gpu_util"] is None else f"{r['gpu_util']:.0f} %",
            " ".join(C.fmt(x) for x in r["rounds"]),
        ]
        for k, r in res.items()
    ]
    print(C.machine(device))
    print(
        C.table(
            f"training, {size.name} size ({size.image_size} px, {size.duration:g} s, ResNet-18 width "
            f"{size.width}, C={size.embed_dim}), batch {batch}, fnac loader workers {args.workers}, device "
            f"{device.type}; best of {rounds} rounds",
            ["path", "timed steps", "pairs/s", "vs reference", "of model step", "batch wait", "GPU util", "each round"],
            rows,
        )
    )
    C.write_json(
        args.json,
        {
            "bench": "train",
            "size": size.name,
            "device": str(device),
            "batch": batch,
            "workers": args.workers,
            "machine": C.machine(device),
            "results": res,
        },
    )


if __name__ == "__main__":
    main()
