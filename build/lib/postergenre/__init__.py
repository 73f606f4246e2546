"""postergenre: predict a movie's genres from its poster.

Each pipeline stage is one plain function in this package (paths in, paths out,
parameters as arguments). `dvc.yaml` calls them through the CLI (`postergenre`), and
`components/` wraps them for Kubeflow Pipelines; neither wrapper holds logic.
"""

__version__ = "0.1.0"
