/* The operators' dashboard: three views (fleet, vehicle, pipeline) drawn from the
 * public JSON API with the operator token kept in sessionStorage. The view, the
 * window and the selected vehicle live in the URL's query, never the token.
 * Every figure comes from the API as it is; nothing here computes analytics. */
"use strict";

const TOKEN_KEY = "energy.operatorToken";
const REFRESH_MS = 30000;
const PAGE_SIZE = 25;
const PRESETS = { "1h": 3600e3, "6h": 6 * 3600e3, "24h": 24 * 3600e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };
const THRESHOLD = Number(document.body.dataset.alertThreshold || "0.85");

const $ = (id) => document.getElementById(id);
const state = { sort: "efficiency", order: "asc", offset: 0, search: "", charts: [], lastAccepted: null };

class AuthError extends Error {}

/* --- the URL: view, window, vehicle ------------------------------------------------ */

function params() { return new URLSearchParams(location.search); }

function go(changes) {
  const p = params();
  for (const [key, value] of Object.entries(changes)) {
    if (value === null || value === undefined) p.delete(key); else p.set(key, value);
  }
  history.pushState(null, "", "?" + p.toString());
  render();
}

function currentWindow() {
  const p = params();
  if (p.get("window") === "custom" && p.get("from") && p.get("to")) {
    return { preset: "custom", from: new Date(p.get("from")), to: new Date(p.get("to")) };
  }
  const preset = PRESETS[p.get("window")] ? p.get("window") : "24h";
  const to = new Date();
  return { preset, from: new Date(to.getTime() - PRESETS[preset]), to };
}

function windowQuery(win) { return { from: win.from.toISOString(), to: win.to.toISOString() }; }

/* --- the API ------------------------------------------------------------------- */

async function api(path, query, accept) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) throw new AuthError("Enter an operator token.");
  const url = path + (query ? "?" + new URLSearchParams(query).toString() : "");
  const response = await fetch(url, { headers: { Authorization: "Bearer " + token,
                                                 Accept: accept || "application/json" } });
  if (response.status === 401) throw new AuthError("This token was not accepted (401): check it and enter it again.");
  if (response.status === 403) throw new AuthError("This token may not read analytics (403): an operator token is needed, not an ingest token.");
  if (!response.ok) {
    let message = response.statusText;
    try { const body = await response.json(); message = body.error || JSON.stringify(body.errors); } catch (e) { /* not JSON */ }
    throw new Error(`${path}: ${response.status} ${message}`);
  }
  return accept ? response.text() : response.json();
}

/* --- small helpers to build the page without innerHTML ------------------------------- */

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

function num(value, digits) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function when(iso) {
  return iso ? iso.replace("T", " ").replace(/(\.\d+)?Z$/, "").replace(/(\.\d+)?\+00:00$/, "") : "–";
}

function effCell(value) {
  const td = el("td", num(value, 3), "num");
  if (value !== null && value !== undefined) td.classList.add(value < THRESHOLD ? "bad" : "good");
  return td;
}

function fillTable(table, rows, toCells, onClick) {
  const body = table.querySelector("tbody");
  body.replaceChildren();
  if (!rows.length) {
    const tr = el("tr");
    const td = el("td", "Nothing in this window.", "empty");
    td.colSpan = table.querySelectorAll("thead th").length;
    tr.append(td);
    body.append(tr);
    return;
  }
  for (const row of rows) {
    const tr = el("tr");
    tr.append(...toCells(row).map((c) => (c instanceof Node ? c : el("td", c))));
    if (onClick) { tr.classList.add("clickable"); tr.addEventListener("click", () => onClick(row)); }
    body.append(tr);
  }
}

function cards(container, items) {
  container.replaceChildren(...items.map(([label, value, cls]) => {
    const card = el("div", null, "card");
    card.append(el("div", label, "label"), el("div", value, "value" + (cls ? " " + cls : "")));
    return card;
  }));
}

function clearCharts() {
  for (const chart of state.charts) chart.destroy();
  state.charts = [];
}

function chart(container, series, data, options) {
  container.replaceChildren();
  const width = Math.max(320, container.clientWidth || 480);
  const plot = new uPlot({ width, height: 220, series, ...options }, data, container);
  state.charts.push(plot);
  return plot;
}

/* --- fleet view ------------------------------------------------------------------ */

async function renderFleet(win) {
  const q = windowQuery(win);
  const [fleet, alerts, worst] = await Promise.all([
    api("/v1/analytics/fleet", { ...q, sort: state.sort, order: state.order, limit: PAGE_SIZE,
                                 offset: state.offset, search: state.search }),
    api("/v1/alerts"),
    api("/v1/analytics/sessions", { ...q, limit: 10 }),
  ]);
  const t = fleet.totals;
  cards($("fleet-totals"), [
    ["Vehicles", String(t.vehicles)], ["AC consumed", num(t.acConsumedKwh, 1) + " kWh"],
    ["DC delivered", num(t.dcDeliveredKwh, 1) + " kWh"],
    ["Efficiency", num(t.efficiencyRatio, 3), t.efficiencyRatio !== null && t.efficiencyRatio < THRESHOLD ? "bad" : ""],
    ["Open alerts", String(alerts.alerts.length), alerts.alerts.length ? "bad" : ""],
  ]);
  drawHistogram(t.efficiencyHistogram);
  fillTable($("alerts-table"), alerts.alerts, (a) => [a.vehicleId, a.kind, a.reason, when(a.openedAt)],
            (a) => go({ view: "vehicle", vehicle: a.vehicleId }));
  fillTable($("vehicles-table"), fleet.vehicles, (v) => [
    v.vehicleId, effCell(v.efficiencyRatio), el("td", num(v.acConsumedKwh, 2), "num"),
    el("td", num(v.dcDeliveredKwh, 2), "num"), el("td", num(v.avgBatteryTemp, 1), "num"),
    when(v.lastSeen), el("td", num(v.liveSoc, 1), "num"),
  ], (v) => go({ view: "vehicle", vehicle: v.vehicleId }));
  const matched = fleet.page.matched;
  const first = matched ? state.offset + 1 : 0;
  $("vehicles-count").textContent = `${first}–${state.offset + fleet.vehicles.length} of ${matched}`;
  $("page-prev").disabled = state.offset === 0;
  $("page-next").disabled = state.offset + PAGE_SIZE >= matched;
  for (const th of document.querySelectorAll("#vehicles-table th[data-sort]")) {
    th.classList.toggle("sorted-asc", th.dataset.sort === state.sort && state.order === "asc");
    th.classList.toggle("sorted-desc", th.dataset.sort === state.sort && state.order === "desc");
  }
  fillTable($("worst-sessions"), worst.sessions, (s) => [
    s.vehicleId, when(s.start), when(s.end), el("td", num(s.acConsumedKwh, 2), "num"),
    el("td", num(s.dcDeliveredKwh, 2), "num"), el("td", num(s.lossKwh, 2), "num"), effCell(s.efficiencyRatio),
  ], (s) => go({ view: "vehicle", vehicle: s.vehicleId }));
}

function drawHistogram(bins) {
  const x = bins.map((_, i) => i);
  const labels = bins.map((b) => (b.from === null ? "<" + b.to : b.to === null ? "≥" + b.from : String(b.from)));
  chart($("histogram"), [{}, { label: "vehicles", fill: "rgba(31,95,191,0.35)", stroke: "#1f5fbf",
                               paths: uPlot.paths.bars({ size: [0.9] }), points: { show: false } }],
        [x, bins.map((b) => b.vehicles)], {
          scales: { x: { time: false, range: [-0.5, bins.length - 0.5] } },
          axes: [{ values: (u, splits) => splits.map((i) => labels[i] ?? ""), splits: () => x, label: "efficiency" },
                 { label: "vehicles" }],
          legend: { show: false },
        });
}

/* --- vehicle view ---------------------------------------------------------------- */

function bucketFor(win) {
  const span = win.to - win.from;
  return span <= 6 * 3600e3 ? "15m" : span <= 14 * 86400e3 ? "1h" : "1d";
}

async function renderVehicle(win, vehicleId) {
  const q = windowQuery(win);
  const path = "/v1/analytics/performance/" + encodeURIComponent(vehicleId);
  const [perf, series, sessions, alerts] = await Promise.all([
    api(path, q), api(path + "/series", { ...q, bucket: bucketFor(win) }), api(path + "/sessions", q),
    api("/v1/alerts"),
  ]);
  let live = null;
  try { live = await api("/v1/live/vehicles/" + encodeURIComponent(vehicleId)); } catch (e) {
    if (e instanceof AuthError) throw e; // else: no live state yet
  }
  $("vehicle-title").textContent = "Vehicle " + vehicleId;
  cards($("vehicle-cards"), [
    ["Live SoC", live ? num(live.soc, 1) + " %" : "–"], ["Battery now", live ? num(live.batteryTemp, 1) + " °C" : "–"],
    ["Last reading", live ? when(live.timestamp) : "–"],
    ["AC consumed", num(perf.totalEnergy.acConsumedKwh, 2) + " kWh"],
    ["DC delivered", num(perf.totalEnergy.dcDeliveredKwh, 2) + " kWh"],
    ["Efficiency", num(perf.efficiencyRatio, 3), perf.efficiencyRatio !== null && perf.efficiencyRatio < THRESHOLD ? "bad" : "good"],
    ["Sessions", String(sessions.sessions.length)],
  ]);
  const mine = alerts.alerts.filter((a) => a.vehicleId === vehicleId);
  const list = $("vehicle-alerts");
  list.replaceChildren(...(mine.length ? mine.map((a) => el("li", `${a.kind}: ${a.reason}`))
                                        : [el("li", "No open alert.", "empty")]));
  drawSeries(series.series);
  const worst = sessions.sessions.reduce((w, s) => (s.efficiencyRatio !== null &&
    (w === null || s.efficiencyRatio < w.efficiencyRatio) ? s : w), null);
  fillTable($("vehicle-sessions"), sessions.sessions.slice().reverse(), (s) => {
    const cells = [when(s.start), when(s.end), el("td", num(s.acConsumedKwh, 2), "num"),
      el("td", num(s.dcDeliveredKwh, 2), "num"), el("td", num(s.lossKwh, 2), "num"), effCell(s.efficiencyRatio),
      `${num(s.socStart, 0)} → ${num(s.socEnd, 0)}`, `${num(s.avgBatteryTemp, 1)} / ${num(s.maxBatteryTemp, 1)}`,
      s.meterIds.join(" ")];
    if (s === worst) cells[0] = el("td", when(s.start) + " (worst)", "bad");
    return cells;
  });
  await renderLinks(vehicleId, sessions.sessions);
}

async function renderLinks(vehicleId, sessions) {
  const meters = [...new Set(sessions.flatMap((s) => s.meterIds))].sort();
  const links = await Promise.all(meters.map((m) => api("/v1/meters/" + encodeURIComponent(m) + "/vehicle")));
  const rows = links.flatMap((l) => l.links.map((k) => ({ meterId: l.meterId, ...k })));
  fillTable($("meter-links"), rows, (r) => [r.meterId, r.vehicleId, when(r.since)]);
}

function drawSeries(buckets) {
  const x = buckets.map((b) => Date.parse(b.start) / 1000);
  const common = { legend: { show: true } };
  chart($("chart-energy"), [{}, { label: "AC kWh", stroke: "#b42318", width: 2 },
                             { label: "DC kWh", stroke: "#067647", width: 2 }],
        [x, buckets.map((b) => b.acConsumedKwh), buckets.map((b) => b.dcDeliveredKwh)], common);
  chart($("chart-efficiency"), [{}, { label: "efficiency", stroke: "#1f5fbf", width: 2, spanGaps: true },
                                 { label: `threshold ${THRESHOLD}`, stroke: "#b42318", dash: [6, 4] }],
        [x, buckets.map((b) => b.efficiencyRatio), buckets.map(() => THRESHOLD)],
        { ...common, scales: { y: { range: [0.5, 1.05] } } });
  chart($("chart-temp"), [{}, { label: "avg °C", stroke: "#9a3412", width: 2, spanGaps: true }],
        [x, buckets.map((b) => b.avgBatteryTemp)], common);
}

/* --- pipeline view ----------------------------------------------------------------- */

function metric(text, name) {
  let total = null;
  for (const line of text.split("\n")) {
    if (line.startsWith(name + " ") || line.startsWith(name + "{")) {
      total = (total || 0) + Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return total;
}

async function renderPipeline() {
  const [metrics, pipeline] = await Promise.all([api("/metrics", null, "text/plain"), api("/v1/pipeline")]);
  const accepted = metric(metrics, "energy_readings_accepted_total");
  const now = Date.now();
  let rate = "–";
  if (state.lastAccepted && accepted !== null && now > state.lastAccepted.at) {
    rate = num((accepted - state.lastAccepted.value) / ((now - state.lastAccepted.at) / 1000), 1) + " /s";
  }
  if (accepted !== null) state.lastAccepted = { value: accepted, at: now };
  const backlog = metric(metrics, "energy_queue_backlog_readings");
  const age = metric(metrics, "energy_queue_oldest_age_seconds");
  cards($("pipeline-cards"), [
    ["Ingest rate", rate], ["Readings accepted", accepted === null ? "–" : String(accepted)],
    ["Backlog", backlog === null ? "–" : String(backlog)], ["Oldest queued", age === null ? "–" : num(age, 1) + " s"],
    ["Workers alive", String(pipeline.workers.length), pipeline.workers.length ? "good" : "bad"],
    ["Dead letters", String(pipeline.deadLetters), pipeline.deadLetters ? "bad" : "good"],
  ]);
  $("workers").replaceChildren(...(pipeline.workers.length ? pipeline.workers.map((w) => el("li", w))
                                                           : [el("li", "No worker answered.", "bad")]));
}

/* --- putting it together ------------------------------------------------------------ */

function showOnly(id) {
  for (const view of ["view-fleet", "view-vehicle", "view-pipeline", "login"]) $(view).hidden = view !== id;
}

async function render() {
  const p = params();
  const view = p.get("vehicle") && p.get("view") !== "fleet" && p.get("view") !== "pipeline" ? "vehicle"
    : (p.get("view") === "pipeline" ? "pipeline" : "fleet");
  const win = currentWindow();
  $("window-preset").value = win.preset;
  $("custom-window").hidden = win.preset !== "custom";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === view);
  if (!sessionStorage.getItem(TOKEN_KEY)) { showOnly("login"); $("sign-out").hidden = true; return; }
  $("sign-out").hidden = false;
  $("status").textContent = "Loading…";
  try {
    clearCharts();
    showOnly("view-" + view);
    if (view === "fleet") await renderFleet(win);
    else if (view === "vehicle") await renderVehicle(win, p.get("vehicle"));
    else await renderPipeline();
    $("error-banner").hidden = true;
    $("status").textContent = `${win.from.toISOString().slice(0, 16)}Z – ${win.to.toISOString().slice(0, 16)}Z · updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    if (e instanceof AuthError) {
      sessionStorage.removeItem(TOKEN_KEY);
      showOnly("login");
      $("token-error").textContent = e.message;
      $("token-error").hidden = false;
      $("status").textContent = "";
    } else {
      $("error-banner").textContent = "Could not load this view: " + e.message;
      $("error-banner").hidden = false;
      $("status").textContent = "";
    }
  }
}

function toLocalInput(date) { return date.toISOString().slice(0, 16); }

function wire() {
  $("flower-link").href = document.body.dataset.flowerUrl;
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
    $("token-input").value = "";
    $("token-error").hidden = true;
    render();
  });
  $("sign-out").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); render(); });
  for (const a of document.querySelectorAll("nav a, #back-to-fleet")) {
    a.addEventListener("click", (event) => { event.preventDefault(); go({ view: a.dataset.view || "fleet", vehicle: null }); });
  }
  $("window-preset").addEventListener("change", () => {
    const preset = $("window-preset").value;
    if (preset === "custom") {
      const win = currentWindow();
      $("window-from").value = toLocalInput(win.from);
      $("window-to").value = toLocalInput(win.to);
      $("custom-window").hidden = false;
      return;
    }
    go({ window: preset, from: null, to: null });
  });
  $("window-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const from = $("window-from").value, to = $("window-to").value;
    if (from && to) go({ window: "custom", from: from + ":00Z", to: to + ":00Z" });
  });
  for (const th of document.querySelectorAll("#vehicles-table th[data-sort]")) {
    th.addEventListener("click", () => {
      const key = th.dataset.sort;
      state.order = state.sort === key && state.order === "asc" ? "desc" : "asc";
      state.sort = key;
      state.offset = 0;
      render();
    });
  }
  $("page-prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); render(); });
  $("page-next").addEventListener("click", () => { state.offset += PAGE_SIZE; render(); });
  let typing = null;
  $("vehicle-search").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { state.search = $("vehicle-search").value.trim(); state.offset = 0; render(); }, 300);
  });
  window.addEventListener("popstate", render);
  setInterval(() => { if (!document.hidden) render(); }, REFRESH_MS);
  render();
}

document.addEventListener("DOMContentLoaded", wire);
