//! The operators' status page (`/-/ui`) and the API description
//! (`/-/openapi.json`, rendered for people at `/-/docs`).
//!
//! The page is plain HTML, CSS and JavaScript built into the binary
//! (`assets/`): nothing is fetched from elsewhere, so it works on a
//! cluster with no way out. It polls [`STATE`] (the cluster's status and
//! the admin jobs) and `/-/metrics` (request and error rates), lists keys
//! with `?list`, shows one key's record through [`KEY`], and downloads a
//! value through the master's ordinary redirect — the page never builds a
//! volume URL, so with `--secret` every URL it follows is signed by the
//! master.
//!
//! Its admin actions go to [`JOBS`], which refuses them unless the master
//! runs with `--ui-admin`. The job endpoints the CLI uses (`/-/rebalance`,
//! …) are not changed by that flag.
//!
//! - [`state`]: `GET /-/ui/state` and `GET /-/ui/key`.
//! - [`admin`]: `POST`/`DELETE /-/ui/jobs/{job}`.
//! - [`openapi`]: `docs/openapi.yaml`, served as JSON.

pub mod admin;
pub mod openapi;
pub mod state;

use crate::AppState;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, MethodRouter};
use std::sync::Arc;

/// The page.
pub const PAGE: &str = "/-/ui";
/// Its script and style sheet.
pub const SCRIPT: &str = "/-/ui/app.js";
pub const STYLE: &str = "/-/ui/style.css";
/// Everything the page shows but the metrics, in one answer.
pub const STATE: &str = "/-/ui/state";
/// One key's record (`?key=/the/key`).
pub const KEY: &str = "/-/ui/key";
/// The page's admin actions.
pub const JOBS: &str = "/-/ui/jobs/{job}";
/// The API description for people, its script, and for programs.
pub const DOCS: &str = "/-/docs";
pub const DOCS_SCRIPT: &str = "/-/docs/docs.js";
pub const OPENAPI: &str = "/-/openapi.json";

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The handler of one of this module's routes.
pub fn handler(path: &str) -> Option<MethodRouter<Arc<AppState>>> {
    Some(match path {
        PAGE => asset(HTML, include_str!("assets/index.html")),
        SCRIPT => asset(JS, include_str!("assets/app.js")),
        STYLE => asset(CSS, include_str!("assets/style.css")),
        DOCS => asset(HTML, include_str!("assets/docs.html")),
        DOCS_SCRIPT => asset(JS, include_str!("assets/docs.js")),
        STATE => get(state::state),
        KEY => get(state::key),
        JOBS => any(admin::job),
        OPENAPI => get(openapi::json),
        _ => return None,
    })
}

/// `GET /`: `/` is never a key, so a browser pointed at the master lands
/// on the status page.
pub fn to_page() -> Response {
    (
        StatusCode::FOUND,
        [(header::LOCATION, PAGE), (header::CONTENT_LENGTH, "0")],
    )
        .into_response()
}

/// A file built into the binary. The page may load only what the master
/// serves, may not be framed (its admin buttons cannot be clicked through
/// another site), and is fetched again on every visit (it is small, and a
/// new master version brings a new page).
fn asset(content_type: &'static str, body: &'static str) -> MethodRouter<Arc<AppState>> {
    get(move || async move {
        (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
                ),
            ],
            body,
        )
    })
}
