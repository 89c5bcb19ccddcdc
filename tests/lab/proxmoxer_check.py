#!/usr/bin/python3
"""Cross-checks the lab's Proxmox fake with a real client, Debian's python3-proxmoxer.

    /usr/bin/python3 tests/lab/proxmoxer_check.py ENV_FILE

ENV_FILE is the env file a running lab wrote (tests/lab/lab.js --env ...).
Uses proxmoxer unchanged, with token auth and the lab's CA file for TLS
verification: lists nodes, asks nextid, creates a VM, waits for its task
(retrying the 400 "no such task" a fresh UPID answers), reads the config,
provokes two errors, then logs in with a password (ticket + CSRF token) and
writes the config.  Prints one JSON object.
"""
import json
import shlex
import sys
import time

from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException


def load_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, value = line.split("=", 1)
            env[key] = shlex.split(value)[0] if value else ""
    return env


def wait_task(api, node, upid, timeout=30):
    deadline = time.monotonic() + timeout
    polls_400 = 0
    while time.monotonic() < deadline:
        try:
            st = api.nodes(node).tasks(upid).status.get()
        except ResourceException as e:
            if e.status_code != 400:
                raise
            polls_400 += 1
            st = None
        if st and st["status"] == "stopped":
            return st, polls_400
        time.sleep(0.05)
    raise RuntimeError("task %s did not finish" % upid)


def main(argv):
    env = load_env(argv[1])
    user, rest = env["PVE_TOKEN"].split("!", 1)
    token_name, token_value = rest.split("=", 1)
    host, port, ca = env["PVE_HOST"], env["PVE_PORT"], env["PVE_CA_FILE"]
    api = ProxmoxAPI(host, port=port, user=user, token_name=token_name, token_value=token_value,
                     verify_ssl=ca, timeout=30)
    out = {"nodes": sorted(n["node"] for n in api.nodes.get())}
    out["version"] = api.version.get()["release"]
    vmid = int(api.cluster.nextid.get())
    out["vmid"] = vmid
    upid = api.nodes("pve1").qemu.create(
        vmid=vmid, name="proxmoxer", cores=2, memory=1024, net0="virtio,bridge=vmbr0",
        scsi0="local-lvm:1,discard=on", ide2="local-lvm:cloudinit", ipconfig0="ip=dhcp",
        agent="enabled=1", tags="px;check", onboot=1)
    out["upid"] = upid
    st, polls_400 = wait_task(api, "pve1", upid)
    out["exitstatus"] = st["exitstatus"]
    out["task_type"] = st["type"]
    cfg = api.nodes("pve1").qemu(vmid).config.get()
    out["config"] = {k: cfg.get(k) for k in ("name", "cores", "memory", "scsi0", "ide2", "net0", "tags", "onboot")}
    try:
        api.nodes("pve1").qemu(999999).config.get()
    except ResourceException as e:
        out["missing"] = {"status": e.status_code, "reason": e.content}
    try:
        api.nodes("pve1").qemu.create(vmid=vmid + 1, bios="uefi")
    except ResourceException as e:
        out["invalid"] = {"status": e.status_code, "reason": e.content}
    # password login: ticket cookie, CSRFPreventionToken on the write
    papi = ProxmoxAPI(host, port=port, user=env["PVE_USER"], password=env["PVE_PASSWORD"],
                      verify_ssl=ca, timeout=30)
    papi.nodes("pve1").qemu(vmid).config.put(description="written with a ticket")
    out["description"] = api.nodes("pve1").qemu(vmid).config.get()["description"]
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
