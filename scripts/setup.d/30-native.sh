#!/usr/bin/env bash
# Native cpu kernels (native/, docs/decisions/0008-native-cpu-kernels.md): `npm ci` already builds the addon with
# whatever the machine has. This adds the optional accelerator so tests exercise the production path: oneDNN
# (Debian libdnnl-dev, the convolution library PyTorch uses) and a C++ compiler, then rebuilds the addon (a no-op
# when nothing changed: build.mjs hashes sources, flags and probe results).
set -euo pipefail
source "$(dirname "$0")/../lib/apt.sh"
apt_ensure g++ libdnnl-dev
# SSL3D_NATIVE_REQUIRE=1: a failed build fails the setup (the kernel tests would otherwise have nothing to test).
SSL3D_NATIVE_REQUIRE=1 node native/build.mjs >&2
