//! Stored inventories and assessment results, with the previous
//! assessment's keys, and the choice of digests to re-match.

use super::{Store, wait};
use crate::policy::finding_key;
use crate::vuln::Finding;
use anyhow::Result;
use inventory::Inventory;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};
use storage::assess::NewResult;

/// zstd level for stored documents: fast, and JSON of package lists
/// shrinks 10–20× (a million-file npm layer's 50,000 packages: ~15 MB of
/// JSON, ~1 MB stored).
const ZSTD_LEVEL: i32 = 3;

/// A stored document: serialized JSON, compressed with zstd as it is
/// written (the JSON text is never held whole). Inventories and findings
/// are written once and read whole, so one compressed blob per row costs
/// far less than a row per package.
pub(crate) fn pack<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>> {
    Ok(pack_hashed(v)?.0)
}

/// [`pack`], and the SHA-256 of the JSON (so a hash does not move with
/// the compressor).
fn pack_hashed<T: Serialize + ?Sized>(v: &T) -> Result<(Vec<u8>, String)> {
    // Most documents (findings, small inventories) are JSON into a buffer,
    // then compressed in one call: with the size known zstd sizes its
    // tables to the document, where a stream of unknown size sets up
    // tables for megabytes each time. Larger ones stream (written again).
    let mut json = Capped(Vec::new());
    match serde_json::to_writer(&mut json, v) {
        Ok(()) => {
            let hash = hex::encode(Sha256::digest(&json.0));
            let data = with_cctx(|c| {
                let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(json.0.len()));
                c.compress2(&mut out, &json.0).map_err(|code| {
                    anyhow::anyhow!("zstd: {}", zstd::zstd_safe::get_error_name(code))
                })?;
                Ok(out)
            })?;
            return Ok((data, hash));
        }
        // Only `Capped` fails with I/O: too big to buffer.
        Err(e) if e.is_io() => {}
        Err(e) => return Err(e.into()),
    }
    struct Hashing<W> {
        inner: W,
        hash: Sha256,
    }
    impl<W: std::io::Write> std::io::Write for Hashing<W> {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let n = self.inner.write(b)?;
            self.hash.update(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }
    with_cctx(|cctx| {
        let mut w = Hashing {
            inner: std::io::BufWriter::with_capacity(
                64 << 10,
                zstd::stream::write::Encoder::with_context(Vec::new(), cctx),
            ),
            hash: Sha256::new(),
        };
        serde_json::to_writer(&mut w, v)?;
        let hash = hex::encode(w.hash.finalize());
        let encoder = w.inner.into_inner().map_err(|e| e.into_error())?;
        Ok((encoder.finish()?, hash))
    })
}

/// JSON of a document packed in one call at most this long.
const BUFFERED_MAX: usize = 1 << 20;

struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + b.len() > BUFFERED_MAX {
            return Err(std::io::Error::other("document too big to buffer"));
        }
        self.0.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

thread_local! {
    // Creating a zstd context costs more than compressing a small document
    // (about half of encoding one image's findings when re-matching), so
    // each thread keeps one of each. The frames are the same as a fresh
    // context writes: only allocation is saved.
    static CCTX: std::cell::RefCell<Option<zstd::zstd_safe::CCtx<'static>>> =
        const { std::cell::RefCell::new(None) };
    static DCTX: std::cell::RefCell<Option<zstd::zstd_safe::DCtx<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn new_cctx() -> Result<zstd::zstd_safe::CCtx<'static>> {
    let mut c = zstd::zstd_safe::CCtx::try_create()
        .ok_or_else(|| anyhow::anyhow!("cannot create a zstd context"))?;
    c.set_parameter(zstd::zstd_safe::CParameter::CompressionLevel(ZSTD_LEVEL))
        .map_err(|code| anyhow::anyhow!("zstd: {}", zstd::zstd_safe::get_error_name(code)))?;
    Ok(c)
}

/// Runs `f` with this thread's compression context (a fresh one if it is
/// in use further up the stack). A context whose frame `f` left unfinished
/// is reset by the next `with_context`.
fn with_cctx<R>(f: impl FnOnce(&mut zstd::zstd_safe::CCtx<'static>) -> Result<R>) -> Result<R> {
    CCTX.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            if slot.is_none() {
                *slot = Some(new_cctx()?);
            }
            f(slot.as_mut().expect("set above"))
        }
        Err(_) => f(&mut new_cctx()?),
    })
}

fn with_dctx<R>(f: impl FnOnce(&mut zstd::zstd_safe::DCtx<'static>) -> Result<R>) -> Result<R> {
    let create = || {
        zstd::zstd_safe::DCtx::try_create()
            .ok_or_else(|| anyhow::anyhow!("cannot create a zstd context"))
    };
    DCTX.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            if slot.is_none() {
                *slot = Some(create()?);
            }
            f(slot.as_mut().expect("set above"))
        }
        Err(_) => f(&mut create()?),
    })
}

/// Reads what [`pack`] wrote. The JSON is decompressed into one buffer and
/// parsed from it: parsing from a slice is several times faster than
/// through a reader, and the buffer lives only while the values are built.
/// Rows written before compression (plain JSON, which starts with `{` or
/// `[`) are read as they are.
pub fn unpack<T: DeserializeOwned>(data: &[u8]) -> Result<T> {
    if data.first().is_some_and(|b| matches!(b, b'{' | b'[')) {
        return Ok(serde_json::from_slice(data)?);
    }
    Ok(serde_json::from_slice(&decompress(data)?)?)
}

fn decompress(data: &[u8]) -> Result<Vec<u8>> {
    use std::io::Read as _;
    with_dctx(|dctx| {
        // JSON shrinks about 10×; a good first guess saves regrowing.
        let mut out = Vec::with_capacity(data.len().saturating_mul(8).min(64 << 20));
        // Like `decode_all`: every frame, concatenated.
        zstd::stream::read::Decoder::with_context(data, dctx).read_to_end(&mut out)?;
        Ok(out)
    })
}

/// A stored assessment result.
#[derive(Debug, Clone)]
pub struct ResultRow {
    pub db_version: Option<String>,
    pub assessed_at: i64,
    pub findings: Vec<Finding>,
    pub prev_db_version: Option<String>,
    pub prev_assessed_at: Option<i64>,
    /// Keys of the previous assessment; `None` with a `prev_assessed_at`
    /// means "same as now".
    pub prev_keys: Option<Vec<String>>,
}

fn hash_bytes(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

impl Store {
    // ---- inventories ----

    /// Store a complete inventory (every part of the image was read).
    pub fn put_inventory(&self, digest: &str, version: u32, inv: &Inventory) -> Result<()> {
        self.put_cataloged(digest, version, inv, &[])
    }

    /// Store an inventory with the parts of the image that could not be
    /// read, in one statement: a stored inventory never lacks its reasons.
    pub fn put_cataloged(
        &self,
        digest: &str,
        version: u32,
        inv: &Inventory,
        incomplete: &[String],
    ) -> Result<()> {
        let data = pack(inv)?;
        wait(self.state.put_inventory(digest, version, data, incomplete))
    }

    /// Why the stored inventory of `digest` is incomplete (empty when it is
    /// complete, or when there is none).
    pub fn incomplete(&self, digest: &str) -> Result<Vec<String>> {
        wait(self.state.incomplete(digest))
    }

    pub fn inventory(&self, digest: &str) -> Result<Option<(u32, Inventory)>> {
        match wait(self.state.inventory(digest))? {
            None => Ok(None),
            Some(s) => Ok(Some((s.catalog_version, unpack(&s.data)?))),
        }
    }

    // ---- results ----

    /// Store an assessment. When the findings are unchanged only the
    /// version and time move (cheap for mass re-matching); the previous
    /// assessment's keys are kept for diffs.
    pub fn save_result(
        &self,
        digest: &str,
        db_version: Option<&str>,
        at: i64,
        findings: &[Finding],
    ) -> Result<()> {
        let enc = EncodedFindings::new(findings)?;
        wait(self.state.save_results(vec![NewResult {
            digest: digest.into(),
            db_version: db_version.map(str::to_owned),
            assessed_at: at,
            findings: enc.into(),
        }]))
    }

    /// Many results (findings already encoded) in one transaction.
    pub fn save_encoded(
        &self,
        batch: Vec<(String, Option<String>, i64, EncodedFindings)>,
    ) -> Result<()> {
        let batch = batch
            .into_iter()
            .map(|(digest, db_version, assessed_at, enc)| NewResult {
                digest,
                db_version,
                assessed_at,
                findings: enc.into(),
            })
            .collect();
        wait(self.state.save_results(batch))
    }

    /// The stored inventory's bytes, without parsing (read them with
    /// [`unpack`]): re-matching parses them on its own threads.
    pub fn inventory_raw(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        Ok(wait(self.state.inventory(digest))?.map(|s| s.data))
    }

    /// [`Store::inventory_raw`] for many digests in one read: in the order
    /// asked, those without a stored inventory left out.
    pub fn inventories_raw(&self, digests: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(wait(self.state.inventories(digests))?
            .into_iter()
            .map(|(d, s)| (d, s.data))
            .collect())
    }

    pub fn result(&self, digest: &str) -> Result<Option<ResultRow>> {
        let Some(r) = wait(self.state.result(digest))? else {
            return Ok(None);
        };
        Ok(Some(ResultRow {
            db_version: r.db_version,
            assessed_at: r.assessed_at,
            findings: unpack(&r.findings)?,
            prev_db_version: r.prev_db_version,
            prev_assessed_at: r.prev_assessed_at,
            prev_keys: r.prev_keys,
        }))
    }

    /// Digests to re-match: finished images (not indexes or artifacts)
    /// pushed or pulled since `window_start` whose result is older than
    /// `older_than` or from another database version, plus any finished
    /// image never matched against a database.
    pub fn rematch_candidates(
        &self,
        window_start: i64,
        db_version: &str,
        older_than: i64,
    ) -> Result<Vec<String>> {
        wait(
            self.state
                .rematch_candidates(window_start, db_version, older_than),
        )
    }
}

pub use storage::assess::ResultStamp;

/// Findings serialized for storage, with their hash and sorted keys;
/// computed outside the store's lock (in parallel when re-matching).
pub struct EncodedFindings {
    pub data: Vec<u8>,
    pub hash: String,
    /// Sorted, without duplicates.
    pub keys: Vec<String>,
}

impl From<EncodedFindings> for storage::assess::EncodedFindings {
    fn from(e: EncodedFindings) -> Self {
        storage::assess::EncodedFindings {
            data: e.data,
            hash: e.hash,
            keys: e.keys,
        }
    }
}

impl EncodedFindings {
    pub fn new(findings: &[Finding]) -> Result<EncodedFindings> {
        let (data, hash) = pack_hashed(findings)?;
        let mut keys: Vec<String> = findings.iter().map(finding_key).collect();
        keys.sort();
        keys.dedup();
        Ok(EncodedFindings { data, hash, keys })
    }
}

/// One page of a stored inventory's packages, and how many there are.
#[derive(Debug, Clone, Default)]
pub struct PackageWindow {
    /// Packages that pass the filter, in stored order.
    pub total: usize,
    pub packages: Vec<inventory::Package>,
}

/// Walks the `packages` array of a stored inventory, keeping only the
/// window asked for: an inventory of 50,000 packages is paged without
/// building the other 49,900 (skipped ones are parsed and dropped one at a
/// time, or not built at all when nothing filters them).
struct WindowSeed<'a> {
    skip: usize,
    take: usize,
    filter: Option<&'a dyn Fn(&inventory::Package) -> bool>,
}

impl<'de> serde::de::DeserializeSeed<'de> for WindowSeed<'_> {
    type Value = PackageWindow;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<PackageWindow, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for WindowSeed<'_> {
    type Value = PackageWindow;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an inventory")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<PackageWindow, A::Error> {
        let mut out = PackageWindow::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "packages" {
                out = map.next_value_seed(PackagesSeed(&self))?;
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(out)
    }
}

struct PackagesSeed<'s, 'a>(&'s WindowSeed<'a>);

impl<'de> serde::de::DeserializeSeed<'de> for PackagesSeed<'_, '_> {
    type Value = PackageWindow;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<PackageWindow, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for PackagesSeed<'_, '_> {
    type Value = PackageWindow;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of packages")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> Result<PackageWindow, A::Error> {
        let w = self.0;
        let mut out = PackageWindow::default();
        loop {
            let in_window = out.total >= w.skip && out.packages.len() < w.take;
            if w.filter.is_none() && !in_window {
                if seq.next_element::<serde::de::IgnoredAny>()?.is_none() {
                    break;
                }
                out.total += 1;
                continue;
            }
            let Some(p) = seq.next_element::<inventory::Package>()? else {
                break;
            };
            if w.filter.is_some_and(|f| !f(&p)) {
                continue;
            }
            if in_window {
                out.packages.push(p);
            }
            out.total += 1;
        }
        Ok(out)
    }
}

impl Store {
    /// Packages `skip..skip + take` of the stored inventory of `digest`
    /// (among those `filter` keeps), the number kept in all, and a tag of
    /// the stored inventory (a cursor made from one inventory is refused
    /// on another). `None` when there is no stored inventory.
    pub fn inventory_window(
        &self,
        digest: &str,
        skip: usize,
        take: usize,
        filter: Option<&dyn Fn(&inventory::Package) -> bool>,
    ) -> Result<Option<(PackageWindow, String)>> {
        // The blob is copied out so the lock is not held while it is parsed.
        let Some(raw) = self.inventory_raw(digest)? else {
            return Ok(None);
        };
        let tag = hash_bytes(&raw);
        let seed = WindowSeed { skip, take, filter };
        let json = if raw.first() == Some(&b'{') {
            raw
        } else {
            decompress(&raw)?
        };
        let window = serde::de::DeserializeSeed::deserialize(
            seed,
            &mut serde_json::Deserializer::from_slice(&json),
        )?;
        Ok(Some((window, tag)))
    }

    /// Per digest: the database version, time and findings hash of its
    /// result, without reading the findings (the dashboard judges again
    /// only the images whose stamps moved).
    pub fn result_stamps(&self) -> Result<std::collections::HashMap<String, ResultStamp>> {
        wait(self.state.result_stamps())
    }

    /// The hash of the stored findings of `digest` (what a findings cursor
    /// is checked against).
    pub fn findings_hash(&self, digest: &str) -> Result<Option<String>> {
        wait(self.state.findings_hash(digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(n: usize) -> Vec<(String, u32)> {
        (0..n).map(|i| (format!("package-{i}"), i as u32)).collect()
    }

    /// What `pack` wrote before contexts were reused: a fresh stream
    /// encoder per document.
    fn old_pack<T: Serialize>(v: &T) -> Vec<u8> {
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL).unwrap();
        serde_json::to_writer(&mut e, v).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn packed_documents_round_trip_on_a_reused_context() {
        for n in [0, 1, 50, 20_000, 80_000, 3] {
            let v = doc(n);
            let (bytes, hash) = pack_hashed(&v).unwrap();
            assert_eq!(unpack::<Vec<(String, u32)>>(&bytes).unwrap(), v);
            assert_eq!(hash, hash_bytes(&serde_json::to_vec(&v).unwrap()));
            // The same document packs to the same bytes every time: nothing
            // of an earlier frame stays in the thread's context.
            assert_eq!(pack(&v).unwrap(), bytes);
        }
    }

    #[test]
    fn old_rows_read_and_new_rows_read_by_the_old_decoder() {
        let v = doc(5_000);
        let old = old_pack(&v);
        assert_eq!(unpack::<Vec<(String, u32)>>(&old).unwrap(), v);
        let new = pack(&v).unwrap();
        let json = zstd::stream::decode_all(&new[..]).unwrap();
        assert_eq!(
            serde_json::from_slice::<Vec<(String, u32)>>(&json).unwrap(),
            v
        );
        // Rows from before compression: plain JSON.
        let plain = serde_json::to_vec(&v).unwrap();
        assert_eq!(unpack::<Vec<(String, u32)>>(&plain).unwrap(), v);
    }

    #[test]
    fn a_corrupt_row_fails_and_leaves_the_context_usable() {
        let v = doc(100);
        let mut bad = pack(&v).unwrap();
        bad.truncate(bad.len() / 2);
        assert!(unpack::<Vec<(String, u32)>>(&bad).is_err());
        // The half-read frame is not carried into the next document.
        assert_eq!(unpack::<Vec<(String, u32)>>(&pack(&v).unwrap()).unwrap(), v);
        // A document abandoned mid-write does not leak into the next one.
        with_cctx(|c| {
            use std::io::Write as _;
            let mut e = zstd::stream::write::Encoder::with_context(Vec::new(), c);
            e.write_all(b"[\"left over\"").unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(unpack::<Vec<(String, u32)>>(&pack(&v).unwrap()).unwrap(), v);
    }

    #[test]
    fn concatenated_frames_read_whole_as_before() {
        let mut two = zstd::stream::encode_all(&b"[1,"[..], 3).unwrap();
        two.extend(zstd::stream::encode_all(&b"2]"[..], 3).unwrap());
        assert_eq!(unpack::<Vec<u32>>(&two).unwrap(), vec![1, 2]);
    }
}
