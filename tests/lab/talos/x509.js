// A small X.509 certificate builder for the Talos fake (Node has a parser,
// no builder): DER by hand, signed with node:crypto (Ed25519 "pure",
// ECDSA and RSA with SHA-256).  Enough for the maintenance certificate, the
// apid server certificate signed by the machine CA, and the kubeconfig's
// client certificate signed by the cluster's Kubernetes CA.
'use strict';
const crypto = require('crypto');
const net = require('net');

// ------------------------------------------------------------------ DER
function len(n) {
  if (n < 0x80) return Buffer.from([n]);
  const b = [];
  while (n > 0) { b.unshift(n & 0xff); n >>= 8; }
  return Buffer.from([0x80 | b.length, ...b]);
}
const tlv = (tag, ...parts) => { const body = Buffer.concat(parts.map((p) => Buffer.from(p))); return Buffer.concat([Buffer.from([tag]), len(body.length), body]); };
const seq = (...p) => tlv(0x30, ...p);
const set = (...p) => tlv(0x31, ...p);
const ctx = (n, ...p) => tlv(0xa0 + n, ...p); // [n] EXPLICIT, constructed
function int(buf) {
  let b = Buffer.from(buf);
  while (b.length > 1 && b[0] === 0 && !(b[1] & 0x80)) b = b.subarray(1);
  if (b[0] & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return tlv(0x02, b);
}
function oid(s) {
  const p = s.split('.').map(Number);
  const out = [p[0] * 40 + p[1]];
  for (const v of p.slice(2)) {
    const bytes = [v & 0x7f];
    let x = v >> 7;
    while (x > 0) { bytes.unshift((x & 0x7f) | 0x80); x >>= 7; }
    out.push(...bytes);
  }
  return tlv(0x06, Buffer.from(out));
}
const utf8 = (s) => tlv(0x0c, Buffer.from(s, 'utf8'));
const bool = (v) => tlv(0x01, Buffer.from([v ? 0xff : 0]));
const octets = (b) => tlv(0x04, b);
function bits(b, unused = 0) { return tlv(0x03, Buffer.concat([Buffer.from([unused]), b])); }
function time(d) {
  const y = d.getUTCFullYear();
  const p2 = (n) => String(n).padStart(2, '0');
  const s = `${p2(d.getUTCMonth() + 1)}${p2(d.getUTCDate())}${p2(d.getUTCHours())}${p2(d.getUTCMinutes())}${p2(d.getUTCSeconds())}Z`;
  return y >= 1950 && y < 2050 ? tlv(0x17, Buffer.from(p2(y % 100) + s)) : tlv(0x18, Buffer.from(String(y) + s));
}

/** Reads one TLV at `off`: {tag, start (of content), end, raw}. */
function readTlv(buf, off) {
  const tag = buf[off];
  let l = buf[off + 1];
  let p = off + 2;
  if (l & 0x80) { const n = l & 0x7f; l = 0; for (let i = 0; i < n; i++) l = (l << 8) | buf[p + i]; p += n; }
  return { tag, start: p, end: p + l, raw: buf.subarray(off, p + l) };
}

/** The subject key identifier of a certificate (its extension's bytes), or null. */
function subjectKeyId(certDer) {
  const cert = readTlv(certDer, 0);
  const tbs = readTlv(certDer, cert.start);
  let p = tbs.start;
  while (p < tbs.end) {
    const t = readTlv(certDer, p);
    if (t.tag === 0xa3) {
      const exts = readTlv(certDer, t.start);
      let q = exts.start;
      while (q < exts.end) {
        const ext = readTlv(certDer, q);
        const id = readTlv(certDer, ext.start);
        if (id.raw.equals(oid(OID.ski))) {
          let r = id.end;
          let v = readTlv(certDer, r);
          if (v.tag === 0x01) { r = v.end; v = readTlv(certDer, r); } // critical flag
          const inner = readTlv(certDer, v.start);
          return Buffer.from(certDer.subarray(inner.start, inner.end));
        }
        q = ext.end;
      }
    }
    p = t.end;
  }
  return null;
}

/** The DER of a certificate's subject Name (to use as an issuer). */
function subjectDer(certDer) {
  const cert = readTlv(certDer, 0);
  const tbs = readTlv(certDer, cert.start);
  let p = tbs.start;
  const fields = [];
  while (p < tbs.end) { const t = readTlv(certDer, p); fields.push(t); p = t.end; }
  const i = fields[0].tag === 0xa0 ? 1 : 0; // [0] version
  return Buffer.from(fields[i + 4].raw); // serial, sigalg, issuer, validity, subject
}

const OID = {
  O: '2.5.4.10', CN: '2.5.4.3', OU: '2.5.4.11',
  ed25519: '1.3.101.112', ecdsaSha256: '1.2.840.10045.4.3.2', rsaSha256: '1.2.840.113549.1.1.11',
  keyUsage: '2.5.29.15', extKeyUsage: '2.5.29.37', basicConstraints: '2.5.29.19', san: '2.5.29.17',
  ski: '2.5.29.14', aki: '2.5.29.35', serverAuth: '1.3.6.1.5.5.7.3.1', clientAuth: '1.3.6.1.5.5.7.3.2',
};

/** Name from [['O', 'x'], ['CN', 'y']] (one RDN per attribute). */
function name(attrs) { return seq(...attrs.map(([k, v]) => set(seq(oid(OID[k]), utf8(v))))); }

function sigAlg(key) {
  const t = key.asymmetricKeyType;
  if (t === 'ed25519') return { der: seq(oid(OID.ed25519)), hash: null };
  if (t === 'ec') return { der: seq(oid(OID.ecdsaSha256)), hash: 'sha256' };
  if (t === 'rsa') return { der: seq(oid(OID.rsaSha256), tlv(0x05, Buffer.alloc(0))), hash: 'sha256' };
  throw new Error(`unsupported CA key type ${t}`);
}

const KU = { digitalSignature: 0, keyEncipherment: 2, keyCertSign: 5, cRLSign: 6 };
function keyUsage(list) {
  let v = 0;
  for (const k of list) v |= 0x80 >> KU[k];
  let unused = 0;
  while (unused < 7 && !(v & (1 << unused))) unused++;
  return bits(Buffer.from([v]), unused);
}

function ipBytes(ip) {
  if (net.isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  const parts = ip.split('::');
  const head = parts[0] ? parts[0].split(':') : [];
  const tail = parts.length > 1 && parts[1] ? parts[1].split(':') : [];
  const words = [...head, ...Array(8 - head.length - tail.length).fill('0'), ...tail];
  return Buffer.from(words.flatMap((w) => { const n = parseInt(w, 16); return [n >> 8, n & 0xff]; }));
}

/**
 * Makes a certificate; returns its PEM.  o: {subject: [[attr, value]...],
 * publicKey (KeyObject), issuerCert (PEM, absent = self-signed), signKey
 * (KeyObject), notBefore, notAfter (Date), isCA, keyUsage: [...],
 * extKeyUsage: ['serverAuth'|'clientAuth'], dns: [], ips: []}.
 */
function makeCert(o) {
  const issuer = o.issuerCert ? subjectDer(new crypto.X509Certificate(o.issuerCert).raw) : name(o.subject);
  const alg = sigAlg(o.signKey);
  const spki = o.publicKey.export({ type: 'spki', format: 'der' });
  const ski = crypto.createHash('sha1').update(spki).digest();
  const exts = [
    seq(oid(OID.keyUsage), bool(true), octets(keyUsage(o.keyUsage || ['digitalSignature']))),
  ];
  if (o.extKeyUsage && o.extKeyUsage.length) {
    exts.push(seq(oid(OID.extKeyUsage), octets(seq(...o.extKeyUsage.map((k) => oid(OID[k]))))));
  }
  exts.push(seq(oid(OID.basicConstraints), bool(true), octets(o.isCA ? seq(bool(true)) : seq())));
  exts.push(seq(oid(OID.ski), octets(octets(ski))));
  if (o.issuerCert) {
    const caSki = subjectKeyId(new crypto.X509Certificate(o.issuerCert).raw);
    if (caSki) exts.push(seq(oid(OID.aki), octets(seq(tlv(0x80, caSki)))));
  }
  const names = [...(o.dns || []).map((d) => tlv(0x82, Buffer.from(d))), ...(o.ips || []).map((ip) => tlv(0x87, ipBytes(ip)))];
  if (names.length) exts.push(seq(oid(OID.san), octets(seq(...names))));
  const serial = crypto.randomBytes(16);
  serial[0] &= 0x7f;
  const tbs = seq(
    ctx(0, int(Buffer.from([2]))), int(serial), alg.der, issuer,
    seq(time(o.notBefore), time(o.notAfter)), name(o.subject), spki, ctx(3, seq(...exts)),
  );
  const sig = crypto.sign(alg.hash, tbs, o.signKey);
  const der = seq(tbs, alg.der, bits(sig));
  return `-----BEGIN CERTIFICATE-----\n${der.toString('base64').match(/.{1,64}/g).join('\n')}\n-----END CERTIFICATE-----\n`;
}

/** Reads a private key PEM, accepting Talos's "ED25519 PRIVATE KEY" label (PKCS#8 inside). */
function loadKey(pem) {
  const text = String(pem).replace(/-----(BEGIN|END) ED25519 PRIVATE KEY-----/g, '-----$1 PRIVATE KEY-----');
  return crypto.createPrivateKey(text);
}

/** The roles (Organization values) and ext key usages of a certificate. */
function describe(certPem) {
  const c = new crypto.X509Certificate(certPem);
  const org = [];
  for (const line of c.subject.split('\n')) { const m = /^O=(.*)$/.exec(line); if (m) org.push(m[1]); }
  return { subject: c.subject.replace(/\n/g, ', '), organizations: org, eku: c.keyUsage || [], ca: c.ca,
    validFrom: new Date(c.validFrom), validTo: new Date(c.validTo), cert: c };
}

module.exports = { makeCert, loadKey, describe, subjectDer, subjectKeyId, OID };
