//! `trove put FILE|- KEY [--ttl D]`

use super::{key_arg, ui, Ctx, Usage};
use anyhow::Context;
use std::path::Path;
use std::time::Duration;
use trove_client::{Expiry, PutOptions};
use trove_common::flags::parse_duration;

#[derive(clap::Args, Debug)]
pub struct PutArgs {
    /// The file to upload, or `-` for stdin (stdin is sent once, never
    /// retried: it cannot be read again).
    file: String,
    /// The key (`photos/a.jpg` and `/photos/a.jpg` are the same).
    key: String,
    /// Expire the key this long after the write (`90s`, `30m`, `1h`, `7d`).
    #[arg(long, env = "TROVE_TTL", value_parser = parse_duration)]
    ttl: Option<Duration>,
}

/// Options for a write with an optional TTL.
pub fn options(ttl: Option<Duration>) -> PutOptions {
    PutOptions {
        expires: ttl.map(Expiry::After),
        ..Default::default()
    }
}

pub async fn run(ctx: &Ctx, args: PutArgs) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let key = key_arg(&args.key);
    let mut opts = options(args.ttl);
    let written = if args.file == "-" {
        ctx.ui
            .with_bar(&key, None, &None, |progress| {
                opts.progress = progress;
                client.put_reader(&key, tokio::io::stdin(), None, &opts)
            })
            .await?
    } else {
        let path = Path::new(&args.file);
        let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            return Err(Usage(format!(
                "{} is a directory: use `trove cp -r {} {}`",
                args.file, args.file, key
            ))
            .into());
        }
        ctx.ui
            .with_bar(&key, Some(meta.len()), &None, |progress| {
                opts.progress = progress;
                client.put_file(&key, path, &opts)
            })
            .await?
    };
    ctx.ui.json(&written);
    ctx.ui
        .note(&format!("stored {} ({})", written.key, ui::bytes(written.size)));
    Ok(())
}
