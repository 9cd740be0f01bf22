#!/usr/bin/env bash
# Model parity tests: timm (PyPI, --no-deps) imports torchvision at module load; Debian's build matches python3-torch.
set -euo pipefail
source "$(dirname "$0")/../lib/apt.sh"
apt_ensure python3-torchvision
