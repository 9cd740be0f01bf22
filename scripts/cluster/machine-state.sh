#!/usr/bin/env bash
# Prints the machine state that `cluster:up` touches and `cluster:down` must restore, normalized so that two dumps
# compare with `diff`: iptables/ip6tables rules (nft-backed and legacy), the nft ruleset, network links, addresses,
# routes and rules, mounts, sysctls (minus counters that change by themselves), cgroup directories, and the paths
# outside the state directory that the daemons create. Used by test/cluster/cluster.test.ts.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set +e +o pipefail
section() { echo "## $1"; }
for tool in iptables-save ip6tables-save iptables-legacy-save ip6tables-legacy-save; do
  command -v "$tool" >/dev/null || continue
  section "$tool"
  # Drop comments (timestamps) and packet counters.
  "$tool" 2>/dev/null | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]/[0:0]/'
done
if command -v nft >/dev/null; then section nft; nft list ruleset 2>/dev/null | sed -E 's/counter packets [0-9]+ bytes [0-9]+/counter/'; fi
section links; ip -o link show | sed -E 's/^[0-9]+: //; s/ qlen [0-9]+//' | awk '{print $1, $2}' | sort
section addresses; ip -o addr show | awk '{print $2, $3, $4}' | sort
section routes; ip route show table all | sort
section rules; ip rule show
section mounts; awk '{print $5, $9, $10}' /proc/self/mountinfo | sort
section sysctls
# Counters and random values that the kernel changes on its own.
sysctl -a 2>/dev/null | grep -vE '^(kernel\.random\.|fs\.(dentry-state|file-nr|inode-nr|inode-state|aio-nr|quota\.)|kernel\.ns_last_pid|kernel\.pty\.nr|net\.netfilter\.nf_conntrack_count|kernel\.perf_event_max_sample_rate|vm\.stat_refresh|net\.ipv4\.tcp_mem|net\.ipv4\.udp_mem|fs\.binfmt_misc)' | sort
section cgroups; find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d 2>/dev/null | sort
section paths; for p in "${OUTSIDE_PATHS[@]}"; do [ -e "$p" ] && echo "$p"; done; true
