//! The one place where a volume's errors become HTTP answers.

use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use trove_common::http::answer;
use trove_common::key::KeyError;

/// Every way a volume request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{0}")]
    BadRequest(String),
    /// A `PUT` or `DELETE` of a key that no master sent
    /// ([`trove_common::http::TROVE_MASTER`]).
    #[error("this is a Trove volume, not the master: {0} of a key goes to the master (http://MASTER/key), which asks its volumes; a volume takes it only from a master (header Trove-Master: 1)")]
    NotFromMaster(String),
    /// An unsigned, badly signed or expired request (with a secret).
    #[error("{0}")]
    Forbidden(String),
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
    /// `If-Match` or `If-Unmodified-Since` failed.
    #[error(transparent)]
    PreconditionFailed(#[from] trove_common::conditions::Failed),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("this copy failed verification (its bytes no longer match their checksums) and is not served; this volume has reported it to the master, which re-copies it from a good replica within seconds (`trove-master verify --repair` does the same for every key): read the key again through the master")]
    Damaged,
    /// Another volume (the source of a pull) failed.
    #[error("pull failed: {0}")]
    Upstream(String),
    /// The copy's disk does not answer in time (hung, or overloaded).
    #[error("{0}")]
    DiskBusy(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::Key(KeyError::TooLong(_)) => StatusCode::URI_TOO_LONG,
            ApiError::Key(_) | ApiError::BadRequest(_) | ApiError::NotFromMaster(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Method(_) | ApiError::WrongMethod { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unsatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
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
                StoreError::DiskStalled { .. } | StoreError::DirGone { .. } => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                StoreError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Damaged => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::DiskBusy(_) => StatusCode::SERVICE_UNAVAILABLE,
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
            return answer::not_found();
        }
        let allow = match &self {
            ApiError::Method(_) => Some("GET, HEAD, PUT, DELETE"),
            ApiError::WrongMethod { allow, .. } => Some(*allow),
            _ => None,
        };
        answer::error(status, &self, allow)
    }
}

/// A disk read that failed: the disk not answering (`503`), or the
/// blocking pool gone (at shut-down).
pub(crate) fn disk_error(e: std::io::Error) -> ApiError {
    match e.kind() {
        std::io::ErrorKind::TimedOut => ApiError::DiskBusy(e.to_string()),
        _ => ApiError::Internal(e.to_string()),
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

/// Every status an [`ApiError`] can become: one error of each kind, so
/// that a test can hold the documented statuses to what the code answers.
/// The `match`es have no wildcard: a new kind of error does not compile
/// until it is listed here.
#[cfg(test)]
pub fn every_status() -> Vec<u16> {
    use std::time::Duration;
    let io = || std::io::Error::other("sample");
    let stores = [
        StoreError::NotFound,
        StoreError::LengthMismatch { expected: 0, got: 0 },
        StoreError::DigestMismatch {
            expected: String::new(),
            got: String::new(),
        },
        StoreError::BodyAborted(String::new()),
        StoreError::Stalled(Duration::ZERO),
        StoreError::NoSpace(io()),
        StoreError::ReadOnly(io()),
        StoreError::Corrupt(String::new()),
        StoreError::OtherWrite(String::new()),
        StoreError::Superseded(String::new()),
        StoreError::Replaced,
        StoreError::DiskStalled {
            dir: String::new(),
            waited: Duration::ZERO,
        },
        StoreError::DirGone { dir: String::new() },
        StoreError::Io(io()),
    ];
    for e in &stores {
        match e {
            StoreError::NotFound
            | StoreError::LengthMismatch { .. }
            | StoreError::DigestMismatch { .. }
            | StoreError::BodyAborted(_)
            | StoreError::Stalled(_)
            | StoreError::NoSpace(_)
            | StoreError::ReadOnly(_)
            | StoreError::Corrupt(_)
            | StoreError::OtherWrite(_)
            | StoreError::Superseded(_)
            | StoreError::Replaced
            | StoreError::DiskStalled { .. }
            | StoreError::DirGone { .. }
            | StoreError::Io(_) => {}
        }
    }
    let mut samples: Vec<ApiError> = vec![
        ApiError::Key(KeyError::Empty),
        ApiError::Key(KeyError::TooLong(0)),
        ApiError::BadRequest(String::new()),
        ApiError::NotFromMaster(String::new()),
        ApiError::Forbidden(String::new()),
        ApiError::Method(String::new()),
        ApiError::WrongMethod {
            method: String::new(),
            path: String::new(),
            allow: "",
        },
        ApiError::Unsatisfiable(String::new()),
        ApiError::PreconditionFailed(trove_common::conditions::Failed::Changed),
        ApiError::Damaged,
        ApiError::Upstream(String::new()),
        ApiError::DiskBusy(String::new()),
        ApiError::Internal(String::new()),
    ];
    samples.extend(stores.into_iter().map(ApiError::Store));
    for e in &samples {
        match e {
            ApiError::Key(_)
            | ApiError::BadRequest(_)
            | ApiError::NotFromMaster(_)
            | ApiError::Forbidden(_)
            | ApiError::Method(_)
            | ApiError::WrongMethod { .. }
            | ApiError::Unsatisfiable(_)
            | ApiError::PreconditionFailed(_)
            | ApiError::Store(_)
            | ApiError::Damaged
            | ApiError::Upstream(_)
            | ApiError::DiskBusy(_)
            | ApiError::Internal(_) => {}
        }
    }
    samples.iter().map(|e| e.status().as_u16()).collect()
}
