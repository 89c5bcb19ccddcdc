// Protobuf request bodies (Content-Type: application/vnd.kubernetes.protobuf)
// for the kinds kubectl's generators send that way: `kubectl create
// namespace|configmap|secret|serviceaccount`.  The envelope is "k8s\0" +
// runtime.Unknown{typeMeta{apiVersion, kind}, raw}; raw is the object in
// k8s.io/api's generated.proto field numbers (checked against bodies
// kubectl 1.32 sends).  Other kinds: null (the caller answers 415).
'use strict';

const MAGIC = Buffer.from('k8s\0', 'latin1');

// message -> {field number: [name, type]}; types: string, bytes (-> base64), int,
// bool, time, map (string->string), bmap (string->bytes), [Message] for repeated,
// Message for embedded.
const M = {
  Unknown: { 1: ['typeMeta', 'TypeMeta'], 2: ['raw', 'raw'], 3: ['contentEncoding', 'string'], 4: ['contentType', 'string'] },
  TypeMeta: { 1: ['apiVersion', 'string'], 2: ['kind', 'string'] },
  ObjectMeta: {
    1: ['name', 'string'], 2: ['generateName', 'string'], 3: ['namespace', 'string'], 5: ['uid', 'string'],
    6: ['resourceVersion', 'string'], 7: ['generation', 'int'], 11: ['labels', 'map'], 12: ['annotations', 'map'],
    13: ['ownerReferences', ['OwnerReference']], 14: ['finalizers', ['string']],
  },
  OwnerReference: { 1: ['kind', 'string'], 3: ['name', 'string'], 4: ['uid', 'string'], 5: ['apiVersion', 'string'],
    6: ['controller', 'bool'], 7: ['blockOwnerDeletion', 'bool'] },
  Namespace: { 1: ['metadata', 'ObjectMeta'], 2: ['spec', 'NamespaceSpec'] },
  NamespaceSpec: { 1: ['finalizers', ['string']] },
  ConfigMap: { 1: ['metadata', 'ObjectMeta'], 2: ['data', 'map'], 3: ['binaryData', 'bmap'], 4: ['immutable', 'bool'] },
  Secret: { 1: ['metadata', 'ObjectMeta'], 2: ['data', 'bmap'], 3: ['type', 'string'], 4: ['stringData', 'map'], 5: ['immutable', 'bool'] },
  ServiceAccount: { 1: ['metadata', 'ObjectMeta'], 2: ['secrets', ['ObjectReference']], 3: ['imagePullSecrets', ['LocalObjectReference']],
    4: ['automountServiceAccountToken', 'bool'] },
  ObjectReference: { 1: ['kind', 'string'], 2: ['namespace', 'string'], 3: ['name', 'string'], 4: ['uid', 'string'],
    5: ['apiVersion', 'string'], 6: ['resourceVersion', 'string'], 7: ['fieldPath', 'string'] },
  LocalObjectReference: { 1: ['name', 'string'] },
};

function varint(b, i) {
  let v = 0;
  let s = 0;
  for (;;) {
    if (i >= b.length) throw new Error('truncated varint');
    const x = b[i++];
    v += (x & 0x7f) * 2 ** s;
    s += 7;
    if (!(x & 0x80)) return [v, i];
  }
}

/** Wire fields of a message: [[number, wiretype, value (number|Buffer)]]. */
function fields(b) {
  const out = [];
  let i = 0;
  while (i < b.length) {
    let key;
    [key, i] = varint(b, i);
    const n = Math.floor(key / 8);
    const w = key & 7;
    if (w === 0) { let v; [v, i] = varint(b, i); out.push([n, w, v]); } else if (w === 2) {
      let l;
      [l, i] = varint(b, i);
      if (i + l > b.length) throw new Error('truncated field');
      out.push([n, w, b.subarray(i, i + l)]);
      i += l;
    } else if (w === 1) i += 8;
    else if (w === 5) i += 4;
    else throw new Error(`unsupported wire type ${w}`);
  }
  return out;
}

function decode(b, type) {
  const spec = M[type];
  const o = {};
  for (const [n, , v] of fields(b)) {
    if (!spec[n]) continue;
    const [name, t] = spec[n];
    if (Array.isArray(t)) {
      const item = t[0] === 'string' ? v.toString('utf8') : decode(v, t[0]);
      (o[name] = o[name] || []).push(item);
    } else if (t === 'map' || t === 'bmap') {
      const e = Object.fromEntries(fields(v).map(([k, , x]) => [k === 1 ? 'k' : 'v', x]));
      const val = e.v || Buffer.alloc(0);
      (o[name] = o[name] || {})[(e.k || Buffer.alloc(0)).toString('utf8')] = t === 'map' ? val.toString('utf8') : val.toString('base64');
    } else if (t === 'string') { if (v.length) o[name] = v.toString('utf8'); } else if (t === 'raw') o[name] = v;
    else if (t === 'int') { if (v) o[name] = v; } else if (t === 'bool') o[name] = !!v;
    else { const sub = decode(v, t); if (Object.keys(sub).length) o[name] = sub; }
  }
  return o;
}

/** The object of a protobuf request body, or null for a kind it does not know (throws on garbage). */
function decodeObject(body) {
  if (body.length < 4 || !body.subarray(0, 4).equals(MAGIC)) throw new Error('provided object is not a Kubernetes protobuf object (missing magic "k8s\\0")');
  const u = decode(body.subarray(4), 'Unknown');
  const tm = u.typeMeta || {};
  if (!M[tm.kind] || !['Namespace', 'ConfigMap', 'Secret', 'ServiceAccount'].includes(tm.kind) || tm.apiVersion !== 'v1') return null;
  return { apiVersion: tm.apiVersion, kind: tm.kind, ...decode(u.raw || Buffer.alloc(0), tm.kind) };
}

module.exports = { decodeObject };
