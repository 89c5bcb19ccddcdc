// Control routes of the Proxmox fake (under /pve on the lab's control
// endpoint): state, version, downloadable files, snippets and volumes placed
// out of band, guest-agent overrides, node status.
'use strict';
const { Tasks } = require('./tasks');
const { digestAll, registeredData } = require('./download');
const { normalizeFilename } = require('./api-storage');
const V = require('./views');

function bad(msg) { const e = new Error(msg); e.status = 400; throw e; }

function stateView(cluster, tasks) {
  const nodes = {};
  for (const n of cluster.nodes.values()) {
    const storages = {};
    for (const id of Object.keys(cluster.storageCfg)) {
      storages[id] = {
        type: cluster.storageCfg[id].type, content: cluster.storageContent(id),
        locked: cluster.storageLock(n.name, id).held,
        volumes: [...cluster.vols(n.name, id).values()].map(V.volumeEntry),
      };
    }
    nodes[n.name] = {
      status: n.status, ip: n.ip,
      vms: [...cluster.vms.values()].filter((vm) => vm.node === n.name).sort((a, b) => a.vmid - b.vmid).map((vm) => ({
        vmid: vm.vmid, name: vm.config.name || null, status: vm.status, lock: vm.config.lock || null,
        template: vm.config.template ? 1 : 0, flock: cluster.flock(vm.vmid).held,
        agent: vm.agent || null, config: { ...vm.config },
      })),
      storages,
      tasks: tasks.list(n.name).map((t) => ({ ...Tasks.view(t), log_lines: t.log.length })),
      workers: tasks.load(n.name),
    };
  }
  return {
    version: cluster.version, nodes,
    pools: [...cluster.pools.values()].map((p) => ({ poolid: p.poolid, comment: p.comment, vms: [...p.vms], storage: [...p.storage] })),
    leases: Object.fromEntries(cluster.leases),
    files: [...cluster.files.keys()],
  };
}

module.exports = function control(lab, { cluster, tasks }) {
  lab.route('GET', '/pve/state', () => stateView(cluster, tasks));
  lab.route('GET', '/pve/version', () => cluster.version);
  lab.route('PUT', '/pve/version', ({ body }) => {
    try { cluster.setVersion(String(body.version)); } catch (err) { bad(err.message); }
    return cluster.version;
  });

  // downloadable files for download-url: {url, data | base64 | size, status?, reason?, delay?}
  lab.route('POST', '/pve/files', ({ body }) => {
    if (typeof body.url !== 'string' || !/^https?:\/\//.test(body.url)) bad('url (http:// or https://) is required');
    let data;
    try { data = registeredData(body); } catch (err) { bad(err.message); }
    cluster.files.set(body.url, { data, status: body.status, reason: body.reason, delay: body.delay });
    const d = digestAll([data]);
    return { url: body.url, size: d.size, ...d.hashes };
  });
  lab.route('GET', '/pve/files', () => [...cluster.files.entries()].map(([url, f]) => ({ url, size: f.data.length, sha256: digestAll([f.data]).hashes.sha256 })));
  lab.route('DELETE', '/pve/files', () => { cluster.files.clear(); });

  // snippets cannot be uploaded through the API: place them here {filename, content, storage?, node?}
  lab.route('POST', '/pve/snippets', ({ body }) => {
    if (!body.filename) bad('filename is required');
    const storage = body.storage || 'local';
    if (!cluster.storageCfg[storage]) bad(`storage '${storage}' does not exist`);
    const name = normalizeFilename(body.filename);
    const nodes = body.node ? [body.node] : [...cluster.nodes.keys()];
    const size = Buffer.byteLength(String(body.content || ''));
    for (const n of nodes) {
      cluster.addVolume(n, { volid: `${storage}:snippets/${name}`, size, format: 'snippet', content: 'snippets', data: String(body.content || '') });
    }
    return { volid: `${storage}:snippets/${name}`, nodes };
  });

  // any volume, out of band: {node?, volid, size?, content?, format?, vmid?}
  lab.route('POST', '/pve/volumes', ({ body }) => {
    const m = /^([^:]+):(.+)$/.exec(body.volid || '');
    if (!m || !cluster.storageCfg[m[1]]) bad('volid STORAGE:NAME with a known storage is required');
    const content = body.content || (/^iso\//.test(m[2]) ? 'iso' : /^import\//.test(m[2]) ? 'import' : /^snippets\//.test(m[2]) ? 'snippets' : 'images');
    const format = body.format || (/\.(\w+)$/.exec(m[2]) || [null, 'raw'])[1];
    const nodes = body.node ? [body.node] : [...cluster.nodes.keys()];
    for (const n of nodes) {
      cluster.addVolume(n, { volid: body.volid, size: body.size || 1024 ** 3, content, format, ...(body.vmid ? { vmid: Number(body.vmid) } : {}) });
    }
    return { volid: body.volid, content, format, nodes };
  });

  // guest agent override: {ready: true|false|null, interfaces?, osinfo?, hostname?}
  lab.route('POST', '/pve/vms/:vmid/agent', ({ params, body }) => {
    const vm = cluster.vms.get(Number(params.vmid));
    if (!vm) bad(`VM ${params.vmid} does not exist`);
    vm.agent = { ...(vm.agent || {}), ...body };
    return vm.agent;
  });
  lab.route('DELETE', '/pve/vms/:vmid/agent', ({ params }) => {
    const vm = cluster.vms.get(Number(params.vmid));
    if (vm) vm.agent = null;
  });

  // node status: {status: online|offline}; calls proxied to an offline node get 595
  lab.route('POST', '/pve/nodes/:node', ({ params, body }) => {
    const n = cluster.nodes.get(params.node);
    if (!n) bad(`no node '${params.node}'`);
    if (!['online', 'offline'].includes(body.status)) bad('status must be online or offline');
    n.status = body.status;
    return { node: n.name, status: n.status };
  });
};

module.exports.stateView = stateView;
