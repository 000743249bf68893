"""The training step on the CPU: memory layout (NCHW, channels-last) and torch threads, in one run.

What the demo's choices rest on: one training step of the `small` config (the demo's model) on
batches already in memory (no loader), timed for each combination of layout and thread count with
the same initial weights and batches. Wall time per step and CPU time per step (all threads of the
process) are reported, with the ratio of steps/s against the plain set-up (NCHW, 1 thread), and
"models/2 cores" = how many steps/s two cores give when each model gets `--cores / threads` of them
(two 1-thread runs side by side vs one run on both cores). Paths are timed in turns, several rounds;
the best round of each is reported, every round printed. Asserts nothing.

    python bench/bench_step.py                  # small config, batch 16 (the demo's)
    python bench/bench_step.py --batch 64 --steps 6
"""

from __future__ import annotations

import argparse
import time

import torch

import _common as C


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="small", help="built-in config or YAML of the model (default small)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=8, help="timed steps per path and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--cores", type=int, default=2, help="cores to share between runs for the last column")
    p.add_argument("--data", help="synthetic data folder (default bench/data/small; generated if absent)")
    args = p.parse_args()

    from fnac.config import load_config, resolve_config_path
    from fnac.data import build_dataset, collate
    from fnac.models.fnac import FNAC
    from fnac.train import build_optimizer, train_step

    root = C.ensure_data(C.SIZES["small"], args.data, None, None)
    base = load_config(resolve_config_path(args.config), [f"data.root={root}", "data.num_workers=0"])
    ds = build_dataset(base.data, "train", train=True, seed=0)
    n = args.batch * (args.steps + 2)
    batches = [collate([ds[i % len(ds)] for i in range(j, j + args.batch)])[0] for j in range(0, n, args.batch)]

    paths = []
    for threads in args.threads:
        for cl in (False, True):
            cfg = load_config(resolve_config_path(args.config), [f"train.channels_last={str(cl).lower()}"])
            torch.manual_seed(0)
            model = FNAC(cfg.model, load_pretrained=False)
            if cl:
                model = model.to(memory_format=torch.channels_last)
            model.train()
            paths.append((f"{'channels-last' if cl else 'NCHW'}, {threads} thread(s)", threads, model, cfg))
    opts = {label: build_optimizer(model, cfg) for label, _, model, cfg in paths}

    def run(label: str, threads: int, model, cfg, steps: int) -> tuple[float, float]:
        torch.set_num_threads(threads)
        w, c = time.perf_counter(), time.process_time()
        for b in batches[:steps]:
            train_step(model, b, opts[label], cfg, epoch=99, device="cpu")
        return (time.perf_counter() - w) / steps, (time.process_time() - c) / steps

    for label, threads, model, cfg in paths:  # warm-up: first-call allocations and kernel choices
        run(label, threads, model, cfg, 2)
    best: dict[str, tuple[float, float]] = {}
    every: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for label, threads, model, cfg in paths:
            wall, cpu = run(label, threads, model, cfg, args.steps)
            every.setdefault(label, []).append(1000 * wall)
            if label not in best or wall < best[label][0]:
                best[label] = (wall, cpu)
    ref = best[paths[0][0]][0]
    rows = []
    for label, threads, _, _ in paths:
        wall, cpu = best[label]
        per_cores = (args.cores // threads) / wall  # runs side by side on the cores, each `threads` wide
        rows.append(
            [
                label,
                f"{1000 * wall:.0f}",
                f"{1000 * cpu:.0f}",
                f"{ref / wall:.2f}x",
                f"{per_cores:.1f}",
                " ".join(f"{x:.0f}" for x in every[label]),
            ]
        )
    torch.set_num_threads(max(args.threads))
    print(C.machine(torch.device("cpu")))
    print(
        C.table(
            f"training step of the {args.config} config, batch {args.batch}, on the CPU; best of {args.rounds} rounds "
            f"of {args.steps} steps",
            [
                "path",
                "ms/step",
                "CPU ms/step",
                "steps/s vs NCHW 1 thread",
                f"steps/s on {args.cores} cores",
                "each round (ms)",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
