//! [`BlobStream`]: a byte stream that hashes what it yields and fails at its
//! end when the digest or size disagree.

use bytes::Bytes;
use futures::Stream;
use oci::{Digest, Digester};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};
use tokio_util::io::StreamReader;

pub(crate) type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// A blob's bytes as an [`AsyncRead`] (and a stream of chunks via
/// [`BlobStream::into_stream`]). Unless made with `unverified`, the last read
/// fails with [`io::ErrorKind::InvalidData`] when the bytes do not hash to
/// the expected digest or their count differs from the expected size.
pub struct BlobStream {
    size: Option<u64>,
    reader: StreamReader<ByteStream, Bytes>,
}

impl BlobStream {
    /// Wrap `inner`, verifying it against `expected` (and `size` if known).
    pub(crate) fn verified(inner: ByteStream, expected: Digest, size: Option<u64>) -> BlobStream {
        let v = Verify {
            inner,
            digester: Some(Digester::new(expected.algorithm())),
            expected,
            expected_size: size,
            seen: 0,
        };
        BlobStream {
            size,
            reader: StreamReader::new(Box::pin(v)),
        }
    }

    /// Wrap `inner` as is (ranges, whose start the stream never sees).
    pub(crate) fn unverified(inner: ByteStream, size: Option<u64>) -> BlobStream {
        BlobStream {
            size,
            reader: StreamReader::new(inner),
        }
    }

    /// How many bytes this stream yields, when known in advance.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// The chunks, for consumers that want a `Stream` (HTTP bodies).
    pub fn into_stream(self) -> impl Stream<Item = io::Result<Bytes>> + Send + Unpin {
        let (stream, buffered) = self.reader.into_inner_with_chunk();
        futures::stream::iter(buffered.map(Ok)).chain(stream)
    }
}

use futures::StreamExt as _;

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for BlobStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl AsyncBufRead for BlobStream {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        Pin::new(&mut self.get_mut().reader).poll_fill_buf(cx)
    }
    fn consume(mut self: Pin<&mut Self>, amt: usize) {
        Pin::new(&mut self.reader).consume(amt)
    }
}

struct Verify {
    inner: ByteStream,
    digester: Option<Digester>,
    expected: Digest,
    expected_size: Option<u64>,
    seen: u64,
}

impl Stream for Verify {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(digester) = this.digester.as_mut() else {
            return Poll::Ready(None);
        };
        match ready!(this.inner.as_mut().poll_next(cx)) {
            Some(Ok(chunk)) => {
                digester.update(&chunk);
                this.seen += chunk.len() as u64;
                if let Some(n) = this.expected_size
                    && this.seen > n
                {
                    this.digester = None;
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("blob {} is longer than its {n} bytes", this.expected),
                    ))));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => {
                let actual = this.digester.take().expect("checked above").finish();
                if let Some(n) = this.expected_size
                    && this.seen != n
                {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "blob {} ended after {} of {n} bytes",
                            this.expected, this.seen
                        ),
                    ))));
                }
                if actual != this.expected {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("digest mismatch: expected {}, got {actual}", this.expected),
                    ))));
                }
                Poll::Ready(None)
            }
        }
    }
}

/// A file range (or whole file) as a byte stream, read in 256 KiB chunks.
pub(crate) fn file_stream(file: tokio::fs::File, len: u64) -> ByteStream {
    use tokio::io::AsyncReadExt;
    Box::pin(tokio_util::io::ReaderStream::with_capacity(
        file.take(len),
        256 << 10,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn chunks(parts: &[&'static [u8]]) -> ByteStream {
        Box::pin(futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        ))
    }

    #[tokio::test]
    async fn verifies_digest_and_size() {
        let d = Digest::sha256_of(b"hello world");
        let mut ok = BlobStream::verified(chunks(&[b"hello ", b"world"]), d.clone(), Some(11));
        let mut out = Vec::new();
        ok.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"hello world");

        let mut bad = BlobStream::verified(chunks(&[b"hello ", b"there"]), d.clone(), None);
        let e = bad.read_to_end(&mut Vec::new()).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("digest mismatch"), "{e}");

        let mut short = BlobStream::verified(chunks(&[b"hello "]), d.clone(), Some(11));
        let e = short.read_to_end(&mut Vec::new()).await.unwrap_err();
        assert!(e.to_string().contains("ended after 6 of 11"), "{e}");

        let mut long = BlobStream::verified(chunks(&[b"hello world!"]), d, Some(11));
        assert!(long.read_to_end(&mut Vec::new()).await.is_err());
    }
}
