#!/usr/bin/env bash
# Images of the local cluster, imported into its containerd without a registry (`ctr images import` of
# docker-archive tarballs):
#   images.sh pause PAUSE_BINARY   the pod sandbox image (one static binary, an archive written here by hand)
#   images.sh all                  the ssl3d images built from our Dockerfile (scripts/cluster/build-images.sh)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# import_archive TAR: into containerd's k8s.io namespace, the one the kubelet uses.
import_archive() { ctr_ -n k8s.io images import "$1" >/dev/null; }

pause_image() {
  local bin="$1" w cfg layer_sum cfg_sum out="$D/images/pause.tar"
  if grep -qx "$PAUSE_IMAGE" <<< "$(ctr_ -n k8s.io images ls -q)"; then return 0; fi
  mkdir -p "$D/images"
  w="$(mktemp -d)"
  mkdir -p "$w/root" "$w/archive"
  install -m 0755 "$bin" "$w/root/pause"
  tar -C "$w/root" --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$w/layer.tar" pause
  layer_sum="$(sha256sum "$w/layer.tar" | cut -d' ' -f1)"
  cfg="{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Entrypoint\":[\"/pause\"],\"User\":\"65535:65535\"},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$layer_sum\"]}}"
  cfg_sum="$(printf '%s' "$cfg" | sha256sum | cut -d' ' -f1)"
  printf '%s' "$cfg" > "$w/archive/$cfg_sum.json"
  mkdir -p "$w/archive/$layer_sum"
  mv "$w/layer.tar" "$w/archive/$layer_sum/layer.tar"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' "$cfg_sum" "$PAUSE_IMAGE" "$layer_sum" > "$w/archive/manifest.json"
  tar -C "$w/archive" -cf "$out" .
  rm -rf "$w"
  import_archive "$out"
}

case "${1:-}" in
  pause) pause_image "$2" ;;
  all) bash "$CLUSTER_SCRIPTS/build-images.sh" build ;;
  *) die "usage: images.sh pause PAUSE_BINARY | all" ;;
esac
