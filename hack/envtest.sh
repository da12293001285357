#!/usr/bin/env bash
# Builds the control plane that the envtest suites and `make dev` run
# (kube-apiserver and etcd) from the Go module proxy into $1 (default
# bin/k8s), because no prebuilt binary can be downloaded here. A binary that
# is already there is kept.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/bin/k8s}" && cd "${1:-$root/bin/k8s}" && pwd)

# Stamped, so that it reports v1.37.2 (a build without the stamp reports
# v0.0.0-master, which Helm's and the chart's version checks read).
version="-X k8s.io/component-base/version.gitVersion=v1.37.2 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"

if [ ! -x "$out/etcd" ]; then
  echo ">> Building etcd v3.7.0 into $out (about 2 minutes cold)..."
  (cd "$root/hack/envtest/etcd" && go build -o "$out/etcd.tmp" . && mv "$out/etcd.tmp" "$out/etcd")
fi
# A kube-apiserver built before it was stamped is built again (a link step
# once its packages are cached).
if [ -x "$out/kube-apiserver" ] && ! "$out/kube-apiserver" --version 2>/dev/null | grep -q 'v1\.37\.2$'; then
  rm -f "$out/kube-apiserver"
fi
if [ ! -x "$out/kube-apiserver" ]; then
  echo ">> Building kube-apiserver v1.37.2 into $out (about 10 minutes the first time on 2 cores)..."
  start=$(date +%s)
  (cd "$root/hack/envtest/kube-apiserver" &&
    go build -o "$out/kube-apiserver.tmp" -ldflags "$version" k8s.io/kubernetes/cmd/kube-apiserver &&
    mv "$out/kube-apiserver.tmp" "$out/kube-apiserver")
  echo ">> kube-apiserver built in $(( $(date +%s) - start ))s"
fi
if [ ! -x "$out/kubectl" ] && command -v kubectl >/dev/null; then
  # envtest looks for kubectl beside the control plane.
  ln -sf "$(command -v kubectl)" "$out/kubectl"
fi
