//! Two registries ("nodes") on one PostgreSQL database and one data
//! directory: what one commits, the other serves, and a tag moved on one
//! is not served stale from the other's manifest cache. Skips (naming
//! what is missing) without PostgreSQL, except under CI.

mod common;

use bytes::Bytes;
use common::image_manifest;
use oci::{Digest, Name, Reference, Tag};
use registry::{MetadataStorage, Options, Origin, Registry};
use std::time::{Duration, Instant};

fn node(dir: &std::path::Path, url: &str) -> Registry {
    let mut opts = Options::new(dir);
    opts.metadata = MetadataStorage::from_url(url).unwrap();
    Registry::open(opts).unwrap()
}

async fn push_image(reg: &Registry, repo: &Name, tag: &str, layer: &[u8]) -> Digest {
    let config = b"{}";
    let (cd, ld) = (Digest::sha256_of(config), Digest::sha256_of(layer));
    reg.put_blob(repo, &cd, &config[..]).await.unwrap();
    reg.put_blob(repo, &ld, layer).await.unwrap();
    let body = image_manifest(&cd, config.len(), &ld, layer.len());
    reg.put_manifest(
        repo,
        &Reference::Tag(Tag::parse(tag).unwrap()),
        Bytes::from(body),
        None,
        Origin::Push,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_on_one_node_is_served_by_the_other_and_never_stale() {
    let Some(cluster) = storage::testing::shared_cluster() else {
        return;
    };
    let url = cluster.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (node(dir.path(), &url), node(dir.path(), &url));
    assert!(!dir.path().join("meta.db").exists());
    let repo = Name::parse("team/app").unwrap();
    let latest = Reference::Tag(Tag::parse("latest").unwrap());

    let first = push_image(&a, &repo, "latest", b"layer one").await;
    let seen = b.get_manifest(&repo, &latest).await.unwrap().unwrap();
    assert_eq!(seen.digest, first);
    assert_eq!(b.tags(&repo).unwrap().len(), 1);
    assert_eq!(b.repositories().unwrap(), vec![repo.clone()]);

    // b has `latest` cached; a moves it. b serves the new digest once it
    // sees the metadata change (checked at most once a second; the
    // deadlines leave room for a loaded machine).
    let second = push_image(&a, &repo, "latest", b"layer two").await;
    assert_ne!(first, second);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = b.get_manifest(&repo, &latest).await.unwrap().unwrap();
        if now.digest == second {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node b still serves the old digest"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A delete on b reaches a's cache too.
    a.get_manifest(&repo, &latest).await.unwrap().unwrap();
    b.delete_manifest(&repo, &second).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while a.get_manifest(&repo, &latest).await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "node a still serves a deleted tag"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        a.get_manifest(&repo, &Reference::Digest(first.clone()))
            .await
            .unwrap()
            .is_some()
    );
}
