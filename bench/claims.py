#!/usr/bin/env python3
"""Redis CPU per batch id of the ways a sync could claim its batches.

    python3 bench/claims.py PORT [--ids 200000] [--per-call 500] [--filled 1000000]

PORT is a `redis-server --save '' --appendonly no` on loopback that this
script may fill and flush (it runs FLUSHALL). Each variant claims the same
number of fresh batch ids in calls of `--per-call` ids (a sync's ids of one
shard), against three claim windows of which the two older hold `--filled`
ids each (the steady state), and prints Redis's own CPU (INFO cpu, user +
sys) per id. What each variant is:

- `hash`: the edge's `claims.lua` (server/src/store/redis/claims.lua), each
  window a hash of `<batch_id>` = `<edge_id>:<seq>`;
- `set`: each window a set of batch ids, looked up with SMISMEMBER and
  added with one SADD; a retried call is told apart by a key per call
  holding its answer (one key per shard and sync instead of a value per id);
- `floor`: the same set commands sent natively (SMISMEMBER of each window
  and SADD, pipelined, no script): not a protocol (nothing makes it atomic
  across edges), the least any claim kept per id in Redis costs;
- `stream`: one XADD per call of the ids packed as 16-byte fingerprints,
  read back by two other edges (XRANGE of the new entry); the look-up then
  runs in the edges, which this measures none of.

Plain sockets and RESP: nothing to install beyond Python 3.
"""

import argparse
import hashlib
import os
import socket
from pathlib import Path

CLAIMS_LUA = (Path(__file__).resolve().parent.parent
              / "server/src/store/redis/claims.lua").read_text()

# The `set` variant. KEYS[1..n-1] the windows, newest first; KEYS[n] the
# call's answer key. ARGV[1] the answer key's expiry (epoch ms), ARGV[2..]
# the ids. Returns the ids found in a window (claimed before).
SET_LUA = """
local answer = KEYS[#KEYS]
local kept = redis.call('GET', answer)
if kept then return kept end
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
local found = {}
for k = 1, #KEYS - 1 do
  local m = redis.call('SMISMEMBER', KEYS[k], unpack(ids))
  for i = 1, #ids do
    if m[i] == 1 then found[i] = true end
  end
end
local taken = {}
for i = 1, #ids do
  if found[i] then taken[#taken + 1] = ids[i] end
end
redis.call('SADD', KEYS[1], unpack(ids))
local text = table.concat(taken, ' ')
redis.call('SET', answer, text, 'PXAT', ARGV[1])
return text
"""


class Redis:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.file = self.sock.makefile("rb")

    @staticmethod
    def encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def call(self, *args):
        self.sock.sendall(self.encode(args))
        return self.reply()

    def pipeline(self, commands):
        self.sock.sendall(b"".join(self.encode(c) for c in commands))
        return [self.reply() for _ in commands]

    def reply(self):
        line = self.file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.file.read(n + 2)[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RuntimeError(f"unexpected reply {line!r}")

    def cpu_seconds(self):
        info = self.call("INFO", "cpu").decode()
        fields = dict(l.split(":", 1) for l in info.split("\r\n") if ":" in l)
        return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])


def batch_ids(n):
    # The SDK's ids: 20 characters of the wire alphabet.
    return [os.urandom(10).hex() for _ in range(n)]


def fill(r, key, kind, n):
    for start in range(0, n, 1000):
        ids = batch_ids(min(1000, n - start))
        if kind == "hash":
            r.call("HSET", key, *[x for i in ids for x in (i, "edge-z:1")])
        else:
            r.call("SADD", key, *ids)


def run(r, variant, total, per_call, filled):
    r.call("FLUSHALL")
    windows = [f"claims:{{c1}}:{w}" for w in (3, 2, 1)]
    if variant in ("hash", "set", "floor"):
        for key in windows[1:]:
            fill(r, key, "hash" if variant == "hash" else "set", filled)
    if variant in ("hash", "set"):
        sha = r.call("SCRIPT", "LOAD", CLAIMS_LUA if variant == "hash" else SET_LUA).decode()
    calls = [batch_ids(per_call) for _ in range(total // per_call)]
    expiry = 4_000_000_000_000
    before = r.cpu_seconds()
    for seq, ids in enumerate(calls):
        if variant == "hash":
            r.call("EVALSHA", sha, len(windows), *windows, f"edge-a:{seq}", expiry, *ids)
        elif variant == "set":
            answer = f"claims:{{c1}}:answer:edge-a:{seq}"
            r.call("EVALSHA", sha, len(windows) + 1, *windows, answer, expiry, *ids)
        elif variant == "floor":
            r.pipeline([("SMISMEMBER", k, *ids) for k in windows] + [("SADD", windows[0], *ids)])
        else:
            packed = b"".join(hashlib.blake2b(i.encode(), digest_size=16).digest() for i in ids)
            entry = r.call("XADD", "claimlog:{c1}", "*", "d", f"edge-a:{seq}", "ids", packed)
            r.pipeline([("XRANGE", "claimlog:{c1}", entry, entry)] * 2)
    spent = r.cpu_seconds() - before
    used = r.call("INFO", "memory").decode()
    memory = dict(l.split(":", 1) for l in used.split("\r\n") if ":" in l)["used_memory_human"]
    print(f"{variant:6} {total} ids, {len(calls)} calls of {per_call}: "
          f"Redis CPU {spent:.3f} s, {1e6 * spent / total:.2f} us per id, "
          f"{1e6 * spent / len(calls):.0f} us per call; memory after {memory}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("port", type=int)
    p.add_argument("--ids", type=int, default=200_000)
    p.add_argument("--per-call", type=int, default=500)
    p.add_argument("--filled", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    r = Redis(a.port)
    for _ in range(a.repeat):
        for variant in ("hash", "set", "floor", "stream"):
            run(r, variant, a.ids, a.per_call, a.filled)


if __name__ == "__main__":
    main()
