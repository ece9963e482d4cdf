//! dpkg: `/var/lib/dpkg/status` and distroless `status.d/` control files.

use super::PkgCtx;
use crate::purl;
use inventory::{Ecosystem, Package};

/// Split a deb822 / RFC 822 style file into paragraphs of (field, value);
/// continuation lines are appended to the previous field's value.
pub(crate) fn paragraphs(text: &str) -> Vec<Vec<(&str, String)>> {
    let mut out = Vec::new();
    let mut cur: Vec<(&str, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some((_, v)) = cur.last_mut() {
                v.push('\n');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            cur.push((k.trim(), v.trim().to_string()));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `Source: foo` or `Source: foo (1.2-3)`.
pub(crate) fn parse_source(s: &str) -> (String, Option<String>) {
    match s.split_once('(') {
        Some((name, ver)) => (
            name.trim().to_string(),
            Some(ver.trim_end_matches(')').trim().to_string()).filter(|v| !v.is_empty()),
        ),
        None => (s.trim().to_string(), None),
    }
}

pub(crate) fn parse(text: &str, ctx: &PkgCtx) -> Vec<Package> {
    let mut out = Vec::new();
    for para in paragraphs(text) {
        let get = |k: &str| {
            para.iter()
                .find(|(f, _)| f.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
        };
        let (Some(name), Some(version)) = (get("Package"), get("Version")) else {
            continue;
        };
        // status.d files have no Status field; the status file keeps
        // removed-but-configured packages, which are not installed.
        if let Some(status) = get("Status")
            && status.split_whitespace().nth(2) != Some("installed")
        {
            continue;
        }
        let arch = get("Architecture").unwrap_or("");
        let (source_name, source_version) = match get("Source") {
            Some(s) => parse_source(s),
            None => (name.to_string(), None),
        };
        let mut quals = vec![("arch", arch)];
        let upstream = if source_name != name {
            Some(source_name.as_str())
        } else {
            None
        };
        if let Some(u) = upstream {
            quals.push(("upstream", u));
        }
        let purl = purl::build("deb", Some("debian"), name, version, &quals);
        let mut p = ctx.package(Ecosystem::Deb, name, version, purl);
        p.source_name = Some(source_name);
        p.source_version = source_version;
        out.push(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status() {
        let text = "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\nVersion: 2.36-9+deb12u4\nDescription: x\n more\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: libssl3\nStatus: install ok installed\nSource: openssl (3.0.11-1~deb12u2)\nVersion: 3.0.11-1~deb12u2+b1\n";
        let ctx = PkgCtx {
            layer: "sha256:x",
            location: "/var/lib/dpkg/status".into(),
        };
        let p = parse(text, &ctx);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].source_name.as_deref(), Some("glibc"));
        assert_eq!(p[0].source_version, None);
        assert_eq!(
            p[0].purl,
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&upstream=glibc"
        );
        assert_eq!(p[1].source_name.as_deref(), Some("openssl"));
        assert_eq!(p[1].source_version.as_deref(), Some("3.0.11-1~deb12u2"));
    }
}
