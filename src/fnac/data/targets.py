"""Per-sample annotations, parsed once when a dataset is built, turned into tensors per sample.

Each target knows the file it came from (named in error messages) and returns the annotation fields
of its sample: ``gt_map`` (224, 224) float32 (docs/evaluation.md §1) and, for AVSBench, ``mask``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

GT_SIZE = 224  # ground-truth maps are always 224 x 224 (docs/evaluation.md §1)


def zeros_map() -> torch.Tensor:
    """An empty (224, 224) float32 ground truth (SLAVC's non-sounding pairs)."""
    return torch.zeros(GT_SIZE, GT_SIZE, dtype=torch.float32)


@dataclass(slots=True)
class VggssBoxes:
    """VGG-SS boxes [[x1, y1, x2, y2], ...] normalised to [0, 1]; binary union map (docs/evaluation.md §1)."""

    boxes: list[list[float]]
    source: str  # the annotation JSON

    def fields(self) -> dict[str, Any]:
        from fnac import metrics

        gt = np.asarray(metrics.gt_map_vggss(self.boxes), dtype=np.float32)  # (224, 224)
        return {"gt_map": torch.from_numpy(gt)}


@dataclass(slots=True)
class FlickrBoxes:
    """Flickr-SoundNet annotator boxes (xmin, ymin, xmax, ymax) in the 256 x 256 frame and the soft
    consensus map of ``source`` (an XML file; docs/evaluation.md §1), both computed once when the
    dataset is built (``from_xml``). The map is kept as uint8 2 * gt (values 0, 1, 2: 50 kB a sample)."""

    boxes: list[tuple[int, int, int, int]]
    source: str  # the XML file
    packed: np.ndarray  # (224, 224) uint8, 2 * consensus map

    @classmethod
    def from_xml(cls, path: str) -> "FlickrBoxes":
        from fnac import metrics

        boxes = [tuple(int(v) for v in b) for b in metrics.parse_flickr_xml(path)]
        gt = np.asarray(metrics.gt_map_flickr(path), dtype=np.float32)  # (224, 224) in {0, 0.5, 1}
        return cls(boxes, path, np.rint(gt * 2).astype(np.uint8))  # type: ignore[arg-type]

    def fields(self) -> dict[str, Any]:
        return {"gt_map": torch.from_numpy(self.packed.astype(np.float32) / 2.0)}


@dataclass(slots=True)
class MaskFile:
    """An AVSBench mask PNG: nonzero pixels (binary masks and MS3's palette indices) are the object;
    resized to 224 x 224 with nearest neighbour (docs/evaluation.md §1)."""

    source: str  # the PNG

    def fields(self) -> dict[str, Any]:
        m = torch.from_numpy(load_mask(self.source))  # (224, 224)
        return {"mask": m, "gt_map": m.clone()}


def load_mask(path: str, size: int = GT_SIZE) -> np.ndarray:
    """(size, size) float32 in {0, 1}: pixels whose value (palette index for mode P, any channel
    otherwise, alpha ignored) is nonzero; nearest-neighbour resize. MediaError on unreadable files."""
    from PIL import Image

    from fnac.errors import MediaError

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "P":
                arr = np.asarray(img)  # (H, W) palette indices; index 0 is the background
            else:
                if img.mode in ("RGBA", "LA", "PA"):
                    img = img.convert(img.mode[:-1] if img.mode != "PA" else "P")
                arr = np.asarray(img)
                if arr.ndim == 3:
                    arr = arr.max(axis=2)  # (H, W): any channel nonzero
    except FileNotFoundError:
        raise MediaError(f"{path}: mask not found") from None
    except Exception as e:
        raise MediaError(f"{path}: mask is not a readable image ({e})") from e
    binary = (arr != 0).astype(np.uint8)  # (H, W)
    if binary.shape != (size, size):
        binary = np.asarray(Image.fromarray(binary).resize((size, size), Image.Resampling.NEAREST))
    return binary.astype(np.float32)
