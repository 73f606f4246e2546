"""The `ingest` stage: produce a poster data set in the layout of `labels.py`.

One entry point, `ingest(source, out_dir, config)`, for the CLI and the Kubeflow
component; `config` is the stage's `IngestConfig` (params.yaml's `ingest` section), of
which the chosen source reads its own part. The sources live in `postergenre.sources`:
- `demo`: synthetic posters generated from a seed (offline, byte-identical reruns).
- `tmdb`: MovieLens ids -> TMDb details and posters; needs `TMDB_API_KEY` or
  `TMDB_READ_ACCESS_TOKEN` in the environment.
- `local`: a poster folder plus its labels CSV.
- `dvc`: one data version (`data_version`) pulled from a DVC remote.
"""

from __future__ import annotations

import os

from postergenre.atomic import write_json
from postergenre.configs import SOURCES, IngestConfig

__all__ = ["SOURCES", "ingest"]


def ingest(source: str, out_dir: str | os.PathLike[str], config: IngestConfig | None = None,
           *, data_version: str = "", report_path: str | os.PathLike[str] | None = None
           ) -> dict:
    """Write `out_dir/labels.csv` and `out_dir/posters/` from `source`; return its summary.

    `data_version` (the md5 in data.dvc, or a git revision of `config.dvc.repo`) selects
    the data of the dvc source; the others ignore it. The report goes to `report_path`
    when given: the tmdb source's full report (every excluded movie and why), the summary
    for the others.
    """
    config = config or IngestConfig()
    # Each source is imported only when chosen: the demo needs neither aiohttp nor DVC.
    if source == "demo":
        from postergenre.sources.demo import generate_demo

        summary = generate_demo(out_dir, config.demo)
    elif source == "tmdb":
        from postergenre.sources.tmdb import ingest_tmdb

        return ingest_tmdb(out_dir, config.tmdb, report_path=report_path)
    elif source == "local":
        from postergenre.sources.local import ingest_local

        summary = ingest_local(out_dir, config.local)
    elif source == "dvc":
        from postergenre.sources.dvc import materialise

        summary = materialise(data_version, out_dir, config.dvc)
    else:
        raise ValueError(f"unknown ingest source {source!r}; choose one of "
                         f"{', '.join(SOURCES)}")
    if report_path:
        write_json(report_path, summary)
    return summary
