//! JavaScript: installed `node_modules/**/package.json`, and the lockfiles
//! of npm (`package-lock.json` v1–v3), yarn (classic and berry) and pnpm.
//!
//! yarn.lock and pnpm-lock.yaml are read line by line: only entry keys and
//! `version` lines matter, so a full YAML parser buys nothing here.

use super::{ParseError, PkgCtx};
use crate::purl;
use inventory::{Ecosystem, Package};
use serde_json::Value;

fn pkg(ctx: &PkgCtx, name: &str, version: &str) -> Package {
    ctx.package(Ecosystem::Npm, name, version, purl::npm(name, version))
}

pub(crate) fn package_json(data: &[u8], ctx: &PkgCtx) -> Result<Vec<Package>, ParseError> {
    let v: Value = serde_json::from_slice(data).map_err(ParseError::Json)?;
    match (
        v.get("name").and_then(Value::as_str),
        v.get("version").and_then(Value::as_str),
    ) {
        (Some(n), Some(ver)) if !n.is_empty() && !ver.is_empty() => Ok(vec![pkg(ctx, n, ver)]),
        _ => Ok(Vec::new()),
    }
}

pub(crate) fn package_lock(data: &[u8], ctx: &PkgCtx) -> Result<Vec<Package>, ParseError> {
    let v: Value = serde_json::from_slice(data).map_err(ParseError::Json)?;
    let mut out = Vec::new();
    if let Some(packages) = v.get("packages").and_then(Value::as_object) {
        // lockfileVersion 2 and 3: keys are install paths.
        for (path, entry) in packages {
            let Some(idx) = path.rfind("node_modules/") else {
                continue; // "" is the root project; others are workspaces
            };
            if entry.get("link").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let name = entry
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(&path[idx + "node_modules/".len()..]);
            if let Some(ver) = entry.get("version").and_then(Value::as_str) {
                out.push(pkg(ctx, name, ver));
            }
        }
    } else if let Some(deps) = v.get("dependencies").and_then(Value::as_object) {
        // lockfileVersion 1: nested dependencies.
        let mut stack: Vec<&serde_json::Map<String, Value>> = vec![deps];
        while let Some(map) = stack.pop() {
            for (name, entry) in map {
                if let Some(ver) = entry.get("version").and_then(Value::as_str)
                    && !ver.starts_with("file:")
                    && !ver.starts_with("link:")
                {
                    out.push(pkg(ctx, name, ver));
                }
                if let Some(d) = entry.get("dependencies").and_then(Value::as_object) {
                    stack.push(d);
                }
            }
        }
    }
    Ok(out)
}

/// Name from a yarn key spec: `lodash@^4.17.15`, `"@babel/core@^7.0.0"`,
/// berry `"lodash@npm:^4.17.15"`.
fn spec_name(spec: &str) -> Option<&str> {
    let spec = spec.trim().trim_matches('"');
    // The name may start with '@' (a scope); its first character may be
    // several bytes long.
    let skip = spec.chars().next()?.len_utf8();
    let at = spec[skip..].find('@')? + skip;
    Some(&spec[..at])
}

pub(crate) fn yarn_lock(text: &str, ctx: &PkgCtx) -> Vec<Package> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            current = None;
            if let Some(keys) = line.strip_suffix(':') {
                let first = keys.split(',').next().unwrap_or("");
                if first.contains("@workspace:") || first.contains("@patch:") {
                    continue;
                }
                current = spec_name(first).map(str::to_string);
            }
            continue;
        }
        let t = line.trim();
        let version = t
            .strip_prefix("version ")
            .or_else(|| t.strip_prefix("version: "));
        if let (Some(name), Some(v)) = (&current, version) {
            let v = v.trim().trim_matches('"');
            if !v.is_empty() && v != "0.0.0-use.local" {
                out.push(pkg(ctx, name, v));
            }
            current = None;
        }
    }
    out
}

pub(crate) fn pnpm_lock(text: &str, ctx: &PkgCtx) -> Vec<Package> {
    let mut out = Vec::new();
    let mut in_packages = false;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            in_packages = line.trim_end() == "packages:";
            continue;
        }
        if !in_packages {
            continue;
        }
        // Entries are indented by exactly two spaces.
        let Some(key) = line.strip_prefix("  ") else {
            continue;
        };
        if key.starts_with(' ') {
            continue;
        }
        let Some(key) = key.trim_end().strip_suffix(':') else {
            continue;
        };
        let key = key.trim_matches(|c| c == '\'' || c == '"');
        let key = key.strip_prefix('/').unwrap_or(key);
        // Drop peer-dependency suffixes: `(react@18.2.0)` (v6+).
        let key = key.split('(').next().unwrap_or(key);
        let v5 = key
            .rsplit_once('/')
            .filter(|(n, v)| !n.is_empty() && v.as_bytes().first().is_some_and(u8::is_ascii_digit));
        let (name, version) = match v5 {
            // v5: name/version (with `_peer@x` suffixes)
            Some((n, v)) => (n, v.split('_').next().unwrap_or(v)),
            // v6+: name@version
            None => match key.get(1..).and_then(|k| k.rfind('@')) {
                Some(i) => (&key[..i + 1], &key[i + 2..]),
                None => continue,
            },
        };
        if !name.is_empty() && !version.is_empty() && version.as_bytes()[0].is_ascii_digit() {
            out.push(pkg(ctx, name, version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> PkgCtx<'static> {
        PkgCtx {
            layer: "l",
            location: "/app/x".into(),
        }
    }

    fn names(p: &[Package]) -> Vec<String> {
        let mut v: Vec<String> = p
            .iter()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn parses_lockfiles() {
        let lock = br#"{"lockfileVersion":3,"packages":{"":{"name":"app"},"node_modules/a":{"version":"1.0.0"},"node_modules/a/node_modules/@s/b":{"version":"2.0.0"},"node_modules/l":{"link":true}}}"#;
        assert_eq!(
            names(&package_lock(lock, &ctx()).unwrap()),
            ["@s/b@2.0.0", "a@1.0.0"]
        );
        let v1 = br#"{"lockfileVersion":1,"dependencies":{"a":{"version":"1.0.0","dependencies":{"b":{"version":"2.0.0"}}}}}"#;
        assert_eq!(
            names(&package_lock(v1, &ctx()).unwrap()),
            ["a@1.0.0", "b@2.0.0"]
        );
        let yarn = "# yarn lockfile v1\n\n\"@babel/core@^7.0.0\", \"@babel/core@^7.1.0\":\n  version \"7.1.2\"\n  resolved x\n\nlodash@^4.17.15:\n  version \"4.17.15\"\n";
        assert_eq!(
            names(&yarn_lock(yarn, &ctx())),
            ["@babel/core@7.1.2", "lodash@4.17.15"]
        );
        let berry = "__metadata:\n  version: 6\n\n\"lodash@npm:^4.17.15\":\n  version: 4.17.21\n  resolution: x\n\n\"app@workspace:.\":\n  version: 0.0.0-use.local\n";
        assert_eq!(names(&yarn_lock(berry, &ctx())), ["lodash@4.17.21"]);
        let pnpm6 = "lockfileVersion: '6.0'\npackages:\n\n  /lodash@4.17.15:\n    resolution: {integrity: x}\n  /@babel/core@7.1.2(react@18.0.0):\n    dev: false\n";
        assert_eq!(
            names(&pnpm_lock(pnpm6, &ctx())),
            ["@babel/core@7.1.2", "lodash@4.17.15"]
        );
        let pnpm5 = "lockfileVersion: 5.4\npackages:\n  /lodash/4.17.15:\n    dev: false\n  /@babel/core/7.1.2_react@18.0.0:\n    dev: false\n";
        assert_eq!(
            names(&pnpm_lock(pnpm5, &ctx())),
            ["@babel/core@7.1.2", "lodash@4.17.15"]
        );
        let pnpm9 = "lockfileVersion: '9.0'\npackages:\n  lodash@4.17.15:\n    resolution: {}\n  '@babel/core@7.1.2':\n    resolution: {}\nsnapshots:\n  lodash@4.17.15: {}\n";
        assert_eq!(
            names(&pnpm_lock(pnpm9, &ctx())),
            ["@babel/core@7.1.2", "lodash@4.17.15"]
        );
    }
}
