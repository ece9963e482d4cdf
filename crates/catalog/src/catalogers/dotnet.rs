//! .NET: `*.deps.json`, whose `libraries` map `Name/Version` to entries of
//! type `package` (NuGet) or `project` (the application itself).

use super::{ParseError, PkgCtx};
use crate::purl;
use inventory::{Ecosystem, Package};
use serde_json::Value;

pub(crate) fn deps_json(data: &[u8], ctx: &PkgCtx) -> Result<Vec<Package>, ParseError> {
    let v: Value = serde_json::from_slice(data).map_err(ParseError::Json)?;
    let mut out = Vec::new();
    if let Some(libs) = v.get("libraries").and_then(Value::as_object) {
        for (key, lib) in libs {
            if lib.get("type").and_then(Value::as_str) != Some("package") {
                continue;
            }
            if let Some((n, ver)) = key.split_once('/') {
                out.push(ctx.package(Ecosystem::NuGet, n, ver, purl::nuget(n, ver)));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_deps() {
        let ctx = PkgCtx {
            layer: "l",
            location: "/app/app.deps.json".into(),
        };
        let p = deps_json(
            br#"{"libraries":{"app/1.0.0":{"type":"project"},"Newtonsoft.Json/13.0.1":{"type":"package"}}}"#,
            &ctx,
        )
        .unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].purl, "pkg:nuget/Newtonsoft.Json@13.0.1");
    }
}
