// The Image Factory fake: a lab service (see ../lab.js).  Plain HTTP at
// <net>.0.5 (port 8080 when free), the API of factory.talos.dev that tlr
// uses (reference/talos.md §4):
//
//   POST /schematics                      YAML or JSON; unknown fields -> 400;
//                                         201 {"id": sha256(canonical yaml)}
//   GET|HEAD /image/<id>/<ver>/<file>     small deterministic stand-in images
//   GET /versions                         the Talos versions it builds
//   GET /version/<ver>/extensions/official
//
// Only schematics POSTed to this lab (and the default, empty one) are
// known; images of other ids answer 404 like the real factory does for an
// id it has never seen.
'use strict';
const crypto = require('crypto');
const http = require('http');
const zlib = require('zlib');
const S = require('./schematic');

const profiles = {
  // seconds
  test: { request_latency: 0, build: 0, redirect: 0, jitter: 0 },
  realistic: {
    request_latency: 0.08, // every call (factory.talos.dev from a home lab)
    build: 4, // the first download of an image (id, version, file) is built first; later ones are cached
    redirect: 0, // 1: image downloads answer 302 to /cdn/... (as the public factory does for cached assets)
    jitter: 0.2,
  },
};

const VERSIONS = [];
for (const [minor, last] of [[8, 4], [9, 6], [10, 9], [11, 6], [12, 4], [13, 1]]) {
  for (let p = 0; p <= last; p++) VERSIONS.push(`v1.${minor}.${p}`);
}
VERSIONS.push('v1.14.0-beta.1');

const EXTENSIONS = [
  ['siderolabs/amd-ucode', '20250509', 'AMD microcode binaries'],
  ['siderolabs/i915', '20250509-v1.11.6', 'Intel i915 GPU driver and firmware'],
  ['siderolabs/intel-ucode', '20250512', 'Intel microcode binaries'],
  ['siderolabs/iscsi-tools', 'v0.2.0', 'iSCSI tools (iscsid, iscsiadm)'],
  ['siderolabs/nfsd', 'v1.11.6', 'NFS server kernel modules'],
  ['siderolabs/qemu-guest-agent', '10.0.2', 'QEMU guest agent'],
  ['siderolabs/tailscale', '1.84.3', 'Tailscale'],
  ['siderolabs/util-linux-tools', '2.41.1', 'util-linux tools (fstrim, ...)'],
];

const PLATFORMS = ['metal', 'nocloud', 'aws', 'azure', 'gcp', 'digital-ocean', 'hcloud', 'openstack', 'oracle',
  'scaleway', 'upcloud', 'vultr', 'vmware', 'exoscale', 'akamai', 'equinixMetal', 'cloudstack', 'opennebula'];
const P = PLATFORMS.join('|');
const FILE_RES = [
  new RegExp(`^(${P})-(amd64|arm64)(-secureboot)?\\.iso$`),
  new RegExp(`^(${P})-(amd64|arm64)(-secureboot)?\\.(raw|qcow2|vpc|ova)(\\.(xz|zst|gz|tar\\.gz))?$`),
  new RegExp(`^(${P})-(amd64|arm64)(-secureboot)?-uki\\.efi$`),
  /^kernel-(amd64|arm64)$/, /^initramfs-(amd64|arm64)\.xz$/,
  new RegExp(`^cmdline-(${P})-(amd64|arm64)(-secureboot)?$`),
  /^installer-(amd64|arm64)(-secureboot)?\.tar$/,
];

/** The stand-in bytes of an image: a text header naming it, then deterministic filler. */
function imageBytes(id, version, file) {
  const seed = crypto.createHash('sha256').update(`${id}/${version}/${file}`).digest();
  const size = 4096 + seed[0] * 16 + seed[1];
  const body = Buffer.alloc(size);
  let block = seed;
  for (let off = 0; off < size; off += 32) {
    block = crypto.createHash('sha256').update(block).digest();
    block.copy(body, off, 0, Math.min(32, size - off));
  }
  const text = Buffer.from(`tlr lab stand-in image\ntalos ${version}\nschematic ${id}\nfile ${file}\n`);
  let magic = Buffer.alloc(0);
  if (/\.qcow2$/.test(file)) magic = Buffer.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]);
  text.copy(body, magic.length);
  magic.copy(body, 0);
  if (/\.raw$/.test(file)) { body[510] = 0x55; body[511] = 0xaa; }
  if (/\.(tar\.)?gz$/.test(file)) return zlib.gzipSync(body, { level: 9 });
  if (/\.xz$/.test(file)) return Buffer.concat([Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), body]);
  if (/\.zst$/.test(file)) return Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), body]);
  return body;
}

class Factory {
  constructor(lab) {
    this.lab = lab;
    this.schematics = new Map(); // id -> {canonical, schematic, created}
    this.schematics.set(S.DEFAULT_ID, { canonical: S.canonical({}), schematic: { customization: {} }, created: null });
    this.built = new Map(); // "id/ver/file" -> {size, sha256, downloads}
  }

  async handle(req, res, body) {
    const started = Date.now();
    const url = new URL(req.url, 'http://factory');
    const p = url.pathname;
    const entry = { service: 'factory', time: started / 1000, method: req.method, path: p, params: {}, auth: 'none' };
    const done = (status, reason, fault) => {
      this.lab.logRequest({ ...entry, status, reason, ms: Date.now() - started, fault: fault || null });
    };
    const send = (status, type, data, extra = {}) => {
      const buf = Buffer.isBuffer(data) ? data : Buffer.from(data);
      res.writeHead(status, { 'content-type': type, 'content-length': buf.length, ...extra });
      res.end(req.method === 'HEAD' ? undefined : buf);
      done(status, http.STATUS_CODES[status]);
    };
    const json = (status, v) => send(status, 'application/json', JSON.stringify(v) + '\n');
    const text = (status, msg) => send(status, 'text/plain; charset=utf-8', msg + '\n');

    const fault = this.lab.faults.match('factory', req.method, p);
    const latency = this.lab.ms('factory', 'request_latency') + (fault && fault.latency ? fault.latency * 1000 : 0);
    if (latency) await sleep(latency);
    if (fault && fault.drop) { req.socket.destroy(); done(0, 'dropped', fault.id); return; }
    if (fault && fault.status) {
      const msg = fault.message || http.STATUS_CODES[fault.status] || 'error';
      res.writeHead(fault.status, msg.split('\n')[0].replace(/[^\t\x20-\x7e]/g, '?'), { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`${msg}\n`);
      done(fault.status, msg, fault.id);
      return;
    }

    let m;
    if (p === '/schematics') {
      if (req.method !== 'POST') return text(405, 'method not allowed');
      let r;
      try { r = S.fromText(body.toString('utf8')); } catch (err) {
        if (err instanceof S.SchematicError) return text(400, err.message);
        throw err;
      }
      if (!this.schematics.has(r.id)) this.schematics.set(r.id, { canonical: r.canonical, schematic: r.schematic, created: Date.now() / 1000 });
      entry.params = { id: r.id };
      return json(201, { id: r.id });
    }
    if ((m = /^\/(cdn\/)?image\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(p))) {
      if (req.method !== 'GET' && req.method !== 'HEAD') return text(405, 'method not allowed');
      const [, cdn, id, version, file] = m;
      if (!this.schematics.has(id)) return text(404, `schematic ID "${id}" not found`);
      if (!VERSIONS.includes(version)) return text(404, `version "${version}" not found`);
      if (!FILE_RES.some((re) => re.test(file))) return text(404, `unsupported path "${file}"`);
      if (!cdn && this.lab.profile.factory.redirect) {
        res.writeHead(302, { location: `/cdn/image/${id}/${version}/${file}`, 'content-length': 0 });
        res.end();
        done(302, 'Found');
        return;
      }
      const key = `${id}/${version}/${file}`;
      const data = imageBytes(id, version, file);
      if (!this.built.has(key)) {
        const wait = this.lab.ms('factory', 'build');
        if (wait) await sleep(wait);
        this.built.set(key, { size: data.length, sha256: sha256(data), downloads: 0 });
      }
      if (req.method === 'GET') this.built.get(key).downloads++;
      return send(200, 'application/octet-stream', data, {
        'content-disposition': `attachment; filename=${file}`, etag: `"${sha256(data).slice(0, 32)}"`,
      });
    }
    if (p === '/versions') {
      if (req.method !== 'GET' && req.method !== 'HEAD') return text(405, 'method not allowed');
      return json(200, VERSIONS);
    }
    if ((m = /^\/version\/([^/]+)\/extensions\/official$/.exec(p))) {
      if (!VERSIONS.includes(m[1])) return text(404, `version "${m[1]}" not found`);
      return json(200, EXTENSIONS.map(([name, tag, description]) => ({
        name, ref: `ghcr.io/${name}:${tag}`,
        digest: `sha256:${sha256(Buffer.from(`${name}:${tag}@${m[1]}`))}`,
        author: 'Sidero Labs', description,
      })));
    }
    if ((m = /^\/schematics\/([0-9a-f]{64})$/.exec(p)) && req.method === 'GET') {
      const s = this.schematics.get(m[1]);
      if (!s) return text(404, `schematic ID "${m[1]}" not found`);
      return send(200, 'application/yaml', s.canonical);
    }
    return text(404, '404 page not found');
  }

  state() {
    return {
      schematics: Object.fromEntries([...this.schematics].map(([id, s]) => [id, { yaml: s.canonical, created: s.created }])),
      images: Object.fromEntries(this.built),
      versions: VERSIONS,
    };
  }
}

function sha256(b) { return crypto.createHash('sha256').update(b).digest('hex'); }
function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

async function start(lab) {
  const factory = new Factory(lab);
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      factory.handle(req, res, Buffer.concat(chunks)).catch((err) => {
        if (!res.headersSent) { res.writeHead(500, { 'content-type': 'text/plain' }); res.end(`${err.message}\n`); }
        lab.logRequest({ service: 'factory', time: Date.now() / 1000, method: req.method, path: req.url, status: 500, reason: err.message });
      });
    });
  });
  server.keepAliveTimeout = 5000;
  const host = lab.addr(5);
  const port = await lab.listen(server, host, 8080);
  const url = `http://${host}:${port}`;
  lab.route('GET', '/factory/state', () => factory.state());
  // registers a schematic out of band (as if someone had POSTed it to the real factory before)
  lab.route('POST', '/factory/schematics', ({ body }) => {
    const r = S.fromText(typeof body.yaml === 'string' ? body.yaml : JSON.stringify(body));
    factory.schematics.set(r.id, { canonical: r.canonical, schematic: r.schematic, created: Date.now() / 1000 });
    return { id: r.id };
  });
  return {
    env: { FACTORY_URL: url, FACTORY_HOST: host, FACTORY_PORT: String(port) },
    stop: async () => { server.close(); if (server.closeAllConnections) server.closeAllConnections(); },
    api: { factory, imageBytes, knows: (id) => factory.schematics.has(id), versions: VERSIONS },
  };
}

module.exports = { name: 'factory', profiles, start, imageBytes, VERSIONS };
