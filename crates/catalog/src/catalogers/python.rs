//! Python: `*.dist-info/METADATA`, `*.egg-info/PKG-INFO` and single-file
//! `*.egg-info` (core metadata: RFC 822 headers up to the first blank line).

use super::PkgCtx;
use crate::purl;
use inventory::{Ecosystem, Package};

pub(crate) fn parse(text: &str, ctx: &PkgCtx) -> Vec<Package> {
    let (mut name, mut version) = (None, None);
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            match k.trim() {
                "Name" if name.is_none() => name = Some(v.trim().to_string()),
                "Version" if version.is_none() => version = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    match (name, version) {
        (Some(n), Some(v)) if !n.is_empty() && !v.is_empty() => {
            let purl = purl::pypi(&n, &v);
            vec![ctx.package(Ecosystem::PyPI, n, v, purl)]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_metadata() {
        let ctx = PkgCtx {
            layer: "l",
            location: "/x/PyYAML-5.3.dist-info/METADATA".into(),
        };
        let p = parse(
            "Metadata-Version: 2.1\nName: PyYAML\nVersion: 5.3\n\nName: not-this\n",
            &ctx,
        );
        assert_eq!(p[0].name, "PyYAML");
        assert_eq!(p[0].purl, "pkg:pypi/pyyaml@5.3");
        assert!(parse("Metadata-Version: 2.1\n", &ctx).is_empty());
    }
}
