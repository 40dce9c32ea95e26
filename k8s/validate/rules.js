'use strict';
// Reads rendered manifests on stdin and prints the PrometheusRule's spec as a
// plain Prometheus rules file, for `promtool check rules` and `promtool test
// rules` (tests/k8s/rules_test.sh): the rules tested are the rules deployed.
const yaml = require('js-yaml');
const docs = yaml.loadAll(require('node:fs').readFileSync(0, 'utf8')).filter(Boolean);
const rules = docs.filter((d) => d.kind === 'PrometheusRule');
if (rules.length !== 1) {
  console.error(`expected one PrometheusRule, found ${rules.length}`);
  process.exit(1);
}
process.stdout.write(yaml.dump({ groups: rules[0].spec.groups }));
