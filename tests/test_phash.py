"""Near-duplicate search (multi-index hashing) against a brute-force reference."""

from __future__ import annotations

import time
import tracemalloc
from itertools import combinations

import numpy as np
import pytest

from postergenre.data import phash
from postergenre.data.phash import hamming, near_duplicate_groups, near_duplicate_pairs


def _reference_pairs(hashes: list[int | None], max_distance: int) -> list[tuple[int, int]]:
    """Every pair within the distance, by comparing all of them in plain Python."""
    return [(i, j) for (i, a), (j, b) in combinations(enumerate(hashes), 2)
            if a is not None and b is not None and (a ^ b).bit_count() <= max_distance]


def _reference_groups(hashes: list[int | None], max_distance: int) -> list[int]:
    """Each item's group: the smallest item it is joined to through the reference pairs."""
    parent = list(range(len(hashes)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i, j in _reference_pairs(hashes, max_distance):
        a, b = root(i), root(j)
        parent[max(a, b)] = min(a, b)
    return [root(i) for i in range(len(hashes))]


def _flip(value: int, bits: int, rng: np.random.Generator) -> int:
    for bit in rng.choice(64, size=bits, replace=False):
        value ^= 1 << int(bit)
    return value


def _planted(n: int, seed: int) -> tuple[list[int | None], dict[int, list[tuple[int, int]]]]:
    """Random hashes, some None, with copies planted 0..6 bits away; the planted pairs."""
    rng = np.random.default_rng(seed)
    hashes: list[int | None] = [int(h) for h in rng.integers(0, 2**64, n, dtype=np.uint64)]
    planted: dict[int, list[tuple[int, int]]] = {d: [] for d in range(7)}
    for k in range(0, n // 3, 2):  # item k + 1 becomes a near-copy of item k
        bits = k // 2 % 7
        hashes[k + 1] = _flip(hashes[k], bits, rng)
        planted[bits].append((k, k + 1))
    for k in range(n // 3, n // 3 + 12):  # a chain: each 3 bits from the last
        hashes[k + 1] = _flip(hashes[k], 3, rng)
    for k in rng.choice(n, size=n // 20, replace=False):
        if all(int(k) not in pair for pairs in planted.values() for pair in pairs):
            hashes[int(k)] = None
    return hashes, planted


@pytest.mark.parametrize("max_distance", [-1, 0, 1, 2, 3, 4, 5, 8, 12, 20, 64])
def test_pairs_and_groups_match_brute_force(max_distance: int) -> None:
    hashes, planted = _planted(600, seed=max_distance + 10)
    expected = _reference_pairs(hashes, max_distance)
    found = near_duplicate_pairs(hashes, max_distance)
    assert found.shape == (len(expected), 2) and found.dtype == np.int64
    assert [tuple(pair) for pair in found.tolist()] == expected  # same pairs, same order
    assert near_duplicate_groups(hashes, max_distance) == _reference_groups(hashes,
                                                                            max_distance)
    pairs = set(expected)
    for bits, planted_pairs in planted.items():
        assert all((pair in pairs) == (bits <= max_distance) for pair in planted_pairs)


def test_distance_4_finds_0_to_4_bits_and_not_5_or_6() -> None:
    hashes, planted = _planted(900, seed=4)
    found = {tuple(pair) for pair in near_duplicate_pairs(hashes, 4).tolist()}
    assert all(pair in found for bits in range(5) for pair in planted[bits])
    assert not any(pair in found for bits in (5, 6) for pair in planted[bits])
    assert all(hamming(hashes[i], hashes[j]) <= 4 for i, j in found)  # type: ignore[arg-type]


@pytest.mark.parametrize("max_distance", [1, 4, 8, 12, 20, 40, 63])
def test_multi_index_path_is_exact_at_any_distance(
        max_distance: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Forced past the cost check (which picks all-pairs for wide distances), and with big
    buckets compared as blocks, the multi-index search still returns the exact pairs."""
    rng = np.random.default_rng(max_distance)
    centre = int(rng.integers(0, 2**64, dtype=np.uint64))
    near = [_flip(centre, int(rng.integers(0, 12)), rng) for _ in range(100)]  # a cluster
    hashes = list(np.unique(np.array(
        near + [int(h) for h in rng.integers(0, 2**64, 150, dtype=np.uint64)],
        dtype=np.uint64)).tolist())
    values = np.array(hashes, dtype=np.uint64)
    expected = _reference_pairs(hashes, max_distance)
    monkeypatch.setattr(phash, "_COST_RATIO", 0)
    for long_run in (1024, 8):
        monkeypatch.setattr(phash, "_LONG_RUN", long_run)
        i, j = phash._distinct_pairs(values, max_distance)
        assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == expected
        assert len(i) == len(expected)  # each pair once, though it may agree on many blocks


@pytest.mark.parametrize("max_distance", [0, 1, 4, 13, 63])
def test_blocks_cover_the_64_bits_once(max_distance: int) -> None:
    blocks = phash._blocks(max_distance)
    assert len(blocks) == max_distance + 1
    masks = [int(phash._mask(*block)) for block in blocks]
    assert sum(masks) == 2**64 - 1 and all(a & b == 0 for a, b in combinations(masks, 2))
    assert max(w for _, w in blocks) - min(w for _, w in blocks) <= 1
    assert phash._blocks(4) == [(0, 13), (13, 13), (26, 13), (39, 13), (52, 12)]


def test_edge_cases() -> None:
    assert near_duplicate_groups([], 4) == []
    assert near_duplicate_pairs([], 4).shape == (0, 2)
    assert near_duplicate_groups([7], 4) == [0]
    assert near_duplicate_pairs([7], 4).shape == (0, 2)
    assert near_duplicate_groups([None, None], 64) == [0, 1]
    assert near_duplicate_pairs([None, 5, None], 64).shape == (0, 2)
    assert near_duplicate_groups([None, 0, 2**64 - 1, None, 5], 64) == [0, 1, 1, 3, 1]
    assert near_duplicate_groups([None, 0, 2**64 - 1, None], 63) == [0, 1, 2, 3]
    assert near_duplicate_groups([None, 0, 2**64 - 1, None, 5], 63) == [0, 1, 1, 3, 1]
    assert near_duplicate_groups([3, 3, 1, None], -1) == [0, 1, 2, 3]
    assert near_duplicate_pairs([3, 3, 1, None], -1).shape == (0, 2)
    assert near_duplicate_groups([3, 3, 1, None], 0) == [0, 0, 2, 3]
    assert near_duplicate_groups([3, 1, 3, None], 1) == [0, 0, 0, 3]
    assert near_duplicate_pairs([3, 1, 3, None], 1).tolist() == [[0, 1], [0, 2], [1, 2]]


def test_all_identical() -> None:
    hashes = [0xDEADBEEFCAFEF00D] * 500
    assert near_duplicate_groups(hashes, 4) == [0] * 500
    pairs = near_duplicate_pairs(hashes, 0)
    assert pairs.tolist() == [list(pair) for pair in combinations(range(500), 2)]


def test_a_few_thousand_hashes_are_fast_and_small() -> None:
    rng = np.random.default_rng(5)
    hashes = [int(h) for h in rng.integers(0, 2**64, 20_000, dtype=np.uint64)]
    for k in range(0, 400, 2):
        hashes[k + 1] = _flip(hashes[k], k % 5, rng)
    near_duplicate_groups(hashes[:100], 4)  # warm up
    started = time.perf_counter()
    groups = near_duplicate_groups(hashes[:5000], 4)
    assert time.perf_counter() - started < 1.0  # ~0.02 s here; generous for busy runners
    assert sum(g != i for i, g in enumerate(groups)) == 200
    tracemalloc.start()
    try:
        groups = near_duplicate_groups(hashes, 4)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sum(g != i for i, g in enumerate(groups)) == 200
    assert peak < 16 * 2**20  # the old row blocks alone were 1024 x 20k x 8 B = 160 MiB
