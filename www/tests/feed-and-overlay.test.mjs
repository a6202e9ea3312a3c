// node --test www/tests/  (the pure parts of the feed and of the overlay)
import { test } from "node:test";
import assert from "node:assert/strict";
import { ADVERTISERS, adId, adIdsOfPage, pageItems, parseAdId, post, postId, POSTS_PER_PAGE, VIDEO_AD } from "../feed-data.js";
import { formatViews, readViews, viewsUrls, MAX_IDS_PER_REQUEST } from "../feed-views.js";
import { Dwell, RULE, VIDEO_RULE, meetsPixelRule, requiredRatio } from "../overlay.js";

test("ad ids are <advertiser>-<page> and valid wire ids", () => {
  assert.deepEqual(adIdsOfPage(0), ["acme-shoes-0", "orbit-banner-0", "lumen-coffee-0", "pixel-travel-0"]);
  assert.equal(adId("banner", 12), "orbit-banner-12");
  assert.deepEqual(parseAdId("pixel-travel-7"), { slot: "squareB", page: 7 });
  assert.equal(parseAdId("nope-3"), null);
  for (const id of adIdsOfPage(99)) assert.match(id, /^[A-Za-z0-9._:-]{1,128}$/);
});

test("each advertiser runs one campaign; the banner and the video ad share Orbit's", () => {
  const campaigns = Object.values(ADVERTISERS).map((a) => a.campaign);
  assert.equal(new Set(campaigns).size, 4);
  for (const c of campaigns) assert.match(c, /^[A-Za-z0-9._:-]{1,128}$/);
  assert.equal(VIDEO_AD.campaign, ADVERTISERS.banner.campaign);
  for (const item of pageItems(3).filter((i) => i.kind === "ad")) assert.equal(item.ad.campaign, ADVERTISERS[item.slot].campaign);
});

test("every page has 12 posts and 4 ads filling a 3 x 7 grid exactly once", () => {
  for (const page of [0, 1, 5]) {
    const items = pageItems(page);
    const posts = items.filter((i) => i.kind === "post").map((i) => i.post.n);
    assert.deepEqual(posts, Array.from({ length: POSTS_PER_PAGE }, (_, i) => page * 12 + i));
    assert.deepEqual(items.filter((i) => i.kind === "ad").map((i) => i.id), adIdsOfPage(page));
    const cells = new Set();
    for (const it of items) {
      for (let r = it.row; r < it.row + it.rowSpan; r++) {
        for (let c = it.col; c < it.col + it.colSpan; c++) {
          const k = `${r},${c}`;
          assert.ok(!cells.has(k), `cell ${k} used twice`);
          cells.add(k);
        }
      }
    }
    assert.equal(cells.size, 21);
  }
});

test("posts are deterministic", () => {
  assert.deepEqual(post(42), post(42));
  assert.notDeepEqual(post(1), post(2));
});

test("the pixel rule: 50%, or 30% from 242,500 px", () => {
  assert.equal(requiredRatio(242_499), 0.5);
  assert.equal(requiredRatio(242_500), 0.3);
  assert.equal(requiredRatio(970 * 250), 0.3);
  assert.ok(meetsPixelRule(0.5, 300 * 250));
  assert.ok(!meetsPixelRule(0.4, 300 * 250));
  assert.ok(meetsPixelRule(0.3, 970 * 250));
  assert.ok(!meetsPixelRule(0.29, 970 * 250));
  assert.ok(!meetsPixelRule(1, 0));
});

test("dwell: viewable after 1,000 continuous ms, and it latches", () => {
  const d = new Dwell();
  d.update(0, { ratio: 0, area: 90_000, active: true });
  assert.equal(d.state(0), "measuring");
  d.update(100, { ratio: 0.5 });
  assert.equal(d.state(1099), "in-view");
  assert.equal(d.remaining(600), 500);
  assert.equal(d.progress(600), 0.5);
  assert.equal(d.state(1100), "viewable");
  assert.equal(d.viewableAt, 1100);
  d.update(1200, { ratio: 0 });
  assert.equal(d.state(5000), "viewable");
});

test("dwell: the clock restarts when the ad leaves, or the page loses focus", () => {
  const d = new Dwell();
  d.update(0, { ratio: 1, area: 90_000, active: true });
  d.update(600, { ratio: 0.3 }); // scrolled away at 600 ms
  assert.equal(d.state(2000), "measuring");
  d.update(2000, { ratio: 1 });
  d.update(2999, { active: false }); // focus lost at 999 ms
  assert.equal(d.state(5000), "measuring");
  d.update(5000, { active: true });
  assert.equal(d.state(5999), "in-view");
  assert.equal(d.state(6000), "viewable");
  assert.equal(RULE.dwellMs, 1000);
});

test("post ids and the video ad's id are valid wire ids, the video ad none of the page ads", () => {
  assert.equal(postId(12), "post-12");
  for (const id of [postId(0), postId(1199), VIDEO_AD.id]) assert.match(id, /^[A-Za-z0-9._:-]{1,128}$/);
  assert.equal(parseAdId(VIDEO_AD.id), null);
});

test("views: one request per page of posts, at most 100 ids each, and quiet about bad answers", () => {
  const page = Array.from({ length: POSTS_PER_PAGE }, (_, i) => postId(i));
  assert.deepEqual(viewsUrls(page), [`/v1/views?ids=${page.join(",")}`]);
  const many = Array.from({ length: 250 }, (_, i) => postId(i));
  const urls = viewsUrls(many);
  assert.equal(urls.length, 3);
  assert.equal(urls[0].split("=")[1].split(",").length, MAX_IDS_PER_REQUEST);
  assert.equal(urls[2].split("=")[1].split(",").length, 50);
  assert.deepEqual(viewsUrls([]), []);
  assert.equal(formatViews(0), "0 views");
  assert.equal(formatViews(1), "1 view");
  assert.equal(formatViews(1234), "1,234 views");
  assert.deepEqual([...readViews({ views: { a: 3, b: -1, c: "4", d: 1.5 } })], [["a", 3]]);
  assert.equal(readViews(null).size, 0);
  assert.equal(readViews({ error: { code: "x" } }).size, 0);
});

test("video dwell: 2,000 ms of playback in view, 50% whatever the size", () => {
  const d = new Dwell(VIDEO_RULE);
  d.update(0, { ratio: 1, area: 970 * 360, active: true });
  assert.equal(d.state(5000), "measuring", "in view, not playing");
  d.update(5000, { playing: true });
  d.update(6000, { playing: false });
  d.update(6500, { playing: true });
  assert.equal(d.state(8499), "in-view");
  assert.equal(d.progress(7500), 0.5);
  assert.equal(d.state(8500), "viewable");
  const big = new Dwell(VIDEO_RULE);
  big.update(0, { ratio: 0.35, area: 970 * 360, active: true, playing: true });
  assert.equal(big.state(10_000), "measuring", "no 30% class for video");
  assert.equal(requiredRatio(970 * 360, VIDEO_RULE), 0.5);
  // A display ad ignores playback.
  const display = new Dwell(RULE);
  display.update(0, { ratio: 1, area: 90_000, active: true, playing: false });
  assert.equal(display.state(1000), "viewable");
});
