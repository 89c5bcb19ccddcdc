// The Kubernetes API fake: a lab service (see ../lab.js and README.md here).
// Standalone it serves one API server at <net>.0.6:6443 with its own CA and
// writes an admin kubeconfig; other services (the Talos fake, once a
// cluster is bootstrapped) start more instances at a given address:port
// with the cluster's CA through `lab.services.k8s.api.start({...})` or this
// module's startServer(lab, {...}).
'use strict';
const fs = require('fs');
const path = require('path');
const profiles = require('./profile');
const { makeCerts, kubeconfig } = require('./certs');
const { Cluster, NS_KEY } = require('./cluster');
const { Controllers } = require('./controllers');
const { NodeLifecycle } = require('./nodes');
const { Disruption } = require('./eviction');
const { K8sServer } = require('./server');
const { writeAtomic } = require('../lab');

const bad = (msg) => { const e = new Error(msg); e.status = 400; throw e; };

/** The objects a fresh cluster has: system namespaces, the kubernetes Service, nodes, priority classes. */
function seed(c) {
  const t = (k) => c.types.get(k);
  for (const ns of ['default', 'kube-node-lease', 'kube-public', 'kube-system']) {
    c.createInternal(t(NS_KEY), { metadata: { name: ns } }, 'kube-apiserver');
    c.controllers.seedNamespace(ns); // a started cluster has them already
  }
  c.createInternal(t('/services'), {
    metadata: { name: 'kubernetes', namespace: 'default', labels: { component: 'apiserver', provider: 'kubernetes' } },
    spec: { clusterIP: '10.96.0.1', ports: [{ name: 'https', port: 443, protocol: 'TCP', targetPort: c.port }] },
  }, 'kube-apiserver');
  c.createInternal(t('/endpoints'), {
    metadata: { name: 'kubernetes', namespace: 'default', labels: { 'endpointslice.kubernetes.io/skip-mirror': 'true' } },
    subsets: [{ addresses: [{ ip: c.address }], ports: [{ name: 'https', port: c.port, protocol: 'TCP' }] }],
  }, 'kube-apiserver');
  for (const [name, value] of [['system-cluster-critical', 2000000000], ['system-node-critical', 2000001000]]) {
    c.createInternal(t('scheduling.k8s.io/priorityclasses'), {
      metadata: { name }, value, preemptionPolicy: 'PreemptLowerPriority',
      description: 'Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.',
    }, 'kube-apiserver');
  }
  // the nodes' kubelets, which never stop here (the Talos fake runs real ones for its clusters)
  c.nodeNames.forEach((name, i) => {
    c.nodes.kubeletUp(name, {
      address: c.address, labels: i === 0 ? { 'node-role.kubernetes.io/control-plane': '' } : {}, taints: [],
      kubeletVersion: c.info.gitVersion, osImage: 'Talos (v1.10.3)', kernelVersion: '6.12.31-talos',
      containerRuntimeVersion: 'containerd://2.0.5', cpu: 2, memoryMiB: 4096, podSubnet: '10.244.0.0/16', staticPods: [],
    });
  });
}

/**
 * Starts an API server instance.  o: {address (required), port (default
 * 6443, a free one when taken), ca_cert, ca_key (PEM; default: a new CA),
 * name (cluster name in the kubeconfig, default "lab"), version (default
 * "1.32.3"), nodes (node names, default ["lab-cp-1"]), dir (certificates
 * and kubeconfig; default <state>/k8s-<address>-<port>), sans (extra
 * certificate names)}.  Resolves to an instance: {url, address, port,
 * cluster, kubeconfig, kubeconfigPath, certs, reset(), stop()}.
 */
async function startServer(lab, o) {
  if (!o || !o.address) throw new Error('k8s: start needs an address');
  const dir = o.dir || path.join(lab.stateDir, `k8s-${o.address}-${o.port || 6443}`);
  const certs = makeCerts(dir, { address: o.address, caCert: o.ca_cert, caKey: o.ca_key, sans: o.sans });
  const inst = { address: o.address, certs, dir };
  const fresh = () => {
    const c = new Cluster({ lab, name: o.name || 'lab', address: o.address, port: inst.port || o.port || 6443, version: o.version, nodes: o.nodes });
    c.caPem = certs.ca;
    c.controllers = new Controllers(c);
    c.nodes = new NodeLifecycle(c);
    c.disruption = new Disruption(c);
    return c;
  };
  inst.cluster = fresh();
  inst.server = new K8sServer(inst.cluster, { tls: { key: certs.server.key, cert: certs.server.cert, ca: certs.ca } });
  inst.port = await inst.server.listen(o.address, o.port || 6443);
  inst.cluster.port = inst.port;
  seed(inst.cluster);
  inst.url = `https://${o.address}:${inst.port}`;
  inst.kubeconfig = kubeconfig({ name: o.name || 'lab', server: inst.url, ca: certs.ca, cert: certs.admin.cert, key: certs.admin.key });
  inst.kubeconfigPath = path.join(dir, 'kubeconfig');
  writeAtomic(inst.kubeconfigPath, inst.kubeconfig, 0o600);
  inst.reset = () => {
    for (const w of [...inst.cluster.store.watchers]) w.end();
    inst.cluster.stop();
    inst.cluster = fresh();
    inst.server.cluster = inst.cluster;
    seed(inst.cluster);
  };
  inst.stop = async () => { inst.cluster.stop(); await inst.server.close(); };
  return inst;
}

function webhookUntil(c) {
  const w = c.webhook;
  return w.until !== null ? w.until : (w.establishedAt || Date.now()) + c.profile.webhook_not_ready * 1000;
}

function stateView(inst) {
  const c = inst.cluster;
  const counts = {};
  for (const rt of c.served()) { const n = c.store.count(rt); if (n) counts[rt.key] = n; }
  return {
    server: inst.url, version: c.info.gitVersion, resourceVersion: String(c.store.rv), horizon: c.store.horizon,
    events: c.store.events.length, watchers: c.store.watchers.size, objects: counts,
    crds: [...c.crdTypes.values()].map((rt) => ({ name: rt.crd, group: rt.group, kind: rt.kind, versions: rt.versions })),
    webhook: { ...c.webhook, ready_in: Math.max(0, (webhookUntil(c) - Date.now()) / 1000) },
  };
}

function controlRoutes(lab, instances, startOne) {
  const pick = (query) => {
    const list = [...instances.values()];
    if (!list.length) bad('no Kubernetes API server is running');
    if (!query.server) return list[0];
    const inst = list.find((i) => i.url === query.server || `${i.address}:${i.port}` === query.server);
    if (!inst) { const e = new Error(`no Kubernetes API server ${query.server}`); e.status = 404; throw e; }
    return inst;
  };
  lab.route('GET', '/k8s/state', ({ query }) => (query.server ? stateView(pick(query)) : [...instances.values()].map(stateView)));
  lab.route('GET', '/k8s/objects', ({ query }) => {
    const c = pick(query).cluster;
    const [group, plural] = String(query.resource || '').includes('/') ? query.resource.split('/') : ['', query.resource];
    const rt = c.types.get(`${group}/${plural}`);
    if (!rt) bad(`unknown resource '${query.resource}' (use group/plural, e.g. apps/deployments or configmaps)`);
    return c.list(rt, query.namespace).map((x) => c.serve(rt, x));
  });
  lab.route('POST', '/k8s/compact', ({ query }) => {
    const c = pick(query).cluster;
    c.store.compact();
    return { horizon: c.store.horizon };
  });
  lab.route('POST', '/k8s/webhook', ({ query, body }) => {
    const c = pick(query).cluster;
    if (body.ready) Object.assign(c.webhook, { until: 0, failLeft: 0 });
    else {
      if (body.seconds !== undefined && typeof body.seconds !== 'number') bad('seconds must be a number');
      if (body.requests !== undefined && !Number.isInteger(body.requests)) bad('requests must be an integer');
      Object.assign(c.webhook, { until: Date.now() + (body.seconds || 0) * 1000, failLeft: body.requests || 0 });
    }
    return stateView(pick(query)).webhook;
  });
  lab.route('POST', '/k8s/reset', ({ query }) => { pick(query).reset(); return stateView(pick(query)); });
  // another API server (what the Talos fake does at bootstrap): {address, port?, ca_cert?, ca_key?, name?, version?, nodes?}
  lab.route('POST', '/k8s/servers', async ({ body }) => {
    const known = ['address', 'port', 'ca_cert', 'ca_key', 'name', 'version', 'nodes', 'sans'];
    for (const k of Object.keys(body)) if (!known.includes(k)) bad(`unknown key '${k}'`);
    if (typeof body.address !== 'string' || !/^127\.\d+\.\d+\.\d+$/.test(body.address)) bad('address must be a loopback IPv4 address');
    if (!body.ca_cert !== !body.ca_key) bad('ca_cert and ca_key go together');
    if (body.version !== undefined && !/^v?\d+\.\d+\.\d+$/.test(body.version)) bad('version must look like 1.32.3');
    const inst = await startOne(body);
    return { server: inst.url, kubeconfig: inst.kubeconfigPath, dir: inst.dir, version: inst.cluster.info.gitVersion };
  });
  lab.route('DELETE', '/k8s/servers', async ({ query }) => {
    const inst = pick(query);
    await inst.stop();
    return { stopped: inst.url };
  });
}

async function start(lab) {
  const instances = new Map();
  const startOne = async (o) => {
    const inst = await startServer(lab, o);
    instances.set(inst.url, inst);
    const stop = inst.stop;
    inst.stop = async () => { instances.delete(inst.url); await stop(); };
    return inst;
  };
  controlRoutes(lab, instances, startOne);
  const main = await startOne({ address: lab.addr(6), port: 6443, dir: path.join(lab.stateDir, 'k8s') });
  fs.chmodSync(main.dir, 0o700);
  return {
    env: {
      K8S_SERVER: main.url, K8S_KUBECONFIG: main.kubeconfigPath,
      K8S_VIEWER_CERT: main.certs.files.viewerCert, K8S_VIEWER_KEY: main.certs.files.viewerKey, // a user without rights
    },
    stop: async () => { for (const inst of [...instances.values()]) await inst.stop(); },
    api: { start: startOne, instances, main },
  };
}

module.exports = { name: 'k8s', profiles, start, startServer };
