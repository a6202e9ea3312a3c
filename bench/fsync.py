#!/usr/bin/env python3
"""The cost of the write-ahead log's `fdatasync` on this disk: after a
4 KiB append that grows the file, against after a 4 KiB write into a file
already written out (zeros), which leaves the inode as it was.

    python3 bench/fsync.py [DIR] [--writes 2000] [--rounds 3]

DIR (default: the current directory) must be on the disk under test; the
script writes two files there and deletes them. Prints the median and p99
microseconds per `write` + `fdatasync` for each way, per round, the two
ways alternated.
"""

import argparse
import os
import statistics
import time

BLOCK = 4096


def timed_writes(fd, writes, at_offset):
    data = os.urandom(BLOCK)
    times = []
    for i in range(writes):
        start = time.perf_counter_ns()
        if at_offset:
            os.pwrite(fd, data, i * BLOCK)
        else:
            os.write(fd, data)
        os.fdatasync(fd)
        times.append((time.perf_counter_ns() - start) / 1000)
    return times


def run(directory, writes, at_offset):
    path = os.path.join(directory, "glimpse-fsync-bench.tmp")
    fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    try:
        if at_offset:
            os.write(fd, bytes(writes * BLOCK))
            os.fsync(fd)
        times = sorted(timed_writes(fd, writes, at_offset))
    finally:
        os.close(fd)
        os.unlink(path)
    return statistics.median(times), times[int(len(times) * 0.99)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?", default=".")
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for round_ in range(1, args.rounds + 1):
        for name, at_offset in (("growing", False), ("pre-written", True)):
            p50, p99 = run(args.dir, args.writes, at_offset)
            print(f"round {round_} {name:12} p50 {p50:7.1f} us  p99 {p99:7.1f} us")


if __name__ == "__main__":
    main()
