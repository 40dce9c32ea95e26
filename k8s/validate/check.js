'use strict';
// Reads rendered manifests (kubectl kustomize k8s/ or an overlay) on stdin and
// checks what they mean in a cluster, beyond their schema:
//   - the origins' upstream proxies are reachable (a NetworkPolicy rule on
//     their port) and the files of their secrets (injected headers, proxy
//     credentials) are in mounted Secrets, mounted whole so that a rotation
//     reaches the pod;
//   - the NetworkPolicy selects egress's own pods; its DNS rule selects
//     kube-dns alone and its caller rule the caller label alone (no label of
//     egress's leaks into someone else's selector); egress reaches public
//     addresses but no private range and no cloud metadata address;
//   - every selector (Services, PDB, ServiceMonitor, spread) matches the pods;
//   - callers authenticate (tokens from a mounted Secret, or mutual TLS);
//   - every container has requests and limits; probes use the gRPC health
//     service on the gRPC port; the grace period outlasts --drain_timeout;
//   - pods spread over zones and nodes; the PDB lets one pod go at a time;
//   - the ServiceMonitor and PrometheusRule carry the release label;
//   - with --redis (k8s/overlays/redis), egressd reaches Redis and Redis lets
//     egressd alone in;
//   - every object is in the one Namespace the manifests create.
// Prints each failed check and exits 1 if there is any.
const yaml = require('js-yaml');

const failures = [];
function check(ok, what) {
  if (!ok) failures.push(what);
}
function equal(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

// CIDR membership for IPv4 and IPv6, with BigInt.
function parseIp(text) {
  if (text.includes(':')) {
    const [head, tail] = text.split('::');
    const part = (s) => (s ? s.split(':') : []);
    const h = part(head);
    const t = tail === undefined ? [] : part(tail);
    const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
    return { v6: true, value: groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n) };
  }
  return { v6: false, value: text.split('.').reduce((acc, o) => (acc << 8n) | BigInt(Number(o)), 0n) };
}
function inCidr(ip, cidr) {
  const [base, bits] = cidr.split('/');
  const a = parseIp(ip);
  const b = parseIp(base);
  if (a.v6 !== b.v6) return false;
  const width = a.v6 ? 128n : 32n;
  const shift = width - BigInt(Number(bits));
  return (a.value >> shift) === (b.value >> shift);
}
// Whether the policy's egress rules let pods reach `ip` on TCP 443.
function egressAllows(policy, ip) {
  return (policy.spec.egress || []).some((rule) => {
    const ports = rule.ports || [];
    const portOk = ports.length === 0 || ports.some((p) => p.port === 443);
    return portOk && (rule.to || []).some((peer) =>
      peer.ipBlock && inCidr(ip, peer.ipBlock.cidr) &&
      !(peer.ipBlock.except || []).some((c) => inCidr(ip, c)));
  });
}
function selects(selector, labels) {
  const want = (selector && (selector.matchLabels || selector)) || {};
  return Object.keys(want).length > 0 &&
    Object.entries(want).every(([k, v]) => labels[k] === v);
}

const docs = yaml.loadAll(require('node:fs').readFileSync(0, 'utf8')).filter(Boolean);
// The Redis of the shared rate limits (k8s/overlays/redis) is checked on its
// own, below; everything else is egressd's.
const isRedis = (d) => ((d.metadata || {}).labels || {})['app.kubernetes.io/component'] === 'redis';
const all = (kind) => docs.filter((d) => d.kind === kind && !isRedis(d));
const one = (kind) => {
  const found = all(kind);
  check(found.length === 1, `exactly one ${kind} (found ${found.length})`);
  return found[0];
};

const deployment = one('Deployment');
const podLabels = deployment.spec.template.metadata.labels;
check(selects(deployment.spec.selector, podLabels), 'Deployment selector matches its pods');

// Containers: resources and probes.
for (const c of deployment.spec.template.spec.containers) {
  const r = c.resources || {};
  check(r.limits && r.limits.cpu && r.limits.memory, `container ${c.name} has cpu and memory limits`);
  check(r.requests && r.requests.cpu && r.requests.memory, `container ${c.name} has requests`);
  for (const probe of ['readinessProbe', 'livenessProbe']) {
    const p = c[probe];
    check(p && p.grpc && p.grpc.port === 50051,
      `container ${c.name} ${probe} uses the gRPC health service on 50051`);
  }
}

// The grace period outlasts the drain (read from the generated config file).
const configMap = all('ConfigMap').find((m) => m.data && m.data['egressd.textproto']);
check(configMap, 'a ConfigMap carries egressd.textproto');
if (configMap) {
  const m = /drain_timeout\s*\{\s*seconds:\s*(\d+)/.exec(configMap.data['egressd.textproto']);
  const drain = m ? Number(m[1]) : 20;
  check(deployment.spec.template.spec.terminationGracePeriodSeconds > drain,
    `terminationGracePeriodSeconds > drain_timeout (${drain} s)`);
  const mounted = deployment.spec.template.spec.volumes.some(
    (v) => v.configMap && v.configMap.name === configMap.metadata.name);
  check(mounted, 'the Deployment mounts the generated config ConfigMap by its name');
}
const configText = (configMap && configMap.data['egressd.textproto']) || '';

// Callers authenticate: a tokens file from a mounted Secret (or mutual TLS),
// never an open listener.
const egressd = deployment.spec.template.spec.containers.find((c) => c.name === 'egressd');
const args = (egressd && egressd.args) || [];
const flag = (name) => {
  const arg = args.find((a) => a.startsWith(`--${name}=`));
  return arg && arg.slice(name.length + 3);
};
check(!args.some((a) => /^--allow_unauthenticated(=(true|1|yes))?$/.test(a)),
  'egressd is not started with --allow_unauthenticated');
const tokensFile = flag('auth_tokens_file');
check(tokensFile || flag('client_ca'),
  'egressd authenticates callers (--auth_tokens_file or --client_ca)');
if (tokensFile) {
  const mount = (egressd.volumeMounts || []).find((m) => tokensFile.startsWith(`${m.mountPath}/`));
  const volume = mount && deployment.spec.template.spec.volumes.find((v) => v.name === mount.name);
  check(volume && volume.secret && volume.secret.secretName,
    `--auth_tokens_file=${tokensFile} is in a mounted Secret`);
  const secrets = all('Secret');
  if (volume && volume.secret && secrets.length > 0) {
    check(secrets.some((s) => s.metadata.name === volume.secret.secretName),
      `the tokens volume names the generated Secret (${volume.secret.secretName})`);
  }
}

// Spread over zones and nodes.
const spread = deployment.spec.template.spec.topologySpreadConstraints || [];
for (const key of ['topology.kubernetes.io/zone', 'kubernetes.io/hostname']) {
  const c = spread.find((s) => s.topologyKey === key);
  check(c && selects(c.labelSelector, podLabels), `pods spread over ${key}`);
}

// Everything that selects egress's pods selects them.
for (const svc of all('Service')) {
  check(selects(svc.spec.selector, podLabels), `Service ${svc.metadata.name} selects the pods`);
}
const pdb = one('PodDisruptionBudget');
check(pdb && selects(pdb.spec.selector, podLabels), 'PDB selects the pods');
check(pdb && pdb.spec.maxUnavailable === 1 && pdb.spec.minAvailable === undefined,
  'PDB lets one pod go at a time (maxUnavailable: 1)');
const hpa = one('HorizontalPodAutoscaler');
check(hpa && hpa.spec.scaleTargetRef.kind === 'Deployment' &&
  hpa.spec.scaleTargetRef.name === deployment.metadata.name, 'HPA scales the Deployment');
// A stream holds a worker with almost no CPU: CPU alone under-scales.
check(hpa && (hpa.spec.metrics || []).some((m) => m.type === 'Pods' &&
  m.pods.metric.name === 'egress_workers_busy_ratio'),
  'HPA also scales on egress_workers_busy_ratio (workers held by streams)');

for (const kind of ['ServiceMonitor', 'PrometheusRule']) {
  const m = one(kind);
  check(m && m.metadata.labels && m.metadata.labels.release,
    `${kind} carries the release label kube-prometheus-stack selects by`);
}
const monitor = all('ServiceMonitor')[0];
if (monitor) {
  check(all('Service').some((s) => selects(monitor.spec.selector, s.metadata.labels || {})),
    'ServiceMonitor selects a Service');
}

// The origins' secrets: each file in a Secret mounted as a directory (a
// subPath mount never sees the Secret change), which the manifests create
// when they generate Secrets at all.
const mounts = (egressd && egressd.volumeMounts) || [];
for (const m of configText.matchAll(/(value_file|credentials_file):\s*"([^"]+)"/g)) {
  const file = m[2];
  const mount = mounts.find((v) => file.startsWith(`${v.mountPath}/`));
  const volume = mount && deployment.spec.template.spec.volumes.find((v) => v.name === mount.name);
  check(volume && volume.secret, `${m[1]} ${file} is in a mounted Secret`);
  check(mount && !mount.subPath, `${file} is mounted without subPath, so that a rotation reaches it`);
  if (volume && volume.secret && all('Secret').length > 0) {
    check(all('Secret').some((s) => s.metadata.name === volume.secret.secretName),
      `the manifests create the Secret ${volume.secret.secretName} that holds ${file}`);
  }
}

// The NetworkPolicies: all that select egress's pods add up.
const policies = all('NetworkPolicy').filter((p) => selects(p.spec.podSelector, podLabels));
check(all('NetworkPolicy').length === policies.length,
  'every NetworkPolicy selects the egress pods');
for (const m of configText.matchAll(/url:\s*"http:\/\/[^":\/]+:(\d+)"/g)) {
  const port = Number(m[1]);
  check(policies.some((p) => (p.spec.egress || []).some((rule) =>
    (rule.ports || []).some((q) => q.port === port) && (rule.to || []).length > 0)),
  `a NetworkPolicy lets egress reach its upstream proxy on port ${port}`);
}
const policy = all('NetworkPolicy').find((p) => p.metadata.name === 'egress');
check(policy, 'the NetworkPolicy egress');
if (policy) {
  check(selects(policy.spec.podSelector, podLabels), 'NetworkPolicy applies to the egress pods');
  const grpcRule = policy.spec.ingress.find((r) => (r.ports || []).some((p) => p.port === 50051));
  check(grpcRule, 'an ingress rule for gRPC (50051)');
  if (grpcRule) {
    for (const peer of grpcRule.from) {
      check(equal(peer.podSelector.matchLabels, { 'egress.example.com/client': 'true' }),
        'the gRPC rule selects callers by the client label alone: ' + JSON.stringify(peer.podSelector));
    }
  }
  const dnsRule = policy.spec.egress.find((r) => (r.ports || []).some((p) => p.port === 53));
  check(dnsRule, 'an egress rule for DNS (53)');
  if (dnsRule) {
    check(equal(dnsRule.ports.map((p) => p.protocol).sort(), ['TCP', 'UDP']), 'DNS over UDP and TCP');
    for (const peer of dnsRule.to) {
      check(equal(peer.podSelector.matchLabels, { 'k8s-app': 'kube-dns' }),
        'the DNS rule selects kube-dns alone: ' + JSON.stringify(peer.podSelector));
      check(equal(peer.namespaceSelector.matchLabels, { 'kubernetes.io/metadata.name': 'kube-system' }),
        'the DNS rule looks in kube-system');
    }
  }
  for (const ip of ['93.184.216.34', '2606:2800:220:1:248:1893:25c8:1946']) {
    check(egressAllows(policy, ip), `egress reaches the public address ${ip}`);
  }
  for (const ip of ['10.1.2.3', '172.20.0.1', '192.168.1.1', '100.64.0.1', '127.0.0.1',
    '169.254.169.254', 'fd00:ec2::254', 'fe80::1', '::1']) {
    check(!policies.some((p) => egressAllows(p, ip)),
      `egress does not reach the private or metadata address ${ip}`);
  }
}

// Rate limits shared through Redis (--redis=HOST:PORT): a Redis in the
// manifests (a Service and its Deployment) that egressd's pods may reach and
// that lets them alone in, or one outside them that a NetworkPolicy reaches.
const redisFlag = flag('redis');
if (redisFlag) {
  const colon = redisFlag.lastIndexOf(':');
  const host = redisFlag.slice(0, colon);
  const port = Number(redisFlag.slice(colon + 1));
  const reaches = (target, labels) => policies.some((p) => (p.spec.egress || []).some((rule) =>
    (rule.ports || []).some((q) => q.port === target) && (rule.to || []).some((peer) =>
      labels ? peer.podSelector && selects(peer.podSelector, labels) : true)));
  const service = docs.find((d) => d.kind === 'Service' && d.metadata.name === host.split('.')[0]);
  if (!service) {
    check(reaches(port, null), `a NetworkPolicy lets egressd reach --redis on port ${port}`);
  } else {
    const redis = docs.find((d) => d.kind === 'Deployment' &&
      selects(service.spec.selector, d.spec.template.metadata.labels));
    check(redis, `Service ${service.metadata.name} (--redis) selects a Deployment's pods`);
    const servicePort = service.spec.ports.find((p) => p.port === port);
    check(servicePort, `Service ${service.metadata.name} serves --redis's port ${port}`);
    if (redis && servicePort) {
      const labels = redis.spec.template.metadata.labels;
      const c = redis.spec.template.spec.containers[0];
      const named = (c.ports || []).find((q) => q.name === servicePort.targetPort);
      const target = typeof servicePort.targetPort === 'string'
        ? named && named.containerPort : servicePort.targetPort || port;
      check(reaches(target, labels), `a NetworkPolicy lets egressd reach the Redis pods on ${target}`);
      const guards = docs.filter((d) => d.kind === 'NetworkPolicy' && selects(d.spec.podSelector, labels));
      const from = guards.flatMap((p) => p.spec.ingress || []);
      check(guards.length > 0 && from.some((rule) => (rule.ports || []).some((q) => q.port === target)),
        `the Redis pods let egressd in on ${target}`);
      check(from.every((rule) => (rule.from || []).length > 0 && rule.from.every((peer) =>
        peer.podSelector && selects(peer.podSelector, podLabels) && !peer.namespaceSelector && !peer.ipBlock)),
      'the Redis pods let in egressd alone');
      const r = c.resources || {};
      check(r.limits && r.limits.memory && r.requests, 'the Redis container has requests and limits');
      check(c.readinessProbe && c.livenessProbe, 'the Redis container has probes');
    }
  }
}

// Every object lands in a namespace that the same manifests create.
const namespaces = all('Namespace').map((n) => n.metadata.name);
check(namespaces.length === 1, `one Namespace object (found ${namespaces.join(', ') || 'none'})`);
for (const d of docs) {
  if (d.kind !== 'Namespace') {
    check(namespaces.includes(d.metadata.namespace),
      `${d.kind} ${d.metadata.name} is in a namespace the manifests create (${d.metadata.namespace})`);
  }
}

if (failures.length > 0) {
  for (const f of failures) console.log(`FAIL ${f}`);
  process.exitCode = 1;
} else {
  console.log(`meaning: ${docs.length} objects, every check passed`);
}
