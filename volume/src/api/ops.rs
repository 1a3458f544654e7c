//! `/-/healthy` and `/-/status`.

use crate::store::DirStatus;
use crate::AppState;
use axum::extract::State;
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
