//! `GET`/`HEAD /key`: a `302` to a healthy replica, answered from the index
//! alone, with the value's size, digests and metadata in headers.
//!
//! A value composed with its parts kept (S3 multipart) says how many
//! (`Key-Parts`); a read that sends `Trove-Part: N` also gets part N's
//! byte range (`Key-Part-Offset`, `Key-Part-Size`), absent when there is
//! no part N, so that the S3 gateway answers `partNumber` from the index.
//!
//! The key reads as its settled record ([`Record::visible`]): during a
//! replace, the value being replaced, until the new one commits. The
//! `Location` is pinned to the value's write (`?write=<id>`), so the volume
//! serves exactly that write's copy — the one it keeps aside while a
//! replace is in flight included — or says it was replaced.

use crate::error::ApiError;
use crate::AppState;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::time::{Duration, UNIX_EPOCH};
use trove_common::conditions::{Current, Preconditions, ReadVerdict};
use trove_common::http::{
    meta_headers, quoted_etag, CONTENT_MD5, KEY_BALANCE, KEY_CREATED, KEY_EXPIRES, KEY_PARTS,
    KEY_PART_OFFSET, KEY_PART_SIZE, KEY_SHA256, KEY_SIZE, KEY_VOLUMES, KEY_WRITE, SHA256_PARAM, TROVE_PART,
    WRITE_PARAM,
};
use trove_common::key::Key;
use trove_common::record::{now_ms, Record};

pub async fn get(state: &AppState, key: Key, request: &HeaderMap) -> Result<Response, ApiError> {
    let part = requested_part(request)?;
    let stored = state.index.get(&key)?;
    let record = stored
        .as_ref()
        .and_then(|r| r.visible(now_ms()))
        .ok_or(ApiError::NotFound)?;
    let conditions = Preconditions::from_headers(request).map_err(ApiError::BadRequest)?;
    match conditions.check_read(Current::new(record.etag(), record.created)) {
        ReadVerdict::Serve => {}
        ReadVerdict::NotModified => return Ok(not_modified(record)),
        ReadVerdict::Failed(failed) => return Err(ApiError::PreconditionFailed { failed, outcome: "" }),
    }
    let readable = record.readable();
    if readable.is_empty() {
        return Err(ApiError::AllDamaged(record.volumes.join(",")));
    }
    let addr = state
        .volumes
        .pick_reader(&readable, record.created)
        .await
        .ok_or_else(|| ApiError::ReplicasDown(state.volumes.why_unreadable(&readable, record.created)))?;
    let balanced = state.volumes.balanced(&key, record);
    // Pinned to the write; a value stored before writes had ids, to its
    // bytes (a volume keeps the replaced copy aside all the same).
    let pin = match record.write.as_deref() {
        Some(w) => (WRITE_PARAM, w),
        None => (SHA256_PARAM, record.sha256.as_str()),
    };
    let location = state.volumes.client().url("GET", addr, key.as_str(), &[pin]);
    let mut resp = (
        StatusCode::FOUND,
        [
            (header::LOCATION.as_str(), location),
            (header::CONTENT_LENGTH.as_str(), "0".to_string()),
            (CONTENT_MD5, record.md5.clone()),
            (KEY_SHA256, record.sha256.clone()),
            (KEY_SIZE, record.size.to_string()),
            // Only the replicas a reader may use: never a damaged one, nor
            // one on a volume that has lost its data since.
            (KEY_VOLUMES, state.volumes.held_copies(record).join(",")),
            (
                KEY_BALANCE,
                if balanced { "balanced" } else { "unbalanced" }.to_string(),
            ),
            (KEY_CREATED, record.created.to_string()),
        ],
    )
        .into_response();
    value_headers(resp.headers_mut(), record);
    if let Some(t) = record.expires {
        resp.headers_mut().insert(KEY_EXPIRES, t.into());
    }
    part_headers(resp.headers_mut(), record, part);
    Ok(resp)
}

/// `304 Not Modified`: the client's copy (its `If-None-Match` or
/// `If-Modified-Since`) is current, and no volume need be asked. It
/// carries what a `200` would say of the value (RFC 9110 §15.4.5).
fn not_modified(record: &Record) -> Response {
    let mut resp = StatusCode::NOT_MODIFIED.into_response();
    value_headers(resp.headers_mut(), record);
    resp
}

/// The part a read asks about (`Trove-Part: N`, N from 1).
fn requested_part(request: &HeaderMap) -> Result<Option<u32>, ApiError> {
    let Some(value) = request.get(TROVE_PART) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|n| *n >= 1)
        .map(Some)
        .ok_or_else(|| ApiError::BadRequest("Trove-Part must be a part number from 1".into()))
}

/// `Key-Parts` for a value with kept parts, and part `part`'s range when
/// asked and it exists.
fn part_headers(headers: &mut HeaderMap, record: &Record, part: Option<u32>) {
    if record.parts.is_empty() {
        return;
    }
    headers.insert(KEY_PARTS, record.parts.len().into());
    if let Some([start, end]) = part.and_then(|n| record.part_range(n)) {
        headers.insert(KEY_PART_OFFSET, start.into());
        headers.insert(KEY_PART_SIZE, (end - start).into());
    }
}

/// The headers describing the value itself: its stored metadata
/// (`Content-Type`, …, `x-amz-meta-*`), `ETag`, `Last-Modified` and
/// `Key-Write`.
fn value_headers(headers: &mut axum::http::HeaderMap, record: &Record) {
    for (name, value) in meta_headers(&record.meta) {
        if name != trove_common::record::ETAG_META {
            headers.insert(name, value);
        }
    }
    if let Ok(etag) = HeaderValue::from_str(&quoted_etag(record.etag())) {
        headers.insert(header::ETAG, etag);
    }
    let created = UNIX_EPOCH + Duration::from_millis(record.created);
    if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(created)) {
        headers.insert(header::LAST_MODIFIED, date);
    }
    if let Some(write) = record
        .write
        .as_deref()
        .and_then(|w| HeaderValue::from_str(w).ok())
    {
        headers.insert(KEY_WRITE, write);
    }
}
