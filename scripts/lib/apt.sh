#!/usr/bin/env bash
# Sourced by scripts/setup.d/*.sh: `apt_ensure PKG...` installs the Debian packages that are missing (with their recommends, as tested),
# waiting for the dpkg lock, and does nothing when all are installed. Setup steps may run in two lanes at once
# (scripts/test-setup.sh): one flock serializes their apt-get calls (update takes the lists lock, which
# DPkg::Lock::Timeout does not wait for).
apt_ensure() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -gt 0 ] || return 0
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "[test-setup] apt-get install ${missing[*]}" >&2
  (
    flock -w 1800 9 || { echo "[test-setup] timed out waiting for /tmp/ssl3d-apt.lock" >&2; exit 1; }
    $sudo apt-get -o DPkg::Lock::Timeout=900 update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=900 install -y -qq "${missing[@]}" >/dev/null
  ) 9>/tmp/ssl3d-apt.lock
}
