//! Layer semantics built from small in-memory layers: whiteouts, opaque
//! directories, database replacement, and hostile archives.

mod common;

use catalog::{CatalogError, LayerInventory, Limits, catalog_layer, merge};
use common::*;
use inventory::Ecosystem;
use oci::{Digest, LayerCompression};

const STATUS_AB: &str = "Package: aaa\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n\nPackage: bbb\nStatus: install ok installed\nArchitecture: amd64\nSource: bsrc (0.9)\nVersion: 2.0\n";
const STATUS_A: &str =
    "Package: aaa\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n";

fn metadata(name: &str, version: &str) -> Vec<u8> {
    format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n").into_bytes()
}

fn pkg_json(name: &str, version: &str) -> Vec<u8> {
    format!("{{\"name\":\"{name}\",\"version\":\"{version}\"}}").into_bytes()
}

/// Catalog a gzip layer, keyed by its real digest.
fn layer(bytes: Vec<u8>) -> (Digest, LayerInventory) {
    let d = Digest::sha256_of(&bytes);
    let inv = catalog_layer(&bytes[..], LayerCompression::Gzip, &d, &Limits::default()).unwrap();
    (d, inv)
}

fn names(inv: &inventory::Inventory, eco: Ecosystem) -> Vec<String> {
    name_versions(inv, eco)
        .into_iter()
        .map(|(n, v)| format!("{n}@{v}"))
        .collect()
}

fn base() -> (Digest, LayerInventory) {
    layer(
        LayerBuilder::new()
            .dir("etc")
            .file(
                "usr/lib/os-release",
                b"ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
            )
            .symlink("etc/os-release", "../usr/lib/os-release")
            .file("var/lib/dpkg/status", STATUS_AB.as_bytes())
            .file(
                "usr/lib/python3/dist-packages/foo-1.0.dist-info/METADATA",
                &metadata("foo", "1.0"),
            )
            .file(
                "usr/lib/python3/dist-packages/bar-2.0.dist-info/METADATA",
                &metadata("bar", "2.0"),
            )
            .file(
                "app/node_modules/left-pad/package.json",
                &pkg_json("left-pad", "1.0.0"),
            )
            .file(
                "app/node_modules/@scope/thing/package.json",
                &pkg_json("@scope/thing", "3.0.0"),
            )
            .file(
                "app/node_modules/left-pad/lib/package.json",
                b"{\"type\":\"module\"}",
            )
            .gzip(),
    )
}

#[test]
fn base_layer_is_cataloged() {
    let (d, li) = base();
    assert!(li.whiteouts.is_empty());
    let inv = merge(&[(d.clone(), li)]);
    assert_eq!(inv.distro.as_ref().unwrap().id, "debian");
    assert_eq!(names(&inv, Ecosystem::Deb), ["aaa@1.0", "bbb@2.0"]);
    assert_eq!(names(&inv, Ecosystem::PyPI), ["bar@2.0", "foo@1.0"]);
    assert_eq!(
        names(&inv, Ecosystem::Npm),
        ["@scope/thing@3.0.0", "left-pad@1.0.0"]
    );
    let bbb = inv.packages.iter().find(|p| p.name == "bbb").unwrap();
    assert_eq!(bbb.source_name.as_deref(), Some("bsrc"));
    assert_eq!(bbb.source_version.as_deref(), Some("0.9"));
    assert!(inv.packages.iter().all(|p| p.layer == d.to_string()));
}

#[test]
fn upper_layers_remove_packages() {
    let lower = base();
    let upper = layer(
        LayerBuilder::new()
            // dpkg database rewritten without bbb (apt-get remove)
            .file("var/lib/dpkg/status", STATUS_A.as_bytes())
            // pip uninstall bar: the dist-info directory is whited out
            .file("usr/lib/python3/dist-packages/.wh.bar-2.0.dist-info", b"")
            // node_modules replaced wholesale
            .file("app/node_modules/.wh..wh..opq", b"")
            .file(
                "app/node_modules/right-pad/package.json",
                &pkg_json("right-pad", "1.1.0"),
            )
            .gzip(),
    );
    assert_eq!(
        upper.1.whiteouts,
        ["usr/lib/python3/dist-packages/bar-2.0.dist-info"]
    );
    assert_eq!(upper.1.opaque_dirs, ["app/node_modules"]);
    let lower_digest = lower.0.to_string();
    let upper_digest = upper.0.to_string();
    let inv = merge(&[lower, upper]);
    assert_eq!(names(&inv, Ecosystem::Deb), ["aaa@1.0"]);
    assert_eq!(names(&inv, Ecosystem::PyPI), ["foo@1.0"]);
    assert_eq!(names(&inv, Ecosystem::Npm), ["right-pad@1.1.0"]);
    // aaa is unchanged by the rewrite: it still belongs to the layer that
    // installed it. right-pad is new.
    let aaa = inv.packages.iter().find(|p| p.name == "aaa").unwrap();
    assert_eq!(aaa.layer, lower_digest);
    let rp = inv.packages.iter().find(|p| p.name == "right-pad").unwrap();
    assert_eq!(rp.layer, upper_digest);
}

#[test]
fn whiteout_of_a_parent_directory_and_readding() {
    let lower = base();
    let mid = layer(LayerBuilder::new().file("usr/lib/.wh.python3", b"").gzip());
    let top = layer(
        LayerBuilder::new()
            .file(
                "usr/lib/python3/dist-packages/foo-1.1.dist-info/METADATA",
                &metadata("foo", "1.1"),
            )
            .gzip(),
    );
    let inv = merge(&[lower.clone(), mid.clone()]);
    assert!(names(&inv, Ecosystem::PyPI).is_empty());
    let inv = merge(&[lower, mid, top]);
    assert_eq!(names(&inv, Ecosystem::PyPI), ["foo@1.1"]);
}

#[test]
fn upper_version_bump_is_attributed_to_the_upper_layer() {
    let lower = base();
    let upper = layer(
        LayerBuilder::new()
            .file(
                "var/lib/dpkg/status",
                STATUS_AB.replace("Version: 1.0", "Version: 1.1").as_bytes(),
            )
            .gzip(),
    );
    let (ld, ud) = (lower.0.to_string(), upper.0.to_string());
    let inv = merge(&[lower, upper]);
    let aaa = inv.packages.iter().find(|p| p.name == "aaa").unwrap();
    assert_eq!(
        (aaa.version.as_str(), aaa.layer.as_str()),
        ("1.1", ud.as_str())
    );
    let bbb = inv.packages.iter().find(|p| p.name == "bbb").unwrap();
    assert_eq!(bbb.layer, ld);
}

#[test]
fn uncompressed_and_zstd_layers() {
    let tar = LayerBuilder::new()
        .file(
            "lib/apk/db/installed",
            b"P:musl\nV:1.2.5-r0\nA:x86_64\no:musl\n\n",
        )
        .file("etc/alpine-release", b"3.20.3\n")
        .tar();
    let d = Digest::sha256_of(&tar);
    let plain = catalog_layer(&tar[..], LayerCompression::None, &d, &Limits::default()).unwrap();
    let z = zstd::encode_all(&tar[..], 3).unwrap();
    let dz = Digest::sha256_of(&z);
    let zst = catalog_layer(&z[..], LayerCompression::Zstd, &dz, &Limits::default()).unwrap();
    let a = merge(&[(d, plain)]);
    let b = merge(&[(dz, zst)]);
    assert_eq!(names(&a, Ecosystem::Apk), ["musl@1.2.5-r0"]);
    assert_eq!(names(&b, Ecosystem::Apk), ["musl@1.2.5-r0"]);
    assert_eq!(a.distro.as_ref().unwrap().id, "alpine");
    assert!(
        a.packages[0]
            .purl
            .ends_with("?arch=x86_64&distro=alpine-3.20.3"),
        "{}",
        a.packages[0].purl
    );
}

#[test]
fn path_traversal_is_skipped_and_named() {
    // Once an error that failed the whole image (issue 10, "fail closed"):
    // now the entry is skipped, named with its layer, and the read goes on.
    let bytes = LayerBuilder::new()
        .raw_file(b"../../etc/passwd", b"root:x:0:0")
        .gzip();
    let d = Digest::sha256_of(&bytes);
    let li = catalog_layer(&bytes[..], LayerCompression::Gzip, &d, &Limits::default()).unwrap();
    assert_eq!(li.skipped.len(), 1);
    let msg = li.skipped[0].to_string();
    assert_eq!(li.skipped[0].layer, Some(d.to_string()));
    assert!(msg.contains("../../etc/passwd"), "{msg}");
    // Absolute paths are taken relative to the layer root, as runtimes do.
    let bytes = LayerBuilder::new()
        .raw_file(b"/var/lib/dpkg/status", STATUS_A.as_bytes())
        .gzip();
    let (d, li) = layer(bytes);
    assert_eq!(names(&merge(&[(d, li)]), Ecosystem::Deb), ["aaa@1.0"]);
}

#[test]
fn symlinks_are_not_followed() {
    // A dpkg status that is a symlink to a file outside the layer, and a
    // dangling symlink: neither is read, and the symlink hides the lower file.
    let lower = base();
    let upper = layer(
        LayerBuilder::new()
            .symlink("var/lib/dpkg/status", "/etc/shadow")
            .symlink(
                "usr/lib/python3/dist-packages/foo-1.0.dist-info/METADATA",
                "../../../../nowhere",
            )
            .gzip(),
    );
    let inv = merge(&[lower, upper]);
    assert!(names(&inv, Ecosystem::Deb).is_empty());
    assert_eq!(names(&inv, Ecosystem::PyPI), ["bar@2.0"]);
}

#[test]
fn decompression_bomb_is_stopped() {
    let zeros = vec![0u8; 64 << 20];
    let mut b = LayerBuilder::new();
    b.file_mode("zeros", &zeros, 0o644);
    let bytes = b.gzip();
    assert!(bytes.len() < 1 << 20);
    let d = Digest::sha256_of(&bytes);
    let limits = Limits {
        ratio_grace_bytes: 8 << 20,
        ..Limits::default()
    };
    let err = catalog_layer(&bytes[..], LayerCompression::Gzip, &d, &limits).unwrap_err();
    assert!(matches!(err, CatalogError::Bomb { .. }), "{err}");
    assert!(err.to_string().contains(&d.to_string()));
    // The absolute cap holds too, whatever the ratio.
    let limits = Limits {
        max_layer_bytes: 16 << 20,
        max_ratio: u64::MAX,
        ..Limits::default()
    };
    let err = catalog_layer(&bytes[..], LayerCompression::Gzip, &d, &limits).unwrap_err();
    assert!(matches!(err, CatalogError::Limit { .. }), "{err}");
}

#[test]
fn oversized_pax_header_is_stopped_before_it_is_read() {
    // A 64 MiB PAX record compresses to almost nothing and passes the bomb
    // checks; the tar parser would read it into memory whole.
    let record_len = 64 << 20;
    let value_len = record_len - format!("{record_len} comment=\n").len();
    let record = format!("{record_len} comment={}\n", "a".repeat(value_len));
    assert_eq!(record.len(), record_len);
    let mut h = tar::Header::new_ustar();
    h.set_path("PaxHeaders/x").unwrap();
    h.set_size(record.len() as u64);
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, record.as_bytes()).unwrap();
    let mut f = tar::Header::new_ustar();
    f.set_path("x").unwrap();
    f.set_size(0);
    f.set_cksum();
    b.append(&f, &[][..]).unwrap();
    let bytes = gzip(&b.into_inner().unwrap());
    let d = Digest::sha256_of(&bytes);
    let limits = Limits {
        max_ratio: u64::MAX,
        ..Limits::default()
    };
    let err = catalog_layer(&bytes[..], LayerCompression::Gzip, &d, &limits).unwrap_err();
    assert!(matches!(err, CatalogError::Limit { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("PAX extended header") && msg.contains(&d.to_string()),
        "{msg}"
    );
}

#[test]
fn truncated_gzip_is_a_clear_error() {
    let (_, _) = base();
    let full = LayerBuilder::new()
        .file("var/lib/dpkg/status", STATUS_AB.as_bytes())
        .file("big", &vec![7u8; 200_000])
        .gzip();
    for cut in [full.len() - 4, full.len() / 2, 30] {
        let bytes = &full[..cut];
        let d = Digest::sha256_of(bytes);
        let err = catalog_layer(bytes, LayerCompression::Gzip, &d, &Limits::default()).unwrap_err();
        assert!(
            matches!(err, CatalogError::Corrupt { .. }),
            "cut {cut}: {err}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&d.to_string()), "{msg}");
    }
    let garbage = b"this is not gzip at all".to_vec();
    let d = Digest::sha256_of(&garbage);
    let err =
        catalog_layer(&garbage[..], LayerCompression::Gzip, &d, &Limits::default()).unwrap_err();
    assert!(matches!(err, CatalogError::Corrupt { .. }), "{err}");
}

#[test]
fn digest_mismatch_is_detected() {
    let bytes = LayerBuilder::new().file("a", b"b").gzip();
    let wrong = Digest::sha256_of(b"something else");
    let err = catalog_layer(
        &bytes[..],
        LayerCompression::Gzip,
        &wrong,
        &Limits::default(),
    )
    .unwrap_err();
    assert!(matches!(err, CatalogError::DigestMismatch { .. }), "{err}");
}

#[test]
fn oversized_text_file_is_skipped_with_a_warning() {
    let mut big = STATUS_A.to_string();
    big.push_str(&"\n".repeat(2 << 20));
    let bytes = LayerBuilder::new()
        .file("var/lib/dpkg/status", big.as_bytes())
        .gzip();
    let d = Digest::sha256_of(&bytes);
    let limits = Limits {
        max_file_bytes: 1 << 20,
        ..Limits::default()
    };
    let li = catalog_layer(&bytes[..], LayerCompression::Gzip, &d, &limits).unwrap();
    assert!(
        li.warnings
            .iter()
            .any(|w| w.contains("/var/lib/dpkg/status")),
        "{:?}",
        li.warnings
    );
    assert!(li.packages().next().is_none());
}

#[test]
fn layer_inventory_round_trips_through_json() {
    let (_, li) = base();
    let json = serde_json::to_string(&li).unwrap();
    let back: LayerInventory = serde_json::from_str(&json).unwrap();
    assert_eq!(back, li);
}

#[test]
fn rpm_berkeley_db_packages() {
    // tests/fixtures/rpm-bdb-Packages: a real Berkeley DB hash file made by
    // db5.3_load (see make-rpm-bdb.py), with overflow and on-page items.
    let db = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rpm-bdb-Packages"
    ))
    .unwrap();
    let (d, li) = layer(
        LayerBuilder::new()
            .file(
                "etc/redhat-release",
                b"Red Hat Enterprise Linux release 9.3 (Plow)\n",
            )
            .file("var/lib/rpm/Packages", &db)
            .gzip(),
    );
    assert!(li.warnings.is_empty(), "{:?}", li.warnings);
    let inv = merge(&[(d, li)]);
    assert_eq!(
        names(&inv, Ecosystem::Rpm),
        [
            "bash@5.1.8-6.el9",
            "openssl-libs@1:3.0.7-25.el9_3",
            "tiny@1.0-1"
        ]
    );
    let ssl = inv
        .packages
        .iter()
        .find(|p| p.name == "openssl-libs")
        .unwrap();
    assert_eq!(ssl.source_name.as_deref(), Some("openssl"));
    assert_eq!(
        ssl.purl,
        "pkg:rpm/rhel/openssl-libs@3.0.7-25.el9_3?arch=x86_64&distro=rhel-9.3&epoch=1&upstream=openssl-3.0.7-25.el9_3.src.rpm"
    );
}

#[test]
fn rpm_ndb_packages_db() {
    // tests/fixtures/rpm-ndb-Packages.db: a real NDB database written by rpm
    // 4.16 (see make-rpm-ndb.sh): a header spanning several pages, an
    // epoch, an erased package (free slot) and an upgraded one.
    let db = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rpm-ndb-Packages.db"
    ))
    .unwrap();
    // What `rpm -qa --qf '%{NAME} %{EPOCH} %{VERSION}-%{RELEASE}
    // %{SOURCERPM}\n' | sort` prints for that database (make-rpm-ndb.sh).
    const RPM_QA: &str = "\
bigheader (none) 0.9-7 bigheader-0.9-7.src.rpm
tiny (none) 1.0-1 tiny-1.0-1.src.rpm
upgraded (none) 2.0-1 upgraded-2.0-1.src.rpm
withepoch 2 3.2.1-4.suse withepoch-3.2.1-4.suse.src.rpm
";
    for path in [
        "usr/lib/sysimage/rpm/Packages.db",
        "var/lib/rpm/Packages.db",
    ] {
        let (d, li) = layer(
            LayerBuilder::new()
                .file(
                    "usr/lib/os-release",
                    b"NAME=\"SLES\"\nVERSION_ID=\"15.6\"\nID=\"sles\"\n",
                )
                .file(path, &db)
                .gzip(),
        );
        assert!(li.warnings.is_empty(), "{:?}", li.warnings);
        let inv = merge(&[(d, li)]);
        let mut listed: Vec<String> = inv
            .packages
            .iter()
            .filter(|p| p.ecosystem == Ecosystem::Rpm)
            .map(|p| {
                assert_eq!(p.location, format!("/{path}"));
                let (epoch, vr) = match p.version.split_once(':') {
                    Some((e, vr)) => (e, vr),
                    None => ("(none)", p.version.as_str()),
                };
                let srpm = p
                    .purl
                    .split(['?', '&'])
                    .find_map(|q| q.strip_prefix("upstream="))
                    .unwrap_or_default();
                format!("{} {epoch} {vr} {srpm}\n", p.name)
            })
            .collect();
        listed.sort();
        assert_eq!(listed.concat(), RPM_QA);
        let e = inv.packages.iter().find(|p| p.name == "withepoch").unwrap();
        assert_eq!(e.source_name.as_deref(), Some("withepoch"));
        assert_eq!(e.source_version.as_deref(), Some("3.2.1-4.suse"));
    }
}

#[test]
fn distroless_status_d_egg_info_and_hard_links() {
    let (d, li) = layer(
        LayerBuilder::new()
            .file(
                "var/lib/dpkg/status.d/libc6",
                b"Package: libc6\nVersion: 2.36-9\nArchitecture: amd64\nSource: glibc\n",
            )
            .file("var/lib/dpkg/status.d/libc6.md5sums", b"abc  lib/x\n")
            .file(
                "usr/lib/python3/dist-packages/six-1.16.0.egg-info",
                &metadata("six", "1.16.0"),
            )
            .gzip(),
    );
    let inv = merge(&[(d, li)]);
    assert_eq!(names(&inv, Ecosystem::Deb), ["libc6@2.36-9"]);
    assert_eq!(names(&inv, Ecosystem::PyPI), ["six@1.16.0"]);

    // A hard link to a watched file declares the same packages at its path.
    let mut b = tar::Builder::new(Vec::new());
    let data = pkg_json("left-pad", "1.0.0");
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "a/node_modules/left-pad/package.json", &data[..])
        .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    b.append_link(
        &mut h,
        "b/node_modules/left-pad/package.json",
        "a/node_modules/left-pad/package.json",
    )
    .unwrap();
    let (d, li) = layer(gzip(&b.into_inner().unwrap()));
    let inv = merge(&[(d, li)]);
    let locs: Vec<&str> = inv.packages.iter().map(|p| p.location.as_str()).collect();
    assert_eq!(
        locs,
        [
            "/a/node_modules/left-pad/package.json",
            "/b/node_modules/left-pad/package.json"
        ]
    );
}

#[test]
fn empty_layers() {
    // Docker's empty layer (an empty tar, gzip), and an empty blob.
    let empty_tar = vec![0u8; 1024];
    for (bytes, comp) in [
        (gzip(&empty_tar), LayerCompression::Gzip),
        (empty_tar.clone(), LayerCompression::None),
        (Vec::new(), LayerCompression::None),
    ] {
        let d = Digest::sha256_of(&bytes);
        let li = catalog_layer(&bytes[..], comp, &d, &Limits::default()).unwrap();
        assert!(li.files.is_empty() && li.stats.entries == 0);
    }
}
