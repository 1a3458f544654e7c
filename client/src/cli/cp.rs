//! `trove cp [-r] SRC DST` and `trove sync SRC DST [--delete]`: bulk
//! transfers between a local directory and a key prefix, `--jobs` at a
//! time, skipping what already matches.
//!
//! Which side is Trove: an argument written `trove:/prefix` is; otherwise,
//! a SRC that exists locally is uploaded, and any other SRC is a key or
//! prefix to download. `DIR/a/b.txt` ↔ `PREFIX/a/b.txt`.
//!
//! What matches is skipped: the same size and md5 (the local file is hashed
//! only when the sizes agree). A destination that differs:
//! - `cp` upload: refused for that file (keys are write-once); `cp`
//!   download: the local file is replaced, as `aws s3 cp` does.
//! - `sync`: replaced in both directions (a key atomically, with
//!   `Trove-Replace`: readers see the old value until the new one is
//!   stored, and a failed upload leaves the old one), and with `--delete`
//!   whatever the destination has
//!   that the source has not is removed — only after every transfer
//!   succeeded.
//!
//! A file name that cannot be a key, or a key that cannot be a path, is one
//! failed transfer, and the others still run. Downloads make directory
//! markers (keys ending in `/`) directories (see `tree.rs`).

use super::put::{options, parse_ttl};
use super::tree::{key_for, target, walk, Target};
use super::{key_arg, ui, Ctx, NotFound, Usage};
use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use indicatif::ProgressBar;
use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use trove_client::put::file_digests;
use trove_client::{Client, Expiry, GetOptions, ListOptions, PutOptions};

#[derive(clap::Args, Debug)]
pub struct CpArgs {
    /// A local file or directory, or a key or prefix (`trove:/prefix/`).
    src: String,
    /// A key or prefix, or a local file or directory.
    dst: String,
    /// Copy a whole directory or prefix.
    #[arg(short, long)]
    recursive: bool,
    #[command(flatten)]
    transfer: TransferArgs,
}

#[derive(clap::Args, Debug)]
pub struct SyncArgs {
    /// A local directory, or a prefix (`trove:/prefix/`).
    src: String,
    /// A prefix, or a local directory.
    dst: String,
    /// Also remove what the destination has and the source has not.
    #[arg(long)]
    delete: bool,
    #[command(flatten)]
    transfer: TransferArgs,
}

#[derive(clap::Args, Debug)]
pub struct TransferArgs {
    /// Transfers at once.
    #[arg(short, long, env = "TROVE_JOBS", default_value_t = 4)]
    jobs: usize,
    /// Expire uploaded keys this long after their write (`90s`, `30m`,
    /// `1h`, `7d`), or `never` (also on a master with a `--default-ttl`).
    #[arg(long, env = "TROVE_TTL", value_parser = parse_ttl)]
    ttl: Option<Expiry>,
}

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Upload,
    Download,
}

/// One file ↔ key, or (downloads) one directory marker → directory.
#[derive(Debug, Clone)]
struct Item {
    local: PathBuf,
    key: String,
    /// A key ending in `/`, made a directory if its value is empty.
    directory: bool,
}

/// Everything to transfer.
struct Plan {
    direction: Direction,
    items: Vec<Item>,
    /// Files or keys that cannot be transferred (a file name that is not
    /// UTF-8, a key that is no path): each is one failed transfer.
    refused: Vec<Refused>,
    /// The local directory and the prefix (recursive transfers).
    root: Option<(PathBuf, String)>,
}

/// A file or key that cannot be transferred, and why.
struct Refused {
    name: String,
    why: String,
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    copied: u64,
    bytes: u64,
    skipped: u64,
    failed: u64,
    deleted: u64,
    errors: Vec<String>,
    seconds: f64,
}

enum Outcome {
    Copied(u64),
    Skipped,
    Failed(String),
}

pub async fn cp(ctx: &Ctx, args: CpArgs) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let plan = plan(&client, &args.src, &args.dst, args.recursive).await?;
    let summary = transfer(ctx, &client, &plan, &args.transfer, false).await;
    finish(ctx, summary)
}

pub async fn sync(ctx: &Ctx, args: SyncArgs) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let plan = plan(&client, &args.src, &args.dst, true).await?;
    let mut summary = transfer(ctx, &client, &plan, &args.transfer, true).await;
    if args.delete {
        if summary.failed > 0 {
            ctx.ui.note("not deleting anything: some transfers failed");
        } else {
            delete_extra(ctx, &client, &plan, &mut summary).await?;
        }
    }
    finish(ctx, summary)
}

fn finish(ctx: &Ctx, s: Summary) -> anyhow::Result<()> {
    ctx.ui.json(&s);
    let rate = ui::bytes((s.bytes as f64 / s.seconds.max(0.001)) as u64);
    let mut line = format!(
        "{} copied ({}, {rate}/s), {} skipped (already there), {} failed",
        s.copied,
        ui::bytes(s.bytes),
        s.skipped,
        s.failed
    );
    if s.deleted > 0 {
        line.push_str(&format!(", {} deleted", s.deleted));
    }
    line.push_str(&format!(" in {:.1}s", s.seconds));
    ctx.ui.note(&line);
    if s.failed > 0 {
        anyhow::bail!("{} transfer(s) failed", s.failed);
    }
    Ok(())
}

/// `/prefix/` (a trailing slash, so `/a` never matches `/ab/…`).
fn prefix_arg(raw: &str) -> String {
    let mut p = key_arg(raw);
    if !p.ends_with('/') {
        p.push('/');
    }
    p
}

async fn plan(client: &Client, src: &str, dst: &str, recursive: bool) -> anyhow::Result<Plan> {
    let upload = if src.starts_with("trove:") {
        false
    } else if dst.starts_with("trove:") {
        true
    } else {
        Path::new(src).exists()
    };
    if upload {
        let local = PathBuf::from(src);
        let meta = std::fs::metadata(&local).map_err(|e| NotFound(format!("{src}: {e}")))?;
        if meta.is_dir() {
            if !recursive {
                return Err(Usage(format!("{src} is a directory: use -r")).into());
            }
            let prefix = prefix_arg(dst);
            let tree = walk(&local)?;
            let (mut items, mut refused) = (vec![], vec![]);
            for file in tree.files {
                match key_for(&prefix, &file.rel) {
                    Ok(key) => items.push(Item {
                        local: file.path,
                        key,
                        directory: false,
                    }),
                    Err(why) => refused.push(Refused {
                        name: file.path.display().to_string(),
                        why,
                    }),
                }
            }
            refused.extend(tree.unreadable.into_iter().map(|(path, why)| Refused {
                name: path.display().to_string(),
                why,
            }));
            return Ok(Plan {
                direction: Direction::Upload,
                items,
                refused,
                root: Some((local, prefix)),
            });
        }
        let name = local.file_name().and_then(|n| n.to_str()).unwrap_or("value");
        let key = if dst.ends_with('/') {
            format!("{}{name}", prefix_arg(dst))
        } else {
            key_arg(dst)
        };
        return Ok(Plan {
            direction: Direction::Upload,
            items: vec![Item {
                local,
                key,
                directory: false,
            }],
            refused: vec![],
            root: None,
        });
    }
    let dir = PathBuf::from(dst);
    if !recursive {
        let key = key_arg(src);
        let local = if dir.is_dir() || dst.ends_with('/') {
            dir.join(key.rsplit('/').next().unwrap_or("value"))
        } else {
            dir
        };
        return Ok(Plan {
            direction: Direction::Download,
            items: vec![Item {
                local,
                key,
                directory: false,
            }],
            refused: vec![],
            root: None,
        });
    }
    let prefix = prefix_arg(src);
    let keys: Vec<String> = client.list(&prefix, ListOptions::default()).try_collect().await?;
    if keys.is_empty() {
        return Err(NotFound(format!(
            "nothing to copy: no local file or directory `{src}` and no keys under {prefix}"
        ))
        .into());
    }
    let (mut items, mut refused) = (vec![], vec![]);
    for key in keys {
        match target(&dir, &key[prefix.len()..]) {
            Ok(Target::File(local)) => items.push(Item {
                local,
                key,
                directory: false,
            }),
            Ok(Target::Directory(local)) => items.push(Item {
                local,
                key,
                directory: true,
            }),
            Err(why) => refused.push(Refused { name: key, why }),
        }
    }
    Ok(Plan {
        direction: Direction::Download,
        items,
        refused,
        root: Some((dir, prefix)),
    })
}

async fn transfer(ctx: &Ctx, client: &Client, plan: &Plan, args: &TransferArgs, replace: bool) -> Summary {
    let started = Instant::now();
    let files = plan.items.len() as u64;
    let total_bytes = match plan.direction {
        Direction::Upload => plan
            .items
            .iter()
            .map(|i| std::fs::metadata(&i.local).map(|m| m.len()).unwrap_or(0))
            .sum(),
        // Learned as each key is looked up.
        Direction::Download => 0,
    };
    let total = ctx.ui.total(files, total_bytes);
    let done = AtomicU64::new(0);
    let mut s = Summary::default();
    for r in &plan.refused {
        ui::tell(&format!(
            "trove: {}: {}",
            ui::printable(&r.name),
            ui::printable(&r.why)
        ));
        s.failed += 1;
        s.errors.push(format!("{}: {}", r.name, r.why));
    }
    let put_opts = options(args.ttl);
    let outcomes: Vec<(Item, Outcome)> = futures::stream::iter(plan.items.iter().cloned())
        .map(|item| {
            let (total, done, put_opts) = (&total, &done, &put_opts);
            async move {
                let outcome = match plan.direction {
                    Direction::Upload => upload(ctx, client, &item, put_opts, total, replace).await,
                    Direction::Download => download(ctx, client, &item, total).await,
                };
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(t) = total {
                    t.set_message(format!("{n}/{files} files"));
                }
                // For people: a key's (and a file name's) control
                // characters escaped.
                let local = ui::printable(&item.local.display().to_string()).into_owned();
                let key = ui::printable(&item.key).into_owned();
                let (from, to) = match plan.direction {
                    Direction::Upload => (local, key),
                    Direction::Download => (key, local),
                };
                match &outcome {
                    Outcome::Copied(b) => ctx.ui.note(&format!("copied {from} → {to} ({})", ui::bytes(*b))),
                    Outcome::Skipped => ctx.ui.note(&format!("skipped {from} (already at {to})")),
                    Outcome::Failed(e) => ui::tell(&format!("trove: {from} → {to}: {e}")),
                }
                (item, outcome)
            }
        })
        .buffer_unordered(args.jobs.max(1))
        .collect()
        .await;
    if let Some(t) = total {
        t.finish_and_clear();
    }
    for (item, outcome) in outcomes {
        match outcome {
            Outcome::Copied(b) => {
                s.copied += 1;
                s.bytes += b;
            }
            Outcome::Skipped => s.skipped += 1,
            Outcome::Failed(e) => {
                s.failed += 1;
                s.errors.push(format!("{}: {e}", item.key));
            }
        }
    }
    s.seconds = started.elapsed().as_secs_f64();
    s
}

/// Whether the local file at `path` hashes to `md5` (hex); its md5 either way.
async fn local_matches(
    path: &Path,
    md5: &str,
    total: &Option<ProgressBar>,
) -> anyhow::Result<(bool, [u8; 16])> {
    let local = file_digests(path).await?;
    let md5_local = local.md5.expect("md5 computed");
    let same = hex::encode(md5_local) == md5;
    if let (true, Some(t)) = (same, total) {
        t.inc(local.size);
    }
    Ok((same, md5_local))
}

async fn upload(
    ctx: &Ctx,
    client: &Client,
    item: &Item,
    opts: &PutOptions,
    total: &Option<ProgressBar>,
    replace: bool,
) -> Outcome {
    let result: anyhow::Result<Outcome> = async {
        let size = std::fs::metadata(&item.local)
            .with_context(|| format!("cannot read {}", item.local.display()))?
            .len();
        let mut md5 = None;
        match client.stat(&item.key).await {
            Ok(s) => {
                if s.size == size {
                    let (same, local) = local_matches(&item.local, &s.md5, total).await?;
                    if same {
                        return Ok(Outcome::Skipped);
                    }
                    md5 = Some(local);
                }
                if !replace {
                    anyhow::bail!("the key exists with different content (keys are write-once): `trove rm` it first, or use `trove sync`");
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        let written = ctx
            .ui
            .with_bar(&item.key, Some(size), total, |progress| async move {
                let opts = PutOptions {
                    content_md5: md5,
                    progress,
                    replace,
                    ..opts.clone()
                };
                client.put_file(&item.key, &item.local, &opts).await
            })
            .await;
        match written {
            Ok(written) => Ok(Outcome::Copied(written.size)),
            // Another writer stored the key since the look above (two
            // copies of one tree at once): what matches is skipped.
            Err(e @ trove_client::Error::Exists { .. }) => match client.stat(&item.key).await {
                Ok(s) if s.size == size && local_matches(&item.local, &s.md5, &None).await?.0 => {
                    Ok(Outcome::Skipped)
                }
                _ => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        }
    }
    .await;
    result.unwrap_or_else(|e| Outcome::Failed(ui::error_text(&e)))
}

async fn download(ctx: &Ctx, client: &Client, item: &Item, total: &Option<ProgressBar>) -> Outcome {
    let result: anyhow::Result<Outcome> = async {
        let stat = client.stat(&item.key).await?;
        if item.directory {
            return download_marker(item, stat.size).await;
        }
        if let Some(t) = total {
            t.inc_length(stat.size);
        }
        // A FIFO (or a device) where a file of the tree belongs: writing
        // into it could wait for a reader for ever, and replacing it is
        // not a copy's business.
        if std::fs::metadata(&item.local).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
            anyhow::bail!(
                "{} is not a regular file (a FIFO, socket or device): remove it, or read the key alone with `trove get -o`",
                item.local.display()
            );
        }
        if std::fs::metadata(&item.local).is_ok_and(|m| m.is_file() && m.len() == stat.size)
            && local_matches(&item.local, &stat.md5, total).await?.0
        {
            return Ok(Outcome::Skipped);
        }
        if let Some(parent) = item.local.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent)
                .await
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let report = ctx
            .ui
            .with_bar(&item.key, Some(stat.size), total, |progress| async move {
                let opts = GetOptions {
                    progress,
                    ..Default::default()
                };
                client.download(&item.key, &item.local, &opts).await
            })
            .await?;
        Ok(Outcome::Copied(report.bytes))
    }
    .await;
    result.unwrap_or_else(|e| Outcome::Failed(ui::error_text(&e)))
}

/// Downloads a directory marker whose value has `size` bytes: an empty
/// one is made the directory it names; one with bytes cannot be a file
/// (its key ends in `/`), and fails.
async fn download_marker(item: &Item, size: u64) -> anyhow::Result<Outcome> {
    if size > 0 {
        anyhow::bail!(
            "it holds {}, but a key ending in `/` can only be a directory here: \
             read it alone with `trove get {} -o FILE`",
            ui::bytes(size),
            item.key
        );
    }
    if item.local.is_dir() {
        return Ok(Outcome::Skipped);
    }
    tokio::fs::create_dir_all(&item.local)
        .await
        .with_context(|| format!("cannot create the directory {}", item.local.display()))?;
    Ok(Outcome::Copied(0))
}

/// `sync --delete`: removes what the destination has beyond the plan.
/// Directories are never removed; a directory marker stays while its
/// directory exists under DIR (the prefix's own, an S3 bucket's, always):
/// uploads carry files only, so no marker is in the plan.
async fn delete_extra(ctx: &Ctx, client: &Client, plan: &Plan, summary: &mut Summary) -> anyhow::Result<()> {
    let Some((dir, prefix)) = &plan.root else {
        return Ok(());
    };
    match plan.direction {
        Direction::Upload => {
            let wanted: HashSet<&str> = plan.items.iter().map(|i| i.key.as_str()).collect();
            let existing: Vec<String> = client.list(prefix, ListOptions::default()).try_collect().await?;
            let kept_marker = |key: &str| matches!(target(dir, &key[prefix.len()..]), Ok(Target::Directory(d)) if d.is_dir());
            for key in existing
                .into_iter()
                .filter(|k| !wanted.contains(k.as_str()) && !kept_marker(k))
            {
                client.delete(&key).await?;
                ctx.ui.note(&format!("deleted {key} (not in {})", dir.display()));
                summary.deleted += 1;
            }
        }
        Direction::Download => {
            let wanted: HashSet<&Path> = plan.items.iter().map(|i| i.local.as_path()).collect();
            let tree = walk(dir)?;
            for (path, why) in &tree.unreadable {
                ctx.ui.note(&format!("left {} as it is: {why}", path.display()));
            }
            for path in tree.files.into_iter().map(|f| f.path) {
                if !wanted.contains(path.as_path()) {
                    std::fs::remove_file(&path)
                        .with_context(|| format!("cannot delete {}", path.display()))?;
                    ctx.ui
                        .note(&format!("deleted {} (not under {prefix})", path.display()));
                    summary.deleted += 1;
                }
            }
        }
    }
    Ok(())
}
