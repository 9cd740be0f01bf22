#!/usr/bin/env bash
# Native cpu kernels (native/, docs/decisions/0008-native-cpu-kernels.md): `npm ci` already builds the addon with
# whatever the machine has. This adds the optional accelerator so tests exercise the production path: oneDNN
# (Debian libdnnl-dev, the convolution library PyTorch uses) and a C++ compiler, then rebuilds the addon (a no-op
# when nothing changed: build.mjs hashes sources, flags and probe results).
set -euo pipefail
PKGS=(g++ libdnnl-dev)
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
node native/build.mjs >&2
