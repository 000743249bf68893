"""Known pretrained weight files: where they come from, where they go, and a verified download.

``fnac weights fetch NAME`` is the only place fnac downloads anything. The file is streamed into
``<dest>/<file>.part`` (resumed with an HTTP Range request when a ``.part`` is already there), checked
against its known SHA-256 and size, and only then renamed to its final name; a download whose
checksum differs is deleted. Nothing else in fnac downloads: a model looks for the final file only.

Imports nothing of fnac but errors, so the model layer can ask where the weights would be.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from fnac import fileio
from fnac.errors import FnacError

URL_ENV = "FNAC_WEIGHTS_URL"
CHUNK = 1 << 20


class WeightsError(FnacError):
    """A weights download failed (network, server, checksum) or a name is unknown."""


@dataclass(frozen=True)
class KnownWeights:
    name: str  # what the user types: fnac weights fetch NAME
    filename: str  # the name torchvision gives the file in its hub cache
    url: str  # the official download address
    sha256: str  # full SHA-256 of the published file (torchvision puts its first 8 digits in the name)
    size: int  # bytes
    about: str  # one line for `fnac weights list`


KNOWN: dict[str, KnownWeights] = {
    "resnet18-imagenet": KnownWeights(
        name="resnet18-imagenet",
        filename="resnet18-f37072fd.pth",
        url="https://download.pytorch.org/models/resnet18-f37072fd.pth",
        sha256="f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec",
        size=46_830_571,
        about="torchvision ResNet-18, ImageNet-1k (IMAGENET1K_V1): the visual backbone's starting point",
    ),
}


def default_dir() -> Path:
    """The PyTorch hub cache, where torchvision keeps downloaded weights and fnac looks for them:
    ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``, by default
    ``~/.cache/torch/hub/checkpoints``)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def get(name: str) -> KnownWeights:
    try:
        return KNOWN[name]
    except KeyError:
        raise WeightsError(f"unknown weights '{name}'; known: {', '.join(sorted(KNOWN))}") from None


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def file_record(path: str | Path) -> dict:
    """What a run records about the weights it started from: the path and the file's SHA-256."""
    p = Path(path)
    return {"path": str(p.resolve()), "sha256": sha256_file(p)}


@dataclass
class Status:
    entry: KnownWeights
    path: Path
    state: str  # "verified", "checksum differs", "missing", "partial"
    detail: str = ""


def status(name: str, dest_dir: str | Path | None = None) -> Status:
    """Whether the file is in place and matches its known checksum (hashes the file if present)."""
    w = get(name)
    dest = Path(dest_dir) if dest_dir else default_dir()
    path = dest / w.filename
    part = _part(path)
    if path.is_file():
        digest = sha256_file(path)
        if digest == w.sha256:
            return Status(w, path, "verified")
        return Status(
            w,
            path,
            "checksum differs",
            f"sha256 {digest[:16]}..., expected {w.sha256[:16]}...; fetch again to replace it",
        )
    if part.is_file():
        return Status(w, path, "partial", f"{part.stat().st_size} of {w.size} bytes; fetch again to resume")
    return Status(w, path, "missing", f"fnac weights fetch {w.name}")


def _part(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def fetch(
    name: str, url: str | None = None, dest_dir: str | Path | None = None, progress: bool = True, timeout: float = 30.0
) -> Path:
    """Download the known file `name` into `dest_dir` (default: the PyTorch hub cache), verified.

    The address is `url`, else ``$FNAC_WEIGHTS_URL``, else the official one. Returns the final path.
    Already there and verified: nothing is downloaded. Raises WeightsError with one line when the
    server cannot be reached or answers with an error (the ``.part`` is kept, to resume), or when the
    finished file's size or checksum differs (the download is deleted)."""
    w = get(name)
    src = url or os.environ.get(URL_ENV) or w.url
    dest = Path(dest_dir) if dest_dir else default_dir()
    path = dest / w.filename
    part = _part(path)
    if path.is_file():
        if sha256_file(path) == w.sha256:
            return path
        path.unlink()  # a wrong file under the final name would be picked up by the model: replace it
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WeightsError(f"{dest}: cannot create the folder ({e.strerror or e})") from None

    have = part.stat().st_size if part.is_file() else 0
    if have > w.size:  # not a prefix of the published file: start again
        part.unlink()
        have = 0
    if have < w.size:
        _download(src, part, have, w.size, progress, timeout)
    _verify_and_install(w, part, path)
    return path


def _download(src: str, part: Path, have: int, size: int, progress: bool, timeout: float) -> None:
    headers = {"User-Agent": "fnac-weights"}
    if have:
        headers["Range"] = f"bytes={have}-"
    req = urllib.request.Request(src, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 - http(s) address given by the user
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing after `have`: the .part may already be complete
            return
        raise WeightsError(f"{src}: the server answered HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", None) or e
        raise WeightsError(
            f"{src}: cannot download ({reason}); check the network connection, "
            f"or give another address with --url or ${URL_ENV}"
        ) from None
    with resp:
        if have and resp.status != 206:  # the server ignored the Range header: start from the beginning
            have = 0
        mode = "ab" if have else "wb"
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else size
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name.removesuffix(".part"),
                dynamic_ncols=True,
            )
        got = have
        try:
            with open(part, mode) as f:
                while True:
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    f.write(block)
                    got += len(block)
                    if bar is not None:
                        bar.update(len(block))
                    if got > size:
                        break  # more than the published file: the checksum will refuse it
                f.flush()
                os.fsync(f.fileno())
        except (OSError, socket.timeout, urllib.error.URLError, http.client.HTTPException) as e:
            raise WeightsError(
                f"{src}: download interrupted after {got} of {size} bytes ({e}); run the same command again to resume"
            ) from None
        finally:
            if bar is not None:
                bar.close()


def _verify_and_install(w: KnownWeights, part: Path, path: Path) -> None:
    got = part.stat().st_size if part.is_file() else 0
    if got < w.size:
        raise WeightsError(f"{part}: the server sent {got} of {w.size} bytes; run the same command again to resume")
    digest = sha256_file(part)
    if got != w.size or digest != w.sha256:
        part.unlink()
        raise WeightsError(
            f"{w.filename}: checksum mismatch: sha256 {digest}, expected {w.sha256} "
            f"({got} bytes, expected {w.size}); the download was deleted"
        )
    fileio.durable_replace(part, path)  # the verified download becomes the file, flushed with its folder
