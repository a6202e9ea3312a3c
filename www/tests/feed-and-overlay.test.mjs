// node --test www/tests/  (the pure parts of the feed and of the overlay)
import { test } from "node:test";
import assert from "node:assert/strict";
import { adId, adIdsOfPage, pageItems, parseAdId, post, POSTS_PER_PAGE } from "../feed-data.js";
import { Dwell, RULE, meetsPixelRule, requiredRatio } from "../overlay.js";

test("ad ids are <advertiser>-<page> and valid wire ids", () => {
  assert.deepEqual(adIdsOfPage(0), ["acme-shoes-0", "orbit-banner-0", "lumen-coffee-0", "pixel-travel-0"]);
  assert.equal(adId("banner", 12), "orbit-banner-12");
  assert.deepEqual(parseAdId("pixel-travel-7"), { slot: "squareB", page: 7 });
  assert.equal(parseAdId("nope-3"), null);
  for (const id of adIdsOfPage(99)) assert.match(id, /^[A-Za-z0-9._:-]{1,128}$/);
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
