// Machine configuration as the Talos fake reads it: multi-document YAML
// (the v1alpha1 document plus 1.12+ documents such as HostnameConfig,
// LinkConfig, Layer2VIPConfig), decoded strictly at the levels tlr writes
// (top level, machine, cluster, install), then validated with Talos's rules
// and messages (pkg/machinery/config/types/v1alpha1/v1alpha1_validation.go,
// reference/talos.md §2): parse errors -> ParseError ("failed to parse
// config: ..."), validation errors -> ValidationError (go-multierror text).
'use strict';
const crypto = require('crypto');
const YAML = require('yaml');
const { loadKey } = require('./x509');

class ParseError extends Error {}
class ValidationError extends Error {}

const KEYS = {
  config: ['version', 'debug', 'persist', 'machine', 'cluster'],
  machine: ['type', 'token', 'ca', 'acceptedCAs', 'certSANs', 'controlPlane', 'kubelet', 'pods', 'network', 'disks',
    'install', 'files', 'env', 'time', 'sysctls', 'sysfs', 'registries', 'systemDiskEncryption', 'features', 'udev',
    'logging', 'kernel', 'seccompProfiles', 'baseRuntimeSpecOverrides', 'nodeLabels', 'nodeAnnotations', 'nodeTaints'],
  cluster: ['id', 'secret', 'controlPlane', 'clusterName', 'network', 'token', 'aescbcEncryptionSecret',
    'secretboxEncryptionSecret', 'ca', 'acceptedCAs', 'aggregatorCA', 'serviceAccount', 'apiServer', 'controllerManager',
    'proxy', 'scheduler', 'discovery', 'etcd', 'coreDNS', 'externalCloudProvider', 'extraManifests',
    'extraManifestHeaders', 'inlineManifests', 'adminKubeconfig', 'allowSchedulingOnControlPlanes'],
  install: ['disk', 'diskSelector', 'extraKernelArgs', 'image', 'extensions', 'wipe', 'legacyBIOSSupport',
    'grubUseUKICmdline'],
};

// document kinds besides v1alpha1 (1.11 schema + the 1.12/1.13 network and hostname documents)
const KINDS = new Set(['EthernetConfig', 'EventSinkConfig', 'ExistingVolumeConfig', 'ExtensionServiceConfig',
  'KmsgLogConfig', 'KubeSpanEndpoints', 'NetworkDefaultActionConfig', 'NetworkRuleConfig', 'PCIDriverRebindConfig',
  'RawVolumeConfig', 'SideroLinkConfig', 'SwapVolumeConfig', 'TrustedRootsConfig', 'UserVolumeConfig', 'VolumeConfig',
  'WatchdogTimerConfig', 'ZswapConfig', 'HostnameConfig', 'Layer2VIPConfig', 'LinkConfig', 'LinkAliasConfig',
  'BondConfig', 'BridgeConfig', 'VLANConfig', 'DummyLinkConfig', 'DHCPv4Config', 'DHCPv6Config', 'ResolverConfig',
  'StaticHostConfig', 'TimeSyncConfig', 'RegistryMirrorConfig', 'RegistryAuthConfig', 'RegistryTLSConfig',
  'ImageCacheConfig', 'HCloudVIPConfig', 'KubeletConfig', 'OOMConfig', 'UdevRuleConfig']);

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

function unknownKeys(obj, allowed, path) {
  if (!isObj(obj)) return [];
  return Object.keys(obj).filter((k) => !allowed.includes(k)).map((k) => `${path}${k}`);
}

/** Parses the config bytes into {v1, docs, raw}; throws ParseError. */
function parse(bytes) {
  const text = Buffer.isBuffer(bytes) ? bytes.toString('utf8') : String(bytes || '');
  let docs;
  try {
    docs = YAML.parseAllDocuments(text, { uniqueKeys: true, prettyErrors: false });
  } catch (err) { throw new ParseError(err.message); }
  if (!Array.isArray(docs)) docs = [docs];
  const out = { v1: null, docs: [], raw: text };
  for (const d of docs) {
    if (d.errors.length) {
      const e = d.errors[0];
      const line = e.linePos && e.linePos[0] ? e.linePos[0].line : '?';
      throw new ParseError(`yaml: line ${line}: ${e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')}`);
    }
    const v = d.toJS();
    if (v === null || v === undefined) continue;
    if (!isObj(v)) throw new ParseError(`yaml: unmarshal errors:\n  cannot unmarshal ${Array.isArray(v) ? '!!seq' : '!!str'} into a config document`);
    if (v.kind !== undefined || v.apiVersion !== undefined) {
      if (v.apiVersion !== 'v1alpha1') throw new ParseError(`error decoding document ${v.apiVersion}/${v.kind}: unsupported apiVersion "${v.apiVersion}"`);
      if (!KINDS.has(v.kind)) throw new ParseError(`error decoding document /v1alpha1/${v.kind}: unknown document kind "${v.kind}"`);
      out.docs.push(v);
      continue;
    }
    if (v.version === undefined) throw new ParseError('error decoding document: missing kind');
    if (v.version !== 'v1alpha1') throw new ParseError(`unknown config version "${v.version}"`);
    if (out.v1) throw new ParseError('duplicate v1alpha1 document');
    const bad = [...unknownKeys(v, KEYS.config, ''), ...unknownKeys(v.machine, KEYS.machine, 'machine.'),
      ...unknownKeys(v.cluster, KEYS.cluster, 'cluster.'),
      ...unknownKeys(v.machine && v.machine.install, KEYS.install, 'machine.install.')];
    if (bad.length) throw new ParseError(`unknown keys found during decoding:\n${bad.map((k) => `    ${k}`).join('\n')}`);
    out.v1 = v;
    out.docs.push(v);
  }
  if (!out.docs.length) throw new ParseError('config is empty');
  return out;
}

const b64pem = (s) => { try { return Buffer.from(String(s), 'base64').toString('utf8'); } catch (_) { return ''; } };

function certOk(b64) {
  try { new crypto.X509Certificate(b64pem(b64)); return true; } catch (_) { return false; }
}
function keyOk(b64) {
  try { loadKey(b64pem(b64)); return true; } catch (_) { return false; }
}

/**
 * Validates a parsed config for a node: {warnings} or throws
 * ValidationError.  `node` gives the runtime facts: {mode ('cloud'|'metal'),
 * disks: ['/dev/sda', ...]}.
 */
function validate(cfg, node = {}) {
  const errs = [];
  const warnings = [];
  const c = cfg.v1;
  if (!c || !isObj(c.machine)) {
    throw new ValidationError(fmtMulti(['machine instructions are required']));
  }
  const m = c.machine;
  const cl = c.cluster;
  const type = m.type;
  const isCP = type === 'controlplane' || type === 'init';
  // cluster
  if (!isObj(cl)) errs.push('cluster instructions are required');
  else if (!isObj(cl.controlPlane) || !cl.controlPlane.endpoint) errs.push('cluster controlplane endpoint is required');
  else {
    const ep = String(cl.controlPlane.endpoint);
    let u = null;
    try { u = new URL(ep); } catch (_) { /* below */ }
    if (!u || !/^https?:$/.test(u.protocol) || !u.hostname) errs.push(`invalid controlplane endpoint: invalid endpoint URI "${ep}"`);
    if (isObj(cl.network) && cl.network.dnsDomain && !/^([a-zA-Z0-9_][a-zA-Z0-9_-]{0,62})(\.[a-zA-Z0-9_][a-zA-Z0-9_-]{0,62})*[._]?$/.test(cl.network.dnsDomain)) {
      errs.push(`"${cl.network.dnsDomain}" is not a valid DNS name`);
    }
    if (isCP && cl.etcd === null) errs.push('etcd config is required on control plane machines');
    if (!isCP && isObj(cl.etcd)) errs.push('etcd config is only allowed on control plane machines');
    if (!isCP && isObj(cl.ca) && cl.ca.key) errs.push('cluster CA key is not allowed on non-controlplane nodes (.cluster.ca)');
    if (!isObj(cl.ca) || !cl.ca.crt) errs.push('cluster CA is required (.cluster.ca.crt)');
    else if (!certOk(cl.ca.crt)) errs.push('cluster CA certificate is invalid (.cluster.ca.crt)');
    if (isCP && isObj(cl.ca) && cl.ca.crt && !cl.ca.key) errs.push('cluster CA key is required on controlplane nodes (.cluster.ca.key)');
    if (isCP && isObj(cl.ca) && cl.ca.key && !keyOk(cl.ca.key)) errs.push('cluster CA key is invalid (.cluster.ca.key)');
    const disc = cl.discovery;
    if (isObj(disc) && disc.enabled && !(isObj(disc.registries) && isObj(disc.registries.service) && disc.registries.service.disabled)) {
      if (!cl.id) errs.push('cluster discovery service requires .cluster.id');
      if (!cl.secret) errs.push('cluster discovery service requires .cluster.secret');
    }
  }
  // install (metal and cloud/nocloud modes install to a disk)
  const inst = m.install;
  if (!isObj(inst)) errs.push(`install instructions are required in "${node.mode || 'metal'}" mode`);
  else if (!inst.disk && !inst.diskSelector) errs.push('either install disk or diskSelector should be defined');
  else if (inst.disk && node.disks && !node.disks.includes(inst.disk)) {
    errs.push(`install disk "${inst.disk}" not found (disks: ${node.disks.join(', ') || 'none'})`);
  }
  if (isObj(inst) && inst.extraKernelArgs && inst.extraKernelArgs.length && inst.grubUseUKICmdline) {
    errs.push("install.extraKernelArgs and install.grubUseUKICmdline can't be used together");
  }
  // type, CAs
  if (type === 'init') warnings.push('use "controlplane" instead of "init" for machine type');
  const ca = isObj(m.ca) ? m.ca : null;
  if (!ca && !(Array.isArray(m.acceptedCAs) && m.acceptedCAs.length)) {
    errs.push('issuing CA or some accepted CAs are required (.machine.ca, machine.acceptedCAs)');
  }
  if (isCP) {
    if (!ca) errs.push('issuing CA is required (.machine.ca)');
    else if (!ca.key) errs.push('issuing CA key is required for controlplane nodes (.machine.ca.key)');
  } else if (type === 'worker') {
    if (ca && ca.key) errs.push('issuing Talos API CA key is not allowed on non-controlplane nodes (.machine.ca)');
    if (ca && !ca.crt && !(Array.isArray(m.acceptedCAs) && m.acceptedCAs.length)) {
      errs.push('trusted CA certificates are required on non-controlplane nodes (.machine.ca.crt, .machine.acceptedCAs)');
    }
    if (isObj(cl) && isObj(cl.ca) && cl.ca.key) errs.push('issuing Kubernetes API CA key is not allowed on non-controlplane nodes (.cluster.ca)');
    if (vipOf(cfg)) errs.push('virtual (shared) IP is not allowed on non-controlplane nodes');
  } else {
    errs.push(`unknown machine type ${JSON.stringify(type === undefined ? '' : String(type))}`);
  }
  if (ca && ca.crt && !certOk(ca.crt)) errs.push('machine CA certificate is invalid (.machine.ca.crt)');
  if (ca && ca.key && !keyOk(ca.key)) errs.push('machine CA key is invalid (.machine.ca.key)');
  if (!m.token || !/^[a-z0-9]{6}\.[a-z0-9]{16}$/.test(String(m.token))) errs.push('trustd token is invalid (.machine.token)');
  if (m.certSANs !== undefined && m.certSANs !== null && !(Array.isArray(m.certSANs) && m.certSANs.every((s) => typeof s === 'string'))) {
    errs.push('machine.certSANs must be a list of strings');
  }
  if (c.persist === false) errs.push('.persist should be enabled');
  const feats = isObj(m.features) ? m.features : {};
  if (isObj(feats.hostDNS) && feats.hostDNS.forwardKubeDNSToHost && !feats.hostDNS.enabled) {
    errs.push('feature hostDNS.forwardKubeDNSToHost requires hostDNS.enabled to be true (.machine.features.hostDNS)');
  }
  if (errs.length) throw new ValidationError(fmtMulti(errs));
  return { warnings };
}

/** go-multierror's text. */
function fmtMulti(errs) {
  return `${errs.length} error${errs.length === 1 ? '' : 's'} occurred:\n${errs.map((e) => `\t* ${e}`).join('\n')}\n\n`;
}

// ------------------------------------------------------------------ derived facts
function interfacesOf(cfg) {
  const c = cfg.v1;
  const out = [];
  const ifs = c && isObj(c.machine) && isObj(c.machine.network) && Array.isArray(c.machine.network.interfaces)
    ? c.machine.network.interfaces : [];
  for (const i of ifs) {
    if (!isObj(i)) continue;
    const sel = Array.isArray(i.deviceSelector) ? i.deviceSelector : i.deviceSelector ? [i.deviceSelector] : [];
    out.push({
      name: i.interface || null,
      macs: sel.map((s) => (s && s.hardwareAddr ? String(s.hardwareAddr).toLowerCase() : null)).filter(Boolean),
      addresses: [...(i.addresses || []), ...(i.cidr ? [i.cidr] : [])].map((a) => String(a).split('/')[0]),
      dhcp: !!i.dhcp,
      vip: isObj(i.vip) && i.vip.ip ? String(i.vip.ip) : null,
    });
  }
  for (const d of cfg.docs) {
    if (d.kind === 'LinkConfig') {
      out.push({ name: d.name || null, macs: [], dhcp: false, vip: null,
        addresses: (d.addresses || []).map((a) => String(isObj(a) ? a.address : a).split('/')[0]) });
    }
  }
  return out;
}

function vipOf(cfg) {
  for (const i of interfacesOf(cfg)) if (i.vip) return i.vip;
  const d = cfg.docs.find((x) => x.kind === 'Layer2VIPConfig');
  return d ? String(d.name || '') || null : null;
}

/** Facts the fake needs from a valid config. */
function facts(cfg) {
  const c = cfg.v1;
  const m = c.machine;
  const cl = c.cluster;
  const features = isObj(m.features) ? m.features : {};
  let hostname = isObj(m.network) && m.network.hostname ? String(m.network.hostname) : null;
  const hdoc = cfg.docs.find((d) => d.kind === 'HostnameConfig');
  if (!hostname && hdoc && hdoc.hostname) hostname = String(hdoc.hostname);
  const image = isObj(m.install) && m.install.image ? String(m.install.image) : null;
  return {
    type: m.type === 'init' ? 'controlplane' : m.type,
    controlPlane: m.type === 'controlplane' || m.type === 'init',
    machineCA: { crt: b64pem(m.ca && m.ca.crt), key: m.ca && m.ca.key ? b64pem(m.ca.key) : null },
    acceptedCAs: (m.acceptedCAs || []).map((x) => b64pem(x && x.crt)).filter(Boolean),
    clusterCA: { crt: b64pem(cl.ca && cl.ca.crt), key: cl.ca && cl.ca.key ? b64pem(cl.ca.key) : null },
    certSANs: (m.certSANs || []).map(String),
    endpoint: String(cl.controlPlane.endpoint),
    clusterName: cl.clusterName ? String(cl.clusterName) : 'talos',
    clusterId: cl.id ? String(cl.id) : `${cl.clusterName || ''}@${cl.controlPlane.endpoint}`,
    checkEku: features.apidCheckExtKeyUsage === true,
    hostname,
    installDisk: isObj(m.install) ? m.install.disk || null : null,
    installImage: image,
    interfaces: interfacesOf(cfg),
    vip: vipOf(cfg),
    kubeconfigDays: isObj(cl.adminKubeconfig) && cl.adminKubeconfig.certLifetime ? durationDays(cl.adminKubeconfig.certLifetime) : 365,
  };
}

function durationDays(s) {
  const m = /^(\d+)h/.exec(String(s));
  return m ? Math.max(1, Math.round(Number(m[1]) / 24)) : 365;
}

/** The version an installer image reference names ("…/installer/<id>:v1.11.6" -> v1.11.6), or null. */
function imageVersion(image) {
  const m = /:([^:/@]+)(@sha256:[0-9a-f]+)?$/.exec(String(image || ''));
  return m ? m[1] : null;
}

module.exports = { parse, validate, facts, imageVersion, ParseError, ValidationError, fmtMulti };
