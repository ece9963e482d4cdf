//! The registry source against Debian's docker-registry and against our own
//! mini registry (bearer tokens, Basic, cut transfers, 503s). Loopback only.

use oci::{Digest, ImageRef, Manifest};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use transport::remote::RetryPolicy;
use transport::testing::{self, MiniOptions, MiniRegistry, PeerRegistry};
use transport::{Credentials, Error, ImageSource, RemoteSource};

fn fast() -> RetryPolicy {
    RetryPolicy {
        attempts: 4,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
    }
}

fn remote(host: &str, path: &str, creds: Option<Credentials>) -> RemoteSource {
    RemoteSource::with_retry(
        ImageRef::parse(&format!("{host}/{path}")).unwrap(),
        creds,
        true,
        fast(),
    )
    .unwrap()
}

/// Fetch everything the root names; return the number of blobs read.
async fn pull_all(src: &dyn ImageSource) -> usize {
    let root = src.root().await.unwrap();
    let m = root.parse().unwrap();
    let mut images = vec![];
    if m.is_index() {
        for c in m.children() {
            images.push(src.manifest(&c.digest).await.unwrap().parse().unwrap());
        }
    } else {
        images.push(m);
    }
    let mut n = 0;
    for img in images {
        let img: Manifest = img;
        for b in img.blobs() {
            let mut s = src.blob(&b.digest).await.unwrap();
            let mut h = oci::Digester::new(oci::Algorithm::Sha256);
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let k = s.read(&mut buf).await.unwrap();
                if k == 0 {
                    break;
                }
                h.update(&buf[..k]);
            }
            assert_eq!(h.finish(), b.digest);
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn from_docker_registry() {
    let dir = transport::require_test_images!();
    let Some(reg) = PeerRegistry::start() else {
        return;
    };
    for (tag, repo) in [("multiarch", "test/multi:v1"), ("python-app", "test/py:v1")] {
        testing::skopeo_copy(
            &format!("oci:{}:{tag}", dir.display()),
            &format!("docker://{}/{repo}", reg.host()),
            &["--all"],
        );
    }
    let src = remote(&reg.host(), "test/multi:v1", None);
    let root = src.root().await.unwrap();
    assert_eq!(
        root.digest,
        testing::test_image_digest("multiarch"),
        "byte-for-byte index"
    );
    assert!(root.parse().unwrap().is_index());
    assert!(pull_all(&src).await >= 4);
    assert_eq!(src.tags().await.unwrap(), vec!["v1".to_string()]);

    let by_digest = remote(
        &reg.host(),
        &format!("test/py@{}", testing::test_image_digest("python-app")),
        None,
    );
    assert_eq!(
        by_digest.root().await.unwrap().digest,
        testing::test_image_digest("python-app")
    );
    assert_eq!(pull_all(&by_digest).await, 3);

    // Through a proxy that cuts connections midway: transfers resume.
    let proxy = testing::CuttingProxy::start(
        format!("127.0.0.1:{}", reg.port).parse().unwrap(),
        3 << 20,
        3,
    )
    .await;
    let cut = remote(&proxy.addr.to_string(), "test/multi:v1", None);
    assert!(pull_all(&cut).await >= 4);
    assert!(
        proxy.cuts.load(Ordering::Relaxed) >= 1,
        "a transfer was cut"
    );

    let missing = remote(&reg.host(), "test/py:nope", None);
    assert!(matches!(missing.root().await, Err(Error::NotFound(_))));
    let unknown = Digest::sha256_of(b"no such blob");
    assert!(matches!(
        missing.blob(&unknown).await,
        Err(Error::NotFound(_))
    ));

    // TLS by default: a plain-HTTP registry is refused, not downgraded to.
    let secure = RemoteSource::with_retry(
        ImageRef::parse(&format!("{}/test/py:v1", reg.host())).unwrap(),
        None,
        false,
        RetryPolicy {
            attempts: 1,
            ..fast()
        },
    )
    .unwrap();
    let e = secure.root().await.unwrap_err();
    assert!(matches!(e, Error::Http(_)), "{e}");
}

#[tokio::test]
async fn bearer_token_flow_and_resumed_transfers() {
    let dir = transport::require_test_images!();
    let creds = ("alice".to_string(), "s3cret".to_string());
    let mini = MiniRegistry::start(
        dir,
        MiniOptions {
            token_auth: Some(Some(creds.clone())),
            cut_blobs_over: Some(1 << 20),
            ..Default::default()
        },
    )
    .await;
    let good = Credentials {
        username: creds.0.clone(),
        password: creds.1.clone(),
    };
    let src = remote(&mini.host(), "mirror/multi:multiarch", Some(good));
    let root = src.root().await.unwrap();
    assert_eq!(root.digest, testing::test_image_digest("multiarch"));
    assert!(pull_all(&src).await >= 4);
    assert!(mini.stats.token_requests.load(Ordering::Relaxed) >= 1);
    assert!(
        mini.stats.cuts.load(Ordering::Relaxed) >= 1,
        "some blob was cut"
    );
    assert!(
        mini.stats.range_requests.load(Ordering::Relaxed) >= 1,
        "and resumed with Range"
    );

    // blob_from: a tail by Range.
    let m = src
        .manifest(&root.parse().unwrap().children()[0].digest)
        .await
        .unwrap()
        .parse()
        .unwrap();
    let cfg = &m.blobs()[0];
    let mut tail = Vec::new();
    src.blob_from(&cfg.digest, 5)
        .await
        .unwrap()
        .read_to_end(&mut tail)
        .await
        .unwrap();
    assert_eq!(tail.len() as u64, cfg.size - 5);

    // Without credentials the token server refuses: a clear auth error.
    let anon = remote(&mini.host(), "mirror/multi:multiarch", None);
    let e = anon.root().await.unwrap_err();
    assert!(matches!(e, Error::Auth(_)), "{e}");
    assert!(e.to_string().contains("--creds"), "{e}");
    let wrong = remote(
        &mini.host(),
        "mirror/multi:multiarch",
        Some(Credentials::parse("alice:wrong").unwrap()),
    );
    assert!(matches!(wrong.root().await, Err(Error::Auth(_))));
}

#[tokio::test]
async fn anonymous_token_basic_auth_and_flaky_server() {
    let dir = transport::require_test_images!();
    // Anonymous tokens (like a public repository on a hosted registry).
    let mini = MiniRegistry::start(
        dir.clone(),
        MiniOptions {
            token_auth: Some(None),
            flaky: true,
            ..Default::default()
        },
    )
    .await;
    let src = remote(&mini.host(), "pub/py:python-app", None);
    assert_eq!(pull_all(&src).await, 3);
    assert_eq!(
        src.tags().await.unwrap().len(),
        std::fs::read_to_string(dir.join("index.json"))
            .unwrap()
            .matches("ref.name")
            .count()
    );
    assert!(src.tagged("rust-app").await.is_ok());

    // A server that ignores Range: the resumed transfer starts over and the
    // bytes already seen are dropped.
    let no_range = MiniRegistry::start(
        dir.clone(),
        MiniOptions {
            cut_blobs_over: Some(1 << 20),
            ignore_range: true,
            ..Default::default()
        },
    )
    .await;
    let src = remote(&no_range.host(), "pub/py:python-app", None);
    assert_eq!(pull_all(&src).await, 3);
    assert!(no_range.stats.cuts.load(Ordering::Relaxed) >= 1);

    let basic = MiniRegistry::start(
        dir,
        MiniOptions {
            basic_auth: Some(("bob".into(), "pw".into())),
            ..Default::default()
        },
    )
    .await;
    let src = remote(
        &basic.host(),
        "priv/py:python-app",
        Some(Credentials::parse("bob:pw").unwrap()),
    );
    assert_eq!(pull_all(&src).await, 3);
    let anon = remote(&basic.host(), "priv/py:python-app", None);
    let e = anon.root().await.unwrap_err();
    assert!(e.to_string().contains("requires credentials"), "{e}");
}

#[tokio::test]
async fn tls_by_default_with_a_private_ca() {
    let dir = transport::require_test_images!();
    let mini = MiniRegistry::start(
        dir,
        MiniOptions {
            tls: true,
            token_auth: Some(Some(("carol".into(), "pw".into()))),
            ..Default::default()
        },
    )
    .await;
    let image = ImageRef::parse(&format!("{}/tls/py:python-app", mini.host())).unwrap();
    let creds = Some(Credentials::parse("carol:pw").unwrap());
    let src = RemoteSource::with_options(
        image.clone(),
        creds.clone(),
        false,
        transport::remote::RemoteOptions {
            retry: fast(),
            ca_pem: mini.ca_pem.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        src.root().await.unwrap().digest,
        testing::test_image_digest("python-app")
    );
    assert_eq!(pull_all(&src).await, 3);
    // An untrusted certificate is refused.
    let untrusted = RemoteSource::with_retry(
        image,
        creds,
        false,
        RetryPolicy {
            attempts: 1,
            ..fast()
        },
    )
    .unwrap();
    let e = untrusted.root().await.unwrap_err();
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
}
