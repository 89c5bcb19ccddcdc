// Server-side apply the way structured-merge-diff does it, on plain JSON:
// field sets per manager (metadata.managedFields, FieldsV1), merging an
// applied configuration into the live object (maps merged, atomic lists
// replaced, associative lists merged by key), conflicts with other managers
// (409 unless force), and removal of fields a manager stopped applying that
// nobody else owns.  Non-apply writes (create, update, patch, controllers)
// record "Update" managers that take over what they changed.
//
// A schema tells what is a list of what: built-in types use the table in
// types.js (containers by name, ports by port+protocol, ...; other lists are
// atomic), custom resources the CRD's structural schema
// (x-kubernetes-list-type/-map-keys, -map-type, additionalProperties,
// x-kubernetes-preserve-unknown-fields), which also drives pruning.
'use strict';
const { builtinListKeys } = require('./types');

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const clone = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));
const SEP = '\n';

// Paths that are never owned (fieldmanager's stripMetaManager).
const STRIP = new Set(['f:apiVersion', 'f:kind', 'f:metadata', ...['name', 'namespace', 'creationTimestamp', 'selfLink',
  'uid', 'clusterName', 'generation', 'managedFields', 'resourceVersion'].map((f) => `f:metadata${SEP}f:${f}`)]);

// Built-in fields that are Go maps (their entries are members; Compare adds the map itself).
const MAP_FIELDS = [/(^|\.)metadata\.(labels|annotations)$/, /^(data|binaryData|stringData)$/, /matchLabels$/,
  /nodeSelector$/, /\.resources\.(limits|requests)$/, /^parameters$/];
const SERVICE_SELECTOR = /^spec\.selector$/;

// ------------------------------------------------------------------ schemas
/**
 * A schema walker for a type and version.  Nodes: {p: "spec.containers[]",
 * s: JSONSchemaProps | undefined, mode: 'builtin'|'schema'|'deduced'}.
 */
class Schema {
  constructor(rt, version) {
    this.kind = rt.kind;
    this.root = rt.builtin || !rt.schemas || !rt.schemas[version]
      ? { p: '', mode: rt.builtin ? 'builtin' : 'deduced' }
      : { p: '', mode: 'schema', s: rt.schemas[version] };
    this.structural = !rt.builtin && !!(rt.schemas && rt.schemas[version]);
  }

  child(n, f) {
    const p = n.p ? `${n.p}.${f}` : f;
    if (n.mode === 'builtin') return { p, mode: 'builtin' };
    if (n.p === '' && (f === 'metadata' || f === 'apiVersion' || f === 'kind')) return { p, mode: 'builtin' };
    if (n.mode === 'deduced') return { p, mode: 'deduced', entry: true };
    const s = n.s || {};
    if (s.properties && s.properties[f]) return { p, mode: 'schema', s: s.properties[f] };
    if (isObj(s.additionalProperties)) return { p, mode: 'schema', s: s.additionalProperties, entry: true };
    if (s.additionalProperties === true || s['x-kubernetes-preserve-unknown-fields'] || s['x-kubernetes-embedded-resource']) {
      return { p, mode: 'deduced', entry: true };
    }
    return { p, mode: 'schema', s: null, unknown: true, entry: false };
  }

  item(n) {
    const p = `${n.p}[]`;
    if (n.mode === 'schema') return n.s && n.s.items ? { p, mode: 'schema', s: n.s.items } : { p, mode: 'deduced' };
    return { p, mode: n.mode };
  }

  /** null: atomic; []: set; [keys]: associative list. */
  listKeys(n) {
    if (n.mode === 'builtin') return builtinListKeys(n.p);
    if (n.mode === 'schema' && n.s) {
      const t = n.s['x-kubernetes-list-type'];
      if (t === 'map') return n.s['x-kubernetes-list-map-keys'] || [];
      if (t === 'set') return [];
    }
    return null;
  }

  atomicMap(n) { return n.mode === 'schema' && !!n.s && n.s['x-kubernetes-map-type'] === 'atomic'; }

  /** True when entries of this object are map entries (owned individually, with their own path). */
  isMap(n) {
    if (n.mode === 'builtin') {
      return MAP_FIELDS.some((re) => re.test(n.p)) || (this.kind === 'Service' && SERVICE_SELECTOR.test(n.p));
    }
    if (n.mode === 'deduced') return true;
    return !!(n.s && !n.s.properties && (isObj(n.s.additionalProperties) || n.s.additionalProperties === true ||
      n.s['x-kubernetes-preserve-unknown-fields']));
  }
}

// ------------------------------------------------------------------ path elements
function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (!isObj(v)) return v;
  const o = {};
  for (const k of Object.keys(v).sort()) o[k] = sortKeys(v[k]);
  return o;
}

/** The path element of a list item: k:{...} for associative lists, v:... for sets. */
function itemElement(item, keys) {
  if (!keys.length) return `v:${JSON.stringify(sortKeys(item))}`;
  const k = {};
  for (const name of [...keys].sort()) {
    let v = isObj(item) ? item[name] : undefined;
    if (v === undefined && name === 'protocol') v = 'TCP'; // defaulted key
    if (v !== undefined) k[name] = v;
  }
  return `k:${JSON.stringify(k)}`;
}

// ------------------------------------------------------------------ members
/**
 * The members of a value: Map pathKey -> signature.  Leaves (scalars, nulls,
 * empty objects, atomic lists/maps) carry their JSON; list items and map
 * entries are "<item>"/"<entry>"; with `maps`, map-typed fields themselves
 * are members too ("<map>", what Compare reports and ToFieldSet does not).
 */
function members(obj, schema, maps = false) {
  const out = new Map();
  const walk = (v, n, path) => {
    if (Array.isArray(v)) {
      const keys = schema.listKeys(n);
      if (keys === null) { out.set(path.join(SEP), JSON.stringify(v)); return; }
      const itemNode = schema.item(n);
      for (const item of v) {
        const p2 = [...path, itemElement(item, keys)];
        if (keys.length && isObj(item)) walkObject(item, itemNode, p2, false);
        out.set(p2.join(SEP), keys.length ? '<item>' : JSON.stringify(item));
      }
      return;
    }
    if (isObj(v)) {
      if (schema.atomicMap(n)) { out.set(path.join(SEP), JSON.stringify(sortKeys(v))); return; }
      if (maps && path.length && schema.isMap(n)) out.set(path.join(SEP), '<map>');
      walkObject(v, n, path, schema.isMap(n));
      return;
    }
    out.set(path.join(SEP), JSON.stringify(v));
  };
  const walkObject = (o, n, path, entries) => {
    for (const [k, val] of Object.entries(o)) {
      const c = schema.child(n, k);
      const p2 = [...path, `f:${k}`];
      if (val === null || (isObj(val) && !Object.keys(val).length)) { out.set(p2.join(SEP), JSON.stringify(val)); continue; }
      walk(val, c, p2);
      if ((entries || c.entry) && isObj(val) && !schema.atomicMap(c)) out.set(p2.join(SEP), '<entry>');
    }
  };
  walk(obj, schema.root, []);
  return out;
}

/** ToFieldSet of an applied configuration, without the stripped paths and ignored subtrees. */
function fieldSet(obj, schema, ignore) {
  const set = new Set();
  for (const k of members(obj, schema).keys()) if (k && !STRIP.has(k) && !ignored(k, ignore)) set.add(k);
  return set;
}

const ignored = (k, ignore) => !!ignore && ignore(k);

/** Compare(old, new): {added, removed, modified} sets of path keys. */
function compare(a, b, schema, ignore) {
  const ma = members(a || {}, schema, true);
  const mb = members(b || {}, schema, true);
  const added = new Set();
  const removed = new Set();
  const modified = new Set();
  for (const [k, v] of mb) {
    if (!k || STRIP.has(k) || ignored(k, ignore)) continue;
    if (!ma.has(k)) added.add(k);
    else if (ma.get(k) !== v) modified.add(k);
  }
  for (const k of ma.keys()) if (k && !STRIP.has(k) && !ignored(k, ignore) && !mb.has(k)) removed.add(k);
  return { added, removed, modified };
}

// ------------------------------------------------------------------ merge and removal
/** live.Merge(config): maps merged, atomic lists replaced, associative lists merged by key. */
function merge(live, cfg, schema, n = schema.root) {
  if (Array.isArray(cfg)) {
    const keys = schema.listKeys(n);
    if (keys === null || !Array.isArray(live)) return clone(cfg);
    const out = live.map(clone);
    const itemNode = schema.item(n);
    for (const item of cfg) {
      const el = itemElement(item, keys);
      const i = out.findIndex((x) => itemElement(x, keys) === el);
      if (i < 0) out.push(clone(item));
      else if (keys.length) out[i] = merge(out[i], item, schema, itemNode);
    }
    return out;
  }
  if (isObj(cfg) && !schema.atomicMap(n)) {
    const out = isObj(live) ? { ...live } : {};
    for (const [k, v] of Object.entries(cfg)) {
      if (v === null) { delete out[k]; continue; }
      out[k] = merge(out[k], v, schema, schema.child(n, k));
    }
    return out;
  }
  return clone(cfg);
}

/** Removes the member at `path` (array of elements) from obj in place. */
function removePath(obj, path, schema) {
  let cur = obj;
  let n = schema.root;
  for (let i = 0; i < path.length; i++) {
    const el = path[i];
    const last = i === path.length - 1;
    if (el.startsWith('f:')) {
      const f = el.slice(2);
      if (!isObj(cur) || !(f in cur)) return;
      if (last) { delete cur[f]; return; }
      n = schema.child(n, f);
      cur = cur[f];
    } else {
      if (!Array.isArray(cur)) return;
      const keys = schema.listKeys(n) || [];
      const idx = cur.findIndex((x) => itemElement(x, keys) === el);
      if (idx < 0) return;
      if (last) { cur.splice(idx, 1); return; }
      n = schema.item(n);
      cur = cur[idx];
    }
  }
}

// ------------------------------------------------------------------ managedFields
const ORDER = { f: 0, k: 1, v: 2, i: 3 };
function elementCompare(a, b) {
  const ta = ORDER[a[0]] ?? 9;
  const tb = ORDER[b[0]] ?? 9;
  if (ta !== tb) return ta - tb;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A set of path keys as FieldsV1 JSON. */
function encodeSet(set) {
  const root = { member: false, kids: new Map() };
  for (const key of set) {
    let node = root;
    for (const el of key.split(SEP)) {
      if (!node.kids.has(el)) node.kids.set(el, { member: false, kids: new Map() });
      node = node.kids.get(el);
    }
    node.member = true;
  }
  const ser = (node) => {
    const o = {};
    if (node.member && node.kids.size) o['.'] = {};
    for (const el of [...node.kids.keys()].sort(elementCompare)) o[el] = ser(node.kids.get(el));
    return o;
  };
  return ser(root);
}

/** FieldsV1 JSON -> a set of path keys. */
function decodeSet(fields) {
  const set = new Set();
  const walk = (o, path) => {
    for (const [k, v] of Object.entries(o || {})) {
      if (k === '.') { if (path.length) set.add(path.join(SEP)); continue; }
      const p2 = [...path, k];
      if (!isObj(v) || !Object.keys(v).length) set.add(p2.join(SEP));
      else walk(v, p2);
    }
  };
  walk(fields, []);
  return set;
}

/** metadata.managedFields -> [{manager, operation, apiVersion, time, subresource, set}]. */
function decodeManaged(obj) {
  const list = (obj.metadata && obj.metadata.managedFields) || [];
  return list.filter((e) => e && e.manager !== undefined).map((e) => ({
    manager: e.manager, operation: e.operation, apiVersion: e.apiVersion, time: e.time,
    subresource: e.subresource || '', set: decodeSet(e.fieldsV1),
  }));
}

/** Writes managers back as metadata.managedFields in the apiserver's order (Apply first, then by time). */
function encodeManaged(obj, managers) {
  const entries = managers.filter((m) => m.set.size).map((m) => {
    const e = { manager: m.manager, operation: m.operation, apiVersion: m.apiVersion, time: m.time, fieldsType: 'FieldsV1',
      fieldsV1: encodeSet(m.set) };
    if (m.subresource) e.subresource = m.subresource;
    return e;
  });
  entries.sort((p, q) => {
    if (p.operation !== q.operation) return p.operation < q.operation ? -1 : 1;
    if (p.time !== q.time) return p.time < q.time ? -1 : 1;
    if (p.manager !== q.manager) return p.manager < q.manager ? -1 : 1;
    if (p.apiVersion !== q.apiVersion) return p.apiVersion < q.apiVersion ? -1 : 1;
    return (p.subresource || '') < (q.subresource || '') ? -1 : 1;
  });
  if (entries.length) obj.metadata.managedFields = entries;
  else delete obj.metadata.managedFields;
}

const sameManager = (m, id) => m.manager === id.manager && m.operation === id.operation &&
  (m.subresource || '') === (id.subresource || '') && (id.operation === 'Apply' || m.apiVersion === id.apiVersion);

/** A path key as the apiserver prints it in conflicts: .spec.containers[name="a"].image */
function pathString(key) {
  let s = '';
  for (const el of key.split(SEP)) {
    const t = el.slice(2);
    if (el.startsWith('f:')) s += `.${t}`;
    else if (el.startsWith('k:')) {
      const k = JSON.parse(t);
      s += `[${Object.entries(k).map(([a, b]) => `${a}=${JSON.stringify(b)}`).join(',')}]`;
    } else if (el.startsWith('v:')) s += `[=${t}]`;
    else s += `[${t}]`;
  }
  return s;
}

/** printManager(): "name" for appliers, "name" using v1 for updaters (+ subresource). */
function managerText(m) {
  let s = JSON.stringify(m.manager);
  if (m.subresource) s += ` with subresource ${JSON.stringify(m.subresource)}`;
  if (m.operation === 'Update') s += ` using ${m.apiVersion}`;
  return s;
}

/** The apiserver's 409 text for apply conflicts (fieldmanager/internal/conflict.go). */
function conflictMessage(conflicts) {
  if (conflicts.length === 1) {
    return `Apply failed with 1 conflict: conflict with ${managerText(conflicts[0].m)}: ${pathString(conflicts[0].path)}`;
  }
  const by = new Map();
  for (const c of conflicts) {
    const t = managerText(c.m);
    if (!by.has(t)) by.set(t, []);
    by.get(t).push(pathString(c.path));
  }
  const lines = [];
  for (const t of [...by.keys()].sort()) {
    lines.push(`conflicts with ${t}:`);
    for (const p of by.get(t)) lines.push(`- ${p}`);
  }
  return `Apply failed with ${conflicts.length} conflicts: ${lines.join('\n')}`;
}

/**
 * Server-side apply.  live: the stored object or null; cfg: the applied
 * configuration; id: {manager, apiVersion, subresource}; ignore(pathKey):
 * fields this endpoint does not own (status on the main resource) and
 * reset(live, merged): puts them back.  Returns
 * {object, conflicts} (conflicts: [{m, path}] when refused without force).
 */
function apply(live, cfg, schema, id, { force = false, ignore, reset, now }) {
  const managers = live ? decodeManaged(live) : [];
  const base = clone(live || {});
  if (base.metadata) delete base.metadata.managedFields;
  const config = clone(cfg);
  const newSet = fieldSet(config, schema, ignore);
  const me = { manager: id.manager, operation: 'Apply', apiVersion: id.apiVersion, subresource: id.subresource || '' };
  const idx = managers.findIndex((m) => sameManager(m, me));
  const lastSet = idx >= 0 ? managers[idx].set : new Set();
  let result = merge(base, config, schema);
  // fields this manager stopped applying that nobody else owns go away
  const owned = new Set(newSet);
  managers.forEach((m, i) => { if (i !== idx) for (const k of m.set) owned.add(k); });
  const under = new Set(); // every proper prefix of an owned path: its descendants are owned
  for (const k of owned) {
    for (let i = k.indexOf(SEP); i >= 0; i = k.indexOf(SEP, i + 1)) under.add(k.slice(0, i));
  }
  const gone = [...lastSet].filter((k) => !owned.has(k) && !under.has(k));
  gone.sort((a, b) => b.split(SEP).length - a.split(SEP).length);
  for (const k of gone) removePath(result, k.split(SEP), schema);
  if (reset) result = reset(base, result);
  const cmp = compare(base, result, schema, ignore);
  const changed = new Set([...cmp.added, ...cmp.modified]);
  const conflicts = [];
  managers.forEach((m, i) => {
    if (i === idx) return;
    for (const k of m.set) if (changed.has(k)) conflicts.push({ m, path: k });
  });
  if (conflicts.length && !force) return { conflicts };
  const next = managers.map((m, i) => (i === idx ? m : { ...m, set: new Set([...m.set].filter((k) => !changed.has(k) && !cmp.removed.has(k))) }));
  const mine = { ...me, time: idx >= 0 ? managers[idx].time : now, set: newSet };
  const objChanged = cmp.added.size || cmp.removed.size || cmp.modified.size;
  if (objChanged || idx < 0 || !sameSet(lastSet, newSet)) mine.time = now;
  if (idx >= 0) next[idx] = mine; else next.push(mine);
  result.metadata = result.metadata || {};
  encodeManaged(result, next.filter((m) => m.set.size));
  return { object: result, conflicts: [] };
}

/**
 * A non-apply write (create, update, patch, a controller's status update):
 * the writer takes over what it changed, others lose it.  Returns the
 * object with managedFields updated.
 */
function update(live, next, schema, id, { ignore, now }) {
  const managers = live ? decodeManaged(live) : [];
  const a = clone(live || {});
  if (a.metadata) delete a.metadata.managedFields;
  const b = clone(next);
  b.metadata = b.metadata || {};
  const sent = b.metadata.managedFields;
  delete b.metadata.managedFields;
  const cmp = compare(a, b, schema, ignore);
  let list = managers;
  if (Array.isArray(sent)) { // the client replaced managedFields ([{}] clears them)
    list = decodeManaged({ metadata: { managedFields: sent } });
  }
  const touched = new Set([...cmp.added, ...cmp.modified]);
  const me = { manager: id.manager, operation: 'Update', apiVersion: id.apiVersion, subresource: id.subresource || '' };
  const out = list.map((m) => (sameManager(m, me) ? m : { ...m, set: new Set([...m.set].filter((k) => !touched.has(k) && !cmp.removed.has(k))) }));
  const idx = out.findIndex((m) => sameManager(m, me));
  const prev = idx >= 0 ? out[idx].set : new Set();
  const set = new Set([...prev].filter((k) => !cmp.removed.has(k)));
  for (const k of touched) set.add(k);
  const entry = { ...me, time: now, set };
  if (idx >= 0) { if (!touched.size && !cmp.removed.size) entry.time = out[idx].time; out[idx] = entry; } else if (set.size) out.push(entry);
  encodeManaged(b, out.filter((m) => m.set.size));
  return b;
}

function sameSet(a, b) { return a.size === b.size && [...a].every((k) => b.has(k)); }

/**
 * Prunes fields a structural schema does not declare; returns their paths
 * (".spec.foo") for fieldValidation Strict/Warn.
 */
function prune(obj, schema) {
  const dropped = [];
  if (!schema.structural) return dropped;
  const walk = (v, n, path) => {
    if (Array.isArray(v)) { const itemNode = schema.item(n); v.forEach((x, i) => walk(x, itemNode, `${path}[${i}]`)); return; }
    if (!isObj(v) || n.mode !== 'schema' || !n.s) return;
    for (const k of Object.keys(v)) {
      const c = schema.child(n, k);
      if (c.unknown) { dropped.push(`${path}.${k}`); delete v[k]; continue; }
      walk(v[k], c, `${path}.${k}`);
    }
  };
  walk(obj, schema.root, '');
  return dropped;
}

module.exports = {
  Schema, apply, update, prune, merge, compare, fieldSet, encodeSet, decodeSet, decodeManaged, conflictMessage,
  pathString, managerText, clone, isObj, sortKeys, SEP,
};
