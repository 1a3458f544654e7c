//! sha256, md5 and CRC32C of a value, computed as its bytes stream past.
//!
//! The master computes all three, beside the forwarding ([`HashBeside`]:
//! md5 and sha256 each on its own blocking thread, fed the same chunks), so
//! a PUT is not held to one core's hashing speed. A volume receiving a
//! master write computes only the CRC32C of the transfer (one CPU
//! instruction per 8 bytes), which the master compares with its own: a
//! replica is confirmed only if it holds exactly the bytes the master
//! hashed. The master hands the md5 and sha256 over when it confirms the
//! write; `verify --deep` re-hashes sha256 against the record.

use base64::Engine;
use bytes::Bytes;
use md5::Md5;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Running digests of a stream of bytes.
#[derive(Clone)]
pub struct ContentHasher {
    sha256: Option<Sha256>,
    md5: Option<Md5>,
    crc32c: u32,
    size: u64,
}

impl Default for ContentHasher {
    fn default() -> Self {
        ContentHasher {
            sha256: Some(Sha256::new()),
            md5: Some(Md5::new()),
            crc32c: 0,
            size: 0,
        }
    }
}

/// The digests of a complete value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub size: u64,
    /// `None` when only the CRC32C was computed.
    pub sha256: Option<[u8; 32]>,
    /// `None` when it was not computed.
    pub md5: Option<[u8; 16]>,
    /// CRC32C (Castagnoli) of the whole value; always computed.
    pub crc32c: u32,
}

impl ContentHasher {
    /// sha256 and md5.
    pub fn new() -> Self {
        Self::default()
    }

    /// sha256 (and the CRC32C).
    pub fn sha256_only() -> Self {
        ContentHasher {
            md5: None,
            ..Self::default()
        }
    }

    /// The CRC32C only: a transfer check, no identity.
    pub fn crc32c_only() -> Self {
        ContentHasher {
            md5: None,
            sha256: None,
            ..Self::default()
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        if let Some(sha256) = self.sha256.as_mut() {
            sha256.update(bytes);
        }
        if let Some(md5) = self.md5.as_mut() {
            md5.update(bytes);
        }
        self.crc32c = crc32c::crc32c_append(self.crc32c, bytes);
        self.size += bytes.len() as u64;
    }

    /// Bytes seen so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn finish(self) -> Digests {
        Digests {
            size: self.size,
            sha256: self.sha256.map(|s| s.finalize().into()),
            md5: self.md5.map(|m| m.finalize().into()),
            crc32c: self.crc32c,
        }
    }
}

impl Digests {
    /// Hex sha256, or an empty string when it was not computed.
    pub fn sha256_hex(&self) -> String {
        self.sha256.map(hex::encode).unwrap_or_default()
    }

    /// The CRC32C as 8 hex digits (the `Key-Crc32c` header).
    pub fn crc32c_hex(&self) -> String {
        crc32c_hex(self.crc32c)
    }

    /// Hex md5, or an empty string when it was not computed.
    pub fn md5_hex(&self) -> String {
        self.md5.map(hex::encode).unwrap_or_default()
    }
}

/// A CRC32C as 8 hex digits.
pub fn crc32c_hex(crc: u32) -> String {
    format!("{crc:08x}")
}

/// Parses 8 hex digits of a CRC32C (the `Key-Crc32c` header).
pub fn parse_crc32c_hex(value: &str) -> Option<u32> {
    let value = value.trim();
    (value.len() == 8).then(|| u32::from_str_radix(value, 16).ok())?
}

/// Batches queued for each hashing thread before [`HashBeside::update`]
/// waits: memory stays bounded, and hashing that falls behind slows the
/// stream instead of buffering it.
const HASH_QUEUE: usize = 4;

/// Bytes gathered before they go to the hashing threads, as one batch of
/// the chunks (shared, not copied): each thread is woken once per batch,
/// not once per chunk — a chunked upload arrives in frames of 64 KiB or
/// less.
const HASH_BATCH: usize = 512 << 10;

/// Chunks handed to the hashing threads together.
type Batch = Arc<[Bytes]>;

/// md5, sha256 and CRC32C of a stream, computed beside its forwarding:
/// md5 and sha256 each on its own blocking thread, fed the same chunks
/// (`Bytes` clones share one copy), the CRC32C inline (it costs next to
/// nothing). On two or more cores a PUT then runs at the speed of the
/// slower hash, not of their sum, and the forwarding never waits for
/// hashing unless it falls [`HASH_QUEUE`] batches behind.
///
/// A value announced as small (up to [`HASH_INLINE_MAX`]) is hashed inline
/// instead: handing a few KiB to two threads costs more than hashing them.
pub enum HashBeside {
    Inline(ContentHasher),
    Threads {
        md5: (mpsc::Sender<Batch>, JoinHandle<[u8; 16]>),
        sha256: (mpsc::Sender<Batch>, JoinHandle<[u8; 32]>),
        crc32c: u32,
        size: u64,
        /// Chunks not yet handed over, and their length.
        pending: Vec<Bytes>,
        pending_len: usize,
    },
}

/// Values up to this size (by their `Content-Length`) are hashed inline.
pub const HASH_INLINE_MAX: u64 = 1 << 20;

impl HashBeside {
    /// Hashers for a value of `len` bytes (when announced): inline for a
    /// small one, else two hashing threads (on tokio's blocking pool).
    pub fn start(len: Option<u64>) -> HashBeside {
        if len.is_some_and(|n| n <= HASH_INLINE_MAX) {
            return HashBeside::Inline(ContentHasher::new());
        }
        fn spawn<H: Digest + Send + 'static, const N: usize>() -> (mpsc::Sender<Batch>, JoinHandle<[u8; N]>) {
            let (tx, mut rx) = mpsc::channel::<Batch>(HASH_QUEUE);
            let task = tokio::task::spawn_blocking(move || {
                let mut h = H::new();
                while let Some(batch) = rx.blocking_recv() {
                    for chunk in batch.iter() {
                        h.update(chunk);
                    }
                }
                let mut out = [0u8; N];
                out.copy_from_slice(&h.finalize());
                out
            });
            (tx, task)
        }
        HashBeside::Threads {
            md5: spawn::<Md5, 16>(),
            sha256: spawn::<Sha256, 32>(),
            crc32c: 0,
            size: 0,
            pending: Vec::new(),
            pending_len: 0,
        }
    }

    /// Hands `chunk` to the hashers (in batches of [`HASH_BATCH`]); waits
    /// only while they are [`HASH_QUEUE`] batches behind.
    pub async fn update(&mut self, chunk: &Bytes) {
        match self {
            HashBeside::Inline(h) => h.update(chunk),
            HashBeside::Threads {
                crc32c,
                size,
                pending,
                pending_len,
                ..
            } => {
                *crc32c = crc32c::crc32c_append(*crc32c, chunk);
                *size += chunk.len() as u64;
                pending.push(chunk.clone());
                *pending_len += chunk.len();
                if *pending_len >= HASH_BATCH {
                    self.hand_over().await;
                }
            }
        }
    }

    /// Sends the chunks gathered so far to both hashing threads.
    async fn hand_over(&mut self) {
        if let HashBeside::Threads {
            md5,
            sha256,
            pending,
            pending_len,
            ..
        } = self
        {
            if pending.is_empty() {
                return;
            }
            // Room in both queues first, so that a caller who gives up
            // while waiting leaves neither hasher a batch short. A hasher
            // thread ends only when its sender is dropped (or the runtime
            // shuts down, when nothing awaits this any more): then
            // `finish` reports its error.
            let (Ok(to_md5), Ok(to_sha256)) = (md5.0.reserve().await, sha256.0.reserve().await) else {
                return;
            };
            let batch: Batch = std::mem::take(pending).into();
            *pending_len = 0;
            to_md5.send(Arc::clone(&batch));
            to_sha256.send(batch);
        }
    }

    /// Bytes seen so far.
    pub fn size(&self) -> u64 {
        match self {
            HashBeside::Inline(h) => h.size(),
            HashBeside::Threads { size, .. } => *size,
        }
    }

    /// Waits for both hashes of everything handed over.
    pub async fn finish(mut self) -> std::io::Result<Digests> {
        self.hand_over().await;
        match self {
            HashBeside::Inline(h) => Ok(h.finish()),
            HashBeside::Threads {
                md5: (md5_tx, md5),
                sha256: (sha_tx, sha256),
                crc32c,
                size,
                ..
            } => {
                drop((md5_tx, sha_tx));
                Ok(Digests {
                    size,
                    md5: Some(md5.await.map_err(std::io::Error::other)?),
                    sha256: Some(sha256.await.map_err(std::io::Error::other)?),
                    crc32c,
                })
            }
        }
    }
}

/// Why a `Content-MD5` header cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Content-MD5 must be the base64 of a 16-byte md5 digest (RFC 1864)")]
pub struct BadContentMd5;

/// Parses a `Content-MD5` header: base64 of the 16 raw digest bytes.
pub fn parse_content_md5(value: &str) -> Result<[u8; 16], BadContentMd5> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| BadContentMd5)?;
    raw.try_into().map_err(|_| BadContentMd5)
}

/// Parses a 64-hex-digit sha256 (the `Key-Sha256` header).
pub fn parse_sha256_hex(value: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(value.trim(), &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_of_hello() {
        let mut h = ContentHasher::new();
        h.update(b"hel");
        h.update(b"lo");
        let d = h.finish();
        assert_eq!(d.size, 5);
        assert_eq!(
            d.sha256_hex(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(d.md5_hex(), "5d41402abc4b2a76b9719d911017c592");
        // Golden CRC32C of "hello" (as `crc32c` tools print it).
        assert_eq!(d.crc32c_hex(), "9a71bb4c");
        assert_eq!(parse_crc32c_hex("9a71bb4c"), Some(0x9a71bb4c));
        assert_eq!(parse_crc32c_hex("9a71bb4"), None);
        assert_eq!(parse_crc32c_hex("zzzzzzzz"), None);
        let mut h = ContentHasher::sha256_only();
        h.update(b"hello");
        let d2 = h.finish();
        assert_eq!((d2.sha256, d2.md5, d2.md5_hex()), (d.sha256, None, String::new()));
        let mut h = ContentHasher::crc32c_only();
        h.update(b"hello");
        let d3 = h.finish();
        assert_eq!((d3.sha256, d3.md5, d3.crc32c, d3.size), (None, None, d.crc32c, 5));
    }

    /// The hashes computed beside a stream are those of the whole value,
    /// whatever its chunks.
    #[tokio::test]
    async fn hashing_beside_agrees() {
        let value: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let mut whole = ContentHasher::new();
        whole.update(&value);
        let whole = whole.finish();
        for len in [None, Some(value.len() as u64), Some(10)] {
            let mut beside = HashBeside::start(len);
            for chunk in value.chunks(65_537) {
                beside.update(&Bytes::copy_from_slice(chunk)).await;
            }
            assert_eq!(beside.size(), value.len() as u64);
            assert_eq!(beside.finish().await.unwrap(), whole, "{len:?}");
        }
    }

    #[test]
    fn content_md5_is_base64() {
        // md5("hello") in base64, as `openssl md5 -binary | base64` prints it.
        let md5 = parse_content_md5("XUFAKrxLKna5cZ2REBfFkg==").unwrap();
        assert_eq!(hex::encode(md5), "5d41402abc4b2a76b9719d911017c592");
        assert_eq!(
            parse_content_md5("5d41402abc4b2a76b9719d911017c592"),
            Err(BadContentMd5)
        );
        assert_eq!(parse_content_md5("aGVsbG8="), Err(BadContentMd5));
        assert!(parse_sha256_hex("zz").is_none());
    }
}
