#!/usr/bin/env python3
"""Write an OCI image layout holding one image whose single layer carries
N tiny node_modules/*/package.json files (default 1,000,000): the image that
once drove the server to 3.7 GB RSS. Standard library only; the layer is
streamed to disk while both digests are computed, so the generator itself
stays small.

usage: gen.py OUT_DIR [N]
"""
import gzip
import hashlib
import json
import os
import sys
import tarfile


class Tee:
    """File object that hashes what passes through it."""

    def __init__(self, f):
        self.f, self.h, self.n = f, hashlib.sha256(), 0

    def write(self, b):
        self.h.update(b)
        self.n += len(b)
        return self.f.write(b)

    def flush(self):
        self.f.flush()


def put_blob(blobs, data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, d), "wb") as f:
        f.write(data)
    return "sha256:" + d, len(data)


def main():
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    blobs = os.path.join(out, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    tmp = os.path.join(blobs, "layer.tmp")
    with open(tmp, "wb") as raw:
        outer = Tee(raw)
        gz = gzip.GzipFile(fileobj=outer, mode="wb", compresslevel=6, mtime=0)
        inner = Tee(gz)
        for i in range(n):
            name = f"p{i:07d}"
            # One in ten declares a package the fixture advisories know
            # (lodash before 4.17.21), at its own version, so matching has
            # work to do and findings to store.
            if i % 10 == 0:
                pkg = {"name": "lodash", "version": "4.%d.%d" % (i // 1000 % 17, i // 10 % 100)}
            else:
                pkg = {"name": name, "version": "1.0.%d" % (i % 10)}
            body = json.dumps(pkg).encode()
            ti = tarfile.TarInfo(f"usr/lib/node_modules/{name}/package.json")
            ti.size, ti.mode, ti.mtime = len(body), 0o644, 0
            inner.write(ti.tobuf(tarfile.USTAR_FORMAT))
            inner.write(body + b"\0" * (-len(body) % 512))
        inner.write(b"\0" * 1024)
        gz.close()
        diff_id = "sha256:" + inner.h.hexdigest()
        layer = "sha256:" + outer.h.hexdigest()
        layer_size = outer.n
    os.rename(tmp, os.path.join(blobs, layer.split(":")[1]))
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {}, "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }).encode()
    cfg_digest, cfg_size = put_blob(blobs, config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": cfg_digest, "size": cfg_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer, "size": layer_size}],
    }).encode()
    m_digest, m_size = put_blob(blobs, manifest)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": m_digest, "size": m_size,
            "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}, f)
    print(f"{m_digest} layer {layer_size} bytes, {n} package.json files")


if __name__ == "__main__":
    main()
