//! Crash points, for the tests that kill a server at every step of a
//! protocol: with `TROVE_CRASH_AT=<name>` in its environment, a process
//! aborts the moment it reaches the point of that name — no destructors,
//! no flushing, as if killed with `kill -9` right there. Without the
//! variable a point costs one comparison against a cached `None`.

use std::sync::OnceLock;

/// The environment variable that names the point to crash at.
pub const CRASH_AT: &str = "TROVE_CRASH_AT";

/// Aborts the process if `TROVE_CRASH_AT` names this point.
pub fn point(name: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    if AT.get_or_init(|| std::env::var(CRASH_AT).ok()).as_deref() == Some(name) {
        eprintln!("{CRASH_AT}={name}: crashing here on purpose");
        std::process::abort();
    }
}
