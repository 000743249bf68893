"""Loading torch files without running code from them.

``torch.load`` unpickles, and a pickle can call any function while it is read (``os.system``,
``builtins.eval``...). Checkpoints and weight files are what people download from strangers, so every
file fnac reads goes through :func:`safe_torch_load`: ``weights_only=True`` with an allow-list of just the
types real files contain. Nothing here imports the model, so any module may use it.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from fnac.errors import CheckpointError


def _numpy_scalar_globals() -> list:
    """The few numpy types the authors' released files pickle (``best_cIoU``/``best_Auc`` are numpy
    float64 scalars), under numpy 1.x's module names as well as numpy 2.x's. Each of these only builds a
    number or a dtype from bytes; none can call anything else."""
    import numpy as np

    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    dtype_types = {type(np.dtype(t)) for t in ("f8", "f4", "f2", "i8", "i4", "i2", "i1", "u1", "b1")}
    return [
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
        *dtype_types,
    ]


# torch names a refused function or class in one of two phrasings: "Unsupported global: GLOBAL x.y was
# not an allowed global" (any module), "unsupported GLOBAL x.y whose module x is blocked" (os, posix,
# subprocess, sys...).
_DISALLOWED_RE = re.compile(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)")
# torch's own lines around the reason, which advise turning the protection off: never shown
_TORCH_ADVICE = (
    "Weights only load failed",
    "Check the documentation of torch.load",
    "Please use `torch.",
    "Please file an issue",
    "WeightsUnpickler error",
)


def safe_torch_load(path: str | Path, what: str = "file") -> Any:
    """``torch.load`` that never runs code from the file (``weights_only=True``): tensors, plain Python
    containers and numbers, and the numpy scalar types of the authors' released checkpoints. Anything
    else (a pickle that asks for ``os.system``, ``builtins.eval``, an arbitrary class...) is refused with
    one line naming the file and the type, before any of it is built."""
    p = Path(path)
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        m = _DISALLOWED_RE.search(str(e))
        if m:
            name = m.group(1)
            raise CheckpointError(
                f"{p}: refused to load this {what}: it contains the type '{name}', which "
                "is not allowed (fnac loads only tensors and plain data, never code "
                "from a file)"
            ) from None
        raise CheckpointError(
            f"{p}: cannot read {what} ({_reason(e)}; fnac reads only files of tensors and plain data)"
        ) from None
    except Exception as e:  # noqa: BLE001 - any other failure is a corrupt or foreign file for the user
        raise CheckpointError(f"{p}: cannot read {what} ({type(e).__name__}: {_first_line(e)})") from None


def _reason(e: BaseException) -> str:
    """The line of torch's weights-only error that says what was wrong, without its advice to load the
    file unprotected."""
    for line in str(e).splitlines():
        line = line.strip()
        if line.startswith("WeightsUnpickler error:"):
            line = line.removeprefix("WeightsUnpickler error:").strip()
        if line and not line.startswith(_TORCH_ADVICE):
            return line[:300]
    return "it is not plain tensor data"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__
