-- Nodes on DHCP: no addresses in the site file.  Proxmox gives every VM a
-- stable MAC (derived from the cluster and node name, so a DHCP
-- reservation can be made once and holds across rebuilds), the VMs boot
-- with `ip=dhcp`, and tlr reads each node's address from the QEMU guest
-- agent, which is why the guest agent extension must be in the image (the
-- site is refused without it).
--
-- A VIP still needs a fixed address: it must be in the nodes' subnet, so
-- network.cidr is given, and outside the DHCP server's pool.
return {
  name = "dhcp-lab",

  talos = {
    version = "v1.12.4",
    extensions = { "siderolabs/qemu-guest-agent" },
  },

  proxmox = {
    endpoint = "env:PVE_ENDPOINT",
    token = "env:PVE_TOKEN",
    ca = "file:pve-root-ca.pem", -- next to this file: /etc/pve/pve-root-ca.pem from the host
    hosts = { "pve1", "pve2" },
  },

  network = {
    cidr = "10.20.0.0/24",
    vip = "10.20.0.5", -- outside the DHCP pool
  },

  nodes = {
    { name = "cp1", role = "controlplane", host = "pve1", ip = "dhcp" },
    { name = "cp2", role = "controlplane", host = "pve2", ip = "dhcp" },
    { name = "cp3", role = "controlplane", host = "pve1", ip = "dhcp" },
    -- a reservation made before tlr existed: keep that MAC
    { name = "w1", role = "worker", host = "pve2", ip = "dhcp", mac = "BC:24:11:5A:00:01" },
  },
}
