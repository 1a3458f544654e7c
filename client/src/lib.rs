//! # trove-client
//!
//! An async client for Trove that knows its protocol, and the `trove`
//! command line built on it (`src/main.rs`, `src/cli/`).
//!
//! - [`client`]: [`Client`], its builder (several masters for fail-over,
//!   connect and stall timeouts, the retry policy) and the one loop every
//!   master call goes through.
//! - [`put`]: streaming writes from bytes, files, streams and readers, with
//!   `Content-MD5` and expiry ([`PutOptions`]).
//! - [`get`]: streaming reads ([`GetStream`]) with replica fail-over,
//!   resumption by `Range`, and the sha256 check; [`Client::download`] to a
//!   file that is only renamed into place once verified.
//! - [`stat`]: `HEAD` — a key's size, digests, replicas, expiry.
//! - [`compose`]: a value built on the volumes out of ranges of others
//!   (S3 multipart completion and server-side copies).
//! - [`delete`]: `DELETE` and `UNLINK`.
//! - [`list`]: listings, a page or a stream over every page.
//! - [`status`]: cluster status, admin jobs, health and ping.
//! - [`retry`]: exponential backoff with jitter, and what is retried.
//! - [`error`]: the typed [`Error`].
//!
//! ```no_run
//! # async fn demo() -> trove_client::Result<()> {
//! use trove_client::{Client, PutOptions, GetOptions};
//! let client = Client::new("http://127.0.0.1:3000")?;
//! client.put_bytes("/hello.txt", "hello".into(), &PutOptions::default()).await?;
//! let mut out = Vec::new();
//! client.get_to("/hello.txt", &mut out, &GetOptions::default()).await?;
//! assert_eq!(out, b"hello");
//! # Ok(()) }
//! ```

pub mod client;
pub mod compose;
pub mod delete;
pub mod error;
pub mod get;
pub mod list;
pub mod put;
pub mod retry;
pub mod stat;
pub mod status;

pub use client::{Client, ClientBuilder};
pub use compose::ComposeSource;
pub use error::{Error, Result};
pub use get::{ByteRange, GetOptions, GetReport, GetStream};
pub use list::{ListOptions, ObjectInfo, Page};
pub use put::{Expiry, ProgressFn, PutOptions, Written};
pub use retry::RetryPolicy;
pub use stat::Stat;
pub use status::{ClusterStatus, Health, JobStatus, Ping, VolumeStatus};
