"""The preprocessed cache of ``fnac cache`` (``data.cache``): clips decoded once, read without JPEG or
audio decoding. ``writer`` builds it (``cache_split``), ``reader`` reads it (``CachedDataset``, opened
by ``fnac.data.build_dataset`` when ``data.cache`` is set), ``layout`` holds what both agree on.

A cache folder holds one sub-folder per split. Each split is cut into shards of consecutive samples;
a shard is a few flat files read through memory maps (docs/training.md, "Fast data: fnac cache"):

    <cache>/<split>/meta.json                 what was cached, from which data config (written last)
    <cache>/<split>/shard_00000.json          the shard's ids, failures and field encodings
    <cache>/<split>/shard_00000.image.u8      frames, uint8 (h, w, 3) one after another
    <cache>/<split>/shard_00000.index.npy     (m, 3) int64: byte offset, h, w of each frame
    <cache>/<split>/shard_00000.wave.npy      (m, L) audio windows (L = sr * audio_duration): int16 (x / 32768)
                                              when the shard's audio is exact 16-bit PCM, else float32
    <cache>/<split>/shard_00000.<field>.npy   annotation fields (gt_map, mask, positive), when annotated

Frames are stored in the *form* their split is used in (docs/method.md §4, "Image"): the training
split after its deterministic first step (shorter side resized to int(1.1 S), bicubic), so the random
crop and flip are done by the reader on the array with the draws of ``vision.train_transform``; the
val/test splits resized to exactly S x S. The audio is the centred window, so the spectrogram, the log
and the training masks run batched on the training device in ``fnac.inputs.model_inputs`` (docs/method.md
§4, "Audio"), or per sample in the loader workers when the model runs on the CPU
(``CachedDataset.prepare_for``). A training sample of the cache equals the plain layout's sample for
the same (seed, epoch, index): the same crop, flip and mask draws (``fnac.data.common.sample_seed``);
the image is bit-identical and the spectrogram equal to float32 rounding.

Shards are written under temporary names and renamed when complete, so an interrupted build resumes
where it stopped; ``meta.json`` is written last. Clips that fail to decode are recorded with their
reason and reported by the reader as the plain layout reports them.

This package imports nothing on its own: ``fnac.data`` imports ``reader``, and ``writer`` imports
``fnac.data`` (to build the plain dataset it caches), so the import graph has no cycle.
"""
