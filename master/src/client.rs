//! `VolumeClient`: the master's calls to volume servers, with the queries
//! and answers of `trove_common::protocol`.
//!
//! Every call has a connect timeout; small calls also have a total timeout
//! of one stall period. An upload has no total timeout (it may take as long
//! as the value needs): the write path bounds each chunk it hands over, and
//! [`VolumeClient::put`] bounds the wait for the answer after the last byte.

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use std::time::Duration;
use trove_common::digest::{parse_crc32c_hex, parse_sha256_hex};
use trove_common::http::{
    client, meta_headers, Timeouts, KEY_CRC32C, KEY_MD5, KEY_SHA256, KEY_SIZE, KEY_STATE, TROVE_ERROR,
    TROVE_MASTER, TROVE_REPLACES, TROVE_WRITE,
};
use trove_common::key::Key;
use trove_common::protocol::listing::{take_frame, Frame, Listed};
pub use trove_common::protocol::Verified;
use trove_common::protocol::{
    query_pairs, AbortQuery, Aborted, ComposeQuery, KeyQuery, MarkOutcome, MarkQuery, MarksQuery, PullQuery,
    VolumeStatus,
};
use trove_common::record::{BlobState, Meta, Record};
use trove_common::signing::{url as signed_url, Signer};

/// The query of a mark: `key`'s copy is now in `state`, with the md5 and
/// sha256 of `digests` (the record), only if it is master write `write`'s.
pub fn mark_query(key: &Key, state: BlobState, digests: Option<&Record>, write: Option<&str>) -> MarkQuery {
    MarkQuery {
        key: key.as_str().to_string(),
        state,
        md5: digests.map(|r| r.md5.clone()),
        sha256: digests.map(|r| r.sha256.clone()),
        write: write.map(str::to_string),
        created: digests.map(|r| r.created),
    }
}

/// What a volume reports after storing a blob, or holds for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// `Key-Sha256`: a volume sends it when it knows it — not in its answer
    /// to a master write, which it checks by CRC32C instead.
    pub sha256: Option<[u8; 32]>,
    /// `Key-Crc32c`: the CRC32C of the bytes a volume just stored.
    pub crc32c: Option<u32>,
    pub size: u64,
    /// The copy is not confirmed yet (`Key-State: pending`; a `HEAD` only).
    pub pending: bool,
}

/// What an upload tells a volume besides the bytes.
#[derive(Debug, Clone)]
pub struct UploadInfo {
    /// The master write the upload belongs to (`Trove-Write`).
    pub write: String,
    /// The write whose copy this one replaces (`Trove-Replaces`): the
    /// volume keeps that copy aside until this write is settled.
    pub replaces: Option<String>,
    /// The value's metadata, for the blob's sidecar (sent as the headers
    /// it came in).
    pub meta: Meta,
}

/// A failed call to a volume.
#[derive(Debug, Clone, thiserror::Error)]
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

    /// The URL of operation `path` on `addr` with a typed `query`.
    fn op_url<Q: serde::Serialize>(&self, method: &str, addr: &str, path: &str, query: &Q) -> String {
        let pairs = query_pairs(query);
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.url(method, addr, path, &pairs)
    }

    /// Sends `req` to `addr`, bounded by `timeout` when given; an answer
    /// that is not 2xx becomes [`VolumeError::Status`].
    async fn call(
        &self,
        addr: &str,
        req: reqwest::RequestBuilder,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, VolumeError> {
        let req = match timeout {
            Some(t) => req.timeout(t),
            None => req,
        };
        let limit = timeout.unwrap_or(self.timeouts.stall);
        let resp = req
            .send()
            .await
            .map_err(|e| VolumeError::from_reqwest(addr, e, limit))?;
        check_status(addr, resp).await
    }

    /// [`VolumeClient::call`] for a request about one blob: `None` when
    /// the volume answers `404`.
    async fn call_for_blob(
        &self,
        addr: &str,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<Option<reqwest::Response>, VolumeError> {
        match self.call(addr, req, Some(timeout)).await {
            Ok(resp) => Ok(Some(resp)),
            Err(VolumeError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Streams `body` to `addr` as the blob of `key`, for the master write
    /// `info` describes. `len` (when known) is sent as `Content-Length` so
    /// the volume checks it. Resolves once the volume has the blob durably.
    pub async fn put<S>(
        &self,
        addr: &str,
        key: &Key,
        info: &UploadInfo,
        body: S,
        len: Option<u64>,
    ) -> Result<Stored, VolumeError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        let mut req = self
            .http
            .put(self.key_url("PUT", addr, key))
            .header(TROVE_MASTER, "1")
            .header(TROVE_WRITE, &info.write)
            .headers(meta_headers(&info.meta).collect())
            .body(reqwest::Body::wrap_stream(body));
        if let Some(replaces) = &info.replaces {
            req = req.header(TROVE_REPLACES, replaces);
        }
        if let Some(len) = len {
            req = req.header(reqwest::header::CONTENT_LENGTH, len);
        }
        let resp = self.call(addr, req, None).await?;
        stored(addr, &resp, KEY_SIZE)
    }

    /// Deletes `key` from `addr`; `Ok(false)` when it was not there.
    pub async fn delete(&self, addr: &str, key: &Key) -> Result<bool, VolumeError> {
        let req = self
            .http
            .delete(self.key_url("DELETE", addr, key))
            .header(TROVE_MASTER, "1");
        Ok(self
            .call_for_blob(addr, req, self.timeouts.stall)
            .await?
            .is_some())
    }

    /// Records `state` (and, when given, the value's md5 and sha256, which
    /// volumes do not compute themselves: `digests`) in the metadata of
    /// `key` on `addr`. With `write`, only if the blob there is that
    /// write's (a `409` otherwise).
    pub async fn mark(
        &self,
        addr: &str,
        key: &Key,
        state: BlobState,
        digests: Option<&Record>,
        write: Option<&str>,
    ) -> Result<(), VolumeError> {
        self.mark_query(addr, &mark_query(key, state, digests, write))
            .await
    }

    /// [`VolumeClient::mark`] of a mark already put as its query.
    pub async fn mark_query(&self, addr: &str, query: &MarkQuery) -> Result<(), VolumeError> {
        let req = self.http.post(self.op_url("POST", addr, "/-/mark", query));
        self.call(addr, req, Some(self.timeouts.stall)).await.map(|_| ())
    }

    /// Several marks on `addr` in one request (`POST /-/marks`), made
    /// durable there by one shared sync: each mark's outcome, in order, as
    /// its own [`VolumeClient::mark`] would have ended.
    pub async fn mark_batch(
        &self,
        addr: &str,
        marks: &[MarkQuery],
    ) -> Result<Vec<Result<(), VolumeError>>, VolumeError> {
        use sha2::Digest;
        let body = serde_json::to_vec(marks).expect("marks serialise");
        let query = MarksQuery {
            body_sha256: hex::encode(sha2::Sha256::digest(&body)),
        };
        let req = self
            .http
            .post(self.op_url("POST", addr, "/-/marks", &query))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let resp = self.call(addr, req, Some(self.timeouts.stall)).await?;
        let outcomes: Vec<MarkOutcome> = json(addr, resp).await?;
        if outcomes.len() != marks.len() {
            return Err(VolumeError::Protocol {
                addr: addr.to_string(),
                message: format!("{} outcomes for {} marks", outcomes.len(), marks.len()),
            });
        }
        Ok(outcomes
            .into_iter()
            .map(|o| match o.status {
                200..=299 => Ok(()),
                status => Err(VolumeError::Status {
                    addr: addr.to_string(),
                    status,
                    message: o.error.unwrap_or_default(),
                }),
            })
            .collect())
    }

    /// Undoes master write `write` of `key` on `addr`: its blob goes, the
    /// value it replaced comes back; another write's blob is left alone.
    /// Returns the size of the blob removed, if there was one.
    pub async fn abort(&self, addr: &str, key: &Key, write: &str) -> Result<Option<u64>, VolumeError> {
        let query = AbortQuery {
            key: key.as_str().to_string(),
            write: write.to_string(),
        };
        let req = self.http.post(self.op_url("POST", addr, "/-/abort", &query));
        let resp = self.call(addr, req, Some(self.timeouts.stall)).await?;
        Ok(json::<Aborted>(addr, resp).await?.removed_bytes)
    }

    /// What `addr` holds for `key`, from a `HEAD`: `None` when absent.
    /// With `write`, the copy that master write stored (in place, or kept
    /// aside while a newer write is unconfirmed), `None` if it has none.
    pub async fn head(
        &self,
        addr: &str,
        key: &Key,
        write: Option<&str>,
    ) -> Result<Option<Stored>, VolumeError> {
        let pin: Vec<(&str, &str)> = write.map(|w| ("write", w)).into_iter().collect();
        let req = self.http.head(self.url("HEAD", addr, key.as_str(), &pin));
        match self.call_for_blob(addr, req, self.timeouts.stall).await? {
            // A HEAD's body is empty, so reqwest's content_length() is 0:
            // the size is read from the header.
            Some(resp) => stored(addr, &resp, reqwest::header::CONTENT_LENGTH.as_str()).map(Some),
            None => Ok(None),
        }
    }

    /// Has `addr` re-read its blob of `key` and hash it; `None` when absent.
    /// The wait is bounded by the stall timeout plus 1 s per MiB of `size`.
    pub async fn verify(&self, addr: &str, key: &Key, size: u64) -> Result<Option<Verified>, VolumeError> {
        let query = KeyQuery {
            key: key.as_str().to_string(),
        };
        let req = self.http.get(self.op_url("GET", addr, "/-/verify", &query));
        match self
            .call_for_blob(addr, req, self.slow_call_timeout(size))
            .await?
        {
            Some(resp) => json(addr, resp).await.map(Some),
            None => Ok(None),
        }
    }

    /// Has `dest` copy `key` from `source`, checking it against the
    /// record's sha256; the copy is stored as live, with the record's md5,
    /// metadata and write id.
    /// Bounded like [`VolumeClient::verify`].
    pub async fn pull(
        &self,
        dest: &str,
        key: &Key,
        source: &str,
        record: &Record,
    ) -> Result<(), VolumeError> {
        let query = PullQuery {
            key: key.as_str().to_string(),
            from: source.to_string(),
            sha256: Some(record.sha256.clone()),
            md5: Some(record.md5.clone()),
            state: Some(BlobState::Live),
            created: Some(record.created),
        };
        // The copy carries the record's metadata and write id (as a PUT
        // does), so that pinned reads and `rebuild` find them there too.
        let mut req = self
            .http
            .post(self.op_url("POST", dest, "/-/pull", &query))
            .headers(meta_headers(&record.meta).collect());
        if let Some(write) = &record.write {
            req = req.header(TROVE_WRITE, write);
        }
        let timeout = self.slow_call_timeout(record.size);
        self.call(dest, req, Some(timeout)).await.map(|_| ())
    }

    /// Has `addr` store, as the master write `info` describes, the value
    /// `plan` (a [`trove_common::protocol::ComposePlan`], as JSON) of
    /// `len` bytes describes, reading its parts itself. Returns what it
    /// stored and the md5 it computed. Bounded like a pull of `len` bytes,
    /// plus time for the volume to fail over between a part's replicas.
    pub async fn compose(
        &self,
        addr: &str,
        key: &Key,
        info: &UploadInfo,
        plan: Bytes,
        len: u64,
    ) -> Result<(Stored, [u8; 16]), VolumeError> {
        let query = ComposeQuery {
            key: key.as_str().to_string(),
            write: info.write.clone(),
        };
        // The write's metadata and the write it replaces travel as a
        // PUT's do, in headers — so the plan goes without a Content-Type
        // of its own, which the volume would take as the value's.
        let mut req = self
            .http
            .post(self.op_url("POST", addr, "/-/compose", &query))
            .headers(meta_headers(&info.meta).collect())
            .body(plan);
        if let Some(replaces) = &info.replaces {
            req = req.header(TROVE_REPLACES, replaces);
        }
        let timeout = self.slow_call_timeout(len) + 4 * self.timeouts.stall;
        let resp = self.call(addr, req, Some(timeout)).await?;
        let stored = stored(addr, &resp, KEY_SIZE)?;
        let md5 = resp
            .headers()
            .get(KEY_MD5)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| <[u8; 16]>::try_from(hex::decode(s).ok()?).ok())
            .ok_or_else(|| VolumeError::Protocol {
                addr: addr.to_string(),
                message: "compose answer without Key-Md5".into(),
            })?;
        Ok((stored, md5))
    }

    /// Streams `GET /-/listing` of `addr`: every blob in key order, in
    /// chunks as they arrive. Each chunk of bytes must arrive within the
    /// stall timeout; the stream ends with an error unless the volume sent
    /// the listing's end frame (a listing that broke off is never taken
    /// for the whole).
    pub async fn listing(
        &self,
        addr: &str,
    ) -> Result<BoxStream<'static, Result<Vec<Listed>, VolumeError>>, VolumeError> {
        let stall = self.timeouts.stall;
        let req = self.http.get(self.url("GET", addr, "/-/listing", &[]));
        let resp = tokio::time::timeout(stall, self.call(addr, req, None))
            .await
            .map_err(|_| VolumeError::Timeout {
                addr: addr.to_string(),
                timeout: stall,
            })??;
        Ok(listing_frames(addr.to_string(), resp.bytes_stream(), stall).boxed())
    }

    /// A call whose work grows with the blob (a pull, a deep verify): the
    /// stall timeout plus one second per MiB, i.e. it fails only if the
    /// volume moves less than 1 MiB/s.
    pub fn slow_call_timeout(&self, size: u64) -> Duration {
        self.timeouts.stall + Duration::from_secs(size >> 20)
    }

    /// `GET /-/status` of a volume.
    /// `damage_seen`: the last damage report taken from this volume's log,
    /// as `(log, seq)` (see [`VolumeStatus::damaged`]).
    pub async fn status(
        &self,
        addr: &str,
        damage_seen: Option<(u64, u64)>,
    ) -> Result<VolumeStatus, VolumeError> {
        let seen = damage_seen.map(|(log, seq)| format!("{log}:{seq}"));
        let params: Vec<(&str, &str)> = seen.iter().map(|s| ("damage_seen", s.as_str())).collect();
        let req = self.http.get(self.url("GET", addr, "/-/status", &params));
        let resp = self.call(addr, req, Some(self.timeouts.stall)).await?;
        json(addr, resp).await
    }
}

/// What a volume says it stored: `Key-Sha256` and the size from the header
/// `size_header`.
fn stored(addr: &str, resp: &reqwest::Response, size_header: &str) -> Result<Stored, VolumeError> {
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok());
    let sha256 = header(KEY_SHA256).and_then(parse_sha256_hex);
    let crc32c = header(KEY_CRC32C).and_then(parse_crc32c_hex);
    let size = header(size_header).and_then(|s| s.parse().ok());
    let pending = header(KEY_STATE) == Some(BlobState::Pending.as_str());
    match size {
        Some(size) if sha256.is_some() || crc32c.is_some() => Ok(Stored {
            sha256,
            crc32c,
            size,
            pending,
        }),
        _ => Err(VolumeError::Protocol {
            addr: addr.to_string(),
            message: format!("answer without {size_header} and Key-Sha256 or Key-Crc32c"),
        }),
    }
}

/// A JSON answer, decoded.
async fn json<T: DeserializeOwned>(addr: &str, resp: reqwest::Response) -> Result<T, VolumeError> {
    resp.json().await.map_err(|e| VolumeError::Protocol {
        addr: addr.to_string(),
        message: e.to_string(),
    })
}

/// Decodes a `/-/listing` byte stream into batches of entries (those of
/// each chunk received), each chunk within `stall`; at most one partial
/// frame is buffered. The stream ends after its first error, and a stream
/// that ends without the end frame is an error.
fn listing_frames<S>(
    addr: String,
    bytes: S,
    stall: Duration,
) -> impl Stream<Item = Result<Vec<Listed>, VolumeError>>
where
    S: Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
{
    struct Reader<S> {
        bytes: std::pin::Pin<Box<S>>,
        buf: Vec<u8>,
        addr: String,
        done: bool,
    }
    let reader = Reader {
        bytes: Box::pin(bytes),
        buf: Vec::new(),
        addr,
        done: false,
    };
    futures::stream::unfold(reader, move |mut r| async move {
        if r.done {
            return None;
        }
        let protocol = |addr: &str, message: String| VolumeError::Protocol {
            addr: addr.to_string(),
            message,
        };
        loop {
            let chunk = match tokio::time::timeout(stall, r.bytes.next()).await {
                Err(_) => Err(VolumeError::Timeout {
                    addr: r.addr.clone(),
                    timeout: stall,
                }),
                Ok(None) => Err(protocol(&r.addr, "/-/listing ended without its end frame".into())),
                Ok(Some(Err(e))) => Err(VolumeError::Unreachable {
                    addr: r.addr.clone(),
                    message: format!("/-/listing broke off: {e}"),
                }),
                Ok(Some(Ok(chunk))) => Ok(chunk),
            };
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    r.done = true;
                    return Some((Err(e), r));
                }
            };
            r.buf.extend_from_slice(&chunk);
            let mut entries = vec![];
            let mut at = 0;
            loop {
                match take_frame(&r.buf[at..]) {
                    Ok(Some((Frame::Entry(e), used))) => {
                        entries.push(e);
                        at += used;
                    }
                    Ok(Some((Frame::End, used))) => {
                        at += used;
                        r.done = true;
                        if at != r.buf.len() {
                            return Some((
                                Err(protocol(&r.addr, "bytes after the end of /-/listing".into())),
                                r,
                            ));
                        }
                        break;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        r.done = true;
                        return Some((Err(protocol(&r.addr, format!("bad /-/listing frame: {e}"))), r));
                    }
                }
            }
            r.buf.drain(..at);
            if !entries.is_empty() || r.done {
                return Some((Ok(entries), r));
            }
        }
    })
}

/// Passes 2xx answers through; turns others into [`VolumeError::Status`]
/// carrying the volume's own message.
async fn check_status(addr: &str, resp: reqwest::Response) -> Result<reqwest::Response, VolumeError> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    // The reason in a header too, for a `HEAD`'s answer has no body.
    let header = resp
        .headers()
        .get(TROVE_ERROR)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    // Bounded: a volume that sends a status and then stalls must not hold
    // up the caller (and a key lock) for ever.
    let text = tokio::time::timeout(Duration::from_secs(5), resp.text()).await;
    let body = text.ok().and_then(Result::ok).unwrap_or_default();
    let message = match body.trim() {
        "" => header,
        body => body.to_string(),
    };
    Err(VolumeError::Status {
        addr: addr.to_string(),
        status,
        message,
    })
}
