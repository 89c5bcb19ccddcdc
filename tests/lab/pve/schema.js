// Request validation against the real PVE API schema (pve-api-index.json,
// made by tests/lab/gen-pve-index.py): path resolution like
// PVE::API2->find_handler and parameter checks like PVE::JSONSchema
// (check_object / check_prop / check_type / check_format), with its messages.
'use strict';
const fs = require('fs');
const path = require('path');
const F = require('./formats');

const INDEX = path.join(__dirname, '..', 'pve-api-index.json');

const reCache = new Map();
/** A Perl pattern from the schema as an anchored JS RegExp (m/^$pattern$/). */
function perlRegExp(pat) {
  let re = reCache.get(pat);
  if (!re) {
    const flags = pat.includes('(?^i:') ? 'i' : '';
    const js = pat.replace(/\(\?\^[a-z]*:/g, '(?:').replace(/\{,(\d+)\}/g, '{0,$1}');
    re = new RegExp(`^(?:${js})$`, flags);
    reCache.set(pat, re);
  }
  return re;
}

function addError(errors, p, msg) {
  const key = p || '_root';
  // PVE joins with a single-quoted '\n': a literal backslash-n
  errors[key] = errors[key] !== undefined ? `${errors[key]}\\n${msg}` : msg;
}

function unescapeSafe(s) {
  try { return decodeURIComponent(s); } catch (_) { return s; }
}

const isInteger = (v) => /^[+-]?\d+$/.test(v);
const isNumber = (v) => /^[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?$/.test(v);

class Schema {
  constructor(file = INDEX) {
    const idx = JSON.parse(fs.readFileSync(file, 'utf8'));
    this.source = idx.source;
    this.formats = idx.formats;
    this.paths = idx.paths;
    this.templates = Object.keys(this.paths).map((t) => [t, t.split('/').filter(Boolean)]);
    this.ctx = { version: '9.1' };
  }

  /** Resolves a concrete path: {tpl, uri: {param: value}} or null. */
  resolve(p) {
    const clean = '/' + p.split('/').filter(Boolean).join('/');
    if (this.paths[clean]) return { tpl: clean, uri: {} };
    const segs = clean.split('/').filter(Boolean);
    let best = null;
    for (const [tpl, tsegs] of this.templates) {
      if (tsegs.length !== segs.length) continue;
      const uri = {};
      let lit = 0;
      let ok = true;
      for (let i = 0; i < segs.length && ok; i++) {
        const t = tsegs[i];
        if (t[0] === '{') uri[t.slice(1, -1)] = unescapeSafe(segs[i]);
        else if (t === segs[i]) lit++;
        else ok = false;
      }
      if (ok && (!best || lit > best.lit)) best = { tpl, uri, lit };
    }
    return best && { tpl: best.tpl, uri: best.uri };
  }

  endpoint(tpl, method) { return (this.paths[tpl] || {})[method] || null; }

  format(ref) { return typeof ref === 'string' && ref[0] === '@' ? this.formats[ref.slice(1)] : null; }

  /** The schema of a parameter, mapping "net0" onto "net[n]" (index range checked). */
  param(ep, name) {
    const props = ep.params;
    if (props[name]) return props[name];
    const m = /^([a-z]+)(\d+)$/.exec(name);
    if (m && String(Number(m[2])) === m[2] && props[`${m[1]}[n]`]) {
      const sd = props[`${m[1]}[n]`];
      if (sd.n_max === undefined || Number(m[2]) <= sd.n_max) return sd;
    }
    return null;
  }

  // ---------------------------------------------------------- JSONSchema.pm
  checkType(p, type, value, errors) {
    if (Array.isArray(value)) {
      if (type === 'array') return true;
      addError(errors, p, `type check ('${type}') failed - got ARRAY`);
      return false;
    }
    if (typeof value === 'object') {
      addError(errors, p, `type check ('${type}') failed - got HASH`);
      return false;
    }
    const v = String(value);
    if (type === 'boolean') {
      if (typeof value === 'boolean' || v === '1' || v === '0') return true;
      addError(errors, p, `type check ('boolean') failed - got '${v}'`);
      return false;
    }
    if (typeof value === 'boolean' && type !== 'string') {
      addError(errors, p, `type check ('${type}') failed - got JSON::PP::Boolean`);
      return false;
    }
    if (type === 'integer' && !isInteger(v)) {
      addError(errors, p, `type check ('integer') failed - got '${v}'`);
      return false;
    }
    if (type === 'number' && !isNumber(v)) {
      addError(errors, p, `type check ('number') failed - got '${v}'`);
      return false;
    }
    return true;
  }

  checkFormat(format, value, p) {
    const fmt = this.format(format);
    if (fmt) return this.parsePropertyString(fmt, value, p);
    F.checkNamedFormat(format, value, this.ctx);
    return undefined;
  }

  checkProp(value, schema, p, errors) {
    if (value === undefined || value === null) {
      if (!schema.optional && !schema.alias && schema.type !== 'null') {
        addError(errors, p, 'property is missing and it is not optional');
      }
      return;
    }
    if (!this.checkType(p, schema.type || 'string', value, errors)) return;
    if (Array.isArray(value)) {
      if (schema.items) value.forEach((el, i) => this.checkProp(el, schema.items, `${p}[${i}]`, errors));
      return;
    }
    const v = typeof value === 'boolean' ? (value ? '1' : '0') : String(value);
    if (schema.format) {
      try {
        this.checkFormat(schema.format, v, p);
      } catch (err) {
        addError(errors, p, `invalid format - ${F.stringifyError(err)}`);
        return;
      }
    }
    if (schema.pattern && !perlRegExp(schema.pattern).test(v)) {
      addError(errors, p, 'value does not match the regex pattern');
      return;
    }
    const len = [...v].length;
    if (schema.maxLength !== undefined && len > Number(schema.maxLength)) {
      addError(errors, p, `value may only be ${schema.maxLength} characters long`);
      return;
    }
    if (schema.minLength !== undefined && len < Number(schema.minLength)) {
      addError(errors, p, `value must be at least ${schema.minLength} characters long`);
      return;
    }
    if (isNumber(v)) {
      if (schema.maximum !== undefined && Number(v) > Number(schema.maximum)) {
        addError(errors, p, `value must have a maximum value of ${schema.maximum}`);
        return;
      }
      if (schema.minimum !== undefined && Number(v) < Number(schema.minimum)) {
        addError(errors, p, `value must have a minimum value of ${schema.minimum}`);
        return;
      }
    }
    if (schema.enum && !schema.enum.some((e) => String(e) === v)) {
      addError(errors, p, `value '${v}' does not have a value in the enumeration '${schema.enum.join(', ')}'`);
    }
  }

  /** check_object for a property-string sub-format (keys are known after parsing). */
  checkSubObject(p, fmt, res, errors) {
    for (const k of Object.keys(fmt)) this.checkProp(res[k], fmt[k], p ? `${p}.${k}` : k, errors);
    for (const k of Object.keys(res)) {
      const req = fmt[k] && fmt[k].requires;
      if (typeof req === 'string' && res[req] === undefined) {
        addError(errors, p ? `${p}.${req}` : req, `missing property - '${p ? `${p}.${k}` : k}' requires this property`);
      }
    }
  }

  /** parse_property_string with value checks; throws like PVE ("format error" + errors). */
  parsePropertyString(fmt, value, p = '') {
    const res = F.parsePropertyStringRaw(fmt, value);
    const errors = {};
    this.checkSubObject(p, fmt, res, errors);
    if (Object.keys(errors).length) throw new F.FormatError('format error', errors);
    return res;
  }

  /**
   * Validates request parameters (URI parameters included) against an
   * endpoint.  Returns null or the `errors` object of a 400.
   */
  validate(ep, params) {
    const errors = {};
    for (const [name, sd] of Object.entries(ep.params)) {
      if (name.endsWith('[n]')) continue;
      if (params[name] === undefined || params[name] === null) this.checkProp(undefined, sd, name, errors);
    }
    for (const [name, value] of Object.entries(params)) {
      const sd = this.param(ep, name);
      if (!sd) {
        if (!ep.additional) {
          addError(errors, name, 'property is not defined in schema and the schema does not allow additional properties');
        }
        continue;
      }
      this.checkProp(value, sd, name, errors);
      if (typeof sd.requires === 'string' && params[sd.requires] === undefined) {
        addError(errors, sd.requires, `missing property - '${name}' requires this property`);
      }
    }
    return Object.keys(errors).length ? errors : null;
  }

  /** Validated string/JSON values -> JS types (integers, numbers, booleans as 0/1). */
  typed(ep, params) {
    const out = {};
    for (const [name, value] of Object.entries(params)) {
      const sd = this.param(ep, name);
      if (!sd || value === undefined || value === null || Array.isArray(value)) { out[name] = value; continue; }
      if (sd.type === 'integer' || sd.type === 'number') out[name] = Number(value);
      else if (sd.type === 'boolean') out[name] = value === true || String(value) === '1' ? 1 : 0;
      else out[name] = typeof value === 'string' ? value : String(value);
    }
    return out;
  }

  /** The format dict of a qemu config key (net0, scsi0, agent, ipconfig0, ...), or null. */
  vmKeyFormat(key) {
    const ep = this.endpoint('/nodes/{node}/qemu', 'POST');
    const sd = this.param(ep, key);
    return sd ? this.format(sd.format) : null;
  }

  /** Parses a qemu config value as its property string ({} when unset or not one). */
  parseVmKey(key, value) {
    const fmt = this.vmKeyFormat(key);
    if (!fmt || value === undefined || value === null) return {};
    return this.parsePropertyString(fmt, value, key);
  }

  printVmKey(key, obj, skip) { return F.printPropertyString(this.vmKeyFormat(key), obj, skip); }
}

module.exports = { Schema, perlRegExp };
