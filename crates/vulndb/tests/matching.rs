//! Matching against a database built from all of tests/fixtures/vulndata.
//! Every expected value is read off the records quoted in the comments.

use inventory::{Distro, Ecosystem, Inventory, Package};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use vulndb::{Database, Finding, FindingStatus, MatchReport, Severity};

/// Slices of real vulnerability data kept in the repository
/// (`tests/fixtures/vulndata/README.md` says which records and from where).
fn vulndata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vulndata")
}

fn db() -> &'static Database {
    static DB: OnceLock<(tempfile::TempDir, Database)> = OnceLock::new();
    &DB.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        vulndb::import(dir.path(), &[vulndata()], &mut |_| {}).expect("import vulndata");
        let db = Database::open(dir.path()).unwrap();
        (dir, db)
    })
    .1
}

fn debian12() -> Distro {
    Distro {
        id: "debian".into(),
        version_id: "12".into(),
        codename: Some("bookworm".into()),
        pretty_name: None,
    }
}

fn alpine(v: &str) -> Distro {
    Distro {
        id: "alpine".into(),
        version_id: v.into(),
        codename: None,
        pretty_name: None,
    }
}

fn q(eco: Ecosystem, name: &str, version: &str, distro: Option<&Distro>) -> MatchReport {
    db().query(eco, name, version, distro)
}

fn find<'a>(r: &'a MatchReport, id: &str) -> Option<&'a Finding> {
    r.findings.iter().find(|f| *f.id == *id)
}

fn pkg(eco: Ecosystem, name: &str, version: &str) -> Package {
    Package {
        ecosystem: eco,
        name: name.into(),
        version: version.into(),
        source_name: None,
        source_version: None,
        purl: String::new(),
        location: String::new(),
        layer: String::new(),
    }
}

#[test]
fn pypi_just_below_fixed_is_a_finding_and_fixed_is_not() {
    // PYSEC-2019-217: jinja2 introduced 0, fixed 2.10.1; aliases CVE-2019-10906.
    let r = q(Ecosystem::PyPI, "Jinja2", "2.10", None);
    let f = find(&r, "PYSEC-2019-217").expect("2.10 < 2.10.1 is affected");
    assert_eq!(f.fixed_version.as_deref(), Some("2.10.1"));
    assert_eq!(f.status, FindingStatus::Fixed);
    assert!(f.aliases.contains(&"CVE-2019-10906".to_string()));
    assert!(
        find(
            &q(Ecosystem::PyPI, "jinja2", "2.10.1", None),
            "PYSEC-2019-217"
        )
        .is_none()
    );
    // PYSEC-2021-66 (fixed 2.11.3) still applies to 2.10.1.
    let r = q(Ecosystem::PyPI, "jinja2", "2.10.1", None);
    assert_eq!(
        find(&r, "PYSEC-2021-66").unwrap().fixed_version.as_deref(),
        Some("2.11.3")
    );
    assert!(
        q(Ecosystem::PyPI, "jinja2", "2.11.3", None)
            .findings
            .iter()
            .all(|f| &*f.id != "PYSEC-2021-66")
    );
}

#[test]
fn go_ranges_with_two_intervals() {
    // GO-2024-2687 stdlib: introduced 0, fixed 1.21.9, introduced 1.22.0-0, fixed 1.22.2.
    let hit = |v: &str| {
        find(&q(Ecosystem::Go, "stdlib", v, None), "GO-2024-2687").map(|f| f.fixed_version.clone())
    };
    assert_eq!(hit("1.21.8"), Some(Some("1.21.9".into())));
    assert_eq!(hit("go1.21.8"), Some(Some("1.21.9".into())));
    assert_eq!(hit("1.21.9"), None);
    assert_eq!(hit("1.22.0"), Some(Some("1.22.2".into())));
    assert_eq!(hit("v1.22.1"), Some(Some("1.22.2".into())));
    assert_eq!(hit("1.22.2"), None);
    // golang.org/x/net in the same record: fixed 0.23.0.
    let r = q(Ecosystem::Go, "golang.org/x/net", "v0.22.0", None);
    assert_eq!(
        find(&r, "GO-2024-2687").unwrap().fixed_version.as_deref(),
        Some("0.23.0")
    );
}

#[test]
fn maven_several_affected_entries_for_one_package() {
    // GHSA-36p3-wjmg-h94x: spring-beans [0, 5.2.20.RELEASE) and [5.3.0, 5.3.18).
    let id = "GHSA-36p3-wjmg-h94x";
    let name = "org.springframework:spring-beans";
    let r = q(Ecosystem::Maven, name, "5.2.19.RELEASE", None);
    assert_eq!(
        find(&r, id).unwrap().fixed_version.as_deref(),
        Some("5.2.20.RELEASE")
    );
    let r = q(Ecosystem::Maven, name, "5.3.17", None);
    let f = find(&r, id).unwrap();
    assert_eq!(f.fixed_version.as_deref(), Some("5.3.18"));
    // CVSS_V3 CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H = 9.8 → Critical.
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.cvss.as_ref().unwrap().score, 9.8);
    assert!(f.severity_source.starts_with("cvss:"));
    assert!(find(&q(Ecosystem::Maven, name, "5.2.20.RELEASE", None), id).is_none());
    assert!(find(&q(Ecosystem::Maven, name, "5.3.18", None), id).is_none());
}

#[test]
fn npm_cvss_v4_is_preferred_over_v3() {
    // GHSA-qw6h-vgh9-j6wx express: [0, 4.20.0) and [5.0.0-alpha.1, 5.0.0);
    // severity CVSS_V3 (...C:L/I:L/A:L = 5.0) and CVSS_V4 (...SC:L/SI:L/SA:L).
    let r = q(Ecosystem::Npm, "express", "4.19.2", None);
    let f = find(&r, "GHSA-qw6h-vgh9-j6wx").unwrap();
    assert_eq!(f.fixed_version.as_deref(), Some("4.20.0"));
    let cvss = f.cvss.as_ref().unwrap();
    assert_eq!(cvss.version, "4.0");
    assert_eq!(f.severity, Severity::from_score(cvss.score));
    let r = q(Ecosystem::Npm, "express", "5.0.0-beta.3", None);
    assert_eq!(
        find(&r, "GHSA-qw6h-vgh9-j6wx")
            .unwrap()
            .fixed_version
            .as_deref(),
        Some("5.0.0")
    );
    assert!(
        find(
            &q(Ecosystem::Npm, "express", "5.0.0", None),
            "GHSA-qw6h-vgh9-j6wx"
        )
        .is_none()
    );
}

#[test]
fn withdrawn_osv_record_never_matches() {
    // RUSTSEC-2021-0135 (withdrawn 2022-08-14): tower-http [0.0.0-0, 0.1.3).
    let r = q(Ecosystem::Cargo, "tower-http", "0.1.2", None);
    assert!(find(&r, "RUSTSEC-2021-0135").is_none());
}

#[test]
fn rustsec_informational_is_kept_apart() {
    // RUSTSEC-2024-0381: pqcrypto-kyber, informational "unmaintained", all versions.
    let r = q(Ecosystem::Cargo, "pqcrypto-kyber", "0.8.1", None);
    let f = find(&r, "RUSTSEC-2024-0381").unwrap();
    assert_eq!(f.informational.as_deref(), Some("unmaintained"));
    assert!(!f.is_vulnerability());
    assert_eq!(f.status, FindingStatus::Unfixed);
}

#[test]
fn debian_osv_fixed_and_unfixed() {
    let d = debian12();
    // CVE-2023-45853, Debian:12 minizip: introduced 0, fixed 1.1-8+deb12u1.
    let r = q(Ecosystem::Deb, "minizip", "1.1-8", Some(&d));
    let f = find(&r, "CVE-2023-45853").unwrap();
    assert_eq!(f.fixed_version.as_deref(), Some("1.1-8+deb12u1"));
    assert_eq!(f.distro.as_deref(), Some("debian:12"));
    assert!(
        find(
            &q(Ecosystem::Deb, "minizip", "1.1-8+deb12u1", Some(&d)),
            "CVE-2023-45853"
        )
        .is_none()
    );
    // Same record, zlib: introduced 0 only → unfixed for any version.
    let r = q(Ecosystem::Deb, "zlib", "1:1.2.13.dfsg-1", Some(&d));
    let f = find(&r, "CVE-2023-45853").unwrap();
    assert_eq!(f.status, FindingStatus::Unfixed);
    assert_eq!(f.fixed_version, None);
    // Record severity CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H, urgency
    // "not yet assigned" → CVSS rating 9.8 Critical.
    assert_eq!(f.severity, Severity::Critical);
}

#[test]
fn debian_urgency_is_the_distribution_rating() {
    // CVE-2023-31437, Debian:12 systemd: introduced 0 only, urgency "unimportant".
    let r = q(
        Ecosystem::Deb,
        "systemd",
        "252.30-1~deb12u2",
        Some(&debian12()),
    );
    let f = find(&r, "CVE-2023-31437").unwrap();
    assert_eq!(f.severity, Severity::Low);
    assert_eq!(&*f.severity_source, "debian");
    assert_eq!(f.status, FindingStatus::Unfixed);
}

#[test]
fn debian_not_affected_never_matches() {
    // CVE-2024-3094 xz-utils: no Debian:12 OSV entry (resolved "0") and the
    // tracker says "[bookworm] - xz-utils <not-affected>".
    let r = q(Ecosystem::Deb, "xz-utils", "5.4.1-0.2", Some(&debian12()));
    assert!(find(&r, "CVE-2024-3094").is_none());
    // But the unstable line "- xz-utils 5.6.1+really5.4.5-1" applies to sid.
    let sid = Distro {
        id: "debian".into(),
        version_id: String::new(),
        codename: Some("sid".into()),
        pretty_name: None,
    };
    let r = q(Ecosystem::Deb, "xz-utils", "5.6.0-0.2", Some(&sid));
    assert_eq!(
        find(&r, "CVE-2024-3094").unwrap().fixed_version.as_deref(),
        Some("5.6.1+really5.4.5-1")
    );
}

#[test]
fn tracker_reason_refines_the_osv_status() {
    // CVE-2024-22365 pam: OSV Debian:12 introduced-only; the tracker text says
    // "[bookworm] - pam <no-dsa> (Minor issue)".
    let r = q(Ecosystem::Deb, "pam", "1.5.2-6+deb12u1", Some(&debian12()));
    let f = find(&r, "CVE-2024-22365").unwrap();
    assert_eq!(f.status, FindingStatus::Unfixed);
    assert_eq!(f.status_note.as_deref(), Some("no-dsa: Minor issue"));
}

#[test]
fn debian_matches_on_source_package_and_version() {
    // libcurl4 is built from curl; CVE-2023-38545 Debian:12 curl fixed
    // 7.88.1-10+deb12u4.
    let mut p = pkg(Ecosystem::Deb, "libcurl4", "7.88.1-10+deb12u3");
    p.source_name = Some("curl".into());
    let inv = Inventory {
        distro: Some(debian12()),
        packages: vec![p],
    };
    let findings = db().match_inventory(&inv);
    let f = findings
        .iter()
        .find(|f| &*f.id == "CVE-2023-38545")
        .unwrap();
    assert_eq!(&*f.package, "libcurl4");
    assert_eq!(f.source_package.as_deref(), Some("curl"));
    assert_eq!(f.fixed_version.as_deref(), Some("7.88.1-10+deb12u4"));
    // The DSA for the same fix (DSA-5523-1, related CVE-2023-38545) is not a
    // second finding when its CVEs are already reported.
    assert!(findings.iter().all(|f| !f.id.starts_with("DSA-5523")));
}

#[test]
fn debian_dsa_list_gives_release_fixes() {
    let d11 = Distro {
        id: "debian".into(),
        version_id: "11".into(),
        codename: Some("bullseye".into()),
        pretty_name: None,
    };
    // DSA-5380-1 xorg-server: {CVE-2023-1393},
    // [bullseye] - xorg-server 2:1.20.11-1+deb11u6.
    let r = q(
        Ecosystem::Deb,
        "xorg-server",
        "2:1.20.11-1+deb11u5",
        Some(&d11),
    );
    let f = find(&r, "DSA-5380-1").unwrap();
    assert_eq!(f.fixed_version.as_deref(), Some("2:1.20.11-1+deb11u6"));
    assert_eq!(*f.related, ["CVE-2023-1393".to_string()]);
    assert!(
        find(
            &q(
                Ecosystem::Deb,
                "xorg-server",
                "2:1.20.11-1+deb11u6",
                Some(&d11)
            ),
            "DSA-5380-1"
        )
        .is_none()
    );
    // DSA-5218-1 zlib fixes CVE-2022-37434 in 1:1.2.11.dfsg-2+deb11u2; the
    // full OSV record CVE-2022-37434 has Debian:11 zlib with the same fix,
    // so the CVE is reported and the DSA is not repeated.
    let r = q(
        Ecosystem::Deb,
        "zlib",
        "1:1.2.11.dfsg-2+deb11u1",
        Some(&d11),
    );
    let f = find(&r, "CVE-2022-37434").unwrap();
    assert_eq!(f.fixed_version.as_deref(), Some("1:1.2.11.dfsg-2+deb11u2"));
    assert!(find(&r, "DSA-5218-1").is_none());
}

#[test]
fn alpine_secfixes_per_branch() {
    // alpine/v3.20/main.json zlib: "0": [CVE-2023-45853, CVE-2023-6992],
    // "1.2.12-r2": [CVE-2022-37434].
    let d = alpine("3.20.3");
    let r = q(Ecosystem::Apk, "zlib", "1.2.12-r1", Some(&d));
    let f = find(&r, "CVE-2022-37434").unwrap();
    assert_eq!(f.fixed_version.as_deref(), Some("1.2.12-r2"));
    assert_eq!(f.distro.as_deref(), Some("alpine:v3.20"));
    assert!(
        find(&r, "CVE-2023-45853").is_none(),
        "key \"0\" means not affected"
    );
    assert!(find(&r, "CVE-2023-6992").is_none());
    assert!(
        find(
            &q(Ecosystem::Apk, "zlib", "1.2.12-r2", Some(&d)),
            "CVE-2022-37434"
        )
        .is_none()
    );
}

#[test]
fn os_packages_only_match_their_own_distribution() {
    // A Debian package named like a PyPI package with advisories (jinja2)
    // is not matched against PyPI data...
    let mut p = pkg(Ecosystem::Deb, "python3-jinja2", "2.10-2");
    p.source_name = Some("jinja2".into());
    let inv = Inventory {
        distro: Some(debian12()),
        packages: vec![p.clone()],
    };
    let findings = db().match_inventory(&inv);
    assert!(findings.iter().all(|f| !f.id.starts_with("PYSEC-")));
    // ...an Alpine image's zlib is not matched against Debian data...
    let r = q(Ecosystem::Apk, "zlib", "1.2.13-r0", Some(&alpine("3.20.3")));
    assert!(
        r.findings
            .iter()
            .all(|f| f.distro.as_deref() == Some("alpine:v3.20"))
    );
    // ...and an OS package without a distribution is reported, not matched.
    let report = db().match_report(&Inventory {
        distro: None,
        packages: vec![p],
    });
    assert!(report.findings.is_empty());
    assert_eq!(report.uncomparable.len(), 1);
}

#[test]
fn unparseable_versions_are_reported_not_matched() {
    let r = q(Ecosystem::PyPI, "jinja2", "not a version", None);
    assert!(r.findings.is_empty());
    assert_eq!(r.uncomparable.len(), 1);
    assert!(r.uncomparable[0].reason.contains("cannot compare"));
}

#[test]
fn findings_serialise_with_the_agreed_names() {
    let r = q(Ecosystem::PyPI, "jinja2", "2.10", None);
    let v = serde_json::to_value(find(&r, "PYSEC-2019-217").unwrap()).unwrap();
    for key in [
        "id",
        "aliases",
        "ecosystem",
        "package",
        "installed_version",
        "fixed_version",
        "status",
        "severity",
        "cvss",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    assert_eq!(v["status"], "fixed");
    assert_eq!(v["ecosystem"], "pypi");
    assert!(Severity::Critical > Severity::High && Severity::Low > Severity::Unknown);
}

#[test]
fn status_lists_sources_with_counts_and_dates() {
    let s = db().status();
    let get = |n: &str| {
        s.sources
            .iter()
            .find(|x| x.name == n)
            .unwrap_or_else(|| panic!("{n}"))
    };
    // Counts from the files themselves: one record per zip member, one per
    // secdb package (alpine v3.20 main: 255), one per NVD feed item (the
    // feed's timestamp is 2022-11-04T07:00Z).
    let members = |zip: &str| {
        zip::ZipArchive::new(std::fs::File::open(vulndata().join(zip)).unwrap())
            .unwrap()
            .len()
    };
    let json = |f: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(vulndata().join(f)).unwrap()).unwrap()
    };
    assert_eq!(get("osv:cargo").records, members("osv/cargo/all.zip"));
    assert_eq!(get("osv:PyPI").records, members("osv/PyPI/all.zip"));
    assert_eq!(get("alpine:v3.20/main").records, 255);
    assert_eq!(
        get("nvd:1.1").records,
        json("nvd/nvdcve-1.1-2022.subset.json")["CVE_Items"]
            .as_array()
            .unwrap()
            .len()
    );
    assert_eq!(
        get("nvd:1.1").snapshot.as_deref(),
        Some("2022-11-04T07:00:00Z")
    );
    assert_eq!(
        get("debian-tracker:DSA").snapshot.as_deref(),
        Some("2023-03-29T00:00:00Z")
    );
    assert!(!db().version().is_empty());
}
