#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager (its garbage collector follows ownerReferences in the tests;
# SSL3D_KUBE_CONTROLLER_MANAGER=0 skips it) with `go build` from
# the Kubernetes Go modules at a pinned version, for the operator's integration tests (test/helpers/kube.ts).
# etcd comes from Debian's etcd-server (10-debian.sh). Idempotent: binaries are cached under
# $SSL3D_CACHE/bin/<name>-<version>; the build module lives in $SSL3D_CACHE/kube-build/<version>.
# k8s.io/kubernetes is not meant to be consumed as a module: its go.mod requires the staging modules at v0.0.0 and
# replaces them with ./staging paths, which a consumer does not inherit. We therefore generate one `replace` per
# staging module pointing at its published tag (v0.<minor>.<patch>), read from k8s.io/kubernetes' own go.mod.
set -euo pipefail
KUBE_VERSION="${SSL3D_KUBE_VERSION:-v1.34.2}"
CACHE="${SSL3D_CACHE:-$HOME/.cache/ssl3d}"
BINDIR="$CACHE/bin"
targets=(kube-apiserver)
if [ "${SSL3D_KUBE_CONTROLLER_MANAGER:-1}" = "1" ]; then targets+=(kube-controller-manager); fi
todo=()
for t in "${targets[@]}"; do [ -x "$BINDIR/$t-$KUBE_VERSION" ] || todo+=("$t"); done
if [ "${#todo[@]}" -eq 0 ]; then exit 0; fi

if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; else
    echo "[kube-apiserver] installing Debian's golang-go" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends golang-go >/dev/null
  fi
fi

minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
patch="${KUBE_VERSION##*.}"
staging_version="v0.$minor.$patch"
work="$CACHE/kube-build/$KUBE_VERSION"
mkdir -p "$work" "$BINDIR"
cd "$work"
export GOFLAGS=-mod=mod CGO_ENABLED=0

if [ ! -f go.mod.done ]; then
  echo "[kube-apiserver] resolving k8s.io/kubernetes@$KUBE_VERSION (staging modules at $staging_version)" >&2
  rm -f go.mod go.sum
  printf 'module ssl3d.local/kube-build\n\ngo 1.24.0\n' > go.mod
  upstream_mod="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [ -f "$upstream_mod" ] || { echo "[kube-apiserver] could not download k8s.io/kubernetes@$KUBE_VERSION" >&2; exit 1; }
  # Lines like `k8s.io/api => ./staging/src/k8s.io/api` name every staging module.
  grep -oE '^[[:space:]]*k8s\.io/[A-Za-z0-9._/-]+ => \./staging/' "$upstream_mod" | awk '{print $1}' | sort -u > staging.txt
  [ -s staging.txt ] || { echo "[kube-apiserver] found no staging modules in $upstream_mod" >&2; exit 1; }
  { echo; echo "require k8s.io/kubernetes $KUBE_VERSION"; echo; echo "replace ("
    while read -r m; do echo "	$m => $m $staging_version"; done < staging.txt
    echo ")"; } >> go.mod
  for t in kube-apiserver kube-controller-manager; do go get "k8s.io/kubernetes/cmd/$t@$KUBE_VERSION"; done
  touch go.mod.done
fi

ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
for t in "${todo[@]}"; do
  echo "[kube-apiserver] go build $t $KUBE_VERSION (first time: 10-30 min on 2 cores; cached afterwards)" >&2
  go build -trimpath -ldflags "$ldflags" -o "$BINDIR/$t-$KUBE_VERSION.tmp" "k8s.io/kubernetes/cmd/$t"
  mv "$BINDIR/$t-$KUBE_VERSION.tmp" "$BINDIR/$t-$KUBE_VERSION"
done
"$BINDIR/kube-apiserver-$KUBE_VERSION" --version >&2
