// Image Factory schematics: strict decoding like image-factory's
// pkg/schematic (yaml.v3 with KnownFields), the canonical form (yaml.v3
// Marshal: struct field order, omitempty, 4-space indent) and the ID = the
// sha256 of that canonical text (reference/talos.md §4).  Checked against
// the two vectors there: `customization: {}` -> 376567988ad3...,
// qemu-guest-agent -> ce4c980550dd....
'use strict';
const crypto = require('crypto');
const YAML = require('yaml');

// The Go types: struct fields in declaration order (the marshal order).
// `omitempty` fields are left out when zero.  Kinds: string, bool, uint8,
// list (of `of`), struct, anymap (map[string]any).
const T = {
  Schematic: {
    name: 'schematic.Schematic', kind: 'struct', fields: [
      ['overlay', 'Overlay', true],
      ['customization', 'Customization', false],
    ],
  },
  Overlay: {
    name: 'schematic.Overlay', kind: 'struct', fields: [
      ['image', 'string', false], ['name', 'string', false], ['options', 'anymap', true],
    ],
  },
  Customization: {
    name: 'schematic.Customization', kind: 'struct', fields: [
      ['extraKernelArgs', 'listString', true],
      ['meta', 'listMeta', true],
      ['systemExtensions', 'SystemExtensions', true],
      ['secureboot', 'SecureBootCustomization', true],
      // newer factories; where they sit among the fields is a guess (no vector covers them)
      ['bootloader', 'string', true],
    ],
  },
  MetaValue: { name: 'schematic.MetaValue', kind: 'struct', fields: [['key', 'uint8', false], ['value', 'string', false]] },
  SystemExtensions: {
    name: 'schematic.SystemExtensions', kind: 'struct', fields: [['officialExtensions', 'listString', true]],
  },
  SecureBootCustomization: {
    name: 'schematic.SecureBootCustomization', kind: 'struct',
    fields: [['includeWellKnownCertificates', 'bool', true]],
  },
  listString: { kind: 'list', of: 'string', go: '[]string' },
  listMeta: { kind: 'list', of: 'MetaValue', go: '[]schematic.MetaValue' },
  string: { kind: 'string', go: 'string' },
  bool: { kind: 'bool', go: 'bool' },
  uint8: { kind: 'uint8', go: 'uint8' },
  anymap: { kind: 'anymap', go: 'map[string]interface {}' },
};

class SchematicError extends Error {}

function tagOf(node) {
  if (YAML.isMap(node)) return '!!map';
  if (YAML.isSeq(node)) return '!!seq';
  const v = node.value;
  if (v === null) return '!!null';
  if (typeof v === 'boolean') return '!!bool';
  if (typeof v === 'number') return Number.isInteger(v) ? '!!int' : '!!float';
  return '!!str';
}

function srcText(node) {
  if (node.source !== undefined) return String(node.source);
  return node.value === null ? '' : String(node.value);
}

/** Decodes a YAML node into the Go type `tname`, collecting yaml.v3-style errors. */
function decode(node, tname, errs, line) {
  const t = T[tname];
  const at = (n) => line(n);
  if (node === null || node === undefined || (YAML.isScalar(node) && node.value === null)) return undefined;
  switch (t.kind) {
    case 'struct': {
      if (!YAML.isMap(node)) { errs.push(`line ${at(node)}: cannot unmarshal ${tagOf(node)} \`${srcText(node)}\` into ${t.name}`); return undefined; }
      const out = {};
      for (const pair of node.items) {
        const key = YAML.isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
        const f = t.fields.find((x) => x[0] === key);
        if (!f) { errs.push(`line ${at(pair.key)}: field ${key} not found in type ${t.name}`); continue; }
        if (key in out) { errs.push(`line ${at(pair.key)}: mapping key "${key}" already defined`); continue; }
        out[key] = decode(pair.value, f[1], errs, line);
      }
      return out;
    }
    case 'list': {
      if (!YAML.isSeq(node)) { errs.push(`line ${at(node)}: cannot unmarshal ${tagOf(node)}${YAML.isScalar(node) ? ` \`${srcText(node)}\`` : ''} into ${t.go}`); return undefined; }
      return node.items.map((n) => decode(n, t.of, errs, line));
    }
    case 'string':
      if (!YAML.isScalar(node)) { errs.push(`line ${at(node)}: cannot unmarshal ${tagOf(node)} into string`); return undefined; }
      return srcText(node); // yaml.v3 keeps the text of any scalar for a string target
    case 'bool': {
      if (YAML.isScalar(node)) {
        const s = srcText(node);
        if (/^(true|True|TRUE|yes|Yes|YES|on|On|ON|y|Y)$/.test(s)) return true;
        if (/^(false|False|FALSE|no|No|NO|off|Off|OFF|n|N)$/.test(s)) return false;
      }
      errs.push(`line ${at(node)}: cannot unmarshal ${tagOf(node)}${YAML.isScalar(node) ? ` \`${srcText(node)}\`` : ''} into bool`);
      return undefined;
    }
    case 'uint8': {
      const v = YAML.isScalar(node) ? node.value : undefined;
      if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 255) return v;
      errs.push(`line ${at(node)}: cannot unmarshal ${tagOf(node)}${YAML.isScalar(node) ? ` \`${srcText(node)}\`` : ''} into uint8`);
      return undefined;
    }
    case 'anymap': {
      if (!YAML.isMap(node)) { errs.push(`line ${at(node)}: cannot unmarshal ${tagOf(node)} into ${t.go}`); return undefined; }
      return node.toJSON();
    }
    default: throw new Error(`bad type ${tname}`);
  }
}

function isZero(v, tname) {
  if (v === undefined || v === null) return true;
  const t = T[tname];
  switch (t.kind) {
    case 'struct': return t.fields.every(([k, ft]) => isZero(v[k], ft));
    case 'list': return v.length === 0;
    case 'anymap': return Object.keys(v).length === 0;
    case 'string': return v === '';
    case 'bool': return v === false;
    case 'uint8': return v === 0;
    default: return false;
  }
}

/**
 * Parses a schematic (YAML or JSON text) like image-factory's Unmarshal:
 * one document, unknown fields and wrong types rejected.  Throws
 * SchematicError with yaml.v3's wording.
 */
function parse(text) {
  const lc = new YAML.LineCounter();
  const docs = YAML.parseAllDocuments(String(text), { lineCounter: lc, uniqueKeys: false });
  const line = (n) => (n && n.range ? lc.linePos(n.range[0]).line : 1);
  if (!docs.length || (docs.length === 1 && docs[0].contents === null && !docs[0].errors.length)) {
    throw new SchematicError('EOF');
  }
  const doc = docs[0];
  if (doc.errors.length) {
    const e = doc.errors[0];
    const ln = e.linePos && e.linePos[0] ? e.linePos[0].line : 1;
    throw new SchematicError(`yaml: line ${ln}: ${e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')}`);
  }
  const errs = [];
  const value = decode(doc.contents, 'Schematic', errs, line) || {};
  if (errs.length) throw new SchematicError(`yaml: unmarshal errors:\n  ${errs.join('\n  ')}`);
  return value;
}

// ------------------------------------------------------------------ yaml.v3 marshal
const OLD_BOOLS = /^(y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF|true|True|TRUE|false|False|FALSE)$/;
const NULLS = /^(~|null|Null|NULL)$/;
const NUMBER = /^[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?$|^0x[0-9a-fA-F_]+$|^0o?[0-7_]+$|^0b[01_]+$|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$|^[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?$/;

function scalar(s) {
  if (s === '') return '""';
  if (NULLS.test(s) || OLD_BOOLS.test(s) || NUMBER.test(s)) return JSON.stringify(s); // resolves to another type
  if (s.includes('\n')) return JSON.stringify(s);
  const plainBad = /^[-?:,[\]{}#&*!|>'"%@`]/.test(s) && !/^[-?:][^\s,[\]{}]/.test(s);
  if (plainBad || /^\s|\s$/.test(s) || /: |:$| #|\t/.test(s) || /^(---|\.\.\.)/.test(s) || /[\x00-\x08\x0b-\x1f\x7f]/.test(s)) {
    if (/[\x00-\x08\x0b-\x1f\x7f]/.test(s)) return JSON.stringify(s);
    return `'${s.replace(/'/g, "''")}'`;
  }
  return s;
}

function scalarOf(v) {
  if (typeof v === 'string') return scalar(v);
  if (typeof v === 'boolean' || typeof v === 'number') return String(v);
  if (v === null || v === undefined) return 'null';
  throw new Error('not a scalar');
}

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const pad = (n) => ' '.repeat(n);

/** Emits a mapping's entries: keys at `keyIndent`, nested blocks at `childIndent`. */
function emitMap(entries, keyIndent, childIndent, first = null) {
  let out = '';
  entries.forEach(([k, v], i) => {
    out += (i === 0 && first !== null ? first : pad(keyIndent)) + `${scalar(k)}:`;
    out += emitValue(v, childIndent);
  });
  return out;
}

function emitValue(v, indent) {
  if (Array.isArray(v)) {
    if (!v.length) return ' []\n';
    return '\n' + emitSeq(v, indent);
  }
  if (isObj(v)) {
    const entries = Object.entries(v);
    if (!entries.length) return ' {}\n';
    return '\n' + emitMap(entries, indent, indent + 4);
  }
  return ` ${scalarOf(v)}\n`;
}

function emitSeq(items, indent) {
  let out = '';
  for (const it of items) {
    if (isObj(it) && Object.keys(it).length) {
      out += emitMap(Object.entries(it), indent + 2, indent + 4, `${pad(indent)}- `);
    } else if (Array.isArray(it) && it.length) {
      out += `${pad(indent)}-\n${emitSeq(it, indent + 4)}`;
    } else {
      out += `${pad(indent)}- ${Array.isArray(it) ? '[]' : isObj(it) ? '{}' : scalarOf(it)}\n`;
    }
  }
  return out;
}

/** Turns a decoded value of type `tname` into ordered plain data without omitted fields. */
function normalize(v, tname) {
  const t = T[tname];
  switch (t.kind) {
    case 'struct': {
      const out = {};
      for (const [k, ft, omitempty] of t.fields) {
        const fv = v ? v[k] : undefined;
        if (omitempty && isZero(fv, ft)) continue;
        out[k] = normalize(fv, ft);
      }
      return out;
    }
    case 'list': return (v || []).map((x) => normalize(x, t.of));
    case 'anymap': return sortKeys(v || {});
    case 'string': return v === undefined ? '' : v;
    case 'bool': return !!v;
    case 'uint8': return v || 0;
    default: return v;
  }
}

function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (isObj(v)) return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]));
  return v;
}

/** The canonical text: yaml.v3 Marshal of the normalized schematic. */
function canonical(value) {
  const n = normalize(value, 'Schematic');
  return emitMap(Object.entries(n), 0, 4);
}

function idOf(text) { return crypto.createHash('sha256').update(text).digest('hex'); }

/** Parses `text` and returns {id, canonical, schematic}. */
function fromText(text) {
  const value = parse(text);
  const c = canonical(value);
  return { id: idOf(c), canonical: c, schematic: normalize(value, 'Schematic') };
}

const DEFAULT_ID = idOf(canonical({}));

module.exports = { parse, canonical, fromText, idOf, SchematicError, DEFAULT_ID, scalar };
