//! Ubuntu's OSV export (a default source): ecosystem `Ubuntu:22.04:LTS`
//! names the release, packages are source packages compared as dpkg
//! versions, and only images of that release match. The record is written
//! here in the export's form (one OSV JSON object per file).

use inventory::{Distro, Ecosystem};
use vulndb::Database;

const RECORD: &str = r#"{
  "schema_version": "1.6.0",
  "id": "UBUNTU-CVE-2099-0001",
  "aliases": ["CVE-2099-0001"],
  "modified": "2099-01-02T00:00:00Z",
  "published": "2099-01-01T00:00:00Z",
  "summary": "example flaw in a TLS library",
  "affected": [
    {
      "package": {"ecosystem": "Ubuntu:22.04:LTS", "name": "openssl", "purl": "pkg:deb/ubuntu/openssl@3.0.2-0ubuntu1.9?arch=source&distro=jammy"},
      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.2-0ubuntu1.9"}]}]
    },
    {
      "package": {"ecosystem": "Ubuntu:Pro:18.04:LTS", "name": "openssl"},
      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]
    }
  ]
}"#;

fn ubuntu(version: &str) -> Distro {
    Distro {
        id: "ubuntu".into(),
        version_id: version.into(),
        codename: None,
        pretty_name: None,
    }
}

#[test]
fn ubuntu_release_source_package_and_dpkg_order() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("UBUNTU-CVE-2099-0001.json"), RECORD).unwrap();
    let data = tempfile::tempdir().unwrap();
    vulndb::import(data.path(), &[src.path().to_path_buf()], &mut |_| {}).unwrap();
    let db = Database::open(data.path()).unwrap();

    let jammy = ubuntu("22.04");
    let r = db.query(Ecosystem::Deb, "openssl", "3.0.2-0ubuntu1.8", Some(&jammy));
    assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
    let f = &r.findings[0];
    assert_eq!(&*f.id, "UBUNTU-CVE-2099-0001");
    assert_eq!(f.fixed_version.as_deref(), Some("3.0.2-0ubuntu1.9"));
    // The fixed build, a later one and another release do not match.
    for (version, distro) in [
        ("3.0.2-0ubuntu1.9", ubuntu("22.04")),
        ("3.0.2-0ubuntu1.10", ubuntu("22.04")),
        ("3.0.2-0ubuntu1.8", ubuntu("24.04")),
    ] {
        let r = db.query(Ecosystem::Deb, "openssl", version, Some(&distro));
        assert!(
            r.findings.is_empty(),
            "{version} on {distro:?}: {:?}",
            r.findings
        );
    }
    // Nor does Debian with the same source package and version.
    let debian = Distro {
        id: "debian".into(),
        version_id: "12".into(),
        codename: Some("bookworm".into()),
        pretty_name: None,
    };
    let r = db.query(Ecosystem::Deb, "openssl", "3.0.2-0ubuntu1.8", Some(&debian));
    assert!(r.findings.is_empty());
}
