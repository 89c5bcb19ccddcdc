// The Talos node fake: a lab service (see ../lab.js).  Every VM the Proxmox
// fake starts boots a Talos node on its own loopback address(es) (the
// cloud-init ipconfig or the DHCP lease the vm.started event carries), port
// 50000: first in maintenance mode, then, after ApplyConfiguration, install
// and reboot, with the authenticated API (mTLS against the applied machine
// CA).  node.js has the lifecycle, api.js the gRPC methods, server.js the
// transport, etcd.js the etcd clusters, kubernetes.js the clusters' API
// servers and the kubelets; README.md beside lab.js documents the control
// routes and the profile.
'use strict';
const fs = require('fs');
const path = require('path');
const profiles = require('./profile');
const { TalosNode } = require('./node');
const { NodeServer } = require('./server');
const { handlers } = require('./api');
const E = require('./etcd');
const { Kubernetes } = require('./kubernetes');
const { loadKey } = require('./x509');

const DEFAULT_VERSION = 'v1.11.6';

class TalosService {
  constructor(lab) {
    this.lab = lab;
    this.nodes = new Map(); // vmid -> TalosNode
    this.media = new Map(); // vmid -> {kind: 'disk', version, schematic, platform} (VMs made from a disk image)
    this.clusters = new Map(); // cluster id -> {bootstrapped, members: Map(member id -> member), leader} (etcd.js)
    this.watchers = new Map(); // TalosNode -> Set(fn)
    this.defaultVersion = DEFAULT_VERSION;
    this.kube = new Kubernetes(this); // API servers per cluster, kubelets
  }

  get pve() { return this.lab.services.pve ? this.lab.services.pve.api : null; }

  // ---------------------------------------------------------------- VM events
  onCreated(e) {
    if (e.clone_of !== undefined && this.media.has(String(e.clone_of))) {
      this.media.set(String(e.vmid), this.media.get(String(e.clone_of)));
      return;
    }
    // a disk imported from an image (import-from=...) is an installed Talos: find the create call
    const req = this.lab.requestLog.items.slice().reverse().find((r) => r.service === 'pve' && r.method === 'POST' &&
      /^\/nodes\/[^/]+\/qemu$/.test(r.path) && r.params && String(r.params.vmid) === String(e.vmid));
    if (!req) return;
    for (const [k, v] of Object.entries(req.params)) {
      if (!/^(scsi|virtio|sata|ide)\d+$/.test(k)) continue;
      const m = /import-from=([^,]+)/.exec(String(v));
      if (!m) continue;
      const info = this.volumeInfo(e.node, m[1]);
      if (info) { this.media.set(String(e.vmid), { kind: 'disk', ...info }); return; }
    }
  }

  onStarted(e) {
    let node = this.nodes.get(String(e.vmid));
    if (!node) { node = new TalosNode(this, e); this.nodes.set(String(e.vmid), node); } else node.update(e);
    node.powerOn();
  }

  onStopped(e) {
    const node = this.nodes.get(String(e.vmid));
    if (node) { node.update(e); node.powerOff(e.how); }
  }

  onDeleted(e) {
    const node = this.nodes.get(String(e.vmid));
    this.nodes.delete(String(e.vmid));
    this.media.delete(String(e.vmid));
    if (!node) return;
    node.powerOff('deleted');
    this.kube.sync(node); // its kubelet stops posting for good
    E.dataGone(node); // its etcd member stays, dead
  }

  // ---------------------------------------------------------------- helpers for nodes
  /** What a volume holds: {size, version, schematic, platform} from its download URL or its name. */
  volumeInfo(pveNode, volid) {
    const pve = this.pve;
    const vol = pve && pve.cluster.volume(pveNode, volid);
    const src = vol && vol.url ? new URL(vol.url).pathname : String(volid);
    const m = /\/image\/([0-9a-f]{64})\/(v[^/]+)\/(([a-z]+)-[^/]+)$/.exec(src);
    if (m) return { size: vol ? vol.size : 0, schematic: m[1], version: m[2], platform: m[4] === 'metal' ? 'metal' : m[4], file: m[3] };
    const v = /(v\d+\.\d+\.\d+(-[a-z0-9.]+)?)/.exec(src);
    const p = /(metal|nocloud)/.exec(src);
    return { size: vol ? vol.size : 0, schematic: null, version: v ? v[1] : null, platform: p ? p[1] : 'nocloud', file: path.basename(src) };
  }

  /** nocloud user-data from the VM's cicustom snippet, if any. */
  userData(node) {
    const m = /(?:^|,)user=([^,]+)/.exec(String(node.vmConfig.cicustom || ''));
    const pve = this.pve;
    if (!m || !pve) return null;
    const vol = pve.cluster.volume(node.pveNode, m[1]);
    return vol && typeof vol.data === 'string' ? vol.data : null;
  }

  cluster(id) {
    if (!this.clusters.has(id)) this.clusters.set(id, { bootstrapped: false, members: new Map(), leader: null });
    return this.clusters.get(id);
  }

  /** The machine CA key of a running control plane with this CA certificate (trustd's signer). */
  signerFor(caCrt) {
    for (const n of this.nodes.values()) {
      const f = n.disk.facts;
      if (f && f.machineCA.key && f.machineCA.crt === caCrt && n.isSecure()) return loadKey(f.machineCA.key); // trustd runs there
    }
    return null;
  }

  /** A node by address (listening ones first) or hostname. */
  findNode(target) {
    const all = [...this.nodes.values()];
    return all.find((n) => n.server && n.addresses().includes(target)) ||
      all.find((n) => n.server && n.hostname() === target) || null;
  }

  async serve(node, mode, tlsOpts, addresses) {
    const srv = new NodeServer({
      lab: this.lab, node, mode, tlsOpts, addresses,
      makeHandlers: (server) => handlers(this, node, server),
      log: (entry) => this.lab.logRequest({ service: 'talos', time: Date.now() / 1000, params: {}, auth: mode === 'secure' ? 'mtls' : 'none', ms: 0, fault: null, ...entry }),
    });
    return srv.start();
  }

  watch(node, fn) {
    if (!this.watchers.has(node)) this.watchers.set(node, new Set());
    this.watchers.get(node).add(fn);
    return () => { const s = this.watchers.get(node); if (s) s.delete(fn); };
  }

  dropWatchers(node) { this.watchers.delete(node); }

  resourceEvent(node, type, res, old) {
    const s = this.watchers.get(node);
    if (!s) return;
    for (const fn of [...s]) {
      try { fn(type, res, old); } catch (_) { s.delete(fn); }
    }
  }

  /** Powers the VM off in the Proxmox fake (reset without reboot). */
  powerOffVm(node) {
    const pve = this.pve;
    const vm = pve && pve.vm(node.vmid);
    if (vm && vm.status === 'running') {
      require('../pve/api-vmstatus').halt({ lab: this.lab, cluster: pve.cluster }, vm, 'shutdown');
    } else {
      node.powerOff('shutdown');
    }
  }

  log(node, msg) {
    node.logs = node.logs || [];
    node.logs.push(`${new Date().toISOString()} ${msg}`);
    if (node.logs.length > 100) node.logs.shift();
  }

  lookup(id) {
    const n = this.nodes.get(String(id)) || [...this.nodes.values()].find((x) => x.addresses().includes(id) || x.hostname() === id);
    if (!n) { const e = new Error(`no Talos node '${id}' (give a vmid, an address or a hostname)`); e.status = 404; throw e; }
    return n;
  }

  state() {
    return {
      default_version: this.defaultVersion,
      nodes: [...this.nodes.values()].map((n) => n.view()),
      clusters: [...this.clusters.entries()].map(([id, c]) => E.view(id, c)),
    };
  }
}

async function start(lab) {
  const svc = new TalosService(lab);
  fs.mkdirSync(path.join(lab.stateDir, 'talos'), { recursive: true, mode: 0o700 });
  const on = (type, fn) => lab.events.on(type, (e) => {
    try { fn(e); } catch (err) { process.stderr.write(`talos: ${type} ${e.vmid}: ${err.stack || err.message}\n`); }
  });
  on('vm.created', (e) => svc.onCreated(e));
  on('vm.started', (e) => svc.onStarted(e));
  on('vm.stopped', (e) => svc.onStopped(e));
  on('vm.deleted', (e) => svc.onDeleted(e));
  const ticker = setInterval(() => {
    for (const n of svc.nodes.values()) {
      try { n.tick(); } catch (err) { process.stderr.write(`talos: tick ${n.vmid}: ${err.stack || err.message}\n`); }
    }
  }, 25);
  ticker.unref();

  lab.route('GET', '/talos/state', () => svc.state());
  lab.route('GET', '/talos/nodes/:id', ({ params }) => {
    const n = svc.lookup(params.id);
    return { ...n.view(), config: n.disk.cfg ? n.disk.cfg.raw : null, apid_cert: n.isSecure() ? n.apidCert : null,
      maintenance_cert: n.state === 'maintenance' && n.maintenance ? n.maintenance.cert : null, logs: n.logs || [] };
  });
  lab.route('POST', '/talos/nodes/:id', ({ params, body }) => {
    const n = svc.lookup(params.id);
    for (const k of Object.keys(body)) if (!['time_synced'].includes(k)) throw new Error(`unknown key '${k}'`);
    if (body.time_synced !== undefined) n.timeSynced = !!body.time_synced;
    return n.view();
  });
  // Kubernetes comes up with the cluster: when a control plane's etcd runs,
  // the Kubernetes fake serves the cluster's endpoint with the cluster CA
  // (the one Talos's kubeconfig trusts and signs the admin cert with); it
  // goes with the cluster
  lab.events.on('talos.etcd.running', (ev) => svc.kube.start(ev));
  lab.events.on('talos.cluster.gone', (ev) => svc.kube.stop(ev.cluster_id));
  return {
    env: { TALOS_VERSION: DEFAULT_VERSION },
    stop: async () => {
      clearInterval(ticker);
      for (const n of svc.nodes.values()) n.powerOff('lab stopped');
    },
    // for other fakes (the Kubernetes fake starts its API server when a control plane's etcd runs):
    // the node, and its applied config (parsed v1alpha1 document, secrets included)
    api: {
      svc, node: (id) => svc.lookup(id),
      config: (id) => { const n = svc.lookup(id); return n.disk.cfg ? n.disk.cfg.v1 : null; },
      nodes: () => [...svc.nodes.values()].map((n) => n.view()),
    },
  };
}

module.exports = { name: 'talos', profiles, start };
