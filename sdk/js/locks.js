// The tabs' Web Locks, written here rather than in the wasm: requesting a
// lock, holding it on a promise and querying the held ones are page
// plumbing that cost more as bindings and their glue than as JavaScript
// (docs/BENCHMARKS.md, the tenth cut). Which tabs are gone and what becomes
// of their batches stays in the wasm (sdk/src/web/tabs.rs).

const TAB = "glimpse.tab.";

// Holds the lock that tells other tabs that tab `tab` is alive, until the
// returned function is called (also when that comes before the lock is
// granted). When `take` is a function, also calls it with the ids of the
// tabs whose lock is held or requested, under one origin-wide lock so that
// two tabs never take the same queue. Undefined, and no call, without Web
// Locks.
export function tabLock(tab, take) {
  let release;
  let held = true;
  try {
    const { locks } = navigator;
    if (!locks.query) return;
    locks.request(TAB + tab, () => held && new Promise((r) => (release = r))).catch(() => {});
    if (take) {
      locks
        .request("glimpse.adopt", () =>
          locks.query().then((now) =>
            take(
              [...now.held, ...now.pending]
                .map(({ name }) => String(name))
                .filter((name) => name.startsWith(TAB))
                .map((name) => name.slice(TAB.length)),
            ),
          ),
        )
        .catch(() => {});
    }
  } catch {
    return;
  }
  return () => {
    held = false;
    if (release) release();
  };
}
