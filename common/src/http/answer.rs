//! How both servers answer an error: the status, a one-line reason a
//! person can act on (the body), `Allow` for a wrong method, and a log
//! line when the fault is the server's own (`5xx`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The answer to a failed request: `reason` as the body (one line), and
/// `allow` as the `Allow` header (a `405`'s methods). A `5xx` is logged.
pub fn error(status: StatusCode, reason: &dyn std::fmt::Display, allow: Option<&'static str>) -> Response {
    if status.is_server_error() {
        tracing::error!(status = status.as_u16(), error = %reason, "request failed");
    }
    let mut resp = (status, format!("{reason}\n")).into_response();
    if let Some(allow) = allow {
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    resp
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
        assert_eq!(not_found().headers()[header::CONTENT_LENGTH], "0");
    }
}
