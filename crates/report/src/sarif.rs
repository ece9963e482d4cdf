//! SARIF 2.1.0 through `serde-sarif`'s types (generated from the OASIS
//! schema): one rule per advisory, one result per affected package.
//! `critical` and `high` are errors, `medium` warnings, the rest notes.

use crate::scan::ScanReport;
use serde_sarif::sarif::{
    ArtifactLocation, Location, Message, MultiformatMessageString, PhysicalLocation, PropertyBag,
    ReportingConfiguration, ReportingDescriptor, Result as SarifResult, ResultLevel, Run, Sarif,
    Tool, ToolComponent,
};
use std::collections::BTreeMap;
use vulndb::Severity;

/// The schema URI written into `$schema`.
pub const SCHEMA: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

pub fn level(s: Severity) -> ResultLevel {
    match s {
        Severity::Critical | Severity::High => ResultLevel::Error,
        Severity::Medium => ResultLevel::Warning,
        Severity::Low | Severity::Unknown => ResultLevel::Note,
    }
}

fn level_name(s: Severity) -> &'static str {
    match level(s) {
        ResultLevel::Error => "error",
        ResultLevel::Warning => "warning",
        ResultLevel::Note => "note",
        ResultLevel::None => "none",
    }
}

/// The SARIF log of a scan.
pub fn log(report: &ScanReport) -> Sarif {
    let mut rules: BTreeMap<String, ReportingDescriptor> = BTreeMap::new();
    let mut results = Vec::new();
    for s in &report.images {
        for f in &s.findings {
            rules.entry(f.id.to_string()).or_insert_with(|| {
                let mut extra = BTreeMap::new();
                if let Some(c) = &f.cvss {
                    // GitHub code scanning reads this to rank results.
                    extra.insert(
                        "security-severity".to_string(),
                        serde_json::Value::String(format!("{:.1}", c.score)),
                    );
                }
                let props = PropertyBag::builder()
                    .tags(vec![
                        "vulnerability".to_string(),
                        "security".to_string(),
                        f.severity.as_str().to_string(),
                    ])
                    .additional_properties(extra)
                    .build();
                let full = if f.summary.is_empty() {
                    f.id.to_string()
                } else {
                    f.summary.to_string()
                };
                let config = ReportingConfiguration::builder()
                    .level(serde_json::Value::String(level_name(f.severity).into()))
                    .build();
                let short = format!("{} in {}", f.id, f.package);
                let rule = ReportingDescriptor::builder()
                    .id(f.id.to_string())
                    .name(f.id.replace('-', ""))
                    .short_description(MultiformatMessageString::builder().text(short).build())
                    .full_description(MultiformatMessageString::builder().text(full).build())
                    .default_configuration(config)
                    .properties(props);
                match f.references.first() {
                    Some(u) => rule.help_uri(u.clone()).build(),
                    None => rule.build(),
                }
            });
            let location = s
                .inventory
                .packages
                .iter()
                .find(|p| {
                    p.ecosystem == f.ecosystem
                        && *p.name == *f.package
                        && *p.version == *f.installed_version
                })
                .map(|p| p.location.trim_start_matches('/').to_string())
                .unwrap_or_else(|| report.target.clone());
            let fixed = f
                .fixed_version
                .as_deref()
                .map(|v| format!("; fixed in {v}"))
                .unwrap_or_default();
            let platform = s
                .platform
                .as_deref()
                .map(|p| format!(" [{p}]"))
                .unwrap_or_default();
            let text = format!(
                "{} {} {} is affected by {} ({}){fixed}{platform}",
                f.ecosystem, f.package, f.installed_version, f.id, f.severity
            );
            let physical = PhysicalLocation::builder()
                .artifact_location(ArtifactLocation::builder().uri(location).build())
                .build();
            results.push(
                SarifResult::builder()
                    .rule_id(f.id.to_string())
                    .level(level(f.severity))
                    .message(Message::builder().text(text).build())
                    .locations(vec![
                        Location::builder().physical_location(physical).build(),
                    ])
                    .build(),
            );
        }
    }
    let driver = ToolComponent::builder()
        .name("drydock")
        .version(env!("CARGO_PKG_VERSION"))
        .rules(rules.into_values().collect::<Vec<_>>())
        .build();
    let run = Run::builder()
        .tool(Tool::builder().driver(driver).build())
        .results(results)
        .build();
    Sarif::builder()
        .schema(SCHEMA)
        .version(serde_json::to_value(serde_sarif::sarif::Version::V2_1_0).expect("a constant"))
        .runs(vec![run])
        .build()
}
