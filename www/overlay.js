// Viewability overlay: a visual aid that shows, on each ad, what the
// viewability rule makes of it right now. It computes the state in the page
// with its own IntersectionObserver and does not depend on the SDK (the feed
// works, and this overlay too, when /sdk/glimpse.js is missing).
//
// The rule (IAB/MRC, as the SDK applies it): an ad is viewable once at least
// 50% of its pixels (30% when its rendered area is >= 242,500 px) stay in the
// viewport for 1,000 continuous ms while the document is visible and the
// window has focus. The clock restarts whenever any of that stops holding.
// One viewable impression per ad element per page view: "viewable" latches.
// A video ad (a <video>, or an element that says data-ad-format="video" and
// holds one) follows the video rule: 50% of its pixels, whatever its size,
// for 2,000 continuous ms of playback (playing: not paused, ended, seeking or
// waiting for data), and its badge shows the playing time in view.
//
// DOM hooks (kept up to date whether or not the overlay is shown):
//   on every [data-ad-id] element
//     data-glimpse-state     "measuring" | "in-view" | "viewable"
//     data-glimpse-ratio     last visible ratio seen, 0..1 (2 decimals)
//     data-glimpse-required  0.5 or 0.3 (the ratio the ad's area needs)
//     data-glimpse-viewable-at  ms since navigation start when it became viewable
//   on <html>: data-overlay="on" | "off"
//   window.glimpseOverlay.states()  -> { "<ad id>": "<state>", ... }
// When shown, each ad gets a child .glimpse-badge (text + .glimpse-badge__bar
// whose --progress is the dwell, 0..1).

export const RULE = Object.freeze({
  minRatio: 0.5,
  largeRatio: 0.3,
  largeAreaPx: 242_500,
  dwellMs: 1_000,
});

export const VIDEO_RULE = Object.freeze({
  minRatio: 0.5,
  largeRatio: 0.5,
  largeAreaPx: Infinity,
  dwellMs: 2_000,
  video: true,
});

export const THRESHOLDS = [0, 0.3, 0.5, 1];

/** The <video> whose playback decides for the ad element `el`, or null. */
export function videoOf(el) {
  if (el.tagName === "VIDEO") return el;
  return el.dataset.adFormat === "video" ? el.querySelector("video") : null;
}

/** Whether `video` is playing, as the video rule takes it. */
export function isPlaying(video) {
  return !video.paused && !video.ended && !video.seeking && video.readyState >= 3;
}

const MEDIA_EVENTS = ["play", "playing", "pause", "ended", "waiting", "stalled", "seeking", "seeked", "timeupdate"];

// IntersectionObserver ratios are computed from layout rects and can land a
// hair under a threshold they have just crossed.
const RATIO_EPSILON = 1e-4;

/** The visible ratio an ad of `areaPx` rendered pixels needs. */
export function requiredRatio(areaPx, rule = RULE) {
  return areaPx >= rule.largeAreaPx ? rule.largeRatio : rule.minRatio;
}

/** Whether the pixel part of the rule holds. */
export function meetsPixelRule(ratio, areaPx, rule = RULE) {
  return areaPx > 0 && ratio + RATIO_EPSILON >= requiredRatio(areaPx, rule);
}

/**
 * The dwell clock of one ad, pure: feed it observations with a time, read its
 * state. `now` is any monotonic clock in ms.
 */
export class Dwell {
  constructor(rule = RULE) {
    this.rule = rule;
    this.since = null;       // when the rule started holding, or null
    this.viewableAt = null;  // when it became viewable, or null
    this.ratio = 0;
    this.area = 0;
    this.active = false;     // document visible and focused
    this.playing = !rule.video; // a video's playback; always true for display
  }

  /** Record new facts (any subset of {ratio, area, active, playing}) at time `now`. */
  update(now, facts) {
    this.tick(now);
    if (facts.ratio !== undefined) this.ratio = facts.ratio;
    if (facts.area !== undefined) this.area = facts.area;
    if (facts.active !== undefined) this.active = facts.active;
    if (facts.playing !== undefined && this.rule.video) this.playing = facts.playing;
    if (this.viewableAt !== null) return;
    const holds = this.active && this.playing && meetsPixelRule(this.ratio, this.area, this.rule);
    if (holds && this.since === null) this.since = now;
    if (!holds) this.since = null;
  }

  /** Let time pass; latches "viewable" once the rule held for dwellMs. */
  tick(now) {
    if (this.viewableAt === null && this.since !== null && now - this.since >= this.rule.dwellMs) {
      this.viewableAt = this.since + this.rule.dwellMs;
      this.since = null;
    }
  }

  /** Dwell progress 0..1 (1 once viewable). */
  progress(now) {
    if (this.viewableAt !== null) return 1;
    if (this.since === null) return 0;
    return Math.min(1, Math.max(0, (now - this.since) / this.rule.dwellMs));
  }

  /** ms until the dwell completes if nothing changes, or null. */
  remaining(now) {
    if (this.viewableAt !== null || this.since === null) return null;
    return Math.max(0, this.rule.dwellMs - (now - this.since));
  }

  state(now) {
    this.tick(now);
    if (this.viewableAt !== null) return "viewable";
    return this.since !== null ? "in-view" : "measuring";
  }
}

const LABELS = { measuring: "Measuring", "in-view": "In view", viewable: "Viewable" };

/**
 * Start tracking every `selector` element under `root` (now and later).
 * Returns a controller: { show(bool), shown, states(), stop() }.
 */
export function startOverlay({ root = document, selector = "[data-ad-id]", onChange } = {}) {
  const tracked = new Map(); // element -> { dwell, timer, badge }
  const now = () => performance.now();
  const pageActive = () => document.visibilityState === "visible" && document.hasFocus();
  let shown = false;
  let raf = 0;

  const io = new IntersectionObserver((entries) => {
    const t = now();
    for (const e of entries) {
      const rec = tracked.get(e.target);
      if (!rec) continue;
      const r = e.boundingClientRect;
      rec.dwell.update(t, {
        ratio: e.isIntersecting ? e.intersectionRatio : 0,
        area: r.width * r.height,
        active: pageActive(),
      });
      sync(e.target, rec, t);
    }
    changed();
  }, { threshold: THRESHOLDS });

  function track(el) {
    if (tracked.has(el)) return;
    const video = videoOf(el);
    const rec = { dwell: new Dwell(video ? VIDEO_RULE : RULE), timer: 0, badge: null, id: el.dataset.adId, video, onMedia: null };
    tracked.set(el, rec);
    if (video) {
      rec.onMedia = () => {
        const t = now();
        rec.dwell.update(t, { playing: isPlaying(video) });
        sync(el, rec, t);
        changed();
      };
      for (const name of MEDIA_EVENTS) video.addEventListener(name, rec.onMedia);
      rec.dwell.update(now(), { playing: isPlaying(video) });
    }
    sync(el, rec, now());
    io.observe(el);
  }

  function untrack(el) {
    const rec = tracked.get(el);
    if (!rec) return;
    clearTimeout(rec.timer);
    if (rec.video) for (const name of MEDIA_EVENTS) rec.video.removeEventListener(name, rec.onMedia);
    rec.badge?.remove();
    io.unobserve(el);
    tracked.delete(el);
  }

  function scan(node) {
    if (node.nodeType !== 1) return;
    if (node.matches(selector)) track(node);
    node.querySelectorAll(selector).forEach(track);
  }

  // Write the state to the element's data attributes and badge, and arm a
  // timer for the moment the dwell completes.
  function sync(el, rec, t) {
    const d = rec.dwell;
    const state = d.state(t);
    el.dataset.glimpseState = state;
    el.dataset.glimpseRatio = d.ratio.toFixed(2);
    el.dataset.glimpseRequired = String(requiredRatio(d.area, d.rule));
    if (d.viewableAt !== null) el.dataset.glimpseViewableAt = String(Math.round(d.viewableAt));
    clearTimeout(rec.timer);
    const rem = d.remaining(t);
    if (rem !== null) {
      rec.timer = setTimeout(() => { sync(el, rec, now()); changed(); }, rem + 1);
    }
    if (shown) renderBadge(el, rec, t);
  }

  function renderBadge(el, rec, t) {
    if (!rec.badge) {
      rec.badge = document.createElement("div");
      rec.badge.className = "glimpse-badge";
      rec.badge.innerHTML =
        '<span class="glimpse-badge__label"></span><span class="glimpse-badge__meta"></span>' +
        '<span class="glimpse-badge__bar" aria-hidden="true"><span></span></span>';
      el.append(rec.badge);
    }
    const d = rec.dwell;
    const state = d.state(t);
    const p = d.progress(t);
    rec.badge.dataset.state = state;
    rec.badge.style.setProperty("--progress", p.toFixed(3));
    const labelEl = rec.badge.querySelector(".glimpse-badge__label");
    if (labelEl.textContent !== LABELS[state]) labelEl.textContent = LABELS[state];
    const need = Math.round(requiredRatio(d.area, d.rule) * 100);
    const seconds = d.rule.dwellMs / 1000;
    const meta = state === "viewable" ? "counted once" :
      state === "in-view" ? `${(p * seconds).toFixed(1)} s of ${seconds} s${d.rule.video ? " playing" : ""}` :
      d.rule.video ? (d.playing ? `playing; needs ${need}% on screen for ${seconds} s` : `needs ${need}% on screen, playing, for ${seconds} s`) :
      `needs ${need}% on screen for ${seconds} s`;
    const metaEl = rec.badge.querySelector(".glimpse-badge__meta");
    if (metaEl.textContent !== meta) metaEl.textContent = meta;
  }

  function frame() {
    raf = 0;
    if (!shown) return;
    const t = now();
    let any = false;
    for (const [el, rec] of tracked) {
      if (rec.dwell.since !== null) { any = true; renderBadge(el, rec, t); }
    }
    if (any) raf = requestAnimationFrame(frame);
  }

  function changed() {
    if (shown && !raf) raf = requestAnimationFrame(frame);
    onChange?.(summary());
  }

  function onActivity() {
    const t = now();
    const active = pageActive();
    for (const [el, rec] of tracked) {
      rec.dwell.update(t, { active });
      sync(el, rec, t);
    }
    changed();
  }

  function summary() {
    const t = now();
    const counts = { measuring: 0, "in-view": 0, viewable: 0, total: tracked.size, active: pageActive() };
    for (const rec of tracked.values()) counts[rec.dwell.state(t)]++;
    return counts;
  }

  const mo = new MutationObserver((records) => {
    const before = tracked.size;
    let touched = false;
    for (const r of records) {
      if (r.type === "attributes") {
        // A slot whose ad id changes is a new impression.
        const el = r.target;
        untrack(el);
        if (el.matches(selector)) track(el);
        touched = true;
        continue;
      }
      r.addedNodes.forEach(scan);
      r.removedNodes.forEach((n) => {
        if (n.nodeType !== 1) return;
        if (tracked.has(n)) untrack(n);
        n.querySelectorAll?.(selector).forEach(untrack);
      });
    }
    // Only report real changes: the page may write to the DOM in onChange.
    if (touched || tracked.size !== before) changed();
  });
  const rootEl = root === document ? document.documentElement : root;
  mo.observe(rootEl, { childList: true, subtree: true, attributes: true, attributeFilter: ["data-ad-id"] });
  scan(rootEl);

  document.addEventListener("visibilitychange", onActivity);
  window.addEventListener("focus", onActivity);
  window.addEventListener("blur", onActivity);

  const api = {
    get shown() { return shown; },
    show(on) {
      shown = Boolean(on);
      document.documentElement.dataset.overlay = shown ? "on" : "off";
      const t = now();
      for (const [el, rec] of tracked) {
        if (shown) renderBadge(el, rec, t);
        else { rec.badge?.remove(); rec.badge = null; }
      }
      changed();
    },
    states() {
      const t = now();
      const out = {};
      for (const rec of tracked.values()) out[rec.id] = rec.dwell.state(t);
      return out;
    },
    summary,
    stop() {
      io.disconnect();
      mo.disconnect();
      document.removeEventListener("visibilitychange", onActivity);
      window.removeEventListener("focus", onActivity);
      window.removeEventListener("blur", onActivity);
      for (const el of [...tracked.keys()]) untrack(el);
      cancelAnimationFrame(raf);
    },
  };
  document.documentElement.dataset.overlay = "off";
  onChange?.(summary());
  return api;
}
