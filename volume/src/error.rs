//! The one place where a volume's errors become HTTP answers.

use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use trove_common::key::KeyError;

/// Every way a volume request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{0}")]
    BadRequest(String),
    #[error("method {0} is not supported on a key; use GET, HEAD, PUT or DELETE")]
    Method(String),
    #[error("{method} is not allowed on {path}; use {allow}")]
    WrongMethod {
        method: String,
        path: String,
        allow: &'static str,
    },
    #[error("{0}")]
    Unsatisfiable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("this copy failed verification (its bytes no longer match their sha256) and is not served; the master sends readers to another replica, and `trove-master verify --repair` replaces it")]
    Damaged,
    /// Another volume (the source of a pull) failed.
    #[error("pull failed: {0}")]
    Upstream(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::Key(KeyError::TooLong(_)) => StatusCode::URI_TOO_LONG,
            ApiError::Key(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Method(_) | ApiError::WrongMethod { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unsatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::Store(e) => match e {
                StoreError::NotFound | StoreError::Replaced => StatusCode::NOT_FOUND,
                StoreError::LengthMismatch { .. }
                | StoreError::DigestMismatch { .. }
                | StoreError::BodyAborted(_) => StatusCode::BAD_REQUEST,
                StoreError::Stalled(_) => StatusCode::REQUEST_TIMEOUT,
                StoreError::OtherWrite(_) | StoreError::Superseded(_) => StatusCode::CONFLICT,
                StoreError::NoSpace(_) | StoreError::ReadOnly(_) => StatusCode::INSUFFICIENT_STORAGE,
                // A copy that cannot be served (an unreadable sidecar, a
                // data file shorter than recorded) is damaged: 503, like a
                // copy verify found bad, so that the master's verify marks
                // it and repairs it.
                StoreError::Corrupt(_) => StatusCode::SERVICE_UNAVAILABLE,
                StoreError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Damaged => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // A key's 404 has an empty body (as minikeyvalue's); a pinned read
        // of a replaced value says so, for a client to ask the master again.
        if status == StatusCode::NOT_FOUND && !matches!(self, ApiError::Store(StoreError::Replaced)) {
            return (status, [(axum::http::header::CONTENT_LENGTH, "0")]).into_response();
        }
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %self, "request failed");
        }
        let allow = match &self {
            ApiError::Method(_) => Some("GET, HEAD, PUT, DELETE"),
            ApiError::WrongMethod { allow, .. } => Some(*allow),
            _ => None,
        };
        let mut resp = (status, format!("{self}\n")).into_response();
        if let Some(allow) = allow {
            resp.headers_mut().insert(
                axum::http::header::ALLOW,
                axum::http::HeaderValue::from_static(allow),
            );
        }
        resp
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::Internal(e.to_string())
    }
}
