"""vision: image modes, errors, test/train transforms against plain Pillow + numpy computations."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from fnac import vision
from fnac.errors import MediaError

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def _photo(w: int = 320, h: int = 240, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (w + h)], -1)
    noise = rng.integers(0, 40, size=(h, w, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


def _reference(img: Image.Image) -> np.ndarray:
    """uint8 HWC -> normalised CHW float32 with numpy."""
    a = np.asarray(img, dtype=np.uint8).astype(np.float32) / np.float32(255)
    return ((a - MEAN) / STD).transpose(2, 0, 1)


@pytest.mark.parametrize("size, wh", [(224, (320, 240)), (224, (224, 224)), (64, (97, 151)), (224, (100, 60))])
def test_test_transform_equals_pillow(size, wh):
    img = _photo(*wh)
    got = vision.test_transform(img, size)
    assert got.shape == (3, size, size) and got.dtype == torch.float32
    np.testing.assert_array_equal(got.numpy(), _reference(img.resize((size, size), Image.Resampling.BICUBIC)))


def test_train_transform_shape_determinism_and_pillow():
    img = _photo(320, 240)
    a = vision.train_transform(img, 224, random.Random(7))
    b = vision.train_transform(img, 224, random.Random(7))
    assert a.shape == (3, 224, 224) and torch.equal(a, b)
    # independent: shorter side 240 -> 246, longer int(246 * 320 / 240) = 328; then crop and flip
    rng = random.Random(7)
    big = img.resize((328, 246), Image.Resampling.BICUBIC)
    top, left = rng.randint(0, 246 - 224), rng.randint(0, 328 - 224)
    arr = np.asarray(big)[top : top + 224, left : left + 224]
    if rng.random() < 0.5:
        arr = arr[:, ::-1]
    np.testing.assert_array_equal(a.numpy(), _reference(Image.fromarray(np.ascontiguousarray(arr))))


def test_train_transform_varies_and_flips():
    img = _photo(300, 400)  # portrait: width is the shorter side
    outs = [vision.train_transform(img, 64, random.Random(s)) for s in range(20)]
    assert all(o.shape == (3, 64, 64) for o in outs)
    assert len({o.numpy().tobytes() for o in outs}) > 10
    # flips happen: the horizontal gradient in the red channel changes sign across seeds
    slopes = [float(o[0, :, -8:].mean() - o[0, :, :8].mean()) for o in outs]
    assert min(slopes) < 0 < max(slopes)


def test_normalize_batch_matches_per_image():
    imgs = [_photo(32, 32, seed=s) for s in range(3)]
    batch = torch.from_numpy(np.stack([np.asarray(i) for i in imgs])).permute(0, 3, 1, 2)  # (B, 3, H, W) uint8
    got = vision.normalize(batch)
    assert got.shape == (3, 3, 32, 32) and got.dtype == torch.float32
    for k, img in enumerate(imgs):
        np.testing.assert_array_equal(got[k].numpy(), _reference(img))
    back = vision.denormalize(got)
    np.testing.assert_allclose(back.numpy() * 255, batch.numpy(), atol=1e-3)


def test_constants():
    assert vision.IMAGENET_MEAN == (0.485, 0.456, 0.406)
    assert vision.IMAGENET_STD == (0.229, 0.224, 0.225)


# ------------------------------------------------------------------------------------------- opening


def test_open_and_load_image(tmp_path):
    img = _photo(50, 40)
    img.save(tmp_path / "a.png")
    opened = vision.open_image(tmp_path / "a.png")
    assert opened.mode == "RGB" and opened.size == (50, 40)
    np.testing.assert_array_equal(np.asarray(opened), np.asarray(img))
    expected = _reference(img.resize((32, 32), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(vision.load_image(tmp_path / "a.png", 32).numpy(), expected)


def test_modes_to_rgb(tmp_path):
    Image.fromarray(np.full((4, 4), 77, np.uint8), "L").save(tmp_path / "l.png")
    assert np.asarray(vision.open_image(tmp_path / "l.png"))[0, 0].tolist() == [77, 77, 77]

    p = Image.new("P", (4, 4))
    p.putpalette([10, 20, 30] + [0, 0, 0] * 255)
    p.save(tmp_path / "p.png")
    assert np.asarray(vision.open_image(tmp_path / "p.png"))[0, 0].tolist() == [10, 20, 30]

    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[:, :2] = [200, 10, 10, 255]  # opaque red stays red
    rgba[:, 2:] = [0, 0, 0, 0]  # fully transparent: the stored black (default), white with alpha="white"
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = np.asarray(vision.open_image(tmp_path / "rgba.png"))
    assert out[0, 0].tolist() == [200, 10, 10] and out[0, 3].tolist() == [0, 0, 0]
    out = np.asarray(vision.open_image(tmp_path / "rgba.png", alpha="white"))
    assert out[0, 0].tolist() == [200, 10, 10] and out[0, 3].tolist() == [255, 255, 255]

    cmyk = Image.new("CMYK", (4, 4), (255, 0, 0, 0))  # pure cyan
    cmyk.save(tmp_path / "c.jpg", quality=100)
    c = np.asarray(vision.open_image(tmp_path / "c.jpg"))[1, 1].astype(int)
    assert c[0] < 10 and c[1] > 245 and c[2] > 245

    sixteen = np.array([[65535, 257 * 100], [0, 257 * 200]], np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "i16.png")
    out = np.asarray(vision.open_image(tmp_path / "i16.png"))
    assert out[..., 0].tolist() == [[255, 100], [0, 200]] and out.shape == (2, 2, 3)


def _transparent_images(tmp_path):
    """RGBA, LA, P with a palette alpha table and P with one transparent index, saved as PNG."""
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    rgba[0, 0] = [0, 0, 0, 0]
    rgba[0, 1] = [250, 10, 30, 0]  # invisible colour: kept by .convert('RGB'), white when composited
    la = rng.integers(0, 256, (5, 7, 2), dtype=np.uint8)
    pal = Image.fromarray(rng.integers(0, 4, (5, 7), dtype=np.uint8), "P")
    pal.putpalette([40, 50, 60, 200, 0, 0, 0, 200, 0, 0, 0, 0] + [0] * (252 * 3))
    pal_table = pal.copy()
    pal_table.info["transparency"] = bytes([255, 128, 0, 30])  # alpha per palette entry
    pal_index = pal.copy()
    pal_index.info["transparency"] = 3  # index 3 is transparent
    paths = {}
    for name, img in (
        ("rgba", Image.fromarray(rgba, "RGBA")),
        ("la", Image.fromarray(la, "LA")),
        ("p_table", pal_table),
        ("p_index", pal_index),
    ):
        paths[name] = tmp_path / f"{name}.png"
        img.save(paths[name])
    return paths


@pytest.mark.filterwarnings("ignore:Palette images")
def test_alpha_drop_is_pillow_convert_rgb(tmp_path):
    # the reference: Image.open(path).convert('RGB'), which drops alpha and keeps the stored colour
    for name, path in _transparent_images(tmp_path).items():
        with Image.open(path) as im:
            assert name.startswith(("rgba", "la")) or "transparency" in im.info, name
            expected = np.asarray(im.convert("RGB"))
        got = np.asarray(vision.open_image(path))
        np.testing.assert_array_equal(got, expected, err_msg=name)
        ref = vision.test_transform(Image.open(path).convert("RGB"), 32)
        torch.testing.assert_close(vision.load_image(path, 32), ref, rtol=0, atol=0)


def test_alpha_white_composites_over_white(tmp_path):
    paths = _transparent_images(tmp_path)
    for name, path in paths.items():
        with Image.open(path) as im:
            rgba = np.asarray(im.convert("RGBA")).astype(np.float64)
        # out = a c + (1 - a) 255 with a = alpha / 255, per channel (Pillow rounds: allow 1)
        a = rgba[..., 3:] / 255.0
        expected = a * rgba[..., :3] + (1.0 - a) * 255.0
        got = np.asarray(vision.open_image(path, alpha="white")).astype(np.float64)
        assert np.abs(got - expected).max() <= 1.0, name
    got = np.asarray(vision.open_image(paths["rgba"], alpha="white"))
    assert got[0, 0].tolist() == [255, 255, 255] and got[0, 1].tolist() == [255, 255, 255]
    assert np.asarray(vision.open_image(paths["rgba"]))[0, 1].tolist() == [250, 10, 30]


def test_alpha_mode_is_checked(tmp_path):
    from fnac.config import DataConfig
    from fnac.data import build_dataset
    from fnac.errors import ConfigError

    Image.new("RGB", (2, 2)).save(tmp_path / "x.png")
    with pytest.raises(ConfigError, match="data.alpha.*black"):
        vision.open_image(tmp_path / "x.png", alpha="black")
    with pytest.raises(ConfigError, match="data.alpha"):
        build_dataset(DataConfig(root=str(tmp_path), alpha="grey"), "test", train=False)


def test_open_image_errors(tmp_path):
    with pytest.raises(MediaError, match="nope.jpg.*not found"):
        vision.open_image(tmp_path / "nope.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(MediaError, match="empty.jpg.*empty"):
        vision.open_image(tmp_path / "empty.jpg")
    (tmp_path / "junk.jpg").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(MediaError, match="junk.jpg.*not a recognised image"):
        vision.open_image(tmp_path / "junk.jpg")
    _photo(64, 64).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="cut.jpg.*(corrupt|truncated)"):
        vision.open_image(tmp_path / "cut.jpg")
    with pytest.raises(MediaError, match="not a regular file"):
        vision.open_image(tmp_path)


def test_datasets_pass_data_alpha_to_the_decoder(tmp_path):
    """A transparent frame in a dataset: data.alpha=drop gives the model input of Pillow's
    convert('RGB'), data.alpha=white that of the frame composited over white."""
    import soundfile as sf

    from fnac.config import DataConfig
    from fnac.data import build_dataset

    (tmp_path / "frames").mkdir()
    (tmp_path / "audio").mkdir()
    rgba = np.random.default_rng(5).integers(0, 256, (20, 24, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "frames" / "a.png")
    sf.write(tmp_path / "audio" / "a.wav", np.zeros(16000, np.float32) + 0.1, 16000)
    (tmp_path / "train.txt").write_text("a\n")
    with Image.open(tmp_path / "frames" / "a.png") as im:
        dropped = im.convert("RGB")
        white = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im.convert("RGBA"))
    for mode, ref in (("drop", dropped), ("white", white.convert("RGB"))):
        cfg = DataConfig(root=str(tmp_path), image_size=16, audio_duration=1.0, alpha=mode)
        sample = build_dataset(cfg, "train", train=False)[0]
        torch.testing.assert_close(sample["image"], vision.test_transform(ref, 16), rtol=0, atol=0)
