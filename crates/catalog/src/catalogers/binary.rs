//! Executables: Go module build information and cargo-auditable data.
//!
//! Go (1.18+) embeds its build information inline after the 16-byte aligned
//! magic `\xff Go buildinf:`, so it is found while streaming the file, with
//! no need to parse the container format. cargo-auditable puts
//! zlib-compressed JSON in a `.dep-v0` section; finding a section needs
//! random access, so the executable is spooled to the private scratch file
//! while streaming and the `object` crate reads its section table from
//! there.

use super::PkgCtx;
use crate::LayerInventory;
use crate::purl;
use inventory::{Ecosystem, Package};
use std::io::{self, Read, Write};

const GO_MAGIC: &[u8] = b"\xff Go buildinf:";
/// How much of the Go build info blob is kept once the magic is seen.
const GO_CAPTURE: usize = 1 << 20;
/// Largest decompressed cargo-auditable document accepted.
const AUDIT_MAX: u64 = 16 << 20;

/// ELF, PE, Mach-O (thin and fat).
pub(crate) fn is_executable_format(head: &[u8]) -> bool {
    head.starts_with(b"\x7fELF")
        || (head.starts_with(b"MZ") && head.len() >= 64)
        || matches!(
            head.get(..4),
            Some(
                [0xfe, 0xed, 0xfa, 0xce | 0xcf]
                    | [0xce | 0xcf, 0xfa, 0xed, 0xfe]
                    | [0xca, 0xfe, 0xba, 0xbe]
            )
        )
}

/// Stream the rest of an executable (`head` already read), looking for Go
/// build info, spooling into `spool` when given for the section lookup.
pub(crate) fn scan(
    head: &[u8],
    entry: &mut impl Read,
    mut spool: Option<&mut std::fs::File>,
    ctx: &PkgCtx,
    out: &mut LayerInventory,
) -> io::Result<Vec<Package>> {
    let finder = memchr::memmem::Finder::new(GO_MAGIC);
    let mut spool_failed = false;
    let mut write = |spool: &mut Option<&mut std::fs::File>, data: &[u8]| {
        if let Some(f) = spool.as_mut()
            && !spool_failed
            && f.write_all(data).is_err()
        {
            spool_failed = true;
        }
    };
    write(&mut spool, head);
    // `window` holds the tail of the previous chunk so a magic split across
    // chunks is still found; `window_pos` is its offset in the file.
    let mut window: Vec<u8> = head.to_vec();
    let mut window_pos: u64 = 0;
    let mut go_blob: Option<Vec<u8>> = None;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..n];
        write(&mut spool, chunk);
        if let Some(blob) = &mut go_blob {
            if blob.len() < GO_CAPTURE {
                let take = (GO_CAPTURE - blob.len()).min(n);
                blob.extend_from_slice(&chunk[..take]);
            }
            continue;
        }
        window.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(i) = finder.find(&window[start..]) {
            let at = start + i;
            if (window_pos + at as u64).is_multiple_of(16) {
                go_blob = Some(window[at..].to_vec());
                break;
            }
            start = at + 1;
        }
        if go_blob.is_none() {
            let keep = GO_MAGIC.len() - 1;
            if window.len() > keep {
                let drop = window.len() - keep;
                window.drain(..drop);
                window_pos += drop as u64;
            }
        }
    }
    if go_blob.is_none()
        && let Some(at) = finder.find(&window)
        && (window_pos + at as u64).is_multiple_of(16)
    {
        go_blob = Some(window[at..].to_vec());
    }
    if let Some(blob) = go_blob {
        match go_build_info(&blob) {
            Some((version, modinfo)) => return Ok(go_packages(&version, &modinfo, ctx)),
            None => out.warnings.push(format!(
                "{}: Go build info in the pre-1.18 format is not read",
                ctx.location
            )),
        }
        return Ok(Vec::new());
    }
    if let Some(f) = spool
        && !spool_failed
    {
        f.flush()?;
        match auditable_json(f) {
            Ok(Some(json)) => match auditable_packages(&json, ctx) {
                Ok(p) => return Ok(p),
                Err(e) => out.warnings.push(format!("{}: {e}", ctx.location)),
            },
            Ok(None) => {}
            Err(e) => out.warnings.push(format!("{}: {e}", ctx.location)),
        }
    }
    Ok(Vec::new())
}

fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut x = 0u64;
    for (i, &c) in b.iter().enumerate().take(10) {
        x |= u64::from(c & 0x7f) << (7 * i);
        if c < 0x80 {
            return Some((x, i + 1));
        }
    }
    None
}

/// The Go version and module info from an inline build info blob.
fn go_build_info(blob: &[u8]) -> Option<(String, String)> {
    if blob.len() < 32 || blob[15] & 2 == 0 {
        return None;
    }
    let mut p = &blob[32..];
    let mut next = || {
        let (len, n) = uvarint(p)?;
        let len = usize::try_from(len).ok()?;
        let s = p.get(n..n.checked_add(len)?)?;
        p = &p[n + len..];
        Some(String::from_utf8_lossy(s).into_owned())
    };
    let version = next()?;
    let modinfo = next()?;
    Some((version, modinfo))
}

fn go_packages(version: &str, modinfo: &str, ctx: &PkgCtx) -> Vec<Package> {
    let mut out = Vec::new();
    let go = version.split_whitespace().next().unwrap_or("");
    if let Some(v) = go.strip_prefix("go") {
        let v = format!("v{v}");
        out.push(ctx.package(
            Ecosystem::Go,
            "stdlib",
            v.clone(),
            purl::golang("stdlib", &v),
        ));
    }
    // The module info is framed by 16 bytes of sentinel on each side.
    let mi = modinfo.as_bytes();
    let mi = if mi.len() >= 33 && mi[mi.len() - 17] == b'\n' {
        &modinfo[16..modinfo.len() - 16]
    } else {
        modinfo
    };
    for line in mi.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["mod", path, version, ..] | ["dep", path, version, ..]
                if !version.is_empty() && *version != "(devel)" =>
            {
                out.push(ctx.package(Ecosystem::Go, *path, *version, purl::golang(path, version)));
            }
            ["=>", path, version, ..] if !version.is_empty() => {
                if let Some(last) = out.last_mut()
                    && last.name != "stdlib"
                {
                    *last =
                        ctx.package(Ecosystem::Go, *path, *version, purl::golang(path, version));
                }
            }
            _ => {}
        }
    }
    out
}

/// The decompressed `.dep-v0` section, if the executable has one.
fn auditable_json(f: &std::fs::File) -> io::Result<Option<Vec<u8>>> {
    use object::{Object, ObjectSection};
    let cache = object::ReadCache::new(f);
    let Ok(obj) = object::File::parse(&cache) else {
        return Ok(None);
    };
    let Some(section) = obj.section_by_name(".dep-v0") else {
        return Ok(None);
    };
    let data = section
        .data()
        .map_err(|e| io::Error::other(format!(".dep-v0 section: {e}")))?;
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .take(AUDIT_MAX)
        .read_to_end(&mut json)
        .map_err(|e| io::Error::other(format!(".dep-v0 section: {e}")))?;
    Ok(Some(json))
}

#[derive(serde::Deserialize)]
struct AuditInfo {
    packages: Vec<AuditPackage>,
}

#[derive(serde::Deserialize)]
struct AuditPackage {
    name: String,
    version: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    kind: Option<String>,
}

fn auditable_packages(json: &[u8], ctx: &PkgCtx) -> Result<Vec<Package>, String> {
    let info: AuditInfo =
        serde_json::from_slice(json).map_err(|e| format!("cargo-auditable data: {e}"))?;
    Ok(info
        .packages
        .into_iter()
        .filter(|p| p.source.as_deref() != Some("local") && p.kind.as_deref() != Some("build"))
        .map(|p| {
            let purl = purl::cargo(&p.name, &p.version);
            ctx.package(Ecosystem::Cargo, p.name, p.version, purl)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> PkgCtx<'static> {
        PkgCtx {
            layer: "l",
            location: "/usr/local/bin/app".into(),
        }
    }

    fn varstr(s: &str) -> Vec<u8> {
        let mut v = Vec::new();
        let mut n = s.len();
        while n >= 0x80 {
            v.push((n as u8) | 0x80);
            n >>= 7;
        }
        v.push(n as u8);
        v.extend_from_slice(s.as_bytes());
        v
    }

    #[test]
    fn finds_inline_go_build_info_across_chunks() {
        let modinfo = format!(
            "{}path\texample.com/app\nmod\texample.com/app\t(devel)\t\ndep\tgithub.com/pkg/errors\tv0.9.1\th1:x\ndep\tgolang.org/x/net\tv0.1.0\th1:y\n=>\tgolang.org/x/net\tv0.2.0\th1:z\n{}",
            "0123456789abcdef", "\n123456789abcdef"
        );
        let mut blob = GO_MAGIC.to_vec();
        blob.extend_from_slice(&[8, 2]);
        blob.resize(32, 0);
        blob.extend(varstr("go1.21.3"));
        blob.extend(varstr(&modinfo));
        let mut file = b"\x7fELF".to_vec();
        file.resize((64 << 10) - 16, 0); // magic straddles the first chunk
        file.extend_from_slice(&blob);
        file.resize(file.len() + 5000, 0);
        let mut out = LayerInventory::new();
        let mut rest = &file[64..];
        let p = scan(&file[..64], &mut rest, None, &ctx(), &mut out).unwrap();
        let got: Vec<String> = p
            .iter()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect();
        assert_eq!(
            got,
            [
                "stdlib@v1.21.3",
                "github.com/pkg/errors@v0.9.1",
                "golang.org/x/net@v0.2.0"
            ]
        );
        assert_eq!(p[1].purl, "pkg:golang/github.com/pkg/errors@v0.9.1");
    }

    #[test]
    fn misaligned_magic_is_ignored() {
        let mut file = b"\x7fELF".to_vec();
        file.resize(100, 0);
        file.extend_from_slice(GO_MAGIC);
        file.resize(400, 0);
        let mut out = LayerInventory::new();
        let mut rest = &file[64..];
        assert!(
            scan(&file[..64], &mut rest, None, &ctx(), &mut out)
                .unwrap()
                .is_empty()
        );
    }
}
