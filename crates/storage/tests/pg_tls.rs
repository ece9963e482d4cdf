//! TLS to PostgreSQL: `sslmode` in `metadata.url` against a throwaway
//! cluster started with `ssl = on` and a certificate from a CA made here.
//! `verify-full` with that CA (`sslrootcert`) connects over TLS; with
//! another CA, or the bundled public roots, it is refused, saying why and
//! never the password; `require` encrypts without checking; `disable`
//! does not encrypt. Skips without PostgreSQL, except under CI.

use std::path::Path;
use storage::{Duty, MetadataStorage, PgTlsMode};

const PASSWORD: &str = "tls-test-Pw-77";

/// A CA, and a server certificate it signed for 127.0.0.1.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "drydock test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_pem: server.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// The database part of a URL, with the password put in.
fn url_with(cluster: &storage::testing::PgCluster, query: &str) -> (String, String) {
    let url = cluster.fresh_database();
    let db = url.rsplit('/').next().unwrap().to_string();
    let url = url.replacen("drydock@", &format!("drydock:{PASSWORD}@"), 1);
    (format!("{url}?{query}"), db)
}

/// How many of the database's sessions are encrypted, and how many not.
async fn sessions(cluster: &storage::testing::PgCluster, db: &str) -> (i64, i64) {
    let (client, conn) = tokio_postgres::connect(&cluster.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let r = client
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.datname = $1",
            &[&db],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

fn open(url: &str, dir: &Path) -> Result<std::sync::Arc<dyn storage::Meta>, storage::MetaError> {
    MetadataStorage::from_url(url)?.open_meta(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_is_honoured() {
    let keys = pki();
    let Some(cluster) = storage::testing::PgCluster::start_tls(&keys.cert_pem, &keys.key_pem)
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &keys.ca_pem).unwrap();
    let other = dir.path().join("other-ca.pem");
    std::fs::write(&other, pki().ca_pem).unwrap();

    // verify-full with the CA that signed the server's certificate.
    let (url, db) = url_with(
        &cluster,
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    );
    let MetadataStorage::Postgres(cfg) = MetadataStorage::from_url(&url).unwrap() else {
        panic!("not postgres")
    };
    assert_eq!(cfg.tls_mode(), PgTlsMode::VerifyFull);
    let meta = open(&url, dir.path()).unwrap();
    assert!(meta.repositories(None, None).await.unwrap().is_empty());
    let (tls, plain) = sessions(&cluster, &db).await;
    assert!(tls >= 1 && plain == 0, "tls {tls} plain {plain}");
    // Leadership's connection of its own is encrypted too.
    let lead = meta.lead(Duty::Gc, std::time::Duration::from_millis(100));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !lead.is_leader() {
        assert!(std::time::Instant::now() < deadline, "no lead over TLS");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (tls2, plain) = sessions(&cluster, &db).await;
    assert!(tls2 > tls && plain == 0, "tls {tls2} plain {plain}");
    drop((lead, meta));

    // A CA that did not sign it, or the public roots: refused, saying
    // why, without the password.
    for query in [
        format!("sslmode=verify-full&sslrootcert={}", other.display()),
        "sslmode=verify-full".to_string(),
    ] {
        let (url, _) = url_with(&cluster, &query);
        let e = open(&url, dir.path())
            .err()
            .expect("an untrusted server was accepted");
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains(PASSWORD), "{shown}");
        assert!(
            shown.to_lowercase().contains("certificate"),
            "{query}: {shown}"
        );
    }

    // require: encrypted, not checked.
    let (url, db) = url_with(&cluster, "sslmode=require");
    let meta = open(&url, dir.path()).unwrap();
    meta.repositories(None, None).await.unwrap();
    let (tls, plain) = sessions(&cluster, &db).await;
    assert!(tls >= 1 && plain == 0, "tls {tls} plain {plain}");
    drop(meta);

    // disable: plain.
    let (url, db) = url_with(&cluster, "sslmode=disable&application_name=dd");
    let meta = open(&url, dir.path()).unwrap();
    meta.repositories(None, None).await.unwrap();
    let (tls, plain) = sessions(&cluster, &db).await;
    assert!(tls == 0 && plain >= 1, "tls {tls} plain {plain}");
}

#[test]
fn sslmode_values() {
    let mode = |q: &str| match MetadataStorage::from_url(&format!(
        "postgres://u:{PASSWORD}@127.0.0.1:5432/db{q}"
    )) {
        Ok(MetadataStorage::Postgres(c)) => Ok(c.tls_mode()),
        Ok(_) => panic!("not postgres"),
        Err(e) => Err(e.to_string()),
    };
    assert_eq!(mode(""), Ok(PgTlsMode::Prefer));
    assert_eq!(mode("?sslmode=disable"), Ok(PgTlsMode::Disable));
    assert_eq!(mode("?sslmode=prefer"), Ok(PgTlsMode::Prefer));
    assert_eq!(mode("?sslmode=require"), Ok(PgTlsMode::Require));
    assert_eq!(
        mode("?application_name=x&sslmode=verify-full&sslrootcert=/ca.pem"),
        Ok(PgTlsMode::VerifyFull)
    );
    for bad in ["?sslmode=verify-ca", "?sslmode=always"] {
        let e = mode(bad).unwrap_err();
        assert!(e.contains("sslmode") && !e.contains(PASSWORD), "{e}");
    }
    // A CA file that is not there is refused when the store opens.
    let dir = tempfile::tempdir().unwrap();
    let e = open(
        &format!(
            "postgres://u:{PASSWORD}@127.0.0.1:1/db?sslmode=verify-full&sslrootcert={}",
            dir.path().join("missing.pem").display()
        ),
        dir.path(),
    )
    .err()
    .unwrap();
    assert!(
        e.to_string().contains("sslrootcert") && !e.to_string().contains(PASSWORD),
        "{e}"
    );
}
