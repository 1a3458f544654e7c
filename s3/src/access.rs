//! What every request must pass once s3s has checked its signature and
//! before its operation runs (s3s's access hook): a signature at all, a
//! presigned URL valid for at most 7 days, every `x-amz-*` header signed,
//! no query parameter a data-changing operation does not take, and an XML
//! body (read whole by s3s before the operation sees it) of at most
//! [`MAX_XML_BODY`].

use s3s::access::{S3Access, S3AccessContext};
use s3s::{s3_error, S3Result};

/// The largest request body s3s reads whole (CompleteMultipartUpload,
/// DeleteObjects, CreateBucket's configuration, …). The largest S3 allows
/// fit with room to spare: a Complete of 10,000 parts, each with its
/// ETag and a checksum, is about 1.5 MB; a DeleteObjects of 1,000 keys of
/// 1 KiB about 1.2 MB, and 6 MB in the worst case, every key's byte
/// escaped (`&quot;`). s3s's own default is 20 MiB; as the bodies are held
/// in memory until parsed, a lower bound keeps a burst of them small.
pub const MAX_XML_BODY: usize = 8 << 20;

/// The longest a SigV4 presigned URL may be valid, as AWS allows: 7 days.
pub const MAX_PRESIGNED_EXPIRY_SECS: u64 = 7 * 24 * 3600;

/// The operations whose bodies are object data, streamed and never read
/// whole (their size is bounded by the master, not here).
const STREAMED_BODY_OPERATIONS: [&str; 2] = ["PutObject", "UploadPart"];

/// s3s's access hook for the gateway.
pub struct Admission;

#[async_trait::async_trait]
impl S3Access for Admission {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        check_signed(cx.credentials().is_some(), cx.uri(), cx.headers())?;
        check_query(cx.s3_op().name(), cx.uri().query())?;
        if !STREAMED_BODY_OPERATIONS.contains(&cx.s3_op().name()) {
            check_xml_body_length(cx.headers())?;
        }
        Ok(())
    }
}

/// What every request must pass, whichever way s3s routes it (an
/// operation, or [`crate::ignored_range`]'s custom route): a signature
/// (what s3s's default hook asks: anonymous requests are refused), and a
/// presigned URL valid for at most 7 days, and every `x-amz-*` header
/// signed.
pub fn check_signed(has_credentials: bool, uri: &http::Uri, headers: &http::HeaderMap) -> S3Result<()> {
    if !has_credentials {
        return Err(s3_error!(AccessDenied, "Signature is required"));
    }
    check_presigned_expiry(uri.query())?;
    check_headers_signed(uri.query(), headers)
}

/// SigV4 signs only the headers its `SignedHeaders` names; s3s checks
/// those and lets the others through. An `x-amz-*` header changes what a
/// request does (`x-amz-copy-source` turns a PUT into a copy of any
/// object the signer may read), so one left unsigned is refused, as AWS
/// does: otherwise anyone holding a presigned PUT URL could add one.
/// SigV2 signs every `x-amz-*` header itself; a presigned URL's payload
/// hash (`x-amz-content-sha256`) may stay unsigned, as on AWS.
fn check_headers_signed(query: Option<&str>, headers: &http::HeaderMap) -> S3Result<()> {
    let authorization = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let (signed, presigned): (String, bool) = match authorization {
        Some(a) if a.starts_with("AWS4-HMAC-SHA256") => {
            let Some(list) = a
                .split(',')
                .find_map(|part| part.trim().split_once("SignedHeaders="))
            else {
                return Ok(()); // s3s refused a malformed header already
            };
            (list.1.trim().to_string(), false)
        }
        Some(_) => return Ok(()), // SigV2
        None => {
            let Some(list) = query_value(query, "X-Amz-SignedHeaders") else {
                return Ok(()); // SigV2 presigned
            };
            (list, true)
        }
    };
    let signed: Vec<String> = signed.split(';').map(|h| h.trim().to_ascii_lowercase()).collect();
    let mut unsigned: Vec<&str> = headers
        .keys()
        .map(http::HeaderName::as_str)
        .filter(|name| name.starts_with("x-amz-"))
        .filter(|name| !(presigned && *name == "x-amz-content-sha256"))
        .filter(|name| !signed.iter().any(|s| s == name))
        .collect();
    if unsigned.is_empty() {
        return Ok(());
    }
    unsigned.sort_unstable();
    unsigned.dedup();
    Err(s3_error!(
        AccessDenied,
        "There were headers present in the request which were not signed: {}",
        unsigned.join(", ")
    ))
}

/// The percent-decoded value of the query parameter `name`.
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
}

/// The query parameters each data-changing operation takes (besides
/// those of any request: see [`check_query`]). s3s routes a request by
/// the subresources it knows and ignores the others, so `PUT
/// /b/k?renameObject` would be a PutObject storing an empty object, and
/// `DELETE /b?foo` a DeleteBucket.
const OPERATION_QUERIES: [(&str, &[&str]); 11] = [
    ("PutObject", &[]),
    ("CopyObject", &[]),
    ("DeleteObject", &["versionId"]),
    ("DeleteObjects", &["delete"]),
    ("DeleteBucket", &[]),
    ("CreateBucket", &[]),
    ("CreateMultipartUpload", &["uploads"]),
    ("UploadPart", &["partNumber", "uploadId"]),
    ("UploadPartCopy", &["partNumber", "uploadId"]),
    ("CompleteMultipartUpload", &["uploadId"]),
    ("AbortMultipartUpload", &["uploadId"]),
];

/// A data-changing operation with a query parameter it does not take is
/// refused `NotImplemented`, naming it, before anything changes: it asks
/// for something else (an append, a rename) that a plain success would
/// only pretend to do. Any request may carry a presigned URL's
/// parameters (SigV4's `X-Amz-*`, SigV2's `AWSAccessKeyId`, `Signature`,
/// `Expires`, and the `content-type` and `content-md5` botocore repeats
/// in a SigV2 URL) and the `x-id` newer SDKs append, when it names the
/// operation itself.
fn check_query(operation: &str, query: Option<&str>) -> S3Result<()> {
    let Some(query) = query else { return Ok(()) };
    let Some((_, takes)) = OPERATION_QUERIES.iter().find(|(op, _)| *op == operation) else {
        return Ok(());
    };
    // botocore's SigV2 presigned URLs repeat the signed Content-Type and
    // Content-MD5 in the query (the request must still send them as
    // headers, which the signature covers).
    let v2_presigned = query.split('&').any(|p| p.starts_with("AWSAccessKeyId="));
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
        let presign = name.len() > 6 && name[..6].eq_ignore_ascii_case("x-amz-")
            || ["AWSAccessKeyId", "Signature", "Expires"].contains(&name.as_ref())
            || v2_presigned && ["content-type", "content-md5"].contains(&name.to_ascii_lowercase().as_str());
        if presign || takes.contains(&name.as_ref()) {
            continue;
        }
        if name == "x-id" {
            let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
            if value == operation {
                continue;
            }
            return Err(s3_error!(
                NotImplemented,
                "this request is a {operation}, but its x-id asks for `{value}`, which this gateway does not implement; nothing was done"
            ));
        }
        return Err(s3_error!(
            NotImplemented,
            "{operation} with the query parameter `{name}` is not implemented (it asks for something else than a plain {operation}); nothing was done"
        ));
    }
    Ok(())
}

/// `X-Amz-Expires` of a presigned URL: at most 7 days, as on AWS (which
/// answers `AuthorizationQueryParametersError`); s3s checks only that the
/// URL has not expired yet.
fn check_presigned_expiry(query: Option<&str>) -> S3Result<()> {
    let Some(query) = query else { return Ok(()) };
    let expires = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "X-Amz-Expires");
    let Some((_, value)) = expires else { return Ok(()) };
    match value.parse::<u64>() {
        Ok(secs) if secs <= MAX_PRESIGNED_EXPIRY_SECS => Ok(()),
        _ => Err(s3_error!(
            AuthorizationQueryParametersError,
            "X-Amz-Expires must be less than a week (in seconds) that is {MAX_PRESIGNED_EXPIRY_SECS}; got `{value}`: presign the URL for at most 7 days"
        )),
    }
}

/// A body s3s would read whole: announced longer than [`MAX_XML_BODY`],
/// `MaxMessageLengthExceeded`; sent chunked without a `Content-Length`,
/// `MissingContentLength` — both before a byte of it is read. (s3s reads
/// a body sent without a length and then refuses it for that, or answers
/// `InternalError` once it passes the bound; an aws-chunked body has its
/// decoded length in the header by now.)
fn check_xml_body_length(headers: &http::HeaderMap) -> S3Result<()> {
    let Some(length) = headers.get(http::header::CONTENT_LENGTH) else {
        if headers.contains_key(http::header::TRANSFER_ENCODING) {
            return Err(s3_error!(
                MissingContentLength,
                "this request's XML body was sent without a Content-Length; send it with one"
            ));
        }
        return Ok(());
    };
    match length.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(n) if n > MAX_XML_BODY as u64 => Err(s3_error!(
            MaxMessageLengthExceeded,
            "the request body is {n} bytes; this gateway reads at most {MAX_XML_BODY} bytes of XML (a Complete of 10,000 parts or a DeleteObjects of 1,000 keys takes far less)"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::S3ErrorCode;

    #[test]
    fn presigned_urls_are_valid_for_at_most_a_week() {
        assert!(check_presigned_expiry(None).is_ok());
        assert!(check_presigned_expiry(Some("uploads&prefix=a")).is_ok());
        assert!(
            check_presigned_expiry(Some("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=604800")).is_ok()
        );
        for bad in [
            "X-Amz-Expires=604801",
            "a=b&X-Amz-Expires=99999999999",
            "X-Amz-Expires=-1",
        ] {
            let e = check_presigned_expiry(Some(bad)).unwrap_err();
            assert_eq!(*e.code(), S3ErrorCode::AuthorizationQueryParametersError, "{bad}");
        }
    }

    #[test]
    fn unsigned_amz_headers_are_refused() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = http::HeaderMap::new();
            for (n, v) in pairs {
                h.insert(*n, http::HeaderValue::from_static(v));
            }
            h
        };
        let auth = "AWS4-HMAC-SHA256 Credential=AK/20261124/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=00";
        let signed = headers(&[
            ("authorization", auth),
            ("x-amz-date", "20261124T000000Z"),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ]);
        assert!(check_headers_signed(None, &signed).is_ok());
        let mut copy = signed.clone();
        copy.insert("x-amz-copy-source", http::HeaderValue::from_static("/b/secret"));
        copy.insert("x-amz-meta-a", http::HeaderValue::from_static("1"));
        let e = check_headers_signed(None, &copy).unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::AccessDenied);
        assert!(
            e.message()
                .unwrap()
                .ends_with("not signed: x-amz-copy-source, x-amz-meta-a"),
            "{e:?}"
        );
        let query =
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-SignedHeaders=host%3Bx-amz-meta-a&X-Amz-Signature=00";
        let presigned = headers(&[
            ("x-amz-meta-a", "1"),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ]);
        assert!(check_headers_signed(Some(query), &presigned).is_ok());
        let mut copy = presigned.clone();
        copy.insert("x-amz-copy-source", http::HeaderValue::from_static("/b/secret"));
        assert!(check_headers_signed(Some(query), &copy).is_err());
        // SigV2 (header and query) signs every x-amz-* header itself.
        let v2 = headers(&[("authorization", "AWS AK:c2ln"), ("x-amz-copy-source", "/b/k")]);
        assert!(check_headers_signed(None, &v2).is_ok());
        let v2q = headers(&[("x-amz-copy-source", "/b/k")]);
        assert!(check_headers_signed(Some("AWSAccessKeyId=AK&Signature=x&Expires=1"), &v2q).is_ok());
    }

    #[test]
    fn data_changing_operations_refuse_query_parameters_they_do_not_take() {
        let refused = |op, q| {
            let e = check_query(op, Some(q)).unwrap_err();
            assert_eq!(*e.code(), S3ErrorCode::NotImplemented, "{op} {q}");
            e.message().unwrap().to_string()
        };
        assert!(refused("PutObject", "renameObject").contains("`renameObject`"));
        refused("PutObject", "append&position=1");
        refused("PutObject", "x-id=RenameObject");
        refused("DeleteBucket", "foo");
        refused("CreateBucket", "foo=bar");
        refused("DeleteObject", "torrent");
        // Only a SigV2 presigned URL repeats its Content-Type in the query.
        refused("PutObject", "content-type=text%2Fplain");
        for (op, q) in [
            ("PutObject", "x-id=PutObject"),
            (
                "PutObject",
                "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a&X-Amz-Signature=b",
            ),
            ("PutObject", "AWSAccessKeyId=AK&Signature=s&Expires=1"),
            (
                "PutObject",
                "AWSAccessKeyId=AK&Signature=s&Expires=1&content-type=text%2Fplain&content-md5=x",
            ),
            ("DeleteObject", "versionId=null&x-id=DeleteObject"),
            ("UploadPart", "partNumber=1&uploadId=u&x-id=UploadPart"),
            ("DeleteObjects", "delete"),
            ("CreateMultipartUpload", "uploads"),
            ("ListObjectsV2", "list-type=2&whatever"),
        ] {
            assert!(check_query(op, Some(q)).is_ok(), "{op} {q}");
        }
    }

    #[test]
    fn xml_bodies_are_bounded_by_their_announced_length() {
        let with_length = |n: usize| {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::CONTENT_LENGTH, n.into());
            h
        };
        assert!(check_xml_body_length(&http::HeaderMap::new()).is_ok());
        assert!(check_xml_body_length(&with_length(MAX_XML_BODY)).is_ok());
        let e = check_xml_body_length(&with_length(MAX_XML_BODY + 1)).unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::MaxMessageLengthExceeded);
        let mut chunked = http::HeaderMap::new();
        chunked.insert(
            http::header::TRANSFER_ENCODING,
            http::HeaderValue::from_static("chunked"),
        );
        let e = check_xml_body_length(&chunked).unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::MissingContentLength);
    }
}
