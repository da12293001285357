#!/usr/bin/env bash
# Builds the node components of a real single-node cluster (kubelet,
# kube-controller-manager, kube-scheduler, kube-proxy v1.37.2) from the Go
# module proxy into $1 (default bin/k8s, beside kube-apiserver and etcd),
# because no prebuilt binary can be downloaded here. A binary that is
# already there is kept. They report v1.37.2 (a build without the version
# stamp reports v0.0.0-master, which version checks refuse).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/bin/k8s}" && cd "${1:-$root/bin/k8s}" && pwd)

components=(kubelet kube-controller-manager kube-scheduler kube-proxy)
missing=()
for c in "${components[@]}"; do
  [ -x "$out/$c" ] || missing+=("k8s.io/kubernetes/cmd/$c")
done
[ ${#missing[@]} -gt 0 ] || exit 0
echo ">> Building ${missing[*]##*/} v1.37.2 into $out (about 4 minutes on 2 cores once kube-apiserver is built, whose packages it shares; 15 cold)..."
start=$(date +%s)
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
version="-X k8s.io/component-base/version.gitVersion=v1.37.2 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
(cd "$root/hack/cluster/node" && go build -o "$tmp/" -ldflags "$version" "${missing[@]}")
mv "$tmp"/* "$out/"
echo ">> node components built in $(( $(date +%s) - start ))s"
