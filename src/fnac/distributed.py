"""Thin helpers over torch.distributed. Every function is a no-op in a single process, and nothing
here creates a process group on import (torchrun sets the environment; `init_from_env` joins it)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def init_from_env(device: torch.device) -> bool:
    """Join the process group torchrun describes (NCCL on GPU, gloo on CPU). Returns True if joined."""
    if is_initialized():
        return True
    if not launched_by_torchrun():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return True


def barrier() -> None:
    if is_initialized():
        dist.barrier()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward returns this process's slice of the summed gradient, so that the
    loss over the global batch back-propagates into every process's own embeddings."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        out = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        n = grad.shape[0] // world_size()
        return grad[rank() * n : (rank() + 1) * n]


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate x (B, ...) from all processes along dim 0, keeping the gradient path. Identity in a
    single process. Every process must pass the same B."""
    if world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)
