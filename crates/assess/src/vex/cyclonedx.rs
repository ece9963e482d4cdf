//! CycloneDX VEX: the vulnerabilities of a CycloneDX document that carry
//! an analysis, read as statements.

use super::{
    Document, Invalid, ProductPatterns, Statement, VexStatus, array, bad, check_time, opt_str,
    req_str,
};
use serde_json::Value;

/// CycloneDX VEX: each vulnerability with an `analysis.state` is a
/// statement; `affects[].ref` names the component it is about (a
/// `bom-ref`, resolved to that component's purl, or a purl itself). The
/// product is the document's `metadata.component` (its purl or
/// `bom-ref`); without one the statement's products are the affected
/// components themselves.
pub(super) fn parse_cyclonedx(v: &Value) -> Result<Document, Invalid> {
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
