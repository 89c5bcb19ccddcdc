// gRPC test server (@grpc/grpc-js and protobufjs from tests/lab) for
// tests/integration/grpc_spec.lua.
//
//   node grpc_server.js CERT KEY CLIENT_CA [HOST]
//
// Listens on free ports and prints one JSON line {"tls": P, "mtls": P, "h2c": P}:
// TLS with a server certificate only, TLS requiring a client certificate
// signed by CLIENT_CA, and plain HTTP/2 (prior knowledge).  Services:
//   tlrtest.Test (tests/servers/grpc_test.proto)
//     Echo      replies {text, payload} (payload = `size` bytes of 'x' when size > 0)
//     Stream    `count` replies {index, text, payload}, `delay_ms` before each;
//               then status/message when status != 0
//     Fail      a trailers-only error: status (default FAILED_PRECONDITION) and message
//     Slow      replies after delay_ms (for deadlines)
//     Metadata  replies the custom metadata, the ms left to the deadline, the peer CN
//   /tlrtest.Test/Raw          echoes the request bytes (no protobuf)
//   /tlrtest.Test/RawSplit     replies two messages in one write: the request, then ''
//   machine.MachineService/ApplyConfiguration  (tests/servers/talos/*.proto)
//               replies {warnings: [data], mode, mode_details: "dry_run=<b> node=<node header>"}
//   machine.MachineService/Kubeconfig  streams the bytes `kubeconfig-data` in 3 common.Data chunks
// The process exits on SIGTERM, or by itself after TTL seconds (env, default 600).
'use strict';
const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');
const labRequire = createRequire(path.join(__dirname, '..', 'lab', 'package.json'));
const grpc = labRequire('@grpc/grpc-js');
const protobuf = labRequire('protobufjs');

const [certFile, keyFile, caFile, host = '127.0.0.1'] = process.argv.slice(2);

const root = new protobuf.Root();
root.loadSync([path.join(__dirname, 'grpc_test.proto')], { keepCase: true });
const talos = new protobuf.Root();
talos.loadSync(['rpc_status', 'common', 'machine'].map((f) => path.join(__dirname, 'talos', f + '.proto')),
  { keepCase: true });
const Req = root.lookupType('tlrtest.EchoRequest');
const Reply = root.lookupType('tlrtest.EchoReply');
const ApplyReq = talos.lookupType('machine.ApplyConfigurationRequest');
const ApplyResp = talos.lookupType('machine.ApplyConfigurationResponse');
const Data = talos.lookupType('common.Data');

function method(pathName, reqType, respType, responseStream) {
  return {
    path: pathName, requestStream: false, responseStream,
    requestSerialize: (m) => Buffer.from(reqType.encode(m).finish()),
    requestDeserialize: (b) => reqType.decode(b),
    responseSerialize: (m) => Buffer.from(respType.encode(respType.fromObject(m)).finish()),
    responseDeserialize: (b) => respType.decode(b),
  };
}

const identity = (b) => b;
function rawMethod(pathName, responseStream) {
  return {
    path: pathName, requestStream: false, responseStream,
    requestSerialize: identity, requestDeserialize: identity,
    responseSerialize: identity, responseDeserialize: identity,
  };
}

const testService = {
  Echo: method('/tlrtest.Test/Echo', Req, Reply, false),
  Stream: method('/tlrtest.Test/Stream', Req, Reply, true),
  Fail: method('/tlrtest.Test/Fail', Req, Reply, false),
  Slow: method('/tlrtest.Test/Slow', Req, Reply, false),
  Metadata: method('/tlrtest.Test/Metadata', Req, Reply, false),
  Raw: rawMethod('/tlrtest.Test/Raw', false),
  RawSplit: rawMethod('/tlrtest.Test/RawSplit', true),
};

const machineService = {
  ApplyConfiguration: method('/machine.MachineService/ApplyConfiguration', ApplyReq, ApplyResp, false),
  Kubeconfig: {  // the request is google.protobuf.Empty: kept as bytes
    ...rawMethod('/machine.MachineService/Kubeconfig', true),
    responseSerialize: (m) => Buffer.from(Data.encode(Data.fromObject(m)).finish()),
  },
};

function payload(req) {
  return req.size > 0 ? Buffer.alloc(req.size, 'x') : req.payload;
}

function peerCN(call) {
  const auth = call.getAuthContext ? call.getAuthContext() : {};
  const cert = auth && auth.sslPeerCertificate;
  return (cert && cert.subject && cert.subject.CN) || '';
}

const handlers = {
  Echo(call, cb) {
    cb(null, { text: call.request.text, payload: payload(call.request) });
  },
  Stream(call) {
    const req = call.request;
    let i = 0;
    const next = () => {
      if (call.cancelled) return;
      if (i >= req.count) {
        if (req.status) call.emit('error', { code: req.status, details: req.message });
        else call.end();
        return;
      }
      call.write({ index: i, text: `${req.text}-${i}`, payload: payload(req) });
      i += 1;
      if (req.delay_ms > 0) setTimeout(next, req.delay_ms); else setImmediate(next);
    };
    if (req.delay_ms > 0) setTimeout(next, req.delay_ms); else next();
  },
  Fail(call, cb) {
    cb({ code: call.request.status || grpc.status.FAILED_PRECONDITION, details: call.request.message });
  },
  Slow(call, cb) {
    const t = setTimeout(() => cb(null, { text: 'slow' }), call.request.delay_ms);
    call.on('cancelled', () => clearTimeout(t));
  },
  Metadata(call, cb) {
    const md = {};
    for (const [k, v] of Object.entries(call.metadata.getMap())) md[k] = String(v);
    const deadline = call.getDeadline();
    const left = deadline instanceof Date ? deadline.getTime() - Date.now()
      : (typeof deadline === 'number' && Number.isFinite(deadline) ? deadline - Date.now() : -1);
    cb(null, { metadata: md, deadline_ms: Math.round(left), peer: peerCN(call) });
  },
  Raw(call, cb) {
    cb(null, call.request);
  },
  RawSplit(call) {
    call.write(call.request);
    call.write(Buffer.alloc(0));
    call.end();
  },
};

const machineHandlers = {
  ApplyConfiguration(call, cb) {
    const req = ApplyReq.toObject(call.request, { enums: String, defaults: true });
    const node = call.metadata.get('node')[0] || '';
    cb(null, { messages: [{ warnings: [Buffer.from(call.request.data).toString()],
      mode: req.mode, mode_details: `dry_run=${req.dry_run} node=${node}` }] });
  },
  Kubeconfig(call) {
    for (const part of ['kube', 'config-', 'data']) call.write({ bytes: Buffer.from(part) });
    call.end();
  },
};

const cert = fs.readFileSync(certFile);
const key = fs.readFileSync(keyFile);
const ca = fs.readFileSync(caFile);
const listeners = {
  tls: grpc.ServerCredentials.createSsl(null, [{ private_key: key, cert_chain: cert }], false),
  mtls: grpc.ServerCredentials.createSsl(ca, [{ private_key: key, cert_chain: cert }], true),
  h2c: grpc.ServerCredentials.createInsecure(),
};

const ports = {};
let pending = Object.keys(listeners).length;
for (const [name, creds] of Object.entries(listeners)) {
  const server = new grpc.Server();
  server.addService(testService, handlers);
  server.addService(machineService, machineHandlers);
  server.bindAsync(`${host}:0`, creds, (err, port) => {
    if (err) {
      console.error(err);
      process.exit(1);
    }
    ports[name] = port;
    pending -= 1;
    if (pending === 0) process.stdout.write(JSON.stringify(ports) + '\n');
  });
}

process.on('SIGTERM', () => process.exit(0));
setTimeout(() => process.exit(0), (Number(process.env.TTL) || 600) * 1000).unref();
