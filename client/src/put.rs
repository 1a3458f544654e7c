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
use crate::stat::is_meta_header;
use base64::Engine;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, ETAG, IF_MATCH, IF_NONE_MATCH};
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
use trove_common::record::{STORED_HEADERS, USER_META_PREFIX};

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
    /// and `x-amz-meta-<name>`, names in any case, values UTF-8 (a name
    /// given twice is stored once, its values joined by `,`). Any other
    /// name — a control header such as `Trove-Replace` or `If-Match`,
    /// which have fields of their own here, or one the master would
    /// silently drop — and any name or value that cannot be an HTTP
    /// header (a line break) fail the write with
    /// [`Error::InvalidHeader`] before anything is sent.
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
    /// Hex md5 of the value: the `Content-MD5` of the `201` when sent,
    /// else the md5 the client sent (and the master checked) with the
    /// value; `None` for a stream sent without one.
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
        let headers = write_headers(k, opts)?;
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
        self.put_retried(k, len, (md5, sha256), opts, &headers, || {
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
        let headers = write_headers(k, opts)?;
        let (len, md5, sha256) = match opts.content_md5 {
            Some(md5) => (file_len(path).await?, md5, opts.sha256),
            None => {
                let d = file_digests(path).await?;
                (d.size, d.md5.expect("md5 computed"), opts.sha256.or(d.sha256))
            }
        };
        let path: PathBuf = path.to_path_buf();
        self.put_retried(k, len, (md5, sha256), opts, &headers, || {
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
    /// A stream that yields an error, or ends before (or goes on past)
    /// the length it announced, fails the write with [`Error::Io`] (its
    /// error in the message); the master stores nothing.
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
        let headers = write_headers(k, opts)?;
        let body = body
            .map(|r| r.map_err(|e| std::io::Error::other(e.into())))
            .boxed();
        let sent_crc32c = Arc::new(Mutex::new(0));
        let watch = Watch::new(opts.progress.clone(), Some(Arc::clone(&sent_crc32c)), len);
        let url = self.master_url(&k.url_path());
        let answer = self
            .send_put(k, &url, body, (opts.content_md5, opts.sha256), &headers, &watch)
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
        headers: &HeaderMap,
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
            let watch = Watch::new(opts.progress.clone(), None, Some(len));
            let stream = body().await?;
            match self
                .send_put(k, &url, stream, (Some(md5), sha256), headers, &watch)
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
                // The master checked the md5 sent before it stored
                // anything: it is the value's, even when the `201` does
                // not repeat it.
                Ok(resp) => self.written(k, &url, resp, len).await.map(|mut w| {
                    w.md5.get_or_insert_with(|| md5_hex.clone());
                    w
                }),
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
    /// with a `Content-Length`. `headers` are the [`write_headers`].
    ///
    /// A body that fails (a caller's stream yields an error, a file cannot
    /// be read, either ends short of its length) is [`Error::Io`], not the
    /// [`Error::Transport`] reqwest makes of it: reqwest reports a body's
    /// error as a failed request whose source chain ends in that error,
    /// the same shape as a broken connection, so [`Watched`] records the
    /// failure where it happens instead.
    async fn send_put(
        &self,
        k: &Key,
        url: &str,
        body: futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
        (md5, sha256): (Option<[u8; 16]>, Option<[u8; 32]>),
        headers: &HeaderMap,
        watch: &Watch,
    ) -> Result<reqwest::Response> {
        let len = watch.len;
        let watched = Watched {
            inner: body,
            watch: watch.clone(),
            ended: false,
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
        req = req.headers(headers.clone());
        let send = req.send();
        tokio::pin!(send);
        let stall = self.stall_timeout();
        let (mut last, mut since) = (0u64, Instant::now());
        loop {
            tokio::select! {
                r = &mut send => return r.map_err(|e| match watch.failed.lock().take() {
                    Some(cause) => Error::io(format!("{k}: nothing was stored: the value being sent failed"), cause),
                    None => self.send_error(url, &e),
                }),
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
/// metadata, the ETag to report and the preconditions — built once, before
/// anything is sent, so that a pair that is not metadata Trove stores, or
/// that cannot be a header, fails the write at once ([`Error::InvalidHeader`],
/// which is not retried) rather than as a request that could not be made.
pub(crate) fn write_headers(k: &Key, opts: &PutOptions) -> Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    if let Some(expires) = &opts.expires {
        let (name, value) = expires.header();
        headers.insert(name, value.parse().expect("an expiry is a header value"));
    }
    if opts.replace {
        headers.insert(TROVE_REPLACE, HeaderValue::from_static("1"));
    }
    if opts.allow_empty {
        headers.insert(TROVE_ALLOW_EMPTY, HeaderValue::from_static("1"));
    }
    for (name, value) in &opts.meta {
        let (name, value) = meta_header(name, value).map_err(|reason| Error::InvalidHeader {
            key: k.to_string(),
            name: name.clone(),
            value: value.clone(),
            reason,
        })?;
        headers.append(name, value);
    }
    let fields = [
        (TROVE_ETAG, &opts.etag),
        (IF_MATCH.as_str(), &opts.if_match),
        (IF_NONE_MATCH.as_str(), &opts.if_none_match),
    ];
    for (name, value) in fields {
        let Some(value) = value else { continue };
        let value = header_value(value).map_err(|reason| Error::InvalidHeader {
            key: k.to_string(),
            name: name.to_string(),
            value: value.clone(),
            reason,
        })?;
        headers.insert(name, value);
    }
    Ok(headers)
}

/// One [`PutOptions::meta`] pair as a header, or why it cannot be one.
fn meta_header(name: &str, value: &str) -> std::result::Result<(HeaderName, HeaderValue), String> {
    let allowed = || {
        let (last, rest) = STORED_HEADERS.split_last().expect("headers are stored");
        format!(
            "PutOptions::meta takes only the metadata Trove stores: {}, {last} and {USER_META_PREFIX}<name>, in any case",
            rest.join(", ")
        )
    };
    let header = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("is not a valid HTTP header name; {}", allowed()))?;
    if !is_meta_header(header.as_str()) {
        // The master would act on a control header (`Trove-Replace`
        // replacing a write-once key, an `If-*`, an expiry) and drop any
        // other name without a word: neither is what a caller storing
        // metadata meant.
        return Err(format!(
            "is not metadata: {}; replace, expiry, the ETag and preconditions have PutOptions fields of their own",
            allowed()
        ));
    }
    Ok((header, header_value(value)?))
}

/// `value` as a header value, or why it cannot be one.
fn header_value(value: &str) -> std::result::Result<HeaderValue, String> {
    // `from_str` takes any byte but controls: UTF-8 text goes as it is,
    // which the master stores as UTF-8.
    HeaderValue::from_str(value).map_err(|_| {
        "has a value no HTTP header can carry (a control character such as a line break)".to_string()
    })
}

/// Progress of one upload attempt, shared with its watchdog.
#[derive(Clone)]
struct Watch {
    sent: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    progress: Option<ProgressFn>,
    /// The CRC32C of what was sent so far, for a stream checked at its end.
    crc32c: Option<Arc<Mutex<u32>>>,
    /// The length announced, if known.
    len: Option<u64>,
    /// Why the body failed, when it did: the source's own error, or its
    /// length not being the one announced. Set before the failure reaches
    /// the HTTP client, so that it is there when the request fails.
    failed: Arc<Mutex<Option<std::io::Error>>>,
}

impl Watch {
    fn new(progress: Option<ProgressFn>, crc32c: Option<Arc<Mutex<u32>>>, len: Option<u64>) -> Watch {
        Watch {
            sent: Arc::default(),
            done: Arc::default(),
            progress,
            crc32c,
            len,
            failed: Arc::default(),
        }
    }

    /// Records why the body failed; the error to give the HTTP client,
    /// which ends the request (and a chunked one without its last chunk,
    /// so that the master stores nothing).
    fn fail(&self, cause: std::io::Error) -> std::io::Error {
        let reply = std::io::Error::new(cause.kind(), cause.to_string());
        *self.failed.lock() = Some(cause);
        reply
    }
}

/// A body stream that reports each chunk to its [`Watch`], and fails when
/// its source does or when it is not the length announced.
struct Watched {
    inner: futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
    watch: Watch,
    /// It ended or failed: nothing more is read from the source.
    ended: bool,
}

impl Stream for Watched {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let item = std::task::ready!(self.inner.poll_next_unpin(cx));
        let w = &self.watch;
        let sent = w.sent.load(Ordering::Relaxed);
        let failure = match &item {
            Some(Ok(chunk)) => match length_check(w.len, sent, Some(chunk.len() as u64)) {
                Some(wrong) => Some(wrong),
                None => {
                    if let Some(crc) = &w.crc32c {
                        let mut crc = crc.lock();
                        *crc = crc32c::crc32c_append(*crc, chunk);
                    }
                    let sent = sent + chunk.len() as u64;
                    w.sent.store(sent, Ordering::Relaxed);
                    if let Some(p) = &w.progress {
                        p(sent);
                    }
                    None
                }
            },
            Some(Err(_)) => None,
            None => length_check(w.len, sent, None),
        };
        let item = match (item, failure) {
            (_, Some(wrong)) => Some(Err(w.fail(wrong))),
            (Some(Err(e)), None) => Some(Err(w.fail(e))),
            (None, None) => {
                w.done.store(true, Ordering::Relaxed);
                None
            }
            (item, None) => item,
        };
        if !matches!(item, Some(Ok(_))) {
            self.ended = true;
        }
        Poll::Ready(item)
    }
}

/// Whether a body announced as `len` bytes, `sent` of them gone, goes
/// wrong with its next chunk of `next` bytes (`None`: it ended there).
fn length_check(len: Option<u64>, sent: u64, next: Option<u64>) -> Option<std::io::Error> {
    use std::io::{Error, ErrorKind};
    let len = len?;
    match next {
        None if sent < len => Some(Error::new(
            ErrorKind::UnexpectedEof,
            format!("it ended after {sent} of the {len} bytes announced"),
        )),
        Some(n) if sent + n > len => Some(Error::new(
            ErrorKind::InvalidData,
            format!("it is longer than the {len} bytes announced"),
        )),
        _ => None,
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

    fn with_meta(pairs: &[(&str, &str)]) -> PutOptions {
        PutOptions {
            meta: pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn meta_takes_the_stored_headers_in_any_case_and_nothing_else() {
        let k = Key::new("/m/k").unwrap();
        let headers = write_headers(
            &k,
            &with_meta(&[
                ("Content-Type", "text/plain"),
                ("CACHE-CONTROL", "no-cache"),
                ("content-disposition", "attachment; filename=\"café.txt\""),
                ("Content-Encoding", "gzip"),
                ("Content-Language", "fr"),
                ("Expires", "Thu, 01 Jan 2099 00:00:00 GMT"),
                ("X-Amz-Meta-City", "Zürich"),
                ("x-amz-meta-tag", "a"),
                ("x-amz-meta-tag", "b"),
            ]),
        )
        .unwrap();
        assert_eq!(headers["content-type"], "text/plain");
        assert_eq!(headers["cache-control"], "no-cache");
        assert_eq!(headers["x-amz-meta-city"].as_bytes(), "Zürich".as_bytes());
        let tags: Vec<_> = headers.get_all("x-amz-meta-tag").iter().collect();
        assert_eq!(tags, ["a", "b"], "a name given twice goes twice");
        assert_eq!(headers.len(), 9);

        for name in [
            "Trove-Replace",
            "trove-compose",
            "Trove-Expires-After",
            "Trove-Etag",
            "If-Match",
            "If-None-Match",
            "If-Unmodified-Since",
            "Content-MD5",
            "Key-Sha256",
            "Content-Length",
            "X-Custom",
            "x-amz-meta-",
            "x-amz-metadata",
        ] {
            match write_headers(&k, &with_meta(&[(name, "1")])) {
                Err(Error::InvalidHeader {
                    key, name: n, reason, ..
                }) => {
                    assert_eq!((key.as_str(), n.as_str()), ("/m/k", name));
                    assert!(reason.contains("is not metadata"), "{name}: {reason}");
                    assert!(reason.contains("content-type") && reason.contains("x-amz-meta-<name>"));
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        for (name, value, says) in [
            ("Bad Name", "x", "not a valid HTTP header name"),
            ("", "x", "not a valid HTTP header name"),
            ("x-amz-meta-é", "x", "not a valid HTTP header name"),
            ("x-amz-meta-a", "line\nbreak", "no HTTP header can carry"),
            (
                "Content-Type",
                "text/plain\r\nTrove-Replace: 1",
                "no HTTP header can carry",
            ),
        ] {
            let e = write_headers(&k, &with_meta(&[(name, value)])).unwrap_err();
            assert!(e.to_string().contains(says), "{name:?}: {e}");
            assert!(
                e.to_string().contains(&format!("{name:?}")),
                "names the pair: {e}"
            );
            assert!(!e.is_retryable(), "{e}");
        }
    }

    #[test]
    fn the_other_caller_headers_are_checked_too() {
        let k = Key::new("/m/k").unwrap();
        let opts = PutOptions {
            replace: true,
            allow_empty: true,
            etag: Some("abc-2".into()),
            if_match: Some("\"x\"".into()),
            if_none_match: Some("*".into()),
            expires: Some(Expiry::Never),
            ..Default::default()
        };
        let headers = write_headers(&k, &opts).unwrap();
        for (name, value) in [
            (TROVE_REPLACE, "1"),
            (TROVE_ALLOW_EMPTY, "1"),
            (TROVE_ETAG, "abc-2"),
            ("if-match", "\"x\""),
            ("if-none-match", "*"),
            (TROVE_EXPIRES_AFTER, "never"),
        ] {
            assert_eq!(headers[name], value, "{name}");
        }
        let bad = PutOptions {
            if_match: Some("\"x\"\n".into()),
            ..Default::default()
        };
        let e = write_headers(&k, &bad).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidHeader { name, .. } if name == "if-match"),
            "{e}"
        );
    }

    /// Drains a [`Watched`] over `chunks` announced as `len` bytes; what it
    /// yielded, and what its watch recorded as the failure.
    fn watched(
        chunks: Vec<std::io::Result<Bytes>>,
        len: Option<u64>,
    ) -> (Vec<std::io::Result<Bytes>>, Option<std::io::Error>, u64) {
        let watch = Watch::new(None, None, len);
        let stream = Watched {
            inner: futures::stream::iter(chunks).boxed(),
            watch: watch.clone(),
            ended: false,
        };
        let items = futures::executor::block_on(stream.collect::<Vec<_>>());
        let failed = watch.failed.lock().take();
        (items, failed, watch.sent.load(Ordering::Relaxed))
    }

    #[test]
    fn a_failing_or_short_body_is_recorded_as_the_callers() {
        let chunk = |s: &'static str| Ok(Bytes::from_static(s.as_bytes()));
        let (items, failed, sent) = watched(vec![chunk("ab"), chunk("cd")], Some(4));
        assert!(items.iter().all(Result::is_ok) && failed.is_none() && sent == 4);
        let (items, failed, _) = watched(vec![chunk("ab")], None);
        assert!(items.len() == 1 && failed.is_none());

        // The caller's error is kept whole; nothing is read after it.
        let boom = || Err(std::io::Error::other("boom"));
        let (items, failed, sent) = watched(vec![chunk("ab"), boom(), chunk("cd")], None);
        assert_eq!(items.len(), 2);
        assert_eq!(failed.unwrap().to_string(), "boom");
        assert_eq!(sent, 2);

        let (items, failed, _) = watched(vec![chunk("ab")], Some(1000));
        assert!(items.last().unwrap().is_err());
        let failed = failed.unwrap();
        assert_eq!(failed.kind(), std::io::ErrorKind::UnexpectedEof);
        assert_eq!(failed.to_string(), "it ended after 2 of the 1000 bytes announced");

        let (items, failed, sent) = watched(vec![chunk("ab"), chunk("cd")], Some(3));
        assert_eq!(items.len(), 2, "the chunk past the length is not sent");
        assert_eq!(sent, 2);
        assert_eq!(
            failed.unwrap().to_string(),
            "it is longer than the 3 bytes announced"
        );
    }
}
