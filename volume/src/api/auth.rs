//! The signature check in front of every handler (but `/-/healthy`): with
//! a secret, a request must carry `expires=` and `sig=` made with it for
//! this method, path and query (see `trove_common::signing`); otherwise
//! `403`. Without a secret every request passes, as with minikeyvalue's
//! nginx volumes: keep such volumes on a private network.

use crate::error::ApiError;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use trove_common::key::percent_decode;
use trove_common::signing::now_secs;

pub async fn check_signature(State(state): State<Arc<AppState>>, req: Request<Body>, next: Next) -> Response {
    let Some(signer) = &state.config.signer else {
        return next.run(req).await;
    };
    let decode = |s: &str| {
        percent_decode(s.as_bytes())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
    };
    let Some(path) = decode(req.uri().path()) else {
        return refuse("the path is not valid percent-encoded UTF-8");
    };
    let mut params: Vec<(String, String)> = vec![];
    for pair in req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        match (decode(n), decode(v)) {
            (Some(n), Some(v)) => params.push((n, v)),
            _ => return refuse("the query string is not valid percent-encoded UTF-8"),
        }
    }
    let borrowed: Vec<(&str, &str)> = params.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    match signer.verify(req.method().as_str(), &path, &borrowed, now_secs()) {
        Ok(()) => next.run(req).await,
        Err(e) => refuse(&e.to_string()),
    }
}

fn refuse(why: &str) -> Response {
    ApiError::Forbidden(why.to_string()).into_response()
}
