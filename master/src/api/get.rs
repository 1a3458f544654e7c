//! `GET`/`HEAD /key`: a `302` to a healthy replica, answered from the index
//! alone, with the value's size and digests in headers.

use crate::error::ApiError;
use crate::AppState;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use trove_common::http::{
    CONTENT_MD5, KEY_BALANCE, KEY_CREATED, KEY_EXPIRES, KEY_SHA256, KEY_SIZE, KEY_VOLUMES,
};
use trove_common::key::Key;
use trove_common::record::{now_ms, State};

pub fn get(state: &AppState, key: Key) -> Result<Response, ApiError> {
    let record = state
        .index
        .get(&key)?
        .filter(|r| r.state == State::Live && !r.expired(now_ms()))
        .ok_or(ApiError::NotFound)?;
    let readable = record.readable();
    let addr = state
        .volumes
        .pick_replica(&readable, record.created)
        .ok_or_else(|| ApiError::ReplicasDown(record.volumes.join(",")))?;
    let balanced = state
        .volumes
        .placement()
        .is_balanced(key.as_bytes(), &record.volumes);
    let mut resp = (
        StatusCode::FOUND,
        [
            (
                header::LOCATION.as_str(),
                state.volumes.client().key_url("GET", addr, &key),
            ),
            (header::CONTENT_LENGTH.as_str(), "0".to_string()),
            (CONTENT_MD5, record.md5),
            (KEY_SHA256, record.sha256),
            (KEY_SIZE, record.size.to_string()),
            // Only the replicas a reader may use: never a damaged one.
            (KEY_VOLUMES, readable.join(",")),
            (
                KEY_BALANCE,
                if balanced { "balanced" } else { "unbalanced" }.to_string(),
            ),
            (KEY_CREATED, record.created.to_string()),
        ],
    )
        .into_response();
    if let Some(t) = record.expires {
        resp.headers_mut().insert(KEY_EXPIRES, t.into());
    }
    Ok(resp)
}
