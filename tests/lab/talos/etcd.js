// etcd as the Talos node fake models it: one etcd cluster per cluster id,
// its members (keyed by member id), leader and quorum, and what Talos's etcd
// calls do to it (bootstrap, join as a learner then promotion, leave,
// remove by id, forfeit leadership) with etcd's and Talos's error texts.
//
// etcd data lives on the machines (`node.disk.etcd`): a member whose machine
// is deleted or whose EPHEMERAL partition is wiped stays in the member list,
// dead, until someone removes it, as in real etcd.  When no machine holds
// data of a cluster any more, the cluster is gone: not bootstrapped, no
// members, no leader, and the lab event `talos.cluster.gone` stops its
// Kubernetes API (see kubernetes.js), so the same cluster id can be
// bootstrapped afresh.
//
// "Started" members (etcd's quorum checks) are the ones whose etcd runs now.
'use strict';
const crypto = require('crypto');

const UNKNOWN = 2;
const NOT_FOUND = 5;
const UNIMPLEMENTED = 12;

const NOT_ENOUGH_STARTED = 'etcdserver: re-configuration failed due to not enough started members';
const MEMBER_NOT_FOUND = 'etcdserver: member not found';
const NO_LEADER = 'etcdserver: no leader';

/** A failure with a gRPC status code (api.js answers it as is). */
class EtcdFailure extends Error {
  constructor(code, message) { super(message); this.grpcCode = code; }
}
const fail = (code, msg) => { throw new EtcdFailure(code, msg); };

const members = (cl) => [...cl.members.values()];
const running = (m) => !!(m.node && m.node.etcdState && m.node.etcdState.state === 'running' && m.node.isSecure());
const quorum = (n) => Math.floor(n / 2) + 1;

/** The member whose data is on this node, or null. */
function memberOf(node) {
  const cl = node.cluster();
  return (cl && members(cl).find((m) => m.node === node)) || null;
}

/** The leader: the current one while it runs, else a running voter when a quorum of voters runs; null without quorum. */
function leader(cl) {
  const voters = members(cl).filter((m) => !m.learner);
  const up = voters.filter(running);
  if (!voters.length || up.length < quorum(voters.length)) { cl.leader = null; return null; }
  const cur = up.find((m) => m.id === cl.leader);
  if (cur) return cur;
  cl.leader = up[0].id;
  return up[0];
}

/** Whether this node's etcd answers its health check (a quorum read). */
function healthy(node) {
  const cl = node.cluster();
  return !!(cl && node.etcdState && node.etcdState.state === 'running' && leader(cl));
}

/** etcd's check before removing a voting member: the remaining voters must keep a quorum of started members. */
function mayRemove(cl, m) {
  if (m.learner) return true;
  const rest = members(cl).filter((x) => x !== m && !x.learner);
  return rest.filter(running).length >= quorum(rest.length);
}

function newMember(node, learner) {
  const id = crypto.randomBytes(8);
  id[0] &= 0x7f; // below 2^63: Lua integers and JSON numbers stay exact enough
  return { id: BigInt(`0x${id.toString('hex')}`).toString(), hostname: node.hostname(), ip: node.ip(),
    learner, joinedAt: Date.now(), promoteAt: learner ? Date.now() + node.ms('etcd_promote') : null, node };
}

function starting(node, now = Date.now()) {
  return { state: 'starting', since: now, runningAt: now + node.ms('etcd_start') };
}

/** The etcd service state a control plane boots into, from its disk. */
function bootState(node) {
  const d = node.disk.etcd;
  if (d && d.removed) return removedState();
  return d ? starting(node) : { state: 'waiting', since: Date.now(), runningAt: null };
}

function removedState() {
  // etcd exits at once ("the member has been permanently removed from the cluster"); Talos restarts it forever
  return { state: 'failed', since: Date.now(), message: 'Error running Containerd(etcd), going to restart forever: task "etcd" failed: exit code 1' };
}

// ------------------------------------------------------------------ bootstrap, join
function bootstrapCheck(node) {
  const cl = node.cluster();
  if (!node.timeSynced) return { code: 9, msg: 'time is not in sync yet' };
  if (Date.now() < node.deadlines.etcdReady) return { code: 9, msg: 'bootstrap is not available yet' };
  if (node.disk.etcd || memberOf(node) || cl.bootstrapped) return { code: 6, msg: 'etcd data directory is not empty' };
  return null;
}

function bootstrap(node) {
  const cl = node.cluster();
  const m = newMember(node, false);
  cl.bootstrapped = true;
  cl.members.set(m.id, m);
  cl.leader = m.id;
  node.disk.etcd = { cluster: node.disk.facts.clusterId, member: m.id };
  node.etcdState = starting(node);
  node.emit('talos.bootstrapped');
}

/** Advances a control plane's etcd by the clock (join, start, promotion); from the node's tick. */
function advance(node, now) {
  const cl = node.cluster();
  const e = node.etcdState;
  if (!e || !cl) return;
  let me = memberOf(node);
  if (!me && e.state === 'waiting' && cl.bootstrapped && now >= node.deadlines.join &&
      members(cl).some((m) => !m.learner && m.node !== node && running(m))) {
    // Talos first removes a member of the same name (a machine that comes back after a wipe), then adds a learner
    const old = members(cl).find((m) => m.hostname === node.hostname());
    if (old && !mayRemove(cl, old)) return;
    if (old) cl.members.delete(old.id);
    me = newMember(node, true);
    cl.members.set(me.id, me);
    node.disk.etcd = { cluster: node.disk.facts.clusterId, member: me.id };
    node.etcdState = starting(node, now);
  }
  if (me && e.state === 'waiting') node.etcdState = starting(node, now);
  if (node.etcdState.state === 'starting' && now >= node.etcdState.runningAt) {
    node.etcdState = { state: 'running', since: now };
    node.deadlines.kubelet = now + node.ms('kubelet');
    node.emit('talos.etcd.running');
  }
  if (me && me.learner && node.etcdState.state === 'running' && now >= me.promoteAt) me.learner = false;
  if (me) { me.hostname = node.hostname(); me.ip = node.ip(); }
}

// ------------------------------------------------------------------ the API's etcd calls
/** What apid checks before an etcd call: a control plane, an etcd client to the cluster. */
function client(node, apiName) {
  if (!node.isControlPlane()) fail(UNIMPLEMENTED, `${apiName} is only available on control plane nodes`);
  const cl = node.cluster();
  if (!cl || !members(cl).some(running)) fail(UNKNOWN, 'failed to create etcd client: context deadline exceeded');
  return cl;
}

/** The member of this node (Talos reads it from the local etcd Member resource). */
function localMember(node, wrap) {
  const me = memberOf(node);
  if (!me) fail(UNKNOWN, `${wrap}failed to get local etcd member ID: resource Members.etcd.talos.dev(etcd/local@undefined) doesn't exist`);
  return me;
}

/** MemberRemove with etcd's checks; `wrap` prefixes the message as Talos does. */
function remove(cl, m, wrap) {
  if (!leader(cl)) fail(UNKNOWN, `${wrap}failed to remove member ${m.id}: ${NO_LEADER}`);
  if (!mayRemove(cl, m)) fail(UNKNOWN, `${wrap}failed to remove member ${m.id}: ${NOT_ENOUGH_STARTED}`);
  cl.members.delete(m.id);
  if (cl.leader === m.id) cl.leader = null;
  leader(cl);
}

/** EtcdLeaveCluster: removes this node's member, stops etcd and deletes its data. */
function leave(node) {
  const cl = client(node, 'etcd leave');
  const wrap = 'failed to leave cluster: ';
  const me = memberOf(node);
  if (!me && node.disk.etcd) fail(UNKNOWN, `${wrap}failed to remove member ${node.disk.etcd.member}: ${MEMBER_NOT_FOUND}`);
  if (!me) localMember(node, wrap);
  remove(cl, me, wrap);
  node.disk.etcd = null;
  node.etcdState = { state: 'finished', since: Date.now() };
  node.svc.log(node, `left etcd (member ${me.id})`);
  node.emit('talos.etcd.left', { member: me.id });
  checkGone(node.svc, node.disk.facts.clusterId);
}

/** EtcdRemoveMemberByID: any member, e.g. a dead one; a running one's etcd fails from then on. */
function removeById(node, id) {
  const cl = client(node, 'etcd remove member');
  const m = cl.members.get(String(id));
  if (!m) fail(NOT_FOUND, `failed to remove member ${id}: ${MEMBER_NOT_FOUND}`);
  remove(cl, m, 'failed to remove member: ');
  const gone = m.node;
  if (gone) {
    if (gone.disk.etcd) gone.disk.etcd.removed = true;
    if (gone.etcdState) gone.etcdState = removedState();
    gone.svc.log(gone, `etcd member ${m.id} removed from the cluster`);
  }
  node.emit('talos.etcd.removed', { member: m.id, member_hostname: m.hostname });
  checkGone(node.svc, node.disk.facts.clusterId);
}

/** EtcdForfeitLeadership: hands leadership to another voter; the new leader's name, or "" when this one did not lead. */
function forfeit(node) {
  const cl = client(node, 'etcd forfeit leadership');
  const me = localMember(node, '');
  if (cl.members.size === 1) fail(UNKNOWN, 'failed to forfeit leadership: cannot forfeit leadership, only one member');
  const lead = leader(cl);
  if (!lead) fail(UNKNOWN, `failed to forfeit leadership: ${NO_LEADER}`);
  if (lead !== me) return '';
  const next = members(cl).find((m) => m !== me && !m.learner && running(m));
  if (!next) return '';
  cl.leader = next.id;
  return next.hostname;
}

// ------------------------------------------------------------------ data on the machines
/** The node's etcd data is gone (EPHEMERAL wiped, machine deleted): its member stays, dead. */
function dataGone(node) {
  const d = node.disk.etcd;
  node.disk.etcd = null;
  const cl = d && node.svc.clusters.get(d.cluster);
  if (!cl) return;
  for (const m of members(cl)) if (m.node === node) m.node = null;
  checkGone(node.svc, d.cluster);
}

/** A cluster with no machine left holding its data is gone. */
function checkGone(svc, id) {
  const cl = svc.clusters.get(id);
  if (!cl || !cl.bootstrapped) return;
  const holds = (n) => n.disk.etcd && !n.disk.etcd.removed && n.disk.etcd.cluster === id;
  if ([...svc.nodes.values()].some(holds)) return;
  cl.bootstrapped = false;
  cl.members.clear();
  cl.leader = null;
  svc.lab.emit('talos.cluster.gone', { service: 'talos', cluster_id: id });
}

/** The etcd service as ServiceList shows it (control planes). */
function service(node, svc, since) {
  const e = node.etcdState || { state: 'waiting', since };
  if (e.state === 'waiting') return svc('etcd', 'Preparing', false, 'Running pre state', e.since);
  if (e.state === 'starting') return svc('etcd', 'Running', false, 'Health check failed: context deadline exceeded', e.since);
  if (e.state === 'finished') return svc('etcd', 'Finished', false, 'Service finished successfully', e.since);
  if (e.state === 'failed') return svc('etcd', 'Waiting', false, e.message, e.since);
  if (!healthy(node)) return svc('etcd', 'Running', false, 'Health check failed: context deadline exceeded', e.since);
  return svc('etcd', 'Running', true, 'Health check successful', e.since);
}

/** The cluster as GET /talos/state shows it. */
function view(id, cl) {
  const lead = cl.bootstrapped ? leader(cl) : null;
  return {
    id, bootstrapped: cl.bootstrapped, leader: lead ? lead.hostname : null,
    members: members(cl).map((m) => ({ id: m.id, hostname: m.hostname, ip: m.ip, learner: m.learner,
      vmid: m.node ? m.node.vmid : null, started: running(m), dead: !m.node })),
  };
}

module.exports = {
  EtcdFailure, memberOf, leader, healthy, running, bootState, bootstrapCheck, bootstrap, advance,
  leave, removeById, forfeit, dataGone, checkGone, service, view,
};
