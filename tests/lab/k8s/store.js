// The object store: what etcd plus the watch cache are for the apiserver.
// One global resourceVersion counter (a string on the wire), objects kept in
// key order (namespace/name, like etcd keys), an event history for watches
// from a resourceVersion (older than the history: 410 Expired), and the
// watchers, told about every write with the object before and after so
// selector changes turn into ADDED/DELETED as the watch cache does.
'use strict';
const { clone } = require('./fields');

class Store {
  constructor({ historySize }) {
    this.rv = 0;
    this.horizon = 0; // events at or below this resourceVersion are forgotten
    this.objects = new Map(); // rt.key -> Map(objKey -> object)
    this.events = [];
    this.watchers = new Set();
    this.historySize = historySize;
    this.listeners = []; // controllers: fn(event)
  }

  static objKey(ns, name) { return ns ? `${ns}/${name}` : name; }

  bucket(rt) {
    if (!this.objects.has(rt.key)) this.objects.set(rt.key, new Map());
    return this.objects.get(rt.key);
  }

  /** A copy of the stored object, or null. */
  get(rt, ns, name) {
    const o = this.bucket(rt).get(Store.objKey(rt.namespaced ? ns : '', name));
    return o ? clone(o) : null;
  }

  /** Copies of the objects of a type (one namespace or all), in key order. */
  list(rt, ns) {
    const out = [];
    for (const [k, o] of this.bucket(rt)) {
      if (rt.namespaced && ns && o.metadata.namespace !== ns) continue;
      out.push([k, o]);
    }
    out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return out.map(([k, o]) => ({ key: k, obj: clone(o) }));
  }

  count(rt) { return this.bucket(rt).size; }

  /** Stores obj (a new object or a new state), bumping the resourceVersion; returns a copy. */
  write(rt, obj, type) {
    const key = Store.objKey(rt.namespaced ? obj.metadata.namespace : '', obj.metadata.name);
    const b = this.bucket(rt);
    const prev = b.get(key) || null;
    const stored = clone(obj);
    stored.metadata.resourceVersion = String(++this.rv);
    if (type === 'DELETED') b.delete(key); else b.set(key, stored);
    this.record({ rv: this.rv, type: type || (prev ? 'MODIFIED' : 'ADDED'), rt, obj: stored, prev });
    return clone(stored);
  }

  remove(rt, obj) { return this.write(rt, obj, 'DELETED'); }

  /** Drops every object of a type (its CRD went away); watchers of it end. */
  dropType(rt) {
    this.objects.delete(rt.key);
    for (const w of [...this.watchers]) if (w.rt.key === rt.key) w.end();
  }

  record(ev) {
    this.events.push(ev);
    const max = Math.max(1, this.historySize());
    if (this.events.length > max) {
      const cut = this.events.splice(0, this.events.length - max);
      this.horizon = cut[cut.length - 1].rv;
    }
    for (const w of [...this.watchers]) if (w.rt.key === ev.rt.key) w.deliver(ev);
    for (const l of this.listeners) {
      try { l(ev); } catch (err) { process.stderr.write(`k8s controller: ${err.stack || err.message}\n`); }
    }
  }

  /** Forgets the event history: watches from any older resourceVersion get 410. */
  compact() { this.horizon = this.rv; this.events = []; }

  /** Events of a type after `rv`, or null when they are no longer known (410). */
  since(rt, rv) {
    if (rv < this.horizon) return null;
    return this.events.filter((e) => e.rv > rv && e.rt.key === rt.key);
  }

  /** For "too old resource version: N (M)": the watch cache's oldest-1. */
  oldest() { return this.events.length ? this.events[0].rv - 1 : this.horizon; }
}

module.exports = { Store };
