//! The config file: `$XDG_CONFIG_HOME/trove/config.json` (or
//! `~/.config/trove/config.json`), JSON as `mc`'s, holding the masters to
//! use when neither `--master` nor `TROVE_MASTER` names one.

use super::Usage;
use anyhow::Context;
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use trove_common::process::say;

/// `trove config …`
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Set a setting: `trove config set master URL [URL…]`.
    Set {
        /// The setting (`master`).
        name: String,
        /// Its value(s).
        #[arg(required = true)]
        values: Vec<String>,
    },
    /// Print a setting (`trove config get` alone: the master).
    Get {
        /// The setting (`master`).
        #[arg(default_value = "master")]
        name: String,
    },
    /// Remove a setting.
    Unset {
        /// The setting (`master`).
        name: String,
    },
    /// Print the config file's path.
    Path,
}

/// What the file holds.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Config {
    /// Master URLs, in fail-over order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub master: Vec<String>,
}

/// Where the config lives by default.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("trove").join("config.json"))
}

impl Config {
    /// The file's settings; none when it does not exist.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a trove config file (fix or delete it)", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes the file atomically (temp file, rename).
    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let dir = path.parent().context("the config path has no folder")?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("cannot write in {}", dir.display()))?;
        serde_json::to_writer_pretty(&mut tmp, self)?;
        std::io::Write::write_all(&mut tmp, b"\n")?;
        tmp.persist(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }
}

fn check_name(name: &str) -> anyhow::Result<()> {
    if name == "master" {
        Ok(())
    } else {
        Err(Usage(format!("unknown setting `{name}`; the settings are: master")).into())
    }
}

pub fn run(cmd: &ConfigCommand, path: &Path, json: bool) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::Set { name, values } => {
            check_name(name)?;
            let mut config = Config::load(path)?;
            let masters: Vec<String> = values
                .iter()
                .flat_map(|v| v.split(','))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            // Fail now, not at the next command.
            trove_client::Client::builder()
                .masters(masters.iter().cloned())
                .build()
                .map_err(|e| Usage(e.to_string()))?;
            config.master = masters;
            config.save(path)
        }
        ConfigCommand::Get { name } => {
            check_name(name)?;
            let config = Config::load(path)?;
            if json {
                say(format_args!("{}", serde_json::json!({ "master": config.master })));
            } else if config.master.is_empty() {
                return Err(super::NotFound(format!("master is not set in {}", path.display())).into());
            } else {
                for m in &config.master {
                    say(format_args!("{m}"));
                }
            }
            Ok(())
        }
        ConfigCommand::Unset { name } => {
            check_name(name)?;
            let mut config = Config::load(path)?;
            config.master.clear();
            config.save(path)
        }
        ConfigCommand::Path => {
            say(format_args!("{}", path.display()));
            Ok(())
        }
    }
}
