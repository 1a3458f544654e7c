//! HTTP pieces both servers (and the client library) share, one file per
//! concern:
//!
//! - [`headers`]: Trove's header and query-parameter names, and reading
//!   and writing the ones that carry a value's metadata and flags.
//! - [`client`]: the client used between servers (connect and stall
//!   timeouts, never a total one) and how its errors are described.
//! - [`body`]: request bodies: the announced length, and draining a
//!   refused upload so its sender reads the answer.
//! - [`answer`]: how both servers answer an error (reason, `Allow`, log).
//!
//! Everything is re-exported here, so callers write `http::KEY_SHA256`
//! or `http::client`. Flag parsing is in [`crate::flags`], logging and
//! the shutdown signal in [`crate::process`], clocks in [`crate::time`].

pub mod answer;
pub mod body;
pub mod client;
pub mod headers;

pub use body::{content_length, drain, DRAIN_LIMIT};
pub use client::{client, transport_error, Timeouts};
pub use headers::*;
