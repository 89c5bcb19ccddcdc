// Fetching for download-url: files registered through the control endpoint
// (POST /pve/files) are served from memory; any other http(s) URL is really
// fetched (e.g. from the lab's Image Factory fake), hashed and measured, and
// its bytes are dropped: only size and checksums matter to the fake.
'use strict';
const crypto = require('crypto');
const http = require('http');
const https = require('https');

const ALGOS = ['md5', 'sha1', 'sha224', 'sha256', 'sha384', 'sha512'];

function digestAll(chunks) {
  const hs = Object.fromEntries(ALGOS.map((a) => [a, crypto.createHash(a)]));
  let size = 0;
  for (const c of chunks) { size += c.length; for (const h of Object.values(hs)) h.update(c); }
  return { size, hashes: Object.fromEntries(ALGOS.map((a) => [a, hs[a].digest('hex')])) };
}

/** Resolves to {size, hashes} or rejects with "download failed: ..." */
function fetchUrl(files, url, { verify = true, redirects = 5, timeoutMs = 60000 } = {}) {
  const reg = files.get(url);
  if (reg) {
    if (reg.status && reg.status !== 200) return Promise.reject(new Error(`download failed: ${reg.status} ${reg.reason || 'error'}`));
    return new Promise((resolve) => setTimeout(() => resolve(digestAll([reg.data])), (reg.delay || 0) * 1000));
  }
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === 'https:' ? https : http;
    const req = mod.get(u, { rejectUnauthorized: !!verify, timeout: timeoutMs }, (res) => {
      if (res.statusCode >= 300 && res.statusCode < 400 && res.headers.location && redirects > 0) {
        res.resume();
        const next = new URL(res.headers.location, u).toString();
        fetchUrl(files, next, { verify, redirects: redirects - 1, timeoutMs }).then(resolve, reject);
        return;
      }
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`download failed: ${res.statusCode} ${res.statusMessage}`));
        return;
      }
      const hs = Object.fromEntries(ALGOS.map((a) => [a, crypto.createHash(a)]));
      let size = 0;
      res.on('data', (c) => { size += c.length; for (const h of Object.values(hs)) h.update(c); });
      res.on('end', () => resolve({ size, hashes: Object.fromEntries(ALGOS.map((a) => [a, hs[a].digest('hex')])) }));
      res.on('error', (e) => reject(new Error(`download failed: ${e.message}`)));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => reject(new Error(`download failed: ${e.message}`)));
  });
}

/** A registered file's bytes from {data (text) | base64 | size (deterministic filler)}. */
function registeredData(spec) {
  if (typeof spec.base64 === 'string') return Buffer.from(spec.base64, 'base64');
  if (typeof spec.data === 'string') return Buffer.from(spec.data, 'utf8');
  if (Number.isInteger(spec.size) && spec.size >= 0 && spec.size <= 64 * 1024 * 1024) {
    const b = Buffer.alloc(spec.size);
    for (let i = 0; i < spec.size; i++) b[i] = (i * 31 + 7) & 255;
    return b;
  }
  throw new Error('a file needs data (text), base64, or size (bytes, at most 64 MiB)');
}

module.exports = { fetchUrl, registeredData, digestAll, ALGOS };
