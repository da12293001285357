#!/usr/bin/env bash
# Fails when the generated deepcopy code, CRDs or RBAC differ from what
# `make generate` writes from the API types and markers. The files are
# regenerated in place, so after a failure `git diff` shows what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
generated=(api/v1alpha1/zz_generated.deepcopy.go api/insights/v1alpha1/zz_generated.deepcopy.go internal/insights/openapi config/crd/bases config/rbac/role.yaml config/rbac/token_service_role.yaml config/rbac/insights_role.yaml config/webhook/manifests.yaml
  charts/privateapp-operator/templates/crds charts/privateapp-operator/templates/_generated_rbac.tpl charts/privateapp-operator/templates/webhooks.yaml)
before=$(find "${generated[@]}" -type f -print0 | sort -z | xargs -0 sha256sum)
make --no-print-directory generate >/dev/null
after=$(find "${generated[@]}" -type f -print0 | sort -z | xargs -0 sha256sum)
if [ "$before" != "$after" ]; then
  echo "Generated files were stale and have been regenerated; review and commit them:"
  diff <(echo "$before") <(echo "$after") | grep '^>' | awk '{print "  " $3}'
  exit 1
fi
echo "Generated files are up to date."
