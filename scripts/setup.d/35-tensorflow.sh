#!/usr/bin/env bash
# TensorFlow 2.21 for the `node` backend (@tensorflow/tfjs-node built against the CPU wheel's libtensorflow; see
# scripts/setup-tensorflow.mjs and docs/decisions/0059-libtensorflow-from-pypi.md), so CI tests the binding the GPU
# image uses. Cached under $SSL3D_CACHE/tensorflow and in the package folder: a no-op when nothing changed.
# Cold: about 270 MB of wheel, 815 MB unpacked, a 1-3 minute C++ build. SSL3D_TENSORFLOW_GPU=1 also builds the GPU
# variant (about 2.9 GB of wheels, 4.6 GB unpacked; opt-in, its tests skip without it).
set -euo pipefail
source "$(dirname "$0")/../lib/apt.sh"
apt_ensure g++ make python3
SSL3D_CACHE="${SSL3D_CACHE:-$HOME/.cache/ssl3d}"
# pip from the reference venv (20-python.sh) when the system Python has none
if [ -z "${PYTHON:-}" ] && [ -x "$SSL3D_CACHE/venv/bin/python" ]; then export PYTHON="$SSL3D_CACHE/venv/bin/python"; fi
npm run --silent setup:tensorflow -- --variant cpu
if [ "${SSL3D_TENSORFLOW_GPU:-0}" = "1" ]; then npm run --silent setup:tensorflow -- --variant gpu; fi
