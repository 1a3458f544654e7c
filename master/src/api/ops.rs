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
use trove_common::metrics::Scrape;

/// `200` while the process serves.
pub async fn healthy() -> &'static str {
    "ok\n"
}

/// `200` when the index and enough volumes are healthy to take writes.
pub async fn ready(State(state): State<Arc<AppState>>) -> (StatusCode, String) {
    if let Some(e) = state.index.stall() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n"));
    }
    let healthy = state.volumes.healthy_count();
    let writable = state.volumes.writable_count();
    let needed = state.config.placement.replicas();
    if writable >= needed {
        (
            StatusCode::OK,
            format!("ready: {healthy} healthy volume(s), {writable} taking writes\n"),
        )
    } else if healthy < needed {
        let e = ApiError::NotEnoughVolumes { healthy, needed };
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n"))
    } else {
        // Up, but a write would fail: every volume but `writable` is full
        // (under --min-free), read-only or stalled.
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: only {writable} of {healthy} healthy volume(s) take writes (the others are full, under --min-free, read-only or stalled), {needed} needed; see GET /-/status\n"),
        )
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
    /// Keys by the state they read as ([`crate::index::KeyCounts`]).
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
    /// How long a call has waited on the index's disk, while that is
    /// past the stall timeout, and what is refused meanwhile (`stalled`).
    stalled_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stalled: Option<String>,
}

/// The `/-/metrics` scrape: the HTTP metrics, then the cluster's gauges
/// and the master's own counters.
pub async fn metrics(
    State(state): State<Arc<AppState>>,
) -> ([(header::HeaderName, &'static str); 1], String) {
    let mut scrape = Scrape::new(&state.metrics);
    let snapshot = state.volumes.snapshot();
    let per_volume = |f: &dyn Fn(&Health) -> Option<u64>| -> Vec<(String, i64)> {
        snapshot
            .iter()
            .filter_map(|(spec, h)| f(h).map(|v| (spec.addr.clone(), v as i64)))
            .collect()
    };
    scrape.gauges(
        "trove_volume_up",
        "1 while the volume answers its health poll",
        "volume",
        per_volume(&|h| Some(h.healthy.into())),
    );
    scrape.gauges(
        "trove_volume_writable",
        "1 while the volume takes new writes",
        "volume",
        per_volume(&|h| Some(h.writable.into())),
    );
    scrape.gauges(
        "trove_volume_stalled",
        "1 while the volume's disk is taken for hung (a read or writes waiting past its stall timeout): it takes no writes, and readers go to other replicas",
        "volume",
        per_volume(&|h| Some(h.stalled.is_some().into())),
    );
    scrape.gauges(
        "trove_volume_free_bytes",
        "Free bytes the volume last reported",
        "volume",
        per_volume(&|h| h.free_bytes),
    );
    scrape.gauges(
        "trove_volume_blobs",
        "Blobs the volume last reported",
        "volume",
        per_volume(&|h| h.blobs),
    );
    let c = state.index.counts();
    scrape.gauges(
        "trove_keys",
        "Keys in the index, by the state they read as (a key being replaced is live)",
        "state",
        [("live", c.live), ("writing", c.writing), ("unlinked", c.unlinked)]
            .into_iter()
            .map(|(s, n)| (s.to_string(), n)),
    );
    let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
    for (name, help, value) in [
        ("trove_expired_keys", "Keys deleted by the expirer since the master started", load(&state.expiry.expired)),
        ("trove_expiry_failures", "Deletions of expired keys that failed (retried later)", load(&state.expiry.failed)),
        ("trove_read_repair_checks", "Keys checked because a volume could not serve a copy of them to a reader (repair on read)", load(&state.repairs.checked)),
        ("trove_read_repairs", "Copies re-copied from a good replica by repair on read", load(&state.repairs.repaired)),
        ("trove_read_repair_failures", "Copies repair on read could not repair (left to verify --repair)", load(&state.repairs.failed)),
        ("trove_listing_index_reads", "Index iterator moves made by listings (a common prefix costs one seek)", state.index.list_reads()),
        ("trove_index_write_stalls", "Unsynced index writes (--no-fsync) that met a RocksDB write stall and waited on the blocking pool", state.index.write_stalls()),
    ] {
        scrape.counter(name, help, value);
    }
    scrape.gauge(
        "trove_index_disk_bytes",
        "Size of the index's SST files",
        state.index.disk_size() as i64,
    );
    scrape.gauge(
        "trove_index_stalled",
        "1 while a write has waited on the index's disk past the stall timeout: writes and deletes are refused (503), reads still served",
        state.index.stalled().is_some().into(),
    );
    scrape.answer()
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
                stalled_ms: state.index.stalled().map(|d| d.as_millis() as u64),
                stalled: state.index.stall().map(|e| e.to_string()),
            },
        }
    }
}
