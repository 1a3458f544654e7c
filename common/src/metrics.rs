//! Prometheus text-format metrics both servers expose at `/-/metrics`:
//! requests by method and status, latency histograms (time to the response
//! headers) and bytes in and out (as announced by `Content-Length`). Each
//! server adds its own gauges with [`gauge`].

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    /// Observations at or below each bucket's bound (not cumulative here).
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(&'static str, u16), u64>,
    latency: BTreeMap<&'static str, Histogram>,
    bytes_in: u64,
    bytes_out: u64,
}

/// Counters of the HTTP traffic a server has answered.
#[derive(Default)]
pub struct HttpMetrics {
    inner: Mutex<Inner>,
    /// Fed by the accept loop ([`crate::server`]).
    pub connections: ConnectionMetrics,
}

/// Why the server closed a connection on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// No request for the idle timeout.
    Idle,
    /// A request's headers were not complete within the header timeout.
    Headers,
    /// The client took no byte of an answer for the stall timeout.
    Stall,
}

impl Timeout {
    const ALL: [Timeout; 3] = [Timeout::Idle, Timeout::Headers, Timeout::Stall];

    fn label(self) -> &'static str {
        match self {
            Timeout::Idle => "idle",
            Timeout::Headers => "headers",
            Timeout::Stall => "stall",
        }
    }
}

/// Client connections: open now, refused for being over the limit, and
/// closed by each timeout.
#[derive(Default)]
pub struct ConnectionMetrics {
    open: AtomicU64,
    refused: AtomicU64,
    timed_out: [AtomicU64; 3],
}

impl ConnectionMetrics {
    pub fn opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    pub fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn timed_out(&self, why: Timeout) {
        self.timed_out[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String) {
        let open = self.open.load(Ordering::Relaxed) as f64;
        gauge(
            out,
            "trove_connections_open",
            "Client connections being served.",
            &[(vec![], open)],
        );
        counter(
            out,
            "trove_connections_refused_total",
            "Connections answered 503 (or closed) for being over --max-connections.",
            self.refused.load(Ordering::Relaxed),
        );
        out.push_str(
            "# HELP trove_connections_timed_out_total Connections closed by the server, by timeout.\n",
        );
        out.push_str("# TYPE trove_connections_timed_out_total counter\n");
        for why in Timeout::ALL {
            let n = self.timed_out[why as usize].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "trove_connections_timed_out_total{{reason=\"{}\"}} {n}",
                why.label()
            );
        }
    }
}

/// The method as a label: the known ones, or `OTHER` (so that made-up
/// methods cannot grow the label set).
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "PUT" => "PUT",
        "POST" => "POST",
        "DELETE" => "DELETE",
        "UNLINK" => "UNLINK",
        _ => "OTHER",
    }
}

impl HttpMetrics {
    /// Records one answered request.
    pub fn observe(&self, method: &str, status: u16, took: Duration, bytes_in: u64, bytes_out: u64) {
        let method = method_label(method);
        let secs = took.as_secs_f64();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *inner.requests.entry((method, status)).or_default() += 1;
        let h = inner.latency.entry(method).or_default();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            h.buckets[i] += 1;
        }
        h.sum += secs;
        h.count += 1;
        inner.bytes_in += bytes_in;
        inner.bytes_out += bytes_out;
    }

    /// Appends the HTTP metrics to `out`.
    pub fn render(&self, out: &mut String) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        out.push_str("# HELP trove_requests_total Requests answered, by method and status.\n");
        out.push_str("# TYPE trove_requests_total counter\n");
        for ((method, status), n) in &inner.requests {
            let _ = writeln!(
                out,
                "trove_requests_total{{method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP trove_request_duration_seconds Time to the response headers.\n");
        out.push_str("# TYPE trove_request_duration_seconds histogram\n");
        for (method, h) in &inner.latency {
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(h.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "trove_request_duration_seconds_bucket{{method=\"{method}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "trove_request_duration_seconds_bucket{{method=\"{method}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "trove_request_duration_seconds_sum{{method=\"{method}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "trove_request_duration_seconds_count{{method=\"{method}\"}} {}",
                h.count
            );
        }
        counter(
            out,
            "trove_received_bytes_total",
            "Request body bytes, as announced by Content-Length.",
            inner.bytes_in,
        );
        counter(
            out,
            "trove_sent_bytes_total",
            "Response body bytes, as announced by Content-Length.",
            inner.bytes_out,
        );
        drop(inner);
        self.connections.render(out);
    }
}

/// The middleware that feeds [`HttpMetrics`]: wrap a router with
/// `axum::middleware::from_fn_with_state(metrics, metrics::track)`.
pub async fn track(
    axum::extract::State(metrics): axum::extract::State<std::sync::Arc<HttpMetrics>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let length = |h: &axum::http::HeaderMap| crate::http::content_length(h).ok().flatten().unwrap_or(0);
    let method = req.method().clone();
    let bytes_in = length(req.headers());
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    let bytes_out = if method == axum::http::Method::HEAD {
        0
    } else {
        length(resp.headers())
    };
    metrics.observe(
        method.as_str(),
        resp.status().as_u16(),
        started.elapsed(),
        bytes_in,
        bytes_out,
    );
    resp
}

/// Appends one counter without labels.
pub fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
}

/// Appends one gauge family: `values` are (labels, value) pairs.
pub fn gauge(out: &mut String, name: &str, help: &str, values: &[(Vec<(&str, String)>, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (labels, value) in values {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = HttpMetrics::default();
        m.observe("PUT", 201, Duration::from_millis(3), 100, 0);
        m.observe("PUT", 201, Duration::from_millis(300), 50, 0);
        m.observe("BREW", 405, Duration::from_micros(10), 0, 40);
        let mut out = String::new();
        m.render(&mut out);
        gauge(
            &mut out,
            "trove_volume_up",
            "Volume health.",
            &[(vec![("volume", "a:1".into())], 1.0)],
        );
        assert!(
            out.contains("trove_requests_total{method=\"PUT\",status=\"201\"} 2"),
            "{out}"
        );
        assert!(out.contains("trove_requests_total{method=\"OTHER\",status=\"405\"} 1"));
        assert!(out.contains("trove_request_duration_seconds_bucket{method=\"PUT\",le=\"0.005\"} 1"));
        assert!(out.contains("trove_request_duration_seconds_bucket{method=\"PUT\",le=\"+Inf\"} 2"));
        assert!(out.contains("trove_received_bytes_total 150"));
        assert!(out.contains("trove_sent_bytes_total 40"));
        assert!(out.contains("trove_volume_up{volume=\"a:1\"} 1"));
        assert!(out.contains("trove_connections_open 0"), "{out}");
        assert!(out.contains("trove_connections_timed_out_total{reason=\"stall\"} 0"));
    }
}
