//! The local sources against the real test images: an OCI layout and a
//! docker-archive made from it with skopeo.

use oci::{BlobSource, Digest, Manifest};
use std::io::Read;
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use transport::{ImageSource, SourceSpec, open, testing};

async fn read_all(src: &dyn ImageSource, d: &Digest) -> Vec<u8> {
    let mut s = src.blob(d).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    assert_eq!(Digest::sha256_of(&out), *d);
    out
}

/// Read every blob of an image (or of every child of an index) and check it.
async fn check_whole(src: &dyn ImageSource, root: &transport::FetchedManifest) -> usize {
    let mut n = 0;
    let m = root.parse().unwrap();
    let mut images = Vec::new();
    match &m {
        Manifest::Image { .. } => images.push(m.clone()),
        Manifest::Index { .. } => {
            for c in m.children() {
                let child = src.manifest(&c.digest).await.unwrap();
                assert_eq!(child.digest, c.digest);
                images.push(child.parse().unwrap());
            }
        }
    }
    for img in images {
        for b in img.blobs() {
            let mut s = src.blob(&b.digest).await.unwrap();
            assert_eq!(s.size(), Some(b.size));
            let copied = tokio::io::copy(&mut s, &mut tokio::io::sink())
                .await
                .unwrap();
            assert_eq!(copied, b.size);
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn oci_layout_image_and_index() {
    let dir = transport::require_test_images!();
    let index: oci::ImageIndex =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let entry = |tag: &str| {
        index
            .manifests
            .iter()
            .find(|d| d.annotations.as_ref().unwrap()["org.opencontainers.image.ref.name"] == tag)
            .unwrap()
            .clone()
    };

    let spec = SourceSpec::parse(&format!("oci:{}:python-app", dir.display())).unwrap();
    let src = open(&spec).await.unwrap();
    let root = src.root().await.unwrap();
    assert_eq!(root.digest, entry("python-app").digest);
    assert_eq!(root.media_type, oci::OCI_MANIFEST);
    assert_eq!(check_whole(src.as_ref(), &root).await, 3);
    let tags = src.tags().await.unwrap();
    assert!(tags.contains(&"multiarch".to_string()), "{tags:?}");

    let spec = SourceSpec::parse(&format!("oci:{}:multiarch", dir.display())).unwrap();
    let src = open(&spec).await.unwrap();
    let root = src.root().await.unwrap();
    assert_eq!(root.digest, entry("multiarch").digest);
    assert!(root.parse().unwrap().is_index());
    assert!(check_whole(src.as_ref(), &root).await >= 4);
    assert_eq!(
        src.tagged("python-app").await.unwrap().digest,
        entry("python-app").digest
    );

    // Resuming from an offset gives the tail.
    let m = root.parse().unwrap();
    let child = src.manifest(&m.children()[0].digest).await.unwrap();
    let cfg = child.parse().unwrap().blobs()[0].clone();
    let whole = read_all(src.as_ref(), &cfg.digest).await;
    let mut tail = Vec::new();
    src.blob_from(&cfg.digest, 10)
        .await
        .unwrap()
        .read_to_end(&mut tail)
        .await
        .unwrap();
    assert_eq!(tail, whole[10..]);

    // The sync adapter for the cataloger.
    let layout = transport::OciLayoutSource::open(dir.clone(), Some("multiarch".into()))
        .await
        .unwrap();
    let mut sync = Vec::new();
    layout
        .open_blob(&cfg.digest)
        .unwrap()
        .read_to_end(&mut sync)
        .unwrap();
    assert_eq!(sync, whole);
    let shared: Arc<dyn ImageSource> = Arc::from(src);
    let adapter = transport::blocking_blob_source(shared, tokio::runtime::Handle::current());
    let d = cfg.digest.clone();
    let via = tokio::task::spawn_blocking(move || {
        let mut v = Vec::new();
        adapter.open_blob(&d).unwrap().read_to_end(&mut v).unwrap();
        v
    })
    .await
    .unwrap();
    assert_eq!(via, whole);
}

#[tokio::test]
async fn oci_layout_errors_are_clear() {
    let dir = transport::require_test_images!();
    let e = open(&SourceSpec::parse(&format!("oci:{}:nope", dir.display())).unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"nope\"") && e.contains("python-app"), "{e}");
    let e = open(&SourceSpec::parse(&format!("oci:{}", dir.display())).unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("name one with oci:DIR:TAG"), "{e}");
    let tmp = tempfile::tempdir().unwrap();
    let e = open(&SourceSpec::parse(&format!("oci:{}", tmp.path().display())).unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not an OCI image layout"), "{e}");
}

/// A one-image layout in a temp dir whose layer we can corrupt.
#[tokio::test]
async fn corrupted_blob_fails_at_end_of_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let layer = vec![7u8; 300_000];
    let (manifest_d, manifest, layer_d) = testing::write_one_layer_layout(dir, &layer, None);
    let src = open(&SourceSpec::parse(&format!("oci:{}", dir.display())).unwrap())
        .await
        .unwrap();
    assert_eq!(src.root().await.unwrap().digest, manifest_d);
    read_all(src.as_ref(), &layer_d).await;
    let mut bad = layer.clone();
    bad[200_000] = 8;
    std::fs::write(dir.join("blobs/sha256").join(layer_d.hex()), &bad).unwrap();
    let e = src
        .blob(&layer_d)
        .await
        .unwrap()
        .read_to_end(&mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    // A corrupted manifest is refused outright.
    std::fs::write(
        dir.join("blobs/sha256").join(manifest_d.hex()),
        manifest.replacen("{", "{ ", 1),
    )
    .unwrap();
    assert!(matches!(
        src.root().await,
        Err(transport::Error::DigestMismatch { .. }) | Err(transport::Error::Invalid(_))
    ));
}

#[tokio::test]
async fn docker_archive_from_skopeo() {
    let dir = transport::require_test_images!();
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("images.tar");
    testing::skopeo_copy(
        &format!("oci:{}:python-app", dir.display()),
        &format!("docker-archive:{}:test/python:v1", archive.display()),
        &[],
    );
    let src = open(&SourceSpec::parse(&format!("docker-archive:{}", archive.display())).unwrap())
        .await
        .unwrap();
    let root = src.root().await.unwrap();
    assert_eq!(root.media_type, oci::DOCKER_MANIFEST);
    let m = root.parse().unwrap();
    assert_eq!(m.blobs().len(), 3);
    // Uncompressed layers: their digests are the config's diff_ids.
    let config_bytes = read_all(src.as_ref(), &m.blobs()[0].digest).await;
    let config: serde_json::Value = serde_json::from_slice(&config_bytes).unwrap();
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let layer_digests: Vec<String> = m.blobs()[1..]
        .iter()
        .map(|b| b.digest.to_string())
        .collect();
    assert_eq!(layer_digests, diff_ids);
    assert_eq!(check_whole(src.as_ref(), &root).await, 3);
    assert_eq!(src.tags().await.unwrap(), vec!["v1".to_string()]);
    assert_eq!(src.manifest(&root.digest).await.unwrap(), root);

    // The same layer read through the sync BlobSource.
    let archive_src =
        transport::DockerArchiveSource::open(archive.clone(), Some("test/python:v1".into()))
            .await
            .unwrap();
    let layer = &m.blobs()[1].digest;
    let mut sync = archive_src.open_blob(layer).unwrap();
    let mut hasher = oci::Digester::new(oci::Algorithm::Sha256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = sync.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    assert_eq!(&hasher.finish(), layer);

    // A hand-made archive: two images (the second's layer reached through
    // a symlink), entries named "./…".
    let x = tmp.path().join("x");
    std::fs::create_dir(&x).unwrap();
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(&x)
        .arg("-xf")
        .arg(&archive)
        .status()
        .unwrap();
    assert!(st.success());
    let mut entries: serde_json::Value =
        serde_json::from_slice(&std::fs::read(x.join("manifest.json")).unwrap()).unwrap();
    let mut second = entries[0].clone();
    let first_layer = second["Layers"][0].as_str().unwrap().to_string();
    std::os::unix::fs::symlink(&first_layer, x.join("linked-layer.tar")).unwrap();
    second["Layers"][0] = "linked-layer.tar".into();
    second["RepoTags"] = serde_json::json!(["other/app:v2"]);
    entries.as_array_mut().unwrap().push(second);
    std::fs::write(x.join("manifest.json"), entries.to_string()).unwrap();
    let two = tmp.path().join("two.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(&x)
        .arg("-cf")
        .arg(&two)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let e = open(&SourceSpec::parse(&format!("docker-archive:{}", two.display())).unwrap())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("pick one"), "{e}");
    let e =
        open(&SourceSpec::parse(&format!("docker-archive:{}:no/such:tag", two.display())).unwrap())
            .await
            .unwrap_err();
    assert!(e.to_string().contains("not in"), "{e}");
    for sel in ["other/app:v2", "@1"] {
        let other =
            open(&SourceSpec::parse(&format!("docker-archive:{}:{sel}", two.display())).unwrap())
                .await
                .unwrap();
        let r = other.root().await.unwrap();
        assert_eq!(
            r.digest, root.digest,
            "same image, same synthesised manifest"
        );
        assert_eq!(check_whole(other.as_ref(), &r).await, 3);
    }
}

#[tokio::test]
async fn docker_archive_rejects_garbage() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("x.tar");
    std::fs::write(&f, b"\x1f\x8bnot really").unwrap();
    let e = open(&SourceSpec::parse(&format!("docker-archive:{}", f.display())).unwrap())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("compressed"), "{e}");
    std::fs::write(&f, vec![0u8; 2048]).unwrap();
    let e = open(&SourceSpec::parse(&format!("docker-archive:{}", f.display())).unwrap())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("manifest.json"), "{e}");
}
