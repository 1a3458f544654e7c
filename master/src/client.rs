//! `VolumeClient`: the master's calls to volume servers.
//!
//! Every call has a connect timeout; small calls also have a total timeout
//! of one stall period. An upload has no total timeout (it may take as long
//! as the value needs): the write path bounds each chunk it hands over, and
//! [`VolumeClient::put`] bounds the wait for the answer after the last byte.

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use std::time::Duration;
use trove_common::digest::parse_sha256_hex;
use trove_common::http::{client, Timeouts, KEY_SHA256, KEY_SIZE, TROVE_WRITE};
use trove_common::key::Key;
use trove_common::record::{BlobMeta, BlobState, Record};
use trove_common::signing::{url as signed_url, Signer};

/// A volume's answer to `GET /-/verify`.
#[derive(Debug, Clone, Deserialize)]
pub struct Verified {
    /// The sidecar.
    pub meta: BlobMeta,
    /// What the bytes hash to now.
    pub actual_sha256: String,
    pub actual_size: u64,
    /// The bytes match the sidecar.
    pub ok: bool,
}

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
            VolumeError::Unreachable {
                addr: addr.to_string(),
                message: trove_common::http::transport_error(&e),
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
    /// Signs every URL when the cluster has a secret.
    signer: Option<Signer>,
    /// How long a signed URL stays valid.
    url_ttl: Duration,
}

impl VolumeClient {
    pub fn new(timeouts: Timeouts, signer: Option<Signer>, url_ttl: Duration) -> VolumeClient {
        VolumeClient {
            http: client(timeouts),
            timeouts,
            signer,
            url_ttl,
        }
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// The URL for a `method` request on `addr` (signed when a secret is
    /// set): `path` is a key or an operation, `params` its query.
    pub fn url(&self, method: &str, addr: &str, path: &str, params: &[(&str, &str)]) -> String {
        signed_url(self.signer.as_ref(), self.url_ttl, method, addr, path, params)
    }

    /// The URL of `key` on `addr`, for `method`.
    pub fn key_url(&self, method: &str, addr: &str, key: &Key) -> String {
        self.url(method, addr, key.as_str(), &[])
    }

    /// Streams `body` to `addr` as the blob of `key`, for master write
    /// `write`. `len` (when known) is sent as `Content-Length` so the volume
    /// checks it. Resolves once the volume has the blob durably.
    pub async fn put<S>(
        &self,
        addr: &str,
        key: &Key,
        write: &str,
        body: S,
        len: Option<u64>,
    ) -> Result<Stored, VolumeError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        let mut req = self
            .http
            .put(self.key_url("PUT", addr, key))
            .header(TROVE_WRITE, write)
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
            .delete(self.key_url("DELETE", addr, key))
            .timeout(self.timeouts.stall)
            .send()
            .await
            .map_err(|e| VolumeError::from_reqwest(addr, e, self.timeouts.stall))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(false);
        }
        check_status(addr, resp).await.map(|_| true)
    }

    /// Records `state` (and, when given, the value's md5, which volumes do
    /// not compute themselves) in the sidecar of `key` on `addr`. With
    /// `write`, only if the blob there is that write's (a `409` otherwise).
    pub async fn mark(
        &self,
        addr: &str,
        key: &Key,
        state: BlobState,
        md5: Option<&str>,
        write: Option<&str>,
    ) -> Result<(), VolumeError> {
        let mut params = vec![("key", key.as_str()), ("state", state.as_str())];
        if let Some(md5) = md5 {
            params.push(("md5", md5));
        }
        if let Some(write) = write {
            params.push(("write", write));
        }
        self.post_op(addr, "/-/mark", &params).await.map(|_| ())
    }

    /// Undoes master write `write` of `key` on `addr`: its blob goes, the
    /// value it replaced comes back; another write's blob is left alone.
    /// Returns the size of the blob removed, if there was one.
    pub async fn abort(&self, addr: &str, key: &Key, write: &str) -> Result<Option<u64>, VolumeError> {
        #[derive(Deserialize)]
        struct Aborted {
            removed_bytes: Option<u64>,
        }
        let resp = self
            .post_op(addr, "/-/abort", &[("key", key.as_str()), ("write", write)])
            .await?;
        let aborted: Aborted = resp.json().await.map_err(|e| VolumeError::Protocol {
            addr: addr.to_string(),
            message: e.to_string(),
        })?;
        Ok(aborted.removed_bytes)
    }

    /// A small `POST` to an operation path, bounded by the stall timeout.
    async fn post_op(
        &self,
        addr: &str,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<reqwest::Response, VolumeError> {
        let url = self.url("POST", addr, path, params);
        let resp = self.http.post(url).timeout(self.timeouts.stall).send().await;
        let resp = resp.map_err(|e| VolumeError::from_reqwest(addr, e, self.timeouts.stall))?;
        check_status(addr, resp).await
    }

    /// What `addr` holds for `key`, from a `HEAD`: `None` when absent.
    pub async fn head(&self, addr: &str, key: &Key) -> Result<Option<Stored>, VolumeError> {
        let resp = self
            .http
            .head(self.key_url("HEAD", addr, key))
            .timeout(self.timeouts.stall)
            .send()
            .await;
        let resp = resp.map_err(|e| VolumeError::from_reqwest(addr, e, self.timeouts.stall))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = check_status(addr, resp).await?;
        let sha256 = resp
            .headers()
            .get(KEY_SHA256)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_sha256_hex);
        // A HEAD's body is empty, so reqwest's content_length() is 0: read the header.
        let size = resp
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse().ok());
        match (sha256, size) {
            (Some(sha256), Some(size)) => Ok(Some(Stored { sha256, size })),
            _ => Err(VolumeError::Protocol {
                addr: addr.to_string(),
                message: "HEAD without Key-Sha256 and Content-Length".into(),
            }),
        }
    }

    /// Has `addr` re-read its blob of `key` and hash it; `None` when absent.
    /// The wait is bounded by the stall timeout plus 1 s per MiB of `size`.
    pub async fn verify(&self, addr: &str, key: &Key, size: u64) -> Result<Option<Verified>, VolumeError> {
        let url = self.url("GET", addr, "/-/verify", &[("key", key.as_str())]);
        let timeout = self.slow_call_timeout(size);
        let resp = self.http.get(url).timeout(timeout).send().await;
        let resp = resp.map_err(|e| VolumeError::from_reqwest(addr, e, timeout))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let report = check_status(addr, resp).await?.json::<Verified>().await;
        report.map(Some).map_err(|e| VolumeError::Protocol {
            addr: addr.to_string(),
            message: e.to_string(),
        })
    }

    /// Has `dest` copy `key` from `source`, checking it against the
    /// record's sha256; the copy is stored as live, with the record's md5.
    /// Bounded like [`VolumeClient::verify`].
    pub async fn pull(
        &self,
        dest: &str,
        key: &Key,
        source: &str,
        record: &Record,
    ) -> Result<(), VolumeError> {
        let size = record.size;
        let params = [
            ("key", key.as_str()),
            ("from", source),
            ("sha256", record.sha256.as_str()),
            ("md5", record.md5.as_str()),
            ("state", "live"),
        ];
        let url = self.url("POST", dest, "/-/pull", &params);
        let timeout = self.slow_call_timeout(size);
        let resp = self.http.post(url).timeout(timeout).send().await;
        let resp = resp.map_err(|e| VolumeError::from_reqwest(dest, e, timeout))?;
        check_status(dest, resp).await.map(|_| ())
    }

    /// Streams `GET /-/blobs` of `addr`: one sidecar per item. Each line
    /// must arrive within the stall timeout.
    pub async fn blobs(
        &self,
        addr: &str,
    ) -> Result<BoxStream<'static, Result<BlobMeta, VolumeError>>, VolumeError> {
        let stall = self.timeouts.stall;
        let resp = tokio::time::timeout(
            stall,
            self.http.get(self.url("GET", addr, "/-/blobs", &[])).send(),
        )
        .await
        .map_err(|_| VolumeError::Timeout {
            addr: addr.to_string(),
            timeout: stall,
        })?
        .map_err(|e| VolumeError::from_reqwest(addr, e, stall))?;
        let resp = check_status(addr, resp).await?;
        let addr = addr.to_string();
        let bytes = resp.bytes_stream();
        Ok(ndjson_lines(addr, bytes, stall).boxed())
    }

    /// A call whose work grows with the blob (a pull, a deep verify): the
    /// stall timeout plus one second per MiB, i.e. it fails only if the
    /// volume moves less than 1 MiB/s.
    pub fn slow_call_timeout(&self, size: u64) -> Duration {
        self.timeouts.stall + Duration::from_secs(size >> 20)
    }

    /// `GET /-/status` of a volume, as JSON.
    pub async fn status(&self, addr: &str) -> Result<serde_json::Value, VolumeError> {
        let resp = self
            .http
            .get(self.url("GET", addr, "/-/status", &[]))
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

/// Splits a byte stream into NDJSON sidecars, each line within `stall`.
fn ndjson_lines<S>(
    addr: String,
    bytes: S,
    stall: Duration,
) -> impl Stream<Item = Result<BlobMeta, VolumeError>>
where
    S: Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
{
    let bytes = Box::pin(bytes);
    futures::stream::unfold(
        (bytes, Vec::<u8>::new(), addr, false),
        move |(mut bytes, mut buf, addr, done)| async move {
            loop {
                if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let item = BlobMeta::decode(&line[..pos]).map_err(|e| VolumeError::Protocol {
                        addr: addr.clone(),
                        message: format!("bad /-/blobs line: {e}"),
                    });
                    return Some((item, (bytes, buf, addr, done)));
                }
                if done {
                    return None;
                }
                match tokio::time::timeout(stall, bytes.next()).await {
                    Err(_) => {
                        let e = VolumeError::Timeout {
                            addr: addr.clone(),
                            timeout: stall,
                        };
                        return Some((Err(e), (bytes, Vec::new(), addr, true)));
                    }
                    Ok(Some(Ok(chunk))) => buf.extend_from_slice(&chunk),
                    Ok(Some(Err(e))) => {
                        let e = VolumeError::from_reqwest(&addr, e, stall);
                        return Some((Err(e), (bytes, Vec::new(), addr, true)));
                    }
                    Ok(None) => {
                        if !buf.is_empty() {
                            let e = VolumeError::Protocol {
                                addr: addr.clone(),
                                message: "/-/blobs ended mid-line".into(),
                            };
                            return Some((Err(e), (bytes, Vec::new(), addr, true)));
                        }
                        return None;
                    }
                }
            }
        },
    )
}

/// Passes 2xx answers through; turns others into [`VolumeError::Status`]
/// carrying the volume's own message.
async fn check_status(addr: &str, resp: reqwest::Response) -> Result<reqwest::Response, VolumeError> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    // Bounded: a volume that sends a status and then stalls must not hold
    // up the caller (and a key lock) for ever.
    let text = tokio::time::timeout(Duration::from_secs(5), resp.text()).await;
    let message = text
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
        .trim()
        .to_string();
    Err(VolumeError::Status {
        addr: addr.to_string(),
        status,
        message,
    })
}
