//! The master↔volume protocol: the query of every operation the master
//! calls on a volume, and every JSON answer it reads back, defined once
//! and used by both ends — a renamed field is a compile error on both
//! sides, never a value silently read as missing.
//!
//! | call | query | answer |
//! |---|---|---|
//! | `PUT /<key>` | header [`TROVE_WRITE`](crate::http::TROVE_WRITE) | `201`, headers `Key-Sha256`, `Key-Size` |
//! | `POST /-/mark` | [`MarkQuery`] | the new sidecar ([`BlobMeta`]) |
//! | `POST /-/abort` | [`AbortQuery`] | [`Aborted`] |
//! | `POST /-/pull` | [`PullQuery`] | `201`, like a `PUT` |
//! | `GET /-/verify` | [`KeyQuery`] | [`Verified`] |
//! | `GET /-/blobs` | — | NDJSON, one [`BlobMeta`] a line, each at most [`MAX_BLOBS_LINE`] bytes |
//! | `GET /-/status` | — | [`VolumeStatus`] |
//!
//! Queries travel in URLs the master signs, so they are turned into
//! `(name, value)` pairs by [`query_pairs`] rather than by hand.

use crate::record::{BlobMeta, BlobState};
use serde::{Deserialize, Serialize};

/// The longest `/-/blobs` line a master reads: a sidecar carries 8 hex
/// digits of block checksums per MiB of value, so this admits values up
/// to about 1 TiB, and bounds what a faulty or hostile volume can make the
/// master buffer.
pub const MAX_BLOBS_LINE: usize = 8 << 20;

/// `?key=K`: the key an operation is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyQuery {
    pub key: String,
}

/// `POST /-/mark`: record a blob's state (and md5) in its sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkQuery {
    pub key: String,
    pub state: BlobState,
    /// The value's md5, hex (volumes hash only sha256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// Only if the blob is this master write's (else `409`); confirming it
    /// live drops the value it replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<String>,
}

/// `POST /-/abort`: undo master write `write` of `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortQuery {
    pub key: String,
    pub write: String,
}

/// What an abort did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aborted {
    /// The size of the write's blob, when there was one to remove.
    pub removed_bytes: Option<u64>,
    /// A previous value was put back.
    pub restored: bool,
}

/// `POST /-/pull`: copy `key` from the volume `from`, checked against
/// `sha256`, stored in `state` with `md5`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullQuery {
    pub key: String,
    /// `host:port` of the volume to copy from.
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// The copy's state (default `live`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<BlobState>,
}

/// The answer to `GET /-/verify`: a blob re-read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// What the sidecar says.
    pub meta: BlobMeta,
    /// What the bytes on disk hash to now.
    pub actual_sha256: String,
    pub actual_size: u64,
    /// Both agree with the sidecar.
    pub ok: bool,
}

/// The answer to `GET /-/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeStatus {
    pub version: String,
    /// Blobs stored, and their total size.
    pub blobs: u64,
    pub used_bytes: u64,
    /// Free space summed over the writable data dirs.
    pub free_bytes: u64,
    /// At least one data dir takes new blobs.
    pub writable: bool,
    pub fsync: bool,
    pub dirs: Vec<DirStatus>,
}

/// One data dir in [`VolumeStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirStatus {
    pub path: String,
    /// The dir's identity (its `volume-id` file): a new id means a new,
    /// empty disk.
    pub id: String,
    pub free_bytes: u64,
    pub total_bytes: u64,
    /// New blobs can be written (the dir is there and not read-only).
    pub writable: bool,
}

/// A query as `(name, value)` pairs sorted by name, absent options left
/// out — ready to be signed into a URL.
pub fn query_pairs<Q: Serialize>(query: &Q) -> Vec<(String, String)> {
    let serde_json::Value::Object(fields) = serde_json::to_value(query).expect("queries serialize") else {
        panic!("a query is a struct");
    };
    fields
        .into_iter()
        .filter_map(|(name, value)| match value {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some((name, s)),
            other => Some((name, other.to_string())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each query survives the trip: pairs → URL query → the volume's
    /// parser (serde_urlencoded, as axum's `Query` uses).
    fn round_trip<Q>(q: &Q, expected: &[(&str, &str)])
    where
        Q: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
    {
        let pairs = query_pairs(q);
        let as_str: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(as_str, expected, "the wire names must not change");
        let encoded = serde_urlencoded::to_string(&pairs).unwrap();
        let back: Q = serde_urlencoded::from_str(&encoded).unwrap();
        assert_eq!(&back, q);
    }

    /// JSON answers survive the trip, with their field names fixed.
    fn json_round_trip<T>(v: &T, golden: &str)
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
    {
        assert_eq!(serde_json::to_string(v).unwrap(), golden);
        assert_eq!(&serde_json::from_str::<T>(golden).unwrap(), v);
    }

    #[test]
    fn queries_round_trip() {
        round_trip(&KeyQuery { key: "/a b".into() }, &[("key", "/a b")]);
        round_trip(
            &MarkQuery {
                key: "/k".into(),
                state: BlobState::Live,
                md5: Some("5d41402abc4b2a76b9719d911017c592".into()),
                write: Some("00ff".into()),
            },
            &[
                ("key", "/k"),
                ("md5", "5d41402abc4b2a76b9719d911017c592"),
                ("state", "live"),
                ("write", "00ff"),
            ],
        );
        round_trip(
            &MarkQuery {
                key: "/k".into(),
                state: BlobState::Unlinked,
                md5: None,
                write: None,
            },
            &[("key", "/k"), ("state", "unlinked")],
        );
        round_trip(
            &AbortQuery {
                key: "/k".into(),
                write: "w1".into(),
            },
            &[("key", "/k"), ("write", "w1")],
        );
        round_trip(
            &PullQuery {
                key: "/k".into(),
                from: "h:1".into(),
                sha256: Some("s".into()),
                md5: None,
                state: Some(BlobState::Live),
            },
            &[("from", "h:1"), ("key", "/k"), ("sha256", "s"), ("state", "live")],
        );
    }

    #[test]
    fn answers_round_trip() {
        json_round_trip(
            &Aborted {
                removed_bytes: Some(3),
                restored: true,
            },
            r#"{"removed_bytes":3,"restored":true}"#,
        );
        json_round_trip(
            &VolumeStatus {
                version: "0.1.0".into(),
                blobs: 2,
                used_bytes: 10,
                free_bytes: 100,
                writable: true,
                fsync: false,
                dirs: vec![DirStatus {
                    path: "/d".into(),
                    id: "i".into(),
                    free_bytes: 100,
                    total_bytes: 200,
                    writable: true,
                }],
            },
            r#"{"version":"0.1.0","blobs":2,"used_bytes":10,"free_bytes":100,"writable":true,"fsync":false,"dirs":[{"path":"/d","id":"i","free_bytes":100,"total_bytes":200,"writable":true}]}"#,
        );
        let meta = BlobMeta {
            key: "/a".into(),
            size: 1,
            sha256: "s".into(),
            md5: "m".into(),
            created: 2,
            state: BlobState::Live,
            damaged: false,
            write: None,
            crc32c: None,
            meta: Default::default(),
        };
        json_round_trip(
            &Verified {
                meta,
                actual_sha256: "s".into(),
                actual_size: 1,
                ok: true,
            },
            r#"{"meta":{"key":"/a","size":1,"sha256":"s","md5":"m","created":2,"state":"live"},"actual_sha256":"s","actual_size":1,"ok":true}"#,
        );
    }
}
