#!/usr/bin/env bash
# k8s/ as a cluster would get it: the default deployment, the monitoring kustomization and the
# example and redis overlays are rendered with kubectl kustomize; every object validates
# against its schema (kubernetes-models, offline), and the base and the overlay
# mean what they must (k8s/validate/check.js: selectors, NetworkPolicy reach,
# limits, probes, spread, PDB, namespaces). Broken inputs must be caught, or
# an "ok" would mean nothing.
set -euo pipefail
k8s_dir=$(dirname "$(dirname "$(readlink -f k8s/base/kustomization.yaml)")")
validate="$k8s_dir/validate/validate.js"
check="$k8s_dir/validate/check.js"
if [ ! -d "$k8s_dir/validate/node_modules/kubernetes-models" ]; then
  echo "k8s/validate/node_modules is missing: run scripts/setup.sh" >&2
  exit 1
fi
echo "kubectl: $(kubectl version --client 2>/dev/null | head -1)"

for target in default overlays/example overlays/redis; do
  echo "=== k8s/$target"
  rendered=$(kubectl kustomize "$k8s_dir/$target" 2>/dev/null)
  echo "$rendered" | node "$validate"
  echo "$rendered" | node "$check"
done
echo "=== k8s/monitoring"
dashboards=$(kubectl kustomize "$k8s_dir/monitoring" 2>/dev/null)
echo "$dashboards" | node "$validate"
grep -q 'grafana_dashboard: "1"' <<<"$dashboards" || { echo "dashboard lacks its label" >&2; exit 1; }
grep -q 'namespace: monitoring' <<<"$dashboards" || { echo "dashboard not in monitoring" >&2; exit 1; }
grep -q 'name: egress-grafana-dashboard$' <<<"$dashboards" || { echo "dashboard name is hashed" >&2; exit 1; }

rendered=$(kubectl kustomize "$k8s_dir/default" 2>/dev/null)
# The checks must catch what they guard against: must_refuse CHECKER WHAT SED
# fails the test when CHECKER accepts the manifests edited by SED.
must_refuse() {
  if sed "$3" <<<"$rendered" | node "$1" >/dev/null; then
    echo "$(basename "$1") accepted $2" >&2
    exit 1
  fi
}
must_refuse "$validate" "replicas: two" 's/replicas: 2/replicas: two/'
# A label of egress's added to the kube-dns selector (what kustomize's
# includeSelectors did): DNS would be blocked in a real cluster.
must_refuse "$check" "a polluted kube-dns selector" \
  's/^\(\s*\)k8s-app: kube-dns/\1k8s-app: kube-dns\n\1app.kubernetes.io\/name: egress/'
must_refuse "$check" "egress to the metadata address" 's/- 169.254.0.0\/16/- 169.254.0.0\/24/'
# Without caller authentication, egressd would be an open proxy in the cluster.
must_refuse "$check" "an egressd without caller authentication" '/--auth_tokens_file=/d'
must_refuse "$check" "--allow_unauthenticated" \
  's/^\(\s*\)- --auth_tokens_file=.*/&\n\1- --allow_unauthenticated/'
# The overlay's origins: a proxy egress cannot reach, and a Secret mounted so
# that its rotation never reaches the pod.
rendered=$(kubectl kustomize "$k8s_dir/overlays/example" 2>/dev/null)
grep -q 'name: egress-to-proxy' <<<"$rendered" || { echo "overlay lacks its proxy policy" >&2; exit 1; }
must_refuse "$check" "an unreachable upstream proxy" 's/- port: 3128/- port: 3129/'
must_refuse "$check" "a Secret mounted with subPath" \
  's/^\(\s*\)- mountPath: \/etc\/egress-secrets\/openai/&\n\1  subPath: authorization/'
must_refuse "$check" "an injected header's file in no Secret" \
  's/value_file: "\/etc\/egress-secrets\/openai/value_file: "\/etc\/other/'
# The Redis overlay: egressd must reach Redis, and Redis let egressd alone in.
rendered=$(kubectl kustomize "$k8s_dir/overlays/redis" 2>/dev/null)
grep -q -- '--redis=egress-redis:6379' <<<"$rendered" || { echo "overlay lacks --redis" >&2; exit 1; }
must_refuse "$check" "a Redis egressd cannot reach" 's/- port: 6379/- port: 6380/'
must_refuse "$check" "a Redis open to every namespace" \
  's/^\(\s*\)- podSelector:$/\1- namespaceSelector: {}\n\1  podSelector:/'
echo "manifests: rendered, valid and meaning what they must"
