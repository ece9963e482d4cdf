//! `drydock db update`: download source URLs, then import them.

use crate::{Error, ImportReport, Progress};
use std::path::{Path, PathBuf};

/// The default source URLs (documented in docs/vulndb.md).
pub const DEFAULT_SOURCES: &[&str] = &[
    // OSV exports, one zip per ecosystem.
    "https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip",
    "https://osv-vulnerabilities.storage.googleapis.com/Go/all.zip",
    "https://osv-vulnerabilities.storage.googleapis.com/npm/all.zip",
    "https://osv-vulnerabilities.storage.googleapis.com/Maven/all.zip",
    "https://osv-vulnerabilities.storage.googleapis.com/RubyGems/all.zip",
    "https://osv-vulnerabilities.storage.googleapis.com/Packagist/all.zip",
    "https://osv-vulnerabilities.storage.googleapis.com/NuGet/all.zip",
    "https://osv-vulnerabilities.storage.googleapis.com/Debian/all.zip",
    "https://osv-vulnerabilities.storage.googleapis.com/Ubuntu/all.zip",
    // RustSec advisories in OSV form (the advisory-db `osv` branch).
    "https://github.com/rustsec/advisory-db/archive/refs/heads/osv.tar.gz",
    // Alpine secdb, per branch and repository.
    "https://secdb.alpinelinux.org/v3.18/main.json",
    "https://secdb.alpinelinux.org/v3.18/community.json",
    "https://secdb.alpinelinux.org/v3.19/main.json",
    "https://secdb.alpinelinux.org/v3.19/community.json",
    "https://secdb.alpinelinux.org/v3.20/main.json",
    "https://secdb.alpinelinux.org/v3.20/community.json",
    "https://secdb.alpinelinux.org/v3.21/main.json",
    "https://secdb.alpinelinux.org/v3.21/community.json",
    "https://secdb.alpinelinux.org/v3.22/main.json",
    "https://secdb.alpinelinux.org/v3.22/community.json",
    "https://secdb.alpinelinux.org/v3.23/main.json",
    "https://secdb.alpinelinux.org/v3.23/community.json",
    // Debian security tracker JSON export.
    "https://security-tracker.debian.org/tracker/data/json",
    // CVSS: CISA's vulnrichment (CVE JSON 5 records).
    "https://github.com/cisagov/vulnrichment/archive/refs/heads/develop.zip",
];

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(h) => h
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// File name for a download: index prefix (keeps `all.zip`s apart) plus
/// the URL's last path segment, whose extension selects the reader.
fn file_name(i: usize, url: &reqwest::Url) -> String {
    let last = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .filter(|s| !s.is_empty())
        .unwrap_or("download");
    let clean: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{i:02}-{clean}")
}

/// An error and its causes on one line ("error sending request: client
/// error (Connect): Connection refused"), each cause once: reqwest's own
/// message says only that the request failed, the cause says why.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

async fn download(client: &reqwest::Client, url: &reqwest::Url, dest: &Path) -> Result<u64, Error> {
    use tokio::io::AsyncWriteExt;
    let err = |m: String| Error::Download {
        url: url.to_string(),
        message: m,
    };
    let mut resp = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| err(with_causes(&e)))?;
    if !resp.status().is_success() {
        return Err(err(format!("HTTP {}", resp.status())));
    }
    let mut f = tokio::fs::File::create(dest)
        .await
        .map_err(|e| Error::io(dest, e))?;
    let mut n = 0u64;
    while let Some(chunk) = resp.chunk().await.map_err(|e| err(with_causes(&e)))? {
        n += chunk.len() as u64;
        f.write_all(&chunk).await.map_err(|e| Error::io(dest, e))?;
    }
    f.flush().await.map_err(|e| Error::io(dest, e))?;
    Ok(n)
}

/// Download every URL into a scratch directory under `<data>/vulndb/`,
/// then import them all as one new version. Any failed download aborts the
/// update and leaves the current version in use.
pub async fn update(
    data_dir: &Path,
    urls: &[String],
    mut progress: impl FnMut(&Progress) + Send + 'static,
) -> Result<ImportReport, Error> {
    if urls.is_empty() {
        return Err(Error::NoInput);
    }
    let scratch = crate::store::root(data_dir).join(format!("download.tmp-{}", std::process::id()));
    let _ = tokio::fs::remove_dir_all(&scratch).await;
    tokio::fs::create_dir_all(&scratch)
        .await
        .map_err(|e| Error::io(&scratch, e))?;
    let result = async {
        let direct =
            reqwest::Client::builder()
                .no_proxy()
                .build()
                .map_err(|e| Error::Download {
                    url: String::new(),
                    message: e.to_string(),
                })?;
        let default = reqwest::Client::builder()
            .user_agent(concat!("drydock/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Download {
                url: String::new(),
                message: e.to_string(),
            })?;
        let mut paths: Vec<PathBuf> = Vec::new();
        let total = urls.len() as u64;
        for (i, u) in urls.iter().enumerate() {
            let url = reqwest::Url::parse(u).map_err(|e| Error::Download {
                url: u.clone(),
                message: e.to_string(),
            })?;
            let dest = scratch.join(file_name(i, &url));
            let client = if is_loopback(&url) { &direct } else { &default };
            download(client, &url, &dest).await?;
            progress(&Progress {
                bytes_done: i as u64 + 1,
                bytes_total: total,
                current: format!("downloaded {u}"),
            });
            paths.push(dest);
        }
        let dir = data_dir.to_path_buf();
        tokio::task::spawn_blocking(move || crate::import(&dir, &paths, &mut progress))
            .await
            .map_err(|e| Error::Corrupt(format!("import task failed: {e}")))?
    }
    .await;
    let _ = tokio::fs::remove_dir_all(&scratch).await;
    result
}
