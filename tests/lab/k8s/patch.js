// The non-apply PATCH formats: JSON Patch (RFC 6902), JSON Merge Patch
// (RFC 7386) and strategic merge patch (built-in types only: merge merges
// associative lists by their keys, $patch: delete/replace,
// $deleteFromPrimitiveList/<field>, $setElementOrder/<field> and
// $retainKeys are understood).
'use strict';
const { isObj, clone } = require('./fields');
const { builtinListKeys } = require('./types');

class PatchError extends Error {
  constructor(message, code = 422) { super(message); this.code = code; }
}

// ------------------------------------------------------------------ RFC 6902
function pointer(p) {
  if (p === '') return [];
  if (!p.startsWith('/')) throw new PatchError(`add operation does not apply: doc is missing path: "${p}": missing value`);
  return p.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function parentOf(doc, parts, op) {
  let cur = doc;
  for (const k of parts.slice(0, -1)) {
    cur = Array.isArray(cur) ? cur[Number(k)] : isObj(cur) ? cur[k] : undefined;
    if (cur === undefined) throw new PatchError(`${op} operation does not apply: doc is missing path: "/${parts.join('/')}": missing value`);
  }
  return cur;
}

function jsonPatch(doc, ops) {
  if (!Array.isArray(ops)) throw new PatchError('json: cannot unmarshal object into Go value of type jsonpatch.Patch', 400);
  let out = clone(doc);
  for (const op of ops) {
    const parts = pointer(op.path || '');
    const get = (ps) => { let c = out; for (const k of ps) c = c === undefined || c === null ? undefined : c[Array.isArray(c) ? Number(k) : k]; return c; };
    switch (op.op) {
      case 'add': case 'replace': {
        if (!parts.length) { out = clone(op.value); break; }
        const par = parentOf(out, parts, op.op);
        const k = parts[parts.length - 1];
        if (Array.isArray(par)) {
          const i = k === '-' ? par.length : Number(k);
          if (!(i >= 0 && i <= par.length)) throw new PatchError(`${op.op} operation does not apply: doc is missing path: "${op.path}": missing value`);
          if (op.op === 'add') par.splice(i, 0, clone(op.value)); else par[i] = clone(op.value);
        } else if (isObj(par)) {
          if (op.op === 'replace' && !(k in par)) throw new PatchError(`replace operation does not apply: doc is missing key: ${op.path}: missing value`);
          par[k] = clone(op.value);
        } else throw new PatchError(`${op.op} operation does not apply: doc is missing path: "${op.path}": missing value`);
        break;
      }
      case 'remove': {
        const par = parentOf(out, parts, 'remove');
        const k = parts[parts.length - 1];
        if (Array.isArray(par) && Number(k) < par.length) par.splice(Number(k), 1);
        else if (isObj(par) && k in par) delete par[k];
        else throw new PatchError(`remove operation does not apply: doc is missing path: "${op.path}": missing value`);
        break;
      }
      case 'test':
        if (JSON.stringify(get(parts)) !== JSON.stringify(op.value)) throw new PatchError(`testing value ${op.path} failed: test failed`);
        break;
      case 'move': case 'copy': {
        const from = pointer(op.from || '');
        const v = get(from);
        if (v === undefined) throw new PatchError(`${op.op} operation does not apply: doc is missing from path: ${op.from}: missing value`);
        if (op.op === 'move') out = jsonPatch(out, [{ op: 'remove', path: op.from }]);
        out = jsonPatch(out, [{ op: 'add', path: op.path, value: v }]);
        break;
      }
      default:
        throw new PatchError(`Unexpected kind: ${op.op}`, 400);
    }
  }
  return out;
}

// ------------------------------------------------------------------ RFC 7386
function mergePatch(doc, patch) {
  if (!isObj(patch)) return clone(patch);
  const out = isObj(doc) ? clone(doc) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

// ------------------------------------------------------------------ strategic
const itemKey = (item, keys) => JSON.stringify(keys.map((k) => (isObj(item) ? (item[k] ?? (k === 'protocol' ? 'TCP' : null)) : null)));

function strategic(doc, patch, path = '') {
  if (!isObj(patch)) return clone(patch);
  if (patch.$patch === 'replace') { const p = clone(patch); delete p.$patch; return p; }
  if (patch.$patch === 'delete') return undefined;
  const out = isObj(doc) ? clone(doc) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k === '$retainKeys') {
      for (const key of Object.keys(out)) if (!v.includes(key) && !(key in patch)) delete out[key];
      continue;
    }
    if (k.startsWith('$setElementOrder/') || k === '$patch') continue;
    if (k.startsWith('$deleteFromPrimitiveList/')) {
      const f = k.split('/')[1];
      if (Array.isArray(out[f])) out[f] = out[f].filter((x) => !v.includes(x));
      continue;
    }
    const p = path ? `${path}.${k}` : k;
    if (v === null) { delete out[k]; continue; }
    if (Array.isArray(v)) {
      const keys = builtinListKeys(p);
      if (keys === null || !Array.isArray(out[k])) { out[k] = clone(v.filter((x) => !(isObj(x) && x.$patch))); continue; }
      if (!keys.length) { out[k] = [...out[k], ...v.filter((x) => !out[k].includes(x))]; continue; }
      if (v.some((x) => isObj(x) && x.$patch === 'replace')) { out[k] = clone(v.filter((x) => !(isObj(x) && x.$patch))); continue; }
      const list = out[k].map(clone);
      for (const item of v) {
        const i = list.findIndex((x) => itemKey(x, keys) === itemKey(item, keys));
        if (isObj(item) && item.$patch === 'delete') { if (i >= 0) list.splice(i, 1); continue; }
        if (i < 0) list.push(clone(item));
        else list[i] = strategic(list[i], item, `${p}[]`);
      }
      out[k] = list;
      continue;
    }
    const r = strategic(out[k], v, p);
    if (r === undefined) delete out[k]; else out[k] = r;
  }
  return out;
}

module.exports = { jsonPatch, mergePatch, strategic, PatchError };
