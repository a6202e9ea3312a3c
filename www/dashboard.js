// The advertiser dashboard: lists the ads (or the campaigns) of a date range
// in a time zone, charts one ad per day and over the last 48 hours, or one
// campaign's reach per day with its ads; refreshes every 3 s while the tab is
// visible, asks for an API key when the server answers 401. Pure logic lives
// in dashboard-lib.js.
//
// URL parameters (kept up to date, so a view can be shared or opened by a
// test): ?from=YYYY-MM-DD&to=YYYY-MM-DD&tz=<IANA zone>&view=campaigns
// &ad=<ad id>&campaign=<campaign id>&live=0

import {
  ApiError, buildChartPath, chartScales, compareAdIds, daysOf, describeStats,
  csvName, fetchCsv, fetchJson, listAllCsv, formatCount, listAll, formatDayLong, formatDayShort, formatRate,
  formatFrequency, formatHour, formatHourShort, formatOffset, labelIndices, lastNDays, lastHours, lastHoursRange,
  seriesPoints, statsUrl, campaignStatsUrl, totals, validateRange, verifiedShare, hasVideo, VIDEO_COUNTERS,
  initialZone, pickerZones, todayIn, zoneOffsetMinutes,
} from "./dashboard-lib.js";

const REFRESH_MS = 3000;
const HOURS_SHOWN = 48;
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
const tzEl = $("tz");
const tzNote = $("tz-note");
const hoursBox = $("hours-box");
const hoursState = $("hours-state");
const hoursBody = $("hours-body");
const campaignsBody = $("campaigns-body");
const campaignsTable = $("campaigns-table");
const campaignsState = $("campaigns-state");
const downloadCampaignsCsv = $("download-campaigns-csv");
const campaignDetail = $("campaign-detail");
const campaignTitle = $("campaign-title");
const campaignChartBox = $("campaign-chart-box");
const campaignState = $("campaign-state");
const campaignAdsBody = $("campaign-ads-body");

const params = new URLSearchParams(location.search);
const state = {
  from: "",
  to: "",
  zone: "UTC",
  view: params.get("view") === "campaigns" ? "campaigns" : "ads",
  selected: params.get("ad") || "",
  autoSelect: !params.get("ad"),
  campaign: params.get("campaign") || "",
  key: readKey(),
  live: params.get("live") !== "0",
  ads: null,      // last good list
  stats: null,    // last good stats of the selected ad
  hourly: null,   // last good hourly stats of the selected ad: { stats } or { error }
  campaigns: null,      // last good list of campaigns
  campaignStats: null,  // last good stats of the selected campaign
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
  const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const { zone, note } = initialZone(params.get("tz"), browserZone);
  state.zone = zone;
  tzNote.hidden = !note;
  setText(tzNote, note || "");
  const now = new Date();
  tzEl.replaceChildren(...pickerZones(zone).map((z) => {
    const o = document.createElement("option");
    o.value = z;
    o.textContent = z === "UTC" ? "UTC" : `${z.replaceAll("_", " ")} (${formatOffset(zoneOffsetMinutes(z, now))})`;
    return o;
  }));
  tzEl.value = zone;
  renderZone();
  const dflt = lastNDays(7, now, zone);
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
  q.set("tz", state.zone);
  if (state.view === "campaigns") q.set("view", "campaigns");
  if (state.selected) q.set("ad", state.selected);
  if (state.campaign) q.set("campaign", state.campaign);
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
  forgetData();
  syncUrl();
  refresh({ loading: true });
}

/** Drops every answer held: they were for another range, zone or view. */
function forgetData() {
  state.ads = null;
  state.stats = null;
  state.hourly = null;
  state.campaigns = null;
  state.campaignStats = null;
}

/** The zone's name wherever the page says which days and hours it shows. */
function renderZone() {
  setText($("zone-name"), state.zone);
  for (const th of document.querySelectorAll("[data-zone-label]")) setText(th, `${th.dataset.zoneLabel} (${state.zone})`);
}

// A new zone keeps the length of the range and ends it on today in that zone
// when the old range ended on today in the old one; any other range keeps its dates.
function applyZone(zone) {
  if (zone === state.zone) return;
  const endedToday = state.to === todayIn(state.zone);
  const length = daysOf(state.from, state.to).length;
  state.zone = zone;
  tzNote.hidden = true;
  renderZone();
  forgetData();
  if (endedToday) {
    const r = lastNDays(length, new Date(), zone);
    state.from = r.from;
    state.to = r.to;
    fromEl.value = r.from;
    toEl.value = r.to;
  }
  syncUrl();
  refresh({ loading: true });
}

form.addEventListener("change", (e) => {
  if (e.target === tzEl) {
    applyZone(tzEl.value);
    return;
  }
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
  const r = lastNDays(Number(b.dataset.preset), new Date(), state.zone);
  applyRange(r.from, r.to);
}));

// Views -------------------------------------------------------------------

const viewButtons = [...document.querySelectorAll("[data-view]")];
for (const b of viewButtons) b.addEventListener("click", () => setView(b.dataset.view));

function setView(view) {
  if (view === state.view) return;
  state.view = view;
  syncUrl();
  renderView();
  refresh({ loading: true });
}

function renderView() {
  main.dataset.view = state.view;
  for (const b of viewButtons) b.setAttribute("aria-pressed", String(b.dataset.view === state.view));
  for (const el of document.querySelectorAll("[data-view-of]")) {
    if (el.dataset.viewOf !== state.view) el.hidden = true;
  }
  $("ads-panel").hidden = state.view !== "ads";
  $("campaigns-panel").hidden = state.view !== "campaigns";
  setText($("count-label"), state.view === "ads" ? "Ads" : "Campaigns");
}

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

/**
 * Whether asking again may mend `err`: not without a key, nor for a request
 * the edge refused (a 400, such as a zone whose days it cannot cut): a new
 * key, range or zone asks again by itself.
 */
function retries(err) {
  return !["auth", "forbidden", "range"].includes(err.kind);
}

function schedule() {
  clearTimeout(state.timer);
  state.timer = 0;
  if (!state.live || document.hidden) return;
  if (state.lastError && !retries(state.lastError)) return;
  state.timer = setTimeout(() => refresh(), REFRESH_MS);
}

async function refresh({ loading = false, fromKeyForm = false } = {}) {
  clearTimeout(state.timer);
  state.controller?.abort();
  const controller = new AbortController();
  state.controller = controller;
  const { view } = state;
  const get = (url) => fetchJson(url, { key: state.key, signal: controller.signal });
  if (loading || !listed()) setLoading();
  try {
    const count = view === "ads" ? await loadAds(get) : await loadCampaigns(get);
    if (controller.signal.aborted) return;
    state.lastError = null;
    keyPanel.hidden = true;
    delete main.dataset.error;
    renderAll();
    setBanner(null);
    main.dataset.state = count ? "ready" : "empty";
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

/** The ads, their selected one's stats, and its last 48 hours; answers how many ads. */
async function loadAds(get) {
  const { from, to, zone } = state;
  const ads = (await listAll("ads", from, to, get, { zone }))
    .sort((a, b) => compareAdIds(String(a.ad_id), String(b.ad_id)));
  if (state.autoSelect && !state.selected && ads.length) {
    state.selected = ads[0].ad_id;
    syncUrl();
  }
  let stats = null;
  let hourly = null;
  if (state.selected) {
    const hours = lastHoursRange(HOURS_SHOWN, new Date(), zone);
    // An edge without hourly counts still shows its days.
    const hourlyAnswer = get(statsUrl(state.selected, hours.from, hours.to, zone, "hour"))
      .then((s) => ({ stats: s }), (e) => (e?.name === "AbortError" ? Promise.reject(e) : { error: e }));
    [stats, hourly] = await Promise.all([get(statsUrl(state.selected, from, to, zone)), hourlyAnswer]);
  }
  if (state.view !== "ads") return ads.length;
  state.ads = ads;
  state.stats = stats;
  state.hourly = hourly;
  downloadCsv.disabled = ads.length === 0;
  return ads.length;
}

/** The campaigns and the selected one's stats; answers how many campaigns. */
async function loadCampaigns(get) {
  const { from, to, zone } = state;
  const campaigns = (await listAll("campaigns", from, to, get, { zone }))
    .sort((a, b) => compareAdIds(String(a.campaign_id), String(b.campaign_id)));
  const stats = state.campaign ? await get(campaignStatsUrl(state.campaign, from, to, zone)) : null;
  if (state.view !== "campaigns") return campaigns.length;
  state.campaigns = campaigns;
  state.campaignStats = stats;
  downloadCampaignsCsv.disabled = campaigns.length === 0;
  return campaigns.length;
}

/** The last good list of the current view. */
function listed() {
  return state.view === "ads" ? state.ads : state.campaigns;
}

function setLoading() {
  main.dataset.state = "loading";
  const [table, stateEl, body, what] = state.view === "ads"
    ? [adsTable, adsState, adsBody, "ads"]
    : [campaignsTable, campaignsState, campaignsBody, "campaigns"];
  table.setAttribute("aria-busy", "true");
  stateEl.hidden = false;
  stateEl.dataset.kind = "loading";
  setText(stateEl, `Loading ${what} from ${formatDayLong(state.from)} to ${formatDayLong(state.to)}…`);
  if (!listed()) {
    body.replaceChildren();
    setTotals(null);
  }
}

function showError(err) {
  const [table, stateEl, what] = state.view === "ads"
    ? [adsTable, adsState, "ads"]
    : [campaignsTable, campaignsState, "campaigns"];
  table.setAttribute("aria-busy", "false");
  const messages = {
    network: "Can't reach the glimpse server. It may be down or restarting.",
    auth: state.key ? "The API key was not accepted." : "This server needs an API key to show stats.",
    forbidden: err.message,
    range: err.message,
    "not-found": err.message,
    server: err.message,
    "bad-response": err.message,
  };
  const retry = state.live && retries(err) ? " Retrying every 3 s." : "";
  const stale = listed() ? " The numbers below are from the last successful update." : "";
  // The key panel speaks for itself; every other failure gets the banner.
  setBanner(err.kind === "auth" ? null : `${messages[err.kind] || err.message}${retry}${stale}`, err.kind);
  // A detail whose numbers were for another range or zone says why it is empty.
  if (state.view === "ads") renderDetail();
  else renderCampaignDetail();
  if (!listed()) {
    table.hidden = true;
    stateEl.hidden = false;
    stateEl.dataset.kind = "error";
    setText(stateEl, err.kind === "auth" ? `Enter an API key above to see your ${what}.` : "No data to show yet.");
  }
}

/** Why a detail panel has no numbers: they are loading, or the request failed (the banner says why). */
function missing(what) {
  return state.lastError ? `No ${what} to show: the server refused or failed the request (see above).` : `Loading the ${what}…`;
}

function setBanner(text, kind = "") {
  banner.hidden = !text;
  banner.dataset.kind = kind;
  banner.replaceChildren();
  if (!text) return;
  banner.append(document.createTextNode(text));
  if (kind && retries({ kind })) {
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
    ? new Date(liveStatus.dataset.updatedAt).toLocaleTimeString("en-GB", { timeZone: state.zone, hour12: false }) + ` ${state.zone}`
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
  renderView();
  if (state.view === "campaigns") {
    renderCampaigns();
    return;
  }
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

/** A row's header: its id as the button that selects it, for the panel `controls`. */
function rowHeader(id, controls) {
  const th = document.createElement("th");
  th.scope = "row";
  const b = document.createElement("button");
  b.type = "button";
  b.className = "row-select";
  b.textContent = id;
  b.setAttribute("aria-controls", controls);
  th.append(b);
  return th;
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
      row.append(rowHeader(ad.ad_id, "detail"), ...FIELDS.map((f) => cell(f, fieldValue(ad, f))));
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

/** Offers `text` as a CSV file named `name`. */
function offer(text, name) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 0);
}

// The table on screen as a file: the edge's own CSV of the same listing
// (range and zone), every page of it.
async function download(what, button) {
  const { from, to, zone, key } = state;
  button.disabled = true;
  try {
    const csv = await listAllCsv(what, from, to, (url) => fetchCsv(url, { key }), { zone });
    offer(csv, csvName(what, from, to, zone));
  } catch (e) {
    const err = e instanceof ApiError ? e : new ApiError("bad-response", `Unexpected answer: ${e?.message || e}`);
    setBanner(`The CSV could not be downloaded: ${err.message}`, err.kind);
  } finally {
    button.disabled = false;
  }
}
downloadCsv.addEventListener("click", () => download("ads", downloadCsv));
downloadCampaignsCsv.addEventListener("click", () => download("campaigns", downloadCampaignsCsv));

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
  state.hourly = null;
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
  state.hourly = null;
  syncUrl();
  if (state.ads) renderTable(state.ads);
  renderDetail();
  adsBody.querySelector(`tr[data-ad-id="${CSS.escape(id)}"] .row-select`)?.focus();
});

/** Shows `note` (an answer's `visitors_note`) in `el`, or hides it. */
function renderVisitorsNote(el, note) {
  el.hidden = !note;
  setText(el, note || "");
}

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
  renderVisitorsNote($("detail-visitors-note"), s?.visitors_note);
  if (!s) {
    detailState.hidden = false;
    setText(detailState, missing("days"));
    chartBox.replaceChildren();
    daysBody.replaceChildren();
    hoursBox.replaceChildren();
    hoursBody.replaceChildren();
    return;
  }
  detailState.hidden = true;
  drawDays(s);
  renderDays(s);
  renderHours();
}

/** A day's or an hour's row of counts, headed by `label`. */
function periodRow(label, counts) {
  const tr = document.createElement("tr");
  const th = document.createElement("th");
  th.scope = "row";
  th.textContent = label;
  tr.append(th, cell("impressions", counts.impressions), cell("measurable", counts.measurable),
    cell("unique_visitors", counts.unique_visitors), cell("verified_share", verifiedShare(counts)),
    cell("invalid", counts.invalid));
  return tr;
}

function renderDays(s) {
  daysBody.replaceChildren(...(s.days || []).map((d) => {
    const tr = periodRow(formatDayLong(d.date), d);
    tr.dataset.day = d.date;
    tr.append(...VIDEO_FIELDS.map((f) => cell(f, fieldValue(d, f))));
    return tr;
  }));
  showVideo(detail, hasVideo(s));
}

/** The selected ad's last 48 hours: a chart and a table, or why there are none. */
function renderHours() {
  const h = state.hourly;
  const counted = Array.isArray(h?.stats?.hours);
  const hours = counted ? lastHours(h.stats.hours, HOURS_SHOWN) : [];
  hoursState.hidden = counted;
  if (!h) setText(hoursState, "Loading the hours…");
  else if (h.error) setText(hoursState, `Hours are not available: ${h.error.message}`);
  else if (!counted) setText(hoursState, "Hours are not available: this glimpse server does not count per hour.");
  if (!counted) {
    hoursBox.replaceChildren();
    hoursBody.replaceChildren();
    return;
  }
  hoursBox.dataset.hours = String(hours.length);
  drawChart(hoursBox, hours, {
    id: "hours-chart",
    title: `Viewable impressions and unique visitors per hour for ${h.stats.ad_id}, the last 48 hours (${state.zone})`,
    desc: describeHours(hours),
    axisLabel: `Hour (${state.zone})`,
    tick: (row) => formatHourShort(row.hour),
    long: (row) => formatHour(row.hour),
    second: "unique visitors",
  });
  hoursBody.replaceChildren(...hours.map((row) => {
    const tr = periodRow(formatHour(row.hour), row);
    tr.dataset.hour = row.hour;
    return tr;
  }));
}

function describeHours(hours) {
  if (!hours.length) return "No hours in this range.";
  const total = hours.reduce((n, row) => n + (row.impressions || 0), 0);
  const peak = hours.reduce((best, row) => (row.impressions > best.impressions ? row : best), hours[0]);
  const base = `${formatCount(total)} viewable impressions from ${formatHour(hours[0].hour)} to ${formatHour(hours[hours.length - 1].hour)}.`;
  return total > 0 ? `${base} Busiest hour: ${formatHour(peak.hour)} with ${formatCount(peak.impressions)}.` : base;
}

// Campaigns -----------------------------------------------------------------

const CAMPAIGN_FIELDS = ["impressions", "measurable", "reach", "frequency", "viewability_rate", "invalid", "ads"];

function formatCampaignField(field, value) {
  if (field === "frequency") return formatFrequency(value);
  return field === "viewability_rate" ? formatRate(value) : formatCount(value);
}

function campaignCell(field, value) {
  const td = document.createElement("td");
  td.className = "num";
  td.dataset.field = field;
  td.dataset.value = value === null || value === undefined ? "" : String(value);
  td.textContent = formatCampaignField(field, value);
  return td;
}

function renderCampaigns() {
  const campaigns = state.campaigns;
  campaignsTable.setAttribute("aria-busy", "false");
  campaignsTable.dataset.from = state.from;
  campaignsTable.dataset.to = state.to;
  campaignsTable.hidden = campaigns.length === 0;
  const t = totals(campaigns);
  setTotals({ ...t, ads: campaigns.length });
  campaignsBody.replaceChildren(...campaigns.map((c) => {
    const tr = document.createElement("tr");
    tr.dataset.campaignId = c.campaign_id;
    const selected = c.campaign_id === state.campaign;
    tr.classList.toggle("is-selected", selected);
    if (selected) tr.setAttribute("aria-current", "true");
    const th = rowHeader(c.campaign_id, "campaign-detail");
    th.querySelector(".row-select").setAttribute("aria-pressed", String(selected));
    tr.append(th, ...CAMPAIGN_FIELDS.map((f) => campaignCell(f, c[f])));
    return tr;
  }));
  if (!campaigns.length) {
    campaignsState.hidden = false;
    campaignsState.dataset.kind = "empty";
    setText(campaignsState, `No campaign was seen between ${formatDayLong(state.from)} and ${formatDayLong(state.to)}. Ads join a campaign by their data-campaign-id attribute.`);
  } else {
    campaignsState.hidden = true;
    campaignsState.dataset.kind = "ready";
  }
  renderCampaignDetail();
}

campaignsBody.addEventListener("click", (e) => {
  const row = e.target.closest("tr[data-campaign-id]");
  if (!row || row.dataset.campaignId === state.campaign) return;
  state.campaign = row.dataset.campaignId;
  state.campaignStats = null;
  syncUrl();
  renderCampaigns();
  campaignDetail.scrollIntoView({ block: "nearest", behavior: "smooth" });
  refresh();
});

$("campaign-close").addEventListener("click", () => {
  const id = state.campaign;
  state.campaign = "";
  state.campaignStats = null;
  syncUrl();
  renderCampaigns();
  campaignsBody.querySelector(`tr[data-campaign-id="${CSS.escape(id)}"] .row-select`)?.focus();
});

function renderCampaignDetail() {
  if (!state.campaign) { campaignDetail.hidden = true; delete campaignDetail.dataset.campaignId; return; }
  campaignDetail.hidden = false;
  campaignDetail.dataset.campaignId = state.campaign;
  setText(campaignTitle, `${state.campaign}, day by day`);
  const s = state.campaignStats;
  for (const dd of campaignDetail.querySelectorAll(".detail__stats dd")) {
    const f = dd.dataset.field;
    const v = s ? s[f] : undefined;
    dd.dataset.value = v === null || v === undefined ? "" : String(v);
    setText(dd, !s ? "…" : formatCampaignField(f, v));
  }
  renderVisitorsNote($("campaign-visitors-note"), s?.visitors_note);
  campaignState.hidden = Boolean(s);
  if (!s) {
    setText(campaignState, missing("campaign"));
    campaignChartBox.replaceChildren();
    campaignAdsBody.replaceChildren();
    return;
  }
  const days = filledDays(s);
  drawChart(campaignChartBox, days, {
    id: "campaign-chart",
    title: `Viewable impressions and reach per day for ${s.campaign_id}`,
    desc: describeStats({ ...s, unique_visitors: s.reach, days }),
    axisLabel: `Day (${state.zone})`,
    tick: (row) => formatDayShort(row.date),
    long: (row) => formatDayLong(row.date),
    second: "reached",
  });
  campaignAdsBody.replaceChildren(...(s.ads || []).map((ad) => {
    const tr = document.createElement("tr");
    tr.dataset.adId = ad.ad_id;
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = ad.ad_id;
    tr.append(th, cell("impressions", ad.impressions), cell("measurable", ad.measurable),
      cell("unique_visitors", ad.unique_visitors), cell("viewability_rate", ad.viewability_rate), cell("invalid", ad.invalid));
    return tr;
  }));
}

// The charts: hand-made SVG, sized to their box so text stays readable.
const SVG_NS = "http://www.w3.org/2000/svg";
function svgEl(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** Every day of a stats answer's range, zeros where it has none, so the x axis covers the range. */
function filledDays(s) {
  const byDate = new Map((s.days || []).map((d) => [d.date, d]));
  return daysOf(s.from || state.from, s.to || state.to).map((date) =>
    byDate.get(date) || { date, impressions: 0, measurable: 0, unique_visitors: 0, verified: 0, invalid: 0 });
}

function drawDays(s) {
  const days = filledDays(s);
  drawChart(chartBox, days, {
    id: "chart",
    title: `Viewable impressions and unique visitors per day for ${s.ad_id}`,
    desc: describeStats({ ...s, days }),
    axisLabel: `Day (${state.zone})`,
    tick: (row) => formatDayShort(row.date),
    long: (row) => formatDayLong(row.date),
    second: "unique visitors",
  });
}

/**
 * Draws `rows` (days or hours) into `box`: viewable impressions and unique
 * visitors (a campaign's reach) as two lines. `o` names the chart and its
 * labels: `tick(row)` under the axis, `long(row)` in each point's tooltip,
 * `second` the second series' words.
 */
function drawChart(box, rows, o) {
  box.chart = { rows, o };
  const width = Math.max(280, Math.floor(box.clientWidth || 640));
  const narrow = width < 520;
  const height = narrow ? 220 : 280;
  const max = Math.max(0, ...rows.map((d) => Math.max(d.impressions || 0, d.unique_visitors || 0)));
  const margin = { top: 16, right: narrow ? 12 : 20, bottom: 44, left: narrow ? 44 : 56 };
  const sc = chartScales({ length: rows.length, max, width, height, margin });
  const { x0, x1, y0, y1 } = sc.plot;

  const svg = svgEl("svg", {
    width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-labelledby": `${o.id}-title ${o.id}-desc`, class: "chart__svg",
  });
  svg.append(svgEl("title", { id: `${o.id}-title` }, o.title), svgEl("desc", { id: `${o.id}-desc` }, o.desc));

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
  for (const i of labelIndices(rows.length, maxLabels)) {
    const x = sc.x(i);
    axis.append(
      svgEl("line", { x1: x, x2: x, y1: y0, y2: y0 + 5 }),
      svgEl("text", { x, y: y0 + 19, "text-anchor": "middle", class: "chart__tick" }, o.tick(rows[i])),
    );
  }
  axis.append(svgEl("text", { x: (x0 + x1) / 2, y: height - 6, "text-anchor": "middle", class: "chart__axis-label" }, o.axisLabel));
  svg.append(axis);

  const series = [
    { field: "impressions", cls: "impressions", label: "viewable impressions" },
    { field: "unique_visitors", cls: "uniques", label: o.second },
  ];
  const showDots = rows.length <= 62;
  for (const ser of series) {
    const pts = seriesPoints(rows, ser.field, sc);
    const g = svgEl("g", { class: `chart__series`, "data-series": ser.field });
    g.append(svgEl("path", { d: buildChartPath(pts), class: `series--${ser.cls}`, fill: "none" }));
    if (showDots || rows.length === 1) {
      pts.forEach((p, i) => {
        if (!p) return;
        const [x, y] = p;
        const dot = ser.cls === "impressions"
          ? svgEl("circle", { cx: x, cy: y, r: 3.5, class: "dot--impressions" })
          : svgEl("rect", { x: x - 3.5, y: y - 3.5, width: 7, height: 7, class: "dot--uniques" });
        dot.append(svgEl("title", {}, `${o.long(rows[i])}: ${formatCount(rows[i][ser.field])} ${ser.label}`));
        g.append(dot);
      });
    }
    svg.append(g);
  }
  box.replaceChildren(svg);
}

// Redraw a chart when its box changes width.
const resized = new ResizeObserver((entries) => {
  for (const { target } of entries) {
    const w = Math.floor(target.clientWidth);
    if (w && target.chart && w !== target.chartWidth) {
      target.chartWidth = w;
      drawChart(target, target.chart.rows, target.chart.o);
    }
  }
});
for (const box of [chartBox, hoursBox, campaignChartBox]) resized.observe(box);

// Start -------------------------------------------------------------------

initRange();
renderView();
syncUrl();
renderLive();
refresh({ loading: true });
