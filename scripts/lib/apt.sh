#!/usr/bin/env bash
# Sourced by scripts/setup.d/*.sh: `apt_ensure PKG...` installs the Debian packages that are missing (with their recommends, as tested),
# waiting for the dpkg lock, and does nothing when all are installed.
apt_ensure() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -gt 0 ] || return 0
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "[test-setup] apt-get install ${missing[*]}" >&2
  $sudo apt-get -o DPkg::Lock::Timeout=900 update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=900 install -y -qq "${missing[@]}" >/dev/null
}
