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
    rgba[:, 2:] = [0, 0, 0, 0]  # fully transparent -> white background
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = np.asarray(vision.open_image(tmp_path / "rgba.png"))
    assert out[0, 0].tolist() == [200, 10, 10] and out[0, 3].tolist() == [255, 255, 255]

    cmyk = Image.new("CMYK", (4, 4), (255, 0, 0, 0))  # pure cyan
    cmyk.save(tmp_path / "c.jpg", quality=100)
    c = np.asarray(vision.open_image(tmp_path / "c.jpg"))[1, 1].astype(int)
    assert c[0] < 10 and c[1] > 245 and c[2] > 245

    sixteen = np.array([[65535, 257 * 100], [0, 257 * 200]], np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "i16.png")
    out = np.asarray(vision.open_image(tmp_path / "i16.png"))
    assert out[..., 0].tolist() == [[255, 100], [0, 200]] and out.shape == (2, 2, 3)


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
