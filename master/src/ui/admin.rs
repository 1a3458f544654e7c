//! `POST /-/ui/jobs/{job}` starts a job, `DELETE` stops it: the status
//! page's admin buttons. They answer as `POST`/`DELETE /-/{job}` do, but
//! only on a master started with `--ui-admin`, and only for requests that
//! carry `Trove-Ui: 1`.
//!
//! Why a separate path: `--ui-admin` decides whether the *page* may change
//! the cluster, without changing `/-/rebalance` and friends, which the CLI
//! and scripts use. Why the header: a browser sends a request with a
//! custom header to another origin only after asking it (CORS preflight),
//! which this master never grants, so a page on another site cannot make
//! an operator's browser start a job here; a form or an image can send a
//! `POST`, never a header.

use crate::api::jobs::{start, stop};
use crate::error::ApiError;
use crate::jobs::JobKind;
use crate::AppState;
use axum::extract::{Path, Request, State};
use axum::http::Method;
use axum::response::Response;
use std::sync::Arc;

/// The header the page sends with every admin request.
pub const UI_HEADER: &str = "trove-ui";

pub async fn job(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let method = req.method().clone();
    if method != Method::POST && method != Method::DELETE {
        return Err(ApiError::WrongMethod {
            method: method.to_string(),
            path: format!("/-/ui/jobs/{name}"),
            allow: "POST, DELETE",
        });
    }
    if !state.config.ui_admin {
        return Err(ApiError::Forbidden(
            "the status page's admin actions are off: start the master with --ui-admin, \
             or run `trove-master rebalance|verify|gc`"
                .into(),
        ));
    }
    if req.headers().get(UI_HEADER).is_none_or(|v| v != "1") {
        return Err(ApiError::Forbidden(format!(
            "admin requests from the status page carry the header `{UI_HEADER}: 1`"
        )));
    }
    let Some(kind) = JobKind::parse(&name) else {
        return Err(ApiError::NoSuchOperation(format!("ui/jobs/{name}")));
    };
    tracing::info!(job = kind.name(), %method, "admin action from the status page");
    match method {
        Method::POST => start(state, kind, req).await,
        _ => stop(&state, kind),
    }
}
