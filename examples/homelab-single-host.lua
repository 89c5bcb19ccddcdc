-- A homelab on one Proxmox host: one control plane and two workers.
--
--   tlr plan recipes/cluster.lua examples/homelab-single-host.lua
--
-- One host means no high availability anyway, so a single control plane
-- (tlr warns about it, and says so again if you add a second one: use 1 or 3).
-- The API token lives in a file only you can read:
--
--   install -m 600 /dev/null ~/.config/tlr/pve-token
--   echo 'root@pam!tlr=<uuid>' > ~/.config/tlr/pve-token
--
-- and the certificate of the host is pinned by its fingerprint (Datacenter →
-- pve → System → Certificates, or `pvenode cert info`).
local net = "192.168.1."

local site = {
  name = "homelab",
  state_dir = "~/.local/state/tlr/homelab",

  talos = {
    version = "v1.11.6",
    extensions = { "siderolabs/qemu-guest-agent", "siderolabs/i915", "siderolabs/intel-ucode" },
  },

  proxmox = {
    endpoint = "https://pve.home.arpa:8006",
    token = "file:~/.config/tlr/pve-token",
    fingerprint = "env:PVE_FINGERPRINT",
    vmid_base = 700,
    hosts = {
      pve = { storages = { "local", "local-lvm", "nvme" }, disk_storage = "nvme" },
    },
  },

  network = {
    cidr = net .. "0/24",
    gateway = net .. "1",
    nameservers = { net .. "1" },
  },

  defaults = {
    worker = { cores = 4, memory = "12G", disk = 100 },
  },

  nodes = {
    { name = "talos-cp", role = "controlplane", ip = net .. "40", memory = "6G" },
  },

  apps = {
    metallb = { range = net .. "200-" .. net .. "220" },
    ingress = { ip = net .. "200" },
    cert_manager = { email = "me@example.org", cloudflare_token = "env:CLOUDFLARE_API_TOKEN" },
    argocd = { repo = "https://github.com/example/homelab-apps.git", path = "cluster" },
  },
}

-- workers talos-w1, talos-w2 at .41, .42 (the only host holds them all)
for i = 1, 2 do
  site.nodes[#site.nodes + 1] = {
    name = "talos-w" .. i, role = "worker", ip = net .. (40 + i),
    labels = { ["node.example.org/pool"] = "general" },
  }
end

return site
