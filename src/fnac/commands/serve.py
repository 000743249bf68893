"""`fnac serve`: a local web page to localize the sound in an uploaded video."""

from __future__ import annotations

import argparse
import ipaddress
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from fnac.errors import ConfigError

NAME = "serve"
HELP = "local demo web page: upload a video, watch the heat map follow the sound"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        required=True,
        help="trained checkpoint (ours or the authors'), or a folder written by fnac export",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=50.0, help="largest upload in MB (default 50)")
    p.add_argument("--max-seconds", type=float, default=60.0, help="longest video in seconds (default 60)")
    p.add_argument("--every", type=int, default=1, help="localize every K-th frame (default 1)")
    p.add_argument(
        "--window", type=float, default=None, help="seconds of audio per frame (default: the checkpoint's, else 3)"
    )
    p.add_argument("--batch-size", type=int, default=16, help="frames per model batch (default 16)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (default cpu)")
    p.add_argument(
        "--format",
        choices=("mp4", "webm"),
        default="mp4",
        help="result video: mp4 (H.264 + AAC, default) or webm (VP9 + Opus)",
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="drop an upload that sends nothing for this many seconds (408; default 10)",
    )
    p.add_argument(
        "--workdir",
        help="folder for uploads and results (default: a temporary folder, removed on exit, Ctrl-C or SIGTERM)",
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    from fnac import inference as inf
    from fnac.serve import Limits, create_app

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be in 1..65535, got {args.port}")
    if args.max_upload_mb <= 0 or args.max_seconds <= 0:
        raise ConfigError("--max-upload-mb and --max-seconds must be > 0")
    if args.every < 1 or args.batch_size < 1:
        raise ConfigError("--every and --batch-size must be >= 1")
    if not args.body_timeout > 0:
        raise ConfigError(f"--body-timeout must be > 0 seconds, got {args.body_timeout}")
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("fnac serve needs uvicorn: pip install 'fnac[serve]'") from None
    loaded = inf.load_model(args.checkpoint, device=args.device)
    window = args.window if args.window is not None else inf.InferenceDefaults.from_config(loaded.config).window
    limits = Limits(
        max_upload_mb=args.max_upload_mb,
        max_seconds=args.max_seconds,
        every=args.every,
        window=window,
        batch_size=args.batch_size,
        device=args.device,
        video_format=args.format,
        body_timeout=args.body_timeout,
    )
    tmp = None
    workdir = Path(args.workdir) if args.workdir else Path(tmp := tempfile.mkdtemp(prefix="fnac-serve-"))
    if not _is_loopback(args.host):
        print(f"warning: binding to {args.host}: anyone who can reach this machine can upload videos", file=sys.stderr)
    app = create_app(loaded.model, limits, workdir, checkpoint=args.checkpoint, config=loaded.config)
    print(f"fnac serve: open http://{args.host}:{args.port}/ (Ctrl-C to stop)", file=sys.stderr)
    # uvicorn stops gracefully on SIGINT / SIGTERM and then raises the signal again with the handler
    # that was in place before it started; SIGTERM's default would kill the process before the
    # temporary folder is removed, so that handler turns it into an exception.
    try:
        old = signal.signal(signal.SIGTERM, _raise_stop)
    except ValueError:  # not the main thread: uvicorn leaves signals alone there too
        old = None
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    except (KeyboardInterrupt, _Stop):
        print("fnac serve: stopped", file=sys.stderr)
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


class _Stop(Exception):
    """SIGTERM, once uvicorn has shut down."""


def _raise_stop(signum, frame) -> None:
    raise _Stop()
