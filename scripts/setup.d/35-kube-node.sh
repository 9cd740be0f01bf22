#!/usr/bin/env bash
# setup-lane: background
# The parts of a real single-node cluster that `npm run cluster:up` (scripts/cluster/up.sh) starts, besides
# kube-apiserver and kube-controller-manager (30-kube-apiserver.sh):
# - Debian packages: containerd, runc, CNI plugins, iptables/nftables/conntrack (kube-proxy), socat (port-forward),
#   debootstrap and buildah (images from our Dockerfile without a registry, scripts/cluster/images.sh);
# - kube-scheduler, kubelet, kube-proxy, kubectl: `go build` from the Kubernetes Go modules at the same pinned version
#   (same generated go.mod as the apiserver build, so they share its Go build cache);
# - CoreDNS from its Go module with only the plugins a cluster DNS needs (scripts/cluster/coredns/main.go);
# - the pod sandbox ("pause") process: a static Go binary (scripts/cluster/pause/main.go).
# All binaries are cached under $SSL3D_CACHE/bin; SSL3D_CLUSTER=0 skips this step. Go builds run under `nice` when
# SSL3D_BUILD_NICE is set (a shared machine).
set -euo pipefail
[ "${SSL3D_CLUSTER:-1}" = "1" ] || exit 0
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../lib/apt.sh"
source "$here/../lib/kube-gomod.sh"
apt_ensure containerd runc containernetworking-plugins iptables nftables conntrack socat ethtool debootstrap buildah
# From `npm test`'s setup (scripts/test-setup.sh), the Go builds below serve only the cluster tier: skip them when
# that tier is switched off (SSL3D_TEST_CLUSTER=0) or cannot run (not root); `npm run cluster:up` builds them itself.
if [ "${SSL3D_SETUP_FOR_TESTS:-0}" = "1" ] && { [ "${SSL3D_TEST_CLUSTER:-1}" = "0" ] || [ "$(id -u)" -ne 0 ]; }; then
  echo "[kube-node] cluster tier off (SSL3D_TEST_CLUSTER=0 or not root): Go builds of the node binaries skipped" >&2
  exit 0
fi

KUBE_VERSION="${SSL3D_KUBE_VERSION:-v1.34.2}"
COREDNS_VERSION=v1.13.1
CACHE="${SSL3D_CACHE:-$HOME/.cache/ssl3d}"
BINDIR="$CACHE/bin"
mkdir -p "$BINDIR"
nice_cmd=(); [ -z "${SSL3D_BUILD_NICE:-}" ] || nice_cmd=(nice -n "$SSL3D_BUILD_NICE")
source "$here/../lib/go.sh"
go_ensure
export GOFLAGS=-mod=mod CGO_ENABLED=0

todo=()
for t in kube-scheduler kubelet kube-proxy kubectl; do [ -x "$BINDIR/$t-$KUBE_VERSION" ] || todo+=("$t"); done
if [ "${#todo[@]}" -gt 0 ]; then
  work="$CACHE/kube-node-build/$KUBE_VERSION"
  kube_gomod_init "$work" "$KUBE_VERSION"
  cd "$work"
  if [ -f go.mod.needs-get ]; then
    for t in kube-scheduler kubelet kube-proxy kubectl; do go get "k8s.io/kubernetes/cmd/$t@$KUBE_VERSION"; done
    rm go.mod.needs-get; touch go.mod.done
  fi
  for t in "${todo[@]}"; do
    echo "[kube-node] go build $t $KUBE_VERSION (first time: 1-3 min each on 2 cores; cached afterwards)" >&2
    s=$SECONDS
    "${nice_cmd[@]}" go build -trimpath -ldflags "$KUBE_LDFLAGS" -o "$BINDIR/$t-$KUBE_VERSION.tmp" "k8s.io/kubernetes/cmd/$t"
    mv "$BINDIR/$t-$KUBE_VERSION.tmp" "$BINDIR/$t-$KUBE_VERSION"
    echo "[kube-node] $t built in $((SECONDS - s)) s" >&2
  done
fi

if [ ! -x "$BINDIR/coredns-$COREDNS_VERSION" ]; then
  work="$CACHE/coredns-build/$COREDNS_VERSION"
  mkdir -p "$work"
  cp "$here/../cluster/coredns/main.go" "$work/main.go"
  cd "$work"
  if [ ! -f go.mod ]; then
    printf 'module ssl3d.local/coredns\n\ngo 1.24.0\n\nrequire github.com/coredns/coredns %s\n' "$COREDNS_VERSION" > go.mod
  fi
  echo "[kube-node] go build coredns $COREDNS_VERSION (first time: ~6 min on 2 cores)" >&2
  s=$SECONDS
  "${nice_cmd[@]}" go build -trimpath -ldflags "-s -w" -o "$BINDIR/coredns-$COREDNS_VERSION.tmp" .
  mv "$BINDIR/coredns-$COREDNS_VERSION.tmp" "$BINDIR/coredns-$COREDNS_VERSION"
  echo "[kube-node] coredns built in $((SECONDS - s)) s" >&2
fi

pause_src="$here/../cluster/pause/main.go"
pause_sum="$(sha256sum "$pause_src" | cut -c1-12)"
if [ ! -x "$BINDIR/pause-$pause_sum" ]; then
  work="$CACHE/pause-build"
  mkdir -p "$work"
  cp "$pause_src" "$work/main.go"
  printf 'module ssl3d.local/pause\n\ngo 1.24.0\n' > "$work/go.mod"
  (cd "$work" && go build -trimpath -ldflags "-s -w" -o "$BINDIR/pause-$pause_sum.tmp" .)
  mv "$BINDIR/pause-$pause_sum.tmp" "$BINDIR/pause-$pause_sum"
fi
