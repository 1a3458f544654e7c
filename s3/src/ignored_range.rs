//! A GET or HEAD whose `Range` header Trove cannot honour — malformed
//! (`bytes=abc`, `bytes=5-2`), several ranges (`bytes=0-1,3-4`), another
//! unit (`items=0-1`), sent twice — is answered as if it had none: `200`
//! with the whole object, as RFC 9110 §14.2 asks and AWS does. s3s
//! instead refuses such a header with `400 InvalidArgument` while it
//! parses the request. s3s also refuses valid ranges whose positions
//! exceed 2^63 - 1; those are answered as their meaning asks instead: a
//! first position that large is past the end of any object (`416
//! InvalidRange`), a last one that large means "to the end" (`206`).
//!
//! The header cannot simply be dropped before s3s sees it: SDKs sign every
//! header, `Range` included, and the signature would no longer match. So
//! such a request takes an s3s custom route ([`IgnoredRange`]), which s3s
//! consults once the signature has been checked: the route drops the
//! header and the request's credentials and hands it to a second service
//! over the same [`Gateway`] that has no authentication — reachable only
//! from this route, never from the network.

use crate::gateway::Gateway;
use http::header::{AUTHORIZATION, RANGE};
use http::{Extensions, HeaderMap, Method, Uri};
use s3s::route::S3Route;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{s3_error, Body, S3Request, S3Response, S3Result};

/// The route of requests whose `Range` is ignored (see the module docs).
pub struct IgnoredRange {
    /// The same operations with no authentication of their own: for
    /// requests the service this route belongs to has authenticated.
    trusted: S3Service,
}

impl IgnoredRange {
    pub fn new(gateway: Gateway) -> IgnoredRange {
        IgnoredRange {
            trusted: {
                let mut builder = S3ServiceBuilder::new(gateway);
                builder.set_validation(crate::names::BucketNames);
                builder.build()
            },
        }
    }
}

/// Whether `headers` carry a `Range` that s3s would refuse: not exactly
/// one header, or one its parser (one `bytes=` range: `first-last`,
/// `first-`, `-suffix`) does not accept.
pub fn ignored_range(headers: &HeaderMap) -> bool {
    let mut ranges = headers.get_all(RANGE).iter();
    match (ranges.next(), ranges.next()) {
        (None, _) => false,
        (Some(one), None) => !one.to_str().is_ok_and(|v| s3s::dto::Range::parse(v).is_ok()),
        (Some(_), Some(_)) => true,
    }
}

/// The largest position s3s's parser takes.
const S3S_MAX: u64 = i64::MAX as u64;

/// One valid `bytes=first-[last]` range with a position beyond what s3s
/// parses ([`S3S_MAX`]), as a range s3s takes and answers the same: a
/// first position that large is past the end of every object (`416`), a
/// last one means "to the end". `None` for anything else.
fn within_s3s_limits(value: &str) -> Option<String> {
    let (unit, spec) = value.trim().split_once('=')?;
    let (first, last) = spec.trim().split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    // Positions as numbers of any length: (digit count, digits).
    let number = |s: &str| {
        let s = s.trim_start_matches('0');
        (s.len(), s.to_string())
    };
    let too_large = |s: &str| s.parse::<u64>().map_or(true, |n| n > S3S_MAX);
    if !unit.trim().eq_ignore_ascii_case("bytes") || !digits(first) {
        return None;
    }
    if !last.is_empty() && (!digits(last) || number(last) < number(first)) {
        return None;
    }
    if too_large(first) {
        Some(format!("bytes={S3S_MAX}-"))
    } else if !last.is_empty() && too_large(last) {
        Some(format!(
            "bytes={}-",
            first.trim_start_matches('0').parse::<u64>().unwrap_or(0)
        ))
    } else {
        None
    }
}

/// The query without the parameters of a presigned URL's signature
/// (SigV4's `X-Amz-*`, SigV2's `Signature`, `AWSAccessKeyId`, `Expires`),
/// which the service without authentication would refuse to check.
fn without_signature(uri: &Uri) -> S3Result<Uri> {
    let Some(query) = uri.query() else {
        return Ok(uri.clone());
    };
    let is_signature = |pair: &&str| {
        let name = pair.split('=').next().unwrap_or_default();
        name.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("x-amz-"))
            || matches!(name, "Signature" | "AWSAccessKeyId" | "Expires")
    };
    let kept: Vec<&str> = query.split('&').filter(|p| !is_signature(p)).collect();
    let path_and_query = if kept.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{}", uri.path(), kept.join("&"))
    };
    path_and_query
        .parse()
        .map_err(|e| s3_error!(InvalidURI, "cannot rebuild the request's URI: {e}"))
}

#[async_trait::async_trait]
impl S3Route for IgnoredRange {
    fn is_match(&self, method: &Method, _uri: &Uri, headers: &HeaderMap, _: &mut Extensions) -> bool {
        matches!(*method, Method::GET | Method::HEAD) && ignored_range(headers)
    }

    /// What the service's access hook asks of every operation (s3s does
    /// not run that hook for a custom route): credentials, whose
    /// signature s3s has checked, and a presigned URL within 7 days.
    async fn check_access(&self, req: &mut S3Request<Body>) -> S3Result<()> {
        crate::access::check_signed(req.credentials.is_some(), &req.uri, &req.headers)
    }

    async fn call(&self, req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        let mut headers = req.headers;
        let honoured = headers
            .get(RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(within_s3s_limits);
        match honoured {
            Some(range) => headers.insert(RANGE, http::HeaderValue::from_str(&range).expect("ASCII")),
            None => headers.remove(RANGE),
        };
        headers.remove(AUTHORIZATION);
        let mut forwarded = hyper::Request::new(req.input);
        *forwarded.method_mut() = req.method;
        *forwarded.uri_mut() = without_signature(&req.uri)?;
        *forwarded.headers_mut() = headers;
        // The zero-copy handle of the connection, among others.
        *forwarded.extensions_mut() = req.extensions;
        let answer = self
            .trusted
            .call(forwarded)
            .await
            .map_err(|e| s3_error!(InternalError, "the request without its Range failed: {e:?}"))?;
        let (parts, body) = answer.into_parts();
        let mut out = S3Response::new(body);
        out.status = Some(parts.status);
        out.headers = parts.headers;
        out.extensions = parts.extensions;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_ranges(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(RANGE, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_ranges_s3s_would_refuse_are_ignored() {
        assert!(!ignored_range(&HeaderMap::new()));
        for honoured in ["bytes=0-9", "bytes=990-", "bytes=-7", "bytes=5000-6000"] {
            assert!(!ignored_range(&with_ranges(&[honoured])), "{honoured}");
        }
        for ignored in ["bytes=5-2", "bytes=0-1,3-4", "bytes=abc", "items=0-1", "bytes="] {
            assert!(ignored_range(&with_ranges(&[ignored])), "{ignored}");
        }
        assert!(ignored_range(&with_ranges(&["bytes=0-1", "bytes=2-3"])));
    }

    #[test]
    fn positions_beyond_what_s3s_parses_are_brought_within_it() {
        let huge = "99999999999999999999999";
        let past = format!("bytes={S3S_MAX}-");
        for (range, honoured) in [
            (format!("bytes={huge}-"), past.clone()),
            (format!("BYTES=0{huge}-{huge}9"), past.clone()),
            (format!("bytes={}-", S3S_MAX + 1), past.clone()),
            (format!("bytes=10-{huge}"), "bytes=10-".to_string()),
            (format!("bytes=007-{}", u64::MAX), "bytes=7-".to_string()),
        ] {
            assert_eq!(
                within_s3s_limits(&range).as_deref(),
                Some(honoured.as_str()),
                "{range}"
            );
            let value = http::HeaderValue::from_str(&range).unwrap();
            let mut headers = HeaderMap::new();
            headers.insert(RANGE, value);
            assert!(ignored_range(&headers), "{range} is one s3s refuses");
        }
        for other in [
            "bytes=0-9".to_string(),
            format!("bytes={huge}-5"),
            format!("bytes=-{huge}"),
            format!("bytes={huge}-1,2-3"),
            format!("items={huge}-"),
            format!("bytes={S3S_MAX}-"),
            "bytes=abc".to_string(),
        ] {
            assert_eq!(within_s3s_limits(&other), None, "{other}");
        }
    }

    #[test]
    fn presigned_parameters_are_dropped_and_others_kept() {
        let uri: Uri = "/b/k?response-content-type=text%2Fplain&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=abc&partNumber=1"
            .parse()
            .unwrap();
        assert_eq!(
            without_signature(&uri).unwrap().to_string(),
            "/b/k?response-content-type=text%2Fplain&partNumber=1"
        );
        let v2: Uri = "/b/k?AWSAccessKeyId=AK&Expires=1&Signature=x".parse().unwrap();
        assert_eq!(without_signature(&v2).unwrap().to_string(), "/b/k");
        let plain: Uri = "/b/k".parse().unwrap();
        assert_eq!(without_signature(&plain).unwrap().to_string(), "/b/k");
    }
}
