// /nodes/{node}/tasks: list, status, log, stop.  A UPID that does not parse
// answers 400 "unable to parse worker upid"; one that the node does not know
// (yet: right after the start) 400 "no such task", like pve-manager.
'use strict';
const { paramExc } = require('./state');
const { Tasks } = require('./tasks');
const { Reply } = require('./server');
const F = require('./formats');

const UPID_RE = /^UPID:([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8}):([^:\s]+):([^:\s]*):([^:\s]+):$/;

function findTask(ctx) {
  const { upid, node } = ctx.params;
  const m = UPID_RE.exec(upid);
  if (!m) paramExc({ upid: 'unable to parse worker upid' });
  const t = ctx.tasks.visible(upid);
  if (!t || t.node !== node || m[1] !== node) paramExc({ upid: 'no such task' });
  return t;
}

/** Tasks see their own tasks; Sys.Audit on the node sees all of them. */
function mayRead(ctx, t) {
  return t.user === ctx.user || t.user.split('!')[0] === ctx.auth.userid && ctx.auth.kind !== 'token'
    || ctx.can(`/nodes/${t.node}`, 'Sys.Audit');
}

function listTasks(ctx) {
  const { params, tasks } = ctx;
  ctx.cluster.node(params.node);
  const source = params.source || 'archive';
  const statusWanted = params.statusfilter ? F.splitList(params.statusfilter) : null;
  const list = tasks.list(params.node).slice().reverse()
    .filter((t) => mayRead(ctx, t))
    .filter((t) => source === 'all' || (source === 'active' ? t.status === 'running' : t.status !== 'running'))
    .filter((t) => params.vmid === undefined || t.id === String(params.vmid))
    .filter((t) => !params.typefilter || t.type === params.typefilter)
    .filter((t) => !params.userfilter || t.user.includes(params.userfilter))
    .filter((t) => !params.errors || (t.status === 'stopped' && !/^(OK|WARNINGS)/.test(t.exitstatus)))
    .filter((t) => params.since === undefined || t.starttime >= params.since)
    .filter((t) => params.until === undefined || t.starttime <= params.until)
    .filter((t) => {
      if (!statusWanted) return true;
      const kind = t.status === 'running' ? 'unknown' : t.exitstatus === 'OK' ? 'ok'
        : /^WARNINGS/.test(t.exitstatus) ? 'warning' : 'error';
      return statusWanted.includes(kind);
    });
  const start = params.start || 0;
  const limit = params.limit !== undefined ? params.limit : 50;
  return new Reply(list.slice(start, start + limit).map((t) => Tasks.view(t, true)), { total: list.length });
}

module.exports = (routes) => {
  routes['GET /nodes/{node}/tasks'] = listTasks;
  routes['GET /nodes/{node}/tasks/{upid}'] = (ctx) => { findTask(ctx); return [{ name: 'log' }, { name: 'status' }]; };
  routes['GET /nodes/{node}/tasks/{upid}/status'] = (ctx) => Tasks.view(findTask(ctx));
  routes['GET /nodes/{node}/tasks/{upid}/log'] = (ctx) => {
    const t = findTask(ctx);
    const start = ctx.params.start || 0;
    const limit = ctx.params.limit !== undefined ? ctx.params.limit : 50;
    const lines = t.log.length ? t.log : ['no content'];
    const page = lines.slice(start, start + limit).map((text, i) => ({ n: start + i + 1, t: text }));
    return new Reply(page, { total: lines.length });
  };
  routes['DELETE /nodes/{node}/tasks/{upid}'] = (ctx) => {
    const t = findTask(ctx);
    if (!mayRead(ctx, t)) ctx.check(`/nodes/${t.node}`, ['Sys.Modify']);
    ctx.tasks.abort(t.upid);
    return null;
  };
};
