//! `VolumeClient`: the master's calls to volume servers.
//!
//! Every call has a connect timeout; small calls also have a total timeout
//! of one stall period. An upload has no total timeout (it may take as long
//! as the value needs): the write path bounds each chunk it hands over, and
//! [`VolumeClient::put`] bounds the wait for the answer after the last byte.

use bytes::Bytes;
use futures::Stream;
use std::time::Duration;
use trove_common::digest::parse_sha256_hex;
use trove_common::http::{client, Timeouts, KEY_SHA256, KEY_SIZE};
use trove_common::key::Key;

/// What a volume reports after storing a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub sha256: [u8; 32],
    pub size: u64,
}

/// A failed call to a volume.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// Could not connect, or the connection broke.
    #[error("volume {addr} unreachable: {message}")]
    Unreachable { addr: String, message: String },
    /// No answer within the stall timeout.
    #[error("volume {addr} did not answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    /// The volume answered with an error status.
    #[error("volume {addr} answered {status}: {message}")]
    Status {
        addr: String,
        status: u16,
        message: String,
    },
    /// The volume answered 2xx but not what the protocol promises.
    #[error("volume {addr} sent an invalid answer: {message}")]
    Protocol { addr: String, message: String },
}

impl VolumeError {
    fn from_reqwest(addr: &str, e: reqwest::Error, timeout: Duration) -> VolumeError {
        if e.is_timeout() {
            VolumeError::Timeout {
                addr: addr.to_string(),
                timeout,
            }
        } else {
            // The chain names the real cause (refused, reset…).
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message = format!("{message}: {s}");
                source = s.source();
            }
            VolumeError::Unreachable {
                addr: addr.to_string(),
                message,
            }
        }
    }

    /// Whether the volume itself seems down (not just unhappy with a request).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            VolumeError::Unreachable { .. } | VolumeError::Timeout { .. }
        )
    }

    /// The volume's own status, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            VolumeError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// HTTP calls from the master to volumes.
#[derive(Clone)]
pub struct VolumeClient {
    http: reqwest::Client,
    timeouts: Timeouts,
}

impl VolumeClient {
    pub fn new(timeouts: Timeouts) -> VolumeClient {
        VolumeClient {
            http: client(timeouts),
            timeouts,
        }
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// The URL of `key` on volume `addr`.
    pub fn url(addr: &str, key: &Key) -> String {
        format!("http://{addr}{}", key.url_path())
    }

    /// Streams `body` to `addr` as the blob of `key`. `len` (when known) is
    /// sent as `Content-Length` so the volume checks it. Resolves once the
    /// volume has the blob durably.
    pub async fn put<S>(
        &self,
        addr: &str,
        key: &Key,
        body: S,
        len: Option<u64>,
    ) -> Result<Stored, VolumeError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        let mut req = self
            .http
            .put(Self::url(addr, key))
            .body(reqwest::Body::wrap_stream(body));
        if let Some(len) = len {
            req = req.header(reqwest::header::CONTENT_LENGTH, len);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| VolumeError::from_reqwest(addr, e, self.timeouts.stall))?;
        let resp = check_status(addr, resp).await?;
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok());
        let sha256 = header(KEY_SHA256).and_then(parse_sha256_hex);
        let size = header(KEY_SIZE).and_then(|s| s.parse().ok());
        match (sha256, size) {
            (Some(sha256), Some(size)) => Ok(Stored { sha256, size }),
            _ => Err(VolumeError::Protocol {
                addr: addr.to_string(),
                message: "201 without Key-Sha256 and Key-Size".into(),
            }),
        }
    }

    /// Deletes `key` from `addr`; `Ok(false)` when it was not there.
    pub async fn delete(&self, addr: &str, key: &Key) -> Result<bool, VolumeError> {
        let resp = self
            .http
            .delete(Self::url(addr, key))
            .timeout(self.timeouts.stall)
            .send()
            .await
            .map_err(|e| VolumeError::from_reqwest(addr, e, self.timeouts.stall))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(false);
        }
        check_status(addr, resp).await.map(|_| true)
    }

    /// `GET /-/status` of a volume, as JSON.
    pub async fn status(&self, addr: &str) -> Result<serde_json::Value, VolumeError> {
        let resp = self
            .http
            .get(format!("http://{addr}/-/status"))
            .timeout(self.timeouts.stall)
            .send()
            .await
            .map_err(|e| VolumeError::from_reqwest(addr, e, self.timeouts.stall))?;
        check_status(addr, resp)
            .await?
            .json()
            .await
            .map_err(|e| VolumeError::Protocol {
                addr: addr.to_string(),
                message: e.to_string(),
            })
    }
}

/// Passes 2xx answers through; turns others into [`VolumeError::Status`]
/// carrying the volume's own message.
async fn check_status(addr: &str, resp: reqwest::Response) -> Result<reqwest::Response, VolumeError> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let message = resp.text().await.unwrap_or_default().trim().to_string();
    Err(VolumeError::Status {
        addr: addr.to_string(),
        status,
        message,
    })
}
