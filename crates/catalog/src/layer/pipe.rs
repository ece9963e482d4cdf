//! The pipe between a layer's two threads: the inflating thread fills a
//! few recycled blocks, the walker reads them in order.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, Sender, SyncSender};

/// Decompressed bytes handed from the inflating thread to the walker at a
/// time, and how many such blocks may wait between them: the pipe holds at
/// most `(PIPE_DEPTH + 2) * PIPE_BLOCK` bytes whatever the layer's size.
pub(super) const PIPE_BLOCK: usize = 256 << 10;
pub(super) const PIPE_DEPTH: usize = 4;

/// A filled block: the buffer and how many of its bytes are data. An error
/// of the decompressed stream ends it.
pub(super) type Filled = io::Result<(Vec<u8>, usize)>;

/// Fill blocks from `src` and send them until the stream ends, fails, or
/// the walker stops taking them (it finished or failed: its result says).
pub(super) fn inflate_into(
    src: &mut impl Read,
    tx: &SyncSender<Filled>,
    recycle: &Receiver<Vec<u8>>,
) {
    loop {
        // A block the walker gave back, else a new one; never more than
        // the pipe can hold exist at once.
        let mut block = recycle.try_recv().unwrap_or_else(|_| vec![0u8; PIPE_BLOCK]);
        let mut len = 0;
        let mut failed = None;
        while len < block.len() {
            match super::read_some(src, &mut block[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let last = len < block.len() || failed.is_some();
        if len > 0 && tx.send(Ok((block, len))).is_err() {
            return;
        }
        if let Some(e) = failed {
            let _ = tx.send(Err(e));
            return;
        }
        if last {
            return;
        }
    }
}

/// The walker's end of the pipe: reads the blocks in order, gives each back
/// once read, and ends where the inflating thread stopped.
pub(super) struct Blocks {
    rx: Receiver<Filled>,
    recycle: Sender<Vec<u8>>,
    block: Vec<u8>,
    len: usize,
    pos: usize,
}

impl Blocks {
    pub(super) fn new(rx: Receiver<Filled>, recycle: Sender<Vec<u8>>) -> Self {
        Blocks {
            rx,
            recycle,
            block: Vec::new(),
            len: 0,
            pos: 0,
        }
    }
}

impl Read for Blocks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pos == self.len {
            match self.rx.recv() {
                Ok(Ok((block, len))) => {
                    let done = std::mem::replace(&mut self.block, block);
                    if !done.is_empty() {
                        let _ = self.recycle.send(done);
                    }
                    self.len = len;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The inflating thread reached the end of the stream.
                Err(_) => return Ok(0),
            }
        }
        let n = (self.len - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
