#!/usr/bin/env python3
"""Fill a drydock registry with N distinct images for the dashboard bench.

Every image is one of the test images (scripts/test-images.sh's OCI layout)
with its own config blob (a label naming the image), so digests differ but
layers are shared: only a config and a manifest are new per image, and the
layers are uploaded once and mounted into every other repository.

Per repository (N / repos images each): ~10% indexes (the multiarch test
index, both platforms re-configured), the rest tagged `1.<k>`, `latest` on
the last of them, and ~20% pushed one after another as `nightly`, so all
but the last are untagged superseded digests.

Talks to the Distribution API only (no auth: run the server without it),
with a few keep-alive connections in parallel. Standard library only.

    gen.py --url http://127.0.0.1:PORT --layout target/test-images/oci \
        [--images 10000] [--repos 200] [--workers 4]
"""

import argparse
import hashlib
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SINGLE = ["bookworm-base", "node-app", "python-app", "rust-app"]


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


class Layout:
    def __init__(self, path):
        self.path = path
        idx = json.load(open(os.path.join(path, "index.json")))
        self.refs = {
            m["annotations"]["org.opencontainers.image.ref.name"]: m
            for m in idx["manifests"]
            if "org.opencontainers.image.ref.name" in m.get("annotations", {})
        }

    def blob_path(self, digest):
        return os.path.join(self.path, "blobs", *digest.split(":", 1))

    def blob(self, digest):
        with open(self.blob_path(digest), "rb") as f:
            return f.read()

    def json(self, digest):
        return json.loads(self.blob(digest))


class Client:
    """One keep-alive connection to the registry."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port
        self.conn = None

    def req(self, method, path, body=None, headers=None, ok=(200, 201, 202)):
        for attempt in range(3):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                r = self.conn.getresponse()
                data = r.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
                time.sleep(0.2)
                continue
            if r.status not in ok:
                raise RuntimeError(f"{method} {path}: {r.status} {data[:300]!r}")
            return r, data
        raise AssertionError("unreachable")

    def has_blob(self, repo, digest):
        r, _ = self.req("HEAD", f"/v2/{repo}/blobs/{digest}", ok=(200, 404))
        return r.status == 200

    def put_blob(self, repo, digest, body_or_path):
        r, _ = self.req("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
        loc = r.getheader("Location")
        if loc.startswith("http"):
            u = urllib.parse.urlsplit(loc)
            loc = u.path + ("?" + u.query if u.query else "")
        sep = "&" if "?" in loc else "?"
        if isinstance(body_or_path, bytes):
            body = body_or_path
            size = len(body)
        else:
            size = os.path.getsize(body_or_path)
            body = open(body_or_path, "rb")
        try:
            self.req(
                "PUT",
                f"{loc}{sep}digest={digest}",
                body=body,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            )
        finally:
            if not isinstance(body, bytes):
                body.close()

    def mount(self, repo, digest, source):
        r, _ = self.req(
            "POST",
            f"/v2/{repo}/blobs/uploads/?mount={digest}&from={source}",
            headers={"Content-Length": "0"},
            ok=(201, 202),
        )
        if r.status == 202:
            # Not mounted (the server chose an upload): cancel it, then upload.
            raise RuntimeError(f"mount of {digest} into {repo} refused")

    def put_manifest(self, repo, ref, body, media_type):
        self.req("PUT", f"/v2/{repo}/manifests/{ref}", body=body, headers={"Content-Type": media_type})


def varied_manifest(layout, base_manifest, label):
    """The base image manifest with a config carrying `label`: (config, manifest)."""
    cfg = layout.json(base_manifest["config"]["digest"])
    cfg.setdefault("config", {})
    labels = cfg["config"].get("Labels") or {}
    labels["org.example.bench.image"] = label
    cfg["config"]["Labels"] = labels
    cfg_bytes = json.dumps(cfg, separators=(",", ":")).encode()
    m = json.loads(json.dumps(base_manifest))
    m["config"] = dict(m["config"], digest=sha(cfg_bytes), size=len(cfg_bytes))
    m_bytes = json.dumps(m, separators=(",", ":")).encode()
    return cfg_bytes, m_bytes


def plan(n_images, n_repos):
    """(repo, [(kind, base, tags)]) per repository, N entries in all."""
    out = []
    per, extra = divmod(n_images, n_repos)
    for r in range(n_repos):
        repo = f"team-{r % 20:02d}/service-{r:03d}"
        count = per + (1 if r < extra else 0)
        n_index = max(1, count // 10)
        n_nightly = max(2, count // 5)
        n_tagged = count - n_index - n_nightly
        items = []
        for k in range(n_index):
            items.append(("index", "multiarch", [f"multi-{k}"]))
        for k in range(n_tagged):
            tags = [f"1.{k}"] + (["latest"] if k == n_tagged - 1 else [])
            items.append(("image", SINGLE[(r + k) % len(SINGLE)], tags))
        for k in range(n_nightly):
            items.append(("image", SINGLE[(r * 7 + k) % len(SINGLE)], ["nightly"]))
        out.append((repo, items))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--layout", required=True)
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--repos", type=int, default=200)
    ap.add_argument("--workers", type=int, default=4)
    a = ap.parse_args()

    layout = Layout(a.layout)
    bases = {t: layout.json(layout.refs[t]["digest"]) for t in SINGLE}
    index = layout.json(layout.refs["multiarch"]["digest"])
    children = [(c, layout.json(c["digest"])) for c in index["manifests"]]
    layers = set()
    for m in list(bases.values()) + [c for _, c in children]:
        layers.update(l["digest"] for l in m["layers"])
    layers = sorted(layers)

    work = plan(a.images, a.repos)
    first = work[0][0]
    c = Client(a.url)
    t0 = time.time()
    for d in layers:
        if not c.has_blob(first, d):
            c.put_blob(first, d, layout.blob_path(d))
    print(f"layers uploaded to {first}: {len(layers)} in {time.time() - t0:.1f}s", file=sys.stderr)

    done = [0]
    lock = threading.Lock()
    errors = []

    def worker(share):
        cl = Client(a.url)
        try:
            for repo, items in share:
                if repo != first:
                    for d in layers:
                        cl.mount(repo, d, first)
                for n, (kind, base, tags) in enumerate(items):
                    label = f"{repo}#{n}"
                    if kind == "image":
                        cfg, m = varied_manifest(layout, bases[base], label)
                        cl.put_blob(repo, sha(cfg), cfg)
                        for tag in tags:
                            cl.put_manifest(repo, tag, m, OCI_MANIFEST)
                    else:
                        idx = json.loads(json.dumps(index))
                        for i, (desc, child) in enumerate(children):
                            cfg, m = varied_manifest(layout, child, f"{label}/{i}")
                            cl.put_blob(repo, sha(cfg), cfg)
                            cl.put_manifest(repo, sha(m), m, OCI_MANIFEST)
                            idx["manifests"][i] = dict(desc, digest=sha(m), size=len(m))
                        body = json.dumps(idx, separators=(",", ":")).encode()
                        for tag in tags:
                            cl.put_manifest(repo, tag, body, OCI_INDEX)
                    with lock:
                        done[0] += 1
                        if done[0] % 1000 == 0:
                            print(f"{done[0]} images, {time.time() - t0:.0f}s", file=sys.stderr)
        except Exception as e:  # reported after the join, so every thread stops cleanly
            errors.append(e)

    shares = [work[i :: a.workers] for i in range(a.workers)]
    threads = [threading.Thread(target=worker, args=(s,)) for s in shares]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    print(f"pushed {done[0]} images into {len(work)} repositories in {time.time() - t0:.0f}s", file=sys.stderr)
    json.dump({"images": done[0], "repositories": len(work), "seconds": round(time.time() - t0, 1)}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
