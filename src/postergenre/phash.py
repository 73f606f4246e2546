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

_BLOCK = 1024  # rows of the pairwise distance matrix held at once: memory stays bounded


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


def near_duplicate_groups(hashes: Sequence[int | None], max_distance: int) -> list[int]:
    """Group index per item: items within `max_distance` bits are joined (transitively).

    Items without a hash (None: a poster that could not be read) are alone in their group.
    A group's index is the position of its first item, so groups are stable across runs.
    Pairwise comparison runs in blocks of rows, so memory is O(block x n), not O(n^2).
    """
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
        for start in range(0, len(values), _BLOCK):
            block = values[start : start + _BLOCK]
            distance = np.bitwise_count(block[:, None] ^ values[None, :])
            rows, cols = np.nonzero(distance <= max_distance)
            for r, c in zip(rows + start, cols, strict=True):
                if r < c:
                    a, b = find(int(present[r])), find(int(present[c]))
                    if a != b:
                        parent[max(a, b)] = min(a, b)
    return [find(i) for i in range(n)]
