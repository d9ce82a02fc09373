// DodoLens upload page: chunked parallel upload, live events over the WebSocket, the inventory, erasure.
// Plain JS, no build step. Everything shown from the server goes in with textContent, never as HTML.
"use strict";

const PARALLEL = 3;
const MAX_ATTEMPTS = 6;
const HASH_LIMIT = 256 * 1024 * 1024; // hashing reads the whole file in memory: only below this size
const HEAD_BYTES = 65536; // how much of a file's start the MP4 box walk looks at (processors/video/sniff.py)
const STAGES = {
  session_created: "session created",
  chunk_received: "uploading",
  upload_complete: "queued",
  processing_started: "decoding",
  frames_extracted: "analyzing",
  ai_analysis_progress: "analyzing",
  analysis_complete: "done",
  session_erased: "erased",
};

const $ = (id) => document.getElementById(id);
const LANG = (navigator.language || "en").toLowerCase().startsWith("fr") ? "fr" : "en";
let names = {}; // catalogue id -> {fr, en}: results carry ids, people read names
const state = { video: null, name: "", sid: null, token: null, ws: null, lastEventId: "", finished: false, sent: 0 };

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function errorOf(response) {
  try {
    const body = await response.json();
    return new ApiError(response.status, body.error.code, body.error.message);
  } catch (_) {
    return new ApiError(response.status, String(response.status), response.statusText);
  }
}

// One API call, retried with jittered exponential backoff on network errors, 429 and 5xx.
async function api(method, path, { json, body, expect = [200] } = {}) {
  const headers = {};
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/octet-stream";
  }
  let delay = 250;
  for (let attempt = 1; ; attempt++) {
    let response = null;
    try {
      response = await fetch(path, { method, headers, body });
    } catch (err) {
      if (attempt >= MAX_ATTEMPTS) throw new ApiError(0, "network", `cannot reach the server (${err.message})`);
    }
    if (response) {
      if (expect.includes(response.status)) return response;
      if (!(response.status === 429 || response.status >= 500) || attempt >= MAX_ATTEMPTS) throw await errorOf(response);
      const retryAfter = Number(response.headers.get("Retry-After"));
      if (retryAfter > 0) delay = retryAfter * 1000;
    }
    await sleep(delay * (0.75 + Math.random() / 2));
    delay = Math.min(delay * 2, 10000);
  }
}

function showError(message) {
  const el = $("error");
  el.textContent = message;
  el.hidden = !message;
}

function megabytes(n) {
  return `${(n / 1048576).toFixed(1)} MB`;
}

function renderUpload() {
  const size = state.video ? state.video.size : 0;
  $("upload-bar").value = size ? state.sent / size : 0;
  $("upload-text").textContent = `${megabytes(state.sent)} / ${megabytes(size)} (${Math.floor((100 * state.sent) / (size || 1))} %)`;
}

function chooseVideo(blob, name) {
  state.video = blob;
  state.name = name;
  $("chosen").textContent = `${name} — ${megabytes(blob.size)}`;
  $("start").disabled = false;
  showError("");
}

// ---- camera -------------------------------------------------------------------------------------

let recorder = null;
let stream = null;

async function openCamera() {
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    showError("This browser cannot record video here (a secure https page is needed).");
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: true });
  } catch (err) {
    showError(`Camera unavailable: ${err.message}`);
    return;
  }
  const preview = $("preview");
  preview.srcObject = stream;
  preview.hidden = false;
  await preview.play().catch(() => {});
  $("record").hidden = false;
  $("camera").hidden = true;
}

function startRecording() {
  const parts = [];
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (event) => { if (event.data.size) parts.push(event.data); };
  recorder.onstop = () => {
    const type = recorder.mimeType || "video/webm";
    const blob = new Blob(parts, { type });
    stream.getTracks().forEach((track) => track.stop());
    $("preview").hidden = true;
    $("stop").hidden = true;
    $("camera").hidden = false;
    chooseVideo(blob, type.includes("mp4") ? "recording.mp4" : "recording.webm");
  };
  recorder.start(1000);
  $("record").hidden = true;
  $("stop").hidden = false;
}

// ---- events -------------------------------------------------------------------------------------

function logEvent(event) {
  const item = document.createElement("li");
  const data = Object.assign({}, event.data);
  delete data.result;
  item.textContent = `${event.timestamp.slice(11, 19)} ${event.type} ${JSON.stringify(data)}`;
  $("events").appendChild(item);
}

function onEvent(event) {
  state.lastEventId = event.id || state.lastEventId;
  logEvent(event);
  if (STAGES[event.type]) {
    let label = STAGES[event.type];
    if (event.type === "ai_analysis_progress" && event.data.progress !== undefined) {
      label += ` (${event.data.stage || ""} ${Math.round(100 * event.data.progress)} %)`;
    }
    $("stage").textContent = label;
  }
  if (event.type === "analysis_complete") {
    state.finished = true;
    renderResult(event.data.result);
  } else if (event.type === "error" && event.data.final !== false) {
    state.finished = true;
    $("stage").textContent = "failed";
    showError(`${event.data.code}: ${event.data.message}`);
  } else if (event.type === "session_erased") {
    state.finished = true;
  }
}

function connectEvents() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  let url = `${scheme}://${location.host}/sessions/${state.sid}/events?token=${encodeURIComponent(state.token)}`;
  if (state.lastEventId) url += `&last_event_id=${encodeURIComponent(state.lastEventId)}`;
  const ws = new WebSocket(url);
  state.ws = ws;
  ws.onmessage = (message) => onEvent(JSON.parse(message.data));
  ws.onclose = () => {
    if (state.ws === ws && !state.finished && state.sid) setTimeout(connectEvents, 1000);
  };
  return new Promise((resolve) => {
    ws.onopen = resolve;
    ws.onerror = resolve;
  });
}

// ---- upload -------------------------------------------------------------------------------------

// {type, offset, size} of each ISO BMFF top-level box whose header lies in `head` (an ArrayBuffer), as
// processors/video/sniff.py: top_level_boxes. Stops at the first header that is not a box; size 0 (to the end) ends the walk.
function topLevelBoxes(head) {
  const view = new DataView(head);
  const boxes = [];
  for (let position = 0; position + 8 <= view.byteLength;) {
    let size = view.getUint32(position);
    const type = new Uint8Array(head, position + 4, 4);
    if (type.some((b) => b > 0x7f)) break;
    if (size === 1) {
      if (position + 16 > view.byteLength) break;
      size = Number(view.getBigUint64(position + 8));
      if (size < 16) break;
    } else if (size === 0) {
      boxes.push({ type: String.fromCharCode(...type), offset: position, size: 0 });
      break;
    } else if (size < 8) {
      break;
    }
    boxes.push({ type: String.fromCharCode(...type), offset: position, size });
    position += size;
  }
  return boxes;
}

// Where an MP4's index written at the end (as phones do) may start: the end of its first mdat; null otherwise.
function indexOffset(head) {
  for (const box of topLevelBoxes(head)) {
    if (box.type === "moov") return null;
    if (box.type === "mdat") return box.size ? box.offset + box.size : null;
  }
  return null;
}

// The chunks holding an index at the end (processors/video/sniff.py: leading_chunks); empty for any other file.
function leadingChunks(head, size, chunkSize) {
  const offset = indexOffset(head);
  if (offset === null || !(chunkSize <= offset && offset < size)) return [];
  const first = Math.floor(offset / chunkSize);
  return Array.from({ length: Math.ceil(size / chunkSize) - first }, (_, i) => first + i);
}

// PUT the given chunks, PARALLEL at a time.
async function putChunks(indexes, chunkSize) {
  const queue = indexes.slice();
  async function worker() {
    while (queue.length) {
      const index = queue.shift();
      const part = state.video.slice(index * chunkSize, (index + 1) * chunkSize);
      await (await api("PUT", `/sessions/${state.sid}/chunks/${index}`, { body: part })).json();
      state.sent += part.size;
      renderUpload();
    }
  }
  await Promise.all(Array.from({ length: PARALLEL }, worker));
}

// The chunks holding an MP4's index at the end go first, and are all stored before any other is sent: the server
// can then decode the video while the rest arrives, as with the Python client (dodolens/client.py: send_chunks).
async function sendChunks(indexes, chunkSize) {
  let lead = new Set();
  if (indexes.length > 1) {
    const head = await state.video.slice(0, HEAD_BYTES).arrayBuffer();
    lead = new Set(leadingChunks(head, state.video.size, chunkSize));
  }
  await putChunks(indexes.filter((index) => lead.has(index)), chunkSize);
  await putChunks(indexes.filter((index) => !lead.has(index)), chunkSize);
}

async function sha256(blob) {
  if (!window.crypto || !crypto.subtle || blob.size > HASH_LIMIT) return undefined;
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function analyze() {
  $("start").disabled = true;
  $("progress").hidden = false;
  $("result").hidden = true;
  $("events").textContent = "";
  $("erased").textContent = "";
  showError("");
  Object.assign(state, { sid: null, token: null, lastEventId: "", finished: false, sent: 0 });
  renderUpload();
  try {
    const created = await (await api("POST", "/sessions", {
      json: { size: state.video.size, filename: state.name, content_type: state.video.type || "application/octet-stream" },
      expect: [201],
    })).json();
    state.sid = created.session_id;
    state.token = created.token;
    $("privacy").hidden = false;
    $("erase").disabled = false;
    await connectEvents();
    const count = Math.max(1, Math.ceil(state.video.size / created.chunk_size));
    await sendChunks([...Array(count).keys()], created.chunk_size);
    $("stage").textContent = "checking";
    const body = { chunks: count };
    const digest = await sha256(state.video);
    if (digest) body.sha256 = digest;
    for (let round = 0; ; round++) {
      try {
        await api("POST", `/sessions/${state.sid}/complete`, { json: body, expect: [202] });
        break;
      } catch (err) {
        if (err.code !== "missing_chunks" || round >= 2) throw err;
        const status = await (await api("GET", `/sessions/${state.sid}`)).json();
        await sendChunks(status.missing_chunks, created.chunk_size);
      }
    }
  } catch (err) {
    state.finished = true;
    $("stage").textContent = "failed";
    showError(`${err.code || "error"}: ${err.message}`);
  } finally {
    $("start").disabled = false;
  }
}

// ---- result and erasure -------------------------------------------------------------------------

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
}

function renderResult(result) {
  const body = $("inventory").querySelector("tbody");
  body.textContent = "";
  const inventory = result.inventory;
  const analysis = result.analysis || {};
  $("analysis-note").textContent = analysis.status === "skipped"
    ? `Analysis skipped: ${analysis.reason || "no model configured"}. ${result.frames.length} frames were extracted from a ${result.video.duration_s.toFixed(1)} s video.`
    : `${result.frames.length} frames of a ${result.video.duration_s.toFixed(1)} s video analysed${analysis.model ? ` by ${analysis.model}` : ""}.`;
  for (const room of (inventory && inventory.rooms) || []) {
    for (const item of room.items) {
      const row = document.createElement("tr");
      if (item.excluded) row.className = "excluded";
      cell(row, room.name);
      cell(row, item.label || (names[item.catalogue_id] || {})[LANG] || item.catalogue_id || "?");
      cell(row, String(item.quantity), "num");
      cell(row, (item.quantity * item.volume_m3).toFixed(2), "num");
      const notes = [item.fragile && "fragile", item.needs_disassembly && "disassembly", item.excluded && "stays"];
      cell(row, notes.filter(Boolean).join(", "));
      body.appendChild(row);
    }
  }
  $("total-volume").textContent = `${(inventory ? inventory.total_volume_m3 : 0).toFixed(2)} m³`;
  $("result").hidden = false;
}

async function erase() {
  if (!state.sid) return;
  $("erase").disabled = true;
  try {
    const receipt = await (await api("DELETE", `/sessions/${state.sid}`)).json();
    state.finished = true;
    if (state.ws) state.ws.close();
    Object.assign(state, { sid: null, token: null, ws: null });
    $("inventory").querySelector("tbody").textContent = "";
    $("total-volume").textContent = "—";
    $("result").hidden = true;
    const erasedAt = new Date(receipt.erased_at * 1000).toLocaleTimeString();
    $("erased").textContent = `Erased at ${erasedAt}: ${receipt.redis_keys_deleted.length} stored item(s) deleted, `
      + `result ${receipt.result_deleted ? "deleted" : "not stored"}.`;
  } catch (err) {
    $("erase").disabled = false;
    showError(`erase failed: ${err.message}`);
  }
}

async function loadNames() {
  try {
    const response = await fetch("/catalogue.json");
    if (response.ok) names = (await response.json()).items;
  } catch (_) {
    // names are a nicety: without them the table shows catalogue ids
  }
}

document.addEventListener("DOMContentLoaded", () => {
  loadNames();
  $("file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) chooseVideo(file, file.name);
  });
  $("camera").addEventListener("click", openCamera);
  $("record").addEventListener("click", startRecording);
  $("stop").addEventListener("click", () => recorder && recorder.stop());
  $("start").addEventListener("click", analyze);
  $("erase").addEventListener("click", erase);
});
