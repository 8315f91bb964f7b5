#!/usr/bin/env bash
# Build the workspace image (workspace_image/Dockerfile) without a container registry.
#
# 1. docker: use the daemon at $DOCKER_HOST or the default socket; if none answers, install
#    docker.io (apt) if needed and start our own dockerd with its own socket, data root and pid
#    file (left running for the image tests; stop it with: kill "$(cat /run/agentry-docker.pid)").
# 2. base image: BASE_IMAGE if given (e.g. python:3.11-slim on a machine with a registry), else a
#    local Debian bookworm made with debootstrap from the mirror this machine's apt uses, with
#    python3, python3-venv, nodejs and ca-certificates, imported as $BASE_TAG (cached).
# 3. context: the runtime sources, Python wheels fetched on the host for the image's Python
#    (pip download --only-binary: the agentry-workspace member's locked dependencies, and the data
#    tools constrained by uv.lock), @anthropic-ai/claude-code installed on the host with npm, and the
#    MCP servers pinned by workspace_image/mcp-servers/package-lock.json (npm ci). Each of the three is
#    kept in $AGENTRY_CACHE_DIR/staged and reused while its inputs are the same (wheels.sh).
# 4. docker build (classic builder; offline with the local base), then print the image size.
#
# Usage: hack/build-workspace-image.sh
# Env:   IMAGE (default agentry/workspace:dev), BASE_IMAGE, BASE_TAG, SUITE (default bookworm),
#        CLAUDE_CODE_VERSION (default below), AGENTRY_CACHE_DIR (default ~/.cache/agentry; see cache-env.sh),
#        AGENTRY_DOCKER_SOCK / AGENTRY_DOCKER_ROOT (our own daemon's socket and data root),
#        PYTHON (a Python with pip, default python3), TARGET_PYTHON (the image's, default 3.11.2)
# Prints DOCKER_HOST=... and the image tag on the last two lines of stdout.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${IMAGE:-agentry/workspace:dev}"
BASE_IMAGE="${BASE_IMAGE:-}"
BASE_TAG="${BASE_TAG:-agentry/debian-bookworm:local}"
SUITE="${SUITE:-bookworm}"
CLAUDE_CODE_VERSION="${CLAUDE_CODE_VERSION:-2.1.197}"
source "$(dirname "${BASH_SOURCE[0]}")/cache-env.sh"
source "$(dirname "${BASH_SOURCE[0]}")/wheels.sh"
PYTHON="${PYTHON:-python3}"
TARGET_PYTHON="${TARGET_PYTHON:-3.11.2}"
# The runtime's dependencies are the locked ones of the agentry-workspace member (uv export --package);
# these are the data tools agents use, resolved within the lock's versions where it has them.
DATA_PACKAGES=(pandas numpy requests beautifulsoup4 matplotlib)

START=$(date +%s)
log() { printf '[build-workspace-image +%3ss] %s\n' "$(($(date +%s) - START))" "$*" >&2; }
die() { log "error: $*"; exit 1; }

apt_install() {
  [ "$(id -u)" = 0 ] || die "need root to apt-get install $*"
  log "installing $* (apt)"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  fi
}

# -- 1. docker ---------------------------------------------------------------------------------
ensure_docker() {
  command -v docker >/dev/null || apt_install docker.io
  if [ -n "${DOCKER_HOST:-}" ] && docker info >/dev/null 2>&1; then
    log "using docker at $DOCKER_HOST"; return
  fi
  if [ -z "${DOCKER_HOST:-}" ] && docker info >/dev/null 2>&1; then
    log "using the default docker daemon"; return
  fi
  export DOCKER_HOST="unix://$SOCK"
  if docker info >/dev/null 2>&1; then log "using our dockerd at $SOCK"; return; fi
  command -v dockerd >/dev/null || apt_install docker.io
  [ "$(id -u)" = 0 ] || die "no docker daemon answers and starting dockerd needs root"
  local pidfile="${SOCK%.sock}.pid" logfile="${DOCKER_ROOT}.log"
  # A daemon that died with its session (SIGKILL) leaves its pid files behind, and by now those pids
  # may belong to other processes: dockerd would refuse to start, or signal a stranger.
  if ! pgrep -f -- "dockerd --host unix://$SOCK" >/dev/null; then
    rm -f "$pidfile" "${SOCK%.sock}-exec/containerd/containerd.pid"
  fi
  mkdir -p "$DOCKER_ROOT" "${SOCK%.sock}-exec"
  log "starting dockerd (socket $SOCK, data root $DOCKER_ROOT, log $logfile)"
  # setsid: the daemon outlives this script (tests use it) and is not killed with our group. Our
  # callers' descriptors are closed (3-9): a daemon holding build-images.sh's lock (fd 8) or the
  # provisioning lock (fd 9) would make every later build wait for ever.
  # No bridge and no iptables rules: builds run with --network=none and containers with
  # --network=host, and the local node's (and another cache dir's daemon's) rules stay untouched.
  setsid dockerd --host "unix://$SOCK" --data-root "$DOCKER_ROOT" --bridge=none --iptables=false \
    --exec-root "${SOCK%.sock}-exec" --pidfile "$pidfile" >"$logfile" 2>&1 </dev/null \
    3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && { log "dockerd is up (pid $(cat "$pidfile"))"; return; }
    sleep 1
  done
  tail -n 30 "$logfile" >&2 || true
  die "dockerd did not answer on $SOCK within 60s"
}

# -- 2. base image -----------------------------------------------------------------------------
apt_mirror() {
  # The first Debian URI whose suites include $SUITE itself (not -security), from deb822 or
  # one-line sources: never a hard-coded host.
  local m=""
  if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    m=$(awk -v suite="$SUITE" '
      /^[[:space:]]*$/ { uris = "" }
      /^URIs:/ { uris = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite && uris != "") { print uris; exit } }
    ' /etc/apt/sources.list.d/*.sources)
  fi
  if [ -z "$m" ]; then
    m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | sed -E 's/\[[^]]*\]//' \
      | awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2; exit }')
  fi
  [ -n "$m" ] || die "no Debian mirror for $SUITE found in /etc/apt/sources.list{,.d}"
  printf '%s\n' "$m"
}

ensure_base() {
  if [ -n "$BASE_IMAGE" ]; then
    log "base image: $BASE_IMAGE (given)"; echo "$BASE_IMAGE"; return
  fi
  if docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
    log "base image: $BASE_TAG (cached)"; echo "$BASE_TAG"; return
  fi
  command -v debootstrap >/dev/null || apt_install debootstrap
  local mirror rootfs
  mirror=$(apt_mirror)
  rootfs=$(mktemp -d /tmp/agentry-rootfs.XXXXXX)
  log "debootstrap $SUITE from $mirror (minbase + python3, nodejs) into $rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,nodejs,ca-certificates \
    "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { tail -n 30 "$rootfs.log" >&2; die "debootstrap failed (log: $rootfs.log)"; }
  log "slimming the root filesystem"
  rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/usr/share/locale/* "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
  printf '%s\n' 'path-exclude=/usr/share/doc/*' 'path-exclude=/usr/share/man/*' \
    'path-exclude=/usr/share/info/*' 'path-exclude=/usr/share/locale/*' \
    >"$rootfs/etc/dpkg/dpkg.cfg.d/01-agentry-slim"
  log "importing as $BASE_TAG"
  tar -C "$rootfs" -c . | docker import -c 'CMD ["/bin/bash"]' - "$BASE_TAG" >/dev/null
  rm -rf "$rootfs" "$rootfs.log"
  echo "$BASE_TAG"
}

# -- 3. build context ----------------------------------------------------------------------------
stage_context() {
  local ctx="$1"
  mkdir -p "$ctx/app"
  cp "$REPO/workspace_image/Dockerfile" "$ctx/"
  # The agentry-workspace member and the members it depends on (the `-e ./dir` lines of its export),
  # then exactly its locked dependencies; the whole lock constrains the data tools.
  local export dir
  export=$(cd "$REPO" && uv export --frozen --no-hashes --no-header --no-dev --quiet \
    --package agentry-workspace) || die "uv export --package agentry-workspace failed"
  for dir in $(printf '%s\n' "$export" | sed -n 's|^-e \./||p'); do
    cp -r "$(dirname "$(ls "$REPO/$dir"/agentry_*/__init__.py)")" "$ctx/app/"
  done
  find "$ctx/app" -name __pycache__ -type d -prune -exec rm -rf {} +
  printf '%s\n' "$export" | grep -v '^-e ' >"$ctx/requirements.txt"
  printf '%s\n' "${DATA_PACKAGES[@]}" >>"$ctx/requirements.txt"
  (cd "$REPO" && uv export --frozen --no-hashes --no-header --no-emit-workspace --all-packages \
    --quiet >"$ctx/constraints.txt") || die "uv export failed"
  log "staging wheels for Python $TARGET_PYTHON: $(grep -c '==' "$ctx/requirements.txt") locked distributions and ${DATA_PACKAGES[*]}"
  stage_wheels "$ctx" workspace
  log "$(find "$ctx/wheels" -name '*.whl' | wc -l) wheels, $(du -sh "$ctx/wheels" | cut -f1)"

  stage_claude_code "$ctx"
  stage_mcp_servers "$ctx"
}

# @anthropic-ai/claude-code, installed on the host with npm (the tree kept from the last build of
# the same version with the same node is reused: wheels.sh's reuse_staged).
stage_claude_code() {
  local ctx="$1" key
  key=$(echo "$CLAUDE_CODE_VERSION $(node --version) $(uname -m)" | staged_key)
  if reuse_staged claude-code "$key" "$ctx/claude-code"; then
    log "claude-code $CLAUDE_CODE_VERSION: the tree staged last time"
    return 0
  fi
  log "installing @anthropic-ai/claude-code@$CLAUDE_CODE_VERSION with npm"
  mkdir -p "$ctx/claude-code"
  echo '{"private": true}' >"$ctx/claude-code/package.json"
  npm install --prefix "$ctx/claude-code" --no-audit --no-fund --omit=dev --prefer-offline --loglevel=error \
    --cache "$CACHE/npm" "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" >/dev/null \
    || die "npm install @anthropic-ai/claude-code failed"
  "$ctx/claude-code/node_modules/.bin/claude" --version >/dev/null \
    || die "the installed claude CLI does not run"
  # npm links the platform binary into the main package: keep one copy, not two.
  local main="$ctx/claude-code/node_modules/@anthropic-ai/claude-code"
  for platform in "$ctx"/claude-code/node_modules/@anthropic-ai/claude-code-*; do
    [ -d "$platform" ] || continue
    if [ -f "$main/bin/claude.exe" ] && [ "$(stat -c %s "$main/bin/claude.exe")" -gt 1000000 ]; then
      rm -rf "$platform"
    fi
  done
  log "claude-code staged: $(du -sh "$ctx/claude-code" | cut -f1)"
  keep_staged claude-code "$key" "$ctx/claude-code"
}

# The MCP servers an Agent's spec.mcpServers may start over stdio (docs/mcp.md): exactly the tree
# workspace_image/mcp-servers/package-lock.json pins, installed on the host with npm ci (or the tree
# kept from the last build of the same lock with the same node).
stage_mcp_servers() {
  local ctx="$1" src="$REPO/workspace_image/mcp-servers" key
  key=$({ cat "$src/package.json" "$src/package-lock.json"; node --version; uname -m; } | staged_key)
  if reuse_staged mcp-servers "$key" "$ctx/mcp-servers"; then
    log "MCP servers: the tree staged for $src/package-lock.json last time"
    return 0
  fi
  log "installing the MCP servers of $src/package.json with npm ci"
  mkdir -p "$ctx/mcp-servers"
  cp "$src/package.json" "$src/package-lock.json" "$ctx/mcp-servers/"
  npm ci --prefix "$ctx/mcp-servers" --no-audit --no-fund --omit=dev --prefer-offline --loglevel=error \
    --cache "$CACHE/npm" >/dev/null || die "npm ci of $src failed"
  [ -x "$ctx/mcp-servers/node_modules/.bin/mcp-server-everything" ] \
    || die "mcp-server-everything is missing after npm ci"
  log "MCP servers staged: $(du -sh "$ctx/mcp-servers" | cut -f1)"
  keep_staged mcp-servers "$key" "$ctx/mcp-servers"
}

# -- 4. build ------------------------------------------------------------------------------------
main() {
  ensure_docker
  local base network=()
  base=$(ensure_base)
  CTX=$(mktemp -d /tmp/agentry-image-context.XXXXXX)
  trap 'rm -rf "$CTX"' EXIT
  stage_context "$CTX"
  # The local base has everything: build without a network to prove the build is offline.
  [ -n "$BASE_IMAGE" ] || network=(--network=none)
  log "docker build -t $IMAGE (base $base)"
  if ! DOCKER_BUILDKIT=0 docker build "${network[@]}" --build-arg "BASE_IMAGE=$base" \
    -t "$IMAGE" "$CTX" 2>&1 | sed -u 's/^/    /' >&2; then
    die "docker build failed"
  fi
  local size
  size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
  log "built $IMAGE: $((size / 1024 / 1024)) MiB in $(($(date +%s) - START))s"
  echo "DOCKER_HOST=${DOCKER_HOST:-}"
  echo "$IMAGE"
}

main "$@"
