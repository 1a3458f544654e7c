//! The master's HTTP surface. Key paths dispatch on the method (and on a
//! listing query); `/-/…` paths are operations.

mod delete;
mod get;
mod jobs;
mod list;
mod ops;
pub(crate) mod put;

use crate::error::ApiError;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, Uri};
use axum::response::Response;
use axum::routing::{any, get as get_route};
use axum::Router;
use std::sync::Arc;
use trove_common::key::Key;

/// All routes of the master.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/-/healthy", get_route(ops::healthy))
        .route("/-/ready", get_route(ops::ready))
        .route("/-/status", get_route(ops::status))
        .route("/-/metrics", get_route(ops::metrics))
        .route("/-/{job}", any(jobs::job))
        .fallback(key_request)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.metrics),
            trove_common::metrics::track,
        ))
        .with_state(state)
}

/// Another method on an operation that exists. Only the read-only
/// operations get here (`/-/{job}` checks its methods itself), so the
/// answer is `405` with `Allow: GET, HEAD`. (A write to a path under `/-/`
/// that is no operation is `400`: such paths are never keys.)
async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::WrongMethod {
        method: method.to_string(),
        path: uri.path().to_string(),
        allow: "GET, HEAD",
    }
}

/// A request on a key path (or a listing under a prefix).
async fn key_request(State(state): State<Arc<AppState>>, req: Request<Body>) -> Result<Response, ApiError> {
    let method = req.method().clone();
    if let Some(query) = req.uri().query().filter(|q| !q.is_empty()) {
        return match (list::ListQuery::parse(query)?, &method) {
            (Some(q), &Method::GET | &Method::HEAD) => list::list(&state, req.uri().path(), q).await,
            (Some(_), _) => Err(ApiError::Forbidden(format!(
                "?list and ?unlinked are read with GET, not {method}"
            ))),
            (None, _) => Err(ApiError::Forbidden(
                "unsupported query string: only ?list and ?unlinked (with start=, after=, limit=, delimiter= and detail) are understood"
                    .into(),
            )),
        };
    }
    let key = Key::from_path(req.uri().path())?;
    match method.as_str() {
        "PUT" | "POST" if crate::compose::requested(req.headers())? => {
            crate::compose::put(state, key, req).await
        }
        "PUT" | "POST" => put::put(state, key, req).await,
        "GET" | "HEAD" => get::get(&state, key),
        "DELETE" => delete::delete(state, key).await,
        "UNLINK" => delete::unlink(state, key).await,
        other => Err(ApiError::Method(other.to_string())),
    }
}
