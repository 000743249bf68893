"""A straightforward pipeline written to mirror the reference implementation's, for the benchmarks.

Per sample, in the loader workers: open the JPEG with Pillow, resize (and, for training, random crop
and flip) as PIL images, convert to a normalised float tensor; decode the audio file with PyAV
(FFmpeg), take the centred window, compute scipy.signal.spectrogram, log, masks, /12 (docs/method.md
§4). Training steps in float32 with no layout tricks; evaluation one sample at a time
(batch 1), each map upsampled, min-max normalised, thresholded at its median and scored with numpy
(docs/evaluation.md §2-4). Written from those descriptions for this benchmark; not the authors' code.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import signal

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def decode_audio(path: str) -> tuple[np.ndarray, int]:
    """All of the file's audio as float32 mono, with FFmpeg through PyAV, clipped to [-1, 1]."""
    with av.open(path) as container:
        stream = container.streams.audio[0]
        sr = stream.rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
        chunks = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    x = np.concatenate(chunks).astype(np.float32)
    return np.clip(x, -1.0, 1.0), sr


class RefDataset(torch.utils.data.Dataset):
    """(image, spec, gt_map, id) per sample of a frames/ + audio/ layout, computed as described above."""

    def __init__(self, root: str | Path, split: str, image_size: int, duration: float, train: bool) -> None:
        self.root = Path(root)
        self.ids = [x.strip() for x in (self.root / f"{split}.txt").read_text().splitlines() if x.strip()]
        self.size, self.duration, self.train = image_size, duration, train
        self.boxes: dict[str, Any] = {}
        if not train:
            self.boxes = {e["file"]: e["bbox"] for e in json.loads((self.root / "annotations.json").read_text())}

    def __len__(self) -> int:
        return len(self.ids)

    def image(self, sid: str) -> torch.Tensor:
        img = Image.open(self.root / "frames" / f"{sid}.jpg").convert("RGB")
        s = self.size
        if self.train:
            w, h = img.size
            short = int(s * 1.1)
            img = img.resize(
                (short, int(short * h / w)) if w <= h else (int(short * w / h), short), Image.Resampling.BICUBIC
            )
            w, h = img.size
            top, left = random.randint(0, h - s), random.randint(0, w - s)
            img = img.crop((left, top, left + s, top + s))
            if random.random() < 0.5:
                img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        else:
            img = img.resize((s, s), Image.Resampling.BICUBIC)
        x = (np.asarray(img, dtype=np.float32) / 255.0 - MEAN) / STD  # (S, S, 3)
        return torch.from_numpy(x.transpose(2, 0, 1).copy())

    def spec(self, sid: str) -> torch.Tensor:
        x, sr = decode_audio(str(self.root / "audio" / f"{sid}.wav"))
        n = int(round(sr * self.duration))
        if len(x) < n:
            x = np.tile(x, -(-n // len(x)))
        start = min(int(max(len(x) / sr / 2 - self.duration / 2, 0) * sr), len(x) - n)
        _, _, s = signal.spectrogram(x[start : start + n], fs=sr, nperseg=512, noverlap=274)
        s = np.log(s + 1e-7)
        if self.train:  # one band of rows and one of columns, widths 0..9 (the reference's axes)
            f, t = s.shape
            w1, r0 = random.randint(0, 9), random.randrange(t)
            w2, c0 = random.randint(0, 9), random.randrange(f)
            s[r0 : r0 + w1, :] = 0
            s[:, c0 : c0 + w2] = 0
        return torch.from_numpy((s / 12.0).astype(np.float32))[None]  # (1, 257, T)

    def __getitem__(self, i: int):
        sid = self.ids[i]
        out = [self.image(sid), self.spec(sid)]
        if not self.train:
            from fnac.metrics import gt_map_vggss

            out.append(torch.from_numpy(gt_map_vggss(self.boxes[sid])))
        return (*out, sid)


def train_step(model: torch.nn.Module, batch: tuple, optimizer: torch.optim.Optimizer, device: torch.device) -> float:
    """Float32 forward, the FNAC loss (all four terms weighted), backward, Adam step."""
    from fnac.losses import fnac_losses

    images, specs = batch[0].to(device), batch[1].to(device)
    out = model(images, specs)
    t = fnac_losses(out["img"], out["aud"], tau=0.03)
    loss = t["contrastive"] + 100 * (t["fns1"] + t["tns"] + t["fns2"])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def score_one(raw: np.ndarray, gt: np.ndarray) -> float:
    """cIoU of one raw (h, w) map under FNAC's protocol: bicubic upsampling (align_corners=False),
    min-max, threshold at sorted(map)[int(224*224*0.5)], consensus IoU with float64 sums."""
    up = F.interpolate(torch.from_numpy(raw)[None, None], size=gt.shape, mode="bicubic", align_corners=False)[
        0, 0
    ].numpy()
    lo, hi = up.min(), up.max()
    m = up if hi == lo else (up - lo) / (hi - lo)
    pred = (m >= np.sort(m.ravel())[int(m.size * 0.5)]).astype(np.float64)
    g = gt.astype(np.float64)
    if g.sum() == 0:
        return 0.0
    return float((pred * g).sum() / (g.sum() + (pred * (g == 0)).sum()))


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: RefDataset, device: torch.device, workers: int) -> dict[str, Any]:
    """One sample at a time: load, forward at batch 1, score. Returns per-sample cIoU by id."""
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=False, num_workers=workers)
    out: dict[str, float] = {}
    for image, spec, gt, sid in loader:
        img = model.encode_image(image.to(device))
        aud = model.encode_audio(spec.to(device))
        raw = torch.einsum("bchw,bc->bhw", img, aud)[0] / model.tau  # (h, w)
        out[sid[0]] = score_one(raw.float().cpu().numpy(), gt[0].numpy())
    return out


def summary(cious: list[float]) -> dict[str, float]:
    """cIoU@0.5, AUC (trapezoid over thresholds 0, 0.05, ..., 1) and mean cIoU (docs/evaluation.md §4)."""
    c = np.asarray(cious, dtype=np.float64)
    ts = [0.05 * k for k in range(21)]
    s = [float(np.mean(c >= t)) for t in ts]
    auc = sum((s[k] + s[k + 1]) / 2 * (ts[k + 1] - ts[k]) for k in range(20))
    return {"ciou50": float(np.mean(c >= 0.5)), "auc": float(auc), "mean_ciou": float(c.mean())}
