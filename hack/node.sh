#!/usr/bin/env bash
# Builds the node of `make cluster` from the Go module proxy into $1
# (default bin/k8s, beside kube-apiserver and etcd), because no prebuilt
# binary can be downloaded here: kubelet, kube-controller-manager,
# kube-scheduler and kube-proxy v1.37.2 (one build that shares kube-apiserver's
# packages), containerd v2.4.2 with ctr and its runc shim, and CoreDNS
# v1.15.0 with the plugins the cluster uses. A binary that is already there
# is kept. runc, the CNI plugins and iptables come from Debian
# (hack/test-deps.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/bin/k8s}" && cd "${1:-$root/bin/k8s}" && pwd)
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# build DIR SECONDS-HINT PACKAGE... builds the packages whose binaries are
# missing in the wrapper module DIR, with extra go build arguments in
# $buildflags.
build() {
  local dir=$1 hint=$2 missing=()
  shift 2
  for pkg in "$@"; do
    [ -x "$out/${pkg##*/}" ] || missing+=("$pkg")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo ">> Building ${missing[*]##*/} into $out ($hint)..."
  local start
  start=$(date +%s)
  (cd "$root/hack/cluster/$dir" && go build -o "$tmp/" "${buildflags[@]}" "${missing[@]}")
  mv "$tmp"/* "$out/"
  echo ">> built in $(( $(date +%s) - start ))s"
}

# Stamped, so that they report v1.37.2 (a build without the stamp reports
# v0.0.0-master, which version checks refuse).
buildflags=(-ldflags "-X k8s.io/component-base/version.gitVersion=v1.37.2 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37")
build node "about 5 minutes on 2 cores once kube-apiserver is built, whose packages they share" \
  k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy

# Static, without cgo: the snapshotters that need C libraries are left out.
buildflags=(-tags "no_btrfs no_devmapper no_zfs urfave_cli_no_docs osusergo netgo static_build"
  -ldflags "-X github.com/containerd/containerd/v2/version.Version=v2.4.2")
CGO_ENABLED=0 build containerd "about 3 minutes after them" \
  github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/ctr \
  github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2

buildflags=(-ldflags "-X github.com/coredns/coredns/coremain.GitCommit=v1.15.0")
CGO_ENABLED=0 build coredns "about 2 minutes after them" github.com/privateapps-dev/privateapp-operator/hack/cluster/coredns
