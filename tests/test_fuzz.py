"""Property-based fuzzing of the decoders and loaders: random bytes and mutated valid wav / jpg / png / mp4
files give either a valid result or MediaError naming the file, never another exception; uploaded file
names always sanitise to a safe base name (docs/reliability.md)."""

from __future__ import annotations

import io
import itertools
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fnac import media, vision
from fnac.errors import MediaError
from fnac.serve import sanitize_filename

SETTINGS = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_counter = itertools.count()


_SEEDS: dict[str, bytes] = {}


def _seeds() -> dict[str, bytes]:
    """Valid files to mutate, as bytes (built once; not a fixture, so failure reports stay short)."""
    if _SEEDS:
        return _SEEDS
    tone = (0.3 * np.sin(np.arange(4000) / 7)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, tone, 8000, format="WAV", subtype="PCM_16")
    _SEEDS[".wav"] = buf.getvalue()
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8))
    for ext, fmt in ((".jpg", "JPEG"), (".png", "PNG")):
        b = io.BytesIO()
        img.save(b, format=fmt)
        _SEEDS[ext] = b.getvalue()
    with tempfile.TemporaryDirectory() as d:
        frames = [np.full((16, 16, 3), 50 * i, np.uint8) for i in range(3)]
        media.write_video(Path(d) / "v.mp4", frames, 3, audio=tone, sample_rate=8000)
        _SEEDS[".mp4"] = (Path(d) / "v.mp4").read_bytes()
    return _SEEDS


@st.composite
def mutated(draw, kind: str):
    """(suffix, bytes): random bytes, or a valid file with flipped bytes, a cut, or inserted junk."""
    suffix = draw(st.sampled_from([".wav", ".jpg", ".png", ".mp4"])) if kind == "any" else kind
    how = draw(st.sampled_from(["random", "flip", "truncate", "insert"]))
    return suffix, how, draw(st.randoms(use_true_random=False))


def _make(suffix: str, how: str, rnd) -> bytes:
    base = bytearray(_seeds()[suffix])
    if how == "random":
        return bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 600)))
    if how == "flip":  # concentrate on the header, where parsers make decisions
        for _ in range(rnd.randint(1, 12)):
            i = rnd.randrange(min(len(base), 128)) if rnd.random() < 0.7 else rnd.randrange(len(base))
            base[i] = rnd.getrandbits(8)
        return bytes(base)
    if how == "truncate":
        return bytes(base[: rnd.randrange(len(base))])
    i = rnd.randrange(len(base))
    return bytes(base[:i] + bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 64))) + base[i:])


def _write(tmp, suffix: str, data: bytes):
    p = tmp / f"f{next(_counter)}{suffix}"
    p.write_bytes(data)
    return p


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@SETTINGS
@given(case=mutated("any"))
def test_read_audio_valid_or_media_error(tmp, case):
    suffix, how, rnd = case
    if suffix in (".jpg", ".png"):
        suffix = ".wav"
    p = _write(tmp, suffix, _make(suffix, how, rnd))
    try:
        x, sr = media.read_audio(p)
    except MediaError as e:
        assert str(p) in str(e)
        return
    assert x.dtype == np.float32 and x.ndim == 1 and x.size > 0 and sr > 0
    assert np.all(np.isfinite(x)) and np.abs(x).max() <= 1.0


@SETTINGS
@given(case=mutated("any"))
def test_open_image_valid_or_media_error(tmp, case):
    suffix, how, rnd = case
    if suffix in (".wav", ".mp4"):
        suffix = ".png"
    p = _write(tmp, suffix, _make(suffix, how, rnd))
    try:
        img = vision.open_image(p)
    except MediaError as e:
        assert str(p) in str(e)
        return
    assert img.mode == "RGB" and img.size[0] * img.size[1] <= Image.MAX_IMAGE_PIXELS
    x = vision.test_transform(img, 16)
    assert tuple(x.shape) == (3, 16, 16)


@SETTINGS
@given(case=mutated(".mp4"))
def test_probe_and_frames_valid_or_media_error(tmp, case):
    _, how, rnd = case
    p = _write(tmp, ".mp4", _make(".mp4", how, rnd))
    try:
        info = media.probe(p)
    except MediaError as e:
        assert str(p) in str(e)
        return
    assert math.isfinite(info.duration) and info.duration >= 0
    assert info.width >= 0 and info.height >= 0 and info.n_frames >= 0
    try:  # decoding the frames of what probed fine: frames or MediaError
        frames = list(itertools.islice(media.iter_video_frames(p), 10))
    except MediaError as e:
        assert str(p) in str(e)
        return
    assert all(img.mode == "RGB" and math.isfinite(t) for _, t, img in frames)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    name=st.one_of(
        st.text(max_size=300),
        st.lists(st.sampled_from(["..", "/", "\\", ".", "a", "é", "\0", "mp4", " ", "C:"]), max_size=40).map("".join),
    )
)
def test_sanitize_filename_is_always_a_safe_base_name(name):
    out = sanitize_filename(name)
    assert 0 < len(out) <= 100
    assert "/" not in out and "\\" not in out and "\0" not in out
    assert not out.startswith((".", " "))
    assert all(c.isascii() and (c.isalnum() or c in "._ -") for c in out)
    assert out not in (".", "..")
