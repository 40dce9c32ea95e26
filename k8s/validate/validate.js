'use strict';
// Reads multi-document YAML (kubectl kustomize k8s/) on stdin and validates
// every object against its Kubernetes (or Prometheus operator) schema, offline.
// Prints one line per object; exits 1 if any is invalid or of an unknown kind.
const yaml = require('js-yaml');

// The model packages are ES modules: loaded with import().
async function modelFor(apiVersion, kind) {
  const pkg = apiVersion.startsWith('monitoring.coreos.com/')
    ? '@kubernetes-models/prometheus-operator'
    : 'kubernetes-models';
  try {
    return (await import(`${pkg}/${apiVersion}`))[kind];
  } catch (e) {
    return undefined;
  }
}

async function main() {
  const input = require('node:fs').readFileSync(0, 'utf8');
  let failures = 0;
  let count = 0;
  for (const doc of yaml.loadAll(input)) {
    if (!doc) continue;
    count++;
    const name = `${doc.apiVersion} ${doc.kind} ${doc.metadata && doc.metadata.name}`;
    const Model = await modelFor(doc.apiVersion, doc.kind);
    if (!Model) {
      console.log(`UNKNOWN ${name}`);
      failures++;
      continue;
    }
    if (doc.kind === 'Secret' && doc.data) {
      // kustomize wraps long base64 values over several lines; the API
      // server's decoder (Go's encoding/base64) ignores the newlines, the
      // schema's "byte" format does not.
      for (const k of Object.keys(doc.data)) doc.data[k] = String(doc.data[k]).replace(/\s+/g, '');
    }
    try {
      new Model(doc).validate();
      console.log(`ok ${name}`);
    } catch (e) {
      console.log(`INVALID ${name}: ${e.message}`);
      failures++;
    }
}
console.log(`${count} objects, ${failures} invalid`);
process.exitCode = failures === 0 && count > 0 ? 0 : 1;
}

main();
