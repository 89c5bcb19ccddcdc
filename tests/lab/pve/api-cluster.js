// /version, /nodes, /cluster (resources, nextid, status), /access (ticket,
// domains) and /pools.
'use strict';
const { die, paramExc } = require('./state');
const F = require('./formats');
const V = require('./views');

function poolMembers(ctx, pool, type) {
  const { cluster } = ctx;
  const out = [];
  if (!type || type === 'qemu') {
    for (const vmid of [...pool.vms].sort((a, b) => a - b)) {
      const vm = cluster.vms.get(vmid);
      if (vm) out.push(V.vmResource(cluster, vm));
    }
  }
  if (!type || type === 'storage') {
    for (const id of [...pool.storage].sort()) {
      for (const n of cluster.nodes.keys()) {
        out.push({ id: `storage/${n}/${id}`, type: 'storage', node: n, storage: id, status: 'available' });
      }
    }
  }
  return out;
}

function getPool(ctx, poolid) {
  const p = ctx.cluster.pools.get(poolid);
  if (!p) die(`pool '${poolid}' does not exist`);
  return p;
}

function updatePool(ctx) {
  const { cluster, params } = ctx;
  const pool = getPool(ctx, params.poolid);
  if (params.comment !== undefined) pool.comment = params.comment;
  for (const v of F.splitList(params.vms || '')) {
    const vmid = Number(v);
    if (params.delete) { pool.vms.delete(vmid); continue; }
    if (!cluster.vms.has(vmid)) die(`VM ${vmid} does not exist`);
    const other = cluster.poolOf(vmid);
    if (other && other !== pool.poolid) {
      if (!params['allow-move']) die(`VM ${vmid} is already a pool member`);
      cluster.pools.get(other).vms.delete(vmid);
    }
    pool.vms.add(vmid);
  }
  for (const id of F.splitList(params.storage || '')) {
    if (params.delete) { pool.storage.delete(id); continue; }
    if (!cluster.storageCfg[id]) die(`storage '${id}' does not exist`);
    pool.storage.add(id);
  }
  return null;
}

function deletePool(ctx) {
  const pool = getPool(ctx, ctx.params.poolid);
  if (pool.vms.size || pool.storage.size) die(`pool '${pool.poolid}' is not empty`);
  ctx.cluster.pools.delete(pool.poolid);
  return null;
}

module.exports = (routes) => {
  routes['GET /version'] = (ctx) => ({ ...ctx.cluster.version });

  routes['GET /nodes'] = (ctx) => [...ctx.cluster.nodes.values()]
    .filter((n) => ctx.can(`/nodes/${n.name}`, 'Sys.Audit'))
    .map((n) => V.nodeEntry(ctx.cluster, n));
  routes['GET /nodes/{node}'] = (ctx) => {
    ctx.cluster.node(ctx.params.node);
    return ['qemu', 'storage', 'tasks', 'status', 'network', 'version'].map((name) => ({ name }));
  };
  routes['GET /nodes/{node}/version'] = (ctx) => ({ ...ctx.cluster.version });
  routes['GET /nodes/{node}/status'] = (ctx) => {
    const { cluster } = ctx;
    const n = cluster.node(ctx.params.node);
    const e = V.nodeEntry(cluster, n);
    return {
      uptime: e.uptime, cpu: e.cpu, loadavg: ['0.12', '0.20', '0.18'], wait: 0.001,
      cpuinfo: { cpus: n.maxcpu, sockets: 1, cores: n.maxcpu / 2, model: 'Lab Virtual CPU', mhz: '3000.000', hvm: '1' },
      memory: { total: n.maxmem, used: e.mem, free: n.maxmem - e.mem, available: n.maxmem - e.mem },
      swap: { total: 0, used: 0, free: 0 },
      rootfs: { total: e.maxdisk, used: e.disk, avail: e.maxdisk - e.disk, free: e.maxdisk - e.disk },
      kversion: 'Linux 6.14.8-2-pve #1 SMP PREEMPT_DYNAMIC', pveversion: `pve-manager/${cluster.version.version}/${cluster.version.repoid}`,
      'boot-info': { mode: 'efi', secureboot: 0 },
    };
  };
  routes['GET /nodes/{node}/network'] = (ctx) => {
    const n = ctx.cluster.node(ctx.params.node);
    return n.bridges.map((iface, i) => ({
      iface, type: 'bridge', active: 1, autostart: 1, bridge_ports: `eno${i + 1}`, bridge_stp: 'off', bridge_fd: '0',
      method: i === 0 ? 'static' : 'manual', families: ['inet'], priority: i + 3,
      ...(i === 0 ? { cidr: `${n.ip}/8`, address: n.ip, netmask: '8', gateway: '127.0.0.1' } : {}),
    })).filter((e) => !ctx.params.type || ['bridge', 'any_bridge'].includes(ctx.params.type));
  };

  routes['GET /cluster/status'] = (ctx) => {
    const { cluster } = ctx;
    const out = [{ type: 'cluster', id: 'cluster', name: 'lab', nodes: cluster.nodes.size, quorate: 1, version: cluster.nodes.size }];
    for (const n of cluster.nodes.values()) {
      out.push({ type: 'node', id: `node/${n.name}`, name: n.name, nodeid: n.nodeid, ip: n.ip, online: n.status === 'online' ? 1 : 0, local: n.nodeid === 1 ? 1 : 0, level: '' });
    }
    return out;
  };
  routes['GET /cluster/resources'] = (ctx) => {
    const { cluster, params } = ctx;
    const out = [];
    const want = (t) => !params.type || params.type === t;
    if (want('vm')) {
      for (const vm of [...cluster.vms.values()].sort((a, b) => a.vmid - b.vmid)) {
        if (ctx.can(`/vms/${vm.vmid}`, 'VM.Audit')) out.push(V.vmResource(cluster, vm));
      }
    }
    if (want('node')) {
      for (const n of cluster.nodes.values()) {
        if (!ctx.can(`/nodes/${n.name}`, 'Sys.Audit')) continue;
        const e = V.nodeEntry(cluster, n);
        delete e.ssl_fingerprint;
        out.push({ ...e, 'cgroup-mode': 2 });
      }
    }
    if (want('storage')) {
      for (const n of cluster.nodes.keys()) {
        for (const id of Object.keys(cluster.storageCfg)) {
          if (!ctx.can(`/storage/${id}`, 'Datastore.Audit')) continue;
          const s = V.storageEntry(cluster, n, id);
          out.push({ id: `storage/${n}/${id}`, type: 'storage', node: n, storage: id, status: 'available', content: s.content,
            plugintype: s.type, shared: s.shared, disk: s.used, maxdisk: s.total });
        }
      }
    }
    if (want('sdn')) {
      for (const n of cluster.nodes.keys()) out.push({ id: `sdn/${n}/localnetwork`, type: 'sdn', sdn: 'localnetwork', node: n, status: 'ok' });
    }
    if (!params.type) {
      for (const p of cluster.pools.values()) if (ctx.can(`/pool/${p.poolid}`, 'Pool.Audit')) out.push({ id: `/pool/${p.poolid}`, type: 'pool', pool: p.poolid });
    }
    return out;
  };
  // reserves nothing; the id comes back as a string, like PVE
  routes['GET /cluster/nextid'] = (ctx) => {
    const { cluster, params } = ctx;
    if (params.vmid !== undefined) {
      if (cluster.vms.has(params.vmid)) paramExc({ vmid: `VM ${params.vmid} already exists` });
      return String(params.vmid);
    }
    return String(cluster.nextId());
  };

  routes['GET /access/domains'] = () => [
    { realm: 'pam', type: 'pam', comment: 'Linux PAM standard authentication' },
    { realm: 'pve', type: 'pve', comment: 'Proxmox VE authentication server', default: 1 },
  ];
  routes['GET /access/ticket'] = () => null;
  routes['POST /access/ticket'] = (ctx) => {
    const t = ctx.authApi.login(ctx.params.username, ctx.params.password, ctx.params.realm);
    return {
      username: t.username, ticket: t.ticket, CSRFPreventionToken: t.CSRFPreventionToken, clustername: 'lab',
      cap: { vms: { 'VM.Audit': 1, 'VM.Allocate': 1 }, storage: { 'Datastore.Audit': 1 }, nodes: { 'Sys.Audit': 1 } },
    };
  };

  routes['GET /pools'] = (ctx) => {
    const { cluster, params } = ctx;
    return [...cluster.pools.values()]
      .filter((p) => !params.poolid || p.poolid === params.poolid)
      .filter((p) => ctx.can(`/pool/${p.poolid}`, 'Pool.Audit'))
      .sort((a, b) => (a.poolid < b.poolid ? -1 : 1))
      .map((p) => {
        const e = { poolid: p.poolid };
        if (p.comment) e.comment = p.comment;
        if (params.poolid) e.members = poolMembers(ctx, p, params.type);
        return e;
      });
  };
  routes['POST /pools'] = (ctx) => {
    const { cluster, params } = ctx;
    if (cluster.pools.has(params.poolid)) die(`pool '${params.poolid}' already exists`);
    cluster.pools.set(params.poolid, { poolid: params.poolid, comment: params.comment || '', vms: new Set(), storage: new Set() });
    return null;
  };
  routes['PUT /pools'] = updatePool;
  routes['DELETE /pools'] = deletePool;
  routes['GET /pools/{poolid}'] = (ctx) => {
    const p = getPool(ctx, ctx.params.poolid);
    const e = { members: poolMembers(ctx, p, ctx.params.type) };
    if (p.comment) e.comment = p.comment;
    return e;
  };
  routes['PUT /pools/{poolid}'] = updatePool;
  routes['DELETE /pools/{poolid}'] = deletePool;
};
