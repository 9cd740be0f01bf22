#!/usr/bin/env bash
# Sourced by the setup steps that build from Go modules: `go_ensure` puts a Go toolchain on PATH (/usr/local/go when
# the machine has one, else Debian's golang-go through apt_ensure).
source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"
go_ensure() {
  command -v go >/dev/null 2>&1 && return 0
  if [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; return 0; fi
  apt_ensure golang-go
}
