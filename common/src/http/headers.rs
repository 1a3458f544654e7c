//! Trove's header and query-parameter names, and the headers that carry a
//! value's metadata and a write's flags.

use crate::record::{meta_size, Meta, ETAG_META, META_LIMIT, STORED_HEADERS, USER_META_PREFIX};

/// md5 of the whole value, 32 hex digits (minikeyvalue's header).
pub const CONTENT_MD5: &str = "content-md5";
/// sha256 of the whole value, 64 hex digits.
pub const KEY_SHA256: &str = "key-sha256";
/// The CRC32C (8 hex digits) of a value's bytes: in a volume's answer to
/// a master write (what it stored, which the master compares with its
/// own), in the master's `201`, and from a client that announces what it
/// sends (a header, or the trailer of a chunked body).
pub const KEY_CRC32C: &str = "key-crc32c";
/// The length of a chunked request body (which cannot have a
/// `Content-Length`), sent so that a trailer can follow the body.
pub const TROVE_LENGTH: &str = "trove-length";
/// md5 of the whole value, 32 hex digits (sent by volumes).
pub const KEY_MD5: &str = "key-md5";
/// Length of the whole value in bytes.
pub const KEY_SIZE: &str = "key-size";
/// Comma-joined `host:port` of the volumes holding the value.
pub const KEY_VOLUMES: &str = "key-volumes";
/// `balanced` when the stored volumes equal the current placement.
pub const KEY_BALANCE: &str = "key-balance";
/// When the value was written, Unix milliseconds.
pub const KEY_CREATED: &str = "key-created";
/// When the key expires, Unix milliseconds (keys written with a TTL).
pub const KEY_EXPIRES: &str = "key-expires";
/// On a write: expire the key this long after it (`3600`, `90s`, `1h`,
/// `7d`), or `never` (overrides the master's `--default-ttl`).
pub const TROVE_EXPIRES_AFTER: &str = "trove-expires-after";
/// On a write: expire the key at this time (Unix seconds, or an HTTP date).
pub const TROVE_EXPIRES_AT: &str = "trove-expires-at";
/// The id of the master write an upload to a volume belongs to.
pub const TROVE_WRITE: &str = "trove-write";
/// `1` on the `PUT` and `DELETE` of a key a master sends a volume: a
/// volume refuses them without it, so a client given a volume's address
/// for the master's (`trove --master`, curl) is told so, instead of
/// storing a copy no record names (gc's to delete) or deleting a replica
/// from under a live key.
pub const TROVE_MASTER: &str = "trove-master";
/// The `Server` of every master answer (`trove-master/<version>`).
pub const MASTER_SERVER: &str = concat!("trove-master/", env!("CARGO_PKG_VERSION"));
/// The `Server` of every volume answer (`trove-volume/<version>`): a client
/// given a volume's address for the master's tells so from any answer (a
/// volume serves `/-/healthy` and its copies' keys as a master would).
pub const VOLUME_SERVER: &str = concat!("trove-volume/", env!("CARGO_PKG_VERSION"));

/// Whether a `Server` header names a Trove volume, of any version.
pub fn is_volume_server(value: &[u8]) -> bool {
    value.starts_with(b"trove-volume/")
}
/// A volume's state of the copy it serves (`pending`, `live`, `unlinked`).
pub const KEY_STATE: &str = "key-state";
/// An error answer's reason, as in its body: a `HEAD` has no body to
/// carry it (visible ASCII, at most [`crate::http::answer::REASON_HEADER_MAX`] bytes).
pub const TROVE_ERROR: &str = "trove-error";
/// On a write: `1` lets the value replace a live one, atomically for
/// readers (without it a live key is `403`, keys being write-once).
pub const TROVE_REPLACE: &str = "trove-replace";
/// On a write: `1` makes an empty body a valid (zero-length) value.
pub const TROVE_ALLOW_EMPTY: &str = "trove-allow-empty";
/// On a write: the ETag to report for the value instead of its md5.
pub const TROVE_ETAG: &str = "trove-etag";
/// On a compose: `1` keeps the sources' lengths as the value's parts
/// (S3's CompleteMultipartUpload), so that a reader can ask for one part.
pub const TROVE_KEEP_PARTS: &str = "trove-keep-parts";
/// On a `GET`/`HEAD` of a key: the part (1-based) whose byte range the
/// redirect should describe ([`KEY_PART_OFFSET`], [`KEY_PART_SIZE`]).
pub const TROVE_PART: &str = "trove-part";
/// On a read's redirect: how many parts the value was composed from, for a
/// value whose parts were kept (absent for any other value).
pub const KEY_PARTS: &str = "key-parts";
/// On a read's redirect asked for `Trove-Part: N`: where part N starts in
/// the value, in bytes (absent when the value has no part N).
pub const KEY_PART_OFFSET: &str = "key-part-offset";
/// On a read's redirect asked for `Trove-Part: N`: part N's length.
pub const KEY_PART_SIZE: &str = "key-part-size";
/// On a read's redirect: the id of the write that stored the value.
pub const KEY_WRITE: &str = "key-write";
/// On an upload to a volume: the id of the write whose copy the new one
/// replaces (a live value); the volume keeps that copy aside until the new
/// one is confirmed, so readers pinned to it are still served.
pub const TROVE_REPLACES: &str = "trove-replaces";
/// The query parameter pinning a volume read to one write's copy.
pub const WRITE_PARAM: &str = "write";
/// The query parameter pinning a volume read to the copy with these bytes
/// (hex sha256): for values stored before writes had ids.
pub const SHA256_PARAM: &str = "sha256";
/// The volume's answer to a read pinned to a write whose copy it no
/// longer holds: the value was replaced after the redirect was made. A
/// client recognises it by [`ASK_AGAIN`], which every version's text
/// has said.
pub const REPLACED_MESSAGE: &str =
    "this volume no longer holds that write of the key (replaced, deleted or lost); ask the master again";
/// What marks a volume's `404` as [`REPLACED_MESSAGE`], in this version's
/// text and in earlier ones' ("this value was replaced; ask the master
/// again"): the answer to look for, not the whole sentence.
pub const ASK_AGAIN: &str = "ask the master again";

/// The value of header `name` (`shown` in messages), sent at most once:
/// a header that means one thing cannot be sent twice (which of two
/// `Trove-Replace` or `Content-MD5` values would count?), and it must be
/// ASCII text.
pub fn single<'a>(
    headers: &'a axum::http::HeaderMap,
    name: &str,
    shown: &str,
) -> Result<Option<&'a str>, String> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(format!("{shown} was sent more than once; send it once"));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| format!("{shown} is not ASCII"))
}

/// Whether a flag header (`Trove-Replace`, `Trove-Allow-Empty`) is set:
/// absent or `0`/`false` → `Ok(false)`, `1`/`true` → `Ok(true)`, anything
/// else (twice, say) a message saying so.
pub fn flag(headers: &axum::http::HeaderMap, name: &str) -> Result<bool, String> {
    match single(headers, name, name)?.map(str::trim) {
        None => Ok(false),
        Some("1" | "true") => Ok(true),
        Some("0" | "false") => Ok(false),
        Some(_) => Err(format!("{name} must be 1 (or true) or 0 (or false)")),
    }
}

/// Reads a value's metadata from a write's headers: the standard ones
/// (`Content-Type`, `Content-Disposition`, `Cache-Control`,
/// `Content-Encoding`, `Content-Language`, `Expires`), every
/// `X-Amz-Meta-*` (names lower-cased, values as sent) and `Trove-Etag`.
/// A header sent more than once is joined with `,` (RFC 9110 §5.3). An
/// error says what is wrong: metadata over [`META_LIMIT`] bytes, a value
/// that is not UTF-8, an ETag with a quote.
pub fn meta_from_headers(headers: &axum::http::HeaderMap) -> Result<Meta, String> {
    let mut meta = Meta::new();
    for (name, value) in headers {
        let name = name.as_str(); // lower-case already
        let kept = STORED_HEADERS.contains(&name)
            || name == ETAG_META
            || (name.starts_with(USER_META_PREFIX) && name.len() > USER_META_PREFIX.len());
        if !kept {
            continue;
        }
        let value =
            std::str::from_utf8(value.as_bytes()).map_err(|_| format!("the value of {name} is not UTF-8"))?;
        if name == ETAG_META && meta.contains_key(name) {
            return Err("Trove-Etag was sent more than once; send it once".into());
        }
        meta.entry(name.to_string())
            .and_modify(|v| {
                v.push(',');
                v.push_str(value);
            })
            .or_insert_with(|| value.to_string());
    }
    if let Some(etag) = meta.get(ETAG_META) {
        // Answered as `ETag: "<etag>"`: visible ASCII, no quotes.
        let visible = |b: u8| (0x21..=0x7e).contains(&b) && b != b'"';
        if etag.is_empty() || etag.len() > 256 || !etag.bytes().all(visible) {
            return Err("Trove-Etag must be 1 to 256 visible ASCII characters without quotes".into());
        }
    }
    let size = meta_size(&meta);
    if size > META_LIMIT {
        return Err(format!(
            "the value's metadata (Content-Type, Content-Disposition, Cache-Control, Content-Encoding, Content-Language, Expires, X-Amz-Meta-*, Trove-Etag) is {size} bytes; at most {META_LIMIT} are allowed"
        ));
    }
    Ok(meta)
}

/// The headers that carry `meta`, for an answer or a request: each entry
/// under its own name (`Trove-Etag` included, for a volume to store).
/// Entries that cannot be a header (hand-edited sidecars) are skipped.
pub fn meta_headers(
    meta: &Meta,
) -> impl Iterator<Item = (axum::http::HeaderName, axum::http::HeaderValue)> + '_ {
    meta.iter().filter_map(|(n, v)| {
        Some((
            axum::http::HeaderName::from_bytes(n.as_bytes()).ok()?,
            axum::http::HeaderValue::from_bytes(v.as_bytes()).ok()?,
        ))
    })
}

/// `"<etag>"`: an ETag header's value.
pub fn quoted_etag(etag: &str) -> String {
    format!("\"{etag}\"")
}

/// Whether `id` is a well-formed write id: 1 to 64 ASCII letters, digits
/// or `-`.
pub fn valid_write_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_answer_is_known_by_its_request_to_ask_again() {
        assert!(REPLACED_MESSAGE.contains(ASK_AGAIN));
        assert!("this value was replaced; ask the master again".contains(ASK_AGAIN));
    }

    #[test]
    fn metadata_from_headers() {
        use axum::http::{HeaderMap, HeaderValue};
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        h.insert("X-Amz-Meta-Colour", HeaderValue::from_static("Blue"));
        h.append("x-amz-meta-tag", HeaderValue::from_static("a"));
        h.append("x-amz-meta-tag", HeaderValue::from_static("b"));
        h.insert("trove-etag", HeaderValue::from_static("abc-2"));
        h.insert("content-length", HeaderValue::from_static("5"));
        h.insert("x-amz-meta-", HeaderValue::from_static("nameless"));
        h.insert(
            "expires",
            HeaderValue::from_bytes("demain à midi".as_bytes()).unwrap(),
        );
        let meta = meta_from_headers(&h).unwrap();
        let pairs: Vec<(&str, &str)> = meta.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("content-type", "text/plain"),
                ("expires", "demain à midi"),
                ("trove-etag", "abc-2"),
                ("x-amz-meta-colour", "Blue"),
                ("x-amz-meta-tag", "a,b"),
            ]
        );
        // Back into headers, byte for byte.
        let back: HeaderMap = meta_headers(&meta).collect();
        assert_eq!(meta_from_headers(&back).unwrap(), meta);

        let mut big = HeaderMap::new();
        big.insert(
            "x-amz-meta-big",
            HeaderValue::from_str(&"x".repeat(META_LIMIT)).unwrap(),
        );
        assert!(meta_from_headers(&big).unwrap_err().contains("at most 8192"));
        for bad in ["\"abc\"", "a b", ""] {
            let mut etag = HeaderMap::new();
            etag.insert("trove-etag", HeaderValue::from_str(bad).unwrap());
            assert!(meta_from_headers(&etag).is_err(), "{bad:?}");
        }
        let mut latin1 = HeaderMap::new();
        latin1.insert("content-type", HeaderValue::from_bytes(&[0xe9]).unwrap());
        assert!(meta_from_headers(&latin1).unwrap_err().contains("not UTF-8"));
    }

    #[test]
    fn flags() {
        use axum::http::{HeaderMap, HeaderValue};
        let mut h = HeaderMap::new();
        assert_eq!(flag(&h, TROVE_REPLACE), Ok(false));
        h.insert(TROVE_REPLACE, HeaderValue::from_static("1"));
        assert_eq!(flag(&h, TROVE_REPLACE), Ok(true));
        h.insert(TROVE_REPLACE, HeaderValue::from_static("yes"));
        assert!(flag(&h, TROVE_REPLACE).is_err());
        // Set and unset at once: refused, not whichever comes first.
        h.insert(TROVE_REPLACE, HeaderValue::from_static("1"));
        h.append(TROVE_REPLACE, HeaderValue::from_static("0"));
        assert!(flag(&h, TROVE_REPLACE).unwrap_err().contains("more than once"));
    }
}
