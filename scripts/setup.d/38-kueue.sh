#!/usr/bin/env bash
# setup-lane: background
# Kueue's controller manager and CRDs for the operator's Kueue test in the API-server tier
# (test/integration/operator-kueue.test.ts, test/helpers/kueue.ts): the run-level Workload the operator creates is
# admitted, finished and evicted by the real Kueue, not by the test.
# - `go build sigs.k8s.io/kueue/cmd/kueue` from the Go module at a pinned version (its own go.mod and go.sum, so the
#   dependency versions are Kueue's; the Go build and module caches are the same as the Kubernetes builds').
# - The CRDs from the module's config/components/crd/bases (applied by the test as they are).
# - A self-signed serving certificate (openssl) for the two TLS servers the manager always starts, its webhook server
#   (the test registers no webhook configuration; the certificate directory is in the test's Configuration) and its
#   metrics server: with internal certificate management off (it would inject CA bundles into webhook configurations
#   and CRD conversion), cmd/kueue/main.go reads the metrics certificate from the fixed path
#   /etc/kueue/metrics/certs, so a copy goes there (with sudo when not root).
# Cached under $SSL3D_CACHE/bin/kueue-<version> and $SSL3D_CACHE/kueue/<version>/crds; SSL3D_TEST_KUEUE=0 skips this step
# (the Kueue test then skips with a message naming this script). Go builds run under `nice` when SSL3D_BUILD_NICE is
# set (a shared machine).
set -euo pipefail
[ "${SSL3D_TEST_KUEUE:-1}" = "1" ] || exit 0
KUEUE_VERSION="${SSL3D_KUEUE_VERSION:-v0.17.0}"
CACHE="${SSL3D_CACHE:-$HOME/.cache/ssl3d}"
BINDIR="$CACHE/bin"
CRDDIR="$CACHE/kueue/$KUEUE_VERSION/crds"
CERTDIR="$CACHE/kueue/certs"
METRICS_CERTDIR=/etc/kueue/metrics/certs
if [ -x "$BINDIR/kueue-$KUEUE_VERSION" ] && [ -f "$CRDDIR/.done" ] && [ -f "$METRICS_CERTDIR/tls.crt" ]; then exit 0; fi

source "$(dirname "$0")/../lib/go.sh" # also apt_ensure
if [ ! -f "$CERTDIR/tls.crt" ]; then
  apt_ensure openssl
  mkdir -p "$CERTDIR"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$CERTDIR/tls.key.tmp" -out "$CERTDIR/tls.crt.tmp" 2>/dev/null
  mv "$CERTDIR/tls.key.tmp" "$CERTDIR/tls.key"; mv "$CERTDIR/tls.crt.tmp" "$CERTDIR/tls.crt"
fi
if [ ! -f "$METRICS_CERTDIR/tls.crt" ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # A throwaway test certificate: readable by whoever runs the tests.
  $SUDO install -d -m 755 "$METRICS_CERTDIR"
  $SUDO install -m 644 "$CERTDIR/tls.key" "$CERTDIR/tls.crt" "$METRICS_CERTDIR/"
fi

go_ensure
nice_cmd=(); [ -z "${SSL3D_BUILD_NICE:-}" ] || nice_cmd=(nice -n "$SSL3D_BUILD_NICE")
export CGO_ENABLED=0

# The module's own directory (read-only in the module cache) is copied so that the build uses its go.mod and go.sum
# exactly: as a dependency of another module, Kueue's replace directives and versions would not apply.
src="$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kueue@$KUEUE_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
[ -d "$src/cmd/kueue" ] || { echo "[kueue] could not download sigs.k8s.io/kueue@$KUEUE_VERSION" >&2; exit 1; }
work="$CACHE/kueue/$KUEUE_VERSION/src"
if [ ! -f "$work/go.mod" ]; then
  rm -rf "$work"; mkdir -p "$(dirname "$work")"
  cp -r "$src" "$work.tmp"; chmod -R u+w "$work.tmp"; mv "$work.tmp" "$work"
fi

mkdir -p "$CRDDIR"
cp "$work"/config/components/crd/bases/*.yaml "$CRDDIR/"
touch "$CRDDIR/.done"

mkdir -p "$BINDIR"
if [ ! -x "$BINDIR/kueue-$KUEUE_VERSION" ]; then
  echo "[kueue] go build sigs.k8s.io/kueue/cmd/kueue $KUEUE_VERSION (first time: several minutes on 2 cores)" >&2
  s=$SECONDS
  (cd "$work" && GOFLAGS=-mod=readonly "${nice_cmd[@]}" go build -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE_VERSION" \
    -o "$BINDIR/kueue-$KUEUE_VERSION.tmp" ./cmd/kueue)
  mv "$BINDIR/kueue-$KUEUE_VERSION.tmp" "$BINDIR/kueue-$KUEUE_VERSION"
  echo "[kueue] kueue built in $((SECONDS - s)) s" >&2
fi
