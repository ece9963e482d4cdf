//! VEX (Vulnerability Exploitability eXchange): statements that a
//! vulnerability does or does not affect a product. Pure: parsing,
//! validation with the JSON path of the first problem, and matching a
//! finding of an image against the statements.
//!
//! Two formats are read into one model: OpenVEX (0.2.0 documents; the
//! statement fields the specification defines) and CycloneDX VEX
//! (`vulnerabilities[].analysis.state`, with `affects[].ref` naming the
//! product and the component the `bom-ref` names as the subcomponent).
//!
//! Products are named by image digest (`sha256:…`), by an OCI purl that
//! carries one (`pkg:oci/app@sha256%3A…` or `…?digest=sha256:…`), by a
//! repository (a name or a glob), or by a package purl (every image holding
//! that package). Subcomponents are package purls. `not_affected` and
//! `fixed` take a finding out of the verdict; `affected` and
//! `under_investigation` leave it counted. When several statements speak
//! of one finding, the latest (by timestamp) wins.

use crate::vuln::Finding;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// The artifact type of an OpenVEX document pushed as a referrer.
pub const OPENVEX_ARTIFACT_TYPE: &str = "application/vnd.openvex+json";
/// The artifact type of a CycloneDX document (an SBOM, or a VEX when it
/// carries `vulnerabilities[].analysis`).
pub const CYCLONEDX_ARTIFACT_TYPE: &str = "application/vnd.cyclonedx+json";

/// The impact statuses both formats share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VexStatus {
    NotAffected,
    Affected,
    Fixed,
    UnderInvestigation,
}

impl VexStatus {
    /// Whether the status takes a finding out of the verdict.
    pub fn clears(self) -> bool {
        matches!(self, VexStatus::NotAffected | VexStatus::Fixed)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            VexStatus::NotAffected => "not_affected",
            VexStatus::Affected => "affected",
            VexStatus::Fixed => "fixed",
            VexStatus::UnderInvestigation => "under_investigation",
        }
    }
}

/// OpenVEX's justification labels for `not_affected`.
pub const JUSTIFICATIONS: &[&str] = &[
    "component_not_present",
    "vulnerable_code_not_present",
    "vulnerable_code_not_in_execute_path",
    "vulnerable_code_cannot_be_controlled_by_adversary",
    "inline_mitigations_already_exist",
];

/// One statement, normalised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// Vulnerability name and aliases (`CVE-…`, `GHSA-…`).
    pub vulnerabilities: Vec<String>,
    /// Product identifiers (digests, purls, repositories).
    pub products: Vec<String>,
    /// Package purls inside the product; empty for the whole product.
    pub subcomponents: Vec<String>,
    pub status: VexStatus,
    pub justification: Option<String>,
    pub impact_statement: Option<String>,
    /// RFC 3339; the document's when the statement has none.
    pub timestamp: String,
    #[serde(skip)]
    patterns: ProductPatterns,
}

/// `products` as repository patterns, compiled on first use (`None` for
/// one that is not a pattern). A cache, not part of the value: equality
/// ignores it.
#[derive(Debug, Clone, Default)]
struct ProductPatterns(std::sync::OnceLock<Vec<Option<oci::RepoPattern>>>);

impl PartialEq for ProductPatterns {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// A validated document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// The document's own id (`@id`, or CycloneDX `serialNumber`).
    pub id: String,
    pub author: String,
    pub timestamp: String,
    /// `openvex` or `cyclonedx`.
    pub format: String,
    pub statements: Vec<Statement>,
}

/// Why a document was refused: the JSON path of the problem and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn bad(path: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        path: path.into(),
        message: message.into(),
    }
}

fn req_str<'a>(v: &'a Value, key: &str, path: &str) -> Result<&'a str, Invalid> {
    match v.get(key) {
        None | Some(Value::Null) => Err(bad(format!("{path}.{key}"), "is required")),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(bad(format!("{path}.{key}"), "must not be empty"))
        }
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(bad(format!("{path}.{key}"), "must be a string")),
    }
}

fn opt_str<'a>(v: &'a Value, key: &str, path: &str) -> Result<Option<&'a str>, Invalid> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("{path}.{key}"), "must be a string")),
    }
}

fn check_time(s: &str, path: &str) -> Result<(), Invalid> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|_| ())
        .map_err(|_| bad(path, format!("{s:?} is not an RFC 3339 time")))
}

fn array<'a>(v: &'a Value, key: &str, path: &str) -> Result<Option<&'a Vec<Value>>, Invalid> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(_) => Err(bad(format!("{path}.{key}"), "must be an array")),
    }
}

/// Parse and validate a document in either format (told apart by
/// OpenVEX's `@context` or CycloneDX's `bomFormat`).
pub fn parse(bytes: &[u8]) -> Result<Document, Invalid> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| bad("$", format!("not JSON: {e}")))?;
    if !v.is_object() {
        return Err(bad("$", "must be a JSON object"));
    }
    if v.get("bomFormat").is_some() {
        return parse_cyclonedx(&v);
    }
    parse_openvex(&v)
}

fn parse_openvex(v: &Value) -> Result<Document, Invalid> {
    let context = req_str(v, "@context", "$")?;
    if !context.starts_with("https://openvex.dev/ns") {
        return Err(bad(
            "$.@context",
            format!("{context:?} is not an OpenVEX context (https://openvex.dev/ns/v…)"),
        ));
    }
    let id = req_str(v, "@id", "$")?.to_string();
    let author = req_str(v, "author", "$")?.to_string();
    let timestamp = req_str(v, "timestamp", "$")?.to_string();
    check_time(&timestamp, "$.timestamp")?;
    match v.get("version") {
        Some(n) if n.as_u64().is_some() => {}
        None | Some(Value::Null) => return Err(bad("$.version", "is required")),
        Some(_) => return Err(bad("$.version", "must be a non-negative integer")),
    }
    let statements =
        array(v, "statements", "$")?.ok_or_else(|| bad("$.statements", "is required"))?;
    if statements.is_empty() {
        return Err(bad("$.statements", "must hold at least one statement"));
    }
    let mut out = Vec::with_capacity(statements.len());
    for (i, s) in statements.iter().enumerate() {
        out.push(openvex_statement(
            s,
            &format!("$.statements[{i}]"),
            &timestamp,
        )?);
    }
    Ok(Document {
        id,
        author,
        timestamp,
        format: "openvex".into(),
        statements: out,
    })
}

/// A component's identifiers: its `@id`, and any purl in `identifiers`.
fn component_ids(c: &Value, path: &str) -> Result<Vec<String>, Invalid> {
    if !c.is_object() {
        return Err(bad(path, "must be an object"));
    }
    let mut ids = Vec::new();
    if let Some(id) = opt_str(c, "@id", path)? {
        ids.push(id.to_string());
    }
    if let Some(idf) = c.get("identifiers") {
        let p = format!("{path}.identifiers");
        if !idf.is_object() {
            return Err(bad(p, "must be an object"));
        }
        if let Some(purl) = opt_str(idf, "purl", &p)? {
            ids.push(purl.to_string());
        }
    }
    if ids.is_empty() {
        return Err(bad(
            format!("{path}.@id"),
            "a component needs an @id or identifiers.purl",
        ));
    }
    Ok(ids)
}

fn openvex_statement(s: &Value, path: &str, doc_time: &str) -> Result<Statement, Invalid> {
    if !s.is_object() {
        return Err(bad(path, "must be an object"));
    }
    let vpath = format!("{path}.vulnerability");
    let vuln = s
        .get("vulnerability")
        .ok_or_else(|| bad(&vpath, "is required"))?;
    let mut vulnerabilities = Vec::new();
    match vuln {
        // Early documents name the vulnerability with a bare string.
        Value::String(name) if !name.trim().is_empty() => vulnerabilities.push(name.clone()),
        Value::Object(_) => {
            vulnerabilities.push(req_str(vuln, "name", &vpath)?.to_string());
            for (i, a) in array(vuln, "aliases", &vpath)?
                .map(|a| a.as_slice())
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let a = a
                    .as_str()
                    .ok_or_else(|| bad(format!("{vpath}.aliases[{i}]"), "must be a string"))?;
                vulnerabilities.push(a.to_string());
            }
        }
        _ => return Err(bad(vpath, "must be an object with a name")),
    }
    let products_v = array(s, "products", path)?
        .ok_or_else(|| bad(format!("{path}.products"), "is required"))?;
    if products_v.is_empty() {
        return Err(bad(
            format!("{path}.products"),
            "must name at least one product",
        ));
    }
    let mut products = Vec::new();
    let mut subcomponents = Vec::new();
    for (i, p) in products_v.iter().enumerate() {
        let pp = format!("{path}.products[{i}]");
        products.extend(component_ids(p, &pp)?);
        for (j, c) in array(p, "subcomponents", &pp)?
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            subcomponents.extend(component_ids(c, &format!("{pp}.subcomponents[{j}]"))?);
        }
    }
    let status_s = req_str(s, "status", path)?;
    let status = match status_s {
        "not_affected" => VexStatus::NotAffected,
        "affected" => VexStatus::Affected,
        "fixed" => VexStatus::Fixed,
        "under_investigation" => VexStatus::UnderInvestigation,
        other => {
            return Err(bad(
                format!("{path}.status"),
                format!(
                    "{other:?} is not one of not_affected, affected, fixed, under_investigation"
                ),
            ));
        }
    };
    let justification = opt_str(s, "justification", path)?.map(String::from);
    if let Some(j) = &justification
        && !JUSTIFICATIONS.contains(&j.as_str())
    {
        return Err(bad(
            format!("{path}.justification"),
            format!("{j:?} is not one of {}", JUSTIFICATIONS.join(", ")),
        ));
    }
    let impact_statement = opt_str(s, "impact_statement", path)?.map(String::from);
    // The specification requires one of the two for not_affected, and an
    // action statement for affected.
    if status == VexStatus::NotAffected && justification.is_none() && impact_statement.is_none() {
        return Err(bad(
            format!("{path}.justification"),
            "a not_affected statement needs a justification or an impact_statement",
        ));
    }
    if status == VexStatus::Affected && opt_str(s, "action_statement", path)?.is_none() {
        return Err(bad(
            format!("{path}.action_statement"),
            "an affected statement needs an action_statement",
        ));
    }
    let timestamp = match opt_str(s, "timestamp", path)? {
        Some(t) => {
            check_time(t, &format!("{path}.timestamp"))?;
            t.to_string()
        }
        None => doc_time.to_string(),
    };
    Ok(Statement {
        vulnerabilities,
        products,
        subcomponents,
        status,
        justification,
        impact_statement,
        timestamp,
        patterns: ProductPatterns::default(),
    })
}

/// CycloneDX VEX: each vulnerability with an `analysis.state` is a
/// statement; `affects[].ref` names the component it is about (a
/// `bom-ref`, resolved to that component's purl, or a purl itself). The
/// product is the document's `metadata.component` (its purl or
/// `bom-ref`); without one the statement's products are the affected
/// components themselves.
fn parse_cyclonedx(v: &Value) -> Result<Document, Invalid> {
    let format = req_str(v, "bomFormat", "$")?;
    if format != "CycloneDX" {
        return Err(bad(
            "$.bomFormat",
            format!("{format:?} is not \"CycloneDX\""),
        ));
    }
    let spec = req_str(v, "specVersion", "$")?;
    if !matches!(spec, "1.4" | "1.5" | "1.6") {
        return Err(bad(
            "$.specVersion",
            format!("{spec:?}: VEX needs CycloneDX 1.4, 1.5 or 1.6"),
        ));
    }
    let null = Value::Null;
    let meta = v.get("metadata").unwrap_or(&null);
    let timestamp = match opt_str(meta, "timestamp", "$.metadata")? {
        Some(t) => {
            check_time(t, "$.metadata.timestamp")?;
            t.to_string()
        }
        None => return Err(bad("$.metadata.timestamp", "is required for a VEX")),
    };
    let author = meta
        .get("authors")
        .and_then(|a| a.get(0))
        .and_then(|a| a.get("name"))
        .and_then(|n| n.as_str())
        .or_else(|| {
            meta.get("manufacturer")
                .or_else(|| meta.get("supplier"))
                .and_then(|m| m.get("name"))
                .and_then(|n| n.as_str())
        })
        .ok_or_else(|| {
            bad(
                "$.metadata.authors[0].name",
                "a VEX needs an author (metadata.authors, manufacturer or supplier)",
            )
        })?
        .to_string();
    let id = match opt_str(v, "serialNumber", "$")? {
        Some(s) => s.to_string(),
        None => return Err(bad("$.serialNumber", "is required for a VEX")),
    };
    let mut refs: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    fn walk<'a>(c: &'a Value, refs: &mut std::collections::HashMap<&'a str, &'a str>) {
        if let (Some(r), Some(p)) = (
            c.get("bom-ref").and_then(|r| r.as_str()),
            c.get("purl").and_then(|p| p.as_str()),
        ) {
            refs.insert(r, p);
        }
        for sub in c
            .get("components")
            .and_then(|c| c.as_array())
            .into_iter()
            .flatten()
        {
            walk(sub, refs);
        }
    }
    if let Some(c) = meta.get("component") {
        walk(c, &mut refs);
    }
    for c in v
        .get("components")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
    {
        walk(c, &mut refs);
    }
    let product: Option<String> = meta.get("component").and_then(|c| {
        c.get("purl")
            .or_else(|| c.get("bom-ref"))
            .and_then(|p| p.as_str())
            .map(String::from)
    });
    let vulns = array(v, "vulnerabilities", "$")?
        .ok_or_else(|| bad("$.vulnerabilities", "is required for a VEX"))?;
    let mut statements = Vec::new();
    for (i, x) in vulns.iter().enumerate() {
        let p = format!("$.vulnerabilities[{i}]");
        let name = req_str(x, "id", &p)?.to_string();
        let ap = format!("{p}.analysis");
        let analysis = x
            .get("analysis")
            .ok_or_else(|| bad(&ap, "is required for a VEX"))?;
        let state = req_str(analysis, "state", &ap)?;
        let status = match state {
            "not_affected" | "false_positive" => VexStatus::NotAffected,
            "resolved" | "resolved_with_pedigree" => VexStatus::Fixed,
            "exploitable" => VexStatus::Affected,
            "in_triage" => VexStatus::UnderInvestigation,
            other => {
                return Err(bad(
                    format!("{ap}.state"),
                    format!(
                        "{other:?} is not one of resolved, resolved_with_pedigree, exploitable, \
                         in_triage, false_positive, not_affected"
                    ),
                ));
            }
        };
        let justification = opt_str(analysis, "justification", &ap)?.map(String::from);
        let detail = opt_str(analysis, "detail", &ap)?.map(String::from);
        let affects = array(x, "affects", &p)?
            .ok_or_else(|| bad(format!("{p}.affects"), "is required for a VEX"))?;
        let mut components = Vec::new();
        for (j, a) in affects.iter().enumerate() {
            let r = req_str(a, "ref", &format!("{p}.affects[{j}]"))?;
            components.push(refs.get(r).map(|s| s.to_string()).unwrap_or(r.to_string()));
        }
        if components.is_empty() {
            return Err(bad(
                format!("{p}.affects"),
                "must name at least one component",
            ));
        }
        let mut vulnerabilities = vec![name];
        if let Some(refs) = array(x, "references", &p)? {
            for r in refs {
                if let Some(id) = r.get("id").and_then(|i| i.as_str()) {
                    vulnerabilities.push(id.to_string());
                }
            }
        }
        let (products, subcomponents) = match &product {
            Some(prod) if !components.iter().any(|c| c == prod) => (vec![prod.clone()], components),
            _ => (components, Vec::new()),
        };
        statements.push(Statement {
            vulnerabilities,
            products,
            subcomponents,
            status,
            justification,
            impact_statement: detail,
            timestamp: timestamp.clone(),
            patterns: ProductPatterns::default(),
        });
    }
    if statements.is_empty() {
        return Err(bad(
            "$.vulnerabilities",
            "must hold at least one vulnerability",
        ));
    }
    Ok(Document {
        id,
        author,
        timestamp,
        format: "cyclonedx".into(),
        statements,
    })
}

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
    /// whose pusher is unknown (pushed before a restart).
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

/// Who pushed a VEX referrer, as the registry's access control knew them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pusher {
    /// Access control is off: nobody is identified.
    Unrestricted,
    Anonymous,
    User {
        name: String,
        groups: Vec<String>,
    },
    Robot {
        name: String,
    },
}

impl Pusher {
    /// The name recorded with the document: `alice`, `robot$ci`.
    pub fn display(&self) -> String {
        match self {
            Pusher::Unrestricted => "unidentified (access control off)".into(),
            Pusher::Anonymous => "anonymous".into(),
            Pusher::User { name, .. } => name.clone(),
            Pusher::Robot { name } => format!("robot${name}"),
        }
    }
}

/// Check one `assess.vex.trusted` entry: `user:GLOB`, `group:GLOB` or
/// `robot:GLOB`, where `*` stands for any run of characters.
pub fn check_trusted(entry: &str) -> Result<(), String> {
    match entry.split_once(':') {
        Some(("user" | "group" | "robot", glob)) if !glob.is_empty() => Ok(()),
        _ => Err(format!(
            "{entry:?} is not user:NAME, group:NAME or robot:NAME (names may hold '*')"
        )),
    }
}

/// Whether `pusher` is named by one of the `trusted` entries (see
/// [`check_trusted`]). Nobody unidentified is trusted: with access control
/// off, or anonymous, there is no identity to trust.
pub fn is_trusted(trusted: &[String], pusher: &Pusher) -> bool {
    trusted.iter().any(|entry| {
        let Some((kind, pattern)) = entry.split_once(':') else {
            return false;
        };
        match (kind, pusher) {
            ("user", Pusher::User { name, .. }) => glob(pattern, name),
            ("group", Pusher::User { groups, .. }) => groups.iter().any(|g| glob(pattern, g)),
            ("robot", Pusher::Robot { name }) => {
                glob(pattern.strip_prefix("robot$").unwrap_or(pattern), name)
            }
            _ => false,
        }
    })
}

/// `*` matches any run of characters (none included); everything else
/// itself.
fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for p in middle {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Whose VEX referrers are applied (`[assess.vex]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VexOptions {
    /// Identities whose VEX referrers are applied: `user:GLOB`,
    /// `group:GLOB`, `robot:GLOB` (`*` any run of characters). Absent:
    /// anyone the registry let push to the repository. A referrer pushed
    /// by anyone else is stored, listed with the reason, and not applied.
    /// Documents sent through `POST /api/v1/vex` are not judged by it
    /// (that endpoint asks for its own permission).
    #[serde(default)]
    pub trusted: Option<Vec<String>>,
}

impl VexOptions {
    /// Every entry well formed (see [`check_trusted`]).
    pub fn validate(&self) -> std::result::Result<(), String> {
        for e in self.trusted.iter().flatten() {
            check_trusted(e).map_err(|why| format!("assess.vex.trusted: {why}"))?;
        }
        Ok(())
    }

    /// Why a referrer pushed by `pusher` is not applied, or `None` if it is.
    pub fn refuses(&self, pusher: Option<&Pusher>) -> Option<String> {
        let trusted = self.trusted.as_ref()?;
        match pusher {
            Some(p) if is_trusted(trusted, p) => None,
            Some(p) => Some(format!(
                "pushed by {}, who is not trusted for VEX (assess.vex.trusted)",
                p.display()
            )),
            None => Some(
                "its pusher is unknown (pushed before a restart); only identities in \
                 assess.vex.trusted are trusted for VEX"
                    .into(),
            ),
        }
    }
}

#[cfg(test)]
mod trust_tests {
    use super::*;

    #[test]
    fn trusted_entries_name_users_groups_and_robots() {
        let alice = Pusher::User {
            name: "alice".into(),
            groups: vec!["security".into()],
        };
        let bob = Pusher::User {
            name: "bob".into(),
            groups: vec!["dev".into()],
        };
        let ci = Pusher::Robot {
            name: "ci-release".into(),
        };
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_trusted(&list(&["group:security"]), &alice));
        assert!(!is_trusted(&list(&["group:security"]), &bob));
        assert!(is_trusted(&list(&["user:b*"]), &bob));
        assert!(!is_trusted(&list(&["user:b*"]), &ci));
        assert!(is_trusted(&list(&["robot:ci-*"]), &ci));
        assert!(is_trusted(&list(&["robot:robot$ci-*"]), &ci));
        assert!(!is_trusted(&list(&["robot:ci-*-x"]), &ci));
        assert!(is_trusted(&list(&["robot:*release"]), &ci));
        assert!(!is_trusted(&list(&["user:*"]), &Pusher::Anonymous));
        assert!(!is_trusted(&list(&["user:*"]), &Pusher::Unrestricted));
        assert!(!is_trusted(&[], &alice));
        assert!(glob("a*b*c", "abc") && glob("a*b*c", "axxbyyc") && !glob("a*b*c", "acb"));
        assert!(glob("ab", "ab") && !glob("ab", "abc") && !glob("a*a", "a"));
        assert!(check_trusted("group:security").is_ok());
        assert!(check_trusted("security").is_err());
        assert!(check_trusted("team:x").is_err());
        assert!(check_trusted("user:").is_err());
    }
}
