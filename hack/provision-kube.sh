#!/usr/bin/env bash
# Build Kubernetes control-plane binaries (and etcd) from the Go module proxy, cached by version.
#
# No prebuilt Kubernetes binary can be downloaded on the test bed, so we build them like envtest
# assets: a throwaway Go module requires k8s.io/kubernetes at a pinned release and replaces every
# k8s.io/* staging module with the matching v0.X.Y, then `go build`s the commands we need. etcd,
# crictl, CoreDNS and kube-router are built in the same module, against the release's own module
# versions (kube_module), so the packages they share with Kubernetes are compiled once.
#
# Usage: hack/provision-kube.sh [component ...]
#   components: kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy etcd helm
#               crictl coredns pause kube-router   (the last four are for the local node,
#               localcluster/agentry_localcluster/node.py; kube-router enforces its NetworkPolicies)
#   (default: kube-apiserver kube-controller-manager etcd helm)
# Env:   AGENTRY_KUBE_VERSION (default below), AGENTRY_CACHE_DIR (default ~/.cache/agentry; see cache-env.sh),
#        AGENTRY_HELM_VERSION, AGENTRY_CRICTL_VERSION, AGENTRY_COREDNS_VERSION,
#        AGENTRY_KUBE_ROUTER_VERSION (etcd is the release Kubernetes' own go.mod requires)
# Prints the asset directory on the last line of stdout.
set -euo pipefail

KUBE_VERSION="${AGENTRY_KUBE_VERSION:-v1.34.4}"
HELM_VERSION="${AGENTRY_HELM_VERSION:-v3.19.5}"
CRICTL_VERSION="${AGENTRY_CRICTL_VERSION:-v1.34.0}"
COREDNS_VERSION="${AGENTRY_COREDNS_VERSION:-v1.12.4}"
KUBE_ROUTER_VERSION="${AGENTRY_KUBE_ROUTER_VERSION:-v2.1.0}"
source "$(dirname "${BASH_SOURCE[0]}")/cache-env.sh"
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
RECIPE=2  # bump when kube_module changes: a new module directory
kube_work="$CACHE/build/kube-$KUBE_VERSION-r$RECIPE-crictl-$CRICTL_VERSION-coredns-$COREDNS_VERSION-kr-$KUBE_ROUTER_VERSION"

# Every module in the build list with the version the build uses (a replacement's, if any).
build_list() { go list -m -f '{{.Path}} {{with .Replace}}{{.Version}}{{else}}{{.Version}}{{end}}' all; }

# The one module everything but helm and gVisor is built in: the Kubernetes commands, etcd (the
# go.etcd.io/etcd/server/v3 release Kubernetes requires), crictl, CoreDNS (only the plugins cluster
# DNS needs: the full build pulls every cloud SDK) and kube-router. The packages they share with
# Kubernetes (87-94 % of etcd's and CoreDNS' code, 75-82 % of kube-router's and crictl's) are
# compiled once: crictl alone took 235 s of CPU cold, here 20-55 s. The modules the others would
# upgrade are replaced back with Kubernetes' own versions, so the Kubernetes binaries are built from
# exactly the release's pins, and the others from those (each compiles with them). helm needs a newer
# spf13/pflag than Kubernetes pins, and gVisor shares little: they keep modules of their own.
kube_module() {
  local work="$kube_work"
  [ ! -f "$work/.ready" ] || return 0
  rm -rf "$work" && mkdir -p "$work/cmd/etcd" "$work/cmd/coredns"
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
  } >"$work/go.mod"
  local cmds=(kube-apiserver kube-controller-manager kube-proxy kube-scheduler kubelet)
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "${cmds[@]}"
    printf ')\n'
  } >"$work/tools.go"
  log "go mod tidy (downloads the module graph once)"
  (cd "$work" && go mod tidy -e >&2 && build_list >kube.pins)
  extra_sources "$work"
  # Their hashes, pinned: the checksum database has no entry for cri-tools or kube-router.
  [ "$CRICTL_VERSION" != v1.34.0 ] || cat >>"$work/go.sum" <<'SUM'
sigs.k8s.io/cri-tools v1.34.0 h1:KqL9EJ+WgHtz1HR1exezm91n+o8O2uMLs/eHzHJHAWw=
sigs.k8s.io/cri-tools v1.34.0/go.mod h1:JyYVG0YFsly+p/hfDfmQcQBNFVHh0+BpMTn49YpasMA=
SUM
  [ "$KUBE_ROUTER_VERSION" != v2.1.0 ] || cat >>"$work/go.sum" <<'SUM'
github.com/cloudnativelabs/kube-router/v2 v2.1.0 h1:xWsptKtmZ44L+NjwFKoFAFlVdxCz8fka9A/eYJe95Ok=
github.com/cloudnativelabs/kube-router/v2 v2.1.0/go.mod h1:JU/k2Qqcph0myF1cRDLidz1SZdoSrPczuYcGxYRSP0A=
SUM
  local tools='\t_ "sigs.k8s.io/cri-tools/cmd/crictl"\n\t_ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"'
  sed -i "s#^)\$#$tools\n)#" "$work/tools.go"
  (cd "$work" && GONOSUMDB=github.com/cloudnativelabs/kube-router GOFLAGS=-mod=mod go get "sigs.k8s.io/cri-tools@$CRICTL_VERSION" \
    "github.com/coredns/coredns@$COREDNS_VERSION" "github.com/cloudnativelabs/kube-router/v2@$KUBE_ROUTER_VERSION" >&2)
  local round
  for round in 1 2 3 4; do
    (cd "$work" && build_list >now.pins)
    # Modules of Kubernetes' list whose version moved: replace them back (a replacement's own
    # requirements can move others, hence the rounds).
    python3 - "$work/kube.pins" "$work/now.pins" >"$work/moved" <<'PY'
import sys
want = dict(line.split()[:2] for line in open(sys.argv[1]) if len(line.split()) == 2)
for line in open(sys.argv[2]):
    parts = line.split()
    if len(parts) == 2 and parts[0] in want and want[parts[0]] != parts[1]:
        print(f"replace {parts[0]} => {parts[0]} {want[parts[0]]}")
PY
    [ -s "$work/moved" ] || break
    cat "$work/moved" >>"$work/go.mod"
    (cd "$work" && GONOSUMDB=github.com/cloudnativelabs/kube-router go mod tidy -e >&2)
  done
  [ ! -s "$work/moved" ] || { log "error: Kubernetes' module versions still move: $(cat "$work/moved")"; exit 2; }
  touch "$work/.ready"
}

# The module's own commands: etcd's main, and CoreDNS with the plugins cluster DNS needs, in the
# directive order of CoreDNS' plugin.cfg.
extra_sources() {
  cat >"$1/cmd/etcd/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  cat >"$1/cmd/coredns/main.go" <<'GO'
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func init() {
	dnsserver.Directives = []string{
		"reload", "ready", "health", "errors", "log", "loadbalance", "cache", "hosts",
		"kubernetes", "loop", "forward",
	}
}

func main() { coremain.Run() }
GO
}

# go build one command of the shared module into the assets; extra arguments go to -ldflags.
build_in_kube_module() {
  local out=$1 pkg=$2 ldflags=$3
  kube_module
  log "go build $pkg ..."
  (cd "$kube_work" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$ASSETS/$out.tmp" "$pkg" >&2)
  mv "$ASSETS/$out.tmp" "$ASSETS/$out"
}

build_kube() {
  build_in_kube_module "$1" "k8s.io/kubernetes/cmd/$1" "\
-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
-X k8s.io/component-base/version.gitMajor=1 \
-X k8s.io/component-base/version.gitMinor=${KUBE_VERSION#v1.} \
-X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
}

build_etcd() {
  build_in_kube_module etcd ./cmd/etcd ""
}

build_helm() {
  log "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION ..."
  GOBIN="$ASSETS" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
}

# crictl (CRI client; `agentry-dev down` uses it to stop pod sandboxes so CNI releases their network).
# Not `go install crictl@v`: the proxy refuses the version list that needs.
build_crictl() {
  build_in_kube_module crictl sigs.k8s.io/cri-tools/cmd/crictl "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"
}

build_coredns() {
  build_in_kube_module coredns ./cmd/coredns ""
}

# The pod sandbox ("pause") process: sleeps until SIGINT/SIGTERM and reaps orphaned children.
build_pause() {
  local work="$CACHE/build/pause"
  mkdir -p "$work"
  cat >"$work/main.go" <<'GO'
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
GO
  printf 'module agentry.dev/pause\n\ngo 1.24\n' >"$work/go.mod"
  log "go build pause ..."
  (cd "$work" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$ASSETS/pause.tmp" . >&2)
  mv "$ASSETS/pause.tmp" "$ASSETS/pause"
}

# kube-router, run with only its NetworkPolicy controller (--run-firewall): iptables + ipset, which
# this kernel has. sigs.k8s.io/kube-network-policies (v0.7.0 is served) needs nftables' `queue`
# expression (CONFIG_NFT_QUEUE), which the test bed's kernel lacks. The proxy lists no kube-router
# version, so `go install @v` is refused: it is required at its exact release in kube_module.
build_kube_router() {
  build_in_kube_module kube-router github.com/cloudnativelabs/kube-router/v2/cmd/kube-router \
    "-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION"
}

for c in "${missing[@]}"; do
  t0=$SECONDS
  case "$c" in
    etcd) build_etcd ;;
    helm) build_helm ;;
    crictl) build_crictl ;;
    coredns) build_coredns ;;
    pause) build_pause ;;
    kube-router) build_kube_router ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy) build_kube "$c" ;;
    *) log "error: unknown component $c"; exit 2 ;;
  esac
  log "built $c in $((SECONDS - t0)) s (module downloads included)"
done
log "ready: $ASSETS"
echo "$ASSETS"
