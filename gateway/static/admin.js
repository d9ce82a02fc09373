// DodoLens operations page: polls /admin/api/overview and fills the page. No framework, no build step.
// Authentication is the HttpOnly cookie the sign-in form's POST set: this code never sees it.
"use strict";

const POLL_MS = 2000;

function $(id) { return document.getElementById(id); }
function set(id, text) { $(id).textContent = text; }

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}
function pct(f) { return f === null || f === undefined ? "–" : (100 * f).toFixed(1) + " %"; }
function secs(s) {
  if (s === null || s === undefined) return "–";
  if (s < 1) return (s * 1000).toFixed(0) + " ms";
  if (s < 120) return s.toFixed(1) + " s";
  return (s / 60).toFixed(1) + " min";
}
function sum(obj) { return Object.values(obj || {}).reduce((a, b) => a + b, 0); }

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}
function badge(text, cls) {
  const span = document.createElement("span");
  span.className = "badge " + cls;
  span.textContent = text;
  return span;
}
function fill(id, rows, empty, columns) {
  const body = $(id);
  body.replaceChildren();
  if (!rows.length) {
    const tr = document.createElement("tr");
    const td = cell(empty, "empty");
    td.colSpan = columns;
    tr.append(td);
    body.append(tr);
    return;
  }
  for (const cells of rows) {
    const tr = document.createElement("tr");
    tr.append(...cells);
    body.append(tr);
  }
}

// ---- the last hour, drawn as inline SVG -------------------------------------------------------------

const SVG_NS = "http://www.w3.org/2000/svg";
const CHART = { width: 380, height: 150, left: 50, right: 6, top: 10, bottom: 18 };
let chartStage = "total";
let lastTimeline = null;

function svg(name, attrs, text) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}
function clock(epochS) { return new Date(epochS * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }); }

// series: [{name, kind: "bar" | "line", cls, values: [number | null per minute]}]; format labels the y axis;
// counts (whole) get whole-number grid lines.
function drawChart(id, minutes, series, format, whole) {
  const c = CHART, root = $(id);
  root.replaceChildren();
  root.setAttribute("viewBox", `0 0 ${c.width} ${c.height}`);
  const values = series.flatMap((s) => s.values).filter((v) => v !== null);
  const highest = Math.max(...values, 0) || 1;
  const top = whole && highest > 1 ? 2 * Math.ceil(highest / 2) : highest;
  const step = (c.width - c.left - c.right) / minutes.length;
  const x = (i) => c.left + (i + 0.5) * step;
  const y = (v) => c.height - c.bottom - (v / top) * (c.height - c.top - c.bottom);
  for (const f of top === 1 && whole ? [0, 1] : [0, 0.5, 1]) {
    root.append(svg("line", { x1: c.left, x2: c.width - c.right, y1: y(top * f), y2: y(top * f), class: "grid" }),
                svg("text", { x: c.left - 4, y: y(top * f) + 4, "text-anchor": "end", class: "axis" }, format(top * f)));
  }
  root.append(svg("text", { x: c.left, y: c.height - 4, class: "axis" }, clock(minutes[0].minute)),
              svg("text", { x: c.width - c.right, y: c.height - 4, "text-anchor": "end", class: "axis" }, "now"));
  for (const s of series) {
    if (s.kind === "bar") {
      s.values.forEach((v, i) => {
        if (!v) return;
        const bar = svg("rect", { x: x(i) - step * 0.35, width: step * 0.7, y: y(v), height: y(0) - y(v), class: s.cls,
                                  "data-series": s.name, "data-value": v, "data-minute": minutes[i].minute });
        bar.append(svg("title", {}, `${clock(minutes[i].minute)} ${s.name}: ${format(v)}`));
        root.append(bar);
      });
    } else {
      let path = "";
      s.values.forEach((v, i) => {
        if (v === null) return;
        path += `${path && s.values[i - 1] !== null ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
        root.append(svg("circle", { cx: x(i), cy: y(v), r: 2.5, class: s.cls, "data-series": s.name, "data-value": v,
                                    "data-minute": minutes[i].minute }));
      });
      if (path) root.append(svg("path", { d: path, class: s.cls }));
    }
  }
}

function renderTimeline(minutes) {
  lastTimeline = minutes;
  const count = (n) => String(Math.round(n * 10) / 10);
  const total = (key) => minutes.reduce((a, m) => a + m[key], 0);
  drawChart("chart-sessions", minutes, [
    { name: "created", kind: "bar", cls: "bar", values: minutes.map((m) => m.sessions) },
    { name: "completed", kind: "line", cls: "line", values: minutes.map((m) => m.completed) },
  ], count, true);
  set("chart-sessions-sub", `${total("sessions")} created, ${total("completed")} completed`);
  drawChart("chart-stages", minutes, [
    { name: "p50", kind: "line", cls: "line", values: minutes.map((m) => m.stages[chartStage].p50) },
    { name: "p95", kind: "line", cls: "line p95", values: minutes.map((m) => m.stages[chartStage].p95) },
  ], secs);
  drawChart("chart-errors", minutes, [
    { name: "errors", kind: "bar", cls: "bar error", values: minutes.map((m) => m.errors) },
  ], count, true);
  set("chart-errors-sub", `${total("errors")} error event(s)`);
}

function render(o) {
  const c = o.counters;
  set("active-sessions", String(o.active_sessions));
  set("websockets", o.websockets + " WebSocket(s) open");
  set("sessions-created", String(c.sessions_created));
  set("chunks-received", String(c.chunks_received));
  set("bytes-received", bytes(c.upload_bytes_received) + " received");
  const rate = o.outcomes.error_rate;
  set("error-rate", rate.rate === null ? "–" : pct(rate.rate));
  set("error-rate-sub", rate.failed + " failed of " + rate.ended + " ended");
  set("redis-memory", o.redis_memory.fraction === null ? bytes(o.redis_memory.used_bytes) : pct(o.redis_memory.fraction));
  set("redis-memory-sub", bytes(o.redis_memory.used_bytes) + " of " + (o.redis_memory.max_bytes ? bytes(o.redis_memory.max_bytes) : "no maxmemory"));
  set("host-memory", o.host_memory ? pct(o.host_memory.fraction) : "–");
  set("host-memory-sub", o.host_memory ? bytes(o.host_memory.available_bytes) + " available" : "not available");
  set("tokens", String(sum(c.tokens_by_model)));
  set("cleanup", secs(c.cleanup_latency_s.p50));
  set("cleanup-sub", c.cleanup_latency_s.count + " session(s), max " + secs(c.cleanup_latency_s.max));

  const alerts = $("alerts");
  alerts.replaceChildren();
  if (!o.alerts.length) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = "No alert: memory, processing time, cleanups, error rate and consumer groups are within thresholds.";
    alerts.append(li);
  }
  for (const a of o.alerts) {
    const li = document.createElement("li");
    li.dataset.kind = a.kind;
    li.append(badge(a.level, a.level), document.createTextNode(" " + a.message));
    alerts.append(li);
  }

  fill("groups", o.groups.map(g => {
    const status = document.createElement("td");
    status.append(badge(g.status, g.status));
    return [cell(g.stream), cell(g.group), cell(String(g.consumers), "num"), cell(String(g.pending), "num"),
            cell(g.lag === null ? "?" : String(g.lag), "num"),
            cell(g.oldest_pending_idle_ms === null ? "–" : secs(g.oldest_pending_idle_ms / 1000), "num"),
            status, cell(g.reason)];
  }), "No consumer group yet: no worker has started.", 8);

  fill("durations", Object.entries(o.outcomes.durations_s).map(([stage, d]) =>
    [cell(stage), cell(String(d.count), "num"), cell(secs(d.p50), "num"), cell(secs(d.p95), "num")]),
    "No finished session.", 4);

  fill("errors", Object.entries(c.errors_by_code).map(([code, n]) => [cell(code), cell(String(n), "num")]),
    "No error since this gateway started.", 2);

  fill("in-progress", o.in_progress.map(s => [cell(s.session), cell(s.state), cell(secs(s.seconds), "num")]),
    "Nothing processing.", 3);

  fill("recorded", o.recorded_alerts.map(r => {
    const details = Object.entries(r).filter(([k]) => !["id", "type", "at"].includes(k)).map(([k, v]) => k + "=" + v).join(" ");
    return [cell(new Date(parseFloat(r.at) * 1000).toLocaleTimeString()), cell(r.type), cell(details)];
  }), "None.", 3);

  renderTimeline(o.timeline);
  set("status", "updated " + new Date(o.at * 1000).toLocaleTimeString());
}

async function collectGarbage() {
  $("gc").disabled = true;
  set("gc-result", "sweeping and collecting…");
  try {
    const response = await fetch("/admin/api/gc", { method: "POST", credentials: "same-origin", cache: "no-store" });
    const body = await response.json();
    if (!response.ok) {
      set("gc-result", body.error ? body.error.message : "error " + response.status);
      return;
    }
    const f = body.freed;
    set("gc-result", `Freed ${f.keys} orphaned key(s) (${bytes(f.key_bytes)}); Redis used ${bytes(f.redis_bytes)} less; `
      + `processes gave back ${bytes(f.process_bytes)}. ${body.workers_answered} worker(s) answered.`
      + (body.note ? " " + body.note : ""));
  } catch (err) {
    set("gc-result", "gateway unreachable: " + err.message);
  } finally {
    $("gc").disabled = false;
  }
}

async function poll() {
  try {
    const response = await fetch("/admin/api/overview", { credentials: "same-origin", cache: "no-store" });
    if (response.status === 401) {
      location.assign("/admin/sign-in"); // signed out elsewhere, or the cookie expired
      return;
    }
    const body = await response.json();
    if (!response.ok) {
      set("status", body.error ? body.error.message : "error " + response.status);
    } else {
      render(body);
    }
  } catch (err) {
    set("status", "gateway unreachable: " + err.message);
  }
  setTimeout(poll, POLL_MS);
}

$("gc").addEventListener("click", collectGarbage);
$("chart-stage").addEventListener("change", (event) => {
  chartStage = event.target.value;
  if (lastTimeline) renderTimeline(lastTimeline);
});
poll();
