//! PHP: `composer.lock` (`packages` and `packages-dev`) and
//! `vendor/composer/installed.json` (Composer 1: an array; 2: `packages`).

use super::{ParseError, PkgCtx};
use crate::purl;
use inventory::{Ecosystem, Package};
use serde_json::Value;

pub(crate) fn composer(data: &[u8], ctx: &PkgCtx) -> Result<Vec<Package>, ParseError> {
    let v: Value = serde_json::from_slice(data).map_err(ParseError::Json)?;
    let mut lists: Vec<&Vec<Value>> = Vec::new();
    if let Some(a) = v.as_array() {
        lists.push(a);
    }
    for key in ["packages", "packages-dev"] {
        if let Some(a) = v.get(key).and_then(Value::as_array) {
            lists.push(a);
        }
    }
    let mut out = Vec::new();
    for p in lists.into_iter().flatten() {
        if let (Some(n), Some(ver)) = (
            p.get("name").and_then(Value::as_str),
            p.get("version").and_then(Value::as_str),
        ) {
            let ver = ver.strip_prefix('v').unwrap_or(ver);
            out.push(ctx.package(Ecosystem::Composer, n, ver, purl::composer(n, ver)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_composer() {
        let ctx = PkgCtx {
            layer: "l",
            location: "/app/composer.lock".into(),
        };
        let p = composer(
            br#"{"packages":[{"name":"monolog/monolog","version":"v2.0.0"}],"packages-dev":[{"name":"a/b","version":"1.0"}]}"#,
            &ctx,
        )
        .unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].purl, "pkg:composer/monolog/monolog@2.0.0");
        let p = composer(br#"[{"name":"a/b","version":"1.0"}]"#, &ctx).unwrap();
        assert_eq!(p.len(), 1);
    }
}
