"""The `ingest` stage: produce a poster data set in the layout of `labels.py`.

Sources (one entry point, `ingest(source, out_dir, ...)`, for the CLI and the component):
- `demo`: synthetic posters generated from a seed (offline, byte-identical reruns).
- `tmdb`: MovieLens ids -> TMDb details and posters (tmdb_ingest.py); needs
  `TMDB_API_KEY` or `TMDB_READ_ACCESS_TOKEN` in the environment.
- `local`: a poster folder plus its labels CSV (local_source.py).
- `dvc`: one data version pulled from a DVC remote (dvc_data.py).
"""

from __future__ import annotations

import os

SOURCES: tuple[str, ...] = ("demo", "tmdb", "local", "dvc")


def ingest(source: str, out_dir: str | os.PathLike[str], n_posters: int = 1500,
           seed: int = 0, width: int = 96, height: int = 144, *,
           tmdb: dict | None = None, local_dir: str | os.PathLike[str] | None = None,
           labels_csv: str | os.PathLike[str] | None = None,
           data_version: str | None = None, remote_url: str | None = None,
           endpoint_url: str | None = None, repo: str | os.PathLike[str] = ".") -> dict:
    """Write `out_dir/labels.csv` and `out_dir/posters/` from the chosen source.

    `n_posters`, `seed`, `width`, `height`: demo only. `tmdb`: keyword arguments of
    `tmdb_ingest.ingest_tmdb` (release, URLs, poster size, label source, rate limit, ...).
    `local_dir`, `labels_csv`: local only. `data_version`, `remote_url`, `endpoint_url`,
    `repo`: dvc only.
    """
    if source == "demo":
        from postergenre.demo import generate_demo

        return generate_demo(out_dir, n_posters=n_posters, seed=seed, width=width,
                             height=height)
    if source == "tmdb":
        from postergenre.tmdb_ingest import ingest_tmdb

        return ingest_tmdb(out_dir, **(tmdb or {}))
    if source == "local":
        from postergenre.local_source import ingest_local

        if not local_dir:
            raise ValueError("--source local needs --local-dir (a folder with labels.csv)")
        return ingest_local(local_dir, out_dir, labels_csv)
    if source == "dvc":
        from postergenre.dvc_data import materialise

        return materialise(data_version or "", out_dir, remote_url or "", endpoint_url, repo)
    raise ValueError(f"unknown ingest source {source!r}; choose one of {', '.join(SOURCES)}")
