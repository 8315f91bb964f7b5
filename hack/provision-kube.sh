#!/usr/bin/env bash
# Build Kubernetes control-plane binaries (and etcd) from the Go module proxy, cached by version.
#
# No prebuilt Kubernetes binary can be downloaded on the test bed, so we build them like envtest
# assets: a throwaway Go module requires k8s.io/kubernetes at a pinned release and replaces every
# k8s.io/* staging module with the matching v0.X.Y, then `go build`s the commands we need.
#
# Usage: hack/provision-kube.sh [component ...]
#   components: kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy etcd helm
#   (default: kube-apiserver kube-controller-manager etcd helm)
# Env:   AGENTRY_KUBE_VERSION (default below), AGENTRY_CACHE (default ~/.cache/agentry)
# Prints the asset directory on the last line of stdout.
set -euo pipefail

KUBE_VERSION="${AGENTRY_KUBE_VERSION:-v1.34.4}"
ETCD_VERSION="${AGENTRY_ETCD_VERSION:-v3.6.16}"
HELM_VERSION="${AGENTRY_HELM_VERSION:-v3.19.5}"
CACHE="${AGENTRY_CACHE:-$HOME/.cache/agentry}"
ASSETS="$CACHE/kube/$KUBE_VERSION"
components=("$@")
[ ${#components[@]} -gt 0 ] || components=(kube-apiserver kube-controller-manager etcd helm)

log() { printf '[provision-kube] %s\n' "$*" >&2; }
mkdir -p "$ASSETS"
command -v go >/dev/null || { log "error: Go toolchain not found (needed to build the binaries)"; exit 2; }

missing=()
for c in "${components[@]}"; do [ -x "$ASSETS/$c" ] || missing+=("$c"); done
if [ ${#missing[@]} -eq 0 ]; then
  log "cached: ${components[*]} in $ASSETS"
  echo "$ASSETS"; exit 0
fi
log "building: ${missing[*]} (Kubernetes $KUBE_VERSION) into $ASSETS — the first build takes 10-25 min on 2 cores"

# One lock so two callers (a test session and make dev) never build into the same directory at once.
exec 9>"$ASSETS/.lock"
flock 9

staging_minor="v0.${KUBE_VERSION#v1.}"
build_kube() {
  local work="$CACHE/build/kube-$KUBE_VERSION"
  mkdir -p "$work"
  if [ ! -f "$work/go.mod" ]; then
    log "resolving k8s.io/kubernetes@$KUBE_VERSION staging modules"
    local gomod
    gomod=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    {
      echo "module agentry.dev/kubebuild"
      echo
      echo "go 1.24"
      echo
      echo "require k8s.io/kubernetes $KUBE_VERSION"
      echo
      # Every `k8s.io/x => ./staging/src/k8s.io/x` in kubernetes' own go.mod becomes a pinned version.
      grep -E '^\s*k8s\.io/[^ ]+ => \./staging/src/' "$gomod" \
        | awk -v v="$staging_minor" '{print "replace " $1 " => " $1 " " v}'
    } >"$work/go.mod.tmp"
    mv "$work/go.mod.tmp" "$work/go.mod"
    cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
    log "go mod tidy (downloads the module graph once)"
    (cd "$work" && go mod tidy -e >&2)
  fi
  local c
  for c in "$@"; do
    log "go build k8s.io/kubernetes/cmd/$c ..."
    local t0=$SECONDS
    (cd "$work" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w \
      -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
      -X k8s.io/component-base/version.gitMajor=1 \
      -X k8s.io/component-base/version.gitMinor=${KUBE_VERSION#v1.} \
      -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION" \
      -o "$ASSETS/$c.tmp" "k8s.io/kubernetes/cmd/$c" >&2)
    mv "$ASSETS/$c.tmp" "$ASSETS/$c"
    log "built $c in $((SECONDS - t0)) s"
  done
}

build_etcd() {
  local work="$CACHE/build/etcd-$ETCD_VERSION"
  mkdir -p "$work"
  if [ ! -f "$work/main.go" ]; then
    cat >"$work/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
    printf 'module agentry.dev/etcdbuild\n\ngo 1.24\n' >"$work/go.mod"
    (cd "$work" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2 && go mod tidy >&2)
  fi
  log "go build etcd $ETCD_VERSION ..."
  (cd "$work" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$ASSETS/etcd.tmp" . >&2)
  mv "$ASSETS/etcd.tmp" "$ASSETS/etcd"
}

build_helm() {
  log "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION ..."
  GOBIN="$ASSETS" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
}

kube=()
for c in "${missing[@]}"; do
  case "$c" in
    etcd) build_etcd ;;
    helm) build_helm ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy) kube+=("$c") ;;
    *) log "error: unknown component $c"; exit 2 ;;
  esac
done
[ ${#kube[@]} -eq 0 ] || build_kube "${kube[@]}"
log "ready: $ASSETS"
echo "$ASSETS"
