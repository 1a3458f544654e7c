//! The one place where the master's errors become HTTP answers.
//!
//! Every error carries a one-line reason a person can act on, except `404`
//! for a key, whose body is empty (as minikeyvalue's). Server faults (5xx)
//! are logged; client mistakes are not.

use crate::client::VolumeError;
use crate::index::IndexError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use trove_common::http::answer;
use trove_common::key::KeyError;

/// Every way a master request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{0}")]
    BadRequest(String),
    #[error("empty body: a value must have at least one byte (send Trove-Allow-Empty: 1 to store a zero-length value)")]
    EmptyBody,
    /// With a hint for a write that sent conditions (`If-Match`…) but not
    /// `Trove-Replace: 1`, which a replace needs.
    #[error("key exists: keys are write-once, DELETE it first{}", if *.conditional { " (or add Trove-Replace: 1 to this conditional write to replace it)" } else { " (or send Trove-Replace: 1 to replace it)" })]
    Exists { conditional: bool },
    #[error("this master runs with --protect: UNLINK the key before DELETE")]
    Protected,
    #[error("{0}")]
    Forbidden(String),
    #[error("another write or delete of this key is in progress; retry later")]
    Busy,
    #[error("{0}")]
    Conflict(String),
    /// No job of that kind to report or stop: the reason.
    #[error("{0}")]
    NoSuchJob(String),
    #[error("no operation /-/{0}; see the README for the operations")]
    NoSuchOperation(String),
    #[error("not found")]
    NotFound,
    #[error("compose source {0} does not exist (absent, being written, unlinked or expired)")]
    SourceMissing(String),
    #[error("compose source {key} changed: {what}")]
    SourceChanged { key: String, what: String },
    /// A request's condition (`If-Match`, …) failed; `outcome` says what
    /// that left undone ("; nothing was stored" for a write).
    #[error("{failed}{outcome}")]
    PreconditionFailed {
        failed: trove_common::conditions::Failed,
        outcome: &'static str,
    },
    #[error("{0}")]
    BodyTooLarge(String),
    #[error("more than {0} keys match; page through them with &limit=N and &start=")]
    TooManyKeys(usize),
    #[error("method {0} is not supported; use GET, HEAD, PUT, POST, DELETE or UNLINK")]
    Method(String),
    #[error("{method} is not allowed on {path}; use {allow}")]
    WrongMethod {
        method: String,
        path: String,
        allow: &'static str,
    },
    #[error("job parameters are a small JSON object: at most {0} bytes")]
    ParamsTooLarge(usize),
    #[error(
        "Key-Sha256 mismatch: the client sent {sent} but the body's sha256 is {got}; nothing was stored"
    )]
    Sha256Mismatch { sent: String, got: String },
    #[error("Content-MD5 mismatch: the client sent {sent} but the body's md5 is {got}; nothing was stored")]
    Md5Mismatch { sent: String, got: String },
    #[error(
        "Key-Crc32c mismatch: the client sent {sent} but the body's CRC32C is {got}; nothing was stored"
    )]
    Crc32cMismatch { sent: String, got: String },
    #[error(
        "the body carried {got} bytes, not the {announced} its Trove-Length announced; nothing was stored"
    )]
    LengthMismatch { announced: u64, got: String },
    #[error("the upload was cut off: {0}; nothing was stored")]
    ClientBody(String),
    #[error("no bytes arrived for {0:?}; upload abandoned, nothing was stored")]
    ClientStalled(Duration),
    #[error("only {healthy} healthy volume(s), {needed} needed for a write; see GET /-/status")]
    NotEnoughVolumes { healthy: usize, needed: usize },
    #[error("only {writable} volume(s) can take this value (room for it beyond --min-free, not read-only, disk not stalled), {needed} needed; see GET /-/status")]
    NotEnoughSpace { writable: usize, needed: usize },
    #[error("no replica of this key can serve it ({0})")]
    ReplicasDown(String),
    #[error("every replica of this key ({0}) was found damaged by verify; no copy can be served: restore the value from elsewhere and write it again")]
    AllDamaged(String),
    #[error("{0}")]
    Volume(#[from] VolumeError),
    /// A `DELETE` that unlinked the key but could not remove a copy.
    #[error("{0}; the key now reads as absent, and the master removes that copy once its volume answers again (or send the DELETE again then)")]
    DeleteUnfinished(VolumeError),
    #[error("replica {addr} stored {got} but {expected} was sent; nothing was stored")]
    ReplicaMismatch {
        addr: String,
        expected: String,
        got: String,
    },
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            Key(KeyError::TooLong(_)) => StatusCode::URI_TOO_LONG,
            Key(_)
            | BadRequest(_)
            | Md5Mismatch { .. }
            | Sha256Mismatch { .. }
            | Crc32cMismatch { .. }
            | LengthMismatch { .. }
            | ClientBody(_) => StatusCode::BAD_REQUEST,
            EmptyBody => StatusCode::LENGTH_REQUIRED,
            Exists { .. } | Protected | Forbidden(_) => StatusCode::FORBIDDEN,
            Busy | Conflict(_) => StatusCode::CONFLICT,
            NotFound | SourceMissing(_) => StatusCode::NOT_FOUND,
            SourceChanged { .. } | PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            NoSuchJob(_) | NoSuchOperation(_) => StatusCode::NOT_FOUND,
            TooManyKeys(_) | ParamsTooLarge(_) | BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Method(_) | WrongMethod { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ClientStalled(_) => StatusCode::REQUEST_TIMEOUT,
            NotEnoughVolumes { .. } | ReplicasDown(_) | AllDamaged(_) => StatusCode::SERVICE_UNAVAILABLE,
            NotEnoughSpace { .. } => StatusCode::INSUFFICIENT_STORAGE,
            Volume(e) | DeleteUnfinished(e) => match e {
                VolumeError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                VolumeError::Status { status: 507, .. } => StatusCode::INSUFFICIENT_STORAGE,
                _ => StatusCode::BAD_GATEWAY,
            },
            ReplicaMismatch { .. } => StatusCode::BAD_GATEWAY,
            Index(e) if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            Index(_) | Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(self, ApiError::NotFound) {
            return answer::not_found();
        }
        let allow = match &self {
            ApiError::Method(_) => Some("GET, HEAD, PUT, POST, DELETE, UNLINK"),
            ApiError::WrongMethod { allow, .. } => Some(*allow),
            _ => None,
        };
        answer::error(self.status(), &self, allow)
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

/// Every status an [`ApiError`] can become: one error of each kind, so
/// that a test can hold the documented statuses to what the code answers.
/// The `match` has no wildcard: a new kind of error does not compile until
/// it is listed here.
#[cfg(test)]
pub fn every_status() -> Vec<u16> {
    use ApiError::*;
    let volume = |status| VolumeError::Status {
        addr: "v".into(),
        status,
        message: String::new(),
    };
    let samples = [
        Key(KeyError::Empty),
        Key(KeyError::TooLong(0)),
        BadRequest(String::new()),
        EmptyBody,
        Exists { conditional: false },
        Protected,
        Forbidden(String::new()),
        Busy,
        Conflict(String::new()),
        NoSuchJob(String::new()),
        NoSuchOperation(String::new()),
        NotFound,
        SourceMissing(String::new()),
        SourceChanged {
            key: String::new(),
            what: String::new(),
        },
        PreconditionFailed {
            failed: trove_common::conditions::Failed::Exists,
            outcome: "",
        },
        BodyTooLarge(String::new()),
        TooManyKeys(0),
        Method(String::new()),
        WrongMethod {
            method: String::new(),
            path: String::new(),
            allow: "",
        },
        ParamsTooLarge(0),
        Sha256Mismatch {
            sent: String::new(),
            got: String::new(),
        },
        Md5Mismatch {
            sent: String::new(),
            got: String::new(),
        },
        Crc32cMismatch {
            sent: String::new(),
            got: String::new(),
        },
        LengthMismatch {
            announced: 0,
            got: String::new(),
        },
        ClientBody(String::new()),
        ClientStalled(Duration::ZERO),
        NotEnoughVolumes {
            healthy: 0,
            needed: 0,
        },
        NotEnoughSpace {
            writable: 0,
            needed: 0,
        },
        ReplicasDown(String::new()),
        AllDamaged(String::new()),
        Volume(volume(507)),
        Volume(volume(500)),
        Volume(VolumeError::Timeout {
            addr: "v".into(),
            timeout: Duration::ZERO,
        }),
        DeleteUnfinished(volume(500)),
        ReplicaMismatch {
            addr: String::new(),
            expected: String::new(),
            got: String::new(),
        },
        Internal(String::new()),
    ];
    for e in &samples {
        match e {
            Key(_)
            | BadRequest(_)
            | EmptyBody
            | Exists { .. }
            | Protected
            | Forbidden(_)
            | Busy
            | Conflict(_)
            | NoSuchJob(_)
            | NoSuchOperation(_)
            | NotFound
            | SourceMissing(_)
            | SourceChanged { .. }
            | PreconditionFailed { .. }
            | BodyTooLarge(_)
            | TooManyKeys(_)
            | Method(_)
            | WrongMethod { .. }
            | ParamsTooLarge(_)
            | Sha256Mismatch { .. }
            | Md5Mismatch { .. }
            | Crc32cMismatch { .. }
            | LengthMismatch { .. }
            | ClientBody(_)
            | ClientStalled(_)
            | NotEnoughVolumes { .. }
            | NotEnoughSpace { .. }
            | ReplicasDown(_)
            | AllDamaged(_)
            | Volume(_)
            | DeleteUnfinished(_)
            | ReplicaMismatch { .. }
            | Index(_)
            | Internal(_) => {}
        }
    }
    samples.iter().map(|e| e.status().as_u16()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A volume's own client-error status is the master's fault towards
    /// that volume, never the client's: it becomes `502`, so a client's
    /// `408` always means the master waited the stall timeout for the
    /// client's body (the chaos tests rely on this to tell the two apart).
    #[test]
    fn a_volumes_status_is_not_passed_through() {
        for status in [400, 403, 404, 408, 409, 500, 503] {
            let e = ApiError::Volume(VolumeError::Status {
                addr: "v".into(),
                status,
                message: String::new(),
            });
            assert_eq!(e.status(), StatusCode::BAD_GATEWAY, "a volume's {status}");
        }
        let full = ApiError::Volume(VolumeError::Status {
            addr: "v".into(),
            status: 507,
            message: String::new(),
        });
        assert_eq!(full.status(), StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(
            ApiError::ClientStalled(Duration::from_secs(5)).status(),
            StatusCode::REQUEST_TIMEOUT
        );
    }
}
