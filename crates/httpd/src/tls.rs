//! TLS: the certificate and key from PEM files, re-read while serving.

use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

/// PEM files for TLS: the certificate chain (leaf first) and its private
/// key (PKCS#8, PKCS#1 RSA or SEC1 EC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The TLS acceptor with the current certificate.
#[derive(Clone)]
pub(crate) struct Acceptor {
    pub(crate) inner: tokio_rustls::TlsAcceptor,
    /// Keeps the reloader running while any connection may still handshake.
    _store: Arc<CertStore>,
}

impl Acceptor {
    /// Load the files (failing when they are unusable) and start watching
    /// them every `every`.
    pub(crate) fn start(files: TlsFiles, every: Duration) -> io::Result<Acceptor> {
        let (cert_pem, key_pem) = read_pair(&files)?;
        let key = certified_key(&cert_pem, &key_pem).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "TLS files {} and {}: {e}",
                    files.cert.display(),
                    files.key.display()
                ),
            )
        })?;
        let store = Arc::new(CertStore {
            current: RwLock::new(Arc::new(key)),
        });
        let provider = Arc::new(ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_cert_resolver(store.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        tokio::spawn(reload(
            Arc::downgrade(&store),
            files,
            every,
            (cert_pem, key_pem),
        ));
        Ok(Acceptor {
            inner: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            _store: store,
        })
    }
}

/// Hands every handshake the certificate loaded last.
struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn read_pair(files: &TlsFiles) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let read = |p: &PathBuf, what: &str| {
        std::fs::read(p).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot read TLS {what} {}: {e}", p.display()),
            )
        })
    };
    Ok((read(&files.cert, "certificate")?, read(&files.key, "key")?))
}

/// Why a certificate and key do not make a usable pair.
#[derive(Debug, thiserror::Error)]
enum PairError {
    #[error("bad certificate PEM: {0}")]
    CertificatePem(rustls::pki_types::pem::Error),
    #[error("no certificate in the certificate file")]
    NoCertificate,
    #[error("no usable private key in the key file (PEM: PKCS#8, PKCS#1 or SEC1)")]
    NoKey,
    #[error("unsupported private key: {0}")]
    UnsupportedKey(rustls::Error),
    #[error("the key does not belong to the certificate: {0}")]
    Mismatch(rustls::Error),
}

/// A certificate chain and its key from PEM; the key must match the leaf.
fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, PairError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(PairError::CertificatePem)?;
    if chain.is_empty() {
        return Err(PairError::NoCertificate);
    }
    // The key file's content never goes into a message: the PEM error could
    // quote a line of it.
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| PairError::NoKey)?;
    let signer = ring::sign::any_supported_type(&key).map_err(PairError::UnsupportedKey)?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => return Err(PairError::Mismatch(e)),
    }
    Ok(certified)
}

/// Re-read the files every `every` while the store lives; swap in a new
/// pair that loads, log one that does not (once per content) and keep the
/// old certificate.
async fn reload(
    store: Weak<CertStore>,
    files: TlsFiles,
    every: Duration,
    loaded: (Vec<u8>, Vec<u8>),
) {
    let mut seen = loaded;
    let mut unreadable = 0u32;
    loop {
        tokio::time::sleep(every).await;
        let Some(store) = store.upgrade() else { return };
        let pair = match read_pair(&files) {
            Ok(p) => {
                unreadable = 0;
                p
            }
            Err(e) => {
                // A file being replaced may be missing for a moment: say so
                // once it stays that way on the next check.
                unreadable += 1;
                if unreadable == 2 {
                    tracing::error!(error = %e, "TLS files not readable; the current certificate stays in use");
                }
                continue;
            }
        };
        if pair == seen {
            continue;
        }
        match certified_key(&pair.0, &pair.1) {
            Ok(key) => {
                *store.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
                tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::error!(
                cert = %files.cert.display(),
                key = %files.key.display(),
                error = %e,
                "new TLS files are unusable; the previous certificate stays in use"
            ),
        }
        seen = pair;
    }
}
