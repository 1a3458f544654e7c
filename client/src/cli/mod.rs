//! The `trove` commands: flags shared by all, the dispatch, and exit codes.
//!
//! - `put`, `get`: one value (`put.rs`, `get.rs`).
//! - `rm`, `unlink`: `rm.rs`.
//! - `ls`, `stat`: `ls.rs`.
//! - `cp -r`, `sync`: bulk transfers (`cp.rs`); the local directory
//!   walked and mapped to keys (`tree.rs`).
//! - `health`, `ping`, `status`: `ops.rs`.
//! - `config`: the config file (`config.rs`).
//! - `ui.rs`: progress bars, plain lines, JSON, and human formats.

mod config;
mod cp;
mod get;
mod ls;
mod ops;
mod put;
mod rm;
mod tree;
pub mod ui;

use anyhow::Context;
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use trove_client::{Client, RetryPolicy};
use trove_common::flags::parse_timeout;

/// The command line for a Trove cluster: put, get, list and remove values,
/// copy directories, and check on the cluster.
///
/// Exit codes: 0 success, 1 error, 2 usage error, 3 not found, 130
/// interrupted (Ctrl-C), 141 the reader of stdout or stderr went away
/// (`trove get KEY | head`).
#[derive(Parser, Debug)]
#[command(name = "trove", version)]
pub struct Cli {
    /// Master URL; repeat (or separate with commas) for fail-over. Default:
    /// the config file's, else http://127.0.0.1:3000.
    #[arg(long, global = true, env = "TROVE_MASTER", value_delimiter = ',')]
    master: Vec<String>,
    /// The config file (default: $XDG_CONFIG_HOME/trove/config.json, or
    /// ~/.config/trove/config.json).
    #[arg(long, global = true, env = "TROVE_CONFIG")]
    config: Option<PathBuf>,
    /// Print nothing but errors (and what `get` writes to stdout).
    /// TROVE_QUIET takes 1/0, true/false, yes/no, on/off.
    #[arg(long, short, global = true, env = "TROVE_QUIET", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    quiet: bool,
    /// Print results as JSON, for scripts (one document per command; with
    /// `get` to stdout, the report goes to stderr). TROVE_JSON takes 1/0,
    /// true/false, yes/no, on/off.
    #[arg(long, global = true, env = "TROVE_JSON", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    json: bool,
    /// Give up connecting to a server after this long.
    #[arg(long, global = true, env = "TROVE_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_timeout)]
    connect_timeout: Duration,
    /// Give up on a transfer when no byte has moved for this long (there is
    /// no total timeout).
    #[arg(long, global = true, env = "TROVE_STALL_TIMEOUT", default_value = "30s", value_parser = parse_timeout)]
    stall_timeout: Duration,
    /// Attempts per request when the cluster is unreachable, busy (409) or
    /// short of volumes (503), with exponential backoff and jitter.
    #[arg(long, global = true, env = "TROVE_RETRIES", default_value_t = 10)]
    retries: u32,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a file (or stdin, `-`) under KEY.
    Put(put::PutArgs),
    /// Read KEY to stdout or a file; the sha256 is checked.
    Get(get::GetArgs),
    /// Delete keys everywhere.
    Rm(rm::RmArgs),
    /// Soft-delete a key: it reads as absent, its bytes stay until `rm`.
    Unlink(rm::UnlinkArgs),
    /// List keys under a prefix.
    Ls(ls::LsArgs),
    /// Show a key's size, digests, replicas and expiry.
    Stat(ls::StatArgs),
    /// Copy a directory to a prefix or a prefix to a directory (`-r`), or
    /// one file or key; what already matches (size + md5) is skipped.
    Cp(cp::CpArgs),
    /// Make DST a copy of SRC: like `cp -r`, but a differing destination is
    /// replaced, and `--delete` removes what SRC does not have.
    Sync(cp::SyncArgs),
    /// Whether the master serves and has enough volumes for writes.
    Health,
    /// Round-trip time to the master and every volume.
    Ping,
    /// The volumes (health, free space, blobs), key counts and admin jobs.
    Status,
    /// Read or change the config file (`trove config set master URL`).
    #[command(subcommand)]
    Config(config::ConfigCommand),
}

/// How `trove` exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Ok = 0,
    Error = 1,
    Usage = 2,
    NotFound = 3,
    Interrupted = 130,
}

impl ExitCode {
    /// The exit code for an error: not found, usage, or anything else.
    pub fn of(e: &anyhow::Error) -> ExitCode {
        for cause in e.chain() {
            if cause.downcast_ref::<Usage>().is_some() {
                return ExitCode::Usage;
            }
            if let Some(trove_client::Error::NotFound { .. }) = cause.downcast_ref() {
                return ExitCode::NotFound;
            }
            if cause.downcast_ref::<NotFound>().is_some() {
                return ExitCode::NotFound;
            }
        }
        ExitCode::Error
    }
}

/// A mistake in how `trove` was called (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// Nothing matched what was asked for (exit code 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);

/// Options every command shares, after the config file is read.
pub struct Ctx {
    pub ui: ui::Ui,
    masters: Vec<String>,
    connect_timeout: Duration,
    stall_timeout: Duration,
    retries: u32,
}

impl Ctx {
    /// A client for the configured masters.
    pub fn client(&self) -> anyhow::Result<Client> {
        let retry = RetryPolicy {
            attempts: self.retries.max(1),
            ..RetryPolicy::default()
        };
        let quiet = self.ui.quiet;
        Client::builder()
            .masters(self.masters.iter().cloned())
            .connect_timeout(self.connect_timeout)
            .stall_timeout(self.stall_timeout)
            .retry(retry)
            .on_retry(move |e, wait| {
                if !quiet {
                    let e = ui::printable(&e.to_string()).into_owned();
                    ui::tell(&format!("trove: {e}; retrying in {}", ui::wait(wait)));
                }
            })
            .build()
            .map_err(|e| Usage(e.to_string()).into())
    }
}

/// A key as typed: `photos/a.jpg` and `/photos/a.jpg` are the same key.
pub fn key_arg(raw: &str) -> String {
    let raw = raw.strip_prefix("trove:").unwrap_or(raw);
    if raw.starts_with('/') {
        raw.to_string()
    } else {
        format!("/{raw}")
    }
}

/// What a command moves, for the words said when Ctrl-C stops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfers {
    /// `put`.
    Upload,
    /// `get`.
    Download,
    /// `cp`, `sync`: either way.
    Either,
    /// Everything else.
    Nothing,
}

impl Cli {
    /// What this command moves.
    pub fn transfers(&self) -> Transfers {
        match self.command {
            Command::Put(_) => Transfers::Upload,
            Command::Get(_) => Transfers::Download,
            Command::Cp(_) | Command::Sync(_) => Transfers::Either,
            _ => Transfers::Nothing,
        }
    }
}

/// What `trove` says when Ctrl-C stops a command: what it left behind.
pub fn interrupted_message(what: Transfers) -> &'static str {
    match what {
        Transfers::Upload => {
            "trove: interrupted; the upload was abandoned (an unfinished upload stores nothing)"
        }
        Transfers::Either => {
            "trove: interrupted; the transfers in progress were abandoned (an unfinished upload stores nothing; an unfinished download leaves its file as it was)"
        }
        Transfers::Download => {
            "trove: interrupted; the download was abandoned (an output file is left as it was; what went to stdout is incomplete)"
        }
        Transfers::Nothing => "trove: interrupted",
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let named_config = cli.config.is_some();
    let config_path = match cli.config.clone() {
        Some(p) => Some(p),
        None => config::default_path(),
    };
    if let Command::Config(cmd) = &cli.command {
        let path = config_path.context("no config file: set $HOME or --config")?;
        return config::run(cmd, &path, cli.json);
    }
    let mut masters = cli.master.clone();
    masters.retain(|m| !m.trim().is_empty());
    if masters.is_empty() {
        if let Some(path) = &config_path {
            // A file named by --config (or TROVE_CONFIG) must be there: a
            // typo would otherwise fall back to the default master.
            if named_config && !path.exists() {
                return Err(Usage(format!(
                    "the config file {} does not exist (create it with `trove config set master URL`)",
                    path.display()
                ))
                .into());
            }
            masters = config::Config::load(path)?.master;
        }
    }
    if masters.is_empty() {
        masters.push("http://127.0.0.1:3000".into());
    }
    let ctx = Ctx {
        ui: ui::Ui::new(cli.quiet, cli.json),
        masters,
        connect_timeout: cli.connect_timeout,
        stall_timeout: cli.stall_timeout,
        retries: cli.retries,
    };
    match cli.command {
        Command::Put(a) => put::run(&ctx, a).await,
        Command::Get(a) => get::run(&ctx, a).await,
        Command::Rm(a) => rm::rm(&ctx, a).await,
        Command::Unlink(a) => rm::unlink(&ctx, a).await,
        Command::Ls(a) => ls::ls(&ctx, a).await,
        Command::Stat(a) => ls::stat(&ctx, a).await,
        Command::Cp(a) => cp::cp(&ctx, a).await,
        Command::Sync(a) => cp::sync(&ctx, a).await,
        Command::Health => ops::health(&ctx).await,
        Command::Ping => ops::ping(&ctx).await,
        Command::Status => ops::status(&ctx).await,
        Command::Config(_) => unreachable!("handled above"),
    }
}
