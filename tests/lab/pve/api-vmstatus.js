// VM power state (status/current, start, stop, shutdown, reboot, reset,
// suspend, resume) and the QEMU guest agent.  Starting a VM emits
// 'vm.started' on the lab bus with its NICs and addresses (the cloud-init
// ipconfig, or a DHCP lease from the lab net), for the fakes that boot a
// "guest" there; stopping and deleting emit 'vm.stopped' / 'vm.deleted'.
'use strict';
const { Cluster, die, paramExc } = require('./state');
const V = require('./views');

/** NICs of a VM with the addresses its guest would get. */
function netInfo(cluster, vm) {
  const out = [];
  const keys = Object.keys(vm.config).filter((k) => /^net\d+$/.test(k))
    .sort((a, b) => Number(a.slice(3)) - Number(b.slice(3)));
  for (const key of keys) {
    const i = Number(key.slice(3));
    const nic = cluster.schema.parseVmKey(key, vm.config[key]);
    const ipc = cluster.schema.parseVmKey(`ipconfig${i}`, vm.config[`ipconfig${i}`]);
    const e = { key, name: `ens${18 + i}`, mac: nic.macaddr, model: nic.model, bridge: nic.bridge || null };
    if (nic.tag) e.vlan = Number(nic.tag);
    if (ipc.ip === 'dhcp' || !ipc.ip) { // no static address: the guest asks DHCP
      e.dhcp = true;
      e.ipv4 = cluster.lease(nic.macaddr);
      e.prefix = 16;
    } else if (ipc.ip) {
      [e.ipv4, e.prefix] = [ipc.ip.split('/')[0], Number(ipc.ip.split('/')[1])];
      if (ipc.gw) e.gateway = ipc.gw;
    }
    if (ipc.ip6 && ipc.ip6.includes('/')) {
      [e.ipv6, e.prefix6] = [ipc.ip6.split('/')[0], Number(ipc.ip6.split('/')[1])];
      if (ipc.gw6) e.gateway6 = ipc.gw6;
    }
    out.push(e);
  }
  return out;
}

function linkLocal(mac) {
  const b = mac.split(':').map((x) => parseInt(x, 16));
  b[0] ^= 2;
  const w = [(b[0] << 8) | b[1], (b[2] << 8) | 0xff, (0xfe << 8) | b[3], (b[4] << 8) | b[5]];
  return `fe80::${w.map((x) => x.toString(16)).join(':')}`;
}

function eventData(cluster, vm, extra) {
  const smbios = cluster.schema.parseVmKey('smbios1', vm.config.smbios1);
  return {
    service: 'pve', node: vm.node, vmid: vm.vmid, name: vm.config.name || null, tags: vm.config.tags || '',
    nics: netInfo(cluster, vm), smbios1: smbios, agent: V.agentConfigured(cluster, vm), config: { ...vm.config },
    ...extra,
  };
}

/** The start itself (inside a qmstart/qmcreate worker that holds the config lock). */
async function bootVm(ctx, t, vm) {
  const { cluster, lab } = ctx;
  if (vm.config.template) die("you can't start a vm if it's a template");
  if (vm.status === 'running') die(`VM ${vm.vmid} already running`);
  if (Cluster.driveKeys(vm.config).some((k) => /cloudinit/.test(String(vm.config[k])))) t.log('generating cloud-init ISO');
  await t.sleep(lab.ms('pve', 'start'));
  if (vm.pending) { Object.assign(vm.config, vm.pending); delete vm.pending; } // a cold start applies them
  vm.status = 'running';
  vm.paused = false;
  vm.startedAt = Date.now();
  vm.bootAt = vm.startedAt + lab.ms('pve', 'boot_agent');
  vm.pid = 10000 + Math.floor(Math.random() * 900000);
  lab.emit('vm.started', eventData(cluster, vm));
}

function halt(ctx, vm, how) {
  vm.status = 'stopped';
  vm.paused = false;
  vm.startedAt = null;
  vm.pid = undefined;
  ctx.lab.emit('vm.stopped', { ...eventData(ctx.cluster, vm), how });
}

function checkSkiplock(ctx) {
  if (ctx.params.skiplock && (ctx.auth.kind === 'token' || ctx.auth.userid !== 'root@pam')) {
    paramExc({ skiplock: 'Only root may use this option.' });
  }
}

/** A power task: the worker takes the config lock, checks `lock`, then runs fn. */
function powerTask(ctx, type, fn) {
  const { cluster, params } = ctx;
  checkSkiplock(ctx);
  const vm = cluster.vm(params.node, params.vmid);
  return ctx.task({
    node: params.node, type, id: params.vmid,
    run: async (t) => {
      const release = await cluster.lockConfig(params.vmid);
      try {
        if (!params.skiplock) Cluster.checkLock(vm);
        await fn(t, vm);
      } finally { release(); }
    },
  });
}

function requireRunning(vm) { if (vm.status !== 'running') die(`VM ${vm.vmid} not running`); }

// ------------------------------------------------------------------ guest agent
function agentCheck(ctx, vm) {
  if (!V.agentConfigured(ctx.cluster, vm)) die('No QEMU guest agent configured');
  if (vm.status !== 'running') die(`VM ${vm.vmid} is not running`);
  const o = vm.agent || {};
  const ready = o.ready === true || (o.ready !== false && Date.now() >= vm.bootAt);
  if (!ready || vm.paused) die('QEMU guest agent is not running');
}

function interfaces(cluster, vm) {
  if (vm.agent && vm.agent.interfaces) return vm.agent.interfaces;
  const up = Math.floor((Date.now() - vm.startedAt) / 1000) + 1;
  const stats = (n) => ({ 'rx-bytes': 1500 * n * up, 'rx-packets': n * up, 'rx-errs': 0, 'rx-dropped': 0,
    'tx-bytes': 900 * n * up, 'tx-packets': n * up, 'tx-errs': 0, 'tx-dropped': 0 });
  const list = [{
    name: 'lo', 'hardware-address': '00:00:00:00:00:00', statistics: stats(1),
    'ip-addresses': [{ 'ip-address': '127.0.0.1', 'ip-address-type': 'ipv4', prefix: 8 },
      { 'ip-address': '::1', 'ip-address-type': 'ipv6', prefix: 128 }],
  }];
  for (const nic of netInfo(cluster, vm)) {
    const ips = [];
    if (nic.ipv4) ips.push({ 'ip-address': nic.ipv4, 'ip-address-type': 'ipv4', prefix: nic.prefix });
    if (nic.ipv6) ips.push({ 'ip-address': nic.ipv6, 'ip-address-type': 'ipv6', prefix: nic.prefix6 });
    ips.push({ 'ip-address': linkLocal(nic.mac), 'ip-address-type': 'ipv6', prefix: 64 });
    list.push({ name: nic.name, 'hardware-address': nic.mac.toLowerCase(), 'ip-addresses': ips, statistics: stats(3) });
  }
  return list;
}

const AGENT_COMMANDS = ['fsfreeze-freeze', 'fsfreeze-status', 'fsfreeze-thaw', 'fstrim', 'get-fsinfo', 'get-host-name',
  'get-memory-block-info', 'get-memory-blocks', 'get-osinfo', 'get-time', 'get-timezone', 'get-users', 'get-vcpus',
  'info', 'network-get-interfaces', 'ping', 'shutdown', 'suspend-disk', 'suspend-hybrid', 'suspend-ram'];

function agentCommand(ctx, command) {
  const { cluster, params } = ctx;
  const vm = cluster.vm(params.node, params.vmid);
  agentCheck(ctx, vm);
  const o = vm.agent || {};
  switch (command) {
    case 'ping': return { result: {} };
    case 'network-get-interfaces': return { result: interfaces(cluster, vm) };
    case 'info': return { result: { version: '9.2.0', supported_commands: AGENT_COMMANDS.map((name) => ({ name, enabled: true, 'success-response': true })) } };
    case 'get-host-name': return { result: { 'host-name': o.hostname || vm.config.name || `vm${vm.vmid}` } };
    case 'get-osinfo': return { result: o.osinfo || { id: 'linux', name: 'Linux', 'kernel-release': '6.12.0', machine: 'x86_64' } };
    case 'get-time': return { result: Date.now() * 1e6 };
    case 'get-timezone': return { result: { zone: 'UTC', offset: 0 } };
    case 'get-vcpus': return { result: Array.from({ length: V.vmEntry(cluster, vm).cpus }, (_, i) => ({ 'logical-id': i, online: true, 'can-offline': i > 0 })) };
    case 'get-users': case 'get-fsinfo': case 'get-memory-blocks': return { result: [] };
    case 'shutdown':
      setTimeout(() => { if (vm.status === 'running') halt(ctx, vm, 'agent-shutdown'); }, ctx.lab.ms('pve', 'shutdown'));
      return { result: {} };
    default: return { result: {} };
  }
}

module.exports = (routes) => {
  routes['GET /nodes/{node}/qemu/{vmid}/status'] = (ctx) => {
    ctx.cluster.vm(ctx.params.node, ctx.params.vmid);
    return ['current', 'start', 'stop', 'reset', 'shutdown', 'suspend', 'reboot'].map((subdir) => ({ subdir }));
  };
  routes['GET /nodes/{node}/qemu/{vmid}/status/current'] = (ctx) => V.vmStatus(ctx.cluster, ctx.cluster.vm(ctx.params.node, ctx.params.vmid));
  routes['POST /nodes/{node}/qemu/{vmid}/status/start'] = (ctx) => powerTask(ctx, 'qmstart', (t, vm) => bootVm(ctx, t, vm));
  routes['POST /nodes/{node}/qemu/{vmid}/status/stop'] = (ctx) => powerTask(ctx, 'qmstop', async (t, vm) => {
    if (vm.status !== 'running') return;
    await t.sleep(ctx.lab.ms('pve', 'stop'));
    halt(ctx, vm, 'stop');
  });
  routes['POST /nodes/{node}/qemu/{vmid}/status/shutdown'] = (ctx) => powerTask(ctx, 'qmshutdown', async (t, vm) => {
    requireRunning(vm);
    const need = ctx.lab.ms('pve', 'shutdown');
    const limit = (ctx.params.timeout !== undefined ? ctx.params.timeout : 60) * 1000;
    if (need > limit) {
      await t.sleep(limit);
      if (!ctx.params.forceStop) die('VM quit/powerdown failed - got timeout');
      t.log('VM still running - terminating now with SIGTERM');
    } else {
      await t.sleep(need);
    }
    halt(ctx, vm, 'shutdown');
  });
  routes['POST /nodes/{node}/qemu/{vmid}/status/reboot'] = (ctx) => powerTask(ctx, 'qmreboot', async (t, vm) => {
    requireRunning(vm);
    await t.sleep(ctx.lab.ms('pve', 'reboot'));
    halt(ctx, vm, 'reboot');
    await bootVm(ctx, { ...t, sleep: () => Promise.resolve() }, vm);
  });
  routes['POST /nodes/{node}/qemu/{vmid}/status/reset'] = (ctx) => powerTask(ctx, 'qmreset', async (t, vm) => {
    requireRunning(vm);
    // a hard reset keeps the QEMU process: pending changes stay pending
    const pending = vm.pending;
    delete vm.pending;
    halt(ctx, vm, 'reset');
    await bootVm(ctx, { ...t, sleep: () => Promise.resolve() }, vm);
    if (pending) vm.pending = pending;
  });
  routes['POST /nodes/{node}/qemu/{vmid}/status/suspend'] = (ctx) => powerTask(ctx, 'qmsuspend', async (t, vm) => {
    requireRunning(vm);
    vm.paused = true;
  });
  routes['POST /nodes/{node}/qemu/{vmid}/status/resume'] = (ctx) => powerTask(ctx, 'qmresume', async (t, vm) => {
    requireRunning(vm);
    vm.paused = false;
  });
  routes['GET /nodes/{node}/qemu/{vmid}/agent'] = (ctx) => {
    ctx.cluster.vm(ctx.params.node, ctx.params.vmid);
    return AGENT_COMMANDS.map((name) => ({ name }));
  };
  routes['POST /nodes/{node}/qemu/{vmid}/agent'] = (ctx) => agentCommand(ctx, ctx.params.command);
  for (const c of AGENT_COMMANDS) {
    for (const m of ['GET', 'POST']) routes[`${m} /nodes/{node}/qemu/{vmid}/agent/${c}`] = (ctx) => agentCommand(ctx, c);
  }
};

module.exports.bootVm = bootVm;
module.exports.netInfo = netInfo;
module.exports.halt = halt;
