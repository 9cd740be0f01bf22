#!/usr/bin/env bash
# Python reference environment for parity tests: a venv on Debian's /usr/bin/python3 that sees Debian's
# python3-torch/nibabel/scipy (system site packages) and adds the upstream packages from PyPI.
# scripts/python-requirements.txt is installed normally; scripts/python-requirements-nodeps.txt with --no-deps
# (packages such as nnunetv2 would otherwise pull GBs of CUDA torch wheels).
set -euo pipefail
SSL3D_CACHE="${SSL3D_CACHE:-$HOME/.cache/ssl3d}"
VENV="$SSL3D_CACHE/venv"
REQ=scripts/python-requirements.txt
NODEPS=scripts/python-requirements-nodeps.txt
stamp="$VENV/.ssl3d-stamp"
want="$(cat "$REQ" "$NODEPS" 2>/dev/null | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
[ -x "$VENV/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
if [ -s "$REQ" ]; then "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ"; fi
if [ -s "$NODEPS" ]; then "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r "$NODEPS"; fi
echo "$want" > "$stamp"
