//! `trove rm KEY…` and `trove unlink KEY`

use super::{key_arg, Ctx};
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// The keys to delete.
    #[arg(required = true)]
    keys: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct UnlinkArgs {
    /// The key to unlink.
    key: String,
}

/// Deletes every key, going on after a failure; the exit code is that of
/// the first failure (3 when it was a missing key).
pub async fn rm(ctx: &Ctx, args: RmArgs) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let mut first_error = None;
    let mut results = vec![];
    for raw in &args.keys {
        let key = key_arg(raw);
        match client.delete(&key).await {
            Ok(()) => {
                ctx.ui.note(&format!("deleted {key}"));
                results.push(json!({"key": key, "deleted": true}));
            }
            Err(e) => {
                results.push(json!({"key": key, "deleted": false, "error": e.to_string()}));
                if args.keys.len() > 1 {
                    eprintln!("trove: {e}");
                }
                first_error.get_or_insert(e);
            }
        }
    }
    ctx.ui.json(&results);
    let failed = results.iter().filter(|r| r["deleted"] == false).count();
    match first_error {
        None => Ok(()),
        Some(e) if args.keys.len() == 1 => Err(e.into()),
        // Each failure was printed; the chain keeps the first for the exit code.
        Some(e) => Err(anyhow::Error::new(e).context(format!(
            "{failed} of {} keys were not deleted; the first failure",
            args.keys.len()
        ))),
    }
}

pub async fn unlink(ctx: &Ctx, args: UnlinkArgs) -> anyhow::Result<()> {
    let key = key_arg(&args.key);
    ctx.client()?.unlink(&key).await?;
    ctx.ui
        .note(&format!("unlinked {key} (its bytes stay until `trove rm`)"));
    ctx.ui.json(&json!({"key": key, "unlinked": true}));
    Ok(())
}
