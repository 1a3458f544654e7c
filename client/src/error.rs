//! Every way a client call can fail, as a typed error.
//!
//! The master's answers map to variants in one place (`Error::from_status`);
//! transport failures keep the innermost cause, which is the one a person
//! can act on ("Connection refused"). [`Error::is_retryable`] says which
//! failures a repeat could cure; whether a call *may* be repeated is the
//! operation's business (see [`crate::retry`]).

use std::time::Duration;

/// A failed client call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key does not exist (or is being written, unlinked, or expired).
    #[error("{key}: not found")]
    NotFound { key: String },
    /// `PUT` of a key that already exists: keys are write-once.
    #[error("{key}: already exists (keys are write-once: delete it first)")]
    Exists { key: String },
    /// `409`: another write or delete of the same key is in flight.
    #[error("{key}: conflict: {message}")]
    Conflict { key: String, message: String },
    /// `503`: too few healthy volumes, or every replica is down — or every
    /// replica was found damaged, which no repeat cures (see
    /// [`Error::is_all_damaged`]).
    #[error("the cluster is unavailable: {message}")]
    Unavailable { message: String },
    /// `403` other than an existing key (`--protect`, a bad query…).
    #[error("{key}: refused: {message}")]
    Forbidden { key: String, message: String },
    /// Any other `4xx`: the request itself is wrong and repeating it will
    /// not help.
    #[error("{key}: the master refused the request ({status}): {message}")]
    Rejected {
        key: String,
        status: u16,
        message: String,
    },
    /// The range asked for lies outside the value.
    #[error("{key}: range not satisfiable: the value has {len} bytes")]
    RangeNotSatisfiable { key: String, len: u64 },
    /// A `5xx` other than `503`: a replica failed; nothing was stored.
    #[error("{url}: server error {status}: {message}")]
    Server {
        url: String,
        status: u16,
        message: String,
    },
    /// Could not connect, or the connection broke.
    #[error("cannot reach {url}: {message}")]
    Transport {
        url: String,
        message: String,
        /// The request may have reached the server (the connection broke
        /// after it was made, rather than never being made).
        sent: bool,
    },
    /// No byte moved for the stall timeout.
    #[error("{url}: no progress for {timeout:?}")]
    Stalled { url: String, timeout: Duration },
    /// The bytes read do not hash to the sha256 the master recorded.
    #[error("{key}: sha256 mismatch: the master recorded {expected} but the bytes read hash to {got} (from {source_volume}); the copy is corrupt")]
    Corrupt {
        key: String,
        expected: String,
        got: String,
        /// The volume(s) the bytes came from.
        source_volume: String,
    },
    /// A streamed upload: the `201`'s CRC32C of the bytes the master
    /// received is not that of the bytes sent. The key was deleted again.
    /// (The stream's CRC32C also goes as a trailer, which the master
    /// checks before committing: a mismatch there is [`Error::Rejected`]
    /// `400`, nothing stored; this catches a master that ignores it.)
    #[error("{key}: the bytes the master received are not those sent (CRC32C {received} received, {sent} sent); the write was undone, send it again")]
    Garbled {
        key: String,
        sent: String,
        received: String,
    },
    /// The value was replaced by a newer one while it was being read,
    /// after bytes of the old one had been delivered.
    #[error("{key} was replaced while it was being read; read it again")]
    Replaced { key: String },
    /// An answer that breaks the protocol (a missing header, a wrong range).
    #[error("{url}: unexpected answer: {message}")]
    Protocol { url: String, message: String },
    /// A key that Trove cannot store.
    #[error("`{key}` is not a valid key: {source}")]
    InvalidKey {
        key: String,
        source: trove_common::key::KeyError,
    },
    /// A header a write was asked to send that Trove does not take there,
    /// or that cannot be an HTTP header at all: a [`PutOptions::meta`]
    /// pair other than the metadata Trove stores (`Trove-Replace`, an
    /// `If-*`, `X-Custom`…), or a name or value a request cannot carry (a
    /// space in a name, a line break in a value). Refused before anything
    /// is sent.
    ///
    /// [`PutOptions::meta`]: crate::PutOptions::meta
    #[error("{key}: nothing was sent: the header {name:?} (value {value:?}) {reason}")]
    InvalidHeader {
        key: String,
        name: String,
        value: String,
        /// What is wrong, and what is allowed.
        reason: String,
    },
    /// The server at `url` does not answer as a Trove master does (a
    /// volume's address given as the master's, or another HTTP server):
    /// found from an answer whose `Server` names a Trove volume, or when an
    /// answer no master gives (a `200` to a `HEAD` of a key, a `400` to a
    /// listing) is followed by a `/-/status` without the master's list of
    /// volumes.
    #[error("the server at {url} does not answer as a Trove master (is it a volume? the master's address is needed, port 3000 by default)")]
    NotAMaster { url: String },
    /// A bad argument to the client itself (an unusable master URL…).
    #[error("{0}")]
    Config(String),
    /// A local file or writer failed, or the value a write was sending
    /// did: a file that cannot be read, a caller's stream that yielded an
    /// error or ended before the length it announced (the write then
    /// stored nothing). Not retried: it is not the cluster's doing.
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

/// What the master's reason says when every replica of a key was found
/// damaged (master `ApiError::AllDamaged`): "every replica of this key (…)
/// was found damaged by verify; …".
const ALL_DAMAGED: &str = "was found damaged by verify";

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Maps a master's error answer for `key` (`url` for server faults).
    pub(crate) fn from_status(key: &str, url: &str, status: u16, body: &str) -> Error {
        let key = key.to_string();
        let message = body.trim().to_string();
        match status {
            404 => Error::NotFound { key },
            403 if message.starts_with("key exists") => Error::Exists { key },
            403 => Error::Forbidden { key, message },
            409 => Error::Conflict { key, message },
            503 => Error::Unavailable { message },
            400..=499 => Error::Rejected { key, status, message },
            _ => Error::Server {
                url: url.to_string(),
                status,
                message,
            },
        }
    }

    /// A transport failure, described by its innermost cause.
    pub(crate) fn transport(url: &str, e: &reqwest::Error) -> Error {
        Error::Transport {
            url: url.to_string(),
            message: trove_common::http::transport_error(e),
            sent: !e.is_connect(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether repeating the same request could succeed: the master or a
    /// volume was unreachable or stalled, the cluster was short of healthy
    /// volumes (`503`), or another writer held the key (`409`).
    /// A `503` that says every replica was found damaged is not: only
    /// writing the value again cures it.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unavailable { .. } => !self.is_all_damaged(),
            Error::Transport { .. } | Error::Stalled { .. } | Error::Conflict { .. } => true,
            _ => false,
        }
    }

    /// Whether this is the master's `503` for a key whose every replica
    /// `verify` found damaged: no copy can be served until the value is
    /// written again, so a repeat cannot help (unlike the `503`s for too
    /// few volumes or replicas that are down). The master says so only in
    /// its reason (the body, or `Trove-Error` for a `HEAD`), which is what
    /// this reads.
    pub fn is_all_damaged(&self) -> bool {
        match self {
            Error::Unavailable { message } => message.contains(ALL_DAMAGED),
            _ => false,
        }
    }

    /// Whether the failure may have happened after the master acted on the
    /// request (the connection broke while waiting for its answer).
    pub(crate) fn outcome_unknown(&self) -> bool {
        matches!(self, Error::Transport { sent: true, .. } | Error::Stalled { .. })
    }

    /// Whether the server could not be reached or went silent (another
    /// master may do better).
    pub(crate) fn unreachable(&self) -> bool {
        matches!(self, Error::Transport { .. } | Error::Stalled { .. })
    }

    /// Whether this is [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_variants() {
        let e = |status, body| Error::from_status("/k", "http://m/k", status, body);
        assert!(matches!(e(404, ""), Error::NotFound { .. }));
        assert!(matches!(
            e(403, "key exists: keys are write-once, DELETE it first\n"),
            Error::Exists { .. }
        ));
        assert!(matches!(
            e(403, "this master runs with --protect"),
            Error::Forbidden { .. }
        ));
        assert!(matches!(e(409, "busy"), Error::Conflict { .. }));
        assert!(matches!(e(503, "down"), Error::Unavailable { .. }));
        assert!(matches!(e(411, "empty"), Error::Rejected { status: 411, .. }));
        assert!(matches!(e(502, "replica"), Error::Server { status: 502, .. }));
        assert!(e(503, "").is_retryable() && e(409, "").is_retryable());
        assert!(!e(502, "").is_retryable() && !e(404, "").is_retryable());
    }

    /// The master's reasons, as `master/src/error.rs` words them: only the
    /// one for replicas all found damaged is final.
    #[test]
    fn a_503_for_replicas_all_damaged_is_not_retried() {
        let e = |body| Error::from_status("/k", "http://m/k", 503, body);
        let damaged = e("every replica of this key (127.0.0.1:3001,127.0.0.1:3002) was found damaged by verify; no copy can be served: restore the value from elsewhere and write it again\n");
        assert!(damaged.is_all_damaged() && !damaged.is_retryable());
        for cure in [
            "only 2 healthy volume(s), 3 needed for a write; see GET /-/status",
            "no replica of this key can serve it (127.0.0.1:3001 down)",
            "",
        ] {
            assert!(e(cure).is_retryable() && !e(cure).is_all_damaged(), "{cure}");
        }
    }

    #[test]
    fn only_a_request_that_was_made_may_have_acted() {
        let t = |sent| Error::Transport {
            url: "http://m/k".into(),
            message: "x".into(),
            sent,
        };
        assert!(t(false).is_retryable() && t(false).unreachable() && !t(false).outcome_unknown());
        assert!(t(true).outcome_unknown());
        let stalled = Error::Stalled {
            url: "http://m/k".into(),
            timeout: Duration::from_secs(1),
        };
        assert!(stalled.outcome_unknown() && stalled.unreachable());
        assert!(!Error::Unavailable { message: "x".into() }.unreachable());
    }
}
