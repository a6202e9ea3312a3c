// The demo feed: renders pages of posts and ads (see feed-data.js for the
// deterministic layout and ad ids), a video ad whose clip the page records
// itself, "N views" under every post, loads the next page when a sentinel
// nears the viewport, and wires the viewability overlay toggle.
//
// URL parameters: ?overlay=1 starts with the overlay shown;
// ?delay=MS simulated network time per page (default 250; 0 for none);
// ?pages=N loads pages 0..N-1 at once before infinite scroll takes over.

import { pageItems, postId, MAX_PAGES, POSTS_PER_PAGE, VIDEO_AD } from "./feed-data.js";
import { makeClip, loadClip } from "./feed-clip.js";
import { startViewCounts } from "./feed-views.js";
import { startOverlay } from "./overlay.js";

const params = new URLSearchParams(location.search);
const delayMs = clampInt(params.get("delay"), 250, 0, 10_000);
const initialPages = clampInt(params.get("pages"), 1, 1, MAX_PAGES);

const pagesEl = document.getElementById("pages");
const sentinel = document.getElementById("sentinel");
const statusEl = document.getElementById("feed-status");

function clampInt(raw, dflt, min, max) {
  const n = Number.parseInt(raw ?? "", 10);
  return Number.isFinite(n) ? Math.min(max, Math.max(min, n)) : dflt;
}

const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs, children = []) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c);
  return el;
}

function h(tag, attrs = {}, children = []) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("data-") || k.startsWith("aria-") || k === "role") el.setAttribute(k, v);
    else el[k] = v;
  }
  for (const c of children) el.append(c);
  return el;
}

// A decorative scene drawn from the post's numbers: no images are fetched.
function postArt(p) {
  const fg = `hsl(${p.hue2} 85% 92% / 0.55)`;
  const fg2 = `hsl(${p.hue} 60% 25% / 0.45)`;
  const shapes = {
    mountains: [
      svg("path", { d: "M0 80 L28 42 L44 62 L66 30 L100 80 Z", fill: fg2 }),
      svg("circle", { cx: 76, cy: 22, r: 9, fill: fg }),
    ],
    sun: [
      svg("circle", { cx: 50, cy: 48, r: 22, fill: fg }),
      svg("rect", { x: 0, y: 70, width: 100, height: 30, fill: fg2 }),
    ],
    waves: [0, 1, 2].map((i) => svg("path", {
      d: `M0 ${50 + i * 14} Q25 ${38 + i * 14} 50 ${50 + i * 14} T100 ${50 + i * 14} V100 H0 Z`,
      fill: i % 2 ? fg : fg2,
    })),
    blobs: [
      svg("ellipse", { cx: 34, cy: 40, rx: 24, ry: 18, fill: fg }),
      svg("ellipse", { cx: 66, cy: 66, rx: 20, ry: 26, fill: fg2 }),
    ],
    grid: [0, 1, 2, 3].flatMap((i) => [0, 1, 2, 3].map((j) => svg("rect", {
      x: 10 + i * 22, y: 10 + j * 22, width: 14, height: 14, rx: 3, fill: (i + j) % 2 ? fg : fg2,
    }))),
    rings: [30, 22, 14].map((r, i) => svg("circle", {
      cx: 50, cy: 50, r, fill: "none", stroke: i % 2 ? fg2 : fg, "stroke-width": 6,
    })),
  };
  return svg("svg", {
    class: "tile__art", viewBox: "0 0 100 100", preserveAspectRatio: "xMidYMid slice",
    "aria-hidden": "true", focusable: "false",
  }, shapes[p.motif]);
}

function renderPost(item) {
  const p = item.post;
  const id = postId(p.n);
  // Hidden until the edge answered: no number is better than a made-up one.
  const views = h("span", { class: "tile__views", "data-views-for": id });
  views.hidden = true;
  const el = h("article", {
    class: `tile post${p.tall ? " tile--tall" : ""}`,
    "aria-label": `Post by @${p.user}: ${p.caption}`,
    "data-post": String(p.n),
    "data-post-id": id,
  }, [
    postArt(p),
    h("p", { class: "tile__caption" }, [
      h("span", { class: "tile__user", text: `@${p.user}` }),
      views,
      h("span", { class: "tile__likes", text: `♥ ${p.likes.toLocaleString("en-US")}` }),
    ]),
  ]);
  el.style.setProperty("--hue", p.hue);
  el.style.setProperty("--hue2", p.hue2);
  el.style.setProperty("--angle", `${p.angle}deg`);
  return el;
}

function adArt(motif) {
  const c = "rgb(255 255 255 / 0.16)";
  const shapes = {
    shoe: [
      svg("path", { d: "M10 62 C18 60 28 46 34 40 L48 52 C58 58 76 60 88 64 C92 66 92 74 86 76 L14 76 C8 76 6 66 10 62 Z", fill: c }),
      svg("path", { d: "M8 82 H92", stroke: c, "stroke-width": 4, "stroke-linecap": "round" }),
    ],
    orbit: [
      svg("circle", { cx: 50, cy: 50, r: 14, fill: c }),
      svg("ellipse", { cx: 50, cy: 50, rx: 44, ry: 16, fill: "none", stroke: c, "stroke-width": 3 }),
      svg("circle", { cx: 92, cy: 54, r: 4, fill: c }),
    ],
    cup: [
      svg("path", { d: "M24 40 H70 V62 C70 74 60 82 47 82 C34 82 24 74 24 62 Z", fill: c }),
      svg("path", { d: "M70 46 C84 46 84 64 70 64", fill: "none", stroke: c, "stroke-width": 5 }),
      svg("path", { d: "M38 30 C34 24 42 20 38 14 M52 30 C48 24 56 20 52 14", fill: "none", stroke: c, "stroke-width": 3 }),
    ],
    sun: [
      svg("circle", { cx: 66, cy: 36, r: 16, fill: c }),
      svg("path", { d: "M0 78 Q25 66 50 78 T100 78 V100 H0 Z", fill: c }),
    ],
  };
  return svg("svg", {
    class: "ad__art", viewBox: "0 0 100 100", preserveAspectRatio: "xMidYMid meet",
    "aria-hidden": "true", focusable: "false",
  }, shapes[motif]);
}

function renderAd(item) {
  const a = item.ad;
  const el = h("article", {
    class: `tile ad ad--${a.format}`,
    "data-ad-id": item.id,
    "data-campaign-id": a.campaign,
    "data-ad-format": a.format,
    "data-ad-slot": a.slot,
    "data-page": String(item.page),
    "aria-label": `Sponsored: ${a.brand}`,
  }, [
    adArt(a.motif),
    h("div", { class: "ad__body" }, [
      h("p", { class: "ad__label", text: "Sponsored" }),
      h("p", { class: "ad__brand", text: a.brand }),
      h("p", { class: "ad__tagline", text: a.tagline }),
      h("span", { class: "ad__cta", text: a.cta }),
    ]),
  ]);
  el.style.setProperty("--ad-c1", a.colors[0]);
  el.style.setProperty("--ad-c2", a.colors[1]);
  return el;
}

// The video ad: the SDK follows it by the video rule (it says
// data-ad-format="video" and holds a <video>). It plays muted while at least
// half of it is on screen, like the feeds it imitates.
function renderVideoAd() {
  const a = VIDEO_AD;
  const video = h("video", { className: "ad__video", muted: true, playsInline: true, preload: "auto" });
  video.setAttribute("aria-label", `${a.brand} video`);
  const sound = h("button", { type: "button", className: "button ad__sound", text: "Sound on", "aria-pressed": "false" });
  sound.addEventListener("click", () => {
    video.muted = !video.muted;
    sound.textContent = video.muted ? "Sound on" : "Sound off";
    sound.setAttribute("aria-pressed", String(!video.muted));
  });
  const el = h("article", {
    class: "tile ad ad--video",
    "data-ad-id": a.id,
    "data-campaign-id": a.campaign,
    "data-ad-format": "video",
    "aria-label": `Sponsored video: ${a.brand}`,
  }, [
    video,
    h("div", { class: "ad__body" }, [
      h("p", { class: "ad__label", text: "Sponsored" }),
      h("p", { class: "ad__brand", text: a.brand }),
      h("p", { class: "ad__tagline", text: a.tagline }),
      h("span", { class: "ad__cta", text: a.cta }),
      sound,
    ]),
  ]);
  el.style.setProperty("--ad-c1", a.colors[0]);
  el.style.setProperty("--ad-c2", a.colors[1]);
  let inView = false;
  new IntersectionObserver(([e]) => {
    inView = e.isIntersecting && e.intersectionRatio >= 0.5;
    if (!inView) video.pause();
    else if (video.readyState >= 1) video.play().catch(() => {});
  }, { threshold: [0, 0.5, 1] }).observe(el);
  makeClip({ seconds: a.seconds, width: 640, height: 360, label: a.brand, hue: 240 })
    .then((url) => loadClip(video, url))
    .then(() => { if (inView) video.play().catch(() => {}); })
    .catch(() => el.classList.add("ad--no-clip"));
  return h("section", { class: "feed-video", "aria-label": "Sponsored video" }, [el]);
}

function renderPage(page) {
  const grid = h("div", { class: "page-grid" });
  for (const item of pageItems(page)) {
    const el = item.kind === "ad" ? renderAd(item) : renderPost(item);
    el.style.gridColumn = `${item.col} / span ${item.colSpan}`;
    el.style.gridRow = `${item.row} / span ${item.rowSpan}`;
    grid.append(el);
  }
  return h("section", {
    class: "feed-page",
    "data-page": String(page),
    "aria-label": `Feed page ${page + 1}`,
  }, [grid]);
}

const viewCounts = startViewCounts();

// A page of the feed, the video ad after it where it goes, and the page's
// view counts, asked for in one request.
function appendPage(page) {
  pagesEl.append(renderPage(page));
  if (page === VIDEO_AD.afterPage) pagesEl.append(renderVideoAd());
  const ids = Array.from({ length: POSTS_PER_PAGE }, (_, i) => postId(page * POSTS_PER_PAGE + i));
  viewCounts.load(ids);
}

// Infinite scroll ---------------------------------------------------------

let nextPage = 0;
let loading = false;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function loadNext() {
  if (loading || nextPage >= MAX_PAGES) return;
  loading = true;
  pagesEl.setAttribute("aria-busy", "true");
  statusEl.textContent = "Loading more posts…";
  if (delayMs > 0 && nextPage > 0) await sleep(delayMs);
  appendPage(nextPage);
  nextPage++;
  document.documentElement.dataset.pagesLoaded = String(nextPage);
  pagesEl.setAttribute("aria-busy", "false");
  statusEl.textContent = nextPage >= MAX_PAGES ? "You're all caught up." : `${nextPage * 12} posts loaded.`;
  loading = false;
  // Observing again delivers a fresh entry, so a sentinel that is still near
  // the viewport (a tall window) loads the next page too.
  scrollObserver.unobserve(sentinel);
  if (nextPage < MAX_PAGES) scrollObserver.observe(sentinel);
  else sentinel.remove();
}

const scrollObserver = new IntersectionObserver((entries) => {
  if (entries.some((e) => e.isIntersecting)) loadNext();
}, { rootMargin: "0px 0px 600px 0px" });

async function init() {
  for (let i = 0; i < initialPages; i++) {
    appendPage(nextPage++);
  }
  document.documentElement.dataset.pagesLoaded = String(nextPage);
  scrollObserver.observe(sentinel);
}

// Overlay -----------------------------------------------------------------

const toggle = document.getElementById("overlay-toggle");
const panel = document.getElementById("overlay-panel");
const pageStateEl = document.getElementById("overlay-page-state");
const counts = {
  measuring: document.getElementById("count-measuring"),
  "in-view": document.getElementById("count-in-view"),
  viewable: document.getElementById("count-viewable"),
};

const overlay = startOverlay({
  onChange(s) {
    for (const k of Object.keys(counts)) setText(counts[k], String(s[k]));
    setText(pageStateEl, s.active
      ? `${s.total} ads on the page so far.`
      : "Paused: this tab is hidden or not focused, so no ad can become viewable.");
    pageStateEl.dataset.active = String(s.active);
  },
});
window.glimpseOverlay = overlay;

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function setOverlay(on) {
  overlay.show(on);
  toggle.setAttribute("aria-pressed", String(on));
  panel.hidden = !on;
}
toggle.addEventListener("click", () => setOverlay(!overlay.shown));

// SDK status, for the overlay panel: the SDK is optional for this page.
const sdkStatus = document.getElementById("sdk-status");
function sdkReady() {
  sdkStatus.textContent = "SDK: glimpse is counting impressions.";
  sdkStatus.dataset.sdk = "ready";
}
if (window.glimpse) sdkReady();
window.addEventListener("glimpse:ready", sdkReady);
window.addEventListener("load", () => {
  setTimeout(() => {
    if (sdkStatus.dataset.sdk !== "ready") {
      sdkStatus.textContent = "SDK: not loaded. The overlay still works; nothing is sent.";
      sdkStatus.dataset.sdk = "missing";
    }
  }, 1500);
});

init();
const on = params.get("overlay");
setOverlay(on === "1" || on === "true" || on === "on");
