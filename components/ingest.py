"""Kubeflow wrapper of `postergenre.sources.ingest.ingest`: a data set folder as a Dataset.

Credentials never pass as parameters (parameters show in the UI and the compiled spec):
the TMDb key comes from `TMDB_API_KEY` / `TMDB_READ_ACCESS_TOKEN` and S3 credentials
from `POSTERGENRE_AWS_ACCESS_KEY_ID` / `POSTERGENRE_AWS_SECRET_ACCESS_KEY` (mapped to
`AWS_*` in this process only), which the pipeline injects from Kubernetes Secrets. An
S3-compatible endpoint comes from `ingest.dvc.endpoint_url` or else the endpoint
variable (`POSTERGENRE_AWS_ENDPOINT_URL`, or `AWS_ENDPOINT_URL`).
"""

from kfp.dsl import Artifact, Dataset, Output


def ingest(dataset: Output[Dataset], report: Output[Artifact], config: dict,
           source: str = "demo", data_version: str = ""):
    """Write labels.csv + posters/ into the Dataset artifact's folder; the summary to `report`.

    `config` is params.yaml's `ingest` section (one sub-section per source). `data_version`
    (the md5 in data.dvc, or a git rev) selects the data for `source='dvc'`; for every
    source it is part of the cache key, so a cached ingest is reused only for the same data.
    """
    import dataclasses
    import json
    import os
    import tempfile

    from postergenre.configs import IngestConfig
    from postergenre.data.storage import use_project_credentials
    from postergenre.lineage import stamp, task_lineage
    from postergenre.sources.ingest import ingest as run
    from postergenre.typed_config import from_mapping

    # The S3 Secret arrives as POSTERGENRE_AWS_* (so KFP's launcher never sees it): the
    # DVC source reads AWS_*, set here, in this process only.
    use_project_credentials()

    settings = from_mapping(IngestConfig, config, "ingest")
    # Hashed as given: the temporary cache folder below is no setting of the experiment.
    lineage = task_lineage(data_version, {"ingest": settings, "source": source})
    if not settings.tmdb.cache_dir:
        # A pod starts empty: the crawl state lives only as long as the task.
        settings = dataclasses.replace(settings, tmdb=dataclasses.replace(
            settings.tmdb, cache_dir=tempfile.mkdtemp(prefix="postergenre-cache-")))
    summary = run(source, dataset.path, settings, data_version=data_version,
                  report_path=report.path)
    if source != "tmdb":  # the tmdb source writes its full report (exclusions) itself
        os.makedirs(os.path.dirname(report.path) or ".", exist_ok=True)
        with open(report.path, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)
    dataset.metadata.update({"source": source, "posters": summary.get("n_posters", 0),
                             "data_version": data_version})
    if summary.get("md5"):  # the dvc source: the version it resolved (a git rev's md5)
        dataset.metadata["md5"] = summary["md5"]
    for key in ("fetched", "skipped", "missing", "failed"):
        if key in summary:
            report.metadata[key] = summary[key]
    stamp(lineage, dataset, report)
