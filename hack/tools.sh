#!/usr/bin/env bash
# Builds the tools the chart tests run (helm, kubeconform) from their
# versions pinned in go.tool.mod into bin/tools, because their prebuilt
# binaries cannot be downloaded here. A binary that is already there is kept;
# delete bin/tools after changing a pin.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/bin/tools"
mkdir -p "$out"
build() {
  local name=$1 pkg=$2
  if [ ! -x "$out/$name" ]; then
    echo ">> Building $name from go.tool.mod into $out (helm takes about 4 minutes the first time)..."
    (cd "$root" && go build -modfile=go.tool.mod -o "$out/$name.tmp" "$pkg" && mv "$out/$name.tmp" "$out/$name")
  fi
}
build helm helm.sh/helm/v4/cmd/helm
build kubeconform github.com/yannh/kubeconform/cmd/kubeconform
