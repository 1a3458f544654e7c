//! `/-/healthy` and `/-/status`.

use crate::store::DirStatus;
use crate::AppState;
use axum::extract::State;
use axum::http::header;
use axum::Json;
use serde::Serialize;
use std::sync::Arc;

pub async fn healthy() -> &'static str {
    "ok\n"
}

/// What `GET /-/status` answers.
#[derive(Serialize)]
pub struct VolumeStatus {
    pub version: &'static str,
    /// Blobs stored, and their total size.
    pub blobs: u64,
    pub used_bytes: u64,
    /// Free space summed over the writable data dirs.
    pub free_bytes: u64,
    /// At least one data dir takes new blobs.
    pub writable: bool,
    pub fsync: bool,
    pub dirs: Vec<DirStatus>,
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
        version: trove_common::VERSION,
        blobs,
        used_bytes,
        free_bytes: dirs.iter().filter(|d| d.writable).map(|d| d.free_bytes).sum(),
        writable: dirs.iter().any(|d| d.writable),
        fsync: state.store.fsync(),
        dirs,
    })
}
