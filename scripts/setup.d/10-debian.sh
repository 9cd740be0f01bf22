#!/usr/bin/env bash
# Debian packages used by tests: real MRI templates, nibabel (independent NIfTI reader), etcd (API server storage),
# Prometheus (metrics and rule checks), CPU PyTorch and SciPy (numerical references).
set -euo pipefail
source "$(dirname "$0")/../lib/apt.sh"
apt_ensure mricron-data python3-nibabel python3-scipy python3-skimage etcd-server prometheus python3-torch
