// The Kubernetes side of the Talos fake's clusters.
//
// API server: one per cluster id, an instance of the Kubernetes fake
// (lab.services.k8s) on the cluster endpoint with the cluster CA, started
// when a control plane's etcd first runs, reporting the version of
// cluster.apiServer.image.  When the cluster is gone (etcd.js: no machine
// holds its etcd data any more) the instance stops and its state goes with
// it, so a new Bootstrap gets a fresh API server on the same endpoint.
//
// Kubelet: each node whose kubelet runs registers its Node with its
// cluster's API server and posts its status (k8s/nodes.js does the rest:
// NotReady after the grace period when it stops, registration again after
// the Node is deleted, the node's pods).
'use strict';
const crypto = require('crypto');
const path = require('path');
const C = require('./config');

const DEFAULT_KUBERNETES = 'v1.34.1'; // what Talos 1.11 runs when the config names no image
const CONTROL_PLANE_PODS = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler'];

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/** The tag of an image reference when it is a version ("…/kubelet:v1.34.1" -> v1.34.1). */
function versionOf(image) {
  const tag = C.imageVersion(image);
  return tag && /^v?\d+\.\d+\.\d+/.test(tag) ? tag : null;
}

/** machine.nodeTaints ({key: "value:Effect"}) as Node taints. */
function taintsOf(map) {
  const out = [];
  for (const [key, v] of Object.entries(isObj(map) ? map : {})) {
    const s = String(v);
    const i = s.lastIndexOf(':');
    out.push(i < 0 ? { key, effect: s } : { key, value: s.slice(0, i), effect: s.slice(i + 1) });
  }
  return out;
}

class Kubernetes {
  constructor(svc) {
    this.svc = svc;
    this.lab = svc.lab;
    this.apiservers = new Map(); // cluster id -> {promise, inst}
    this.stopping = new Map(); // cluster id -> Promise of an instance still closing
  }

  get k8s() { return this.lab.services.k8s ? this.lab.services.k8s.api : null; }

  /** The running API server instance of a cluster, or null. */
  instance(id) {
    const a = id ? this.apiservers.get(id) : null;
    return a ? a.inst : null;
  }

  /** A control plane's etcd runs: its cluster's API server comes up (once). */
  start(ev) {
    const k8s = this.k8s;
    const id = ev.cluster_id;
    if (!k8s || ev.machine_type !== 'controlplane' || !id || this.apiservers.has(id)) return;
    const cfg = this.svc.lookup(ev.vmid).disk.cfg;
    const cluster = cfg && cfg.v1 && cfg.v1.cluster;
    let url;
    try { url = new URL(cluster.controlPlane.endpoint); } catch (err) { return; }
    const pem = (b64) => Buffer.from(b64 || '', 'base64').toString('utf8');
    const image = isObj(cluster.apiServer) ? cluster.apiServer.image : null;
    const entry = { inst: null };
    const safeId = crypto.createHash('sha256').update(id).digest('hex').slice(0, 12);
    entry.promise = (this.stopping.get(id) || Promise.resolve()).then(() => k8s.start({
      address: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port) || 6443,
      ca_cert: pem(cluster.ca && cluster.ca.crt), ca_key: pem(cluster.ca && cluster.ca.key),
      name: cluster.clusterName || ev.cluster_name || 'lab', nodes: [], version: versionOf(image) || DEFAULT_KUBERNETES,
      dir: path.join(this.lab.stateDir, `k8s-cluster-${safeId}`),
    })).then((inst) => { entry.inst = inst; return inst; }, (err) => {
      process.stderr.write(`talos: cannot start the Kubernetes API for ${url.host}: ${err.message}\n`);
      if (this.apiservers.get(id) === entry) this.apiservers.delete(id);
      return null;
    });
    this.apiservers.set(id, entry);
  }

  /** The cluster is gone: its API server stops and forgets everything. */
  stop(id) {
    const entry = this.apiservers.get(id);
    if (!entry) return;
    this.apiservers.delete(id);
    const p = entry.promise.then((inst) => inst && inst.stop()).catch(() => {}).then(() => {
      if (this.stopping.get(id) === p) this.stopping.delete(id);
    });
    this.stopping.set(id, p);
  }

  /** What a node's kubelet posts about it. */
  nodeInfo(node) {
    const f = node.disk.facts;
    const v1 = node.disk.cfg.v1;
    const m = isObj(v1.machine) ? v1.machine : {};
    const cl = isObj(v1.cluster) ? v1.cluster : {};
    const labels = { ...(isObj(m.nodeLabels) ? m.nodeLabels : {}) };
    const taints = taintsOf(m.nodeTaints);
    if (f.controlPlane) {
      labels['node-role.kubernetes.io/control-plane'] = '';
      if (!cl.allowSchedulingOnControlPlanes) taints.push({ key: 'node-role.kubernetes.io/control-plane', effect: 'NoSchedule' });
    }
    const inst = this.instance(f.clusterId);
    const net = isObj(cl.network) ? cl.network : {};
    return {
      name: node.hostname(), address: node.ip(), labels, taints,
      kubeletVersion: versionOf(isObj(m.kubelet) ? m.kubelet.image : null) || (inst ? inst.cluster.info.gitVersion : DEFAULT_KUBERNETES),
      osImage: `Talos (${node.version()})`, kernelVersion: '6.12.57-talos', containerRuntimeVersion: 'containerd://2.1.5',
      cpu: Number(node.vmConfig.cores || 1) * Number(node.vmConfig.sockets || 1), memoryMiB: Number(node.vmConfig.memory || 2048),
      systemUUID: node.uuid, machineID: crypto.createHash('sha256').update(node.uuid).digest('hex').slice(0, 32),
      bootID: crypto.createHash('sha256').update(`${node.uuid}/${node.bootCount}`).digest('hex').replace(/^(.{8})(.{4})(.{4})(.{4})(.{12}).*/, '$1-$2-$3-$4-$5'),
      podSubnet: (net.podSubnets || [])[0], staticPods: f.controlPlane ? CONTROL_PLANE_PODS : [],
    };
  }

  /** The kubelet's loop for one node (from its tick): register/post while it runs, stop posting when not. */
  sync(node) {
    const f = node.disk.facts;
    const inst = f && node.disk.cfg ? this.instance(f.clusterId) : null;
    const c = inst ? inst.cluster : null; // a new object after POST /k8s/reset
    const k = node.kubelet || (node.kubelet = { cluster: null, name: null, key: null });
    const up = !!(c && node.kubeletRunning && node.isSecure());
    const info = up ? this.nodeInfo(node) : null;
    if (k.cluster && (k.cluster !== c || !up || k.name !== info.name)) {
      k.cluster.nodes.kubeletDown(k.name);
      Object.assign(k, { cluster: null, name: null, key: null });
    }
    if (!up) return;
    const key = JSON.stringify(info);
    if (k.key === key) return;
    c.nodes.kubeletUp(info.name, info);
    Object.assign(k, { cluster: c, name: info.name, key });
  }

  /** Talos's cordon and drain of a node (graceful reset). */
  drain(node) {
    const k = node.kubelet;
    if (k && k.cluster) k.cluster.nodes.drain(k.name);
  }
}

module.exports = { Kubernetes, taintsOf, versionOf };
