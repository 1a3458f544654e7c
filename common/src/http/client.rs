//! The HTTP client for calls from one Trove server to another.

use std::time::Duration;

/// Timeouts for requests from one Trove server to another.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Giving up on a TCP connect.
    pub connect: Duration,
    /// Giving up when no byte has moved for this long. There is no total
    /// timeout: a large transfer may take as long as it needs while it
    /// keeps moving.
    pub stall: Duration,
}

/// The client for server-to-server calls: no redirects followed (a
/// streaming body cannot be re-sent), no proxy, `TCP_NODELAY`, and a
/// connect timeout.
///
/// It deliberately has no read timeout: reqwest's `read_timeout` also runs
/// from the start of a request until its response headers, which would cut
/// an upload that takes longer. Callers bound each wait themselves with
/// [`Timeouts::stall`] (per chunk sent or received, and for the answer after
/// the last byte), and small control requests use a per-request timeout.
pub fn client(timeouts: Timeouts) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .tcp_nodelay(true)
        .connect_timeout(timeouts.connect)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .expect("the HTTP client's configuration is valid")
}

/// A failed request, described for a person: its innermost cause (the one
/// to act on, "Connection refused"), prefixed when connecting failed.
pub fn transport_error(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    if e.is_connect() {
        format!("cannot connect: {cause}")
    } else {
        cause.to_string()
    }
}
