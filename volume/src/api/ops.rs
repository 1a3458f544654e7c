//! `/-/healthy` and `/-/status`.

use crate::AppState;
use axum::extract::{Query, State};
use axum::http::header;
use axum::Json;
use std::sync::Arc;
use trove_common::protocol::{DirStatus, VolumeStatus};

pub async fn healthy() -> &'static str {
    "ok\n"
}

/// The `/-/metrics` scrape: the HTTP metrics, then the store's gauges.
pub async fn metrics(
    State(state): State<Arc<AppState>>,
) -> ([(header::HeaderName, &'static str); 1], String) {
    let mut scrape = trove_common::metrics::Scrape::new(&state.metrics);
    let (blobs, bytes) = state.store.counts();
    scrape.gauge("trove_blobs", "Blobs stored", blobs as i64);
    scrape.gauge("trove_blob_bytes", "Bytes of the blobs stored", bytes as i64);
    let dirs = dir_status(&state).await;
    scrape.gauges(
        "trove_dir_free_bytes",
        "Free bytes per data dir",
        "dir",
        dirs.iter().map(|d| (d.path.clone(), d.free_bytes as i64)),
    );
    scrape.answer()
}

/// Each data dir's status (its space needs a system call: off the HTTP
/// threads).
async fn dir_status(state: &AppState) -> Vec<DirStatus> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || store.dir_status())
        .await
        .unwrap_or_default()
}

/// `GET /-/status`'s query.
#[derive(Debug, Default, serde::Deserialize)]
pub struct StatusQuery {
    /// `<log>:<seq>`: the master has taken the damage reports up to `seq`
    /// of log `log`; they are not answered again.
    damage_seen: Option<String>,
}

pub async fn status(State(state): State<Arc<AppState>>, Query(q): Query<StatusQuery>) -> Json<VolumeStatus> {
    let dirs = dir_status(&state).await;
    let (blobs, used_bytes) = state.store.counts();
    let (damage_log, damaged) = state.store.damage().waiting(q.damage_seen.as_deref());
    Json(VolumeStatus {
        version: trove_common::VERSION.to_string(),
        blobs,
        used_bytes,
        free_bytes: dirs.iter().filter(|d| d.writable).map(|d| d.free_bytes).sum(),
        writable: dirs.iter().any(|d| d.writable),
        fsync: state.store.fsync(),
        dirs,
        damage_log,
        damaged,
    })
}
