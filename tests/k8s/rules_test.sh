#!/usr/bin/env bash
# The alerts as deployed: the PrometheusRule rendered from k8s/default, checked
# with `promtool check rules` and unit-tested with `promtool test rules`
# (tests/k8s/rules_test.yaml), Debian's promtool (package prometheus).
set -euo pipefail
k8s_dir=$(dirname "$(dirname "$(readlink -f k8s/base/kustomization.yaml)")")
tests_file=$(readlink -f tests/k8s/rules_test.yaml)
work=${TEST_TMPDIR:-$(mktemp -d)}
kubectl kustomize "$k8s_dir/default" 2>/dev/null | node "$k8s_dir/validate/rules.js" >"$work/rules.yaml"
promtool check rules "$work/rules.yaml"
sed "s|RULES_FILE|$work/rules.yaml|" "$tests_file" >"$work/rules_test.yaml"
promtool test rules "$work/rules_test.yaml"
