//! `trove health`, `trove ping`, `trove status`

use super::{ui, Ctx};
use anyhow::bail;
use serde_json::json;

pub async fn health(ctx: &Ctx) -> anyhow::Result<()> {
    let h = ctx.client()?.health().await?;
    ctx.ui.json(&h);
    if !h.ready {
        // The master's reason starts "not ready: …" itself.
        let detail = h.detail.strip_prefix("not ready:").unwrap_or(&h.detail).trim();
        bail!("{} is not ready: {detail}", h.master);
    }
    ctx.ui.out(&format!("{}: {}", h.master, h.detail));
    Ok(())
}

/// Fails (exit 1) when any target did not answer.
pub async fn ping(ctx: &Ctx) -> anyhow::Result<()> {
    let pings = ctx.client()?.ping().await?;
    ctx.ui.json(&pings);
    for (i, p) in pings.iter().enumerate() {
        let what = if i == 0 { "master" } else { "volume" };
        match (&p.rtt, &p.error) {
            (Some(rtt), _) => ctx
                .ui
                .out(&format!("{what:<7} {:<28} {}", p.target, ui::millis(*rtt))),
            (None, e) => ctx.ui.out(&format!(
                "{what:<7} {:<28} DOWN: {}",
                p.target,
                e.as_deref().unwrap_or("no answer")
            )),
        }
    }
    let down = pings.iter().filter(|p| p.rtt.is_none()).count();
    if down > 0 {
        bail!("{down} of {} did not answer", pings.len());
    }
    Ok(())
}

pub async fn status(ctx: &Ctx) -> anyhow::Result<()> {
    let client = ctx.client()?;
    // Both at once, but a master that cannot be reached is reported as
    // the status's failure (what was asked for), not the jobs'.
    let (s, jobs) = tokio::join!(client.status(), client.jobs());
    let (s, jobs) = (s?, jobs?);
    ctx.ui.json(&json!({ "status": s, "jobs": jobs }));
    let opt = |v: Option<u64>, f: fn(u64) -> String| v.map(f).unwrap_or_else(|| "-".into());
    ctx.ui.out(&format!(
        "{:<24} {:<17} {:>11} {:>11} {:>9}  {}",
        "VOLUME", "HEALTH", "FREE", "USED", "BLOBS", "NOTE"
    ));
    for v in &s.volumes {
        // A volume that is down reports nothing: its figures are the last
        // it gave, which the line must not pass off as current.
        let note = match (v.healthy, v.note()) {
            (true, note) => note.to_string(),
            (false, "") => "free, used and blobs as last seen".to_string(),
            (false, note) => format!("{note} (free, used and blobs as last seen)"),
        };
        ctx.ui.out(&format!(
            "{:<24} {:<17} {:>11} {:>11} {:>9}  {}",
            v.address,
            v.health(),
            opt(v.free_bytes, ui::bytes),
            opt(v.used_bytes, ui::bytes),
            opt(v.blobs, |b| b.to_string()),
            note
        ));
    }
    let mut keys = format!(
        "keys: {} live, {} being written, {} unlinked",
        s.keys.live, s.keys.writing, s.keys.unlinked
    );
    if let Some(expired) = s.expired {
        keys.push_str(&format!(", {expired} expired since start"));
    }
    ctx.ui.out(&keys);
    ctx.ui.out(&format!(
        "{} of {} volumes healthy, {} replicas per key, index {}, master {}",
        s.healthy_volumes,
        s.volumes.len(),
        s.replicas,
        ui::bytes(s.index.disk_bytes),
        s.version
    ));
    let running: Vec<_> = jobs.iter().filter(|j| j.state == "running").collect();
    if running.is_empty() {
        ctx.ui.out("jobs: none running");
    }
    for j in running {
        ctx.ui.out(&format!(
            "job: {} running, {}/{} scanned, {} changed, {} failed",
            j.job, j.scanned, j.total, j.changed, j.failed
        ));
    }
    Ok(())
}
