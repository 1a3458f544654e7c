//! The command line, the credentials, and the HTTP loop: s3s's service
//! behind a small front that answers `GET /-/healthy` without auth (for
//! load balancers and `docker` health checks). Each connection's socket
//! can send zero-copy body chunks (`trove_common::server::zerocopy`), and
//! its HTTP/1 requests carry the handle GetObject needs for that.

use crate::access::{Admission, MAX_XML_BODY};
use crate::gateway::Gateway;
use crate::ignored_range::IgnoredRange;
use anyhow::{bail, Context as _};
use clap::Parser;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use s3s::auth::{S3Auth, SecretKey};
use s3s::config::{S3Config, StaticConfigProvider};
use s3s::service::{S3Service, S3ServiceBuilder};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::Instrument as _;
use trove_common::server::zerocopy::{ZeroCopy, ZeroCopyStream};

/// trove-s3: an S3-compatible gateway in front of a Trove master.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Args {
    /// Port to listen on.
    #[arg(long, env = "TROVE_S3_PORT", default_value_t = 9000)]
    pub port: u16,
    /// Address to listen on (0.0.0.0 to serve other machines).
    #[arg(long, env = "TROVE_S3_BIND", default_value = "127.0.0.1")]
    pub bind: String,
    /// The master's URL; repeat for fail-over between several masters.
    #[arg(
        long = "master",
        env = "TROVE_S3_MASTER",
        value_delimiter = ',',
        required = true
    )]
    pub masters: Vec<String>,
    /// Access key id clients sign with (with --secret-key).
    #[arg(long, env = "TROVE_S3_ACCESS_KEY")]
    pub access_key: Option<String>,
    /// Secret key clients sign with.
    #[arg(long, env = "TROVE_S3_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// A file of key pairs, one `ACCESS_KEY SECRET_KEY` per line (`#`
    /// comments and blank lines ignored), for several clients.
    #[arg(long, env = "TROVE_S3_CREDENTIALS")]
    pub credentials: Option<PathBuf>,
    /// How long an unfinished multipart upload's parts live before the
    /// master's expirer reclaims them (`7d`, `12h`, `90m`, `3600s`).
    #[arg(long, env = "TROVE_S3_UPLOAD_TTL", default_value = "7d", value_parser = parse_duration)]
    pub upload_ttl: Duration,
}

/// `7d`, `12h`, `90m`, `3600s` or plain seconds ([`trove_common::flags`]),
/// and more than zero.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let ttl = trove_common::flags::parse_duration(raw)?;
    if ttl.is_zero() {
        return Err("the upload TTL must be positive".into());
    }
    Ok(ttl)
}

/// Reads a credentials file: `ACCESS_KEY SECRET_KEY` per line.
pub fn read_credentials(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_credentials(&text).with_context(|| format!("in {}", path.display()))
}

fn parse_credentials(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = vec![];
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [ak, sk] = fields[..] else {
            bail!("line {}: expected `ACCESS_KEY SECRET_KEY`", i + 1);
        };
        out.push((ak.to_string(), sk.to_string()));
    }
    Ok(out)
}

impl Args {
    /// Every key pair the gateway accepts.
    pub fn key_pairs(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut pairs = vec![];
        match (&self.access_key, &self.secret_key) {
            (Some(ak), Some(sk)) => pairs.push((ak.clone(), sk.clone())),
            (None, None) => {}
            _ => bail!("--access-key and --secret-key go together"),
        }
        if let Some(path) = &self.credentials {
            pairs.extend(read_credentials(path)?);
        }
        if pairs.is_empty() {
            bail!("no credentials: give --access-key and --secret-key (or TROVE_S3_ACCESS_KEY / TROVE_S3_SECRET_KEY), or --credentials FILE");
        }
        one_secret_per_key(&pairs)?;
        Ok(pairs)
    }
}

/// Refuses an access key given twice with different secrets: only one
/// could work, and which one would be an accident of order (an operator
/// rotating a secret by adding a line would lock out clients on the old).
fn one_secret_per_key(pairs: &[(String, String)]) -> anyhow::Result<()> {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (ak, sk) in pairs {
        match seen.insert(ak, sk) {
            Some(other) if other != sk => {
                bail!("the access key {ak} is given twice, with different secrets: one key, one secret")
            }
            _ => {}
        }
    }
    Ok(())
}

/// The key pairs the gateway accepts; an unknown access key is S3's
/// `InvalidAccessKeyId` (s3s's `SimpleAuth` answers `NotSignedUp`).
struct KeyPairs(HashMap<String, SecretKey>);

#[async_trait::async_trait]
impl S3Auth for KeyPairs {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<SecretKey> {
        self.0.get(access_key).cloned().ok_or_else(|| {
            s3s::s3_error!(
                InvalidAccessKeyId,
                "The access key id you provided does not exist in this gateway's credentials"
            )
        })
    }
}

/// The most of a form upload's file (POST Object) s3s reads before the
/// gateway refuses it.
const POST_OBJECT_READ: u64 = 64 << 10;

/// The S3 service for these credentials.
pub fn service(gateway: Gateway, pairs: &[(String, String)]) -> S3Service {
    let keys = pairs
        .iter()
        .map(|(ak, sk)| (ak.clone(), SecretKey::from(sk.clone())))
        .collect();
    let mut builder = S3ServiceBuilder::new(gateway.clone());
    builder.set_auth(KeyPairs(keys));
    builder.set_access(Admission);
    builder.set_route(IgnoredRange::new(gateway));
    builder.set_validation(crate::names::BucketNames);
    let mut config = S3Config::default();
    config.xml_max_body_size = MAX_XML_BODY;
    // s3s reads a browser form upload's file whole (up to 5 GB by
    // default) before any operation sees it; the gateway refuses form
    // uploads (`post_object`), so it lets s3s read next to nothing first.
    config.post_object_max_file_size = POST_OBJECT_READ;
    builder.set_config(Arc::new(StaticConfigProvider::new(Arc::new(config))));
    builder.build()
}

/// DeleteObjects bodies held here at once. They are read before s3s has
/// checked the request's signature, so this bounds what unauthenticated
/// clients can make the gateway hold (this many × [`MAX_XML_BODY`]).
const DELETE_BODIES_AT_ONCE: usize = 4;
/// How long such a body may take to arrive once its turn has come.
const DELETE_BODY_TIME: Duration = Duration::from_secs(30);
static DELETE_BODIES: std::sync::LazyLock<tokio::sync::Semaphore> =
    std::sync::LazyLock::new(|| tokio::sync::Semaphore::new(DELETE_BODIES_AT_ONCE));

/// DeleteObjects (`POST /bucket?delete`) is the one request whose body
/// checksum s3s does not check and no later step could: its body is
/// parsed into a key list. A `Content-MD5` or `x-amz-checksum-*` sent with
/// it is checked here, on the small XML body, before s3s sees it — so
/// before its signature is checked, which is why only a few such bodies
/// are held at once ([`DELETE_BODIES_AT_ONCE`]).
async fn check_delete_body(
    req: hyper::Request<Incoming>,
    read_whole: Option<&Arc<AtomicBool>>,
) -> Result<hyper::Request<s3s::Body>, Response> {
    let is_delete = req.method() == http::Method::POST
        && req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "delete" || p.starts_with("delete=")));
    let sums: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter(|(n, _)| n.as_str() == "content-md5" || n.as_str().starts_with("x-amz-checksum-"))
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.trim().to_string())))
        .collect();
    if !is_delete || sums.is_empty() {
        return Ok(req.map(|body| match read_whole {
            Some(flag) => s3s::Body::http_body(Tracked {
                inner: body,
                read_whole: Arc::clone(flag),
            }),
            None => s3s::Body::from(body),
        }));
    }
    let (parts, body) = req.into_parts();
    let Ok(turn) = tokio::time::timeout(DELETE_BODY_TIME, DELETE_BODIES.acquire()).await else {
        return Err(s3_error_response(
            503,
            "SlowDown",
            "too many DeleteObjects requests are being read at once; try again",
        ));
    };
    let _turn = turn.expect("the semaphore is never closed");
    let limited = http_body_util::Limited::new(body, MAX_XML_BODY);
    let read = tokio::time::timeout(DELETE_BODY_TIME, http_body_util::BodyExt::collect(limited));
    let bytes = match read.await {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(s3_error_response(
                400,
                "MaxMessageLengthExceeded",
                &format!("the request body is longer than {MAX_XML_BODY} bytes, the most this gateway reads of XML; nothing was deleted"),
            ))
        }
        Ok(Err(e)) => {
            return Err(s3_error_response(
                400,
                "IncompleteBody",
                &format!("cannot read the request body: {e}"),
            ))
        }
        Err(_) => {
            return Err(s3_error_response(
                400,
                "RequestTimeout",
                &format!(
                    "the request body did not arrive within {} s; nothing was deleted",
                    DELETE_BODY_TIME.as_secs()
                ),
            ))
        }
    };
    if let Some(flag) = read_whole {
        flag.store(true, Ordering::Relaxed);
    }
    for (name, sent) in &sums {
        let computed = match name.as_str() {
            "content-md5" => {
                use base64::Engine;
                use md5::Digest;
                Some(base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&bytes)))
            }
            n => {
                let mut h = s3s::checksum::ChecksumHasher::default();
                match n {
                    "x-amz-checksum-crc32" => h.crc32 = Some(Default::default()),
                    "x-amz-checksum-crc32c" => h.crc32c = Some(Default::default()),
                    "x-amz-checksum-sha1" => h.sha1 = Some(Default::default()),
                    "x-amz-checksum-sha256" => h.sha256 = Some(Default::default()),
                    "x-amz-checksum-crc64nvme" => h.crc64nvme = Some(Default::default()),
                    _ => continue,
                }
                h.update(&bytes);
                let c = h.finalize();
                c.checksum_crc32
                    .or(c.checksum_crc32c)
                    .or(c.checksum_sha1)
                    .or(c.checksum_sha256)
                    .or(c.checksum_crc64nvme)
            }
        };
        if computed.as_deref() != Some(sent.as_str()) {
            return Err(s3_error_response(
                400,
                "BadDigest",
                &format!("the {name} you specified did not match the request body; nothing was deleted"),
            ));
        }
    }
    Ok(hyper::Request::from_parts(parts, s3s::Body::from(bytes)))
}

/// An S3 error answer made here (before s3s).
fn s3_error_response(status: u16, code: &str, message: &str) -> Response {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    let mut resp = hyper::Response::new(s3s::Body::from(xml));
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    resp
}

type Response = hyper::Response<s3s::Body>;

/// Gives an answer its request id (`crate::request_id`): a header on
/// every answer, and in an error's XML. Logs an error answer (in the
/// request's span, which names its id): a server error as an error, a
/// refused signature or access and a `NotImplemented` at `info`, other
/// client mistakes at `debug`. (s3s's own log, which calls every error answer an error,
/// is off unless `RUST_LOG` asks for it: see `main`.)
fn stamp(resp: &mut Response, id: &str, method: &http::Method, path: &str) {
    if let Ok(value) = http::HeaderValue::from_str(id) {
        resp.headers_mut().insert("x-amz-request-id", value);
    }
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return;
    }
    // An error's XML is a few hundred bytes held whole (never a stream).
    if let Some(xml) = resp
        .body()
        .bytes()
        .and_then(|b| crate::request_id::stamp_error(&b, id))
    {
        resp.headers_mut().remove(http::header::CONTENT_LENGTH);
        *resp.body_mut() = s3s::Body::from(xml);
    }
    let xml = resp.body().bytes().unwrap_or_default();
    let (code, message) = crate::request_id::code_and_message(&xml);
    let status = status.as_u16();
    if status == 501 {
        // A client asking for what Trove does not do (s3cmd's `info`
        // probes seven such calls): not a fault of the gateway's.
        tracing::info!(%method, %path, status, %code, message, "not implemented");
    } else if status >= 500 {
        tracing::error!(%method, %path, status, %code, message, "answered an error");
    } else if status == 403 {
        tracing::info!(%method, %path, status, %code, message, "refused");
    } else {
        tracing::debug!(%method, %path, status, %code, message, "answered an error");
    }
}

/// The most a connection buffers of what it reads.
const READ_BUFFER: usize = 64 * 1024;

/// A request that says `Expect: 100-continue` but has no body to send
/// (`Content-Length: 0`): hyper answers it with the final status and no
/// `100 Continue`, which RFC 9110 allows. botocore (aws-cli, boto3 with a
/// file body) then takes that early answer down a path of its own
/// (`AWSConnection._handle_expect_response`), and the next request it
/// sends on the same connection reads its answer wrong: it keeps the
/// early answer's status line, parses the real status line as a header,
/// finds no `Content-Length`, and waits for the body until its read
/// timeout, although the answer was sent in full. Such an answer
/// therefore closes the connection (`Connection: close`), so the client
/// starts the next request on a fresh one, as it would after any answer
/// sent without reading a body.
fn expects_continue_without_body(req: &hyper::Request<Incoming>) -> bool {
    use hyper::body::Body as _;
    expects_continue(req) && req.body().is_end_stream()
}

fn expects_continue(req: &hyper::Request<Incoming>) -> bool {
    req.headers()
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// The body of a request that says `Expect: 100-continue`, noting whether
/// it was read to its end. An answer made before that (a bad key, a
/// missing bucket, a refused header: most errors are found before the
/// body is read) closes the connection: the client, seeing a final answer
/// instead of `100 Continue`, does not send the body, and hyper, which
/// still expects it, reads what it finds on the connection after the
/// answer as that body. When the client's next request is already there,
/// its first bytes are taken for the old body, and the next request is
/// read from the middle (`UT /b/k`: a 403 or a bare 400 for a valid
/// request, about 1 in 200 after such an error). Closing the connection
/// makes the client send its next request on a fresh one.
struct Tracked {
    inner: Incoming,
    read_whole: Arc<AtomicBool>,
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        let ended = match &polled {
            std::task::Poll::Ready(None) => true,
            std::task::Poll::Ready(Some(Ok(_))) => self.inner.is_end_stream(),
            _ => false,
        };
        if ended {
            self.read_whole.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves until `shutdown` resolves; in-flight requests then finish.
pub async fn run(
    listener: TcpListener,
    service: S3Service,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // A connection's read buffer grows up to this while a body streams in
    // (hyper's default is 400 KiB): with dozens of parts in flight at once
    // it is most of the gateway's memory.
    builder.http1().max_buf_size(READ_BUFFER);
    // Body chunks go to the socket as they are, each its own slice: what
    // zero-copy chunks need (`trove_common::server::zerocopy`).
    builder.http1().writev(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let stream = ZeroCopyStream::new(stream);
        let zero_copy = ZeroCopy::supported().then(|| stream.handle());
        let s3 = service.clone();
        let front = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            let s3 = s3.clone();
            // GetObject passes large values on with zero-copy chunks
            // (`crate::splice`). HTTP/1 only: hyper's HTTP/2 copies body
            // chunks into its frames, which would send the markers' zeros.
            if let Some(zc) = &zero_copy {
                if matches!(req.version(), http::Version::HTTP_10 | http::Version::HTTP_11) {
                    req.extensions_mut().insert(zc.clone());
                }
            }
            let id = crate::request_id::new();
            let span = tracing::info_span!("s3", request = %id);
            async move {
                if req.uri().path() == "/-/healthy"
                    && matches!(*req.method(), http::Method::GET | http::Method::HEAD)
                {
                    let body = s3s::Body::from(bytes::Bytes::from_static(b"ok\n"));
                    return Ok::<Response, s3s::HttpError>(hyper::Response::new(body));
                }
                let method = req.method().clone();
                let uri = req.uri().clone();
                let head = method == http::Method::HEAD;
                let unanswered_continue = expects_continue_without_body(&req);
                let read_whole = expects_continue(&req).then(|| Arc::new(AtomicBool::new(false)));
                crate::dates::normalise(req.headers_mut(), uri.query());
                let mut resp = match check_delete_body(req, read_whole.as_ref()).await {
                    Ok(req) => s3.call(req).await?,
                    Err(refused) => refused,
                };
                // A HEAD with a Range answers 206 like the GET would; s3s
                // sets that status for GetObject only.
                if head
                    && resp.status() == http::StatusCode::OK
                    && resp.headers().contains_key(http::header::CONTENT_RANGE)
                {
                    *resp.status_mut() = http::StatusCode::PARTIAL_CONTENT;
                }
                let body_unread = read_whole.is_some_and(|r| !r.load(Ordering::Relaxed));
                if unanswered_continue || body_unread {
                    resp.headers_mut()
                        .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
                }
                stamp(&mut resp, &id, &method, uri.path());
                if resp.status() == http::StatusCode::OK && crate::completing::is_complete(&method, &uri) {
                    let body = std::mem::take(resp.body_mut());
                    *resp.body_mut() = s3s::Body::http_body(crate::completing::Completing::new(body, &id));
                }
                Ok(resp)
            }
            .instrument(span)
        });
        let conn = builder.serve_connection(TokioIo::new(stream), front).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(30)) => tracing::warn!("some connections did not finish in 30 s"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_credentials_parse() {
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("15").unwrap(), Duration::from_secs(15));
        assert!(
            parse_duration("0s").is_err() && parse_duration("7y").is_err() && parse_duration("d").is_err()
        );
        let pairs = parse_credentials("# team\nAK1 SK1\n\n  AK2   SK2  \n").unwrap();
        assert_eq!(
            pairs,
            [("AK1".into(), "SK1".into()), ("AK2".into(), "SK2".into())]
        );
        assert!(parse_credentials("AK1\n").is_err());
        let twice = parse_credentials("AK1 SK1\nAK1 SK2\n").unwrap();
        let refused = one_secret_per_key(&twice).unwrap_err().to_string();
        assert!(refused.contains("AK1 is given twice"), "{refused}");
        let same = parse_credentials("AK1 SK1\nAK1 SK1\n").unwrap();
        assert!(
            one_secret_per_key(&same).is_ok(),
            "the same pair twice is harmless"
        );
        assert!(parse_credentials("AK1 SK1 extra\n").is_err());
    }
}
