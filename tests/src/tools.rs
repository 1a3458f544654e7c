//! The outside programs some suites drive (the S3 clients, Chromium,
//! schemathesis), found where their installer scripts put them. A suite
//! whose tools are missing says so and checks nothing, except under CI
//! (`CI=true`), where that is a failure: a test that cannot run there must
//! not pass quietly.

use std::path::{Path, PathBuf};

/// A venv's `bin/`: `$var` when set, else `~/.cache/<default>`.
pub fn venv_bin(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache")
                .join(default)
        })
        .join("bin")
}

/// `program` on `PATH`.
pub fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// What a suite needs: programs in a venv's `bin/` and on `PATH`, and the
/// script that installs them.
pub struct Needs<'a> {
    /// The suite, as a person names it ("the S3 suite").
    pub suite: &'a str,
    /// Its installer ("scripts/s3-clients.sh").
    pub installer: &'a str,
    pub venv_bin: &'a Path,
    pub in_venv: &'a [&'a str],
    pub on_path: &'a [&'a str],
}

impl Needs<'_> {
    /// Whether everything is installed. When something is missing: a
    /// panic under CI, else `false` after saying what (the caller then
    /// returns without checking anything).
    pub fn present(&self) -> bool {
        let mut missing: Vec<String> = self
            .in_venv
            .iter()
            .filter(|name| !self.venv_bin.join(name).exists())
            .map(|name| format!("{name} (in {})", self.venv_bin.display()))
            .collect();
        missing.extend(
            self.on_path
                .iter()
                .filter(|name| on_path(name).is_none())
                .map(|name| format!("{name} (on PATH)")),
        );
        if missing.is_empty() {
            return true;
        }
        let message = format!(
            "{} cannot run: {} missing. {} installs them (scripts/test.sh runs it)",
            self.suite,
            missing.join(", "),
            self.installer
        );
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{message}; CI must run {}", self.suite);
        }
        eprintln!("SKIPPED: {message}");
        false
    }
}
