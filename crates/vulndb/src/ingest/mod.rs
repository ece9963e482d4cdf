//! Readers for the native advisory formats. Each reader turns records into
//! advisories, package entries and CVSS candidates on the [`Builder`].

use crate::Error;
use crate::build::Builder;
use serde_json::Value;

pub(crate) mod alpine;
pub(crate) mod debian;
pub(crate) mod nvd;
pub(crate) mod osv;

/// Recognise a JSON document by its shape and hand it to its reader.
pub(crate) fn read_json(b: &mut Builder, label: &str, v: Value) -> Result<(), Error> {
    let Some(obj) = v.as_object() else {
        return Err(Error::malformed(label, None, "not a JSON object"));
    };
    if obj.contains_key("CVE_Items") {
        return nvd::read_nvd11(b, label, &v);
    }
    if obj.get("dataType").and_then(Value::as_str) == Some("CVE_RECORD")
        || obj.contains_key("cveMetadata")
    {
        return nvd::read_cve5(b, label, &v);
    }
    if obj.contains_key("vulnerabilities") && obj.contains_key("format") {
        return nvd::read_nvd2_response(b, label, &v);
    }
    if obj.contains_key("sourceIdentifier") && obj.contains_key("vulnStatus") {
        return nvd::read_nvd2_cve(b, label, &v);
    }
    if obj.contains_key("distroversion") && obj.contains_key("packages") {
        return alpine::read_secdb(b, label, v);
    }
    if obj.contains_key("id") && (obj.contains_key("modified") || obj.contains_key("affected")) {
        return osv::read_record(b, label, v);
    }
    if debian::looks_like_tracker_json(obj) {
        return debian::read_tracker_json(b, label, &v);
    }
    Err(Error::malformed(
        label,
        None,
        "unrecognised JSON document (not OSV, Alpine secdb, Debian tracker, CVE 5 or NVD)",
    ))
}

pub(crate) fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}
