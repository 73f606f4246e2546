"""Kubeflow wrapper of `postergenre.ingest.ingest`: a data set folder as a Dataset."""

from kfp.dsl import Dataset, Output


def ingest(dataset: Output[Dataset], source: str = "demo", n_posters: int = 1500,
           seed: int = 0, width: int = 96, height: int = 144):
    """Write labels.csv + posters/ into the Dataset artifact's folder."""
    from postergenre.ingest import ingest as run

    summary = run(source, dataset.path, n_posters=n_posters, seed=seed, width=width,
                  height=height)
    dataset.metadata.update({"source": source, "posters": summary.get("n_posters", n_posters)})
