//! `trove rm KEY…` and `trove unlink KEY`

use super::{key_arg, ui, Ctx, NotFound};
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

/// Deletes every key, going on after a failure. With several keys each
/// failure is said as it comes, and the command ends with how many failed
/// (each said once); the exit code is 3 when every failure was a missing
/// key, 1 when any was something else (a server error is not hidden
/// behind a "not found").
pub async fn rm(ctx: &Ctx, args: RmArgs) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let mut errors = vec![];
    let mut results = vec![];
    for raw in &args.keys {
        let key = key_arg(raw);
        match client.delete(&key).await {
            Ok(()) => {
                ctx.ui.note(&format!("deleted {}", ui::printable(&key)));
                results.push(json!({"key": key, "deleted": true}));
            }
            Err(e) => {
                results.push(json!({"key": key, "deleted": false, "error": e.to_string()}));
                if args.keys.len() > 1 {
                    ui::tell(&format!("trove: {}", ui::printable(&e.to_string())));
                }
                errors.push(e);
            }
        }
    }
    ctx.ui.json(&results);
    if errors.is_empty() {
        return Ok(());
    }
    if args.keys.len() == 1 {
        return Err(errors.remove(0).into());
    }
    let summary = format!(
        "{} of {} keys were not deleted (each is named above)",
        errors.len(),
        args.keys.len()
    );
    if errors.iter().all(|e| e.is_not_found()) {
        Err(NotFound(summary).into())
    } else {
        Err(anyhow::anyhow!(summary))
    }
}

pub async fn unlink(ctx: &Ctx, args: UnlinkArgs) -> anyhow::Result<()> {
    let key = key_arg(&args.key);
    ctx.client()?.unlink(&key).await?;
    ctx.ui.note(&format!(
        "unlinked {} (its bytes stay until `trove rm`)",
        ui::printable(&key)
    ));
    ctx.ui.json(&json!({"key": key, "unlinked": true}));
    Ok(())
}
