//! The client side of the admin jobs: `trove-master rebalance|verify|gc`
//! asks the running master to start the job, then follows it — a progress
//! bar with counts, bytes and rate on a terminal, a log line every few
//! seconds otherwise — and prints the outcome. Ctrl-C stops the job (it is
//! safe to run again).

use crate::jobs::{JobKind, JobParams, JobReport, JobState};
use anyhow::{bail, Context};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often the job's progress is fetched.
const POLL: Duration = Duration::from_millis(250);
/// How often progress is logged when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// What the job does to an item, for messages.
fn verb(kind: JobKind, dry_run: bool) -> &'static str {
    match (kind, dry_run) {
        (JobKind::Rebalance, false) => "moved",
        (JobKind::Rebalance, true) => "would move",
        (JobKind::Verify, _) => "repaired",
        (JobKind::Gc, false) => "deleted",
        (JobKind::Gc, true) => "would delete",
    }
}

fn unit(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Gc => "blobs",
        _ => "keys",
    }
}

/// One line of counts.
pub fn summary(r: &JobReport, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let mut line = format!(
        "{} {}: {} {} scanned, {} {} ({}), {} skipped, {} failed",
        r.job.name(),
        match r.state {
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Cancelled => "stopped",
            JobState::Failed => "failed",
        },
        r.scanned,
        unit(r.job),
        r.changed,
        verb(r.job, r.params.dry_run),
        // A rate only for bytes that moved: a dry run's are what would.
        if r.params.dry_run || r.bytes == 0 {
            HumanBytes(r.bytes).to_string()
        } else {
            format!(
                "{}, {}/s",
                HumanBytes(r.bytes),
                HumanBytes((r.bytes as f64 / secs) as u64)
            )
        },
        r.skipped,
        r.failed,
    );
    match r.job {
        JobKind::Verify => line.push_str(&format!(", {} bad replica(s) found", r.found)),
        JobKind::Gc if r.found > 0 => line.push_str(&format!(
            ", {} dead write(s) {}",
            r.found,
            if r.params.dry_run { "to undo" } else { "undone" }
        )),
        _ => {}
    }
    line
}

/// Whether the server at `master` answers `GET /-/status` as a master
/// does (JSON with its `volumes`). No answer counts as a master: this only
/// refines an error already there.
async fn answers_as_master(http: &reqwest::Client, master: &str) -> bool {
    let url = format!("{}/-/status", master.trim_end_matches('/'));
    let answer = http.get(&url).timeout(Duration::from_secs(5)).send().await;
    match answer {
        Ok(resp) => resp
            .json::<serde_json::Value>()
            .await
            .is_ok_and(|v| v["volumes"].is_array()),
        Err(_) => true,
    }
}

/// The longest wait for the master's answer about a running job.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts `kind` on the master at `master` and follows it to the end.
pub async fn run_job(master: &str, kind: JobKind, params: JobParams) -> anyhow::Result<JobReport> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    let url = format!("{}/-/{}", master.trim_end_matches('/'), kind.name());
    // Watched from before the job starts: a Ctrl-C or a SIGTERM (a service
    // manager, `timeout`, `kill`) stops the job rather than leaving it
    // running unwatched; a second one gives up at once.
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch for Ctrl-C")?;
    let mut term = signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?;
    let resp = http
        .post(&url)
        .json(&params)
        .send()
        .await
        .with_context(|| format!("cannot reach the master at {master}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        // A volume's address given as the master's: it refuses the job's
        // path as a key (`400`) or its method (`405`).
        if matches!(status.as_u16(), 400 | 405) && !answers_as_master(&http, master).await {
            bail!(
                "the server at {master} does not answer as a Trove master (is it a volume? the master's address is needed, port 3000 by default)"
            );
        }
        bail!(
            "the master refused: {status}: {}",
            resp.text().await.unwrap_or_default().trim()
        );
    }
    let mut report: JobReport = resp.json().await.context("unexpected answer from the master")?;
    let started = Instant::now();
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(report.total);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
                .expect("valid template"),
        );
        bar.set_prefix(kind.name());
        bar
    });
    let mut last_log = Instant::now();
    let mut stopping = false;
    while report.state == JobState::Running {
        let signalled = tokio::select! {
            _ = interrupt.recv() => Some("interrupted"),
            _ = term.recv() => Some("terminated"),
            _ = tokio::time::sleep(POLL) => None,
        };
        if let Some(how) = signalled {
            if stopping {
                eprintln!("{how} again: not waiting for the {} to stop", kind.name());
                std::process::exit(130);
            }
            stopping = true;
            eprintln!("{how}: stopping the {} (safe to run again later)…", kind.name());
            let _ = http.delete(&url).timeout(PROGRESS_TIMEOUT).send().await;
        }
        report = http
            .get(&url)
            .timeout(PROGRESS_TIMEOUT)
            .send()
            .await
            .with_context(|| {
                format!(
                    "lost the master at {master} while following the {}: if the master stopped, the job stopped with it; run it again once the master answers (it is safe to)",
                    kind.name()
                )
            })?
            .json()
            .await
            .context("unexpected answer from the master")?;
        let secs = started.elapsed().as_secs_f64().max(0.001);
        match &bar {
            Some(bar) => {
                bar.set_length(report.total.max(report.scanned));
                bar.set_position(report.scanned);
                bar.set_message(format!(
                    "{} · {} {} · {} ({}/s) · {} failed",
                    unit(kind),
                    report.changed,
                    verb(kind, report.params.dry_run),
                    HumanBytes(report.bytes),
                    HumanBytes((report.bytes as f64 / secs) as u64),
                    report.failed
                ));
            }
            None if last_log.elapsed() >= LOG_EVERY => {
                last_log = Instant::now();
                eprintln!("{}", summary(&report, started.elapsed()));
            }
            None => {}
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(report)
}
