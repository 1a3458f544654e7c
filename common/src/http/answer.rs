//! How both servers answer an error: the status, a one-line reason a
//! person can act on (the body, and `Trove-Error` for a `HEAD`, which has
//! none), `Allow` for a wrong method, and a log line when the fault is
//! the server's own (`5xx`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The answer to a failed request: `reason` as the body (one line), and
/// `allow` as the `Allow` header (a `405`'s methods). A `5xx` is logged.
pub fn error(status: StatusCode, reason: &dyn std::fmt::Display, allow: Option<&'static str>) -> Response {
    if status.is_server_error() {
        tracing::error!(status = status.as_u16(), error = %reason, "request failed");
    }
    let reason = reason.to_string();
    let header = reason_header(&reason);
    let mut resp = (status, format!("{reason}\n")).into_response();
    resp.headers_mut().insert(super::TROVE_ERROR, header);
    if let Some(allow) = allow {
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    resp
}

/// The longest `Trove-Error` header sent; a longer reason is cut there.
pub const REASON_HEADER_MAX: usize = 512;

/// `reason` as a header value: visible ASCII (anything else becomes `?`),
/// at most [`REASON_HEADER_MAX`] bytes.
fn reason_header(reason: &str) -> HeaderValue {
    let ascii: String = reason
        .chars()
        .map(|c| if c == ' ' || c.is_ascii_graphic() { c } else { '?' })
        .take(REASON_HEADER_MAX)
        .collect();
    HeaderValue::from_str(ascii.trim()).expect("visible ASCII is a valid header value")
}

/// A `404` with an empty body (a key that is not there, as minikeyvalue
/// answers it).
pub fn not_found() -> Response {
    (StatusCode::NOT_FOUND, [(header::CONTENT_LENGTH, "0")]).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_and_the_allowed_methods() {
        let resp = error(StatusCode::METHOD_NOT_ALLOWED, &"use GET", Some("GET, HEAD"));
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers()[header::ALLOW], "GET, HEAD");
        let resp = error(StatusCode::BAD_REQUEST, &"bad key", None);
        assert!(resp.headers().get(header::ALLOW).is_none());
        assert_eq!(resp.headers()[crate::http::TROVE_ERROR], "bad key");
        let odd = format!("blob Zürich\nis {}", "x".repeat(600));
        let resp = error(StatusCode::SERVICE_UNAVAILABLE, &odd, None);
        let header = resp.headers()[crate::http::TROVE_ERROR].to_str().unwrap();
        assert!(header.starts_with("blob Z?rich?is xx"), "{header}");
        assert_eq!(header.len(), REASON_HEADER_MAX);
        assert_eq!(not_found().headers()[header::CONTENT_LENGTH], "0");
    }
}
