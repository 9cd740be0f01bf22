#!/usr/bin/env bash
# Debian packages the preprocessing parity test and bench need besides 10-debian.sh: the nnU-Net v2 resampling
# module imports pandas; blosc2 (nnssl's storage, used by the upstream side of bench:preprocess) imports requests;
# batchgenerators imports tqdm. 10-debian.sh installs without recommends, so none of them comes along by itself.
set -euo pipefail
cd "$(dirname "$0")/../.."
PKGS=(python3-pandas python3-requests python3-tqdm)
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
