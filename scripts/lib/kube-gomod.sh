#!/usr/bin/env bash
# Sourced by scripts/setup.d/30-kube-apiserver.sh and 35-kube-node.sh.
# `kube_gomod_init DIR VERSION` writes DIR/go.mod requiring k8s.io/kubernetes@VERSION, with one `replace` per staging
# module at its published tag (v0.<minor>.<patch>), read from k8s.io/kubernetes' own go.mod.
# k8s.io/kubernetes is not meant to be consumed as a module: its go.mod requires the staging modules at v0.0.0 and
# replaces them with ./staging paths, which a consumer does not inherit; the generated replaces stand in for those.
# Also sets KUBE_LDFLAGS (version stamped into the binaries). Needs `go` on PATH and GOFLAGS=-mod=mod.
kube_gomod_init() {
  local dir="$1" version="$2" minor patch staging_version upstream_mod m
  minor="${version#v1.}"; minor="${minor%%.*}"
  patch="${version##*.}"
  staging_version="v0.$minor.$patch"
  KUBE_LDFLAGS="-s -w"
  for m in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    KUBE_LDFLAGS="$KUBE_LDFLAGS -X $m.gitVersion=$version -X $m.gitMajor=1 -X $m.gitMinor=$minor -X $m.gitTreeState=clean"
  done
  [ -f "$dir/go.mod.done" ] && return 0
  mkdir -p "$dir"
  rm -f "$dir/go.mod" "$dir/go.sum"
  printf 'module ssl3d.local/kube-build\n\ngo 1.24.0\n' > "$dir/go.mod"
  upstream_mod="$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [ -f "$upstream_mod" ] || { echo "could not download k8s.io/kubernetes@$version" >&2; return 1; }
  # Lines like `k8s.io/api => ./staging/src/k8s.io/api` name every staging module.
  grep -oE '^[[:space:]]*k8s\.io/[A-Za-z0-9._/-]+ => \./staging/' "$upstream_mod" | awk '{print $1}' | sort -u > "$dir/staging.txt"
  [ -s "$dir/staging.txt" ] || { echo "found no staging modules in $upstream_mod" >&2; return 1; }
  { echo; echo "require k8s.io/kubernetes $version"; echo; echo "replace ("
    while read -r m; do echo "	$m => $m $staging_version"; done < "$dir/staging.txt"
    echo ")"; } >> "$dir/go.mod"
  touch "$dir/go.mod.needs-get"
}
