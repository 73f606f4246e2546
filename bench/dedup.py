"""Benchmark: the near-duplicate poster search (perceptual-hash groups) at scale.

Random 64-bit hashes with ~1% planted near-duplicates (a copy of another hash with 0-4
bits flipped) go through `near_duplicate_groups` at distance 4 (the default), for 10k,
100k and 1M hashes. Printed per size: wall and CPU time (median of 3 runs for 10k and
100k, one run for 1M), the peak memory the call allocates (tracemalloc, in a separate
run: allocations traced during the call only, so the imports and the input list are the
baseline and are not counted), and the near-duplicate items found (each planted copy that
is not itself a planted source). The old quadratic search (pairwise distances in row
blocks, kept below verbatim) runs at 10k (same groups asserted); its times at 100k and 1M
are extrapolated as n^2, not measured. The load average is printed before and after.

    .venv/bin/python bench/dedup.py [--sizes 10000 100000 1000000] [--seed 0]

Last line: dedup: 1M hashes in X s (Y MiB); quadratic at 10k Z s
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence

import numpy as np

from postergenre.data.phash import near_duplicate_groups

DISTANCE = 4
_OLD_BLOCK = 1024


def quadratic_groups(hashes: Sequence[int | None], max_distance: int) -> list[int]:
    """The search before multi-index hashing (verbatim): every pair, 1024 rows at a time."""
    n = len(hashes)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    present = np.array([i for i, h in enumerate(hashes) if h is not None], dtype=np.int64)
    if max_distance >= 0 and len(present) > 1:
        values = np.array([hashes[i] for i in present], dtype=np.uint64)
        for start in range(0, len(values), _OLD_BLOCK):
            block = values[start : start + _OLD_BLOCK]
            distance = np.bitwise_count(block[:, None] ^ values[None, :])
            rows, cols = np.nonzero(distance <= max_distance)
            for r, c in zip(rows + start, cols, strict=True):
                if r < c:
                    a, b = find(int(present[r])), find(int(present[c]))
                    if a != b:
                        parent[max(a, b)] = min(a, b)
    return [find(i) for i in range(n)]


def planted_hashes(n: int, seed: int) -> tuple[list[int], int]:
    """n random hashes; 1% of them replaced by copies of others 0..4 bits away."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2**64, n, dtype=np.uint64)
    copies = max(1, n // 100)
    chosen = rng.choice(n, size=2 * copies, replace=False)
    source, target = chosen[:copies], chosen[copies:]
    bits = rng.integers(0, DISTANCE + 1, copies)
    order = rng.random((copies, 64)).argsort(axis=1)  # distinct bit positions per copy
    flips = np.zeros(copies, dtype=np.uint64)
    for k in range(DISTANCE):
        flips |= np.where(bits > k, np.uint64(1) << order[:, k].astype(np.uint64),
                          np.uint64(0))
    values[target] = values[source] ^ flips
    return values.tolist(), copies


def timed(search: Callable[[list[int], int], list[int]], hashes: list[int],
          runs: int) -> tuple[float, float, list[int]]:
    """Median wall and CPU seconds of `runs` calls, and the groups."""
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        groups = search(hashes, DISTANCE)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), groups


def peak_mib(hashes: list[int]) -> float:
    """Peak MiB allocated during one call (tracemalloc; what existed before is not counted)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        near_duplicate_groups(hashes, DISTANCE)
        return (tracemalloc.get_traced_memory()[1] - before) / 2**20
    finally:
        tracemalloc.stop()


def _label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"distance {DISTANCE}; {os.cpu_count()} CPUs; load average before "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15 min)")
    near_duplicate_groups(planted_hashes(1000, args.seed)[0], DISTANCE)  # warm up
    print(f"{'hashes':>8} {'runs':>5} {'wall s':>8} {'CPU s':>8} {'peak MiB':>9} "
          f"{'joined':>7} {'planted':>7}")
    results = {}
    for n in args.sizes:
        hashes, planted = planted_hashes(n, args.seed)
        runs = 3 if n <= 100_000 else 1
        wall, cpu, groups = timed(near_duplicate_groups, hashes, runs)
        memory = peak_mib(hashes)
        joined = sum(g != i for i, g in enumerate(groups))
        results[n] = wall, memory
        print(f"{_label(n):>8} {runs:>5} {wall:8.3f} {cpu:8.3f} {memory:9.1f} {joined:>7} "
              f"{planted:>7}", flush=True)
    small = args.sizes[0]
    hashes, _ = planted_hashes(small, args.seed)
    old_wall, old_cpu, old_groups = timed(quadratic_groups, hashes, 3)
    assert old_groups == near_duplicate_groups(hashes, DISTANCE), "groups differ"
    print(f"old quadratic search at {_label(small)}: wall {old_wall:.3f} s, CPU {old_cpu:.3f} s "
          f"(median of 3; same groups as the new search)")
    for n in args.sizes[1:]:
        print(f"old quadratic search at {_label(n)}: EXTRAPOLATED (n^2 from {_label(small)}, "
              f"not run) {old_wall * (n / small) ** 2:,.0f} s")
    print(f"load average after {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15 min)")
    largest = args.sizes[-1]
    wall, memory = results[largest]
    print(f"dedup: {_label(largest)} hashes in {wall:.1f} s ({memory:.0f} MiB); quadratic at "
          f"{_label(small)} {old_wall:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
