// protobufjs as the reference codec for tests/unit/protobuf_spec.lua.
//
//   node protobuf_codec.js FILE.proto... < cases.json
//
// cases.json is a list of {op: "encode", type, value} (value as
// protobufjs's fromObject takes it: 64-bit integers as decimal strings,
// bytes as base64) or {op: "decode", type, hex}.  Prints a JSON list:
// {hex} for encode, {value} for decode (toObject with defaults, 64-bit
// integers as strings, also as map keys, enums as names, bytes as base64,
// absent messages left out), or {error} when protobufjs refuses.
//
// protobufjs writes every field set on the object, zero or not, and maps in
// object-key order; proto3 encoders leave zero values without presence out
// and (deterministic mode) sort map keys.  So before encoding, zero values
// of fields without presence are dropped and string map keys sorted
// bytewise (protobufjs's own field metadata decides which fields those are).
'use strict';
const path = require('path');
const { createRequire } = require('module');
const labRequire = createRequire(path.join(__dirname, '..', 'lab', 'package.json'));
const protobuf = labRequire('protobufjs');

const files = process.argv.slice(2);
const root = new protobuf.Root();
root.loadSync(files, { keepCase: true });
root.resolveAll();

function isZero(field, v) {
  if (field.resolvedType instanceof protobuf.Enum) {
    return v === 0 || field.resolvedType.values[v] === 0;
  }
  switch (field.type) {
    case 'string': return v === '';
    case 'bytes': return v.length === 0;
    case 'bool': return v === false;
    case 'double': case 'float': return Object.is(v, 0);
    default:
      if (typeof v === 'object' && v !== null && 'low' in v) return v.low === 0 && v.high === 0;
      return Number(v) === 0 && String(v) !== '-0';
  }
}

function compareKeys(a, b) {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

// Walks a plain object (as fromObject takes it) of type `type`.
function prepare(type, obj) {
  const out = {};
  for (const field of type.fieldsArray) {
    field.resolve();
    let v = obj[field.name];
    if (v === undefined || v === null) continue;
    const msgType = field.resolvedType instanceof protobuf.Type ? field.resolvedType : null;
    if (field.map) {
      const keys = Object.keys(v).sort(field.keyType === 'string' ? compareKeys : undefined);
      const m = {};
      for (const k of keys) m[k] = msgType ? prepare(msgType, v[k]) : v[k];
      v = m;
    } else if (field.repeated) {
      v = msgType ? v.map((e) => prepare(msgType, e)) : v;
    } else if (msgType) {
      v = prepare(msgType, v);
    } else if (!field.hasPresence && isZero(field, v)) {
      continue;
    }
    out[field.name] = v;
  }
  return out;
}

// toObject leaves 64-bit map keys as protobufjs's internal 8-byte hashes: back to decimal.
function fixLongKeys(type, obj) {
  for (const field of type.fieldsArray) {
    const v = obj[field.name];
    if (v === undefined || v === null) continue;
    const msgType = field.resolvedType instanceof protobuf.Type ? field.resolvedType : null;
    if (field.map) {
      const long = /64$/.test(field.keyType);
      const m = {};
      for (const [k, x] of Object.entries(v)) {
        const key = long && k.length === 8
          ? protobuf.util.LongBits.fromHash(k).toLong(/^(u|fixed)/.test(field.keyType)).toString() : k;
        m[key] = msgType ? fixLongKeys(msgType, x) : x;
      }
      obj[field.name] = m;
    } else if (msgType && field.repeated) {
      v.forEach((x) => fixLongKeys(msgType, x));
    } else if (msgType) {
      fixLongKeys(msgType, v);
    }
  }
  return obj;
}

function dropNulls(v) {
  if (Array.isArray(v)) return v.map(dropNulls);
  if (v && typeof v === 'object') {
    const out = {};
    for (const [k, x] of Object.entries(v)) if (x !== null && x !== undefined) out[k] = dropNulls(x);
    return out;
  }
  return v;
}

const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const results = cases.map((c) => {
  try {
    const type = root.lookupType(c.type);
    if (c.op === 'encode') {
      const msg = type.fromObject(prepare(type, c.value));
      return { hex: Buffer.from(type.encode(msg).finish()).toString('hex') };
    }
    const msg = type.decode(Buffer.from(c.hex, 'hex'));
    return {
      value: fixLongKeys(type, dropNulls(type.toObject(msg, {
        longs: String, enums: String, bytes: String, defaults: true, arrays: true, objects: true,
      }))),
    };
  } catch (err) {
    return { error: String(err && err.message || err) };
  }
});
process.stdout.write(JSON.stringify(results) + '\n');
