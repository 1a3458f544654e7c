//! Compose: `PUT /key` with `Trove-Compose: 1` builds a value out of
//! (ranges of) other live values, without their bytes passing through the
//! master or the caller — S3's CompleteMultipartUpload, UploadPartCopy and
//! CopyObject.
//!
//! The body names the sources, in order:
//!
//! ```json
//! {"sources": [{"key": "/.s3/uploads/b/ID/00001"}, {"key": "/b/k", "range": [0, 5242880], "md5": "…"}]}
//! ```
//!
//! Each source is resolved here, once, against the index ([`plan`]): it
//! must be live (else `404` naming it), match the `md5` or `etag` the
//! caller pinned (else `412`), and have the range asked (`[start, end)`,
//! else `400`). The plan pins each source to the value found — its
//! sha256, size and write id — and lists the volumes holding it.
//!
//! From there it is an ordinary write ([`crate::write::write`]), whose
//! bytes come from [`store_on_replicas`] instead of a request body: every
//! target replica gets `POST /-/compose` with the plan and reads the
//! parts itself, from its own disk or from the sources' other volumes,
//! storing the concatenation as a pending blob of this write. The
//! replicas' sha256, size and md5 must agree; then the write commits,
//! marks the copies live and answers `201`, as a PUT does. The result is
//! a plain blob: `curl -L` reads it, and verify, rebuild, rebalance and gc
//! treat it like any other value.
//!
//! With `Trove-Keep-Parts: 1` (S3's CompleteMultipartUpload) the record
//! also keeps each source's length as a part ([`Record::parts`]), so that
//! reads can ask for part N's byte range (`Trove-Part`, see
//! [`crate::api::get`]). `rebuild` cannot restore them (the volumes'
//! sidecars do not carry them).
//!
//! [`Record::parts`]: trove_common::record::Record::parts

use crate::client::{Stored, UploadInfo};
use crate::error::ApiError;
use crate::write::{self, Destination, Source};
use crate::AppState;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use std::sync::Arc;
use trove_common::digest::Digests;
use trove_common::http::TROVE_KEEP_PARTS;
use trove_common::key::Key;
use trove_common::protocol::{ComposePart, ComposePlan, MAX_COMPOSE_PARTS};
use trove_common::record::now_ms;

/// The request header that makes a `PUT` a compose (`1`).
pub const TROVE_COMPOSE: &str = "trove-compose";
/// The largest compose body: 10,000 sources with keys of 1.5 KiB each.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// The body of a compose.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ComposeRequest {
    pub sources: Vec<SourceSpec>,
}

/// One source of a compose, as the caller names it.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub key: String,
    /// `[start, end)` in bytes; the whole value when absent.
    #[serde(default)]
    pub range: Option<[u64; 2]>,
    /// The hex md5 the source must have (else `412`).
    #[serde(default)]
    pub md5: Option<String>,
    /// The ETag the source must have, quoted or not (else `412`).
    #[serde(default)]
    pub etag: Option<String>,
}

impl ComposeRequest {
    /// Parses and checks a compose body.
    pub fn parse(raw: &[u8]) -> Result<ComposeRequest, ApiError> {
        let req: ComposeRequest = serde_json::from_slice(raw).map_err(|e| {
            ApiError::BadRequest(format!(
                "a compose body is JSON: {{\"sources\": [{{\"key\": \"/…\", \"range\": [start, end]}}, …]}} ({e})"
            ))
        })?;
        if req.sources.is_empty() {
            return Err(ApiError::BadRequest("a compose needs at least one source".into()));
        }
        if req.sources.len() > MAX_COMPOSE_PARTS {
            return Err(ApiError::BadRequest(format!(
                "a compose takes at most {MAX_COMPOSE_PARTS} sources, not {}",
                req.sources.len()
            )));
        }
        Ok(req)
    }
}

/// Whether the request is a compose (`Trove-Compose: 1`).
pub fn requested(headers: &axum::http::HeaderMap) -> Result<bool, ApiError> {
    trove_common::http::flag(headers, TROVE_COMPOSE).map_err(ApiError::BadRequest)
}

/// Resolves every source against the index at `now`: the pinned value,
/// its range and the volumes to read it from (healthy ones first).
pub fn plan(state: &AppState, req: &ComposeRequest, now: u64) -> Result<ComposePlan, ApiError> {
    let mut parts = Vec::with_capacity(req.sources.len());
    for (i, source) in req.sources.iter().enumerate() {
        let key = Key::new(&source.key).map_err(|e| ApiError::BadRequest(format!("source {i}: {e}")))?;
        let record = state
            .index
            .get(&key)?
            .and_then(|r| r.visible(now).cloned())
            .ok_or_else(|| ApiError::SourceMissing(source.key.clone()))?;
        if let Some(md5) = &source.md5 {
            if !md5.eq_ignore_ascii_case(&record.md5) {
                return Err(ApiError::SourceChanged {
                    key: source.key.clone(),
                    what: format!("its md5 is {}, not {md5}", record.md5),
                });
            }
        }
        if let Some(etag) = &source.etag {
            let wanted = etag.trim().trim_matches('"');
            if wanted != record.etag() {
                return Err(ApiError::SourceChanged {
                    key: source.key.clone(),
                    what: format!("its ETag is \"{}\", not \"{wanted}\"", record.etag()),
                });
            }
        }
        let range = source.range.unwrap_or([0, record.size]);
        let [start, end] = range;
        if start > end || end > record.size {
            return Err(ApiError::BadRequest(format!(
                "source {i} ({}): range [{start}, {end}) is not within its {} bytes",
                source.key, record.size
            )));
        }
        let (mut volumes, down): (Vec<String>, Vec<String>) = record
            .readable()
            .into_iter()
            .partition(|v| state.volumes.is_healthy(v));
        if volumes.is_empty() && start < end {
            return Err(ApiError::ReplicasDown(record.volumes.join(",")));
        }
        // A volume seen down may be back by the time it is asked.
        volumes.extend(down);
        parts.push(ComposePart {
            key: source.key.clone(),
            sha256: record.sha256.clone(),
            size: record.size,
            write: record.write.clone(),
            range,
            volumes,
        });
    }
    Ok(ComposePlan { parts })
}

/// `PUT /key` with `Trove-Compose: 1`: the write path, with the plan as
/// the source of the bytes.
/// The `Content-Type` `curl -d` gives a body: a compose sent with it
/// stores no Content-Type rather than this one.
const FORM_TYPE: &str = "application/x-www-form-urlencoded";

pub async fn put(state: Arc<AppState>, key: Key, req: Request<Body>) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    if crate::api::put::trailer_announced(&parts.headers, trove_common::http::KEY_CRC32C) {
        return Err(ApiError::BadRequest(
            "a compose's body is its plan, not the value: send Key-Crc32c as a header, not a trailer".into(),
        ));
    }
    let mut upload = crate::api::put::upload(&state, &parts.headers)?;
    if upload
        .meta
        .get("content-type")
        .is_some_and(|t| t.trim().to_ascii_lowercase().starts_with(FORM_TYPE))
    {
        // What `curl -d` sends: it describes the plan, as curl sees the
        // body, and no value a compose makes.
        upload.meta.remove("content-type");
    }
    let raw = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::BodyTooLarge(format!("a compose body is at most {MAX_BODY_BYTES} bytes")))?;
    let request = ComposeRequest::parse(&raw)?;
    drop(raw);
    let plan = plan(&state, &request, now_ms())?;
    upload.len = Some(plan.len());
    if plan.is_empty() && !upload.allow_empty {
        return Err(ApiError::EmptyBody);
    }
    if trove_common::http::flag(&parts.headers, TROVE_KEEP_PARTS).map_err(ApiError::BadRequest)? {
        upload.parts = plan.parts.iter().map(|p| p.range[1] - p.range[0]).collect();
    }
    let parts_count = plan.parts.len();
    // Its own task, as a PUT's: a caller that hangs up does not cancel it.
    let committed = tokio::spawn(write::write(state, key.clone(), upload, Source::Compose(plan))).await??;
    let record = &committed.record;
    tracing::debug!(key = %key, size = record.size, parts = parts_count, volumes = ?record.volumes, "composed");
    Ok(crate::api::put::created(&committed))
}

/// Has every target replica of `dest` build the value `plan` describes,
/// and returns its digests once they all report the same bytes (size,
/// sha256 and md5).
pub async fn store_on_replicas(
    state: &AppState,
    dest: &Destination<'_>,
    plan: &ComposePlan,
) -> Result<Digests, ApiError> {
    let client = state.volumes.client();
    let body = Bytes::from(serde_json::to_vec(plan).expect("a plan serializes"));
    let len = plan.len();
    let info: &UploadInfo = &dest.upload;
    let calls = dest
        .targets
        .iter()
        .map(|addr| client.compose(addr, dest.key, info, body.clone(), len));
    let results = futures::future::join_all(calls).await;
    let mut agreed: Option<(Stored, [u8; 16])> = None;
    for (addr, result) in dest.targets.iter().zip(results) {
        let (stored, md5) = result.inspect_err(|e| state.volumes.note_error(e))?;
        match &agreed {
            None => agreed = Some((stored, md5)),
            Some((first, first_md5))
                if first.sha256 == stored.sha256 && first.size == stored.size && *first_md5 == md5 => {}
            Some((first, _)) => {
                return Err(ApiError::ReplicaMismatch {
                    addr: addr.clone(),
                    expected: format!(
                        "sha256 {} ({} bytes)",
                        first.sha256.map(hex::encode).unwrap_or_default(),
                        first.size
                    ),
                    got: format!(
                        "sha256 {} ({} bytes)",
                        stored.sha256.map(hex::encode).unwrap_or_default(),
                        stored.size
                    ),
                })
            }
        }
    }
    let (stored, md5) = agreed.ok_or_else(|| ApiError::Internal("a write without replicas".into()))?;
    let (Some(sha256), Some(crc32c)) = (stored.sha256, stored.crc32c) else {
        return Err(ApiError::Internal(format!(
            "volume {} composed without reporting Key-Sha256 and Key-Crc32c",
            dest.targets[0]
        )));
    };
    Ok(Digests {
        size: stored.size,
        sha256: Some(sha256),
        md5: Some(md5),
        crc32c,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compose_bodies() {
        let req = ComposeRequest::parse(
            br#"{"sources": [{"key": "/a"}, {"key": "/b c", "range": [1, 5], "md5": "00", "etag": "\"x-2\""}]}"#,
        )
        .unwrap();
        assert_eq!(
            req.sources[1],
            SourceSpec {
                key: "/b c".into(),
                range: Some([1, 5]),
                md5: Some("00".into()),
                etag: Some("\"x-2\"".into()),
            }
        );
        assert_eq!(req.sources[0].range, None);
        for bad in [
            &b"not json"[..],
            br#"{"sources": []}"#,
            br#"{"sources": [{"key": "/a", "size": 3}]}"#,
            br#"{"sources": [{"key": "/a", "range": [1]}]}"#,
            br#"{"sources": [{"key": "/a", "range": [-1, 2]}]}"#,
            br#"{"parts": []}"#,
        ] {
            assert!(
                matches!(ComposeRequest::parse(bad), Err(ApiError::BadRequest(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let many = format!(
            r#"{{"sources": [{}]}}"#,
            vec![r#"{"key": "/p"}"#; MAX_COMPOSE_PARTS + 1].join(",")
        );
        let Err(ApiError::BadRequest(e)) = ComposeRequest::parse(many.as_bytes()) else {
            panic!("10,001 sources accepted");
        };
        assert!(e.contains("at most 10000"), "{e}");
    }
}
