//! The volume's HTTP surface: key paths dispatch on the method, `/-/…`
//! paths are operations.

mod admin;
mod auth;
mod blobs;
mod compose;
mod delete;
mod get;
mod ops;
mod peer;
mod put;

use crate::error::ApiError;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, Uri};
use axum::response::Response;
use axum::routing::{get as get_route, post};
use axum::Router;
use std::sync::Arc;
use trove_common::key::Key;

/// All routes of a volume.
pub fn router(state: Arc<AppState>) -> Router {
    let checked = Router::new()
        .route("/-/status", get_route(ops::status))
        .route("/-/metrics", get_route(ops::metrics))
        .route("/-/blobs", get_route(blobs::list))
        .route("/-/pull", post(admin::pull))
        .route("/-/compose", post(compose::compose))
        .route("/-/verify", get_route(admin::verify))
        .route("/-/mark", post(admin::mark))
        .route("/-/abort", post(admin::abort))
        .fallback(key_request)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::check_signature,
        ))
        .with_state(Arc::clone(&state));
    // Liveness needs no signature (everything else does, metrics included).
    Router::new()
        .route("/-/healthy", get_route(ops::healthy))
        .method_not_allowed_fallback(wrong_method)
        .merge(checked)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.metrics),
            trove_common::metrics::track,
        ))
        .with_state(state)
}

/// Another method on an operation that exists: `405` with `Allow`. Of the
/// operations, pull and mark are `POST`s; the others are reads. (Any
/// method on a path under `/-/` that is no operation is `400`: such paths
/// are never keys.)
async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    let allow = match uri.path() {
        "/-/pull" | "/-/mark" | "/-/compose" => "POST",
        _ => "GET, HEAD",
    };
    ApiError::WrongMethod {
        method: method.to_string(),
        path: uri.path().to_string(),
        allow,
    }
}

/// A request on a key path.
async fn key_request(State(state): State<Arc<AppState>>, req: Request<Body>) -> Result<Response, ApiError> {
    let key = Key::from_path(req.uri().path())?;
    match *req.method() {
        Method::PUT => put::put(&state, key, req).await,
        Method::GET | Method::HEAD => {
            let pin = get::pinned(req.uri().query())?;
            let head_only = req.method() == Method::HEAD;
            get::get(&state, key, pin, req.headers(), head_only).await
        }
        Method::DELETE => delete::delete(&state, key).await,
        ref m => Err(ApiError::Method(m.to_string())),
    }
}
