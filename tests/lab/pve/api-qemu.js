// /nodes/{node}/qemu: list, create, config (GET, async POST, sync PUT),
// clone, resize, template, delete, pending, cloudinit dump.
'use strict';
const crypto = require('crypto');
const { Cluster, die, paramExc, ApiError } = require('./state');
const D = require('./drives');
const F = require('./formats');
const V = require('./views');
const { bootVm } = require('./api-vmstatus');

const NOT_CONFIG = new Set(['node', 'vmid', 'digest', 'delete', 'revert', 'skiplock', 'force', 'background_delay',
  'start', 'pool', 'archive', 'storage', 'unique', 'bwlimit', 'live-restore', 'import-working-storage']);

const syncTask = { log() {}, warn() {}, sleep: (ms) => new Promise((r) => setTimeout(r, ms)) };

function checkSkiplock(ctx) {
  if (ctx.params.skiplock && (ctx.auth.kind === 'token' || ctx.auth.userid !== 'root@pam')) {
    paramExc({ skiplock: 'Only root may use this option.' });
  }
}

function nextUnused(config) {
  for (let i = 0; ; i++) if (config[`unused${i}`] === undefined) return `unused${i}`;
}

/** Moves a disk the VM owns to unusedN (cloud-init drives are removed instead). */
function detachDisk(cluster, vm, value) {
  const vol = D.ownedVolume(cluster, vm, value);
  if (!vol) return;
  if (/cloudinit/.test(vol.volid)) cluster.removeVolume(vm.node, vol.volid);
  else vm.config[nextUnused(vm.config)] = vol.volid;
}

/** Plain (non-drive) keys of a create/update request into the config. */
function setPlainKeys(ctx, config) {
  for (const [key0, value] of Object.entries(ctx.params)) {
    if (NOT_CONFIG.has(key0) || D.isDriveKey(key0) || value === undefined) continue;
    const key = key0 === 'cdrom' ? 'ide2' : key0;
    if (/^net\d+$/.test(key)) config[key] = D.normalizeNet(ctx, key, ctx.raw[key0]);
    else if (key === 'tags') config[key] = F.splitList(value).join(';');
    else config[key] = value;
  }
}

// Options PVE applies to a running VM at once (qemu-server's fast-plug set);
// the others need hotplug support (the VM's `hotplug` list) or wait as
// pending changes until the next cold start.
const FAST_PLUG = new Set(['name', 'onboot', 'shares', 'startup', 'description', 'protection', 'tags',
  'hookscript', 'vmstatestorage', 'lock']);

function hotpluggable(vm, key) {
  if (FAST_PLUG.has(key)) return true;
  const hp = String(vm.config.hotplug === undefined ? 'network,disk,usb' : vm.config.hotplug);
  const on = hp === '1' ? new Set(['network', 'disk', 'usb']) : new Set(hp.split(','));
  if (/^net\d+$/.test(key)) return on.has('network');
  if (D.isDriveKey(key)) return on.has('disk') && !/cloudinit|media=cdrom/.test(String(vm.config[key] || ''));
  if (/^usb\d+$/.test(key)) return on.has('usb');
  if (key === 'memory' || key === 'balloon') return on.has('memory') && String(vm.config.numa) === '1';
  if (key === 'vcpus') return on.has('cpu');
  if (key === 'cpulimit' || key === 'cpuunits') return true;
  return false;
}

/** A running VM keeps non-hotpluggable plain keys as pending (applied at the next start). */
function deferPending(ctx, vm) {
  if (vm.status !== 'running') return;
  for (const [key0, value] of Object.entries(ctx.params)) {
    if (NOT_CONFIG.has(key0) || D.isDriveKey(key0) || value === undefined) continue;
    const key = key0 === 'cdrom' ? 'ide2' : key0;
    // the running value again, or a key applied at once: nothing is left pending for it
    if (hotpluggable(vm, key) || String(vm.config[key]) === String(value)) {
      if (vm.pending) delete vm.pending[key];
      continue;
    }
    vm.pending = vm.pending || {};
    vm.pending[key] = /^net\d+$/.test(key) ? D.normalizeNet(ctx, key, ctx.raw[key0]) : key === 'tags' ? F.splitList(value).join(';') : value;
    delete ctx.params[key0];
  }
}

/** Applies an update (deletes, plain keys, planned drives) to a VM's config. */
async function writeConfig(ctx, t, vm, plan) {
  const { cluster } = ctx;
  deferPending(ctx, vm);
  for (const key of F.splitList(ctx.params.delete || '')) {
    const old = vm.config[key];
    if (old === undefined) continue;
    if (/^unused\d+$/.test(key)) {
      const vol = cluster.volume(vm.node, String(old));
      if (vol && vol.vmid === vm.vmid) cluster.removeVolume(vm.node, vol.volid);
    } else if (D.isDriveKey(key)) {
      detachDisk(cluster, vm, old);
    }
    delete vm.config[key];
  }
  setPlainKeys(ctx, vm.config);
  for (const item of plan) {
    const old = vm.config[item.key];
    const value = await D.applyDrive(ctx, t, vm.node, vm.vmid, item);
    if (old !== undefined && String(old).split(',')[0] !== value.split(',')[0]) detachDisk(cluster, vm, old);
    vm.config[item.key] = value;
  }
}

function removeVmVolumes(cluster, vm, unreferencedToo) {
  for (const k of Cluster.driveKeys(vm.config)) {
    const file = String(vm.config[k]).split(',')[0];
    const vol = cluster.volume(vm.node, file);
    if (vol && vol.vmid === vm.vmid) cluster.removeVolume(vm.node, vol.volid);
  }
  if (unreferencedToo) {
    for (const id of Object.keys(cluster.storageCfg)) {
      for (const v of [...cluster.vols(vm.node, id).values()]) if (v.vmid === vm.vmid) cluster.removeVolume(vm.node, v.volid);
    }
  }
}

// ------------------------------------------------------------------ create
async function createVm(ctx) {
  const { cluster, lab, params } = ctx;
  const { node, vmid } = params;
  cluster.node(node);
  if (params.archive) throw new ApiError(501, 'restore (archive) is not implemented in the lab fake');
  if (!(params.pool && ctx.can(`/pool/${params.pool}`, 'VM.Allocate'))) ctx.check(`/vms/${vmid}`, ['VM.Allocate']);
  if (params.pool && !cluster.pools.has(params.pool)) die(`pool '${params.pool}' does not exist`);
  const release = await cluster.lockConfig(vmid, 'lock_timeout_create');
  let plan;
  let vm;
  const config = {};
  try {
    cluster.checkVmidUnused(vmid);
    plan = D.planDrives(ctx, node, params);
    setPlainKeys(ctx, config);
    vm = { vmid, node, config: { lock: 'create' }, status: 'stopped', created: Date.now() };
    cluster.vms.set(vmid, vm);
  } catch (err) {
    release();
    throw err;
  }
  return ctx.task({
    node, type: 'qmcreate', id: vmid,
    always: release,
    run: async (t) => {
      try {
        await t.sleep(lab.ms('pve', 'create'));
        for (const item of plan) config[item.key] = await D.applyDrive(ctx, t, node, vmid, item);
        if (!config.smbios1) config.smbios1 = `uuid=${crypto.randomUUID()}`;
        if (!config.vmgenid) config.vmgenid = crypto.randomUUID();
        if (!config.boot) { const b = D.defaultBoot(config); if (b) config.boot = b; }
        config.meta = `creation-qemu=9.2.0,ctime=${Math.floor(Date.now() / 1000)}`;
      } catch (err) {
        throw new Error(`unable to create VM ${vmid} - ${err.message}`);
      }
      vm.config = config;
      if (params.pool) cluster.pools.get(params.pool).vms.add(vmid);
      lab.emit('vm.created', { service: 'pve', node, vmid, name: config.name || null });
      if (params.start) { t.log('start after create'); await bootVm(ctx, t, vm); }
    },
    onFail: async () => { removeVmVolumes(cluster, vm, true); cluster.vms.delete(vmid); },
  });
}

// ------------------------------------------------------------------ config
async function updateVm(ctx, sync) {
  const { cluster, lab, params } = ctx;
  const { node, vmid } = params;
  checkSkiplock(ctx);
  cluster.vm(node, vmid);
  const release = await cluster.lockConfig(vmid);
  let handedOver = false;
  try {
    const vm = cluster.vm(node, vmid);
    if (!params.skiplock) Cluster.checkLock(vm);
    if (params.digest && params.digest !== cluster.digest(vm)) {
      die('detected modified configuration - file changed by other user? Try again.');
    }
    for (const k of F.splitList(params.delete || '')) {
      if (params[k] !== undefined) paramExc({ delete: `cannot set and delete '${k}' at the same time` });
    }
    const plan = D.planDrives(ctx, node, params);
    if (sync) {
      await writeConfig(ctx, syncTask, vm, plan);
      return null;
    }
    handedOver = true;
    return ctx.task({
      node, type: 'qmconfig', id: vmid, always: release,
      run: async (t) => {
        await t.sleep(lab.ms('pve', 'config'));
        await writeConfig(ctx, t, vm, plan);
        t.log(`update VM ${vmid}: ${Object.keys(ctx.raw).filter((k) => !['node', 'vmid'].includes(k)).map((k) => `-${k}`).join(' ')}`);
      },
    });
  } finally {
    if (!handedOver) release();
  }
}

// ------------------------------------------------------------------ clone
async function cloneVm(ctx) {
  const { cluster, lab, params } = ctx;
  const { node, vmid, newid } = params;
  const src = cluster.vm(node, vmid);
  const template = !!src.config.template;
  const full = params.full !== undefined ? !!params.full : !template;
  if (!full && !template) die('Linked clone feature is only available for templates');
  if (!full && params.storage) paramExc({ storage: 'parameter not allowed for linked clones' });
  if (!full && params.format) paramExc({ format: 'parameter not allowed for linked clones' });
  if (params.target && params.target !== node) {
    cluster.node(params.target);
    die(`Can't clone VM to node '${params.target}' (VM uses local storage)`);
  }
  if (params.pool && !cluster.pools.has(params.pool)) die(`pool '${params.pool}' does not exist`);
  if (params.storage) {
    const s = cluster.storage(node, params.storage);
    if (!s.content.includes('images')) die(`storage '${params.storage}' does not support vm images`);
  }
  const releaseSrc = template ? () => {} : await cluster.lockConfig(vmid, 'lock_timeout_clone');
  let handedOver = false;
  try {
    if (!template) Cluster.checkLock(src);
    if (cluster.vms.has(newid)) die(`unable to create VM ${newid}: config file already exists`);
    const target = { vmid: newid, node, config: { lock: 'clone' }, status: 'stopped', created: Date.now() };
    cluster.vms.set(newid, target);
    handedOver = true;
    return ctx.task({
      node, type: 'qmclone', id: vmid, always: releaseSrc,
      run: async (t) => {
        t.log(`create ${full ? 'full' : 'linked'} clone of drive(s) of VM ${vmid}`);
        const conf = {};
        for (const [k, v] of Object.entries(src.config)) {
          if (['lock', 'template', 'parent', 'snapstate', 'vmstate'].includes(k) || /^unused\d+$/.test(k)) continue;
          conf[k] = v;
        }
        conf.name = params.name || `Copy-of-VM-${src.config.name || vmid}`;
        if (params.description !== undefined) conf.description = params.description;
        conf.vmgenid = crypto.randomUUID();
        if (conf.smbios1) conf.smbios1 = String(conf.smbios1).replace(/uuid=[^,]*/, `uuid=${crypto.randomUUID()}`);
        for (const k of Object.keys(conf).filter((x) => /^net\d+$/.test(x))) {
          const nic = ctx.schema.parseVmKey(k, conf[k]);
          delete nic.macaddr;
          conf[k] = D.normalizeNet(ctx, k, F.printPropertyString(ctx.schema.vmKeyFormat(k), nic));
        }
        for (const k of Cluster.driveKeys(conf)) {
          const drive = ctx.schema.parseVmKey(k, conf[k]);
          const vol = cluster.volume(node, drive.file);
          if (!vol || drive.media === 'cdrom' && !/cloudinit/.test(drive.file)) continue;
          const storage = full && params.storage ? params.storage : D.storeOf(vol.volid);
          if (/cloudinit/.test(vol.volid)) {
            conf[k] = await D.applyDrive(ctx, t, node, newid, { key: k, kind: 'cloudinit', storage, drive });
            continue;
          }
          if (full) {
            conf[k] = await D.applyDrive(ctx, t, node, newid, { key: k, kind: 'new', storage, size: vol.size, drive });
            await t.sleep(lab.ms('pve', 'clone_full'));
            t.log(`drive mirror is starting for drive-${k}`);
          } else {
            await cluster.withStorageLock(node, storage, async () => {
              await t.sleep(lab.ms('pve', 'clone_linked'));
              const base = vol.volid.split(':')[1];
              const name = cluster.newDiskVolid(node, storage, newid, vol.format).split(':')[1];
              const volid = cluster.storageCfg[storage].type === 'dir'
                ? `${storage}:${vmid}/${base.split('/').pop()}/${name}` : `${storage}:${base}/${name}`;
              cluster.addVolume(node, { volid, vmid: newid, size: vol.size, format: vol.format, content: 'images', parent: base });
              drive.file = volid;
              conf[k] = ctx.schema.printVmKey(k, drive);
            });
          }
        }
        target.config = conf;
        if (params.pool) cluster.pools.get(params.pool).vms.add(newid);
        lab.emit('vm.created', { service: 'pve', node, vmid: newid, name: conf.name, clone_of: vmid });
      },
      onFail: async () => { removeVmVolumes(cluster, target, true); cluster.vms.delete(newid); },
    });
  } finally {
    if (!handedOver) releaseSrc();
  }
}

// ------------------------------------------------------------------ resize, template, delete
async function resizeVm(ctx) {
  const { cluster, lab, params } = ctx;
  const { node, vmid, disk, size } = params;
  checkSkiplock(ctx);
  const vm = cluster.vm(node, vmid);
  return ctx.task({
    node, type: 'resize', id: vmid,
    run: async (t) => {
      const release = await cluster.lockConfig(vmid);
      try {
        if (!params.skiplock) Cluster.checkLock(vm);
        if (params.digest && params.digest !== cluster.digest(vm)) die('VM config checksum missmatch (file change by other user?)');
        if (vm.config[disk] === undefined) die(`disk '${disk}' does not exist`);
        const drive = ctx.schema.parseVmKey(disk, vm.config[disk]);
        if (drive.media === 'cdrom') die("you can't resize a cdrom");
        const vol = cluster.volume(node, drive.file);
        if (!vol) die(`volume '${drive.file}' does not exist`);
        const delta = F.parseSize(size.replace(/^\+/, ''), 'G');
        const newSize = size.startsWith('+') ? vol.size + delta : delta;
        if (newSize < vol.size) die('shrinking disks is not supported');
        await t.sleep(lab.ms('pve', 'resize'));
        vol.size = newSize;
        drive.size = F.formatSize(newSize);
        vm.config[disk] = ctx.schema.printVmKey(disk, drive);
        t.log(`  Size of logical volume ${drive.file} changed to ${F.formatSize(newSize)}.`);
      } finally { release(); }
    },
  });
}

async function templateVm(ctx) {
  const { cluster, lab, params } = ctx;
  const { node, vmid } = params;
  const vm = cluster.vm(node, vmid);
  if (vm.config.template) die("you can't convert a template to a template");
  if (vm.status === 'running') die("you can't convert a running VM to a template");
  return ctx.task({
    node, type: 'qmtemplate', id: vmid,
    run: async (t) => {
      const release = await cluster.lockConfig(vmid);
      try {
        Cluster.checkLock(vm);
        await t.sleep(lab.ms('pve', 'template'));
        for (const k of Cluster.driveKeys(vm.config)) {
          if (/^unused/.test(k) || (params.disk && params.disk !== k)) continue;
          const drive = ctx.schema.parseVmKey(k, vm.config[k]);
          const vol = cluster.volume(node, drive.file);
          if (!vol || vol.vmid !== vm.vmid || /cloudinit/.test(vol.volid) || drive.media === 'cdrom') continue;
          const volid = vol.volid.replace(/vm-(\d+)-disk-/, 'base-$1-disk-');
          cluster.removeVolume(node, vol.volid);
          cluster.addVolume(node, { ...vol, volid });
          t.log(`  Renamed "${vol.volid.split(':')[1]}" to "${volid.split(':')[1]}" in volume group "pve"`);
          drive.file = volid;
          vm.config[k] = ctx.schema.printVmKey(k, drive);
        }
        vm.config.template = 1;
      } finally { release(); }
    },
  });
}

async function destroyVm(ctx) {
  const { cluster, lab, params } = ctx;
  const { node, vmid } = params;
  checkSkiplock(ctx);
  const vm = cluster.vm(node, vmid);
  if (vm.config.protection) die(`can't remove VM ${vmid} - protection mode enabled`);
  if (!params.skiplock) Cluster.checkLock(vm);
  if (vm.status === 'running') die(`VM ${vmid} is running - destroy failed`);
  return ctx.task({
    node, type: 'qmdestroy', id: vmid,
    run: async (t) => {
      const release = await cluster.lockConfig(vmid);
      try {
        if (vm.status === 'running') die(`VM ${vmid} is running - destroy failed`);
        await t.sleep(lab.ms('pve', 'destroy'));
        for (const k of Cluster.driveKeys(vm.config)) {
          const file = String(vm.config[k]).split(',')[0];
          if (cluster.volume(node, file) && cluster.volume(node, file).vmid === vm.vmid) t.log(`Removing image: 100% complete...done.`);
        }
        removeVmVolumes(cluster, vm, !!params['destroy-unreferenced-disks']);
        cluster.vms.delete(vm.vmid);
        for (const p of cluster.pools.values()) p.vms.delete(vm.vmid);
        t.log(`purging VM ${vmid} from related configurations..`);
        lab.emit('vm.deleted', { service: 'pve', node, vmid: vm.vmid, name: vm.config.name || null });
      } finally { release(); }
    },
  });
}

// ------------------------------------------------------------------ cloud-init dump
function cloudinitDump(ctx) {
  const { cluster, params } = ctx;
  const vm = cluster.vm(params.node, params.vmid);
  const c = vm.config;
  if (params.type === 'meta') return `instance-id: ${crypto.createHash('sha1').update(JSON.stringify(c)).digest('hex')}\n`;
  if (params.type === 'user') {
    const lines = ['#cloud-config', `hostname: ${c.name || `VM${vm.vmid}`}`, 'manage_etc_hosts: true'];
    if (c.ciuser) lines.push(`user: ${c.ciuser}`);
    if (c.sshkeys) lines.push('ssh_authorized_keys:', ...unescapeKeys(c.sshkeys).split('\n').filter(Boolean).map((k) => `  - ${k}`));
    lines.push('chpasswd:', '  expire: False', 'package_upgrade: true');
    return `${lines.join('\n')}\n`;
  }
  const out = ['version: 1', 'config:'];
  for (const k of Object.keys(c).filter((x) => /^net\d+$/.test(x)).sort()) {
    const i = k.slice(3);
    const nic = ctx.schema.parseVmKey(k, c[k]);
    out.push('    - type: physical', `      name: eth${i}`, `      mac_address: '${nic.macaddr.toLowerCase()}'`, '      subnets:');
    const ip = ctx.schema.parseVmKey(`ipconfig${i}`, c[`ipconfig${i}`]);
    if (ip.ip === 'dhcp') out.push('      - type: dhcp4');
    else if (ip.ip) {
      out.push('      - type: static', `        address: '${ip.ip.split('/')[0]}'`, `        netmask: '${prefixToMask(Number(ip.ip.split('/')[1]))}'`);
      if (ip.gw) out.push(`        gateway: '${ip.gw}'`);
    }
  }
  if (c.nameserver || c.searchdomain) {
    out.push('    - type: nameserver', '      address:', ...F.splitList(c.nameserver || '').map((a) => `      - '${a}'`));
    out.push('      search:', ...F.splitList(c.searchdomain || '').map((a) => `      - '${a}'`));
  }
  return `${out.join('\n')}\n`;
}

function unescapeKeys(s) {
  try { return decodeURIComponent(s); } catch (_) { return s; }
}

function prefixToMask(p) {
  const n = p === 0 ? 0 : (0xffffffff << (32 - p)) >>> 0;
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
}

module.exports = (routes) => {
  routes['GET /nodes/{node}/qemu'] = (ctx) => {
    ctx.cluster.node(ctx.params.node);
    return [...ctx.cluster.vms.values()]
      .filter((vm) => vm.node === ctx.params.node && ctx.can(`/vms/${vm.vmid}`, 'VM.Audit'))
      .map((vm) => V.vmEntry(ctx.cluster, vm));
  };
  routes['POST /nodes/{node}/qemu'] = createVm;
  routes['GET /nodes/{node}/qemu/{vmid}'] = (ctx) => {
    ctx.cluster.vm(ctx.params.node, ctx.params.vmid);
    return ['config', 'pending', 'status', 'agent', 'clone', 'resize', 'template', 'cloudinit'].map((subdir) => ({ subdir }));
  };
  // values with the pending changes applied, unless current=1 (like PVE)
  routes['GET /nodes/{node}/qemu/{vmid}/config'] = (ctx) => {
    const vm = ctx.cluster.vm(ctx.params.node, ctx.params.vmid);
    const view = V.configView(ctx.cluster, vm);
    if (!ctx.params.current) for (const [k, v] of Object.entries(vm.pending || {})) view[k] = v;
    return view;
  };
  routes['GET /nodes/{node}/qemu/{vmid}/pending'] = (ctx) => {
    const vm = ctx.cluster.vm(ctx.params.node, ctx.params.vmid);
    const pending = vm.pending || {};
    const keys = new Set([...Object.keys(vm.config), ...Object.keys(pending)]);
    return [...keys].sort().map((key) => {
      const e = { key };
      if (vm.config[key] !== undefined) e.value = vm.config[key];
      if (pending[key] !== undefined) e.pending = pending[key];
      return e;
    });
  };
  routes['POST /nodes/{node}/qemu/{vmid}/config'] = (ctx) => updateVm(ctx, false);
  routes['PUT /nodes/{node}/qemu/{vmid}/config'] = (ctx) => updateVm(ctx, true);
  routes['POST /nodes/{node}/qemu/{vmid}/clone'] = cloneVm;
  routes['PUT /nodes/{node}/qemu/{vmid}/resize'] = resizeVm;
  routes['POST /nodes/{node}/qemu/{vmid}/template'] = templateVm;
  routes['DELETE /nodes/{node}/qemu/{vmid}'] = destroyVm;
  routes['GET /nodes/{node}/qemu/{vmid}/cloudinit/dump'] = cloudinitDump;
};
