//! Streaming a request body into a file while hashing it.
//!
//! The body is read on the async side and handed, in batches of about
//! 1 MiB, to two blocking threads: one writes, one hashes. Hashing (the
//! bottleneck at ~1.4 GB/s for sha256) thus overlaps with receiving and
//! writing, and memory stays bounded by the channel depth whatever the
//! blob's size.

use crate::hashstate::Sha256State;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use oci::Digester;
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;
use tokio::sync::mpsc;

/// How many bytes to gather before handing a batch to the threads.
const BATCH: usize = 1 << 20;
/// Batches in flight per thread.
const DEPTH: usize = 4;

/// Start writeback every this many bytes, so the fsync at commit has
/// little left to do.
const WRITEBACK: u64 = 32 << 20;

/// Ask the kernel to start writing a range out now (asynchronously).
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a valid descriptor; failure is harmless.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// Why an ingest stopped early.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Reading the body failed (client went away, bad framing…).
    #[error("reading the request body failed: {0}")]
    Body(String),
    /// Writing the file failed.
    #[error("writing failed: {0}")]
    Io(#[from] io::Error),
    /// More bytes arrived than allowed.
    #[error("body longer than the {0} bytes allowed")]
    TooLarge(u64),
}

/// Something fed every byte written: a [`Digester`] (algorithm known up
/// front) or a [`Sha256State`] (an upload whose state is saved between
/// requests).
pub trait Hasher: Send + 'static {
    fn update(&mut self, data: &[u8]);
}

impl Hasher for Digester {
    fn update(&mut self, data: &[u8]) {
        Digester::update(self, data)
    }
}

impl Hasher for Sha256State {
    fn update(&mut self, data: &[u8]) {
        Sha256State::update(self, data)
    }
}

/// The state after an ingest, successful or not: the file (positioned at
/// its end), the digester (fed exactly the bytes written, unless `result`
/// is an I/O error), and how many bytes were written.
pub struct Ingested<H = Digester> {
    pub file: File,
    pub digester: H,
    pub written: u64,
    pub result: Result<(), IngestError>,
}

type Batch = Arc<Vec<Bytes>>;

/// Write every buffer of `bufs`, in order, with as few `writev` calls as
/// the kernel allows.
fn write_all_vectored(file: &mut File, bufs: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = bufs
        .iter()
        .filter(|b| !b.is_empty())
        .map(|b| IoSlice::new(b))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Append `body` to the end of `file` and feed it to `digester`. At most
/// `limit` bytes are accepted (`None`: no limit).
pub async fn ingest<S, E, H: Hasher>(
    mut body: S,
    file: File,
    digester: H,
    limit: Option<u64>,
) -> Ingested<H>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    // Where the appended bytes start, for the writeback ranges.
    let base = match file.metadata() {
        Ok(m) => m.len(),
        Err(e) => {
            return Ingested {
                file,
                digester,
                written: 0,
                result: Err(IngestError::Io(e)),
            };
        }
    };
    let (wtx, mut wrx) = mpsc::channel::<Batch>(DEPTH);
    let (htx, mut hrx) = mpsc::channel::<Batch>(DEPTH);
    let writer = tokio::task::spawn_blocking(move || {
        let mut file = file;
        let mut written = 0u64;
        let mut flushed = 0u64;
        let mut err = None;
        while let Some(batch) = wrx.blocking_recv() {
            if err.is_some() {
                continue;
            }
            // One writev per batch rather than a write per chunk.
            if let Err(e) = write_all_vectored(&mut file, &batch) {
                err = Some(e);
                continue;
            }
            written += batch.iter().map(|b| b.len() as u64).sum::<u64>();
            if written - flushed >= WRITEBACK {
                start_writeback(&file, base + flushed, written - flushed);
                flushed = written;
            }
        }
        (file, written, err)
    });
    let hasher = tokio::task::spawn_blocking(move || {
        let mut digester = digester;
        while let Some(batch) = hrx.blocking_recv() {
            for b in batch.iter() {
                digester.update(b);
            }
        }
        digester
    });

    let mut result = Ok(());
    let mut total = 0u64;
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batch_len = 0usize;
    loop {
        let next = body.next().await;
        let done = match next {
            Some(Ok(chunk)) => {
                total += chunk.len() as u64;
                if let Some(l) = limit
                    && total > l
                {
                    result = Err(IngestError::TooLarge(l));
                    true
                } else {
                    batch_len += chunk.len();
                    if !chunk.is_empty() {
                        batch.push(chunk);
                    }
                    false
                }
            }
            Some(Err(e)) => {
                result = Err(IngestError::Body(e.to_string()));
                true
            }
            None => true,
        };
        if (done && result.is_ok() && !batch.is_empty()) || batch_len >= BATCH {
            let b: Batch = Arc::new(std::mem::take(&mut batch));
            batch_len = 0;
            // A send fails only if the writer died, which it does not.
            let _ = wtx.send(b.clone()).await;
            let _ = htx.send(b).await;
        }
        if done {
            break;
        }
    }
    // On error, drop what was gathered but not sent: both threads have
    // seen exactly the same batches.
    drop(wtx);
    drop(htx);
    let (file, written, werr) = writer.await.expect("writer thread panicked");
    let digester = hasher.await.expect("hasher thread panicked");
    if let Some(e) = werr {
        result = Err(IngestError::Io(e));
    }
    Ingested {
        file,
        digester,
        written,
        result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci::{Algorithm, Digest};

    #[tokio::test]
    async fn writes_and_hashes_what_it_reads() {
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("x")).unwrap();
        let chunks: Vec<Result<Bytes, std::io::Error>> = (0..5000)
            .map(|i| Ok(Bytes::from(vec![(i % 251) as u8; 1000])))
            .collect();
        let mut all = Vec::new();
        for c in &chunks {
            all.extend_from_slice(c.as_ref().unwrap());
        }
        let out = ingest(
            futures::stream::iter(chunks),
            f,
            Digester::new(Algorithm::Sha256),
            None,
        )
        .await;
        assert!(out.result.is_ok());
        assert_eq!(out.written, all.len() as u64);
        assert_eq!(out.digester.finish(), Digest::sha256_of(&all));
        assert_eq!(std::fs::read(dir.path().join("x")).unwrap(), all);
    }

    #[tokio::test]
    async fn appends_to_a_file_with_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, b"head:").unwrap();
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let chunks: Vec<Result<Bytes, std::io::Error>> = (0..3)
            .map(|i| Ok(Bytes::from(vec![b'a' + i as u8; 300_000])))
            .collect();
        let out = ingest(
            futures::stream::iter(chunks),
            f,
            Digester::new(Algorithm::Sha256),
            None,
        )
        .await;
        assert!(out.result.is_ok());
        assert_eq!(out.written, 900_000);
        let got = std::fs::read(&path).unwrap();
        assert_eq!(&got[..5], b"head:");
        assert_eq!(out.digester.finish(), Digest::sha256_of(&got[5..]));
    }

    #[tokio::test]
    async fn limit_stops_the_ingest() {
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("x")).unwrap();
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"abc")),
            Ok(Bytes::from_static(b"def")),
        ];
        let out = ingest(
            futures::stream::iter(chunks),
            f,
            Digester::new(Algorithm::Sha256),
            Some(4),
        )
        .await;
        assert!(matches!(out.result, Err(IngestError::TooLarge(4))));
        assert_eq!(out.written, 0);
    }
}
