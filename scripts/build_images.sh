#!/usr/bin/env bash
# Build the project's images (docker/Dockerfile.KIND) with docker (when its daemon answers)
# or podman, and list them with their sizes. `make images` runs it; so does
# tests/test_containers.py, for the CPU image only.
#
#   scripts/build_images.sh [cpu] [gpu]          (default: both)
#
# Environment:
#   REGISTRY     image names are REGISTRY/postergenre[-gpu]:TAG (default: localhost)
#   TAG          default: the version in pyproject.toml
#   PUSH=1       push each image after building it (needs REGISTRY)
#   BASE_IMAGE   the base of both images: a reference, `public` (the Dockerfiles' default,
#                docker.io's python image), `local` (a Debian bookworm base made here
#                with mmdebstrap, for machines that reach no image registry) or `auto`
#                (default: public when it can be pulled, else local)
#   ENGINE       docker or podman (default: docker if its daemon answers, else podman)
#   PIP_CA       CA bundle pip inside the build trusts, for hosts behind a TLS-inspecting
#                proxy (default: $PIP_CERT, else $SSL_CERT_FILE, when one is a file);
#                passed as a build secret, never stored in the image
# podman reads docker/containers.conf (CONTAINERS_CONF) unless CONTAINERS_CONF is set.
set -euo pipefail
cd "$(dirname "$0")/.."

kinds=("$@")
[ ${#kinds[@]} -gt 0 ] || kinds=(cpu gpu)
for kind in "${kinds[@]}"; do
    [ -f "docker/Dockerfile.$kind" ] || { echo "build_images: no docker/Dockerfile.$kind" >&2; exit 2; }
done

source scripts/container_engine.sh  # the repo root is the working folder (cd above)
choose_engine build_images
REGISTRY="${REGISTRY:-localhost}"
REGISTRY="${REGISTRY%/}"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
TAG="${TAG:-$version}"
if [ "${PUSH:-}" = 1 ] && [ "$REGISTRY" = localhost ]; then
    echo "build_images: PUSH=1 needs REGISTRY, e.g. REGISTRY=ghcr.io/acme" >&2
    exit 2
fi

public_base=$(sed -n 's/^ARG BASE_IMAGE=//p' docker/Dockerfile.cpu)
local_base=localhost/debian-base:bookworm

# A Debian bookworm root filesystem (its python3 is 3.11) imported as an image: what
# machines that reach no registry build from. Needs root and mmdebstrap.
make_local_base() {
    if $ENGINE image inspect "$local_base" >/dev/null 2>&1; then return; fi
    command -v mmdebstrap >/dev/null || {
        echo "build_images: no registry image can be pulled and mmdebstrap is missing" \
             "(apt-get install mmdebstrap) to make a local Debian base" >&2; exit 2; }
    local tar
    tar=$(mktemp --suffix=.tar)
    echo "build_images: making $local_base with mmdebstrap"
    mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$tar"
    $ENGINE import "$tar" "$local_base"
    rm -f "$tar"
}

case "${BASE_IMAGE:-auto}" in
    public) base=$public_base ;;
    local) make_local_base; base=$local_base ;;
    auto)
        if $ENGINE image inspect "$public_base" >/dev/null 2>&1 \
                || timeout 600 $ENGINE pull -q "$public_base" >/dev/null 2>&1; then
            base=$public_base
        else
            echo "build_images: cannot pull $public_base; building from a local Debian base"
            make_local_base
            base=$local_base
        fi ;;
    *) base=$BASE_IMAGE ;;
esac

revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null || true)" ]; then
    revision="$revision-dirty"  # as postergenre.lineage marks an uncommitted checkout
fi
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
source_url=$(git remote get-url origin 2>/dev/null || true)
flags=(--build-arg "BASE_IMAGE=$base" --build-arg "VERSION=$version"
       --build-arg "REVISION=$revision" --build-arg "CREATED=$created"
       --build-arg "SOURCE=$source_url")
# The OCI labels on the command line too: podman 4's buildah reuses cached ARG, ENV and
# LABEL steps whose build arguments changed, and applies command-line labels (and the
# image's final configuration) afresh at every build.
for pair in "version=$version" "revision=$revision" "created=$created" "source=$source_url"; do
    flags+=(--label "org.opencontainers.image.$pair")
done
# podman builds on the host's network: its default one may not resolve here.
if [ "$ENGINE" = podman ]; then flags+=(--network host); fi
ca="${PIP_CA:-}"
for candidate in "${PIP_CERT:-}" "${SSL_CERT_FILE:-}"; do
    if [ -z "$ca" ] && [ -n "$candidate" ] && [ -f "$candidate" ]; then ca=$candidate; fi
done
if [ -n "$ca" ]; then flags+=(--secret "id=pip-ca,src=$ca"); fi

for kind in "${kinds[@]}"; do
    suffix=""
    if [ "$kind" = gpu ]; then suffix=-gpu; fi
    name="$REGISTRY/postergenre$suffix:$TAG"
    echo "build_images: $name from $base ($ENGINE)"
    start=$(date +%s)
    $ENGINE build "${flags[@]}" --build-arg "IMAGE_NAME=$name" -f "docker/Dockerfile.$kind" \
        -t "$name" .
    echo "build_images: built $name in $(( $(date +%s) - start )) s"
    if [ "${PUSH:-}" = 1 ]; then $ENGINE push "$name"; fi
done
$ENGINE image ls --filter "reference=$REGISTRY/postergenre*"
