//! What every request must pass once s3s has checked its signature and
//! before its operation runs (s3s's access hook): a signature at all, a
//! presigned URL valid for at most 7 days, and an XML body (read whole by
//! s3s before the operation sees it) of at most [`MAX_XML_BODY`].

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
        check_signed(cx.credentials().is_some(), cx.uri())?;
        if !STREAMED_BODY_OPERATIONS.contains(&cx.s3_op().name()) {
            check_xml_body_length(cx.headers())?;
        }
        Ok(())
    }
}

/// What every request must pass, whichever way s3s routes it (an
/// operation, or [`crate::ignored_range`]'s custom route): a signature
/// (what s3s's default hook asks: anonymous requests are refused), and a
/// presigned URL valid for at most 7 days.
pub fn check_signed(has_credentials: bool, uri: &http::Uri) -> S3Result<()> {
    if !has_credentials {
        return Err(s3_error!(AccessDenied, "Signature is required"));
    }
    check_presigned_expiry(uri.query())
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

/// A body s3s would read whole, announced longer than [`MAX_XML_BODY`]:
/// `MaxMessageLengthExceeded` before a byte of it is read. (s3s applies
/// the same bound while it reads a body sent without a length, but
/// answers that one `InternalError`.)
fn check_xml_body_length(headers: &http::HeaderMap) -> S3Result<()> {
    let length = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match length {
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
    }
}
