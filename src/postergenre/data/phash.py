"""Perceptual hashes of posters and the near-duplicate groups they imply.

A near-duplicate (the same artwork re-encoded, resized or lightly retouched) in two splits
leaks just as a copied poster does, so `validate` finds them here and `split` keeps each
group in one split. The hash is the classic DCT pHash: grey, 32x32, 2-D DCT, the 8x8
lowest frequencies compared with their median -> 64 bits. Re-encoding or resizing flips a
few bits; different posters differ in about half of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

_BITS = 64
_CELLS = 1 << 22  # pairwise distances held at once in the exact blocked path (~4 M cells)
_LONG_RUN = 1024  # buckets larger than this are compared as blocks, not by offsets
_COST_RATIO = 4  # multi-index hashing is used while its candidate pairs < all pairs / this


def phash(rgb: np.ndarray) -> int:
    """The 64-bit DCT perceptual hash of an RGB (or grey) uint8 image."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].reshape(-1)
    # The DC term (overall brightness) would dominate the median; leave it out of it.
    bits = low > np.median(low[1:])
    return int(np.packbits(bits).view(">u8")[0])


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (a ^ b).bit_count()


# Near-duplicate search: multi-index hashing.
#
# Why it finds every pair: the 64 bits are cut into d + 1 disjoint blocks (d = max_distance;
# for d = 4: 13 + 13 + 13 + 13 + 12 bits). Two hashes within d bits differ in at most d
# bits, and d differing bits can touch at most d of the d + 1 blocks, so (pigeonhole) at
# least one block is bit-for-bit equal in both. Sorting the hashes by one block's value
# puts every pair that agrees on that block in one run of equal keys; comparing each run's
# members (an exact popcount of the XOR) over all d + 1 blocks therefore sees every pair
# within d bits, and the popcount keeps only those. A pair is reported by the first block
# it agrees on (the later ones skip it), so each pair comes out exactly once. Random 64-bit
# hashes put n / 2^13 items in a bucket: about (d + 1) n^2 / 2^14 candidates instead of
# n^2 / 2. With large d the blocks get too narrow to prune; when the bucket sizes say the
# candidates would be more than a quarter of all pairs, the exact blocked all-pairs
# comparison runs instead. Memory: O(n) per block plus at most _CELLS distances at once.
#
# Identical hashes are collapsed first (np.unique), so a flood of one hash (blank posters)
# is one value, not a quadratic bucket; its copies are joined at distance 0.


def _blocks(max_distance: int) -> list[tuple[int, int]]:
    """(shift, width) of the d + 1 disjoint, near-equal blocks that cover the 64 bits."""
    count = min(max_distance + 1, _BITS)
    width, extra = divmod(_BITS, count)
    blocks, shift = [], 0
    for k in range(count):
        blocks.append((shift, width + (k < extra)))
        shift += blocks[-1][1]
    return blocks


def _mask(shift: int, width: int) -> np.uint64:
    return np.uint64(((1 << width) - 1) << shift)


def _keys(values: np.ndarray, shift: int, width: int) -> np.ndarray:
    """One block of each hash, as a small unsigned integer (uint16: numpy radix-sorts it)."""
    keys = (values >> np.uint64(shift)) & np.uint64((1 << width) - 1)
    return keys.astype(np.uint16) if width <= 16 else keys


def _candidate_count(values: np.ndarray, blocks: list[tuple[int, int]]) -> int:
    """Pairs the multi-index search would compare: same-bucket pairs summed over blocks."""
    total = 0
    for shift, width in blocks:
        keys = _keys(values, shift, width)
        counts = (np.bincount(keys, minlength=1 << width) if width <= 16
                  else np.unique(keys, return_counts=True)[1]).astype(np.int64)
        total += int((counts * (counts - 1) // 2).sum())
    return total


def _first_block(xor: np.ndarray, earlier: list[np.uint64]) -> np.ndarray:
    """Which XORs differ on every earlier block: the pair was not reported before."""
    keep = np.ones(len(xor), dtype=bool)
    for mask in earlier:
        keep &= (xor & mask) != 0
    return keep


def _pairs_blocked(values: np.ndarray, max_distance: int,
                   earlier: list[np.uint64]) -> tuple[np.ndarray, np.ndarray]:
    """Positions (r < c) of all pairs within `max_distance` bits: exact, in row blocks."""
    n = len(values)
    rows = max(1, _CELLS // max(n, 1))
    found_r, found_c = [], []
    for start in range(0, n - 1, rows):
        block = values[start : start + rows]
        rest = values[start + 1 :]  # row start + r meets column start + 1 + c: r <= c
        r, c = np.nonzero(np.bitwise_count(block[:, None] ^ rest[None, :]) <= max_distance)
        keep = r <= c
        r, c = r[keep] + start, c[keep] + start + 1
        keep = _first_block(values[r] ^ values[c], earlier)
        found_r.append(r[keep])
        found_c.append(c[keep])
    empty = np.empty(0, dtype=np.int64)
    return (np.concatenate([empty, *found_r]).astype(np.int64),
            np.concatenate([empty, *found_c]).astype(np.int64))


def _pairs_in_block(values: np.ndarray, max_distance: int, shift: int, width: int,
                    earlier: list[np.uint64]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Pairs within `max_distance` bits that agree on this block and on no earlier one."""
    mask = _mask(shift, width)
    keys = _keys(values, shift, width)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    lengths = np.diff(np.r_[starts, len(keys)])
    found_i: list[np.ndarray] = []
    found_j: list[np.ndarray] = []
    # Big buckets (skewed data): compare their members as blocks of rows.
    for start, length in zip(starts[lengths > _LONG_RUN], lengths[lengths > _LONG_RUN],
                             strict=True):
        members = order[start : start + length]
        r, c = _pairs_blocked(values[members], max_distance, earlier)
        found_i.append(members[r])
        found_j.append(members[c])
    # The rest: a run's members sit side by side in key order, so the pairs t apart are
    # sorted[:-t] vs sorted[t:] where both ends are in one run (the XOR is zero on the
    # block). Runs shorter than t + 1 have no more pairs: they are dropped once they make
    # up half of what is left, so the work stays proportional to the candidate pairs.
    run_length = np.repeat(lengths, lengths)
    live = (run_length >= 2) & (run_length <= _LONG_RUN)
    index, sorted_values, run_length = order[live], values[order[live]], run_length[live]
    offset = 1
    while len(index) > offset:
        xor = sorted_values[:-offset] ^ sorted_values[offset:]
        hit = np.flatnonzero(((xor & mask) == 0) & (np.bitwise_count(xor) <= max_distance))
        hit = hit[_first_block(xor[hit], earlier)]
        found_i.append(index[hit])
        found_j.append(index[hit + offset])
        offset += 1
        live = run_length > offset
        if 2 * np.count_nonzero(live) < len(index):
            index, sorted_values, run_length = index[live], sorted_values[live], run_length[live]
    return found_i, found_j


def _distinct_pairs(values: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (i < j) of every pair of `values` (distinct uint64) within the distance."""
    empty = np.empty(0, dtype=np.int64)
    if max_distance < 1 or len(values) < 2:  # distinct values are >= 1 bit apart
        return empty, empty
    n = len(values)
    blocks = _blocks(max_distance)
    if (max_distance >= _BITS
            or _COST_RATIO * _candidate_count(values, blocks) >= n * (n - 1) // 2):
        return _pairs_blocked(values, max_distance, [])
    found_i: list[np.ndarray] = [empty]
    found_j: list[np.ndarray] = [empty]
    for k, (shift, width) in enumerate(blocks):
        earlier = [_mask(*block) for block in blocks[:k]]
        i, j = _pairs_in_block(values, max_distance, shift, width, earlier)
        found_i += i
        found_j += j
    first = np.concatenate(found_i).astype(np.int64)
    second = np.concatenate(found_j).astype(np.int64)
    return np.minimum(first, second), np.maximum(first, second)


def _present(hashes: Sequence[int | None]) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the items with a hash, and their hashes as uint64."""
    present = np.fromiter((i for i, h in enumerate(hashes) if h is not None), dtype=np.int64)
    values = np.fromiter((h for h in hashes if h is not None), dtype=np.uint64,
                         count=len(present))
    return present, values


def _min_labels(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per item, the smallest item joined to it through the edges (a, b): union-find in numpy.

    Roots are hooked under the smaller root of each edge still split, then every label is
    pointed at its root; an edge once joined stays joined. A label never exceeds its item
    and stays in its component, so the final label is the component's smallest item.
    """
    label = np.arange(n, dtype=np.int64)
    while len(a):
        la, lb = label[a], label[b]
        split = la != lb
        a, b, la, lb = a[split], b[split], la[split], lb[split]
        if not len(a):
            break
        np.minimum.at(label, np.maximum(la, lb), np.minimum(la, lb))
        while True:
            jumped = label[label]
            if np.array_equal(jumped, label):
                break
            label = jumped
    return label


def near_duplicate_pairs(hashes: Sequence[int | None], max_distance: int) -> np.ndarray:
    """Every pair (i, j), i < j, of items within `max_distance` bits, sorted; shape (k, 2).

    Items without a hash (None) are in no pair; a negative `max_distance` finds none.
    """
    present, values = _present(hashes)
    if max_distance < 0 or len(present) < 2:
        return np.empty((0, 2), dtype=np.int64)
    unique, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    members = present[np.argsort(inverse, kind="stable")]  # items grouped by hash value
    first = np.cumsum(counts) - counts  # where each value's items start in `members`

    def expand(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # every item of value `left` with every item of value `right`
        size = counts[left] * counts[right]
        edge = np.repeat(np.arange(len(left)), size)
        k = np.arange(int(size.sum())) - np.repeat(np.cumsum(size) - size, size)
        width = counts[right][edge]
        return (members[first[left][edge] + k // width],
                members[first[right][edge] + k % width])

    a, b = _distinct_pairs(unique, max_distance)
    i, j = expand(a, b)
    same = np.flatnonzero(counts > 1)  # copies of one hash: distance 0
    si, sj = expand(same, same)
    keep = si < sj
    i, j = np.concatenate([i, si[keep]]), np.concatenate([j, sj[keep]])
    pairs = np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def near_duplicate_groups(hashes: Sequence[int | None], max_distance: int) -> list[int]:
    """Group index per item: items within `max_distance` bits are joined (transitively).

    Items without a hash (None: a poster that could not be read) are alone in their group.
    A group's index is the position of its first item, so groups are stable across runs.
    The pairs come from multi-index hashing (see above), not from all n^2 comparisons.
    """
    n = len(hashes)
    present, values = _present(hashes)
    if max_distance < 0 or len(present) < 2:
        return list(range(n))
    if max_distance >= _BITS:  # every pair of 64-bit hashes is within 64 bits
        label = np.arange(n, dtype=np.int64)
        label[present] = present[0]
        return label.tolist()
    unique, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    representative = present[first]  # the first item of each distinct hash
    copy = representative[inverse] != present  # a later item with an earlier one's hash
    a, b = _distinct_pairs(unique, max_distance)
    label = _min_labels(n, np.concatenate([present[copy], representative[a]]),
                        np.concatenate([representative[inverse][copy], representative[b]]))
    return label.tolist()
