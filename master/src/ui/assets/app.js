// Trove's status page. It polls /-/ui/state (volumes, keys, jobs) and
// /-/metrics (request rates), redraws without reloading, lists keys with
// ?list and reads one key's record from /-/ui/key. Text from the cluster
// (keys, errors) is only ever set as text, never parsed as HTML.
"use strict";

const POLL_MS = Number(new URLSearchParams(location.search).get("poll")) || 1000;
const PAGE_SIZE = 50;
const HISTORY = 120; // samples of the request rate kept for the sparkline

const $ = (id) => document.getElementById(id);

/** An element with attributes (`class`, `data-*`, …) and children (text or nodes). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function bytes(n) {
  if (n === null || n === undefined) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}

function count(n) {
  return n === null || n === undefined ? "?" : Number(n).toLocaleString("en");
}

/** "3 s ago", "2 min ago" … from two Unix ms times. */
function ago(then, now) {
  if (!then) return "never";
  const s = Math.max(0, Math.round((now - then) / 1000));
  if (s < 90) return s + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}

function duration(secs) {
  if (!isFinite(secs)) return "?";
  secs = Math.round(secs);
  if (secs < 60) return secs + " s";
  if (secs < 3600) return Math.floor(secs / 60) + " min " + (secs % 60) + " s";
  return Math.floor(secs / 3600) + " h " + Math.floor((secs % 3600) / 60) + " min";
}

function time(ms) {
  return ms ? new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") : "";
}

/** A key as a URL path: every segment percent-encoded, the slashes kept. */
function keyPath(key) {
  return key.split("/").map(encodeURIComponent).join("/");
}

function facts(dl, pairs) {
  dl.replaceChildren(...pairs.flatMap(([name, value, attrs]) => [el("dt", {}, name), el("dd", attrs || {}, value)]));
}

function bar(fraction, label, cls) {
  const pct = Math.max(0, Math.min(1, fraction || 0)) * 100;
  const fill = el("span");
  fill.style.width = pct.toFixed(1) + "%"; // through the CSSOM: the page's CSP allows no inline style
  return el("div", { class: "bar " + (cls || ""), role: "progressbar", "aria-valuenow": pct.toFixed(0), title: label },
    fill, el("em", {}, label));
}

// ---- volumes, keys, index ----

// What is wrong with a volume that answers, if anything: the word its card
// and the headline use.
function warning(v) {
  return v.stalled ? "disk stalled" : v.lost_data_at ? "lost data" : v.read_only ? "read-only"
    : v.foreign_before ? "unknown data" : !v.writable ? "full" : null;
}

// What to do about a volume that lost data: a data dir gone under the
// running volume needs a restart first; one back on a new disk, a repair.
function lostDataAdvice(v) {
  return v.read_only ? "restart the volume once its disk is back or replaced, then run verify --repair"
    : "run verify --repair";
}

function volumeCard(v, now) {
  const state = !v.healthy ? "down" : warning(v) ? "warn" : "up";
  const words = { up: "healthy", warn: warning(v), down: "down" };
  const used = v.used_bytes || 0;
  const total = used + (v.free_bytes || 0);
  return el("article", { class: "card " + state, "data-volume": v.address, "data-state": state },
    el("h3", {}, el("span", { class: "dot" }), v.address, " ", el("small", {}, words[state])),
    bar(total ? used / total : 0, bytes(v.used_bytes) + " used · " + bytes(v.free_bytes) + " free"),
    el("dl", { class: "facts" },
      el("dt", {}, "blobs"), el("dd", {}, count(v.blobs)),
      el("dt", {}, "zone"), el("dd", {}, v.zone || "—"),
      el("dt", {}, "weight"), el("dd", {}, v.weight),
      el("dt", {}, "last seen"), el("dd", { title: time(v.last_seen) }, ago(v.last_seen, now)),
      v.lost_data_at ? [el("dt", {}, "lost data"), el("dd", {}, time(v.lost_data_at) + " (" + lostDataAdvice(v) + ")")] : null,
      v.foreign_before ? [el("dt", {}, "unknown data"), el("dd", {}, "blobs from before " + time(v.foreign_before) + " this index never knew (a lost index? run trove-master rebuild)")] : null),
    (v.last_error || v.stalled) ? el("p", { class: "error" }, v.last_error || v.stalled) : null);
}

function renderStatus(state) {
  const s = state.status;
  const down = s.volumes.length - s.healthy_volumes;
  const warned = s.volumes.filter((v) => v.healthy && warning(v));
  const of = " of " + s.volumes.length + " volumes";
  const summary = $("summary");
  // The master's own index: while its disk does not answer, nothing can be
  // written (and keys not held in memory cannot be read).
  const indexStalled = s.index.stalled_ms != null;
  summary.textContent = indexStalled ? "the index's disk is not answering (see below)"
    : down > 0 ? down + of + " down"
    : warned.length > 0 ? warned.length + of + ": " + [...new Set(warned.map(warning))].join(", ")
    : "all " + s.volumes.length + " volumes healthy";
  // Red when too few volumes take writes for a write's replicas.
  const writable = s.volumes.filter((v) => v.healthy && v.writable).length;
  summary.className = "badge " + (indexStalled ? "bad" : down === 0 && warned.length === 0 ? "ok"
    : writable >= s.replicas ? "warn" : "bad");
  $("updated").textContent = "v" + s.version + " · updated " + time(state.now);
  $("volumes").replaceChildren(...s.volumes.map((v) => volumeCard(v, state.now)));
  facts($("keys"), [
    ["live keys", count(s.keys.live), { id: "keys-live" }],
    ["being written", count(s.keys.writing)],
    ["unlinked", count(s.keys.unlinked)],
    ["expired (since start)", count(s.expired)],
    ["index on disk", bytes(s.index.disk_bytes) + (indexStalled
      ? " · STALLED: " + (s.index.stalled || "a call has waited " + Math.round(s.index.stalled_ms / 1000) + " s on its disk") : "")],
    ["replicas", s.replicas + (s.protect ? " · protected deletes" : "") + (s.fsync ? "" : " · NO FSYNC")],
  ]);
}

// ---- traffic, from the Prometheus text of /-/metrics ----

let lastSample = null;
const rateHistory = [];

/** Sums of the counters the page reads, from Prometheus text. */
function sample(text) {
  const s = { t: performance.now(), requests: 0, client: 0, server: 0, latencySum: 0, latencyCount: 0, in: 0, out: 0 };
  for (const line of text.split("\n")) {
    const m = /^(\w+)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const [, name, labels = "", value] = m;
    const v = Number(value);
    if (name === "trove_requests_total") {
      const status = Number((/status="(\d+)"/.exec(labels) || [])[1]);
      s.requests += v;
      if (status >= 500) s.server += v;
      else if (status >= 400) s.client += v;
    } else if (name === "trove_request_duration_seconds_sum") s.latencySum += v;
    else if (name === "trove_request_duration_seconds_count") s.latencyCount += v;
    else if (name === "trove_received_bytes_total") s.in = v;
    else if (name === "trove_sent_bytes_total") s.out = v;
  }
  return s;
}

function renderTraffic(text) {
  const now = sample(text);
  const prev = lastSample;
  lastSample = now;
  if (!prev) {
    facts($("traffic"), [["requests", count(now.requests) + " since start"]]);
    return;
  }
  const dt = (now.t - prev.t) / 1000 || 1;
  const rate = (k) => Math.max(0, (now[k] - prev[k]) / dt);
  const answered = now.latencyCount - prev.latencyCount;
  rateHistory.push(rate("requests"));
  if (rateHistory.length > HISTORY) rateHistory.shift();
  facts($("traffic"), [
    ["requests", rate("requests").toFixed(1) + " /s", { id: "rate-requests" }],
    ["client errors (4xx)", rate("client").toFixed(1) + " /s", { class: rate("client") > 0 ? "warn-text" : "" }],
    ["server errors (5xx)", rate("server").toFixed(1) + " /s", { id: "rate-5xx", class: rate("server") > 0 ? "bad-text" : "" }],
    ["mean time to headers", answered > 0 ? ((1000 * (now.latencySum - prev.latencySum)) / answered).toFixed(1) + " ms" : "—"],
    ["in / out", bytes(Math.round(rate("in"))) + "/s · " + bytes(Math.round(rate("out"))) + "/s"],
    ["since start", count(now.requests) + " requests, " + count(now.server) + " 5xx"],
  ]);
  const max = Math.max(1, ...rateHistory);
  const points = rateHistory.map((r, i) => ((i * 120) / (HISTORY - 1)).toFixed(1) + "," + (29 - (r / max) * 28).toFixed(1));
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points.join(" "));
  $("spark").replaceChildren(line);
}

// ---- admin jobs ----

function jobParams(p) {
  const on = Object.entries({ "dry run": p.dry_run, deep: p.deep, repair: p.repair }).filter(([, v]) => v).map(([k]) => k);
  if (p.grace_secs !== null && p.grace_secs !== undefined) on.push("grace " + duration(p.grace_secs));
  if (p.rate) on.push("at most " + p.rate + "/s");
  return on.join(", ");
}

function jobView(job, now, admin) {
  const running = job.state === "running";
  const elapsed = ((job.finished || now) - job.started) / 1000;
  const perSec = elapsed > 0 ? job.scanned / elapsed : 0;
  const eta = running && perSec > 0 && job.total > job.scanned ? duration((job.total - job.scanned) / perSec) : null;
  const unit = job.job === "gc" ? "blobs" : "keys";
  const stop = running && admin
    ? el("button", { type: "button", class: "danger", "data-stop": job.job }, "Stop")
    : null;
  // A run that ended with failures, or with bad replicas left unrepaired, is not a green "done".
  const troubled = job.failed > 0 || (job.job === "verify" && job.found > job.changed);
  const badge = job.state === "done" && troubled ? ["warn", "done, with problems"] : [job.state, job.state];
  return el("article", { class: "job " + job.state, "data-job": job.job, "data-state": job.state },
    el("h3", {}, job.job, " ", el("span", { class: "badge " + badge[0] }, badge[1]), " ",
      el("small", { class: "muted" }, jobParams(job.params)), stop),
    bar(job.total ? job.scanned / job.total : running ? 0 : 1,
      count(job.scanned) + " / " + count(job.total) + " " + unit),
    el("p", { class: "job-line" },
      count(job.changed) + (job.params.dry_run ? " would change" : " changed") + " · " + bytes(job.bytes) +
      " · " + count(job.skipped) + " skipped · " + count(job.failed) + " failed" +
      (job.job === "verify" ? " · " + count(job.found) + " bad replicas" : "")),
    el("p", { class: "muted" },
      perSec.toFixed(1) + " " + unit + "/s · " + bytes(Math.round(job.bytes / Math.max(elapsed, 0.001))) + "/s · " +
      (running ? "running for " + duration(elapsed) + (eta ? " · ETA " + eta : "")
        : "started " + time(job.started) + ", took " + duration(elapsed))),
    job.error ? el("p", { class: "error" }, job.error) : null);
}

function renderJobs(state) {
  const jobs = state.jobs;
  $("jobs").replaceChildren(...(jobs.length ? jobs.map((j) => jobView(j, state.now, state.admin))
    : [el("p", { class: "muted" }, "No job has run since this master started.")]));
  $("admin").hidden = !state.admin;
  if (!state.admin) $("admin-message").textContent = "Read-only page: start the master with --ui-admin to run jobs from here.";
  const problems = jobs.flatMap((j) => j.problems.map((p) => el("li", {}, el("b", {}, j.job + ": "), p)));
  for (const j of jobs) {
    const hidden = j.problems_total - j.problems.length;
    if (hidden > 0) problems.push(el("li", { class: "muted" }, j.job + ": " + count(hidden) + " earlier problem(s) — GET /-/" + j.job + " or the master's log"));
  }
  $("problems").replaceChildren(...(problems.length ? problems : [el("li", { class: "muted" }, "None.")]));
}

/** Asks the operator; resolves to true on "yes". */
function confirmAction(text) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true }));
}

async function admin(method, job, body) {
  const res = await fetch("/-/ui/jobs/" + job, {
    method,
    headers: { "Trove-Ui": "1", "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  $("admin-message").textContent = res.ok ? (method === "POST" ? job + " started" : text.trim())
    : job + ": " + res.status + " " + text.trim();
  refresh();
}

function showAdminOptions() {
  const job = $("admin-job").value;
  for (const label of document.querySelectorAll("#admin [data-for]")) {
    label.hidden = !label.dataset.for.split(" ").includes(job);
  }
}

async function startJob(event) {
  event.preventDefault();
  const job = $("admin-job").value;
  const params = { concurrency: Number($("admin-concurrency").value) || 4 };
  const rate = Number($("admin-rate").value);
  if (rate > 0) params.rate = rate;
  if (job === "verify") Object.assign(params, { deep: $("admin-deep").checked, repair: $("admin-repair").checked });
  else params.dry_run = $("admin-dry-run").checked;
  const what = jobParams(params);
  if (await confirmAction("Start " + job + (what ? " (" + what + ")" : "") + " on the whole cluster?")) {
    await admin("POST", job, params);
  }
}

async function stopJob(event) {
  const job = event.target.dataset.stop;
  if (job && await confirmAction("Stop the running " + job + "? It is safe to run again later.")) {
    await admin("DELETE", job);
  }
}

// ---- polling ----

let timer = null;
let polling = false; // a poll is in flight
let again = false; // … and another was asked for meanwhile (after an admin action)

async function refresh() {
  if (polling) {
    again = true;
    return;
  }
  polling = true;
  clearTimeout(timer);
  try {
    const [state, metrics] = await Promise.all([
      fetch("/-/ui/state").then((r) => { if (!r.ok) throw new Error("/-/ui/state: " + r.status); return r.json(); }),
      fetch("/-/metrics").then((r) => r.text()),
    ]);
    renderStatus(state);
    renderJobs(state);
    renderTraffic(metrics);
    $("offline").hidden = true;
    document.body.dataset.loaded = "1";
  } catch (e) {
    $("offline").textContent = "Cannot reach the master (" + e.message + "); retrying. What is shown is from " + ($("updated").textContent || "never") + ".";
    $("offline").hidden = false;
  }
  polling = false;
  timer = setTimeout(refresh, again ? 0 : POLL_MS);
  again = false;
}

// ---- key browser ----

let listing = { prefix: "/", next: "" };

async function list(prefix, start) {
  // The prefix as a parameter, not as the path: a browser drops the
  // dot segments of a path (`/l/.` would list `/l/`).
  const query = "/?list&prefix=" + encodeURIComponent(prefix) + "&delimiter=%2F&detail&limit=" + PAGE_SIZE +
    (start ? "&start=" + encodeURIComponent(start) : "");
  const res = await fetch(query);
  const body = $("listing").tBodies[0];
  if (!start) body.replaceChildren();
  if (!res.ok) {
    $("listing-note").textContent = "listing " + prefix + ": " + res.status + " " + (await res.text()).trim();
    return;
  }
  const page = await res.json();
  listing = { prefix, next: page.next };
  for (const p of page.prefixes || []) {
    body.append(el("tr", { class: "prefix" },
      el("td", {}, el("a", { href: "#", "data-prefix": p }, p)), el("td", { class: "num" }, "—"), el("td", {}, "")));
  }
  for (const o of page.objects || []) {
    body.append(el("tr", { class: "object" },
      el("td", {}, el("a", { href: "#", "data-key": o.key }, o.key)),
      el("td", { class: "num" }, bytes(o.size)), el("td", {}, time(o.created))));
  }
  $("more").hidden = !page.next;
  $("listing-note").textContent = body.rows.length + " shown under " + prefix + (page.next ? "; more follow" : "");
}

async function showKey(key) {
  const res = await fetch("/-/ui/key?key=" + encodeURIComponent(key));
  $("record").hidden = false;
  $("record-key").textContent = key;
  if (!res.ok) {
    facts($("record-facts"), [["error", res.status === 404 ? "no such key (deleted or expired?)" : res.status + " " + (await res.text()).trim()]]);
    $("download").hidden = true;
    return;
  }
  const r = await res.json();
  facts($("record-facts"), [
    ["size", bytes(r.size) + " (" + count(r.size) + " bytes)", { id: "record-size" }],
    ["md5", r.md5, { class: "mono" }],
    ["sha256", r.sha256, { class: "mono" }],
    ["created", time(r.created)],
    ["expires", r.expires ? time(r.expires) : "never"],
    ["replicas", r.volumes.join(", ")],
    ["healthy replicas", r.healthy.length + " of " + r.volumes.length, { class: r.healthy.length ? "" : "bad-text" }],
    ["damaged", r.damaged.length ? r.damaged.join(", ") : "none"],
    ["balance", r.balance, { id: "record-balance" }],
    ["content type", r.meta["content-type"] || "—"],
  ]);
  const link = $("download");
  link.hidden = false;
  link.href = keyPath(r.key);
  link.setAttribute("download", r.key.split("/").pop() || "value");
  $("record").scrollIntoView({ block: "nearest" });
}

function onListingClick(event) {
  const a = event.target.closest("a");
  if (!a) return;
  event.preventDefault();
  if (a.dataset.prefix) {
    $("prefix").value = a.dataset.prefix;
    list(a.dataset.prefix);
  } else if (a.dataset.key) {
    showKey(a.dataset.key);
  }
}

function browse(event) {
  event.preventDefault();
  let prefix = $("prefix").value.trim() || "/";
  if (!prefix.startsWith("/")) prefix = "/" + prefix;
  $("prefix").value = prefix;
  list(prefix);
}

document.addEventListener("DOMContentLoaded", () => {
  $("admin").addEventListener("submit", startJob);
  $("admin-job").addEventListener("change", showAdminOptions);
  $("jobs").addEventListener("click", stopJob);
  $("browse").addEventListener("submit", browse);
  $("listing").addEventListener("click", onListingClick);
  $("more").addEventListener("click", () => list(listing.prefix, listing.next));
  showAdminOptions();
  refresh();
  list("/");
});
