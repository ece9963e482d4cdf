//! A cap on tar extension headers, enforced below the tar parser.
//!
//! The `tar` crate reads a PAX extended header or a GNU long name/link
//! entry into memory whole, whatever size its header claims, before it
//! hands out the entry it describes. A layer could therefore make the
//! catalog allocate gigabytes with one entry. [`TarGuard`] sits between
//! the decompressed stream and the parser, follows the archive's block
//! structure as the bytes go by (headers, data, padding, the PAX `size`
//! override, GNU sparse extension blocks) and fails the read when an
//! extension entry is larger than its cap.
//!
//! Written by hand because no tar reader offers such a cap. If the guard
//! ever loses track of the structure (a block that is not a valid header
//! where one should be), it stops checking rather than guess: the parser
//! then meets the same block and reports the archive as corrupt.

use std::fmt;
use std::io::{self, Read};

const BLOCK: u64 = 512;

/// Why the guard stopped the stream.
#[derive(Debug)]
pub(crate) struct HeaderTooLarge {
    pub(crate) kind: &'static str,
    pub(crate) size: u64,
    pub(crate) max: u64,
}

impl fmt::Display for HeaderTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a {} of {} bytes exceeds the limit of {} bytes",
            self.kind, self.size, self.max
        )
    }
}
impl std::error::Error for HeaderTooLarge {}

pub(crate) struct TarGuard<R> {
    inner: R,
    max: u64,
    /// Bytes of the current entry's data and padding still to pass.
    skip: u64,
    /// The header block being assembled.
    header: [u8; BLOCK as usize],
    filled: usize,
    /// GNU sparse extension blocks follow the current header; the data
    /// (`after_extensions` bytes) comes after them.
    in_sparse_extensions: bool,
    after_extensions: u64,
    /// The body of a PAX header being collected (at most `max` bytes), and
    /// how many of its bytes are still to come.
    pax: Option<Vec<u8>>,
    pax_left: u64,
    /// The `size` a PAX header set for the next entry.
    size_override: Option<u64>,
    disarmed: bool,
}

impl<R: Read> TarGuard<R> {
    pub(crate) fn new(inner: R, max: u64) -> TarGuard<R> {
        TarGuard {
            inner,
            max,
            skip: 0,
            header: [0; BLOCK as usize],
            filled: 0,
            in_sparse_extensions: false,
            after_extensions: 0,
            pax: None,
            pax_left: 0,
            size_override: None,
            disarmed: false,
        }
    }

    fn observe(&mut self, mut bytes: &[u8]) -> Result<(), HeaderTooLarge> {
        while !bytes.is_empty() && !self.disarmed {
            if self.skip > 0 {
                let n = usize::try_from(self.skip).map_or(bytes.len(), |s| s.min(bytes.len()));
                if let Some(pax) = &mut self.pax {
                    let take = usize::try_from(self.pax_left).map_or(n, |l| l.min(n));
                    pax.extend_from_slice(&bytes[..take]);
                    self.pax_left -= take as u64;
                    if self.pax_left == 0 {
                        let body = self.pax.take().unwrap_or_default();
                        self.size_override = pax_size(&body);
                    }
                }
                self.skip -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let n = (BLOCK as usize - self.filled).min(bytes.len());
            self.header[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            bytes = &bytes[n..];
            if self.filled == BLOCK as usize {
                self.filled = 0;
                self.block()?;
            }
        }
        Ok(())
    }

    /// A whole block where a header (or a sparse extension block) belongs.
    fn block(&mut self) -> Result<(), HeaderTooLarge> {
        let h = &self.header;
        if self.in_sparse_extensions {
            // Byte 504 of a sparse extension block: more blocks follow.
            if h[504] == 0 {
                self.in_sparse_extensions = false;
                self.skip = self.after_extensions;
            }
            return Ok(());
        }
        if h.iter().all(|&b| b == 0) {
            return Ok(()); // end-of-archive marker
        }
        let (Some(size), true) = (parse_number(&h[124..136]), checksum_ok(h)) else {
            self.disarmed = true;
            return Ok(());
        };
        let kind = match h[156] {
            b'x' => Some("PAX extended header"),
            b'g' => Some("PAX global header"),
            b'L' => Some("GNU long name"),
            b'K' => Some("GNU long link name"),
            _ => None,
        };
        if let Some(kind) = kind {
            if size > self.max {
                return Err(HeaderTooLarge {
                    kind,
                    size,
                    max: self.max,
                });
            }
            if h[156] == b'x' && size > 0 {
                self.pax = Some(Vec::with_capacity(size as usize));
                self.pax_left = size;
            }
            self.skip = size.next_multiple_of(BLOCK);
            return Ok(());
        }
        // An entry: a PAX `size` record overrides its header's size.
        let size = self.size_override.take().unwrap_or(size);
        let padded = size.next_multiple_of(BLOCK);
        if h[156] == b'S' && h[482] != 0 {
            self.in_sparse_extensions = true;
            self.after_extensions = padded;
        } else {
            self.skip = padded;
        }
        Ok(())
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n]).map_err(io::Error::other)?;
        Ok(n)
    }
}

/// A tar number field: octal text, or GNU base-256 (high bit set).
fn parse_number(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let text = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|&b| b.is_ascii_digit())
        .collect::<Vec<u8>>();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&text).ok()?, 8).ok()
}

/// The header checksum: the byte sum with the checksum field as spaces.
fn checksum_ok(h: &[u8; BLOCK as usize]) -> bool {
    let Some(stored) = parse_number(&h[148..156]) else {
        return false;
    };
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    sum == stored
}

/// The `size` record of a PAX header body (`"<len> size=<n>\n"` records).
fn pax_size(body: &[u8]) -> Option<u64> {
    let mut rest = body;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        if len <= space || len > rest.len() {
            return None;
        }
        let record = &rest[space + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(v) = record.strip_prefix(b"size=") {
            return std::str::from_utf8(v).ok()?.parse().ok();
        }
        rest = &rest[len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, kind: u8, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_cksum();
        h
    }

    fn pax_record(key: &str, value: &str) -> Vec<u8> {
        // The length counts itself.
        let tail = format!(" {key}={value}\n");
        let mut len = tail.len() + 1;
        while format!("{len}{tail}").len() != len {
            len += 1;
        }
        format!("{len}{tail}").into_bytes()
    }

    fn read_all(data: &[u8], max: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        // Small reads, so blocks arrive split across calls.
        let mut guard = TarGuard::new(io::BufReader::with_capacity(7, data), max);
        let mut buf = [0u8; 13];
        loop {
            let n = guard.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn oversized_pax_header_is_refused() {
        let mut b = tar::Builder::new(Vec::new());
        b.append(&header("a", b'0', 3), &b"abc"[..]).unwrap();
        let body = pax_record("comment", &"x".repeat(5000));
        b.append(&header("PaxHeaders/b", b'x', body.len() as u64), &body[..])
            .unwrap();
        b.append(&header("b", b'0', 1), &b"b"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let err = read_all(&tar, 4096).unwrap_err();
        let inner = err.get_ref().unwrap().downcast_ref::<HeaderTooLarge>();
        assert_eq!(inner.unwrap().size, body.len() as u64);
        // Under the cap the same archive streams through unchanged.
        assert_eq!(read_all(&tar, 1 << 20).unwrap(), tar);
    }

    #[test]
    fn oversized_gnu_long_name_is_refused() {
        let mut b = tar::Builder::new(Vec::new());
        let name = vec![b'n'; 3000];
        b.append(&header("././@LongLink", b'L', name.len() as u64), &name[..])
            .unwrap();
        let tar = b.into_inner().unwrap();
        assert!(read_all(&tar, 1024).is_err());
        assert!(read_all(&tar, 4096).is_ok());
    }

    #[test]
    fn pax_size_override_keeps_the_guard_in_step() {
        // The file's header says 0 bytes; the PAX record says 600. If the
        // guard believed the header it would take file data for the next
        // header; instead it must find the long-name entry after the data.
        let mut b = tar::Builder::new(Vec::new());
        let body = pax_record("size", "600");
        b.append(&header("PaxHeaders/f", b'x', body.len() as u64), &body[..])
            .unwrap();
        let mut tar = b.into_inner().unwrap();
        let mut file = header("f", b'0', 0);
        file.set_cksum();
        tar.extend_from_slice(file.as_bytes());
        // 600 bytes of data that would pass for a huge long-name header if
        // read as one: a valid `L` header of 1 GiB at the start.
        let fake = header("././@LongLink", b'L', 1 << 30);
        let mut data = fake.as_bytes().to_vec();
        data.resize(600, 0);
        data.resize(1024, 0);
        tar.extend_from_slice(&data);
        let name = [b'n'; 100];
        let mut b = tar::Builder::new(Vec::new());
        b.append(&header("././@LongLink", b'L', name.len() as u64), &name[..])
            .unwrap();
        tar.extend_from_slice(&b.into_inner().unwrap());
        assert_eq!(read_all(&tar, 4096).unwrap(), tar);
    }

    /// Archives written by GNU tar in each of its formats, with long names,
    /// long link targets and sparse files (GNU sparse extension blocks,
    /// PAX sparse records): the guard follows them to the end without
    /// losing step, and every byte passes through unchanged.
    #[test]
    fn stays_in_step_with_real_archives() {
        use std::process::Command;
        if Command::new("tar").arg("--version").output().is_err() {
            eprintln!("tar not installed; skipping");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let deep = root.join("d".repeat(90)).join("e".repeat(90));
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("f".repeat(120)), b"long name").unwrap();
        std::os::unix::fs::symlink("t".repeat(200), root.join("link")).unwrap();
        // A sparse file with many holes: more map entries than fit in the
        // header, so GNU tar writes extension blocks.
        let sparse = std::fs::File::create(root.join("sparse")).unwrap();
        use std::os::unix::fs::FileExt;
        for i in 0..40u64 {
            sparse.write_all_at(b"data", i * 65536).unwrap();
        }
        drop(sparse);
        std::fs::write(root.join("big"), vec![7u8; 70_000]).unwrap();
        for format in ["gnu", "oldgnu", "posix", "ustar"] {
            let out = dir.path().join(format!("{format}.tar"));
            let mut cmd = Command::new("tar");
            cmd.arg(format!("--format={format}")).arg("-cf").arg(&out);
            if format != "ustar" {
                cmd.arg("--sparse");
            }
            // ustar cannot store the long names: leave those out there.
            let entries: &[&str] = if format == "ustar" {
                &["sparse", "big"]
            } else {
                &["."]
            };
            let status = cmd.arg("-C").arg(&root).args(entries).status().unwrap();
            assert!(status.success(), "tar --format={format}");
            let tar = std::fs::read(&out).unwrap();
            let mut guard = TarGuard::new(&tar[..], 1 << 20);
            let mut passed = Vec::new();
            guard.read_to_end(&mut passed).unwrap();
            assert_eq!(passed, tar, "{format}");
            assert!(!guard.disarmed, "{format}: the guard lost step");
            assert_eq!(guard.skip, 0, "{format}: ended inside an entry");
            assert!(!guard.in_sparse_extensions, "{format}");
        }
    }

    #[test]
    fn numbers_and_records() {
        assert_eq!(parse_number(b"00000001750\0"), Some(1000));
        assert_eq!(parse_number(b"     1750 \0\0"), Some(1000));
        let mut base256 = [0u8; 12];
        base256[0] = 0x80;
        base256[11] = 1;
        base256[10] = 2;
        assert_eq!(parse_number(&base256), Some(513));
        let mut body = pax_record("path", "a/b");
        body.extend(pax_record("size", "12345"));
        assert_eq!(pax_size(&body), Some(12345));
        assert_eq!(pax_size(&pax_record("path", "x")), None);
    }
}
