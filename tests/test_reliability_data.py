"""Reliability of data loading: corrupt, empty and odd media either load correctly or fail with MediaError
naming the file; bad training samples are logged, counted and stop the run above data.max_skip_fraction;
evaluation counts and names every sample it could not load (docs/reliability.md)."""

from __future__ import annotations

import logging
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from conftest import tiny_overrides
from fnac import inference, media, vision
from fnac.config import ModelConfig, load_config, resolve_config_path
from fnac.data import build_dataset
from fnac.errors import DataError, MediaError
from fnac.evaluate import Protocol, evaluate_model
from fnac.models.fnac import FNAC
from fnac.train import fit


# ------------------------------------------------------------------------------------------- images
def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A valid PNG signature + IHDR claiming width x height (8-bit greyscale) + a tiny IDAT: a few
    hundred bytes that would decode to width * height bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )
    return path


def _jpg(path: Path, size=(40, 30)) -> Path:
    Image.new("RGB", size, (200, 100, 50)).save(path, quality=95)
    return path


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (
            lambda p: p.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()),
            "not a recognised image",
        ),
        (lambda p: p.write_bytes(_jpg(p).read_bytes()[:300]), "corrupt or truncated"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40), "not a recognised image|corrupt"),
    ],
)
def test_bad_images_raise_media_error_naming_the_file(tmp_path, make, reason):
    p = tmp_path / "bad.jpg"
    make(p)
    with pytest.raises(MediaError, match=reason) as ei:
        vision.open_image(p)
    assert str(p) in str(ei.value)


def test_truncated_png_is_reported(tmp_path):
    p = tmp_path / "t.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(p)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(MediaError, match="t.png: image is corrupt or truncated"):
        vision.open_image(p)


@pytest.mark.parametrize("w, h", [(100_000, 100_000), (20_000, 5_000)])
def test_decompression_bomb_is_refused_before_decoding(tmp_path, w, h):
    # 1e10 pixels: past twice Pillow's MAX_IMAGE_PIXELS (an error there); 1e8: between once and twice
    # (Pillow only warns there; open_image refuses both)
    assert w * h > Image.MAX_IMAGE_PIXELS
    p = _png_header_only(tmp_path / "bomb.png", w, h)
    assert p.stat().st_size < 200
    with pytest.raises(MediaError, match="too large to decode safely"):
        vision.open_image(p)


def _save(img: Image.Image, path: Path) -> Path:
    img.save(path)
    return path


def test_odd_modes_load_as_rgb_with_expected_pixels(tmp_path):
    # greyscale
    rgb = vision.open_image(_save(Image.new("L", (5, 3), 100), tmp_path / "l.png"))
    assert rgb.mode == "RGB" and rgb.size == (5, 3) and np.all(np.asarray(rgb) == 100)
    # 16-bit greyscale: 0..65535 scaled to 0..255 (25700 = 100 * 257)
    a16 = np.array([[0, 25700, 65535]], dtype=np.uint16)
    rgb = np.asarray(vision.open_image(_save(Image.fromarray(a16), tmp_path / "i16.png")))
    assert rgb.shape == (1, 3, 3) and rgb[0, :, 0].tolist() == [0, 100, 255]
    # palette: index 1 -> (10, 20, 30)
    pal = Image.new("P", (2, 2), 1)
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * (256 * 3 - 6))
    rgb = np.asarray(vision.open_image(_save(pal, tmp_path / "p.png")))
    assert np.all(rgb == np.array([10, 20, 30]))
    # alpha="white" composites over white: transparent -> white, opaque blue stays blue, 51/255 of black
    # (the default, alpha="drop", keeps the stored colours: tests/test_vision.py)
    rgba = Image.new("RGBA", (3, 1))
    rgba.putdata([(255, 0, 0, 0), (0, 0, 255, 255), (0, 0, 0, 51)])
    rgb = np.asarray(vision.open_image(_save(rgba, tmp_path / "a.png"), alpha="white")).astype(int)
    assert rgb[0, 0].tolist() == [255, 255, 255] and rgb[0, 1].tolist() == [0, 0, 255]
    assert np.all(np.abs(rgb[0, 2] - 255 * (1 - 51 / 255)) <= 1)  # 204
    la = Image.new("LA", (1, 1), (0, 0))
    assert np.asarray(vision.open_image(_save(la, tmp_path / "la.png"), alpha="white")).tolist() == [[[255, 255, 255]]]
    # CMYK (lossless TIFF): no ink -> white, full cyan -> (0, 255, 255)
    cmyk = Image.new("CMYK", (2, 1))
    cmyk.putdata([(0, 0, 0, 0), (255, 0, 0, 0)])
    rgb = np.asarray(vision.open_image(_save(cmyk, tmp_path / "c.tif")))
    assert rgb[0, 0].tolist() == [255, 255, 255] and rgb[0, 1].tolist() == [0, 255, 255]
    # CMYK JPEG (lossy): loads as RGB of the right size
    rgb = vision.open_image(_save(Image.new("CMYK", (8, 6), (0, 0, 0, 0)), tmp_path / "c.jpg"))
    assert rgb.mode == "RGB" and rgb.size == (8, 6) and np.asarray(rgb).min() >= 250


@pytest.mark.parametrize("size", [(1, 1), (10_000, 10), (10, 10_000)])
def test_extreme_sizes_give_model_inputs(tmp_path, size):
    p = _save(Image.new("RGB", size, (255, 0, 0)), tmp_path / "x.png")
    img = vision.open_image(p)
    assert img.size == size
    x = vision.test_transform(img, 32)
    assert x.shape == (3, 32, 32) and torch.isfinite(x).all()
    # red everywhere: the normalised red channel is (1 - 0.485) / 0.229 in every pixel
    assert torch.allclose(x[0], torch.full((32, 32), (1 - 0.485) / 0.229), atol=1e-4)
    import random

    y = vision.train_transform(img, 32, random.Random(0))
    assert y.shape == (3, 32, 32) and torch.isfinite(y).all()


# -------------------------------------------------------------------------------------------- audio
def _wav(path: Path, x: np.ndarray, sr=16000, subtype="PCM_16") -> Path:
    sf.write(str(path), x, sr, subtype=subtype)
    return path


def test_bad_audio_raises_media_error_naming_the_file(tmp_path):
    tone = (0.3 * np.sin(np.arange(16000) / 10)).astype(np.float32)
    good = _wav(tmp_path / "good.wav", tone).read_bytes()
    cases = {
        "empty.wav": (b"", "empty"),
        "header.wav": (good[:30], "cannot read audio"),
        "garbage.wav": (np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes(), "cannot read"),
        "garbage.mp4": (np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes(), "cannot open"),
    }
    for name, (data, reason) in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(MediaError, match=reason) as ei:
            media.read_audio(p)
        assert str(p) in str(ei.value), name
    nan = _wav(tmp_path / "nan.wav", np.array([0.1, np.nan, 0.2] * 1000, np.float32), subtype="FLOAT")
    with pytest.raises(MediaError, match="nan.wav: audio contains NaN"):
        media.read_audio(nan)
    inf = _wav(tmp_path / "inf.wav", np.array([0.1, np.inf] * 1000, np.float32), subtype="FLOAT")
    with pytest.raises(MediaError, match="inf.wav: audio contains infinite"):
        media.read_audio(inf)


def test_truncated_wav_keeps_the_samples_present(tmp_path):
    tone = (0.3 * np.sin(np.arange(16000) / 10)).astype(np.float32)
    p = _wav(tmp_path / "t.wav", tone)
    p.write_bytes(p.read_bytes()[: 44 + 1000])  # header + 500 int16 samples
    x, sr = media.read_audio(p)
    assert sr == 16000 and x.shape == (500,)
    assert np.max(np.abs(x - tone[:500])) < 1 / 32768 + 1e-6


def test_silent_audio_loads_but_localization_refuses_it(tmp_path):
    p = _wav(tmp_path / "zero.wav", np.zeros(16000, np.float32))
    x, sr = media.read_audio(p)
    assert x.shape == (16000,) and not x.any()
    with pytest.raises(MediaError, match="zero.wav: the audio track is silent"):
        inference.load_audio_checked(p, window=1.0)


def test_truncated_and_garbage_video(tmp_path):
    frames = [np.full((32, 48, 3), 30 * i, np.uint8) for i in range(8)]
    p = tmp_path / "v.mp4"
    media.write_video(p, frames, 8, audio=np.zeros(16000, np.float32) + 0.1, sample_rate=16000)
    data = p.read_bytes()
    for cut in (40, len(data) // 2):
        t = tmp_path / f"cut{cut}.mp4"
        t.write_bytes(data[:cut])
        for fn in (media.probe, media.read_audio, inference.check_video):
            with pytest.raises(MediaError, match=f"cut{cut}.mp4"):
                fn(t)
        with pytest.raises(MediaError, match=f"cut{cut}.mp4"):
            list(media.iter_video_frames(t))
    z = tmp_path / "zero.mp4"
    z.write_bytes(b"")
    with pytest.raises(MediaError, match="zero.mp4: file is empty"):
        media.probe(z)


# ----------------------------------------------------------------------------------- datasets / runs
@pytest.fixture
def damaged(tiny_synth, tmp_path):
    """A copy of the tiny set with three broken training samples and two broken test samples."""
    root = tmp_path / "damaged"
    shutil.copytree(tiny_synth, root)
    fr, au = root / "frames", root / "audio"
    (fr / "train_000000.jpg").write_bytes((fr / "train_000000.jpg").read_bytes()[:200])
    _wav(au / "train_000001.wav", np.array([0.1, np.nan] * 8000, np.float32), subtype="FLOAT")
    (fr / "train_000002.jpg").write_bytes(b"")
    (fr / "test_000003.jpg").write_bytes(b"GIF89a garbage")
    (au / "test_000004.wav").write_bytes(b"")
    return root


def _cfg(root, out, extra=()):
    return load_config(
        resolve_config_path("small"),
        tiny_overrides(root, out) + ["train.epochs=1", f"data.val_list={Path(root) / 'none.txt'}", *extra],
    )


def test_training_skips_logs_and_counts_bad_samples(damaged, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="fnac.train")
    res = fit(_cfg(damaged, tmp_path / "run", ["data.max_skip_fraction=0.5"]))
    assert res.epochs_done == 1 and not res.stopped_early
    assert res.history[0]["skipped"] == 3  # every sample is visited once in the epoch
    text = caplog.text
    assert "skipped sample train_000000:" in text and "train_000000.jpg" in text
    assert "skipped sample train_000001:" in text and "NaN" in text
    assert "skipped sample train_000002:" in text and "empty" in text


def test_training_stops_above_the_skip_threshold(damaged, tmp_path):
    with pytest.raises(DataError, match=r"training samples failed to load, more than data.max_skip_fraction=0.01"):
        fit(_cfg(damaged, tmp_path / "run", ["data.max_skip_fraction=0.01"]))


def test_evaluation_counts_and_names_failed_samples(damaged, tmp_path):
    cfg = _cfg(damaged, tmp_path / "x")
    ds = build_dataset(cfg.data, "test", train=False)
    torch.manual_seed(0)
    model = FNAC(ModelConfig(width=8, embed_dim=16), load_pretrained=False)
    res = evaluate_model(model, ds, Protocol(), batch_size=8, baselines=False, progress=False)
    assert res.n_listed == 16 and res.n_evaluated == 14
    why = dict(res.failed)
    assert set(why) == {"test_000003", "test_000004"}
    assert "test_000003.jpg" in why["test_000003"] and "test_000004.wav" in why["test_000004"]
    assert "2 failed to load" in res.header()
    assert {r["id"] for r in res.per_sample}.isdisjoint(why)
