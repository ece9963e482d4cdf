//! The lists' typed errors: what the web layer answers 400 for (a cursor
//! this server did not give, an unknown sort or state) is told apart from
//! a store that cannot be read (500), and a cursor this server gave
//! continues where the page ended.

use super::{BrowseError, ImageQuery, Snapshot, VulnQuery};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A snapshot with three tags of one repository and no judged image.
fn snapshot() -> Snapshot {
    let tags = ["a", "b", "c"]
        .iter()
        .map(|t| (t.to_string(), format!("sha256:{}", t.repeat(64))))
        .collect();
    Snapshot {
        images: Vec::new(),
        vulns: Arc::new(Vec::new()),
        tags: BTreeMap::from([("team/app".to_string(), tags)]),
        by_digest: HashMap::new(),
        activity: Vec::new(),
        as_of: "2026-01-01T00:00:00Z".into(),
    }
}

fn all(_: &str) -> bool {
    true
}

#[test]
fn a_cursor_this_server_gave_continues_the_list() {
    let snap = snapshot();
    let first = snap.tags("team/app", None, false, None, 2).unwrap();
    let names: Vec<_> = first.items.iter().map(|t| t.tag.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(first.total, 3);
    assert_eq!(first.as_of, "2026-01-01T00:00:00Z");
    let next = first.next.expect("a next page");
    let second = snap.tags("team/app", None, false, Some(&next), 2).unwrap();
    let names: Vec<_> = second.items.iter().map(|t| t.tag.as_str()).collect();
    assert_eq!(names, ["c"]);
    assert!(second.next.is_none());
}

#[test]
fn a_cursor_this_server_did_not_give_is_a_bad_cursor() {
    let snap = snapshot();
    // Not hex; hex of something that is no (key, id); a valid one cut short.
    let valid = snap
        .tags("team/app", None, false, None, 1)
        .unwrap()
        .next
        .unwrap();
    for bad in ["zz", &hex::encode("[1,2,3]"), &valid[..valid.len() - 2]] {
        let e = snap
            .tags("team/app", None, false, Some(bad), 10)
            .err()
            .unwrap_or_else(|| panic!("{bad:?} was taken"));
        assert!(matches!(e, BrowseError::BadCursor), "{bad:?}: {e:?}");
        assert_eq!(e.to_string(), "cursor is not one this server gave");
        assert!(matches!(
            snap.repositories(None, &all, Some(bad), 10),
            Err(BrowseError::BadCursor)
        ));
        assert!(matches!(
            snap.images(&ImageQuery::default(), &all, Some(bad), 10),
            Err(BrowseError::BadCursor)
        ));
        assert!(matches!(
            snap.vulnerabilities(&VulnQuery::default(), &all, Some(bad), 10),
            Err(BrowseError::BadCursor)
        ));
    }
}

#[test]
fn an_unknown_sort_or_state_is_a_bad_filter_naming_it() {
    let snap = snapshot();
    let q = ImageQuery {
        sort: "colour".into(),
        ..ImageQuery::default()
    };
    match snap.images(&q, &all, None, 10) {
        Err(BrowseError::BadFilter(m)) => {
            assert!(m.contains("\"colour\"") && m.contains("pushed"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    let q = ImageQuery {
        states: vec!["healthy".into(), "great".into()],
        ..ImageQuery::default()
    };
    match snap.images(&q, &all, None, 10) {
        Err(BrowseError::BadFilter(m)) => assert!(
            m.contains("\"great\"") && m.contains("waiting_for_database"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    let q = VulnQuery {
        sort: "worst".into(),
        ..VulnQuery::default()
    };
    match snap.vulnerabilities(&q, &all, None, 10) {
        Err(BrowseError::BadFilter(m)) => assert!(m.contains("\"worst\""), "{m}"),
        other => panic!("{other:?}"),
    }
    // Every known sort and state, and the empty default, are taken.
    for sort in ["", "name", "pushed", "findings", "severity", "size"] {
        let q = ImageQuery {
            sort: sort.into(),
            states: super::state::ALL.iter().map(|s| s.to_string()).collect(),
            ..ImageQuery::default()
        };
        assert!(snap.images(&q, &all, None, 10).is_ok(), "{sort:?}");
    }
    for sort in ["", "severity", "images", "id"] {
        let q = VulnQuery {
            sort: sort.into(),
            ..VulnQuery::default()
        };
        assert!(snap.vulnerabilities(&q, &all, None, 10).is_ok(), "{sort:?}");
    }
}

/// Catalogs nothing: the test below never assesses an image.
struct NoCatalog;

impl crate::Cataloger for NoCatalog {
    fn version(&self) -> u32 {
        1
    }
    fn catalog(
        &self,
        _: &dyn oci::BlobSource,
        _: &oci::ImageManifest,
        _: &dyn catalog::LayerCache,
    ) -> Result<inventory::Inventory, crate::CatalogFailure> {
        Ok(inventory::Inventory::default())
    }
}

struct NoDatabase;

impl crate::VulnSource for NoDatabase {
    fn current(&self) -> Option<Arc<dyn crate::VulnDatabase>> {
        None
    }
}

#[test]
fn a_store_that_cannot_be_read_is_the_servers_error() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry::Registry::open(registry::Options::new(dir.path())).unwrap();
    let svc = crate::Service::open(
        crate::service::Options::new(dir.path()),
        Arc::new(crate::live::RegistrySource(reg)),
        Arc::new(NoCatalog),
        Arc::new(NoDatabase),
        Arc::new(crate::SystemClock),
    )
    .unwrap();
    // The images' table gone under the service: judging cannot read it.
    storage::assess::sqlite_execute_for_tests(&dir.path().join("assess.db"), "DROP TABLE images")
        .unwrap();
    match svc.snapshot() {
        Err(e @ BrowseError::Store(_)) => {
            let m = e.to_string();
            assert!(m.starts_with("cannot judge the registry's images: "), "{m}");
            assert!(m.contains("images"), "{m}");
        }
        Err(e) => panic!("not a store error: {e:?}"),
        Ok(_) => panic!("judged without its table"),
    }
}
