#!/usr/bin/env python3
"""Cut the small vulnerability-data fixtures in tests/fixtures/vulndata from
the larger offline set (../shared/vulndata, or $DRYDOCK_SHARED/vulndata).

The selection is deterministic (named records plus every Nth record), so
running this again on the same source gives the same files. The rules are
listed in tests/fixtures/vulndata/README.md; keep the two in step.

Usage: scripts/vulndata-fixtures.py [SRC] [OUT]
"""
import json
import os
import re
import shutil
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DRYDOCK_SHARED", ROOT.parent / "shared"))
SRC = Path(sys.argv[1]) if len(sys.argv) > 1 else SHARED / "vulndata"
OUT = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "tests/fixtures/vulndata"

# Records that tests name, by export.
NAMED = {
    "PyPI": {"PYSEC-2019-217", "PYSEC-2021-66", "PYSEC-2018-28"},
    "Go": {"GO-2024-2687"},
    "cargo": {"RUSTSEC-2021-0135", "RUSTSEC-2024-0381"},
    "Debian": {"CVE-2023-45853", "CVE-2023-31437", "CVE-2024-3094", "CVE-2024-22365",
               "CVE-2023-38545", "CVE-2022-37434", "CVE-2023-44487", "CVE-2024-2511",
               "CVE-2024-45490", "DSA-5523-1"},
}

# The packages of the test images (scripts/make-images.sh): every record
# that affects one of them is kept, so scans of those images find what
# they would find with the full data.
IMAGE_PKGS = {
    "PyPI": {"requests", "urllib3", "chardet", "idna", "certifi", "jinja2", "markupsafe",
             "pyyaml", "django", "flask", "werkzeug", "pillow"},
    "cargo": {"time", "smallvec", "chrono", "regex", "tokio", "hyper"},
}
# Debian source packages of the bookworm minbase image (debootstrap
# --variant=minbase bookworm), as listed by dpkg's Source fields.
DEBIAN_BASE = set("""
acl adduser apt attr audit base-files base-passwd bash bzip2 cdebconf coreutils dash
db5.3 debconf debian-archive-keyring debianutils diffutils dpkg e2fsprogs findutils gcc-12
glibc gmp gnupg2 gnutls28 grep gzip hostname init-system-helpers libcap-ng libcap2 libffi
libgcrypt20 libgpg-error libidn2 libmd libseccomp libselinux libsemanage libsepol
libtasn1-6 libunistring libxcrypt libzstd lz4 mawk ncurses nettle p11-kit pam pcre2 perl
sed shadow systemd sysvinit tar tzdata usrmerge util-linux xxhash xz-utils zlib
""".split())

# Besides the above, every Nth record of each export, for a realistic mix.
EVERY = {"PyPI": 25, "Go": 20, "cargo": 20, "Debian": 400}


def slice_zip(eco: str, keep) -> None:
    src = SRC / "osv" / eco / "all.zip"
    dst = OUT / "osv" / eco / "all.zip"
    dst.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        names = zin.namelist()
        chosen = set()
        for i, name in enumerate(names):
            rec = json.loads(zin.read(name))
            if keep(i, rec):
                chosen.add(name)
                # An advisory (DSA/DLA) comes with the CVEs it fixes, so that
                # matching can tell it repeats them, as with the full export.
                if not rec["id"].startswith("CVE-"):
                    chosen.update(f"{c}.json" for c in rec.get("related", []))
        for name in names:
            if name in chosen:
                zout.writestr(name, zin.read(name))


def osv_keep(eco: str):
    named = NAMED.get(eco, set())
    pkgs = IMAGE_PKGS.get(eco, set())
    every = EVERY.get(eco)

    def keep(i, rec):
        if rec["id"] in named or (every and i % every == 0):
            return True
        for a in rec.get("affected", []):
            name = a["package"]["name"]
            if eco == "PyPI":
                name = re.sub(r"[-_.]+", "-", name).lower()
            if eco == "Debian" and name in DEBIAN_BASE:
                return True
            if name in pkgs:
                return True
        return False

    return keep


def tracker_list(name: str, keep_ids: set, newest: int) -> None:
    """The `newest` first entries (the lists are newest first) plus named ones."""
    text = (SRC / "debian" / name).read_text()
    entries = re.split(r"\n(?=\[)", text.rstrip("\n"))
    kept = [e for i, e in enumerate(entries)
            if i < newest or any(k in e.split("\n")[0] for k in keep_ids)]
    (OUT / "debian" / name).write_text("\n".join(kept) + "\n")


def nvd_feed(every: int) -> None:
    src = SRC / "nvd/nvdcve-1.1-2022.subset.json"
    feed = json.loads(src.read_text())
    items = feed["CVE_Items"]
    feed["CVE_Items"] = [x for i, x in enumerate(items) if i % every == 0]
    feed["CVE_data_numberOfCVEs"] = str(len(feed["CVE_Items"]))
    dst = OUT / "nvd/nvdcve-1.1-2022.subset.json"
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(feed, indent=1) + "\n")


def vulnrichment(every: int) -> None:
    base = SRC / "nvd/cve5-vulnrichment"
    files = sorted(p for p in base.rglob("*.json"))
    for i, p in enumerate(files):
        text = p.read_text()
        # Every CVSS 4.0 record (few, and the calculator's hardest case).
        if i % every == 0 or "cvssV4_0" in text:
            dst = OUT / "nvd/cve5-vulnrichment" / p.relative_to(base)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dst)


def main() -> None:
    if not SRC.is_dir():
        sys.exit(f"{SRC}: no such directory")
    for sub in ("osv", "alpine", "debian", "nvd"):
        shutil.rmtree(OUT / sub, ignore_errors=True)
    for eco in ("PyPI", "Go", "cargo", "Debian"):
        slice_zip(eco, osv_keep(eco))
    # Tiny exports: whole.
    for eco in ("npm", "Maven", "RubyGems"):
        (OUT / "osv" / eco).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SRC / "osv" / eco / "all.zip", OUT / "osv" / eco / "all.zip")
    shutil.copyfile(SRC / "osv/PROVENANCE-ghsa.tsv", OUT / "osv/PROVENANCE-ghsa.tsv")
    for v in ("v3.20", "v3.21"):
        (OUT / "alpine" / v).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SRC / "alpine" / v / "main.json", OUT / "alpine" / v / "main.json")
    (OUT / "debian").mkdir(parents=True, exist_ok=True)
    for f in ("CVE-list.subset", "PROVENANCE.tsv", "PROVENANCE-osv.tsv"):
        shutil.copyfile(SRC / "debian" / f, OUT / "debian" / f)
    shutil.copytree(SRC / "debian/osv-records.2025-02-12", OUT / "debian/osv-records.2025-02-12")
    tracker_list("DSA-list.2023-04-02", {"DSA-5218-1", "DSA-5380-1", "DSA-5523-1"}, 150)
    tracker_list("DLA-list.2023-04-02", set(), 100)
    shutil.copytree(SRC / "nvd/api2.0", OUT / "nvd/api2.0")
    nvd_feed(8)
    vulnrichment(15)
    # Keep the copies writable in the repository, whatever the source's modes.
    for p in OUT.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)


if __name__ == "__main__":
    main()
