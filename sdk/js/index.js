// glimpse-sdk: the ES module. `start(options)` loads the wasm (found next to
// this file) and starts a tracker; see index.d.ts for the options.
import init, { start as startWasm } from "./glimpse_sdk.js";

// One tracker per page, whichever embedding (tag or import) starts first:
// a second start (re-render, StrictMode, both embeddings) gets the first one.
const KEY = Symbol.for("glimpse.tracker");

export async function start(options) {
  const g = globalThis;
  if (g[KEY]) return g[KEY];
  const running = (async () => {
    await init();
    const tracker = startWasm(options);
    for (const name of ["stop", "optOut"]) {
      const inner = tracker[name].bind(tracker);
      tracker[name] = () => {
        inner();
        if (g[KEY] === running) delete g[KEY];
      };
    }
    return tracker;
  })();
  g[KEY] = running;
  try {
    return await running;
  } catch (e) {
    if (g[KEY] === running) delete g[KEY];
    throw e;
  }
}
