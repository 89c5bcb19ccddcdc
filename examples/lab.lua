-- The lab site: what `make demo` deploys on the lab started by `make lab`.
--
--   make lab && set -a && . build/lab/env && set +a && build/tlr run recipes/cluster.lua examples/lab.lua
--
-- 3 control planes and 2 workers spread over the lab's three Proxmox hosts
-- (pve1..pve3, one API endpoint as in a real PVE cluster), static addresses
-- in the lab net 127.77.0.0/24, a VIP for the Kubernetes API, DNS records
-- in the lab's BIND through RFC 2136 updates signed with its TSIG key, and
-- the core apps with a MetalLB pool.  Everything that changes per lab start
-- (ports, tokens, the certificate fingerprint, the TSIG secret) comes from
-- build/lab/env through env: references; nothing secret is in this file.
-- The addresses assume the default lab net (`make lab LAB_NET=127.77`).
return {
  name = "lab",

  talos = {
    version = "v1.11.6",
    extensions = { "siderolabs/qemu-guest-agent" },
    factory = "env:FACTORY_URL", -- the lab's Image Factory fake
  },

  kubernetes = {
    version = "1.34.1",
  },

  proxmox = {
    endpoint = "env:PVE_ENDPOINT",
    token = "env:PVE_TOKEN",             -- root@pam!tlr=<uuid>
    fingerprint = "env:PVE_FINGERPRINT", -- pins the lab's self-signed certificate
    vmid_base = 801,                     -- cp1 = 801 ... w2 = 805
    hosts = {
      pve1 = { storages = { "local", "local-lvm" } },
      pve2 = { storages = { "local", "local-lvm" } },
      pve3 = { storages = { "local", "local-lvm" } },
    },
  },

  network = {
    cidr = "127.77.0.0/24",
    gateway = "127.77.0.1",
    nameservers = { "127.77.53.53" }, -- the lab's BIND
    vip = "127.77.0.10",
  },

  defaults = {
    controlplane = { cores = 2, memory = "4G", disk = 20 },
    worker = { cores = 2, memory = "4G", disk = 20 },
  },

  nodes = {
    { name = "cp1", role = "controlplane", host = "pve1", ip = "127.77.0.11" },
    { name = "cp2", role = "controlplane", host = "pve2", ip = "127.77.0.12" },
    { name = "cp3", role = "controlplane", host = "pve3", ip = "127.77.0.13" },
    { name = "w1", role = "worker", host = "pve1", ip = "127.77.0.21" },
    { name = "w2", role = "worker", host = "pve2", ip = "127.77.0.22" },
  },

  dns = {
    provider = "rfc2136",
    zone = "env:DNS_ZONE", -- lab.test
    server = "env:DNS_SERVER",
    port = "env:DNS_PORT",
    key_name = "env:DNS_KEY_NAME",
    key_algorithm = "env:DNS_KEY_ALGORITHM",
    key_secret = "env:DNS_KEY_SECRET",
    ttl = 60,
  },

  apps = {
    metallb = { range = "127.77.0.100-127.77.0.120" },
    ingress = { controller = "traefik", ip = "127.77.0.100" },
    cert_manager = { email = "admin@lab.test", cloudflare_token = "env:CLOUDFLARE_TOKEN", staging = true },
    external_dns = { sources = { "service", "ingress" } },
    argocd = { repo = "https://git.lab.test/platform/apps.git", path = "apps",
      manifest = "tests/fixtures/argocd/install.yaml" }, -- the lab has no internet: a local install.yaml
  },
}
