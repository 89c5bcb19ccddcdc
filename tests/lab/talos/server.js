// The transport of one node's port 50000: our own tls.Server per address
// (so the handshake rules are Talos's), with the connections handed to a
// @grpc/grpc-js server through its connection injector.
//
// maintenance: TLS 1.2+, self-signed certificate, no client certificate
//              requested (tls.ServerOnly).
// secure:      RequireAndVerifyClientCert against the machine CA (expired
//              and foreign certificates fail in the handshake, as do
//              client certificates whose EKU does not allow clientAuth);
//              with apidCheckExtKeyUsage every non-CA certificate of the
//              chain must have ExtKeyUsage exactly [clientAuth]
//              (apid's verifyExtKeyUsage): otherwise the connection is
//              closed right after the handshake.
// Both require ALPN h2 (grpc-go enforces it since 1.67).
'use strict';
const path = require('path');
const tls = require('tls');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PORT = 50000;
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

let protos = null;
function loadProtos() {
  if (!protos) {
    const def = protoLoader.loadSync(['machine.proto', 'storage.proto', 'resource.proto'], {
      includeDirs: [path.join(__dirname, 'proto')], keepCase: true, longs: String, enums: String, defaults: false, oneofs: true,
    });
    protos = grpc.loadPackageDefinition(def);
  }
  return protos;
}

/** apid's verifyExtKeyUsage over the peer chain; returns an error message or null. */
function ekuError(sock) {
  let c = sock.getPeerCertificate(true);
  const seen = new Set();
  while (c && c.raw && !seen.has(c.fingerprint256)) {
    seen.add(c.fingerprint256);
    if (!c.ca) {
      const eku = c.ext_key_usage || [];
      if (!(eku.length === 1 && eku[0] === CLIENT_AUTH)) {
        const subj = Object.entries(c.subject || {}).map(([k, v]) => `${k}=${[].concat(v).join('+' + k + '=')}`).join(',');
        return `certificate "${subj}" is missing the client auth extended key usage`;
      }
    }
    c = c.issuerCertificate;
  }
  return null;
}

/** Listens on exactly host:port (no fallback port: Talos is always on 50000). */
function listenExact(srv, host, port) {
  return new Promise((resolve, reject) => {
    const onError = (err) => { srv.removeListener('listening', onListening); reject(err); };
    const onListening = () => { srv.removeListener('error', onError); resolve(); };
    srv.once('error', onError);
    srv.once('listening', onListening);
    srv.listen(port, host);
  });
}

class NodeServer {
  /** handlers: {machine: {...}, storage: {...}, state: {...}} grpc-js handler maps. */
  constructor({ lab, node, mode, tlsOpts, addresses, makeHandlers, log }) {
    this.lab = lab;
    this.node = node;
    this.mode = mode;
    this.tlsOpts = tlsOpts;
    this.addresses = addresses;
    this.log = log;
    this.sockets = new Set();
    this.servers = [];
    this.closed = false;
    const p = loadProtos();
    this.grpc = new grpc.Server({ 'grpc.max_receive_message_length': 32 * 1024 * 1024,
      'grpc.max_send_message_length': 32 * 1024 * 1024 });
    const handlers = makeHandlers(this);
    this.grpc.addService(p.machine.MachineService.service, handlers.machine);
    this.grpc.addService(p.storage.StorageService.service, handlers.storage);
    this.grpc.addService(p.cosi.resource.State.service, handlers.state);
    this.injector = this.grpc.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  }

  async start() {
    if (!this.addresses.length) throw new Error('the VM has no IPv4 address');
    const opts = {
      key: this.tlsOpts.key, cert: this.tlsOpts.cert, ALPNProtocols: ['h2'], minVersion: 'TLSv1.2',
      requestCert: this.mode === 'secure', rejectUnauthorized: this.mode === 'secure',
    };
    if (this.mode === 'secure') opts.ca = this.tlsOpts.ca;
    let first = true;
    for (const addr of this.addresses) {
      const srv = tls.createServer(opts);
      srv.on('secureConnection', (sock) => this.accept(sock, addr));
      srv.on('tlsClientError', (err, sock) => {
        this.log({ path: '(tls handshake)', method: 'TLS', node: addr, status: 0, reason: err.message, remote: sock && sock.remoteAddress });
      });
      srv.on('connection', (sock) => { this.sockets.add(sock); sock.on('close', () => this.sockets.delete(sock)); });
      try {
        await listenExact(srv, addr, PORT);
        this.servers.push(srv);
      } catch (err) {
        if (first) { this.close(); throw err; }
        this.log({ path: '(listen)', method: 'TLS', node: addr, status: 0, reason: `cannot listen on ${addr}:${PORT}: ${err.message}` });
      }
      first = false;
    }
    return this;
  }

  accept(sock, addr) {
    sock.on('error', () => {});
    if (sock.alpnProtocol !== 'h2') {
      this.log({ path: '(tls handshake)', method: 'TLS', node: addr, status: 0, reason: 'credentials: cannot check peer: missing selected ALPN property' });
      sock.destroy();
      return;
    }
    if (this.mode === 'secure' && this.tlsOpts.checkEku) {
      const err = ekuError(sock);
      if (err) {
        this.log({ path: '(tls handshake)', method: 'TLS', node: addr, status: 0, reason: err });
        sock.destroy();
        return;
      }
    }
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    this.injector.injectConnection(sock);
  }

  /** Closes the TLS connection a call came in on (call.getPeer() is "ip:port"). */
  drop(peer) {
    for (const s of this.sockets) {
      if (`${s.remoteAddress}:${s.remotePort}` === peer) s.destroy();
    }
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.servers) s.close();
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    try { this.injector.destroy(); } catch (_) { /* already gone */ }
    this.grpc.forceShutdown();
    if (this.onClose) this.onClose();
  }
}

module.exports = { NodeServer, PORT, loadProtos };
