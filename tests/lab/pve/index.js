// The Proxmox VE fake: a lab service (see ../lab.js).  Serves the PVE API
// over HTTPS at <net>.0.2 (port 8006 when free) as node pve1 of a
// three-node cluster (pve1..pve3), with a certificate made by the openssl CLI
// and signed by a per-lab "PVE Cluster Manager CA" like a fresh PVE install.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');
const profiles = require('./profile');
const { Schema } = require('./schema');
const { Cluster } = require('./state');
const { Auth } = require('./auth');
const { Tasks } = require('./tasks');
const { PveServer } = require('./server');

const NODES = ['pve1', 'pve2', 'pve3'];

/** pve-root-ca.pem + pve-ssl.pem/key for `host` in dir (reused while the address matches). */
function makeCertificate(dir, host, nodeName) {
  const f = (n) => path.join(dir, n);
  const stamp = `${host} ${nodeName}`;
  const have = ['pve-root-ca.pem', 'pve-ssl.pem', 'pve-ssl.key'].every((n) => fs.existsSync(f(n)));
  if (!have || !fs.existsSync(f('cert.stamp')) || fs.readFileSync(f('cert.stamp'), 'utf8') !== stamp) {
    const run = (args) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const serial = () => `0x${crypto.randomBytes(8).toString('hex')}`;
    run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('pve-root-ca.key'), '-out', f('pve-root-ca.pem'),
      '-days', '3650', '-set_serial', serial(), '-subj',
      `/CN=Proxmox Virtual Environment/OU=${crypto.randomUUID()}/O=PVE Cluster Manager CA`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('pve-ssl.key'), '-out', f('pve-ssl.csr'),
      '-subj', `/OU=PVE Cluster Node/O=Proxmox Virtual Environment/CN=${nodeName}.lab`]);
    fs.writeFileSync(f('pve-ssl.ext'), [
      `subjectAltName=IP:${host},IP:127.0.0.1,DNS:${nodeName},DNS:${nodeName}.lab,DNS:localhost`,
      'basicConstraints=CA:FALSE', 'keyUsage=digitalSignature,nonRepudiation,keyEncipherment',
      'extendedKeyUsage=serverAuth', '',
    ].join('\n'));
    run(['x509', '-req', '-in', f('pve-ssl.csr'), '-CA', f('pve-root-ca.pem'), '-CAkey', f('pve-root-ca.key'),
      '-set_serial', serial(), '-days', '730', '-sha256', '-out', f('pve-ssl.pem'), '-extfile', f('pve-ssl.ext')]);
    fs.chmodSync(f('pve-ssl.key'), 0o600);
    fs.chmodSync(f('pve-root-ca.key'), 0o600);
    fs.writeFileSync(f('cert.stamp'), stamp);
  }
  const cert = fs.readFileSync(f('pve-ssl.pem'));
  return {
    cert, key: fs.readFileSync(f('pve-ssl.key')), caFile: f('pve-root-ca.pem'),
    fingerprint: new crypto.X509Certificate(cert).fingerprint256, // "AB:CD:..." like PVE shows it
  };
}

async function start(lab) {
  const dir = path.join(lab.stateDir, 'pve');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const host = lab.addr(2);
  const tls = makeCertificate(dir, host, NODES[0]);
  const schema = new Schema();
  const cluster = new Cluster({ lab, schema, nodes: NODES, version: lab.opts.pveVersion, fingerprint: tls.fingerprint, address: host });
  const password = crypto.randomBytes(12).toString('base64url');
  const secrets = { root: crypto.randomUUID(), noperm: crypto.randomUUID(), audit: crypto.randomUUID() };
  const auth = new Auth({ password, secrets, lifetime: () => lab.profile.pve.ticket_lifetime });
  const tasks = new Tasks({ ms: (k) => lab.ms('pve', k), workers: () => lab.profile.pve.node_workers, nodeStart: Date.now() });
  const routes = {};
  for (const m of ['./api-cluster', './api-storage', './api-qemu', './api-vmstatus', './api-tasks']) require(m)(routes);
  const server = new PveServer({ lab, schema, auth, cluster, tasks, routes, selfNode: NODES[0] });
  const port = await server.listen(host, 8006, tls);
  require('./control')(lab, { cluster, tasks });
  const env = {
    PVE_ENDPOINT: `https://${host}:${port}`,
    PVE_HOST: host,
    PVE_PORT: String(port),
    PVE_FINGERPRINT: tls.fingerprint,
    PVE_CA_FILE: tls.caFile,
    PVE_TOKEN: `root@pam!tlr=${secrets.root}`,
    PVE_TOKEN_NOPERM: `tlr@pve!noperm=${secrets.noperm}`,
    PVE_TOKEN_AUDIT: `tlr@pve!audit=${secrets.audit}`,
    PVE_USER: 'root@pam',
    PVE_PASSWORD: password,
    PVE_NODES: NODES.join(' '),
    PVE_VERSION: cluster.version.version,
  };
  return {
    env,
    stop: async () => server.close(),
    // for other lab services (e.g. the Talos node fake): read VMs, steer the guest agent
    api: {
      cluster, tasks,
      vm: (vmid) => cluster.vms.get(Number(vmid)),
      setAgent: (vmid, o) => { const vm = cluster.vms.get(Number(vmid)); if (vm) vm.agent = { ...(vm.agent || {}), ...o }; },
    },
  };
}

module.exports = { name: 'pve', profiles, start };
