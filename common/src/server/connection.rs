//! One client connection: hyper serves it, and a watchdog closes it when
//! it has been idle, or receiving headers, for too long. The socket itself
//! is wrapped so that a response the client stops reading fails after the
//! stall timeout instead of waiting forever.

use super::body;
use super::zerocopy::{ZeroCopy, ZeroCopyStream};
use super::ConnectionLimits;
use crate::metrics::{HttpMetrics, Timeout};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

/// One request of the access log (`--access-log`), logged when its answer's
/// headers are ready.
struct AccessLine {
    peer: Option<std::net::SocketAddr>,
    method: hyper::Method,
    path: String,
    started: Instant,
}

impl AccessLine {
    fn begin<B>(peer: Option<std::net::SocketAddr>, req: &hyper::Request<B>) -> AccessLine {
        AccessLine {
            peer,
            method: req.method().clone(),
            path: req
                .uri()
                .path_and_query()
                .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
            started: Instant::now(),
        }
    }

    fn log<B>(self, resp: &hyper::Response<B>) {
        let bytes = resp
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        tracing::info!(
            target: "access",
            remote = %self.peer.map_or_else(|| "-".to_string(), |p| p.to_string()),
            method = %self.method,
            path = %self.path,
            status = resp.status().as_u16(),
            bytes = %bytes,
            ms = format_args!("{:.3}", self.started.elapsed().as_secs_f64() * 1000.0),
        );
    }
}

/// Where a connection is between requests, for the watchdog.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// No request in progress since this moment: the idle timeout runs.
    Idle(Instant),
    /// The first bytes of a request arrived at this moment: its headers
    /// must be complete within the header timeout.
    Headers(Instant),
    /// A request is being served (its body read, its answer sent): the
    /// handlers and the stall timeout bound it, not the watchdog.
    Busy,
}

/// What the socket wrapper, the body wrappers and the watchdog share.
pub(super) struct Shared {
    phase: watch::Sender<Phase>,
    /// Request and response bodies not yet finished; the connection is
    /// idle again when both are.
    busy: AtomicUsize,
    pub(super) limits: ConnectionLimits,
    metrics: Arc<HttpMetrics>,
    /// The `Server` header of every answer.
    server: hyper::header::HeaderValue,
}

impl Shared {
    /// Bytes arrived: on an idle connection, a request has begun.
    fn bytes_arrived(&self) {
        // The common case, a body arriving, costs one atomic load.
        if self.busy.load(Ordering::Acquire) > 0 {
            return;
        }
        self.phase.send_if_modified(|p| match p {
            Phase::Idle(_) => {
                *p = Phase::Headers(Instant::now());
                true
            }
            _ => false,
        });
    }

    /// A request's headers are complete: the connection is busy until the
    /// two guards (one for its body, one for the answer's) are dropped.
    fn request_began(self: &Arc<Self>) -> [BusyGuard; 2] {
        self.busy.fetch_add(2, Ordering::AcqRel);
        self.phase.send_replace(Phase::Busy);
        [BusyGuard(Arc::clone(self)), BusyGuard(Arc::clone(self))]
    }
}

/// Keeps the connection [`Phase::Busy`] while it lives.
pub(super) struct BusyGuard(Arc<Shared>);

impl BusyGuard {
    /// The server's metrics, for the body wrappers to count bytes.
    pub(super) fn metrics(&self) -> &HttpMetrics {
        &self.0.metrics
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.phase.send_replace(Phase::Idle(Instant::now()));
        }
    }
}

/// A client connection about to be served.
pub(super) struct Connection {
    shared: Arc<Shared>,
}

impl Connection {
    pub(super) fn new(
        limits: ConnectionLimits,
        metrics: Arc<HttpMetrics>,
        server: &'static str,
    ) -> Connection {
        let (phase, _) = watch::channel(Phase::Idle(Instant::now()));
        Connection {
            shared: Arc::new(Shared {
                phase,
                busy: AtomicUsize::new(0),
                limits,
                metrics,
                server: hyper::header::HeaderValue::from_static(server),
            }),
        }
    }

    /// Serves requests on `tcp` until the client closes, a timeout fires,
    /// or `stopping` turns true (then the request in progress, if any, is
    /// finished first).
    pub(super) async fn serve(self, tcp: TcpStream, app: axum::Router, mut stopping: watch::Receiver<bool>) {
        let shared = self.shared;
        let metrics = Arc::clone(&shared.metrics);
        metrics.connections.opened();
        let peer = tcp.peer_addr().ok();
        let tcp = ZeroCopyStream::new(tcp);
        // Handlers find the socket's zero-copy queue in their request's
        // extensions, where the platform can use it.
        let zero_copy = ZeroCopy::supported().then(|| tcp.handle());
        let io = TokioIo::new(TimedIo {
            tcp,
            shared: Arc::clone(&shared),
            stalled: None,
        });
        let for_requests = Arc::clone(&shared);
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            let shared = Arc::clone(&for_requests);
            let mut app = app.clone();
            if let Some(zc) = &zero_copy {
                req.extensions_mut().insert(zc.clone());
            }
            async move {
                let [request_guard, response_guard] = shared.request_began();
                let access = shared.limits.access_log.then(|| AccessLine::begin(peer, &req));
                let req = body::request(req, shared.limits.stall_timeout, request_guard);
                // A Router is always ready: `call` needs no `poll_ready` first.
                let mut resp = match tower_service::Service::call(&mut app, req).await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                };
                resp.headers_mut()
                    .insert(hyper::header::SERVER, shared.server.clone());
                if let Some(line) = access {
                    line.log(&resp);
                }
                Ok::<_, Infallible>(body::response(resp, response_guard))
            }
        });
        let conn = http1::Builder::new()
            // The watchdog below does this job (see the module docs).
            .header_read_timeout(None)
            // Body chunks go to the socket as they are, each its own
            // slice: what zero-copy chunks need (see `zerocopy`).
            .writev(true)
            .serve_connection(io, service);
        let watchdog = watchdog(shared.phase.subscribe(), shared.limits);
        tokio::pin!(conn, watchdog);
        let stop = async {
            let _ = stopping.wait_for(|s| *s).await;
        };
        let outcome = tokio::select! {
            served = conn.as_mut() => served.map_err(Closed::Error),
            why = &mut watchdog => Err(Closed::Timeout(why)),
            () = stop => {
                if matches!(*shared.phase.borrow(), Phase::Busy) {
                    // The request in progress is finished, then the
                    // connection closes.
                    conn.as_mut().graceful_shutdown();
                    tokio::select! {
                        served = conn.as_mut() => served.map_err(Closed::Error),
                        why = &mut watchdog => Err(Closed::Timeout(why)),
                    }
                } else {
                    // Idle, or headers still arriving: no request has been
                    // handled, so closing loses nothing (and a client that
                    // trickles its headers cannot delay the shutdown).
                    Ok(())
                }
            }
        };
        match outcome {
            Ok(()) => {}
            Err(Closed::Timeout(why)) => {
                metrics.connections.timed_out(why);
                tracing::debug!(reason = ?why, "connection closed by a timeout");
            }
            Err(Closed::Error(e)) => tracing::debug!(error = %e, "connection ended with an error"),
        }
        metrics.connections.closed();
    }
}

/// Why a connection ended other than by the client closing it.
enum Closed {
    Timeout(Timeout),
    Error(hyper::Error),
}

/// Resolves when the connection has been idle, or receiving headers, for
/// longer than allowed.
async fn watchdog(mut phase: watch::Receiver<Phase>, limits: ConnectionLimits) -> Timeout {
    loop {
        // A timeout too large to add (`--idle-timeout 1000000000h`) never fires.
        let deadline = match *phase.borrow_and_update() {
            Phase::Idle(since) => since
                .checked_add(limits.idle_timeout)
                .map(|at| (at, Timeout::Idle)),
            Phase::Headers(since) => since
                .checked_add(limits.header_timeout)
                .map(|at| (at, Timeout::Headers)),
            Phase::Busy => None,
        };
        let changed = async {
            if phase.changed().await.is_err() {
                // The connection is being torn down.
                std::future::pending::<()>().await;
            }
        };
        match deadline {
            Some((at, why)) => tokio::select! {
                // Unless the phase moved on at the last moment (a request
                // began just as its deadline came).
                () = tokio::time::sleep_until(at) => if !phase.has_changed().unwrap_or(true) {
                    return why;
                },
                () = changed => {}
            },
            None => changed.await,
        }
    }
}

/// The socket as hyper sees it: reads tell the watchdog that a request has
/// begun; a write that cannot make progress for the stall timeout fails,
/// which makes hyper drop the connection (and the response body). Under
/// it, the socket sends zero-copy body chunks (see [`super::zerocopy`]).
struct TimedIo {
    tcp: ZeroCopyStream,
    shared: Arc<Shared>,
    /// Running while writes are blocked (the client is not reading).
    stalled: Option<Pin<Box<Sleep>>>,
}

impl TimedIo {
    fn check_stall<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let stall = self.shared.limits.stall_timeout;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        match timer.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                self.shared.metrics.connections.timed_out(Timeout::Stall);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the client took no byte of the answer for {stall:?}"),
                )))
            }
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.shared.bytes_arrived();
        }
        poll
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.tcp).poll_write(cx, buf);
        this.check_stall(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        this.check_stall(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.tcp).poll_flush(cx);
        this.check_stall(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}
