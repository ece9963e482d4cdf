//! A SHA-256 whose state can be saved and reloaded.
//!
//! An upload's PATCH requests may land on different processes (or nodes),
//! so the hash over the bytes received so far must survive between them:
//! rehashing what was stored would mean reading the whole upload back from
//! the store at every chunk. `sha2` keeps its state private, so this keeps
//! the eight chaining words, the length and the unprocessed tail itself,
//! and runs `sha2`'s block function (which uses the CPU's SHA extensions).

use oci::{Algorithm, Digest};
use sha2::digest::generic_array::GenericArray;

const INIT: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Incremental SHA-256 with a serialisable state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sha256State {
    h: [u32; 8],
    /// Bytes hashed so far (including `tail`).
    len: u64,
    /// Bytes not yet making up a whole 64-byte block.
    tail: Vec<u8>,
}

impl Default for Sha256State {
    fn default() -> Self {
        Sha256State {
            h: INIT,
            len: 0,
            tail: Vec::with_capacity(64),
        }
    }
}

type Block = GenericArray<u8, sha2::digest::consts::U64>;

fn blocks(data: &[u8]) -> &[Block] {
    debug_assert_eq!(data.len() % 64, 0);
    // SAFETY: `Block` is a `[u8; 64]` with alignment 1, and `data`'s length
    // is a multiple of 64, so the slice reinterprets exactly.
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<Block>(), data.len() / 64) }
}

impl Sha256State {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if !self.tail.is_empty() {
            let take = (64 - self.tail.len()).min(data.len());
            self.tail.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.tail.len() < 64 {
                return;
            }
            sha2::compress256(&mut self.h, blocks(&self.tail));
            self.tail.clear();
        }
        let whole = data.len() - data.len() % 64;
        if whole > 0 {
            sha2::compress256(&mut self.h, blocks(&data[..whole]));
        }
        self.tail.extend_from_slice(&data[whole..]);
    }

    /// The digest of everything hashed (the state itself is unchanged).
    pub fn digest(&self) -> Digest {
        let mut h = self.h;
        let mut last = self.tail.clone();
        last.push(0x80);
        while last.len() % 64 != 56 {
            last.push(0);
        }
        last.extend_from_slice(&(self.len.wrapping_mul(8)).to_be_bytes());
        sha2::compress256(&mut h, blocks(&last));
        let mut hex = String::with_capacity(64);
        for w in h {
            hex.push_str(&format!("{w:08x}"));
        }
        Digest::parse(&format!("{}:{hex}", Algorithm::Sha256.as_str()))
            .expect("a sha256 digest is well formed")
    }

    /// The state as text: `<len>:<8 words hex>:<tail hex>`.
    pub fn save(&self) -> String {
        let mut s = format!("{}:", self.len);
        for w in self.h {
            s.push_str(&format!("{w:08x}"));
        }
        s.push(':');
        for b in &self.tail {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// Reload a state written by [`Sha256State::save`].
    pub fn load(s: &str) -> Option<Sha256State> {
        let mut it = s.split(':');
        let len: u64 = it.next()?.parse().ok()?;
        let words = it.next()?;
        let tail = it.next()?;
        if it.next().is_some() || words.len() != 64 || tail.len() % 2 != 0 || tail.len() >= 128 {
            return None;
        }
        let mut h = [0u32; 8];
        for (i, w) in h.iter_mut().enumerate() {
            *w = u32::from_str_radix(words.get(i * 8..i * 8 + 8)?, 16).ok()?;
        }
        let tail = (0..tail.len() / 2)
            .map(|i| u8::from_str_radix(tail.get(i * 2..i * 2 + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        if len % 64 != tail.len() as u64 {
            return None;
        }
        Some(Sha256State { h, len, tail })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_sha2_at_every_split_and_survives_a_save() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        for n in [0usize, 1, 55, 56, 63, 64, 65, 119, 128, 999, 1000] {
            let want = Digest::sha256_of(&data[..n]);
            for split in [0, n / 3, n / 2, n] {
                let mut h = Sha256State::new();
                h.update(&data[..split]);
                let mut h = Sha256State::load(&h.save()).expect("reloads");
                h.update(&data[split..n]);
                assert_eq!(h.digest(), want, "n={n} split={split}");
                assert_eq!(h.len(), n as u64);
            }
        }
    }

    #[test]
    fn refuses_malformed_states() {
        assert!(Sha256State::load("").is_none());
        assert!(Sha256State::load("3:00:").is_none());
        let mut h = Sha256State::new();
        h.update(b"abc");
        let s = h.save();
        assert!(Sha256State::load(&s.replace("3:", "4:")).is_none());
        assert_eq!(Sha256State::load(&s), Some(h));
    }
}
