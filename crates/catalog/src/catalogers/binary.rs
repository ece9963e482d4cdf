//! Executables: Go module build information and cargo-auditable data.
//!
//! Go (1.18+) embeds its build information inline after the 16-byte aligned
//! magic `\xff Go buildinf:`, so it is found while streaming the file, with
//! no need to parse the container format. Go 1.13 to 1.17 put two pointers
//! there instead (to the version and module info strings); those are
//! resolved through the executable's segment table, from the spooled copy.
//! cargo-auditable puts
//! zlib-compressed JSON in a `.dep-v0` section; finding a section needs
//! random access, so the executable is spooled to the private scratch file
//! while streaming and the `object` crate reads its section table from
//! there.

use super::{ParseError, PkgCtx};
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
        let n = match crate::layer::read_some(entry, &mut buf)? {
            0 => break,
            n => n,
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
        let info = if is_pointer_format(&blob) {
            match spool.filter(|_| !spool_failed) {
                Some(f) => {
                    f.flush()?;
                    go_pointer_build_info(&blob, f)
                }
                None => None,
            }
        } else {
            go_build_info(&blob)
        };
        match info {
            Some((version, modinfo)) => return Ok(go_packages(&version, &modinfo, ctx)),
            None => out.skip(ctx.malformed("Go build info found but not readable")),
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
                Err(e) => out.skip(ctx.malformed(e.to_string())),
            },
            Ok(None) => {}
            Err(e) => out.skip(ctx.malformed(e.to_string())),
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

/// Whether a build info header is the Go 1.13–1.17 form (pointers to the
/// strings rather than the strings inline).
fn is_pointer_format(blob: &[u8]) -> bool {
    blob.len() >= 32 && blob[15] & 2 == 0
}

/// Go 1.13–1.17 build info: after the magic, the pointer size and flags
/// (bit 0: big-endian), two pointers to Go string headers (data pointer,
/// length) for the version and the module info. The addresses are virtual,
/// so they are mapped to file bytes through the executable's segments.
fn go_pointer_build_info(blob: &[u8], file: &std::fs::File) -> Option<(String, String)> {
    use object::{Object, ObjectSegment};
    let ptr_size = usize::from(blob[14]);
    if ptr_size != 4 && ptr_size != 8 {
        return None;
    }
    let big_endian = blob[15] & 1 != 0;
    let read_ptr = |b: &[u8]| -> Option<u64> {
        let b = b.get(..ptr_size)?;
        let mut v = 0u64;
        for i in 0..ptr_size {
            let byte = if big_endian {
                b[i]
            } else {
                b[ptr_size - 1 - i]
            };
            v = (v << 8) | u64::from(byte);
        }
        Some(v)
    };
    let cache = object::ReadCache::new(file);
    let obj = object::File::parse(&cache).ok()?;
    let read_at = |address: u64, size: u64| -> Option<&[u8]> {
        obj.segments()
            .find_map(|seg| seg.data_range(address, size).ok().flatten())
    };
    let read_string = |header_addr: u64| -> Option<String> {
        let header = read_at(header_addr, 2 * ptr_size as u64)?;
        let data = read_ptr(header)?;
        let len = read_ptr(&header[ptr_size..])?;
        if len > GO_CAPTURE as u64 {
            return None;
        }
        Some(String::from_utf8_lossy(read_at(data, len)?).into_owned())
    };
    let version = read_string(read_ptr(&blob[16..])?)?;
    let modinfo = read_string(read_ptr(&blob[16 + ptr_size..])?).unwrap_or_default();
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

fn auditable_packages(json: &[u8], ctx: &PkgCtx) -> Result<Vec<Package>, ParseError> {
    let info: AuditInfo = serde_json::from_slice(json).map_err(ParseError::Auditable)?;
    Ok(info
        .packages
        .into_iter()
        .filter(|p| p.source.as_deref() != Some("local") && p.kind.as_deref() != Some("build"))
        .map(|p| super::rust::crate_package(ctx, p.name, p.version))
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

    /// A minimal little-endian ELF64 executable: one PT_LOAD segment
    /// mapping the whole file at `BASE`, a Go 1.13–1.17 build info header
    /// at 0x100 pointing at string headers at 0x140 and 0x150.
    fn pointer_format_elf(version: &str, modinfo: &str) -> Vec<u8> {
        const BASE: u64 = 0x40_0000;
        let mut f = vec![0u8; 0x200];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // 64-bit
        f[5] = 1; // little-endian
        f[6] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes()); // executable
        f[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&BASE.to_le_bytes()); // entry
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // program headers
        f[52..54].copy_from_slice(&64u16.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        f[58..60].copy_from_slice(&64u16.to_le_bytes());
        let strings_at = f.len() as u64;
        f.extend_from_slice(version.as_bytes());
        f.extend_from_slice(modinfo.as_bytes());
        f.resize(f.len().next_multiple_of(16) + 64, 0);
        let len = f.len() as u64;
        let ph = 64;
        f[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        f[ph + 4..ph + 8].copy_from_slice(&5u32.to_le_bytes());
        f[ph + 16..ph + 24].copy_from_slice(&BASE.to_le_bytes());
        f[ph + 24..ph + 32].copy_from_slice(&BASE.to_le_bytes());
        f[ph + 32..ph + 40].copy_from_slice(&len.to_le_bytes());
        f[ph + 40..ph + 48].copy_from_slice(&len.to_le_bytes());
        f[ph + 48..ph + 56].copy_from_slice(&0x1000u64.to_le_bytes());
        f[0x100..0x10e].copy_from_slice(GO_MAGIC);
        f[0x10e] = 8;
        f[0x10f] = 0; // little-endian, pointer form
        f[0x110..0x118].copy_from_slice(&(BASE + 0x140).to_le_bytes());
        f[0x118..0x120].copy_from_slice(&(BASE + 0x150).to_le_bytes());
        let header = |f: &mut Vec<u8>, at: usize, data: u64, len: usize| {
            f[at..at + 8].copy_from_slice(&(BASE + data).to_le_bytes());
            f[at + 8..at + 16].copy_from_slice(&(len as u64).to_le_bytes());
        };
        header(&mut f, 0x140, strings_at, version.len());
        header(
            &mut f,
            0x150,
            strings_at + version.len() as u64,
            modinfo.len(),
        );
        f
    }

    #[test]
    fn reads_go_1_13_to_1_17_pointer_build_info() {
        let modinfo = format!(
            "{}path\texample.com/tool\nmod\texample.com/tool\t(devel)\t\ndep\tgolang.org/x/text\tv0.3.2\th1:x\n{}",
            "0123456789abcdef", "\n123456789abcdef"
        );
        let file = pointer_format_elf("go1.16.15", &modinfo);
        let mut spool = tempfile::tempfile().unwrap();
        let mut out = LayerInventory::new();
        let mut rest = &file[64..];
        let p = scan(&file[..64], &mut rest, Some(&mut spool), &ctx(), &mut out).unwrap();
        let got: Vec<String> = p
            .iter()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect();
        assert_eq!(got, ["stdlib@v1.16.15", "golang.org/x/text@v0.3.2"]);
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
        // Without the spooled copy the pointers cannot be followed: a
        // warning, no packages.
        let mut rest = &file[64..];
        let p = scan(&file[..64], &mut rest, None, &ctx(), &mut out).unwrap();
        assert!(p.is_empty());
        assert_eq!(out.warnings.len(), 1);
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
