// Watches: newline-delimited JSON events on a chunked 200 answer, like the
// apiserver's watch cache.  resourceVersion "" or "0" starts with ADDED for
// every matching object, N replays the events after N (older than the
// event history: one ERROR event with a 410 Expired Status, as the watch
// cache answers); selectors turn changes that enter or leave the selection
// into ADDED/DELETED; timeoutSeconds ends the stream; allowWatchBookmarks
// adds BOOKMARK events, and sendInitialEvents=true ends the initial ADDED
// events with the k8s.io/initial-events-end bookmark.
'use strict';
const { E, status } = require('./status');

/**
 * Starts a watch; `out` is {head(code, headers), write(text), end(),
 * onClose(fn)}.  Throws an ApiError for bad parameters before anything is
 * written.
 */
function watch(ctx, out, { selector, served: serve, wrap }) {
  const c = ctx.cluster;
  const q = ctx.query;
  const match = selector(ctx);
  const inNs = (o) => !ctx.rt.namespaced || !ctx.ns || o.metadata.namespace === ctx.ns;
  const sel = (o) => !!o && inNs(o) && match(o);
  const bookmarks = q.allowWatchBookmarks === 'true' || q.allowWatchBookmarks === '1';
  const initial = q.sendInitialEvents === 'true';
  if (initial && (q.resourceVersionMatch !== 'NotOlderThan' || !bookmarks)) {
    throw E.invalid({ group: 'meta.k8s.io', kind: 'ListOptions' }, '', [{ type: 'FieldValueForbidden', field: 'sendInitialEvents',
      detail: 'sendInitialEvents is forbidden for watch unless allowWatchBookmarks=true and resourceVersionMatch=NotOlderThan' }]);
  }
  const rvText = q.resourceVersion || '';
  if (rvText && !/^\d+$/.test(rvText)) throw E.badRequest(`invalid resource version: strconv.ParseUint: parsing "${rvText}": invalid syntax`);
  const rv = rvText ? Number(rvText) : 0;
  let timeout = q.timeoutSeconds !== undefined ? Number(q.timeoutSeconds) : c.profile.watch_timeout;
  if (!(timeout >= 0)) timeout = c.profile.watch_timeout;

  out.head(200, { 'Content-Type': 'application/json' });
  let first = true;
  const served = (o) => { const x = serve(o); const w = wrap ? wrap(x, first) : x; first = false; return w; };
  const send = (type, object) => out.write(`${JSON.stringify({ type, object })}\n`);
  const bookmark = (annotations) => {
    const md = { resourceVersion: String(c.store.rv) };
    if (annotations) md.annotations = annotations;
    send('BOOKMARK', { kind: ctx.rt.kind, apiVersion: ctx.rt.group ? `${ctx.rt.group}/${ctx.version}` : ctx.version, metadata: md });
  };
  let done = false;
  const w = {
    rt: ctx.rt,
    deliver(ev) {
      if (done) return;
      const now = sel(ev.type === 'DELETED' ? null : ev.obj);
      const before = sel(ev.prev);
      if (ev.type === 'DELETED') { if (before) send('DELETED', served(ev.obj)); return; }
      if (now && before) send('MODIFIED', served(ev.obj));
      else if (now) send('ADDED', served(ev.obj));
      else if (before) send('DELETED', served(ev.obj));
    },
    end,
  };
  const timers = [];
  function end() {
    if (done) return;
    done = true;
    c.store.watchers.delete(w);
    for (const t of timers) { clearTimeout(t); clearInterval(t); }
    out.end();
  }

  if (!rvText || rvText === '0' || initial) {
    for (const e of c.store.list(ctx.rt, ctx.ns)) if (sel(e.obj)) send('ADDED', served(e.obj));
    if (initial) bookmark({ 'k8s.io/initial-events-end': 'true' });
  } else {
    const events = c.store.since(ctx.rt, rv);
    if (!events) {
      send('ERROR', status(410, 'Expired', `too old resource version: ${rv} (${c.store.oldest()})`));
      end();
      return;
    }
    for (const ev of events) w.deliver(ev);
  }
  c.store.watchers.add(w);
  out.onClose(end);
  timers.push(setTimeout(end, timeout * 1000));
  if (bookmarks) timers.push(setInterval(() => bookmark(), Math.max(0.05, c.profile.bookmark_interval) * 1000));
}

module.exports = { watch };
