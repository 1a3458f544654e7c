//! How S3 names map to Trove keys: bucket `b`, object `k` ↔ key `/b/k`;
//! the bucket's marker `/b/`; multipart uploads under `/.s3/uploads/`.
//!
//! Pure functions, unit-tested here; the operations call them.

use s3s::{s3_error, S3Error, S3Result};
use trove_common::key::{Key, KeyError};

/// Where multipart uploads keep their parts (`.s3` is not a valid bucket
/// name, so no S3 listing shows it).
pub const UPLOADS: &str = "/.s3/uploads/";

/// Whether `name` follows S3's bucket naming rules: 3–63 characters of
/// lowercase letters, digits, `-` and `.`, starting and ending with a
/// letter or digit, no `..`, and not shaped like an IP address. (The
/// prefixes and suffixes AWS reserves are refused when a bucket is
/// created, [`new_bucket`]: a bucket named so before stays reachable.)
pub fn valid_bucket(name: &str) -> bool {
    let b = name.as_bytes();
    if !(3..=63).contains(&b.len()) {
        return false;
    }
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !edge(b[0]) || !edge(b[b.len() - 1]) {
        return false;
    }
    if !b.iter().all(|&c| edge(c) || c == b'-' || c == b'.') {
        return false;
    }
    if name.contains("..") {
        return false;
    }
    name.parse::<std::net::Ipv4Addr>().is_err()
}

/// The bucket names s3s routes: [`valid_bucket`]'s. (s3s's own rules
/// also refuse names starting with `xn--`, one of the prefixes AWS only
/// reserves for new buckets: a bucket of curl-written keys named so was
/// listed by ListBuckets and then refused by every other call.)
pub struct BucketNames;

impl s3s::validation::NameValidation for BucketNames {
    fn validate_bucket_name(&self, name: &str) -> bool {
        valid_bucket(name)
    }
}

/// The name of a bucket to create: [`bucket`]'s rules, and none of the
/// prefixes and suffixes AWS reserves (`xn--`, `sthree-`, `-s3alias`, …),
/// or `InvalidBucketName`.
pub fn new_bucket(name: &str) -> Result<&str, S3Error> {
    const RESERVED_PREFIXES: [&str; 3] = ["xn--", "sthree-", "amzn-s3-demo-"];
    const RESERVED_SUFFIXES: [&str; 5] = ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"];
    let name = bucket(name)?;
    if let Some(reserved) = RESERVED_PREFIXES.iter().find(|p| name.starts_with(**p)) {
        return Err(s3_error!(
            InvalidBucketName,
            "`{name}`: bucket names may not start with `{reserved}`"
        ));
    }
    if let Some(reserved) = RESERVED_SUFFIXES.iter().find(|s| name.ends_with(**s)) {
        return Err(s3_error!(
            InvalidBucketName,
            "`{name}`: bucket names may not end with `{reserved}`"
        ));
    }
    Ok(name)
}

/// The checked bucket name, or S3's `InvalidBucketName`.
pub fn bucket(name: &str) -> Result<&str, S3Error> {
    if valid_bucket(name) {
        Ok(name)
    } else {
        Err(s3_error!(
            InvalidBucketName,
            "`{name}` is not a valid bucket name: 3-63 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
        ))
    }
}

/// The marker key whose existence makes a bucket (`/b/`).
pub fn bucket_marker(bucket: &str) -> String {
    format!("/{bucket}/")
}

/// The Trove key of object `key` in `bucket`, or the S3 error for a key
/// Trove cannot store (too long, or with a `.`/`..` segment, which URLs
/// cannot carry).
pub fn object_key(bucket_name: &str, key: &str) -> Result<String, S3Error> {
    bucket(bucket_name)?;
    if key.is_empty() {
        return Err(s3_error!(InvalidArgument, "the object key is empty"));
    }
    let full = format!("/{bucket_name}/{key}");
    match Key::new(&full) {
        Ok(k) => Ok(k.as_str().to_string()),
        Err(KeyError::TooLong(n)) => Err(s3_error!(
            KeyTooLongError,
            "the key is {n} bytes with its bucket; Trove keys are at most 4096 bytes"
        )),
        Err(KeyError::DotSegment) => Err(s3_error!(
            InvalidArgument,
            "Trove cannot store a key with a `.` or `..` path segment (between slashes): rename it"
        )),
        Err(e) => Err(s3_error!(InvalidArgument, "Trove cannot store this key: {e}")),
    }
}

/// The S3 key of a Trove key under `/bucket/`, if it is one (the marker
/// itself is not an object).
pub fn s3_key<'a>(bucket: &str, trove_key: &'a str) -> Option<&'a str> {
    let rest = trove_key
        .strip_prefix('/')?
        .strip_prefix(bucket)?
        .strip_prefix('/')?;
    (!rest.is_empty()).then_some(rest)
}

/// The folder of one multipart upload: `/.s3/uploads/<bucket>/<id>/`.
pub fn upload_dir(bucket: &str, upload_id: &str) -> Result<String, S3Error> {
    if !valid_upload_id(upload_id) {
        return Err(s3_error!(
            NoSuchUpload,
            "`{upload_id}` is not an upload id of this gateway"
        ));
    }
    Ok(format!("{UPLOADS}{bucket}/{upload_id}/"))
}

/// The key of part `n` of an upload (zero-padded so that parts list in
/// order).
pub fn part_key(dir: &str, n: i32) -> Result<String, S3Error> {
    if !(1..=10_000).contains(&n) {
        return Err(s3_error!(
            InvalidArgument,
            "part numbers go from 1 to 10000; got {n}"
        ));
    }
    Ok(format!("{dir}{n:05}"))
}

/// The part number of a key under an upload's folder.
pub fn part_number(dir: &str, key: &str) -> Option<i32> {
    let n = key.strip_prefix(dir)?;
    (n.len() == 5 && n.bytes().all(|b| b.is_ascii_digit())).then(|| n.parse().ok())?
}

/// The key of an upload's description (target key, metadata).
pub fn upload_info_key(dir: &str) -> String {
    format!("{dir}info")
}

/// Upload ids are 32 lowercase hex digits.
pub fn valid_upload_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A fresh upload id.
pub fn new_upload_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The smallest string greater than every string that starts with `s`:
/// the last character incremented (`a/` → `a0`). Used to list past
/// everything under a common prefix. `None` when no such string exists.
pub fn successor(s: &str) -> Option<String> {
    let mut chars: Vec<char> = s.chars().collect();
    while let Some(c) = chars.pop() {
        let mut next = c as u32 + 1;
        if next == 0xD800 {
            next = 0xE000;
        }
        if let Some(n) = char::from_u32(next) {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// A `versionId` on an object: buckets are not versioned, so the only
/// version there is is `null`; any other is `InvalidArgument`.
pub(crate) fn check_version(version: Option<&str>) -> S3Result<()> {
    match version {
        None | Some("null") => Ok(()),
        Some(v) => Err(s3_error!(
            InvalidArgument,
            "version `{v}` does not exist: buckets are not versioned (the only version is `null`)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3() {
        for ok in [
            "abc",
            "my-bucket",
            "my.bucket.1",
            "a1b",
            "a.-b",
            "a-.b",
            "s3alias",
            &"a".repeat(63),
        ] {
            assert!(valid_bucket(ok), "{ok}");
            assert!(new_bucket(ok).is_ok(), "{ok}");
        }
        // Reserved: refused for a new bucket, still reachable if it exists.
        for reserved in [
            "xn--abc",
            "sthree-abc",
            "amzn-s3-demo-abc",
            "abc-s3alias",
            "abc--ol-s3",
            "abc.mrap",
            "abc--x-s3",
            "abc--table-s3",
        ] {
            assert!(valid_bucket(reserved), "{reserved}");
            assert!(new_bucket(reserved).is_err(), "{reserved}");
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "ABC",
            "-abc",
            "abc-",
            ".abc",
            "a..b",
            "a_b",
            "192.168.1.1",
            ".s3",
            "-",
        ] {
            assert!(!valid_bucket(bad), "{bad}");
        }
    }

    #[test]
    fn keys_map_to_paths_under_the_bucket() {
        assert_eq!(object_key("b12", "a/b c+%✓/").unwrap(), "/b12/a/b c+%✓/");
        assert_eq!(object_key("b12", "a").unwrap(), "/b12/a");
        assert_eq!(s3_key("b12", "/b12/a/b").unwrap(), "a/b");
        assert_eq!(s3_key("b12", "/b12/"), None, "the marker is not an object");
        assert_eq!(s3_key("b12", "/b123/x"), None);
        let e = object_key("b12", "a/../b").unwrap_err();
        assert_eq!(*e.code(), s3s::S3ErrorCode::InvalidArgument);
        let e = object_key("b12", ".").unwrap_err();
        assert_eq!(*e.code(), s3s::S3ErrorCode::InvalidArgument);
        let e = object_key("b12", &"k".repeat(5000)).unwrap_err();
        assert_eq!(*e.code(), s3s::S3ErrorCode::KeyTooLongError);
        assert!(object_key("b12", "").is_err());
        assert!(object_key("B", "x").is_err());
    }

    #[test]
    fn parts_sort_by_number() {
        let dir = upload_dir("b12", &"ab".repeat(16)).unwrap();
        assert_eq!(dir, format!("/.s3/uploads/b12/{}/", "ab".repeat(16)));
        let p = part_key(&dir, 7).unwrap();
        assert!(p.ends_with("/00007"));
        assert_eq!(part_number(&dir, &p), Some(7));
        assert_eq!(part_number(&dir, &upload_info_key(&dir)), None);
        assert!(part_key(&dir, 0).is_err() && part_key(&dir, 10_001).is_err());
        assert!(part_key(&dir, 9).unwrap() < part_key(&dir, 10).unwrap());
        assert!(upload_dir("b12", "../x").is_err());
        assert!(valid_upload_id(&new_upload_id()));
    }

    #[test]
    fn successor_skips_a_whole_prefix() {
        assert_eq!(successor("a/").unwrap(), "a0");
        assert_eq!(successor("/b/x/").unwrap(), "/b/x0");
        assert!(successor("a/").unwrap().as_str() > "a/zzzz");
        assert_eq!(successor(""), None);
    }
}
