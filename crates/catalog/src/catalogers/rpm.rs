//! RPM databases: SQLite `rpmdb.sqlite` and Berkeley DB `Packages` (hash
//! database). Both store the same thing, one RPM header blob per package,
//! which is parsed here by hand: no maintained crate reads bare header
//! blobs out of an rpmdb, and the format is small (an index of tagged
//! entries over a data store). NDB `Packages.db` is not read yet.

use super::PkgCtx;
use crate::LayerInventory;
use crate::purl;
use inventory::{Ecosystem, Package};
use std::io::{Read, Seek, SeekFrom};

const TAG_NAME: i32 = 1000;
const TAG_VERSION: i32 = 1001;
const TAG_RELEASE: i32 = 1002;
const TAG_EPOCH: i32 = 1003;
const TAG_ARCH: i32 = 1022;
const TAG_SOURCERPM: i32 = 1044;
const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_I18NSTRING: u32 = 9;

#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct RpmHeader {
    pub name: String,
    pub version: String,
    pub release: String,
    pub epoch: Option<i32>,
    pub arch: String,
    pub source_rpm: String,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parse a header blob: `il` and `dl` (big-endian u32), `il` index entries
/// of (tag, type, offset, count), then `dl` bytes of data.
pub(crate) fn parse_header(blob: &[u8]) -> Option<RpmHeader> {
    let il = be32(blob, 0)? as usize;
    let dl = be32(blob, 4)? as usize;
    if il == 0 || il > 0x10000 || dl > 256 << 20 {
        return None;
    }
    let data_start = 8 + il * 16;
    let data = blob.get(data_start..data_start + dl)?;
    let mut h = RpmHeader::default();
    for i in 0..il {
        let e = 8 + i * 16;
        let tag = be32(blob, e)? as i32;
        let ty = be32(blob, e + 4)?;
        let off = be32(blob, e + 8)? as usize;
        let string = || -> Option<String> {
            let s = data.get(off..)?;
            let end = s.iter().position(|&b| b == 0)?;
            Some(String::from_utf8_lossy(&s[..end]).into_owned())
        };
        let is_str = ty == TYPE_STRING || ty == TYPE_I18NSTRING;
        match tag {
            TAG_NAME if is_str => h.name = string()?,
            TAG_VERSION if is_str => h.version = string()?,
            TAG_RELEASE if is_str => h.release = string()?,
            TAG_ARCH if is_str => h.arch = string()?,
            TAG_SOURCERPM if is_str => h.source_rpm = string()?,
            TAG_EPOCH if ty == TYPE_INT32 => h.epoch = Some(be32(data, off)? as i32),
            _ => {}
        }
    }
    (!h.name.is_empty() && !h.version.is_empty()).then_some(h)
}

fn to_package(h: RpmHeader, ctx: &PkgCtx) -> Option<Package> {
    if h.name == "gpg-pubkey" {
        return None;
    }
    let vr = if h.release.is_empty() {
        h.version.clone()
    } else {
        format!("{}-{}", h.version, h.release)
    };
    let epoch = h.epoch.filter(|e| *e != 0);
    let version = match epoch {
        Some(e) => format!("{e}:{vr}"),
        None => vr.clone(),
    };
    let epoch_s = epoch.map(|e| e.to_string()).unwrap_or_default();
    let (src_name, src_version) = split_source_rpm(&h.source_rpm);
    let mut quals = vec![("arch", h.arch.as_str()), ("epoch", epoch_s.as_str())];
    if !h.source_rpm.is_empty() {
        quals.push(("upstream", h.source_rpm.as_str()));
    }
    let purl = purl::build("rpm", Some("redhat"), &h.name, &vr, &quals);
    let mut p = ctx.package(Ecosystem::Rpm, h.name.clone(), version, purl);
    p.source_name = Some(src_name.unwrap_or(h.name));
    p.source_version = src_version;
    Some(p)
}

/// `bash-5.1.8-6.el9.src.rpm` → (`bash`, `5.1.8-6.el9`).
fn split_source_rpm(s: &str) -> (Option<String>, Option<String>) {
    let stem = s
        .strip_suffix(".src.rpm")
        .or_else(|| s.strip_suffix(".nosrc.rpm"))
        .unwrap_or(s);
    let mut it = stem.rsplitn(3, '-');
    match (it.next(), it.next(), it.next()) {
        (Some(rel), Some(ver), Some(name)) if !name.is_empty() => {
            (Some(name.to_string()), Some(format!("{ver}-{rel}")))
        }
        _ => (None, None),
    }
}

pub(crate) fn read_sqlite(
    path: &std::path::Path,
    ctx: &PkgCtx,
    out: &mut LayerInventory,
) -> Vec<Package> {
    let run = || -> rusqlite::Result<Vec<Package>> {
        use rusqlite::OpenFlags;
        let uri = format!("file:{}?immutable=1", path.display());
        let conn = rusqlite::Connection::open_with_flags(
            uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let mut stmt = conn.prepare("SELECT blob FROM Packages")?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let blob: Vec<u8> = row.get(0)?;
            if let Some(p) = parse_header(&blob).and_then(|h| to_package(h, ctx)) {
                out.push(p);
            }
        }
        Ok(out)
    };
    run().unwrap_or_else(|e| {
        out.warnings.push(format!("{}: {e}", ctx.location));
        Vec::new()
    })
}

const HASH_MAGIC: u32 = 0x061561;
const P_OVERFLOW: u8 = 7;
const P_HASH_UNSORTED: u8 = 2;
const P_HASH: u8 = 13;
const H_KEYDATA: u8 = 1;
const H_OFFPAGE: u8 = 3;

/// Berkeley DB hash database: walk the hash pages, follow the off-page
/// (overflow) chains that hold the header blobs.
pub(crate) fn read_bdb(
    f: &mut std::fs::File,
    ctx: &PkgCtx,
    out: &mut LayerInventory,
) -> Vec<Package> {
    match bdb_blobs(f) {
        Ok(blobs) => blobs
            .iter()
            .filter_map(|b| parse_header(b))
            .filter_map(|h| to_package(h, ctx))
            .collect(),
        Err(e) => {
            out.warnings.push(format!("{}: {e}", ctx.location));
            Vec::new()
        }
    }
}

fn bdb_blobs(f: &mut std::fs::File) -> Result<Vec<Vec<u8>>, String> {
    let mut meta = [0u8; 72];
    f.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    f.read_exact(&mut meta)
        .map_err(|e| format!("not a Berkeley DB file: {e}"))?;
    let le = u32::from_le_bytes(meta[12..16].try_into().expect("4 bytes"));
    let little = if le == HASH_MAGIC {
        true
    } else if u32::from_be_bytes(meta[12..16].try_into().expect("4 bytes")) == HASH_MAGIC {
        false
    } else {
        return Err("not a Berkeley DB hash database".into());
    };
    let u32_at = |b: &[u8], at: usize| -> u32 {
        let a: [u8; 4] = b[at..at + 4].try_into().expect("4 bytes");
        if little {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let u16_at = |b: &[u8], at: usize| -> u16 {
        let a: [u8; 2] = b[at..at + 2].try_into().expect("2 bytes");
        if little {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        }
    };
    let page_size = u32_at(&meta, 20) as usize;
    if !(512..=65536).contains(&page_size) {
        return Err(format!("implausible page size {page_size}"));
    }
    let last_pgno = u32_at(&meta, 32);
    let mut read_page = |pgno: u32, buf: &mut Vec<u8>| -> Result<(), String> {
        buf.resize(page_size, 0);
        f.seek(SeekFrom::Start(pgno as u64 * page_size as u64))
            .map_err(|e| e.to_string())?;
        f.read_exact(buf).map_err(|e| format!("page {pgno}: {e}"))
    };
    let mut blobs = Vec::new();
    let mut page = Vec::new();
    let mut ovf = Vec::new();
    for pgno in 1..=last_pgno {
        read_page(pgno, &mut page)?;
        let ty = page[25];
        if ty != P_HASH && ty != P_HASH_UNSORTED {
            continue;
        }
        let entries = u16_at(&page, 20) as usize;
        // Items alternate key, data; only data items matter.
        for i in (1..entries).step_by(2) {
            let idx = 26 + i * 2;
            if idx + 2 > page.len() {
                break;
            }
            let off = u16_at(&page, idx) as usize;
            if off >= page.len() {
                continue;
            }
            match page[off] {
                H_OFFPAGE if off + 12 <= page.len() => {
                    let mut next = u32_at(&page, off + 4);
                    let total = u32_at(&page, off + 8) as usize;
                    if total > 256 << 20 {
                        continue;
                    }
                    let mut blob = Vec::with_capacity(total);
                    let mut hops = 0;
                    while next != 0 && blob.len() < total && hops <= last_pgno {
                        read_page(next, &mut ovf)?;
                        if ovf[25] != P_OVERFLOW {
                            break;
                        }
                        let len = (u16_at(&ovf, 22) as usize).min(page_size - 26);
                        blob.extend_from_slice(&ovf[26..26 + len]);
                        next = u32_at(&ovf, 16);
                        hops += 1;
                    }
                    blob.truncate(total);
                    blobs.push(blob);
                }
                H_KEYDATA => {
                    let end = if i == 0 {
                        page_size
                    } else {
                        u16_at(&page, 26 + (i - 1) * 2) as usize
                    };
                    if end > off + 1 && end <= page.len() {
                        blobs.push(page[off + 1..end].to_vec());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(blobs)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Build a header blob with the given string tags and an epoch.
    pub(crate) fn header_blob(tags: &[(i32, &str)], epoch: Option<i32>) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        let mut n = 0u32;
        for (tag, s) in tags {
            index.extend_from_slice(&tag.to_be_bytes());
            index.extend_from_slice(&TYPE_STRING.to_be_bytes());
            index.extend_from_slice(&(data.len() as u32).to_be_bytes());
            index.extend_from_slice(&1u32.to_be_bytes());
            data.extend_from_slice(s.as_bytes());
            data.push(0);
            n += 1;
        }
        if let Some(e) = epoch {
            while data.len() % 4 != 0 {
                data.push(0);
            }
            index.extend_from_slice(&TAG_EPOCH.to_be_bytes());
            index.extend_from_slice(&TYPE_INT32.to_be_bytes());
            index.extend_from_slice(&(data.len() as u32).to_be_bytes());
            index.extend_from_slice(&1u32.to_be_bytes());
            data.extend_from_slice(&e.to_be_bytes());
            n += 1;
        }
        let mut blob = n.to_be_bytes().to_vec();
        blob.extend_from_slice(&(data.len() as u32).to_be_bytes());
        blob.extend(index);
        blob.extend(data);
        blob
    }

    #[test]
    fn parses_header_blob_and_sqlite() {
        let blob = header_blob(
            &[
                (TAG_NAME, "openssl-libs"),
                (TAG_VERSION, "3.0.7"),
                (TAG_RELEASE, "25.el9_3"),
                (TAG_ARCH, "x86_64"),
                (TAG_SOURCERPM, "openssl-3.0.7-25.el9_3.src.rpm"),
            ],
            Some(1),
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rpmdb.sqlite");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)",
        )
        .unwrap();
        conn.execute("INSERT INTO Packages (blob) VALUES (?1)", [&blob])
            .unwrap();
        drop(conn);
        let ctx = PkgCtx {
            layer: "l",
            location: "/var/lib/rpm/rpmdb.sqlite".into(),
        };
        let mut out = LayerInventory::new();
        let p = read_sqlite(&path, &ctx, &mut out);
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].version, "1:3.0.7-25.el9_3");
        assert_eq!(p[0].source_name.as_deref(), Some("openssl"));
        assert_eq!(p[0].source_version.as_deref(), Some("3.0.7-25.el9_3"));
        assert_eq!(
            p[0].purl,
            "pkg:rpm/redhat/openssl-libs@3.0.7-25.el9_3?arch=x86_64&epoch=1&upstream=openssl-3.0.7-25.el9_3.src.rpm"
        );
        assert!(parse_header(&blob[..20]).is_none());
    }
}
