// Certificates of a Kubernetes API fake, made with the openssl CLI: the
// cluster CA (made here when none is given; Talos hands its cluster.ca in),
// the apiserver's serving certificate (the listen address and the usual
// kubernetes.default.svc names as SANs), an admin client certificate
// (O=system:masters) and a viewer one (no rights), and the admin kubeconfig
// in the `*-data` form.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const run = (args) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
const serial = () => `0x${crypto.randomBytes(12).toString('hex')}`;

/** Talos writes "ED25519 PRIVATE KEY" around PKCS#8; openssl wants "PRIVATE KEY". */
function normalizeKey(pem) {
  return String(pem).replace(/-----(BEGIN|END) ED25519 PRIVATE KEY-----/g, '-----$1 PRIVATE KEY-----');
}

function writePrivate(file, data) {
  fs.writeFileSync(file, data, { mode: 0o600 });
  fs.chmodSync(file, 0o600);
}

/** Signs a fresh P-256 key for `subject` with the CA in dir; returns {cert, key} PEMs. */
function issue(dir, name, subject, ext) {
  const f = (n) => path.join(dir, n);
  run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f(`${name}.key`),
    '-out', f(`${name}.csr`), '-subj', subject]);
  fs.writeFileSync(f(`${name}.ext`), ext.join('\n') + '\n');
  run(['x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-set_serial', serial(),
    '-days', '365', '-sha256', '-out', f(`${name}.crt`), '-extfile', f(`${name}.ext`)]);
  fs.chmodSync(f(`${name}.key`), 0o600);
  for (const n of [`${name}.csr`, `${name}.ext`]) fs.rmSync(f(n), { force: true });
  return { cert: fs.readFileSync(f(`${name}.crt`), 'utf8'), key: fs.readFileSync(f(`${name}.key`), 'utf8') };
}

/**
 * Makes the certificates in dir.  o: {address, caCert, caKey (PEMs; absent =
 * a new CA), sans: [extra DNS names or IPs]}.  Returns PEMs and file paths.
 */
function makeCerts(dir, o) {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const f = (n) => path.join(dir, n);
  if (o.caCert && o.caKey) {
    fs.writeFileSync(f('ca.crt'), o.caCert);
    writePrivate(f('ca.key'), normalizeKey(o.caKey));
  } else {
    run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('ca.key'),
      '-out', f('ca.crt'), '-days', '3650', '-set_serial', serial(), '-subj', '/O=kubernetes',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign']);
    fs.chmodSync(f('ca.key'), 0o600);
  }
  const ips = [o.address, '127.0.0.1', '10.96.0.1'];
  const dns = ['kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local', 'localhost'];
  for (const s of o.sans || []) (/^[\d.]+$|:/.test(s) ? ips : dns).push(s);
  const san = [...new Set(dns)].map((d) => `DNS:${d}`).concat([...new Set(ips)].map((i) => `IP:${i}`)).join(',');
  const server = issue(dir, 'apiserver', '/CN=kube-apiserver', [`subjectAltName=${san}`, 'basicConstraints=CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment', 'extendedKeyUsage=serverAuth']);
  const client = ['basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature,keyEncipherment', 'extendedKeyUsage=clientAuth'];
  const admin = issue(dir, 'admin', '/O=system:masters/CN=admin', client);
  const viewer = issue(dir, 'viewer', '/O=lab:viewers/CN=viewer', client);
  return {
    ca: fs.readFileSync(f('ca.crt'), 'utf8'), server, admin, viewer,
    files: { ca: f('ca.crt'), adminCert: f('admin.crt'), adminKey: f('admin.key'), viewerCert: f('viewer.crt'), viewerKey: f('viewer.key') },
  };
}

/** The admin kubeconfig (clusters/users/contexts with base64 `*-data`). */
function kubeconfig({ name, server, ca, cert, key, user = 'admin' }) {
  const b64 = (s) => Buffer.from(s).toString('base64');
  const ctx = `${user}@${name}`;
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- cluster:',
    `    certificate-authority-data: ${b64(ca)}`,
    `    server: ${server}`,
    `  name: ${name}`,
    'contexts:',
    '- context:',
    `    cluster: ${name}`,
    '    namespace: default',
    `    user: ${ctx}`,
    `  name: ${ctx}`,
    `current-context: ${ctx}`,
    'preferences: {}',
    'users:',
    `- name: ${ctx}`,
    '  user:',
    `    client-certificate-data: ${b64(cert)}`,
    `    client-key-data: ${b64(key)}`,
    '',
  ].join('\n');
}

module.exports = { makeCerts, kubeconfig, normalizeKey };
