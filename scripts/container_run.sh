#!/usr/bin/env bash
# `make container-run`: the whole Kubeflow pipeline on this machine with every task in its
# real image (kfp.local's DockerRunner: postergenre.pipelines.runner.run_in_containers),
# ending with the gate's decision, as `make local-run` does.
#
#   scripts/container_run.sh [--params FILE ...] [--set SECTION.KEY=VALUE ...] [-p KEY=VALUE ...]
#
# Environment:
#   IMAGES       the images to build and use: `cpu gpu` (default; training in the GPU
#                image) or `cpu` (every task in the CPU image, as tests/test_containers.py)
#   SKIP_BUILD=1 use the images as they are (default: scripts/build_images.sh first; its
#                layer cache makes an unchanged image a matter of seconds)
#   ROOT         the pipeline root (default: outputs/kfp-containers)
#   REGISTRY, TAG, BASE_IMAGE, ENGINE: as scripts/build_images.sh
#   PYTHON       the Python that runs kfp.local (default: .venv/bin/python)
# With docker (a daemon that answers) kfp.local talks to it; with podman, to podman's
# Docker-compatible API, started here on a private socket and stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGES="${IMAGES:-cpu gpu}"
ROOT="${ROOT:-outputs/kfp-containers}"
PYTHON="${PYTHON:-.venv/bin/python}"
REGISTRY="${REGISTRY:-localhost}"
TAG="${TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)}"
export REGISTRY TAG

source scripts/container_engine.sh  # the repo root is the working folder (cd above)
choose_engine container_run
export ENGINE

image="${REGISTRY%/}/postergenre:$TAG"
gpu_image=$image
case " $IMAGES " in *" gpu "*) gpu_image="${REGISTRY%/}/postergenre-gpu:$TAG" ;; esac

start=$(date +%s)
if [ "${SKIP_BUILD:-}" != 1 ]; then
    # shellcheck disable=SC2086 # IMAGES is a list of kinds
    scripts/build_images.sh $IMAGES
fi
built=$(date +%s)

if [ "$ENGINE" = podman ]; then
    sockdir=$(mktemp -d)
    podman system service --time=0 "unix://$sockdir/podman.sock" &
    service=$!
    trap 'kill "$service" 2>/dev/null; wait "$service" 2>/dev/null; rm -rf "$sockdir"' EXIT
    export DOCKER_HOST="unix://$sockdir/podman.sock"
    for _ in $(seq 100); do
        [ -S "$sockdir/podman.sock" ] && break
        kill -0 "$service" 2>/dev/null || { echo "container_run: podman system service exited" >&2; exit 1; }
        sleep 0.1
    done
fi

"$PYTHON" scripts/container_run.py --root "$ROOT" --image "$image" --gpu-image "$gpu_image" "$@"
echo "container_run: images $(( built - start )) s, pipeline $(( $(date +%s) - built )) s"
