//! The accept loop both servers run (HTTP/1.1 through hyper), and what
//! bounds each connection:
//!
//! - a connection waiting for its next request (or a new one for its
//!   first) is closed after `--idle-timeout`;
//! - a request's headers must all arrive within `--header-timeout` of its
//!   first byte (a client trickling headers cannot hold a connection);
//! - a response the client stops reading is dropped when no byte has been
//!   taken for the stall timeout;
//! - at most `--max-connections` connections are served at once; one more
//!   is answered `503` with a reason and closed;
//! - a request body the handler did not read (an early refusal) is read and
//!   discarded, up to [`crate::http::DRAIN_LIMIT`], so that a client that
//!   sends its whole body before reading sees the answer and not a reset.
//!
//! [`connection`] tracks where each connection is (idle, receiving
//! headers, busy) and enforces the timeouts; [`body`] holds the request and
//! response body wrappers that tell it when a request is done;
//! [`zerocopy`] lets a response body send file ranges with `sendfile`
//! (each request carries its connection's [`ZeroCopy`] as an extension).
//!
//! hyper has a `header_read_timeout`, but its clock starts when a
//! connection goes idle, so it would make the idle wait and the header
//! read one budget: either idle keep-alive connections are cut after a few
//! seconds, or slow headers get a minute. Hence the watchdog here.

mod body;
mod connection;
pub mod zerocopy;

use crate::flags::parse_timeout;
use crate::metrics::HttpMetrics;
use connection::Connection;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_util::task::TaskTracker;
pub use zerocopy::ZeroCopy;

/// What bounds the connections of a server (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// From a request's first byte to the end of its headers.
    pub header_timeout: Duration,
    /// A connection with no request in progress.
    pub idle_timeout: Duration,
    /// A response no byte of which the client has taken for this long is
    /// dropped; also the wait for each chunk of a refused body being drained.
    pub stall_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Log one line per request (`--access-log`).
    pub access_log: bool,
}

/// The flags that set [`ConnectionLimits`], shared by both binaries (the
/// stall timeout is each binary's own `--stall-timeout`).
#[derive(clap::Args, Debug, Clone)]
pub struct ConnectionArgs {
    /// Close a connection whose request headers have not all arrived this
    /// long after their first byte.
    #[arg(long, env = "TROVE_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_timeout)]
    pub header_timeout: Duration,
    /// Close a connection that has waited this long for a request (its
    /// first, or the next one on a keep-alive connection).
    #[arg(long, env = "TROVE_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_timeout)]
    pub idle_timeout: Duration,
    /// Serve at most this many client connections at once; one more is
    /// answered 503 and closed. Default: half the open-file limit
    /// (`ulimit -n`), so the server keeps descriptors for its own files
    /// and calls.
    #[arg(long, env = "TROVE_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
    /// Log one line per request, at INFO under the target `access`: the
    /// client's address, method, path and query, status, body bytes sent
    /// (from Content-Length; `-` when streamed without one) and the time
    /// to the answer's headers. Off by default: errors and admin events
    /// are logged either way.
    #[arg(long, env = "TROVE_ACCESS_LOG", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub access_log: bool,
}

impl ConnectionArgs {
    /// The limits, with `stall` for responses and drains.
    pub fn limits(&self, stall: Duration) -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            stall_timeout: stall,
            max_connections: self
                .max_connections
                .map_or_else(default_max_connections, |n| n as usize),
            access_log: self.access_log,
        }
    }
}

/// Half the soft open-file limit: every client connection is one
/// descriptor, and the other half stays free for blob files, calls to
/// other servers and the index.
fn default_max_connections() -> usize {
    use nix::sys::resource::{getrlimit, Resource};
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    (soft / 2).clamp(16, 1 << 16) as usize
}

/// Refusals being answered at once; beyond this (a flood), an extra
/// connection is closed without an answer rather than held open.
const MAX_REFUSALS: usize = 64;

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting, lets requests in progress finish (idle connections are
/// closed at once), and returns when every connection is closed. Every
/// answer carries `server` as its `Server` header.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    server: &'static str,
    limits: ConnectionLimits,
    metrics: Arc<HttpMetrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    let (stop, stopping) = watch::channel(false);
    let tasks = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    // Out of descriptors, most likely: the pending
                    // connections wait in the backlog meanwhile.
                    tracing::error!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // TCP_NODELAY: a redirect or a 201 goes out at once, instead of
        // waiting out Nagle's algorithm against the client's delayed ACK
        // (~40 ms).
        let _ = tcp.set_nodelay(true);
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics.connections.refused();
            if let Ok(refusal) = Arc::clone(&refusals).try_acquire_owned() {
                tasks.spawn(async move {
                    refuse(tcp, limits.max_connections, server).await;
                    drop(refusal);
                });
            }
            continue;
        };
        let conn = Connection::new(limits, Arc::clone(&metrics), server);
        let (app, stopping) = (app.clone(), stopping.clone());
        tasks.spawn(async move {
            conn.serve(tcp, app, stopping).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    tasks.close();
    tasks.wait().await;
    Ok(())
}

/// Accept errors that concern one connection only (it was reset before
/// being accepted); the listener is fine.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | ConnectionRefused)
}

/// Answers a connection over the limit with `503` and a reason, then reads
/// (and discards) what the client sent before closing, so that the answer
/// is not lost to a reset; all within a couple of seconds.
async fn refuse(mut tcp: TcpStream, max: usize, server: &str) {
    let reason = format!(
        "too many connections: this server serves at most {max} at once (--max-connections); retry later\n"
    );
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nserver: {server}\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{reason}",
        reason.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        tcp.write_all(answer.as_bytes()).await?;
        tcp.shutdown().await?;
        let mut buf = [0u8; 8192];
        let mut read = 0;
        while read < 1 << 20 {
            match tcp.read(&mut buf).await? {
                0 => break,
                n => read += n,
            }
        }
        std::io::Result::Ok(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limit_leaves_half_the_descriptors() {
        use nix::sys::resource::{getrlimit, Resource};
        let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let n = default_max_connections() as u64;
        assert!((16..=1 << 16).contains(&n), "{n}");
        assert!(
            n == 16 || n == 1 << 16 || n == soft / 2,
            "{n} for a limit of {soft}"
        );
    }
}
