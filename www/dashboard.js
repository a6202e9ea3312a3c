// The advertiser dashboard: lists the ads of a date range, charts one ad per
// day, refreshes every 3 s while the tab is visible, asks for an API key when
// the server answers 401. Pure logic lives in dashboard-lib.js.
//
// URL parameters (kept up to date, so a view can be shared or opened by a
// test): ?from=YYYY-MM-DD&to=YYYY-MM-DD&ad=<ad id>&live=0

import {
  ApiError, buildChartPath, chartScales, compareAdIds, daysOf, describeStats,
  adsCsv, adsCsvName, fetchJson, formatCount, listAllAds, formatDayLong, formatDayShort, formatRate, labelIndices,
  lastNDays, seriesPoints, statsUrl, totals, validateRange, verifiedShare, hasVideo, VIDEO_COUNTERS,
} from "./dashboard-lib.js";

const REFRESH_MS = 3000;
const KEY_STORAGE = "glimpse.apiKey";

const $ = (id) => document.getElementById(id);
const main = $("main");
const form = $("range-form");
const fromEl = $("from");
const toEl = $("to");
const liveEl = $("live");
const rangeError = $("range-error");
const keyPanel = $("key-panel");
const keyForm = $("key-form");
const keyInput = $("api-key");
const keyError = $("key-error");
const banner = $("banner");
const liveText = $("live-text");
const liveStatus = $("live-status");
const adsBody = $("ads-body");
const adsTable = $("ads-table");
const adsState = $("ads-state");
const downloadCsv = $("download-csv");
const detail = $("detail");
const detailTitle = $("detail-title");
const chartBox = $("chart-box");
const detailState = $("detail-state");
const daysBody = $("days-body");

const params = new URLSearchParams(location.search);
const state = {
  from: "",
  to: "",
  selected: params.get("ad") || "",
  autoSelect: !params.get("ad"),
  key: readKey(),
  live: params.get("live") !== "0",
  ads: null,      // last good list
  stats: null,    // last good stats of the selected ad
  timer: 0,
  controller: null,
  lastError: null,
};

function readKey() {
  try { return sessionStorage.getItem(KEY_STORAGE) || ""; } catch { return ""; }
}
function writeKey(k) {
  try { k ? sessionStorage.setItem(KEY_STORAGE, k) : sessionStorage.removeItem(KEY_STORAGE); } catch { /* storage off */ }
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

// Range -----------------------------------------------------------------------

function initRange() {
  const dflt = lastNDays(7);
  const f = params.get("from");
  const t = params.get("to");
  const ok = f && t && !validateRange(f, t);
  state.from = ok ? f : dflt.from;
  state.to = ok ? t : dflt.to;
  fromEl.value = state.from;
  toEl.value = state.to;
  liveEl.checked = state.live;
}

function syncUrl() {
  const q = new URLSearchParams();
  q.set("from", state.from);
  q.set("to", state.to);
  if (state.selected) q.set("ad", state.selected);
  if (!state.live) q.set("live", "0");
  history.replaceState(null, "", `${location.pathname}?${q}`);
}

function applyRange(from, to) {
  fromEl.value = from;
  toEl.value = to;
  const why = validateRange(from, to);
  fromEl.setAttribute("aria-invalid", String(Boolean(why)));
  toEl.setAttribute("aria-invalid", String(Boolean(why)));
  rangeError.hidden = !why;
  setText(rangeError, why || "");
  if (why) return;
  if (from === state.from && to === state.to) return;
  state.from = from;
  state.to = to;
  state.ads = null;
  state.stats = null;
  syncUrl();
  refresh({ loading: true });
}

form.addEventListener("change", (e) => {
  if (e.target === liveEl) {
    state.live = liveEl.checked;
    syncUrl();
    schedule();
    renderLive();
    return;
  }
  applyRange(fromEl.value, toEl.value);
});
form.addEventListener("submit", (e) => { e.preventDefault(); applyRange(fromEl.value, toEl.value); });
form.querySelectorAll("[data-preset]").forEach((b) => b.addEventListener("click", () => {
  const r = lastNDays(Number(b.dataset.preset));
  applyRange(r.from, r.to);
}));

// API key -----------------------------------------------------------------

keyForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const k = keyInput.value.trim();
  if (!k) {
    keyError.hidden = false;
    setText(keyError, "Paste an API key first.");
    keyInput.focus();
    return;
  }
  state.key = k;
  writeKey(k);
  keyError.hidden = true;
  refresh({ loading: true, fromKeyForm: true });
});

function showKeyPanel(err, { fromKeyForm = false } = {}) {
  const wasHidden = keyPanel.hidden;
  keyPanel.hidden = false;
  if (state.key) {
    keyError.hidden = false;
    setText(keyError, `The key was not accepted (${err.status}). Check it and try again.`);
  } else {
    keyError.hidden = true;
  }
  if (fromKeyForm || (wasHidden && (document.activeElement === document.body || !document.activeElement))) {
    keyInput.focus();
    keyInput.select();
  }
}

// Loading -----------------------------------------------------------------

function schedule() {
  clearTimeout(state.timer);
  state.timer = 0;
  if (!state.live || document.hidden) return;
  // Waiting for a key: no point polling until one is given.
  if (state.lastError && (state.lastError.kind === "auth" || state.lastError.kind === "forbidden")) return;
  state.timer = setTimeout(() => refresh(), REFRESH_MS);
}

async function refresh({ loading = false, fromKeyForm = false } = {}) {
  clearTimeout(state.timer);
  state.controller?.abort();
  const controller = new AbortController();
  state.controller = controller;
  const { from, to, key } = state;
  if (loading || !state.ads) setLoading();
  try {
    const listed = await listAllAds(from, to, (url) => fetchJson(url, { key, signal: controller.signal }));
    const ads = listed.sort((a, b) => compareAdIds(String(a.ad_id), String(b.ad_id)));
    if (state.autoSelect && !state.selected && ads.length) {
      state.selected = ads[0].ad_id;
      syncUrl();
    }
    let stats = null;
    if (state.selected) {
      stats = await fetchJson(statsUrl(state.selected, from, to), { key, signal: controller.signal });
    }
    if (controller.signal.aborted) return;
    state.ads = ads;
    state.stats = stats;
    downloadCsv.disabled = ads.length === 0;
    state.lastError = null;
    keyPanel.hidden = true;
    delete main.dataset.error;
    renderAll();
    setBanner(null);
    main.dataset.state = ads.length ? "ready" : "empty";
    liveStatus.dataset.updatedAt = new Date().toISOString();
  } catch (e) {
    if (controller.signal.aborted || e?.name === "AbortError") return;
    const err = e instanceof ApiError ? e : new ApiError("bad-response", `Unexpected answer: ${e?.message || e}`);
    state.lastError = err;
    main.dataset.state = err.kind === "auth" ? "auth" : "error";
    main.dataset.error = err.kind;
    if (err.kind === "auth") showKeyPanel(err, { fromKeyForm });
    showError(err);
  } finally {
    if (state.controller === controller) {
      state.controller = null;
      renderLive();
      schedule();
    }
  }
}

function setLoading() {
  main.dataset.state = "loading";
  adsTable.setAttribute("aria-busy", "true");
  adsState.hidden = false;
  adsState.dataset.kind = "loading";
  setText(adsState, `Loading ads from ${formatDayLong(state.from)} to ${formatDayLong(state.to)}…`);
  if (!state.ads) {
    adsBody.replaceChildren();
    setTotals(null);
  }
}

function showError(err) {
  adsTable.setAttribute("aria-busy", "false");
  const messages = {
    network: "Can't reach the glimpse server. It may be down or restarting.",
    auth: state.key ? "The API key was not accepted." : "This server needs an API key to show stats.",
    forbidden: err.message,
    range: err.message,
    "not-found": err.message,
    server: err.message,
    "bad-response": err.message,
  };
  const retry = state.live && err.kind !== "auth" && err.kind !== "forbidden" ? " Retrying every 3 s." : "";
  const stale = state.ads ? " The numbers below are from the last successful update." : "";
  // The key panel speaks for itself; every other failure gets the banner.
  setBanner(err.kind === "auth" ? null : `${messages[err.kind] || err.message}${retry}${stale}`, err.kind);
  if (!state.ads) {
    adsTable.hidden = true;
    adsState.hidden = false;
    adsState.dataset.kind = "error";
    setText(adsState, err.kind === "auth" ? "Enter an API key above to see your ads." : "No data to show yet.");
  }
}

function setBanner(text, kind = "") {
  banner.hidden = !text;
  banner.dataset.kind = kind;
  banner.replaceChildren();
  if (!text) return;
  banner.append(document.createTextNode(text));
  if (kind && kind !== "auth") {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "button";
    b.textContent = "Retry now";
    b.addEventListener("click", () => refresh());
    banner.append(" ", b);
  }
}

function renderLive() {
  const on = state.live && !document.hidden;
  liveStatus.dataset.live = String(on);
  const when = liveStatus.dataset.updatedAt
    ? new Date(liveStatus.dataset.updatedAt).toISOString().slice(11, 19) + " UTC"
    : "";
  let text;
  if (state.lastError) text = state.lastError.kind === "auth" ? "Waiting for an API key" : "Connection problem";
  else if (!when) text = "Loading…";
  else text = `${on ? "Live" : "Paused"} · updated ${when}`;
  liveStatus.dataset.status = state.lastError ? "error" : on ? "live" : "paused";
  setText(liveText, text);
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden) { clearTimeout(state.timer); renderLive(); }
  else if (state.live) refresh();
});

// Rendering ---------------------------------------------------------------

function setTotals(t) {
  const put = (k, v) => {
    const el = main.querySelector(`[data-total="${k}"]`);
    setText(el, v);
  };
  put("ads", t ? formatCount(t.ads) : "—");
  put("impressions", t ? formatCount(t.impressions) : "—");
  put("measurable", t ? formatCount(t.measurable) : "—");
  put("viewability_rate", t ? formatRate(t.viewability_rate) : "—");
}

const DISPLAY_FIELDS = ["impressions", "measurable", "unique_visitors", "viewability_rate", "verified_share", "invalid"];
// The video column group: shown only while some ad of the table (or the
// selected ad, in its detail) has video events.
const VIDEO_FIELDS = VIDEO_COUNTERS.map((k) => `video_${k}`);
const FIELDS = [...DISPLAY_FIELDS, ...VIDEO_FIELDS];
// Shares shown as percentages; every other field is a count.
const RATES = new Set(["viewability_rate", "verified_share"]);

/** The value of `field` for an ad, a day or a stats answer. */
function fieldValue(counts, field) {
  if (field === "verified_share") return verifiedShare(counts);
  if (field.startsWith("video_")) return counts.video ? counts.video[field.slice("video_".length)] : 0;
  return counts[field];
}

/** Shows or hides the video columns (cells marked `.col-video`) inside `root`. */
function showVideo(root, on) {
  root.dataset.video = String(on);
  for (const el of root.querySelectorAll(".col-video")) el.hidden = !on;
}

function formatField(field, value) {
  return RATES.has(field) ? formatRate(value) : formatCount(value);
}

function cell(field, value) {
  const td = document.createElement("td");
  td.className = field.startsWith("video_") ? "num col-video" : "num";
  td.dataset.field = field;
  updateCell(td, value);
  return td;
}

function updateCell(td, value) {
  const raw = value === null || value === undefined ? "" : String(value);
  if (td.dataset.value === raw && td.textContent) return;
  td.dataset.value = raw;
  td.textContent = formatField(td.dataset.field, value);
}

function renderAll() {
  adsTable.setAttribute("aria-busy", "false");
  adsTable.dataset.from = state.from;
  adsTable.dataset.to = state.to;
  renderTable(state.ads);
  showVideo(adsTable.closest("section"), state.ads.some(hasVideo));
  adsTable.hidden = state.ads.length === 0;
  setTotals(totals(state.ads));
  if (!state.ads.length) {
    adsState.hidden = false;
    adsState.dataset.kind = "empty";
    adsState.replaceChildren(
      `No ad was seen between ${formatDayLong(state.from)} and ${formatDayLong(state.to)}. `,
      Object.assign(document.createElement("a"), { href: "/", textContent: "Open the feed" }),
      " and scroll: its ads are counted here within seconds.",
    );
  } else {
    adsState.hidden = true;
    adsState.dataset.kind = "ready";
  }
  renderDetail();
}

// Update rows in place (keyed by ad id) so live refreshes keep focus and scroll.
function renderTable(ads) {
  const existing = new Map([...adsBody.rows].map((r) => [r.dataset.adId, r]));
  const wanted = new Set(ads.map((a) => a.ad_id));
  for (const [id, row] of existing) if (!wanted.has(id)) row.remove();
  let prev = null;
  for (const ad of ads) {
    let row = existing.get(ad.ad_id);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.adId = ad.ad_id;
      const th = document.createElement("th");
      th.scope = "row";
      const b = document.createElement("button");
      b.type = "button";
      b.className = "row-select";
      b.textContent = ad.ad_id;
      b.setAttribute("aria-controls", "detail");
      th.append(b);
      row.append(th, ...FIELDS.map((f) => cell(f, fieldValue(ad, f))));
    } else {
      for (const f of FIELDS) updateCell(row.querySelector(`[data-field="${f}"]`), fieldValue(ad, f));
    }
    const selected = ad.ad_id === state.selected;
    row.classList.toggle("is-selected", selected);
    if (selected) row.setAttribute("aria-current", "true"); else row.removeAttribute("aria-current");
    row.querySelector(".row-select").setAttribute("aria-pressed", String(selected));
    // Only move a row when the order changed: moving a node loses its focus.
    const expected = prev ? prev.nextElementSibling : adsBody.firstElementChild;
    if (expected !== row) adsBody.insertBefore(row, expected);
    prev = row;
  }
}

// The table's ads as a file, built from the numbers on screen.
downloadCsv.addEventListener("click", () => {
  if (!state.ads) return;
  const url = URL.createObjectURL(new Blob([adsCsv(state.ads)], { type: "text/csv" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = adsCsvName(state.from, state.to);
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 0);
});

adsBody.addEventListener("click", (e) => {
  const row = e.target.closest("tr[data-ad-id]");
  if (!row) return;
  select(row.dataset.adId, { scroll: true });
});

function select(adId, { scroll = false } = {}) {
  state.autoSelect = false;
  if (state.selected === adId) {
    if (scroll) detail.scrollIntoView({ block: "nearest", behavior: "smooth" });
    return;
  }
  state.selected = adId;
  state.stats = null;
  syncUrl();
  if (state.ads) renderTable(state.ads);
  renderDetail();
  if (scroll) detail.scrollIntoView({ block: "nearest", behavior: "smooth" });
  refresh();
}

$("detail-close").addEventListener("click", () => {
  const id = state.selected;
  state.selected = "";
  state.autoSelect = false;
  state.stats = null;
  syncUrl();
  if (state.ads) renderTable(state.ads);
  renderDetail();
  adsBody.querySelector(`tr[data-ad-id="${CSS.escape(id)}"] .row-select`)?.focus();
});

function renderDetail() {
  if (!state.selected) { detail.hidden = true; delete detail.dataset.adId; return; }
  detail.hidden = false;
  detail.dataset.adId = state.selected;
  setText(detailTitle, `${state.selected}, day by day`);
  const s = state.stats;
  showVideo(detail, hasVideo(s));
  for (const f of FIELDS) {
    const dd = detail.querySelector(`dd[data-field="${f}"]`);
    const v = s ? fieldValue(s, f) : undefined;
    dd.dataset.value = v === null || v === undefined ? "" : String(v);
    setText(dd, !s ? "…" : formatField(f, v));
  }
  if (!s) {
    detailState.hidden = false;
    setText(detailState, "Loading the days…");
    chartBox.replaceChildren();
    daysBody.replaceChildren();
    return;
  }
  detailState.hidden = true;
  drawChart(s);
  renderDays(s);
}

function renderDays(s) {
  daysBody.replaceChildren(...(s.days || []).map((d) => {
    const tr = document.createElement("tr");
    tr.dataset.day = d.date;
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = formatDayLong(d.date);
    tr.append(th, cell("impressions", d.impressions), cell("measurable", d.measurable),
      cell("unique_visitors", d.unique_visitors), cell("verified_share", verifiedShare(d)),
      cell("invalid", d.invalid), ...VIDEO_FIELDS.map((f) => cell(f, fieldValue(d, f))));
    return tr;
  }));
  showVideo(detail, hasVideo(s));
}

// The chart: hand-made SVG, sized to its box so text stays readable.
const SVG_NS = "http://www.w3.org/2000/svg";
function svgEl(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function drawChart(s) {
  // Fill missing days so the x axis always covers the whole range.
  const byDate = new Map((s.days || []).map((d) => [d.date, d]));
  const days = daysOf(s.from || state.from, s.to || state.to).map((date) =>
    byDate.get(date) || { date, impressions: 0, measurable: 0, unique_visitors: 0, verified: 0, invalid: 0 });
  const width = Math.max(280, Math.floor(chartBox.clientWidth || 640));
  const narrow = width < 520;
  const height = narrow ? 220 : 280;
  const max = Math.max(0, ...days.map((d) => Math.max(d.impressions || 0, d.unique_visitors || 0)));
  const margin = { top: 16, right: narrow ? 12 : 20, bottom: 44, left: narrow ? 44 : 56 };
  const sc = chartScales({ length: days.length, max, width, height, margin });
  const { x0, x1, y0, y1 } = sc.plot;

  const svg = svgEl("svg", {
    width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-labelledby": "chart-title chart-desc", class: "chart__svg",
  });
  svg.append(
    svgEl("title", { id: "chart-title" }, `Viewable impressions and unique visitors per day for ${s.ad_id}`),
    svgEl("desc", { id: "chart-desc" }, describeStats({ ...s, days })),
  );

  const grid = svgEl("g", { class: "chart__grid" });
  for (const t of sc.ticks) {
    const y = sc.y(t);
    grid.append(
      svgEl("line", { x1: x0, x2: x1, y1: y, y2: y }),
      svgEl("text", { x: x0 - 8, y: y + 4, "text-anchor": "end", class: "chart__tick" }, formatCount(t)),
    );
  }
  svg.append(grid);

  const axis = svgEl("g", { class: "chart__axis" });
  axis.append(svgEl("line", { x1: x0, x2: x1, y1: y0, y2: y0 }), svgEl("line", { x1: x0, x2: x0, y1: y1, y2: y0 }));
  const maxLabels = Math.max(2, Math.floor((x1 - x0) / (narrow ? 56 : 72)));
  for (const i of labelIndices(days.length, maxLabels)) {
    const x = sc.x(i);
    axis.append(
      svgEl("line", { x1: x, x2: x, y1: y0, y2: y0 + 5 }),
      svgEl("text", { x, y: y0 + 19, "text-anchor": "middle", class: "chart__tick" }, formatDayShort(days[i].date)),
    );
  }
  axis.append(svgEl("text", { x: (x0 + x1) / 2, y: height - 6, "text-anchor": "middle", class: "chart__axis-label" }, "Day (UTC)"));
  svg.append(axis);

  const series = [
    { field: "impressions", cls: "impressions", label: "viewable impressions" },
    { field: "unique_visitors", cls: "uniques", label: "unique visitors" },
  ];
  const showDots = days.length <= 62;
  for (const ser of series) {
    const pts = seriesPoints(days, ser.field, sc);
    const g = svgEl("g", { class: `chart__series`, "data-series": ser.field });
    g.append(svgEl("path", { d: buildChartPath(pts), class: `series--${ser.cls}`, fill: "none" }));
    if (showDots || days.length === 1) {
      pts.forEach(([x, y], i) => {
        const dot = ser.cls === "impressions"
          ? svgEl("circle", { cx: x, cy: y, r: 3.5, class: "dot--impressions" })
          : svgEl("rect", { x: x - 3.5, y: y - 3.5, width: 7, height: 7, class: "dot--uniques" });
        dot.append(svgEl("title", {}, `${formatDayLong(days[i].date)}: ${formatCount(days[i][ser.field])} ${ser.label}`));
        g.append(dot);
      });
    }
    svg.append(g);
  }
  chartBox.replaceChildren(svg);
}

let lastWidth = 0;
new ResizeObserver(() => {
  const w = Math.floor(chartBox.clientWidth);
  if (w && w !== lastWidth && state.stats && !detail.hidden) { lastWidth = w; drawChart(state.stats); }
}).observe(chartBox);

// Start -------------------------------------------------------------------

initRange();
syncUrl();
renderLive();
refresh({ loading: true });
