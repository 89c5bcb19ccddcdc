// Loopback test server for the http specs (Node's own http/https/http2, no deps).
//
//   node http_server.js CERT KEY [HOST]
//
// Listens on free ports and prints one JSON line: {"https": P, "http": P}.
// HTTPS speaks HTTP/1.1 and HTTP/2 (ALPN); HTTP speaks HTTP/1.1.  Routes:
//   /echo                     JSON: method, path, query, headers, body, httpVersion, connection
//   /status/NNN?reason=TEXT   that status with that status-line text (HTTP/1.1)
//   /delay?ms=N               answers "ok" after N ms
//   /drop                     closes the connection without answering
//   /garbage                  writes bytes that are not HTTP, then closes
//   /big?bytes=N              N bytes of 'x' (with Content-Length unless chunked=1)
//   /stream?chunks=N&ms=M     N chunks "chunk-i\n", M ms apart
//   /trailers                 body "data", then trailers x-result: ok (HTTP/2)
//   /reset-first?key=K        HTTP/2: resets the first stream for each K before any reply
//   /hang                     never answers
//   /stats                    {requests, max_inflight, connections} (not counted itself)
//   /stats/reset              zeroes those
// With CLIENT_CA=<file> in the environment a third listener "mtls" requires a
// client certificate signed by that CA; /echo then reports the peer's CN.
// The process exits on SIGTERM, or by itself after TTL seconds (env, default 600).
'use strict';
const fs = require('fs');
const http = require('http');
const http2 = require('http2');
const { URL } = require('url');

const [certFile, keyFile, host = '127.0.0.1'] = process.argv.slice(2);
let connections = 0;
let requests = 0;
let inflight = 0;
let maxInflight = 0;
const resetKeys = new Set();

function handler(req, res) {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ requests, max_inflight: maxInflight, connections }));
  }
  if (url.pathname === '/stats/reset') {
    requests = 0; maxInflight = 0; connections = 0;
    return res.end('{}');
  }
  requests += 1;
  inflight += 1;
  maxInflight = Math.max(maxInflight, inflight);
  res.on('close', () => { inflight -= 1; });
  const q = Object.fromEntries(url.searchParams);
  const sock = req.socket || (req.stream && req.stream.session && req.stream.session.socket);
  const route = url.pathname;
  if (route === '/echo') {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const out = JSON.stringify({
        method: req.method, path: url.pathname, query: q, headers: req.headers,
        body: Buffer.concat(chunks).toString('latin1'), httpVersion: req.httpVersion,
        connection: sock ? sock.tlrId : null,
        peer: sock && sock.getPeerCertificate ? (sock.getPeerCertificate().subject || {}).CN || null : null,
      });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(out);
    });
  } else if (route.startsWith('/status/')) {
    const code = parseInt(route.slice(8), 10);
    if (req.httpVersion === '2.0') res.writeHead(code, { 'content-type': 'text/plain' });
    else res.writeHead(code, q.reason || 'Reason', { 'content-type': 'text/plain' });
    res.end(q.body || '');
  } else if (route === '/delay') {
    setTimeout(() => res.end('ok'), parseInt(q.ms || '50', 10));
  } else if (route === '/drop') {
    if (req.stream) req.stream.session.destroy();
    else req.socket.destroy();
  } else if (route === '/garbage') {
    const s = req.socket;
    s.write('\x00\x01 this is not http \xff\xfe\r\n\r\n');
    s.end();
  } else if (route === '/big') {
    const n = parseInt(q.bytes || '1024', 10);
    const headers = { 'content-type': 'application/octet-stream' };
    if (!q.chunked) headers['content-length'] = n;
    res.writeHead(200, headers);
    const block = Buffer.alloc(65536, 'x');
    let left = n;
    const pump = () => {
      while (left > 0) {
        const part = Math.min(left, block.length);
        left -= part;
        if (!res.write(block.subarray(0, part))) return res.once('drain', pump);
      }
      res.end();
    };
    pump();
  } else if (route === '/stream') {
    const n = parseInt(q.chunks || '3', 10);
    const ms = parseInt(q.ms || '20', 10);
    res.writeHead(200, { 'content-type': 'text/plain' });
    let i = 0;
    const tick = () => {
      if (i >= n) return res.end();
      res.write(`chunk-${i}\n`);
      i += 1;
      setTimeout(tick, ms);
    };
    tick();
  } else if (route === '/trailers') {
    if (!req.stream) {
      res.writeHead(400);
      return res.end('trailers need HTTP/2');
    }
    res.writeHead(200, { 'content-type': 'application/grpc' });
    res.addTrailers({ 'x-result': 'ok' });
    res.end('data');
  } else if (route === '/reset-first') {
    // HTTP/2: the first stream for each ?key= is reset before any reply
    if (req.stream && !resetKeys.has(q.key)) {
      resetKeys.add(q.key);
      req.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      return;
    }
    res.end('second try');
  } else if (route === '/hang') {
    // never answer
  } else {
    res.writeHead(404, 'Not Found');
    res.end('no route');
  }
}

function track(server) {
  server.on('connection', (s) => { connections += 1; s.tlrId = connections; });
  server.on('secureConnection', (s) => { if (!s.tlrId) { connections += 1; s.tlrId = connections; } });
}

const tlsServer = http2.createSecureServer({
  cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile), allowHTTP1: true,
}, handler);
track(tlsServer);
const plainServer = http.createServer(handler);
track(plainServer);

const https = require('https');
const servers = { https: tlsServer, http: plainServer };
if (process.env.CLIENT_CA) {
  servers.mtls = https.createServer({
    cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile),
    ca: fs.readFileSync(process.env.CLIENT_CA), requestCert: true, rejectUnauthorized: true,
  }, handler);
  track(servers.mtls);
}
let ready = 0;
const names = Object.keys(servers);
function announce() {
  ready += 1;
  if (ready === names.length) {
    const ports = {};
    for (const n of names) ports[n] = servers[n].address().port;
    process.stdout.write(JSON.stringify(ports) + '\n');
  }
}
for (const n of names) servers[n].listen(0, host, announce);
setTimeout(() => process.exit(0), parseInt(process.env.TTL || '600', 10) * 1000).unref();
process.on('SIGTERM', () => process.exit(0));
