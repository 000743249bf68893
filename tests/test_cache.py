"""The preprocessed cache (`fnac cache`, data.cache): same samples as the plain layout, failures kept
and reported, resumable builds, config checks, and training from it.

The reference for every cached sample is the plain dataset of the same config (fnac.data, itself
tested against Pillow and scipy in test_data_vggss.py); the vectorised masks are compared with a plain
slicing loop. Frames are non-square and of several sizes so that the stored training form (shorter
side resized) and the random crops are exercised along both axes.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from fnac.cache import cache_split
from fnac.cli import main
from fnac.config import load_config, resolve_config_path
from fnac.data import Dataset, build_dataset, collate
from fnac.data.cache.reader import CachedDataset
from fnac.errors import DataError
from fnac.inputs import apply_mask_params, model_inputs

SR = 16000
SIZES = [(80, 72), (72, 96), (71, 71), (100, 75), (64, 90), (90, 64)]  # (w, h) frames


def _write(root: Path, sid: str, k: int, seconds: float = 1.0, sr: int = SR, subtype: str = "PCM_16") -> None:
    rng = np.random.default_rng(k)
    w, h = SIZES[k % len(SIZES)]
    (root / "frames").mkdir(parents=True, exist_ok=True)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "frames" / f"{sid}.jpg", quality=90)
    sf.write(
        str(root / "audio" / f"{sid}.wav"),
        rng.uniform(-0.5, 0.5, int(sr * seconds)).astype(np.float32),
        sr,
        subtype=subtype,
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """12 clean training clips + 2 bad ones (corrupt frame, 8 kHz audio), 5 val, 6 test with boxes."""
    r = tmp_path_factory.mktemp("layout")
    train = [f"tr{i:02d}" for i in range(12)]
    val = [f"va{i}" for i in range(5)]
    test = [f"te{i}" for i in range(6)]
    for k, sid in enumerate(train + val + test):
        # tr03 is shorter than the window (tiled); tr01 is float audio, so its shard stores float32
        _write(r, sid, k, seconds=0.4 if sid == "tr03" else 1.0, subtype="FLOAT" if sid == "tr01" else "PCM_16")
    _write(r, "bad_frame", 1)
    (r / "frames" / "bad_frame.jpg").write_bytes(b"not a jpeg")
    _write(r, "rate8k", 2, sr=8000)
    (r / "train.txt").write_text("\n".join(train + ["bad_frame", "rate8k", "absent"]) + "\n")
    (r / "train_clean.txt").write_text("\n".join(train) + "\n")
    (r / "val.txt").write_text("\n".join(val) + "\n")
    (r / "test.txt").write_text("\n".join(test) + "\n")
    rng = np.random.default_rng(0)
    ann = []
    for sid in val + test:
        x0, y0 = rng.uniform(0, 0.5, 2)
        ann.append({"file": sid, "class": "c", "bbox": [[x0, y0, x0 + 0.4, y0 + 0.45]]})
    (r / "annotations.json").write_text(json.dumps(ann))
    return r


def _cfg(root: Path, *extra: str):
    return load_config(
        resolve_config_path("small"),
        [
            f"data.root={root}",
            "data.image_size=64",
            "data.audio_duration=0.5",
            "data.num_workers=0",
            "data.spec_mask=reference",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def cache_dir(root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cache") / "c"
    code = main(
        [
            "cache",
            "--out",
            str(out),
            "--config",
            "small",
            f"data.root={root}",
            "data.image_size=64",
            "data.audio_duration=0.5",
            "--shard-size",
            "5",
            "--no-progress",
        ]
    )
    assert code == 0
    return out


def _pair(root, cache_dir, split, train):
    cfg = _cfg(root, f"data.cache={cache_dir}")
    cached = build_dataset(cfg.data, split, train)
    plain = build_dataset(replace(cfg.data, cache=""), split, train)
    assert isinstance(cached, CachedDataset) and not isinstance(plain, CachedDataset)
    assert isinstance(cached, Dataset) and isinstance(plain, Dataset)  # the protocol callers rely on
    return cached, plain


def test_training_samples_equal_plain_layout(root, cache_dir):
    cached, plain = _pair(root, cache_dir, "train", True)
    assert cached.ids == plain.ids and cached.listed == plain.listed and cached.missing == plain.missing == ["absent"]
    good = [i for i, s in enumerate(plain.ids) if s not in ("bad_frame", "rate8k")]
    dtypes = [json.loads((cache_dir / "train" / f"shard_0000{k}.json").read_text())["wave_dtype"] for k in range(3)]
    assert dtypes == ["float32", "int16", "int16"] and not cached.wave_int16
    first = None
    for epoch in (0, 1):
        cached.set_epoch(epoch)
        plain.set_epoch(epoch)
        bc, fc = collate([cached[i] for i in good])
        bp, fp = collate([plain[i] for i in good])
        assert fc == fp == []
        assert bc["image"].dtype == torch.uint8 and bc["image"].shape == (len(good), 3, 64, 64)
        ic, sc = model_inputs(bc, "cpu")
        ip, sp = model_inputs(bp, "cpu")
        assert torch.equal(ic, ip)  # same crop, flip, resize: bit-identical
        assert sc.shape == sp.shape == (len(good), 1, 257, 32)
        assert torch.allclose(sc, sp, atol=1e-5, rtol=0)
        assert torch.equal(sc == 0, sp == 0)  # the same mask bands
        assert int((sc == 0).sum()) > 0
        if first is None:
            first = ic
        else:  # a new epoch draws new crops and flips
            assert not torch.equal(first, ic)
        # finished in the loader workers instead (fit's choice on CPU): the same inputs
        cached.prepare_for("cpu")
        bw, _ = collate([cached[i] for i in good])
        cached.prepare_for("cuda")
        assert "wave" not in bw and bw["image"].dtype == torch.float32
        iw, sw = model_inputs(bw, "cpu")
        assert torch.equal(iw, ic) and torch.allclose(sw, sc, atol=1e-5, rtol=0) and torch.equal(sw == 0, sc == 0)


def test_evaluation_samples_equal_plain_layout(root, cache_dir):
    cached, plain = _pair(root, cache_dir, "test", False)
    assert cached.annotated and len(cached) == 6
    bc, _ = collate([cached[i] for i in range(len(cached))])
    bp, _ = collate([plain[i] for i in range(len(plain))])
    assert bc["id"] == bp["id"]
    ic, sc = model_inputs(bc, "cpu")
    ip, sp = model_inputs(bp, "cpu")
    assert torch.equal(ic, ip)
    assert torch.allclose(sc, sp, atol=1e-5, rtol=0)
    assert bc["wave"].dtype == torch.int16  # 16-bit PCM throughout: sent to the device as integers
    assert torch.equal(bc["gt_map"], bp["gt_map"]) and bc["gt_map"].dtype == torch.float32
    assert float(bc["gt_map"].sum()) > 0
    assert "spec_mask" not in bc


def test_failures_are_kept_and_reported_with_their_file(root, cache_dir):
    cached, plain = _pair(root, cache_dir, "train", True)
    i_bad, i_rate = cached.ids.index("bad_frame"), cached.ids.index("rate8k")
    bad = cached[i_bad]
    assert "bad_frame.jpg" in bad["error"] and plain[i_bad]["error"].startswith(bad["error"].split(":")[0])
    assert "rate8k.wav" in cached[i_rate]["error"] and "sample rate 8000" in cached[i_rate]["error"]
    batch, failed = collate([cached[i] for i in (0, i_bad, i_rate)])
    assert batch["image"].shape[0] == 1 and {f[0] for f in failed} == {"bad_frame", "rate8k"}


def test_masks_vectorised_equal_a_slicing_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 257, 30, generator=g)
    params = torch.tensor([[3, 10, 4, 5], [0, 0, 9, 28], [9, 252, 0, 0], [-1, -1, -1, -1], [5, 300, 2, 29]])
    ref = x.clone()
    for b, (wr, r0, wc, c0) in enumerate(params.tolist()):
        if wr > 0:
            ref[b, r0 : r0 + wr, :] = 0
        if wc > 0:
            ref[b, :, c0 : c0 + wc] = 0
    out = apply_mask_params(x, params)
    assert torch.equal(out, ref)
    assert int((out[3] == 0).sum()) == 0 and int((out[2] == 0).sum()) == 5 * 30  # rows 252..256 only


def test_rebuild_reuses_and_resumes_a_cache(root, cache_dir, tmp_path):
    cfg = _cfg(root)
    s = cache_split(cfg.data, cache_dir, "train", shard_size=5, progress=False)
    assert s.reused and s.n == 14 and s.n_failed == 2 and s.n_shards == 3
    # an interrupted build: the last shard and meta.json are gone; the first shards are kept as they are
    folder = cache_dir / "train"
    kept = {p.name: p.stat().st_mtime_ns for p in folder.glob("shard_00000.*")}
    before = CachedDataset(folder, cfg.data, train=False)[7]
    (folder / "meta.json").unlink()
    (folder / "shard_00002.json").unlink()
    s = cache_split(cfg.data, cache_dir, "train", shard_size=5, progress=False)
    assert not s.reused and s.n == 14
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("shard_00000.*")} == kept
    assert (folder / "shard_00002.json").is_file()
    after = CachedDataset(folder, cfg.data, train=False)[7]
    assert torch.equal(before["image"], after["image"]) and torch.equal(before["wave"], after["wave"])
    # a changed frame: only its shard is rewritten, and the cache then holds the new pixels
    s7 = CachedDataset(folder, cfg.data, train=False).ids[7]
    frame = root / "frames" / f"{s7}.jpg"
    old_bytes, old_stat = frame.read_bytes(), frame.stat()
    try:
        Image.new("RGB", (75, 80), (200, 10, 10)).save(frame)
        os.utime(frame, ns=(old_stat.st_atime_ns, old_stat.st_mtime_ns + 10**9))
        s = cache_split(cfg.data, cache_dir, "train", shard_size=5, progress=False)
        assert not s.reused
        assert {p.name: p.stat().st_mtime_ns for p in folder.glob("shard_00000.*")} == kept
        new = CachedDataset(folder, cfg.data, train=False)[7]["image"]
        assert new.shape == (3, 74, 70) and int(new[0].float().mean()) > 150  # red, shorter side 70
    finally:
        frame.write_bytes(old_bytes)
        os.utime(frame, ns=(old_stat.st_atime_ns, old_stat.st_mtime_ns))
    assert cache_split(cfg.data, cache_dir, "train", shard_size=5, progress=False).reused is False
    assert torch.equal(CachedDataset(folder, cfg.data, train=False)[7]["image"], before["image"])
    # other settings into the same folder: refused unless forced
    with pytest.raises(DataError, match="--force"):
        cache_split(_cfg(root, "data.image_size=48").data, cache_dir, "train", shard_size=5, progress=False)


def test_config_mismatch_fails_and_missing_split_falls_back(root, cache_dir, tmp_path, caplog):
    with pytest.raises(DataError, match="data.image_size: cache 64, config 48"):
        build_dataset(_cfg(root, "data.image_size=48", f"data.cache={cache_dir}").data, "test", False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with caplog.at_level(logging.WARNING):
        ds = build_dataset(_cfg(root, f"data.cache={empty}").data, "val", False)
    assert not isinstance(ds, CachedDataset) and len(ds) == 5 and "plain layout" in caplog.text
    with pytest.raises(DataError, match="not a folder"):
        build_dataset(_cfg(root, f"data.cache={tmp_path / 'nowhere'}").data, "val", False)
    # the test split cached in test form cannot serve training: falls back too
    ds = build_dataset(_cfg(root, f"data.cache={cache_dir}").data, "test", True)
    assert not isinstance(ds, CachedDataset)


def test_fit_from_the_cache_is_the_plain_run(root, tmp_path, monkeypatch):
    """The same seeds give the same steps from the cache as from the plain layout; with every decoder
    disabled the cached run still loads every sample (nothing is decoded)."""
    from fnac import media, vision
    from fnac.train import fit

    over = [
        "data.train_list=" + str(root / "train_clean.txt"),
        "model.width=8",
        "model.embed_dim=16",
        "train.batch_size=4",
        "train.epochs=1",
        "train.progress=false",
        "train.log_every=1",
        "loss.warmup_epochs=0",
        "train.device=cpu",
    ]
    cache = tmp_path / "cache"
    assert (
        main(
            [
                "cache",
                "--out",
                str(cache),
                "--config",
                "small",
                f"data.root={root}",
                "data.image_size=64",
                "data.audio_duration=0.5",
                *over[:1],
                "--splits",
                "train",
                "val",
                "--no-progress",
            ]
        )
        == 0
    )
    fit(_cfg(root, *over, f"train.out_dir={tmp_path / 'plain'}"))

    def refuse(*a, **k):
        raise AssertionError("decoded a file")

    monkeypatch.setattr(vision, "open_image", refuse)
    monkeypatch.setattr(media, "read_audio", refuse)
    fit(_cfg(root, *over, f"train.out_dir={tmp_path / 'cached'}", f"data.cache={cache}"))

    def steps(d):
        return [json.loads(x) for x in (d / "log.jsonl").read_text().splitlines() if '"step"' in x]

    a = [r for r in steps(tmp_path / "plain") if r["kind"] == "step"]
    b = [r for r in steps(tmp_path / "cached") if r["kind"] == "step"]
    assert len(a) == len(b) == 3
    for ra, rb in zip(a, b):
        for k in ("loss", "contrastive", "fns1", "tns", "fns2"):
            assert rb[k] == pytest.approx(ra[k], rel=1e-4, abs=1e-6), (ra["step"], k)
    ea = [r for r in steps(tmp_path / "plain") if r["kind"] == "epoch"][0]
    eb = [r for r in steps(tmp_path / "cached") if r["kind"] == "epoch"][0]
    assert eb["skipped"] == 0 and eb["val_n"] == ea["val_n"] == 5
    assert eb["val_ciou50"] == ea["val_ciou50"] and eb["val_auc"] == pytest.approx(ea["val_auc"], abs=1e-12)
    assert os.path.isfile(tmp_path / "cached" / "latest.pt")


@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")
def test_gpu_options_on_cpu(root, cache_dir):
    """The fast path's training options where a CPU can run them: channels-last and torch.compile give
    the same loss terms as the plain float32 step, bf16 autocast the same to bf16 precision; pinned
    memory is asked for on CUDA only."""
    from fnac.models.fnac import FNAC
    from fnac.train import _make_loader, compute_terms

    cfg = _cfg(root, f"data.cache={cache_dir}", "model.width=8", "model.embed_dim=16")
    ds = build_dataset(cfg.data, "train", True)
    batch, _ = collate([ds[i] for i in range(4)])
    torch.manual_seed(0)
    model = FNAC(cfg.model, load_pretrained=False).eval()  # eval: no dropout, so the runs are comparable
    cpu = torch.device("cpu")
    with torch.no_grad():
        ref = {k: float(v) for k, v in compute_terms(model, batch, cfg, cpu).items()}
        cfg.train.channels_last = True
        cl = {
            k: float(v) for k, v in compute_terms(model.to(memory_format=torch.channels_last), batch, cfg, cpu).items()
        }
        cfg.train.channels_last = False
        model = model.to(memory_format=torch.contiguous_format)  # .to() converted it in place
        cfg.train.amp = "bf16"
        # PyTorch's own bf16 kernels: oneDNN's AMX bf16 convolutions returned NaN in about a third of
        # the calls on the development VM (a CPU/VM problem, not fnac's), which would make this flaky
        with torch.backends.mkldnn.flags(enabled=False):
            bf = {k: float(v) for k, v in compute_terms(model, batch, cfg, cpu).items()}
        cfg.train.amp = "none"
        compiled = torch.compile(model, backend="eager")
        co = {k: float(v) for k, v in compute_terms(compiled, batch, cfg, cpu).items()}
    for k in ref:
        assert cl[k] == pytest.approx(ref[k], rel=1e-4, abs=1e-6), k
        assert co[k] == pytest.approx(ref[k], rel=1e-5, abs=1e-7), k
    # bf16 keeps 8 bits of mantissa and the logits are cos / 0.03: a few percent on the loss
    assert all(np.isfinite(v) for v in bf.values())
    assert bf["contrastive"] == pytest.approx(ref["contrastive"], rel=0.15)
    assert bf["contrastive"] != ref["contrastive"]  # autocast did run in bf16
    assert _make_loader(ds, 2, None, cfg, torch.device("cuda")).pin_memory
    assert not _make_loader(ds, 2, None, cfg, cpu).pin_memory


def test_cache_records_data_alpha(root, cache_dir):
    # frames decoded with data.alpha=drop (the default) cannot serve a config asking for white compositing
    with pytest.raises(DataError, match="data.alpha: cache 'drop', config 'white'"):
        build_dataset(_cfg(root, "data.alpha=white", f"data.cache={cache_dir}").data, "test", False)


def test_overlays_from_unfinished_cached_samples_equal_the_plain_layouts(root, cache_dir, tmp_path):
    """report.write_overlays goes through fnac.inputs: a cached split prepared for a GPU (samples left
    as uint8 frames and raw audio windows) draws the same pictures as the plain layout."""
    from fnac.evaluate import Protocol, evaluate_model
    from fnac.models.fnac import FNAC
    from fnac.report import write_overlays

    torch.manual_seed(0)
    model = FNAC(_cfg(root).model, load_pretrained=False).eval()
    cached, plain = _pair(root, cache_dir, "test", False)
    res = evaluate_model(
        model, plain, Protocol(), batch_size=4, device="cpu", num_workers=0, baselines=False, progress=False
    )
    cached.prepare_for("cuda")  # what evaluation on a GPU does: samples are finished on the device
    assert cached[0]["image"].dtype == torch.uint8
    a = write_overlays(model, plain, res, tmp_path / "plain", 2, torch.device("cpu"))
    b = write_overlays(model, cached, res, tmp_path / "cached", 2, torch.device("cpu"))
    assert len(a) == len(b) == 4
    for pa, pb in zip(a, b):
        assert pa.name == pb.name
        diff = np.abs(np.asarray(Image.open(pa), np.int16) - np.asarray(Image.open(pb), np.int16))
        assert diff.max() <= 2  # the spectrogram of the cache agrees to float rounding
