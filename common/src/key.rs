//! Keys: what a key is, how it comes out of a request path, how it goes back
//! into a URL, and which file it maps to on a volume.
//!
//! A key is the whole request path, percent-decoded, leading slash included.
//! Trove requires it to be valid UTF-8 (so that listings are JSON strings)
//! and at most [`MAX_KEY_LEN`] bytes. Paths under `/-/` are reserved for
//! operations. On a volume a key never becomes a path: its file name is the
//! hex sha256 of the key, so no key can reach outside a data directory.

use sha2::{Digest, Sha256};
use std::fmt;
use std::path::PathBuf;

/// Longest key accepted, in bytes after percent-decoding.
pub const MAX_KEY_LEN: usize = 4096;

/// The path prefix reserved for operations (`/-/healthy`, `/-/blobs` …).
pub const RESERVED_PREFIX: &str = "/-/";

/// Why a request path is not a usable key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("invalid percent-escape (use %XX with two hex digits)")]
    BadEscape,
    #[error("the key is not valid UTF-8 once percent-decoded")]
    NotUtf8,
    #[error("empty key: name the value in the path, e.g. PUT /photos/a.jpg")]
    Empty,
    #[error("the path must start with '/'")]
    NotAbsolute,
    #[error("key is {0} bytes long; the limit is 4096")]
    TooLong(usize),
    #[error("paths under /-/ are reserved for operations and cannot be keys")]
    Reserved,
    /// URL parsers (browsers, curl, reqwest) collapse `.` and `..`
    /// segments, so such a key could not be fetched from a volume, and
    /// `/a/../b` would silently address `/b`.
    #[error("the key has a `.` or `..` path segment, which URLs cannot carry; rename it")]
    DotSegment,
}

/// A validated key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    /// Decodes a raw (still percent-encoded) request path into a key.
    pub fn from_path(raw_path: &str) -> Result<Key, KeyError> {
        if !raw_path.starts_with('/') {
            return Err(KeyError::NotAbsolute);
        }
        let key = decode_prefix(raw_path)?;
        if key == "/" {
            return Err(KeyError::Empty);
        }
        if key.starts_with(RESERVED_PREFIX) || key == "/-" {
            return Err(KeyError::Reserved);
        }
        if key.split('/').any(|segment| segment == "." || segment == "..") {
            return Err(KeyError::DotSegment);
        }
        Ok(Key(key))
    }

    /// Wraps a string that is already a decoded key (from the index or a
    /// volume's listing), checking the same rules as [`Key::from_path`].
    pub fn new(decoded: &str) -> Result<Key, KeyError> {
        Key::from_path(&encode_path(decoded))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as bytes (the index key, the placement input).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The key percent-encoded for use as a URL path.
    pub fn url_path(&self) -> String {
        encode_path(&self.0)
    }

    /// sha256 of the key: the blob's file name on a volume.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }

    /// The blob's path relative to a data dir: `aa/bb/<64 hex>`, where `aa`
    /// and `bb` are the first two bytes of the key's sha256.
    pub fn blob_relpath(&self) -> PathBuf {
        let h = hex::encode(self.hash());
        [&h[0..2], &h[2..4], &h[..]].iter().collect()
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Decodes a raw request path used as a listing prefix: like a key, but
/// `/` (everything) is allowed and nothing is reserved.
pub fn decode_prefix(raw_path: &str) -> Result<String, KeyError> {
    let bytes = percent_decode(raw_path.as_bytes())?;
    // Checked decoded: a prefix sent as a query parameter has its `/`
    // percent-encoded.
    if !bytes.starts_with(b"/") {
        return Err(KeyError::NotAbsolute);
    }
    if bytes.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong(bytes.len()));
    }
    String::from_utf8(bytes).map_err(|_| KeyError::NotUtf8)
}

/// Strict percent-decoding: every `%` must be followed by two hex digits.
pub fn percent_decode(input: &[u8]) -> Result<Vec<u8>, KeyError> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let hi = input.get(i + 1).and_then(|c| hex_value(*c));
            let lo = input.get(i + 2).and_then(|c| hex_value(*c));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(KeyError::BadEscape),
            }
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes a decoded key for a URL path: unreserved characters
/// (RFC 3986) and `/` stay as they are, every other byte becomes `%XX`.
pub fn encode_path(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for &b in key.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a string for a query-string value (everything but
/// unreserved characters is escaped, `/` included).
pub fn encode_query_value(value: &str) -> String {
    encode_path(value).replace('/', "%2F")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_paths() {
        assert_eq!(Key::from_path("/a/b.jpg").unwrap().as_str(), "/a/b.jpg");
        assert_eq!(Key::from_path("/a%20b%2Fc").unwrap().as_str(), "/a b/c");
        assert_eq!(Key::from_path("/%E2%9C%93").unwrap().as_str(), "/✓");
        assert_eq!(Key::from_path("/nul%00byte").unwrap().as_str(), "/nul\0byte");
        assert_eq!(Key::from_path("/a/..b/.c/d.").unwrap().as_str(), "/a/..b/.c/d.");
    }

    #[test]
    fn rejects_bad_paths() {
        assert_eq!(Key::from_path("/"), Err(KeyError::Empty));
        assert_eq!(Key::from_path("/-/healthy"), Err(KeyError::Reserved));
        assert_eq!(Key::from_path("/-"), Err(KeyError::Reserved));
        assert_eq!(Key::from_path("/%2D/x"), Err(KeyError::Reserved));
        assert_eq!(Key::from_path("/%zz"), Err(KeyError::BadEscape));
        assert_eq!(Key::from_path("/%4"), Err(KeyError::BadEscape));
        assert_eq!(Key::from_path("/%FF%FE"), Err(KeyError::NotUtf8));
        assert_eq!(Key::from_path("a"), Err(KeyError::NotAbsolute));
        assert_eq!(Key::from_path("%2Fa"), Err(KeyError::NotAbsolute));
        // A prefix may come percent-encoded whole (a query parameter).
        assert_eq!(decode_prefix("%2Fdir%2F.").unwrap(), "/dir/.");
        assert_eq!(decode_prefix("dir"), Err(KeyError::NotAbsolute));
        for dots in ["/a/../b", "/..", "/a/.", "/./a", "/a/%2E%2E/b", "/a/%2e/b"] {
            assert_eq!(Key::from_path(dots), Err(KeyError::DotSegment), "{dots}");
        }
        let long = format!("/{}", "x".repeat(MAX_KEY_LEN));
        assert_eq!(Key::from_path(&long), Err(KeyError::TooLong(MAX_KEY_LEN + 1)));
        assert!(Key::from_path(&long[..MAX_KEY_LEN]).is_ok());
        // The limit is on decoded bytes: 4096 escaped bytes are 12 KiB of path.
        assert!(Key::from_path(&format!("/{}", "%41".repeat(MAX_KEY_LEN - 1))).is_ok());
    }

    #[test]
    fn url_path_round_trips() {
        for k in [
            "/plain",
            "/sp ace/x",
            "/q?uery#frag",
            "/%percent",
            "/✓/ü",
            "/nul\0",
            "/a+b&c=d",
        ] {
            let key = Key::new(k).unwrap();
            let url = key.url_path();
            assert!(!url.contains(['?', '#', ' ', '\0']), "{url}");
            assert_eq!(Key::from_path(&url).unwrap(), key);
        }
        assert_eq!(encode_query_value("/a b"), "%2Fa%20b");
    }

    /// Golden value: the on-disk location of a key must never change.
    #[test]
    fn blob_path_is_hash_based() {
        let key = Key::new("/photos/a.jpg").unwrap();
        let h = hex::encode(key.hash());
        assert_eq!(h, GOLDEN_HASH);
        assert_eq!(
            key.blob_relpath(),
            PathBuf::from(format!("{}/{}/{}", &h[..2], &h[2..4], h))
        );
        // A hostile key is still just a hash on disk.
        let evil = Key::new("/..%2F..%2Fetc/passwd").unwrap();
        let p = evil.blob_relpath();
        assert_eq!(p.components().count(), 3);
        assert!(p
            .to_str()
            .unwrap()
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == '/'));
    }
    const GOLDEN_HASH: &str = "3a9ecb83c83c4d14a2ab4405fd310b78a877453c7e58bd9c8281901016f33010";
}
