//! `trove ls [PREFIX] [-l] [--unlinked]` and `trove stat KEY`

use super::{key_arg, ui, Ctx};
use futures::{StreamExt, TryStreamExt};
use trove_client::{ListOptions, ObjectInfo, Stat};

/// `HEAD`s in flight for `ls -l`.
const STAT_CONCURRENCY: usize = 16;

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// Keys starting with this (default: all).
    #[arg(default_value = "/")]
    prefix: String,
    /// Long form: size, created, replicas, key (for unlinked keys: size,
    /// created, `unlinked`, key).
    #[arg(short, long)]
    long: bool,
    /// Unlinked keys instead of live ones.
    #[arg(long)]
    unlinked: bool,
}

#[derive(clap::Args, Debug)]
pub struct StatArgs {
    /// The key.
    key: String,
}

pub async fn ls(ctx: &Ctx, args: LsArgs) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let prefix = key_arg(&args.prefix);
    let opts = ListOptions {
        unlinked: args.unlinked,
        ..Default::default()
    };
    if args.long && args.unlinked {
        // A `HEAD` answers an unlinked key as absent: its size and dates
        // come from a detail listing instead (which names no replicas).
        let mut objects = client.list_objects(&prefix, opts);
        let mut all = vec![];
        while let Some(o) = objects.try_next().await? {
            ctx.ui.out(&unlinked_line(&o));
            if ctx.ui.json {
                all.push(o);
            }
        }
        ctx.ui.json(&all);
        return Ok(());
    }
    let keys = client.list(&prefix, opts);
    if !args.long {
        // One key per line as the pages arrive, control characters
        // escaped (`\n`, `\x1b`); JSON: one array at the end, exact.
        let mut all = vec![];
        let mut keys = keys;
        while let Some(key) = keys.try_next().await? {
            ctx.ui.out(&ui::printable(&key));
            if ctx.ui.json {
                all.push(key);
            }
        }
        ctx.ui.json(&all);
        return Ok(());
    }
    let mut stats = keys
        .map(|k| {
            let client = client.clone();
            async move {
                let k = k?;
                match client.stat(&k).await {
                    Ok(s) => Ok(Some(s)),
                    // Deleted between the listing and the HEAD: not there.
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(e),
                }
            }
        })
        .buffered(STAT_CONCURRENCY);
    let mut all = vec![];
    while let Some(stat) = stats.try_next().await? {
        let Some(stat) = stat else { continue };
        ctx.ui.out(&long_line(&stat));
        if ctx.ui.json {
            all.push(stat);
        }
    }
    ctx.ui.json(&all);
    Ok(())
}

/// `  1.5 MiB  2026-11-22T08:52:09Z  2 replicas  /key`
fn long_line(s: &Stat) -> String {
    let replicas = format!(
        "{} replica{}",
        s.volumes.len(),
        if s.volumes.len() == 1 { "" } else { "s" }
    );
    columns(s.size, s.created, &replicas, &ui::printable(&s.key))
}

/// `  1.5 MiB  2026-11-22T08:52:09Z  unlinked  /key`
fn unlinked_line(o: &ObjectInfo) -> String {
    columns(o.size, Some(o.created), "unlinked", &ui::printable(&o.key))
}

/// One line of `ls -l`: size, created (Unix ms), what the key is, key
/// (its control characters escaped).
fn columns(size: u64, created: Option<u64>, what: &str, key: &str) -> String {
    format!(
        "{:>11}  {:<20}  {what}  {key}",
        ui::bytes(size),
        created.map(ui::time).unwrap_or_else(|| "-".into()),
    )
}

pub async fn stat(ctx: &Ctx, args: StatArgs) -> anyhow::Result<()> {
    let s = ctx.client()?.stat(&key_arg(&args.key)).await?;
    ctx.ui.json(&s);
    let mut lines = vec![
        format!("key       {}", ui::printable(&s.key)),
        format!("size      {} ({})", s.size, ui::bytes(s.size)),
        format!("md5       {}", s.md5),
        format!("sha256    {}", s.sha256),
    ];
    if let Some(c) = s.created {
        lines.push(format!("created   {}", ui::time(c)));
    }
    lines.push(format!(
        "expires   {}",
        s.expires.map(ui::time).unwrap_or_else(|| "never".into())
    ));
    lines.push(format!(
        "replicas  {} ({})",
        s.volumes.join(", "),
        if s.balanced {
            "balanced"
        } else {
            "unbalanced: `trove-master rebalance` moves it home"
        }
    ));
    for l in lines {
        ctx.ui.out(&l);
    }
    Ok(())
}
