"""Distributed overhead on the CPU: `fnac train` in 2 processes (torchrun, gloo, DDP) against 1
process, one thread each, the same global batch, data and config.

Runs, in turns for several rounds (a change of load on a shared machine hits every path alike):

- 1 process: ``python -m fnac train ...`` with OMP_NUM_THREADS=1;
- 2 processes, ``loss.gather=true``: ``torchrun --standalone --nproc_per_node 2 -m fnac train ...``
  (torchrun sets OMP_NUM_THREADS=1 per process; set here too), each process half the global batch,
  the embeddings all-gathered with their gradient (global negatives), DDP's gradient all-reduce;
- 2 processes, ``loss.gather=false``: the same without the gather (DDP's all-reduce only);
- a control: 2 independent 1-process runs of half the batch side by side (the sum of their pairs/s):
  what the two cores give two processes that never communicate, so that the cost of sharing the
  machine can be told apart from the cost of the communication and the waiting for each other.

Every run is 1 epoch of ``--steps`` steps (train.max_steps_per_epoch) on the cache of the synthetic set
(``data.num_workers=0``: each process is one thread on one core, loading included; the cache keeps
loading a small share of a step), ``train.log_every=1``. Pairs/s come from rank 0's log.jsonl: the
global pairs of the steps after the first ``--skip`` (start-up, first allocations) over their time.
Efficiency = 2-process pairs/s / (2 x 1-process pairs/s): 1.0 would be perfect scaling. On a machine
with two cores, 2 processes take both cores (and share them with anything else running), 1 process
one of them. The best round of each path is reported, every round printed.

    python bench/bench_ddp.py --size small --batch 64 --steps 12 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import _common as C


def rate_of(out: Path, skip: int) -> tuple[float, list[float]]:
    """Pairs/s of a run's steps after the first `skip`, from rank 0's log.jsonl in `out`."""
    recs = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines() if x.strip()]
    steps = [r["samples_per_s"] for r in recs if r.get("kind") == "step"]
    timed = steps[skip:]
    # each step logs (global pairs) / (its own time), the same global batch every step: the pairs/s of
    # the timed steps together is len / sum(1 / rate)
    return (len(timed) / sum(1.0 / x for x in timed) if timed else float("nan")), steps


def run_train(cmds: list[list[str]], outs: list[Path], skip: int) -> dict:
    """Run training commands at the same time (one, or independent ones side by side); the sum of
    their pairs/s after the first `skip` steps of each."""
    for out in outs:
        if out.exists():
            shutil.rmtree(out)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(C.REPO / "src"))
    t = time.perf_counter()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for c in cmds]
    logs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - t
    for c, p, text in zip(cmds, procs, logs):
        if p.returncode != 0:
            sys.stderr.write(text[-4000:])
            raise SystemExit(f"failed ({p.returncode}): {' '.join(c)}")
    rates = [rate_of(out, skip) for out in outs]
    return {"rate": sum(r for r, _ in rates), "step_rates": [s for _, s in rates], "wall_s": wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=sorted(C.SIZES), default="small")
    p.add_argument("--config", default="small", help="fnac config the runs start from (default small)")
    p.add_argument("--data", help="synthetic data folder (default bench/data/<size>; generated if absent)")
    p.add_argument("--cache", help="cache folder (default <data>/cache; built if absent)")
    p.add_argument("--n-train", type=int, default=None, help="synthetic training clips to generate")
    p.add_argument("--n-test", type=int, default=None, help="synthetic test clips to generate")
    p.add_argument("--batch", type=int, default=64, help="global batch (train.batch_size, default 64)")
    p.add_argument("--steps", type=int, default=12, help="steps per run (train.max_steps_per_epoch)")
    p.add_argument("--skip", type=int, default=2, help="first steps of a run not timed (default 2)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of every path, in turns (default 3)")
    p.add_argument("--paths", default="1,2-gather,2-nogather,2-independent")
    p.add_argument("--python", default=sys.executable, help="the interpreter (torchrun is next to it)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()

    size = C.SIZES[args.size]
    root = C.ensure_data(size, args.data, args.n_train, args.n_test, 2)
    cache = C.ensure_cache(size, root, args.cache, ["train"], 2)
    torchrun = str(Path(args.python).parent / "torchrun")
    tmp = Path(tempfile.mkdtemp(prefix="bench_ddp_"))
    common = [
        "--config",
        args.config,
        *C.data_overrides(size, root, str(cache)),
        "train.device=cpu",
        f"train.batch_size={args.batch}",
        "train.epochs=1",
        f"train.max_steps_per_epoch={args.steps}",
        "train.log_every=1",
        "train.progress=false",
        "data.num_workers=0",
        "loss.warmup_epochs=0",
        "model.pretrained=none",
    ]
    single = [args.python, "-m", "fnac", "train"]
    multi = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "fnac", "train"]
    paths = args.paths.split(",")
    jobs = []  # (label, commands run side by side, their run folders, processes)
    if "1" in paths:
        jobs.append(("1 process, 1 thread", [single + common + [f"train.out_dir={tmp / 'one'}"]], [tmp / "one"], 1))
    for key, gather in (("2-gather", "true"), ("2-nogather", "false")):
        if key in paths:
            out = tmp / f"two_{gather}"
            cmd = multi + common + [f"loss.gather={gather}", f"train.out_dir={out}"]
            jobs.append((f"2 processes (gloo), loss.gather={gather}", [cmd], [out], 2))
    if "2-independent" in paths:  # control: both cores busy, no communication, each half the batch
        outs = [tmp / "ind_a", tmp / "ind_b"]
        half = [f"train.batch_size={args.batch // 2}"]
        cmds = [single + common + half + [f"train.out_dir={o}", f"train.seed={12345 + k}"] for k, o in enumerate(outs)]
        jobs.append(("2 independent 1-process runs of batch/2 at once (sum)", cmds, outs, 2))
    load = [C.load_average()]
    res: dict[str, dict] = {}
    try:
        for _ in range(args.rounds):
            for label, cmds, outs, _n in jobs:
                r = run_train(cmds, outs, args.skip)
                every = res.get(label, {}).get("rounds", []) + [r["rate"]]
                if label not in res or r["rate"] > res[label]["rate"]:
                    res[label] = r
                res[label]["rounds"] = every
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load.append(C.load_average())
    one = res.get("1 process, 1 thread", {}).get("rate")
    rows = []
    for (label, _c, _o, n), r in zip(jobs, res.values()):
        eff = f"{r['rate'] / (n * one):.2f}" if one and n > 1 else "-"
        vs = f"{r['rate'] / one:.2f}x" if one else "-"
        rows.append([label, n, C.fmt(r["rate"]), vs, eff, " ".join(C.fmt(x) for x in r["rounds"])])
    torch.set_num_threads(1)  # as in each training process (OMP_NUM_THREADS=1), for the machine line
    print(C.machine(torch.device("cpu")) + " per training process")
    print(
        C.table(
            f"fnac train on the CPU, {size.name} size, --config {args.config}, global batch {args.batch}, "
            f"{args.steps} steps per run (first {args.skip} untimed), cache, no loader workers; "
            f"best of {args.rounds} rounds",
            ["path", "processes", "pairs/s", "vs 1 process", "efficiency", "each round"],
            rows,
        )
    )
    print(f"load average (1 min) before / after the runs: {load[0]} / {load[1]} on {os.cpu_count()} cores")
    print("command (2 processes): " + " ".join(str(x) for x in multi + common + ["loss.gather=true"]))
    C.write_json(
        args.json,
        {
            "bench": "ddp",
            "size": size.name,
            "batch": args.batch,
            "machine": C.machine(torch.device("cpu")),
            "runs": res,
        },
    )


if __name__ == "__main__":
    main()
