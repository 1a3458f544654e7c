//! Listing details s3s leaves to the backend: `encoding-type=url` (which
//! s3s parses but does not apply) and opaque continuation tokens.

use base64::Engine;
use trove_common::key::encode_path;

/// Percent-encodes a listed name for `encoding-type=url`: every byte but
/// RFC 3986's unreserved characters and `/` becomes `%XX` (so a space is
/// `%20` and `+` is `%2B`, which clients decode back exactly).
pub fn url(name: &str) -> String {
    encode_path(name)
}

/// Applies [`url`] when `encode` is set.
pub fn maybe(encode: bool, name: String) -> String {
    if encode {
        url(&name)
    } else {
        name
    }
}

/// Where a listing continues: after a key, or past every key under a
/// common prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Exclusive: the first key after this one.
    After(String),
    /// Past this common prefix and everything under it.
    PastPrefix(String),
}

/// An opaque continuation token for a place in a listing.
pub fn token(resume: &Resume) -> String {
    let raw = match resume {
        Resume::After(k) => format!("k{k}"),
        Resume::PastPrefix(p) => format!("p{p}"),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// Reads a token made by [`token`]; `None` if it is not one.
pub fn parse_token(token: &str) -> Option<Resume> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    match raw.split_at_checked(1)? {
        ("k", k) => Some(Resume::After(k.to_string())),
        ("p", p) => Some(Resume::PastPrefix(p.to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_keeps_slashes_and_escapes_the_rest() {
        assert_eq!(url("a b+c%/✓"), "a%20b%2Bc%25/%E2%9C%93");
        assert_eq!(url("plain/key-1_~.txt"), "plain/key-1_~.txt");
        assert_eq!(maybe(false, "a b".into()), "a b");
    }

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        for r in [Resume::After("a b/ü".into()), Resume::PastPrefix("dir/".into())] {
            assert_eq!(parse_token(&token(&r)), Some(r));
        }
        assert_eq!(parse_token("not a token!"), None);
        assert_eq!(parse_token(""), None);
    }
}
