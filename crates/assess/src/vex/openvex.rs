//! OpenVEX 0.2.0 documents: the fields and statement fields the
//! specification defines, checked with the JSON path of the first problem.

use super::{
    Document, Invalid, JUSTIFICATIONS, ProductPatterns, Statement, VexStatus, array, bad,
    check_time, opt_str, req_str,
};
use serde_json::Value;

pub(super) fn parse_openvex(v: &Value) -> Result<Document, Invalid> {
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
