#!/usr/bin/env bash
# Shared settings and helpers of scripts/cluster/{up,down,images}.sh (sourced). See docs/local-cluster.md.
# shellcheck disable=SC2034
set -euo pipefail
CLUSTER_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$CLUSTER_SCRIPTS/../.." && pwd)"
SSL3D_CACHE="${SSL3D_CACHE:-$HOME/.cache/ssl3d}"
KUBE_VERSION="${SSL3D_KUBE_VERSION:-v1.34.2}"
COREDNS_VERSION=v1.13.1
BIN="$SSL3D_CACHE/bin"
# All state of the cluster lives here; `cluster:down` removes it.
D="${SSL3D_CLUSTER_DIR:-$SSL3D_CACHE/cluster}"
NODE_NAME=ssl3d-node
BRIDGE=k8sbr0
# The bridge's address is the node IP: every daemon listens there (or on a loopback port picked at start), nothing on
# the machine's own interfaces. Pods get 10.244.0.0/24, Services 10.96.0.0/16.
NODE_IP=10.244.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
SERVICE_API_IP=10.96.0.1
API_PORT=6443
CTR_SOCK="$D/containerd/containerd.sock"
# containerd's image store (content and unpacked layers) outlives the cluster, like the image archives it is imported
# from: `cluster:up` imports an archive only when it changed since its last import (a stamp per image here), which
# saves importing the 1.3 GB of archives on every start. `cluster:down --purge` removes it.
CTR_ROOT="${SSL3D_CONTAINERD_ROOT:-$SSL3D_CACHE/containerd}"
PAUSE_IMAGE=ssl3d.local/pause:1
# Files and directories outside $D that the daemons create (kubelet: container log links; containerd: shim sockets,
# pod network namespaces). up.sh records which of them existed before; down.sh removes the others.
OUTSIDE_PATHS=(/var/log/containers /run/containerd /opt/containerd /var/run/netns /run/netns /var/lib/cni /etc/cni /opt/cni)
# The machine-wide sysctls the kubelet would rewrite (pkg/kubelet/cm/container_manager_linux.go,
# setupKernelTunables) and the values it wants. It runs in its own mount namespace with read-only files holding these
# values bound over the /proc/sys entries, so it reads what it wants and never writes the machine's values.
KUBELET_SYSCTLS=(vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1
  kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000)

log() { echo "[cluster] $*" >&2; }
die() { echo "[cluster] error: $*" >&2; exit 1; }
bin() { echo "$BIN/$1-$KUBE_VERSION"; }
kubectl_admin() { "$(bin kubectl)" --kubeconfig "$D/kubeconfigs/admin.kubeconfig" "$@"; }
ctr_() { ctr --address "$CTR_SOCK" "$@"; }

# write_if_changed FILE: stdin -> FILE, only when the content differs (kube-proxy exits when its config is rewritten).
write_if_changed() {
  local f="$1" tmp
  tmp="$(mktemp "$f.XXXX")"
  cat > "$tmp"
  if [ -f "$f" ] && cmp -s "$tmp" "$f"; then rm -f "$tmp"; else mv "$tmp" "$f"; fi
}

# pid_alive NAME: the daemon recorded in $D/pids/NAME.pid runs (and is the binary we started, not a reused pid).
pid_alive() {
  local f="$D/pids/$1.pid" pid
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  [ -d "/proc/$pid" ] || return 1
  grep -qa -- "$(cat "$D/pids/$1.cmd" 2>/dev/null || echo NONE)" "/proc/$pid/cmdline" 2>/dev/null
}

# stop_daemon NAME [TIMEOUT]: SIGTERM, then SIGKILL after TIMEOUT seconds (default 20); forgets its pid file.
stop_daemon() { stop_daemons "${2:-20}" "$1"; }

# stop_daemons TIMEOUT NAME...: SIGTERM to each daemon that is alive, one wait of at most TIMEOUT seconds for all of
# them, then SIGKILL for any left; forgets their pid files.
stop_daemons() {
  local timeout="$1" name pid i alive killed=0 names=() pids=(); shift
  for name in "$@"; do
    if pid_alive "$name"; then
      pid="$(cat "$D/pids/$name.pid")"; kill -TERM "$pid" 2>/dev/null || true; names+=("$name"); pids+=("$pid")
    fi
  done
  for ((i = 0; i < timeout * 5 && ${#pids[@]} > 0; i++)); do
    alive=0
    for pid in "${pids[@]}"; do [ -d "/proc/$pid" ] && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.2
  done
  for i in "${!pids[@]}"; do
    if [ -d "/proc/${pids[$i]}" ]; then
      log "${names[$i]} did not stop in ${timeout}s: SIGKILL"; kill -KILL "${pids[$i]}" 2>/dev/null || true; killed=1
    fi
  done
  [ "$killed" = 0 ] || sleep 0.5
  for name in "$@"; do rm -f "$D/pids/$name.pid" "$D/pids/$name.cmd"; done
}
