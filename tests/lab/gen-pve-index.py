#!/usr/bin/env python3
"""Builds tests/lab/pve-api-index.json from the real Proxmox VE API schema.

    python3 tests/lab/gen-pve-index.py [SCHEMA.json] [OUT.json]

SCHEMA defaults to ../shared/schemas/pve-apischema.json (relative to the repo
root: the api-viewer dump of PVE 9.1, see shared/reference/proxmox.md §4); OUT
defaults to pve-api-index.json beside this script.  The output is committed,
so a fresh clone needs no ../shared.

The index is the schema without descriptions, in the shape the lab's Proxmox
fake (tests/lab/pve/schema.js) validates requests with:

  {"source": {...}, "formats": {"F0": {key: param}, ...},
   "paths": {"/nodes/{node}/qemu": {"POST": endpoint}, ...}}

  endpoint: {"name", "allowtoken", "protected"?, "proxyto"?, "returns"?,
             "permissions"? {"check"?, "user"?}, "additional"?, "params": {name: param}}
  param:    {"type", "optional"?, "enum"?, "pattern"?, "format"?, "format_name"?,
             "minimum"?, "maximum"?, "minLength"?, "maxLength"?, "default"?,
             "requires"?, "n_max"?, "items"?, "typetext"?}

- Indexed parameters keep the dump's "net[n]" names; "n_max" is the largest
  index qemu-server accepts (from its sources, else from "(n is 0 to N)").
- Property-string formats inlined in the dump ("format": {...}) are moved to
  "formats" and referenced as "format": "@F<i>" (deduplicated).  Named
  property-string formats that the dump leaves as a name (pve-qm-ipconfig,
  pve-qm-smbios1, pve-vm-cpu-conf, pve-qm-boot, pve-qm-cicustom) get the
  sub-schema qemu-server defines, written out below; other named formats whose
  typetext shows keys get a sub-schema derived from the typetext (keys and
  simple value types only).  "format_name" keeps the original name.
- Perl patterns are kept as Perl wrote them ("(?^i:...)"); the fake converts.
- A few values the dump lost are restored (OVERRIDES): download-url's
  compression enum is null in the dump, it is gz|lzo|zst|bz2 in pve-storage.
"""
import hashlib
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_SCHEMA = os.path.join(REPO, "..", "shared", "schemas", "pve-apischema.json")
DEFAULT_OUT = os.path.join(HERE, "pve-api-index.json")

# Largest index + 1 for "[n]" parameters (qemu-server QemuServer.pm, Drive.pm, ...).
INDEX_LIMITS = {
    "net": 32, "ipconfig": 32, "serial": 4, "parallel": 3, "ide": 4, "scsi": 31,
    "virtio": 16, "sata": 6, "unused": 256, "numa": 8, "hostpci": 16, "usb": 14,
    "virtiofs": 10,
}

PARAM_KEYS = ("type", "enum", "pattern", "minimum", "maximum", "minLength", "maxLength",
              "default", "requires")

B64 = r"[A-Za-z0-9+\/]+={0,2}"
# Named property-string formats the dump does not expand (qemu-server sources).
NAMED = {
    "pve-qm-ipconfig": {
        "ip": {"type": "string", "format": "pve-ipv4-config", "optional": 1},
        "gw": {"type": "string", "format": "ipv4", "optional": 1},
        "ip6": {"type": "string", "format": "pve-ipv6-config", "optional": 1},
        "gw6": {"type": "string", "format": "ipv6", "optional": 1},
    },
    "pve-qm-smbios1": {
        "uuid": {"type": "string", "optional": 1,
                 "pattern": "[a-fA-F0-9]{8}(?:-[a-fA-F0-9]{4}){3}-[a-fA-F0-9]{12}"},
        "version": {"type": "string", "optional": 1, "pattern": B64},
        "serial": {"type": "string", "optional": 1, "pattern": B64},
        "manufacturer": {"type": "string", "optional": 1, "pattern": B64},
        "product": {"type": "string", "optional": 1, "pattern": B64},
        "sku": {"type": "string", "optional": 1, "pattern": B64},
        "family": {"type": "string", "optional": 1, "pattern": B64},
        "base64": {"type": "boolean", "optional": 1},
    },
    "pve-vm-cpu-conf": {
        "cputype": {"type": "string", "optional": 1, "default_key": 1, "format": "pve-cpu-type",
                    "default": "kvm64"},
        "flags": {"type": "string", "optional": 1,
                  "pattern": r"(?:[+-][a-zA-Z0-9\-_\.]+;)*[+-][a-zA-Z0-9\-_\.]+"},
        "hidden": {"type": "boolean", "optional": 1},
        "hv-vendor-id": {"type": "string", "optional": 1, "pattern": r"[a-zA-Z0-9]{1,12}"},
        "phys-bits": {"type": "string", "optional": 1, "pattern": r"(?:[0-9]+|host)"},
        "guest-phys-bits": {"type": "integer", "optional": 1, "minimum": 32, "maximum": 64},
        "reported-model": {"type": "string", "optional": 1},
    },
    "pve-qm-boot": {
        "legacy": {"type": "string", "optional": 1, "default_key": 1, "pattern": "[acdn]{1,4}"},
        "order": {"type": "string", "optional": 1, "format": "pve-qm-bootdev-list"},
    },
    "pve-qm-cicustom": {
        "meta": {"type": "string", "optional": 1, "format": "pve-volume-id"},
        "network": {"type": "string", "optional": 1, "format": "pve-volume-id"},
        "user": {"type": "string", "optional": 1, "format": "pve-volume-id"},
        "vendor": {"type": "string", "optional": 1, "format": "pve-volume-id"},
    },
}

OVERRIDES = {
    ("POST", "/nodes/{node}/storage/{storage}/download-url", "compression"):
        {"enum": ["gz", "lzo", "zst", "bz2"]},
}


def is_optional(pd):
    return pd.get("optional") not in (None, 0, "0", False, "")


class Builder:
    def __init__(self):
        self.formats = {}
        self.by_hash = {}

    def add_format(self, fmt):
        text = json.dumps(fmt, sort_keys=True, separators=(",", ":"))
        h = hashlib.sha1(text.encode()).hexdigest()
        if h not in self.by_hash:
            fid = "F%d" % len(self.by_hash)
            self.by_hash[h] = fid
            self.formats[fid] = fmt
        return "@" + self.by_hash[h]

    def sub_schema(self, fmt):
        out = {}
        for k, sd in sorted(fmt.items()):
            if sd.get("alias"):
                out[k] = {"alias": sd["alias"]}
                if sd.get("keyAlias"):
                    out[k]["keyAlias"] = sd["keyAlias"]
                continue
            out[k] = self.param(sd, None)
            if sd.get("default_key"):
                out[k]["default_key"] = 1
        return out

    def param(self, pd, name):
        out = {}
        for k in PARAM_KEYS:
            if k in pd and pd[k] is not None:
                out[k] = pd[k]
        # keep defaults that are values, not prose ("clone limit from datacenter ...")
        d = out.get("default")
        if isinstance(d, str) and (len(d) > 40 or " " in d):
            del out["default"]
        t = out.get("type")
        if isinstance(t, list):
            out["type"] = t[0]
        out.setdefault("type", "string")
        if is_optional(pd):
            out["optional"] = 1
        fmt = pd.get("format")
        if isinstance(fmt, dict):
            out["format"] = self.add_format(self.sub_schema(fmt))
        elif isinstance(fmt, str):
            tt = pd.get("typetext") or ""
            if fmt in NAMED:
                out["format"] = self.add_format(self.sub_schema(NAMED[fmt]))
                out["format_name"] = fmt
            elif "=" in tt and not fmt.endswith("-list"):
                out["format"] = self.add_format(derive_from_typetext(tt))
                out["format_name"] = fmt
            else:
                out["format"] = fmt
        if isinstance(pd.get("items"), dict):
            it = {k: v for k, v in pd["items"].items() if k in PARAM_KEYS or k == "format"}
            if isinstance(it.get("format"), dict):
                it["format"] = self.add_format(self.sub_schema(it["format"]))
            out["items"] = it
        if name and name.endswith("[n]"):
            base = name[:-3]
            lim = INDEX_LIMITS.get(base)
            m = re.search(r"n is 0 to (\d+)", pd.get("description") or "")
            if lim is None and m:
                lim = int(m.group(1)) + 1
            if lim is not None:
                out["n_max"] = lim - 1
        return out


def derive_from_typetext(tt):
    """Keys (and simple value types) of a named property-string format, from typetext."""
    out = {}
    dk = re.match(r"^\s*\[?\[?([\w\-]+)=\]", tt)
    for m in re.finditer(r"(?:^|[\[,\s])([a-zA-Z][\w\-]*)=\]?<([^>]*)>", tt):
        key, val = m.group(1), m.group(2)
        sd = {"type": "string", "optional": 1}
        if val == "1|0":
            sd["type"] = "boolean"
        elif val == "integer":
            sd["type"] = "integer"
        elif "|" in val and re.fullmatch(r"[\w\-.]+(\|[\w\-.]+)+", val):
            sd["enum"] = val.split("|")
        out[key] = sd
    if dk and dk.group(1) in out:
        out[dk.group(1)]["default_key"] = 1
    return out


def build(schema_path):
    with open(schema_path, "rb") as f:
        raw = f.read()
    data = json.loads(raw)
    b = Builder()
    paths = {}
    n_endpoints = 0

    def walk(node):
        nonlocal n_endpoints
        info = node.get("info") or {}
        if info:
            entry = {}
            for method, i in sorted(info.items()):
                ps = i.get("parameters") or {}
                params = {}
                for pname, pd in sorted((ps.get("properties") or {}).items()):
                    p = b.param(pd, pname)
                    p.update(OVERRIDES.get((method, node["path"], pname), {}))
                    params[pname] = p
                ep = {"name": i.get("name"), "allowtoken": int(i.get("allowtoken") or 0)}
                if i.get("protected"):
                    ep["protected"] = 1
                if i.get("proxyto"):
                    ep["proxyto"] = i["proxyto"]
                perms = i.get("permissions") or {}
                pp = {k: perms[k] for k in ("check", "user") if k in perms}
                if pp:
                    ep["permissions"] = pp
                ret = i.get("returns") or {}
                if ret.get("type"):
                    ep["returns"] = ret["type"]
                if ps.get("additionalProperties") not in (0, None, False, "0"):
                    ep["additional"] = 1
                ep["params"] = params
                entry[method] = ep
                n_endpoints += 1
            paths[node["path"]] = entry
        for c in node.get("children") or []:
            walk(c)

    for root in data:
        walk(root)
    return {
        "source": {
            "file": "pve-apischema.json",
            "sha256": hashlib.sha256(raw).hexdigest(),
            "what": "pve-docs api-viewer apidata.js (PVE 9.1), descriptions removed",
            "generator": "tests/lab/gen-pve-index.py",
            "paths": len(paths),
            "endpoints": n_endpoints,
        },
        "formats": b.formats,
        "paths": dict(sorted(paths.items())),
    }


def main(argv):
    schema = argv[1] if len(argv) > 1 else DEFAULT_SCHEMA
    out = argv[2] if len(argv) > 2 else DEFAULT_OUT
    index = build(schema)
    text = json.dumps(index, sort_keys=False, separators=(",", ":"))
    # one path per line keeps diffs readable
    text = text.replace(',"/', ',\n"/')
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write(text + "\n")
    os.replace(tmp, out)
    # the same index for tlr itself (REPL completion, pve:help), embedded in the binary
    lua_out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                           "lua", "tlr", "proxmox", "api_index.lua")
    assert "]==]" not in text
    with open(lua_out + ".tmp", "w") as f:
        f.write("-- generated by tests/lab/gen-pve-index.py from the PVE API schema: do not edit\n")
        f.write("return [==[\n" + text + "\n]==]\n")
    os.replace(lua_out + ".tmp", lua_out)
    print("%s: %d paths, %d endpoints, %d formats, %d bytes" % (
        out, index["source"]["paths"], index["source"]["endpoints"], len(index["formats"]),
        len(text) + 1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
