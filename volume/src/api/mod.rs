//! The volume's HTTP surface: key paths dispatch on the method, `/-/…`
//! paths are operations.

mod admin;
mod auth;
mod blobs;
mod compose;
mod delete;
mod get;
mod listing;
mod ops;
mod peer;
mod put;

use crate::error::ApiError;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, Uri};
use axum::response::Response;
use axum::routing::{get as get_route, post, MethodRouter};
use axum::Router;
use std::sync::Arc;
use trove_common::http::TROVE_MASTER;
use trove_common::key::Key;
use trove_common::routes::{op, read, Route};
use trove_common::server::ZeroCopy;

/// Liveness, the one operation that needs no signature.
pub const HEALTHY: &str = "/-/healthy";

// The router is built from [`ROUTES`] and nothing else, and a test holds
// the volume API in `docs/openapi.yaml` (`x-volume-paths`) to the same
// table. [`KEY_ROUTE`] is the fallback every other path takes. With a
// secret, every route but [`HEALTHY`] answers `403` to an unsigned or
// expired request.

/// The operations (`/-/…`).
pub const ROUTES: &[Route] = &[
    Route {
        path: HEALTHY,
        operations: &read(&[200]),
    },
    Route {
        path: "/-/status",
        operations: &read(&[200, 403]),
    },
    Route {
        path: "/-/metrics",
        operations: &read(&[200, 403]),
    },
    Route {
        path: "/-/blobs",
        operations: &read(&[200, 403]),
    },
    Route {
        path: "/-/listing",
        operations: &read(&[200, 403]),
    },
    Route {
        path: "/-/pull",
        operations: &[op("POST", &[201, 400, 403, 408, 409, 414, 502, 503, 507])],
    },
    Route {
        path: "/-/compose",
        operations: &[op("POST", &[201, 400, 403, 408, 409, 414, 502, 503, 507])],
    },
    Route {
        path: "/-/verify",
        operations: &read(&[200, 400, 403, 404, 414]),
    },
    Route {
        path: "/-/mark",
        operations: &[op("POST", &[200, 400, 403, 404, 409, 414, 503])],
    },
    Route {
        path: "/-/marks",
        operations: &[op("POST", &[200, 400, 403])],
    },
    Route {
        path: "/-/abort",
        operations: &[op("POST", &[200, 400, 403, 414, 503])],
    },
];

/// Every other path: a key.
pub const KEY_ROUTE: Route = Route {
    path: "/{key}",
    operations: &[
        op("GET", &[200, 206, 304, 400, 403, 404, 412, 414, 416, 503]),
        op("HEAD", &[200, 206, 304, 400, 403, 404, 412, 414, 416, 503]),
        op("PUT", &[201, 400, 403, 408, 409, 414, 503, 507]),
        op("DELETE", &[204, 400, 403, 404, 414, 503]),
    ],
};

/// The handler of one path of [`ROUTES`].
pub(crate) fn handler(path: &str) -> MethodRouter<Arc<AppState>> {
    match path {
        HEALTHY => get_route(ops::healthy),
        "/-/status" => get_route(ops::status),
        "/-/metrics" => get_route(ops::metrics),
        "/-/blobs" => get_route(blobs::list),
        "/-/listing" => get_route(listing::list),
        "/-/pull" => post(admin::pull),
        "/-/compose" => post(compose::compose),
        "/-/verify" => get_route(admin::verify),
        "/-/mark" => post(admin::mark),
        "/-/marks" => post(admin::marks),
        "/-/abort" => post(admin::abort),
        other => panic!("no handler for the route {other}"),
    }
}

/// All routes of a volume.
pub fn router(state: Arc<AppState>) -> Router {
    let checked = ROUTES
        .iter()
        .filter(|r| r.path != HEALTHY)
        .fold(Router::new(), |router, r| router.route(r.path, handler(r.path)))
        .fallback(key_request)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::check_signature,
        ))
        .with_state(Arc::clone(&state));
    // Liveness needs no signature (everything else does, metrics included).
    Router::new()
        .route(HEALTHY, handler(HEALTHY))
        .method_not_allowed_fallback(wrong_method)
        .merge(checked)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.metrics),
            trove_common::metrics::track,
        ))
        .with_state(state)
}

/// Another method on an operation that exists: `405` with `Allow`. Each
/// operation is either a `POST` or a read, as [`ROUTES`] says. (Any
/// method on a path under `/-/` that is no operation is `400`: such paths
/// are never keys.)
async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    let posted = ROUTES
        .iter()
        .any(|r| r.path == uri.path() && r.operations.iter().all(|o| o.method == "POST"));
    let allow = if posted { "POST" } else { "GET, HEAD" };
    ApiError::WrongMethod {
        method: method.to_string(),
        path: uri.path().to_string(),
        allow,
    }
}

/// A request on a key path.
async fn key_request(State(state): State<Arc<AppState>>, req: Request<Body>) -> Result<Response, ApiError> {
    let key = Key::from_path(req.uri().path())?;
    if matches!(*req.method(), Method::PUT | Method::DELETE)
        && req.headers().get(TROVE_MASTER).is_none_or(|v| v != "1")
    {
        return Err(ApiError::NotFromMaster(req.method().to_string()));
    }
    match *req.method() {
        Method::PUT => put::put(&state, key, req).await,
        Method::GET | Method::HEAD => {
            let pin = get::pinned(req.uri().query())?;
            let head_only = req.method() == Method::HEAD;
            let zero_copy = req.extensions().get::<ZeroCopy>().cloned();
            get::get(&state, key, pin, req.headers(), head_only, zero_copy).await
        }
        Method::DELETE => delete::delete(&state, key).await,
        ref m => Err(ApiError::Method(m.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The volume API in `docs/openapi.yaml` is this router's.
    #[test]
    fn the_description_matches_the_router() {
        let yaml = include_str!("../../../docs/openapi.yaml");
        let doc: serde_json::Value = serde_norway::from_str(yaml).expect("docs/openapi.yaml parses");
        let routes: Vec<&Route> = ROUTES.iter().chain([&KEY_ROUTE]).collect();
        let problems = trove_common::routes::check(&doc["x-volume-paths"], &routes, |p| vec![p.to_string()]);
        assert!(
            problems.is_empty(),
            "docs/openapi.yaml (x-volume-paths) and the volume's router differ:\n{}",
            problems.join("\n")
        );
    }

    /// A status in the table is one the handlers can answer: a success, or
    /// what some error maps to.
    #[test]
    fn every_status_in_the_table_can_be_answered() {
        let routes: Vec<&Route> = ROUTES.iter().chain([&KEY_ROUTE]).collect();
        let problems = trove_common::routes::unanswerable(&routes, &crate::error::every_status());
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn every_route_has_a_handler() {
        for route in ROUTES {
            let _ = handler(route.path);
        }
    }
}
