// The resource verbs: get, list, create, update (PUT), patch (apply, JSON,
// merge, strategic), delete and deletecollection, the status, scale and
// finalize subresources, with the apiserver's order of checks and its
// answers (201 on create, the Status of a delete, Tables for kubectl get).
// ctx: {cluster, rt, version, ns, name, sub, query, headers, body (Buffer),
// user, warnings}.  Handlers return {code, body} or throw an ApiError.
'use strict';
const crypto = require('crypto');
const YAML = require('yaml');
const F = require('./fields');
const { E, status } = require('./status');
const { parseLabelSelector, parseFieldSelector, matchFields, SelectorError } = require('./selectors');
const { table } = require('./tables');
const P = require('./patch');
const PB = require('./proto');

const gvOf = (rt, version) => (rt.group ? `${rt.group}/${version}` : version);
const grOf = (rt) => ({ group: rt.group, resource: rt.plural });
const APPLY = 'application/apply-patch+yaml';
const PATCH_TYPES = ['application/json-patch+json', 'application/merge-patch+json', 'application/strategic-merge-patch+json', APPLY];

// ------------------------------------------------------------------ helpers
function mediaType(headers) {
  const ct = headers['content-type'] || '';
  return ct.split(';')[0].trim().toLowerCase();
}

/** Decodes a create/update body: JSON, YAML, or protobuf for the kinds proto.js knows (else 415). */
function decodeObject(ctx) {
  const mt = mediaType(ctx.headers) || 'application/json';
  const text = ctx.body.toString('utf8');
  let obj;
  try {
    if (mt === 'application/json') obj = JSON.parse(text);
    else if (mt === 'application/yaml') obj = YAML.parse(text);
    else if (mt === 'application/vnd.kubernetes.protobuf' && ctx.rt.builtin) {
      obj = PB.decodeObject(ctx.body);
      if (!obj) throw E.unsupportedMediaType(['application/json', 'application/yaml']);
    } else throw E.unsupportedMediaType(['application/json', 'application/yaml', 'application/vnd.kubernetes.protobuf']);
  } catch (err) {
    if (err.status) throw err;
    throw E.badRequest(`the object provided is unrecognized (must be of type ${ctx.rt.kind}): couldn't get version/kind; json parse error: ${err.message}`);
  }
  if (!F.isObj(obj)) throw E.badRequest(`the object provided is unrecognized (must be of type ${ctx.rt.kind}): couldn't get version/kind; json parse error: json: cannot unmarshal ${Array.isArray(obj) ? 'array' : typeof obj} into Go value of type struct { APIVersion string "json:\\"apiVersion,omitempty\\""; Kind string "json:\\"kind,omitempty\\"" }`);
  return obj;
}

function checkKind(ctx, obj) {
  const gv = gvOf(ctx.rt, ctx.version);
  if (!obj.kind) throw E.badRequest(`Object 'Kind' is missing in '${JSON.stringify(obj)}'`);
  if (obj.kind !== ctx.rt.kind || (obj.apiVersion && obj.apiVersion !== gv)) {
    const [g, v] = (obj.apiVersion || '').includes('/') ? obj.apiVersion.split('/') : ['', obj.apiVersion || ''];
    throw E.badRequest(`${obj.kind} in version "${v}" cannot be handled as a ${ctx.rt.kind}: no kind "${obj.kind}" is registered for version "${g ? `${g}/${v}` : v}" in scheme "pkg/api/legacyscheme/scheme.go:30"`);
  }
}

/** EnsureObjectNamespaceMatchesRequestNamespace + checkName. */
function placeObject(ctx, obj, { checkName = true } = {}) {
  obj.metadata = F.isObj(obj.metadata) ? obj.metadata : {};
  const md = obj.metadata;
  if (ctx.rt.namespaced) {
    if (!md.namespace) md.namespace = ctx.ns;
    else if (md.namespace !== ctx.ns) throw E.badRequest('the namespace of the provided object does not match the namespace sent on the request');
  } else delete md.namespace;
  if (checkName && (md.name || '') !== ctx.name) {
    throw E.badRequest(`the name of the object (${md.name || ''}) does not match the name on the URL (${ctx.name})`);
  }
}

function managerName(ctx) {
  if (ctx.query.fieldManager) return ctx.query.fieldManager;
  return String(ctx.headers['user-agent'] || '').split('/')[0].slice(0, 128);
}

function dryRun(ctx) {
  const v = ctx.query.dryRun;
  if (v === undefined) return false;
  const vals = [].concat(v);
  if (vals.some((x) => x !== 'All')) {
    throw E.invalid({ group: 'meta.k8s.io', kind: `${ctx.optsKind}` }, '', [{ type: 'FieldValueNotSupported', field: 'dryRun', value: vals, detail: 'supported values: "All"' }]);
  }
  return true;
}

function validateFieldManager(ctx, errs) {
  const m = ctx.query.fieldManager;
  if (m !== undefined && m.length > 128) errs.push({ type: 'FieldValueTooLong', field: 'fieldManager', detail: 'may not be more than 128 bytes' });
  const fv = ctx.query.fieldValidation;
  if (fv !== undefined && !['', 'Ignore', 'Warn', 'Strict'].includes(fv)) {
    errs.push({ type: 'FieldValueNotSupported', field: 'fieldValidation', value: fv, detail: 'supported values: "", "Ignore", "Strict", "Warn"' });
  }
}

/** Prunes unknown fields of custom resources; Strict refuses them, Warn warns. */
function pruneUnknown(ctx, obj) {
  if (ctx.rt.builtin) return;
  const dropped = F.prune(obj, ctx.cluster.schema(ctx.rt, ctx.version));
  if (!dropped.length) return;
  const fv = ctx.query.fieldValidation;
  if (fv === 'Strict') throw E.badRequest(`strict decoding error: ${dropped.map((p) => `unknown field "${p.slice(1)}"`).join(', ')}`);
  if (fv === 'Warn') for (const p of dropped) ctx.warnings.push(`unknown field "${p.slice(1)}"`);
}

/** Which fields this endpoint does not own, and how to put them back. */
function scope(ctx) {
  const hasStatus = ctx.rt.subresources.includes('status');
  if (ctx.sub === 'status') {
    return {
      ignore: (k) => !k.startsWith('f:status'),
      reset: (live, merged) => {
        const out = F.clone(live);
        if (merged.status !== undefined) out.status = merged.status; else delete out.status;
        return out;
      },
    };
  }
  if (!hasStatus) return {};
  return {
    ignore: (k) => k === 'f:status' || k.startsWith('f:status\n'),
    reset: (live, merged) => {
      const out = merged;
      if (live.status !== undefined) out.status = F.clone(live.status); else delete out.status;
      return out;
    },
  };
}

function ctxId(ctx, manager) {
  return { manager, apiVersion: gvOf(ctx.rt, ctx.version), subresource: ctx.sub || '' };
}

const served = (ctx, obj) => ctx.cluster.serve(ctx.rt, obj, ctx.version);

function listItem(ctx, obj) {
  const o = served(ctx, obj);
  if (ctx.rt.builtin) { delete o.kind; delete o.apiVersion; }
  return o;
}

// ------------------------------------------------------------------ accept
/** 'table' | 'partial' | 'json' | 'yaml' for an Accept header; throws 406 for protobuf only. */
function negotiate(accept) {
  const parts = String(accept || '*/*').split(',').map((p) => p.trim().toLowerCase().replace(/\s+/g, ''));
  for (const p of parts) {
    if (p.includes('as=table') && p.includes('g=meta.k8s.io')) {
      return { kind: 'table', apiVersion: p.includes('v=v1beta1') ? 'meta.k8s.io/v1beta1' : 'meta.k8s.io/v1' };
    }
    if (p.includes('as=partialobjectmetadata') && p.includes('g=meta.k8s.io')) return { kind: 'partial' };
    const base = p.split(';')[0];
    if (base === 'application/json' || base === '*/*' || base === 'application/*') return { kind: 'json' };
    if (base === 'application/yaml') return { kind: 'yaml' };
  }
  throw E.notAcceptable(['application/json', 'application/yaml', 'application/vnd.kubernetes.protobuf']);
}

// ------------------------------------------------------------------ verbs
function get(ctx) {
  const obj = ctx.cluster.get(ctx.rt, ctx.ns, ctx.name);
  if (!obj) throw E.notFound(grOf(ctx.rt), ctx.name);
  if (ctx.sub === 'scale') return { code: 200, body: scaleOf(ctx, obj) };
  const how = negotiate(ctx.headers.accept);
  if (how.kind === 'table') {
    const o = { resourceVersion: '', includeObject: ctx.query.includeObject, apiVersion: how.apiVersion };
    return { code: 200, body: table(ctx.rt, ctx.version, [served(ctx, obj)], o) };
  }
  if (how.kind === 'partial') {
    return { code: 200, body: { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: served(ctx, obj).metadata } };
  }
  return { code: 200, body: served(ctx, obj) };
}

/** The list predicate of labelSelector/fieldSelector (400 on bad syntax or unsupported fields). */
function selector(ctx) {
  let labels;
  let fields;
  try {
    labels = parseLabelSelector(ctx.query.labelSelector);
    fields = parseFieldSelector(ctx.query.fieldSelector);
  } catch (err) {
    if (err instanceof SelectorError) throw E.badRequest(err.message);
    throw err;
  }
  const rt = ctx.rt;
  for (const f of fields) {
    if (f.field === 'metadata.name' || f.field === 'metadata.namespace' || rt.fieldSelectors.includes(f.field)) continue;
    if (!rt.builtin || rt.fieldSelectors.length) throw E.badRequest(`field label not supported: ${f.field}`);
    throw E.badRequest(`"${f.field}" is not a known field selector: only "metadata.name", "metadata.namespace"`);
  }
  return (obj) => labels(obj.metadata.labels) && matchFields(obj, fields);
}

function encodeContinue(rv, key) {
  return Buffer.from(JSON.stringify({ v: 'meta.k8s.io/v1', rv, start: `${key}\u0000` })).toString('base64');
}

function decodeContinue(token) {
  try {
    const c = JSON.parse(Buffer.from(token, 'base64').toString('utf8'));
    if (c.v !== 'meta.k8s.io/v1' || typeof c.rv !== 'number' || typeof c.start !== 'string') throw new Error('bad');
    return c;
  } catch (_) {
    throw E.badRequest('continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)');
  }
}

function list(ctx) {
  const c = ctx.cluster;
  const match = selector(ctx);
  const how = negotiate(ctx.headers.accept);
  const limit = ctx.query.limit ? Number(ctx.query.limit) : 0;
  let rv = c.store.rv;
  let start = '';
  if (ctx.query.continue) {
    const tok = decodeContinue(ctx.query.continue);
    if (tok.rv < c.store.horizon) {
      throw E.expired('The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.',
        { metadata: { continue: encodeContinue(c.store.rv, tok.start.replace(/\u0000$/, '')) } });
    }
    rv = tok.rv;
    start = tok.start;
  } else if (ctx.query.resourceVersionMatch === 'Exact' && ctx.query.resourceVersion && Number(ctx.query.resourceVersion) !== c.store.rv) {
    throw E.expired(`too old resource version: ${ctx.query.resourceVersion} (${c.store.rv})`);
  }
  let entries = c.store.list(ctx.rt, ctx.ns).filter((e) => e.key >= start && match(e.obj));
  let cont;
  let remaining;
  if (limit > 0 && entries.length > limit) {
    const more = entries.length - limit;
    entries = entries.slice(0, limit);
    cont = encodeContinue(rv, entries[entries.length - 1].key);
    if (!ctx.query.labelSelector && !ctx.query.fieldSelector) remaining = more;
  }
  const metadata = { resourceVersion: String(rv) };
  if (cont) metadata.continue = cont;
  if (remaining !== undefined) metadata.remainingItemCount = remaining;
  if (how.kind === 'table') {
    const o = { resourceVersion: String(rv), cont, includeObject: ctx.query.includeObject, apiVersion: how.apiVersion };
    return { code: 200, body: table(ctx.rt, ctx.version, entries.map((e) => served(ctx, e.obj)), o) };
  }
  if (how.kind === 'partial') {
    return { code: 200, body: { kind: 'PartialObjectMetadataList', apiVersion: 'meta.k8s.io/v1', metadata,
      items: entries.map((e) => ({ kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: served(ctx, e.obj).metadata })) } };
  }
  const items = entries.map((e) => listItem(ctx, e.obj));
  return { code: 200, body: { kind: ctx.rt.listKind, apiVersion: gvOf(ctx.rt, ctx.version), metadata, items } };
}

const GENERATE = 'bcdfghjklmnpqrstvwxz2456789';

function create(ctx) {
  if (ctx.sub === 'eviction') return require('./eviction').evict(ctx, { dryRun });
  ctx.optsKind = 'CreateOptions';
  const errs = [];
  validateFieldManager(ctx, errs);
  if (errs.length) throw E.invalid({ group: 'meta.k8s.io', kind: 'CreateOptions' }, '', errs);
  const dry = dryRun(ctx);
  const obj = decodeObject(ctx);
  checkKind(ctx, obj);
  placeObject(ctx, obj, { checkName: false });
  const md = obj.metadata;
  if (!md.name && md.generateName) {
    md.name = md.generateName + Array.from(crypto.randomBytes(5), (b) => GENERATE[b % GENERATE.length]).join('');
  }
  pruneUnknown(ctx, obj);
  const c = ctx.cluster;
  const withFields = F.update(null, obj, c.schema(ctx.rt, ctx.version), ctxId(ctx, managerName(ctx)), { now: c.now(), ...scope(ctx) });
  withFields.apiVersion = gvOf(ctx.rt, ctx.version);
  if (md.name && c.get(ctx.rt, ctx.ns, md.name)) {
    c.commit(ctx.rt, null, F.clone(withFields), { dryRun: true });
    throw E.alreadyExists(grOf(ctx.rt), md.name);
  }
  const r = c.commit(ctx.rt, null, withFields, { dryRun: dry });
  return { code: 201, body: served(ctx, r.obj) };
}

function checkRV(ctx, obj, prev) {
  const rv = obj.metadata && obj.metadata.resourceVersion;
  if (rv && rv !== prev.metadata.resourceVersion) {
    throw E.conflict(grOf(ctx.rt), ctx.name, 'the object has been modified; please apply your changes to the latest version and try again');
  }
}

/** The object a status/finalize write stores: the stored one with that part from the request. */
function subresourceObject(ctx, prev, obj) {
  const next = F.clone(prev);
  if (ctx.sub === 'status') { if (obj.status !== undefined) next.status = obj.status; else delete next.status; }
  if (ctx.sub === 'finalize') next.spec = { ...(next.spec || {}), finalizers: (obj.spec && obj.spec.finalizers) || [] };
  if (obj.metadata && obj.metadata.resourceVersion) next.metadata.resourceVersion = obj.metadata.resourceVersion;
  return next;
}

function update(ctx) {
  ctx.optsKind = 'UpdateOptions';
  const errs = [];
  validateFieldManager(ctx, errs);
  if (errs.length) throw E.invalid({ group: 'meta.k8s.io', kind: 'UpdateOptions' }, '', errs);
  const dry = dryRun(ctx);
  const c = ctx.cluster;
  const prev = c.get(ctx.rt, ctx.ns, ctx.name);
  if (ctx.sub === 'scale') return updateScale(ctx, prev, decodeObject(ctx), dry);
  const obj = decodeObject(ctx);
  checkKind(ctx, obj);
  placeObject(ctx, obj);
  if (!prev) throw E.notFound(grOf(ctx.rt), ctx.name);
  checkRV(ctx, obj, prev);
  pruneUnknown(ctx, obj);
  const next = ctx.sub ? subresourceObject(ctx, prev, obj) : obj;
  const withFields = F.update(prev, next, c.schema(ctx.rt, ctx.version), ctxId(ctx, managerName(ctx)), { now: c.now(), ...scope(ctx) });
  const r = c.commit(ctx.rt, prev, withFields, { dryRun: dry, subresource: ctx.sub });
  return { code: 200, body: served(ctx, r.obj) };
}

function decodePatchBody(ctx, type) {
  const text = ctx.body.toString('utf8');
  try {
    if (type === APPLY) return text.trim().startsWith('{') ? JSON.parse(text) : YAML.parse(text);
    return JSON.parse(text);
  } catch (err) {
    if (type === APPLY) throw E.badRequest(`error decoding YAML: ${err.message}`);
    throw E.badRequest(`error decoding patch: ${err.message}`);
  }
}

function patch(ctx) {
  ctx.optsKind = 'PatchOptions';
  const c = ctx.cluster;
  const rt = ctx.rt;
  const types = rt.builtin && ctx.sub !== 'scale' ? PATCH_TYPES : PATCH_TYPES.filter((t) => !t.includes('strategic'));
  const type = mediaType(ctx.headers);
  if (!types.includes(type)) throw E.unsupportedMediaType(types);
  const errs = [];
  if (type !== APPLY && ctx.query.force !== undefined) {
    errs.push({ type: 'FieldValueForbidden', field: 'force', detail: 'may not be specified for non-apply patch' });
  }
  if (type === APPLY && !ctx.query.fieldManager) {
    errs.push({ type: 'FieldValueRequired', field: 'fieldManager', detail: 'is required for apply patch' });
  }
  validateFieldManager(ctx, errs);
  if (errs.length) throw E.invalid({ group: 'meta.k8s.io', kind: 'PatchOptions' }, '', errs);
  const dry = dryRun(ctx);
  const body = decodePatchBody(ctx, type);
  const prev = c.get(rt, ctx.ns, ctx.name);
  if (ctx.sub === 'scale') {
    if (!prev) throw E.notFound(grOf(rt), ctx.name);
    const cur = scaleOf(ctx, prev);
    const next = type === 'application/json-patch+json' ? P.jsonPatch(cur, body) : P.mergePatch(cur, body);
    return updateScale(ctx, prev, next, dry);
  }
  const schema = c.schema(rt, ctx.version);
  const sc = scope(ctx);
  if (type === APPLY) {
    if (!F.isObj(body)) throw E.badRequest('error decoding YAML: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal array into Go value of type map[string]interface {}');
    if (body.metadata && body.metadata.managedFields !== undefined) throw E.badRequest('metadata.managedFields must be nil');
    const gv = gvOf(rt, ctx.version);
    if (body.apiVersion !== gv) {
      throw E.badRequest(`Incorrect version specified in apply patch. Specified patch version: ${body.apiVersion || ''}, expected: ${gv}`);
    }
    if (body.kind !== rt.kind) throw E.badRequest(`Incorrect kind specified in apply patch. Specified patch kind: ${body.kind || ''}, expected: ${rt.kind}`);
    pruneUnknown(ctx, body);
    if (prev) checkRV(ctx, body, prev);
    const force = ctx.query.force === 'true' || ctx.query.force === '1';
    const r = F.apply(prev, body, schema, ctxId(ctx, ctx.query.fieldManager), { force, now: c.now(), ...sc });
    if (r.conflicts.length) {
      throw E.applyConflict(F.conflictMessage(r.conflicts), r.conflicts.map((x) => ({
        reason: 'FieldManagerConflict', message: `conflict with ${F.managerText(x.m)}`, field: F.pathString(x.path),
      })));
    }
    const obj = r.object;
    obj.apiVersion = gv;
    obj.kind = rt.kind;
    placeObject(ctx, obj);
    if (!prev && ctx.sub) throw E.notFound(grOf(rt), ctx.name);
    const res = c.commit(rt, prev, obj, { dryRun: dry, subresource: ctx.sub });
    return { code: prev ? 200 : 201, body: served(ctx, res.obj) };
  }
  if (!prev) throw E.notFound(grOf(rt), ctx.name);
  const cur = served(ctx, prev);
  let next;
  try {
    if (type === 'application/json-patch+json') next = P.jsonPatch(cur, body);
    else if (type === 'application/merge-patch+json') next = P.mergePatch(cur, body);
    else next = P.strategic(cur, body);
  } catch (err) {
    if (!(err instanceof P.PatchError)) throw err;
    if (err.code === 400) throw E.badRequest(err.message);
    throw E.unprocessable('the server rejected our request due to an error in our request');
  }
  if (!F.isObj(next)) throw E.badRequest('the patched object is not an object');
  placeObject(ctx, next);
  checkRV(ctx, next, prev);
  pruneUnknown(ctx, next);
  const target = ctx.sub ? subresourceObject(ctx, prev, next) : next;
  const withFields = F.update(prev, target, schema, ctxId(ctx, managerName(ctx)), { now: c.now(), ...sc });
  const res = c.commit(rt, prev, withFields, { dryRun: dry, subresource: ctx.sub });
  return { code: 200, body: served(ctx, res.obj) };
}

/** DeleteOptions from the body (JSON) and the query; 422 for an unknown propagationPolicy. */
function deleteOptions(ctx) {
  let o = {};
  const text = ctx.body.toString('utf8').trim();
  if (text) {
    try { o = JSON.parse(text); } catch (err) { throw E.badRequest(`couldn't get version/kind; json parse error: ${err.message}`); }
  }
  for (const k of ['propagationPolicy', 'gracePeriodSeconds', 'orphanDependents']) if (ctx.query[k] !== undefined) o[k] = ctx.query[k];
  if (o.orphanDependents !== undefined && o.propagationPolicy !== undefined) {
    throw E.invalid({ group: 'meta.k8s.io', kind: 'DeleteOptions' }, '', [{ type: 'FieldValueInvalid', field: 'propagationPolicy', value: o.propagationPolicy, detail: 'orphanDependents and deletionPropagation cannot be both set' }]);
  }
  if (o.orphanDependents === true || o.orphanDependents === 'true') o.propagationPolicy = 'Orphan';
  if (o.propagationPolicy !== undefined && !['Foreground', 'Background', 'Orphan'].includes(o.propagationPolicy)) {
    throw E.invalid({ group: 'meta.k8s.io', kind: 'DeleteOptions' }, '', [{ type: 'FieldValueNotSupported', field: 'propagationPolicy', value: o.propagationPolicy, detail: 'supported values: "Foreground", "Background", "Orphan", "nil"' }]);
  }
  if (Array.isArray(o.dryRun) && o.dryRun.length) ctx.query.dryRun = o.dryRun;
  return o;
}

function del(ctx) {
  ctx.optsKind = 'DeleteOptions';
  const o = deleteOptions(ctx);
  const dry = dryRun(ctx);
  const c = ctx.cluster;
  const prev = c.get(ctx.rt, ctx.ns, ctx.name);
  if (!prev) throw E.notFound(grOf(ctx.rt), ctx.name);
  const r = c.remove(ctx.rt, prev, { propagationPolicy: o.propagationPolicy, dryRun: dry, preconditions: o.preconditions });
  if (r.deleted && !ctx.rt.returnsDeleted) {
    const details = { name: ctx.name };
    if (ctx.rt.group) details.group = ctx.rt.group;
    details.kind = ctx.rt.plural;
    details.uid = prev.metadata.uid;
    return { code: 200, body: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details } };
  }
  return { code: 200, body: served(ctx, r.obj) };
}

function deleteCollection(ctx) {
  ctx.optsKind = 'DeleteOptions';
  const o = deleteOptions(ctx);
  const dry = dryRun(ctx);
  const c = ctx.cluster;
  const match = selector(ctx);
  const items = [];
  for (const e of c.store.list(ctx.rt, ctx.ns)) {
    if (!match(e.obj)) continue;
    const r = c.remove(ctx.rt, e.obj, { propagationPolicy: o.propagationPolicy, dryRun: dry });
    items.push(listItem(ctx, r.obj));
  }
  const metadata = { resourceVersion: String(c.store.rv) };
  return { code: 200, body: { kind: ctx.rt.listKind, apiVersion: gvOf(ctx.rt, ctx.version), metadata, items } };
}

// ------------------------------------------------------------------ scale
function scaleOf(ctx, obj) {
  const sel = ((obj.spec || {}).selector || {}).matchLabels || {};
  return {
    kind: 'Scale', apiVersion: 'autoscaling/v1',
    metadata: { name: obj.metadata.name, namespace: obj.metadata.namespace, uid: obj.metadata.uid,
      resourceVersion: obj.metadata.resourceVersion, creationTimestamp: obj.metadata.creationTimestamp },
    spec: { replicas: (obj.spec || {}).replicas || 0 },
    status: { replicas: (obj.status || {}).replicas || 0, selector: Object.entries(sel).map(([k, v]) => `${k}=${v}`).join(',') },
  };
}

function updateScale(ctx, prev, scale, dry) {
  if (!prev) throw E.notFound(grOf(ctx.rt), ctx.name);
  if (!scale.spec || typeof scale.spec.replicas !== 'number' || scale.spec.replicas < 0) {
    throw E.invalid({ group: 'autoscaling', kind: 'Scale' }, ctx.name, [{ type: 'FieldValueInvalid', field: 'spec.replicas', value: scale.spec ? scale.spec.replicas : null, detail: 'must be greater than or equal to 0' }]);
  }
  checkRV(ctx, scale, prev);
  const next = F.clone(prev);
  next.spec.replicas = scale.spec.replicas;
  const c = ctx.cluster;
  const id = { manager: managerName(ctx), apiVersion: gvOf(ctx.rt, ctx.rt.storageVersion), subresource: 'scale' };
  const withFields = F.update(prev, next, c.schema(ctx.rt), id, { now: c.now(), ignore: (k) => k.startsWith('f:status') });
  const r = c.commit(ctx.rt, prev, withFields, { dryRun: dry, subresource: 'scale' });
  return { code: 200, body: scaleOf(ctx, r.obj) };
}

module.exports = { get, list, create, update, patch, del, deleteCollection, selector, negotiate, gvOf, status };
