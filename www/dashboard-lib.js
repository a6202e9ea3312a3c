// Pure helpers of the dashboard: dates and time zones, number formatting, API
// URLs and errors, CSV, and the geometry of the hand-made SVG chart. No DOM,
// no globals (fetchJson takes its fetch; time zones come from `Intl`), so
// `node --test www/tests/` covers them.

export const MAX_RANGE_DAYS = 366;
const DAY_MS = 86_400_000;
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

// Dates -------------------------------------------------------------------

/** `YYYY-MM-DD` of a Date (or epoch ms), in UTC. */
export function isoDate(d) {
  const x = d instanceof Date ? d : new Date(d);
  return x.toISOString().slice(0, 10);
}

/** Epoch ms of 00:00 UTC of a `YYYY-MM-DD` string, or NaN if it is not a real date. */
export function parseIsoDate(s) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(String(s ?? ""));
  if (!m) return NaN;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const t = Date.UTC(y, mo - 1, d);
  const back = new Date(t);
  if (back.getUTCFullYear() !== y || back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d) return NaN;
  return t;
}

/** The last `n` days up to and including today in time zone `zone` (UTC by default): {from, to}. */
export function lastNDays(n, now = new Date(), zone = "UTC") {
  if (!Number.isInteger(n) || n < 1) throw new RangeError("n must be a positive integer");
  const today = parseIsoDate(todayIn(zone, now));
  return { from: isoDate(today - (n - 1) * DAY_MS), to: isoDate(today) };
}

// Time zones --------------------------------------------------------------
//
// The edge keeps counts per UTC hour, so it cuts the days of a zone only
// while its offset is a whole number of hours; for any other zone it answers
// 400 `unsupported_tz`, whose message the page shows as it is.

/** The zones the picker offers (the browser's own and the URL's are added when missing). */
export const COMMON_ZONES = Object.freeze([
  "UTC", "America/Los_Angeles", "America/Denver", "America/Chicago", "America/New_York", "America/Sao_Paulo",
  "Europe/London", "Europe/Lisbon", "Europe/Paris", "Europe/Berlin", "Europe/Helsinki", "Europe/Moscow",
  "Africa/Lagos", "Africa/Johannesburg", "Asia/Dubai", "Asia/Kolkata", "Asia/Bangkok", "Asia/Singapore",
  "Asia/Shanghai", "Asia/Tokyo", "Australia/Sydney", "Pacific/Auckland",
]);

/** The `YYYY-MM-DD` of `now` on the wall calendars of `zone`. */
export function todayIn(zone, now = new Date()) {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" })
    .formatToParts(now);
  const get = (type) => parts.find((p) => p.type === type).value;
  return `${get("year")}-${get("month")}-${get("day")}`;
}

/** The UTC offset of `zone` at `at`, in minutes east of UTC ("GMT+05:30" is 330). */
export function zoneOffsetMinutes(zone, at = new Date()) {
  const name = new Intl.DateTimeFormat("en-US", { timeZone: zone, timeZoneName: "longOffset" })
    .formatToParts(at).find((p) => p.type === "timeZoneName").value;
  const m = /^GMT(?:([+-])(\d{1,2})(?::(\d{2}))?)?$/.exec(name);
  if (!m) throw new RangeError(`unexpected offset name ${name} for ${zone}`);
  if (!m[1]) return 0;
  return (m[1] === "-" ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3] || 0));
}

/** Whether `zone` is a zone name this browser knows. */
export function isKnownZone(zone) {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** "UTC+9", "UTC−5", "UTC+5:30", "UTC" for an offset in minutes. */
export function formatOffset(minutes) {
  if (minutes === 0) return "UTC";
  const sign = minutes < 0 ? "\u2212" : "+";
  const abs = Math.abs(minutes);
  const h = Math.floor(abs / 60);
  const m = abs % 60;
  return `UTC${sign}${h}${m ? `:${String(m).padStart(2, "0")}` : ""}`;
}

/** The zones of the picker: the common ones, then `current` (the zone shown) when it is not among them. */
export function pickerZones(current) {
  return COMMON_ZONES.includes(current) ? [...COMMON_ZONES] : [...COMMON_ZONES, current];
}

/**
 * The zone the dashboard starts in: `asked` (from the URL) when this browser
 * knows it, else the browser's own zone, else UTC; with a sentence when the
 * URL's zone had to be set aside. Whether the edge can cut the zone's days is
 * the edge's to say.
 */
export function initialZone(asked, browser) {
  const fallback = browser && isKnownZone(browser) ? browser : "UTC";
  if (asked && !isKnownZone(asked)) {
    return { zone: fallback, note: `${asked} is not a time zone this browser knows; days are shown in ${fallback}.` };
  }
  return { zone: asked || fallback, note: null };
}

// Hours -------------------------------------------------------------------

const HOUR_MS = 3_600_000;

/** The local day range that holds the last `hours` hours before `now` in `zone`: {from, to}. */
export function lastHoursRange(hours, now = new Date(), zone = "UTC") {
  return { from: todayIn(zone, new Date(now.getTime() - hours * HOUR_MS)), to: todayIn(zone, now) };
}

/**
 * Of an hourly answer's `hours`, the last `count` that have begun by `now`
 * (each `hour` is RFC 3339 with its offset), oldest first.
 */
export function lastHours(hours, count, now = new Date()) {
  const started = (hours || []).filter((h) => Date.parse(h.hour) <= now.getTime());
  return started.slice(Math.max(0, started.length - count));
}

/** "Dec 1, 08:00" for "2026-12-01T08:00:00-05:00": the wall time the answer names. */
export function formatHour(hour) {
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})/.exec(String(hour ?? ""));
  return m ? `${formatDayShort(m[1])}, ${m[2]}` : String(hour);
}

/** "08:00" of an hour entry, for the axis. */
export function formatHourShort(hour) {
  const m = /T(\d{2}:\d{2})/.exec(String(hour ?? ""));
  return m ? m[1] : String(hour);
}

/** Days from `from` to `to`, both included (NaN when a date is invalid). */
export function rangeLength(from, to) {
  const a = parseIsoDate(from);
  const b = parseIsoDate(to);
  if (Number.isNaN(a) || Number.isNaN(b)) return NaN;
  return Math.round((b - a) / DAY_MS) + 1;
}

/** Every day of the range, ascending. */
export function daysOf(from, to) {
  const n = rangeLength(from, to);
  if (!(n > 0)) return [];
  const start = parseIsoDate(from);
  return Array.from({ length: n }, (_, i) => isoDate(start + i * DAY_MS));
}

/** Why a range is unusable (a sentence), or null when it is fine. */
export function validateRange(from, to, maxDays = MAX_RANGE_DAYS) {
  if (!from || !to) return "Choose both a start and an end date.";
  if (Number.isNaN(parseIsoDate(from))) return `The start date "${from}" is not a valid date.`;
  if (Number.isNaN(parseIsoDate(to))) return `The end date "${to}" is not a valid date.`;
  const n = rangeLength(from, to);
  if (n < 1) return "The start date must be on or before the end date.";
  if (n > maxDays) return `The range is ${n} days long; at most ${maxDays} days are allowed.`;
  return null;
}

/** "Nov 5" for "2025-11-05" (UTC, no locale surprises). */
export function formatDayShort(day) {
  const t = parseIsoDate(day);
  if (Number.isNaN(t)) return String(day);
  const d = new Date(t);
  return `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}`;
}

/** "Nov 5, 2025" */
export function formatDayLong(day) {
  const t = parseIsoDate(day);
  if (Number.isNaN(t)) return String(day);
  return `${formatDayShort(day)}, ${new Date(t).getUTCFullYear()}`;
}

// Numbers -----------------------------------------------------------------

const COUNT = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

/** 12345 -> "12,345"; anything not a finite number -> "—". */
export function formatCount(n) {
  return typeof n === "number" && Number.isFinite(n) ? COUNT.format(n) : "—";
}

/** A viewability rate 0..1 as a percentage with at most one decimal; null -> "—". */
export function formatRate(rate) {
  if (typeof rate !== "number" || !Number.isFinite(rate)) return "—";
  const pct = Math.round(rate * 1000) / 10;
  return `${Number.isInteger(pct) ? pct.toFixed(0) : pct.toFixed(1)}%`;
}

/** Natural order of ad ids: "ad-2" before "ad-10". */
export function compareAdIds(a, b) {
  return a.localeCompare(b, "en", { numeric: true, sensitivity: "variant" });
}

/**
 * The share of viewable impressions a browser confirmed were not covered:
 * `verified / impressions` of an ad or a day, null when it had no impressions.
 */
export function verifiedShare(counts) {
  const { impressions, verified } = counts || {};
  if (typeof impressions !== "number" || typeof verified !== "number" || impressions <= 0) return null;
  return verified / impressions;
}

/** The video counters of the API's `video` object, in the order of the dashboard's columns. */
export const VIDEO_COUNTERS = ["starts", "q25", "q50", "q75", "completes", "audible_impressions"];

/** Whether an ad, a day or a stats answer counted any video event (a display ad has zeros, a post no `video`). */
export function hasVideo(counts) {
  const video = counts && counts.video;
  return Boolean(video) && VIDEO_COUNTERS.some((k) => typeof video[k] === "number" && video[k] > 0);
}

/** The download's file name for a range: `what` is "ads" or "campaigns". */
export function csvName(what, from, to, zone = "UTC") {
  const range = from === to ? from : `${from}-to-${to}`;
  const tz = zone === "UTC" ? "" : `-${zone.replaceAll("/", "_")}`;
  return `glimpse-${what}-${range}${tz}.csv`;
}

/** `url` (a JSON route of the edge) asking for the edge's CSV of the same answer. */
export function csvUrl(url) {
  return `${url}${url.includes("?") ? "&" : "?"}format=csv`;
}

/**
 * Every page of a listing ("ads" or "campaigns") as the edge's own CSV, one
 * file: the first page whole, then each next page (the `Next-Cursor` header)
 * without its header row. `getPage(url)` answers {text, nextCursor}.
 */
export async function listAllCsv(what, from, to, getPage, { zone = "UTC", maxPages = 1000 } = {}) {
  let csv = "";
  let cursor = null;
  for (let pages = 0; pages < maxPages; pages++) {
    const page = await getPage(csvUrl(listingUrl(what, from, to, cursor, zone)));
    csv += pages === 0 ? page.text : page.text.slice(page.text.indexOf("\n") + 1);
    cursor = page.nextCursor ?? null;
    if (cursor === null || cursor === "") return csv;
  }
  throw new ApiError("bad-response", `The CSV of ${what} did not end within ${maxPages} pages.`);
}

/** Totals over the listed ads. Unique visitors are not additive across ads, so they are left out. */
export function totals(ads) {
  const impressions = ads.reduce((s, a) => s + (a.impressions || 0), 0);
  const measurable = ads.reduce((s, a) => s + (a.measurable || 0), 0);
  return { ads: ads.length, impressions, measurable, viewability_rate: measurable > 0 ? impressions / measurable : null };
}

// API ---------------------------------------------------------------------

/** The largest page the listings give: the dashboard asks for it, to need the fewest requests. */
export const ADS_PAGE_LIMIT = 1000;

/** `?from&to&tz` of a range in `zone` (always named, so no answer depends on the edge's default), then `extra` pairs. */
function rangeQuery(from, to, zone, extra = []) {
  const q = new URLSearchParams({ from, to, tz: zone });
  for (const [k, v] of extra) q.set(k, v);
  return q.toString();
}

/** One page of a listing ("ads" or "campaigns") of a range; `cursor` is the previous page's `next_cursor`. */
export function listingUrl(what, from, to, cursor = null, zone = "UTC") {
  const extra = [["limit", String(ADS_PAGE_LIMIT)]];
  if (cursor !== null) extra.push(["cursor", cursor]);
  return `/v1/${what}?${rangeQuery(from, to, zone, extra)}`;
}

/**
 * Every entry of a listing ("ads" or "campaigns") of a range, following
 * `next_cursor` page after page. `getPage(url)` answers one page's JSON. A
 * server whose pages never end is refused after `maxPages`.
 */
export async function listAll(what, from, to, getPage, { zone = "UTC", maxPages = 1000 } = {}) {
  const entries = [];
  let cursor = null;
  for (let pages = 0; pages < maxPages; pages++) {
    const page = await getPage(listingUrl(what, from, to, cursor, zone));
    if (!Array.isArray(page?.[what])) throw new ApiError("bad-response", `The server's answer has no list of ${what}.`);
    entries.push(...page[what]);
    cursor = page.next_cursor ?? null;
    if (cursor === null) return entries;
    if (typeof cursor !== "string") throw new ApiError("bad-response", "The server's answer has a bad next_cursor.");
  }
  throw new ApiError("bad-response", `The list of ${what} did not end within ${maxPages} pages.`);
}

/** An ad's stats over a range; `granularity` "hour" adds its hours. */
export function statsUrl(adId, from, to, zone = "UTC", granularity = "day") {
  const extra = granularity === "day" ? [] : [["granularity", granularity]];
  return `/v1/ads/${encodeURIComponent(adId)}/stats?${rangeQuery(from, to, zone, extra)}`;
}

/** A campaign's stats over a range. */
export function campaignStatsUrl(campaignId, from, to, zone = "UTC") {
  return `/v1/campaigns/${encodeURIComponent(campaignId)}/stats?${rangeQuery(from, to, zone)}`;
}

/** Frequency (impressions per person reached) as "1.43", or "—" when unknown. */
export function formatFrequency(f) {
  return typeof f === "number" && Number.isFinite(f) ? f.toFixed(2) : "—";
}

/** An API failure: `kind` is "network" | "auth" | "forbidden" | "range" | "not-found" | "server" | "bad-response". */
export class ApiError extends Error {
  constructor(kind, message, status = 0, code = "") {
    super(message);
    this.name = "ApiError";
    this.kind = kind;
    this.status = status;
    this.code = code;
  }
}

/** Turn an HTTP error answer (status, parsed body or null) into an ApiError with a readable message. */
export function describeError(status, body) {
  const detail = body && body.error && typeof body.error === "object" ? body.error : {};
  const code = typeof detail.code === "string" ? detail.code : "";
  const said = typeof detail.message === "string" && detail.message ? detail.message : "";
  if (status === 401) {
    return new ApiError("auth", said ? `An API key is needed or the key was not accepted: ${said}` : "An API key is needed or the key was not accepted.", status, code);
  }
  if (status === 403) {
    return new ApiError("forbidden", said ? `This key may not read these stats: ${said}` : "This key may not read these stats.", status, code);
  }
  if (status === 400) {
    return new ApiError("range", said ? `The server refused the request: ${said}` : "The server refused the date range.", status, code);
  }
  if (status === 404) {
    return new ApiError("not-found", said ? `Not found: ${said}` : "The stats route was not found on this server.", status, code);
  }
  return new ApiError("server", `The server answered ${status}${said ? `: ${said}` : "."}`, status, code);
}

/**
 * GET `url` with an optional bearer key, asking for `accept`; resolves to
 * the response when it is a success, else throws the ApiError of its JSON
 * error answer.
 */
async function request(url, accept, { key = "", fetch: f = globalThis.fetch, signal } = {}) {
  const headers = { Accept: accept };
  if (key) headers.Authorization = `Bearer ${key}`;
  let res;
  try {
    res = await f(url, { headers, signal, cache: "no-store" });
  } catch (e) {
    if (e && e.name === "AbortError") throw e;
    throw new ApiError("network", "Can't reach the glimpse server. Is it running?");
  }
  if (!res.ok) {
    let body = null;
    try {
      body = await res.json();
    } catch {
      body = null;
    }
    throw describeError(res.status, body);
  }
  return res;
}

/** GET a JSON document with an optional bearer key; resolves to the body or throws an ApiError. */
export async function fetchJson(url, options) {
  const res = await request(url, "application/json", options);
  let body = null;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  if (body === null || typeof body !== "object") {
    throw new ApiError("bad-response", `The server answered ${res.status} without a JSON body.`, res.status);
  }
  return body;
}

/** GET the edge's CSV of `url` (a `format=csv` URL): {text, nextCursor} (the `Next-Cursor` header, or null). */
export async function fetchCsv(url, options) {
  const res = await request(url, "text/csv", options);
  return { text: await res.text(), nextCursor: res.headers.get("next-cursor") };
}

// Chart geometry ----------------------------------------------------------

/** A "nice" step (1, 2, 2.5, 5 x 10^k) so that about `count` steps cover `max`. */
export function niceStep(max, count = 4) {
  if (!(max > 0)) return 1;
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  // Counts are integers: never a fractional step (so no 2.5 below 25).
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw && Number.isInteger(s));
  return Math.max(1, step ?? 1);
}

/** Ticks of the y axis, from 0 to the first nice value >= max. */
export function niceTicks(max, count = 4) {
  const step = niceStep(max, count);
  const top = Math.max(step, Math.ceil(max / step) * step);
  const ticks = [];
  for (let v = 0; v <= top + step / 2; v += step) ticks.push(Math.round(v * 1000) / 1000);
  return ticks;
}

/** At most `max` evenly spread indices of `n` x labels, always with the first and the last. */
export function labelIndices(n, max = 7) {
  if (n <= 0) return [];
  if (n <= max) return Array.from({ length: n }, (_, i) => i);
  const every = Math.ceil((n - 1) / (max - 1));
  const out = [];
  for (let i = 0; i < n - 1; i += every) out.push(i);
  if (n - 1 - out[out.length - 1] < every / 2) out.pop();
  out.push(n - 1);
  return out;
}

/**
 * Scales of the chart: `values` are the series (arrays of equal length),
 * the plot area is `width` x `height` minus `margin`.
 */
export function chartScales({ length, max, width, height, margin = { top: 16, right: 16, bottom: 32, left: 44 } }) {
  const ticks = niceTicks(max);
  const top = ticks[ticks.length - 1];
  const x0 = margin.left;
  const x1 = width - margin.right;
  const y0 = height - margin.bottom; // baseline (value 0)
  const y1 = margin.top;
  const x = (i) => (length <= 1 ? (x0 + x1) / 2 : x0 + ((x1 - x0) * i) / (length - 1));
  const y = (v) => y0 - ((y0 - y1) * v) / top;
  return { x, y, ticks, top, plot: { x0, x1, y0, y1 } };
}

const r2 = (v) => Math.round(v * 100) / 100;

/**
 * An SVG path through `points` ([x, y] pairs): "M x y L x y ...", or "" when
 * empty. A null point (a value not known) breaks the line: the next point
 * starts a new piece.
 */
export function buildChartPath(points) {
  return points
    .map((p, i) => p && `${i && points[i - 1] ? "L" : "M"}${r2(p[0])} ${r2(p[1])}`)
    .filter(Boolean)
    .join(" ");
}

/** The series of a stats answer as points of the chart; null where the answer's value is null (not known). */
export function seriesPoints(days, field, scales) {
  return days.map((d, i) => (d[field] === null ? null : [scales.x(i), scales.y(d[field] || 0)]));
}

/** A sentence describing a stats answer, for the chart's <desc>. */
export function describeStats(stats) {
  const days = stats.days || [];
  if (!days.length) return "No days in this range.";
  const peak = days.reduce((best, d) => (d.impressions > best.impressions ? d : best), days[0]);
  const span = days.length === 1 ? `on ${formatDayLong(days[0].date)}` :
    `from ${formatDayLong(days[0].date)} to ${formatDayLong(days[days.length - 1].date)}`;
  const base = `${formatCount(stats.impressions)} viewable impressions and ${formatCount(stats.unique_visitors)} unique visitors ${span}.`;
  return peak.impressions > 0
    ? `${base} Busiest day: ${formatDayLong(peak.date)} with ${formatCount(peak.impressions)} impressions.`
    : `${base} No impressions on any day.`;
}
