#!/usr/bin/env bash
# Debian packages the preprocessing parity test and bench need besides 10-debian.sh: the nnU-Net v2 resampling
# module imports pandas; blosc2 (nnssl's storage, used by the upstream side of bench:preprocess) imports requests;
# batchgenerators imports tqdm. 10-debian.sh installs without recommends, so none of them comes along by itself.
set -euo pipefail
cd "$(dirname "$0")/../.."
source "$(dirname "$0")/../lib/apt.sh"
apt_ensure python3-pandas python3-requests python3-tqdm
