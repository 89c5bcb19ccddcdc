// The admin kubeconfig a Talos control plane hands out (MachineService/
// Kubeconfig): a client certificate signed by the cluster's Kubernetes CA
// (ECDSA P-256, CN=admin, O=system:masters), the cluster endpoint, packed as
// Talos does: a .tar.gz with one ustar entry `kubeconfig` (mode 0600) whose
// tar.Writer is never closed, so there is neither the data's 512-byte
// padding nor the two zero end blocks (reference/talos.md §1.3).
'use strict';
const crypto = require('crypto');
const zlib = require('zlib');
const { makeCert, loadKey } = require('./x509');

/** kubeconfig YAML text for the cluster (facts from config.facts()). */
function kubeconfig(f, now = new Date()) {
  const caKey = loadKey(f.clusterCA.key);
  const key = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const crt = makeCert({
    subject: [['O', 'system:masters'], ['CN', 'admin']], publicKey: key.publicKey, signKey: caKey,
    issuerCert: f.clusterCA.crt, notBefore: new Date(now.getTime() - 60000),
    notAfter: new Date(now.getTime() + f.kubeconfigDays * 86400000), keyUsage: ['digitalSignature', 'keyEncipherment'],
    extKeyUsage: ['clientAuth'],
  });
  const keyPem = key.privateKey.export({ type: 'sec1', format: 'pem' });
  const b64 = (s) => Buffer.from(s).toString('base64');
  const name = f.clusterName;
  const user = `admin@${name}`;
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `    - name: ${name}`,
    '      cluster:',
    `        server: ${f.endpoint}`,
    `        certificate-authority-data: ${b64(f.clusterCA.crt)}`,
    'users:',
    `    - name: ${user}`,
    '      user:',
    `        client-certificate-data: ${b64(crt)}`,
    `        client-key-data: ${b64(keyPem)}`,
    'contexts:',
    '    - context:',
    `        cluster: ${name}`,
    '        namespace: default',
    `        user: ${user}`,
    `      name: ${user}`,
    `current-context: ${user}`,
    '',
  ].join('\n');
}

function octal(n, width) { return `${n.toString(8).padStart(width - 1, '0')}\0`; }

/** One ustar header + the data, unpadded, no end blocks (Go's tar.Writer without Close). */
function tarEntry(name, data, mode = 0o600, mtime = new Date()) {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write(octal(mode, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii');
  h.write(octal(0, 8), 116, 'ascii');
  h.write(octal(data.length, 12), 124, 'ascii');
  h.write(octal(Math.floor(mtime.getTime() / 1000), 12), 136, 'ascii');
  h.fill(' ', 148, 156);
  h.write('0', 156, 'ascii');
  h.write('ustar\0', 257, 'ascii');
  h.write('00', 263, 'ascii');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return Buffer.concat([h, data]);
}

/** The Kubeconfig stream's payload: gzip(tar without end blocks), cut into chunks. */
function kubeconfigChunks(f, chunkSize = 1024) {
  const text = Buffer.from(kubeconfig(f));
  const gz = zlib.gzipSync(tarEntry('kubeconfig', text));
  const out = [];
  for (let i = 0; i < gz.length; i += chunkSize) out.push(gz.subarray(i, i + chunkSize));
  return out;
}

module.exports = { kubeconfig, tarEntry, kubeconfigChunks };
