// fnac demo page: upload a video, poll the job, play the result and plot the peak track.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";
let info = null;
let track = null; // {sx, tMax, frames}

function setState(state) { document.body.dataset.state = state; }

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
  $("status").hidden = true;
  setState("error");
}

function clearError() { $("error").hidden = true; $("error").textContent = ""; }

function status(text, fraction) {
  $("status").hidden = false;
  $("status-text").textContent = text;
  if (fraction === null) $("progress").removeAttribute("value");
  else $("progress").value = fraction;
}

async function loadInfo() {
  try {
    const r = await fetch("/api/info");
    info = await r.json();
    const l = info.limits;
    $("limits").textContent = `Up to ${l.max_upload_mb} MB and ${l.max_seconds} s; ` +
      `${info.accepted.join(", ")}. The audio window is ${l.window} s, centred on each frame.`;
    const ck = info.checkpoint || {};
    $("model").textContent = ck.file ? `Model: ${ck.file}` + (ck.trained_on ? ` (trained on ${ck.trained_on}).` : ".") : "";
    if (info.max_smooth) $("smooth").max = String(info.max_smooth);
    $("file").accept = [...info.accepted, "video/*"].join(",");  // the server's list (fnac.media.VIDEO_SUFFIXES)
  } catch (e) {
    showError("Cannot reach the server: " + e);
  }
}

function checkFile(file) {
  if (!info) return null;
  const dot = file.name.lastIndexOf(".");
  const ext = dot >= 0 ? file.name.slice(dot).toLowerCase() : "";
  if (!info.accepted.includes(ext)) return `${file.name}: unsupported file type; upload ${info.accepted.join(", ")}`;
  if (file.size > info.max_upload_bytes)
    return `${file.name}: ${(file.size / 1048576).toFixed(1)} MB is more than the ${info.limits.max_upload_mb} MB limit`;
  if (file.size === 0) return `${file.name}: the file is empty`;
  return null;
}

function smoothing() {
  const v = Number($("smooth").value || 0);
  const max = info && info.max_smooth ? info.max_smooth : 10;
  if (!Number.isFinite(v) || v < 0 || v > max) return null;
  return v;
}

function upload(file, smooth) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/jobs?filename=" + encodeURIComponent(file.name) + "&smooth=" + smooth);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) status("Uploading...", e.loaded / e.total); };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      if (xhr.status === 202 && body) resolve(body);
      else reject(new Error(body && (body.error || body.detail) ? (body.error || JSON.stringify(body.detail))
                                                               : `upload failed (HTTP ${xhr.status})`));
    };
    xhr.onerror = () => reject(new Error("upload failed: the connection was closed (file too large?)"));
    xhr.send(file);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function poll(jobId) {
  for (;;) {
    const r = await fetch(`/api/jobs/${jobId}`);
    const job = await r.json();
    if (!r.ok) throw new Error(job.error || `HTTP ${r.status}`);
    if (job.state === "done") return job;
    if (job.state === "error") throw new Error(job.error || "localization failed");
    status(job.state === "queued" ? "Waiting for the previous video..." : "Localizing...", job.progress);
    await sleep(400);
  }
}

function el(name, attrs, parent) {
  const e = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

// Plot area inside the 640 x 220 view box.
const P = { left: 40, right: 615, top: 10, bottom: 190 };

function drawTrack(frames, duration) {
  const svg = $("peak-track");
  svg.replaceChildren();
  const tMax = Math.max(duration || 0, frames.length ? frames[frames.length - 1].time : 0, 1e-6);
  const sx = (t) => P.left + (P.right - P.left) * t / tMax;
  const sy = (v) => P.top + (P.bottom - P.top) * v;  // 0 at the top, like image coordinates
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    el("line", { x1: P.left, x2: P.right, y1: sy(v), y2: sy(v), class: "grid" }, svg);
    el("text", { x: P.left - 6, y: sy(v) + 4, "text-anchor": "end" }, svg).textContent = v.toFixed(2);
  }
  el("line", { x1: P.left, x2: P.left, y1: P.top, y2: P.bottom, class: "axis" }, svg);
  el("line", { x1: P.left, x2: P.right, y1: P.bottom, y2: P.bottom, class: "axis" }, svg);
  const ticks = 5;
  for (let i = 0; i <= ticks; i++) {
    const t = tMax * i / ticks;
    el("text", { x: sx(t), y: P.bottom + 16, "text-anchor": "middle" }, svg).textContent = t.toFixed(1) + " s";
  }
  const pts = (k) => frames.map((f) => `${sx(f.time).toFixed(1)},${sy(f.peak[k]).toFixed(1)}`).join(" ");
  el("polyline", { points: pts(0), class: "x", "data-axis": "x" }, svg);
  el("polyline", { points: pts(1), class: "y", "data-axis": "y" }, svg);
  el("line", { id: "cursor", x1: P.left, x2: P.left, y1: P.top, y2: P.bottom, class: "cursor" }, svg);
  svg.dataset.points = String(frames.length);
  track = { sx, tMax, frames };
  drawConfidence(frames, sx);
}

// Confidence of each frame, in its own 640 x 120 view box, on the same time axis.
function drawConfidence(frames, sx) {
  const svg = $("confidence-track");
  svg.replaceChildren();
  const top = 10, bottom = 100;
  const cMax = Math.max(1, ...frames.map((f) => f.confidence || 0));
  const sy = (v) => bottom - (bottom - top) * v / cMax;
  for (const v of [0, cMax / 2, cMax]) {
    el("line", { x1: P.left, x2: P.right, y1: sy(v), y2: sy(v), class: "grid" }, svg);
    el("text", { x: P.left - 6, y: sy(v) + 4, "text-anchor": "end" }, svg).textContent = v.toFixed(1);
  }
  el("line", { x1: P.left, x2: P.left, y1: top, y2: bottom, class: "axis" }, svg);
  el("line", { x1: P.left, x2: P.right, y1: bottom, y2: bottom, class: "axis" }, svg);
  const pts = frames.map((f) => `${sx(f.time).toFixed(1)},${sy(f.confidence || 0).toFixed(1)}`).join(" ");
  el("polyline", { points: pts, class: "c" }, svg);
  el("line", { id: "cursor-c", x1: P.left, x2: P.left, y1: top, y2: bottom, class: "cursor" }, svg);
}

function nearestFrame(t) {
  const fr = track ? track.frames : [];
  let best = null;
  for (const f of fr) if (best === null || Math.abs(f.time - t) < Math.abs(best.time - t)) best = f;
  return best;
}

function moveCursor() {
  if (!track) return;
  const t = Math.min($("result-video").currentTime, track.tMax);
  const x = track.sx(t);
  for (const id of ["cursor", "cursor-c"]) {
    const c = $(id);
    if (c) { c.setAttribute("x1", x); c.setAttribute("x2", x); }
  }
  const f = nearestFrame(t);
  if (f) $("frame-info").textContent = `t = ${f.time.toFixed(2)} s: peak x ${f.peak[0].toFixed(2)}, ` +
    `y ${f.peak[1].toFixed(2)}, confidence ${(f.confidence || 0).toFixed(2)}`;
}

function animate() {
  moveCursor();
  if (!$("result-video").paused) requestAnimationFrame(animate);
}

function showResult(job) {
  const res = job.result;
  const s = res.summary;
  drawTrack(res.frames, s.duration);
  const video = $("result-video");
  video.src = res.video_url;
  $("video-link").href = res.video_url;
  $("json-link").href = res.json_url;
  $("summary").textContent = `${job.filename}: ${s.frames_localized} frames localized in ${s.elapsed_s} s ` +
    `(${s.fps_achieved} frames/s); ${s.window} s audio windows at ${s.sample_rate} Hz` +
    (s.smooth ? `; maps smoothed over ${s.smooth} s.` : ".") +
    (s.warnings && s.warnings.length ? " Note: " + s.warnings.join(" ") : "");
  $("result").hidden = false;
  $("status").hidden = true;
  setState("done");
}

$("file").addEventListener("change", () => {
  clearError();
  const f = $("file").files[0];
  $("go").disabled = !f;
  if (f) { const problem = checkFile(f); if (problem) { showError(problem); $("go").disabled = true; } }
});

$("upload-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const file = $("file").files[0];
  if (!file) return;
  clearError();
  const problem = checkFile(file);
  if (problem) { showError(problem); return; }
  const smooth = smoothing();
  if (smooth === null) { showError(`Smoothing must be between 0 and ${$("smooth").max} seconds`); return; }
  $("go").disabled = true;
  $("result").hidden = true;
  setState("working");
  try {
    status("Uploading...", 0);
    const job = await upload(file, smooth);
    const done = await poll(job.job);
    showResult(done);
  } catch (e) {
    showError(e.message || String(e));
  } finally {
    $("go").disabled = false;
  }
});

$("result-video").addEventListener("play", () => requestAnimationFrame(animate));
$("result-video").addEventListener("timeupdate", moveCursor);
$("result-video").addEventListener("seeked", moveCursor);
$("result-video").addEventListener("error", () => {
  const v = $("result-video");
  showError("The browser cannot play the result video" + (v.error ? ` (code ${v.error.code})` : "") +
            "; download it with the link below.");
  $("result").hidden = false;
});

setState("idle");
loadInfo();
