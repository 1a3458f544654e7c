//! [`Client`] and its builder: the masters, the timeouts, the retry policy,
//! and the one loop through which every master call goes.

use crate::error::{Error, Result};
use crate::retry::RetryPolicy;
use reqwest::{Method, RequestBuilder, Response, Url};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use trove_common::http::TROVE_ERROR;
use trove_common::key::Key;

/// A Trove client. Cheap to clone (an `Arc` inside); share one per process
/// so connections are reused.
///
/// ```no_run
/// # async fn demo() -> trove_client::Result<()> {
/// let client = trove_client::Client::builder()
///     .master("http://10.0.0.1:3000")
///     .master("http://10.0.0.2:3000") // fail-over
///     .build()?;
/// let stat = client.stat("/photos/cat.jpg").await?;
/// println!("{} bytes on {:?}", stat.size, stat.volumes);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) masters: Vec<Url>,
    /// The master that answered last: calls start there.
    pub(crate) current: AtomicUsize,
    pub(crate) stall: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) on_retry: Option<RetryFn>,
}

/// Told about each retry: the error, and the wait before the next attempt.
pub type RetryFn = Arc<dyn Fn(&Error, Duration) + Send + Sync>;

/// Builds a [`Client`]; every setting has a default but the master.
///
/// ```no_run
/// use std::time::Duration;
/// let client = trove_client::Client::builder()
///     .master("http://127.0.0.1:3000")
///     .connect_timeout(Duration::from_secs(2))
///     .stall_timeout(Duration::from_secs(30))
///     .retry(trove_client::RetryPolicy::default())
///     .build()
///     .unwrap();
/// ```
#[derive(Clone)]
pub struct ClientBuilder {
    masters: Vec<String>,
    connect_timeout: Duration,
    stall_timeout: Duration,
    retry: RetryPolicy,
    on_retry: Option<RetryFn>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            masters: vec![],
            connect_timeout: Duration::from_secs(5),
            stall_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            on_retry: None,
        }
    }
}

impl ClientBuilder {
    /// Adds a master URL (`http://host:port`); with several, a call that
    /// cannot reach one tries the next.
    pub fn master(mut self, url: impl Into<String>) -> Self {
        self.masters.push(url.into());
        self
    }

    /// Adds several master URLs.
    pub fn masters<I: IntoIterator<Item = S>, S: Into<String>>(mut self, urls: I) -> Self {
        self.masters.extend(urls.into_iter().map(Into::into));
        self
    }

    /// Giving up on a TCP connect (default 5 s).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Giving up when no byte has moved for this long (default 30 s).
    /// There is no total timeout: a large transfer takes what it needs while
    /// it keeps moving.
    pub fn stall_timeout(mut self, t: Duration) -> Self {
        self.stall_timeout = t;
        self
    }

    /// How retryable failures are retried (default: [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Calls `f` before each retry (to tell a user why a call is slow).
    ///
    /// ```no_run
    /// let client = trove_client::Client::builder()
    ///     .master("http://127.0.0.1:3000")
    ///     .on_retry(|e, wait| eprintln!("retrying in {wait:?}: {e}"))
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn on_retry(mut self, f: impl Fn(&Error, Duration) + Send + Sync + 'static) -> Self {
        self.on_retry = Some(Arc::new(f));
        self
    }

    /// Checks the master URLs and builds the client.
    pub fn build(self) -> Result<Client> {
        if self.masters.is_empty() {
            return Err(Error::Config("no master URL given".into()));
        }
        let masters = self
            .masters
            .iter()
            .map(|m| parse_master(m))
            .collect::<Result<Vec<_>>>()?;
        // No redirects: the client follows the master's 302 itself, to pick
        // replicas and resume (and a streaming body cannot be re-sent).
        // No read timeout: it would also bound the wait for an upload's
        // answer; stalls are bounded per chunk instead.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("trove-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                masters,
                current: AtomicUsize::new(0),
                stall: self.stall_timeout,
                retry: self.retry,
                on_retry: self.on_retry,
            }),
        })
    }
}

/// `http://host:port` (a bare `host:port` gets `http://`; a bare word is
/// refused): [`trove_common::flags::parse_master_url`], which the servers'
/// `--master` flags use too.
fn parse_master(raw: &str) -> Result<Url> {
    trove_common::flags::parse_master_url(raw).map_err(Error::Config)
}

/// Checks a key the way the master will.
pub(crate) fn key(raw: &str) -> Result<Key> {
    Key::new(raw).map_err(|source| Error::InvalidKey {
        key: raw.to_string(),
        source,
    })
}

impl Client {
    /// A client for one master, with default timeouts and retries.
    ///
    /// ```no_run
    /// let client = trove_client::Client::new("http://127.0.0.1:3000").unwrap();
    /// ```
    pub fn new(master: &str) -> Result<Client> {
        Client::builder().master(master).build()
    }

    /// A builder for several masters, timeouts and retries.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The stall timeout: no byte moved for this long fails a transfer.
    pub fn stall_timeout(&self) -> Duration {
        self.inner.stall
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.inner.retry
    }

    /// The master URLs, in fail-over order.
    pub fn masters(&self) -> &[Url] {
        &self.inner.masters
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// `path_and_query` on the master currently in use.
    pub(crate) fn master_url(&self, path_and_query: &str) -> String {
        let base = self.inner.masters[self.current_master()]
            .as_str()
            .trim_end_matches('/');
        format!("{base}{path_and_query}")
    }

    /// The index in [`Client::masters`] of the master in use.
    pub(crate) fn current_master(&self) -> usize {
        self.inner.current.load(Ordering::Relaxed) % self.inner.masters.len()
    }

    /// The next master, after the current one could not be reached.
    pub(crate) fn fail_over(&self, from: usize) {
        let n = self.inner.masters.len();
        let _ =
            self.inner
                .current
                .compare_exchange(from, (from + 1) % n, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// One master call, retried per the policy and failed over between
    /// masters: `attempt(url, earlier)` makes one request to `url` (the
    /// path on the master in use) and turns the answer into a result, whose
    /// error decides whether to retry. `earlier` is true when an earlier
    /// attempt's connection broke after it was sent, so that an operation
    /// can recognise its own effect (a `DELETE` whose answer was lost finds
    /// the key gone).
    pub(crate) async fn call<T, F, Fut>(&self, path_and_query: &str, attempt: F) -> Result<T>
    where
        F: Fn(String, bool) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut n = 1;
        let mut earlier = false;
        loop {
            let i = self.current_master();
            let url = self.master_url(path_and_query);
            match attempt(url.clone(), earlier).await {
                Ok(v) => return Ok(v),
                Err(e) if self.inner.retry.should_retry(n, &e) => {
                    earlier |= e.outcome_unknown();
                    if e.unreachable() {
                        self.fail_over(i);
                    }
                    let wait = self.inner.retry.backoff(n);
                    tracing::debug!(%url, error = %e, attempt = n, ?wait, "retrying");
                    if let Some(f) = &self.inner.on_retry {
                        f(&e, wait);
                    }
                    tokio::time::sleep(wait).await;
                    n += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A small request (no streaming body): sent with a total timeout of
    /// one stall period.
    pub(crate) async fn send_small(
        &self,
        method: Method,
        url: &str,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response> {
        self.send_within(method, url, self.inner.stall, build).await
    }

    /// Sends a request whose answer may take up to `wait` (a compose: the
    /// master answers only once the volumes have built the value).
    pub(crate) async fn send_within(
        &self,
        method: Method,
        url: &str,
        wait: Duration,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response> {
        build(self.inner.http.request(method, url))
            .timeout(wait)
            .send()
            .await
            .map_err(|e| self.send_error_after(url, &e, wait))
    }

    /// A transport error of a request to `url`.
    pub(crate) fn send_error(&self, url: &str, e: &reqwest::Error) -> Error {
        self.send_error_after(url, e, self.inner.stall)
    }

    /// A transport error of a request to `url` that was given `wait`.
    fn send_error_after(&self, url: &str, e: &reqwest::Error, wait: Duration) -> Error {
        if e.is_timeout() {
            Error::Stalled {
                url: url.to_string(),
                timeout: wait,
            }
        } else {
            Error::transport(url, e)
        }
    }
}

/// The reason an error answer gives: its body (bounded: error bodies are
/// one line), or, when that is empty, its `Trove-Error` header — the only
/// place a `HEAD` answer can give one.
pub(crate) async fn error_body(resp: Response) -> String {
    let header = resp
        .headers()
        .get(TROVE_ERROR)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = match tokio::time::timeout(Duration::from_secs(5), resp.text()).await {
        Ok(Ok(text)) => text.chars().take(1000).collect(),
        _ => String::new(),
    };
    reason(body, header)
}

/// The body when it says something, else the `Trove-Error` header.
fn reason(body: String, header: Option<String>) -> String {
    match header {
        Some(header) if body.trim().is_empty() => header,
        _ => body,
    }
}

/// The error for a non-success answer about `key`. An answer no master
/// gives to what the client asks — a success where the master redirects
/// or refuses, a `400` to a request the client built (a volume's answer to
/// a write or delete no master sent), a `405` to a method the master
/// takes on a key, a `403` other than "key exists" (a volume of a cluster
/// with a secret refuses the unsigned request) — sends one
/// `GET /-/status` to the same server: when that is not a master's, the
/// error is [`Error::NotAMaster`] (a volume's address given as the
/// master's gave "server error 200" with no reason).
pub(crate) async fn status_error(key: &str, url: &str, resp: Response) -> Error {
    if from_a_volume(&resp) {
        return not_a_master(url);
    }
    let status = resp.status().as_u16();
    let body = error_body(resp).await;
    let odd =
        status < 300 || status == 400 || status == 405 || status == 403 && !body.starts_with("key exists");
    if odd && !answers_as_master(url).await {
        return not_a_master(url);
    }
    Error::from_status(key, url, status, &body)
}

/// Whether a Trove volume sent `resp` (its `Server` header): any answer
/// from one, to a request the client sent to the master, means a volume's
/// address was given as the master's.
pub(crate) fn from_a_volume(resp: &Response) -> bool {
    resp.headers()
        .get(reqwest::header::SERVER)
        .is_some_and(|v| trove_common::http::is_volume_server(v.as_bytes()))
}

/// [`Error::NotAMaster`] for the server of `url`.
pub(crate) fn not_a_master(url: &str) -> Error {
    let server = match Url::parse(url) {
        Ok(mut base) => {
            base.set_path("");
            base.set_query(None);
            base.as_str().trim_end_matches('/').to_string()
        }
        Err(_) => url.to_string(),
    };
    Error::NotAMaster { url: server }
}

/// Whether the server of `url` answers `GET /-/status` as a master does
/// (JSON with its `volumes`). Any doubt (no answer, a broken connection)
/// counts as a master: this only refines an error already there.
pub(crate) async fn answers_as_master(url: &str) -> bool {
    let Ok(mut status_url) = Url::parse(url) else {
        return true;
    };
    status_url.set_path("/-/status");
    status_url.set_query(None);
    let Ok(http) = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
    else {
        return true;
    };
    let resp = match http.get(status_url).send().await {
        Ok(resp) => resp,
        Err(_) => return true,
    };
    if resp.status().is_server_error() {
        return true;
    }
    if !resp.status().is_success() {
        return false;
    }
    match resp.json::<serde_json::Value>().await {
        Ok(v) => v.get("volumes").is_some_and(|v| v.is_array()),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_urls_are_checked() {
        assert_eq!(
            parse_master("127.0.0.1:3000").unwrap().as_str(),
            "http://127.0.0.1:3000/"
        );
        assert_eq!(
            parse_master("http://m.example:3000/").unwrap().as_str(),
            "http://m.example:3000/"
        );
        assert_eq!(parse_master("[::1]:3000").unwrap().as_str(), "http://[::1]:3000/");
        assert!(
            parse_master("http://notaurl").is_ok(),
            "a scheme makes a host name plain"
        );
        for bad in ["notaurl", "localhost", "host:", ":3000", "host:port", ""] {
            assert!(parse_master(bad).is_err(), "{bad}");
        }
        assert!(parse_master("ftp://x").is_err());
        assert!(parse_master("http://m:3000/photos").is_err());
        assert!(parse_master("http://").is_err());
        assert!(Client::builder().build().is_err(), "a master is required");
    }

    #[test]
    fn an_empty_body_leaves_the_reason_to_trove_error() {
        let header = || Some("every replica of this key is down".to_string());
        assert_eq!(
            reason(String::new(), header()),
            "every replica of this key is down"
        );
        assert_eq!(reason("\n".into(), header()), "every replica of this key is down");
        assert_eq!(
            reason("every replica of this key is down (a, b)\n".into(), header()),
            "every replica of this key is down (a, b)\n",
            "the body is whole where the header may be cut"
        );
        assert_eq!(reason(String::new(), None), "");
    }
}
