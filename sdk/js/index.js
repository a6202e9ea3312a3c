// glimpse-sdk: the ES module. `start(options)` loads the wasm (found next to
// this file) and starts a tracker; see index.d.ts for the options.
import { initSync, start as startWasm } from "./glimpse_sdk.js";

// The wasm next to this file, fetched as the tag preloads it, compiled from
// the whole download whatever type the server gives it (streaming saves
// nothing at this size), then instantiated by the glue: the glue's own
// asynchronous loader is larger.
async function load() {
  const response = await fetch(new URL("glimpse_sdk_bg.wasm", import.meta.url));
  if (!response.ok) throw new Error(`glimpse: the wasm answered ${response.status}`);
  initSync({ module: await WebAssembly.compile(await response.arrayBuffer()) });
}

// One tracker per page, whichever embedding (tag or import) starts first:
// a second start (re-render, StrictMode, both embeddings) gets the first one.
const KEY = Symbol.for("glimpse.tracker");
// In the order of the wasm's `Tracker::call` (sdk/src/web/mod.rs): the
// tracker `startWasm` returns is a function of `[index, ...arguments]`.
const METHODS = ["observe", "observePost", "unobserve", "pageview", "refresh", "flush", "stop", "optOut", "setConsent"];

// The page's tracker: plain functions (they work unbound, as
// `const { observe } = tracker`), none of which throws; `flush` always
// resolves: its promise is made here and the wasm is given its resolve (as
// the first argument) to call once every batch got an answer. Without the
// wasm (`wasm` null) each does nothing.
function tracker(wasm, running) {
  const t = {};
  METHODS.forEach((name, i) => {
    t[name] = (...args) => {
      let done = () => {};
      const flushed = name == "flush" && new Promise((resolve) => (args = [(done = resolve)]));
      try {
        wasm ? wasm([i, ...args]) : done();
      } catch (e) {
        console.warn("glimpse:", e);
        done();
      }
      if (name == "stop" || name == "optOut") {
        if (globalThis[KEY] === running) delete globalThis[KEY];
      }
      if (flushed) return flushed;
    };
  });
  return Object.freeze(t);
}

export function start(options) {
  const g = globalThis;
  if (g[KEY]) return g[KEY];
  const running = (async () => {
    try {
      await load();
    } catch (e) {
      // A Content-Security-Policy without 'wasm-unsafe-eval', a blocked or
      // missing file: the page goes on, and nothing is counted.
      console.warn("glimpse: the SDK could not load its wasm and does nothing on this page:", e);
      return tracker(null, running);
    }
    // A string says what is wrong with the options: thrown, so the start
    // rejects, for bad options only.
    const wasm = startWasm(options);
    if (typeof wasm == "string") throw new Error(wasm);
    return tracker(wasm, running);
  })();
  g[KEY] = running;
  running.catch(() => {
    if (g[KEY] === running) delete g[KEY];
  });
  return running;
}
