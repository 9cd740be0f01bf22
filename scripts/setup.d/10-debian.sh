#!/usr/bin/env bash
# Debian packages used by tests: real MRI templates, nibabel (independent NIfTI reader), etcd (API server storage),
# Prometheus (metrics and rule checks), CPU PyTorch and SciPy (numerical references).
set -euo pipefail
PKGS=(mricron-data python3-nibabel python3-scipy python3-skimage etcd-server prometheus python3-torch)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "[test-setup] apt-get install ${missing[*]}" >&2
  $SUDO apt-get -o DPkg::Lock::Timeout=900 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
