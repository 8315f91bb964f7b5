#!/usr/bin/env bash
# Build a small OpenTelemetry Collector from the Go module proxy, cached by version.
#
# No collector release binary can be downloaded on the test bed, so we compile the few components the
# tracing tests need — the OTLP receiver (gRPC and HTTP) and the file exporter (OTLP JSON lines a test
# can read with the protobuf JSON parser) plus the debug exporter — into one binary, the way the
# collector's own builder (ocb) would: a throwaway module with a generated main.
#
# Usage: hack/build-otelcol.sh
# Env:   AGENTRY_OTELCOL_VERSION (core/contrib release, default below), AGENTRY_OTELCOL_STABLE (the
#        matching v1.x of the stable core modules), AGENTRY_CACHE_DIR (see cache-env.sh)
# Prints the binary's path on the last line of stdout.
set -euo pipefail

VERSION="${AGENTRY_OTELCOL_VERSION:-v0.165.0}"
STABLE="${AGENTRY_OTELCOL_STABLE:-v1.71.0}"
source "$(dirname "${BASH_SOURCE[0]}")/cache-env.sh"
RECIPE=2  # bump when the generated main or the component list changes: a new cache entry
OUT="$CACHE/otelcol/$VERSION-r$RECIPE"
BIN="$OUT/agentry-otelcol"
log() { printf '[build-otelcol] %s\n' "$*" >&2; }

if [ -x "$BIN" ]; then log "cached: $BIN"; echo "$BIN"; exit 0; fi
command -v go >/dev/null || { log "error: Go toolchain not found (needed to build the collector)"; exit 2; }
mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi

work="$CACHE/build/otelcol-$VERSION"
mkdir -p "$work"
log "building the collector $VERSION (otlpreceiver, fileexporter, debugexporter) — cold: a few minutes"
core=go.opentelemetry.io/collector
contrib=github.com/open-telemetry/opentelemetry-collector-contrib
cat >"$work/go.mod" <<GOMOD
module agentry.dev/otelcol

go 1.24

require (
	$core/component $STABLE
	$core/confmap $STABLE
	$core/confmap/provider/envprovider $STABLE
	$core/confmap/provider/fileprovider $STABLE
	$core/confmap/provider/yamlprovider $STABLE
	$core/exporter $STABLE
	$core/exporter/debugexporter $VERSION
	$core/otelcol $VERSION
	$core/receiver $STABLE
	$core/receiver/otlpreceiver $VERSION
	$core/service $VERSION
	$contrib/exporter/fileexporter $VERSION
)
GOMOD
cat >"$work/main.go" <<'GO'
// Command agentry-otelcol is a minimal OpenTelemetry Collector for Agentry's tracing tests.
package main

import (
	"log"

	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/debugexporter"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"
)

func components() (otelcol.Factories, error) {
	var err error
	f := otelcol.Factories{Telemetry: otelconftelemetry.NewFactory()}
	if f.Receivers, err = otelcol.MakeFactoryMap[receiver.Factory](otlpreceiver.NewFactory()); err != nil {
		return f, err
	}
	f.Exporters, err = otelcol.MakeFactoryMap[exporter.Factory](fileexporter.NewFactory(), debugexporter.NewFactory())
	return f, err
}

func main() {
	settings := otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{Command: "agentry-otelcol", Description: "Agentry test collector", Version: "agentry"},
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: []confmap.ProviderFactory{
					envprovider.NewFactory(), fileprovider.NewFactory(), yamlprovider.NewFactory(),
				},
			},
		},
	}
	if err := otelcol.NewCommand(settings).Execute(); err != nil {
		log.Fatal(err)
	}
}
GO
t0=$SECONDS
# No `go mod tidy`: it also resolves the tests of our dependencies, and the proxy refuses one module
# that only fileexporter's tests import (otlpencodingextension v0.165.0). -mod=mod resolves what the
# build imports, nothing more.
log "go build (downloads the module graph once)"
(cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags='-s -w' -o "$BIN.tmp" . >&2)
mv "$BIN.tmp" "$BIN"
log "built $BIN in $((SECONDS - t0)) s"
echo "$BIN"
