"""The local demo: upload a video, get it back with the heat map over it and the peak track.

`create_app(model, limits, workdir, checkpoint, config)` builds the FastAPI app (tests drive it with
starlette's TestClient). Uploads arrive as the raw request body (`POST /api/jobs?filename=NAME`), are streamed to
disk and cut off past the size limit (413) or when the client stops sending for `body_timeout`
seconds (408, the partial file deleted); a place in the queue is taken before the body is read, so
at most `max_queue` uploads and jobs are in flight and the next one gets 429 with nothing written;
the extension and a probe of the file decide whether it
is a video with sound (415 / 422); the duration is checked from the probe before anything is
decoded. One worker thread runs the same localization as `fnac localize` (`fnac.inference`, with the
image size and sample rate of the checkpoint's run config `config`), one job at a time; the page polls
`GET /api/jobs/{id}` and then plays `GET /api/jobs/{id}/overlay.mp4`.
Errors are JSON: {"error": "..."}.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import tempfile
import threading
import time
import unicodedata
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from fnac import inference as inf
from fnac import media, outputs
from fnac.config import Config
from fnac.errors import FnacError, MediaError
from fnac.models.fnac import FNAC

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
ALLOWED_SUFFIXES = media.VIDEO_SUFFIXES  # uploads accepted (the page's file picker offers the same)
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_CHUNK = 1 << 16
OUTPUT_TYPES = {"mp4": "video/mp4", "webm": "video/webm"}
MAX_SMOOTH = 10.0  # seconds: the largest temporal smoothing window a page may ask for


@dataclass
class Limits:
    """What the server accepts and how it localizes."""

    max_upload_mb: float = 50.0  # request bodies past this are cut off (413)
    max_seconds: float = 60.0  # longer videos are refused from the probe (413)
    every: int = 1  # localize every K-th frame
    window: float = inf.REFERENCE_WINDOW  # seconds of audio centred on each frame (`fnac serve`: the checkpoint's)
    batch_size: int = 16
    device: str = "cpu"
    video_format: str = "mp4"  # result container: "mp4" (H.264 + AAC) or "webm" (VP9 + Opus)
    max_queue: int = 4  # uploads in progress plus jobs waiting or running; more get 429
    keep_jobs: int = 8  # finished jobs kept (files and all); older ones are deleted as jobs finish
    body_timeout: float = 10.0  # seconds an upload may send nothing before it is dropped (408)
    max_pixels: int = inf.MAX_VIDEO_PIXELS  # larger frames are refused from the probe (413)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def sanitize_filename(name: str | None, default: str = "upload") -> str:
    """A display-safe base name: path components dropped (both / and \\), characters outside
    [A-Za-z0-9._ -] replaced by '_', leading dots and spaces removed, at most 100 characters
    (the extension kept). Never used as a path on the server: uploads are stored as input<ext>."""
    name = unicodedata.normalize("NFKC", name or "")
    name = re.split(r"[/\\]", name)[-1]
    name = re.sub(r"[^A-Za-z0-9._ -]", "_", name).strip().lstrip(". ")
    if not name or set(name) <= {"_", ".", " ", "-"}:
        name = default
    if len(name) > 100:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 99 - len(ext)] + "." + ext) if dot and len(ext) <= 10 else name[:100]
    return name


@dataclass
class Job:
    id: str
    filename: str  # sanitised display name
    dir: Path
    input: Path
    duration: float
    smooth: float = 0.0  # seconds of temporal smoothing of the maps asked for by the page
    state: str = "queued"  # queued | running | done | error
    progress: float = 0.0
    error: str | None = None
    summary: dict | None = None
    frames: list[dict] = field(default_factory=list)
    created: float = field(default_factory=time.time)

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "job": self.id,
            "state": self.state,
            "filename": self.filename,
            "progress": round(self.progress, 4),
            "duration": round(self.duration, 3),
        }
        if self.error:
            out["error"] = self.error
        if self.state == "done":
            out["result"] = {
                "video_url": f"/api/jobs/{self.id}/overlay",
                "json_url": f"/api/jobs/{self.id}/result.json",
                "summary": self.summary,
                "frames": self.frames,
            }
        return out


class JobManager:
    """Jobs in memory, run one at a time by a single worker thread."""

    def __init__(
        self, model: FNAC, limits: Limits, workdir: Path, defaults: inf.InferenceDefaults | None = None
    ) -> None:
        self.model = model
        self.limits = limits
        self.defaults = defaults if defaults is not None else inf.InferenceDefaults()  # the checkpoint's
        self.workdir = workdir
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fnac-localize")
        self.uploading = 0  # places taken by uploads still being received or checked
        self.closing = threading.Event()

    def active(self) -> int:
        with self.lock:
            return self._active()

    def _active(self) -> int:
        return self.uploading + sum(j.state in ("queued", "running") for j in self.jobs.values())

    def reserve(self) -> bool:
        """Take a place in the queue for an upload about to be read; False when the queue is full."""
        with self.lock:
            if self.closing.is_set() or self._active() >= self.limits.max_queue:
                return False
            self.uploading += 1
            return True

    def release(self) -> None:
        """Give back the place of an upload that did not become a job."""
        with self.lock:
            self.uploading = max(0, self.uploading - 1)

    def new_dir(self) -> tuple[str, Path]:
        jid = uuid.uuid4().hex
        d = self.workdir / "jobs" / jid
        d.mkdir(parents=True)
        return jid, d

    def submit(self, job: Job) -> None:
        """Queue a job whose upload holds a place (`reserve`); the place passes to the job."""
        with self.lock:
            self.uploading = max(0, self.uploading - 1)
            self.jobs[job.id] = job
            self._evict()
        self.pool.submit(self._run, job)

    def get(self, jid: str) -> Job | None:
        with self.lock:
            return self.jobs.get(jid)

    def _evict(self) -> None:
        done = [j for j in self.jobs.values() if j.state in ("done", "error")]
        for j in done[: max(0, len(done) - self.limits.keep_jobs)]:
            self.jobs.pop(j.id, None)
            shutil.rmtree(j.dir, ignore_errors=True)

    def evict(self) -> None:
        with self.lock:
            self._evict()

    def _run(self, job: Job) -> None:
        try:
            self._localize(job)
        finally:
            self.evict()  # finished jobs past keep_jobs go now, not when the next upload arrives

    def _localize(self, job: Job) -> None:
        lim = self.limits
        if self.closing.is_set():
            return
        job.state = "running"

        def progress(done: int, total: int) -> None:
            if self.closing.is_set():
                raise _Stopped()
            job.progress = 0.9 * min(1.0, done / max(total, 1))  # the last 10%: writing the video

        try:
            result = inf.localize_video(
                self.model,
                job.input,
                every=lim.every,
                window=lim.window,
                batch_size=lim.batch_size,
                device=lim.device,
                progress=False,
                on_progress=progress,
                smooth=job.smooth,
                defaults=self.defaults,
            )
            outputs.write_overlay_video(result, job.dir / f"overlay.{lim.video_format}")
            doc = result.to_dict()
            doc["summary"]["video"] = job.filename
            doc["summary"]["warnings"] = [self._user_text(w, job) for w in doc["summary"]["warnings"]]
            outputs.write_json(doc, job.dir / "result.json")
            job.summary = doc["summary"]
            job.frames = [
                {"time": f["time"], "peak": f["peak"], "box": f["box"], "confidence": f["confidence"]}
                for f in doc["frames"]
            ]
            job.progress = 1.0
            job.state = "done"
        except _Stopped:
            job.error = f"{job.filename}: the server is shutting down"
            job.state = "error"
        except FnacError as e:
            job.error = self._user_text(str(e), job)
            job.state = "error"
        except Exception as e:  # noqa: BLE001 - the page must get an answer, the log the traceback
            log.exception("job %s failed", job.id)
            job.error = f"{job.filename}: internal error while localizing ({type(e).__name__})"
            job.state = "error"

    @staticmethod
    def _user_text(text: str, job: Job) -> str:
        """Name the user's file, not the server's storage path."""
        return text.replace(str(job.input), job.filename)

    def shutdown(self) -> None:
        """Stop: queued jobs are dropped, a running one stops at its next batch; waits for the worker
        so that nothing writes into the work folder afterwards."""
        self.closing.set()
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Stopped(Exception):
    """Raised inside a running job when the server shuts down."""


def trained_on(config: Config | None) -> str | None:
    """The data root the checkpoint was trained on (its run config), None when it does not say."""
    root = config.data.root if config is not None else None
    return str(root) if root else None


def _error(status: int, message: str) -> JSONResponse:
    """Every error of the API: {"error": message} with the status."""
    return JSONResponse({"error": message}, status_code=status)


def _checked_limits(limits: Limits | None) -> Limits:
    limits = limits or Limits()
    if limits.video_format not in OUTPUT_TYPES:
        raise FnacError(f"serve: video_format must be one of {sorted(OUTPUT_TYPES)}, got {limits.video_format!r}")
    if not limits.body_timeout > 0:
        raise FnacError(f"serve: body_timeout must be > 0 seconds, got {limits.body_timeout}")
    return limits


def _lifespan(manager: JobManager, remove: Path | None):
    """Shut the job manager down with the app, then remove the work folder `remove` (if not None)."""

    @asynccontextmanager
    async def lifespan(_app):
        try:
            yield
        finally:
            await run_in_threadpool(manager.shutdown)
            if remove is not None:  # a temporary folder made by create_app is removed with the server
                shutil.rmtree(remove, ignore_errors=True)

    return lifespan


def create_app(
    model: FNAC,
    limits: Limits | None = None,
    workdir: str | Path | None = None,
    checkpoint: str | Path | None = None,
    config: Config | None = None,
):
    """The FastAPI app. `workdir` holds uploads and results (a fresh temporary folder if None, removed
    when the app shuts down); `checkpoint` is the file the model came from (shown on the page);
    `config` is the run config stored with it (``fnac.inference.load_model(path).config``): its image
    size and sample rate are used, and its data root shown. None (the authors' files) = the
    reference's settings. The audio window is `limits.window`."""
    limits = _checked_limits(limits)
    own = not workdir
    wd = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="fnac-serve-"))
    wd.mkdir(parents=True, exist_ok=True)
    model.eval()
    defaults = inf.InferenceDefaults.from_config(config)
    manager = JobManager(model, limits, wd, defaults)
    app = FastAPI(
        title="fnac demo",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=_lifespan(manager, wd if own else None),
    )
    app.state.manager = manager
    app.state.limits = limits
    app.state.workdir = wd
    _add_page_routes(app)
    _add_info_route(app, limits, checkpoint, config, defaults)
    _add_upload_route(app, manager, limits)
    _add_result_routes(app, manager, limits)
    return app


def _add_page_routes(app: FastAPI) -> None:
    """The page, its static files, and an empty favicon."""

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


def _add_info_route(
    app: FastAPI,
    limits: Limits,
    checkpoint: str | Path | None,
    config: Config | None,
    defaults: inf.InferenceDefaults,
) -> None:
    """GET /api/info: the limits, accepted types and the checkpoint, for the page."""

    @app.get("/api/info")
    def info() -> dict:
        return {
            "limits": {k: v for k, v in asdict(limits).items() if k not in ("device",)},
            "max_upload_bytes": limits.max_upload_bytes,
            "accepted": list(ALLOWED_SUFFIXES),
            "image_size": defaults.image_size,
            "video_type": OUTPUT_TYPES[limits.video_format],
            "max_smooth": MAX_SMOOTH,
            "checkpoint": {"file": Path(checkpoint).name if checkpoint else None, "trained_on": trained_on(config)},
        }


def _add_upload_route(app: FastAPI, manager: JobManager, limits: Limits) -> None:
    """POST /api/jobs: what can be refused from the query and headers is, before a place in the queue
    is taken; then the body is received (`_receive_upload`)."""

    @app.post("/api/jobs", status_code=202)
    async def create_job(request: Request, filename: str = Query("", max_length=1000), smooth: float = Query(0.0)):
        name = sanitize_filename(filename)
        suffix = Path(name).suffix.lower()
        if suffix not in ALLOWED_SUFFIXES:
            return _error(
                415,
                f"{name}: unsupported file type {suffix or '(no extension)'}; "
                f"upload a video ({', '.join(ALLOWED_SUFFIXES)})",
            )
        if not 0 <= smooth <= MAX_SMOOTH:  # also refuses NaN
            return _error(422, f"{name}: smoothing must be between 0 and {MAX_SMOOTH:g} seconds, got {smooth:g}")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limits.max_upload_bytes:
            return _error(
                413, f"{name}: {int(declared) / 2**20:.1f} MB is more than the {limits.max_upload_mb:g} MB limit"
            )
        if not manager.reserve():  # before the body is read: concurrent uploads count too
            return _error(
                429, f"{name}: the server is busy with {limits.max_queue} other videos; try again in a minute"
            )
        held = [True]  # the place passes to the job when it is submitted
        try:
            return await _receive_upload(request, manager, limits, name, suffix, held, smooth)
        finally:
            if held[0]:
                manager.release()


async def _stream_body(request: Request, path: Path, limits: Limits) -> tuple[int, str]:
    """Write the request body to `path` until it ends, passes the size limit (the rest is never read)
    or stalls (nothing for `limits.body_timeout` seconds). Returns (bytes received, "complete" |
    "too big" | "stalled"); a client that goes away raises."""
    size = 0
    stream = request.stream().__aiter__()
    with open(path, "wb") as f:
        while True:
            try:
                chunk = await asyncio.wait_for(stream.__anext__(), limits.body_timeout)
            except StopAsyncIteration:
                return size, "complete"
            except asyncio.TimeoutError:
                return size, "stalled"
            size += len(chunk)
            if size > limits.max_upload_bytes:
                return size, "too big"
            f.write(chunk)


def _probe_problem(mi: media.MediaInfo, name: str, limits: Limits) -> tuple[int, str] | None:
    """(status, message) when a probed upload cannot be localized under the limits, else None."""
    if not mi.has_video:
        return 415, f"{name}: no video track"
    if not mi.has_audio:
        return 422, f"{name}: no audio track; localization needs the sound"
    if mi.duration > limits.max_seconds:
        return 413, f"{name}: {mi.duration:.1f} s long; the limit is {limits.max_seconds:g} s"
    if mi.width * mi.height > limits.max_pixels:
        return 413, f"{name}: frames of {mi.width}x{mi.height} are too large (limit {limits.max_pixels} pixels)"
    return None


async def _receive_upload(
    request: Request, manager: JobManager, limits: Limits, name: str, suffix: str, held: list[bool], smooth: float
):
    """Receive the body into a new job folder, probe it, and queue the job (202); any refusal removes
    the folder. `held[0]` becomes False when the queue place passes to the job."""
    jid, d = manager.new_dir()
    path = d / f"input{suffix}"
    try:
        size, outcome = await _stream_body(request, path, limits)
    except Exception as e:  # noqa: BLE001 - a client that disconnects mid-upload
        shutil.rmtree(d, ignore_errors=True)
        return _error(400, f"{name}: upload interrupted ({type(e).__name__})")
    if outcome == "stalled":
        shutil.rmtree(d, ignore_errors=True)
        return JSONResponse(
            {
                "error": f"{name}: the upload stalled (nothing received for "
                f"{limits.body_timeout:g} s after {size} bytes); try again"
            },
            status_code=408,
            headers={"Connection": "close"},
        )
    if outcome == "too big":
        shutil.rmtree(d, ignore_errors=True)
        return _error(413, f"{name}: more than the {limits.max_upload_mb:g} MB upload limit")
    if size == 0:
        shutil.rmtree(d, ignore_errors=True)
        return _error(400, f"{name}: the upload is empty")
    try:
        mi = await run_in_threadpool(media.probe, path)
    except MediaError:
        shutil.rmtree(d, ignore_errors=True)
        return _error(415, f"{name}: not a video file that can be read (unknown or corrupt format)")
    problem = _probe_problem(mi, name, limits)
    if problem:
        shutil.rmtree(d, ignore_errors=True)
        return _error(*problem)
    job = Job(id=jid, filename=name, dir=d, input=path, duration=mi.duration, smooth=float(smooth))
    held[0] = False
    manager.submit(job)
    return JSONResponse(job.public(), status_code=202)


def _add_result_routes(app: FastAPI, manager: JobManager, limits: Limits) -> None:
    """GET /api/jobs/{id} (state), /overlay (the video) and /result.json of a job."""

    def find(jid: str) -> Job | None:
        return manager.get(jid) if _JOB_ID.match(jid) else None

    @app.get("/api/jobs/{jid}")
    def job_status(jid: str):
        job = find(jid)
        if job is None:
            return _error(404, f"no job {jid!r} (finished jobs are kept for a while only)")
        return job.public()

    @app.get("/api/jobs/{jid}/overlay")
    def job_video(jid: str):
        job = find(jid)
        if job is None or job.state != "done":
            return _error(404, f"no result video for job {jid!r}")
        p = job.dir / f"overlay.{limits.video_format}"
        stem = Path(job.filename).stem
        return FileResponse(
            p,
            media_type=OUTPUT_TYPES[limits.video_format],
            filename=f"{stem}_fnac.{limits.video_format}",
            content_disposition_type="inline",
        )

    @app.get("/api/jobs/{jid}/result.json")
    def job_json(jid: str):
        job = find(jid)
        if job is None or job.state != "done":
            return _error(404, f"no result for job {jid!r}")
        return FileResponse(job.dir / "result.json", media_type="application/json")
