"""`fnac weights`: a verified, resumable, atomic download served by a local HTTP server (127.0.0.1;
never the internet), `fnac weights list`, what a model does with and without the weights
(model.pretrained: none, pretrained_required) and the record of the weights a run used."""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import socket
import threading

import pytest
import torch

from conftest import tiny_overrides
from fnac import weights as W
from fnac.checkpoint import save_checkpoint
from fnac.cli import main
from fnac.config import Config, ModelConfig, load_config, resolve_config_path
from fnac.errors import CheckpointError, ConfigError
from fnac.models.fnac import FNAC
from fnac.models.resnet import ResNet18Trunk, torch_cache_resnet18

NAME = "resnet18-imagenet"
FILE = "resnet18-f37072fd.pth"


def _payload(n: int = 3 * 1024 * 1024 + 4567) -> bytes:
    g = torch.Generator().manual_seed(7)
    return bytes(torch.randint(0, 256, (n,), generator=g, dtype=torch.uint8).tolist())


class _Server:
    """Serves `body` at /<FILE>, honouring Range unless told not to; `cut` stops after that many bytes
    of a response (the connection is closed early). Records the Range header and bytes sent."""

    def __init__(self, body: bytes, honour_range: bool = True, cut: int | None = None):
        self.body, self.honour_range, self.cut = body, honour_range, cut
        self.ranges: list[str | None] = []
        self.sent = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if not self.path.endswith("/" + FILE):
                    self.send_error(404, "Not Found")
                    return
                rng = self.headers.get("Range")
                outer.ranges.append(rng)
                start = 0
                if rng and outer.honour_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(outer.body):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(outer.body) - 1}/{len(outer.body)}")
                else:
                    self.send_response(200)
                data = outer.body[start:]
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if outer.cut is not None:
                    data = data[: outer.cut]
                self.wfile.write(data)
                outer.sent += len(data)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{FILE}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_known(monkeypatch):
    """The known entry with the checksum and size of a local payload (the real file is 45 MB)."""
    body = _payload()
    entry = W.KnownWeights(
        name=NAME,
        filename=FILE,
        url="http://127.0.0.1:9/unused",
        sha256=hashlib.sha256(body).hexdigest(),
        size=len(body),
        about="test file",
    )
    monkeypatch.setitem(W.KNOWN, NAME, entry)
    monkeypatch.delenv(W.URL_ENV, raising=False)
    return body


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_known_entry_is_torchvision_official_file():
    w = W.KNOWN[NAME]
    assert w.url == "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    assert w.filename == FILE and w.url.endswith("/" + w.filename)
    # torchvision names its files by the first 8 hex digits of the file's SHA-256
    assert w.sha256[:8] == "f37072fd" and len(w.sha256) == 64
    assert w.size == 46_830_571


def test_fetch_downloads_verifies_and_installs_atomically(tmp_path, fake_known, capsys):
    dest = tmp_path / "cache"
    with _Server(fake_known) as srv:
        assert main(["weights", "fetch", NAME, "--url", srv.url, "--dir", str(dest), "--quiet"]) == 0
        assert (dest / FILE).read_bytes() == fake_known
        assert not (dest / (FILE + ".part")).exists()
        assert srv.ranges == [None] and srv.sent == len(fake_known)
        assert "verified" in capsys.readouterr().out
        # already there and verified: nothing is downloaded again
        assert main(["weights", "fetch", NAME, "--url", srv.url, "--dir", str(dest), "--quiet"]) == 0
        assert len(srv.ranges) == 1


@pytest.mark.parametrize("honour_range", [True, False])
def test_fetch_resumes_a_partial_download(tmp_path, fake_known, honour_range):
    dest = tmp_path / "cache"
    dest.mkdir()
    have = 1024 * 1024 + 123
    (dest / (FILE + ".part")).write_bytes(fake_known[:have])
    with _Server(fake_known, honour_range=honour_range) as srv:
        path = W.fetch(NAME, url=srv.url, dest_dir=dest, progress=False)
    assert path == dest / FILE and path.read_bytes() == fake_known
    assert srv.ranges == [f"bytes={have}-"]
    # a server that honours Range sends only the rest; one that ignores it sends everything again
    assert srv.sent == (len(fake_known) - have if honour_range else len(fake_known))
    assert not (dest / (FILE + ".part")).exists()


def test_interrupted_download_keeps_the_part_which_is_never_used_then_resumes(
    tmp_path, fake_known, monkeypatch, capsys
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    dest = W.default_dir()
    assert dest == tmp_path / "torch" / "hub" / "checkpoints"
    with _Server(fake_known, cut=2_000_000) as srv:
        assert main(["weights", "fetch", NAME, "--url", srv.url, "--quiet"]) == 1
    _one_line_error(capsys, "2000000 of", "again to resume")
    assert (dest / (FILE + ".part")).stat().st_size == 2_000_000
    assert not (dest / FILE).exists()
    assert torch_cache_resnet18() is None  # the model never picks up a .part
    with _Server(fake_known) as srv:
        monkeypatch.setenv(W.URL_ENV, srv.url)  # the address from the environment
        assert main(["weights", "fetch", NAME, "--quiet"]) == 0
        assert srv.ranges == ["bytes=2000000-"]
    assert (dest / FILE).read_bytes() == fake_known
    assert torch_cache_resnet18() == str(dest / FILE)


def test_checksum_mismatch_is_refused_and_deleted(tmp_path, fake_known, capsys):
    dest = tmp_path / "cache"
    bad = bytearray(fake_known)
    bad[1000] ^= 0xFF  # same size, one byte differs
    with _Server(bytes(bad)) as srv:
        assert main(["weights", "fetch", NAME, "--url", srv.url, "--dir", str(dest), "--quiet"]) == 1
    _one_line_error(capsys, "checksum mismatch", "deleted")
    assert not (dest / FILE).exists() and not (dest / (FILE + ".part")).exists()
    # a stale .part whose bytes are wrong is not trusted either: the finished file fails and is deleted,
    # and the next fetch starts over and succeeds
    (dest / (FILE + ".part")).write_bytes(bytes(bad[:5000]))
    with _Server(fake_known) as srv:
        with pytest.raises(W.WeightsError, match="checksum mismatch"):
            W.fetch(NAME, url=srv.url, dest_dir=dest, progress=False)
        assert not (dest / FILE).exists() and not (dest / (FILE + ".part")).exists()
        W.fetch(NAME, url=srv.url, dest_dir=dest, progress=False)
    assert (dest / FILE).read_bytes() == fake_known
    # a wrong file already under the final name is replaced, never kept
    (dest / FILE).write_bytes(b"not the weights")
    with _Server(fake_known) as srv:
        W.fetch(NAME, url=srv.url, dest_dir=dest, progress=False)
    assert (dest / FILE).read_bytes() == fake_known


def test_server_down_or_error_is_one_line(tmp_path, fake_known, capsys):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    dest = tmp_path / "cache"
    assert (
        main(["weights", "fetch", NAME, "--url", f"http://127.0.0.1:{port}/{FILE}", "--dir", str(dest), "--quiet"]) == 1
    )
    _one_line_error(capsys, f"127.0.0.1:{port}", "cannot download")
    assert not (dest / FILE).exists()
    with _Server(fake_known) as srv:
        assert (
            main(
                ["weights", "fetch", NAME, "--url", srv.url.replace(FILE, "missing.pth"), "--dir", str(dest), "--quiet"]
            )
            == 1
        )
    _one_line_error(capsys, "HTTP 404")
    assert main(["weights", "fetch", "resnet50", "--dir", str(dest)]) == 1
    _one_line_error(capsys, "unknown weights 'resnet50'", NAME)


def test_weights_list_shows_place_and_state(tmp_path, fake_known, capsys):
    dest = tmp_path / "cache"

    def state():
        assert main(["weights", "list", "--dir", str(dest)]) == 0
        out = capsys.readouterr().out
        assert str(dest / FILE) in out and NAME in out
        return [ln.split(None, 1)[1] for ln in out.splitlines() if ln.strip().startswith("status")][0]

    assert state().startswith("missing") and "fnac weights fetch resnet18-imagenet" in state()
    dest.mkdir()
    (dest / (FILE + ".part")).write_bytes(fake_known[:10])
    assert state().startswith(f"partial (10 of {len(fake_known)} bytes")
    (dest / FILE).write_bytes(fake_known)
    assert state() == "verified"
    (dest / FILE).write_bytes(fake_known[:-1] + b"x")
    assert state().startswith("checksum differs")


# ---------------------------------------------------------------------------------------------
# What a model does with the weights (or without them)


def _imagenet_file(path, seed=1, layers=2, width=64):
    """torchvision-named resnet18 weights for the stages a `visual_layers`-stage trunk keeps, plus fc
    (width < 64: the same names at a CPU-test size, for an explicitly named model.pretrained file)."""
    torch.manual_seed(seed)
    sd = ResNet18Trunk(3, width, layers).state_dict()
    sd = {k: torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v for k, v in sd.items()}
    sd["fc.weight"], sd["fc.bias"] = torch.zeros(1000, 8 * width), torch.zeros(1000)
    torch.save(sd, path)
    return sd


def test_pretrained_none_is_random_on_purpose(tmp_path, monkeypatch, caplog):
    def no_lookup():
        raise AssertionError("the cache must not be consulted")

    monkeypatch.setattr("fnac.models.fnac.torch_cache_resnet18", no_lookup)
    with caplog.at_level(logging.WARNING):
        m = FNAC(ModelConfig(pretrained="none"))
    assert m.pretrained_weights is None and "random initialisation" not in caplog.text
    save_checkpoint(tmp_path / "ck.pt", m, Config())  # a random start is recorded as such
    assert torch.load(tmp_path / "ck.pt", weights_only=True)["pretrained"] is None
    with pytest.raises(ConfigError, match="pretrained_required"):
        FNAC(ModelConfig(pretrained="none", pretrained_required=True))
    for name in ("small", "small_ezvsl"):  # the demo's configs
        cfg = load_config(resolve_config_path(name), [])
        assert cfg.model.pretrained == "none"
        with caplog.at_level(logging.WARNING):
            FNAC(cfg.model)
        assert "random initialisation" not in caplog.text


def test_missing_weights_warn_or_stop_naming_the_fetch_command(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty cache
    with caplog.at_level(logging.WARNING):
        m = FNAC(ModelConfig(visual_layers=2, embed_dim=16))
    assert m.pretrained_weights is None
    assert "random initialisation" in caplog.text and "fnac weights fetch resnet18-imagenet" in caplog.text
    for name in ("reference_vggss", "reference_flickr"):
        cfg = load_config(resolve_config_path(name), [])
        assert cfg.model.pretrained_required is True
        with pytest.raises(CheckpointError, match="fnac weights fetch resnet18-imagenet"):
            FNAC(cfg.model)
    # once fetched into the cache, the reference model starts from it and records it
    dest = W.default_dir()
    dest.mkdir(parents=True)
    _imagenet_file(dest / FILE, layers=4)
    cfg = load_config(resolve_config_path("reference_vggss"), [])
    m = FNAC(cfg.model)
    digest = hashlib.sha256((dest / FILE).read_bytes()).hexdigest()
    assert m.pretrained_weights == {"path": str((dest / FILE).resolve()), "sha256": digest}


def test_training_records_the_weights_in_log_and_every_checkpoint(tmp_path, tiny_synth):
    weights = tmp_path / "resnet18-test.pth"
    _imagenet_file(weights, seed=1, layers=4, width=8)
    first = {"path": str(weights.resolve()), "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    out = tmp_path / "run"
    args = [
        "train",
        "--config",
        "small",
        *tiny_overrides(tiny_synth, out),
        "model.visual_layers=4",
        f"model.pretrained={weights}",
        "train.max_steps_per_epoch=2",
    ]
    assert main([*args, "train.epochs=1"]) == 0
    start = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert start["kind"] == "start" and start["pretrained"] == first
    for name in ("latest.pt", "best.pt"):
        assert torch.load(out / name, weights_only=True)["pretrained"] == first
    # resuming keeps the record of the weights the run started from, even if the file changed since
    _imagenet_file(weights, seed=2, layers=4, width=8)
    assert hashlib.sha256(weights.read_bytes()).hexdigest() != first["sha256"]
    assert main(["train", "--config", "small", "--resume", *args[3:], "train.epochs=2"]) == 0
    ck = torch.load(out / "latest.pt", weights_only=True)
    assert ck["epoch"] == 2 and ck["pretrained"] == first
