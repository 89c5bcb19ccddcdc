// Duration profile of the Proxmox fake (seconds unless named otherwise).
// `realistic` follows what a PVE 8/9 host takes; `test` is near zero with
// short lock timeouts.  Override any key at run time through the control
// endpoint: PATCH /profile {"pve": {"start": 2}}.
'use strict';

const realistic = {
  auth_fail_delay: 3, // pveproxy delays every failed authentication by 3 s
  ticket_lifetime: 7200, // PVEAuthCookie tickets expire after 2 h
  request_latency: 0.015, // every API call
  proxy_latency: 0.01, // extra for calls pveproxy forwards to another node
  task_visible: 0.3, // a fresh UPID answers 400 "no such task" for this long
  node_workers: 3, // concurrent tasks per node; more wait for a free worker
  lock_timeout_config: 10, // lock_config (config update, start, resize, ...)
  lock_timeout_create: 5, // create_and_lock_config
  lock_timeout_clone: 1, // clone source and target
  lock_timeout_storage: 10, // /var/lock/pve-manager/pve-storage-<id>
  create: 1.5, // qmcreate, without disks
  disk_alloc: 0.4, // each new disk, holding the storage lock
  disk_import: 6, // each import-from disk (qemu-img convert)
  clone_linked: 1,
  clone_full: 8,
  config: 0.3, // async POST config
  resize: 0.8,
  template: 1.5,
  destroy: 1.2,
  start: 1.2,
  boot_agent: 10, // from start until the guest agent answers
  stop: 0.6,
  shutdown: 4,
  reboot: 5,
  download: 4, // download-url, on top of the real transfer
  jitter: 0.2, // each duration is multiplied by 1 +- jitter
};

const test = {
  auth_fail_delay: 0,
  ticket_lifetime: 7200,
  request_latency: 0,
  proxy_latency: 0,
  task_visible: 0.02,
  node_workers: 3,
  lock_timeout_config: 0.3,
  lock_timeout_create: 0.2,
  lock_timeout_clone: 0.1,
  lock_timeout_storage: 0.3,
  create: 0.01,
  disk_alloc: 0.002,
  disk_import: 0.01,
  clone_linked: 0.01,
  clone_full: 0.02,
  config: 0.005,
  resize: 0.01,
  template: 0.01,
  destroy: 0.01,
  start: 0.01,
  boot_agent: 0.05,
  stop: 0.01,
  shutdown: 0.02,
  reboot: 0.03,
  download: 0.01,
  jitter: 0,
};

module.exports = { test, realistic };
