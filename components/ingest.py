"""Kubeflow wrapper of `postergenre.ingest.ingest`: a data set folder as a Dataset.

Credentials never pass as parameters (parameters show in the UI and the compiled spec):
the TMDb key comes from `TMDB_API_KEY` / `TMDB_READ_ACCESS_TOKEN` and S3 credentials
from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, which the pipeline injects from
Kubernetes Secrets. An S3-compatible endpoint comes from `endpoint_url` or else the
`AWS_ENDPOINT_URL` variable.
"""

from kfp.dsl import Artifact, Dataset, Output


def ingest(dataset: Output[Dataset], report: Output[Artifact], source: str = "demo",
           n_posters: int = 1500, seed: int = 0, width: int = 96, height: int = 144,
           data_version: str = "", remote_url: str = "", endpoint_url: str = "",
           movielens_release: str = "ml-latest-small", label_source: str = "tmdb",
           poster_size: str = "w500", max_movies: int = 0, rate_limit: float = 20.0,
           concurrency: int = 8, movielens_url: str = "", tmdb_api_url: str = "",
           tmdb_image_url: str = "", local_dir: str = "", labels_csv: str = ""):
    """Write labels.csv + posters/ into the Dataset artifact's folder; the summary to `report`.

    `data_version` (the md5 in data.dvc, or a git rev) selects the data for
    `source='dvc'`; for every source it is part of the cache key, so a cached ingest is
    reused only for the same data. `max_movies=0` crawls the whole MovieLens release.
    """
    import json
    import os
    import tempfile

    from postergenre.ingest import ingest as run

    tmdb = {"variant": movielens_release, "label_source": label_source,
            "poster_size": poster_size, "max_movies": max_movies or None,
            "rate_limit": rate_limit, "concurrency": concurrency,
            # A pod starts empty: the crawl state lives only as long as the task.
            "cache_dir": tempfile.mkdtemp(prefix="postergenre-cache-"),
            "report_path": report.path}
    for key, value in (("movielens_url", movielens_url), ("api_url", tmdb_api_url),
                       ("image_url", tmdb_image_url)):
        if value:
            tmdb[key] = value
    summary = run(source, dataset.path, n_posters=n_posters, seed=seed, width=width,
                  height=height, tmdb=tmdb, local_dir=local_dir or None,
                  labels_csv=labels_csv or None, data_version=data_version,
                  remote_url=remote_url,
                  endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None)
    if source != "tmdb":  # the tmdb source writes its full report (exclusions) itself
        os.makedirs(os.path.dirname(report.path) or ".", exist_ok=True)
        with open(report.path, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)
    dataset.metadata.update({"source": source, "posters": summary.get("n_posters", n_posters),
                             "data_version": data_version})
    for key in ("fetched", "skipped", "missing", "failed"):
        if key in summary:
            report.metadata[key] = summary[key]
