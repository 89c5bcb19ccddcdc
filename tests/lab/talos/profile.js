// Duration profile of the Talos node fake, in seconds.  `realistic` follows
// what a Talos 1.11 VM on Proxmox takes (nocloud image, local registry
// mirror, SSD storage); `test` is near zero.  Override any key at run time
// through the control endpoint: PATCH /profile {"talos": {"etcd_ready": 2}}.
'use strict';

const realistic = {
  boot: 20, // VM start (or a reboot) until port 50000 answers (maintenance or apid)
  install: 30, // after ApplyConfiguration in maintenance: writing the installer image to the disk
  reboot: 5, // a reboot's own down time (after install, Reboot, Upgrade), before `boot` starts
  services: 10, // apid up until the boot sequence is done (MachineStatus stage booting -> running)
  etcd_ready: 10, // apid up until Bootstrap is accepted ("bootstrap is not available yet" before)
  etcd_start: 8, // after Bootstrap until etcd is Running and healthy
  etcd_join: 12, // a further control plane: apid up (cluster bootstrapped) until it joins etcd as a learner
  etcd_promote: 15, // learner -> voting member
  kubelet: 15, // until kubelet is Running and healthy (control planes: after etcd is healthy)
  upgrade: 45, // Upgrade: pulling and installing the new image, before the reboot
  reset: 10, // Reset: leaving etcd, wiping, before the reboot / power-off
  shutdown: 3, // reset without reboot: until the VM is off
  jitter: 0.2, // each duration is multiplied by 1 +- jitter
};

const test = {
  boot: 0.05,
  install: 0.1,
  reboot: 0.03,
  services: 0.05,
  etcd_ready: 0.1,
  etcd_start: 0.1,
  etcd_join: 0.1,
  etcd_promote: 0.1,
  kubelet: 0.1,
  upgrade: 0.1,
  reset: 0.05,
  shutdown: 0.02,
  jitter: 0,
};

module.exports = { test, realistic };
