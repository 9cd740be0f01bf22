#!/usr/bin/env bash
# Debian's headless Chromium for the run-report page test (test/helpers/chromium.ts drives it over the DevTools
# protocol on a pipe; no browser download).
set -euo pipefail
source "$(dirname "$0")/../lib/apt.sh"
apt_ensure chromium
