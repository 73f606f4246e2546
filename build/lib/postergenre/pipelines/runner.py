"""Entry points for the pipeline: compile to YAML IR, or run locally with kfp.local."""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from pathlib import Path

from kfp import compiler, local

from postergenre.components import DEFAULT_IMAGE
from postergenre.pipelines.pipeline import create_pipeline


def compile_pipeline(output: str | os.PathLike[str], image: str | None = None) -> Path:
    """Write the pipeline's YAML IR (what `kfp.Client` uploads) to `output`."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(create_pipeline(image or DEFAULT_IMAGE), str(output))
    return output


def pipeline_parameters() -> dict[str, inspect.Parameter]:
    """The pipeline's run-time parameters, by name."""
    return dict(inspect.signature(create_pipeline().pipeline_func).parameters)


def parse_params(pairs: Sequence[str]) -> dict:
    """`key=value` strings -> typed pipeline arguments; unknown keys are an error."""
    known = pipeline_parameters()
    params: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise ValueError(f"parameter {pair!r}: expected KEY=VALUE")
        if key not in known:
            raise ValueError(f"unknown pipeline parameter {key!r}; known: {', '.join(known)}")
        kind = known[key].annotation
        try:
            if kind is list:
                params[key] = [item for item in raw.split(",") if item]
            elif kind in (int, float):
                params[key] = kind(raw)
            else:
                params[key] = raw
        except ValueError:
            raise ValueError(f"parameter {key!r}: {raw!r} is not a valid {kind.__name__}") from None
    return params


def run_local(pipeline_root: str | os.PathLike[str], **params) -> dict:
    """Run the whole pipeline on this machine with kfp.local's SubprocessRunner.

    Every component runs in this Python environment (where postergenre is installed);
    resource requests and image settings are ignored locally, as kfp.local documents.
    """
    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root),
               raise_on_error=True)
    before = set(root.iterdir())
    task = create_pipeline()(**params)
    run_dirs = sorted(set(root.iterdir()) - before)
    return {"decision": task.output, "run_dir": str(run_dirs[-1]) if run_dirs else None}
