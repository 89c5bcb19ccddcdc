// Nodes and the pods bound to them, as the kubelets and
// kube-controller-manager's node lifecycle, node IPAM and pod GC
// controllers leave them.  The Talos fake (talos/kubernetes.js) drives the
// kubelets; a standalone API server's seeded nodes have kubelets that
// never stop.
//
//   kubeletUp(name, info)  a kubelet runs: registers its Node (labels,
//                          taints, pod CIDR), posts its status (Ready,
//                          addresses, capacity, nodeInfo), keeps the mirror
//                          pods of its static pods, starts the pods bound to
//                          it and finishes the ones being deleted once their
//                          grace period (x pod_grace_scale) is over
//   kubeletDown(name)      it stopped posting: after node_monitor_grace the
//                          conditions go Unknown ("Kubelet stopped posting
//                          node status."), the unreachable taints come and
//                          its pods turn NotReady
//   a deleted Node         registers again after node_register while its
//                          kubelet runs; pods bound to a Node that stays
//                          gone are deleted after pod_gc
//   spec.unschedulable     the node.kubernetes.io/unschedulable:NoSchedule taint
'use strict';
const crypto = require('crypto');
const { setCondition } = require('./controllers');

const NODE = '/nodes';
const POD = '/pods';
const KCM = 'kube-controller-manager';
const MIRROR = 'kubernetes.io/config.mirror';
const UNREACHABLE = 'node.kubernetes.io/unreachable';
const UNSCHEDULABLE = 'node.kubernetes.io/unschedulable';

const CONDITIONS = [
  ['MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'kubelet has sufficient memory available'],
  ['DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'kubelet has no disk pressure'],
  ['PIDPressure', 'False', 'KubeletHasSufficientPID', 'kubelet has sufficient PID available'],
  ['Ready', 'True', 'KubeletReady', 'kubelet is posting ready status'],
];

const hex = (s, n) => crypto.createHash('sha256').update(String(s)).digest('hex').slice(0, n);
const sameTaint = (a, b) => a.key === b.key && a.effect === b.effect;

class NodeLifecycle {
  constructor(cluster) {
    this.c = cluster;
    this.kubelets = new Map(); // node name -> {info, running, labels: keys it set, taints: the ones it set}
    this.cidrs = new Map(); // node name -> index of its pod CIDR
    this.pending = new Map(); // id -> timer
    cluster.store.listeners.push((ev) => this.onEvent(ev));
  }

  type(key) { return this.c.types.get(key); }

  /** Runs fn after the profile delay `key` (or ms), replacing a pending run with the same id. */
  schedule(id, key, fn) {
    this.cancel(id);
    const ms = typeof key === 'number' ? key : this.c.ms(key);
    this.pending.set(id, this.c.later(ms, () => { this.pending.delete(id); fn(); }));
  }

  cancel(id) {
    const t = this.pending.get(id);
    if (t) { clearTimeout(t); this.c.timers.delete(t); this.pending.delete(id); }
  }

  running(name) { const k = this.kubelets.get(name); return !!(k && k.running); }

  /** Names of the Node objects (what DaemonSets count). */
  names() { return this.c.list(this.type(NODE)).map((n) => n.metadata.name); }

  // ---------------------------------------------------------------- the kubelet's side
  /**
   * A kubelet runs (or its facts changed).  info: {address, labels, taints
   * ([{key, value?, effect}]), kubeletVersion, osImage, kernelVersion,
   * containerRuntimeVersion, cpu, memoryMiB, systemUUID, machineID, bootID,
   * podSubnet, staticPods (names)}.
   */
  kubeletUp(name, info) {
    const k = this.kubelets.get(name) || { labels: [], taints: [] };
    k.info = info;
    k.running = true;
    this.kubelets.set(name, k);
    this.cancel(`grace-${name}`);
    this.register(name);
    this.syncPods(name);
  }

  kubeletDown(name) {
    const k = this.kubelets.get(name);
    if (!k || !k.running) return;
    k.running = false;
    this.schedule(`grace-${name}`, 'node_monitor_grace', () => this.unreachable(name));
  }

  /** Creates the Node when missing, then writes labels, taints and status as kubelet and Talos do. */
  register(name) {
    const c = this.c;
    const rt = this.type(NODE);
    const k = this.kubelets.get(name);
    const info = k.info;
    const labels = { 'beta.kubernetes.io/arch': 'amd64', 'beta.kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64',
      'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', ...(info.labels || {}) };
    const taints = (info.taints || []).map((t) => ({ key: t.key, ...(t.value ? { value: t.value } : {}), effect: t.effect }));
    if (!c.get(rt, '', name)) {
      const cidr = this.podCidr(name, info.podSubnet);
      c.createInternal(rt, {
        metadata: { name, labels, annotations: { 'node.alpha.kubernetes.io/ttl': '0', 'volumes.kubernetes.io/controller-managed-attach-detach': 'true' } },
        spec: { ...(cidr ? { podCIDR: cidr, podCIDRs: [cidr] } : {}), ...(taints.length ? { taints } : {}) },
      }, 'kubelet');
    } else {
      c.write(rt, '', name, 'kubelet', (n) => {
        const l = { ...(n.metadata.labels || {}) };
        for (const key of k.labels) if (!(key in labels)) delete l[key];
        n.metadata.labels = { ...l, ...labels };
        const others = (n.spec.taints || []).filter((t) => !k.taints.some((x) => sameTaint(x, t)) && !taints.some((x) => sameTaint(x, t)));
        const all = [...taints, ...others];
        if (all.length) n.spec.taints = all; else delete n.spec.taints;
      }, { sub: '' });
    }
    k.labels = Object.keys(labels);
    k.taints = taints;
    c.write(rt, '', name, 'kubelet', (n) => { n.status = this.status(info, name, n.status); });
    this.reachable(name);
  }

  podCidr(name, subnet) {
    const m = /^(\d+)\.(\d+)\.0\.0\/16$/.exec(String(subnet || '10.244.0.0/16'));
    if (!m) return null;
    if (!this.cidrs.has(name)) this.cidrs.set(name, this.cidrs.size);
    return `${m[1]}.${m[2]}.${this.cidrs.get(name) % 256}.0/24`;
  }

  status(info, name, prev) {
    const now = this.c.now();
    const old = (prev && prev.conditions) || [];
    const conditions = CONDITIONS.map(([type, status, reason, message]) => {
      const was = old.find((x) => x.type === type);
      return { type, status, lastHeartbeatTime: now, lastTransitionTime: was && was.status === status ? was.lastTransitionTime : now, reason, message };
    });
    const kib = Math.round((info.memoryMiB || 2048) * 1024);
    const capacity = { cpu: String(info.cpu || 1), 'ephemeral-storage': '20414Mi', 'hugepages-1Gi': '0', 'hugepages-2Mi': '0',
      memory: `${kib}Ki`, pods: '110' };
    return {
      capacity, allocatable: { ...capacity, cpu: `${Math.max(1, (info.cpu || 1) * 1000 - 50)}m`, 'ephemeral-storage': '19532Mi',
        memory: `${Math.max(0, kib - 358400)}Ki` },
      conditions,
      addresses: [...(info.address ? [{ type: 'InternalIP', address: info.address }] : []), { type: 'Hostname', address: name }],
      daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
      nodeInfo: { machineID: info.machineID || hex(name, 32), systemUUID: info.systemUUID || '', bootID: info.bootID || '',
        kernelVersion: info.kernelVersion || '6.12.57-talos', osImage: info.osImage || 'Talos', containerRuntimeVersion:
        info.containerRuntimeVersion || 'containerd://2.1.5', kubeletVersion: info.kubeletVersion, kubeProxyVersion:
        info.kubeletVersion, operatingSystem: 'linux', architecture: 'amd64' },
    };
  }

  // ---------------------------------------------------------------- node lifecycle controller
  /** The kubelet stopped posting for node_monitor_grace: conditions Unknown, unreachable taints, pods NotReady. */
  unreachable(name) {
    const c = this.c;
    if (this.running(name)) return;
    const now = c.now();
    const n = c.write(this.type(NODE), '', name, KCM, (x) => {
      x.status.conditions = (x.status.conditions || []).map((cond) => ({ ...cond, status: 'Unknown',
        lastTransitionTime: cond.status === 'Unknown' ? cond.lastTransitionTime : now, reason: 'NodeStatusUnknown',
        message: 'Kubelet stopped posting node status.' }));
    });
    if (!n) return;
    c.write(this.type(NODE), '', name, KCM, (x) => {
      const taints = x.spec.taints || [];
      if (taints.some((t) => t.key === UNREACHABLE)) return false;
      x.spec.taints = [...taints, { key: UNREACHABLE, effect: 'NoSchedule', timeAdded: now }, { key: UNREACHABLE, effect: 'NoExecute', timeAdded: now }];
      return undefined;
    }, { sub: '' });
    for (const p of this.podsOn(name)) this.podReady(p, false, 'node-controller');
  }

  /** The kubelet posts again: the unreachable taints go. */
  reachable(name) {
    this.c.write(this.type(NODE), '', name, KCM, (x) => {
      const taints = x.spec.taints || [];
      if (!taints.some((t) => t.key === UNREACHABLE)) return false;
      const rest = taints.filter((t) => t.key !== UNREACHABLE);
      if (rest.length) x.spec.taints = rest; else delete x.spec.taints;
      return undefined;
    }, { sub: '' });
  }

  /** TaintNodesByCondition: a cordoned node gets the unschedulable taint, an uncordoned one loses it. */
  cordonTaint(name) {
    const c = this.c;
    c.write(this.type(NODE), '', name, KCM, (x) => {
      const taints = x.spec.taints || [];
      const has = taints.some((t) => t.key === UNSCHEDULABLE);
      if (!!x.spec.unschedulable === has) return false;
      const rest = taints.filter((t) => t.key !== UNSCHEDULABLE);
      const next = x.spec.unschedulable ? [...rest, { key: UNSCHEDULABLE, effect: 'NoSchedule', timeAdded: c.now() }] : rest;
      if (next.length) x.spec.taints = next; else delete x.spec.taints;
      return undefined;
    }, { sub: '' });
  }

  /** Talos's cordon and drain (graceful reset, upgrade): unschedulable, pods evicted but DaemonSet and mirror pods. */
  drain(name) {
    const c = this.c;
    c.write(this.type(NODE), '', name, 'talos', (x) => { if (x.spec.unschedulable) return false; x.spec.unschedulable = true; return undefined; }, { sub: '' });
    for (const p of this.podsOn(name)) {
      const daemon = (p.metadata.ownerReferences || []).some((r) => r.kind === 'DaemonSet');
      if (!daemon && !isMirror(p) && !p.metadata.deletionTimestamp) c.remove(this.type(POD), p, {});
    }
  }

  // ---------------------------------------------------------------- pods on the node
  podsOn(name) { return this.c.list(this.type(POD)).filter((p) => p.spec && p.spec.nodeName === name); }

  /** What the kubelet does for the pods bound to it: mirror pods, start, finish terminating ones. */
  syncPods(name) {
    if (!this.running(name) || !this.c.get(this.type(NODE), '', name)) return;
    for (const s of this.kubelets.get(name).info.staticPods || []) this.mirrorPod(name, s);
    for (const p of this.podsOn(name)) this.kubeletPod(p);
  }

  mirrorPod(node, component) {
    const c = this.c;
    const n = c.get(this.type(NODE), '', node);
    if (!n) return;
    const info = this.kubelets.get(node).info;
    const hash = hex(`${node}/${component}/${info.kubeletVersion}`, 32);
    c.createInternal(this.type(POD), {
      metadata: { name: `${component}-${node}`, namespace: 'kube-system', labels: { component, tier: 'control-plane', 'k8s-app': component },
        annotations: { [MIRROR]: hash, 'kubernetes.io/config.hash': hash, 'kubernetes.io/config.seen': c.now(), 'kubernetes.io/config.source': 'file' },
        ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: node, uid: n.metadata.uid, controller: true }] },
      spec: { nodeName: node, hostNetwork: true, priorityClassName: 'system-node-critical', priority: 2000001000,
        containers: [{ name: component, image: `registry.k8s.io/${component}:${info.kubeletVersion}` }] },
    }, 'kubelet');
  }

  /** A pod bound to a node whose kubelet runs: Running and Ready after pod_start; a terminating one goes after its grace. */
  kubeletPod(p) {
    const name = p.spec.nodeName;
    if (!this.running(name)) return;
    const uid = p.metadata.uid;
    if (p.metadata.deletionTimestamp) {
      if (this.pending.has(`finish-${uid}`)) return;
      this.cancel(`start-${uid}`);
      // the containers stop a share of the grace period after the deletion began
      const grace = (p.metadata.deletionGracePeriodSeconds || 0) * 1000;
      const due = Date.parse(p.metadata.deletionTimestamp) - grace + grace * this.c.profile.pod_grace_scale;
      this.schedule(`finish-${uid}`, Math.max(0, due - Date.now()), () => this.finish(p));
      return;
    }
    const st = p.status || {};
    const ready = (st.conditions || []).some((x) => x.type === 'Ready' && x.status === 'True');
    if (st.phase === 'Running' && ready) return;
    if (st.phase === 'Running') { this.podReady(p, true, 'kubelet'); return; }
    if (this.pending.has(`start-${uid}`)) return;
    this.schedule(`start-${uid}`, 'pod_start', () => this.startPod(p));
  }

  startPod(orig) {
    const c = this.c;
    const node = c.get(this.type(NODE), '', orig.spec.nodeName);
    if (!node || !this.running(orig.spec.nodeName)) return;
    const info = this.kubelets.get(orig.spec.nodeName).info;
    const now = c.now();
    c.write(this.type(POD), orig.metadata.namespace, orig.metadata.name, 'kubelet', (p) => {
      if (p.metadata.uid !== orig.metadata.uid || p.metadata.deletionTimestamp) return false;
      const cidr = (node.spec.podCIDR || '10.244.0.0/24').split('.');
      const ip = p.spec.hostNetwork ? info.address : `${cidr[0]}.${cidr[1]}.${cidr[2]}.${2 + (parseInt(hex(p.metadata.uid, 2), 16) % 250)}`;
      const ok = (type) => ({ type, status: 'True', lastProbeTime: null, lastTransitionTime: now });
      p.status = {
        phase: 'Running',
        conditions: ['PodReadyToStartContainers', 'Initialized', 'Ready', 'ContainersReady', 'PodScheduled'].map(ok),
        hostIP: info.address, hostIPs: [{ ip: info.address }], podIP: ip, podIPs: [{ ip }], startTime: now,
        containerStatuses: (p.spec.containers || []).map((x) => ({ name: x.name, state: { running: { startedAt: now } }, ready: true,
          restartCount: 0, image: x.image, imageID: '', containerID: `containerd://${hex(`${p.metadata.uid}/${x.name}`, 64)}`, started: true })),
        qosClass: 'BestEffort',
      };
      return undefined;
    });
  }

  podReady(p, ready, manager) {
    const now = this.c.now();
    this.c.write(this.type(POD), p.metadata.namespace, p.metadata.name, manager, (x) => {
      if (x.metadata.uid !== p.metadata.uid || !x.status || x.status.phase !== 'Running') return false;
      let conds = x.status.conditions || [];
      for (const type of ['Ready', 'ContainersReady']) {
        conds = setCondition(conds, { type, status: ready ? 'True' : 'False', lastProbeTime: null, lastTransitionTime: now });
      }
      x.status.conditions = conds;
      return undefined;
    });
  }

  /** The kubelet killed the containers: the pod object goes (the kubelet's delete with grace 0). */
  finish(p) {
    const cur = this.c.get(this.type(POD), p.metadata.namespace, p.metadata.name);
    if (!cur || cur.metadata.uid !== p.metadata.uid || !this.running(cur.spec.nodeName)) return;
    this.c.remove(this.type(POD), cur, { gracePeriodSeconds: 0 });
  }

  // ---------------------------------------------------------------- events
  onEvent(ev) {
    const o = ev.obj;
    if (ev.rt.key === NODE) {
      const name = o.metadata.name;
      if (ev.type === 'DELETED') {
        this.cancel(`grace-${name}`);
        this.schedule(`podgc-${name}`, 'pod_gc', () => this.collectPods(name));
        if (this.running(name)) this.schedule(`register-${name}`, 'node_register', () => this.reregister(name));
        return;
      }
      if (ev.type === 'ADDED') this.cancel(`podgc-${name}`);
      const has = (o.spec.taints || []).some((t) => t.key === UNSCHEDULABLE);
      if (!!o.spec.unschedulable !== has) this.schedule(`cordon-${name}`, 0, () => this.cordonTaint(name));
      return;
    }
    if (ev.rt.key !== POD) return;
    const node = o.spec && o.spec.nodeName;
    if (ev.type === 'DELETED') {
      this.cancel(`start-${o.metadata.uid}`);
      this.cancel(`finish-${o.metadata.uid}`);
      if (isMirror(o) && node && this.running(node)) this.schedule(`mirror-${o.metadata.name}`, 'pod_start', () => this.syncPods(node));
      return;
    }
    if (node) this.kubeletPod(o);
  }

  reregister(name) {
    if (!this.running(name) || this.c.get(this.type(NODE), '', name)) return;
    this.register(name);
    this.syncPods(name);
  }

  /** Pod GC: pods bound to a node that no longer exists are deleted at once. */
  collectPods(name) {
    if (this.c.get(this.type(NODE), '', name)) return;
    for (const p of this.podsOn(name)) this.c.remove(this.type(POD), p, { gracePeriodSeconds: 0 });
  }
}

function isMirror(p) { return !!(p.metadata.annotations && p.metadata.annotations[MIRROR]); }

module.exports = { NodeLifecycle, isMirror };
