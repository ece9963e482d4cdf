//! The manifest cache is invalidated per repository and reference: a push
//! to one repository leaves another's cached manifests alone, and a moved
//! or deleted tag is seen at once.

use bytes::Bytes;
use oci::{Digest, Name, Reference, Tag};
use registry::{ManifestCacheStats, Origin, Registry};

struct Setup {
    reg: Registry,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(registry::Options::new(dir.path())).unwrap();
    Setup { reg, _dir: dir }
}

impl Setup {
    /// Push a one-layer image whose layer holds `content`; `tag` names it.
    async fn push(&self, repo: &str, tag: &str, content: &str) -> Digest {
        let repo = Name::parse(repo).unwrap();
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        let mut descs = Vec::new();
        for (bytes, media) in [
            (&config[..], oci::OCI_CONFIG),
            (content.as_bytes(), oci::OCI_LAYER_GZIP),
        ] {
            let d = Digest::sha256_of(bytes);
            self.reg.put_blob(&repo, &d, bytes).await.unwrap();
            descs.push(serde_json::json!({
                "mediaType": media, "digest": d.to_string(), "size": bytes.len(),
            }));
        }
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": oci::OCI_MANIFEST,
            "config": descs[0],
            "layers": [descs[1]],
        });
        self.reg
            .put_manifest(
                &repo,
                &Reference::Tag(Tag::parse(tag).unwrap()),
                Bytes::from(serde_json::to_vec(&m).unwrap()),
                Some(oci::OCI_MANIFEST),
                Origin::Push,
            )
            .await
            .unwrap()
    }

    async fn get(&self, repo: &str, tag: &str) -> Option<Digest> {
        self.reg
            .get_manifest(
                &Name::parse(repo).unwrap(),
                &Reference::Tag(Tag::parse(tag).unwrap()),
            )
            .await
            .unwrap()
            .map(|m| m.digest)
    }

    fn stats(&self) -> ManifestCacheStats {
        self.reg.manifest_cache_stats()
    }
}

#[tokio::test]
async fn a_push_to_one_repository_keeps_anothers_cached_manifests() {
    let s = setup();
    let b = s.push("team/b", "v1", "b layer").await;
    assert_eq!(s.get("team/b", "v1").await, Some(b.clone()));
    let after_first = s.stats();
    assert_eq!(s.get("team/b", "v1").await, Some(b.clone()));
    assert_eq!(s.stats().hits, after_first.hits + 1, "second read is a hit");

    // Pushes to another repository, by tag and a new tag.
    s.push("team/a", "v1", "a layer").await;
    s.push("team/a", "v2", "a layer 2").await;
    let before = s.stats();
    assert_eq!(s.get("team/b", "v1").await, Some(b));
    let after = s.stats();
    assert_eq!(
        (after.hits, after.misses),
        (before.hits + 1, before.misses),
        "team/b's manifest stayed cached across pushes to team/a"
    );
}

#[tokio::test]
async fn a_moved_or_deleted_tag_is_seen_at_once() {
    let s = setup();
    let first = s.push("app", "latest", "one").await;
    let other = s.push("app", "stable", "stable").await;
    assert_eq!(s.get("app", "latest").await, Some(first.clone()));
    assert_eq!(s.get("app", "latest").await, Some(first.clone()));
    assert_eq!(s.get("app", "stable").await, Some(other.clone()));

    let second = s.push("app", "latest", "two").await;
    assert_ne!(first, second);
    assert_eq!(s.get("app", "latest").await, Some(second.clone()));
    // The other tag of the same repository was not touched.
    let before = s.stats();
    assert_eq!(s.get("app", "stable").await, Some(other));
    assert_eq!(s.stats().hits, before.hits + 1);

    let name = Name::parse("app").unwrap();
    s.reg
        .delete_tag(&name, &Tag::parse("latest").unwrap())
        .unwrap();
    assert_eq!(s.get("app", "latest").await, None);

    // Deleting a manifest forgets it by digest and by its tags.
    let by_digest = Reference::Digest(second.clone());
    assert!(
        s.reg
            .get_manifest(&name, &by_digest)
            .await
            .unwrap()
            .is_some()
    );
    s.push("app", "again", "two").await;
    assert_eq!(s.get("app", "again").await, Some(second.clone()));
    s.reg.delete_manifest(&name, &second).unwrap();
    assert!(
        s.reg
            .get_manifest(&name, &by_digest)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(s.get("app", "again").await, None);
}
