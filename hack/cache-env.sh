# Sourced by the build scripts: where every one-time build lives, from one variable.
#
# AGENTRY_CACHE_DIR (default ~/.cache/agentry) holds the Kubernetes binaries, the wheels, the image
# hashes, our dockerd's data root and the local node's containerd/kubelet state. Point it at an empty
# directory to run the cold path on a warm machine; the dockerd socket is per cache dir, so a cold run
# never talks to the warm daemon. AGENTRY_CACHE is the old name and still read.
CACHE="${AGENTRY_CACHE_DIR:-${AGENTRY_CACHE:-$HOME/.cache/agentry}}"
CACHE="$(mkdir -p "$CACHE" && cd "$CACHE" && pwd -P)"
export AGENTRY_CACHE_DIR="$CACHE"
DOCKER_ROOT="${AGENTRY_DOCKER_ROOT:-$CACHE/docker}"
SOCK="${AGENTRY_DOCKER_SOCK:-/run/agentry-docker-$(printf %s "$CACHE" | sha256sum | cut -c1-8).sock}"
# Go's own caches too: an empty AGENTRY_CACHE_DIR must mean a really cold Kubernetes build.
export GOCACHE="${AGENTRY_GOCACHE:-$CACHE/go/build}" GOMODCACHE="${AGENTRY_GOMODCACHE:-$CACHE/go/mod}"
