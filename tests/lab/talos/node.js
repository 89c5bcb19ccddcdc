// One simulated Talos node per Proxmox-fake VM.  Its "disk" (installed or
// not, applied config, version, etcd data) outlives power cycles; its
// runtime state follows the boot sequence:
//
//   off -> booting -> maintenance --ApplyConfiguration--> installing -> rebooting -> booting -> running
//                                  (from a disk image: no install, straight on)
//   running --Reboot--> rebooting -> booting -> running
//   running --Upgrade--> upgrading -> rebooting -> booting -> running (new version)
//   running --Reset--> resetting -> rebooting -> booting -> maintenance | off
//
// Port 50000 listens only in `maintenance` (TLS, self-signed) and while the
// authenticated API is up (running/booting-after-apid/upgrading/resetting:
// mTLS against the machine CA).  Durations come from the `talos` profile.
'use strict';
const crypto = require('crypto');
const net = require('net');
const { makeCert, loadKey } = require('./x509');
const C = require('./config');
const E = require('./etcd');

const GiB = 1024 ** 3;

function sizeBytes(s) {
  const m = /^(\d+(?:\.\d+)?)([KMGT]?)$/.exec(String(s || ''));
  if (!m) return 0;
  return Math.round(Number(m[1]) * { '': 1, K: 1024, M: 1024 ** 2, G: GiB, T: 1024 ** 4 }[m[2]]);
}

function parseDrive(v) {
  const parts = String(v).split(',');
  const o = { file: parts[0] };
  for (const p of parts.slice(1)) { const i = p.indexOf('='); if (i > 0) o[p.slice(0, i)] = p.slice(i + 1); }
  return o;
}

/** "v1.12.0" >= 1.12 ? */
function atLeast(version, minor) {
  const m = /^v?(\d+)\.(\d+)/.exec(String(version || ''));
  return !!m && (Number(m[1]) > 1 || Number(m[2]) >= minor);
}

/** The machine-status `stage` of each runtime state. */
const STAGE = {
  off: 'shutting down', booting: 'booting', maintenance: 'maintenance', installing: 'installing',
  rebooting: 'rebooting', running: 'running', upgrading: 'upgrading', resetting: 'resetting', 'shutting down': 'shutting down',
};

class TalosNode {
  constructor(svc, ev) {
    this.svc = svc;
    this.lab = svc.lab;
    this.vmid = ev.vmid;
    this.disk = { installed: false, version: null, image: null, cfg: null, facts: null, etcd: null, staged: null };
    this.state = 'off';
    this.timers = new Set();
    this.server = null;
    this.error = null;
    this.timeSynced = true;
    this.bootCount = 0;
    this.resources = new Map(); // "ns/type/id" -> {metadata, yaml}
    this.update(ev);
  }

  get key() { return String(this.vmid); }

  update(ev) {
    this.pveNode = ev.node;
    this.name = ev.name;
    this.nics = ev.nics || [];
    this.vmConfig = ev.config || {};
    const uuid = (ev.smbios1 && ev.smbios1.uuid) || `vm-${ev.vmid}`;
    this.uuid = uuid;
    const h = crypto.createHash('sha256').update(uuid).digest();
    const a = '0123456789abcdefghijklmnopqrstuvwxyz';
    const pick = (i) => a[h[i] % 36];
    this.stableHostname = `talos-${pick(0)}${pick(1)}${pick(2)}-${pick(3)}${pick(4)}${pick(5)}`;
  }

  ms(key) { return this.lab.ms('talos', key); }

  later(ms, fn) {
    const t = setTimeout(() => { this.timers.delete(t); this.guard(fn()); }, ms);
    this.timers.add(t);
    return t;
  }

  /** Keeps a failing async step from taking the lab down: the node records the error. */
  guard(p) {
    if (p && typeof p.catch === 'function') {
      p.catch((err) => { this.error = err.message; this.svc.log(this, `error: ${err.stack || err.message}`); });
    }
    return p;
  }

  /** An event on the lab bus (GET /events), for other fakes (e.g. Kubernetes) and tests. */
  emit(type, extra = {}) {
    const f = this.disk.facts;
    this.lab.emit(type, {
      service: 'talos', vmid: this.vmid, name: this.name, hostname: this.hostname(), addresses: this.addresses(),
      machine_type: f ? f.type : null, cluster_id: f ? f.clusterId : null, cluster_name: f ? f.clusterName : null,
      endpoint: f ? f.endpoint : null, version: this.version(), ...extra,
    });
  }

  cancelTimers() { for (const t of this.timers) clearTimeout(t); this.timers.clear(); }

  // ---------------------------------------------------------------- facts
  /** Boot media from the VM: {kind: 'iso'|'disk'|null, version, schematic, platform}. */
  media() {
    const m = this.svc.media.get(this.key) || {};
    if (m.kind === 'disk') return m;
    for (const [k, v] of Object.entries(this.vmConfig)) {
      if (!/^(ide|sata|scsi|virtio)\d+$/.test(k)) continue;
      const d = parseDrive(v);
      if (d.media !== 'cdrom' || /cloudinit/.test(d.file) || d.file === 'none') continue;
      const info = this.svc.volumeInfo(this.pveNode, d.file);
      if (info) return { kind: 'iso', ...info };
    }
    return { kind: null, version: null, schematic: null, platform: 'nocloud' };
  }

  /** Block devices as the guest sees them: scsi/sata/ide -> sdX, virtio -> vdX, cdroms -> srN. */
  blockDevices() {
    const keys = Object.keys(this.vmConfig).filter((k) => /^(ide|sata|scsi|virtio)\d+$/.test(k));
    const order = (k) => ({ scsi: 0, sata: 1, ide: 2, virtio: 3 }[k.replace(/\d+$/, '')] * 100 + Number(k.replace(/^\D+/, '')));
    keys.sort((x, y) => order(x) - order(y));
    const out = [];
    let sd = 0; let vd = 0; let sr = 0;
    for (const k of keys) {
      const d = parseDrive(this.vmConfig[k]);
      if (d.file === 'none') continue;
      if (d.media === 'cdrom') {
        const info = /cloudinit/.test(d.file) ? { size: 4 * 1024 * 1024 } : (this.svc.volumeInfo(this.pveNode, d.file) || {});
        out.push({ key: k, dev: `/dev/sr${sr++}`, size: info.size || 0, cd: true, model: 'QEMU DVD-ROM' });
        continue;
      }
      const virtio = k.startsWith('virtio');
      const dev = virtio ? `/dev/vd${String.fromCharCode(97 + vd++)}` : `/dev/sd${String.fromCharCode(97 + sd++)}`;
      out.push({ key: k, dev, size: sizeBytes(d.size), cd: false, ssd: d.ssd === '1', model: virtio ? '' : 'QEMU HARDDISK', serial: d.serial || (virtio ? '' : `drive-${k}`) });
    }
    return out;
  }

  diskNames() { return this.blockDevices().filter((d) => !d.cd).map((d) => d.dev); }

  /** The node's addresses: configured static ones (machine.network / LinkConfig) or the VM's cloud-init/DHCP ones. */
  addresses() {
    const nicIps = this.nics.map((n) => n.ipv4).filter(Boolean);
    const f = this.disk.cfg && this.state !== 'maintenance' ? this.disk.facts : null;
    if (!f) return nicIps;
    const out = [];
    this.nics.forEach((nic, i) => {
      const mine = f.interfaces.find((x) => x.macs.includes(String(nic.mac).toLowerCase()) ||
        x.name === nic.name || x.name === `eth${i}`);
      if (mine && mine.addresses.length) out.push(...mine.addresses);
      else if (nic.ipv4) out.push(nic.ipv4);
    });
    return [...new Set(out)];
  }

  ip() { return this.addresses()[0] || null; }

  hostname() {
    const f = this.disk.facts;
    if (f && f.hostname && this.state !== 'maintenance') return f.hostname;
    return this.stableHostname;
  }

  version() {
    return this.disk.installed ? this.disk.version : (this.media().version || this.svc.defaultVersion);
  }

  platform() { return this.media().platform || 'nocloud'; }

  isSecure() { return !!(this.server && this.server.mode === 'secure'); }

  isControlPlane() { return !!(this.disk.facts && this.disk.facts.controlPlane); }

  cluster() { return this.disk.facts ? this.svc.cluster(this.disk.facts.clusterId) : null; }

  // ---------------------------------------------------------------- power
  powerOn() {
    this.cancelTimers();
    this.bootCount++;
    this.setState('booting');
    this.later(this.ms('boot'), () => this.comeUp());
  }

  powerOff(how) {
    this.cancelTimers();
    this.waitingTrustd = false;
    this.stopServer();
    this.etcdState = null;
    this.kubeletRunning = false;
    const was = this.state;
    this.setState('off');
    this.offHow = how;
    if (was !== 'off') this.emit('talos.down', { how });
  }

  setState(s) {
    this.state = s;
    this.stateSince = Date.now();
    this.refreshResources();
  }

  async comeUp() {
    if (this.disk.staged) { // a staged upgrade applies on this boot
      this.disk.version = C.imageVersion(this.disk.staged) || this.disk.version;
      this.disk.image = this.disk.staged;
      this.disk.staged = null;
    }
    if (this.disk.cfg) return this.startSecure();
    if (!this.disk.installed && this.media().kind === 'disk') {
      this.disk.installed = true; // a nocloud/metal disk image is an installed Talos
      this.disk.version = this.media().version || this.svc.defaultVersion;
    }
    const userData = this.svc.userData(this);
    if (userData) {
      try {
        const cfg = C.parse(userData);
        C.validate(cfg, { mode: 'cloud', disks: this.diskNames() });
        this.svc.log(this, `nocloud user-data config applied (${cfg.v1.machine.type})`);
        return this.install(cfg);
      } catch (err) {
        this.svc.log(this, `nocloud user-data ignored: ${err.message.split('\n')[0]}`);
      }
    }
    return this.startMaintenance();
  }

  async startMaintenance() {
    this.setState('maintenance');
    const key = crypto.generateKeyPairSync('ed25519');
    const now = new Date();
    const ips = this.addresses();
    const cert = makeCert({
      subject: [['CN', 'maintenance-service']], publicKey: key.publicKey, signKey: key.privateKey,
      notBefore: new Date(now.getTime() - 60000), notAfter: new Date(now.getTime() + 365 * 86400000),
      keyUsage: ['digitalSignature'], extKeyUsage: ['serverAuth'], ips: ips.filter((a) => net.isIP(a)),
    });
    this.maintenance = { cert, key: key.privateKey.export({ type: 'pkcs8', format: 'pem' }),
      fingerprint: crypto.createHash('sha256').update(key.publicKey.export({ type: 'spki', format: 'der' })).digest('base64') };
    await this.listen('maintenance', { cert, key: this.maintenance.key });
    if (this.server) this.emit('talos.maintenance');
  }

  async startSecure() {
    if (this.disk.stagedCfg) { // ApplyConfiguration --mode=staged: applied on this boot
      this.disk.cfg = this.disk.stagedCfg;
      this.disk.facts = C.facts(this.disk.stagedCfg);
      this.disk.stagedCfg = null;
    }
    const f = this.disk.facts;
    this.setState('booting');
    this.upEmitted = false;
    this.apidAt = Date.now();
    this.deadlines = {
      services: this.apidAt + this.ms('services'),
      etcdReady: this.apidAt + this.ms('etcd_ready'),
      join: this.apidAt + this.ms('etcd_join'),
      kubelet: f.controlPlane ? null : this.apidAt + this.ms('kubelet'),
    };
    this.etcdState = f.controlPlane ? E.bootState(this) : null;
    this.kubeletRunning = false;
    await this.openApi();
  }

  /** (Re)starts apid: a server certificate from the machine CA, then mTLS on every address. */
  async openApi() {
    const f = this.disk.facts;
    const now = new Date();
    let signer = f.machineCA.key ? loadKey(f.machineCA.key) : null;
    // a worker has no CA key: trustd on a control plane signs its apid certificate; the lab
    // signs it with the key of a control plane of the same cluster that it knows
    if (!signer) signer = this.svc.signerFor(f.machineCA.crt);
    if (!signer) {
      this.stopServer();
      this.waitingTrustd = true;
      this.error = 'waiting for trustd: no control plane with this machine CA to sign the apid certificate';
      return;
    }
    this.waitingTrustd = false;
    const ips = this.addresses();
    const sans = [...ips, ...f.certSANs];
    const key = signer.asymmetricKeyType === 'ed25519' ? crypto.generateKeyPairSync('ed25519')
      : crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const cert = makeCert({
      subject: [['CN', this.hostname()]], publicKey: key.publicKey, signKey: signer, issuerCert: f.machineCA.crt,
      notBefore: new Date(now.getTime() - 60000), notAfter: new Date(now.getTime() + 365 * 86400000),
      keyUsage: ['digitalSignature'], extKeyUsage: ['serverAuth'],
      ips: [...new Set(sans.filter((s) => net.isIP(s)))],
      dns: [...new Set([this.hostname(), ...sans.filter((s) => !net.isIP(s))])],
    });
    this.apidCert = cert;
    const ca = [f.machineCA.crt, ...f.acceptedCAs].filter(Boolean);
    await this.listen('secure', {
      cert, key: key.privateKey.export({ type: 'pkcs8', format: 'pem' }), ca,
      checkEku: f.checkEku || atLeast(this.version(), 12),
    });
    if (this.server && !this.upEmitted) { this.upEmitted = true; this.emit('talos.up'); }
  }

  /** After a config change that touches the certificate or addresses (no reboot). */
  restartApi() { if (this.isSecure()) this.guard(this.openApi()); }

  async listen(mode, tls) {
    this.stopServer();
    this.error = null;
    try {
      this.server = await this.svc.serve(this, mode, tls, this.addresses());
    } catch (err) {
      this.error = `cannot listen on ${this.addresses().join(', ')}:50000: ${err.message}`;
      this.svc.log(this, this.error);
      this.server = null;
    }
    this.refreshResources();
  }

  stopServer() {
    if (this.server) { this.server.close(); this.server = null; }
    this.svc.dropWatchers(this);
  }

  // ---------------------------------------------------------------- lifecycle calls
  /** ApplyConfiguration in maintenance (not a dry run): the reply goes first, then install. */
  applyInMaintenance(cfg) {
    this.later(20, () => this.install(cfg));
  }

  install(cfg) {
    const facts = C.facts(cfg);
    this.stopServer();
    if (!this.disk.installed && this.disk.etcd) E.dataGone(this); // the install writes the whole disk
    this.disk.cfg = cfg;
    this.disk.facts = facts;
    if (this.disk.installed) { // booted from an installed disk: the boot sequence just goes on
      if (!this.disk.version) this.disk.version = this.media().version || this.svc.defaultVersion;
      this.guard(this.startSecure());
      return;
    }
    this.setState('installing');
    this.emit('talos.installing');
    this.later(this.ms('install'), () => {
      this.disk.installed = true;
      this.disk.image = facts.installImage;
      this.disk.version = C.imageVersion(facts.installImage) || this.media().version || this.svc.defaultVersion;
      this.reboot();
    });
  }

  /** A reboot from inside the guest (Proxmox keeps the VM running). */
  reboot() {
    this.cancelTimers();
    this.waitingTrustd = false;
    this.stopServer();
    this.kubeletRunning = false;
    this.setState('rebooting');
    this.emit('talos.down', { how: 'reboot' });
    this.later(this.ms('reboot'), () => {
      this.bootCount++;
      this.setState('booting');
      this.later(this.ms('boot'), () => this.comeUp());
    });
  }

  upgrade(image, stage) {
    if (stage) { this.disk.staged = image; return; }
    this.setState('upgrading');
    this.later(this.ms('upgrade'), () => {
      this.disk.image = image;
      this.disk.version = C.imageVersion(image) || this.disk.version;
      this.reboot();
    });
  }

  /** Reset: a graceful one cordons and drains the node and leaves etcd first (a failure there ends it). */
  reset({ graceful, reboot, labels }) {
    this.setState('resetting');
    if (graceful) this.svc.kube.drain(this);
    this.later(this.ms('reset'), () => {
      if (graceful && E.memberOf(this)) {
        try {
          E.leave(this);
        } catch (err) {
          this.svc.log(this, `reset failed: ${err.message}`);
          this.setState('running');
          return;
        }
      }
      this.kubeletRunning = false;
      const all = !labels.length;
      if (all || labels.includes('EPHEMERAL')) E.dataGone(this);
      if (all || labels.includes('STATE')) { this.disk.cfg = null; this.disk.facts = null; }
      if (all) { this.disk.installed = false; this.disk.version = null; this.disk.image = null; }
      if (reboot) { this.reboot(); return; }
      this.cancelTimers();
      this.stopServer();
      this.setState('shutting down');
      this.later(this.ms('shutdown'), () => this.svc.powerOffVm(this));
    });
  }

  // ---------------------------------------------------------------- etcd, kubelet, services
  /** Advances etcd/kubelet/boot progress by the clock; called by the service's ticker. */
  tick() {
    if (this.waitingTrustd && this.disk.facts && this.svc.signerFor(this.disk.facts.machineCA.crt)) {
      this.waitingTrustd = false;
      this.guard(this.openApi());
    }
    if (this.isSecure()) {
      const now = Date.now();
      if (this.state === 'booting' && now >= this.deadlines.services) this.setState('running');
      E.advance(this, now);
      if (!this.kubeletRunning && this.deadlines.kubelet && now >= this.deadlines.kubelet && this.state !== 'resetting') {
        this.kubeletRunning = true;
        this.emit('talos.kubelet.ready');
      }
    }
    this.svc.kube.sync(this);
    this.refreshResources();
  }

  services() {
    const secure = this.isSecure();
    const t = (ms) => ({ seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 });
    const since = this.apidAt || Date.now();
    const svc = (id, state, healthy, msg, at = since, unknown = false) => ({
      id, state,
      events: { events: [{ msg: 'Starting service', state: 'Starting', ts: t(since) }, ...(state === 'Starting' ? [] : [{ msg, state, ts: t(at) }])] },
      health: unknown ? { unknown: true } : { healthy, last_message: healthy ? '' : msg, last_change: t(at) },
    });
    if (!secure) return [];
    const list = [
      svc('apid', 'Running', true, 'Health check successful'),
      svc('auditd', 'Running', false, 'Process Process(["/sbin/auditd"]) started with PID 1234', since, true),
      svc('containerd', 'Running', true, 'Health check successful'),
      svc('cri', 'Running', true, 'Health check successful'),
      svc('dashboard', 'Running', false, 'Process Process(["/sbin/dashboard"]) started with PID 2345', since, true),
      svc('machined', 'Running', true, 'Health check successful'),
      svc('syslogd', 'Running', false, 'Process Process(["/sbin/syslogd"]) started with PID 1236', since, true),
      svc('udevd', 'Running', true, 'Health check successful'),
    ];
    if (this.isControlPlane()) {
      list.push(E.service(this, svc, since));
      list.push(svc('trustd', 'Running', true, 'Health check successful'));
    }
    if (this.kubeletRunning) list.push(svc('kubelet', 'Running', true, 'Health check successful', this.deadlines.kubelet));
    else list.push(svc('kubelet', 'Waiting', false, this.isControlPlane() ? 'Waiting for service "etcd" to be "up"' : 'Waiting for service "cri" to be "up"'));
    return list.sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  machineStatus() {
    const stage = STAGE[this.state] || this.state;
    const unmet = [];
    if (this.isSecure()) {
      for (const s of this.services()) {
        if (s.health && !s.health.unknown && !s.health.healthy) unmet.push({ name: 'serviceReady', reason: `service "${s.id}" not healthy` });
      }
    } else if (this.state === 'maintenance') unmet.push({ name: 'config', reason: 'machine configuration is missing' });
    const ready = this.isSecure() && this.state === 'running' && !unmet.length;
    return { stage, ready, unmet };
  }

  // ---------------------------------------------------------------- COSI resources
  desiredResources() {
    const out = [];
    if (!this.server) return out;
    const ms = this.machineStatus();
    out.push({ ns: 'runtime', type: 'MachineStatuses.runtime.talos.dev', id: 'machine', owner: 'runtime.MachineStatusController',
      yaml: `stage: ${ms.stage}\nstatus:\n    ready: ${ms.ready}\n    unmetConditions:${ms.unmet.length ? '\n' + ms.unmet.map((u) => `        - name: ${u.name}\n          reason: '${u.reason.replace(/'/g, "''")}'`).join('\n') : ' []'}\n` });
    for (const d of this.blockDevices()) {
      const name = d.dev.replace('/dev/', '');
      out.push({ ns: 'runtime', type: 'Disks.block.talos.dev', id: name, owner: 'block.DisksController',
        yaml: `dev_path: ${d.dev}\nsize: ${d.size}\nhuman_size: ${(d.size / 1e9).toFixed(1)} GB\nio_size: 512\nsector_size: 512\nreadonly: ${d.cd}\ncdrom: ${d.cd}\nmodel: ${d.model || '""'}\nserial: ${d.serial || '""'}\ntransport: ${d.dev.startsWith('/dev/vd') ? 'virtio' : 'scsi'}\nrotational: ${!d.ssd && !d.cd}\n` });
    }
    if (this.isSecure()) {
      const f = this.disk.facts;
      const sys = this.blockDevices().find((d) => d.dev === f.installDisk) || { size: 0, dev: f.installDisk };
      const eph = Math.max(0, sys.size - Math.round(5.1 * GiB));
      out.push({ ns: 'runtime', type: 'VolumeStatuses.block.talos.dev', id: 'EPHEMERAL', owner: 'block.VolumeManagerController',
        yaml: `type: partition\nphase: ready\nlocation: ${sys.dev}6\npartitionIndex: 6\nsize: ${eph}\nprettySize: ${(eph / GiB).toFixed(1)} GiB\nfilesystem: xfs\nmountLocation: /var\n` });
      if (this.isControlPlane() && this.kubeletRunning) {
        for (const c of ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler']) {
          out.push({ ns: 'k8s', type: 'StaticPodStatuses.kubernetes.talos.dev', id: `kube-system/${c}-${this.hostname()}`, owner: 'k8s.StaticPodStatusController',
            yaml: `podStatus:\n    phase: Running\n    conditions:\n        - type: Ready\n          status: "True"\n` });
        }
      }
    }
    return out;
  }

  refreshResources() {
    const want = this.desiredResources();
    const seen = new Set();
    const now = Date.now();
    for (const r of want) {
      const k = `${r.ns}/${r.type}/${r.id}`;
      seen.add(k);
      const cur = this.resources.get(k);
      if (!cur) {
        const res = { metadata: { namespace: r.ns, type: r.type, id: r.id, version: 1, owner: r.owner, phase: 'running', created: now, updated: now }, yaml: r.yaml };
        this.resources.set(k, res);
        this.svc.resourceEvent(this, 'CREATED', res, null);
      } else if (cur.yaml !== r.yaml) {
        const old = { metadata: { ...cur.metadata }, yaml: cur.yaml };
        cur.yaml = r.yaml;
        cur.metadata.version++;
        cur.metadata.updated = now;
        this.svc.resourceEvent(this, 'UPDATED', cur, old);
      }
    }
    for (const [k, cur] of this.resources) {
      if (!seen.has(k)) { this.resources.delete(k); this.svc.resourceEvent(this, 'DESTROYED', cur, null); }
    }
  }

  view() {
    const f = this.disk.facts;
    const cl = this.cluster();
    const me = E.memberOf(this);
    return {
      vmid: this.vmid, pve_node: this.pveNode, name: this.name, state: this.state, stage: this.machineStatus().stage,
      ready: this.machineStatus().ready, listening: !!this.server, api: this.server ? this.server.mode : null,
      addresses: this.addresses(), hostname: this.hostname(), version: this.version(), platform: this.platform(),
      media: this.media(), error: this.error, time_synced: this.timeSynced, boots: this.bootCount,
      installed: this.disk.installed, configured: !!this.disk.cfg, type: f ? f.type : null,
      cluster: f ? { id: f.clusterId, name: f.clusterName, endpoint: f.endpoint, bootstrapped: !!(cl && cl.bootstrapped) } : null,
      etcd: this.etcdState ? { state: this.etcdState.state, member: me ? { id: me.id, learner: me.learner } : null } : null,
      kubelet: this.kubeletRunning, staged_upgrade: this.disk.staged,
      disks: this.blockDevices().map((d) => ({ dev: d.dev, size: d.size, cd: d.cd, drive: d.key })),
      maintenance_fingerprint: this.state === 'maintenance' && this.maintenance ? this.maintenance.fingerprint : null,
      services: this.services().map((s) => ({ id: s.id, state: s.state, healthy: !!(s.health && s.health.healthy) })),
    };
  }
}

module.exports = { TalosNode, parseDrive, sizeBytes, atLeast };
