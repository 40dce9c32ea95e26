#!/usr/bin/env bash
# k8s/ renders with kustomize and every object validates against its schema
# (kubernetes-models, offline); a deliberately broken Deployment must not.
set -euo pipefail
k8s_dir=$(dirname "$(readlink -f k8s/kustomization.yaml)")
validate="$k8s_dir/validate/validate.js"
if [ ! -d "$k8s_dir/validate/node_modules/kubernetes-models" ]; then
  echo "k8s/validate/node_modules is missing: run scripts/setup.sh" >&2
  exit 1
fi
rendered=$(kubectl kustomize "$k8s_dir")
echo "$rendered" | node "$validate"
for kind in Deployment Service HorizontalPodAutoscaler PodDisruptionBudget \
            NetworkPolicy ServiceMonitor ConfigMap; do
  grep -q "^kind: $kind$" <<<"$rendered" || { echo "missing $kind" >&2; exit 1; }
done
# The validator must catch a bad object, or its "ok" means nothing.
if sed 's/replicas: 2/replicas: two/' <<<"$rendered" | node "$validate" >/dev/null; then
  echo "validator accepted replicas: two" >&2
  exit 1
fi
echo "manifests: rendered and valid"
