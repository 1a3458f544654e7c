//! What the status page reads: `GET /-/ui/state` (the cluster, the admin
//! jobs, whether the page may start them) and `GET /-/ui/key?key=K` (one
//! key's record, which a browser cannot read from the `302` headers of a
//! `HEAD`: it follows the redirect, or hides the headers).

use crate::api::ops::MasterStatus;
use crate::error::ApiError;
use crate::jobs::{JobKind, JobReport};
use crate::AppState;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use trove_common::key::Key;
use trove_common::record::{now_ms, Meta};

/// The problems of a job the page shows (its last ones); the CLI and
/// `GET /-/<job>` have all that were kept.
pub const PROBLEMS_SHOWN: usize = 20;

/// `GET /-/ui/state`.
#[derive(Serialize)]
pub struct UiState {
    /// Unix ms on the master, so the page's "seen 3 s ago" does not depend
    /// on the browser's clock.
    now: u64,
    /// Whether the page may start and stop jobs (`--ui-admin`).
    admin: bool,
    status: MasterStatus,
    /// The running or last run of each job that ran since the start.
    jobs: Vec<UiJob>,
}

/// A job's report with only its last [`PROBLEMS_SHOWN`] problems.
#[derive(Serialize)]
struct UiJob {
    #[serde(flatten)]
    report: JobReport,
    /// Problems the job noted in all (kept or not).
    problems_total: u64,
}

impl UiJob {
    fn new(mut report: JobReport) -> UiJob {
        let kept = report.problems.len();
        let problems_total = kept as u64 + report.problems_dropped;
        report.problems.drain(..kept.saturating_sub(PROBLEMS_SHOWN));
        // A dry run's plan (up to 1,000 lines) is not shown on the page,
        // which polls this every few seconds; the CLI and `GET /-/<job>`
        // have it.
        report.planned = Vec::new();
        UiJob {
            report,
            problems_total,
        }
    }
}

pub async fn state(State(state): State<Arc<AppState>>) -> Json<UiState> {
    Json(UiState {
        now: now_ms(),
        admin: state.config.ui_admin,
        status: MasterStatus::of(&state),
        jobs: JobKind::ALL
            .into_iter()
            .filter_map(|kind| state.jobs.report(kind))
            .map(UiJob::new)
            .collect(),
    })
}

#[derive(Deserialize)]
pub struct KeyQuery {
    /// The key, leading slash included.
    key: String,
}

/// `GET /-/ui/key`: what `HEAD /key` says, as JSON.
#[derive(Serialize)]
pub struct KeyRecord {
    key: String,
    size: u64,
    md5: String,
    sha256: String,
    etag: String,
    /// Unix ms.
    created: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    write: Option<String>,
    /// Every volume holding a replica.
    volumes: Vec<String>,
    /// Replicas `verify` found missing or corrupt (never read from).
    damaged: Vec<String>,
    /// The replicas whose volume is healthy now.
    healthy: Vec<String>,
    /// `balanced` when the replicas are where placement puts the key.
    balance: &'static str,
    meta: Meta,
}

pub async fn key(
    State(state): State<Arc<AppState>>,
    Query(q): Query<KeyQuery>,
) -> Result<Json<KeyRecord>, ApiError> {
    let key = Key::new(&q.key)?;
    let stored = state.index.get(&key)?;
    let record = stored
        .as_ref()
        .and_then(|r| r.visible(now_ms()))
        .ok_or(ApiError::NotFound)?;
    let balanced = state.volumes.balanced(&key, record);
    Ok(Json(KeyRecord {
        key: key.as_str().to_string(),
        size: record.size,
        md5: record.md5.clone(),
        sha256: record.sha256.clone(),
        etag: record.etag().to_string(),
        created: record.created,
        expires: record.expires,
        write: record.write.clone(),
        healthy: state
            .volumes
            .held_copies(record)
            .into_iter()
            .filter(|v| state.volumes.is_healthy(v))
            .collect(),
        volumes: record.volumes.clone(),
        damaged: record.damaged.clone(),
        balance: if balanced { "balanced" } else { "unbalanced" },
        meta: record.meta.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{JobParams, JobState};

    #[test]
    fn the_page_gets_the_last_problems_and_their_count() {
        let report = |problems: Vec<String>, dropped| JobReport {
            job: JobKind::Verify,
            state: JobState::Done,
            params: JobParams::default(),
            started: 0,
            finished: Some(1),
            total: 0,
            scanned: 0,
            changed: 0,
            bytes: 0,
            skipped: 0,
            failed: 0,
            found: 0,
            problems,
            problems_dropped: dropped,
            planned: Vec::new(),
            planned_dropped: 0,
            error: None,
        };
        let many: Vec<String> = (0..25).map(|i| format!("p{i}")).collect();
        let job = UiJob::new(report(many, 7));
        assert_eq!(job.problems_total, 32);
        assert_eq!(job.report.problems.len(), PROBLEMS_SHOWN);
        assert_eq!(job.report.problems[0], "p5");
        assert_eq!(job.report.problems.last().map(String::as_str), Some("p24"));
        let few = UiJob::new(report(vec!["only".into()], 0));
        assert_eq!((few.problems_total, few.report.problems.len()), (1, 1));
    }
}
