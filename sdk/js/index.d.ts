/** Options of {@link start}; only `endpoint` is required. */
export interface GlimpseOptions {
  /** URL of the edge's `POST /v1/impressions`, e.g. `https://edge.example/v1/impressions`. */
  endpoint: string;
  /** The visitor id (1-128 characters of `[A-Za-z0-9._:-]`); default: an anonymous id kept in localStorage. */
  userId?: string;
  /**
   * CSS selector of the ad slots, observed at start and as they are added. Default `[data-ad-id]`.
   * A slot that is a `<video>`, or holds one and says `data-ad-format="video"`, follows the video
   * rule (2 s of playback with half its pixels in view) and sends `video_*` progress events.
   * Posts (`[data-post-id]`) are followed whatever this says.
   */
  selector?: string;
  /** Periodic flush in milliseconds; 0 turns it off. Default 5000. */
  flushIntervalMs?: number;
  /** Events per batch, 1-500; a full batch is sent at once. Default 50. */
  maxBatch?: number;
  /** Share of an ad's pixels that must be in view, 0-1. Default 0.5. */
  minVisibleRatio?: number;
  /** Continuous time in view, in milliseconds. Default 1000. */
  minVisibleMs?: number;
  /** Area in CSS pixels from which an ad is large. Default 242500. */
  largeAdPixels?: number;
  /** Share of a large ad's pixels that must be in view, 0-1. Default 0.3. */
  largeAdRatio?: number;
  /** `false`: store nothing and send nothing until {@link Tracker.setConsent}(true). Default true. */
  consent?: boolean;
  /** Log each decision to the console. Default false. */
  debug?: boolean;
}

/** Options of {@link Tracker.observe}. */
export interface ObserveOptions {
  /**
   * The campaign of the slot's ad (1-128 characters of `[A-Za-z0-9._:-]`; a number is taken as its
   * string), sent as `campaign_id` on each of its events; overrides its `data-campaign-id`. A slot
   * whose campaign id is not valid is not followed, as for a bad ad id.
   */
  campaignId?: string | number;
}

/**
 * A running tracker. No method throws, whatever it is given (a bad argument
 * is ignored, with a warning in debug mode), and the methods work unbound
 * (`const { observe } = tracker`).
 */
export interface Tracker {
  /**
   * Follow `element` as an ad slot; `adId` (a number is taken as its string) overrides its
   * `data-ad-id`, and `options.campaignId` its `data-campaign-id`. Observing twice counts once.
   * A slot's campaign is read again when its `data-ad-id` changes (a slot refilled with another ad).
   */
  observe(element: Element, adId?: string | number, options?: ObserveOptions): void;
  /**
   * Follow `element` as a post (any content item that is not an ad): one view per page view by
   * the display rule, sent with `post_id`. `postId` (a number is taken as its string) overrides
   * its `data-post-id`; elements with `data-post-id` are followed without a call. Post ids and
   * ad ids are separate namespaces.
   */
  observePost(element: Element, postId?: string | number): void;
  /** Stop following `element` (an ad slot or a post); a dwell in progress is cancelled. */
  unobserve(element: Element): void;
  /**
   * A new page view (a single-page app's route change). Each slot in the new page view counts
   * once more; a slot the route change removes does not. Call it just before the new route's
   * DOM is in place or just after, in the same task (Vue Router's `afterEach`, React's
   * `useLayoutEffect`).
   */
  pageview(): void;
  /** The ad in `element` was refreshed in place under the same ad id: a new opportunity. */
  refresh(element: Element): void;
  /** Send every queued event now; resolves (never rejects) once each batch got an answer or was scheduled for retry, and at once without consent. */
  flush(): Promise<void>;
  /** Stop observing and sending; unsent batches stay stored and go out on the next start. */
  stop(): void;
  /** Stop, and delete everything the SDK stored on this origin (queues, visitor id), with or without consent. */
  optOut(): void;
  /** `true`: start counting and sending (as `start` with consent). `false`: stop sending, send nothing more, delete what is stored. */
  setConsent(consent: boolean): void;
}

/**
 * Load the wasm and start the page's tracker. Rejects only on bad options.
 * When the wasm cannot load (a Content-Security-Policy without
 * `'wasm-unsafe-eval'`, a blocked or missing file) it resolves to an inert
 * tracker, whose methods do nothing, and warns once.
 * A second call returns the tracker already running.
 */
export function start(options: GlimpseOptions): Promise<Tracker>;

declare global {
  interface Window {
    /** The tracker started by the drop-in tag. */
    glimpse?: Tracker;
  }
  interface WindowEventMap {
    "glimpse:ready": Event;
  }
}
