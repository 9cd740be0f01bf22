#!/usr/bin/env bash
# `npm run cluster:down`: stops everything scripts/cluster/up.sh started and leaves the machine as up.sh found it:
# pods deleted through the API first (so the CNI plugin removes their network), daemons stopped by their recorded
# pids, kube-proxy's and the kubelet's iptables chains removed, the bridge, mounts, cgroups and the state directory
# removed. Safe to run when nothing (or only part) is up. Must run as root. containerd's image store ($CTR_ROOT, a
# cache under $SSL3D_CACHE like the image archives) is kept for the next `cluster:up`; `--purge` removes it too.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ "$(id -u)" -eq 0 ] || die "must run as root"
PURGE=0
case "${1:-}" in
  --purge) PURGE=1 ;;
  "") ;;
  *) die "usage: down.sh [--purge]" ;;
esac
if [ "$PURGE" = 1 ] && [ ! -d "$D" ]; then rm -rf "$CTR_ROOT"; fi
[ -d "$D" ] || { log "nothing to stop ($D does not exist)"; exit 0; }
[ -f "$D/.ssl3d-cluster" ] || die "$D was not made by cluster:up (no .ssl3d-cluster marker): not touching it"

# Pods go first, through the API, while the kubelet still runs: it stops their sandboxes, which runs CNI DEL.
delete_pods() {
  pid_alive kube-apiserver || return 0
  stop_daemons 20 kube-controller-manager kube-scheduler
  kubectl_admin delete pods --all --all-namespaces --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
  pid_alive kubelet && pid_alive containerd || return 0
  local i
  for ((i = 0; i < 120; i++)); do
    [ -z "$(ctr_ -n k8s.io tasks ls -q 2>/dev/null)" ] && break
    sleep 1
  done
}

# Containers the kubelet did not get to remove: kill their tasks, delete them (snapshots unmount with them).
remove_containers() {
  pid_alive containerd || return 0
  local c
  for c in $(ctr_ -n k8s.io tasks ls -q 2>/dev/null); do ctr_ -n k8s.io tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true; done
  sleep 1
  for c in $(ctr_ -n k8s.io tasks ls -q 2>/dev/null); do ctr_ -n k8s.io tasks delete -f "$c" >/dev/null 2>&1 || true; done
  for c in $(ctr_ -n k8s.io containers ls -q 2>/dev/null); do ctr_ -n k8s.io containers delete "$c" >/dev/null 2>&1 || true; done
}

# containerd's shims outlive containerd; ours name our socket in their command line.
stop_shims() {
  local pid
  for pid in $(pgrep -f "containerd-shim.*-address $CTR_SOCK" || true); do kill -KILL "$pid" 2>/dev/null || true; done
}

# iptables chains of kube-proxy (KUBE-*), the kubelet (KUBE-*) and CNI plugins (CNI-*), in both the nft-backed and
# legacy iptables, IPv4 and IPv6; then nft tables they created that were empty before up.sh ran.
clean_rules() {
  [ -x "$(bin kube-proxy)" ] && "$(bin kube-proxy)" --cleanup --v=0 >/dev/null 2>&1 || true
  local tool table chain
  for tool in iptables ip6tables iptables-legacy ip6tables-legacy; do
    command -v "$tool" >/dev/null || continue
    # Only the tables that exist: even listing a table with the legacy tools creates it in the kernel.
    for table in $("$tool-save" 2>/dev/null | sed -n 's/^\*//p'); do
      "$tool" -t "$table" -S 2>/dev/null | awk '$1 == "-A" && ($2 ~ /^(KUBE|CNI)-/ || $0 ~ /-j (KUBE|CNI)-/) {print}' \
        | sed 's/^-A /-D /' | while read -r rule; do eval "$tool -t $table $rule" 2>/dev/null || true; done
      for chain in $("$tool" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE|CNI)-/ {print $2}'); do
        "$tool" -t "$table" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$tool" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE|CNI)-/ {print $2}'); do
        "$tool" -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
  # iptables-nft leaves the tables it created (with their empty base chains) behind: drop those that did not exist
  # before up.sh and hold no rule any more.
  if [ -f "$D/nft-tables.before" ] && command -v nft >/dev/null; then
    local fam name
    nft list tables 2>/dev/null | while read -r _ fam name; do
      grep -qx "table $fam $name" "$D/nft-tables.before" && continue
      if ! nft list table "$fam" "$name" 2>/dev/null | grep -vE '^\s*(table |chain |type |policy |\}|$)' | grep -q .; then
        nft delete table "$fam" "$name"
      fi
    done
  fi
}

unmount_under() { # every mount at or below $1, deepest first
  local m
  awk -v d="$1" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
}

remove_cgroups() {
  local c
  for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice; do
    [ -d "$c" ] || continue
    find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

remove_outside_paths() {
  local p
  for p in "${OUTSIDE_PATHS[@]}"; do
    [ -e "$p" ] || continue
    grep -qx "$p" "$D/preexisting" 2>/dev/null && continue
    unmount_under "$p"
    rm -rf "$p"
  done
  # Network namespaces of pods the kubelet did not get to remove (only those named by the CNI convention).
  for p in /run/netns/cni-*; do [ -e "$p" ] || continue; umount "$p" 2>/dev/null || true; rm -f "$p"; done
}

# cpu_report: the CPU time the cluster used since cluster:up (the cluster tier's cost beside other work): its pods (the
# kubelet's kubepods cgroup, which counts every pod that ran in it) and each daemon (user + system, from /proc).
cpu_report() {
  local tck f pods="" name pid secs total=0 out=""
  tck="$(getconf CLK_TCK)"
  for f in /sys/fs/cgroup/cpuacct/kubepods/cpuacct.usage /sys/fs/cgroup/cpu,cpuacct/kubepods/cpuacct.usage; do
    if [ -f "$f" ]; then pods=$(( $(cat "$f") / 1000000000 )); break; fi
  done
  if [ -z "$pods" ] && [ -f /sys/fs/cgroup/kubepods/cpu.stat ]; then
    pods=$(( $(awk '$1 == "usage_usec" {print $2}' /sys/fs/cgroup/kubepods/cpu.stat) / 1000000 ))
  fi
  [ -n "$pods" ] && { out="pods ${pods}"; total=$pods; }
  for name in kube-apiserver etcd kube-controller-manager kube-scheduler kubelet containerd kube-proxy coredns; do
    pid_alive "$name" || continue
    pid="$(cat "$D/pids/$name.pid")"
    # /proc/PID/stat after "PID (COMM) ": field 12 is utime, 13 stime (clock ticks)
    secs="$(sed 's/^.*) //' "/proc/$pid/stat" | awk -v t="$tck" '{printf "%d", ($12 + $13) / t}')"
    out="$out, $name $secs"
    total=$((total + secs))
  done
  log "down: CPU seconds used since cluster:up: $out (total $total)"
}

# timed STEP CMD...: runs CMD and logs how long it took (the parts of the cluster tier's teardown time).
timed() {
  local s=$SECONDS
  "$@"
  log "down: $* ($((SECONDS - s)) s)"
}

T0=$SECONDS
cpu_report || true
timed delete_pods
timed stop_daemons 30 coredns kube-proxy kubelet
timed remove_containers
timed stop_daemon containerd 30
timed stop_shims
timed stop_daemons 20 kube-controller-manager kube-scheduler kube-apiserver etcd
timed clean_rules
if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link delete "$BRIDGE"; fi
timed unmount_under "$D"
timed unmount_under "$CTR_ROOT"
timed remove_cgroups
timed remove_outside_paths
timed rm -rf "$D"
if [ "$PURGE" = 1 ]; then rm -rf "$CTR_ROOT"; fi
log "down: machine state restored ($((SECONDS - T0)) s)"
