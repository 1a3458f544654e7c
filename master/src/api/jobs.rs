//! `/-/rebalance`, `/-/verify`, `/-/gc`: `POST` starts the job (JSON
//! parameters in the body, all optional), `GET` reports its progress,
//! `DELETE` stops it. The path and method are checked before the body is
//! read, so a refusal never waits for (or says `100 Continue` to) a body.

use crate::error::ApiError;
use crate::jobs::{JobKind, JobParams};
use crate::AppState;
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;
use trove_common::key::KeyError;

/// The most a job's JSON parameters may take.
const MAX_PARAMS: usize = 64 << 10;

pub async fn job(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let method = req.method().clone();
    let Some(kind) = JobKind::parse(&name) else {
        // Not an operation: still never a key.
        return Err(match method {
            Method::GET | Method::HEAD => ApiError::NoSuchOperation(name),
            _ => ApiError::Key(KeyError::Reserved),
        });
    };
    match method {
        Method::POST => start(state, kind, req).await,
        Method::GET | Method::HEAD => match state.jobs.report(kind) {
            Some(report) => Ok(Json(report).into_response()),
            None => Err(never_ran(&name)),
        },
        Method::DELETE => stop(&state, kind),
        _ => Err(ApiError::WrongMethod {
            method: method.to_string(),
            path: format!("/-/{name}"),
            allow: "GET, HEAD, POST, DELETE",
        }),
    }
}

/// Starts `kind` with the JSON parameters in the request's body: `202`
/// with its first report.
pub(crate) async fn start(state: Arc<AppState>, kind: JobKind, req: Request) -> Result<Response, ApiError> {
    let name = kind.name();
    if trove_common::http::content_length(req.headers()).is_ok_and(|n| n > Some(MAX_PARAMS as u64)) {
        return Err(ApiError::ParamsTooLarge(MAX_PARAMS));
    }
    let body = axum::body::to_bytes(req.into_body(), MAX_PARAMS)
        .await
        .map_err(
            |e| match e.into_inner().downcast::<http_body_util::LengthLimitError>() {
                Ok(_) => ApiError::ParamsTooLarge(MAX_PARAMS),
                Err(e) => ApiError::ClientBody(e.to_string()),
            },
        )?;
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

/// The answer about a job of a kind that has not run.
fn never_ran(name: &str) -> ApiError {
    ApiError::NoSuchJob(format!(
        "no {name} is running or has run since this master started"
    ))
}

/// Asks a running `kind` to stop: `202`, or `404` when none runs.
pub(crate) fn stop(state: &AppState, kind: JobKind) -> Result<Response, ApiError> {
    let name = kind.name();
    if state.jobs.cancel(kind) {
        return Ok((StatusCode::ACCEPTED, format!("stopping the {name}\n")).into_response());
    }
    Err(match state.jobs.report(kind) {
        // One ran, and has ended: nothing to stop, but it did run.
        Some(last) => ApiError::NoSuchJob(format!(
            "no {name} is running: the last one has ended ({}); GET /-/{name} shows its report",
            format!("{:?}", last.state).to_lowercase()
        )),
        None => never_ran(name),
    })
}
