// node --test www/tests/
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ApiError, csvName, csvUrl, fetchCsv, listAllCsv, listingUrl, buildChartPath, listAll, chartScales, compareAdIds, daysOf, describeError,
  describeStats, fetchJson, formatCount, formatDayLong, formatDayShort, formatRate, isoDate,
  labelIndices, lastNDays, niceStep, niceTicks, parseIsoDate, rangeLength, seriesPoints,
  statsUrl, totals, validateRange, verifiedShare, hasVideo, VIDEO_COUNTERS,
  todayIn, zoneOffsetMinutes, formatOffset, pickerZones, initialZone, COMMON_ZONES, lastHoursRange,
  lastHours, formatHour, formatHourShort, campaignStatsUrl, formatFrequency,
} from "../dashboard-lib.js";

test("lastNDays counts back in UTC, today included", () => {
  const now = new Date("2025-03-01T23:30:00Z");
  assert.deepEqual(lastNDays(7, now), { from: "2025-02-23", to: "2025-03-01" });
  assert.deepEqual(lastNDays(1, now), { from: "2025-03-01", to: "2025-03-01" });
  // Just after midnight UTC it is already the new day, whatever the local zone says.
  assert.deepEqual(lastNDays(2, new Date("2024-12-31T00:00:01Z")), { from: "2024-12-30", to: "2024-12-31" });
  // Leap day.
  assert.deepEqual(lastNDays(3, new Date("2024-03-01T12:00:00Z")), { from: "2024-02-28", to: "2024-03-01" });
  assert.throws(() => lastNDays(0, now), RangeError);
  assert.throws(() => lastNDays(1.5, now), RangeError);
});

test("parseIsoDate accepts only real calendar days", () => {
  assert.equal(parseIsoDate("1970-01-01"), 0);
  assert.equal(isoDate(parseIsoDate("2024-02-29")), "2024-02-29");
  for (const bad of ["2023-02-29", "2025-13-01", "2025-1-01", "", null, "2025-01-01T00:00", "yesterday"]) {
    assert.ok(Number.isNaN(parseIsoDate(bad)), String(bad));
  }
});

test("ranges: length, days and validation", () => {
  assert.equal(rangeLength("2025-01-01", "2025-01-01"), 1);
  assert.equal(rangeLength("2024-01-01", "2024-12-31"), 366);
  assert.deepEqual(daysOf("2025-02-27", "2025-03-02"), ["2025-02-27", "2025-02-28", "2025-03-01", "2025-03-02"]);
  assert.deepEqual(daysOf("2025-03-02", "2025-03-01"), []);
  assert.equal(validateRange("2025-01-01", "2025-01-07"), null);
  assert.equal(validateRange("2024-01-01", "2024-12-31"), null); // 366 days: allowed
  assert.match(validateRange("2024-01-01", "2025-01-01"), /367 days/);
  assert.match(validateRange("2025-01-08", "2025-01-07"), /on or before/);
  assert.match(validateRange("", "2025-01-07"), /both/);
  assert.match(validateRange("2025-02-30", "2025-03-07"), /not a valid date/);
});

test("day labels are UTC and locale free", () => {
  assert.equal(formatDayShort("2025-11-05"), "Nov 5");
  assert.equal(formatDayLong("2025-01-31"), "Jan 31, 2025");
  assert.equal(formatDayShort("garbage"), "garbage");
});

test("formatRate: percent with at most one decimal, null as a dash", () => {
  assert.equal(formatRate(0.875), "87.5%");
  assert.equal(formatRate(1), "100%");
  assert.equal(formatRate(0), "0%");
  assert.equal(formatRate(1 / 3), "33.3%");
  assert.equal(formatRate(2 / 3), "66.7%");
  assert.equal(formatRate(0.9999), "100%");
  assert.equal(formatRate(0.0004), "0%");
  assert.equal(formatRate(null), "—");
  assert.equal(formatRate(undefined), "—");
  assert.equal(formatRate(Number.NaN), "—");
});

test("formatCount groups thousands", () => {
  assert.equal(formatCount(0), "0");
  assert.equal(formatCount(1234567), "1,234,567");
  assert.equal(formatCount(null), "—");
});

test("ad ids sort naturally", () => {
  const ids = ["acme-shoes-10", "acme-shoes-2", "Zeta", "acme-shoes-1", "orbit-banner-0"];
  assert.deepEqual([...ids].sort(compareAdIds), ["acme-shoes-1", "acme-shoes-2", "acme-shoes-10", "orbit-banner-0", "Zeta"]);
});

test("totals leave unique visitors out and rate is impressions / measurable", () => {
  assert.deepEqual(totals([]), { ads: 0, impressions: 0, measurable: 0, viewability_rate: null });
  const t = totals([
    { ad_id: "a", impressions: 3, measurable: 4, unique_visitors: 2, viewability_rate: 0.75 },
    { ad_id: "b", impressions: 1, measurable: 4, unique_visitors: 1, viewability_rate: 0.25 },
  ]);
  assert.deepEqual(t, { ads: 2, impressions: 4, measurable: 8, viewability_rate: 0.5 });
});

test("URLs encode the ad id and the range", () => {
  assert.equal(listingUrl("ads", "2025-01-01", "2025-01-07"), "/v1/ads?from=2025-01-01&to=2025-01-07&tz=UTC&limit=1000");
  assert.equal(listingUrl("ads", "2025-01-01", "2025-01-07", "61"), "/v1/ads?from=2025-01-01&to=2025-01-07&tz=UTC&limit=1000&cursor=61");
  assert.equal(statsUrl("acme:shoes.1", "2025-01-01", "2025-01-02"), "/v1/ads/acme%3Ashoes.1/stats?from=2025-01-01&to=2025-01-02&tz=UTC");
});

test("describeError maps statuses to kinds and keeps the server's message", () => {
  const body = (code, message) => ({ error: { code, message } });
  const e401 = describeError(401, body("unauthorized", "missing key"));
  assert.ok(e401 instanceof ApiError);
  assert.equal(e401.kind, "auth");
  assert.equal(e401.code, "unauthorized");
  assert.match(e401.message, /missing key/);
  assert.equal(describeError(403, null).kind, "forbidden");
  assert.equal(describeError(400, body("bad_range", "too long")).kind, "range");
  assert.match(describeError(400, body("bad_range", "too long")).message, /too long/);
  assert.equal(describeError(404, null).kind, "not-found");
  const e503 = describeError(503, body("degraded", "store down"));
  assert.equal(e503.kind, "server");
  assert.match(e503.message, /503: store down/);
  assert.match(describeError(502, "<html>").message, /502\.$/);
});

function fakeFetch(status, body, seen = []) {
  return async (url, init) => {
    seen.push({ url, init });
    return {
      ok: status >= 200 && status < 300,
      status,
      json: async () => (typeof body === "string" ? JSON.parse(body) : body),
    };
  };
}

test("fetchJson sends the bearer key and returns the body", async () => {
  const seen = [];
  const data = await fetchJson("/v1/ads?from=a&to=b", { key: "k1", fetch: fakeFetch(200, { ads: [] }, seen) });
  assert.deepEqual(data, { ads: [] });
  assert.equal(seen[0].init.headers.Authorization, "Bearer k1");
  await fetchJson("/x", { fetch: fakeFetch(200, {}, seen) });
  assert.equal(seen[1].init.headers.Authorization, undefined);
});

test("fetchJson turns failures into ApiErrors", async () => {
  await assert.rejects(fetchJson("/x", { fetch: fakeFetch(401, { error: { code: "unauthorized", message: "no" } }) }),
    (e) => e instanceof ApiError && e.kind === "auth" && e.status === 401);
  await assert.rejects(fetchJson("/x", { fetch: fakeFetch(500, "not json") }),
    (e) => e.kind === "server" && e.status === 500);
  await assert.rejects(fetchJson("/x", { fetch: async () => { throw new TypeError("Failed to fetch"); } }),
    (e) => e.kind === "network");
  await assert.rejects(fetchJson("/x", { fetch: fakeFetch(200, "nope") }), (e) => e.kind === "bad-response");
  const abort = Object.assign(new Error("aborted"), { name: "AbortError" });
  await assert.rejects(fetchJson("/x", { fetch: async () => { throw abort; } }), (e) => e === abort);
});

test("niceStep and niceTicks cover the data with round integer steps", () => {
  assert.deepEqual(niceTicks(0), [0, 1]);
  assert.deepEqual(niceTicks(1), [0, 1]);
  assert.deepEqual(niceTicks(3), [0, 1, 2, 3]);
  assert.deepEqual(niceTicks(37), [0, 10, 20, 30, 40]);
  assert.deepEqual(niceTicks(40), [0, 10, 20, 30, 40]);
  assert.deepEqual(niceTicks(41), [0, 20, 40, 60]);
  assert.equal(niceStep(1000), 250);
  for (const max of [1, 2, 7, 9, 13, 99, 101, 12345, 1e6 + 1]) {
    const t = niceTicks(max);
    assert.ok(t[t.length - 1] >= max, `top covers ${max}`);
    assert.ok(t.length >= 2 && t.length <= 7, `${t.length} ticks for ${max}`);
    assert.ok(t.every((v) => Number.isInteger(v)), `integer ticks for ${max}`);
  }
});

test("labelIndices keeps first and last and at most max labels", () => {
  assert.deepEqual(labelIndices(0), []);
  assert.deepEqual(labelIndices(1), [0]);
  assert.deepEqual(labelIndices(7, 7), [0, 1, 2, 3, 4, 5, 6]);
  for (const n of [8, 30, 31, 90, 366]) {
    const idx = labelIndices(n, 7);
    assert.equal(idx[0], 0);
    assert.equal(idx[idx.length - 1], n - 1);
    assert.ok(idx.length <= 7, `${idx.length} labels for ${n}`);
    assert.deepEqual(idx, [...idx].sort((a, b) => a - b));
  }
});

test("chartScales maps days and values into the plot area", () => {
  const margin = { top: 10, right: 10, bottom: 30, left: 40 };
  const sc = chartScales({ length: 5, max: 37, width: 450, height: 240, margin });
  assert.equal(sc.top, 40);
  assert.equal(sc.x(0), 40);
  assert.equal(sc.x(4), 440);
  assert.equal(sc.y(0), 210);
  assert.equal(sc.y(40), 10);
  assert.equal(sc.y(20), 110);
  // A single day sits in the middle.
  const one = chartScales({ length: 1, max: 0, width: 450, height: 240, margin });
  assert.equal(one.x(0), 240);
  assert.equal(one.y(0), 210);
});

test("buildChartPath draws a polyline from the series", () => {
  assert.equal(buildChartPath([]), "");
  assert.equal(buildChartPath([[0, 10], [5.5, 2.123], [10, 0]]), "M0 10 L5.5 2.12 L10 0");
  // Unknown values break the line instead of drawing a zero.
  assert.equal(buildChartPath([[0, 10], null, [10, 0], [20, 5]]), "M0 10 M10 0 L20 5");
  assert.equal(buildChartPath([null, [10, 0]]), "M10 0");
  const days = [
    { date: "2025-01-01", impressions: 0, unique_visitors: 0 },
    { date: "2025-01-02", impressions: 4, unique_visitors: 2 },
  ];
  const sc = chartScales({ length: 2, max: 4, width: 100, height: 100, margin: { top: 0, right: 0, bottom: 0, left: 0 } });
  assert.equal(buildChartPath(seriesPoints(days, "impressions", sc)), "M0 100 L100 0");
  assert.equal(buildChartPath(seriesPoints(days, "unique_visitors", sc)), "M0 100 L100 50");
  const unknown = [{ unique_visitors: null }, { unique_visitors: 2 }];
  assert.deepEqual(seriesPoints(unknown, "unique_visitors", sc), [null, [100, 50]]);
});

test("describeStats summarises the range for the chart description", () => {
  const s = {
    ad_id: "a", impressions: 5, unique_visitors: 3,
    days: [
      { date: "2025-01-01", impressions: 1, unique_visitors: 1 },
      { date: "2025-01-02", impressions: 4, unique_visitors: 2 },
    ],
  };
  assert.equal(describeStats(s),
    "5 viewable impressions and 3 unique visitors from Jan 1, 2025 to Jan 2, 2025. Busiest day: Jan 2, 2025 with 4 impressions.");
  assert.match(describeStats({ ...s, impressions: 0, unique_visitors: 0, days: [{ date: "2025-01-01", impressions: 0 }] }),
    /on Jan 1, 2025\. No impressions on any day\./);
});

test("verifiedShare: verified over viewable impressions, null without impressions", () => {
  assert.equal(verifiedShare({ impressions: 8, verified: 6 }), 0.75);
  assert.equal(formatRate(verifiedShare({ impressions: 3, verified: 1 })), "33.3%");
  assert.equal(verifiedShare({ impressions: 5, verified: 0 }), 0);
  assert.equal(verifiedShare({ impressions: 0, verified: 0 }), null);
  assert.equal(verifiedShare({ impressions: 4 }), null, "an answer without the field");
  assert.equal(verifiedShare(null), null);
});

test("listAll follows next_cursor to the last page", async () => {
  const pages = {
    "/v1/ads?from=d1&to=d2&tz=UTC&limit=1000": { ads: [{ ad_id: "a" }, { ad_id: "b" }], next_cursor: "62" },
    "/v1/ads?from=d1&to=d2&tz=UTC&limit=1000&cursor=62": { ads: [{ ad_id: "c" }], next_cursor: null },
  };
  const asked = [];
  const ads = await listAll("ads", "d1", "d2", async (url) => { asked.push(url); return pages[url]; });
  assert.deepEqual(ads.map((a) => a.ad_id), ["a", "b", "c"]);
  assert.deepEqual(asked, Object.keys(pages));
  // An answer without next_cursor (an older edge) is one page.
  assert.equal((await listAll("ads", "d1", "d2", async () => ({ ads: [{ ad_id: "x" }] }))).length, 1);
});

test("listAll refuses bad pages and pages that never end", async () => {
  await assert.rejects(listAll("ads", "d1", "d2", async () => ({})), { kind: "bad-response" });
  await assert.rejects(listAll("ads", "d1", "d2", async () => ({ ads: [], next_cursor: 7 })), { kind: "bad-response" });
  await assert.rejects(listAll("ads", "d1", "d2", async () => ({ ads: [], next_cursor: "61" }), { maxPages: 3 }), { kind: "bad-response" });
});

test("hasVideo is true only when some video counter is above zero", () => {
  const zeros = Object.fromEntries(VIDEO_COUNTERS.map((k) => [k, 0]));
  assert.equal(hasVideo({ impressions: 3, video: zeros }), false);
  assert.equal(hasVideo({ impressions: 3 }), false, "a post's answer has no video object");
  assert.equal(hasVideo(null), false);
  for (const k of VIDEO_COUNTERS) {
    assert.equal(hasVideo({ video: { ...zeros, [k]: 1 } }), true, k);
  }
  assert.deepEqual(VIDEO_COUNTERS, ["starts", "q25", "q50", "q75", "completes", "audible_impressions"]);
});

test("the CSV download is the edge's own CSV of the listing, every page of it", async () => {
  assert.equal(csvUrl("/v1/ads?from=d1&to=d2&tz=UTC"), "/v1/ads?from=d1&to=d2&tz=UTC&format=csv");
  assert.equal(csvUrl("/v1/campaigns"), "/v1/campaigns?format=csv");
  const pages = {
    "/v1/ads?from=d1&to=d2&tz=Asia%2FTokyo&limit=1000&format=csv": { text: "ad_id,impressions\r\na,1\r\n", nextCursor: "a" },
    "/v1/ads?from=d1&to=d2&tz=Asia%2FTokyo&limit=1000&cursor=a&format=csv": { text: "ad_id,impressions\r\nb,2\r\n", nextCursor: null },
  };
  const asked = [];
  const csv = await listAllCsv("ads", "d1", "d2", async (url) => { asked.push(url); return pages[url]; }, { zone: "Asia/Tokyo" });
  assert.equal(csv, "ad_id,impressions\r\na,1\r\nb,2\r\n", "one header row");
  assert.deepEqual(asked, Object.keys(pages));
  await assert.rejects(
    listAllCsv("ads", "d1", "d2", async () => ({ text: "h\r\n", nextCursor: "x" }), { maxPages: 2 }),
    { kind: "bad-response" },
  );
  assert.equal(csvName("ads", "2026-12-01", "2026-12-01"), "glimpse-ads-2026-12-01.csv");
  assert.equal(csvName("ads", "2026-11-25", "2026-12-01"), "glimpse-ads-2026-11-25-to-2026-12-01.csv");
});

test("fetchCsv asks for text/csv with the key and reads Next-Cursor; errors are the edge's", async () => {
  const seen = [];
  const ok = async (url, init) => {
    seen.push(init);
    return { ok: true, status: 200, text: async () => "a,b\r\n", headers: new Headers({ "next-cursor": "c1" }) };
  };
  assert.deepEqual(await fetchCsv("/v1/ads?format=csv", { key: "k", fetch: ok }), { text: "a,b\r\n", nextCursor: "c1" });
  assert.equal(seen[0].headers.Accept, "text/csv");
  assert.equal(seen[0].headers.Authorization, "Bearer k");
  const refused = async () => ({
    ok: false, status: 400,
    json: async () => ({ error: { code: "unsupported_tz", message: "Asia/Kolkata is UTC+05:30 here" } }),
  });
  await assert.rejects(fetchCsv("/x", { fetch: refused }), (e) => e.kind === "range" && e.code === "unsupported_tz" && /UTC\+05:30/.test(e.message));
});

test("lastNDays and todayIn follow the chosen zone's calendar", () => {
  const now = new Date("2026-03-01T03:30:00Z");
  assert.equal(todayIn("UTC", now), "2026-03-01");
  assert.equal(todayIn("America/New_York", now), "2026-02-28", "22:30 the evening before");
  assert.equal(todayIn("Asia/Tokyo", new Date("2026-02-28T15:00:00Z")), "2026-03-01", "midnight in Tokyo");
  assert.deepEqual(lastNDays(2, now, "America/New_York"), { from: "2026-02-27", to: "2026-02-28" });
  assert.deepEqual(lastNDays(2, now), { from: "2026-02-28", to: "2026-03-01" });
});

test("zone offsets and their labels", () => {
  const winter = new Date("2026-01-15T12:00:00Z");
  const summer = new Date("2026-07-15T12:00:00Z");
  assert.equal(zoneOffsetMinutes("UTC", winter), 0);
  assert.equal(zoneOffsetMinutes("America/New_York", winter), -300);
  assert.equal(zoneOffsetMinutes("America/New_York", summer), -240);
  assert.equal(zoneOffsetMinutes("Asia/Tokyo", summer), 540);
  assert.equal(zoneOffsetMinutes("Asia/Kolkata", summer), 330);
  assert.equal(zoneOffsetMinutes("Asia/Kathmandu", summer), 345);
  assert.equal(formatOffset(0), "UTC");
  assert.equal(formatOffset(540), "UTC+9");
  assert.equal(formatOffset(-300), "UTC\u22125");
  assert.equal(formatOffset(330), "UTC+5:30");
});

test("the picker offers the common zones, and the zone shown when it is not one of them", () => {
  assert.equal(COMMON_ZONES[0], "UTC");
  for (const z of COMMON_ZONES) assert.doesNotThrow(() => todayIn(z), z);
  assert.deepEqual(pickerZones("Asia/Tokyo"), [...COMMON_ZONES]);
  assert.deepEqual(pickerZones("Asia/Kathmandu"), [...COMMON_ZONES, "Asia/Kathmandu"]);
});

test("initialZone takes the URL's zone, else the browser's, whole hours or not", () => {
  assert.deepEqual(initialZone("Asia/Tokyo", "Europe/Paris"), { zone: "Asia/Tokyo", note: null });
  assert.deepEqual(initialZone("", "Europe/Paris"), { zone: "Europe/Paris", note: null });
  assert.deepEqual(initialZone(null, "UTC"), { zone: "UTC", note: null });
  // The edge says whether it can cut a zone's days (400 unsupported_tz).
  assert.deepEqual(initialZone("", "Asia/Kolkata"), { zone: "Asia/Kolkata", note: null });
  assert.deepEqual(initialZone(null, undefined), { zone: "UTC", note: null });
  const unknown = initialZone("Mars/Olympus", "Europe/Paris");
  assert.equal(unknown.zone, "Europe/Paris");
  assert.match(unknown.note, /Mars\/Olympus is not a time zone this browser knows; days are shown in Europe\/Paris/);
});

test("the last 48 hours: the local days that hold them, and the hours begun by now", () => {
  const now = new Date("2026-12-03T10:20:00Z");
  assert.deepEqual(lastHoursRange(48, now), { from: "2026-12-01", to: "2026-12-03" });
  assert.deepEqual(lastHoursRange(48, now, "America/New_York"), { from: "2026-12-01", to: "2026-12-03" });
  assert.deepEqual(lastHoursRange(48, new Date("2026-12-03T02:00:00Z"), "America/New_York"), { from: "2026-11-30", to: "2026-12-02" });
  const hours = [];
  for (let t = Date.parse("2026-12-01T00:00:00Z"); t < Date.parse("2026-12-04T00:00:00Z"); t += 3_600_000) {
    hours.push({ hour: new Date(t).toISOString().replace(".000Z", "Z"), impressions: 1 });
  }
  const last = lastHours(hours, 48, now);
  assert.equal(last.length, 48);
  assert.equal(last[47].hour, "2026-12-03T10:00:00Z", "the hour under way is the last");
  assert.equal(last[0].hour, "2026-12-01T11:00:00Z");
  assert.equal(lastHours(hours.slice(0, 5), 48, now).length, 5);
  // Offsets in the hour strings are honoured: 05:00-05:00 is 10:00Z.
  assert.equal(lastHours([{ hour: "2026-12-03T05:00:00-05:00" }, { hour: "2026-12-03T06:00:00-05:00" }], 48, now).length, 1);
});

test("hour labels are the answer's own wall time", () => {
  assert.equal(formatHour("2026-12-01T08:00:00-05:00"), "Dec 1, 08:00");
  assert.equal(formatHour("2026-12-01T23:00:00Z"), "Dec 1, 23:00");
  assert.equal(formatHourShort("2026-12-01T08:00:00+09:00"), "08:00");
});

test("every URL names its zone; the granularity only when it is not the default", () => {
  assert.equal(statsUrl("a", "2026-12-01", "2026-12-03", "UTC", "hour"), "/v1/ads/a/stats?from=2026-12-01&to=2026-12-03&tz=UTC&granularity=hour");
  assert.equal(statsUrl("a", "2026-12-01", "2026-12-01", "America/New_York"), "/v1/ads/a/stats?from=2026-12-01&to=2026-12-01&tz=America%2FNew_York");
  assert.equal(listingUrl("campaigns", "d1", "d2", null, "Asia/Tokyo"), "/v1/campaigns?from=d1&to=d2&tz=Asia%2FTokyo&limit=1000");
  assert.equal(campaignStatsUrl("acme:fall", "d1", "d2"), "/v1/campaigns/acme%3Afall/stats?from=d1&to=d2&tz=UTC");
  assert.equal(csvName("campaigns", "2026-12-01", "2026-12-02", "Asia/Tokyo"), "glimpse-campaigns-2026-12-01-to-2026-12-02-Asia_Tokyo.csv");
});

test("null visitors and frequencies are shown as a dash", () => {
  assert.equal(formatCount(null), "—");
  assert.equal(formatFrequency(10 / 7), "1.43");
  assert.equal(formatFrequency(null), "—");
});
