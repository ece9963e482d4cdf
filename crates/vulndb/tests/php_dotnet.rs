//! Packagist (PHP) and NuGet (.NET) advisories in OSV form, as in the
//! default sources' exports: versions ordered by Composer's and NuGet's
//! rules, names matched without regard to case. The records are written
//! here in the exports' form (one OSV JSON object per file).

use inventory::Ecosystem;
use vulndb::Database;

const PACKAGIST: &str = r#"{
  "schema_version": "1.6.0",
  "id": "GHSA-0000-php0-0001",
  "modified": "2099-01-02T00:00:00Z",
  "summary": "example flaw in a PHP framework",
  "affected": [{
    "package": {"ecosystem": "Packagist", "name": "example/framework", "purl": "pkg:composer/example/framework"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "5.0.0"}, {"fixed": "5.4.10"}]}]
  }],
  "database_specific": {"severity": "HIGH"}
}"#;

const NUGET: &str = r#"{
  "schema_version": "1.6.0",
  "id": "GHSA-0000-net0-0001",
  "modified": "2099-01-02T00:00:00Z",
  "summary": "example flaw in a .NET JSON library",
  "affected": [{
    "package": {"ecosystem": "NuGet", "name": "Example.Json", "purl": "pkg:nuget/Example.Json"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "13.0.1"}]}]
  }],
  "database_specific": {"severity": "HIGH"}
}"#;

#[test]
fn packagist_and_nuget_records_match_by_their_own_rules() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("GHSA-0000-php0-0001.json"), PACKAGIST).unwrap();
    std::fs::write(src.path().join("GHSA-0000-net0-0001.json"), NUGET).unwrap();
    let data = tempfile::tempdir().unwrap();
    vulndb::import(data.path(), &[src.path().to_path_buf()], &mut |_| {}).unwrap();
    let db = Database::open(data.path()).unwrap();

    let hits = |eco, name: &str, version: &str| {
        let r = db.query(eco, name, version, None);
        assert!(
            r.uncomparable.is_empty(),
            "{name} {version}: {:?}",
            r.uncomparable
        );
        r.findings
            .iter()
            .map(|f| f.id.to_string())
            .collect::<Vec<_>>()
    };
    // Composer order: 5.4.9 < 5.4.10, pre-releases below their release.
    assert_eq!(
        hits(Ecosystem::Composer, "example/framework", "5.4.9"),
        ["GHSA-0000-php0-0001"]
    );
    assert_eq!(
        hits(Ecosystem::Composer, "example/framework", "v5.4.10-RC1"),
        ["GHSA-0000-php0-0001"]
    );
    assert!(hits(Ecosystem::Composer, "example/framework", "5.4.10").is_empty());
    assert!(hits(Ecosystem::Composer, "example/framework", "4.4.0").is_empty());
    // NuGet order (13.0 = 13.0.0) and case-insensitive ids.
    assert_eq!(
        hits(Ecosystem::NuGet, "Example.Json", "12.0.3"),
        ["GHSA-0000-net0-0001"]
    );
    assert_eq!(
        hits(Ecosystem::NuGet, "example.json", "13.0"),
        ["GHSA-0000-net0-0001"]
    );
    assert!(hits(Ecosystem::NuGet, "EXAMPLE.JSON", "13.0.1.0").is_empty());
    assert!(hits(Ecosystem::NuGet, "Example.Json", "13.0.3").is_empty());
}
