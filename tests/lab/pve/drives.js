// Disks and NICs of qemu configs: the checks the API handler does before
// forking (storage exists and holds images, import-from syntax and source,
// media=cdrom for isos, bridges), and the allocations the worker does
// (new disks, imports, cloud-init drives) under the storage lock.
'use strict';
const { die, paramExc, ApiError } = require('./state');
const F = require('./formats');

const DRIVE_RE = /^(?:(ide|sata|scsi|virtio)\d+|efidisk0|tpmstate0)$/;
const NEW_DISK_RE = /^(?:([^/:\s]+):)?(\d+(?:\.\d+)?)$/;
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

const isDriveKey = (k) => DRIVE_RE.test(k);

/** The storage part of a volume id ("local-lvm:vm-1-disk-0" -> "local-lvm"). */
const storeOf = (volid) => String(volid).split(':')[0];

function needImages(cluster, node, storage) {
  const s = cluster.storage(node, storage);
  if (!s.content.includes('images')) die(`storage '${storage}' does not support vm images`);
  return s;
}

/**
 * Checks the drive parameters of a create/update request (synchronously, as
 * the API handler does before forking).  Returns the plan the worker applies.
 */
function planDrives(ctx, node, params) {
  const { cluster, schema } = ctx;
  const plan = [];
  for (const key of Object.keys(params).filter(isDriveKey).sort()) {
    const value = ctx.raw[key];
    const drive = schema.parseVmKey(key, value);
    const file = drive.file;
    const item = { key, drive };
    const m = NEW_DISK_RE.exec(file);
    if (drive['import-from'] !== undefined) {
      if (!m || Number(m[2]) !== 0 || !m[1]) {
        paramExc({ [key]: "'import-from' requires special syntax - use <storage ID>:0,import-from=<source>" });
      }
      const src = drive['import-from'];
      if (src.startsWith('/')) {
        if (ctx.auth.kind === 'token' || ctx.auth.userid !== 'root@pam') {
          throw new ApiError(403, 'Permission check failed (only root can pass arbitrary filesystem paths)');
        }
        item.kind = 'import';
        item.size = 2 * GiB;
      } else {
        const vol = cluster.volume(node, src);
        if (!vol) die(`${key}: volume '${src}' does not exist`);
        if (vol.content !== 'images' && vol.content !== 'import') {
          die(`${key}: '${src}' has wrong type '${vol.content}' - needs to be 'images' or 'import'`);
        }
        if (!/\.(qcow2|raw|vmdk|img)$/.test(src) && vol.content === 'import') {
          die(`${key}: '${src}' is not a supported disk image format for import`);
        }
        item.kind = 'import';
        item.size = vol.size;
      }
      item.storage = m[1];
      needImages(cluster, node, item.storage);
    } else if (m && key !== 'efidisk0' && key !== 'tpmstate0' && m[1]) {
      item.kind = 'new';
      item.storage = m[1];
      item.size = Math.round(Number(m[2]) * GiB);
      if (item.size <= 0) die(`${key}: volume size must be larger than 0`);
      needImages(cluster, node, item.storage);
    } else if (m && m[1]) { // efidisk0 / tpmstate0: the size is ignored
      item.kind = 'new';
      item.storage = m[1];
      item.size = key === 'tpmstate0' ? 4 * MiB : (drive.efitype === '4m' ? 528 * 1024 : 128 * 1024);
      needImages(cluster, node, item.storage);
    } else if (m) {
      die(`${key}: missing storage for new disk '${file}'`);
    } else if (/^[^:]+:cloudinit$/.test(file)) {
      if (!/^(ide|sata|scsi)\d+$/.test(key)) paramExc({ [key]: 'cloud-init drive must be an ide, sata or scsi drive' });
      item.kind = 'cloudinit';
      item.storage = storeOf(file);
      needImages(cluster, node, item.storage);
    } else if (file === 'none' || file === 'cdrom' || file.startsWith('/')) {
      item.kind = 'keep';
    } else {
      const vol = cluster.volume(node, file);
      if (!vol) die(`volume '${file}' does not exist`);
      if (vol.content === 'iso' && drive.media !== 'cdrom') {
        paramExc({ [key]: "explicit 'media=cdrom' is required for iso images" });
      }
      item.kind = 'keep';
      item.size = vol.size;
    }
    if (item.storage) ctx.check(`/storage/${item.storage}`, ['Datastore.AllocateSpace']);
    plan.push(item);
  }
  for (const key of Object.keys(params).filter((k) => /^net\d+$/.test(k))) {
    const nic = schema.parseVmKey(key, ctx.raw[key]);
    if (nic.bridge && !cluster.node(node).bridges.includes(nic.bridge)) die(`bridge '${nic.bridge}' does not exist`);
  }
  return plan;
}

function diskFormat(cluster, storage, drive) {
  if (cluster.storageCfg[storage].type === 'dir') return drive.format || 'qcow2';
  return 'raw';
}

/** Allocates one planned drive inside a worker; returns the config value. */
async function applyDrive(ctx, t, node, vmid, item) {
  const { cluster, schema, lab } = ctx;
  const drive = { ...item.drive };
  delete drive['import-from'];
  if (item.kind === 'keep') {
    if (item.size !== undefined && drive.file !== 'none' && drive.media !== 'cdrom') drive.size = F.formatSize(item.size);
    return schema.printVmKey(item.key, drive);
  }
  const storage = item.storage;
  const cfg = cluster.storageCfg[storage];
  const format = item.kind === 'cloudinit' ? (cfg.type === 'dir' ? 'qcow2' : 'raw') : diskFormat(cluster, storage, drive);
  let volid;
  await cluster.withStorageLock(node, storage, async () => {
    await t.sleep(lab.ms('pve', 'disk_alloc'));
    if (item.kind === 'cloudinit') {
      volid = cfg.type === 'dir' ? `${storage}:${vmid}/vm-${vmid}-cloudinit.${format}` : `${storage}:vm-${vmid}-cloudinit`;
    } else {
      volid = cluster.newDiskVolid(node, storage, vmid, format);
    }
    const size = item.kind === 'cloudinit' ? 4 * MiB : item.size;
    cluster.addVolume(node, { volid, vmid: Number(vmid), size, format, content: 'images' });
    t.log(cfg.type === 'dir'
      ? `Formatting '${cfg.path}/images/${volid.split(':')[1]}', fmt=${format} size=${size}`
      : `  Logical volume "${volid.split(':')[1]}" created.`);
  });
  if (item.kind === 'import') {
    t.log(`importing disk '${item.drive['import-from']}' to VM ${vmid} ...`);
    await t.sleep(lab.ms('pve', 'disk_import'));
    t.log(`transferred ${(item.size / GiB).toFixed(1)} GiB of ${(item.size / GiB).toFixed(1)} GiB (100.00%)`);
    t.log(`Successfully imported disk as '${item.key}:${volid}'`);
  }
  drive.file = volid;
  if (item.kind === 'cloudinit') return `${volid},media=cdrom`;
  if (item.key === 'efidisk0' && drive.efitype === undefined) drive.efitype = '2m';
  drive.size = F.formatSize(cluster.volume(node, volid).size);
  return schema.printVmKey(item.key, drive);
}

/** The volume a config value refers to, if the VM owns it (not isos, not cdroms). */
function ownedVolume(cluster, vm, value) {
  const file = String(value).split(',')[0].replace(/^file=/, '');
  if (!file.includes(':') || /media=cdrom/.test(String(value)) && !/cloudinit/.test(file)) return null;
  const vol = cluster.volume(vm.node, file);
  return vol && vol.vmid === vm.vmid ? vol : null;
}

/** print_net: "model=MAC,bridge=...,firewall=..." with a MAC generated when missing. */
function normalizeNet(ctx, key, value) {
  const nic = ctx.schema.parseVmKey(key, value);
  const mac = nic.macaddr || ctx.cluster.newMac();
  const rest = { ...nic };
  delete rest.model;
  delete rest.macaddr;
  const tail = F.printPropertyString({}, rest);
  return `${nic.model}=${mac.toUpperCase()}${tail ? `,${tail}` : ''}`;
}

/** PVE's default boot order: disks, then cdroms, then the first NIC. */
function defaultBoot(config) {
  const disks = [];
  const cds = [];
  for (const k of Object.keys(config).filter((x) => /^(ide|sata|scsi|virtio)\d+$/.test(x)).sort()) {
    (/media=cdrom/.test(String(config[k])) ? cds : disks).push(k);
  }
  const nets = Object.keys(config).filter((k) => /^net\d+$/.test(k)).sort();
  const order = [...disks.slice(0, 1), ...cds, ...nets.slice(0, 1)];
  return order.length ? `order=${order.join(';')}` : undefined;
}

module.exports = { planDrives, applyDrive, ownedVolume, normalizeNet, defaultBoot, isDriveKey, storeOf, NEW_DISK_RE };
