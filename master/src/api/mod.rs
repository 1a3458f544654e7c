//! The master's HTTP surface. Key paths dispatch on the method (and on a
//! listing query); `/-/…` paths are operations.

mod delete;
mod get;
pub(crate) mod jobs;
mod list;
pub(crate) mod ops;
pub(crate) mod put;

use crate::error::ApiError;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, Uri};
use axum::response::Response;
use axum::routing::{any, get as get_route, MethodRouter};
use axum::Router;
use std::sync::Arc;
use trove_common::key::Key;
use trove_common::routes::{op, read, Route};

// The router is built from [`ROUTES`] and nothing else, and a test holds
// `docs/openapi.yaml` to the same table (every route, method and status
// described; nothing described that is not here). `{job}` stands for each
// of [`crate::jobs::JobKind::ALL`]; [`KEY_ROUTE`] is the fallback every
// other path takes.

/// The operations (`/-/…`), the status page's among them.
pub const ROUTES: &[Route] = &[
    Route {
        path: "/-/healthy",
        operations: &read(&[200]),
    },
    Route {
        path: "/-/ready",
        operations: &read(&[200, 503]),
    },
    Route {
        path: "/-/status",
        operations: &read(&[200]),
    },
    Route {
        path: "/-/metrics",
        operations: &read(&[200]),
    },
    Route {
        path: "/-/{job}",
        operations: &[
            op("GET", &[200, 404]),
            op("HEAD", &[200, 404]),
            op("POST", &[202, 400, 409, 413]),
            op("DELETE", &[202, 404]),
        ],
    },
    Route {
        path: crate::ui::PAGE,
        operations: &read(&[200]),
    },
    Route {
        path: crate::ui::SCRIPT,
        operations: &read(&[200]),
    },
    Route {
        path: crate::ui::STYLE,
        operations: &read(&[200]),
    },
    Route {
        path: crate::ui::STATE,
        operations: &read(&[200]),
    },
    Route {
        path: crate::ui::KEY,
        operations: &read(&[200, 400, 404, 414]),
    },
    Route {
        path: crate::ui::JOBS,
        operations: &[
            op("POST", &[202, 400, 403, 409, 413]),
            op("DELETE", &[202, 403, 404]),
        ],
    },
    Route {
        path: crate::ui::DOCS,
        operations: &read(&[200]),
    },
    Route {
        path: crate::ui::DOCS_SCRIPT,
        operations: &read(&[200]),
    },
    Route {
        path: crate::ui::OPENAPI,
        operations: &read(&[200]),
    },
];

/// Every other path: a key, or a prefix to list (`/` alone, which is never
/// a key, sends a browser to the status page).
pub const KEY_ROUTE: Route = Route {
    path: "/{key}",
    operations: &[
        op("GET", &[200, 302, 304, 400, 403, 404, 412, 413, 414, 503]),
        op("HEAD", &[200, 302, 304, 400, 403, 404, 412, 413, 414, 503]),
        op(
            "PUT",
            &[
                201, 400, 403, 404, 408, 409, 411, 412, 413, 414, 502, 503, 504, 507,
            ],
        ),
        op(
            "POST",
            &[
                201, 400, 403, 404, 408, 409, 411, 412, 413, 414, 502, 503, 504, 507,
            ],
        ),
        op("DELETE", &[204, 400, 403, 404, 409, 412, 414, 502, 504]),
        op("UNLINK", &[204, 400, 403, 404, 409, 412, 414, 502, 504]),
    ],
};

/// The handler of one path of [`ROUTES`].
pub(crate) fn handler(path: &str) -> MethodRouter<Arc<AppState>> {
    match path {
        "/-/healthy" => get_route(ops::healthy),
        "/-/ready" => get_route(ops::ready),
        "/-/status" => get_route(ops::status),
        "/-/metrics" => get_route(ops::metrics),
        "/-/{job}" => any(jobs::job),
        ui => crate::ui::handler(ui).unwrap_or_else(|| panic!("no handler for the route {ui}")),
    }
}

/// All routes of the master.
pub fn router(state: Arc<AppState>) -> Router {
    ROUTES
        .iter()
        .fold(Router::new(), |router, r| router.route(r.path, handler(r.path)))
        .fallback(key_request)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.metrics),
            trove_common::metrics::track,
        ))
        .with_state(state)
}

/// Another method on an operation that exists. Only the read-only
/// operations get here (`/-/{job}` and `/-/ui/jobs/{job}` check their
/// methods themselves), so the
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
                "unsupported query string: only ?list and ?unlinked (with prefix=, start=, after=, limit=, delimiter= and detail) are understood"
                    .into(),
            )),
        };
    }
    if req.uri().path() == "/" && matches!(method, Method::GET | Method::HEAD) {
        return Ok(crate::ui::to_page());
    }
    let key = Key::from_path(req.uri().path())?;
    match method.as_str() {
        "PUT" | "POST" if crate::compose::requested(req.headers())? => {
            crate::compose::put(state, key, req).await
        }
        "PUT" | "POST" => put::put(state, key, req).await,
        "GET" | "HEAD" => get::get(&state, key, req.headers()).await,
        "DELETE" => delete::delete(state, key, req.headers()).await,
        "UNLINK" => delete::unlink(state, key, req.headers()).await,
        other => Err(ApiError::Method(other.to_string())),
    }
}
