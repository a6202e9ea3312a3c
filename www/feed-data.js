// Deterministic content of the demo feed. No DOM here: the feed renders it,
// and tests (or a reader) can compute from it which ad sits where.
//
// AD ID SCHEME AND LAYOUT (keep in sync with feed.css; end-to-end tests rely on it)
//
// Pages are numbered from 0. Page N holds the 12 posts 12N .. 12N+11 and exactly
// four ads, whose ids are `<advertiser>-<N>`:
//
//   slot     ad id            format  grid cell(s) of the page (3 columns, 7 rows)
//   tall     acme-shoes-N     tall    column 1, rows 1-2   (1 x 2 cells)
//   banner   orbit-banner-N   banner  row 3, all columns   (970 x 250 at desktop)
//   squareA  lumen-coffee-N   square  row 5, column 2      (1 x 1 cell)
//   squareB  pixel-travel-N   square  row 7, column 3      (1 x 1 cell)
//
// Page grid, rows top to bottom ("A" ad, "p" post number within the page, "P" tall post):
//
//   row 1   A(acme, tall)  p0            p1
//   row 2   A(acme, tall)  p2            p3
//   row 3   A(orbit-banner, the full row)
//   row 4   p4             p5            P6 (tall)
//   row 5   p7             A(lumen)      P6 (tall)
//   row 6   P8 (tall)      p9            p10
//   row 7   P8 (tall)      p11           A(pixel)
//
// So in DOM order a page is: acme, p0..p3, orbit-banner, p4, p5, p6, p7, lumen,
// p8, p9, p10, p11, pixel. Ids only use [A-Za-z0-9._:-].
//
// Each advertiser runs one campaign (`data-campaign-id`, the same on every
// page): acme-fall-run, orbit-roam-free (the banner and the video ad),
// lumen-mornings, pixel-lisbon.
//
// Each post carries `data-post-id` `post-<n>` (its number across the feed), the
// SDK counts its views, and the feed shows them ("N views").
//
// One video ad, VIDEO_AD (`orbit-video-0`), sits between page 0 and page 1, the
// full width of the feed (970 x 360 at desktop): a clip the page records itself.
//
// At desktop width (feed 970 px wide: cell 320, gap 5) a page is 2,200 px
// tall and pages follow each other every 2,205 px (page 1 starts 365 px later,
// after the video ad). From the top of page N
// (`.feed-page[data-page="N"]`): acme-shoes at +0 (320 x 645, left column),
// orbit-banner at +650 (970 x 250), lumen-coffee at +1,230 (320 x 320, middle
// column), pixel-travel at +1,880 (320 x 320, right column).

export const POSTS_PER_PAGE = 12;
export const MAX_PAGES = 100;

export const ADVERTISERS = Object.freeze({
  tall: {
    slot: "tall", format: "tall", prefix: "acme-shoes", campaign: "acme-fall-run",
    brand: "Acme Shoes", tagline: "Run lighter. Land softer.", cta: "Shop the drop",
    colors: ["#7a2e0e", "#c2410c"], motif: "shoe",
  },
  banner: {
    slot: "banner", format: "banner", prefix: "orbit-banner", campaign: "orbit-roam-free",
    brand: "Orbit Mobile", tagline: "Unlimited data in 80 countries. No roaming fees, ever.", cta: "Switch in 5 minutes",
    colors: ["#1e1b4b", "#4338ca"], motif: "orbit",
  },
  squareA: {
    slot: "squareA", format: "square", prefix: "lumen-coffee", campaign: "lumen-mornings",
    brand: "Lumen Coffee", tagline: "Roasted this morning.", cta: "Order beans",
    colors: ["#3b2314", "#7c4a2d"], motif: "cup",
  },
  squareB: {
    slot: "squareB", format: "square", prefix: "pixel-travel", campaign: "pixel-lisbon",
    brand: "Pixel Travel", tagline: "A weekend in Lisbon from 99 EUR.", cta: "See trips",
    colors: ["#064e4b", "#0f766e"], motif: "sun",
  },
});

/** The video ad of the stream, after page `afterPage`. */
export const VIDEO_AD = Object.freeze({
  id: "orbit-video-0", campaign: "orbit-roam-free", afterPage: 0, seconds: 6,
  brand: "Orbit Mobile", tagline: "Your world, one plan. Watch the 6-second tour.", cta: "See plans",
  colors: ["#1e1b4b", "#4338ca"],
});

/** The id of post number `n`, as the SDK sends it and `/v1/views` answers it. */
export function postId(n) {
  return `post-${n}`;
}

/** The id of the ad in `slot` ("tall" | "banner" | "squareA" | "squareB") on page `page`. */
export function adId(slot, page) {
  const a = ADVERTISERS[slot];
  if (!a) throw new Error(`unknown ad slot ${slot}`);
  return `${a.prefix}-${page}`;
}

/** Every ad id of page `page`, in DOM order. */
export function adIdsOfPage(page) {
  return ["tall", "banner", "squareA", "squareB"].map((slot) => adId(slot, page));
}

/** Parse an ad id of this feed back to {slot, page}, or null. */
export function parseAdId(id) {
  const m = /^([a-z]+-[a-z]+)-(\d+)$/.exec(id);
  if (!m) return null;
  const slot = Object.keys(ADVERTISERS).find((k) => ADVERTISERS[k].prefix === m[1]);
  return slot ? { slot, page: Number(m[2]) } : null;
}

const USERS = [
  "maya.k", "tomas_r", "lin.photo", "oskar", "amara.eats", "jules.v", "noor",
  "felix.climbs", "priya_s", "hugo.bakes", "sena", "kwame.runs",
];
const TOPICS = [
  "golden hour", "street food", "weekend hike", "new plants", "city lights", "sea swim",
  "sourdough", "rainy window", "market day", "desert road", "studio", "first snow",
];
const MOTIFS = ["mountains", "sun", "waves", "blobs", "grid", "rings"];

// Small integer hash, so every post looks the same on every visit.
function mix(n) {
  let x = (n + 0x9e3779b9) | 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** Post number `n` (0-based across the feed): author, caption, colours, motif. */
export function post(n, tall = false) {
  const h = mix(n);
  const hue = h % 360;
  return {
    n,
    tall,
    user: USERS[h % USERS.length],
    caption: TOPICS[(h >>> 8) % TOPICS.length],
    likes: 40 + ((h >>> 4) % 4000),
    hue,
    hue2: (hue + 35 + ((h >>> 12) % 90)) % 360,
    angle: (h >>> 3) % 180,
    motif: MOTIFS[(h >>> 16) % MOTIFS.length],
  };
}

/**
 * The items of page `page`, in DOM order, each with its grid placement
 * (1-based `col`/`row`, `colSpan`/`rowSpan`).
 */
export function pageItems(page) {
  const base = page * POSTS_PER_PAGE;
  const p = (i, col, row, tall = false) => ({
    kind: "post", post: post(base + i, tall), col, row, colSpan: 1, rowSpan: tall ? 2 : 1,
  });
  const a = (slot, col, row, colSpan, rowSpan) => ({
    kind: "ad", slot, id: adId(slot, page), page, ad: ADVERTISERS[slot], col, row, colSpan, rowSpan,
  });
  return [
    a("tall", 1, 1, 1, 2),
    p(0, 2, 1), p(1, 3, 1), p(2, 2, 2), p(3, 3, 2),
    a("banner", 1, 3, 3, 1),
    p(4, 1, 4), p(5, 2, 4), p(6, 3, 4, true), p(7, 1, 5),
    a("squareA", 2, 5, 1, 1),
    p(8, 1, 6, true), p(9, 2, 6), p(10, 3, 6), p(11, 2, 7),
    a("squareB", 3, 7, 1, 1),
  ];
}
