// Duration profile and behaviour knobs of the Kubernetes API fake (seconds
// unless named otherwise).  `realistic` follows what a small Talos cluster
// takes; `test` is near zero.  Change any key at run time through the control
// endpoint: PATCH /profile {"k8s": {"rollout": 2, "rollout_stuck": ["argocd/*"]}}.
// Pattern lists hold globs matched against "namespace/name" (cluster-scoped
// objects: "name").
'use strict';

const realistic = {
  request_latency: 0.005, // every API call
  crd_establish: 1, // CRD created -> NamesAccepted + Established
  crd_stuck: [], // CRDs (by name) that never become Established
  namespace_content: 0.2, // new namespace -> default ServiceAccount + kube-root-ca.crt
  namespace_delete: 2, // Terminating namespace: content removal, then the namespace goes
  rollout_start: 0.5, // Deployment/StatefulSet/DaemonSet (new generation) -> progressing status
  rollout: 15, // ... -> all replicas updated and available
  rollout_stuck: [], // workloads that stay progressing forever (never available)
  progress_deadline: [], // workloads whose rollout fails: Progressing=False ProgressDeadlineExceeded
  argo_needs_controller: true, // Applications progress only once a StatefulSet argocd-application-controller is ready
  argo_sync: 5, // Application -> Synced (operation Succeeded), health Progressing
  argo_health: 10, // Application -> Healthy
  argo_stuck: [], // Applications that stay OutOfSync/Missing
  argo_degraded: [], // Applications that sync but end Degraded
  argo_lb_health: true, // Applications with a LoadBalancer Service stay Progressing until it has an address (Argo CD's Service health)
  argo_admin_secret: 2, // argocd-server available -> argocd-initial-admin-secret (argocd-server's first start)
  issuer_needs_controller: true, // issuers become Ready only while a cert-manager controller Deployment is available
  issuer_ready: 3, // ClusterIssuer/Issuer (new generation) -> Ready (ACME: account key + registration)
  issuer_not_ready: [], // issuers that stay Ready=False (ACME registration fails; retried, so removing the glob heals them)
  gc: 0.1, // garbage collector: dependents of deleted owners, orphan/foreground finalizers
  webhook_not_ready: 20, // MetalLB validating webhooks fail for this long after their CRD is established
  webhook_not_ready_requests: 0, // ... and for this many MetalLB write requests
  lb_ip: 0.5, // LoadBalancer Service -> an address from a MetalLB IPAddressPool
  node_monitor_grace: 40, // a kubelet stopped posting -> its Node's conditions Unknown (node-monitor-grace-period)
  node_register: 10, // a deleted Node whose kubelet runs -> registered again (the kubelet's status loop)
  pod_gc: 40, // a Node gone for good -> the pods bound to it deleted (pod GC's quarantine)
  pod_start: 2, // a pod bound to a node with a running kubelet -> Running and Ready
  pod_grace_scale: 0.2, // a deleted pod goes after terminationGracePeriodSeconds x this (containers exit on SIGTERM)
  bookmark_interval: 60, // BOOKMARK events on watches that allow them
  watch_timeout: 1800, // watches without timeoutSeconds end after this long
  watch_cache: 5000, // events kept for watches from an old resourceVersion (older: 410 Expired)
  jitter: 0.2,
};

const test = {
  request_latency: 0,
  crd_establish: 0.02,
  crd_stuck: [],
  namespace_content: 0.01,
  namespace_delete: 0.05,
  rollout_start: 0.01,
  rollout: 0.1,
  rollout_stuck: [],
  progress_deadline: [],
  argo_needs_controller: true,
  argo_sync: 0.05,
  argo_health: 0.1,
  argo_stuck: [],
  argo_degraded: [],
  argo_lb_health: true,
  argo_admin_secret: 0.01,
  issuer_needs_controller: true,
  issuer_ready: 0.05,
  issuer_not_ready: [],
  gc: 0.01,
  webhook_not_ready: 0,
  webhook_not_ready_requests: 0,
  lb_ip: 0.01,
  node_monitor_grace: 0.3,
  node_register: 0.05,
  pod_gc: 0.1,
  pod_start: 0.01,
  pod_grace_scale: 0.001,
  bookmark_interval: 60,
  watch_timeout: 1800,
  watch_cache: 5000,
  jitter: 0,
};

module.exports = { test, realistic };
