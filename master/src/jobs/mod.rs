//! Admin jobs that run inside the live master: `rebalance`, `verify`, `gc`.
//!
//! A job is started with `POST /-/<job>` (parameters as a JSON body), runs
//! as a background task, reports its progress at `GET /-/<job>`, and is
//! stopped by `DELETE /-/<job>`. At most one of each kind runs at a time.
//! Every job is idempotent: it works key by key, under the key's lock, and
//! re-checks the record under that lock before acting, so stopping it at
//! any point and running it again is safe, and it never races a client's
//! write or delete of the same key.

pub mod gc;
pub mod rebalance;
pub mod verify;

use crate::AppState;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use trove_common::key::Key;
use trove_common::record::{now_ms, Record};

/// Records fetched from the index per page while a job walks it.
pub const PAGE: usize = 1000;
/// Lines of each kind ([`Progress::problem`], [`Progress::would`]) kept
/// in a report; more are counted, not kept.
const MAX_NOTES: usize = 1000;

/// The kinds of job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Rebalance,
    Verify,
    Gc,
}

impl JobKind {
    /// Every kind, in the order the status page shows them.
    pub const ALL: [JobKind; 3] = [JobKind::Rebalance, JobKind::Verify, JobKind::Gc];

    pub fn parse(name: &str) -> Option<JobKind> {
        match name {
            "rebalance" => Some(JobKind::Rebalance),
            "verify" => Some(JobKind::Verify),
            "gc" => Some(JobKind::Gc),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            JobKind::Rebalance => "rebalance",
            JobKind::Verify => "verify",
            JobKind::Gc => "gc",
        }
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    Done,
    Cancelled,
    Failed,
}

/// Parameters any job may take (each job reads the ones it knows).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobParams {
    /// Keys worked on at once (default 4).
    pub concurrency: Option<usize>,
    /// rebalance, gc: count what would change, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// verify: have the volumes re-hash every replica.
    #[serde(default)]
    pub deep: bool,
    /// verify: re-copy missing or corrupt replicas from a good one.
    #[serde(default)]
    pub repair: bool,
    /// gc: only blobs older than this many seconds are removed (default 3600).
    pub grace_secs: Option<u64>,
    /// At most this many keys acted on a second (verify: checked;
    /// rebalance: moved; gc: cleared or collected), however many run at
    /// once: a job that leaves the disks and the network to the traffic.
    /// Absent or 0: as fast as `concurrency` allows.
    pub rate: Option<u32>,
}

impl JobParams {
    pub fn concurrency(&self) -> usize {
        self.concurrency.unwrap_or(4).clamp(1, 256)
    }

    /// The pacing [`JobParams::rate`] asks for.
    pub fn pace(&self) -> Pace {
        Pace::new(self.rate)
    }

    /// Items taken from the volumes' listings at a time: about a second's
    /// worth when paced, so that no volume drops a listing left unread
    /// while the items wait for their turn; at most [`READ_AHEAD`].
    pub fn read_ahead(&self) -> usize {
        self.rate
            .filter(|r| *r > 0)
            .map_or(READ_AHEAD, |r| (r as usize).min(READ_AHEAD))
    }
}

/// The most items a job takes from a listing before working on them.
const READ_AHEAD: usize = 1024;

/// How often a paced item waiting for its turn looks whether the job was
/// cancelled.
const CANCEL_CHECK: Duration = Duration::from_millis(100);

/// Spaces a job's items out to at most `rate` a second, however many run
/// at once ([`JobParams::rate`]). No credit builds up while the job is
/// held up elsewhere (a slow volume): the next item waits a whole
/// interval after the last one, or goes at once.
pub struct Pace {
    interval: Option<Duration>,
    next: Mutex<Instant>,
}

impl Pace {
    pub fn new(rate: Option<u32>) -> Pace {
        Pace {
            // Rounded up, so that the rate is never exceeded.
            interval: rate
                .filter(|r| *r > 0)
                .map(|r| Duration::from_nanos(1_000_000_000u64.div_ceil(u64::from(r)))),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for the next item's turn; `false` when the job was cancelled
    /// (then or while waiting): the item is not to be started.
    pub async fn turn(&self, progress: &Progress) -> bool {
        if let Some(interval) = self.interval {
            let at = {
                let mut next = self.next.lock();
                let at = (*next).max(Instant::now());
                *next = at + interval;
                at
            };
            while Instant::now() < at && !progress.cancelled() {
                tokio::time::sleep_until(at.min(Instant::now() + CANCEL_CHECK)).await;
            }
        }
        !progress.cancelled()
    }
}

/// Live counters of a running job, shared with its task.
#[derive(Default)]
pub struct Progress {
    /// Items (keys, or blobs for gc) the job expects to look at.
    pub total: AtomicU64,
    /// Items looked at so far.
    pub scanned: AtomicU64,
    /// Items changed (moved, repaired, deleted) — or that would be, in a dry run.
    pub changed: AtomicU64,
    /// Bytes copied or freed (or that would be).
    pub bytes: AtomicU64,
    /// Items left alone for now (busy key, volume down): a later run retries.
    pub skipped: AtomicU64,
    /// Items the job failed to handle.
    pub failed: AtomicU64,
    /// Problems found, whether fixed or not: verify's bad replicas, gc's
    /// dead writes (records of writes the master died in).
    pub found: AtomicU64,
    problems: Notes,
    /// What a dry run would do, item by item.
    planned: Notes,
    cancel: AtomicBool,
}

/// Lines for the operator, the first [`MAX_NOTES`] kept, the rest counted.
#[derive(Default)]
struct Notes {
    kept: Mutex<Vec<String>>,
    dropped: AtomicU64,
}

impl Notes {
    fn push(&self, line: String) {
        let mut kept = self.kept.lock();
        if kept.len() < MAX_NOTES {
            kept.push(line);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Progress {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Notes something an operator should read (kept up to a limit).
    pub fn problem(&self, message: String) {
        tracing::warn!(problem = %message, "admin job");
        self.problems.push(message);
    }

    /// Notes what a dry run would do to one item (`would delete …`), for
    /// the operator to read before the real run.
    pub fn would(&self, line: String) {
        tracing::debug!(plan = %line, "admin job dry run");
        self.planned.push(line);
    }

    /// Notes the job's closing word to the operator: what to do about the
    /// problems before it. Kept past the limit on problems, since it
    /// speaks for the ones dropped too.
    pub fn conclude(&self, message: String) {
        tracing::warn!(problem = %message, "admin job");
        self.problems.kept.lock().push(message);
    }

    /// Whether the job was asked to stop.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// What `GET /-/<job>` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobReport {
    pub job: JobKind,
    pub state: JobState,
    pub params: JobParams,
    /// Unix ms.
    pub started: u64,
    pub finished: Option<u64>,
    pub total: u64,
    pub scanned: u64,
    pub changed: u64,
    pub bytes: u64,
    pub skipped: u64,
    pub failed: u64,
    pub found: u64,
    pub problems: Vec<String>,
    pub problems_dropped: u64,
    /// A dry run's plan, one line per item it would change (the first
    /// 1,000; `planned_dropped` counts the rest).
    #[serde(default)]
    pub planned: Vec<String>,
    #[serde(default)]
    pub planned_dropped: u64,
    /// Why the job stopped, when it failed.
    pub error: Option<String>,
}

struct Run {
    params: JobParams,
    started: u64,
    progress: Arc<Progress>,
    outcome: Mutex<Option<(JobState, u64, Option<String>)>>,
}

impl Run {
    fn report(&self, job: JobKind) -> JobReport {
        let p = &self.progress;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let outcome = self.outcome.lock().clone();
        let (state, finished, error) = match outcome {
            Some((s, at, e)) => (s, Some(at), e),
            None => (JobState::Running, None, None),
        };
        JobReport {
            job,
            state,
            params: self.params.clone(),
            started: self.started,
            finished,
            total: get(&p.total),
            scanned: get(&p.scanned),
            changed: get(&p.changed),
            bytes: get(&p.bytes),
            skipped: get(&p.skipped),
            failed: get(&p.failed),
            found: get(&p.found),
            problems: p.problems.kept.lock().clone(),
            problems_dropped: get(&p.problems.dropped),
            planned: p.planned.kept.lock().clone(),
            planned_dropped: get(&p.planned.dropped),
            error,
        }
    }
}

/// The last run of each kind of job.
#[derive(Default)]
pub struct Jobs {
    runs: Mutex<HashMap<JobKind, Arc<Run>>>,
}

/// A start refused because the same job is running.
#[derive(Debug, thiserror::Error)]
#[error("a {0} is already running (GET /-/{0} shows its progress, DELETE /-/{0} stops it)")]
pub struct AlreadyRunning(pub &'static str);

impl Jobs {
    /// Starts `kind` unless it is running.
    pub fn start(
        &self,
        state: Arc<AppState>,
        kind: JobKind,
        params: JobParams,
    ) -> Result<JobReport, AlreadyRunning> {
        let mut runs = self.runs.lock();
        if let Some(run) = runs.get(&kind) {
            if run.outcome.lock().is_none() {
                return Err(AlreadyRunning(kind.name()));
            }
        }
        let run = Arc::new(Run {
            params: params.clone(),
            started: now_ms(),
            progress: Arc::default(),
            outcome: Mutex::new(None),
        });
        runs.insert(kind, Arc::clone(&run));
        tracing::info!(job = kind.name(), ?params, "job started");
        let task_run = Arc::clone(&run);
        tokio::spawn(async move {
            let progress = Arc::clone(&task_run.progress);
            // The job runs in a task of its own, so that even a panic ends
            // it as failed (instead of leaving it "running" for ever).
            let job = tokio::spawn(async move {
                match kind {
                    JobKind::Rebalance => rebalance::run(state, params, progress).await,
                    JobKind::Verify => verify::run(state, params, progress).await,
                    JobKind::Gc => gc::run(state, params, progress).await,
                }
            });
            let result = job
                .await
                .unwrap_or_else(|e| Err(anyhow::anyhow!("the job stopped unexpectedly: {e}")));
            // Decided under the outcome's lock, which `cancel` also holds
            // while it raises the flag: a stop that was accepted (`202`)
            // always reports `cancelled`.
            let state = {
                let mut slot = task_run.outcome.lock();
                let (state, error) = match result {
                    Ok(()) if task_run.progress.cancelled() => (JobState::Cancelled, None),
                    Ok(()) => (JobState::Done, None),
                    Err(e) => (JobState::Failed, Some(format!("{e:#}"))),
                };
                *slot = Some((state, now_ms(), error));
                state
            };
            let report = task_run.report(kind);
            tracing::info!(
                job = kind.name(),
                state = ?state,
                scanned = report.scanned,
                changed = report.changed,
                failed = report.failed,
                "job finished"
            );
        });
        Ok(run.report(kind))
    }

    /// The running or last run of `kind`.
    pub fn report(&self, kind: JobKind) -> Option<JobReport> {
        let runs = self.runs.lock();
        runs.get(&kind).map(|r| r.report(kind))
    }

    /// Asks a running job to stop after the keys in hand; `false` if none runs.
    pub fn cancel(&self, kind: JobKind) -> bool {
        let runs = self.runs.lock();
        let Some(run) = runs.get(&kind) else {
            return false;
        };
        // The flag is raised under the outcome's lock, so the job cannot
        // settle on `done` in between (see `start`).
        let outcome = run.outcome.lock();
        if outcome.is_some() {
            return false;
        }
        run.progress.cancel.store(true, Ordering::Relaxed);
        true
    }
}

/// Walks every record of the index in pages, calling `f` on up to
/// `concurrency` of them at once, until done or cancelled.
pub async fn for_each_record<F, Fut>(
    state: &AppState,
    progress: &Progress,
    concurrency: usize,
    f: F,
) -> anyhow::Result<()>
where
    F: Fn(Key, Record) -> Fut,
    Fut: Future<Output = ()>,
{
    use futures::StreamExt;
    let mut pages = Pages::default();
    while let Some(page) = pages.next(state, progress).await? {
        // Stop taking keys as soon as the job is cancelled; keys in hand
        // finish.
        futures::stream::iter(page)
            .take_while(|_| futures::future::ready(!progress.cancelled()))
            .for_each_concurrent(concurrency, |(key, record)| f(key, record))
            .await;
    }
    Ok(())
}

/// The index in pages of [`PAGE`] records, in key order, holding no
/// iterator (and no snapshot) between pages.
#[derive(Default)]
pub struct Pages {
    after: Option<String>,
}

impl Pages {
    /// The next page; `None` at the end, or once the job is cancelled.
    pub async fn next(
        &mut self,
        state: &AppState,
        progress: &Progress,
    ) -> anyhow::Result<Option<Vec<(Key, Record)>>> {
        if progress.cancelled() {
            return Ok(None);
        }
        let page = state.index.scan(self.after.clone(), PAGE).await?;
        let Some((last, _)) = page.last() else {
            return Ok(None);
        };
        self.after = Some(last.as_str().to_string());
        Ok(Some(page))
    }
}
