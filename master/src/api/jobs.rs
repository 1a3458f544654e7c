//! `/-/rebalance`, `/-/verify`, `/-/gc`: `POST` starts the job (JSON
//! parameters in the body, all optional), `GET` reports its progress,
//! `DELETE` stops it.

use crate::error::ApiError;
use crate::jobs::{JobKind, JobParams};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;
use trove_common::key::KeyError;

pub async fn job(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    method: Method,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(kind) = JobKind::parse(&name) else {
        // Not an operation: still never a key.
        return Err(match method {
            Method::GET | Method::HEAD => ApiError::NoSuchOperation(name),
            _ => ApiError::Key(KeyError::Reserved),
        });
    };
    match method {
        Method::POST => {
            let params: JobParams = if body.iter().all(u8::is_ascii_whitespace) {
                JobParams::default()
            } else {
                serde_json::from_slice(&body)
                    .map_err(|e| ApiError::BadRequest(format!("bad {name} parameters: {e}")))?
            };
            let report = state
                .jobs
                .start(Arc::clone(&state), kind, params)
                .map_err(|e| ApiError::Conflict(e.to_string()))?;
            Ok((StatusCode::ACCEPTED, Json(report)).into_response())
        }
        Method::GET | Method::HEAD => match state.jobs.report(kind) {
            Some(report) => Ok(Json(report).into_response()),
            None => Err(ApiError::NoSuchJob(name)),
        },
        Method::DELETE => {
            if state.jobs.cancel(kind) {
                Ok((StatusCode::ACCEPTED, format!("stopping the {name}\n")).into_response())
            } else {
                Err(ApiError::NoSuchJob(name))
            }
        }
        _ => Err(ApiError::Key(KeyError::Reserved)),
    }
}
