//! `PUT /key`: streaming writes from bytes, a file, a stream or a reader.
//!
//! The body is streamed, never held: memory is one chunk at a time whatever
//! the value's size. When the digests are known before sending (bytes,
//! files, or given by the caller) they go out as `Content-MD5` and
//! `Key-Sha256`, so the master refuses a body damaged on the way and stores
//! nothing. A one-shot stream's digests are only known at its end; its
//! CRC32C (hardware, nearly free) is computed as it goes and, unless the
//! caller gave an md5 or sha256 up front, follows the last byte as a
//! `Key-Crc32c` trailer of a chunked body (with the length, when known, as
//! `Trove-Length`), which the master checks before it commits: a damaged
//! transfer stores nothing, and a replace it damaged leaves the old value
//! in place. (The chunked framing costs: measured through the S3 gateway,
//! 5–10% of a 1 GiB upload's speed, 25% of 16 parallel 16 MiB ones; see
//! BENCHMARKS.md.) The `201`'s `Key-Crc32c` is compared with what was sent
//! too, for a master that ignores trailers: a mismatch deletes the key
//! again and fails.
//!
//! Retries: a failed `PUT` stores nothing, so bodies that can be produced
//! again (bytes, files) are re-sent per the retry policy. If an attempt's
//! connection broke after the body was sent, the master may have stored it:
//! a retry answered `403` (exists) is then checked with `HEAD` — the same
//! size and md5 means it was this write, and the put succeeds.

use crate::client::{key, status_error, Client};
use crate::error::{Error, Result};
use base64::Engine;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use reqwest::header::{CONTENT_LENGTH, ETAG};
use reqwest::{Method, StatusCode};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncRead;
use trove_common::digest::{crc32c_hex, ContentHasher, Digests};
use trove_common::http::{
    CONTENT_MD5, KEY_CRC32C, KEY_SHA256, TROVE_EXPIRES_AFTER, TROVE_EXPIRES_AT, TROVE_LENGTH,
};
use trove_common::key::Key;

pub use trove_common::http::{TROVE_ALLOW_EMPTY, TROVE_ETAG, TROVE_REPLACE};

/// The body is a compose request, not the value (a request header of `PUT`;
/// the master's `compose` module names it too).
pub const TROVE_COMPOSE: &str = "trove-compose";

/// Read size for files and readers.
const CHUNK: usize = 256 * 1024;

/// Called with the bytes sent so far in the current attempt (it restarts
/// from 0 when a retry re-sends the body).
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// When a key should expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// This long after the write. Sent as given, never rounded: the master
    /// refuses a zero TTL ([`Error::Rejected`], `400`) — a key that expires
    /// as it is written is never what was meant; use [`Expiry::Never`], or
    /// no expiry for the master's `--default-ttl`.
    After(Duration),
    /// At this moment.
    At(SystemTime),
    /// Never, even on a master with a `--default-ttl`.
    Never,
}

impl Expiry {
    /// The request header that asks the master for this expiry (the same
    /// for every kind of write: a `PUT` and a compose).
    pub(crate) fn header(&self) -> (&'static str, String) {
        match self {
            Expiry::After(d) => {
                // Milliseconds, exactly: a fraction keeps its digits.
                let (ms, ns) = (d.as_millis(), d.subsec_nanos() % 1_000_000);
                let value = if ns == 0 {
                    format!("{ms}ms")
                } else {
                    let fraction = format!("{ns:06}");
                    format!("{ms}.{}ms", fraction.trim_end_matches('0'))
                };
                (TROVE_EXPIRES_AFTER, value)
            }
            Expiry::At(t) => {
                let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                (TROVE_EXPIRES_AT, secs.to_string())
            }
            Expiry::Never => (TROVE_EXPIRES_AFTER, "never".to_string()),
        }
    }
}

/// Options of a write; `Default` is a plain write.
#[derive(Clone, Default)]
pub struct PutOptions {
    /// The raw md5 of the value, if the caller knows it: sent as
    /// `Content-MD5` (RFC 1864) so the master checks the body against it.
    pub content_md5: Option<[u8; 16]>,
    /// The raw sha256 of the value, if the caller knows it: sent as
    /// `Key-Sha256`, checked by the master likewise.
    pub sha256: Option<[u8; 32]>,
    /// Expire the key (see the master's `--default-ttl` for writes without).
    pub expires: Option<Expiry>,
    /// Told how many bytes went out.
    pub progress: Option<ProgressFn>,
    /// The key may already be live: the new value replaces it atomically
    /// for readers (`Trove-Replace: 1`). Without it a live key is `403`.
    pub replace: bool,
    /// An empty value is valid (`Trove-Allow-Empty: 1`); without it the
    /// master answers an empty body with `411`.
    pub allow_empty: bool,
    /// Metadata stored with the value and returned on reads: `(header
    /// name, value)` pairs among `Content-Type`, `Content-Disposition`,
    /// `Cache-Control`, `Content-Encoding`, `Content-Language`, `Expires`
    /// and `x-amz-meta-*`.
    pub meta: Vec<(String, String)>,
    /// The ETag to report instead of the md5 (`Trove-Etag`), unquoted.
    pub etag: Option<String>,
    /// `If-Match`, as sent (`*` or quoted ETags): write only if the current
    /// value has one of these ETags, checked by the master under the key's
    /// lock ([`crate::Error::Rejected`] with status `412` otherwise).
    pub if_match: Option<String>,
    /// `If-None-Match`, as sent: `*` writes only if the key has no value.
    pub if_none_match: Option<String>,
    /// Composes only: keep the sources' lengths as the value's parts
    /// (`Trove-Keep-Parts: 1`), which reads can then ask for one at a time
    /// ([`Client::stat_part`](crate::Client::stat_part)).
    pub keep_parts: bool,
}

impl std::fmt::Debug for PutOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutOptions")
            .field("content_md5", &self.content_md5.map(hex::encode))
            .field("sha256", &self.sha256.map(hex::encode))
            .field("expires", &self.expires)
            .field("progress", &self.progress.is_some())
            .field("replace", &self.replace)
            .field("allow_empty", &self.allow_empty)
            .field("meta", &self.meta)
            .field("etag", &self.etag)
            .field("if_match", &self.if_match)
            .field("if_none_match", &self.if_none_match)
            .field("keep_parts", &self.keep_parts)
            .finish()
    }
}

/// What a successful write stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Written {
    pub key: String,
    /// Bytes stored.
    pub size: u64,
    /// Hex sha256 of the value, as the master computed it.
    pub sha256: String,
    /// The ETag the master reports for the value, unquoted (the hex md5,
    /// or the `Trove-Etag` given); `None` from a master that sends none.
    pub etag: Option<String>,
    /// Hex md5 of the value (`Content-MD5` of the `201`), when sent.
    pub md5: Option<String>,
    /// Hex CRC32C of the value (`Key-Crc32c` of the `201`), when sent.
    pub crc32c: Option<String>,
}

impl Client {
    /// Writes a value held in memory (retried when safe).
    ///
    /// ```no_run
    /// # async fn demo(client: trove_client::Client) -> trove_client::Result<()> {
    /// let written = client.put_bytes("/notes/today.txt", "hello".into(), &Default::default()).await?;
    /// assert_eq!(written.size, 5);
    /// # Ok(()) }
    /// ```
    pub async fn put_bytes(&self, raw_key: &str, value: Bytes, opts: &PutOptions) -> Result<Written> {
        let k = &key(raw_key)?;
        let (md5, sha256) = match (opts.content_md5, opts.sha256) {
            (Some(md5), sha256) => (md5, sha256),
            (None, sha256) => {
                let mut h = ContentHasher::new();
                h.update(&value);
                let d = h.finish();
                (d.md5.expect("md5 computed"), sha256.or(d.sha256))
            }
        };
        let len = value.len() as u64;
        self.put_retried(k, len, (md5, sha256), opts, || {
            let value = value.clone();
            async move { Ok(futures::stream::once(async move { Ok::<_, std::io::Error>(value) }).boxed()) }
        })
        .await
    }

    /// Streams a file (retried when safe: the file is read again). The md5
    /// is computed first (unless given in `opts`), so the master can refuse
    /// a body damaged on the way.
    ///
    /// ```no_run
    /// # async fn demo(client: trove_client::Client) -> trove_client::Result<()> {
    /// use trove_client::{Expiry, PutOptions};
    /// use std::time::Duration;
    /// let opts = PutOptions { expires: Some(Expiry::After(Duration::from_secs(3600))), ..Default::default() };
    /// client.put_file("/backups/db.tar", "db.tar".as_ref(), &opts).await?;
    /// # Ok(()) }
    /// ```
    pub async fn put_file(&self, raw_key: &str, path: &Path, opts: &PutOptions) -> Result<Written> {
        let k = &key(raw_key)?;
        let (len, md5, sha256) = match opts.content_md5 {
            Some(md5) => (file_len(path).await?, md5, opts.sha256),
            None => {
                let d = file_digests(path).await?;
                (d.size, d.md5.expect("md5 computed"), opts.sha256.or(d.sha256))
            }
        };
        let path: PathBuf = path.to_path_buf();
        self.put_retried(k, len, (md5, sha256), opts, || {
            let path = path.clone();
            async move {
                let file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
                Ok(tokio_util::io::ReaderStream::with_capacity(file, CHUNK).boxed())
            }
        })
        .await
    }

    /// Streams a one-shot body of known (`Some`) or unknown (`None`)
    /// length. It cannot be re-sent, so it is attempted once. It goes out
    /// chunked, the length (when known) as `Trove-Length`, followed by its
    /// CRC32C as a `Key-Crc32c` trailer, which the master checks before
    /// committing (a mismatch is a `400`, nothing stored, a replaced value
    /// kept) — or, when `opts` gives its md5 or sha256 (checked by the
    /// master the same way) and its length is known, with a
    /// `Content-Length`. The `201`'s `Key-Crc32c` is compared with what
    /// was sent too (a mismatch deletes the key and fails with
    /// [`Error::Garbled`]).
    ///
    /// ```no_run
    /// # async fn demo(client: trove_client::Client) -> trove_client::Result<()> {
    /// use bytes::Bytes;
    /// let chunks = futures::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from("a")), Ok(Bytes::from("b"))]);
    /// client.put_stream("/stream/ab", chunks, Some(2), &Default::default()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn put_stream<S, E>(
        &self,
        raw_key: &str,
        body: S,
        len: Option<u64>,
        opts: &PutOptions,
    ) -> Result<Written>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let k = &key(raw_key)?;
        let body = body
            .map(|r| r.map_err(|e| std::io::Error::other(e.into())))
            .boxed();
        let sent_crc32c = Arc::new(Mutex::new(0));
        let watch = Watch::new(opts.progress.clone(), Some(Arc::clone(&sent_crc32c)));
        let url = self.master_url(&k.url_path());
        let answer = self
            .send_put(&url, body, len, (opts.content_md5, opts.sha256), opts, &watch)
            .await;
        let written = match answer {
            Ok(resp) => {
                self.written(k, &url, resp, watch.sent.load(Ordering::Relaxed))
                    .await?
            }
            Err(e) => return Err(e),
        };
        let sent = crc32c_hex(*sent_crc32c.lock());
        if written.crc32c.as_deref() != Some(sent.as_str()) {
            // The master stored something other than what was sent: undo it.
            let _ = self.delete(k.as_str()).await;
            return Err(Error::Garbled {
                key: k.to_string(),
                sent,
                received: written.crc32c.unwrap_or_else(|| "none".into()),
            });
        }
        Ok(written)
    }

    /// Streams from an async reader (once; see [`Client::put_stream`]).
    ///
    /// ```no_run
    /// # async fn demo(client: trove_client::Client) -> trove_client::Result<()> {
    /// client.put_reader("/from/stdin", tokio::io::stdin(), None, &Default::default()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn put_reader<R>(
        &self,
        raw_key: &str,
        reader: R,
        len: Option<u64>,
        opts: &PutOptions,
    ) -> Result<Written>
    where
        R: AsyncRead + Send + 'static,
    {
        let stream = tokio_util::io::ReaderStream::with_capacity(reader, CHUNK);
        self.put_stream(raw_key, stream, len, opts).await
    }

    /// The retry loop for bodies that can be produced again.
    async fn put_retried<F, Fut>(
        &self,
        k: &Key,
        len: u64,
        (md5, sha256): ([u8; 16], Option<[u8; 32]>),
        opts: &PutOptions,
        body: F,
    ) -> Result<Written>
    where
        F: Fn() -> Fut,
        Fut:
            std::future::Future<Output = Result<futures::stream::BoxStream<'static, std::io::Result<Bytes>>>>,
    {
        let md5_hex = hex::encode(md5);
        let body = &body;
        let md5_hex = &md5_hex;
        self.call(&k.url_path(), |url, earlier| async move {
            let watch = Watch::new(opts.progress.clone(), None);
            let stream = body().await?;
            match self
                .send_put(&url, stream, Some(len), (Some(md5), sha256), opts, &watch)
                .await
            {
                Ok(resp)
                    if earlier
                        && matches!(
                            resp.status(),
                            StatusCode::FORBIDDEN | StatusCode::PRECONDITION_FAILED
                        ) =>
                {
                    // An earlier attempt may have stored it before its
                    // answer was lost (the key exists now, or no longer
                    // passes the preconditions): if what is there is this
                    // value, done.
                    let exists = status_error(k.as_str(), &url, resp).await;
                    match self.stat(k.as_str()).await {
                        Ok(s) if s.size == len && &s.md5 == md5_hex => Ok(Written {
                            key: k.to_string(),
                            size: s.size,
                            sha256: s.sha256,
                            etag: Some(s.etag),
                            md5: Some(s.md5),
                            crc32c: None,
                        }),
                        _ => Err(exists),
                    }
                }
                Ok(resp) => self.written(k, &url, resp, len).await,
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// One `PUT` with a stall watchdog. A body whose `watch` computes a
    /// CRC32C (a one-shot stream's) goes chunked, followed by it as a
    /// `Key-Crc32c` trailer, its length (if known) as `Trove-Length` —
    /// unless an md5 or sha256 given up front already lets the master
    /// check it before committing; any other body of known length goes
    /// with a `Content-Length`.
    async fn send_put(
        &self,
        url: &str,
        body: futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
        len: Option<u64>,
        (md5, sha256): (Option<[u8; 16]>, Option<[u8; 32]>),
        opts: &PutOptions,
        watch: &Watch,
    ) -> Result<reqwest::Response> {
        let watched = Watched {
            inner: body,
            watch: watch.clone(),
        };
        let mut req = self.http().request(Method::PUT, url);
        // A digest known up front is checked by the master before it
        // commits: the body then needs no trailer, and goes with its
        // `Content-Length` when known (cheaper than chunked framing).
        let trailed = watch
            .crc32c
            .as_ref()
            .filter(|_| len.is_none() || (md5.is_none() && sha256.is_none()));
        match (len, trailed) {
            (len, Some(crc32c)) => {
                let body = Trailed {
                    inner: sync_wrapper::SyncWrapper::new(watched),
                    crc32c: Arc::clone(crc32c),
                    ended: false,
                };
                req = req
                    .body(reqwest::Body::wrap(body))
                    .header(reqwest::header::TRAILER, KEY_CRC32C);
                if let Some(len) = len {
                    req = req.header(TROVE_LENGTH, len);
                }
            }
            (Some(len), None) => {
                req = req
                    .body(reqwest::Body::wrap_stream(watched))
                    .header(CONTENT_LENGTH, len);
            }
            (None, None) => req = req.body(reqwest::Body::wrap_stream(watched)),
        }
        if let Some(md5) = md5 {
            req = req.header(CONTENT_MD5, base64::engine::general_purpose::STANDARD.encode(md5));
        }
        if let Some(sha256) = sha256 {
            req = req.header(KEY_SHA256, hex::encode(sha256));
        }
        req = write_headers(req, opts);
        let send = req.send();
        tokio::pin!(send);
        let stall = self.stall_timeout();
        let (mut last, mut since) = (0u64, Instant::now());
        loop {
            tokio::select! {
                r = &mut send => return r.map_err(|e| self.send_error(url, &e)),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            let sent = watch.sent.load(Ordering::Relaxed);
            if sent != last {
                (last, since) = (sent, Instant::now());
                continue;
            }
            // After the last byte every replica fsyncs the whole value:
            // allow a second per MiB on top, as the master does.
            let allowed = if watch.done.load(Ordering::Relaxed) {
                stall + Duration::from_secs(sent >> 20)
            } else {
                stall
            };
            if since.elapsed() > allowed {
                return Err(Error::Stalled {
                    url: url.to_string(),
                    timeout: allowed,
                });
            }
        }
    }

    /// Reads a `201` for `size` bytes sent (or maps the error).
    async fn written(&self, k: &Key, url: &str, resp: reqwest::Response, size: u64) -> Result<Written> {
        if resp.status() != StatusCode::CREATED {
            return Err(status_error(k.as_str(), url, resp).await);
        }
        let sha256 = resp
            .headers()
            .get(KEY_SHA256)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| Error::Protocol {
                url: url.to_string(),
                message: "201 without Key-Sha256".into(),
            })?;
        Ok(written_from(k, resp.headers(), size, sha256))
    }
}

/// What a `201` says was stored.
pub(crate) fn written_from(
    k: &Key,
    headers: &reqwest::header::HeaderMap,
    size: u64,
    sha256: String,
) -> Written {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    Written {
        key: k.to_string(),
        size,
        sha256,
        etag: text(ETAG.as_str()).map(|e| e.trim_matches('"').to_string()),
        md5: text(CONTENT_MD5)
            .filter(|m| m.len() == 32 && m.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_string),
        crc32c: text(KEY_CRC32C)
            .and_then(trove_common::digest::parse_crc32c_hex)
            .map(crc32c_hex),
    }
}

/// The headers every kind of write shares: expiry, replace, empty values,
/// metadata, the ETag to report and the preconditions.
pub(crate) fn write_headers(mut req: reqwest::RequestBuilder, opts: &PutOptions) -> reqwest::RequestBuilder {
    if let Some(expires) = &opts.expires {
        let (name, value) = expires.header();
        req = req.header(name, value);
    }
    if opts.replace {
        req = req.header(TROVE_REPLACE, "1");
    }
    if opts.allow_empty {
        req = req.header(TROVE_ALLOW_EMPTY, "1");
    }
    for (name, value) in &opts.meta {
        req = req.header(name.as_str(), value.as_str());
    }
    if let Some(etag) = &opts.etag {
        req = req.header(TROVE_ETAG, etag.as_str());
    }
    if let Some(tags) = &opts.if_match {
        req = req.header(reqwest::header::IF_MATCH, tags.as_str());
    }
    if let Some(tags) = &opts.if_none_match {
        req = req.header(reqwest::header::IF_NONE_MATCH, tags.as_str());
    }
    req
}

/// Progress of one upload attempt, shared with its watchdog.
#[derive(Clone)]
struct Watch {
    sent: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    progress: Option<ProgressFn>,
    /// The CRC32C of what was sent so far, for a stream checked at its end.
    crc32c: Option<Arc<Mutex<u32>>>,
}

impl Watch {
    fn new(progress: Option<ProgressFn>, crc32c: Option<Arc<Mutex<u32>>>) -> Watch {
        Watch {
            sent: Arc::default(),
            done: Arc::default(),
            progress,
            crc32c,
        }
    }
}

/// A body stream that reports each chunk to its [`Watch`].
struct Watched {
    inner: futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
    watch: Watch,
}

impl Stream for Watched {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = self.inner.poll_next_unpin(cx);
        let w = &self.watch;
        match &item {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(crc) = &w.crc32c {
                    let mut crc = crc.lock();
                    *crc = crc32c::crc32c_append(*crc, chunk);
                }
                let sent = w.sent.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
                if let Some(p) = &w.progress {
                    p(sent);
                }
            }
            Poll::Ready(None) => w.done.store(true, Ordering::Relaxed),
            _ => {}
        }
        item
    }
}

/// A chunked body that ends with a `Key-Crc32c` trailer: the CRC32C its
/// [`Watch`] computed of everything sent.
struct Trailed {
    inner: sync_wrapper::SyncWrapper<Watched>,
    crc32c: Arc<Mutex<u32>>,
    ended: bool,
}

impl http_body::Body for Trailed {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<http_body::Frame<Bytes>, std::io::Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match std::task::ready!(self.inner.get_mut().poll_next_unpin(cx)) {
            Some(item) => Poll::Ready(Some(item.map(http_body::Frame::data))),
            None => {
                self.ended = true;
                let mut trailers = reqwest::header::HeaderMap::new();
                let crc = crc32c_hex(*self.crc32c.lock());
                trailers.insert(KEY_CRC32C, crc.parse().expect("hex is a header value"));
                Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))))
            }
        }
    }
}

async fn file_len(path: &Path) -> Result<u64> {
    tokio::fs::metadata(path)
        .await
        .map(|m| m.len())
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))
}

/// A file's length, md5 and sha256, read once (on the blocking pool:
/// hashing is CPU).
pub async fn file_digests(path: &Path) -> Result<Digests> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file =
            std::fs::File::open(&p).map_err(|e| Error::io(format!("cannot open {}", p.display()), e))?;
        let mut hasher = ContentHasher::new();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| Error::io(format!("cannot read {}", p.display()), e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hasher.finish())
    })
    .await
    .map_err(|e| Error::io("hashing task failed", std::io::Error::other(e)))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_headers_carry_the_ttl_exactly() {
        let after = |d| Expiry::After(d).header();
        assert_eq!(
            after(Duration::from_secs(3600)),
            (TROVE_EXPIRES_AFTER, "3600000ms".into())
        );
        assert_eq!(
            after(Duration::from_micros(1500)),
            (TROVE_EXPIRES_AFTER, "1.5ms".into())
        );
        assert_eq!(
            after(Duration::from_nanos(7)),
            (TROVE_EXPIRES_AFTER, "0.000007ms".into())
        );
        // Zero goes as zero (the master refuses it), never as a TTL of 1ms.
        assert_eq!(after(Duration::ZERO), (TROVE_EXPIRES_AFTER, "0ms".into()));
        assert_eq!(Expiry::Never.header(), (TROVE_EXPIRES_AFTER, "never".into()));
        let at = UNIX_EPOCH + Duration::from_millis(1_800_000_000_999);
        assert_eq!(Expiry::At(at).header(), (TROVE_EXPIRES_AT, "1800000000".into()));
    }
}
