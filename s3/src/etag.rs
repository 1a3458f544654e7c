//! ETags as S3 clients check them: a single PUT's is the hex md5 of the
//! body; a multipart object's is the md5 of the parts' binary md5s
//! concatenated, in hex, followed by `-<number of parts>`.

use md5::{Digest, Md5};
use s3s::dto::{ETag, ETagCondition};
use s3s::{s3_error, S3Result};
use trove_client::PutOptions;

/// The ETag of an object assembled from parts with these (hex md5)
/// ETags, in order; `None` if one is not 32 hex digits.
pub fn multipart(part_etags: &[&str]) -> Option<String> {
    let mut h = Md5::new();
    for e in part_etags {
        let raw = hex::decode(e).ok().filter(|r| r.len() == 16)?;
        h.update(&raw);
    }
    Some(format!("{}-{}", hex::encode(h.finalize()), part_etags.len()))
}

/// The DTO of an unquoted ETag.
pub fn dto(etag: &str) -> ETag {
    ETag::Strong(etag.to_string())
}

/// Whether an ETag a client sent (quoted or not) names `ours`.
pub fn same(theirs: &str, ours: &str) -> bool {
    theirs.trim().trim_start_matches("W/").trim_matches('"') == ours
}

/// A condition as the `If-Match` / `If-None-Match` header the master
/// checks (`*`, `"etag"` or `W/"etag"`).
pub fn condition_header(c: &ETagCondition) -> String {
    match c {
        ETagCondition::Any => "*".to_string(),
        ETagCondition::ETag(ETag::Strong(v)) => format!("\"{v}\""),
        ETagCondition::ETag(ETag::Weak(v)) => format!("W/\"{v}\""),
    }
}

/// A write's conditions on its destination (`If-Match`, `If-None-Match`)
/// as the [`PutOptions`] the master checks under the key's lock, every
/// other option default (fill them with `..`): PutObject, CopyObject,
/// CompleteMultipartUpload.
pub fn destination_conditions(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> PutOptions {
    PutOptions {
        if_match: if_match.map(condition_header),
        if_none_match: if_none_match.map(condition_header),
        ..Default::default()
    }
}

/// The `If-Match` / `If-None-Match` headers of a request whose input
/// s3s does not parse them into (CopyObject, in s3s 0.14), parsed as
/// s3s parses them for PutObject.
pub fn conditions_in(headers: &http::HeaderMap) -> S3Result<(Option<ETagCondition>, Option<ETagCondition>)> {
    let parse = |name: http::header::HeaderName| {
        headers
            .get(&name)
            .map(|v| {
                ETagCondition::parse_http_header(v.as_bytes())
                    .map_err(|_| s3_error!(InvalidArgument, "invalid header: {name}"))
            })
            .transpose()
    };
    Ok((
        parse(http::header::IF_MATCH)?,
        parse(http::header::IF_NONE_MATCH)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_become_headers() {
        assert_eq!(condition_header(&ETagCondition::Any), "*");
        assert_eq!(condition_header(&ETagCondition::ETag(dto("abc"))), "\"abc\"");
        let weak = ETagCondition::ETag(ETag::Weak("w".into()));
        assert_eq!(condition_header(&weak), "W/\"w\"");
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::IF_NONE_MATCH, http::HeaderValue::from_static("*"));
        headers.insert(http::header::IF_MATCH, http::HeaderValue::from_static("\"abc\""));
        let (m, n) = conditions_in(&headers).unwrap();
        let opts = destination_conditions(m.as_ref(), n.as_ref());
        assert_eq!(opts.if_match.as_deref(), Some("\"abc\""));
        assert_eq!(opts.if_none_match.as_deref(), Some("*"));
    }

    #[test]
    fn multipart_etag_is_md5_of_md5s() {
        // Golden value: two parts "a" and "b"; md5("a") and md5("b")
        // concatenated and hashed, computed independently with Python's hashlib.
        let a = "0cc175b9c0f1b6a831c399e269772661";
        let b = "92eb5ffee6ae2fec3ad71c777531578f";
        assert_eq!(multipart(&[a, b]).unwrap(), "96e024ba2074fe77e8e965ba43a704be-2");
        assert!(multipart(&["nothex"]).is_none());
        assert!(same("\"abc\"", "abc") && same("abc", "abc") && !same("\"abd\"", "abc"));
    }
}
