"""Building the preprocessed cache (``fnac cache``): the public entry point of
``fnac.data.cache.writer``, which holds the implementation (format in ``fnac.data.cache``).

``cache_split(data_cfg, out_dir, split, ...) -> SplitSummary`` caches one split; train or evaluate on
it with ``data.cache=<out_dir>``.
"""

from fnac.data.cache.writer import SplitSummary, cache_split

__all__ = ["SplitSummary", "cache_split"]
