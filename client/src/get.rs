//! `GET /key`: ask the master, then stream the bytes from a replica —
//! with fail-over to the other replicas, resumption by `Range` after a cut
//! connection, and a sha256 check of the whole value at its end.
//!
//! The master's `302` names one healthy replica (`Location`) and every
//! replica (`Key-Volumes`). The reader starts at `Location`; when a replica
//! cannot be reached, answers an error, stalls, or cuts the body off, the
//! next replica is asked for the rest (`Range: bytes=<pos>-`), so bytes
//! already delivered are never fetched again. A signed `Location` is valid
//! on every volume of the cluster (the signature covers the path, not the
//! host); when it has expired, the master is asked for a fresh one.
//!
//! Memory is one chunk at a time. The sha256 (whole values only) is
//! checked when the last byte has been read: a stream ends with
//! [`Error::Corrupt`] on a mismatch, and [`Client::download`], which writes
//! to a temp file first, then fetches the value again from another replica.

use crate::client::{key, Client};
use crate::error::{Error, Result};
use crate::put::ProgressFn;
use crate::stat::{redirect, Stat};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::{Method, StatusCode, Url};
use sha2::{Digest, Sha256};
use std::ops::Range;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncWrite, AsyncWriteExt};
pub use trove_common::range::ByteRange;

/// Options of a read; `Default` reads the whole value.
#[derive(Clone, Default)]
pub struct GetOptions {
    /// One byte range instead of the whole value (no sha256 check then:
    /// the recorded digest covers the whole value only).
    pub range: Option<ByteRange>,
    /// Told how many bytes of the value (or range) have arrived so far.
    pub progress: Option<ProgressFn>,
    /// Do not hash the whole value to check it against its recorded
    /// sha256 (a proxy that cannot take back bytes it already passed on
    /// gains nothing from a late check, and the volume checks its block
    /// CRCs as it reads).
    pub skip_sha256: bool,
}

/// How a read went: where the bytes came from and what went wrong on the
/// way.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GetReport {
    /// Bytes delivered.
    pub bytes: u64,
    /// Times the transfer continued (from another replica, by `Range`)
    /// after a replica failed mid-way.
    pub resumes: u32,
    /// The replicas bytes came from, in order.
    pub sources: Vec<String>,
    /// Replicas that failed, with the reason.
    pub failures: Vec<String>,
    /// Replicas whose bytes did not match the recorded sha256.
    pub corrupt: Vec<String>,
    /// Times the master was asked for a fresh redirect because a signed
    /// URL had expired during a long read.
    pub relocations: u32,
    /// Whether the sha256 of the whole value was checked.
    pub verified: bool,
}

/// The bytes of a value (or a range of it), as a stream of chunks; its
/// last item is an error if the bytes could not all be read or did not
/// match the recorded sha256.
pub struct GetStream {
    stat: Stat,
    range: Range<u64>,
    report: Arc<Mutex<GetReport>>,
    /// The read before its first poll (so [`Client::get`] can open it).
    fetch: Option<Fetch>,
    inner: Option<BoxStream<'static, Result<Bytes>>>,
}

impl GetStream {
    /// The key's record (size, digests, replicas).
    pub fn stat(&self) -> &Stat {
        &self.stat
    }

    /// The byte range being delivered.
    pub fn range(&self) -> Range<u64> {
        self.range.clone()
    }

    /// The replica currently serving the bytes (`host:port`).
    pub fn source(&self) -> Option<String> {
        self.report().sources.last().cloned()
    }

    /// How the read has gone so far.
    pub fn report(&self) -> GetReport {
        self.report.lock().clone()
    }

    /// Connects to the first replica that answers, before the first poll.
    async fn open(&mut self) -> Result<()> {
        match self.fetch.as_mut() {
            Some(f) if f.pos < f.end && f.body.is_none() => f.open().await,
            _ => Ok(()),
        }
    }
}

/// How often a read asks the master again when the value it was sent to
/// was replaced before its first byte.
const REPLACED_RETRIES: u32 = 5;

impl Stream for GetStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(fetch) = self.fetch.take() {
            self.inner = Some(
                futures::stream::unfold(fetch, |mut f| async move { f.next().await.map(|item| (item, f)) })
                    .boxed(),
            );
        }
        match self.inner.as_mut() {
            Some(inner) => inner.poll_next_unpin(cx),
            None => Poll::Ready(None),
        }
    }
}

impl Client {
    /// Streams a value (or `opts.range` of it).
    ///
    /// ```no_run
    /// # async fn demo(client: trove_client::Client) -> trove_client::Result<()> {
    /// use futures::StreamExt;
    /// use trove_client::{ByteRange, GetOptions};
    /// let opts = GetOptions { range: Some(ByteRange::From(1024)), ..Default::default() };
    /// let mut stream = client.get("/videos/big.mp4", &opts).await?;
    /// println!("{} bytes from {:?}", stream.range().end - stream.range().start, stream.source());
    /// while let Some(chunk) = stream.next().await {
    ///     let chunk = chunk?; // the last item fails on a cut-off or a corrupt value
    ///     # let _ = chunk;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// The first replica is asked before this returns, so that a value
    /// replaced between the master's answer and the volume's (the pinned
    /// copy is gone: the volume answers "replaced") is looked up again and
    /// the stream's [`GetStream::stat`] always describes the bytes it
    /// delivers.
    pub async fn get(&self, raw_key: &str, opts: &GetOptions) -> Result<GetStream> {
        let stat = self.locate(raw_key).await?;
        self.get_located(raw_key, stat, opts).await
    }

    /// [`Client::get`] for a key whose redirect the caller already has
    /// (from [`Client::stat`]): the master is asked again only if the copy
    /// it names was replaced before its first byte.
    pub async fn get_located(&self, raw_key: &str, mut stat: Stat, opts: &GetOptions) -> Result<GetStream> {
        let mut tries = 0;
        loop {
            let mut stream = self.stream_from(stat, opts, &[])?;
            match stream.open().await {
                Err(Error::Replaced { .. }) if tries < REPLACED_RETRIES => {
                    tries += 1;
                    stat = self.locate(raw_key).await?;
                }
                Err(e) => return Err(e),
                Ok(()) => return Ok(stream),
            }
        }
    }

    /// Streams a value into `writer` and returns how it went; fails loudly
    /// (after the bytes were written) if they do not match the recorded
    /// sha256. To a file, prefer [`Client::download`], which never leaves a
    /// corrupt file behind.
    ///
    /// ```no_run
    /// # async fn demo(client: trove_client::Client) -> trove_client::Result<()> {
    /// let report = client.get_to("/notes/today.txt", tokio::io::stdout(), &Default::default()).await?;
    /// eprintln!("{} bytes, verified: {}", report.bytes, report.verified);
    /// # Ok(()) }
    /// ```
    pub async fn get_to<W>(&self, raw_key: &str, writer: W, opts: &GetOptions) -> Result<GetReport>
    where
        W: AsyncWrite + Unpin,
    {
        let stream = self.get(raw_key, opts).await?;
        copy_to(stream, writer).await
    }

    /// Downloads a whole value to `path`: into a temp file beside it, then
    /// renamed into place once its sha256 matched. A replica whose bytes do
    /// not match is reported and the value is fetched again from another.
    ///
    /// The file gets the mode of the file it replaces, else the mode a new
    /// file gets (`0666` less the umask), as curl's and aws-cli's do — not
    /// the temp file's private `0600`. A `path` that is a device or a FIFO
    /// (`/dev/null`, `/dev/stdout`, a named pipe, `>(gzip > f)`) is written
    /// into as it is, as by [`Client::get_to`]: a file renamed over it
    /// would replace it. (Opening a FIFO waits for its reader.)
    ///
    /// ```no_run
    /// # async fn demo(client: trove_client::Client) -> trove_client::Result<()> {
    /// let report = client.download("/backups/db.tar", "db.tar".as_ref(), &Default::default()).await?;
    /// assert!(report.verified);
    /// # Ok(()) }
    /// ```
    pub async fn download(&self, raw_key: &str, path: &Path, opts: &GetOptions) -> Result<GetReport> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let opts = GetOptions {
            range: None,
            progress: opts.progress.clone(),
            skip_sha256: false,
        };
        let mut stat = self.locate(raw_key).await?;
        if is_special(path) {
            let special = tokio::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .await
                .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
            let stream = self.get_located(raw_key, stat, &opts).await?;
            return copy_to(stream, special).await;
        }
        let mut corrupt: Vec<String> = vec![];
        let mut failures: Vec<String> = vec![];
        let replaced = std::fs::metadata(path).ok().filter(|m| m.is_file());
        loop {
            let mut tmp = tempfile::Builder::new();
            tmp.prefix(".trove-").suffix(".part");
            #[cfg(unix)]
            if replaced.is_none() {
                // Created with 0666, which the kernel narrows by the umask:
                // the mode of any new file (reading the umask is racy).
                use std::os::unix::fs::PermissionsExt;
                tmp.permissions(std::fs::Permissions::from_mode(0o666));
            }
            let tmp = tmp
                .tempfile_in(&dir)
                .map_err(|e| Error::io(format!("cannot create a temp file in {}", dir.display()), e))?;
            let file = tokio::fs::File::from_std(
                tmp.reopen()
                    .map_err(|e| Error::io(format!("cannot open {}", tmp.path().display()), e))?,
            );
            let stream = self.stream_from(stat.clone(), &opts, &corrupt)?;
            let report = Arc::clone(&stream.report);
            match copy_to(stream, file).await {
                Ok(mut done) => {
                    if let Some(old) = &replaced {
                        // Set here, exactly: a mode given at creation would
                        // be narrowed by the umask.
                        tmp.as_file().set_permissions(old.permissions()).map_err(|e| {
                            Error::io(format!("cannot set the mode of {}", tmp.path().display()), e)
                        })?;
                    }
                    tmp.persist(path)
                        .map_err(|e| Error::io(format!("cannot rename into {}", path.display()), e.error))?;
                    done.corrupt = corrupt;
                    failures.append(&mut done.failures);
                    done.failures = failures;
                    return Ok(done);
                }
                Err(e @ Error::Corrupt { .. }) => {
                    let r = report.lock().clone();
                    tracing::warn!(error = %e, "corrupt replica; fetching the value again from another");
                    failures.extend(r.failures);
                    let before = corrupt.len();
                    for s in r.sources {
                        if !corrupt.contains(&s) {
                            corrupt.push(s);
                        }
                    }
                    if corrupt.len() == before || stat.volumes.iter().all(|v| corrupt.contains(v)) {
                        return Err(e);
                    }
                    stat = self.locate(raw_key).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The master's redirect for a key: its record and a replica URL.
    async fn locate(&self, raw_key: &str) -> Result<Stat> {
        let k = &key(raw_key)?;
        self.call(&k.url_path(), |url, _| async move {
            let resp = self.send_small(Method::GET, &url, |r| r).await?;
            redirect(k.as_str(), &url, resp).await
        })
        .await
    }

    fn stream_from(&self, stat: Stat, opts: &GetOptions, avoid: &[String]) -> Result<GetStream> {
        let range = match opts.range {
            None => 0..stat.size,
            Some(r) => r.resolve(stat.size).map_err(|e| Error::RangeNotSatisfiable {
                key: stat.key.clone(),
                len: e.len,
            })?,
        };
        let location = Url::parse(&stat.location).map_err(|e| Error::Protocol {
            url: self.master_url(""),
            message: format!("bad Location `{}`: {e}", stat.location),
        })?;
        let first = location
            .port()
            .map(|p| format!("{}:{p}", location.host_str().unwrap_or_default()));
        let mut sources: Vec<String> = first.into_iter().collect();
        for v in &stat.volumes {
            if !sources.contains(v) {
                sources.push(v.clone());
            }
        }
        // Replicas already found corrupt go last: they are tried only when
        // nothing else answers.
        sources.sort_by_key(|s| avoid.contains(s));
        let report = Arc::new(Mutex::new(GetReport::default()));
        let whole = range == (0..stat.size);
        let fetch = Fetch {
            client: self.clone(),
            stat: stat.clone(),
            location,
            sources,
            current: 0,
            pos: range.start,
            end: range.end,
            hasher: (whole && !opts.skip_sha256).then(Sha256::new),
            body: None,
            failures: 0,
            report: Arc::clone(&report),
            progress: opts.progress.clone(),
            start: range.start,
            finished: false,
        };
        Ok(GetStream {
            stat,
            range,
            report,
            fetch: Some(fetch),
            inner: None,
        })
    }
}

/// Whether `path` (followed through symlinks) is a device or a FIFO: a
/// file to write into, never to replace.
fn is_special(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// Writes a stream into `writer`, flushes, and returns the report.
async fn copy_to<W: AsyncWrite + Unpin>(mut stream: GetStream, mut writer: W) -> Result<GetReport> {
    while let Some(chunk) = stream.next().await {
        writer
            .write_all(&chunk?)
            .await
            .map_err(|e| Error::io("cannot write the value", e))?;
    }
    writer
        .flush()
        .await
        .map_err(|e| Error::io("cannot write the value", e))?;
    Ok(stream.report())
}

/// The state of one read.
struct Fetch {
    client: Client,
    stat: Stat,
    /// The master's redirect: its path and query are valid on every replica.
    location: Url,
    /// Replicas in the order they are tried.
    sources: Vec<String>,
    current: usize,
    /// The next byte to deliver, and the end of the range (exclusive).
    pos: u64,
    end: u64,
    start: u64,
    hasher: Option<Sha256>,
    body: Option<BoxStream<'static, reqwest::Result<Bytes>>>,
    /// Failures since the last byte arrived.
    failures: u32,
    report: Arc<Mutex<GetReport>>,
    progress: Option<ProgressFn>,
    finished: bool,
}

impl Fetch {
    fn report(&self) -> parking_lot::MutexGuard<'_, GetReport> {
        self.report.lock()
    }

    /// Gives up after every replica failed this many times in a row.
    fn budget(&self) -> u32 {
        2 * self.sources.len() as u32
    }

    async fn next(&mut self) -> Option<Result<Bytes>> {
        if self.finished {
            return None;
        }
        loop {
            if self.pos >= self.end {
                self.finished = true;
                return self.verify().err().map(Err);
            }
            if self.body.is_none() {
                if let Err(e) = self.open().await {
                    self.finished = true;
                    return Some(Err(e));
                }
            }
            let body = self.body.as_mut().expect("opened");
            let stall = self.client.stall_timeout();
            let failure = match tokio::time::timeout(stall, body.next()).await {
                Ok(Some(Ok(mut chunk))) => {
                    let room = self.end - self.pos;
                    if chunk.len() as u64 > room {
                        chunk.truncate(room as usize);
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    if let Some(h) = self.hasher.as_mut() {
                        h.update(&chunk);
                    }
                    self.pos += chunk.len() as u64;
                    self.failures = 0;
                    self.report().bytes = self.pos - self.start;
                    if let Some(p) = &self.progress {
                        p(self.pos - self.start);
                    }
                    return Some(Ok(chunk));
                }
                Ok(Some(Err(e))) => format!("connection broke: {}", trove_common::http::transport_error(&e)),
                Ok(None) => "the body ended early".to_string(),
                Err(_) => format!("no bytes for {stall:?}"),
            };
            // Cut off mid-way: continue from the next replica.
            self.body = None;
            let source = self.sources[self.current].clone();
            tracing::warn!(key = %self.stat.key, volume = %source, at = self.pos, reason = %failure, "read failed; resuming from another replica");
            {
                let mut r = self.report();
                r.resumes += 1;
                r.failures
                    .push(format!("{source}: {failure} at byte {}", self.pos));
            }
            self.failures += 1;
            self.current = (self.current + 1) % self.sources.len();
        }
    }

    /// Checks the whole value's sha256 once its last byte has arrived.
    fn verify(&mut self) -> Result<()> {
        let Some(h) = self.hasher.take() else {
            return Ok(());
        };
        let got = hex::encode(h.finalize());
        if got == self.stat.sha256 {
            self.report().verified = true;
            return Ok(());
        }
        let sources = self.report().sources.join(",");
        Err(Error::Corrupt {
            key: self.stat.key.clone(),
            expected: self.stat.sha256.clone(),
            got,
            source_volume: sources,
        })
    }

    /// Opens the body at `pos` from the first replica that answers.
    async fn open(&mut self) -> Result<()> {
        loop {
            if self.failures >= self.budget() {
                let failures = self.report().failures.join("; ");
                return Err(Error::Unavailable {
                    message: format!("{}: no replica could serve it ({failures})", self.stat.key),
                });
            }
            if self.failures > 0 && (self.failures as usize).is_multiple_of(self.sources.len()) {
                // A full round failed: wait before the next.
                tokio::time::sleep(self.client.retry_policy().backoff(self.failures)).await;
            }
            let source = self.sources[self.current].clone();
            match self.request(&source).await {
                Ok(body) => {
                    self.body = Some(body);
                    let mut r = self.report();
                    if r.sources.last() != Some(&source) {
                        r.sources.push(source);
                    }
                    return Ok(());
                }
                Err(Refused::Expired) => {
                    // The signed URL expired during a long read: ask again.
                    let fresh = self.client.locate(&self.stat.key).await?;
                    if fresh.sha256 != self.stat.sha256 {
                        return Err(Error::Protocol {
                            url: self.stat.location.clone(),
                            message: format!("{} was replaced while it was being read", self.stat.key),
                        });
                    }
                    self.location = Url::parse(&fresh.location).map_err(|e| Error::Protocol {
                        url: fresh.location.clone(),
                        message: e.to_string(),
                    })?;
                    self.report().relocations += 1;
                    self.failures += 1;
                }
                Err(Refused::Replaced) => {
                    // The pinned copy is gone: a newer value was committed.
                    return Err(Error::Replaced {
                        key: self.stat.key.clone(),
                    });
                }
                Err(Refused::Other(reason)) => {
                    tracing::warn!(key = %self.stat.key, volume = %source, %reason, "replica failed; trying the next");
                    self.report().failures.push(format!("{source}: {reason}"));
                    self.failures += 1;
                    self.current = (self.current + 1) % self.sources.len();
                }
            }
        }
    }

    /// One `GET` (with `Range` unless the whole value is wanted).
    async fn request(&mut self, source: &str) -> Result<BoxStream<'static, reqwest::Result<Bytes>>, Refused> {
        let mut url = self.location.clone();
        let (host, port) = source
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .ok_or_else(|| Refused::Other(format!("`{source}` is not host:port")))?;
        url.set_host(Some(host))
            .map_err(|e| Refused::Other(format!("cannot address {source}: {e}")))?;
        url.set_port(Some(port))
            .map_err(|()| Refused::Other(format!("cannot address {source}")))?;
        let ranged = self.pos > 0 || self.end < self.stat.size;
        let mut req = self.client.http().get(url.as_str());
        if ranged {
            req = req.header(RANGE, format!("bytes={}-{}", self.pos, self.end - 1));
        }
        let stall = self.client.stall_timeout();
        let resp = match tokio::time::timeout(stall, req.send()).await {
            Err(_) => return Err(Refused::Other(format!("no answer within {stall:?}"))),
            Ok(Err(e)) => return Err(Refused::Other(Error::transport(url.as_str(), &e).to_string())),
            Ok(Ok(resp)) => resp,
        };
        match resp.status() {
            StatusCode::OK if !ranged => {}
            StatusCode::PARTIAL_CONTENT if ranged => {
                let starts_at = resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.parse::<u64>().ok());
                if starts_at != Some(self.pos) {
                    return Err(Refused::Other(format!(
                        "asked for bytes from {} but got Content-Range {:?}",
                        self.pos,
                        resp.headers().get(CONTENT_RANGE)
                    )));
                }
            }
            StatusCode::FORBIDDEN if url.query().is_some_and(|q| q.contains("sig=")) => {
                return Err(Refused::Expired)
            }
            StatusCode::NOT_FOUND if url.query().is_some_and(|q| q.contains("write=")) => {
                let body = crate::client::error_body(resp).await;
                if body.contains(trove_common::http::ASK_AGAIN) {
                    return Err(Refused::Replaced);
                }
                return Err(Refused::Other(format!("answered 404: {}", body.trim())));
            }
            status => {
                let body = crate::client::error_body(resp).await;
                return Err(Refused::Other(format!("answered {status}: {}", body.trim())));
            }
        }
        Ok(resp.bytes_stream().boxed())
    }
}

/// Why a replica did not serve a request.
enum Refused {
    /// A signed URL was refused: it may have expired.
    Expired,
    /// The pinned write is gone from the volume: the value was replaced.
    Replaced,
    Other(String),
}
