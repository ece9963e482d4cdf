//! RPM databases: SQLite `rpmdb.sqlite`, Berkeley DB `Packages` (hash
//! database) and NDB `Packages.db` (SUSE). All three store the same thing,
//! one RPM header blob per package, which is parsed here by hand: no
//! maintained crate reads bare header blobs out of an rpmdb, and the format
//! is small (an index of tagged entries over a data store).

use super::PkgCtx;
use crate::LayerInventory;
use crate::purl;
use inventory::{Ecosystem, Package};
use std::io::{self, Read, Seek, SeekFrom};

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
        out.skip(ctx.malformed(e.to_string()));
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
    packages_of(bdb_blobs(f).map(|blobs| (blobs, Vec::new())), ctx, out)
}

/// The packages of a Berkeley DB or NDB database's header blobs; the
/// database unreadable, or a package's blob damaged, is named as skipped.
fn packages_of(
    read: Result<(Vec<Vec<u8>>, Vec<String>), DbError>,
    ctx: &PkgCtx,
    out: &mut LayerInventory,
) -> Vec<Package> {
    match read {
        Ok((blobs, bad)) => {
            for e in bad {
                out.skip(ctx.malformed(e));
            }
            blobs
                .iter()
                .filter_map(|b| parse_header(b))
                .filter_map(|h| to_package(h, ctx))
                .collect()
        }
        Err(e) => {
            out.skip(ctx.malformed(e.to_string()));
            Vec::new()
        }
    }
}

/// Why a Berkeley DB or NDB database could not be read at all.
#[derive(Debug, thiserror::Error)]
enum DbError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not a Berkeley DB file: {0}")]
    NotBdbFile(io::Error),
    #[error("not a Berkeley DB hash database")]
    NotBdbHash,
    #[error("implausible page size {0}")]
    PageSize(usize),
    #[error("page {0}: {1}")]
    Page(u32, io::Error),
    #[error("not an NDB database: {0}")]
    NotNdbFile(io::Error),
    #[error("not an NDB database (no RpmP magic)")]
    NoNdbMagic,
    #[error("unsupported NDB format version {0}")]
    NdbVersion(u32),
    #[error("{slot_pages} slot pages do not fit in {file_len} bytes")]
    SlotPages { slot_pages: u64, file_len: u64 },
    #[error("corrupt slot page (no Slot magic)")]
    NoSlotMagic,
}

/// Integers in the byte order of the database's writer (its magic tells
/// which).
#[derive(Clone, Copy)]
struct ByteOrder {
    little: bool,
}

impl ByteOrder {
    fn u32_at(self, b: &[u8], at: usize) -> u32 {
        let a: [u8; 4] = b[at..at + 4].try_into().expect("4 bytes");
        if self.little {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    }

    fn u16_at(self, b: &[u8], at: usize) -> u16 {
        let a: [u8; 2] = b[at..at + 2].try_into().expect("2 bytes");
        if self.little {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        }
    }

    /// Whether `b` starts with the four-byte magic `m` as this order
    /// writes it (`m` spelled little-endian).
    fn magic(self, b: &[u8], m: &[u8; 4]) -> bool {
        let mut want = *m;
        if !self.little {
            want.reverse();
        }
        b[..4] == want
    }
}

fn bdb_blobs(f: &mut std::fs::File) -> Result<Vec<Vec<u8>>, DbError> {
    let mut meta = [0u8; 72];
    f.seek(SeekFrom::Start(0))?;
    f.read_exact(&mut meta).map_err(DbError::NotBdbFile)?;
    let le = u32::from_le_bytes(meta[12..16].try_into().expect("4 bytes"));
    let little = if le == HASH_MAGIC {
        true
    } else if u32::from_be_bytes(meta[12..16].try_into().expect("4 bytes")) == HASH_MAGIC {
        false
    } else {
        return Err(DbError::NotBdbHash);
    };
    let order = ByteOrder { little };
    let u32_at = |b: &[u8], at: usize| order.u32_at(b, at);
    let u16_at = |b: &[u8], at: usize| order.u16_at(b, at);
    let page_size = u32_at(&meta, 20) as usize;
    if !(512..=65536).contains(&page_size) {
        return Err(DbError::PageSize(page_size));
    }
    let last_pgno = u32_at(&meta, 32);
    let mut read_page = |pgno: u32, buf: &mut Vec<u8>| -> Result<(), DbError> {
        buf.resize(page_size, 0);
        f.seek(SeekFrom::Start(pgno as u64 * page_size as u64))?;
        f.read_exact(buf).map_err(|e| DbError::Page(pgno, e))
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

/// NDB page size: the slot area is a whole number of these.
const NDB_PAGE: u64 = 4096;
/// NDB blob offsets and sizes count 16-byte blocks.
const NDB_BLOCK: u64 = 16;
const NDB_SLOT: usize = 16;
/// Blob header (magic, package index, generation, length) and trailer
/// (Adler-32, length, magic).
const NDB_BLOB_HEAD: usize = 16;
const NDB_BLOB_TAIL: usize = 12;

/// NDB package database (`Packages.db`), as written by rpm 4.16 and later:
///
/// - the file starts with slot pages of 4096 bytes. Their first 32 bytes
///   are the database header: magic `RpmP`, format version (0), generation,
///   the number of slot pages, the next package index, zeros. Every further
///   16-byte record is a slot: magic `Slot`, package index (0 for a
///   free slot), offset and length of the package's blob, both in 16-byte
///   blocks;
/// - each blob is a header (magic `BlbS`, package index, generation, data
///   length), the RPM header blob, zero padding, and a trailer filling the
///   last 12 bytes of its blocks (Adler-32 of everything before the
///   trailer, data length, magic `BlbE`).
///
/// Integers are in the writer's byte order (little-endian on x86); the
/// magic tells which. Worked out from databases written by rpm itself
/// (`tests/fixtures/make-rpm-ndb.sh`).
pub(crate) fn read_ndb(
    f: &mut std::fs::File,
    ctx: &PkgCtx,
    out: &mut LayerInventory,
) -> Vec<Package> {
    packages_of(ndb_blobs(f), ctx, out)
}

fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 bytes is the most that can be summed before `b` may overflow.
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// The header blobs of an NDB database, with a message for each slot whose
/// blob is damaged (those packages are skipped, the others still read).
fn ndb_blobs<R: Read + Seek>(f: &mut R) -> Result<(Vec<Vec<u8>>, Vec<String>), DbError> {
    let file_len = f.seek(SeekFrom::End(0))?;
    let mut head = [0u8; NDB_SLOT];
    f.seek(SeekFrom::Start(0))?;
    f.read_exact(&mut head).map_err(DbError::NotNdbFile)?;
    let little = match &head[0..4] {
        b"RpmP" => true,
        b"PmpR" => false,
        _ => return Err(DbError::NoNdbMagic),
    };
    let order = ByteOrder { little };
    let u32_at = |b: &[u8], at: usize| order.u32_at(b, at);
    let magic = |b: &[u8], m: &[u8; 4]| order.magic(b, m);
    let version = u32_at(&head, 4);
    if version != 0 {
        return Err(DbError::NdbVersion(version));
    }
    let slot_pages = u64::from(u32_at(&head, 12));
    if slot_pages == 0 || slot_pages * NDB_PAGE > file_len {
        return Err(DbError::SlotPages {
            slot_pages,
            file_len,
        });
    }
    let slot_area = slot_pages * NDB_PAGE;
    let mut slots = vec![0u8; slot_area as usize];
    f.seek(SeekFrom::Start(0))?;
    f.read_exact(&mut slots)?;

    let mut blobs = Vec::new();
    let mut bad = Vec::new();
    let mut buf = Vec::new();
    // The first two records are the database header.
    for slot in slots.chunks_exact(NDB_SLOT).skip(2) {
        if !magic(slot, b"Slot") {
            return Err(DbError::NoSlotMagic);
        }
        let pkgidx = u32_at(slot, 4);
        if pkgidx == 0 {
            continue;
        }
        let off = u64::from(u32_at(slot, 8)) * NDB_BLOCK;
        let len = u64::from(u32_at(slot, 12)) * NDB_BLOCK;
        let min = (NDB_BLOB_HEAD + NDB_BLOB_TAIL) as u64;
        if off < slot_area || len < min || off + len > file_len {
            bad.push(format!("package {pkgidx}: blob outside the file"));
            continue;
        }
        buf.resize(len as usize, 0);
        f.seek(SeekFrom::Start(off))?;
        f.read_exact(&mut buf)?;
        let dlen = u32_at(&buf, 12) as usize;
        let tail = &buf[buf.len() - NDB_BLOB_TAIL..];
        let ok = magic(&buf, b"BlbS")
            && u32_at(&buf, 4) == pkgidx
            && NDB_BLOB_HEAD + dlen + NDB_BLOB_TAIL <= buf.len()
            && magic(&tail[8..], b"BlbE")
            && u32_at(tail, 4) as usize == dlen;
        if !ok {
            bad.push(format!("package {pkgidx}: corrupt blob"));
            continue;
        }
        if adler32(&buf[..buf.len() - NDB_BLOB_TAIL]) != u32_at(tail, 0) {
            bad.push(format!("package {pkgidx}: blob checksum mismatch"));
            continue;
        }
        blobs.push(buf[NDB_BLOB_HEAD..NDB_BLOB_HEAD + dlen].to_vec());
    }
    Ok((blobs, bad))
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

    const NDB: &[u8] = include_bytes!("../../tests/fixtures/rpm-ndb-Packages.db");

    fn ndb_names(db: &[u8]) -> (Vec<String>, Vec<String>) {
        let (blobs, bad) = ndb_blobs(&mut std::io::Cursor::new(db)).unwrap();
        let mut names: Vec<String> = blobs
            .iter()
            .map(|b| {
                let h = parse_header(b).unwrap();
                format!("{}-{}-{}", h.name, h.version, h.release)
            })
            .collect();
        names.sort();
        (names, bad)
    }

    #[test]
    fn adler32_known_values() {
        assert_eq!(adler32(b""), 1);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        // Long enough to need the deferred modulo.
        let long = vec![0xffu8; 100_000];
        let (mut a, mut b) = (1u64, 0u64);
        for &x in &long {
            a = (a + u64::from(x)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!(adler32(&long), ((b << 16) | a) as u32);
    }

    #[test]
    fn ndb_lists_live_slots_only() {
        let (names, bad) = ndb_names(NDB);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(
            names,
            [
                "bigheader-0.9-7",
                "tiny-1.0-1",
                "upgraded-2.0-1",
                "withepoch-3.2.1-4.suse"
            ]
        );
    }

    /// Offset of the blob whose slot says package `pkgidx`.
    fn blob_offset(db: &[u8], pkgidx: u32) -> usize {
        db[32..4096]
            .chunks_exact(16)
            .find(|s| u32::from_le_bytes(s[4..8].try_into().unwrap()) == pkgidx)
            .map(|s| u32::from_le_bytes(s[8..12].try_into().unwrap()) as usize * 16)
            .unwrap()
    }

    #[test]
    fn ndb_damaged_blob_is_skipped_with_a_message() {
        let mut db = NDB.to_vec();
        let off = blob_offset(&db, 1);
        db[off + 40] ^= 1;
        let (names, bad) = ndb_names(&db);
        assert_eq!(names.len(), 3);
        assert!(!names.iter().any(|n| n.starts_with("tiny")));
        assert_eq!(bad, ["package 1: blob checksum mismatch"]);

        // A slot pointing past the end of the file.
        let mut db = NDB.to_vec();
        db[32 + 8..32 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        let (names, bad) = ndb_names(&db);
        assert_eq!(names.len(), 3);
        assert_eq!(bad.len(), 1, "{bad:?}");

        // Wrong package index in the blob header.
        let mut db = NDB.to_vec();
        let off = blob_offset(&db, 2);
        db[off + 4] = 9;
        let (_, bad) = ndb_names(&db);
        assert_eq!(bad, ["package 2: corrupt blob"]);
    }

    #[test]
    fn ndb_rejects_other_files() {
        let mut c = std::io::Cursor::new(vec![0u8; 8192]);
        assert!(ndb_blobs(&mut c).unwrap_err().to_string().contains("RpmP"));
        let mut short = std::io::Cursor::new(NDB[..4096].to_vec());
        // Slots point past the end of a truncated file: reported, no panic.
        let (blobs, bad) = ndb_blobs(&mut short).unwrap();
        assert!(blobs.is_empty());
        assert_eq!(bad.len(), 4);
        let mut db = NDB.to_vec();
        db[12..16].copy_from_slice(&1000u32.to_le_bytes());
        assert!(ndb_blobs(&mut std::io::Cursor::new(db)).is_err());
        let mut db = NDB.to_vec();
        db[4] = 1;
        assert!(
            ndb_blobs(&mut std::io::Cursor::new(db))
                .unwrap_err()
                .to_string()
                .contains("version 1")
        );
    }

    /// The same database as a big-endian writer (s390x) would lay it out,
    /// assuming it writes its native order as the x86 one does: every
    /// 32-bit field of the container swapped, the header blobs (always
    /// big-endian) untouched. Not checked against a real big-endian file.
    #[test]
    fn ndb_big_endian_byte_order() {
        let mut db = NDB.to_vec();
        let swap = |db: &mut [u8], at: usize| db[at..at + 4].reverse();
        for f in 0..5 {
            swap(&mut db, f * 4);
        }
        let mut blobs = Vec::new();
        for slot in (32..4096).step_by(16) {
            let live = db[slot + 4..slot + 8] != [0; 4];
            if live {
                let off = u32::from_le_bytes(db[slot + 8..slot + 12].try_into().unwrap());
                let cnt = u32::from_le_bytes(db[slot + 12..slot + 16].try_into().unwrap());
                blobs.push((off as usize * 16, cnt as usize * 16));
            }
            for f in 0..4 {
                swap(&mut db, slot + f * 4);
            }
        }
        assert_eq!(blobs.len(), 4);
        for (off, len) in blobs {
            for f in 0..4 {
                swap(&mut db, off + f * 4);
            }
            for f in 1..3 {
                swap(&mut db, off + len - 12 + f * 4);
            }
            // The writer checksums the bytes it wrote.
            let sum = adler32(&db[off..off + len - 12]);
            db[off + len - 12..off + len - 8].copy_from_slice(&sum.to_be_bytes());
        }
        assert_eq!(&db[..4], b"PmpR");
        assert_eq!(ndb_names(&db), ndb_names(NDB));
    }
}
