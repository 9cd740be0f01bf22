#!/usr/bin/env bash
# Model parity tests: timm (PyPI, --no-deps) imports torchvision at module load; Debian's build matches python3-torch.
set -euo pipefail
if ! dpkg-query -W -f='${Status}' python3-torchvision 2>/dev/null | grep -q "install ok installed"; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "[test-setup] apt-get install python3-torchvision" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends python3-torchvision >/dev/null
fi
