#!/usr/bin/env python3
"""Build the patch benchmark's image: `bookworm-base` from the test images
plus one layer whose dpkg status records older versions of the packages
the loopback archive holds (as if the image was built before their
security updates), written as an OCI layout tagged `v1`.

    old-image.py TEST_IMAGES_OCI_LAYOUT OUT_LAYOUT PACKAGES_FILE VULNDATA

PACKAGES_FILE is the archive's `Packages` index: every package it holds
that the image has installed is made to look older. VULNDATA is the
directory `drydock db import` reads (its `osv/Debian/all.zip`): a package
is recorded just below the highest bookworm fix those records give for
its source package, so that it has fixable findings the archive's
version clears (a package without findings would not be upgraded).
"""
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile

src, out, packages_file, vulndata = sys.argv[1:5]


def blob(layout, digest):
    return os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1])


def read_json(layout, digest):
    with open(blob(layout, digest), "rb") as f:
        return json.load(f)


index = json.load(open(os.path.join(src, "index.json")))
desc = next(m for m in index["manifests"]
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "bookworm-base")
manifest = read_json(src, desc["digest"])
config = read_json(src, manifest["config"]["digest"])
layer = manifest["layers"][0]["digest"]

status = None
with tarfile.open(blob(src, layer), "r:gz") as t:
    for m in t:
        if m.name.lstrip("./") == "var/lib/dpkg/status":
            status = t.extractfile(m).read().decode()
            break
assert status, "no dpkg status in bookworm-base"

held = {}
for stanza in open(packages_file).read().split("\n\n"):
    fields = dict(l.split(": ", 1) for l in stanza.splitlines() if ": " in l and not l.startswith(" "))
    if "Package" in fields:
        held.setdefault(fields["Package"], fields["Version"])


def older_than(a, b):
    return subprocess.run(["dpkg", "--compare-versions", a, "lt", b]).returncode == 0


def highest(versions):
    top = None
    for v in versions:
        if top is None or older_than(top, v):
            top = v
    return top


# Every fixed version per source package among the Debian 12 records.
fixes = {}
with zipfile.ZipFile(os.path.join(vulndata, "osv", "Debian", "all.zip")) as z:
    for n in z.namelist():
        for a in json.loads(z.read(n)).get("affected", []):
            if a["package"].get("ecosystem") != "Debian:12":
                continue
            for r in a.get("ranges", []):
                for e in r.get("events", []):
                    if e.get("fixed"):
                        fixes.setdefault(a["package"]["name"], set()).add(e["fixed"])

# The versions the end-to-end test (crates/drydock/tests/patch.rs) gives
# the first packages `.ci/run` downloads. Any other package the archive
# holds is recorded at the highest fix of its source with `~bench`
# appended (dpkg sorts `~` before anything, so just below that fix), its
# `Source:` version too (the assessor matches source packages); one
# without a fix the archive's version clears is left as it is.
KNOWN = {
    "libtasn1-6": "4.19.0-2",
    "libgnutls30": "3.7.9-2",
    "libsystemd0": "252.19-1~deb12u1",
    "libudev1": "252.19-1~deb12u1",
    "libp11-kit0": "0.23.2-5",
    "tar": "1.34+dfsg-1.2",
}
older = []
stanzas = []
for s in status.split("\n\n"):
    if not s.strip():
        continue
    lines = s.splitlines()
    pkg = lines[0].removeprefix("Package: ")
    source_line = next((l for l in lines if l.startswith("Source: ")), None)
    source = source_line.split(" ")[1] if source_line else pkg
    v = KNOWN.get(pkg)
    source_v = None
    if v is None and pkg in held and source in fixes:
        fix = highest(fixes[source])
        if not older_than(held[pkg], fix):
            source_v = f"{fix}~bench"
            epoch = held[pkg].split(":", 1)[0] + ":" if ":" in held[pkg] and ":" not in fix else ""
            v = epoch + source_v
    if v is not None:
        lines = [f"Version: {v}" if l.startswith("Version: ") else l for l in lines]
        if source_v and source_line and "(" in source_line:
            lines = [f"Source: {source} ({source_v})" if l == source_line else l for l in lines]
        older.append(pkg)
    stanzas.append("\n".join(lines))
new_status = ("\n\n".join(stanzas) + "\n").encode()

raw = io.BytesIO()
with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as t:
    info = tarfile.TarInfo("var/lib/dpkg/status")
    info.size = len(new_status)
    info.mode = 0o644
    info.mtime = 1_700_000_000
    t.addfile(info, io.BytesIO(new_status))
raw = raw.getvalue()
gz = gzip.compress(raw, mtime=0)

os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
with open(os.path.join(out, "oci-layout"), "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')


def put(b):
    d = "sha256:" + hashlib.sha256(b).hexdigest()
    with open(blob(out, d), "wb") as f:
        f.write(b)
    return d


layer_new = put(gz)
if not os.path.exists(blob(out, layer)):
    try:
        os.link(blob(src, layer), blob(out, layer))
    except OSError:
        with open(blob(src, layer), "rb") as f:
            put(f.read())
config["rootfs"]["diff_ids"].append("sha256:" + hashlib.sha256(raw).hexdigest())
config_b = json.dumps(config).encode()
manifest["config"] = {**manifest["config"], "digest": put(config_b), "size": len(config_b)}
manifest["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                           "digest": layer_new, "size": len(gz)})
mb = json.dumps(manifest).encode()
md = put(mb)
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": len(mb),
        "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}, f)
print(" ".join(sorted(older)))
