//! Small line-oriented package databases: apk.

use super::PkgCtx;
use crate::purl;
use inventory::{Ecosystem, Package};

/// `/lib/apk/db/installed`: blank-line separated records of `X:value`
/// lines; `P` name, `V` version, `A` arch, `o` origin (source package).
pub(crate) fn apk(text: &str, ctx: &PkgCtx) -> Vec<Package> {
    let mut out = Vec::new();
    let mut flush = |name: &mut Option<String>,
                     version: &mut Option<String>,
                     arch: &mut Option<String>,
                     origin: &mut Option<String>| {
        if let (Some(n), Some(v)) = (name.take(), version.take()) {
            let a = arch.take().unwrap_or_default();
            let o = origin.take().unwrap_or_else(|| n.clone());
            let mut quals = vec![("arch", a.as_str())];
            if o != n {
                quals.push(("upstream", o.as_str()));
            }
            let purl = purl::build("apk", Some("alpine"), &n, &v, &quals);
            let mut p = ctx.package(Ecosystem::Apk, n, v, purl);
            p.source_name = Some(o);
            out.push(p);
        }
        *arch = None;
        *origin = None;
    };
    let (mut name, mut version, mut arch, mut origin) = (None, None, None, None);
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut name, &mut version, &mut arch, &mut origin);
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = Some(v.to_string());
        match k {
            "P" => name = v,
            "V" => version = v,
            "A" => arch = v,
            "o" => origin = v,
            _ => {}
        }
    }
    flush(&mut name, &mut version, &mut arch, &mut origin);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_apk_db() {
        let ctx = PkgCtx {
            layer: "l",
            location: "/lib/apk/db/installed".into(),
        };
        let p = apk(
            "C:Q1x=\nP:musl\nV:1.2.5-r0\nA:x86_64\no:musl\n\nP:libcrypto3\nV:3.3.2-r0\nA:x86_64\no:openssl\n",
            &ctx,
        );
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].source_name.as_deref(), Some("openssl"));
        assert_eq!(
            p[1].purl,
            "pkg:apk/alpine/libcrypto3@3.3.2-r0?arch=x86_64&upstream=openssl"
        );
    }
}
