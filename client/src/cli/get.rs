//! `trove get KEY [-o FILE|-]`

use super::{key_arg, ui, Ctx};
use std::path::PathBuf;
use trove_client::GetOptions;

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// The key.
    key: String,
    /// Where to write: a file (written beside it, renamed into place once
    /// the sha256 matched), a directory (the key's last segment inside it),
    /// or `-` for stdout (the default; a sha256 mismatch then fails at the
    /// end, after the bytes were written).
    #[arg(short, long, default_value = "-")]
    output: String,
}

pub async fn run(ctx: &Ctx, args: GetArgs) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let key = key_arg(&args.key);
    let report = if args.output == "-" {
        client
            .get_to(&key, tokio::io::stdout(), &GetOptions::default())
            .await?
    } else {
        let mut path = PathBuf::from(&args.output);
        if path.is_dir() {
            path.push(key.rsplit('/').next().unwrap_or("value"));
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
            key,
            path.display(),
            ui::bytes(report.bytes)
        ));
        report
    };
    for c in &report.corrupt {
        ctx.ui.note(&format!("warning: the replica on {c} is corrupt (served from another); run `trove-master verify --deep --repair`"));
    }
    ctx.ui.json(&report);
    Ok(())
}
