"""Training: train_step, train_one_epoch, fit (docs/method.md §3; CONTRIBUTING.md, habits 2, 3, 7, 8).

Determinism: the data order of epoch e is a permutation seeded by (seed, e); per-sample augmentation is
seeded by the dataset from (seed, epoch, index); dropout is seeded per step from (seed, global step,
rank). A run resumed from any checkpoint (end of epoch or mid-epoch) therefore repeats the
uninterrupted run's steps exactly.
"""
from __future__ import annotations

import json
import logging
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from fnac import distributed as dist
from fnac.checkpoint import atomic_save, ensure_writable, read_checkpoint, save_checkpoint
from fnac.config import Config, save_config, to_dict
from fnac.data import build_dataset, collate
from fnac.errors import CheckpointError, ConfigError, DataError, FnacError, OutputError, os_error_reason
from fnac.inputs import model_inputs
from fnac.losses import TERMS, fnac_losses, loss_weights, weighted_total
from fnac.models.fnac import FNAC, load_state_strict

log = logging.getLogger(__name__)


class NonFiniteLossError(FnacError):
    """A loss term was NaN or infinite (the batch's ids are in the message)."""


# ---------------------------------------------------------------------------------------------- setup
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", dist.local_rank())
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name}: CUDA is not available on this machine")
    return dev


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_seed(seed: int, step: int, rank: int) -> int:
    """Seed of the dropout RNG at a global step (a pure function, so resume is exact)."""
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % 2**63


def build_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    o = cfg.optim
    params = [p for p in model.parameters() if p.requires_grad]
    if o.name == "adam":  # the reference: L2 weight decay inside Adam
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    raise ConfigError(f"optim.name: unknown optimizer '{o.name}' (expected 'adam' or 'adamw')")


class EpochSampler(Sampler[int]):
    """Shuffled indices for one epoch, sharded over processes, drop_last, resumable mid-epoch.

    The permutation depends only on (seed, epoch); `skip_batches` drops the batches already trained."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.epoch, self.skip_batches = 0, 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip_batches = epoch, skip_batches

    def batches_per_epoch(self) -> int:
        return self.n // (self.batch_size * dist.world_size())

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        world, r, b = dist.world_size(), dist.rank(), self.batch_size
        nb = self.batches_per_epoch()
        for i in range(self.skip_batches, nb):
            start = (i * world + r) * b  # global batch i is split into contiguous per-rank slices
            yield from perm[start : start + b]

    def __len__(self) -> int:
        return (self.batches_per_epoch() - self.skip_batches) * self.batch_size


# --------------------------------------------------------------------------------------------- steps
def compute_terms(model: torch.nn.Module, batch: dict, cfg: Config, device: torch.device) -> dict[str, Tensor]:
    """Loss terms of one batch (docs/method.md §2). Plain batches carry model inputs; cached ones
    (data.cache) carry uint8 frames and audio windows, finished on the device by model_inputs.
    train.amp / train.channels_last apply on any device; with loss.gather the embeddings of every
    process form the batch (global negatives)."""
    images, specs = model_inputs(batch, device, channels_last=cfg.train.channels_last)
    amp = cfg.train.amp == "bf16"
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(images, specs)
    img, aud = out["img"].float(), out["aud"].float()
    if cfg.loss.gather:
        img, aud = dist.gather_with_grad(img), dist.gather_with_grad(aud)
    tau = cfg.model.tau
    return fnac_losses(img, aud, tau=tau, tns_threshold=cfg.loss.tns_threshold)


def train_step(
    model: torch.nn.Module,
    batch: dict,
    optimizer: torch.optim.Optimizer,
    cfg: Config,
    epoch: int,
    device: torch.device,
) -> dict[str, float]:
    """One optimisation step. Returns the loss terms and the total as floats. A non-finite loss raises
    NonFiniteLossError before any parameter changes."""
    terms = compute_terms(model, batch, cfg, device)
    weights = loss_weights(cfg.loss, epoch)
    total = weighted_total(terms, weights)
    if not torch.isfinite(total):
        bad = {k: float(v.detach()) for k, v in terms.items()}
        raise NonFiniteLossError(
            f"non-finite loss at epoch {epoch}: {bad}; batch ids: {', '.join(map(str, batch['id']))}"
        )
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    out = {k: float(terms[k].detach()) for k in TERMS}
    out["loss"] = float(total.detach())
    return out


# ----------------------------------------------------------------------------------------------- fit
@dataclass
class FitResult:
    out_dir: Path
    epochs_done: int
    steps: int
    best: dict[str, Any] | None
    last_val: dict[str, Any] | None
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False


class _StopFlag:
    """SIGTERM / SIGINT set a flag; the loop saves `latest` at the next step boundary and exits."""

    def __init__(self) -> None:
        self.stop = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_StopFlag":
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop:  # second signal: give up at once
            raise KeyboardInterrupt
        log.warning("signal %d: saving a checkpoint at the next step, then stopping", signum)
        self.stop = True

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).parent,
        ).stdout.strip() or "unknown"
    except Exception:  # noqa: BLE001
        return "unknown"


class JsonlLog:
    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def write(self, record: dict) -> None:
        if self.enabled:
            try:
                with open(self.path, "a") as f:
                    f.write(json.dumps(record) + "\n")
            except OSError as e:
                raise OutputError(f"{self.path}: cannot write the training log: {os_error_reason(e)}") from None

    def records(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def _make_loader(dataset: Any, batch_size: int, sampler: Sampler | None, cfg: Config, device: torch.device) -> DataLoader:
    workers = cfg.data.num_workers
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        drop_last=sampler is not None,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=cfg.train.pin_memory and device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
    )


def fit(cfg: Config, resume: bool = False) -> FitResult:
    """Train FNAC as configured. Writes config.yaml, log.jsonl, curves.png, latest.pt and best.pt (chosen
    on the validation split) under cfg.train.out_dir."""
    from fnac.evaluate import Protocol, evaluate_model  # evaluate sits beside train

    device = resolve_device(cfg.train.device)
    if cfg.train.amp not in ("none", "bf16"):
        raise ConfigError(f"train.amp: expected 'none' or 'bf16', got {cfg.train.amp!r}")
    joined = dist.init_from_env(device)
    if joined and device.type == "cuda":
        torch.cuda.set_device(device)
    rank, world, main = dist.rank(), dist.world_size(), dist.is_main()
    out = Path(cfg.train.out_dir)
    if main:
        ensure_writable(out)  # a read-only or forbidden folder: one line now, not a traceback later
        for stray in out.glob(".*.pt.*.tmp"):  # left by a process killed while writing a checkpoint
            try:
                stray.unlink(missing_ok=True)
            except OSError as e:
                log.warning("could not remove %s: %s", stray, os_error_reason(e))
    dist.barrier()
    if cfg.train.batch_size % world:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} is not divisible by {world} processes")
    local_bs = cfg.train.batch_size // world
    set_seed(cfg.train.seed + rank)

    train_set = build_dataset(cfg.data, "train", train=True, seed=cfg.train.seed)
    if len(train_set) < cfg.train.batch_size:
        raise DataError(
            f"training split has {len(train_set)} samples, fewer than one batch of {cfg.train.batch_size}"
        )
    val_set = None
    try:
        val_set = build_dataset(cfg.data, "val", train=False)
    except DataError as e:
        if main:
            log.warning("no validation split (%s): no best checkpoint will be selected", e)

    for ds in (train_set, val_set):  # a cached dataset finishes samples in its workers when training on CPU
        if ds is not None:
            ds.prepare_for(device)

    model: torch.nn.Module = FNAC(cfg.model).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    core = model
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.train.compile:
        model = torch.compile(model, backend=cfg.train.compile_backend)  # type: ignore[assignment]
    optimizer = build_optimizer(core, cfg)

    logf = JsonlLog(out / "log.jsonl", main)
    start_epoch, skip_batches, step, best, history = 0, 0, 0, None, []
    latest = out / "latest.pt"
    # skipped-sample accounting (per epoch): the run's training list is the one it started with
    n_list, vanished, failed_epoch, seen_epoch = len(train_set), 0, 0, 0
    if resume:
        if not latest.is_file():
            raise FnacError(f"--resume: no checkpoint at {latest}")
        ck = read_checkpoint(latest)
        _load_resume_state(ck, latest, core, optimizer, cfg)
        core.pretrained_weights = ck.get("pretrained")  # the weights the run started from, not today's
        start_epoch, skip_batches = ck["epoch"], ck.get("batch_in_epoch", 0)
        step, best = ck["step"], ck.get("best")
        if skip_batches:
            failed_epoch, seen_epoch = ck.get("epoch_skipped", 0), ck.get("epoch_seen", 0)
        n_list = ck.get("n_train") or _started_with(logf) or len(train_set)
        vanished = max(0, n_list - len(train_set))
        if vanished and start_epoch < cfg.train.epochs:
            _check_vanished(train_set, vanished, n_list, cfg.data.max_skip_fraction)
        if main:
            best = _reconcile_best(out, ck, latest, best)
            log.info("resumed from %s: epoch %d, batch %d, step %d", latest, start_epoch, skip_batches, step)
            logf.write({"kind": "resume", "epoch": start_epoch, "step": step})
    elif main:
        for name in ("log.jsonl",):
            (out / name).unlink(missing_ok=True)
        try:
            save_config(cfg, out / "config.yaml")
        except OSError as e:
            raise OutputError(f"{out / 'config.yaml'}: cannot write: {os_error_reason(e)}") from None
        logf.write({"kind": "start", "commit": _git_commit(), "config": to_dict(cfg), "world_size": world,
                    "device": str(device), "pretrained": core.pretrained_weights, "n_train": len(train_set),
                    "n_val": len(val_set) if val_set is not None else 0})

    sampler = EpochSampler(len(train_set), local_bs, cfg.train.seed)
    loader = _make_loader(train_set, local_bs, sampler, cfg, device)
    per_epoch = sampler.batches_per_epoch()
    if cfg.train.max_steps_per_epoch:
        per_epoch = min(per_epoch, cfg.train.max_steps_per_epoch)
    protocol = Protocol(upsample=cfg.train.eval_upsample, threshold=cfg.train.eval_threshold)

    def state(epoch: int, batch_in_epoch: int) -> dict:
        st = {"optimizer": optimizer.state_dict(), "epoch": epoch, "batch_in_epoch": batch_in_epoch,
              "step": step, "best": best, "world_size": world, "n_train": n_list}
        if batch_in_epoch:  # mid-epoch: the epoch's skip count goes on after a resume
            st.update(epoch_skipped=failed_epoch, epoch_seen=seen_epoch)
        return st

    def check_skips() -> None:
        """Stop when the share of the run's training list that cannot be used (files gone since the
        start, plus this epoch's load failures extrapolated to the whole set) passes the threshold."""
        if seen_epoch < 2 * local_bs:
            return
        share = (vanished + failed_epoch / seen_epoch * len(train_set)) / max(n_list, 1)
        if share > cfg.data.max_skip_fraction and failed_epoch:
            gone = f" (and {vanished} of the run's {n_list} are gone since it started)" if vanished else ""
            raise DataError(
                f"{failed_epoch} of {seen_epoch} training samples failed to load{gone}, more than "
                f"data.max_skip_fraction={cfg.data.max_skip_fraction}; see the warnings above"
            )

    last_val = None
    stopped = False
    epoch = start_epoch - 1  # resuming a finished run trains no epoch: epochs_done stays start_epoch
    with _StopFlag() as flag:
        for epoch in range(start_epoch, cfg.train.epochs):
            train_set.set_epoch(epoch)
            skip = skip_batches if epoch == start_epoch else 0
            if not skip:
                failed_epoch = seen_epoch = 0
            sampler.set_epoch(epoch, skip)
            model.train()
            sums = {k: 0.0 for k in (*TERMS, "loss")}
            n_steps = 0
            t_epoch = time.perf_counter()
            bar = None
            if main and cfg.train.progress:
                from tqdm import tqdm

                bar = tqdm(total=per_epoch - skip, desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                           leave=False, dynamic_ncols=True)
            t_last = time.perf_counter()
            n_since = 0
            batch_i = skip
            for batch, failed in loader:
                if batch_i >= per_epoch:
                    break
                seen_epoch += local_bs
                if failed:
                    failed_epoch += len(failed)
                    for sid, why in failed:
                        log.warning("skipped sample %s: %s", sid, why)
                check_skips()
                if failed and (batch is None or batch["image"].shape[0] < 2):
                    batch_i += 1
                    continue
                torch.manual_seed(step_seed(cfg.train.seed, step, rank))
                try:
                    terms = train_step(model, batch, optimizer, cfg, epoch, device)
                except NonFiniteLossError as e:
                    if cfg.train.on_nonfinite == "skip":
                        log.error("%s: batch skipped", e)
                        logf.write({"kind": "nonfinite", "epoch": epoch, "step": step, "ids": list(batch["id"])})
                        step += 1
                        batch_i += 1
                        continue
                    logf.write({"kind": "nonfinite", "epoch": epoch, "step": step, "ids": list(batch["id"])})
                    raise
                step += 1
                batch_i += 1
                n_steps += 1
                n_since += batch["image"].shape[0] * world
                for k in sums:
                    sums[k] += terms[k]
                if step % cfg.train.log_every == 0 or batch_i == per_epoch:
                    now = time.perf_counter()
                    rate = n_since / max(now - t_last, 1e-9)
                    t_last, n_since = now, 0
                    logf.write({"kind": "step", "epoch": epoch, "step": step, **terms,
                                "lr": optimizer.param_groups[0]["lr"], "samples_per_s": rate})
                    if bar is not None:
                        bar.set_postfix(loss=f"{terms['loss']:.3f}", cl=f"{terms['contrastive']:.3f}",
                                        fns1=f"{terms['fns1']:.4f}", tns=f"{terms['tns']:.4f}",
                                        fns2=f"{terms['fns2']:.4f}", sps=f"{rate:.0f}")
                if bar is not None:
                    bar.update(1)
                if flag.stop:
                    break
                if cfg.train.save_every_steps and step % cfg.train.save_every_steps == 0 and main:
                    save_checkpoint(latest, core, cfg, **state(epoch, batch_i))
            if bar is not None:
                bar.close()
            if flag.stop:
                if main:
                    save_checkpoint(latest, core, cfg, **state(epoch, batch_i))
                    log.warning("stopped by signal: saved %s (epoch %d, batch %d)", latest, epoch, batch_i)
                stopped = True
                break
            dt = time.perf_counter() - t_epoch
            rec: dict[str, Any] = {"kind": "epoch", "epoch": epoch, "step": step,
                                   **{k: v / max(n_steps, 1) for k, v in sums.items()},
                                   "lr": optimizer.param_groups[0]["lr"],
                                   "samples_per_s": n_steps * cfg.train.batch_size / max(dt, 1e-9),
                                   "skipped": failed_epoch + vanished,
                                   "weights": loss_weights(cfg.loss, epoch)}
            improved = False
            if val_set is not None and main and ((epoch + 1) % cfg.train.val_every == 0 or epoch + 1 == cfg.train.epochs):
                res = evaluate_model(core, val_set, protocol, batch_size=max(local_bs, 16), device=device,
                                     num_workers=cfg.data.num_workers, baselines=False, progress=False)
                last_val = {"ciou50": res.metrics["ciou50"], "auc": res.metrics["auc"],
                            "mean_ciou": res.metrics["mean_ciou"], "n": res.n_evaluated}
                rec.update({f"val_{k}": v for k, v in last_val.items()})
                key = (last_val["ciou50"], last_val["auc"])
                if best is None or key > (best["ciou50"], best["auc"]):
                    best = {**last_val, "epoch": epoch}
                    improved = True
            if main:
                logf.write(rec)
                history.append(rec)
                # best.pt before latest.pt: a kill between the two leaves latest at the previous save, so
                # --resume redoes this epoch and writes best.pt again (the other order could leave a
                # latest.pt recording a best epoch whose weights never reached best.pt)
                if improved:
                    save_checkpoint(out / "best.pt", core, cfg, **state(epoch + 1, 0))
                save_checkpoint(latest, core, cfg, **state(epoch + 1, 0))
                msg = (f"epoch {epoch + 1}/{cfg.train.epochs}: loss {rec['loss']:.4f} "
                       f"(cl {rec['contrastive']:.4f} fns1 {rec['fns1']:.4f} tns {rec['tns']:.4f} "
                       f"fns2 {rec['fns2']:.4f}) {rec['samples_per_s']:.0f} samples/s")
                if "val_ciou50" in rec:
                    msg += f" | val cIoU@0.5 {100 * rec['val_ciou50']:.2f} AUC {100 * rec['val_auc']:.2f}"
                log.info(msg)
                _plot(logf, out / "curves.png")
            dist.barrier()
    dist.barrier()
    return FitResult(out, epoch + 1 if not stopped else epoch, step, best, last_val, history, stopped)


def _load_resume_state(ck: dict, latest: Path, core: torch.nn.Module, optimizer: torch.optim.Optimizer,
                       cfg: Config) -> None:
    """Model and optimizer state from `latest`; a checkpoint of another model (width, layers...) or
    optimizer is refused with one line naming the file and what differs."""
    try:
        load_state_strict(core, ck["model"], str(latest))
    except CheckpointError:
        theirs = (ck.get("config") or {}).get("model") or {}
        ours = to_dict(cfg)["model"]
        diff = [f"model.{k}={theirs[k]} in the checkpoint, {ours[k]} in the config" for k in ours
                if k in theirs and theirs[k] != ours[k] and k not in ("pretrained", "pretrained_required")]
        if not diff:
            raise
        own = core.state_dict()
        shapes = [f"{k}: {tuple(v.shape)} in the checkpoint, {tuple(own[k].shape)} in the model"
                  for k, v in ck["model"].items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
        eg = f"; {len(shapes)} tensors differ in shape, e.g. {shapes[0]}" if shapes else ""
        raise CheckpointError(f"{latest}: cannot resume: written by another model ({'; '.join(diff)}){eg}; "
                              "resume with the model settings the run was started with, or choose another "
                              "train.out_dir") from None
    try:
        optimizer.load_state_dict(ck["optimizer"])
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        raise CheckpointError(f"{latest}: cannot resume: its optimizer state does not fit optim.name="
                              f"{cfg.optim.name} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                              ) from None


def _started_with(logf: JsonlLog) -> int | None:
    """Training samples at the start of the run, from the log (checkpoints written before `n_train`)."""
    try:
        starts = [r for r in logf.records() if r.get("kind") == "start"]
    except (OSError, ValueError):
        return None
    return int(starts[-1]["n_train"]) if starts and starts[-1].get("n_train") else None


def _check_vanished(train_set: Any, vanished: int, n_list: int, max_fraction: float) -> None:
    """A resumed run counts the training samples whose files are gone since the run started like the
    load failures an uninterrupted run would meet: above data.max_skip_fraction, stop."""
    reasons = getattr(train_set, "missing_reasons", {}) or {}
    eg = "; ".join(f"{i} ({why})" for i, why in list(reasons.items())[:3])
    what = (f"{vanished} of the run's {n_list} training samples can no longer be loaded since it started"
            + (f" (e.g. {eg})" if eg else ""))
    if vanished > max_fraction * n_list:
        raise DataError(f"{what}, more than data.max_skip_fraction={max_fraction}; restore the files, or "
                        "start a new run (without --resume) on the data as it is now")
    log.warning("%s; they count as skipped samples", what)


def _reconcile_best(out: Path, ck: dict, latest: Path, best: dict | None) -> dict | None:
    """Make best.pt agree with the best epoch recorded in latest.pt before training goes on.

    best.pt is written before latest.pt, so a best.pt ahead of latest is an epoch about to be redone
    (which writes it again). A best.pt that is missing, damaged or older than the record (a kill between
    the two writes of an earlier version) is rebuilt from latest.pt when latest holds the weights of the
    best epoch; otherwise those weights are lost, and the record falls back to what best.pt holds, so
    the next epoch that beats it is saved."""
    if best is None:
        return None
    best_pt = out / "best.pt"
    have = None
    if best_pt.is_file():
        try:
            have = read_checkpoint(best_pt).get("best")
        except FnacError as e:
            log.warning("%s", e)
    if have is not None and have.get("epoch", -1) >= best["epoch"]:
        return best  # the same epoch, or one that the resumed run redoes and writes again
    if ck.get("epoch") == best["epoch"] + 1 and not ck.get("batch_in_epoch", 0):
        atomic_save(ck, best_pt)  # latest holds the weights of the best epoch: the same content
        log.warning("%s did not hold the best epoch (%d) recorded in %s: rewrote it from %s",
                    best_pt, best["epoch"] + 1, latest, latest)
        return best
    log.warning("%s: the weights of the best epoch (%d) recorded in %s were never saved; %s", best_pt,
                best["epoch"] + 1, latest, "keeping best.pt as it is" if have else "best.pt starts again")
    return have


def _plot(logf: JsonlLog, png: Path) -> None:
    try:
        from fnac.visualize import plot_curves
    except ImportError:
        return
    try:
        plot_curves(logf.records(), png)
    except Exception as e:  # noqa: BLE001 - a plot must never kill a run
        log.warning("could not plot curves: %s", e)


