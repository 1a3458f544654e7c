//! Calls the master makes for admin jobs and the write path (their
//! queries and answers are `trove_common::protocol`'s):
//!
//! - `POST /-/pull?key=K&from=HOST:PORT[&sha256=HEX][&state=live]`: copy a
//!   blob from another volume, verified by sha256 before it becomes visible
//!   (rebalance and repair move data volume to volume, never through the
//!   master). The request's headers carry what the copy is described by,
//!   as on a PUT: `Trove-Write` (the write the value is of) and the
//!   metadata headers.
//! - `GET /-/verify?key=K`: re-read a blob and report whether its bytes
//!   still match its sidecar (bit rot).
//! - `POST /-/mark?key=K&state=S[&md5=M][&write=W]`: record the key's
//!   state in the sidecar (`live` once the master confirmed write `W`,
//!   `unlinked` on UNLINK); `409` when the blob is not write `W`'s.
//! - `POST /-/marks?body_sha256=H`: several marks in one request (a JSON
//!   list of the same queries), made durable by one shared sync; answers
//!   each mark's status, in order. The master batches its confirming marks
//!   per volume this way.
//! - `POST /-/abort?key=K&write=W`: undo master write `W` (its blob goes,
//!   the value it replaced comes back); never touches another write's blob.

use crate::error::ApiError;
use crate::store::{Expected, StateChange};
use crate::AppState;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use std::sync::Arc;
use trove_common::digest::parse_sha256_hex;
use trove_common::http::{meta_from_headers, TROVE_WRITE};
use trove_common::key::Key;
use trove_common::protocol::{
    AbortQuery, KeyQuery, MarkOutcome, MarkQuery, MarksQuery, PullQuery, MAX_MARKS,
};
use trove_common::record::BlobState;

pub async fn pull(
    State(state): State<Arc<AppState>>,
    Query(q): Query<PullQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = Key::new(&q.key)?;
    let sha256 = match &q.sha256 {
        Some(s) => Some(
            parse_sha256_hex(s).ok_or_else(|| ApiError::BadRequest("sha256 must be 64 hex digits".into()))?,
        ),
        None => None,
    };
    let blob_state = q.state.unwrap_or(BlobState::Live);
    // Refused before the copy is fetched when this disk is not taking
    // writes (the upload below would refuse it anyway).
    state.store.disk_for_writing(&key)?;
    let resp = super::peer::get(&state, &q.from, &key, &[], None).await?;
    let stall = state.config.timeouts.stall;
    let expected = Expected {
        len: resp.content_length(),
        sha256,
        hash_sha256: true,
        state: blob_state,
        md5: q.md5.as_deref().map(parse_md5).transpose()?,
        write: None,
        replaces: None,
        // The master sends the record's write id and metadata as a PUT
        // does: the copy is of that write, described as it.
        copy_of: super::put::write_header(&headers, TROVE_WRITE)?,
        meta: meta_from_headers(&headers).map_err(ApiError::BadRequest)?,
        created: q.created,
    };
    let body = resp.bytes_stream().map(|r| r.map_err(std::io::Error::other));
    let meta = state.store.write_stream(&key, body, expected, stall).await?;
    tracing::debug!(key = %key, from = %q.from, size = meta.size, "pulled");
    Ok(super::put::stored(meta))
}

pub async fn verify(
    State(state): State<Arc<AppState>>,
    Query(q): Query<KeyQuery>,
) -> Result<Response, ApiError> {
    let key = Key::new(&q.key)?;
    let store = state.store.clone();
    // Each MiB it reads is timed (a hung disk is reported stalled). It
    // takes no read slot: a `503` would read to the master's verify as a
    // copy that cannot be served, and a long verify would hold a slot
    // GETs need; the master's verify runs a bounded number at once.
    let report = tokio::task::spawn_blocking(move || store.verify(&key)).await??;
    if !report.ok {
        tracing::warn!(key = %report.meta.key, expected = %report.meta.sha256, actual = %report.actual_sha256, "blob is corrupt");
    }
    Ok(Json(report).into_response())
}

pub async fn mark(
    State(state): State<Arc<AppState>>,
    Query(q): Query<MarkQuery>,
) -> Result<Response, ApiError> {
    let change = state_change(&q)?;
    let store = state.store.clone();
    let meta = store
        .short_call(move |store| {
            let mut outcomes = store.set_states(vec![change]);
            outcomes.pop().expect("one outcome per change")
        })
        .await??;
    Ok(Json(meta).into_response())
}

/// The largest body of `POST /-/marks`: [`MAX_MARKS`] marks of long keys.
const MAX_MARKS_BODY: usize = 2 << 20;

pub async fn marks(
    State(state): State<Arc<AppState>>,
    Query(q): Query<MarksQuery>,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let raw = axum::body::to_bytes(body, MAX_MARKS_BODY).await.map_err(|e| {
        ApiError::BadRequest(format!(
            "cannot read the marks (at most {MAX_MARKS_BODY} bytes): {e}"
        ))
    })?;
    // The body is not in the signed URL; its sha256 is.
    use sha2::Digest;
    if hex::encode(sha2::Sha256::digest(&raw)) != q.body_sha256.to_ascii_lowercase() {
        return Err(ApiError::BadRequest(
            "the marks' sha256 is not body_sha256".into(),
        ));
    }
    let queries: Vec<MarkQuery> = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::BadRequest(format!("the marks are not valid JSON: {e}")))?;
    if queries.len() > MAX_MARKS {
        return Err(ApiError::BadRequest(format!("at most {MAX_MARKS} marks at once")));
    }
    // A mark that cannot be parsed is answered as its own `POST /-/mark`
    // would be; the others are applied together.
    let parsed: Vec<Result<StateChange, ApiError>> = queries.iter().map(state_change).collect();
    let valid: Vec<StateChange> = parsed.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
    let store = state.store.clone();
    let mut applied = store
        .short_call(move |store| store.set_states(valid))
        .await?
        .into_iter();
    let outcomes: Vec<MarkOutcome> = parsed
        .into_iter()
        .map(|p| {
            let result = p.and_then(|_| Ok(applied.next().expect("one outcome per valid mark")?));
            match result {
                Ok(_) => MarkOutcome {
                    status: 200,
                    error: None,
                },
                Err(e) => MarkOutcome {
                    status: e.status().as_u16(),
                    error: Some(e.to_string()),
                },
            }
        })
        .collect();
    Ok(Json(outcomes).into_response())
}

/// A mark's query, checked.
fn state_change(q: &MarkQuery) -> Result<StateChange, ApiError> {
    let sha256 = match q.sha256.as_deref() {
        Some(s) => Some(
            parse_sha256_hex(s)
                .map(hex::encode)
                .ok_or_else(|| ApiError::BadRequest("sha256 must be 64 hex digits".into()))?,
        ),
        None => None,
    };
    Ok(StateChange {
        key: Key::new(&q.key)?,
        state: q.state,
        md5: q.md5.as_deref().map(parse_md5).transpose()?,
        sha256,
        write: q.write.as_deref().map(parse_write).transpose()?,
        created: q.created,
    })
}

pub async fn abort(
    State(state): State<Arc<AppState>>,
    Query(q): Query<AbortQuery>,
) -> Result<Response, ApiError> {
    let key = Key::new(&q.key)?;
    let write = parse_write(&q.write)?;
    let store = state.store.clone();
    let k = key.clone();
    let aborted = store.short_call(move |store| store.abort(&k, &write)).await??;
    tracing::debug!(key = %key, ?aborted, "write aborted");
    Ok(Json(aborted).into_response())
}

fn parse_write(s: &str) -> Result<String, ApiError> {
    if trove_common::http::valid_write_id(s) {
        Ok(s.to_string())
    } else {
        Err(ApiError::BadRequest(
            "write must be 1-64 letters, digits or -".into(),
        ))
    }
}

/// A hex md5 (32 hex digits), lower-cased.
fn parse_md5(s: &str) -> Result<String, ApiError> {
    if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(ApiError::BadRequest("md5 must be 32 hex digits".into()))
    }
}
