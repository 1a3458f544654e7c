//! `/-/healthy`, `/-/ready` and `/-/status`.

use crate::error::ApiError;
use crate::index::KeyCounts;
use crate::volumes::Health;
use crate::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::Json;
use serde::Serialize;
use std::sync::Arc;

/// `200` while the process serves.
pub async fn healthy() -> &'static str {
    "ok\n"
}

/// `200` when enough volumes are healthy to take writes.
pub async fn ready(State(state): State<Arc<AppState>>) -> (StatusCode, String) {
    let healthy = state.volumes.healthy_count();
    let needed = state.config.placement.replicas();
    if healthy >= needed {
        (StatusCode::OK, format!("ready: {healthy} healthy volume(s)\n"))
    } else {
        let e = ApiError::NotEnoughVolumes { healthy, needed };
        (e.status(), format!("not ready: {e}\n"))
    }
}

#[derive(Serialize)]
pub struct MasterStatus {
    version: &'static str,
    replicas: usize,
    protect: bool,
    fsync: bool,
    healthy_volumes: usize,
    volumes: Vec<VolumeStatus>,
    keys: KeyCounts,
    /// Keys the expirer deleted since this master started.
    expired: u64,
    index: IndexStatus,
}

#[derive(Serialize)]
struct VolumeStatus {
    address: String,
    weight: f64,
    zone: Option<String>,
    #[serde(flatten)]
    health: Health,
}

#[derive(Serialize)]
struct IndexStatus {
    path: String,
    disk_bytes: u64,
}

/// Prometheus text: the HTTP metrics, then the cluster's gauges.
pub async fn metrics(
    State(state): State<Arc<AppState>>,
) -> ([(header::HeaderName, &'static str); 1], String) {
    use trove_common::metrics::{counter, gauge};
    let mut out = String::new();
    state.metrics.render(&mut out);
    let snapshot = state.volumes.snapshot();
    let per_volume = |f: &dyn Fn(&Health) -> Option<f64>| -> Vec<(Vec<(&str, String)>, f64)> {
        snapshot
            .iter()
            .filter_map(|(spec, h)| f(h).map(|v| (vec![("volume", spec.addr.clone())], v)))
            .collect()
    };
    let up = |h: &Health| Some(if h.healthy { 1.0 } else { 0.0 });
    gauge(
        &mut out,
        "trove_volume_up",
        "1 while the volume answers its health poll.",
        &per_volume(&up),
    );
    let writable = |h: &Health| Some(if h.writable { 1.0 } else { 0.0 });
    gauge(
        &mut out,
        "trove_volume_writable",
        "1 while the volume takes new writes.",
        &per_volume(&writable),
    );
    let free = |h: &Health| h.free_bytes.map(|b| b as f64);
    gauge(
        &mut out,
        "trove_volume_free_bytes",
        "Free bytes the volume last reported.",
        &per_volume(&free),
    );
    let blobs = |h: &Health| h.blobs.map(|b| b as f64);
    gauge(
        &mut out,
        "trove_volume_blobs",
        "Blobs the volume last reported.",
        &per_volume(&blobs),
    );
    let c = state.index.counts();
    let keys: Vec<(Vec<(&str, String)>, f64)> =
        [("live", c.live), ("writing", c.writing), ("unlinked", c.unlinked)]
            .into_iter()
            .map(|(s, n)| (vec![("state", s.to_string())], n as f64))
            .collect();
    gauge(&mut out, "trove_keys", "Keys in the index, by state.", &keys);
    let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
    counter(
        &mut out,
        "trove_expired_keys_total",
        "Keys deleted by the expirer since the master started.",
        load(&state.expiry.expired),
    );
    counter(
        &mut out,
        "trove_expiry_failures_total",
        "Deletions of expired keys that failed (retried later).",
        load(&state.expiry.failed),
    );
    counter(
        &mut out,
        "trove_listing_index_reads_total",
        "Index iterator moves made by listings (a common prefix costs one seek).",
        state.index.list_reads(),
    );
    let disk = vec![(vec![], state.index.disk_size() as f64)];
    gauge(
        &mut out,
        "trove_index_disk_bytes",
        "Size of the index's SST files.",
        &disk,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// The whole cluster as this master sees it.
pub async fn status(State(state): State<Arc<AppState>>) -> Json<MasterStatus> {
    Json(MasterStatus::of(&state))
}

impl MasterStatus {
    /// What `/-/status` answers (the status page shows the same).
    pub fn of(state: &AppState) -> MasterStatus {
        let volumes: Vec<VolumeStatus> = state
            .volumes
            .snapshot()
            .into_iter()
            .map(|(spec, health)| VolumeStatus {
                address: spec.addr,
                weight: spec.weight,
                zone: spec.zone,
                health,
            })
            .collect();
        MasterStatus {
            version: trove_common::VERSION,
            replicas: state.config.placement.replicas(),
            protect: state.config.protect,
            fsync: state.config.fsync,
            healthy_volumes: volumes.iter().filter(|v| v.health.healthy).count(),
            volumes,
            keys: state.index.counts(),
            expired: state.expiry.expired.load(std::sync::atomic::Ordering::Relaxed),
            index: IndexStatus {
                path: state.config.db.display().to_string(),
                disk_bytes: state.index.disk_size(),
            },
        }
    }
}
