#!/usr/bin/env bash
# Fails when code or docs cite something outside this repository: a "spec N.N" section of a document that is not
# here, a BRIEF, or a private notes folder. Cite upstream source files instead (e.g. nnssl's
# `src/nnssl/training/nnsslTrainer/AbstractTrainer.py`, dynamic-network-architectures'
# `dynamic_network_architectures/architectures/primus.py`) or the project's own docs (docs/*.md, docs/decisions/).
# Usage: scripts/check-citations.sh [ROOT] (default: the repository). Called by scripts/test.sh and scripts/verify.sh.
set -euo pipefail
root="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
cd "$root"
paths=()
for p in runtime operator api docs test bench README.md DEVELOPERS.md; do [ -e "$p" ] && paths+=("$p"); done
[ "${#paths[@]}" -gt 0 ] || exit 0
pattern='spec [0-9]|/work/shared|nnssl-spec|BRIEF|tfjs-on-cpu\.md|operator-anchors\.md'
if hits=$(grep -rnIE --exclude-dir=node_modules "$pattern" "${paths[@]}"); then
  echo "$hits" >&2
  echo "check-citations: the lines above cite documents outside the repository; cite upstream source files or docs/ instead" >&2
  exit 1
fi
