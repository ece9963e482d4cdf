//! Java archives (JAR, WAR, EAR, …): `META-INF/maven/**/pom.properties`,
//! else `META-INF/MANIFEST.MF` and the file name; archives nested inside
//! (`WEB-INF/lib/*.jar`, `BOOT-INF/lib/*.jar`) are read from memory under
//! the file size cap, to [`crate::Limits::max_nesting`] levels.

use super::{ParseError, PkgCtx};
use crate::purl;
use crate::{LayerInventory, Limits};
use inventory::{Ecosystem, Package};
use std::io::{Read, Seek};

fn is_archive_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".jar", ".war", ".ear", ".jpi", ".hpi", ".par", ".sar"]
        .iter()
        .any(|e| lower.ends_with(e))
}

pub(crate) fn scan_file(
    f: &mut std::fs::File,
    ctx: &PkgCtx,
    limits: &Limits,
    out: &mut LayerInventory,
) -> Vec<Package> {
    let name = ctx.location.rsplit('/').next().unwrap_or("").to_string();
    let mut found = Vec::new();
    if let Err(e) = scan_zip(f, &name, &ctx.location, ctx, limits, 0, &mut found) {
        out.skip(ctx.malformed(e.to_string()));
    }
    found
}

fn props(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().filter_map(|l| {
        let l = l.trim();
        if l.starts_with('#') {
            return None;
        }
        l.split_once(['=', ':']).map(|(k, v)| (k.trim(), v.trim()))
    })
}

/// `foo-bar-1.2.3.jar` → (`foo-bar`, `1.2.3`).
fn name_version_from_file(file: &str) -> Option<(String, String)> {
    let stem = file.rsplit_once('.').map(|(s, _)| s).unwrap_or(file);
    let bytes = stem.as_bytes();
    for i in 0..bytes.len().saturating_sub(1) {
        if bytes[i] == b'-' && bytes[i + 1].is_ascii_digit() {
            return Some((stem[..i].to_string(), stem[i + 1..].to_string()));
        }
    }
    None
}

fn scan_zip<R: Read + Seek>(
    reader: R,
    file_name: &str,
    location: &str,
    ctx: &PkgCtx,
    limits: &Limits,
    depth: u32,
    found: &mut Vec<Package>,
) -> Result<(), ParseError> {
    let mut zip = zip::ZipArchive::new(reader).map_err(ParseError::Zip)?;
    let mut poms = Vec::new();
    let mut manifest = None;
    let mut nested = Vec::new();
    for i in 0..zip.len() {
        let Ok(entry) = zip.by_index_raw(i) else {
            continue;
        };
        let name = entry.name().to_string();
        if name.starts_with("META-INF/maven/") && name.ends_with("/pom.properties") {
            poms.push(i);
        } else if name == "META-INF/MANIFEST.MF" {
            manifest = Some(i);
        } else if is_archive_name(&name) && depth < limits.max_nesting {
            nested.push(i);
        }
    }
    let read_small = |zip: &mut zip::ZipArchive<R>, i: usize, cap: u64| -> Option<Vec<u8>> {
        let mut e = zip.by_index(i).ok()?;
        if e.size() > cap {
            return None;
        }
        let mut v = Vec::with_capacity(e.size() as usize);
        e.by_ref().take(cap).read_to_end(&mut v).ok()?;
        Some(v)
    };
    let mut any = false;
    for i in poms {
        let Some(data) = read_small(&mut zip, i, 1 << 20) else {
            continue;
        };
        let text = String::from_utf8_lossy(&data);
        let (mut g, mut a, mut v) = (None, None, None);
        for (k, val) in props(&text) {
            match k {
                "groupId" => g = Some(val.to_string()),
                "artifactId" => a = Some(val.to_string()),
                "version" => v = Some(val.to_string()),
                _ => {}
            }
        }
        if let (Some(g), Some(a), Some(v)) = (g, a, v) {
            let mut p = ctx.package(
                Ecosystem::Maven,
                format!("{g}:{a}"),
                v.clone(),
                purl::maven(&g, &a, &v),
            );
            p.location = location.to_string();
            found.push(p);
            any = true;
        }
    }
    if !any {
        let mf = manifest.and_then(|i| read_small(&mut zip, i, 1 << 20));
        let text = mf
            .map(|d| String::from_utf8_lossy(&d).into_owned())
            .unwrap_or_default();
        let get = |k: &str| {
            props(&text)
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
        };
        let from_file = name_version_from_file(file_name);
        let artifact = get("Implementation-Title")
            .or_else(|| {
                get("Bundle-SymbolicName").map(|s| s.split(';').next().unwrap_or("").to_string())
            })
            .or_else(|| from_file.as_ref().map(|(n, _)| n.clone()));
        let version = get("Implementation-Version")
            .or_else(|| get("Bundle-Version"))
            .or_else(|| from_file.as_ref().map(|(_, v)| v.clone()));
        let group = get("Implementation-Vendor-Id").unwrap_or_default();
        if let (Some(a), Some(v)) = (artifact, version)
            && !a.is_empty()
            && !v.is_empty()
        {
            let name = if group.is_empty() {
                a.clone()
            } else {
                format!("{group}:{a}")
            };
            let mut p = ctx.package(
                Ecosystem::Maven,
                name,
                v.clone(),
                purl::maven(&group, &a, &v),
            );
            p.location = location.to_string();
            found.push(p);
        }
    }
    for i in nested {
        let inner_name = zip
            .by_index_raw(i)
            .map(|e| e.name().to_string())
            .unwrap_or_default();
        let Some(data) = read_small(&mut zip, i, limits.max_file_bytes) else {
            continue;
        };
        let short = inner_name
            .rsplit('/')
            .next()
            .unwrap_or(&inner_name)
            .to_string();
        let loc = format!("{location}!/{inner_name}");
        // A broken nested archive is not worth failing the outer one.
        let _ = scan_zip(
            std::io::Cursor::new(data),
            &short,
            &loc,
            ctx,
            limits,
            depth + 1,
            found,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn jar(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in files {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn reads_pom_properties_manifest_and_nested() {
        let inner = jar(&[(
            "META-INF/MANIFEST.MF",
            b"Manifest-Version: 1.0\nImplementation-Title: inner\nImplementation-Version: 2.0\n",
        )]);
        let outer = jar(&[
            (
                "META-INF/maven/org.example/app/pom.properties",
                b"groupId=org.example\nartifactId=app\nversion=1.0\n",
            ),
            ("WEB-INF/lib/inner-2.0.jar", &inner),
            ("WEB-INF/lib/log4j-core-2.14.1.jar", &jar(&[("x", b"y")])),
        ]);
        let ctx = PkgCtx {
            layer: "l",
            location: "/app/app.war".into(),
        };
        let mut found = Vec::new();
        scan_zip(
            std::io::Cursor::new(outer),
            "app.war",
            "/app/app.war",
            &ctx,
            &Limits::default(),
            0,
            &mut found,
        )
        .unwrap();
        let got: Vec<String> = found
            .iter()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect();
        assert_eq!(
            got,
            ["org.example:app@1.0", "inner@2.0", "log4j-core@2.14.1"]
        );
        assert_eq!(found[0].purl, "pkg:maven/org.example/app@1.0");
        assert_eq!(
            found[2].location,
            "/app/app.war!/WEB-INF/lib/log4j-core-2.14.1.jar"
        );
    }
}
