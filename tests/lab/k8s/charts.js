// What Argo CD leaves in the cluster when it syncs an Application of one of
// the Helm charts tlr installs: not a Helm renderer, a table per chart name
// of the objects the chart makes that tlr (or the fake's other controllers)
// depend on — CRDs, the workloads whose rollouts make the Application
// Healthy, Services, the IngressClass.  Names follow the charts' templates:
// `fullname` is Helm's usual helper (the release name when it contains the
// chart name, else "<release>-<chart>"; `fullnameOverride` wins), labels are
// the charts' `app.kubernetes.io/*` ones with `managed-by: Helm` (Argo CD
// renders with `helm template`).
//
//   metallb        CRDs metallb.io (ipaddresspools, l2advertisements, ...),
//                  Deployment <fullname>-controller, DaemonSet <fullname>-speaker,
//                  Service metallb-webhook-service
//   cert-manager   with crds.enabled (or installCRDs): CRDs cert-manager.io
//                  (certificates, certificaterequests, issuers, clusterissuers)
//                  and acme.cert-manager.io (orders, challenges); Deployments
//                  <fullname>, -cainjector, -webhook; Services <fullname>, -webhook
//   traefik        CRDs traefik.io (ingressroutes, middlewares, ...),
//                  Deployment and LoadBalancer Service <fullname> (values
//                  service.annotations / service.spec), IngressClass (values
//                  ingressClass.enabled / isDefaultClass / name)
//   external-dns   Deployment <fullname> with the chart's arguments from the
//                  values (sources, policy, registry, txtOwnerId,
//                  domainFilters, provider, extraArgs, env); Service <fullname>
//
// Another chart name renders nothing (the Application still syncs).
'use strict';
const YAML = require('yaml');

const CRD_KEY = 'apiextensions.k8s.io/customresourcedefinitions';
const PRESERVE = { type: 'object', 'x-kubernetes-preserve-unknown-fields': true };
const AGE = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' };
const READY = (extra = []) => [
  { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type == "Ready")].status' },
  ...extra,
  { name: 'Status', type: 'string', priority: 1, jsonPath: '.status.conditions[?(@.type == "Ready")].message' },
  AGE,
];

/**
 * A CRD as a chart ships it, with a structural schema that keeps spec and
 * status (unknown fields below them are preserved, others pruned).
 * versions: [[name, storage?]] (default [[version, true]]).
 */
function crd(group, kind, plural, scope, o = {}) {
  const versions = (o.versions || [[o.version || 'v1', true]]).map(([name, storage]) => ({
    name, served: true, storage: !!storage,
    schema: { openAPIV3Schema: { type: 'object', properties: { spec: PRESERVE, status: PRESERVE } } },
    subresources: o.status === false ? undefined : { status: {} },
    additionalPrinterColumns: o.columns,
  }));
  const names = { kind, listKind: `${kind}List`, plural, singular: kind.toLowerCase() };
  if (o.shortNames) names.shortNames = o.shortNames;
  if (o.categories) names.categories = o.categories;
  return { metadata: { name: `${plural}.${group}`, labels: o.labels }, spec: { group, names, scope, versions } };
}

// ------------------------------------------------------------------ MetalLB
// metallb/metallb charts/metallb/charts/crds (v0.14/v0.15): all namespaced, v1beta1
// (BGPPeer also v1beta2, its storage version).
const METALLB_CRDS = [
  crd('metallb.io', 'BFDProfile', 'bfdprofiles', 'Namespaced', { version: 'v1beta1', status: false }),
  crd('metallb.io', 'BGPAdvertisement', 'bgpadvertisements', 'Namespaced', { version: 'v1beta1', status: false }),
  crd('metallb.io', 'BGPPeer', 'bgppeers', 'Namespaced', { versions: [['v1beta1'], ['v1beta2', true]], status: false }),
  crd('metallb.io', 'Community', 'communities', 'Namespaced', { version: 'v1beta1', status: false }),
  crd('metallb.io', 'IPAddressPool', 'ipaddresspools', 'Namespaced', { version: 'v1beta1', columns: [
    { name: 'Auto Assign', type: 'boolean', jsonPath: '.spec.autoAssign' },
    { name: 'Avoid Buggy IPs', type: 'boolean', jsonPath: '.spec.avoidBuggyIPs' },
    { name: 'Addresses', type: 'string', jsonPath: '.spec.addresses' }, AGE] }),
  crd('metallb.io', 'L2Advertisement', 'l2advertisements', 'Namespaced', { version: 'v1beta1', status: false, columns: [
    { name: 'IPAddressPools', type: 'string', jsonPath: '.spec.ipAddressPools' },
    { name: 'IPAddressPool Selectors', type: 'string', jsonPath: '.spec.ipAddressPoolSelectors' },
    { name: 'Interfaces', type: 'string', jsonPath: '.spec.interfaces' }, AGE] }),
  crd('metallb.io', 'ServiceL2Status', 'servicel2statuses', 'Namespaced', { version: 'v1beta1' }),
];

// ------------------------------------------------------------------ cert-manager
// cert-manager/cert-manager deploy/crds (cert-manager.io/v1, acme.cert-manager.io/v1).
const CM = { categories: ['cert-manager'] };
const CM_ACME = { categories: ['cert-manager', 'cert-manager-acme'] };
const CERT_MANAGER_CRDS = [
  crd('cert-manager.io', 'CertificateRequest', 'certificaterequests', 'Namespaced', { ...CM, shortNames: ['cr', 'crs'],
    columns: READY([{ name: 'Issuer', type: 'string', jsonPath: '.spec.issuerRef.name' }]) }),
  crd('cert-manager.io', 'Certificate', 'certificates', 'Namespaced', { ...CM, shortNames: ['cert', 'certs'],
    columns: READY([{ name: 'Secret', type: 'string', jsonPath: '.spec.secretName' }]) }),
  crd('cert-manager.io', 'ClusterIssuer', 'clusterissuers', 'Cluster', { ...CM, shortNames: ['ciss'], columns: READY() }),
  crd('cert-manager.io', 'Issuer', 'issuers', 'Namespaced', { ...CM, shortNames: ['iss'], columns: READY() }),
  crd('acme.cert-manager.io', 'Challenge', 'challenges', 'Namespaced', { ...CM_ACME, columns: [
    { name: 'State', type: 'string', jsonPath: '.status.state' }, { name: 'Domain', type: 'string', jsonPath: '.spec.dnsName' }, AGE] }),
  crd('acme.cert-manager.io', 'Order', 'orders', 'Namespaced', { ...CM_ACME, columns: [
    { name: 'State', type: 'string', jsonPath: '.status.state' }, AGE] }),
];

// traefik/traefik-helm-chart traefik/crds (traefik.io/v1alpha1, namespaced).
const TRAEFIK_CRDS = [
  ['IngressRoute', 'ingressroutes'], ['IngressRouteTCP', 'ingressroutetcps'], ['IngressRouteUDP', 'ingressrouteudps'],
  ['Middleware', 'middlewares'], ['MiddlewareTCP', 'middlewaretcps'], ['ServersTransport', 'serverstransports'],
  ['ServersTransportTCP', 'serverstransporttcps'], ['TLSOption', 'tlsoptions'], ['TLSStore', 'tlsstores'],
  ['TraefikService', 'traefikservices'],
].map(([kind, plural]) => crd('traefik.io', kind, plural, 'Namespaced', { version: 'v1alpha1', status: false }));

const dig = (o, path) => path.split('.').reduce((x, k) => (x && typeof x === 'object' ? x[k] : undefined), o);

/**
 * The charts.  Per chart name: appVersion(chart version) -> image tag (null
 * when it cannot be told from the chart version), crds(values), and the
 * workloads/services/extra objects of a render context r = {release,
 * fullname, namespace, values, tag}.
 */
const CHARTS = {
  metallb: {
    appVersion: (v) => `v${v.replace(/^v/, '')}`,
    crds: () => METALLB_CRDS,
    workloads: (r) => [
      { kind: 'Deployment', name: `${r.fullname}-controller`, component: 'controller', image: 'quay.io/metallb/controller',
        args: ['--port=7472', '--log-level=info', '--tls-min-version=VersionTLS12'] },
      ...(dig(r.values, 'speaker.enabled') === false ? [] : [{ kind: 'DaemonSet', name: `${r.fullname}-speaker`,
        component: 'speaker', image: 'quay.io/metallb/speaker', args: ['--port=7472', '--log-level=info'], hostNetwork: true }]),
    ],
    services: () => [{ name: 'metallb-webhook-service', component: 'controller', ports: [{ port: 443, targetPort: 9443 }] }],
  },

  'cert-manager': {
    appVersion: (v) => `v${v.replace(/^v/, '')}`,
    crds: (values) => (dig(values, 'crds.enabled') === true || values.installCRDs === true ? CERT_MANAGER_CRDS : []),
    workloads: (r) => [
      { kind: 'Deployment', name: r.fullname, component: 'controller', app: 'cert-manager',
        image: 'quay.io/jetstack/cert-manager-controller', replicas: r.values.replicaCount,
        args: ['--v=2', '--cluster-resource-namespace=$(POD_NAMESPACE)', '--leader-election-namespace=kube-system',
          '--max-concurrent-challenges=60'] },
      { kind: 'Deployment', name: `${r.fullname}-cainjector`, component: 'cainjector', app: 'cainjector',
        image: 'quay.io/jetstack/cert-manager-cainjector', args: ['--v=2', '--leader-election-namespace=kube-system'] },
      { kind: 'Deployment', name: `${r.fullname}-webhook`, component: 'webhook', app: 'webhook',
        image: 'quay.io/jetstack/cert-manager-webhook', args: ['--v=2', '--secure-port=10250',
          `--dynamic-serving-ca-secret-namespace=$(POD_NAMESPACE)`, `--dynamic-serving-ca-secret-name=${r.fullname}-webhook-ca`] },
    ],
    services: (r) => [
      { name: r.fullname, component: 'controller', app: 'cert-manager',
        ports: [{ name: 'tcp-prometheus-servicemonitor', port: 9402, targetPort: 'http-metrics' }] },
      { name: `${r.fullname}-webhook`, component: 'webhook', app: 'webhook', ports: [{ name: 'https', port: 443, targetPort: 'https' }] },
    ],
  },

  traefik: {
    appVersion: () => null, // the chart's version says nothing about Traefik's
    instance: (r) => `${r.release}-${r.namespace}`,
    crds: () => TRAEFIK_CRDS, // the chart's crds/ directory, which Argo CD applies
    workloads: (r) => [{ kind: 'Deployment', name: r.fullname, image: 'docker.io/traefik',
      replicas: dig(r.values, 'deployment.replicas'), args: [
        '--entryPoints.metrics.address=:9100/tcp', '--entryPoints.traefik.address=:8080/tcp',
        '--entryPoints.web.address=:8000/tcp', '--entryPoints.websecure.address=:8443/tcp',
        '--api.dashboard=true', '--ping=true', '--providers.kubernetescrd', '--providers.kubernetesingress',
        ...(dig(r.values, 'providers.kubernetesIngress.publishedService.enabled')
          ? [`--providers.kubernetesingress.ingressendpoint.publishedservice=${r.namespace}/${r.fullname}`] : []),
        '--entryPoints.websecure.http.tls=true', ...(r.values.additionalArguments || [])] }],
    services: (r) => (dig(r.values, 'service.enabled') === false ? [] : [{ name: r.fullname,
      type: dig(r.values, 'service.type') || 'LoadBalancer', annotations: dig(r.values, 'service.annotations'),
      spec: dig(r.values, 'service.spec'),
      ports: [{ name: 'web', port: 80, targetPort: 'web' }, { name: 'websecure', port: 443, targetPort: 'websecure' }] }]),
    extra: (r) => (dig(r.values, 'ingressClass.enabled') === false ? [] : [['networking.k8s.io/ingressclasses', {
      metadata: { name: dig(r.values, 'ingressClass.name') || r.fullname,
        annotations: dig(r.values, 'ingressClass.isDefaultClass') === false ? undefined
          : { 'ingressclass.kubernetes.io/is-default-class': 'true' } },
      spec: { controller: 'traefik.io/ingress-controller' } }]]),
  },

  'external-dns': {
    // kubernetes-sigs/external-dns charts/external-dns/Chart.yaml: chart 1.21.1 is app v0.21.0
    appVersion: (v) => ({ '1.21.1': 'v0.21.0' }[v] || null),
    workloads: (r) => {
      const v = r.values;
      const provider = typeof v.provider === 'string' ? v.provider : dig(v, 'provider.name') || 'aws';
      const registry = v.registry || 'txt';
      const args = [`--log-level=${v.logLevel || 'info'}`, `--log-format=${v.logFormat || 'text'}`,
        `--interval=${v.interval || '1m'}`, ...(v.sources || ['service', 'ingress']).map((s) => `--source=${s}`),
        `--policy=${v.policy || 'upsert-only'}`, `--registry=${registry}`];
      if (registry === 'txt' && v.txtOwnerId) args.push(`--txt-owner-id=${v.txtOwnerId}`);
      if (registry === 'txt' && v.txtPrefix) args.push(`--txt-prefix=${v.txtPrefix}`);
      for (const d of v.domainFilters || []) args.push(`--domain-filter=${d}`);
      args.push(`--provider=${provider}`, ...(v.extraArgs || []));
      return [{ kind: 'Deployment', name: r.fullname, image: 'registry.k8s.io/external-dns/external-dns', args, env: v.env }];
    },
    services: (r) => [{ name: r.fullname, ports: [{ name: 'http', port: 7979, targetPort: 'http' }] }],
  },
};

/** The Helm values of an Application source: `values` (YAML text) with `valuesObject` over it. */
function valuesOf(helm) {
  let out = {};
  if (typeof helm.values === 'string' && helm.values.trim()) {
    try { out = YAML.parse(helm.values) || {}; } catch { out = {}; }
  }
  const merge = (a, b) => {
    for (const [k, x] of Object.entries(b || {})) {
      if (x && typeof x === 'object' && !Array.isArray(x) && a[k] && typeof a[k] === 'object' && !Array.isArray(a[k])) merge(a[k], x);
      else a[k] = x;
    }
    return a;
  };
  return merge(out, helm.valuesObject || {});
}

const clean = (o) => JSON.parse(JSON.stringify(o)); // drops undefined

/**
 * The objects syncing Application `app` creates, in Argo CD's sync order
 * (CRDs, Services, DaemonSets, Deployments, the rest): [[typeKey, object]]
 * without apiVersion/kind, or null when the chart is not in the table.
 */
function render(app) {
  const spec = app.spec || {};
  const src = spec.source || (spec.sources || [])[0] || {};
  const chart = CHARTS[src.chart];
  if (!chart) return null;
  const helm = src.helm || {};
  const values = valuesOf(helm);
  const release = helm.releaseName || app.metadata.name;
  const namespace = (spec.destination || {}).namespace || app.metadata.namespace;
  const name = values.nameOverride || src.chart;
  const fullname = values.fullnameOverride || (release.includes(name) ? release : `${release}-${name}`);
  const version = String(src.targetRevision || '');
  const appVersion = chart.appVersion(version);
  const r = { release, fullname, namespace, values, tag: dig(values, 'image.tag') || appVersion };
  const instance = chart.instance ? chart.instance(r) : release;
  const labels = (component, appName) => clean({
    'app.kubernetes.io/name': appName || src.chart, 'app.kubernetes.io/instance': instance,
    'app.kubernetes.io/component': component, 'app.kubernetes.io/version': appVersion || undefined,
    'app.kubernetes.io/managed-by': 'Helm', 'helm.sh/chart': `${src.chart}-${version}`,
  });
  const selector = (component, appName) => clean({ 'app.kubernetes.io/name': appName || src.chart,
    'app.kubernetes.io/instance': instance, 'app.kubernetes.io/component': component });
  const out = [];
  for (const c of (chart.crds ? chart.crds(values) : [])) {
    const o = clean(c);
    o.metadata.labels = labels('crds');
    out.push([CRD_KEY, o]);
  }
  for (const s of (chart.services ? chart.services(r) : [])) {
    out.push(['/services', clean({
      metadata: { name: s.name, namespace, labels: labels(s.component, s.app), annotations: s.annotations },
      spec: { ...(s.spec || {}), type: s.type || 'ClusterIP', selector: selector(s.component, s.app),
        ports: s.ports.map((p) => ({ protocol: 'TCP', ...p })) },
    })]);
  }
  const workloads = chart.workloads ? chart.workloads(r) : [];
  workloads.sort((a, b) => (a.kind === b.kind ? 0 : a.kind === 'DaemonSet' ? -1 : 1));
  for (const w of workloads) {
    const container = { name: w.component || src.chart, image: r.tag ? `${w.image}:${r.tag}` : w.image,
      args: w.args, env: w.env && w.env.length ? w.env : undefined };
    out.push([w.kind === 'DaemonSet' ? 'apps/daemonsets' : 'apps/deployments', clean({
      metadata: { name: w.name, namespace, labels: labels(w.component, w.app) },
      spec: { replicas: w.kind === 'Deployment' ? w.replicas ?? 1 : undefined,
        selector: { matchLabels: selector(w.component, w.app) },
        template: { metadata: { labels: labels(w.component, w.app) },
          spec: { serviceAccountName: w.name, hostNetwork: w.hostNetwork, containers: [container] } } },
    })]);
  }
  for (const [key, o] of (chart.extra ? chart.extra(r) : [])) {
    const x = clean(o);
    x.metadata.labels = { ...labels(), ...(x.metadata.labels || {}) };
    out.push([key, x]);
  }
  return out;
}

module.exports = { CHARTS, render, valuesOf };
