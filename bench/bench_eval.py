"""Evaluation throughput (samples/s) and agreement of the numbers, in one run.

Paths: the reference-style per-sample evaluation (Pillow + PyAV + scipy loader, batch 1, each map
upsampled, thresholded and scored with numpy), and fnac's evaluate_model (batched forward; maps
scored on the device) on the plain layout, on the cache, and on the cache with channels-last images
and weights (``--channels-last`` of ``fnac eval``); and the model's forward alone on batches held in
memory (either layout), the least any batched evaluation of the model costs. Then checks:
(1) the reference-style scorer applied to fnac's batched raw maps gives exactly fnac's per-sample
cIoU; (2) the per-sample cIoU of the reference-style path and of fnac (their inputs differ by float
rounding: scipy vs torch spectrogram, batch 1 vs batched forward); (3) channels-last against the
default layout.

    python bench/bench_eval.py --size small
    python bench/bench_eval.py --size full --device cuda --workers 12
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

import _common as C


class _Limit(torch.utils.data.Dataset):
    """The first n samples of a split (a fnac.data.Dataset), described as a split of its own."""

    def __init__(self, ds, n: int) -> None:
        self.ds, self.n = ds, min(n, len(ds))
        self.name, self.split, self.train = ds.name, ds.split, ds.train
        self.ids = ds.ids[: self.n]
        self.listed = list(self.ids)
        self.missing: list[str] = []
        self.missing_reasons: dict[str, str] = {}
        self.excluded: list[str] = []
        self.list_path, self.annotated, self.with_positive = ds.list_path, ds.annotated, ds.with_positive
        self.seed, self.epoch = ds.seed, ds.epoch

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.ds.set_epoch(epoch)

    def summary(self) -> str:
        return f"the first {self.n} samples of {self.ds.summary()}"

    def prepare_for(self, device) -> None:
        self.ds.prepare_for(device)

    def __getitem__(self, i: int):
        return self.ds[i]


def _model_batches(ds, batch: int, device):
    """(collated batch, images, specs) for each batch of ``ds`` in order, the model's inputs on ``device``."""
    from fnac.data import collate
    from fnac.inputs import model_inputs

    for start in range(0, len(ds), batch):
        b, _ = collate([ds[i] for i in range(start, min(start + batch, len(ds)))])
        yield (b, *model_inputs(b, device))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_common_args(p)
    p.add_argument("--batch", type=int, default=None, help="fnac's batch size (default 64 CPU, 256 GPU)")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N test samples (default all)")
    p.add_argument("--checkpoint", help="evaluate this checkpoint instead of an untrained model")
    p.add_argument(
        "--ref-workers",
        type=int,
        default=None,
        help="loader processes of the reference-style path (default: --workers; the reference uses 2)",
    )
    p.add_argument("--rounds", type=int, default=1, help="passes per path, in turns; the best is kept")
    p.add_argument(
        "--paths",
        default="reference,plain,cache,cache-cl,forward",
        help="comma-separated: reference, plain, cache, cache-cl (channels-last), forward (the model alone)",
    )
    args = p.parse_args()

    import reference_style as R
    from fnac.config import load_config
    from fnac.data import build_dataset
    from fnac.evaluate import Protocol, evaluate_model
    from fnac.models.fnac import FNAC, localization_maps

    size = C.SIZES[args.size]
    device = C.device_of(args.device)
    gpu = device.type == "cuda"
    batch = args.batch or (256 if gpu else 64)
    root = C.ensure_data(size, args.data, args.n_train, args.n_test, vggsound_like=args.vggsound_like)
    cache = C.ensure_cache(size, root, args.cache, ["test"], args.workers)
    cfg = load_config(None, C.data_overrides(size, root))
    cfg_cache = load_config(None, C.data_overrides(size, root, str(cache)))
    torch.manual_seed(0)
    if args.checkpoint:
        from fnac.checkpoint import load_checkpoint

        model = load_checkpoint(args.checkpoint, device).eval()
    else:
        model = FNAC(cfg.model, load_pretrained=False).to(device).eval()
    limit = args.limit or 10**9
    paths = args.paths.split(",")
    res: dict[str, dict] = {}
    per_sample: dict[str, dict[str, float]] = {}

    jobs = []  # (key, label, function returning (per-sample cIoU by id, metrics))
    if "reference" in paths:
        ref_ds = R.RefDataset(root, "test", size.image_size, size.duration, train=False)
        ref_ds.ids = ref_ds.ids[:limit]
        rw = args.workers if args.ref_workers is None else args.ref_workers

        def run_ref():
            c = R.evaluate(model, ref_ds, device, rw)
            return c, R.summary(list(c.values()))

        jobs.append(("reference", f"reference-style (batch 1, numpy per sample, {rw} workers)", run_ref))

    def fnac_job(use_cache: bool, channels_last: bool = False):
        ds = build_dataset((cfg_cache if use_cache else cfg).data, "test", train=False)
        ds = _Limit(ds, limit)
        net = copy.deepcopy(model) if channels_last else model  # converted in place by evaluate_model

        def run():
            r = evaluate_model(
                net,
                ds,
                Protocol(),
                batch_size=batch,
                device=device,
                num_workers=args.workers,
                baselines=False,
                progress=False,
                channels_last=channels_last,
            )
            return {row["id"]: row["ciou"] for row in r.per_sample}, {
                k: r.metrics[k] for k in ("ciou50", "auc", "mean_ciou")
            }

        return ds, run

    for name, use_cache in (("plain", False), ("cache", True)):
        if name in paths:
            last_ds, run = fnac_job(use_cache)
            jobs.append((name, f"fnac, {'cache' if use_cache else 'plain layout'} (batch {batch})", run))
    if "cache-cl" in paths:  # its maps differ by float rounding: not the one the checks use
        jobs.append(("cache-cl", f"fnac, cache, channels-last (batch {batch})", fnac_job(True, True)[1]))
    res: dict[str, dict] = {}
    per_sample: dict[str, dict[str, float]] = {}
    for _ in range(args.rounds):  # in turns; the best round of each path is kept
        for key, label, run in jobs:
            C.sync(device)
            t = time.perf_counter()
            c, m = run()
            C.sync(device)
            dt = time.perf_counter() - t
            every = res.get(label, {}).get("rounds", []) + [len(c) / dt]
            if label not in res or len(c) / dt > res[label]["rate"]:
                res[label] = {"n": len(c), "seconds": dt, "rate": len(c) / dt, **m}
            res[label]["rounds"] = every
            per_sample[key] = c

    if "forward" in paths:
        # the model's forward alone, on the cache path's batches held in memory on the device: what
        # any batched evaluation of this model costs at the least (the ratio's ceiling)
        fwd_ds = _Limit(build_dataset(cfg_cache.data, "test", train=False), limit)
        fwd_ds.prepare_for(device)
        inputs = [(images, specs) for _, images, specs in _model_batches(fwd_ds, batch, device)]
        n = sum(len(x[0]) for x in inputs)
        for cl in (False, True):
            net = copy.deepcopy(model).to(memory_format=torch.channels_last) if cl else model
            ins = [(x.contiguous(memory_format=torch.channels_last) if cl else x, y) for x, y in inputs]
            label = f"model forward alone{', channels-last' if cl else ''} (batch {batch}, inputs in memory)"
            with torch.no_grad():
                localization_maps(net, *ins[0])  # warm-up
                rates = []
                for _ in range(args.rounds):
                    C.sync(device)
                    t = time.perf_counter()
                    for x, y in ins:
                        localization_maps(net, x, y)
                    C.sync(device)
                    rates.append(n / (time.perf_counter() - t))
            res[label] = {"n": n, "rate": max(rates), "rounds": rates}

    checks = []
    ours_key = "cache" if "cache" in per_sample else ("plain" if "plain" in per_sample else None)
    if ours_key:
        # (1) the reference-style scorer on fnac's batched raw maps: must be exactly fnac's numbers
        ds = last_ds
        same = total = 0
        with torch.no_grad():
            for b, images, specs in _model_batches(ds, batch, device):
                raw = localization_maps(model, images, specs).cpu().numpy()
                for sid, m, gt in zip(b["id"], raw, b["gt_map"].numpy()):
                    total += 1
                    same += R.score_one(m, gt) == per_sample[ours_key][sid]
        checks.append(
            f"reference-style scorer on fnac's raw maps = fnac's per-sample cIoU: {same} of {total} samples identical"
        )
        if "reference" in per_sample:
            ref_c = per_sample["reference"]
            d = np.array([abs(ref_c[k] - per_sample[ours_key][k]) for k in ref_c])
            checks.append(
                f"reference-style vs fnac per-sample cIoU (inputs differ by float rounding): "
                f"{int((d == 0).sum())} of {len(d)} identical, max |diff| {d.max():.2e}"
            )
    if "cache-cl" in per_sample and "cache" in per_sample:
        # (3) channels-last against the default layout, same batches
        d = np.array([abs(per_sample["cache-cl"][k] - per_sample["cache"][k]) for k in per_sample["cache"]])
        checks.append(
            f"channels-last vs default layout per-sample cIoU: {int((d == 0).sum())} of {len(d)} identical, "
            f"max |diff| {d.max():.2e}"
        )
    ref = next((r["rate"] for k, r in res.items() if k.startswith("reference")), None)
    rows = [
        [
            k,
            r["n"],
            C.fmt(r["rate"]),
            f"{r['rate'] / ref:.1f}x" if ref else "-",
            f"{100 * r['ciou50']:.2f}" if "ciou50" in r else "-",
            f"{100 * r['auc']:.2f}" if "auc" in r else "-",
            f"{100 * r['mean_ciou']:.4f}" if "mean_ciou" in r else "-",
            " ".join(C.fmt(x) for x in r["rounds"]),
        ]
        for k, r in res.items()
    ]
    print(C.machine(device))
    what = f"checkpoint {args.checkpoint}" if args.checkpoint else "untrained model"
    print(
        C.table(
            f"evaluation, {size.name} size ({size.image_size} px, {size.duration:g} s), {what}, "
            f"fnac loader workers {args.workers}, device {device.type}",
            ["path", "samples", "samples/s", "vs reference", "cIoU@0.5", "AUC", "mean cIoU", "each round"],
            rows,
        )
    )
    for c in checks:
        print("check:", c)
    C.write_json(
        args.json,
        {
            "bench": "eval",
            "size": size.name,
            "device": str(device),
            "batch": batch,
            "workers": args.workers,
            "machine": C.machine(device),
            "results": res,
            "checks": checks,
        },
    )


if __name__ == "__main__":
    main()
