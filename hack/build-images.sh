#!/usr/bin/env bash
# Build the Agentry images offline, for the local node (no container registry needed):
#   workspace  hack/build-workspace-image.sh (also starts our dockerd and makes the Debian base image)
#   operator   images/python/Dockerfile (also the schedule tick image)
#   api        images/python/Dockerfile (the API and dashboard)
#   gateway    images/python/Dockerfile (the LLM gateway, with the provider layer agentry_llm)
#   squid      images/squid/Dockerfile (the egress proxy: Debian's squid and its allow-list helper,
#              agentry_workspace/egress_acl.py with the http tool's tools/netpolicy.py and agentry_common/netaddr.py; the .deb files
#              the Debian base lacks are downloaded on the host, like the wheels)
#
# An image is rebuilt only when its inputs changed: a hash of the sources, Dockerfile, uv.lock and
# build scripts is kept in $AGENTRY_CACHE/images/<component>.hash with the image id it produced.
# Each image installs one workspace member (agentry-operator, agentry-api, agentry-gateway): its package,
# the packages of the members it depends on, and exactly its locked dependencies (`uv export --package`),
# downloaded as wheels on the host for the image's Python and installed with `pip --no-index` in a
# `--network=none` build.
#
# Usage: hack/build-images.sh [workspace] [operator] [api] [gateway] [squid]   (default: all five)
# Env:   TAG (default dev), AGENTRY_CACHE_DIR (default ~/.cache/agentry; see cache-env.sh), AGENTRY_DOCKER_SOCK,
#        PYTHON (a Python with pip, default python3), TARGET_PYTHON (the image's, default 3.11.2),
#        FORCE=1 rebuilds even when the inputs did not change.
# Prints DOCKER_HOST=... and IMAGE_<COMPONENT>=<tag> lines on stdout (progress goes to stderr).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TAG="${TAG:-dev}"
source "$(dirname "${BASH_SOURCE[0]}")/cache-env.sh"
source "$(dirname "${BASH_SOURCE[0]}")/wheels.sh"
BASE_TAG="${BASE_TAG:-agentry/debian-bookworm:local}"
PYTHON="${PYTHON:-python3}"
TARGET_PYTHON="${TARGET_PYTHON:-3.11.2}"
components=("$@")
[ ${#components[@]} -gt 0 ] || components=(workspace operator api gateway squid)

START=$(date +%s)
log() { printf '[build-images +%3ss] %s\n' "$(($(date +%s) - START))" "$*" >&2; }
die() { log "error: $*"; exit 1; }
mkdir -p "$CACHE/images"
# One build at a time (make dev and a test session may both ask): the second waits, then finds the
# images up to date.
exec 8>"$CACHE/images/.lock"
flock 8

# The workspace member each image installs, and the workspace members it depends on (from the lock).
member() {
  case "$1" in
    workspace) echo agentry-workspace ;; operator) echo agentry-operator ;;
    api) echo agentry-api ;; gateway) echo agentry-gateway ;;
  esac
}

# The locked dependencies of a member: its workspace members as `-e ./dir` lines, then pinned
# distributions. uv reads only uv.lock here (--frozen): nothing is resolved again.
export_member() {
  (cd "$REPO" && uv export --frozen --no-hashes --no-header --no-dev --quiet --package "$(member "$1")")
}

member_dirs() { export_member "$1" | sed -n 's|^-e \./||p'; }

# A member directory's one import package (agentry_<x>/, not the .egg-info beside it).
package_of() { dirname "$(ls "$REPO/$1"/agentry_*/__init__.py)"; }

# What each image is made of (paths relative to the repo), for the input hash.
inputs() {
  local dir
  case "$1" in
    workspace) echo workspace_image/Dockerfile hack/build-workspace-image.sh hack/wheels.sh workspace_image/mcp-servers ;;
    squid) echo images/squid hack/build-images.sh workspace_image/agentry_workspace/egress_acl.py \
      workspace_image/agentry_workspace/tools/netpolicy.py common/agentry_common/netaddr.py; return ;;
    *) echo images/python hack/build-images.sh hack/wheels.sh ;;
  esac
  for dir in $(member_dirs "$1"); do echo "$dir/pyproject.toml" "${dir}/$(basename "$(package_of "$dir")")"; done
  echo uv.lock
}

input_hash() {
  # shellcheck disable=SC2046
  (cd "$REPO" && find $(inputs "$1") -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 \
    | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-32)
}

docker_ok() { docker info >/dev/null 2>&1; }

use_docker() {
  if [ -z "${DOCKER_HOST:-}" ] && ! docker_ok; then export DOCKER_HOST="unix://$SOCK"; fi
}

# Up to date: the cached hash matches and docker still has the image id it produced.
cached() {
  local c="$1" tag="$2" want
  [ -z "${FORCE:-}" ] || return 1
  [ -f "$CACHE/images/$c.hash" ] || return 1
  docker_ok || return 1
  want="$(input_hash "$c") $(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || echo none)"
  [ "$want" = "$(cat "$CACHE/images/$c.hash")" ]
}

remember() {
  local c="$1" tag="$2"
  echo "$(input_hash "$c") $(docker image inspect -f '{{.Id}}' "$tag")" >"$CACHE/images/$c.hash"
  local size
  size=$(docker image inspect -f '{{.Size}}' "$tag")
  log "$tag: $((size / 1024 / 1024)) MiB"
}

build_workspace() {
  local tag="agentry/workspace:$TAG" out
  if cached workspace "$tag"; then log "$tag is up to date"; return; fi
  log "building $tag (hack/build-workspace-image.sh)"
  out=$(IMAGE="$tag" bash "$REPO/hack/build-workspace-image.sh") || die "the workspace image build failed"
  local host
  host=$(printf '%s\n' "$out" | sed -n 's/^DOCKER_HOST=//p' | tail -n 1)
  [ -z "$host" ] || export DOCKER_HOST="$host"
  remember workspace "$tag"
}

# build_python_image <component> <default command> [<imports>]
# The image holds the packages of the component's workspace member and of the members it depends on
# (every module of the app package is imported in the build), and exactly the member's locked
# dependencies; <imports> are modules the app loads on demand, imported in the build as well;
# <default command> is what `python -m` runs when the pod sets no command.
build_python_image() {
  local c="$1" tag="agentry/$1:$TAG" command="$2" imports="${3:-}" dir
  if cached "$c" "$tag"; then log "$tag is up to date"; return; fi
  docker_ok || die "no docker daemon answers (DOCKER_HOST=${DOCKER_HOST:-}); build the workspace image first"
  docker image inspect "$BASE_TAG" >/dev/null 2>&1 || build_workspace
  local ctx
  ctx=$(mktemp -d "/tmp/agentry-$c-context.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$ctx'" RETURN
  mkdir -p "$ctx/app"
  cp "$REPO/images/python/Dockerfile" "$ctx/"
  for dir in $(member_dirs "$c"); do
    cp -r "$(package_of "$dir")" "$ctx/app/"
  done
  find "$ctx/app" -name __pycache__ -type d -prune -exec rm -rf {} +
  export_member "$c" | grep -v '^-e ' >"$ctx/requirements.txt" || die "uv export --package $(member "$c") failed"
  (cd "$REPO" && uv export --frozen --no-hashes --no-header --no-emit-workspace --all-packages \
    --quiet >"$ctx/constraints.txt") || die "uv export failed"
  log "$c: $(ls "$ctx/app" | tr '\n' ' ')+ $(grep -c '==' "$ctx/requirements.txt") locked distributions"
  stage_wheels "$ctx" "$c"
  log "$c: $(find "$ctx/wheels" -name '*.whl' | wc -l) wheels, $(du -sh "$ctx/wheels" | cut -f1)"
  log "docker build -t $tag"
  local app="agentry_${c}"
  if ! DOCKER_BUILDKIT=0 docker build --network=none --build-arg "BASE_IMAGE=$BASE_TAG" \
    --build-arg "APP_PACKAGE=$app" --build-arg "APP_IMPORTS=$imports" --build-arg "APP_COMMAND=$command" \
    -t "$tag" "$ctx" 2>&1 \
    | sed -u 's/^/    /' >&2; then
    die "docker build of $tag failed"
  fi
  remember "$c" "$tag"
}

# build_squid: Debian's squid on the Debian base. apt resolves squid's dependencies against the
# base image's own dpkg status and downloads only what the base lacks (~16 MB, a second from the
# mirror) into the build context, so the build itself needs no network, like the wheels of the
# Python images.
SQUID_PACKAGES=(squid python3-httpx python3-idna)
build_squid() {
  local tag="agentry/squid:$TAG"
  if cached squid "$tag"; then log "$tag is up to date"; return; fi
  docker_ok || die "no docker daemon answers (DOCKER_HOST=${DOCKER_HOST:-}); build the workspace image first"
  docker image inspect "$BASE_TAG" >/dev/null 2>&1 || build_workspace
  local ctx
  ctx=$(mktemp -d "/tmp/agentry-squid-context.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$ctx'" RETURN
  mkdir -p "$ctx/debs/partial"
  docker run --rm --pull=never --network=none "$BASE_TAG" cat /var/lib/dpkg/status >"$ctx/status" \
    || die "could not read the base image's package list"
  log "squid: downloading ${SQUID_PACKAGES[*]} and what $BASE_TAG lacks for them (apt)"
  local apt=(apt-get -qq -o Dir::State::status="$ctx/status" -o Dir::Cache::archives="$ctx/debs"
    -o Debug::NoLocking=1 install --download-only --no-install-recommends -y "${SQUID_PACKAGES[@]}")
  "${apt[@]}" >/dev/null 2>&1 || { apt-get update -qq >/dev/null && "${apt[@]}" >/dev/null; } \
    || die "apt-get download of ${SQUID_PACKAGES[*]} failed"
  rm -rf "$ctx/debs/partial" "$ctx/debs/lock" "$ctx/status"
  cp "$REPO/images/squid/Dockerfile" "$ctx/"
  cp "$REPO/workspace_image/agentry_workspace/egress_acl.py" \
    "$REPO/workspace_image/agentry_workspace/tools/netpolicy.py" "$REPO/common/agentry_common/netaddr.py" "$ctx/"
  log "squid: $(find "$ctx/debs" -name '*.deb' | wc -l) packages, $(du -sh "$ctx/debs" | cut -f1); docker build -t $tag"
  if ! DOCKER_BUILDKIT=0 docker build --network=none --build-arg "BASE_IMAGE=$BASE_TAG" -t "$tag" "$ctx" 2>&1 \
    | sed -u 's/^/    /' >&2; then
    die "docker build of $tag failed"
  fi
  remember squid "$tag"
}

use_docker
for c in "${components[@]}"; do
  case "$c" in
    workspace) build_workspace ;;
    operator) build_python_image operator "agentry_operator.main --all-namespaces" ;;
    api) build_python_image api "uvicorn agentry_api.main:create_app --factory --host=0.0.0.0 --port=8000" ;;
    gateway) build_python_image gateway agentry_gateway "agentry_llm.anthropic_provider agentry_llm.openai_provider" ;;
    squid) build_squid ;;
    *) die "unknown image $c (workspace, operator, api, gateway, squid)" ;;
  esac
done
log "done"
echo "DOCKER_HOST=${DOCKER_HOST:-}"
for c in "${components[@]}"; do echo "IMAGE_${c^^}=agentry/$c:$TAG"; done
