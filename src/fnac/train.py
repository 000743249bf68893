"""Training: train_step, train_one_epoch, validate, CheckpointPolicy, fit (docs/method.md §3,
docs/training.md; CONTRIBUTING.md, habits 2, 3, 7, 8).

Determinism: the data order of epoch e is a permutation seeded by (seed, e); per-sample augmentation is
seeded by the dataset from (seed, epoch, index); dropout is seeded per step from (seed, global step,
rank). A run resumed from any checkpoint (end of epoch or mid-epoch) therefore repeats the
uninterrupted run's steps exactly.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from fnac import distributed as dist
from fnac.checkpoint import (
    atomic_save,
    ensure_writable,
    read_checkpoint,
    save_checkpoint,
)
from fnac.config import Config, save_config, to_dict
from fnac.data import build_dataset, collate
from fnac.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    FnacError,
    OutputError,
    os_error_reason,
)
from fnac.fileio import is_temp_name
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
    """The optimizer of `cfg.optim` over the trainable parameters of `model`: "adam" (the reference:
    L2 weight decay inside Adam) or "adamw" (decoupled weight decay), at optim.lr and
    optim.weight_decay. Raises ConfigError for another name."""
    o = cfg.optim
    params = [p for p in model.parameters() if p.requires_grad]
    if o.name == "adam":  # the reference: L2 weight decay inside Adam
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    raise ConfigError(f"optim.name: unknown optimizer '{o.name}' (expected 'adam' or 'adamw')")


class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffled ``(epoch, index)`` keys for one epoch, sharded over processes, drop_last, resumable
    mid-epoch.

    The permutation depends only on (seed, epoch); `skip_batches` drops the batches already trained.
    Each key carries its epoch so that loader workers which live for the whole run (persistent
    workers) draw that epoch's augmentation: read the split through ``EpochIndexed``."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.epoch, self.skip_batches = 0, 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip_batches = epoch, skip_batches

    def batches_per_epoch(self) -> int:
        return self.n // (self.batch_size * dist.world_size())

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        world, r, b = dist.world_size(), dist.rank(), self.batch_size
        nb = self.batches_per_epoch()
        for i in range(self.skip_batches, nb):
            start = (i * world + r) * b  # global batch i is split into contiguous per-rank slices
            for index in perm[start : start + b]:
                yield self.epoch, index

    def __len__(self) -> int:
        return (self.batches_per_epoch() - self.skip_batches) * self.batch_size


class EpochIndexed(torch.utils.data.Dataset):
    """A training split read by the ``(epoch, index)`` keys of ``EpochSampler``: each sample is drawn
    with its key's epoch (``set_epoch``) in whichever process reads it, so the loader's workers can
    live for the whole run and still augment every epoch as a fresh loader would."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = key
        if self.dataset.epoch != epoch:
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


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
    epoch: int = 0,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """One optimisation step of FNAC's objective on one batch; returns the loss terms and the total.

    Args:
        model: an FNAC model (or one wrapped in DistributedDataParallel / torch.compile), in train mode.
        batch: a collated batch, as the first item of what a DataLoader with
            ``collate_fn=fnac.data.collate`` yields over ``fnac.data.build_dataset(..., train=True)``.
        optimizer: e.g. ``build_optimizer(model, cfg)``.
        cfg: the run config (model.tau, loss weights and warm-up, train.amp, train.channels_last).
        epoch: the 0-based epoch; it selects the loss weights (the FNAC terms are off during
            loss.warmup_epochs).
        device: where the model is; None takes the device of its first parameter.

    Returns ``{"contrastive", "fns1", "tns", "fns2", "loss"}`` as Python floats ("loss" is the weighted
    total that was minimised). A NaN or infinite total raises NonFiniteLossError (naming the batch's
    ids) before any parameter changes. Seeding (dropout) and learning-rate schedules are the caller's.
    """
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
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
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).parent,
            ).stdout.strip()
            or "unknown"
        )
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


def _make_loader(
    dataset: Any,
    batch_size: int,
    sampler: Sampler | None,
    cfg: Config,
    device: torch.device,
    persistent: bool = False,
) -> DataLoader:
    """A loader of collated batches: `sampler`'s order (drop_last), or the split in order; with
    `persistent` its data.num_workers workers live as long as the loader."""
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
        persistent_workers=persistent and workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )


def make_train_loader(
    dataset: Any, batch_size: int, sampler: EpochSampler, cfg: Config, device: torch.device
) -> DataLoader:
    """The one training loader of a run: `sampler`'s (epoch, index) keys over `dataset`, with
    data.num_workers workers that start once and live for the whole run (persistent), each keeping 4
    batches in flight. Call ``sampler.set_epoch`` before iterating it for each epoch."""
    return _make_loader(EpochIndexed(dataset), batch_size, sampler, cfg, device, persistent=True)


@dataclass
class ProcessEnv:
    """Where and how this process trains: device, its place among the processes, the run folder."""

    device: torch.device
    rank: int
    world: int
    main: bool
    out: Path
    local_bs: int  # this process's share of train.batch_size


def _setup_process(cfg: Config) -> ProcessEnv:
    """Device, process group, a writable run folder cleared of stray temporary files, seeds."""
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
        _remove_stray_files(out)
    dist.barrier()
    if cfg.train.batch_size % world:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} is not divisible by {world} processes")
    set_seed(cfg.train.seed + rank)
    return ProcessEnv(device, rank, world, main, out, cfg.train.batch_size // world)


def _remove_stray_files(out: Path) -> None:
    """Temporary files left by a process killed while writing a checkpoint (``fnac.fileio`` names, and
    the ``.<name>.pt.<random>.tmp`` names of earlier versions)."""
    strays = [p for p in out.glob(".*") if is_temp_name(p.name) and p.name.endswith(".pt")]
    for stray in strays + list(out.glob(".*.pt.*.tmp")):
        try:
            stray.unlink(missing_ok=True)
        except OSError as e:
            log.warning("could not remove %s: %s", stray, os_error_reason(e))


def _build_datasets(cfg: Config, env: ProcessEnv) -> tuple[Any, Any | None]:
    """The training split (at least one batch) and the validation split (None when there is none)."""
    train_set = build_dataset(cfg.data, "train", train=True, seed=cfg.train.seed)
    if len(train_set) < cfg.train.batch_size:
        raise DataError(f"training split has {len(train_set)} samples, fewer than one batch of {cfg.train.batch_size}")
    val_set = None
    try:
        val_set = build_dataset(cfg.data, "val", train=False)
    except DataError as e:
        if env.main:
            log.warning("no validation split (%s): no best checkpoint will be selected", e)
    for ds in (train_set, val_set):  # a cached dataset finishes samples in its workers when training on CPU
        if ds is not None:
            ds.prepare_for(env.device)
    return train_set, val_set


def _build_model(cfg: Config, env: ProcessEnv) -> tuple[torch.nn.Module, FNAC]:
    """The model to train (wrapped for several processes and train.compile) and the bare FNAC inside."""
    model: torch.nn.Module = FNAC(cfg.model).to(env.device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    core = model
    if env.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[env.device.index] if env.device.type == "cuda" else None
        )
    if cfg.train.compile:
        model = torch.compile(model, backend=cfg.train.compile_backend)  # type: ignore[assignment]
    return model, core  # type: ignore[return-value]


# ------------------------------------------------------------------------------------ run state
@dataclass
class SkipAccount:
    """Training samples that could not be used, against data.max_skip_fraction.

    ``n_list`` is the run's training list as it started (a resumed run keeps it), ``vanished`` the
    samples of that list whose files are gone since, ``failed``/``seen`` this epoch's load failures and
    samples met by this process."""

    n_list: int
    n_now: int
    batch: int
    max_fraction: float
    vanished: int = 0
    failed: int = 0
    seen: int = 0

    def new_epoch(self) -> None:
        self.failed = self.seen = 0

    def add_batch(self, failed: list[tuple[str, str]]) -> None:
        """Count one loaded batch (warning about each failed sample) and check the threshold."""
        self.seen += self.batch
        if failed:
            self.failed += len(failed)
            for sid, why in failed:
                log.warning("skipped sample %s: %s", sid, why)
        self.check()

    def check(self) -> None:
        """Stop when the share of the run's training list that cannot be used (files gone since the
        start, plus this epoch's load failures extrapolated to the whole set) passes the threshold."""
        if self.seen < 2 * self.batch:
            return
        share = (self.vanished + self.failed / self.seen * self.n_now) / max(self.n_list, 1)
        if share > self.max_fraction and self.failed:
            gone = (
                f" (and {self.vanished} of the run's {self.n_list} are gone since it started)" if self.vanished else ""
            )
            raise DataError(
                f"{self.failed} of {self.seen} training samples failed to load{gone}, more than "
                f"data.max_skip_fraction={self.max_fraction}; see the warnings above"
            )


@dataclass
class TrainState:
    """Where a run stands: the epoch and batch to train next, the global step, the best validation
    record so far and the skipped-sample accounting. Saved in every checkpoint (`checkpoint_state`)."""

    epoch: int
    batch_in_epoch: int
    step: int
    best: dict[str, Any] | None
    skips: SkipAccount

    def checkpoint_state(
        self, optimizer: torch.optim.Optimizer, world: int, epoch: int, batch_in_epoch: int
    ) -> dict[str, Any]:
        """The entries save_checkpoint stores beside the model for a resume at (epoch, batch_in_epoch)."""
        st = {
            "optimizer": optimizer.state_dict(),
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "step": self.step,
            "best": self.best,
            "world_size": world,
            "n_train": self.skips.n_list,
        }
        if batch_in_epoch:  # mid-epoch: the epoch's skip count goes on after a resume
            st.update(epoch_skipped=self.skips.failed, epoch_seen=self.skips.seen)
        return st

    def update_best(self, val: dict[str, Any] | None, epoch: int) -> bool:
        """Keep `val` as the best when its (cIoU@0.5, AUC) beats the best so far; True when it does."""
        if val is None:
            return False
        if self.best is None or (val["ciou50"], val["auc"]) > (self.best["ciou50"], self.best["auc"]):
            self.best = {**val, "epoch": epoch}
            return True
        return False


def _fresh_state(
    cfg: Config, env: ProcessEnv, train_set: Any, val_set: Any | None, core: FNAC, logf: JsonlLog
) -> TrainState:
    """A new run: the old log goes, config.yaml and the log's start record are written."""
    skips = SkipAccount(len(train_set), len(train_set), env.local_bs, cfg.data.max_skip_fraction)
    if env.main:
        (env.out / "log.jsonl").unlink(missing_ok=True)
        try:
            save_config(cfg, env.out / "config.yaml")
        except OSError as e:
            raise OutputError(f"{env.out / 'config.yaml'}: cannot write: {os_error_reason(e)}") from None
        logf.write(
            {
                "kind": "start",
                "commit": _git_commit(),
                "config": to_dict(cfg),
                "world_size": env.world,
                "device": str(env.device),
                "pretrained": core.pretrained_weights,
                "n_train": len(train_set),
                "n_val": len(val_set) if val_set is not None else 0,
            }
        )
    return TrainState(0, 0, 0, None, skips)


def _resumed_state(
    cfg: Config, env: ProcessEnv, train_set: Any, core: FNAC, optimizer: torch.optim.Optimizer, logf: JsonlLog
) -> TrainState:
    """Model, optimizer and run state from latest.pt; best.pt is made to agree with it (_reconcile_best)."""
    latest = env.out / "latest.pt"
    if not latest.is_file():
        raise FnacError(f"--resume: no checkpoint at {latest}")
    ck = read_checkpoint(latest)
    _load_resume_state(ck, latest, core, optimizer, cfg)
    core.pretrained_weights = ck.get("pretrained")  # the weights the run started from, not today's
    st = TrainState(
        ck["epoch"],
        ck.get("batch_in_epoch", 0),
        ck["step"],
        ck.get("best"),
        SkipAccount(0, len(train_set), env.local_bs, cfg.data.max_skip_fraction),
    )
    if st.batch_in_epoch:
        st.skips.failed, st.skips.seen = ck.get("epoch_skipped", 0), ck.get("epoch_seen", 0)
    n_list = st.skips.n_list = ck.get("n_train") or _started_with(logf) or len(train_set)
    st.skips.vanished = vanished = max(0, n_list - len(train_set))
    if vanished and st.epoch < cfg.train.epochs:
        _check_vanished(train_set, vanished, n_list, cfg.data.max_skip_fraction)
    if env.main:
        st.best = _reconcile_best(env.out, ck, latest, st.best)
        log.info("resumed from %s: epoch %d, batch %d, step %d", latest, st.epoch, st.batch_in_epoch, st.step)
        logf.write({"kind": "resume", "epoch": st.epoch, "step": st.step})
    return st


class CheckpointPolicy:
    """Which checkpoints a run writes, and when (on the main process only).

    latest.pt: every train.save_every_steps steps (mid-epoch), when a signal stops the run, and at the
    end of every epoch. best.pt: at the end of an epoch whose validation beat the best so far, written
    *before* latest.pt: a kill between the two leaves latest at the previous save, so --resume redoes
    this epoch and writes best.pt again (the other order could leave a latest.pt recording a best
    epoch whose weights never reached best.pt; `_reconcile_best` repairs files of that kind)."""

    def __init__(self, out: Path, core: FNAC, optimizer: torch.optim.Optimizer, cfg: Config, env: ProcessEnv) -> None:
        self.latest, self.best = out / "latest.pt", out / "best.pt"
        self.core, self.optimizer, self.cfg = core, optimizer, cfg
        self.main, self.world = env.main, env.world

    def _save(self, path: Path, state: TrainState, epoch: int, batch_in_epoch: int) -> None:
        save_checkpoint(
            path, self.core, self.cfg, **state.checkpoint_state(self.optimizer, self.world, epoch, batch_in_epoch)
        )

    def after_step(self, state: TrainState, epoch: int, batch_in_epoch: int) -> None:
        every = self.cfg.train.save_every_steps
        if every and state.step % every == 0 and self.main:
            self._save(self.latest, state, epoch, batch_in_epoch)

    def on_stop(self, state: TrainState, epoch: int, batch_in_epoch: int) -> None:
        if self.main:
            self._save(self.latest, state, epoch, batch_in_epoch)
            log.warning("stopped by signal: saved %s (epoch %d, batch %d)", self.latest, epoch, batch_in_epoch)

    def end_of_epoch(self, state: TrainState, epoch: int, improved: bool) -> None:
        if not self.main:
            return
        if improved:
            self._save(self.best, state, epoch + 1, 0)
        self._save(self.latest, state, epoch + 1, 0)


# -------------------------------------------------------------------------------------- the loop
@dataclass
class EpochStats:
    """What train_one_epoch did: mean loss terms over its steps, steps taken, wall time, the batch it
    stopped at, and whether a signal stopped it."""

    means: dict[str, float]
    n_steps: int
    seconds: float
    batch_in_epoch: int
    stopped: bool = False


def train_one_epoch(
    model: torch.nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    cfg: Config,
    epoch: int,
    state: TrainState,
    env: ProcessEnv,
    *,
    n_batches: int,
    logf: JsonlLog | None = None,
    checkpoints: CheckpointPolicy | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> EpochStats:
    """Train from batch `state.batch_in_epoch` to `n_batches` of `epoch` (the loader yields from that
    batch on): count skipped samples, seed dropout per step, apply train.on_nonfinite, log every
    train.log_every steps, save mid-epoch checkpoints; stop early when `should_stop()` says so.
    `logf`, `checkpoints` and `should_stop` are optional (no log, no mid-epoch save, no early stop)."""
    logf = logf or JsonlLog(Path(os.devnull), enabled=False)
    should_stop = should_stop or (lambda: False)
    skip = state.batch_in_epoch
    sums = {k: 0.0 for k in (*TERMS, "loss")}
    n_steps, n_since, batch_i = 0, 0, skip
    t_epoch = t_last = time.perf_counter()
    bar = _progress_bar(cfg, env, epoch, n_batches - skip)
    for batch, failed in loader:
        if batch_i >= n_batches:
            break
        state.skips.add_batch(failed)
        if failed and (batch is None or batch["image"].shape[0] < 2):
            batch_i += 1
            continue
        torch.manual_seed(step_seed(cfg.train.seed, state.step, env.rank))
        try:
            terms = train_step(model, batch, optimizer, cfg, epoch, env.device)
        except NonFiniteLossError as e:
            record = {"kind": "nonfinite", "epoch": epoch, "step": state.step, "ids": list(batch["id"])}
            if cfg.train.on_nonfinite != "skip":
                logf.write(record)
                raise
            log.error("%s: batch skipped", e)
            logf.write(record)
            state.step += 1
            batch_i += 1
            continue
        state.step += 1
        batch_i += 1
        n_steps += 1
        n_since += batch["image"].shape[0] * env.world
        for k in sums:
            sums[k] += terms[k]
        if state.step % cfg.train.log_every == 0 or batch_i == n_batches:
            now = time.perf_counter()
            rate = n_since / max(now - t_last, 1e-9)
            t_last, n_since = now, 0
            logf.write(
                {
                    "kind": "step",
                    "epoch": epoch,
                    "step": state.step,
                    **terms,
                    "lr": optimizer.param_groups[0]["lr"],
                    "samples_per_s": rate,
                }
            )
            _bar_postfix(bar, terms, rate)
        if bar is not None:
            bar.update(1)
        if should_stop():
            break
        if checkpoints is not None:
            checkpoints.after_step(state, epoch, batch_i)
    if bar is not None:
        bar.close()
    means = {k: v / max(n_steps, 1) for k, v in sums.items()}
    return EpochStats(means, n_steps, time.perf_counter() - t_epoch, batch_i, should_stop())


def _progress_bar(cfg: Config, env: ProcessEnv, epoch: int, total: int) -> Any:
    if not (env.main and cfg.train.progress):
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", leave=False, dynamic_ncols=True)


def _bar_postfix(bar: Any, terms: dict[str, float], rate: float) -> None:
    if bar is not None:
        bar.set_postfix(
            loss=f"{terms['loss']:.3f}",
            cl=f"{terms['contrastive']:.3f}",
            fns1=f"{terms['fns1']:.4f}",
            tns=f"{terms['tns']:.4f}",
            fns2=f"{terms['fns2']:.4f}",
            sps=f"{rate:.0f}",
        )


def validate(model: FNAC, val_set: Any, cfg: Config, device: torch.device, batch_size: int) -> dict[str, Any]:
    """The validation record used to select best.pt: cIoU@0.5, AUC, mean cIoU and the number of samples
    scored, under train.eval_upsample / train.eval_threshold (no baselines)."""
    from fnac.evaluate import Protocol, evaluate_model  # evaluate sits beside train

    protocol = Protocol(upsample=cfg.train.eval_upsample, threshold=cfg.train.eval_threshold)
    res = evaluate_model(
        model,
        val_set,
        protocol,
        batch_size=batch_size,
        device=device,
        num_workers=cfg.data.num_workers,
        baselines=False,
        progress=False,
    )
    return {
        "ciou50": res.metrics["ciou50"],
        "auc": res.metrics["auc"],
        "mean_ciou": res.metrics["mean_ciou"],
        "n": res.n_evaluated,
    }


def _validation_due(cfg: Config, epoch: int) -> bool:
    return (epoch + 1) % cfg.train.val_every == 0 or epoch + 1 == cfg.train.epochs


def _epoch_record(
    cfg: Config,
    epoch: int,
    state: TrainState,
    stats: EpochStats,
    optimizer: torch.optim.Optimizer,
    val: dict[str, Any] | None,
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "kind": "epoch",
        "epoch": epoch,
        "step": state.step,
        **stats.means,
        "lr": optimizer.param_groups[0]["lr"],
        "samples_per_s": stats.n_steps * cfg.train.batch_size / max(stats.seconds, 1e-9),
        "skipped": state.skips.failed + state.skips.vanished,
        "weights": loss_weights(cfg.loss, epoch),
    }
    if val is not None:
        rec.update({f"val_{k}": v for k, v in val.items()})
    return rec


def format_epoch(cfg: Config, epoch: int, rec: dict[str, Any]) -> str:
    """The one-line summary of an epoch record of log.jsonl ("kind": "epoch") that fit logs."""
    msg = (
        f"epoch {epoch + 1}/{cfg.train.epochs}: loss {rec['loss']:.4f} "
        f"(cl {rec['contrastive']:.4f} fns1 {rec['fns1']:.4f} tns {rec['tns']:.4f} "
        f"fns2 {rec['fns2']:.4f}) {rec['samples_per_s']:.0f} samples/s"
    )
    if "val_ciou50" in rec:
        msg += f" | val cIoU@0.5 {100 * rec['val_ciou50']:.2f} AUC {100 * rec['val_auc']:.2f}"
    return msg


def _log_epoch(cfg: Config, epoch: int, rec: dict[str, Any]) -> None:
    log.info(format_epoch(cfg, epoch, rec))


def fit(cfg: Config, resume: bool = False) -> FitResult:
    """Train FNAC as configured. Writes config.yaml, log.jsonl, curves.png, latest.pt and best.pt (chosen
    on the validation split) under cfg.train.out_dir; `resume` goes on from latest.pt."""
    env = _setup_process(cfg)
    train_set, val_set = _build_datasets(cfg, env)
    model, core = _build_model(cfg, env)
    optimizer = build_optimizer(core, cfg)
    logf = JsonlLog(env.out / "log.jsonl", env.main)
    if resume:
        state = _resumed_state(cfg, env, train_set, core, optimizer, logf)
    else:
        state = _fresh_state(cfg, env, train_set, val_set, core, logf)
    checkpoints = CheckpointPolicy(env.out, core, optimizer, cfg, env)
    sampler = EpochSampler(len(train_set), env.local_bs, cfg.train.seed)
    loader = make_train_loader(train_set, env.local_bs, sampler, cfg, env.device)
    per_epoch = sampler.batches_per_epoch()
    if cfg.train.max_steps_per_epoch:
        per_epoch = min(per_epoch, cfg.train.max_steps_per_epoch)

    start_epoch, history, last_val, stopped = state.epoch, [], None, False
    epoch = start_epoch - 1  # resuming a finished run trains no epoch: epochs_done stays start_epoch
    with _StopFlag() as flag:
        for epoch in range(start_epoch, cfg.train.epochs):
            if epoch != start_epoch:
                state.batch_in_epoch = 0
            if not state.batch_in_epoch:
                state.skips.new_epoch()
            sampler.set_epoch(epoch, state.batch_in_epoch)
            model.train()
            stats = train_one_epoch(
                model,
                loader,
                optimizer,
                cfg,
                epoch,
                state,
                env,
                n_batches=per_epoch,
                logf=logf,
                checkpoints=checkpoints,
                should_stop=lambda: flag.stop,
            )
            if stats.stopped:
                checkpoints.on_stop(state, epoch, stats.batch_in_epoch)
                stopped = True
                break
            val = None
            if val_set is not None and env.main and _validation_due(cfg, epoch):
                val = last_val = validate(core, val_set, cfg, env.device, max(env.local_bs, 16))
            improved = state.update_best(val, epoch)
            if env.main:
                rec = _epoch_record(cfg, epoch, state, stats, optimizer, val)
                logf.write(rec)
                history.append(rec)
                checkpoints.end_of_epoch(state, epoch, improved)  # best.pt, then latest.pt
                _log_epoch(cfg, epoch, rec)
                _plot(logf, env.out / "curves.png")
            dist.barrier()
    dist.barrier()
    return FitResult(env.out, epoch + 1 if not stopped else epoch, state.step, state.best, last_val, history, stopped)


def _load_resume_state(
    ck: dict, latest: Path, core: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg: Config
) -> None:
    """Model and optimizer state from `latest`; a checkpoint of another model (width, layers...) or
    optimizer is refused with one line naming the file and what differs."""
    try:
        load_state_strict(core, ck["model"], str(latest))
    except CheckpointError:
        theirs = (ck.get("config") or {}).get("model") or {}
        ours = to_dict(cfg)["model"]
        diff = [
            f"model.{k}={theirs[k]} in the checkpoint, {ours[k]} in the config"
            for k in ours
            if k in theirs and theirs[k] != ours[k] and k not in ("pretrained", "pretrained_required")
        ]
        if not diff:
            raise
        own = core.state_dict()
        shapes = [
            f"{k}: {tuple(v.shape)} in the checkpoint, {tuple(own[k].shape)} in the model"
            for k, v in ck["model"].items()
            if k in own and tuple(v.shape) != tuple(own[k].shape)
        ]
        eg = f"; {len(shapes)} tensors differ in shape, e.g. {shapes[0]}" if shapes else ""
        raise CheckpointError(
            f"{latest}: cannot resume: written by another model ({'; '.join(diff)}){eg}; "
            "resume with the model settings the run was started with, or choose another "
            "train.out_dir"
        ) from None
    try:
        optimizer.load_state_dict(ck["optimizer"])
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        raise CheckpointError(
            f"{latest}: cannot resume: its optimizer state does not fit optim.name="
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
    what = f"{vanished} of the run's {n_list} training samples can no longer be loaded since it started" + (
        f" (e.g. {eg})" if eg else ""
    )
    if vanished > max_fraction * n_list:
        raise DataError(
            f"{what}, more than data.max_skip_fraction={max_fraction}; restore the files, or "
            "start a new run (without --resume) on the data as it is now"
        )
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
        log.warning(
            "%s did not hold the best epoch (%d) recorded in %s: rewrote it from %s",
            best_pt,
            best["epoch"] + 1,
            latest,
            latest,
        )
        return best
    log.warning(
        "%s: the weights of the best epoch (%d) recorded in %s were never saved; %s",
        best_pt,
        best["epoch"] + 1,
        latest,
        "keeping best.pt as it is" if have else "best.pt starts again",
    )
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
