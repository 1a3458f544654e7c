//! `PUT /key` with `Trove-Compose: 1`: a value built on the volumes out of
//! ranges of other live values, without the bytes passing through the
//! master or this client (S3's multipart completion, `UploadPartCopy`,
//! `CopyObject`).
//!
//! The request body is a small JSON list of sources; the other headers are
//! a write's ([`PutOptions`]: replace, empty values, metadata, the ETag to
//! report, expiry), and `keep_parts` records the sources' lengths as the
//! value's parts. The master answers as for a `PUT`: `201` once every
//! replica holds the concatenation, `404` naming the first missing source,
//! `412` naming a source whose pinned md5/ETag changed.

use crate::client::{key, status_error, Client};
use crate::error::{Error, Result};
use crate::put::{write_headers, written_from, PutOptions, Written, TROVE_COMPOSE};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use std::time::Duration;
use trove_common::http::{KEY_SHA256, TROVE_KEEP_PARTS};

/// At most this many sources in one compose.
pub const MAX_SOURCES: usize = 10_000;

/// How long a compose may take to answer. The master says nothing until
/// every replica has built the value (about a second per GiB here, far
/// more on a busy disk), so the stall timeout does not apply; and a compose
/// given up on too early and sent again only meets itself (`409`).
pub const COMPOSE_WAIT: Duration = Duration::from_secs(3600);

/// One piece of a composed value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ComposeSource {
    /// A live key.
    pub key: String,
    /// `[start, end)` in bytes; the whole value when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<[u64; 2]>,
    /// Fail with `412` unless the source's md5 (hex) is this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// Fail with `412` unless the source's ETag (unquoted) is this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

#[derive(Serialize)]
struct ComposeBody<'a> {
    sources: &'a [ComposeSource],
}

impl Client {
    /// Writes `raw_key` as the concatenation of `sources`, server-side.
    /// `opts.content_md5`/`sha256` check the result; `opts.progress` is
    /// not used (no bytes pass through here).
    ///
    /// ```no_run
    /// # async fn demo(client: trove_client::Client) -> trove_client::Result<()> {
    /// use trove_client::{ComposeSource, PutOptions};
    /// let parts = vec![
    ///     ComposeSource { key: "/parts/1".into(), ..Default::default() },
    ///     ComposeSource { key: "/parts/2".into(), range: Some([0, 100]), ..Default::default() },
    /// ];
    /// client.compose("/whole", &parts, &PutOptions::default()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn compose(
        &self,
        raw_key: &str,
        sources: &[ComposeSource],
        opts: &PutOptions,
    ) -> Result<Written> {
        let k = &key(raw_key)?;
        let headers = &write_headers(k, opts)?;
        if sources.len() > MAX_SOURCES {
            return Err(Error::Config(format!(
                "{} sources; a compose takes at most {MAX_SOURCES}",
                sources.len()
            )));
        }
        for s in sources {
            key(&s.key)?;
            if let Some([start, end]) = s.range {
                if start > end {
                    return Err(Error::Config(format!(
                        "{}: range [{start}, {end}) ends before it starts",
                        s.key
                    )));
                }
            }
        }
        let body = serde_json::to_vec(&ComposeBody { sources })
            .map_err(|e| Error::Config(format!("cannot encode the compose request: {e}")))?;
        let body = &body;
        self.call(&k.url_path(), |url, _| async move {
            let resp = self
                .send_within(Method::PUT, &url, COMPOSE_WAIT, |mut r| {
                    // No `Content-Type: application/json`: the master takes
                    // Content-Type as the new value's metadata.
                    r = r.header(TROVE_COMPOSE, "1").body(body.clone());
                    if let Some(md5) = opts.content_md5 {
                        use base64::Engine;
                        r = r.header(
                            trove_common::http::CONTENT_MD5,
                            base64::engine::general_purpose::STANDARD.encode(md5),
                        );
                    }
                    if let Some(sha256) = opts.sha256 {
                        r = r.header(KEY_SHA256, hex::encode(sha256));
                    }
                    if opts.keep_parts {
                        r = r.header(TROVE_KEEP_PARTS, "1");
                    }
                    r.headers(headers.clone())
                })
                .await?;
            match resp.status() {
                StatusCode::CREATED => {
                    let headers = resp.headers();
                    let sha256 = headers
                        .get(KEY_SHA256)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    let size = headers
                        .get(trove_common::http::KEY_SIZE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let mut written = written_from(k, headers, size, sha256);
                    if written.size == 0 || written.sha256.is_empty() {
                        // The 201 may not say the size: ask.
                        if let Ok(stat) = self.stat(k.as_str()).await {
                            written.size = stat.size;
                            written.sha256 = stat.sha256;
                            written.etag = written.etag.or(Some(stat.etag));
                            written.md5 = written.md5.or(Some(stat.md5));
                        }
                    }
                    Ok(written)
                }
                _ => Err(status_error(k.as_str(), &url, resp).await),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_the_contracts_json() {
        let sources = [
            ComposeSource {
                key: "/.s3/uploads/b/ID/00001".into(),
                ..Default::default()
            },
            ComposeSource {
                key: "/b/other".into(),
                range: Some([0, 5_242_880]),
                md5: Some("00".repeat(16)),
                etag: None,
            },
        ];
        let json = serde_json::to_string(&ComposeBody { sources: &sources }).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"sources":[{{"key":"/.s3/uploads/b/ID/00001"}},{{"key":"/b/other","range":[0,5242880],"md5":"{}"}}]}}"#,
                "00".repeat(16)
            )
        );
    }
}
