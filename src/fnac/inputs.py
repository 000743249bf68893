"""From a collated batch to the model's inputs on a device: the one seam between data and model.

Training (``train.compute_terms``), evaluation (``evaluate.evaluate_model``), the cache reader's
per-sample finishing on the CPU and the benchmarks all turn batches into ``(images, specs)`` here, so
that a batch of the plain layout and a batch of the preprocessed cache give the same numbers.

Two kinds of batch arrive (``fnac.data.collate`` of the samples of ``fnac.data.Dataset``):

- *finished* (the plain layout): ``image`` (B, 3, S, S) float32, normalised, and ``spec``
  (B, 1, 257, T) float32, the log spectrogram / 12; they are only moved to the device;
- *raw* (the cache, ``fnac.data.cache``): ``image`` (B, 3, S, S) uint8, ``wave`` (B, L) audio windows
  (int16 = round(x * 32768) or float32), ``sr``, and for training ``spec_mask`` (B, 4) int64, the
  pre-drawn training masks (row width, row start, column width, column start; -1 = no masks). The
  normalisation, spectrogram, log, masks and / 12 are computed here, batched on the device (docs/method.md
  §4, "Image" and "Audio").
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from fnac import audio, vision
from fnac.errors import DataError

PCM16 = 32768  # int16 audio windows hold round(x * 32768)


def draw_mask_params(mode: str, n_time: int, generator: torch.Generator) -> Tensor:
    """(4,) int64 training-mask draws for one sample's (257, ``n_time``) log spectrogram, in
    ``audio.apply_masks``' order and with its ranges: row width, row start, column width, column start;
    (-1, -1, -1, -1) when ``mode`` (data.spec_mask) is "none". ``apply_mask_params`` applies them."""
    if mode == "none":
        return torch.full((4,), -1, dtype=torch.int64)
    # rows over T and columns over F in the reference's swapped-axes mode, the other way round for SpecAugment
    row_range, col_range = (n_time, audio.N_FREQ) if mode == "reference" else (audio.N_FREQ, n_time)

    def draw(high: int) -> int:
        return int(torch.randint(0, high, (1,), generator=generator).item())

    w_row = draw(audio.MASK_MAX_WIDTH + 1)
    r0 = draw(row_range)
    w_col = draw(audio.MASK_MAX_WIDTH + 1)
    c0 = draw(col_range)
    return torch.tensor([w_row, r0, w_col, c0], dtype=torch.int64)


def apply_mask_params(logspec: Tensor, params: Tensor) -> Tensor:
    """Training masks from pre-drawn parameters, vectorised: logspec (B, F, T), params (B, 4) int64 =
    (row width, row start, column width, column start) per item. Zeroes rows [r0, r0 + w_row) and
    columns [c0, c0 + w_col), cut at the edges, as audio.apply_masks does item by item (docs/method.md §4,
    Audio step 5). A row of -1 leaves its item unmasked."""
    b, f, t = logspec.shape
    p = params.to(logspec.device)
    rows = torch.arange(f, device=logspec.device)[None, :]  # (1, F)
    cols = torch.arange(t, device=logspec.device)[None, :]  # (1, T)
    w_r, r0, w_c, c0 = (p[:, i : i + 1] for i in range(4))  # (B, 1) each
    in_rows = (rows >= r0) & (rows < r0 + w_r)  # (B, F)
    in_cols = (cols >= c0) & (cols < c0 + w_c)  # (B, T)
    hit = in_rows[:, :, None] | in_cols[:, None, :]  # (B, F, T)
    return logspec.masked_fill(hit, 0.0)


def model_inputs(
    batch: dict[str, Any], device: torch.device | str, channels_last: bool = False, non_blocking: bool = True
) -> tuple[Tensor, Tensor]:
    """(images (B, 3, S, S) float32, specs (B, 1, 257, T) float32) on ``device`` from a collated batch.

    Finished batches already hold both (moved only). Raw batches hold uint8 images (normalised here,
    vision.normalize) and audio windows: spectrogram, log, training masks (``spec_mask``) and /12 are
    computed here in one batch on the device (docs/method.md §4)."""
    device = torch.device(device)
    images = batch["image"].to(device, non_blocking=non_blocking)
    if images.dtype == torch.uint8:
        images = vision.normalize(images)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    if "spec" in batch:
        specs = batch["spec"].to(device, non_blocking=non_blocking)
        return images, specs
    wave = batch["wave"].to(device, non_blocking=non_blocking)  # (B, L)
    if wave.dtype == torch.int16:
        wave = wave.to(torch.float32) / PCM16  # 16-bit PCM back to the decoder's float values, exactly
    srs = batch["sr"]
    sr = int(srs[0]) if isinstance(srs, (Tensor, list, tuple)) else int(srs)
    if isinstance(srs, Tensor) and bool((srs != sr).any()):
        raise DataError(f"batch mixes sample rates {sorted(set(srs.tolist()))}: set data.sample_rate")
    logspec = torch.log(audio.spectrogram(wave, sr) + audio.LOG_EPS)  # (B, 257, T)
    if "spec_mask" in batch:
        logspec = apply_mask_params(logspec, batch["spec_mask"])
    return images, (logspec / audio.LOG_SCALE).unsqueeze(1)  # (B, 1, 257, T)
