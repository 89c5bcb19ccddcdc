// How the fake's objects look in API replies (typed like PVE: numbers as
// numbers where PVE sends numbers, 0/1 booleans, optional keys left out).
'use strict';
const { Cluster } = require('./state');

function vcpus(vm) {
  const c = vm.config;
  return c.vcpus || (c.cores || 1) * (c.sockets || 1);
}

function uptime(vm) {
  return vm.status === 'running' ? Math.floor((Date.now() - vm.startedAt) / 1000) : 0;
}

/** An entry of GET /nodes/{node}/qemu (and the base of status/current). */
function vmEntry(cluster, vm) {
  const running = vm.status === 'running';
  const maxmem = cluster.memoryBytes(vm);
  const e = {
    vmid: vm.vmid, name: vm.config.name || `VM ${vm.vmid}`, status: vm.status, cpus: vcpus(vm),
    maxmem, mem: running ? Math.floor(maxmem * 0.3) : 0, maxdisk: cluster.bootDiskSize(vm), disk: 0,
    cpu: running ? 0.012 : 0, uptime: uptime(vm), netin: running ? 1024 * uptime(vm) : 0,
    netout: running ? 512 * uptime(vm) : 0, diskread: 0, diskwrite: 0,
  };
  if (running) e.pid = vm.pid;
  if (vm.config.tags) e.tags = vm.config.tags;
  if (vm.config.lock) e.lock = vm.config.lock;
  if (vm.config.template) e.template = 1;
  return e;
}

/** GET /nodes/{node}/qemu/{vmid}/status/current */
function vmStatus(cluster, vm) {
  const e = vmEntry(cluster, vm);
  e.qmpstatus = vm.status === 'running' ? (vm.paused ? 'paused' : 'running') : 'stopped';
  e.ha = { managed: 0 };
  if (agentConfigured(cluster, vm)) e.agent = 1;
  if (vm.status === 'running') {
    e['running-machine'] = 'pc-q35-9.2+pve1';
    e['running-qemu'] = '9.2.0';
    if (vm.paused) e.status = 'running';
  }
  if (vm.config.serial0) e.serial = 1;
  return e;
}

function agentConfigured(cluster, vm) {
  if (!vm.config.agent) return false;
  const a = cluster.schema.parseVmKey('agent', vm.config.agent);
  return a.enabled === '1';
}

/** An entry of /cluster/resources for a VM. */
function vmResource(cluster, vm) {
  const e = vmEntry(cluster, vm);
  const out = {
    id: `qemu/${vm.vmid}`, type: 'qemu', node: vm.node, vmid: vm.vmid, name: e.name, status: e.status,
    template: vm.config.template ? 1 : 0, maxcpu: e.cpus, maxmem: e.maxmem, mem: e.mem, maxdisk: e.maxdisk,
    disk: 0, cpu: e.cpu, uptime: e.uptime, netin: e.netin, netout: e.netout, diskread: 0, diskwrite: 0,
  };
  if (vm.config.tags) out.tags = vm.config.tags;
  if (vm.config.lock) out.lock = vm.config.lock;
  const pool = cluster.poolOf(vm.vmid);
  if (pool) out.pool = pool;
  return out;
}

function nodeEntry(cluster, n) {
  const online = n.status === 'online';
  const e = { node: n.name, status: n.status, id: `node/${n.name}`, type: 'node', level: '', ssl_fingerprint: n.fingerprint };
  if (online) {
    let mem = 2 * 1024 ** 3;
    for (const vm of cluster.vms.values()) if (vm.node === n.name && vm.status === 'running') mem += cluster.memoryBytes(vm);
    Object.assign(e, {
      cpu: 0.03, maxcpu: n.maxcpu, mem: Math.min(mem, n.maxmem), maxmem: n.maxmem, disk: 8 * 1024 ** 3,
      maxdisk: 100 * 1024 ** 3, uptime: Math.floor((Date.now() - cluster.created) / 1000) + 86400,
    });
  }
  return e;
}

function storageEntry(cluster, node, id) {
  const s = cluster.storage(node, id);
  const used = cluster.used(node, id);
  return {
    storage: id, type: s.type, content: [...s.content].sort().join(','), active: 1, enabled: 1,
    shared: s.shared, total: s.total, used, avail: s.total - used, used_fraction: used / s.total,
  };
}

function volumeEntry(v) {
  const e = { volid: v.volid, format: v.format, size: v.size, ctime: v.ctime, content: v.content };
  if (v.vmid) e.vmid = v.vmid;
  if (v.parent) e.parent = v.parent;
  if (v.content === 'images') e.used = v.size;
  return e;
}

/** The config as GET config shows it: keys sorted, digest added. */
function configView(cluster, vm) {
  const out = {};
  for (const k of Object.keys(vm.config).sort()) out[k] = vm.config[k];
  out.digest = cluster.digest(vm);
  return out;
}

module.exports = {
  vmEntry, vmStatus, vmResource, nodeEntry, storageEntry, volumeEntry, configView, agentConfigured, Cluster,
};
