"""What a dataset split offers its callers (training, evaluation, reports, benchmarks).

``Dataset`` lists the attributes and methods the rest of fnac uses; both readers implement it
explicitly (``fnac.data.common.AVDataset``, the plain layout, and ``fnac.data.cache.reader.
CachedDataset``, the preprocessed cache), so callers use them without probing. ``as_dataset`` gives
a bare map-style dataset of samples (tests, ad-hoc lists of samples) the same description.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import torch


@runtime_checkable
class Dataset(Protocol):
    """One split of one benchmark, read sample by sample.

    ``__getitem__(i)`` returns a sample dict (``{"id", "index", "image", ...}``, see
    ``fnac.inputs`` for the two sample forms) or ``{"id", "index", "error": "<file>: <reason>"}``;
    ``fnac.data.collate`` batches them. Attributes: ``name`` (registry key), ``split``, ``train``
    (augmented or not), ``ids`` (present ids, list order), ``listed`` (ids of the list file),
    ``missing`` (listed ids that cannot be used), ``missing_reasons`` (id -> why), ``excluded``
    (training ids removed by data.exclude_list), ``list_path``, ``annotated`` (samples carry the
    annotation fields), ``with_positive`` (samples carry ``positive``), ``seed`` and ``epoch`` (of the
    training augmentation).
    """

    name: str
    split: str
    train: bool
    ids: list[str]
    listed: list[str]
    missing: list[str]
    missing_reasons: dict[str, str]
    excluded: list[str]
    list_path: str
    annotated: bool
    with_positive: bool
    seed: int
    epoch: int

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose augmentations ``__getitem__`` draws."""

    def summary(self) -> str:
        """One line: name, split, ids present of listed, missing and excluded."""

    def prepare_for(self, device: torch.device | str) -> None:
        """Where samples are finished into model inputs (``fnac.inputs``) for a model on ``device``;
        training and evaluation call it before building their loaders."""


class SampleList(torch.utils.data.Dataset):
    """A bare map-style dataset of samples described as a split without an id list: name and split
    "?", every index listed (its position stands in for its id), nothing missing, no augmentation."""

    def __init__(self, samples: Sequence[dict[str, Any]] | torch.utils.data.Dataset) -> None:
        self.samples = samples
        self.name = "?"
        self.split = "?"
        self.train = False
        self.ids = [str(i) for i in range(len(samples))]  # type: ignore[arg-type]
        self.listed = list(self.ids)
        self.missing: list[str] = []
        self.missing_reasons: dict[str, str] = {}
        self.excluded: list[str] = []
        self.list_path = "dataset"
        self.annotated = False  # unknown: the samples say what they carry
        self.with_positive = False
        self.seed = 0
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.samples[index]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def summary(self) -> str:
        return f"{len(self)} samples"

    def prepare_for(self, device: torch.device | str) -> None:
        """Nothing to choose: the samples are used as they are."""


def as_dataset(ds: Any) -> Dataset:
    """``ds`` itself when it implements ``Dataset``, else ``ds`` (any map-style dataset of samples)
    wrapped in a ``SampleList``."""
    return ds if isinstance(ds, Dataset) else SampleList(ds)
