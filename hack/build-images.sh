#!/usr/bin/env bash
# Build the Agentry images offline, for the local node (no container registry needed):
#   workspace  hack/build-workspace-image.sh (also starts our dockerd and makes the Debian base image)
#   operator   images/python/Dockerfile (also the schedule tick image)
#   api        images/python/Dockerfile (the API and dashboard)
#   gateway    images/python/Dockerfile (the LLM gateway, with the runtime's provider layer)
#
# An image is rebuilt only when its inputs changed: a hash of the sources, Dockerfile, uv.lock and
# build scripts is kept in $AGENTRY_CACHE/images/<component>.hash with the image id it produced.
# Operator and API: the Python distributions their packages import (found from the source, pinned to
# the versions of the project's .venv, the lock constraining the rest) are downloaded as wheels on the
# host for the image's Python, and installed with `pip --no-index` in a `--network=none` build.
#
# Usage: hack/build-images.sh [workspace] [operator] [api] [gateway]     (default: all four)
# Env:   TAG (default dev), AGENTRY_CACHE_DIR (default ~/.cache/agentry; see cache-env.sh), AGENTRY_DOCKER_SOCK,
#        PYTHON (a Python with pip, default python3), TARGET_PYTHON (the image's, default 3.11.2),
#        FORCE=1 rebuilds even when the inputs did not change.
# Prints DOCKER_HOST=... and IMAGE_<COMPONENT>=<tag> lines on stdout (progress goes to stderr).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TAG="${TAG:-dev}"
source "$(dirname "${BASH_SOURCE[0]}")/cache-env.sh"
BASE_TAG="${BASE_TAG:-agentry/debian-bookworm:local}"
PYTHON="${PYTHON:-python3}"
TARGET_PYTHON="${TARGET_PYTHON:-3.11.2}"
components=("$@")
[ ${#components[@]} -gt 0 ] || components=(workspace operator api gateway)

START=$(date +%s)
log() { printf '[build-images +%3ss] %s\n' "$(($(date +%s) - START))" "$*" >&2; }
die() { log "error: $*"; exit 1; }
mkdir -p "$CACHE/images" "$CACHE/wheels"
# One build at a time (make dev and a test session may both ask): the second waits, then finds the
# images up to date.
exec 8>"$CACHE/images/.lock"
flock 8

# What each image is made of (paths relative to the repo), for the input hash.
inputs() {
  case "$1" in
    workspace) echo workspace_image common hack/build-workspace-image.sh uv.lock ;;
    operator) echo images/python common operator hack/build-images.sh uv.lock ;;
    api) echo images/python common api hack/build-images.sh uv.lock ;;
    gateway) echo images/python common gateway workspace_image/agentry_workspace/__init__.py \
      workspace_image/agentry_workspace/providers hack/build-images.sh uv.lock ;;
  esac
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

# The distributions imported by the given packages (resolved through the venv's installed files),
# pinned to the venv's versions, plus explicit extras.
requirements() {
  "$REPO/.venv/bin/python" - "$@" <<'PY'
import ast
import importlib.metadata as md
import importlib.util
import sys
from pathlib import Path

extras = [a[1:] for a in sys.argv[1:] if a.startswith("+")]
dirs = [Path(a) for a in sys.argv[1:] if not a.startswith("+")]
first_party = {
    "agentry_common", "agentry_operator", "agentry_api", "agentry_workspace", "agentry_devenv", "agentry_gateway"
}
# Every imported module, and for `from a import b` also `a.b` (b may be a submodule of a
# namespace package such as google.cloud, which itself belongs to no distribution).
imports: dict[str, set[str]] = {}  # top-level name -> candidate modules
for d in dirs:
    for f in d.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                for a in node.names:
                    imports.setdefault(a.name.split(".")[0], set()).add(a.name)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found = imports.setdefault(node.module.split(".")[0], set())
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
owner: dict[str, str] = {}
for dist in md.distributions():
    for file in dist.files or []:
        owner[str(file.locate().resolve())] = dist.metadata["Name"]
pins: dict[str, str] = {}
for top, candidates in sorted(imports.items()):
    if top in sys.stdlib_module_names or top in first_party:
        continue
    names = set()
    for module in sorted(candidates):
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            continue  # `from a import b` where b is a name, not a module
        if spec is None or spec.origin in (None, "namespace"):
            continue
        name = owner.get(str(Path(spec.origin).resolve()))
        if name:
            names.add(name)
    if not names:
        sys.exit(f"cannot tell which installed distribution provides {top!r} ({sorted(candidates)})")
    for name in names:
        pins[name.lower()] = md.version(name)
for extra in extras:  # e.g. uvicorn[standard]
    base = extra.split("[")[0].lower()
    pins.pop(base, None)
    pins[extra] = md.version(base)
for name, version in sorted(pins.items()):
    print(f"{name}=={version}")
PY
}

# build_python_image <component> <package dir[,package dir...]> <default command> <imports> [+extra ...]
# A package dir may be a sub-package (a/b): it is copied with its parent's __init__.py only. The first
# package is the app (all its modules are imported in the build), <imports> are imported as well (modules
# the app loads on demand), <default command> is what `python -m` runs when the pod sets no command.
build_python_image() {
  local c="$1" tag="agentry/$1:$TAG" command="$3" imports="$4" pkg
  local -a pkgs
  IFS=, read -r -a pkgs <<<"$2"
  shift 4
  if cached "$c" "$tag"; then log "$tag is up to date"; return; fi
  docker_ok || die "no docker daemon answers (DOCKER_HOST=${DOCKER_HOST:-}); build the workspace image first"
  docker image inspect "$BASE_TAG" >/dev/null 2>&1 || build_workspace
  local ctx
  ctx=$(mktemp -d "/tmp/agentry-$c-context.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$ctx'" RETURN
  mkdir -p "$ctx/app" "$ctx/wheels"
  cp "$REPO/images/python/Dockerfile" "$ctx/"
  cp -r "$REPO/common/agentry_common" "$ctx/app/"
  local -a req_dirs=("$REPO/common/agentry_common")
  for pkg in "${pkgs[@]}"; do
    local top="${pkg#*/}" # the import path under the source root: agentry_x or agentry_x/sub
    mkdir -p "$ctx/app/$(dirname "$top")"
    [ "$(dirname "$top")" = "." ] || cp "$REPO/$(dirname "$pkg")/__init__.py" "$ctx/app/$(dirname "$top")/"
    cp -r "$REPO/$pkg" "$ctx/app/$top"
    req_dirs+=("$REPO/$pkg")
  done
  find "$ctx/app" -name __pycache__ -type d -prune -exec rm -rf {} +
  requirements "${req_dirs[@]}" "$@" >"$ctx/requirements.txt" \
    || die "could not work out the requirements of $c"
  (cd "$REPO" && uv export --frozen --no-hashes --no-header --no-emit-project --all-extras \
    --quiet >"$ctx/constraints.txt") || die "uv export failed"
  log "$c: $(wc -l <"$ctx/requirements.txt") distributions: $(cut -d= -f1 "$ctx/requirements.txt" | tr '\n' ' ')"
  local pip_target=(--only-binary=:all: --python-version "$TARGET_PYTHON" --disable-pip-version-check)
  "$PYTHON" -m pip download --quiet "${pip_target[@]}" -d "$CACHE/wheels" \
    -r "$ctx/requirements.txt" -c "$ctx/constraints.txt" || die "pip download failed"
  "$PYTHON" -m pip download --quiet "${pip_target[@]}" --no-index --find-links "$CACHE/wheels" \
    -d "$ctx/wheels" -r "$ctx/requirements.txt" -c "$ctx/constraints.txt" \
    || die "could not resolve the wheel set offline"
  log "$c: $(find "$ctx/wheels" -name '*.whl' | wc -l) wheels, $(du -sh "$ctx/wheels" | cut -f1)"
  log "docker build -t $tag"
  local app="${pkgs[0]##*/}"
  if ! DOCKER_BUILDKIT=0 docker build --network=none --build-arg "BASE_IMAGE=$BASE_TAG" \
    --build-arg "APP_PACKAGE=$app" --build-arg "APP_IMPORTS=$imports" --build-arg "APP_COMMAND=$command" \
    -t "$tag" "$ctx" 2>&1 \
    | sed -u 's/^/    /' >&2; then
    die "docker build of $tag failed"
  fi
  remember "$c" "$tag"
}

use_docker
for c in "${components[@]}"; do
  case "$c" in
    workspace) build_workspace ;;
    operator) build_python_image operator operator/agentry_operator "agentry_operator.main --all-namespaces" "" \
      +tzdata ;;
    api)
      build_python_image api api/agentry_api \
        "uvicorn agentry_api.main:create_app --factory --host=0.0.0.0 --port=8000" "" "+uvicorn[standard]" +jinja2
      ;;
    gateway)
      build_python_image gateway gateway/agentry_gateway,workspace_image/agentry_workspace/providers \
        agentry_gateway "anthropic openai agentry_workspace.providers" "+uvicorn[standard]"
      ;;
    *) die "unknown image $c (workspace, operator, api, gateway)" ;;
  esac
done
log "done"
echo "DOCKER_HOST=${DOCKER_HOST:-}"
for c in "${components[@]}"; do echo "IMAGE_${c^^}=agentry/$c:$TAG"; done
