//! CVSS sources: CVE JSON 5 records, the NVD JSON 1.1 feed and NVD API 2.0
//! `cve` objects. They contribute vectors (and descriptions) by CVE id; they
//! never create package entries, so OS packages are never matched against
//! NVD's CPE ranges.

use super::str_field;
use crate::Error;
use crate::build::Builder;
use crate::cvss::{Candidate, rank};
use serde_json::Value;

fn english(list: Option<&Value>, text_key: &str) -> Option<String> {
    let arr = list?.as_array()?;
    arr.iter()
        .find(|d| str_field(d, "lang").is_some_and(|l| l.starts_with("en")))
        .or_else(|| arr.first())
        .and_then(|d| str_field(d, text_key))
        .map(str::to_string)
}

/// CVE JSON 5 (`dataType: CVE_RECORD`).
pub(crate) fn read_cve5(b: &mut Builder, label: &str, v: &Value) -> Result<(), Error> {
    let meta = v.get("cveMetadata");
    let Some(id) = meta.and_then(|m| str_field(m, "cveId")) else {
        return Err(Error::malformed(
            label,
            None,
            "CVE record without cveMetadata.cveId",
        ));
    };
    let source = b.source("nvd:cve5");
    let date = meta
        .and_then(|m| str_field(m, "dateUpdated").or_else(|| str_field(m, "datePublished")))
        .map(str::to_string);
    b.record(source, date.as_deref());
    let containers = v.get("containers");
    let cna = containers.and_then(|c| c.get("cna"));
    if let Some(cna) = cna {
        add_cve5_metrics(b, id, cna, rank::CVE5_CNA, "cve5:cna");
        if let Some(d) = english(cna.get("descriptions"), "value") {
            b.add_description(id, &d);
        }
    }
    for adp in containers
        .and_then(|c| c.get("adp"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        add_cve5_metrics(b, id, adp, rank::CVE5_ADP, "cve5:adp");
    }
    Ok(())
}

fn add_cve5_metrics(b: &mut Builder, id: &str, container: &Value, rank: u8, source: &str) {
    for m in container
        .get("metrics")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for key in ["cvssV4_0", "cvssV3_1", "cvssV3_0"] {
            if let Some(c) = m.get(key) {
                add_cvss_data(b, id, c, rank, || source.to_string());
            }
        }
    }
}

/// A CVSS object as CVE 5 and both NVD formats spell it (`vectorString`,
/// `baseScore`) as a candidate score of `id`; one without a vector is
/// skipped.
fn add_cvss_data(b: &mut Builder, id: &str, c: &Value, rank: u8, source: impl FnOnce() -> String) {
    if let Some(vector) = str_field(c, "vectorString") {
        b.add_cvss(
            id,
            Candidate {
                vector: vector.to_string(),
                stated: c.get("baseScore").and_then(Value::as_f64),
                rank,
                source: source(),
            },
        );
    }
}

/// NVD JSON 1.1 feed (`CVE_Items`).
pub(crate) fn read_nvd11(b: &mut Builder, label: &str, v: &Value) -> Result<(), Error> {
    let source = b.source("nvd:1.1");
    let feed_date = str_field(v, "CVE_data_timestamp").map(str::to_string);
    let Some(items) = v.get("CVE_Items").and_then(Value::as_array) else {
        return Err(Error::malformed(label, None, "CVE_Items is not a list"));
    };
    for (i, item) in items.iter().enumerate() {
        let Some(id) = item
            .pointer("/cve/CVE_data_meta/ID")
            .and_then(Value::as_str)
        else {
            return Err(Error::malformed(
                label,
                Some(&format!("CVE_Items[{i}]")),
                "missing cve.CVE_data_meta.ID",
            ));
        };
        b.record(source, feed_date.as_deref());
        if let Some(c) = item.pointer("/impact/baseMetricV3/cvssV3") {
            add_cvss_data(b, id, c, rank::NVD_11, || "nvd-1.1".into());
        }
        if let Some(d) = english(item.pointer("/cve/description/description_data"), "value") {
            b.add_description(id, &d);
        }
    }
    Ok(())
}

/// NVD API 2.0 response (`vulnerabilities: [{cve}]`).
pub(crate) fn read_nvd2_response(b: &mut Builder, label: &str, v: &Value) -> Result<(), Error> {
    let Some(list) = v.get("vulnerabilities").and_then(Value::as_array) else {
        return Err(Error::malformed(
            label,
            None,
            "vulnerabilities is not a list",
        ));
    };
    for (i, item) in list.iter().enumerate() {
        let Some(cve) = item.get("cve") else {
            return Err(Error::malformed(
                label,
                Some(&format!("vulnerabilities[{i}]")),
                "missing cve",
            ));
        };
        read_nvd2_cve(b, label, cve)?;
    }
    Ok(())
}

/// One NVD API 2.0 `cve` object.
pub(crate) fn read_nvd2_cve(b: &mut Builder, label: &str, v: &Value) -> Result<(), Error> {
    let Some(id) = str_field(v, "id") else {
        return Err(Error::malformed(label, None, "NVD cve object without id"));
    };
    let source = b.source("nvd:api2");
    b.record(source, str_field(v, "lastModified"));
    let metrics = v.get("metrics");
    for key in ["cvssMetricV40", "cvssMetricV31", "cvssMetricV30"] {
        for m in metrics
            .and_then(|m| m.get(key))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(data) = m.get("cvssData") else {
                continue;
            };
            let primary = str_field(m, "type") == Some("Primary");
            let rank = if primary {
                rank::NVD_PRIMARY
            } else {
                rank::NVD_SECONDARY
            };
            add_cvss_data(b, id, data, rank, || {
                if primary {
                    "nvd".into()
                } else {
                    format!("nvd:{}", str_field(m, "source").unwrap_or("secondary"))
                }
            });
        }
    }
    if let Some(d) = english(v.get("descriptions"), "value") {
        b.add_description(id, &d);
    }
    Ok(())
}
