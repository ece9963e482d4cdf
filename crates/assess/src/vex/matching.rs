//! Which statement speaks of which finding: products named by digest,
//! OCI purl, repository or package purl; subcomponents by package purl;
//! the latest statement wins. And what a product covers, for access checks.

use super::{Document, Statement, VexStatus};
use crate::vuln::Finding;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a statement says about one finding, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VexNote {
    /// The document's id.
    pub document: String,
    /// The author the document names (its own claim).
    pub author: String,
    /// Who gave drydock the document, as access control knew them: the
    /// identity that pushed the referrer, or the API caller. Absent for
    /// documents stored before drydock recorded it, and for referrers
    /// whose pusher is unknown (queued before drydock stored pushers,
    /// found at start without a push, or written by drydock itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_by: Option<String>,
    #[schema(value_type = String, example = "not_affected")]
    pub status: VexStatus,
    pub justification: Option<String>,
    pub impact_statement: Option<String>,
    pub timestamp: String,
}

/// The image a finding belongs to, as VEX products name it.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub digest: &'a str,
    /// The index the image belongs to (a statement about the index covers
    /// its platform images).
    pub parent: Option<&'a str>,
    pub repos: &'a [String],
}

/// A purl split into what identity compares: `type/namespace/name`, the
/// version (percent-decoded) and the qualifiers.
/// `type/namespace/name`, version, qualifiers.
type PurlParts = (String, Option<String>, Vec<(String, String)>);

fn purl_parts(p: &str) -> Option<PurlParts> {
    let rest = p.strip_prefix("pkg:")?;
    let rest = rest.split('#').next().unwrap_or(rest);
    let (main, qualifiers) = match rest.split_once('?') {
        Some((m, q)) => (m, q),
        None => (rest, ""),
    };
    let (name, version) = match main.rsplit_once('@') {
        Some((n, v)) => (n, Some(decode(v))),
        None => (main, None),
    };
    let qs = qualifiers
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_ascii_lowercase(), decode(v)))
        .collect();
    Some((decode(name).to_ascii_lowercase(), version, qs))
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(x) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(x);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a statement's purl names the installed package `installed`:
/// same type, namespace and name, and the same version when it gives one.
pub fn purl_matches(statement: &str, installed: &str) -> bool {
    let (Some((sn, sv, _)), Some((iname, iv, _))) = (purl_parts(statement), purl_parts(installed))
    else {
        return false;
    };
    sn == iname && sv.is_none_or(|v| iv.as_deref() == Some(v.as_str()))
}

/// Whether `product` names the image (by digest, OCI purl or repository).
/// A package purl is not an image: see [`Statement::applies`].
fn names_image(product: &str, pattern: Option<&oci::RepoPattern>, s: &Subject<'_>) -> bool {
    let is_ours = |d: &str| d == s.digest || s.parent == Some(d);
    if product.starts_with("sha256:") || product.starts_with("sha512:") {
        return is_ours(product);
    }
    if let Some((name, version, qs)) = purl_parts(product) {
        let Some(oci_name) = name.strip_prefix("oci/") else {
            return false;
        };
        let digest = qs
            .iter()
            .find(|(k, _)| k == "digest")
            .map(|(_, v)| v.clone())
            .or(version.filter(|v| v.contains(':')));
        if let Some(d) = digest {
            return is_ours(&d);
        }
        // No digest: the repository, by `repository_url`'s path or the name.
        let repo_url = qs
            .iter()
            .find(|(k, _)| k == "repository_url")
            .map(|(_, v)| v);
        return s.repos.iter().any(|r| match repo_url {
            Some(u) => u.ends_with(&format!("/{r}")) || u == r,
            None => r == oci_name || r.ends_with(&format!("/{oci_name}")),
        });
    }
    pattern.is_some_and(|p| s.repos.iter().any(|r| p.is_match(r)))
}

impl Statement {
    /// Each product with its repository pattern.
    fn images(&self) -> impl Iterator<Item = (&str, Option<&oci::RepoPattern>)> {
        let pats = self.patterns.0.get_or_init(|| {
            self.products
                .iter()
                .map(|p| oci::RepoPattern::new(p).ok())
                .collect()
        });
        self.products
            .iter()
            .map(String::as_str)
            .zip(pats.iter().map(Option::as_ref))
    }

    fn names_vulnerability(&self, f: &Finding) -> bool {
        self.vulnerabilities.iter().any(|v| {
            f.id.eq_ignore_ascii_case(v)
                || f.aliases.iter().any(|a| a.eq_ignore_ascii_case(v))
                || f.related.iter().any(|a| a.eq_ignore_ascii_case(v))
        })
    }

    /// Whether this statement speaks of finding `f` of image `s`.
    pub fn applies(&self, s: &Subject<'_>, f: &Finding) -> bool {
        if !self.names_vulnerability(f) {
            return false;
        }
        let image = self.images().any(|(p, pat)| names_image(p, pat, s));
        if image {
            return self.subcomponents.is_empty()
                || self.subcomponents.iter().any(|c| purl_matches(c, &f.purl));
        }
        // A package purl as the product: every image holding the package.
        self.products
            .iter()
            .any(|p| !p.starts_with("pkg:oci/") && purl_matches(p, &f.purl))
    }

    /// Whether the statement could name this image at all (for re-judging).
    pub fn may_name(&self, s: &Subject<'_>) -> bool {
        self.images().any(|(p, pat)| {
            names_image(p, pat, s) || (p.starts_with("pkg:") && !p.starts_with("pkg:oci/"))
        })
    }
}

/// A stored document and where it applies: `subject` is set for a document
/// pushed as a referrer, which speaks only of the image it is attached to.
#[derive(Debug, Clone)]
pub struct Stored {
    pub doc: Document,
    pub subject: Option<String>,
    /// See [`VexNote::recorded_by`].
    pub recorded_by: Option<String>,
}

impl Stored {
    fn in_scope(&self, s: &Subject<'_>) -> bool {
        self.subject
            .as_deref()
            .is_none_or(|d| d == s.digest || s.parent == Some(d))
    }

    /// Whether this document may change the verdict of image `s`.
    pub fn may_name(&self, s: &Subject<'_>) -> bool {
        self.in_scope(s) && self.doc.statements.iter().any(|st| st.may_name(s))
    }
}

/// The latest statement of all `docs` about finding `f` of image `s`.
pub fn judge(docs: &[Stored], s: &Subject<'_>, f: &Finding) -> Option<VexNote> {
    let mut best: Option<(&Stored, &Statement)> = None;
    for d in docs.iter().filter(|d| d.in_scope(s)) {
        for st in d.doc.statements.iter().filter(|st| st.applies(s, f)) {
            // RFC 3339 in UTC compares as text only when both use `Z`;
            // parse to compare honestly.
            let later = best.is_none_or(|(_, b)| ts(&st.timestamp) >= ts(&b.timestamp));
            if later {
                best = Some((d, st));
            }
        }
    }
    best.map(|(d, st)| VexNote {
        document: d.doc.id.clone(),
        author: d.doc.author.clone(),
        recorded_by: d.recorded_by.clone(),
        status: st.status,
        justification: st.justification.clone(),
        impact_statement: st.impact_statement.clone(),
        timestamp: st.timestamp.clone(),
    })
}

fn ts(s: &str) -> i128 {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp_nanos())
        .unwrap_or(0)
}

/// What a product identifier covers, for access checks: an image (by
/// digest), repositories (a name or glob), or every repository (a package
/// purl names whatever image holds the package).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Digest(String),
    Repository(String),
    Everywhere,
}

/// The scope of one product identifier.
pub fn product_scope(product: &str) -> Scope {
    if product.starts_with("sha256:") || product.starts_with("sha512:") {
        return Scope::Digest(product.to_string());
    }
    if let Some((name, version, qs)) = purl_parts(product) {
        let Some(oci_name) = name.strip_prefix("oci/") else {
            return Scope::Everywhere;
        };
        let digest = qs
            .iter()
            .find(|(k, _)| k == "digest")
            .map(|(_, v)| v.clone())
            .or(version.filter(|v| v.contains(':')));
        if let Some(d) = digest {
            return Scope::Digest(d);
        }
        // Matched on the repository's last segments: any repository ending so.
        return Scope::Repository(format!("*{oci_name}"));
    }
    Scope::Repository(product.to_string())
}

impl Document {
    /// Every scope its statements' products cover, without repeats.
    pub fn scopes(&self) -> Vec<Scope> {
        let mut out: Vec<Scope> = Vec::new();
        for s in &self.statements {
            for p in &s.products {
                let sc = product_scope(p);
                if !out.contains(&sc) {
                    out.push(sc);
                }
            }
        }
        out
    }
}
