-- DNS at Cloudflare: node and API records in a Cloudflare zone, the same
-- token for cert-manager's DNS-01 challenges (Let's Encrypt certificates
-- for services that are not reachable from the internet), and
-- external-dns keeping the records of Services and Ingresses.
--
-- The token needs Zone:Read and DNS:Edit on the zone:
--   export CLOUDFLARE_API_TOKEN=...   (or token = "file:~/.config/tlr/cloudflare-token")
return {
  name = "prod",

  talos = {
    version = "v1.11.6",
    extensions = { "siderolabs/qemu-guest-agent" },
  },

  kubernetes = { version = "1.34.1" },

  proxmox = {
    endpoint = "https://pve1.example.com:8006",
    user = "tlr@pve",
    password = "env:PVE_PASSWORD",
    fingerprint = "env:PVE_FINGERPRINT",
    vmid_base = 3000,
    hosts = {
      pve1 = {},
      pve2 = {},
      pve3 = {},
    },
  },

  network = {
    cidr = "10.10.0.0/24",
    gateway = "10.10.0.1",
    nameservers = { "1.1.1.1", "1.0.0.1" },
    vip = "10.10.0.10",
    vlan = 10,
  },

  nodes = {
    { name = "cp1", role = "controlplane", host = "pve1", ip = "10.10.0.11" },
    { name = "cp2", role = "controlplane", host = "pve2", ip = "10.10.0.12" },
    { name = "cp3", role = "controlplane", host = "pve3", ip = "10.10.0.13" },
    { name = "w1", role = "worker", host = "pve1", ip = "10.10.0.21" },
    { name = "w2", role = "worker", host = "pve2", ip = "10.10.0.22" },
    { name = "w3", role = "worker", host = "pve3", ip = "10.10.0.23" },
  },

  dns = {
    provider = "cloudflare",
    zone = "k8s.example.com",
    token = "env:CLOUDFLARE_API_TOKEN",
    ttl = 300,
  },

  apps = {
    metallb = { range = "10.10.0.192/27" },
    ingress = { controller = "traefik" },
    cert_manager = { email = "ops@example.com" }, -- DNS-01 with dns.token
    external_dns = { policy = "sync" },
    argocd = {
      repo = "https://github.com/example/platform.git",
      revision = "main",
      path = "clusters/prod",
      username = "git",
      password = "env:GITHUB_TOKEN",
    },
  },
}
