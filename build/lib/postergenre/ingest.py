"""The `ingest` stage: produce a poster data set in the layout of `labels.py`.

Sources:
- `demo`: synthetic posters generated from a seed (offline, byte-identical reruns).
"""

from __future__ import annotations

import os

SOURCES: tuple[str, ...] = ("demo",)


def ingest(source: str, out_dir: str | os.PathLike[str], n_posters: int = 1500,
           seed: int = 0, width: int = 96, height: int = 144) -> dict:
    """Write `out_dir/labels.csv` and `out_dir/posters/` from the chosen source."""
    if source == "demo":
        from postergenre.demo import generate_demo

        return generate_demo(out_dir, n_posters=n_posters, seed=seed, width=width,
                             height=height)
    raise ValueError(f"unknown ingest source {source!r}; choose one of {', '.join(SOURCES)}")
