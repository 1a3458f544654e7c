//! Dates in conditional headers, made readable for s3s.
//!
//! s3s reads `If-Modified-Since` and the other date conditions only in
//! the preferred form (`Sun, 06 Nov 1994 08:49:37 GMT`) and answers `400`
//! to anything else. RFC 9110 (§5.6.7, §13.1.3) has a recipient accept
//! the two obsolete forms as well (RFC 850's and asctime's) and ignore a
//! date it cannot read — as the master does on reads. So before s3s sees
//! a request, such a date in an old form is rewritten in the preferred
//! one, and one that is no date at all is dropped from a read's
//! conditions (a CopyObject's source conditions guard a write: there it
//! stays, and s3s refuses it, as the master refuses an unreadable date on
//! a write).
//!
//! Only where the header is not signed: changing a signed header would
//! break the request's signature. Signed date conditions come from SDKs,
//! which write the preferred form.

use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};

const DATE_CONDITIONS: [&str; 4] = [
    "if-modified-since",
    "if-unmodified-since",
    "x-amz-copy-source-if-modified-since",
    "x-amz-copy-source-if-unmodified-since",
];

/// Rewrites the date conditions of a request with `headers` and `query`
/// that its signature does not cover (see the module).
pub fn normalise(headers: &mut HeaderMap, query: Option<&str>) {
    for name in DATE_CONDITIONS {
        let Some(value) = headers.get(name) else { continue };
        if signed(headers, query, name) {
            continue;
        }
        let date = value
            .to_str()
            .ok()
            .and_then(|v| httpdate::parse_http_date(v.trim()).ok());
        match date {
            Some(date) => {
                let preferred = httpdate::fmt_http_date(date);
                if preferred.as_bytes() != value.as_bytes() {
                    let preferred =
                        HeaderValue::from_str(&preferred).expect("an HTTP date is a header value");
                    headers.insert(name, preferred);
                }
            }
            // A read ignores a date it cannot read; a copy's condition
            // guards a write, which must not go ahead unguarded (the
            // master refuses such a write too): s3s answers `400`.
            None if !name.starts_with("x-amz-copy-source-") => {
                headers.remove(name);
            }
            None => {}
        }
    }
}

/// Whether the request's signature covers header `name`: SigV4 lists the
/// headers it signs (`SignedHeaders` in `Authorization`, or a presigned
/// URL's `X-Amz-SignedHeaders`); SigV2 signs the `x-amz-*` ones.
fn signed(headers: &HeaderMap, query: Option<&str>, name: &str) -> bool {
    let authorization = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let listed = authorization
        .and_then(|a| a.split_once("SignedHeaders=").map(|(_, rest)| rest))
        .map(|rest| rest.split([',', ' ']).next().unwrap_or_default().to_string())
        .or_else(|| {
            query?
                .split('&')
                .find_map(|p| p.strip_prefix("X-Amz-SignedHeaders="))
                .map(|v| {
                    percent_encoding::percent_decode_str(v)
                        .decode_utf8_lossy()
                        .into_owned()
                })
        });
    if let Some(listed) = listed {
        return listed.split(';').any(|h| h.eq_ignore_ascii_case(name));
    }
    let v2 = authorization.is_some_and(|a| a.starts_with("AWS "))
        || query.is_some_and(|q| q.split('&').any(|p| p.starts_with("AWSAccessKeyId=")));
    v2 && name.starts_with("x-amz-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalised(pairs: &[(&'static str, &'static str)], query: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (n, v) in pairs {
            headers.insert(*n, HeaderValue::from_static(v));
        }
        normalise(&mut headers, query);
        headers
    }

    const PREFERRED: &str = "Wed, 25 Nov 2026 07:36:14 GMT";

    #[test]
    fn old_forms_become_the_preferred_one_and_garbage_goes() {
        for old in [
            PREFERRED,
            "Wednesday, 25-Nov-26 07:36:14 GMT",
            "Wed Nov 25 07:36:14 2026",
        ] {
            let h = normalised(&[("if-modified-since", old)], None);
            assert_eq!(h["if-modified-since"], PREFERRED, "{old}");
        }
        let h = normalised(
            &[
                ("if-unmodified-since", "garbage"),
                ("if-modified-since", "yesterday"),
            ],
            None,
        );
        assert!(h.is_empty(), "{h:?}");
        let h = normalised(&[("x-amz-copy-source-if-unmodified-since", "garbage")], None);
        assert_eq!(h["x-amz-copy-source-if-unmodified-since"], "garbage");
    }

    #[test]
    fn signed_headers_are_left_alone() {
        let v4 = "AWS4-HMAC-SHA256 Credential=AK/20261125/us-east-1/s3/aws4_request, SignedHeaders=host;if-modified-since;x-amz-date, Signature=00";
        let h = normalised(
            &[
                ("authorization", v4),
                ("if-modified-since", "garbage"),
                ("if-unmodified-since", "garbage"),
            ],
            None,
        );
        assert_eq!(h["if-modified-since"], "garbage");
        assert!(!h.contains_key("if-unmodified-since"));

        let query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-SignedHeaders=host%3Bif-modified-since";
        let h = normalised(&[("if-modified-since", "garbage")], Some(query));
        assert_eq!(h["if-modified-since"], "garbage");

        // SigV2 signs the x-amz-* headers only.
        let old = "Wednesday, 25-Nov-26 07:36:14 GMT";
        let h = normalised(
            &[
                ("authorization", "AWS AK:c2ln"),
                ("x-amz-copy-source-if-modified-since", old),
                ("if-modified-since", old),
            ],
            None,
        );
        assert_eq!(h["x-amz-copy-source-if-modified-since"], old);
        assert_eq!(h["if-modified-since"], PREFERRED);
    }
}
