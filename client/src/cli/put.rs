//! `trove put FILE|- KEY [--ttl D]`

use super::{key_arg, ui, Ctx, Usage};
use anyhow::Context;
use std::path::Path;
use std::time::Duration;
use trove_client::{Client, Expiry, PutOptions, Written};
use trove_common::flags::parse_duration;

#[derive(clap::Args, Debug)]
pub struct PutArgs {
    /// The file to upload, or `-` for stdin (stdin is sent once, never
    /// retried: it cannot be read again).
    file: String,
    /// The key (`photos/a.jpg` and `/photos/a.jpg` are the same); one
    /// ending in `/` gets the file's name (`trove put a.jpg photos/` stores
    /// `/photos/a.jpg`; from stdin it is the key as given).
    key: String,
    /// Expire the key this long after the write (`90s`, `30m`, `1h`, `7d`),
    /// or `never` (also on a master with a `--default-ttl`). Without it,
    /// the master's default applies.
    #[arg(long, env = "TROVE_TTL", value_parser = parse_ttl)]
    ttl: Option<Expiry>,
}

/// `--ttl`: a duration or `never`. A TTL under a millisecond (the master's
/// resolution) is refused here, not rounded up: a key that expires as it
/// is written is never what was meant, and `stored` would be a lie.
pub fn parse_ttl(raw: &str) -> Result<Expiry, String> {
    if raw.trim().eq_ignore_ascii_case("never") {
        return Ok(Expiry::Never);
    }
    let ttl = parse_duration(raw).map_err(|e| format!("{e}, or `never`"))?;
    if ttl < Duration::from_millis(1) {
        return Err(format!(
            "a TTL of `{raw}` would expire the key as it is written: give a duration \
             such as 1h or 7d, `never` for a key that never expires, or no --ttl for \
             the master's default"
        ));
    }
    Ok(Expiry::After(ttl))
}

/// Options for the CLI's writes, with an optional expiry. Empty values
/// are allowed: a file or stdin with nothing in it is stored as it is
/// (`.keep`, `__init__.py`), where the master would otherwise answer `411`.
pub fn options(expires: Option<Expiry>) -> PutOptions {
    PutOptions {
        expires,
        allow_empty: true,
        ..Default::default()
    }
}

pub async fn run(ctx: &Ctx, args: PutArgs) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let key = key_arg(&args.key);
    let written = match put(ctx, &client, &key, &args).await {
        Ok(written) => written,
        Err(e) => {
            // A replica failed mid-write (a volume died): nothing was
            // stored, and a new attempt goes to the volumes healthy then.
            if let Some(trove_client::Error::Server {
                status: 502 | 504, ..
            }) = e.downcast_ref()
            {
                let said = ui::error_text(&e);
                anyhow::bail!("{said}; nothing was stored: run the command again");
            }
            return Err(e);
        }
    };
    ctx.ui.json(&written);
    ctx.ui.note(&format!(
        "stored {} ({})",
        ui::printable(&written.key),
        ui::bytes(written.size)
    ));
    Ok(())
}

/// Writes the file, or stdin (`-`), under `key`.
async fn put(ctx: &Ctx, client: &Client, key: &str, args: &PutArgs) -> anyhow::Result<Written> {
    let mut opts = options(args.ttl);
    if args.file == "-" {
        let written = ctx
            .ui
            .with_bar(key, None, &None, |progress| {
                opts.progress = progress;
                client.put_reader(key, tokio::io::stdin(), None, &opts)
            })
            .await?;
        return Ok(written);
    }
    let path = Path::new(&args.file);
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_dir() {
        return Err(Usage(format!(
            "{} is a directory: use `trove cp -r {} {}`",
            args.file, args.file, key
        ))
        .into());
    }
    // `trove put a.txt /docs/` stores `/docs/a.txt`, as `cp` does (and
    // `aws s3 cp`): a file's bytes under a key ending in `/` would be a
    // directory marker no download can make a file of.
    let named;
    let key = match (key.ends_with('/'), path.file_name().and_then(|n| n.to_str())) {
        (true, Some(name)) => {
            named = format!("{key}{name}");
            named.as_str()
        }
        _ => key,
    };
    let written = ctx
        .ui
        .with_bar(key, Some(meta.len()), &None, |progress| {
            opts.progress = progress;
            client.put_file(key, path, &opts)
        })
        .await?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_durations_or_never_and_never_zero() {
        assert_eq!(parse_ttl("1h"), Ok(Expiry::After(Duration::from_secs(3600))));
        assert_eq!(parse_ttl("1ms"), Ok(Expiry::After(Duration::from_millis(1))));
        assert_eq!(parse_ttl("never"), Ok(Expiry::Never));
        assert_eq!(parse_ttl(" Never "), Ok(Expiry::Never));
        for zero in ["0", "0s", "0ms", "0.0001s"] {
            let e = parse_ttl(zero).unwrap_err();
            assert!(e.contains("would expire the key as it is written"), "{zero}: {e}");
        }
        assert!(parse_ttl("soon").unwrap_err().ends_with("or `never`"));
    }
}
