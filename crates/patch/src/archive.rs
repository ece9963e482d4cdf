//! A Debian archive as a source of verified packages.
//!
//! Trust flows from the configured keyring only: `InRelease` must carry an
//! OpenPGP signature by one of its keys; the signed `Release` text gives
//! the SHA-256 of every `Packages` index; each `Packages` stanza gives the
//! SHA-256 of its `.deb`. Every download is checked against the hash the
//! signed chain gives before it is used, and kept under
//! `<data>/patch-cache/sha256/<hex>` so patches share downloads.

use crate::control::{Stanza, cmp_version, parse_stanzas};
use anyhow::{Context, Result, anyhow, bail};
use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// Bound on the text files read whole (InRelease, a decompressed Packages).
const MAX_INDEX: u64 = 512 << 20;

/// One archive (a suite of a mirror): `url` is the directory holding
/// `dists/` and `pool/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSource {
    pub url: String,
    pub suite: String,
    #[serde(default = "default_components")]
    pub components: Vec<String>,
}

fn default_components() -> Vec<String> {
    vec!["main".into()]
}

/// The keys an archive's `InRelease` must be signed by.
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
}

impl Keyring {
    /// Load an armored or binary keyring (Debian ships binary `.gpg`
    /// keyrings; `gpg --export --armor` writes armored ones). Keys whose
    /// self-signatures do not verify are left out.
    pub fn load(path: &Path) -> Result<Keyring> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading the keyring {}", path.display()))?;
        Keyring::from_bytes(&bytes).with_context(|| format!("keyring {}", path.display()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Keyring> {
        let armored = bytes.windows(10).take(4096).any(|w| w == b"-----BEGIN");
        let iter: Box<dyn Iterator<Item = pgp::errors::Result<SignedPublicKey>>> = if armored {
            SignedPublicKey::from_armor_many(BufReader::new(bytes))
                .map_err(|e| anyhow!("not an OpenPGP keyring: {e}"))?
                .0
        } else {
            SignedPublicKey::from_bytes_many(BufReader::new(bytes))
                .map_err(|e| anyhow!("not an OpenPGP keyring: {e}"))?
        };
        let keys: Vec<SignedPublicKey> = iter
            .filter_map(|k| k.ok())
            .filter(|k| k.verify().is_ok())
            .collect();
        if keys.is_empty() {
            bail!("no usable OpenPGP public key in it");
        }
        Ok(Keyring { keys })
    }

    /// Verify a clearsigned document; returns the signed text (LF line
    /// endings) when a signature by one of the keys (primary or subkey)
    /// verifies.
    pub fn verify_clearsigned(&self, text: &str) -> Result<String> {
        if !text
            .trim_start()
            .starts_with("-----BEGIN PGP SIGNED MESSAGE-----")
        {
            bail!("InRelease is not signed (no OpenPGP clearsigned message)");
        }
        let (msg, _) = CleartextSignedMessage::from_string(text)
            .map_err(|e| anyhow!("InRelease signature is malformed: {e}"))?;
        for key in &self.keys {
            if msg.verify(&key.primary_key).is_ok() {
                return Ok(msg.signed_text().replace("\r\n", "\n"));
            }
            for sub in &key.public_subkeys {
                if msg.verify(&sub.key).is_ok() {
                    return Ok(msg.signed_text().replace("\r\n", "\n"));
                }
            }
        }
        bail!(
            "InRelease signature does not verify against the configured keyring \
             (signed by another key, or the file was altered)"
        )
    }
}

/// A file the signed Release lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub sha256: String,
    pub size: u64,
}

/// The `SHA256` list of a Release file.
pub fn parse_release(text: &str) -> HashMap<String, Listed> {
    let mut out = HashMap::new();
    let mut in_sha = false;
    for line in text.lines() {
        if !line.starts_with(' ') {
            in_sha = line.trim_end() == "SHA256:";
            continue;
        }
        if !in_sha {
            continue;
        }
        let mut it = line.split_whitespace();
        if let (Some(h), Some(s), Some(p)) = (it.next(), it.next(), it.next())
            && let Ok(size) = s.parse()
        {
            out.insert(
                p.to_string(),
                Listed {
                    sha256: h.to_ascii_lowercase(),
                    size,
                },
            );
        }
    }
    out
}

/// A configured archive holds no packages for an architecture (an index
/// platform the mirror does not carry): the patch skips that platform,
/// naming this, instead of failing as for a broken archive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the archive {archive} (suite {suite}) has no packages for architecture {arch}: \
     its signed Release lists no {stem}"
)]
pub struct NoArchitecture {
    pub arch: String,
    pub archive: String,
    pub suite: String,
    pub stem: String,
}

/// Whether a signed Release says it does not carry `arch` for `component`:
/// its `Architectures:` field leaves `arch` out, or (without that field)
/// it lists `Packages` of other architectures only.
fn lacks_architecture(
    release: &str,
    listed: &HashMap<String, Listed>,
    component: &str,
    arch: &str,
) -> bool {
    let field = release
        .lines()
        .find_map(|l| l.strip_prefix("Architectures:"));
    match field {
        Some(archs) => !archs.split_whitespace().any(|a| a == arch),
        None => listed.keys().any(|p| {
            p.strip_prefix(&format!("{component}/binary-"))
                .is_some_and(|rest| rest.contains("/Packages"))
        }),
    }
}

/// A suite's verified `InRelease`: its `dists` URL, its signed text and
/// the files it lists.
struct SignedRelease {
    dists: String,
    text: String,
    listed: HashMap<String, Listed>,
}

/// A binary package the archive offers.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub stanza: Stanza,
    /// Full URL of the `.deb`.
    pub url: String,
    pub sha256: String,
    pub size: u64,
    /// Which configured archive (suite) it came from.
    pub suite: String,
}

impl Candidate {
    pub fn name(&self) -> &str {
        self.stanza.package()
    }
    pub fn version(&self) -> &str {
        self.stanza.version()
    }
}

/// The verified package indexes of every configured archive for one
/// architecture.
#[derive(Debug, Default)]
pub struct Index {
    pub by_name: HashMap<String, Vec<Candidate>>,
    /// Virtual package → real packages providing it (unversioned).
    pub provides: HashMap<String, Vec<String>>,
}

impl Index {
    /// Candidates of a package, lowest version first.
    pub fn versions(&self, name: &str) -> &[Candidate] {
        self.by_name.get(name).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Downloads through the egress policy, verified and cached by hash.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    policy: egress::EgressPolicy,
    cache: PathBuf,
}

impl Fetcher {
    pub fn new(data_dir: &Path, policy: egress::EgressPolicy) -> Result<Fetcher> {
        let client = egress::apply(
            reqwest::Client::builder()
                .user_agent(concat!("drydock-patch/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(std::time::Duration::from_secs(20))
                .timeout(std::time::Duration::from_secs(600)),
            &policy,
        )
        .build()?;
        let cache = data_dir.join("patch-cache");
        std::fs::create_dir_all(cache.join("sha256"))
            .with_context(|| format!("creating {}", cache.display()))?;
        Ok(Fetcher {
            client,
            policy,
            cache,
        })
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }

    async fn get(&self, url: &str) -> Result<reqwest::Response> {
        self.policy
            .check_url_str(url)
            .map_err(|e| anyhow!("{url}: {e}"))?;
        let resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| anyhow!("{url}: {}", egress::describe(&e)))?;
        if !resp.status().is_success() {
            bail!("{url}: HTTP {}", resp.status());
        }
        Ok(resp)
    }

    /// A small text file, read whole (InRelease).
    pub async fn text(&self, url: &str) -> Result<String> {
        let resp = self.get(url).await?;
        if resp.content_length().is_some_and(|l| l > MAX_INDEX) {
            bail!("{url}: larger than {MAX_INDEX} bytes");
        }
        let b = resp.bytes().await.map_err(|e| anyhow!("{url}: {e}"))?;
        String::from_utf8(b.to_vec()).map_err(|_| anyhow!("{url}: not UTF-8 text"))
    }

    /// Path of a cached, verified file, downloading it if needed.
    pub async fn verified(&self, url: &str, sha256: &str, size: u64) -> Result<PathBuf> {
        let sha256 = sha256.to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("{url}: the index gives no valid SHA-256");
        }
        let path = self.cache.join("sha256").join(&sha256);
        if path.exists() {
            return Ok(path);
        }
        let tmp = tempfile::NamedTempFile::new_in(&self.cache)?;
        let mut file = tokio::fs::File::from_std(tmp.reopen()?);
        let mut resp = self.get(url).await?;
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(|e| anyhow!("{url}: {e}"))? {
            written += chunk.len() as u64;
            if written > size {
                bail!("{url}: longer than the {size} bytes the signed index gives");
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        let got = hex::encode(hasher.finalize());
        if got != sha256 || written != size {
            bail!(
                "{url}: content does not match the signed index (SHA-256 {got}, {written} bytes; \
                 expected {sha256}, {size} bytes): refusing a tampered or corrupt download"
            );
        }
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(path)
    }

    /// A suite's `InRelease`, once its signature verified against
    /// `keyring`.
    async fn signed_release(
        &self,
        src: &ArchiveSource,
        keyring: &Keyring,
    ) -> Result<SignedRelease> {
        let base = src.url.trim_end_matches('/');
        let dists = format!("{base}/dists/{}", src.suite);
        let inrelease = self
            .text(&format!("{dists}/InRelease"))
            .await
            .with_context(|| format!("archive {base} suite {}", src.suite))?;
        let release = keyring
            .verify_clearsigned(&inrelease)
            .with_context(|| format!("{dists}/InRelease"))?;
        Ok(SignedRelease {
            listed: parse_release(&release),
            dists,
            text: release,
        })
    }

    /// What the archives hold now, as one string: each suite's signed
    /// `SHA256` entries of its `Packages` indexes (every architecture).
    /// Continuous mode compares it with the last one it saw; a change
    /// means the archive may hold new fixes. Verified like [`Fetcher::index`],
    /// so an altered `InRelease` changes nothing here but an error.
    pub async fn fingerprint(
        &self,
        sources: &[ArchiveSource],
        keyring: &Keyring,
    ) -> Result<String> {
        let mut out = String::new();
        for src in sources {
            let SignedRelease { dists, listed, .. } = self.signed_release(src, keyring).await?;
            let mut listed: Vec<(String, Listed)> = listed
                .into_iter()
                .filter(|(p, _)| {
                    src.components
                        .iter()
                        .any(|c| p.starts_with(&format!("{c}/")))
                        && p.rsplit('/')
                            .next()
                            .is_some_and(|f| f.starts_with("Packages"))
                })
                .collect();
            listed.sort_by(|a, b| a.0.cmp(&b.0));
            out.push_str(&dists);
            out.push('\n');
            for (p, l) in listed {
                out.push_str(&format!("{} {} {p}\n", l.sha256, l.size));
            }
        }
        Ok(out)
    }

    /// Fetch and verify every configured archive's indexes for `arch`.
    pub async fn index(
        &self,
        sources: &[ArchiveSource],
        keyring: &Keyring,
        arch: &str,
    ) -> Result<Index> {
        let mut index = Index::default();
        for src in sources {
            let base = src.url.trim_end_matches('/');
            let SignedRelease {
                dists,
                text: release,
                listed,
            } = self.signed_release(src, keyring).await?;
            for comp in &src.components {
                let stem = format!("{comp}/binary-{arch}/Packages");
                let mut found = false;
                for ext in [".xz", ".gz", ""] {
                    let rel = format!("{stem}{ext}");
                    let Some(l) = listed.get(&rel) else { continue };
                    found = true;
                    let path = self
                        .verified(&format!("{dists}/{rel}"), &l.sha256, l.size)
                        .await?;
                    let text =
                        tokio::task::spawn_blocking(move || decompress_text(&path, ext)).await??;
                    for stanza in parse_stanzas(&text) {
                        add_candidate(&mut index, stanza, base, &src.suite);
                    }
                    break;
                }
                if !found {
                    if lacks_architecture(&release, &listed, comp, arch) {
                        return Err(NoArchitecture {
                            arch: arch.to_string(),
                            archive: base.to_string(),
                            suite: src.suite.clone(),
                            stem,
                        }
                        .into());
                    }
                    bail!("{dists}: the signed Release lists no {stem}[.xz|.gz]");
                }
            }
        }
        for list in index.by_name.values_mut() {
            list.sort_by(|a, b| cmp_version(a.version(), b.version()));
            list.dedup_by(|a, b| a.version() == b.version());
        }
        Ok(index)
    }
}

fn add_candidate(index: &mut Index, stanza: Stanza, base: &str, suite: &str) {
    let (Some(file), Some(sha), Some(size)) = (
        stanza.get("Filename"),
        stanza.get("SHA256"),
        stanza.get("Size").and_then(|s| s.parse().ok()),
    ) else {
        return; // without a hash it cannot be trusted
    };
    let c = Candidate {
        url: format!("{base}/{}", file.trim_start_matches('/')),
        sha256: sha.to_ascii_lowercase(),
        size,
        suite: suite.to_string(),
        stanza: stanza.clone(),
    };
    if let Some(p) = stanza.get("Provides") {
        for group in crate::control::parse_depends(p) {
            for d in group {
                index
                    .provides
                    .entry(d.name)
                    .or_default()
                    .push(c.name().to_string());
            }
        }
    }
    index
        .by_name
        .entry(c.name().to_string())
        .or_default()
        .push(c);
}

fn decompress_text(path: &Path, ext: &str) -> Result<String> {
    let f = std::fs::File::open(path)?;
    let r: Box<dyn Read> = match ext {
        ".xz" => Box::new(xz2::read::XzDecoder::new(f)),
        ".gz" => Box::new(flate2::read::GzDecoder::new(f)),
        _ => Box::new(f),
    };
    let mut s = String::new();
    r.take(MAX_INDEX)
        .read_to_string(&mut s)
        .context("decompressing a Packages index")?;
    Ok(s)
}
