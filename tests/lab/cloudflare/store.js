// Zones and DNS records of the Cloudflare fake, with the API's validation
// (see README.md beside this file for what is modelled and where each
// error text comes from).  No HTTP here: index.js maps requests onto it.
'use strict';
const crypto = require('crypto');
const net = require('net');

/** A Cloudflare API error: HTTP status + the envelope's errors[]. */
class CfError extends Error {
  constructor(status, errors, opts = {}) {
    super(errors.map((e) => `${e.code} ${e.message}`).join('; '));
    this.status = status;
    this.errors = errors;
    this.bare = !!opts.bare; // the envelope has only success + errors (as some auth errors do)
  }
}

const err = (status, code, message, opts) => new CfError(status, [{ code, message }], opts);
// DNS validation failures come wrapped in 1004 with the detail in error_chain
const validation = (code, message) => new CfError(400, [{ code: 1004, message: 'DNS Validation Error',
  error_chain: [{ code, message }] }]);

const TYPES = ['A', 'AAAA', 'CNAME', 'TXT', 'MX', 'NS', 'PTR'];
const PROXIABLE_TYPES = ['A', 'AAAA', 'CNAME'];

const hex32 = () => crypto.randomBytes(16).toString('hex');
const now = () => new Date().toISOString().replace(/Z$/, '000Z'); // microseconds, like Cloudflare

/** The name in lower case without a trailing dot. */
function canonName(s) { return String(s).toLowerCase().replace(/\.$/, ''); }

/** Host-name syntax: labels of [a-z0-9_-], 1..63 long, "*" only as the whole first label. */
function validHostname(name, allowWildcard) {
  if (!name || name.length > 253) return false;
  const labels = name.split('.');
  return labels.every((l, i) => (allowWildcard && i === 0 && l === '*') ||
    (/^[a-z0-9_-]{1,63}$/.test(l) && !l.startsWith('-') && !l.endsWith('-')));
}

/** An IPv6 address in RFC 5952 form (WHATWG URL serialisation does exactly that). */
function canonIPv6(s) { return new URL(`http://[${s}]/`).hostname.slice(1, -1); }

/** Addresses Cloudflare will not proxy to: RFC 1918, loopback, link-local, CGNAT, ULA, ... */
function isPrivate(ip) {
  if (net.isIPv4(ip)) {
    const [a, b] = ip.split('.').map(Number);
    return a === 10 || a === 127 || a === 0 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) ||
      (a === 169 && b === 254) || (a === 100 && b >= 64 && b <= 127) || a >= 224;
  }
  const c = canonIPv6(ip);
  return c === '::' || c === '::1' || /^f[cd]/.test(c) || /^fe[89ab]/.test(c) || /^ff/.test(c);
}

class Zone {
  constructor(name, account) {
    this.id = hex32();
    this.name = name;
    this.account = account;
    this.created = now();
    this.records = new Map(); // id -> record (insertion order = creation order)
  }

  view() {
    return {
      id: this.id, name: this.name, status: 'active', paused: false, type: 'full', development_mode: 0,
      name_servers: ['ada.ns.cloudflare.com', 'bob.ns.cloudflare.com'],
      original_name_servers: null, original_registrar: null, original_dnshost: null,
      modified_on: this.created, created_on: this.created, activated_on: this.created,
      meta: { step: 2, custom_certificate_quota: 0, page_rule_quota: 3, phishing_detected: false },
      owner: { id: null, type: 'user', email: null },
      account: { id: this.account.id, name: this.account.name },
      permissions: ['#dns_records:edit', '#dns_records:read', '#zone:read'],
      plan: { id: '0feeeeeeeeeeeeeeeeeeeeeeeeeeeeee', name: 'Free Website', price: 0, currency: 'USD',
        frequency: '', is_subscribed: false, can_subscribe: false, legacy_id: 'free', legacy_discount: false,
        externally_managed: false },
    };
  }
}

class Store {
  constructor(opts = {}) {
    this.account = { id: hex32(), name: 'tlr lab' };
    this.zones = new Map(); // id -> Zone
    this.quota = opts.quota || (() => 1000);
  }

  addZone(name) {
    name = canonName(name);
    if (!validHostname(name, false) || !name.includes('.')) throw new Error(`not a zone name: '${name}'`);
    for (const z of this.zones.values()) if (z.name === name) return z;
    const z = new Zone(name, this.account);
    this.zones.set(z.id, z);
    return z;
  }

  zoneByName(name) {
    name = canonName(name);
    for (const z of this.zones.values()) if (z.name === name) return z;
    return null;
  }

  /** The zone for an API path id; 7003 for a malformed id, `null` for an unknown one. */
  zone(id, path) {
    if (!/^[0-9a-f]{32}$/.test(id)) {
      throw new CfError(400, [
        { code: 7003, message: `Could not route to ${path}, perhaps your object identifier is invalid?` },
        { code: 7000, message: 'No route for that URI' }]);
    }
    return this.zones.get(id) || null;
  }

  // -------------------------------------------------------------- zones
  listZones(q) {
    let list = [...this.zones.values()];
    if (q.name) list = list.filter((z) => z.name === canonName(q.name));
    if (q.status && q.status !== 'active') list = [];
    if (q['account.id']) list = list.filter((z) => z.account.id === q['account.id']);
    list.sort((a, b) => (a.name < b.name ? -1 : 1));
    if (q.direction === 'desc') list.reverse();
    return paginate(list.map((z) => z.view()), q, { def: 20, min: 5, max: 50 });
  }

  // -------------------------------------------------------------- records
  view(zone, r) {
    const out = {
      id: r.id, name: r.name, type: r.type, content: r.content, proxiable: r.proxiable, proxied: r.proxied,
      ttl: r.ttl, settings: {}, meta: {}, comment: r.comment, tags: r.tags.slice(),
      created_on: r.created_on, modified_on: r.modified_on,
    };
    if (r.priority !== undefined) out.priority = r.priority;
    if (r.comment !== null) out.comment_modified_on = r.modified_on;
    return out;
  }

  listRecords(zone, q) {
    const conds = [];
    const str = (v) => String(v).toLowerCase();
    if (q.type) conds.push((r) => r.type === String(q.type).toUpperCase());
    const nameExact = q['name.exact'] !== undefined ? q['name.exact'] : q.name;
    if (nameExact !== undefined) conds.push((r) => r.name === canonName(nameExact));
    if (q['name.contains'] !== undefined) conds.push((r) => r.name.includes(str(q['name.contains'])));
    if (q['name.startswith'] !== undefined) conds.push((r) => r.name.startsWith(str(q['name.startswith'])));
    if (q['name.endswith'] !== undefined) conds.push((r) => r.name.endsWith(str(q['name.endswith'])));
    const contentExact = q['content.exact'] !== undefined ? q['content.exact'] : q.content;
    if (contentExact !== undefined) conds.push((r) => r.content === String(contentExact));
    if (q['content.contains'] !== undefined) conds.push((r) => r.content.includes(String(q['content.contains'])));
    if (q.proxied !== undefined) conds.push((r) => r.proxied === (String(q.proxied) === 'true'));
    const any = q.match === 'any';
    let list = [...zone.records.values()].filter((r) =>
      conds.length === 0 || (any ? conds.some((c) => c(r)) : conds.every((c) => c(r))));
    const key = { type: 'type', name: 'name', content: 'content', ttl: 'ttl', proxied: 'proxied' }[q.order];
    if (key) list.sort((a, b) => (a[key] < b[key] ? -1 : a[key] > b[key] ? 1 : 0));
    if (q.direction === 'desc') list.reverse();
    return paginate(list.map((r) => this.view(zone, r)), q, { def: 100, min: 1, max: 5000000 });
  }

  getRecord(zone, id) {
    const r = zone.records.get(id);
    if (!r) throw err(404, 81044, 'Record does not exist.');
    return r;
  }

  /** POST: a new record from the body. */
  create(zone, body) {
    const r = this.check(zone, body, null);
    if (zone.records.size >= this.quota()) throw err(400, 81045, 'Record quota exceeded.');
    r.id = hex32();
    r.created_on = r.modified_on = now();
    zone.records.set(r.id, r);
    return r;
  }

  /** PUT overwrites every field (absent ones take their defaults); PATCH merges. */
  update(zone, id, body, merge) {
    const old = this.getRecord(zone, id);
    let input = body;
    if (merge) {
      input = { type: old.type, name: old.name, content: old.content, ttl: old.ttl, proxied: old.proxied,
        comment: old.comment, tags: old.tags, priority: old.priority };
      for (const [k, v] of Object.entries(isObject(body) ? body : {})) input[k] = v;
    }
    const r = this.check(zone, input, id);
    Object.assign(old, r, { modified_on: now() });
    return old;
  }

  remove(zone, id) {
    this.getRecord(zone, id);
    zone.records.delete(id);
    return { id };
  }

  /**
   * Validates a record body the way the API does and returns the record's
   * fields (name made absolute, content normalised).  `selfId`: the record
   * being overwritten (it does not conflict with itself).
   */
  check(zone, body, selfId) {
    if (!isObject(body)) throw err(400, 9207, 'Request body is invalid.');
    const type = typeof body.type === 'string' ? body.type.toUpperCase() : body.type;
    if (typeof type !== 'string' || !type) throw validation(9101, 'DNS record type is required.');
    if (!TYPES.includes(type)) throw validation(9101, `DNS record type '${body.type}' is invalid or not supported.`);
    if (typeof body.name !== 'string' || !body.name.trim()) throw err(400, 9000, 'DNS name is invalid.');
    const name = absoluteName(body.name.trim(), zone.name);
    if (!validHostname(name, true)) throw err(400, 9000, 'DNS name is invalid.');
    let ttl = body.ttl === undefined || body.ttl === null ? 1 : body.ttl;
    if (!Number.isInteger(ttl) || !(ttl === 1 || (ttl >= 60 && ttl <= 86400))) {
      throw validation(9021, 'TTL must be between 60 and 86400 seconds, or 1 for Automatic.');
    }
    const proxied = body.proxied === undefined || body.proxied === null ? false : body.proxied;
    if (typeof proxied !== 'boolean') throw err(400, 9207, 'Request body is invalid.');
    let content = body.content;
    if (typeof content !== 'string') content = content === undefined || content === null ? '' : String(content);
    let priority;
    switch (type) {
      case 'A':
        if (!net.isIPv4(content)) throw err(400, 9005, 'Content for A record must be a valid IPv4 address.');
        break;
      case 'AAAA':
        if (!net.isIPv6(content)) throw err(400, 9006, 'Content for AAAA record must be a valid IPv6 address.');
        content = canonIPv6(content);
        break;
      case 'CNAME':
        content = canonName(content);
        if (net.isIP(content) || !validHostname(content, false) || content === name) {
          throw validation(9007, 'Content for CNAME record is invalid.');
        }
        break;
      case 'TXT':
        if (!content) throw validation(9009, 'Content for TXT record is invalid.');
        if (content.length > 2048) throw validation(9100, 'TXT record content must be 2048 characters or fewer.');
        break;
      default: // MX, NS, PTR: a host name (MX also a priority)
        content = canonName(content);
        if (!validHostname(content, false)) throw validation(9009, `Content for ${type} record is invalid.`);
        if (type === 'MX') {
          priority = body.priority;
          if (!Number.isInteger(priority) || priority < 0 || priority > 65535) {
            throw validation(9010, 'Invalid priority, priority must be set and be between 0 and 65535.');
          }
        }
    }
    const proxiable = PROXIABLE_TYPES.includes(type) && !(type !== 'CNAME' && isPrivate(content));
    if (proxied) {
      if (!PROXIABLE_TYPES.includes(type)) throw validation(9004, 'This record type cannot be proxied.');
      if (!proxiable) throw err(400, 9003, `Target ${content} is not allowed for a proxied record.`);
      ttl = 1; // proxied records always use automatic TTL
    }
    const comment = body.comment === undefined || body.comment === '' ? null : body.comment;
    if (comment !== null && (typeof comment !== 'string' || comment.length > 100)) {
      throw validation(9200, 'DNS record comment must be a string of at most 100 characters.');
    }
    const tags = body.tags === undefined || body.tags === null ? [] : body.tags;
    if (!Array.isArray(tags)) throw err(400, 9207, 'Request body is invalid.');
    if (tags.length > 0) throw validation(9300, `DNS record has ${tags.length} tags, exceeding the quota of 0.`);
    // conflicts with the other records of the zone
    for (const o of zone.records.values()) {
      if (o.id === selfId || o.name !== name) continue;
      if (o.type === type && o.content === content) throw err(400, 81058, 'An identical record already exists.');
      if (type === 'CNAME' && o.type !== 'CNAME') {
        throw err(400, 81053, 'An A, AAAA, or CNAME record with that host already exists.');
      }
      if (o.type === 'CNAME') {
        if (type === 'CNAME') throw err(400, 81053, 'An A, AAAA, or CNAME record with that host already exists.');
        throw err(400, 81054, 'A CNAME record with that host already exists.');
      }
    }
    const r = { name, type, content, ttl, proxied, proxiable, comment, tags };
    if (priority !== undefined) r.priority = priority;
    return r;
  }

  state() {
    return [...this.zones.values()].map((z) => ({
      id: z.id, name: z.name, records: [...z.records.values()].map((r) => this.view(z, r)),
    }));
  }
}

function isObject(v) { return v !== null && typeof v === 'object' && !Array.isArray(v); }

/** "@" is the apex; a name ending in the zone is absolute; anything else gets the zone appended. */
function absoluteName(name, zone) {
  const n = canonName(name);
  if (n === '@' || n === zone) return zone;
  if (n.endsWith(`.${zone}`)) return n;
  return `${n}.${zone}`;
}

/** One page of a list: {result, result_info}; per_page is clamped to [min, max]. */
function paginate(list, q, { def, min, max }) {
  let perPage = q.per_page === undefined ? def : Number.parseInt(q.per_page, 10);
  if (!Number.isFinite(perPage)) perPage = def;
  perPage = Math.min(Math.max(perPage, min), max);
  let page = q.page === undefined ? 1 : Number.parseInt(q.page, 10);
  if (!Number.isFinite(page) || page < 1) page = 1;
  const items = list.slice((page - 1) * perPage, page * perPage);
  return {
    result: items,
    result_info: { page, per_page: perPage, count: items.length, total_count: list.length,
      total_pages: Math.max(1, Math.ceil(list.length / perPage)) },
  };
}

module.exports = { Store, CfError, err, validation, canonIPv6, isPrivate, absoluteName };
