#!/usr/bin/env bash
# `npm run cluster:up`: a real single-node Kubernetes cluster on this machine (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet + containerd + runc + CNI bridge, kube-proxy, CoreDNS), with the
# ssl3d images imported (scripts/cluster/images.sh). Idempotent: what already runs is left running. Must run as root.
# Its last two output lines are `KUBECONFIG=<path>` and `KUBECTL=<path>`. `npm run cluster:down` undoes everything.
# Design and limits: docs/local-cluster.md.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

record_outside_paths() {
  [ -f "$D/preexisting" ] && return 0
  local p
  touch "$D/.ssl3d-cluster"
  if command -v nft >/dev/null; then nft list tables > "$D/nft-tables.before"; fi
  for p in "${OUTSIDE_PATHS[@]}"; do [ -e "$p" ] && echo "$p"; done > "$D/preexisting.tmp" || true
  mv "$D/preexisting.tmp" "$D/preexisting"
}

# Certificates: one CA; the API server's serving certificate; one client certificate (+ kubeconfig) per component.
make_pki() {
  local p="$D/pki"
  [ -f "$p/ca.crt" ] || openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=ssl3d-local-ca" \
    -keyout "$p/ca.key" -out "$p/ca.crt" 2>/dev/null
  [ -f "$p/sa.key" ] || { openssl genrsa -out "$p/sa.key" 2048 2>/dev/null; openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null; }
  cert apiserver "/CN=kube-apiserver" "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:$NODE_IP,IP:127.0.0.1,IP:$SERVICE_API_IP" serverAuth
  cert kubelet-serving "/CN=$NODE_NAME" "DNS:$NODE_NAME,IP:$NODE_IP" serverAuth
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "" clientAuth
  cert admin "/O=system:masters/CN=ssl3d-local-admin" "" clientAuth
  cert controller-manager "/CN=system:kube-controller-manager" "" clientAuth
  cert scheduler "/CN=system:kube-scheduler" "" clientAuth
  cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "" clientAuth
  cert kube-proxy "/CN=system:kube-proxy" "" clientAuth
  cert coredns "/CN=ssl3d:coredns" "" clientAuth
  local c
  for c in admin controller-manager scheduler kubelet kube-proxy coredns; do kubeconfig "$c"; done
}

# cert NAME SUBJECT SANS USAGE: a key and a CA-signed certificate, made once.
cert() {
  local p="$D/pki" name="$1" subj="$2" sans="$3" usage="$4" ext
  [ -f "$p/$name.crt" ] && return 0
  ext="$(mktemp)"
  { echo "basicConstraints=CA:FALSE"; echo "keyUsage=critical,digitalSignature,keyEncipherment"; echo "extendedKeyUsage=$usage"
    [ -z "$sans" ] || echo "subjectAltName=$sans"; } > "$ext"
  openssl req -newkey rsa:2048 -nodes -subj "$subj" -keyout "$p/$name.key" -out "$p/$name.csr" 2>/dev/null
  openssl x509 -req -in "$p/$name.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial -days 3650 \
    -extfile "$ext" -out "$p/$name.crt" 2>/dev/null
  rm -f "$ext" "$p/$name.csr"
}

kubeconfig() {
  local name="$1" p="$D/pki"
  write_if_changed "$D/kubeconfigs/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ssl3d-local
  cluster: {server: "https://$NODE_IP:$API_PORT", certificate-authority: "$p/ca.crt"}
users:
- name: $name
  user: {client-certificate: "$p/$name.crt", client-key: "$p/$name.key"}
contexts:
- name: ssl3d-local
  context: {cluster: ssl3d-local, user: $name}
current-context: ssl3d-local
EOF
}

# A bridge with the node address; per-interface forwarding on it only (pod -> Service -> pod). The machine-wide
# net.ipv4.ip_forward is left alone.
network() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$NODE_IP/24" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
  sysctl -qw "net.ipv4.conf.$BRIDGE.forwarding=1"
  write_if_changed "$D/cni/net.d/10-ssl3d.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "ssl3d", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": false, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$D/cni/ipam", "ranges": [[{"subnet": "$POD_CIDR", "rangeStart": "10.244.0.10"}]],
            "routes": [{"dst": "0.0.0.0/0", "gw": "$NODE_IP"}]}},
  {"type": "loopback"}
]}
EOF
}

# start NAME CMD...: runs CMD detached (own session), output to $D/logs/NAME.log, unless NAME already runs.
start() {
  local name="$1"; shift
  if pid_alive "$name"; then return 0; fi
  log "starting $name"
  setsid "$@" >> "$D/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$D/pids/$name.pid"
  echo "$D" > "$D/pids/$name.cmd"
  # A marker only our processes carry in their command line: the state directory (every daemon gets a path in it).
}

wait_for() { # wait_for WHAT SECONDS CMD...
  local what="$1" secs="$2" i; shift 2
  for ((i = 0; i < secs * 2; i++)); do if "$@" >/dev/null 2>&1; then return 0; fi; sleep 0.5; done
  die "$what not ready after ${secs}s (logs: $D/logs/)"
}

containerd_up() {
  write_if_changed "$D/containerd/config.toml" <<EOF
version = 2
root = "$CTR_ROOT/root"
state = "$D/containerd/state"
[grpc]
  address = "$CTR_SOCK"
[ttrpc]
  address = "$D/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$D/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Root on these machines lacks CAP_SYS_RESOURCE: raising a container's oom_score_adj fails in runc otherwise.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$D/cni/net.d"
EOF
  mkdir -p "$CTR_ROOT/root" "$CTR_ROOT/imported"
  start containerd containerd --config "$D/containerd/config.toml"
  wait_for containerd 30 ctr_ version
  bash "$CLUSTER_SCRIPTS/images.sh" pause "$PAUSE_BIN"
}

etcd_up() {
  [ -f "$D/config/etcd-ports" ] || free_ports 2 > "$D/config/etcd-ports"
  read -r ETCD_CLIENT ETCD_PEER < "$D/config/etcd-ports"
  start etcd etcd --name=ssl3d --data-dir="$D/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_CLIENT" --advertise-client-urls="http://127.0.0.1:$ETCD_CLIENT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER" \
    --initial-cluster="ssl3d=http://127.0.0.1:$ETCD_PEER" --logger=zap --log-level=warn
}

# free_ports N: N loopback TCP ports free right now (other test clusters on this machine pick random ports too).
free_ports() {
  python3 -c 'import socket,sys
ss=[socket.socket() for _ in range(int(sys.argv[1]))]
[s.bind(("127.0.0.1",0)) for s in ss]
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

apiserver_up() {
  local p="$D/pki"
  start kube-apiserver "$(bin kube-apiserver)" --etcd-servers="http://127.0.0.1:$ETCD_CLIENT" \
    --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port="$API_PORT" \
    --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" --client-ca-file="$p/ca.crt" \
    --kubelet-client-certificate="$p/apiserver-kubelet-client.crt" --kubelet-client-key="$p/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$p/ca.crt" --kubelet-preferred-address-types=InternalIP \
    --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range="$SERVICE_CIDR" --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction --allow-privileged=false --profiling=false --v=1
  wait_for kube-apiserver 120 kubectl_admin get --raw /readyz
}

controllers_up() {
  local p="$D/pki"
  start kube-controller-manager "$(bin kube-controller-manager)" \
    --kubeconfig="$D/kubeconfigs/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$D/kubeconfigs/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$D/kubeconfigs/controller-manager.kubeconfig" \
    --bind-address="$NODE_IP" --leader-elect=false --use-service-account-credentials \
    --root-ca-file="$p/ca.crt" --service-account-private-key-file="$p/sa.key" \
    --cluster-signing-cert-file="$p/ca.crt" --cluster-signing-key-file="$p/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" --allocate-node-cidrs=false --v=1
  start kube-scheduler "$(bin kube-scheduler)" --kubeconfig="$D/kubeconfigs/scheduler.kubeconfig" \
    --authentication-kubeconfig="$D/kubeconfigs/scheduler.kubeconfig" \
    --authorization-kubeconfig="$D/kubeconfigs/scheduler.kubeconfig" \
    --bind-address="$NODE_IP" --leader-elect=false --v=1
}

kubelet_up() {
  local p="$D/pki" kv binds="" s key val
  write_if_changed "$D/config/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: $NODE_IP
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$p/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "$p/kubelet-serving.crt"
tlsPrivateKeyFile: "$p/kubelet-serving.key"
cgroupDriver: cgroupfs
failCgroupV1: false
containerRuntimeEndpoint: "unix://$CTR_SOCK"
clusterDNS: [$NODE_IP]
clusterDomain: cluster.local
resolvConf: "$D/config/resolv.conf"
podLogsDir: "$D/pod-logs"
evictionHard: {memory.available: 200Mi, nodefs.available: 2%, imagefs.available: 2%}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
serializeImagePulls: false
# Root here lacks CAP_SYS_RESOURCE: the kubelet cannot lower its own oom_score_adj (default -999).
oomScoreAdj: 0
EOF
  write_if_changed "$D/config/resolv.conf" <<< "nameserver $NODE_IP"
  # The kubelet root is a shared mount, so the volume mounts the kubelet makes in its own mount namespace reach
  # containerd's.
  mkdir -p "$D/kubelet"
  if ! findmnt -rno TARGET "$D/kubelet" >/dev/null; then mount --bind "$D/kubelet" "$D/kubelet"; mount --make-rshared "$D/kubelet"; fi
  for kv in "${KUBELET_SYSCTLS[@]}"; do
    key="${kv%%=*}"; val="${kv#*=}"; s="$D/sysctl/${key//\//.}"
    echo "$val" > "$s"
    binds="$binds mount --bind $s /proc/sys/$key && mount -o remount,bind,ro /proc/sys/$key &&"
  done
  start kubelet unshare --mount --propagation unchanged -- sh -c "mount --make-rprivate /proc &&$binds exec \"\$0\" \"\$@\"" \
    "$(bin kubelet)" --config="$D/config/kubelet.yaml" --kubeconfig="$D/kubeconfigs/kubelet.kubeconfig" \
    --root-dir="$D/kubelet" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1
}

proxy_dns_up() {
  write_if_changed "$D/config/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$D/kubeconfigs/kube-proxy.kubeconfig"}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
bindAddress: $NODE_IP
healthzBindAddress: $NODE_IP:10256
metricsBindAddress: $NODE_IP:10249
nodePortAddresses: [$NODE_IP/32]
iptables: {localhostNodePorts: false, masqueradeAll: false}
oomScoreAdj: 0
# 0 = leave the machine's conntrack sysctls as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s, udpTimeout: 0s, udpStreamTimeout: 0s}
EOF
  start kube-proxy "$(bin kube-proxy)" --config="$D/config/kube-proxy.yaml" --v=1
  write_if_changed "$D/config/Corefile" <<EOF
.:53 {
    bind $NODE_IP
    errors
    ready $NODE_IP:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $D/kubeconfigs/coredns.kubeconfig ssl3d-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
    loadbalance
}
EOF
  start coredns "$BIN/coredns-$COREDNS_VERSION" -conf "$D/config/Corefile"
}

# RBAC for CoreDNS, the default StorageClass and pre-made PersistentVolumes (hostPath directories under
# $D/volumes, writable by the non-root pods) so that PersistentVolumeClaims bind.
cluster_objects() {
  local i n="${SSL3D_CLUSTER_PVS:-12}"
  {
    cat <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "ssl3d:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "ssl3d:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "ssl3d:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "ssl3d:coredns"}]
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
reclaimPolicy: Retain
EOF
    for ((i = 1; i <= n; i++)); do
      mkdir -p "$D/volumes/pv$i"; chmod 0777 "$D/volumes/pv$i"
      cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: local-pv$i}
spec:
  capacity: {storage: 100Gi}
  accessModes: [ReadWriteOnce, ReadWriteMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local
  hostPath: {path: "$D/volumes/pv$i", type: Directory}
EOF
    done
  } | kubectl_admin apply -f - >/dev/null
}

node_ready() { kubectl_admin get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -qx True; }
dns_ready() { python3 -c 'import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=2)' "http://$NODE_IP:8181/ready"; }

main() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (mounts, network namespaces, iptables, cgroups)"
  SSL3D_CACHE="$SSL3D_CACHE" bash "$REPO/scripts/setup.d/30-kube-apiserver.sh"
  SSL3D_CACHE="$SSL3D_CACHE" bash "$REPO/scripts/setup.d/35-kube-node.sh"
  PAUSE_BIN="$(ls -t "$BIN"/pause-* | head -1)"
  mkdir -p "$D"/{pids,logs,pki,kubeconfigs,config,cni/net.d,cni/ipam,containerd,pod-logs,sysctl,volumes}
  chmod 700 "$D/pki"
  record_outside_paths
  make_pki
  network
  containerd_up
  etcd_up
  apiserver_up
  controllers_up
  kubelet_up
  proxy_dns_up
  cluster_objects
  wait_for "node $NODE_NAME" 180 node_ready
  wait_for CoreDNS 60 dns_ready
  log "node $NODE_NAME Ready, CoreDNS ready ($SECONDS s)"
  if [ "${SSL3D_CLUSTER_IMAGES:-1}" = "1" ]; then bash "$CLUSTER_SCRIPTS/images.sh" all; fi
  log "ready: node $NODE_NAME ($SECONDS s)"
  echo "KUBECONFIG=$D/kubeconfigs/admin.kubeconfig"
  echo "KUBECTL=$(bin kubectl)"
}

# Sourcing this file (e.g. to start single parts while debugging) defines the functions only.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
