// "N views" under every post: one `GET /v1/views?ids=...` per page of posts as
// it loads, and every loaded page again while the page is open. A failed
// request changes nothing on screen (the last numbers stay; none are shown
// before the first answer).

/** Most ids one request may ask for (the edge's limit). */
export const MAX_IDS_PER_REQUEST = 100;
/** How often the shown numbers are refreshed. */
export const REFRESH_MS = 10_000;

/** The request URLs that ask for `ids`, at most MAX_IDS_PER_REQUEST each. */
export function viewsUrls(ids, base = "/v1/views") {
  const urls = [];
  for (let i = 0; i < ids.length; i += MAX_IDS_PER_REQUEST) {
    const chunk = ids.slice(i, i + MAX_IDS_PER_REQUEST);
    urls.push(`${base}?ids=${chunk.map(encodeURIComponent).join(",")}`);
  }
  return urls;
}

/** "1 view", "1,234 views". */
export function formatViews(n) {
  return `${n.toLocaleString("en-US")} ${n === 1 ? "view" : "views"}`;
}

/** The counts of an answer (`{"views": {...}}`), only those that are whole numbers. */
export function readViews(answer) {
  const out = new Map();
  const views = answer && typeof answer === "object" ? answer.views : null;
  if (!views || typeof views !== "object") return out;
  for (const [id, n] of Object.entries(views)) {
    if (Number.isSafeInteger(n) && n >= 0) out.set(id, n);
  }
  return out;
}

/**
 * Shows the views of every `[data-views-for]` element under `root`:
 * `load(ids)` asks for a page of posts now, and a timer refreshes every id
 * loaded so far. Returns { load, refresh, stop }.
 */
export function startViewCounts({ root = document, fetchFn = globalThis.fetch, refreshMs = REFRESH_MS } = {}) {
  const loaded = [];
  const show = (views) => {
    for (const el of root.querySelectorAll("[data-views-for]")) {
      const n = views.get(el.dataset.viewsFor);
      if (n === undefined) continue;
      const text = formatViews(n);
      if (el.textContent !== text) el.textContent = text;
      el.hidden = false;
    }
  };
  const ask = async (ids) => {
    await Promise.all(viewsUrls(ids).map(async (url) => {
      try {
        const resp = await fetchFn(url, { credentials: "omit" });
        if (resp.ok) show(readViews(await resp.json()));
      } catch (_) {
        // Offline, or an edge without the route: the numbers stay as they are.
      }
    }));
  };
  const timer = setInterval(() => {
    if (document.visibilityState === "visible" && loaded.length > 0) ask(loaded);
  }, refreshMs);
  return {
    load(ids) {
      loaded.push(...ids);
      return ask(ids);
    },
    refresh: () => ask(loaded),
    stop: () => clearInterval(timer),
  };
}
