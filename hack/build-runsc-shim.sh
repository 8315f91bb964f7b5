#!/usr/bin/env bash
# Build gVisor for the local node from the Go module proxy, cached by version: its runtime (`runsc`)
# and its containerd shim (containerd-shim-runsc-v1), from one pinned gvisor.dev/gvisor module.
#
# Why not Debian's `runsc` package (0.0~20221219): its /proc ignores PR_SET_DUMPABLE, so a tool of the
# runtime's UID reads the runtime's environment (the run token), memory and descriptors; and its own
# network stack refuses this kernel. The runsc built here makes them root-owned, as Linux does.
# Why gVisor's shim: containerd's runc shim cannot run runsc: it learns a container's exit from the
# host process in runsc's pid file, which is the pod's one sandbox process, so a container that exits
# inside it is never reported (its pod stays Running). gVisor's shim asks runsc (`runsc wait`).
#
# The version: the newest the proxy serves whose shim speaks containerd 1.6's shim protocol (Debian's
# containerd; later ones answer containerd 2's bootstrap JSON, which 1.6 cannot dial). One change to
# the shim, made here at build time: it lowers its own OOM score to -999, which needs CAP_SYS_RESOURCE;
# where the machine withholds it (VMs and containers used as build machines: this one), the kernel
# refuses ("failed to set OOM Score on shim: ... permission denied") and no gVisor pod can start. The
# built shim keeps the score it inherits from containerd instead, as containerd's own runc shim does
# (+1 of containerd's). runsc is built as the module ships it.
#
# Usage: hack/build-runsc-shim.sh
# Env:   AGENTRY_GVISOR_VERSION (a gvisor.dev/gvisor module version the proxy serves; default below),
#        AGENTRY_CACHE_DIR (see cache-env.sh)
# Prints the directory holding `runsc` and the shim on the last line of stdout.
set -euo pipefail

VERSION="${AGENTRY_GVISOR_VERSION:-v0.0.0-20260224225140-573d5e7127a8}"
source "$(dirname "${BASH_SOURCE[0]}")/cache-env.sh"
RECIPE=3  # bump when the change below or the build changes: a new cache entry
OUT="$CACHE/gvisor/$VERSION-r$RECIPE"
BIN="$OUT/containerd-shim-runsc-v1"
RUNSC="$OUT/runsc"
log() { printf '[build-runsc-shim] %s\n' "$*" >&2; }

built() { [ -x "$BIN" ] && [ -x "$RUNSC" ]; }
if built; then log "cached: $OUT"; echo "$OUT"; exit 0; fi
command -v go >/dev/null || { log "error: Go toolchain not found (needed to build gVisor)"; exit 2; }
mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9
if built; then echo "$OUT"; exit 0; fi

work="$CACHE/build/runsc-shim-$VERSION"
rm -rf "$work" && mkdir -p "$work"
log "building gVisor $VERSION (runsc and its containerd shim) — cold: about 2.5 minutes"
t0=$SECONDS
# The module's source, as a local copy the build replaces it with (the module cache is read-only).
src="$(cd / && GOFLAGS=-mod=mod go mod download -json "gvisor.dev/gvisor@$VERSION" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -d "$src" ] || { log "error: go mod download gvisor.dev/gvisor@$VERSION gave no source directory"; exit 2; }
cp -r "$src" "$work/gvisor" && chmod -R u+w "$work/gvisor"
service="$work/gvisor/pkg/shim/v1/service.go"
grep -q 'oomScoreMaxKillable = -999' "$service" \
  || { log "error: $service no longer sets the shim's OOM score as expected; review the change"; exit 2; }
sed -i 's/oomScoreMaxKillable = -999/oomScoreMaxKillable = 0/' "$service"
cat >"$work/go.mod" <<GOMOD
module agentry.dev/runscshim

go 1.24

require gvisor.dev/gvisor $VERSION

replace gvisor.dev/gvisor => ./gvisor
GOMOD
# -mod=mod resolves what the two import, nothing more (no `go mod tidy` of every test's imports).
mkdir -p "$work/bin"
(cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags='-s -w' -o "$work/bin/" \
  gvisor.dev/gvisor/shim gvisor.dev/gvisor/runsc >&2)
mv "$work/bin/runsc" "$RUNSC" && mv "$work/bin/shim" "$BIN"
rm -rf "$work"
log "built $RUNSC and $BIN in $((SECONDS - t0)) s"
echo "$OUT"
