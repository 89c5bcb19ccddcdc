// Storage: /storage (datacenter config), /nodes/{node}/storage (status,
// content listing, volume info and delete) and download-url with
// pve-storage's rules: file-based storage with the content type enabled,
// extension per content type (iso: .iso/.img, vztmpl: .tar.gz|xz|zst|bz2,
// import: .ova/.qcow2/.raw/.vmdk), filename normalisation, `compression`
// only for iso, checksum + checksum-algorithm verified after the transfer.
'use strict';
const { die, paramExc, ApiError } = require('./state');
const F = require('./formats');
const V = require('./views');
const { fetchUrl } = require('./download');

const DIRS = { iso: 'template/iso', vztmpl: 'template/cache', import: 'import', snippets: 'snippets' };
const EXT = {
  iso: /^[^/]+\.(?:iso|img)$/i,
  vztmpl: /^[^/]+\.(tar\.(?:gz|xz|zst|bz2))$/i,
  import: /^[a-zA-Z0-9\-.+=_]+\.(ova|qcow2|raw|vmdk)$/,
};

const normalizeFilename = (n) => String(n).replace(/[^a-zA-Z0-9_.-]/g, '_');
const encodeText = (s) => String(s).replace(/[^-_.\w]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);

function formatOf(content, filename) {
  if (content === 'iso') return 'iso';
  if (content === 'vztmpl') return 'tgz';
  if (content === 'snippets') return 'snippet';
  const m = /\.(ova|qcow2|raw|vmdk)$/.exec(filename);
  return m ? m[1] : 'raw';
}

function storageConfigEntry(cluster, id) {
  const s = cluster.storageCfg[id];
  const e = { storage: id, type: s.type, content: cluster.storageContent(id).sort().join(','), digest: '9d1a1b3f0c2e6a4c8b7d5e3f2a1c0b9d8e7f6a5b' };
  if (s.path) e.path = s.path;
  if (s.vgname) { e.vgname = s.vgname; e.thinpool = s.thinpool; }
  if (s.shared) e.shared = 1;
  return e;
}

async function downloadUrl(ctx) {
  const { cluster, lab, params } = ctx;
  const { node, storage, content, url } = params;
  const s = cluster.storage(node, storage);
  if (!s.path) die(`can't upload to storage type '${s.type}', not a file based storage!`);
  if (!s.content.includes(content)) die(`storage '${storage}' is not configured for content-type '${content}'`);
  const filename = normalizeFilename(params.filename);
  if (content === 'iso' && !EXT.iso.test(filename)) paramExc({ filename: 'wrong file extension' });
  if (content === 'vztmpl' && !EXT.vztmpl.test(filename)) paramExc({ filename: 'wrong file extension' });
  if (content === 'import' && !EXT.import.test(filename)) paramExc({ filename: 'invalid filename or wrong extension' });
  const volid = `${storage}:${content === 'iso' ? 'iso' : content === 'vztmpl' ? 'vztmpl' : 'import'}/${filename}`;
  const dest = `${s.path}/${DIRS[content]}/${filename}`;
  return ctx.task({
    node, type: 'download', id: encodeText(filename),
    run: async (t) => {
      if (params.compression && content !== 'iso') die(`decompression not supported for ${content}`);
      if (cluster.volume(node, volid)) die(`refusing to override existing file '${dest}'`);
      t.log(`downloading ${url} to ${dest}`);
      const started = Date.now();
      const got = await fetchUrl(cluster.files, url, { verify: params['verify-certificates'] !== 0 });
      await t.sleep(lab.ms('pve', 'download'));
      t.log(`Length: ${got.size}`);
      t.log(`download of '${url}' to '${dest}' finished (${((Date.now() - started) / 1000).toFixed(1)} s)`);
      if (params.checksum) {
        const want = params.checksum.toLowerCase();
        const have = got.hashes[params['checksum-algorithm']];
        t.log('calculating checksum...');
        if (want !== have) die(`checksum mismatch: got '${have}' != expect '${want}'`);
        t.log('checksum verified');
      }
      if (params.compression) t.log(`decompressing ${dest}.${params.compression} to ${dest}`);
      cluster.addVolume(node, { volid, size: got.size, format: formatOf(content, filename), content, url });
    },
  });
}

module.exports = (routes) => {
  routes['GET /storage'] = (ctx) => Object.keys(ctx.cluster.storageCfg)
    .filter((id) => ctx.can(`/storage/${id}`, 'Datastore.Audit') || ctx.can(`/storage/${id}`, 'Datastore.AllocateSpace'))
    .filter((id) => !ctx.params.type || ctx.cluster.storageCfg[id].type === ctx.params.type)
    .map((id) => storageConfigEntry(ctx.cluster, id));
  routes['GET /storage/{storage}'] = (ctx) => {
    if (!ctx.cluster.storageCfg[ctx.params.storage]) die(`storage '${ctx.params.storage}' does not exist`);
    return storageConfigEntry(ctx.cluster, ctx.params.storage);
  };
  routes['GET /nodes/{node}/storage'] = (ctx) => {
    const { cluster, params } = ctx;
    cluster.node(params.node);
    const want = params.content ? F.splitList(params.content) : [];
    return Object.keys(cluster.storageCfg)
      .filter((id) => !params.storage || id === params.storage)
      .filter((id) => ctx.can(`/storage/${id}`, 'Datastore.Audit') || ctx.can(`/storage/${id}`, 'Datastore.AllocateSpace'))
      .map((id) => V.storageEntry(cluster, params.node, id))
      .filter((e) => !want.length || want.some((c) => e.content.split(',').includes(c)));
  };
  routes['GET /nodes/{node}/storage/{storage}'] = (ctx) => {
    ctx.cluster.storage(ctx.params.node, ctx.params.storage);
    return ['content', 'download-url', 'file-restore', 'import-metadata', 'prunebackups', 'rrd', 'rrddata', 'status', 'upload']
      .map((subdir) => ({ subdir }));
  };
  routes['GET /nodes/{node}/storage/{storage}/status'] = (ctx) => {
    const e = V.storageEntry(ctx.cluster, ctx.params.node, ctx.params.storage);
    delete e.storage;
    return e;
  };
  routes['GET /nodes/{node}/storage/{storage}/content'] = (ctx) => {
    const { cluster, params } = ctx;
    cluster.storage(params.node, params.storage);
    return [...cluster.vols(params.node, params.storage).values()]
      .filter((v) => !params.content || v.content === params.content)
      .filter((v) => params.vmid === undefined || v.vmid === params.vmid)
      .sort((a, b) => (a.volid < b.volid ? -1 : 1))
      .map(V.volumeEntry);
  };
  const findVolume = (ctx) => {
    const { cluster, params } = ctx;
    const volid = params.volume.includes(':') ? params.volume : `${params.storage}:${params.volume}`;
    const vol = cluster.volume(params.node, volid);
    if (!vol) die(`volume '${volid}' does not exist`);
    return vol;
  };
  routes['GET /nodes/{node}/storage/{storage}/content/{volume}'] = (ctx) => {
    const vol = findVolume(ctx);
    const s = ctx.cluster.storageCfg[vol.volid.split(':')[0]];
    const rel = vol.volid.split(':')[1];
    const p = s.path ? `${s.path}/${vol.content === 'images' ? `images/${rel}` : rel.replace(/^(iso|vztmpl)\//, (m, d) => `${DIRS[d]}/`)}` : `/dev/${s.vgname}/${rel}`;
    return { path: p, size: vol.size, used: vol.size, format: vol.format };
  };
  routes['DELETE /nodes/{node}/storage/{storage}/content/{volume}'] = (ctx) => {
    const vol = findVolume(ctx);
    const { cluster, params } = ctx;
    if (vol.vmid && cluster.vms.has(vol.vmid)) {
      const vm = cluster.vms.get(vol.vmid);
      if (Object.values(vm.config).some((v) => String(v).split(',')[0] === vol.volid)) {
        die(`unable to delete '${vol.volid}' - volume is still in use (VM ${vol.vmid})`);
      }
    }
    return ctx.task({
      node: params.node, type: 'imgdel', id: encodeText(vol.volid),
      run: async () => { cluster.removeVolume(params.node, vol.volid); },
    });
  };
  routes['POST /nodes/{node}/storage/{storage}/download-url'] = downloadUrl;
  routes['POST /nodes/{node}/storage/{storage}/upload'] = () => {
    throw new ApiError(501, 'upload (multipart) is not implemented in the lab fake; use download-url or POST /pve/files');
  };
};

module.exports.normalizeFilename = normalizeFilename;
