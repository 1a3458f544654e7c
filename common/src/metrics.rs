//! The metrics both servers expose at `/-/metrics`, on the
//! `prometheus-client` crate (OpenMetrics text): requests by method and
//! status, latency histograms (time to the response headers), request and
//! request and response body bytes as they pass (chunked bodies included),
//! and the accept loop's connection counts. Each server adds its own gauges and
//! counters at scrape time through [`Scrape`].
//!
//! Every series is an atomic (a counter, a gauge, a histogram behind a
//! family's read lock): recording a request takes no global lock.

use axum::http::Method;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

/// The `Content-Type` of a scrape (OpenMetrics text, which Prometheus
/// reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// The method as a label: the known ones, or `OTHER` (so that made-up
/// methods cannot grow the label set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct MethodLabel(&'static str);

impl MethodLabel {
    const KNOWN: [&'static str; 6] = ["GET", "HEAD", "PUT", "POST", "DELETE", "UNLINK"];

    fn of(method: &Method) -> MethodLabel {
        let known = MethodLabel::KNOWN.into_iter().find(|m| *m == method.as_str());
        MethodLabel(known.unwrap_or("OTHER"))
    }
}

impl EncodeLabelValue for MethodLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    method: MethodLabel,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MethodLabels {
    method: MethodLabel,
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Counters of the HTTP traffic a server has answered.
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<MethodLabels, Histogram, fn() -> Histogram>,
    received: Counter,
    sent: Counter,
    /// Fed by the accept loop ([`crate::server`]).
    pub connections: ConnectionMetrics,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            received: Counter::default(),
            sent: Counter::default(),
            connections: ConnectionMetrics::default(),
        }
    }
}

/// Why the server closed a connection on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

impl EncodeLabelValue for Timeout {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.label())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: Timeout,
}

/// Client connections: open now, refused for being over the limit, and
/// closed by each timeout.
pub struct ConnectionMetrics {
    open: Gauge,
    refused: Counter,
    timed_out: Family<ReasonLabels, Counter>,
}

impl Default for ConnectionMetrics {
    fn default() -> Self {
        let timed_out = Family::default();
        // Every reason is shown from the start, at 0.
        for reason in Timeout::ALL {
            let _ = timed_out.get_or_create(&ReasonLabels { reason });
        }
        ConnectionMetrics {
            open: Gauge::default(),
            refused: Counter::default(),
            timed_out,
        }
    }
}

impl ConnectionMetrics {
    pub fn opened(&self) {
        self.open.inc();
    }

    pub fn closed(&self) {
        self.open.dec();
    }

    pub fn refused(&self) {
        self.refused.inc();
    }

    pub fn timed_out(&self, reason: Timeout) {
        self.timed_out.get_or_create(&ReasonLabels { reason }).inc();
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "trove_connections_open",
            "Client connections being served",
            self.open.clone(),
        );
        registry.register(
            "trove_connections_refused",
            "Connections answered 503 (or closed) for being over --max-connections",
            self.refused.clone(),
        );
        registry.register(
            "trove_connections_timed_out",
            "Connections closed by the server, by timeout",
            self.timed_out.clone(),
        );
    }
}

impl HttpMetrics {
    /// Records one answered request (its body bytes are counted as they
    /// pass, by the accept loop's body wrappers: [`crate::server`]).
    pub fn observe(&self, method: &Method, status: u16, took: Duration) {
        let method = MethodLabel::of(method);
        self.requests
            .get_or_create(&RequestLabels { method, status })
            .inc();
        self.latency
            .get_or_create(&MethodLabels { method })
            .observe(took.as_secs_f64());
    }

    /// Request body bytes arrived (read by a handler or drained).
    pub(crate) fn received(&self, bytes: usize) {
        self.received.inc_by(bytes as u64);
    }

    /// Response body bytes handed to the connection.
    pub(crate) fn sent(&self, bytes: usize) {
        self.sent.inc_by(bytes as u64);
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "trove_requests",
            "Requests answered, by method and status",
            self.requests.clone(),
        );
        registry.register(
            "trove_request_duration_seconds",
            "Time to the response headers",
            self.latency.clone(),
        );
        registry.register(
            "trove_received_bytes",
            "Request body bytes received (chunked bodies included)",
            self.received.clone(),
        );
        registry.register(
            "trove_sent_bytes",
            "Response body bytes sent (chunked bodies included)",
            self.sent.clone(),
        );
        self.connections.register(registry);
    }
}

/// One scrape of `/-/metrics`: the server's [`HttpMetrics`], plus the
/// values a server reads at scrape time (its gauges and the counters it
/// keeps elsewhere). Counter names are given without `_total`, which the
/// encoding adds.
pub struct Scrape {
    registry: Registry,
}

impl Scrape {
    pub fn new(http: &HttpMetrics) -> Scrape {
        let mut registry = Registry::default();
        http.register(&mut registry);
        Scrape { registry }
    }

    /// A gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: i64) {
        self.registry.register(name, help, ConstGauge::new(value));
    }

    /// A family of gauges with one label, `label`: one `(label value,
    /// value)` pair per series.
    pub fn gauges(
        &mut self,
        name: &str,
        help: &str,
        label: &'static str,
        values: impl IntoIterator<Item = (String, i64)>,
    ) {
        let family = Family::<Vec<(&'static str, String)>, Gauge>::default();
        for (label_value, value) in values {
            family.get_or_create(&vec![(label, label_value)]).set(value);
        }
        self.registry.register(name, help, family);
    }

    /// A counter without labels (`name` without `_total`).
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.registry.register(name, help, ConstCounter::new(value));
    }

    /// The OpenMetrics text, ending in `# EOF`.
    pub fn render(self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// [`Scrape::render`] as an answer, with its content type.
    pub fn answer(self) -> ([(axum::http::header::HeaderName, &'static str); 1], String) {
        ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], self.render())
    }
}

/// The middleware that feeds [`HttpMetrics`]: wrap a router with
/// `axum::middleware::from_fn_with_state(metrics, metrics::track)`. It
/// counts requests and times them; the bodies' bytes are counted frame by
/// frame by the accept loop ([`crate::server`]), which owns the bodies'
/// wrappers already.
pub async fn track(
    axum::extract::State(metrics): axum::extract::State<Arc<HttpMetrics>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    metrics.observe(&method, resp.status().as_u16(), started.elapsed());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_openmetrics_text() {
        let m = HttpMetrics::default();
        m.observe(&Method::PUT, 201, Duration::from_millis(3));
        m.observe(&Method::PUT, 201, Duration::from_millis(300));
        let brew = Method::from_bytes(b"BREW").unwrap();
        m.observe(&brew, 405, Duration::from_micros(10));
        m.received.inc_by(150);
        m.sent.inc_by(40);
        m.connections.timed_out(Timeout::Idle);
        let mut scrape = Scrape::new(&m);
        scrape.gauges(
            "trove_volume_up",
            "Volume health",
            "volume",
            [("a:1".to_string(), 1), ("b\"\n\\:2".to_string(), 0)],
        );
        scrape.gauge("trove_blobs", "Blobs stored", 7);
        scrape.counter("trove_expired_keys", "Keys expired", 3);
        let out = scrape.render();
        for line in [
            "# TYPE trove_requests counter",
            "trove_requests_total{method=\"PUT\",status=\"201\"} 2",
            "trove_requests_total{method=\"OTHER\",status=\"405\"} 1",
            "# TYPE trove_request_duration_seconds histogram",
            "trove_request_duration_seconds_bucket{le=\"0.005\",method=\"PUT\"} 1",
            "trove_request_duration_seconds_bucket{le=\"+Inf\",method=\"PUT\"} 2",
            "trove_request_duration_seconds_count{method=\"PUT\"} 2",
            "trove_received_bytes_total 150",
            "trove_sent_bytes_total 40",
            "trove_volume_up{volume=\"a:1\"} 1",
            // Label values are escaped: quote, newline, backslash.
            "trove_volume_up{volume=\"b\\\"\\n\\\\:2\"} 0",
            "trove_blobs 7",
            "trove_expired_keys_total 3",
            "trove_connections_open 0",
            "trove_connections_refused_total 0",
            "trove_connections_timed_out_total{reason=\"idle\"} 1",
            "trove_connections_timed_out_total{reason=\"stall\"} 0",
            "# EOF",
        ] {
            assert!(out.lines().any(|l| l == line), "{line:?} missing from:\n{out}");
        }
    }
}
