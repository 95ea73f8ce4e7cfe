// imgpipe dashboard: live progress, CSV upload and image comparison. No build step.
"use strict";

const RUNNING = new Set(["running", "queued"]);
const POLL_MS = 1500;

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  return { response, body };
}

function setText(root, field, value) {
  const node = root.querySelector(`[data-field="${field}"]`);
  if (node && value !== undefined && value !== null) node.textContent = String(value);
}

function setBadge(root, status) {
  const badge = root.querySelector('.badge[data-field="status"]');
  if (!badge) return;
  badge.className = `badge ${status}`;
  badge.textContent = status.replaceAll("_", " ");
}

function setProgress(root, batch) {
  const bar = root.querySelector(".progress > div");
  const total = batch.total_creators || 0;
  const done = batch.done || 0;
  const pct = total ? Math.round((done / total) * 100) : (RUNNING.has(batch.status) ? 0 : 100);
  if (bar) bar.style.width = `${pct}%`;
  const holder = root.querySelector(".progress");
  if (holder) holder.setAttribute("aria-valuenow", String(pct));
  setText(root, "done", done);
  setText(root, "total", total);
}

// The batch list: refresh the rows of running batches until none is left.
async function pollBatches() {
  const rows = [...document.querySelectorAll("#batches tr[data-batch]")];
  if (!rows.some((r) => RUNNING.has(r.dataset.status))) return;
  const { response, body } = await api("/v1/batches");
  if (response.ok && Array.isArray(body)) {
    const known = new Set(rows.map((r) => r.dataset.batch));
    if (body.some((b) => !known.has(b.batch_id))) { location.reload(); return; }
    for (const batch of body) {
      const row = document.querySelector(`#batches tr[data-batch="${CSS.escape(batch.batch_id)}"]`);
      if (!row) continue;
      row.dataset.status = batch.status;
      setBadge(row, batch.status);
      setProgress(row, batch);
      for (const f of ["completed", "skipped", "failed"]) setText(row, f, batch[f]);
    }
  }
  setTimeout(pollBatches, POLL_MS);
}

// One batch: update counts while it runs; re-render when creators finish or it ends.
async function pollBatch() {
  const root = document.getElementById("batch");
  if (!root || !RUNNING.has(root.dataset.status)) return;
  // creators=false: the batch record alone, one lookup however large the batch is.
  const { response, body } = await api(`/v1/batches/${encodeURIComponent(root.dataset.batch)}?creators=false`);
  if (response.ok && body) {
    setBadge(root, body.status);
    setProgress(root, body);
    for (const f of ["completed", "skipped", "failed"]) setText(root, f, body[f]);
    showLiveCovers(body.live || {});
    const done = String(body.done || 0);
    // New tiles appear by re-rendering, while the whole batch fits one page; a large
    // batch updates its counts in place and re-renders once, when it ends.
    const grew = root.dataset.live === "1" && done !== root.dataset.done;
    if (!RUNNING.has(body.status) || body.status !== root.dataset.status || grew) {
      location.reload();
      return;
    }
  }
  setTimeout(pollBatch, POLL_MS);
}

// "processing · 12/35 covers" on the rows of creators whose covers are downloading.
function showLiveCovers(live) {
  for (const row of document.querySelectorAll("#creators tr[data-creator]")) {
    const counts = live[row.dataset.creator];
    const span = row.querySelector('[data-field="live"]');
    if (!span) continue;
    if (!counts) {
      if (row.dataset.status === "processing") span.hidden = true;
      continue;
    }
    if (row.dataset.status !== "processing") {
      row.dataset.status = "processing";
      setBadge(row, "processing");
    }
    const failed = counts.covers_failed ? `, ${counts.covers_failed} failed` : "";
    span.textContent = ` · ${counts.covers_ok}/${counts.covers_total} covers${failed}`;
    span.hidden = false;
  }
}

// Tiles shimmer until their image has painted.
function markLoadedThumbs() {
  for (const img of document.querySelectorAll(".thumb img")) {
    const done = () => img.parentElement.classList.add("loaded");
    if (img.complete && img.naturalWidth) done();
    else {
      img.addEventListener("load", done, { once: true });
      img.addEventListener("error", done, { once: true });
    }
  }
}

function bindUpload() {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const msg = document.getElementById("upload-msg");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData();
    for (const [name, value] of new FormData(form)) {
      if (value !== "" && !(value instanceof File && !value.name)) data.append(name, value);
    }
    submitWith(form, msg, "Uploading…", "Upload failed", async () => {
      const { response, body } = await api("/v1/batches", { method: "POST", body: data });
      if (response.status === 202 && body) {
        location.href = `/batches/${encodeURIComponent(body.batch_id)}`;
        return null;
      }
      return describeError(response, body);
    });
  });
}

// Both forms: the button is busy while the request runs; the status line shows
// progress, then nothing on success (send returns null) or what went wrong.
async function submitWith(form, msg, busyText, failedText, send) {
  const button = form.querySelector("button");
  button.disabled = true;
  msg.className = "msg";
  msg.textContent = busyText;
  try {
    const problem = await send();
    if (problem) {
      msg.className = "msg error";
      msg.textContent = problem;
    }
  } catch (error) {
    msg.className = "msg error";
    msg.textContent = `${failedText}: ${error}`;
  } finally {
    button.disabled = false;
  }
}

function describeError(response, body) {
  // Every JSON error is the envelope {code, msg, data}; msg names the field or file.
  if (body && body.msg) return body.msg;
  return `The server answered ${response.status}.`;
}

function bindCompare() {
  const form = document.getElementById("compare-form");
  if (!form) return;
  for (const input of form.querySelectorAll('input[type="file"]')) {
    input.addEventListener("change", () => {
      const box = document.getElementById(input.dataset.preview);
      box.textContent = "";
      const file = input.files[0];
      if (!file) { box.textContent = "No image chosen"; return; }
      const img = document.createElement("img");
      img.alt = file.name;
      img.src = URL.createObjectURL(file);
      box.appendChild(img);
    });
  }
  const msg = document.getElementById("compare-msg");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitWith(form, msg, "Comparing…", "Comparison failed", async () => {
      const { response, body } = await api("/v1/compare", { method: "POST", body: new FormData(form) });
      if (body && body.code === 200) {
        msg.textContent = "";
        showComparison(body.data);
        return null;
      }
      return describeError(response, body);
    });
  });
}

function showComparison(data) {
  document.getElementById("compare-result").classList.remove("hidden");
  document.getElementById("score").textContent = data.similarity.toFixed(3);
  const verdict = document.getElementById("verdict");
  verdict.className = `verdict ${data.similar ? "yes" : "no"}`;
  verdict.textContent = data.similar ? "Similar" : "Not similar";
  document.getElementById("elapsed").textContent =
    `threshold ${data.threshold} · ${data.backend} · ${Math.round(data.elapsed_ms)} ms`;
  const bars = document.getElementById("bars");
  bars.textContent = "";
  for (const [aspect, score] of Object.entries(data.scores)) {
    const row = document.createElement("div");
    row.className = "bar";
    row.dataset.aspect = aspect;
    const label = document.createElement("span");
    label.textContent = aspect.replaceAll("_", " ");
    const track = document.createElement("div");
    track.className = "progress";
    const fill = document.createElement("div");
    fill.style.width = `${Math.max(0, Math.min(1, score)) * 100}%`;
    track.appendChild(fill);
    const value = document.createElement("span");
    value.className = "num";
    value.textContent = Number(score).toFixed(2);
    row.append(label, track, value);
    bars.appendChild(row);
  }
  document.getElementById("explanation").textContent = data.explanation || "";
}

document.addEventListener("DOMContentLoaded", () => {
  markLoadedThumbs();
  bindUpload();
  bindCompare();
  setTimeout(pollBatches, POLL_MS);
  setTimeout(pollBatch, POLL_MS);
});
