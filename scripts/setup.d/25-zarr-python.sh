#!/usr/bin/env bash
# zarr-python in its own venv for the Zarr interoperability test (see scripts/python-requirements-zarr.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."
SSL3D_CACHE="${SSL3D_CACHE:-$HOME/.cache/ssl3d}"
VENV="$SSL3D_CACHE/venv-zarr"
REQ=scripts/python-requirements-zarr.txt
stamp="$VENV/.ssl3d-stamp"
want="$(sha256sum "$REQ" | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
[ -x "$VENV/bin/python" ] || /usr/bin/python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ"
echo "$want" > "$stamp"
