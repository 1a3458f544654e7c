//! `trove get KEY [-o FILE|-]`

use super::{key_arg, ui, Ctx, Usage};
use std::path::PathBuf;
use trove_client::GetOptions;

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// The key.
    key: String,
    /// Where to write: a file (written beside it, renamed into place once
    /// the sha256 matched), a directory (the key's last segment inside it),
    /// or `-` for stdout (the default; a sha256 mismatch then fails at the
    /// end, after the bytes were written, and `--json`'s report goes to
    /// stderr).
    #[arg(short, long, default_value = "-")]
    output: String,
}

pub async fn run(ctx: &Ctx, args: GetArgs) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let key = key_arg(&args.key);
    if args.output == "-" {
        let report = match client
            .get_to(&key, tokio::io::stdout(), &GetOptions::default())
            .await
        {
            Ok(report) => report,
            // The reader went away (`trove get k | head -c 10`): end as a
            // command SIGPIPE ended, quietly, as for every other report.
            Err(trove_client::Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::BrokenPipe =>
            {
                std::process::exit(141)
            }
            Err(e) => return Err(e.into()),
        };
        warn_corrupt(ctx, &report);
        // Stdout carries the value: the report goes to stderr, so that
        // `trove --json get k > file` saves the value alone.
        ctx.ui.json_to_stderr(&report);
        return Ok(());
    }
    let mut path = PathBuf::from(&args.output);
    if path.is_dir() {
        match key.rsplit('/').next().filter(|name| !name.is_empty()) {
            Some(name) => path.push(name),
            None => {
                return Err(Usage(format!(
                    "{} ends in `/`, so it has no name to give a file in the directory {}: name the file (`-o {}/FILE`), or `-o -` for stdout",
                    ui::printable(&key),
                    path.display(),
                    path.display().to_string().trim_end_matches('/')
                ))
                .into())
            }
        }
    }
    // A symlink is written through, as curl and cp do: the file it points
    // to gets the value and the link stays (the temp file and the rename
    // happen beside the target, not the link).
    if path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
        if let Ok(target) = std::fs::canonicalize(&path) {
            path = target;
        } else if let Ok(target) = std::fs::read_link(&path) {
            // Dangling: the file it names is created.
            path = path.parent().map(|dir| dir.join(&target)).unwrap_or(target);
        }
    }
    let size = client.stat(&key).await?.size;
    let report = ctx
        .ui
        .with_bar(&key, Some(size), &None, |progress| async {
            let opts = GetOptions {
                progress,
                ..Default::default()
            };
            client.download(&key, &path, &opts).await
        })
        .await?;
    ctx.ui.note(&format!(
        "{} → {} ({}, sha256 verified)",
        ui::printable(&key),
        path.display(),
        ui::bytes(report.bytes)
    ));
    warn_corrupt(ctx, &report);
    ctx.ui.json(&report);
    Ok(())
}

/// A replica that served bad bytes (the value came from another).
fn warn_corrupt(ctx: &Ctx, report: &trove_client::GetReport) {
    for c in &report.corrupt {
        ctx.ui.note(&format!("warning: the replica on {c} is corrupt (served from another); run `trove-master verify --deep --repair`"));
    }
}
