//! # trove-common
//!
//! The pieces of Trove that the master and the volumes must agree on, kept
//! free of any server so they can be unit-tested on their own:
//!
//! - [`placement`]: rendezvous hashing — which volumes hold a key.
//! - [`key`]: what a key is, how it is decoded from a request path, how it is
//!   written into a URL and which file name it maps to on a volume.
//! - [`protocol`]: the master↔volume calls' queries and answers, typed.
//! - [`record`]: the index record (master) and the blob sidecar (volume).
//! - [`binary`]: varints, length-prefixed bytes and digests of the compact
//!   binary formats (index records, volume listings).
//! - [`digest`]: sha256, md5 and CRC32C over a stream; hashing beside the
//!   forwarding of a write.
//! - [`xattr`]: a blob's metadata as an extended attribute of its file.
//! - [`disk_calls`]: calls that wait on a disk, timed so that a hung disk
//!   is told from a busy one (a volume's data dirs, the master's index),
//!   and short ones run on the thread serving their request.
//! - [`metrics`]: Prometheus text for `/-/metrics`.
//! - [`range`]: HTTP `Range: bytes=…` parsing and resolution.
//! - [`conditions`]: `If-Match` / `If-None-Match` on a write.
//! - [`signing`]: HMAC-signed URLs between master, clients and volumes.
//! - [`crash`]: named crash points for the kill -9 tests.
//! - [`http`]: header names, the inter-server HTTP client, request-body
//!   helpers (one file each).
//! - [`flags`]: duration and size flag parsing.
//! - [`process`]: logging set-up and the shutdown signal.
//! - [`time`]: `now_ms`, `now_secs`.
//! - [`routes`]: the routers' tables, and their check against the API
//!   description.
//! - [`server`]: the accept loop both servers run, with its connection
//!   limits and timeouts.

pub mod binary;
pub mod conditions;
pub mod crash;
pub mod digest;
pub mod disk_calls;
pub mod flags;
pub mod http;
pub mod key;
pub mod metrics;
pub mod placement;
pub mod process;
pub mod protocol;
pub mod range;
pub mod record;
pub mod routes;
pub mod server;
pub mod signing;
pub mod time;
pub mod xattr;

/// The version both binaries report in `/-/status`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
