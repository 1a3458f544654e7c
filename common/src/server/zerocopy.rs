//! Zero-copy response bodies: the bytes of a file go from the page cache
//! to the client's socket with `sendfile(2)`, and the bytes of another
//! server's answer from its socket to the client's with `splice(2)`
//! through a pipe, never through user space, while the answer is still an
//! ordinary hyper response with an ordinary body. The volume uses the
//! first for GET; the S3 gateway the second, to pass a volume's answer on.
//!
//! # Why
//!
//! Serving a large blob the plain way costs two copies per byte: the
//! kernel copies the file into user space (or the process faults in a
//! memory map), and copies it again into the socket. On a small machine
//! that copy is a third of a volume's CPU for a GET. `sendfile` lets the
//! kernel hand the page-cache pages to the socket directly.
//!
//! # How: marker chunks
//!
//! hyper writes a response itself, and asks its body for `Bytes`; there is
//! no hook to say "these bytes are in a file". But its HTTP/1 writer, in
//! its "queue" write strategy, keeps each body chunk as it is (no copy)
//! and hands the chunks to `poll_write_vectored` as separate `IoSlice`s,
//! in order, each one a view of the chunk's own memory (possibly advanced
//! past what an earlier, partial write took). That is what this module
//! builds on (read in hyper 1.12, `proto/h1/io.rs`: `WriteBuf`,
//! `WriteStrategy::Queue`). hyper picks that strategy when the socket
//! says [`AsyncWrite::is_write_vectored`] (a [`ZeroCopyStream`] always
//! does), and the servers also ask for it outright (`writev(true)` on the
//! connection builder). HTTP/2 copies chunks into frames: its requests
//! never get a handle.
//!
//! 1. The body, instead of a chunk of real bytes, yields a *marker chunk*:
//!    `Bytes::from_static(&MARKER[..n])`, a slice of one static buffer
//!    that nothing else ever points into. At the same moment it registers
//!    what those `n` bytes really are — `(file, offset, n)`
//!    ([`ZeroCopy::file_chunk`]), or "the next `n` bytes of this pipe"
//!    ([`ZeroCopy::pipe_chunk`]) — at the back of the connection's
//!    [`ZeroCopy`] queue.
//! 2. The socket hyper writes through is a [`ZeroCopyStream`]. Its
//!    `poll_write_vectored` writes ordinary slices with `writev` as
//!    before; when the first slice lies inside `MARKER`, it `sendfile`s
//!    the registered range instead (from `offset + (slice start - MARKER
//!    start)`, for a chunk hyper already partly wrote), or `splice`s from
//!    the pipe, and returns the count, so hyper advances past those bytes
//!    as if it had written them.
//!
//! Responses on one HTTP/1 connection go out one after the other, and
//! hyper writes a chunk only after every chunk before it, so the queue's
//! front is always the marker being written. Any disagreement (a marker
//! with nothing registered, or one hyper resumed at another position than
//! the queue expects) fails the write — the connection is dropped, never
//! sent wrong bytes.
//!
//! A marker is registered when the body yields it, not before: hyper
//! polls a body only when it will write what it gets (a `HEAD` answer's
//! body is never polled), so nothing is left in the queue for the next
//! request of a keep-alive connection.
//!
//! A [`SplicePipe`] is filled by the body from an upstream socket (only
//! when it is empty, so that a first `splice` that would block is always
//! the upstream socket's doing, and so that a pipe's write end, whose
//! readiness tokio does not track, is never waited on; what else has
//! arrived is then added while it comes without waiting) and emptied by
//! the client's socket; the body waits for it to drain with a waker the
//! socket side wakes.
//!
//! Writes that would block are waited for with tokio's readiness
//! (`poll_write_ready` + `try_io`), exactly like an ordinary write, so the
//! server's stall timeout around the socket works unchanged.
//!
//! # When it applies
//!
//! Only on Linux and unless `TROVE_ZERO_COPY=off` is set (otherwise
//! [`ZeroCopy::supported`] is false and no handle is given to handlers,
//! which then send ordinary bytes), and only for a
//! body that asks for it: a handler finds the connection's [`ZeroCopy`]
//! in its request's extensions.
//!
//! What is sent this way is not looked at by the sender: a volume checks
//! each block's CRC32C through its memory map before the block's marker is
//! yielded; the gateway relies on that check (as it did when it copied the
//! bytes, which it did not hash either).

use bytes::Bytes;
use futures::task::AtomicWaker;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The largest marker chunk (the length of `MARKER`).
pub const MAX_CHUNK: usize = 1 << 20;

/// What marker chunks point into. Never read: only its addresses matter.
/// (A `static`, unlike a `const`, has one address of its own; zeroed, it
/// lives in `.bss` and costs no memory.)
static MARKER: [u8; MAX_CHUNK] = [0; MAX_CHUNK];

/// Where the bytes of `slice` sit in `MARKER`, if it is a marker slice.
fn marker_offset(slice: &[u8]) -> Option<usize> {
    let start = MARKER.as_ptr() as usize;
    let at = (slice.as_ptr() as usize).wrapping_sub(start);
    (!slice.is_empty() && at < MAX_CHUNK).then_some(at)
}

/// Where a marker chunk's bytes are.
enum Source {
    /// In a file, from this offset.
    File { file: Arc<File>, offset: u64 },
    /// Next in a pipe.
    Pipe(Arc<SplicePipe>),
}

/// A marker chunk handed to hyper and not yet all written.
struct Pending {
    source: Source,
    len: usize,
    /// How many of them the socket has taken.
    sent: usize,
}

/// One connection's queue of marker chunks (see the module docs): the
/// handle a response body uses to yield file ranges instead of bytes.
/// Cheap to clone; every clone is the same queue.
#[derive(Clone, Default)]
pub struct ZeroCopy {
    queue: Arc<Mutex<VecDeque<Pending>>>,
}

impl std::fmt::Debug for ZeroCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZeroCopy")
            .field("pending", &self.lock().len())
            .finish()
    }
}

impl ZeroCopy {
    /// Whether marker chunks are sent here: on Linux, unless the
    /// environment says `TROVE_ZERO_COPY=off` (every body is then
    /// ordinary bytes: for comparing, or should a kernel misbehave).
    pub fn supported() -> bool {
        static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ON.get_or_init(|| {
            cfg!(target_os = "linux") && std::env::var("TROVE_ZERO_COPY").map_or(true, |v| v != "off")
        })
    }

    /// A body chunk standing for `len` bytes of `file` from `offset`:
    /// yield it from the response body at once (it is registered now). The
    /// file must not change until it is sent; `len` is 1 to
    /// [`MAX_CHUNK`].
    pub fn file_chunk(&self, file: &Arc<File>, offset: u64, len: usize) -> Bytes {
        let file = Arc::clone(file);
        self.register(Source::File { file, offset }, len)
    }

    /// A body chunk standing for the next `len` bytes of `pipe`, which
    /// [`SplicePipe::poll_fill`] has just put there: yield it at once.
    pub fn pipe_chunk(&self, pipe: &Arc<SplicePipe>, len: usize) -> Bytes {
        self.register(Source::Pipe(Arc::clone(pipe)), len)
    }

    fn register(&self, source: Source, len: usize) -> Bytes {
        assert!((1..=MAX_CHUNK).contains(&len), "a marker chunk of {len} bytes");
        self.lock().push_back(Pending { source, len, sent: 0 });
        Bytes::from_static(&MARKER[..len])
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Pending>> {
        // The queue is consistent between statements: a panic elsewhere
        // while it was held does not make it wrong.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A client's TCP socket that sends marker chunks with `sendfile` (and
/// everything else as before). Give [`ZeroCopyStream::handle`] to the
/// handlers of the requests it serves.
pub struct ZeroCopyStream {
    tcp: TcpStream,
    zc: ZeroCopy,
}

impl ZeroCopyStream {
    pub fn new(tcp: TcpStream) -> ZeroCopyStream {
        ZeroCopyStream {
            tcp,
            zc: ZeroCopy::default(),
        }
    }

    /// The queue this socket sends marker chunks from.
    pub fn handle(&self) -> ZeroCopy {
        self.zc.clone()
    }

    /// Sends (part of) the marker slice at `at..at + len` of the queue's
    /// front chunk.
    fn poll_send_marker(&mut self, cx: &mut Context<'_>, at: usize, len: usize) -> Poll<io::Result<usize>> {
        let mut queue = self.zc.lock();
        let Some(front) = queue.front_mut() else {
            return Poll::Ready(Err(mismatch("a marker chunk was written with none registered")));
        };
        if front.sent != at || at + len > front.len {
            return Poll::Ready(Err(mismatch(&format!(
                "a marker chunk written at {at}..{} while {}..{} was expected",
                at + len,
                front.sent,
                front.len
            ))));
        }
        let written = loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            let tcp = &self.tcp;
            let send = || match &front.source {
                Source::File { file, offset } => send_file(tcp, file, offset + front.sent as u64, len),
                Source::Pipe(pipe) => pipe.send(tcp, len),
            };
            match tcp.try_io(tokio::io::Interest::WRITABLE, send) {
                Ok(n) => break n,
                // Not writable after all: readiness was cleared, wait again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        };
        if written == 0 {
            // The file is shorter than what was registered (truncated by
            // hand), or the pipe empty: the promised bytes do not exist.
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the source ended before the bytes of its response",
            )));
        }
        if let Source::Pipe(pipe) = &front.source {
            pipe.sent(written);
        }
        front.sent += written;
        if front.sent == front.len {
            queue.pop_front();
        }
        Poll::Ready(Ok(written))
    }
}

/// A write that does not match the queue: a bug, never bytes to send.
fn mismatch(what: &str) -> io::Error {
    io::Error::other(format!("zero-copy response out of step: {what}"))
}

#[cfg(target_os = "linux")]
fn send_file(tcp: &TcpStream, file: &File, offset: u64, len: usize) -> io::Result<usize> {
    let mut off = i64::try_from(offset).map_err(io::Error::other)?;
    nix::sys::sendfile::sendfile64(tcp, file, Some(&mut off), len).map_err(io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn send_file(_: &TcpStream, _: &File, _: u64, _: usize) -> io::Result<usize> {
    // Never reached: no handler gets a handle where this is unsupported.
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "no sendfile on this platform",
    ))
}

/// A pipe between an upstream socket and a client's socket: the body
/// that passes an upstream answer on fills it ([`SplicePipe::poll_fill`]) and
/// yields a [`ZeroCopy::pipe_chunk`] for what it put there; the client's
/// [`ZeroCopyStream`] empties it.
pub struct SplicePipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes in the pipe that the client's socket has not taken yet.
    queued: AtomicUsize,
    /// The body waiting for the pipe to be empty.
    drained: AtomicWaker,
}

impl SplicePipe {
    /// A new pipe, as large as the system allows up to [`MAX_CHUNK`]
    /// (Linux's default is 64 KiB; unprivileged processes may raise it
    /// to `/proc/sys/fs/pipe-max-size`, 1 MiB by default).
    #[cfg(target_os = "linux")]
    pub fn new() -> io::Result<SplicePipe> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        // Smaller is only slower.
        let _ = fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&write),
            FcntlArg::F_SETPIPE_SZ(MAX_CHUNK as i32),
        );
        Ok(SplicePipe {
            read,
            write,
            queued: AtomicUsize::new(0),
            drained: AtomicWaker::new(),
        })
    }

    #[cfg(not(target_os = "linux"))]
    pub fn new() -> io::Result<SplicePipe> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no splice on this platform",
        ))
    }

    /// Moves up to `max` bytes (at most [`MAX_CHUNK`]) from `upstream`
    /// into the pipe once the client has taken everything before them:
    /// how many (0 at the end of the upstream stream).
    pub fn poll_fill(
        &self,
        cx: &mut Context<'_>,
        upstream: &TcpStream,
        max: usize,
    ) -> Poll<io::Result<usize>> {
        if self.queued.load(Ordering::Acquire) > 0 {
            self.drained.register(cx.waker());
            // Drained between the load and the registration: go on.
            if self.queued.load(Ordering::Acquire) > 0 {
                return Poll::Pending;
            }
        }
        let max = max.min(MAX_CHUNK);
        loop {
            ready!(upstream.poll_read_ready(cx))?;
            // The pipe is empty, so only the socket can make this block.
            match upstream.try_io(tokio::io::Interest::READABLE, || self.receive(upstream, max)) {
                Ok(0) => return Poll::Ready(Ok(0)),
                Ok(first) => {
                    // Take what else has arrived meanwhile, up to `max`:
                    // fewer, larger chunks. Outside `try_io`: a `splice`
                    // that would block here may be the pipe's doing (it
                    // is no longer empty), and must not clear the
                    // socket's readiness; a stale "readable" only costs
                    // one more try later.
                    let mut n = first;
                    while n < max {
                        match self.receive(upstream, max - n) {
                            Ok(more) if more > 0 => n += more,
                            _ => break,
                        }
                    }
                    self.queued.fetch_add(n, Ordering::AcqRel);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                    continue
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Bytes in the pipe the client has not taken yet.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    #[cfg(target_os = "linux")]
    fn receive(&self, upstream: &TcpStream, max: usize) -> io::Result<usize> {
        use nix::fcntl::{splice, SpliceFFlags};
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        splice(upstream, None, &self.write, None, max, flags).map_err(io::Error::from)
    }

    #[cfg(target_os = "linux")]
    fn send(&self, tcp: &TcpStream, len: usize) -> io::Result<usize> {
        use nix::fcntl::{splice, SpliceFFlags};
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        splice(&self.read, None, tcp, None, len, flags).map_err(io::Error::from)
    }

    #[cfg(not(target_os = "linux"))]
    fn receive(&self, _: &TcpStream, _: usize) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no splice on this platform",
        ))
    }

    #[cfg(not(target_os = "linux"))]
    fn send(&self, _: &TcpStream, _: usize) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no splice on this platform",
        ))
    }

    /// The client's socket took `n` bytes: wake the body once all are.
    fn sent(&self, n: usize) {
        if self.queued.fetch_sub(n, Ordering::AcqRel) == n {
            self.drained.wake();
        }
    }
}

impl AsyncRead for ZeroCopyStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for ZeroCopyStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    /// Writes the leading ordinary slices with one `writev`, or, when the
    /// first slice is a marker, that marker with `sendfile` (see the
    /// module docs). Either may be partial: the caller writes the rest.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let bufs = match bufs.iter().position(|b| !b.is_empty()) {
            Some(first) => &bufs[first..],
            None => return Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs),
        };
        if let Some(at) = marker_offset(&bufs[0]) {
            return this.poll_send_marker(cx, at, bufs[0].len());
        }
        let ordinary = bufs
            .iter()
            .position(|b| marker_offset(b).is_some())
            .unwrap_or(bufs.len());
        Pin::new(&mut this.tcp).poll_write_vectored(cx, &bufs[..ordinary])
    }

    /// Always: the marker chunks depend on hyper seeing each chunk as
    /// its own slice (see the module docs).
    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Write;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A connected pair: the writing side wrapped, with a small send
    /// buffer so that large writes are partial.
    async fn pair() -> (ZeroCopyStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(4096).unwrap();
        let writer = socket.connect(listener.local_addr().unwrap()).await.unwrap();
        let (reader, _) = listener.accept().await.unwrap();
        (ZeroCopyStream::new(writer), reader)
    }

    fn file_of(data: &[u8]) -> Arc<File> {
        let mut f = anonymous_file();
        f.write_all(data).unwrap();
        Arc::new(f)
    }

    fn anonymous_file() -> File {
        let path =
            std::env::temp_dir().join(format!("trove-zerocopy-{}-{}", std::process::id(), rand_suffix()));
        let f = std::fs::OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    /// Writes `chunks` the way hyper's queue does: all remaining chunks
    /// as slices, advancing by what each write took, at most `max` bytes
    /// offered per call (to split chunks across writes).
    async fn write_like_hyper(
        io: &mut ZeroCopyStream,
        mut chunks: VecDeque<Bytes>,
        max: usize,
    ) -> io::Result<()> {
        while !chunks.is_empty() {
            let n = std::future::poll_fn(|cx| {
                let mut budget = max;
                let slices: Vec<IoSlice<'_>> = chunks
                    .iter()
                    .map_while(|c| {
                        let take = c.len().min(budget);
                        budget -= take;
                        (take > 0).then(|| IoSlice::new(&c[..take]))
                    })
                    .collect();
                Pin::new(&mut *io).poll_write_vectored(cx, &slices)
            })
            .await?;
            assert!(n > 0, "a write took nothing");
            let mut left = n;
            while left > 0 {
                let front = chunks.front_mut().unwrap();
                let take = left.min(front.len());
                bytes::Buf::advance(front, take);
                left -= take;
                if front.is_empty() {
                    chunks.pop_front();
                }
            }
        }
        Ok(())
    }

    async fn read_all(mut client: TcpStream, len: usize) -> Vec<u8> {
        let mut got = vec![0; len];
        client.read_exact(&mut got).await.unwrap();
        got
    }

    #[tokio::test]
    async fn ordinary_and_marker_chunks_arrive_in_order_through_partial_writes() {
        let (mut io, client) = pair().await;
        let data: Vec<u8> = (0..3 * MAX_CHUNK + 12345).map(|i| (i * 7 % 251) as u8).collect();
        let file = file_of(&data);
        let zc = io.handle();
        let mut chunks = VecDeque::new();
        let mut expected = vec![];
        // Headers, a marker, ordinary bytes, two markers back to back (the
        // second a range from the middle of the file), a last short one.
        chunks.push_back(Bytes::from_static(b"HTTP/1.1 200 OK\r\n\r\n"));
        expected.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\n");
        chunks.push_back(zc.file_chunk(&file, 0, MAX_CHUNK));
        expected.extend_from_slice(&data[..MAX_CHUNK]);
        chunks.push_back(Bytes::from_static(b"between"));
        expected.extend_from_slice(b"between");
        chunks.push_back(zc.file_chunk(&file, MAX_CHUNK as u64, MAX_CHUNK));
        expected.extend_from_slice(&data[MAX_CHUNK..2 * MAX_CHUNK]);
        chunks.push_back(zc.file_chunk(&file, 12_345, 1000));
        expected.extend_from_slice(&data[12_345..13_345]);
        chunks.push_back(zc.file_chunk(&file, 3 * MAX_CHUNK as u64, 12_345));
        expected.extend_from_slice(&data[3 * MAX_CHUNK..]);
        let reader = tokio::spawn(read_all(client, expected.len()));
        write_like_hyper(&mut io, chunks, usize::MAX).await.unwrap();
        assert_eq!(reader.await.unwrap(), expected);
        assert_eq!(zc.lock().len(), 0, "every marker was sent and forgotten");
    }

    #[tokio::test]
    async fn a_marker_split_across_writes_resumes_where_it_stopped() {
        let (mut io, client) = pair().await;
        let data: Vec<u8> = (0..MAX_CHUNK).map(|i| (i % 13) as u8).collect();
        let file = file_of(&data);
        let zc = io.handle();
        let chunks = VecDeque::from([zc.file_chunk(&file, 100, 300_000), Bytes::from_static(b"end")]);
        let mut expected = data[100..300_100].to_vec();
        expected.extend_from_slice(b"end");
        let reader = tokio::spawn(read_all(client, expected.len()));
        // At most 7777 bytes offered a call: the marker goes in many pieces.
        write_like_hyper(&mut io, chunks, 7777).await.unwrap();
        assert_eq!(reader.await.unwrap(), expected);
    }

    #[tokio::test]
    async fn a_marker_out_of_step_fails_instead_of_sending_wrong_bytes() {
        let (mut io, _client) = pair().await;
        let file = file_of(&[1u8; 4096]);
        // Nothing registered.
        let stray = Bytes::from_static(&MARKER[..10]);
        let e = write_like_hyper(&mut io, VecDeque::from([stray]), usize::MAX)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("none registered"), "{e}");
        // Registered, but resumed at another place than the queue expects.
        let chunk = io.handle().file_chunk(&file, 0, 4096);
        let e = write_like_hyper(&mut io, VecDeque::from([chunk.slice(10..)]), usize::MAX)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("out of step"), "{e}");
    }

    #[tokio::test]
    async fn a_file_shorter_than_registered_is_an_error() {
        let (mut io, _client) = pair().await;
        let file = file_of(&[1u8; 100]);
        let chunk = io.handle().file_chunk(&file, 0, 200);
        let e = write_like_hyper(&mut io, VecDeque::from([chunk]), usize::MAX)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
    }

    #[tokio::test]
    async fn pipe_chunks_carry_an_upstream_stream_through() {
        use tokio::io::AsyncWriteExt;
        let (mut io, client) = pair().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut upstream_out = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (upstream, _) = listener.accept().await.unwrap();
        let data: Vec<u8> = (0..3 * MAX_CHUNK + 77).map(|i| (i * 31 % 253) as u8).collect();
        let sent = data.clone();
        let upstream_writer = tokio::spawn(async move {
            upstream_out.write_all(&sent).await.unwrap();
            // Dropped: the upstream stream ends.
        });
        let mut expected = b"head: ".to_vec();
        expected.extend_from_slice(&data);
        let reader = tokio::spawn(read_all(client, expected.len()));
        let pipe = Arc::new(SplicePipe::new().unwrap());
        let zc = io.handle();
        write_like_hyper(
            &mut io,
            VecDeque::from([Bytes::from_static(b"head: ")]),
            usize::MAX,
        )
        .await
        .unwrap();
        let mut total = 0;
        loop {
            let n = std::future::poll_fn(|cx| pipe.poll_fill(cx, &upstream, usize::MAX))
                .await
                .unwrap();
            if n == 0 {
                break;
            }
            total += n;
            let chunk = zc.pipe_chunk(&pipe, n);
            // Not drained yet: the body must wait.
            let waiting = std::future::poll_fn(|cx| Poll::Ready(pipe.poll_fill(cx, &upstream, 10))).await;
            assert!(waiting.is_pending(), "filled a pipe the client has not emptied");
            // In pieces of at most 5000 bytes: a chunk split across writes.
            write_like_hyper(&mut io, VecDeque::from([chunk]), 5000)
                .await
                .unwrap();
            assert_eq!(pipe.queued(), 0);
        }
        upstream_writer.await.unwrap();
        assert_eq!(total, data.len());
        assert!(
            reader.await.unwrap() == expected,
            "other bytes than sent upstream"
        );
    }

    #[test]
    fn only_slices_of_the_marker_are_markers() {
        assert_eq!(marker_offset(&MARKER[..5]), Some(0));
        assert_eq!(marker_offset(&MARKER[100..200]), Some(100));
        assert_eq!(marker_offset(&MARKER[MAX_CHUNK - 1..]), Some(MAX_CHUNK - 1));
        assert_eq!(marker_offset(&MARKER[5..5]), None, "empty");
        assert_eq!(marker_offset(&[0u8; 16]), None);
        assert_eq!(marker_offset(b"bytes"), None);
    }
}
