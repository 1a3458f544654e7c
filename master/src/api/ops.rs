//! `/-/healthy`, `/-/ready` and `/-/status`.

use crate::error::ApiError;
use crate::index::KeyCounts;
use crate::volumes::Health;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
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

/// The whole cluster as this master sees it.
pub async fn status(State(state): State<Arc<AppState>>) -> Json<MasterStatus> {
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
    Json(MasterStatus {
        version: trove_common::VERSION,
        replicas: state.config.placement.replicas(),
        protect: state.config.protect,
        fsync: state.config.fsync,
        healthy_volumes: volumes.iter().filter(|v| v.health.healthy).count(),
        volumes,
        keys: state.index.counts(),
        index: IndexStatus {
            path: state.config.db.display().to_string(),
            disk_bytes: state.index.disk_size(),
        },
    })
}
