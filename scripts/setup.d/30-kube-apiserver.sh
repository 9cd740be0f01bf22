#!/usr/bin/env bash
# setup-lane: background
# Builds kube-apiserver and kube-controller-manager (its garbage collector follows ownerReferences in the tests;
# SSL3D_KUBE_CONTROLLER_MANAGER=0 skips it) with `go build` from
# the Kubernetes Go modules at a pinned version, for the operator's integration tests (test/helpers/kube.ts).
# etcd comes from Debian's etcd-server (10-debian.sh). Idempotent: binaries are cached under
# $SSL3D_CACHE/bin/<name>-<version>; the build module lives in $SSL3D_CACHE/kube-build/<version>.
# The generated go.mod (one `replace` per staging module at its published tag) comes from scripts/lib/kube-gomod.sh.
set -euo pipefail
KUBE_VERSION="${SSL3D_KUBE_VERSION:-v1.34.2}"
CACHE="${SSL3D_CACHE:-$HOME/.cache/ssl3d}"
BINDIR="$CACHE/bin"
targets=(kube-apiserver)
if [ "${SSL3D_KUBE_CONTROLLER_MANAGER:-1}" = "1" ]; then targets+=(kube-controller-manager); fi
todo=()
for t in "${targets[@]}"; do [ -x "$BINDIR/$t-$KUBE_VERSION" ] || todo+=("$t"); done
if [ "${#todo[@]}" -eq 0 ]; then exit 0; fi

source "$(dirname "$0")/../lib/go.sh"
go_ensure

work="$CACHE/kube-build/$KUBE_VERSION"
mkdir -p "$BINDIR"
export GOFLAGS=-mod=mod CGO_ENABLED=0
source "$(dirname "$0")/../lib/kube-gomod.sh"
kube_gomod_init "$work" "$KUBE_VERSION"
cd "$work"
if [ -f go.mod.needs-get ]; then
  echo "[kube-apiserver] resolved k8s.io/kubernetes@$KUBE_VERSION (one replace per staging module)" >&2
  for t in kube-apiserver kube-controller-manager; do go get "k8s.io/kubernetes/cmd/$t@$KUBE_VERSION"; done
  rm go.mod.needs-get; touch go.mod.done
fi

for t in "${todo[@]}"; do
  echo "[kube-apiserver] go build $t $KUBE_VERSION (first time: 10-30 min on 2 cores; cached afterwards)" >&2
  go build -trimpath -ldflags "$KUBE_LDFLAGS" -o "$BINDIR/$t-$KUBE_VERSION.tmp" "k8s.io/kubernetes/cmd/$t"
  mv "$BINDIR/$t-$KUBE_VERSION.tmp" "$BINDIR/$t-$KUBE_VERSION"
done
"$BINDIR/kube-apiserver-$KUBE_VERSION" --version >&2
