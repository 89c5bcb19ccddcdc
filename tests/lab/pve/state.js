// The simulated cluster: nodes, storages and their volumes, VMs and their
// configs, pools, per-VM config locks and per-storage locks, DHCP leases.
'use strict';
const crypto = require('crypto');
const { Mutex } = require('./tasks');
const F = require('./formats');

const GiB = 1024 ** 3;

const VERSIONS = {
  8.2: { version: '8.2.7', release: '8.2', repoid: '3e76eec21c4a14a7' },
  8.4: { version: '8.4.14', release: '8.4', repoid: 'b502d23c55afcba1' },
  '9.0': { version: '9.0.11', release: '9.0', repoid: '3bf5476b8a4699e2' },
  9.1: { version: '9.1.1', release: '9.1', repoid: '42db4a6cf33dac83' },
};

class ApiError extends Error {
  constructor(status, message, errors) { super(message); this.status = status; this.errors = errors; }
}
/** die "msg" inside a handler: 500 with the message in the status line. */
const die = (msg) => { throw new ApiError(500, msg); };
/** raise_param_exc: 400 Parameter verification failed. with per-parameter errors. */
const paramExc = (errors) => { throw new ApiError(400, 'Parameter verification failed.', errors); };

class Cluster {
  constructor({ lab, schema, nodes, version, fingerprint, address }) {
    this.lab = lab;
    this.schema = schema;
    this.created = Date.now();
    this.nodes = new Map();
    nodes.forEach((name, i) => {
      this.nodes.set(name, {
        name, status: 'online', nodeid: i + 1, ip: i === 0 ? address : lab.addr(2 + i, 0),
        fingerprint: i === 0 ? fingerprint : fakeFingerprint(name), maxcpu: 16, maxmem: 64 * GiB,
        bridges: ['vmbr0', 'vmbr1'],
      });
    });
    this.storageCfg = {
      local: { type: 'dir', path: '/var/lib/vz', shared: 0, total: 100 * GiB, content: ['iso', 'vztmpl', 'backup', 'snippets', 'import'] },
      'local-lvm': { type: 'lvmthin', vgname: 'pve', thinpool: 'data', shared: 0, total: 400 * GiB, content: ['images', 'rootdir'] },
    };
    this.volumes = new Map(); // "node/storage" -> Map(volid -> volume)
    this.vms = new Map(); // vmid -> vm
    this.pools = new Map(); // poolid -> {poolid, comment, vms: Set, storage: Set}
    this.flocks = new Map();
    this.storageLocks = new Map();
    this.files = new Map(); // url -> registered download {data: Buffer}
    this.leases = new Map(); // mac -> ip
    this.setVersion(version);
  }

  setVersion(v) {
    const info = VERSIONS[v];
    if (!info) throw new Error(`unknown PVE version '${v}' (known: ${Object.keys(VERSIONS).join(', ')})`);
    this.version = { ...info, console: 'html5' };
    this.schema.ctx.version = info.release;
  }

  atLeast(v) { return F.versionAtLeast({ version: this.version.release }, v); }

  // ---------------------------------------------------------------- nodes
  node(name) {
    const n = this.nodes.get(name);
    if (!n) die(`hostname lookup '${name}' failed - failed to get address info for: ${name}: Name or service not known`);
    return n;
  }

  // ---------------------------------------------------------------- storage
  storageContent(id) {
    const s = this.storageCfg[id];
    return s.content.filter((c) => c !== 'import' || this.atLeast('8.4'));
  }

  storage(node, id) {
    if (!this.storageCfg[id]) die(`storage '${id}' does not exist`);
    this.node(node);
    return { id, ...this.storageCfg[id], content: this.storageContent(id) };
  }

  vols(node, storage) {
    const k = `${node}/${storage}`;
    if (!this.volumes.has(k)) this.volumes.set(k, new Map());
    return this.volumes.get(k);
  }

  volume(node, volid) {
    const m = /^([^:]+):(.+)$/.exec(volid);
    if (!m || !this.storageCfg[m[1]]) return null;
    return this.vols(node, m[1]).get(volid) || null;
  }

  addVolume(node, vol) {
    const storage = vol.volid.split(':')[0];
    const v = { ctime: Math.floor(Date.now() / 1000), ...vol };
    this.vols(node, storage).set(v.volid, v);
    return v;
  }

  removeVolume(node, volid) {
    const storage = volid.split(':')[0];
    return this.vols(node, storage).delete(volid);
  }

  used(node, storage) {
    let n = 0;
    for (const v of this.vols(node, storage).values()) n += v.size || 0;
    return n;
  }

  /** The next free "vm-<vmid>-disk-<n>" volume id on a storage. */
  newDiskVolid(node, storage, vmid, format, kind = 'disk') {
    const cfg = this.storageCfg[storage];
    const names = new Set([...this.vols(node, storage).keys()]);
    for (let i = 0; ; i++) {
      const name = `vm-${vmid}-${kind}-${i}`;
      const volid = cfg.type === 'dir' ? `${storage}:${vmid}/${name}.${format}` : `${storage}:${name}`;
      const base = cfg.type === 'dir' ? volid : `${storage}:base-${vmid}-${kind}-${i}`;
      if (!names.has(volid) && !names.has(base)) return volid;
    }
  }

  storageLock(node, storage) {
    const k = `${node}/${storage}`;
    if (!this.storageLocks.has(k)) this.storageLocks.set(k, new Mutex());
    return this.storageLocks.get(k);
  }

  /** Runs fn under the storage's allocation lock (cluster_lock_storage). */
  async withStorageLock(node, storage, fn) {
    let release;
    try {
      release = await this.storageLock(node, storage).acquire(this.lab.ms('pve', 'lock_timeout_storage'));
    } catch (err) {
      die(`can't lock file '/var/lock/pve-manager/pve-storage-${storage}' - got timeout`);
    }
    try { return await fn(); } finally { release(); }
  }

  // ---------------------------------------------------------------- VMs
  /** load_config: the VM on that node, or 500 "Configuration file ... does not exist". */
  vm(node, vmid) {
    const vm = this.vms.get(Number(vmid));
    if (!vm || vm.node !== node) die(`Configuration file 'nodes/${node}/qemu-server/${vmid}.conf' does not exist`);
    return vm;
  }

  /** check_vmid_unused */
  checkVmidUnused(vmid) {
    const vm = this.vms.get(Number(vmid));
    if (vm) die(`unable to create VM ${vmid} - VM ${vmid} already exists on node '${vm.node}'`);
  }

  flock(vmid) {
    if (!this.flocks.has(vmid)) this.flocks.set(vmid, new Mutex());
    return this.flocks.get(vmid);
  }

  /** lock_config with a timeout: resolves to a release function or dies like PVE. */
  async lockConfig(vmid, timeoutKey = 'lock_timeout_config') {
    try {
      return await this.flock(Number(vmid)).acquire(this.lab.ms('pve', timeoutKey));
    } catch (err) {
      return die(`can't lock file '/var/lock/qemu-server/lock-${vmid}.conf' - got timeout`);
    }
  }

  /** check_lock: dies when the config carries a `lock` property. */
  static checkLock(vm) {
    if (vm.config.lock) die(`VM is locked (${vm.config.lock})`);
  }

  digest(vm) {
    const text = Object.keys(vm.config).sort().map((k) => `${k}: ${vm.config[k]}`).join('\n');
    return crypto.createHash('sha1').update(text).digest('hex');
  }

  /** Drive keys of a config (ide0, scsi1, efidisk0, unused0, ...). */
  static driveKeys(config) {
    return Object.keys(config).filter((k) => /^(ide|sata|scsi|virtio|unused)\d+$|^(efidisk|tpmstate)0$/.test(k));
  }

  nextId(from = 100) {
    for (let i = from; i < 1000000; i++) if (!this.vms.has(i)) return i;
    return die('unable to get any free VMID in range [100, 999999]');
  }

  newMac() {
    const b = crypto.randomBytes(3);
    return `BC:24:11:${[...b].map((x) => x.toString(16).toUpperCase().padStart(2, '0')).join(':')}`;
  }

  /** A stable DHCP lease in the lab net for a MAC (127.N.1.x). */
  lease(mac) {
    const k = mac.toLowerCase();
    if (!this.leases.has(k)) this.leases.set(k, this.lab.allocAddr());
    return this.leases.get(k);
  }

  memoryBytes(vm) {
    const m = /^(?:current=)?(\d+)/.exec(String(vm.config.memory || '512'));
    return Number(m ? m[1] : 512) * 1024 * 1024;
  }

  bootDiskSize(vm) {
    let best = 0;
    for (const k of Cluster.driveKeys(vm.config)) {
      if (k.startsWith('unused') || /media=cdrom/.test(String(vm.config[k]))) continue;
      const m = /(?:^|,)size=([^,]+)/.exec(String(vm.config[k]));
      if (m) best = Math.max(best, F.parseSize(m[1]) || 0);
    }
    return best;
  }

  /** Pool membership of a VM, or undefined. */
  poolOf(vmid) {
    for (const p of this.pools.values()) if (p.vms.has(Number(vmid))) return p.poolid;
    return undefined;
  }
}

function fakeFingerprint(name) {
  const h = crypto.createHash('sha256').update(`lab-node-${name}`).digest('hex').toUpperCase();
  return h.match(/../g).join(':');
}

module.exports = { Cluster, ApiError, die, paramExc, VERSIONS, GiB };
