//! sha256 (and md5) of a value, computed together as its bytes stream past.
//!
//! The master computes both; volumes compute only sha256 — md5 costs this
//! kind of CPU twice as much as sha256 with SHA-NI, and the master hands
//! the md5 over when it confirms the write.

use base64::Engine;
use md5::Md5;
use sha2::{Digest, Sha256};

/// Running digests of a stream of bytes.
#[derive(Clone)]
pub struct ContentHasher {
    sha256: Sha256,
    md5: Option<Md5>,
    size: u64,
}

impl Default for ContentHasher {
    fn default() -> Self {
        ContentHasher {
            sha256: Sha256::new(),
            md5: Some(Md5::new()),
            size: 0,
        }
    }
}

/// The digests of a complete value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub size: u64,
    pub sha256: [u8; 32],
    /// `None` when only sha256 was computed.
    pub md5: Option<[u8; 16]>,
}

impl ContentHasher {
    /// sha256 and md5.
    pub fn new() -> Self {
        Self::default()
    }

    /// sha256 only.
    pub fn sha256_only() -> Self {
        ContentHasher {
            md5: None,
            ..Self::default()
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        if let Some(md5) = self.md5.as_mut() {
            md5.update(bytes);
        }
        self.size += bytes.len() as u64;
    }

    /// Bytes seen so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn finish(self) -> Digests {
        Digests {
            size: self.size,
            sha256: self.sha256.finalize().into(),
            md5: self.md5.map(|m| m.finalize().into()),
        }
    }
}

impl Digests {
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// Hex md5, or an empty string when it was not computed.
    pub fn md5_hex(&self) -> String {
        self.md5.map(hex::encode).unwrap_or_default()
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
        let mut h = ContentHasher::sha256_only();
        h.update(b"hello");
        let d2 = h.finish();
        assert_eq!((d2.sha256, d2.md5, d2.md5_hex()), (d.sha256, None, String::new()));
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
