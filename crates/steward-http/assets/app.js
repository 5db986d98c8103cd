// The dashboard: reads /api/v1/…, follows /api/v1/events, and asks for actions with POST.
// Everything that comes from the agent (names, log lines, file names, errors) is put on
// the page as text (textContent), never as HTML.
"use strict";

const $ = (sel) => document.querySelector(sel);

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else if (k === "onclick") e.addEventListener("click", v);
    else if (k === "title") e.title = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function notice(text) {
  const n = $("#notice");
  n.textContent = text;
  n.hidden = !text;
}

async function api(path, options) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin", headers: { accept: "application/json" } }, options || {}));
  if (r.status === 401) { location.href = "/login"; throw new Error("not logged in"); }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
  return body;
}

async function act(path, question) {
  if (question && !confirm(question)) return;
  try {
    await api(path, { method: "POST" });
    notice("");
  } catch (e) {
    notice(e.message);
  }
  refresh();
}

const fmtBytes = (b) => {
  if (b === null || b === undefined) return "-";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return b.toFixed(i ? 1 : 0) + " " + u[i];
};
const fmtDuration = (ms) => {
  if (ms === null || ms === undefined) return "-";
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + (s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h" + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d" + Math.floor((s % 86400) / 3600) + "h";
};
const exitText = (c) => {
  if (!c) return "";
  switch (c.class) {
    case "exited": return "exit " + c.code;
    case "signaled": return c.name;
    default: return c.class.replace(/_/g, " ");
  }
};

// ---- services ----
let services = [], gpuMemory = [];
let sortKey = "name", sortDir = 1;

function sortValue(s, key) {
  if (key === "last_exit") return exitText(s.last_exit) + (s.last_finding ? s.last_finding.category : "");
  if (key === "gpu") return s.gpu === null ? -1 : s.gpu;
  const v = s[key];
  return v === null || v === undefined ? -Infinity : v;
}

function renderServices() {
  const body = $("#service-table tbody");
  const rows = services.slice().sort((a, b) => {
    const x = sortValue(a, sortKey), y = sortValue(b, sortKey);
    return (x < y ? -1 : x > y ? 1 : 0) * sortDir;
  });
  const gpuOf = (name) => gpuMemory.filter((g) => g.instance === name);
  body.replaceChildren(...rows.map((s) => {
    const gpus = gpuOf(s.name);
    const gpu = s.gpu === null ? "-" : ("GPU " + s.gpu + (gpus.length ? " · " + fmtBytes(gpus.reduce((t, g) => t + g.bytes, 0)) : ""));
    const mem = fmtBytes(s.memory_used) + (s.memory_limit ? " / " + fmtBytes(s.memory_limit) : "");
    const live = s.last_finding;
    const exit = el("td", { class: "c-exit" }, exitText(s.last_exit),
      s.last_explain ? el("div", { class: "finding" }, s.last_explain) : null,
      live ? el("div", { class: "finding live", title: live.fix },
        (live.fatal ? "fatal " : "") + live.category + " x" + live.count + " (running): " + live.line) : null);
    const buttons = el("td", {},
      el("button", { "data-action": "start", onclick: (e) => { e.stopPropagation(); act(svcPath(s.name, "start")); } }, "start"), " ",
      el("button", { "data-action": "stop", onclick: (e) => { e.stopPropagation(); act(svcPath(s.name, "stop"), "Stop " + s.name + "?"); } }, "stop"), " ",
      el("button", { "data-action": "restart", onclick: (e) => { e.stopPropagation(); act(svcPath(s.name, "restart")); } }, "restart"));
    return el("tr", { class: "clickable", "data-service": s.name, onclick: () => openLog(s.name) },
      el("td", { class: "c-name" }, s.name),
      el("td", { class: "c-state state-" + s.state }, s.state + (s.waiting_on ? " (" + s.waiting_on + ")" : "")),
      el("td", { class: "c-health", title: s.last_health_error || "" }, s.health || "-"),
      el("td", { class: "c-pid" }, s.pid === null ? "-" : s.pid),
      el("td", { class: "c-uptime", "data-started": s.uptime_ms === null ? "" : String(Date.now() - s.uptime_ms) }, fmtDuration(s.uptime_ms)),
      el("td", { class: "c-restarts" }, s.restarts),
      exit, el("td", {}, mem), el("td", {}, gpu),
      el("td", {}, s.cpu_seconds === null || s.cpu_seconds === undefined ? "-" : s.cpu_seconds.toFixed(1)),
      el("td", { class: "c-cpus" }, s.cpus || "any"),
      buttons);
  }));
  document.querySelectorAll("#service-table th[data-key]").forEach((th) => {
    th.classList.toggle("asc", th.dataset.key === sortKey && sortDir === 1);
    th.classList.toggle("desc", th.dataset.key === sortKey && sortDir === -1);
  });
}

const svcPath = (name, verb) => "/api/v1/services/" + encodeURIComponent(name) + "/" + verb;

async function loadServices() {
  const r = await api("/api/v1/services");
  services = r.services;
  gpuMemory = r.gpu_memory || [];
  renderServices();
}

let logName = null;
function openLog(name) {
  logName = name;
  $("#log-name").textContent = name;
  $("#log-panel").hidden = false;
  loadLog();
}
async function loadLog() {
  if (!logName) return;
  try {
    const r = await api("/api/v1/services/" + encodeURIComponent(logName) + "/logs?tail=200");
    const pre = $("#log-text");
    const follow = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = r.text;
    if (follow) pre.scrollTop = pre.scrollHeight;
  } catch (e) {
    $("#log-text").textContent = e.message;
  }
}

// ---- queues and jobs ----
const throughput = {};
function sparkline(values) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", "120"); svg.setAttribute("height", "24");
  const max = Math.max(1, ...values);
  const pts = values.map((v, i) => (i * 120 / Math.max(1, values.length - 1)).toFixed(1) + "," + (23 - v * 22 / max).toFixed(1));
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", pts.join(" "));
  line.setAttribute("fill", "none"); line.setAttribute("stroke", "#0969da");
  svg.append(line);
  return svg;
}

async function loadQueues() {
  const r = await api("/api/v1/queues");
  if (!r.open) { $("#queue-table tbody").replaceChildren(el("tr", {}, el("td", {}, "no queue is open on this agent"))); return; }
  $("#queue-table tbody").replaceChildren(...r.queues.map((s) => {
    const c = s.counts, name = s.queue;
    (throughput[name] = throughput[name] || []).push(s.succeeded_last_minute);
    if (throughput[name].length > 60) throughput[name].shift();
    return el("tr", { "data-queue": name },
      el("td", {}, name), el("td", {}, c.pending), el("td", {}, c.running), el("td", {}, c.retrying),
      el("td", {}, c.succeeded), el("td", {}, c.quarantined), el("td", {}, c.cancelled),
      el("td", {}, s.succeeded_last_minute), el("td", {}, s.eta_seconds === null ? "-" : fmtDuration(s.eta_seconds * 1000)),
      el("td", {}, sparkline(throughput[name])));
  }));
  await loadJobs();
  const q = await api("/api/v1/jobs?state=quarantined&limit=200");
  $("#quarantine-table tbody").replaceChildren(...q.jobs.map((j) =>
    el("tr", { class: "clickable", "data-job": j.id, onclick: () => openJob(j.id) },
      el("td", {}, j.id), el("td", {}, j.queue), el("td", { class: "c-input" }, j.payload.input || j.key),
      el("td", { class: "reason" }, j.last_error || ""))));
}

function jobQuery() {
  const f = new FormData($("#job-filter"));
  const p = new URLSearchParams();
  for (const [k, v] of f.entries()) if (v) p.set(k, v);
  return p;
}

async function loadJobs() {
  const r = await api("/api/v1/jobs?" + jobQuery().toString());
  $("#job-table tbody").replaceChildren(...r.jobs.map((j) =>
    el("tr", { class: "clickable", "data-job": j.id, onclick: () => openJob(j.id) },
      el("td", {}, j.id), el("td", {}, j.queue), el("td", { class: "c-input" }, j.payload.input || j.key),
      el("td", {}, j.state), el("td", {}, j.attempts + "/" + j.max_attempts), el("td", { class: "reason" }, j.last_error || ""))));
}

let jobId = null;
async function openJob(id) {
  jobId = id;
  const r = await api("/api/v1/jobs/" + id);
  $("#job-id").textContent = r.job.id;
  $("#job-input").textContent = r.job.payload.input || r.job.key;
  $("#job-state").textContent = r.job.state;
  $("#attempt-table tbody").replaceChildren(...r.attempts.map((a) =>
    el("tr", {},
      el("td", {}, a.n), el("td", {}, a.owner || "-"), el("td", {}, a.class_text || "succeeded"),
      el("td", {}, a.error || "", a.stderr_tail ? el("pre", {}, a.stderr_tail) : null),
      el("td", { class: "finding" }, a.explain || ""))));
  $("#job-detail").hidden = false;
}

// ---- gateway, events, node ----
async function loadGateway() {
  let r;
  try { r = await api("/api/v1/gateway"); } catch (e) {
    $("#gateway-table tbody").replaceChildren(el("tr", {}, el("td", {}, e.message))); return;
  }
  const ms = (v) => v === null || v === undefined ? "-" : v.toFixed(1);
  $("#gateway-table tbody").replaceChildren(...r.routes.flatMap((route) => route.backends.map((b) =>
    el("tr", {}, el("td", {}, route.model), el("td", {}, b.url), el("td", {}, b.service || "-"),
      el("td", { class: b.state === "up" ? "state-running" : "state-failed" }, b.state),
      el("td", {}, b.in_flight), el("td", {}, b.ok), el("td", {}, b.failed_over),
      el("td", {}, route.failovers), el("td", {}, ms(route.p50_ms)), el("td", {}, ms(route.p99_ms))))));
}

const notable = new Set(["exited", "crash_loop", "stall", "job_failed", "jobs_rescued", "limits", "leftovers_killed", "log_write_failed", "health"]);
function addEvent(e) {
  const list = $("#event-list");
  const finding = e.explain || null;
  const item = el("li", { class: notable.has(e.event) ? "notable ev-" + e.event : "ev-" + e.event },
    el("span", { class: "ts" }, e.ts), e.summary, finding ? el("span", { class: "finding" }, finding) : null);
  list.prepend(item);
  while (list.children.length > 500) list.lastChild.remove();
}

async function loadNode() {
  const r = await api("/api/v1/node");
  $("#host-facts").textContent = JSON.stringify(r.host, null, 2);
  $("#doctor-table tbody").replaceChildren(...(r.doctor || []).map((c) =>
    el("tr", {}, el("td", { class: "level-" + c.level }, c.level), el("td", {}, c.name), el("td", {}, c.seen), el("td", {}, c.fix))));
  try {
    const f = await api("/api/v1/nodes");
    $("#fleet-table tbody").replaceChildren(...f.nodes.map((n) =>
      el("tr", {}, el("td", {}, n.name), el("td", {}, n.alive ? "yes" : "no"), el("td", {}, n.leader ? "yes" : ""),
        el("td", {}, n.jobs_running), el("td", {}, fmtDuration(n.heartbeat_age_ms) + " ago"))));
  } catch (e) {
    $("#fleet-table tbody").replaceChildren(el("tr", {}, el("td", {}, e.message)));
  }
}

// ---- tabs, live updates ----
let tab = "services";
const loaders = { services: loadServices, queues: loadQueues, gateway: loadGateway, events: async () => {}, node: loadNode };

async function refresh() {
  try {
    await loaders[tab]();
    if (tab === "services") await loadLog();
  } catch (e) {
    notice(e.message);
  }
}

let pending = null;
function soon() {
  if (pending) return;
  pending = setTimeout(() => { pending = null; refresh(); }, 200);
}

function connect() {
  const live = $("#live");
  const es = new EventSource("/api/v1/events");
  es.addEventListener("open", () => { live.textContent = "live"; live.classList.add("up"); });
  es.addEventListener("error", () => { live.textContent = "reconnecting…"; live.classList.remove("up"); });
  es.addEventListener("steward", (m) => { addEvent(JSON.parse(m.data)); soon(); });
  es.addEventListener("changed", soon);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => {
    tab = b.dataset.tab;
    document.querySelectorAll("#tabs button").forEach((x) => x.classList.toggle("on", x === b));
    document.querySelectorAll("section.tab").forEach((s) => { s.hidden = s.id !== tab; });
    refresh();
  }));
  document.querySelectorAll("#service-table th[data-key]").forEach((th) => th.addEventListener("click", () => {
    if (sortKey === th.dataset.key) sortDir = -sortDir; else { sortKey = th.dataset.key; sortDir = 1; }
    renderServices();
  }));
  $("#log-close").addEventListener("click", () => { logName = null; $("#log-panel").hidden = true; });
  $("#job-filter").addEventListener("submit", (e) => { e.preventDefault(); loadJobs().catch((x) => notice(x.message)); });
  $("#bulk-retry").addEventListener("click", () => act("/api/v1/jobs/retry?" + jobQuery(), "Retry every job that matches?"));
  $("#bulk-cancel").addEventListener("click", () => act("/api/v1/jobs/cancel?" + jobQuery(), "Cancel every job that matches?"));
  $("#job-retry").addEventListener("click", () => act("/api/v1/jobs/" + jobId + "/retry").then(() => openJob(jobId)));
  $("#job-cancel").addEventListener("click", () => act("/api/v1/jobs/" + jobId + "/cancel", "Cancel job " + jobId + "?").then(() => openJob(jobId)));
  $("#job-close").addEventListener("click", () => { $("#job-detail").hidden = true; });
  connect();
  refresh();
  // Uptime moves here, each second; memory and CPU are read again every 30 s while the page
  // is visible (each read costs the agent a look at every service).
  setInterval(() => {
    document.querySelectorAll("td.c-uptime[data-started]").forEach((td) => {
      if (td.dataset.started) td.textContent = fmtDuration(Date.now() - Number(td.dataset.started));
    });
  }, 1000);
  setInterval(() => { if (!document.hidden) refresh(); }, 30000);
  // An open log follows its service's output.
  setInterval(() => { if (logName && tab === "services" && !document.hidden) loadLog(); }, 2000);
});
