// PVE's named formats (pve-common PVE/JSONSchema.pm and qemu-server
// register_format) and property strings (parse_property_string), with the
// messages PVE dies with.
'use strict';
const net = require('net');

/** split_list (PVE::ParseUtils): separators are ',', ';' and whitespace. */
function splitList(v) {
  return String(v).trim().split(/[,;\s]+/).filter((x) => x !== '');
}

/** parse_boolean: 1|on|yes|true and 0|off|no|false, case-insensitive. */
function parseBoolean(v) {
  if (/^(?:1|on|yes|true)$/i.test(v)) return 1;
  if (/^(?:0|off|no|false)$/i.test(v)) return 0;
  return undefined;
}

const DNS_LABEL = '([a-zA-Z0-9]([a-zA-Z0-9\\-]*[a-zA-Z0-9])?)';
const RE = {
  node: /^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$/,
  storageId: /^[a-z][a-z0-9\-_.]*[a-z0-9]$/i,
  configId: /^[a-z][a-z0-9_-]+$/i,
  dns: new RegExp(`^(${DNS_LABEL}\\.)*${DNS_LABEL}$`),
  tag: /^[a-z0-9_][a-z0-9_\-+.]*$/i,
  mac: /^[a-f0-9][02468ace](?::[a-f0-9]{2}){5}$/i,
  size: /^(\d+(\.\d+)?)([KMGT])?$/,
  bridge: /^[-_.\w\d]+$/,
  iface: /^[a-z][a-z0-9_]{1,20}([:.]\d+)?$/i,
  poolId: /^[A-Za-z0-9_-]+(?:\/[A-Za-z0-9_-]+){0,2}$/,
  userId: /^[^\s:/]+@[A-Za-z][A-Za-z0-9.\-_]+$/,
  realm: /^[A-Za-z][A-Za-z0-9.\-_]+$/,
  volumeId: /^([a-z][a-z0-9\-_.]*[a-z0-9]):(.+)$/i,
  urlencoded: /^[-%a-zA-Z0-9_.!~*'()]*$/,
  email: /^[\w+\-~]+(\.[\w+\-~]+)*@[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)*$/,
  bootdev: /^(?:(?:ide|sata|scsi|virtio|net|hostpci|usb)\d+|efidisk0|tpmstate0)$/,
};

const STORAGE_CONTENT = ['images', 'rootdir', 'vztmpl', 'iso', 'backup', 'snippets', 'import'];

// Built-in CPU models (qemu-server PVE/QemuServer/CPUConfig.pm, abridged).
const CPU_MODELS = new Set([
  'host', 'max', 'kvm64', 'kvm32', 'qemu64', 'qemu32', 'x86-64-v2', 'x86-64-v2-AES', 'x86-64-v3',
  'x86-64-v4', '486', 'pentium', 'pentium2', 'pentium3', 'coreduo', 'core2duo', 'athlon', 'phenom',
  'Conroe', 'Penryn', 'Nehalem', 'Nehalem-IBRS', 'Westmere', 'Westmere-IBRS', 'SandyBridge',
  'SandyBridge-IBRS', 'IvyBridge', 'IvyBridge-IBRS', 'Haswell', 'Haswell-IBRS', 'Haswell-noTSX',
  'Broadwell', 'Broadwell-IBRS', 'Broadwell-noTSX', 'Skylake-Client', 'Skylake-Client-IBRS',
  'Skylake-Server', 'Skylake-Server-IBRS', 'Cascadelake-Server', 'Cooperlake', 'Icelake-Server',
  'SapphireRapids', 'GraniteRapids', 'KnightsMill', 'Opteron_G1', 'Opteron_G2', 'Opteron_G3',
  'Opteron_G4', 'Opteron_G5', 'EPYC', 'EPYC-IBPB', 'EPYC-Rome', 'EPYC-Milan', 'EPYC-Genoa',
]);

function die(msg) { throw new Error(`${msg}\n`); }

function isIp(v, version) {
  const k = net.isIP(v);
  return k !== 0 && (!version || k === version);
}

function isCidr(v, version) {
  const m = /^(.+)\/(\d{1,3})$/.exec(v);
  if (!m) return false;
  const k = net.isIP(m[1]);
  if (!k || (version && k !== version)) return false;
  return Number(m[2]) <= (k === 4 ? 32 : 128);
}

function versionAtLeast(ctx, want) {
  const [a, b] = String((ctx && ctx.version) || '9.1').split('.').map(Number);
  const [c, d] = want.split('.').map(Number);
  return a > c || (a === c && b >= d);
}

// name -> (value, ctx) => void, dying with PVE's message on a bad value.
const NAMED = {
  'pve-node': (v) => { if (!RE.node.test(v)) die('value does not look like a valid node name'); },
  'pve-vmid': (v) => { if (!/^[1-9][0-9]{2,8}$/.test(v)) die('value does not look like a valid VM ID'); },
  'pve-storage-id': (v) => { if (!RE.storageId.test(v)) die(`storage ID '${v}' contains illegal characters`); },
  'pve-configid': (v) => { if (!RE.configId.test(v)) die(`invalid configuration ID '${v}'`); },
  'pve-poolid': (v) => { if (!RE.poolId.test(v)) die(`pool name '${v}' contains illegal characters`); },
  'dns-name': (v) => { if (!RE.dns.test(v)) die('value does not look like a valid DNS name'); },
  'pve-tag': (v) => { if (!RE.tag.test(v)) die(`invalid characters in tag '${v}'`); },
  'mac-addr': (v) => { if (!RE.mac.test(v)) die('value does not look like a valid unicast MAC address'); },
  'disk-size': (v) => { if (!RE.size.test(v)) die(`unable to parse size '${v}'`); },
  'pve-bridge-id': (v) => { if (!RE.bridge.test(v)) die(`invalid bridge ID '${v}'`); },
  'pve-iface': (v) => { if (!RE.iface.test(v)) die(`invalid network interface name '${v}'`); },
  'pve-userid': (v) => { if (!RE.userId.test(v)) die('value does not look like a valid user name'); },
  'pve-realm': (v) => { if (!RE.realm.test(v)) die(`realm '${v}' contains illegal characters`); },
  ip: (v) => { if (!isIp(v)) die('value does not look like a valid IP address'); },
  ipv4: (v) => { if (!isIp(v, 4)) die('value does not look like a valid IPv4 address'); },
  ipv6: (v) => { if (!isIp(v, 6)) die('value does not look like a valid IPv6 address'); },
  address: (v) => { if (!isIp(v) && !RE.dns.test(v)) die('value does not look like a valid address'); },
  CIDR: (v) => { if (!isCidr(v)) die('value does not look like a valid CIDR network'); },
  CIDRv4: (v) => { if (!isCidr(v, 4)) die('value does not look like a valid IPv4 CIDR network'); },
  CIDRv6: (v) => { if (!isCidr(v, 6)) die('value does not look like a valid IPv6 CIDR network'); },
  IPorCIDR: (v) => { if (!isIp(v) && !isCidr(v)) die('value does not look like a valid IP address or CIDR network'); },
  urlencoded: (v) => { if (!RE.urlencoded.test(v)) die(`invalid urlencoded string: ${v}`); },
  email: (v) => { if (!RE.email.test(v)) die('value does not look like a valid email address'); },
  'pve-volume-id': (v) => { if (!RE.volumeId.test(v)) die(`unable to parse volume ID '${v}'`); },
  'pve-volume-id-or-qm-path': (v) => {
    if (v === 'none' || v === 'cdrom' || v.startsWith('/')) return;
    if (!RE.volumeId.test(v)) die(`unable to parse volume ID '${v}'`);
  },
  'pve-volume-id-or-absolute-path': (v) => {
    if (v.startsWith('/')) return;
    if (!RE.volumeId.test(v)) die(`unable to parse volume ID '${v}'`);
  },
  'pve-storage-content': (v, ctx) => {
    if (!STORAGE_CONTENT.includes(v) || (v === 'import' && !versionAtLeast(ctx, '8.4'))) {
      die(`invalid content type '${v}'`);
    }
  },
  'pve-ipv4-config': (v) => {
    if (v !== 'dhcp' && !isCidr(v, 4)) die('value does not look like a valid ipv4 network configuration');
  },
  'pve-ipv6-config': (v) => {
    if (v !== 'dhcp' && v !== 'auto' && !isCidr(v, 6)) die('value does not look like a valid ipv6 network configuration');
  },
  'pve-cpu-type': (v) => {
    if (v.startsWith('custom-')) return;
    if (!CPU_MODELS.has(v)) die(`Built-in cputype '${v}' is not defined (missing 'custom-' prefix?)`);
  },
  'pve-qm-bootdev': (v) => { if (!RE.bootdev.test(v)) die(`invalid boot device '${v}'`); },
};

/** An error carrying PVE's per-key `errors` (like raise "format error\n", errors => ...). */
class FormatError extends Error {
  constructor(msg, errors) { super(msg); this.errors = errors; }
}

/** PVE::Exception::stringify: message, then "key: msg" lines for its errors. */
function stringifyError(err) {
  let msg = err.message;
  if (!msg.endsWith('\n')) msg += '\n';
  for (const [k, v] of Object.entries(err.errors || {})) msg += `${k}: ${v}\n`;
  return msg;
}

/**
 * parse_property_string: "virtio,bridge=vmbr0" against a format dict.  Dies
 * like PVE on a syntax problem; returns {res, errors} where errors are what
 * check_object found in the values (the caller raises them).
 */
function parsePropertyStringRaw(fmt, data) {
  const res = {};
  let defaultKey;
  for (const part of String(data).split(',')) {
    if (/^\s*$/.test(part)) continue;
    const m = /^([^=]+)=(.+)$/s.exec(part);
    if (m) {
      let k = m[1];
      let v = m[2];
      if (res[k] !== undefined) die(`duplicate key in comma-separated list property: ${k}`);
      let schema = fmt[k];
      if (schema && schema.alias) {
        if (schema.keyAlias) {
          if (res[schema.keyAlias] !== undefined) die(`key alias '${schema.keyAlias}' is already defined`);
          res[schema.keyAlias] = k;
        }
        k = schema.alias;
        schema = fmt[k];
      }
      if (!schema) die(`invalid key in comma-separated list property: ${k}`);
      if (schema.type === 'boolean') { const b = parseBoolean(v); if (b !== undefined) v = String(b); }
      res[k] = v;
    } else if (!part.includes('=')) {
      if (defaultKey) die(`duplicate key in comma-separated list property: ${defaultKey}`);
      for (const key of Object.keys(fmt)) {
        if (fmt[key].default_key) {
          defaultKey = key;
          if (!res[key]) { res[key] = part; break; }
          die(`duplicate key in comma-separated list property: ${key}`);
        }
      }
      if (!defaultKey) die('value without key, but schema does not define a default key');
    } else {
      die('missing key in comma-separated list property');
    }
  }
  return res;
}

/** print_property_string: the default key's value first, then key=value sorted. */
function printPropertyString(fmt, obj, skip = []) {
  const parts = [];
  let dk;
  for (const [k, sd] of Object.entries(fmt)) if (sd.default_key) dk = k;
  if (dk && obj[dk] !== undefined && obj[dk] !== null) parts.push(String(obj[dk]));
  for (const k of Object.keys(obj).sort()) {
    if (k === dk || skip.includes(k) || obj[k] === undefined || obj[k] === null) continue;
    parts.push(`${k}=${obj[k]}`);
  }
  return parts.join(',');
}

/** Checks one named format (with -list / -opt suffixes); dies with PVE's message. */
function checkNamedFormat(name, value, ctx) {
  const m = /^(.*?)(?:-(list|opt))?$/.exec(name);
  const base = m[1];
  const kind = m[2];
  const fn = NAMED[name] || NAMED[base];
  if (!fn) return; // a format the fake does not know: accepted, like a missing checker
  if (NAMED[name]) { fn(value, ctx); return; }
  if (kind === 'list') for (const it of splitList(value)) fn(it, ctx);
  else if (kind === 'opt') { if (value) fn(value, ctx); } else fn(value, ctx);
}

/** "32G" / "4M" / "+2G" -> bytes (sizes without unit are GiB for disk sizes given in GiB). */
function parseSize(v, defaultUnit = '') {
  const m = /^\+?(\d+(?:\.\d+)?)([KMGT])?$/.exec(String(v));
  if (!m) return null;
  const mult = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[m[2] || defaultUnit];
  return Math.round(Number(m[1]) * mult);
}

/** PVE::JSONSchema::format_size-like: "32G", "4M", "512K" or bytes. */
function formatSize(bytes) {
  for (const [u, f] of [['T', 1024 ** 4], ['G', 1024 ** 3], ['M', 1024 ** 2], ['K', 1024]]) {
    if (bytes >= f && bytes % f === 0) return `${bytes / f}${u}`;
  }
  return String(bytes);
}

module.exports = {
  NAMED, RE, FormatError, splitList, parseBoolean, parsePropertyStringRaw, printPropertyString,
  checkNamedFormat, stringifyError, parseSize, formatSize, isCidr, isIp, versionAtLeast, die,
};
