//! The archive's chain of trust against a loopback archive built from real
//! packages: InRelease signed by the configured key verifies; another
//! key, an altered InRelease, an unsigned one, an altered Packages index
//! or an altered `.deb` are refused with a message that says so.

mod support;

use patch::archive::{ArchiveSource, Keyring};
use support::*;

fn source(url: &str) -> Vec<ArchiveSource> {
    vec![ArchiveSource {
        url: url.to_string(),
        suite: "bookworm".into(),
        components: vec!["main".into()],
    }]
}

#[tokio::test]
async fn signed_archive_verifies_and_serves_verified_packages() {
    let Some(setup) = fetch_setup().await else {
        return;
    };
    let index = setup
        .fetcher
        .index(&source(&setup.srv.url), &setup.keyring, "amd64")
        .await
        .unwrap();
    let tasn = index.versions("libtasn1-6");
    assert_eq!(
        tasn.len(),
        1,
        "{:?}",
        index.by_name.keys().collect::<Vec<_>>()
    );
    assert_eq!(tasn[0].version(), "4.19.0-2+deb12u1");
    let deb = setup
        .fetcher
        .verified(&tasn[0].url, &tasn[0].sha256, tasn[0].size)
        .await
        .unwrap();
    assert!(deb.starts_with(setup.data.path().join("patch-cache/sha256")));
    let control = patch::deb::read_control(&deb).unwrap();
    assert_eq!(control.stanza.package(), "libtasn1-6");
    assert!(control.files.contains_key("md5sums"));
    // Cached by hash: served again without the server.
    setup.srv.overrides.lock().unwrap().insert(
        tasn[0]
            .url
            .trim_start_matches(&format!("{}/", setup.srv.url))
            .to_string(),
        b"gone".to_vec(),
    );
    assert_eq!(
        setup
            .fetcher
            .verified(&tasn[0].url, &tasn[0].sha256, tasn[0].size)
            .await
            .unwrap(),
        deb
    );
}

#[tokio::test]
async fn another_key_is_refused() {
    let Some(setup) = fetch_setup().await else {
        return;
    };
    let other = Keyring::load(&setup.root.join("other-keyring.asc")).unwrap();
    let err = setup
        .fetcher
        .index(&source(&setup.srv.url), &other, "amd64")
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("does not verify against the configured keyring"),
        "{msg}"
    );
}

#[tokio::test]
async fn altered_or_unsigned_inrelease_is_refused() {
    let Some(setup) = fetch_setup().await else {
        return;
    };
    let signed = std::fs::read_to_string(setup.root.join("dists/bookworm/InRelease")).unwrap();
    assert!(signed.contains("Origin: drydock-test"));
    let key = "dists/bookworm/InRelease".to_string();

    setup.srv.overrides.lock().unwrap().insert(
        key.clone(),
        signed
            .replace("Origin: drydock-test", "Origin: drydock-tesT")
            .into_bytes(),
    );
    let msg = format!(
        "{:#}",
        setup
            .fetcher
            .index(&source(&setup.srv.url), &setup.keyring, "amd64")
            .await
            .unwrap_err()
    );
    assert!(msg.contains("does not verify"), "{msg}");

    let release = std::fs::read(setup.root.join("dists/bookworm/Release")).unwrap();
    setup.srv.overrides.lock().unwrap().insert(key, release);
    let msg = format!(
        "{:#}",
        setup
            .fetcher
            .index(&source(&setup.srv.url), &setup.keyring, "amd64")
            .await
            .unwrap_err()
    );
    assert!(msg.contains("InRelease is not signed"), "{msg}");
}

#[tokio::test]
async fn altered_index_or_package_is_refused() {
    let Some(setup) = fetch_setup().await else {
        return;
    };

    // A Packages index that is not the one the signed Release lists.
    let mut xz = std::fs::read(
        setup
            .root
            .join("dists/bookworm/main/binary-amd64/Packages.xz"),
    )
    .unwrap();
    let n = xz.len();
    xz[n / 2] ^= 0x55;
    setup
        .srv
        .overrides
        .lock()
        .unwrap()
        .insert("dists/bookworm/main/binary-amd64/Packages.xz".into(), xz);
    let msg = format!(
        "{:#}",
        setup
            .fetcher
            .index(&source(&setup.srv.url), &setup.keyring, "amd64")
            .await
            .unwrap_err()
    );
    assert!(msg.contains("does not match the signed index"), "{msg}");
    setup.srv.overrides.lock().unwrap().clear();

    // A .deb whose bytes differ from the hash its stanza gives.
    let index = setup
        .fetcher
        .index(&source(&setup.srv.url), &setup.keyring, "amd64")
        .await
        .unwrap();
    let c = &index.versions("libudev1")[0];
    let rel = c
        .url
        .trim_start_matches(&format!("{}/", setup.srv.url))
        .to_string();
    let mut deb = std::fs::read(setup.root.join(&rel)).unwrap();
    let n = deb.len();
    deb[n - 100] ^= 0x01;
    setup.srv.overrides.lock().unwrap().insert(rel, deb);
    let msg = format!(
        "{:#}",
        setup
            .fetcher
            .verified(&c.url, &c.sha256, c.size)
            .await
            .unwrap_err()
    );
    assert!(msg.contains("does not match the signed index"), "{msg}");
    assert!(msg.contains("tampered"), "{msg}");
    // Nothing unverified was kept.
    assert!(
        !setup
            .data
            .path()
            .join("patch-cache/sha256")
            .join(&c.sha256)
            .exists()
    );
}

/// Continuous mode's view of an archive: the signed `Packages` hashes,
/// the same on every read of an unchanged archive, and nothing at all
/// (an error) from an altered `InRelease`.
#[tokio::test]
async fn archive_fingerprint_is_the_signed_packages_hashes() {
    let Some(setup) = fetch_setup().await else {
        return;
    };
    let a = setup
        .fetcher
        .fingerprint(&source(&setup.srv.url), &setup.keyring)
        .await
        .unwrap();
    let b = setup
        .fetcher
        .fingerprint(&source(&setup.srv.url), &setup.keyring)
        .await
        .unwrap();
    assert_eq!(a, b);
    let packages =
        std::fs::read(setup.root.join("dists/bookworm/main/binary-amd64/Packages")).unwrap();
    use sha2::Digest as _;
    let sha = hex::encode(sha2::Sha256::digest(&packages));
    assert!(
        a.contains(&format!(
            "{sha} {} main/binary-amd64/Packages\n",
            packages.len()
        )),
        "{a}"
    );
    assert_eq!(a.matches("main/binary-amd64/Packages").count(), 3, "{a}");
    let inrelease = std::fs::read_to_string(setup.root.join("dists/bookworm/InRelease")).unwrap();
    setup.srv.overrides.lock().unwrap().insert(
        "dists/bookworm/InRelease".into(),
        inrelease.replacen(&sha, &"0".repeat(64), 1).into_bytes(),
    );
    let err = setup
        .fetcher
        .fingerprint(&source(&setup.srv.url), &setup.keyring)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("does not verify"), "{err:#}");
}

#[tokio::test]
async fn an_architecture_the_archive_lacks_is_named_as_such() {
    let Some(setup) = fetch_setup().await else {
        return;
    };
    let err = setup
        .fetcher
        .index(&source(&setup.srv.url), &setup.keyring, "arm64")
        .await
        .unwrap_err();
    let missing = err
        .downcast_ref::<patch::NoArchitecture>()
        .unwrap_or_else(|| panic!("not a missing architecture: {err:#}"));
    assert_eq!(missing.arch, "arm64");
    assert_eq!(missing.suite, "bookworm");
    assert_eq!(missing.stem, "main/binary-arm64/Packages");
    assert!(
        err.to_string()
            .contains("has no packages for architecture arm64"),
        "{err}"
    );
    // A component the archive does not have is a configuration error,
    // not a platform to skip.
    let mut other = source(&setup.srv.url);
    other[0].components = vec!["contrib".into()];
    let err = setup
        .fetcher
        .index(&other, &setup.keyring, "amd64")
        .await
        .unwrap_err();
    assert!(
        err.downcast_ref::<patch::NoArchitecture>().is_none(),
        "{err:#}"
    );
    assert!(
        format!("{err:#}").contains("lists no contrib/binary-amd64/Packages"),
        "{err:#}"
    );
}
