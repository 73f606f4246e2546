# Sourced by build_images.sh and container_run.sh: the container engine both use, and
# podman's settings for this kind of host. `choose_engine WHO` sets ENGINE (unless given):
# docker if its daemon answers, else podman; with neither it names WHO and exits 2.
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/docker/containers.conf}"
choose_engine() {
    if [ -n "${ENGINE:-}" ]; then return; fi
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then ENGINE=docker
    elif command -v podman >/dev/null; then ENGINE=podman
    else
        echo "$1: needs docker (with a running daemon) or podman; neither found" >&2
        exit 2
    fi
}
