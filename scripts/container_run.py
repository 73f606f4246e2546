"""The Python half of scripts/container_run.sh: the whole pipeline with kfp.local's
DockerRunner (every task in its image), then the gate's decision, as
`postergenre pipeline run --local` prints it. $DOCKER_HOST names the engine's socket.

    python scripts/container_run.py --image IMAGE [--gpu-image IMAGE] [--root DIR]
        [--params FILE ...] [--set SECTION.KEY=VALUE ...] [-p KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import sys

from postergenre.pipelines.commands import experiment_from_args
from postergenre.pipelines.runner import parse_params, run_in_containers
from postergenre.typed_config import add_params_flags


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", required=True, help="the CPU image (every task but train)")
    parser.add_argument("--gpu-image", default=None, help="the training tasks' image")
    parser.add_argument("--root", default="outputs/kfp-containers", help="pipeline root")
    add_params_flags(parser, "override one setting, e.g. --set augment.image_size=32")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        experiment = experiment_from_args(args)
        params = parse_params(args.param, experiment)
    except ValueError as err:
        print(f"container_run: error: {err}", file=sys.stderr)
        return 2
    outputs = run_in_containers(args.root, args.image, args.gpu_image, experiment, **params)
    print(f"\ngate: {outputs['decision']}" + (f" {outputs['model']}" if outputs["model"] else ""))
    for line in outputs["failed_rules"]:
        print(f"  failed: {line}")
    print(f"artifacts: {outputs['run_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
