"""Benchmark: the near-duplicate poster search (perceptual-hash groups) at scale.

Random 64-bit hashes with ~1% planted near-duplicates (a copy of another hash with 0-4
bits flipped) go through `near_duplicate_groups` at distance 4 (the default), for 10k,
100k and 1M hashes. Printed per size: wall and CPU time (median of 3 runs), the peak
memory the call allocates (tracemalloc, in a separate run: allocations traced during the
call only, so the imports and the input list are the baseline and are not counted), and
the near-duplicate items found (each planted copy that is not itself a planted source).

The old quadratic search (pairwise distances in row blocks, kept below verbatim) runs at
`--quadratic-sizes` (5k, 10k and 20k; median of 3 runs each, the same groups as the new
search asserted). Its CPU time at the larger sizes is c x n^2, c fitted to those
measurements (least squares on log time), printed as an extrapolation; the exponent fitted
freely is printed beside it, to show that n^2 holds.

The ceiling, measured in the same run at the largest size: reading the hashes into an
array and sorting them once (`np.unique`, the search's first step), which no sort-based
search can skip; and this CPU's single-thread rate of XOR, popcount and compare (the
quadratic search's inner loop), which bounds any search that compares every pair. The
load average is printed before and after.

    .venv/bin/python bench/dedup.py [--sizes 10000 100000 1000000]
        [--quadratic-sizes 5000 10000 20000] [--seed 0]

Last line: dedup: X s CPU for 1M hashes (Y us per hash; wall Z s), ...
"""

from __future__ import annotations

import argparse
import sys
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import Summary, closing_lines, load_line, repeat  # noqa: E402

from postergenre.data.phash import near_duplicate_groups  # noqa: E402

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


def compare_rate(n: int = 8192, blocks: int = 8, seed: int = 0) -> float:
    """Pairs per CPU-second that one thread XORs, popcounts and compares with the distance
    (numpy, a block of 1024 rows against all `n` at a time, as the quadratic search does)."""
    values = np.random.default_rng(seed).integers(0, 2**64, n, dtype=np.uint64)
    block = values[:_OLD_BLOCK]

    def compare() -> int:
        return sum(int(np.count_nonzero(np.bitwise_count(block[:, None] ^ values[None, :])
                                        <= DISTANCE)) for _ in range(blocks))

    compare()  # warm-up
    run = repeat(compare, blocks * _OLD_BLOCK * n)
    return run.items / run.cpu_s


def sort_floor(hashes: list[int]) -> Summary:
    """Reading the hashes into an array and sorting them once: the search's first step."""
    return repeat(lambda: np.unique(np.fromiter(hashes, dtype=np.uint64, count=len(hashes))),
                  len(hashes))


def quadratic_fit(sizes: Sequence[int], cpu_s: Sequence[float]) -> tuple[float, float]:
    """(c, k): c fitted to cpu = c n^2 (least squares on log cpu), and the exponent k of
    a free fit cpu = a n^k, which should be close to 2."""
    logs_n, logs_t = np.log(np.asarray(sizes, float)), np.log(np.asarray(cpu_s, float))
    c = float(np.exp(np.mean(logs_t - 2 * logs_n)))
    k = float(np.polyfit(logs_n, logs_t, 1)[0]) if len(set(sizes)) > 1 else float("nan")
    return c, k


def _seconds(x: float) -> str:
    """Seconds to 3 significant figures or whole seconds, with thousands separators."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}" if x >= 0.001 else f"{x:.1e}"


def _label(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--quadratic-sizes", type=int, nargs="+",
                        default=[5_000, 10_000, 20_000],
                        help="sizes the old quadratic search runs at (at least 2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if len(set(args.quadratic_sizes)) < 2:
        parser.error("--quadratic-sizes needs at least 2 different sizes (the n^2 fit)")
    print(f"distance {DISTANCE}; {load_line('start')}")
    near_duplicate_groups(planted_hashes(1000, args.seed)[0], DISTANCE)  # warm up
    print(f"{'hashes':>8} {'runs':>5} {'wall s':>8} {'CPU s':>8} {'us/hash':>8} "
          f"{'peak MiB':>9} {'joined':>7} {'planted':>7}")
    results: dict[int, tuple[Summary, float, int, int]] = {}
    for n in args.sizes:
        hashes, planted = planted_hashes(n, args.seed)
        run = repeat(lambda hashes=hashes: near_duplicate_groups(hashes, DISTANCE), n)
        memory = peak_mib(hashes)
        joined = sum(g != i for i, g in enumerate(run.runs[0].value))
        results[n] = run, memory, joined, planted
        print(f"{_label(n):>8} {len(run.runs):>5} {run.wall_s:8.3f} {run.cpu_s:8.3f} "
              f"{run.cpu_us_per_item:8.2f} {memory:9.1f} {joined:>7} {planted:>7}", flush=True)

    old: dict[int, Summary] = {}
    for n in args.quadratic_sizes:
        hashes, _ = planted_hashes(n, args.seed)
        old[n] = repeat(lambda hashes=hashes: quadratic_groups(hashes, DISTANCE), n)
        assert old[n].runs[0].value == near_duplicate_groups(hashes, DISTANCE), "groups differ"
        print(f"old quadratic search at {_label(n)}: CPU {old[n].cpu_s:.3f} s, wall "
              f"{old[n].wall_s:.3f} s (median of {len(old[n].runs)}; the same groups as the "
              "new search)", flush=True)
    c, exponent = quadratic_fit(list(old), [s.cpu_s for s in old.values()])
    fitted_from = ", ".join(_label(n) for n in old)
    for n in (n for n in args.sizes if n not in old):
        print(f"old quadratic search at {_label(n)}: EXTRAPOLATED {_seconds(c * n * n)} s CPU "
              f"(c n^2 fitted to its CPU at {fitted_from}; free fit exponent "
              f"{exponent:.2f}; not run)")

    largest = args.sizes[-1]
    hashes, _ = planted_hashes(largest, args.seed)
    floor, rate = sort_floor(hashes), compare_rate()
    del hashes
    pairs = largest * (largest - 1) / 2
    print(load_line("end"))
    run, memory, joined, planted = results[largest]
    closing_lines(
        "dedup",
        f"at {_label(largest)} hashes, reading them into an array and one sort (np.unique, "
        f"the search's first step) take {_seconds(floor.cpu_s)} s CPU ({floor.cpu_us_per_item:.2f} "
        f"us per hash): no sort-based search does less; one thread XORs, popcounts and "
        f"compares {rate / 1e6:,.0f}M pairs per CPU-second, so comparing all {pairs:.2g} "
        f"pairs would take {_seconds(pairs / rate)} s CPU",
        f"{_seconds(run.cpu_s)} s CPU for {_label(largest)} hashes ({run.cpu_us_per_item:.2f} "
        f"us per hash; wall {_seconds(run.wall_s)} s, median of {len(run.runs)}), peak "
        f"{memory:.0f} "
        f"MiB, {joined:,} items joined ({planted:,} planted); old quadratic search "
        f"{_seconds(c * largest * largest)} s CPU at {_label(largest)} (n^2 fitted to its runs at "
        f"{fitted_from})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
