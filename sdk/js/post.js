// The SDK's one request, written here rather than in the wasm: the request's
// options, the abort timer and the promise handling are page plumbing that
// cost about 400 bytes gzip of wasm through bindings and 147 as JavaScript
// (docs/BENCHMARKS.md, the eighth cut). What the answer means stays in the
// wasm (sdk/src/web/sending.rs).
//
// POSTs `body` to `url` with `keepalive` and no credentials, aborted after
// `ms` (a request that hangs would hold the send pump, one send at a time,
// forever), and calls `done` exactly once: with the `Response`, or with
// nothing when there is none (a network error, the abort, no `fetch`).
export function post(url, body, ms, done) {
  let abort, timer;
  try {
    abort = new AbortController();
    timer = setTimeout(() => abort.abort(), ms);
  } catch {
    // No AbortController: the request is not bounded.
  }
  const end = (response) => {
    clearTimeout(timer);
    done(response);
  };
  const init = { method: "POST", body, keepalive: true, credentials: "omit", signal: abort && abort.signal };
  new Promise((resolve) => resolve(fetch(url, init))).then(end, () => end());
}
