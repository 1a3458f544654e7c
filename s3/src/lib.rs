//! # trove-s3
//!
//! A stateless S3 gateway in front of Trove's master, built on `s3s` (which
//! does the protocol: routing, XML, SigV4 headers and presigned URLs,
//! aws-chunked bodies). Bucket `b`, object `k` is Trove key `/b/k`, so S3
//! clients and `curl -L` share one namespace. Bytes stream through the
//! gateway one chunk at a time in both directions; copies and multipart
//! completion are composed by the volumes themselves.
//!
//! - [`server`]: the command line, credentials, and the HTTP loop (with
//!   the unauthenticated `GET /-/healthy`).
//! - [`access`]: what every request passes once its signature is checked
//!   (presigned URLs of at most 7 days, XML bodies of at most 8 MiB).
//! - [`gateway`]: [`Gateway`], the S3 trait's operations and the helpers
//!   they share (bucket existence, metadata, conditional requests).
//! - [`bucket`]: ListBuckets, CreateBucket, HeadBucket, DeleteBucket,
//!   GetBucketLocation.
//! - [`put`], [`get`], [`delete`], [`copy`]: the object operations.
//! - [`ignored_range`]: a `Range` header RFC 9110 says to ignore
//!   (malformed, several ranges) answered with the whole object.
//! - [`part`]: `partNumber` on GetObject and HeadObject.
//! - [`part_sums`]: the checksums an uploaded part matched, kept for
//!   CompleteMultipartUpload to compare with its part list.
//! - [`splice`]: GetObject's zero-copy path, a volume's answer passed on
//!   with `splice(2)`.
//! - [`list`]: ListObjects v1/v2 and ListObjectVersions.
//! - [`multipart`]: the multipart upload operations.
//! - [`checksum`]: upload bodies checked while streaming, their last chunk
//!   held back until every check passed.
//! - [`names`], [`etag`], [`encoding`]: the pure rules (bucket names, key
//!   mapping, ETags, url-encoding and continuation tokens).
//! - [`unsupported`]: requests asking for what Trove cannot honour
//!   (encryption, object lock, ACLs, tagging), refused before anything is
//!   stored.
//! - [`error`]: Trove's errors as S3's, in one place.
//! - [`request_id`]: the id every answer carries, and an error's words
//!   where s3s left none.
//! - `fields`: macros for groups of fields several s3s types carry alike.

#[macro_use]
mod fields;

pub mod access;
pub mod bucket;
pub mod checksum;
pub mod completing;
pub mod copy;
pub mod dates;
pub mod delete;
pub mod encoding;
pub mod error;
pub mod etag;
pub mod gateway;
pub mod get;
pub mod ignored_range;
pub mod list;
pub mod multipart;
pub mod names;
pub mod part;
pub mod part_sums;
pub mod put;
pub mod request_id;
pub mod server;
pub mod splice;
pub mod unsupported;

pub use gateway::Gateway;
