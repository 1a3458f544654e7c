//! `/-/healthy` and `/-/status`.

use crate::AppState;
use axum::extract::State;
use axum::http::header;
use axum::Json;
use std::sync::Arc;
use trove_common::protocol::VolumeStatus;

pub async fn healthy() -> &'static str {
    "ok\n"
}

/// Prometheus text: the HTTP metrics, then the store's gauges.
pub async fn metrics(
    State(state): State<Arc<AppState>>,
) -> ([(header::HeaderName, &'static str); 1], String) {
    use trove_common::metrics::gauge;
    let mut out = String::new();
    state.metrics.render(&mut out);
    let (blobs, bytes) = state.store.counts();
    gauge(
        &mut out,
        "trove_blobs",
        "Blobs stored.",
        &[(vec![], blobs as f64)],
    );
    gauge(
        &mut out,
        "trove_blob_bytes",
        "Bytes of the blobs stored.",
        &[(vec![], bytes as f64)],
    );
    let store = state.store.clone();
    let dirs = tokio::task::spawn_blocking(move || store.dir_status())
        .await
        .unwrap_or_default();
    let free: Vec<(Vec<(&str, String)>, f64)> = dirs
        .iter()
        .map(|d| (vec![("dir", d.path.clone())], d.free_bytes as f64))
        .collect();
    gauge(
        &mut out,
        "trove_dir_free_bytes",
        "Free bytes per data dir.",
        &free,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

pub async fn status(State(state): State<Arc<AppState>>) -> Json<VolumeStatus> {
    let store = state.store.clone();
    let dirs = tokio::task::spawn_blocking(move || store.dir_status())
        .await
        .unwrap_or_default();
    let (blobs, used_bytes) = state.store.counts();
    Json(VolumeStatus {
        version: trove_common::VERSION.to_string(),
        blobs,
        used_bytes,
        free_bytes: dirs.iter().filter(|d| d.writable).map(|d| d.free_bytes).sum(),
        writable: dirs.iter().any(|d| d.writable),
        fsync: state.store.fsync(),
        dirs,
    })
}
