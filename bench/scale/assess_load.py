#!/usr/bin/env python3
"""Assessment throughput load for the scale-out benchmark (stdlib only).

    assess_load.py push BASE --nodes URL,URL... --count N --seed S [--threads T]
        [--rootfs DIR] [--repo PREFIX] [--timeout SECS]
    assess_load.py one BASE REPO TAG     push one small image, print its digest

`push` makes N distinct small images (cold layers: every layer is new to
every node), pushes them through BASE (the balancer) over the OCI API, then
polls /api/v1/images/{digest} on every node until each image is `done`
on the node it landed on (each node assesses what was pushed to it: the
assessor's state is per node). Prints one JSON object: push seconds, seconds
until the last image was done, and how many images each node assessed.

Each image is one gzip layer holding a Debian root's /etc/os-release and
dpkg status (so the cataloger lists real packages and the matcher has
findings to make) plus a file of random bytes that makes it unique, and its
config. All requests of one image go over one keep-alive connection, so
the balancer hands the whole image to one node.
"""

import argparse
import gzip
import hashlib
import http.client
import io
import json
import os
import random
import sys
import tarfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def read_rootfs_files(rootfs):
    files = {}
    for rel in ("etc/os-release", "var/lib/dpkg/status"):
        p = os.path.join(rootfs, rel)
        if os.path.exists(p):
            with open(p, "rb") as f:
                files[rel] = f.read()
    if "var/lib/dpkg/status" not in files:
        sys.exit(f"no var/lib/dpkg/status under {rootfs} (run scripts/test-images.sh)")
    return files


def make_image(files, seed, i):
    rnd = random.Random(f"{seed}/{i}")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        unique = {f"opt/bench/{seed}-{i}.bin": rnd.randbytes(8192)}
        for name, data in list(files.items()) + list(unique.items()):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            ti.mtime = 0
            tar.addfile(ti, io.BytesIO(data))
    raw = buf.getvalue()
    layer = gzip.compress(raw, compresslevel=6, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"bench.scale": f"{seed}-{i}"}},
            "rootfs": {"type": "layers", "diff_ids": [sha(raw)]},
        },
        separators=(",", ":"),
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": sha(config), "size": len(config)},
            "layers": [{"mediaType": MT_LAYER, "digest": sha(layer), "size": len(layer)}],
        },
        separators=(",", ":"),
    ).encode()
    return {"blobs": [layer, config], "manifest": manifest, "digest": sha(manifest)}


def conn_for(base):
    u = urllib.parse.urlsplit(base)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=120)


def request(c, method, path, body=None, headers=None):
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    return r.status, r.getheader("Location"), data


def push_image(base, repo, tag, img):
    c = conn_for(base)
    try:
        for blob in img["blobs"]:
            st, loc, body = request(c, "POST", f"/v2/{repo}/blobs/uploads/", b"")
            if st != 202:
                raise RuntimeError(f"POST upload: {st} {body[:200]!r}")
            u = urllib.parse.urlsplit(loc)
            path = u.path + ("?" + u.query + "&" if u.query else "?") + "digest=" + sha(blob)
            st, _, body = request(
                c, "PUT", path, blob, {"Content-Type": "application/octet-stream"}
            )
            if st != 201:
                raise RuntimeError(f"PUT blob: {st} {body[:200]!r}")
        st, _, body = request(
            c, "PUT", f"/v2/{repo}/manifests/{tag}", img["manifest"], {"Content-Type": MT_MANIFEST}
        )
        if st != 201:
            raise RuntimeError(f"PUT manifest: {st} {body[:200]!r}")
    finally:
        c.close()


class Poller:
    """Finds which node assesses an image, then asks that node until done."""

    def __init__(self, nodes):
        self.nodes = nodes
        self.local = threading.local()

    def conn(self, base):
        cs = self.local.__dict__.setdefault("conns", {})
        if base not in cs:
            cs[base] = conn_for(base)
        return cs[base]

    def status(self, base, digest):
        for attempt in range(2):
            c = self.conn(base)
            try:
                st, _, body = request(c, "GET", f"/api/v1/images/{digest}")
                break
            except (http.client.HTTPException, OSError):
                c.close()
                self.local.conns.pop(base, None)
                if attempt:
                    raise
        if st == 404:
            return None
        if st != 200:
            raise RuntimeError(f"GET image from {base}: {st} {body[:200]!r}")
        return json.loads(body)["status"]


def catalog_sources(nodes):
    """`drydock_catalog_layers_total` by source, summed over the nodes: how
    many layers were cataloged from their upload streams and how many were
    read back from the store after their commit."""
    total = {}
    for n in nodes:
        c = conn_for(n)
        try:
            st, _, body = request(c, "GET", "/metrics")
        finally:
            c.close()
        if st != 200:
            raise RuntimeError(f"GET /metrics from {n}: {st}")
        for line in body.decode().splitlines():
            if line.startswith('drydock_catalog_layers_total{source="'):
                src = line.split('"')[1]
                total[src] = total.get(src, 0) + int(float(line.rsplit(" ", 1)[1]))
    return total


def cmd_push(a):
    files = read_rootfs_files(a.rootfs)
    nodes = [n for n in a.nodes.split(",") if n]
    t0 = time.monotonic()
    imgs = [make_image(files, a.seed, i) for i in range(a.count)]
    made_s = time.monotonic() - t0
    pushed_at = {}
    sources0 = catalog_sources(nodes)
    cpu0 = sum(os.times()[:2])
    start = time.monotonic()

    def one(i):
        push_image(a.base, f"{a.repo}/{a.seed}-{i % 10}", f"t{i}", imgs[i])
        pushed_at[imgs[i]["digest"]] = time.monotonic()

    with ThreadPoolExecutor(a.threads) as ex:
        list(ex.map(one, range(a.count)))
    push_s = time.monotonic() - start

    poll = Poller(nodes)
    owner = {}
    done = {}
    failed = {}
    pending = [im["digest"] for im in imgs]
    deadline = start + a.timeout
    while pending:
        if time.monotonic() > deadline:
            sys.exit(f"{len(pending)} of {a.count} images not done after {a.timeout}s")
        still = []
        for d in pending:
            st = None
            for n in [owner[d]] if d in owner else nodes:
                st = poll.status(n, d)
                if st is not None:
                    owner[d] = n
                    break
            if st == "done":
                done[d] = time.monotonic()
            elif st in ("failed", "unsupported"):
                failed[d] = st
            else:
                still.append(d)
        pending = still
        if pending:
            time.sleep(0.2)
    last = max(done.values()) if done else start
    per_node = {n: sum(1 for d in owner.values() if d == n) for n in nodes}
    sources1 = catalog_sources(nodes)
    layers = {k: v - sources0.get(k, 0) for k, v in sorted(sources1.items()) if v - sources0.get(k, 0)}
    out = {
        "images": a.count,
        "made_s": round(made_s, 2),
        "push_s": round(push_s, 2),
        "done_s": round(last - start, 2),
        "images_per_s": round(a.count / (last - start), 2) if last > start else None,
        "per_node": per_node,
        "failed": len(failed),
        "layers_cataloged_from": layers,
        # This client's own CPU (image pushes and polling) on the same cores.
        "client_cpu_s": round(sum(os.times()[:2]) - cpu0, 2),
    }
    print(json.dumps(out))
    if failed:
        sys.exit(f"{len(failed)} assessments failed")


def cmd_one(a):
    files = read_rootfs_files(a.rootfs)
    img = make_image(files, "one", a.tag)
    push_image(a.base, a.repo, a.tag, img)
    print(img["digest"])


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    default_rootfs = os.path.join(
        os.environ.get("DRYDOCK_TEST_IMAGES", os.path.join(root, "target/test-images")),
        "rootfs/bookworm",
    )
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("push")
    pp.add_argument("base")
    pp.add_argument("--nodes", required=True)
    pp.add_argument("--count", type=int, default=40)
    pp.add_argument("--seed", required=True)
    pp.add_argument("--threads", type=int, default=4)
    pp.add_argument("--repo", default="scale")
    pp.add_argument("--timeout", type=float, default=300)
    pp.add_argument("--rootfs", default=default_rootfs)
    po = sub.add_parser("one")
    po.add_argument("base")
    po.add_argument("repo")
    po.add_argument("tag")
    po.add_argument("--rootfs", default=default_rootfs)
    a = p.parse_args()
    {"push": cmd_push, "one": cmd_one}[a.cmd](a)


if __name__ == "__main__":
    main()
