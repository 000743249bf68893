"""Datasets: one module per benchmark layout, one registry, one sample format (CONTRIBUTING.md, "data/").

``build_dataset(data_cfg, split, train)`` picks the builder named by ``data_cfg.dataset`` (an exact key
of DATASETS; no name guessing) and returns an ``AVDataset``, or the ``CachedDataset`` of the split
when ``data.cache`` holds it (``fnac.data.cache``); both implement the ``Dataset`` protocol
(``fnac.data.protocol``). See docs/datasets.md for the layouts.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from fnac.config import DataConfig
from fnac.data import avsbench, extended, flickr, vggss
from fnac.data.cache.reader import open_split
from fnac.data.common import AVDataset, Entry, collate, read_id_list, sample_seed, write_id_list
from fnac.data.protocol import Dataset, as_dataset
from fnac.errors import ConfigError


def _extended_vggss(cfg: DataConfig, split: str, train: bool, seed: int = 0) -> AVDataset:
    return extended.build("vggss", cfg, split, train, seed)


def _extended_flickr(cfg: DataConfig, split: str, train: bool, seed: int = 0) -> AVDataset:
    return extended.build("flickr", cfg, split, train, seed)


def _avsbench_s4(cfg: DataConfig, split: str, train: bool, seed: int = 0) -> AVDataset:
    return avsbench.build("s4", cfg, split, train, seed)


def _avsbench_ms3(cfg: DataConfig, split: str, train: bool, seed: int = 0) -> AVDataset:
    return avsbench.build("ms3", cfg, split, train, seed)


# data.dataset -> builder(data_cfg, split, train, seed) -> AVDataset
DATASETS: dict[str, Callable[..., AVDataset]] = {
    "vggss": vggss.build,  # VGG-Sound / VGG-SS layout; also the built-in synthetic benchmark
    "flickr": flickr.build,
    "extended_vggss": _extended_vggss,
    "extended_flickr": _extended_flickr,
    "avsbench_s4": _avsbench_s4,
    "avsbench_ms3": _avsbench_ms3,
}


def build_dataset(data_cfg: DataConfig, split: str, train: bool, seed: int = 0) -> Dataset:
    """The ``split`` ("train", "val" or "test") of the dataset ``data_cfg.dataset``.

    ``train`` selects the training transforms (random crop/flip, spectrogram masks drawn from
    ``seed``, ``set_epoch`` and the sample index); otherwise test transforms and no randomness.
    Raises ConfigError for an unknown dataset name and DataError for missing or malformed lists,
    annotation files and folders. With ``data.cache`` set, the cached split when it is cached for this
    config and use, else (with a warning naming why) the plain layout; DataError when the cache was
    built from other data settings.
    """
    from fnac.vision import check_alpha

    check_alpha(data_cfg.alpha)
    if data_cfg.cache:  # the preprocessed cache of `fnac cache`
        cached = open_split(data_cfg, split, train, seed)
        if cached is not None:
            return cached
        data_cfg = replace(data_cfg, cache="")
    builder = DATASETS.get(data_cfg.dataset)
    if builder is None:
        raise ConfigError(f"data.dataset: unknown dataset {data_cfg.dataset!r} (known: {', '.join(DATASETS)})")
    return builder(data_cfg, split, train, seed)


__all__ = [
    "AVDataset",
    "DATASETS",
    "Dataset",
    "Entry",
    "as_dataset",
    "build_dataset",
    "collate",
    "read_id_list",
    "sample_seed",
    "write_id_list",
]
