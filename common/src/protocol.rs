//! The master↔volume protocol: the query of every operation the master
//! calls on a volume, and every JSON answer it reads back, defined once
//! and used by both ends — a renamed field is a compile error on both
//! sides, never a value silently read as missing.
//!
//! | call | query | answer |
//! |---|---|---|
//! | `PUT /<key>` | header [`TROVE_WRITE`](crate::http::TROVE_WRITE) | `201`, headers `Key-Sha256`, `Key-Size` |
//! | `POST /-/mark` | [`MarkQuery`] | the new sidecar ([`BlobMeta`]) |
//! | `POST /-/marks` | [`MarksQuery`], JSON body: a list of [`MarkQuery`] | a list of [`MarkOutcome`], in order |
//! | `POST /-/abort` | [`AbortQuery`] | [`Aborted`] |
//! | `POST /-/pull` | [`PullQuery`] | `201`, like a `PUT` |
//! | `POST /-/compose` | [`ComposeQuery`], JSON body [`ComposePlan`] | `201`, like a `PUT`, plus `Key-Md5` |
//! | `GET /-/verify` | [`KeyQuery`] | [`Verified`] |
//! | `GET /-/blobs` | — | NDJSON, one [`BlobMeta`] a line, each at most [`MAX_BLOBS_LINE`] bytes |
//! | `GET /-/listing` | — | binary frames in key order, one [`listing::Listed`] each ([`listing`]) |
//! | `GET /-/status` | — | [`VolumeStatus`] |
//!
//! Queries travel in URLs the master signs, so they are turned into
//! `(name, value)` pairs by [`query_pairs`] rather than by hand.

use crate::record::{BlobMeta, BlobState};

pub mod listing;
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

/// `POST /-/marks?body_sha256=H`: several marks in one request, made
/// durable by one shared sync. The body (a JSON list of [`MarkQuery`]) is
/// not part of the signed URL, so its sha256 is: a volume refuses a body
/// whose sha256 is not `H`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarksQuery {
    pub body_sha256: String,
}

/// The most marks one `POST /-/marks` carries.
pub const MAX_MARKS: usize = 256;

/// What became of one mark of a `POST /-/marks`: the status a
/// `POST /-/mark` of it would have answered, and its reason when not 2xx.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkOutcome {
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `POST /-/mark`: record a blob's state (and md5) in its sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkQuery {
    pub key: String,
    pub state: BlobState,
    /// The value's md5, hex (volumes do not hash it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// The value's sha256, hex: a volume checks a master write's bytes by
    /// CRC32C and learns the sha256 the master computed here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Only if the blob is this master write's (else `409`); confirming it
    /// live drops the value it replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<String>,
    /// When the value was written (Unix ms), as the master's record says:
    /// the copy takes this time, so that its `Last-Modified` (and a rebuilt
    /// index) agrees with the master's, not with the moment this replica
    /// happened to commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<u64>,
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
    /// The value's time (Unix ms) as the master's record has it: the copy
    /// keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<u64>,
}

/// `POST /-/compose`: store, as master write `write` of `key`, the
/// concatenation of the ranges in the JSON body ([`ComposePlan`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComposeQuery {
    pub key: String,
    pub write: String,
}

/// The body of `POST /-/compose`: the parts of the new value, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComposePlan {
    pub parts: Vec<ComposePart>,
}

/// One part of a composed value: bytes `range` of the value of `key`
/// pinned by the master when it accepted the compose. A copy serves as
/// the source only if it is that value: its sha256 (and size) match, and,
/// asked of a peer, the peer serves write `write` of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComposePart {
    pub key: String,
    /// The pinned value's sha256 (hex) and size.
    pub sha256: String,
    pub size: u64,
    /// The pinned value's write id, when its record has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<String>,
    /// `[start, end)` within the value; `start <= end <= size`.
    pub range: [u64; 2],
    /// `host:port` of the volumes holding the value, in the order to try
    /// them (after the volume's own disk).
    pub volumes: Vec<String>,
}

impl ComposePlan {
    /// How long the composed value is.
    pub fn len(&self) -> u64 {
        self.parts
            .iter()
            .map(|p| p.range[1].saturating_sub(p.range[0]))
            .sum()
    }

    /// Whether the composed value is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks what a volume must not trust blindly: ranges within their
    /// values, digests that are digests, and at least one volume a part.
    pub fn check(&self) -> Result<(), String> {
        if self.parts.len() > MAX_COMPOSE_PARTS {
            return Err(format!("at most {MAX_COMPOSE_PARTS} parts"));
        }
        for (i, p) in self.parts.iter().enumerate() {
            let [start, end] = p.range;
            if start > end || end > p.size {
                return Err(format!(
                    "part {i} ({}): range [{start}, {end}) is not within its {} bytes",
                    p.key, p.size
                ));
            }
            if p.sha256.len() != 64 || !p.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("part {i} ({}): sha256 must be 64 hex digits", p.key));
            }
            if p.volumes.is_empty() {
                return Err(format!("part {i} ({}): no volume holds it", p.key));
            }
        }
        Ok(())
    }
}

/// The most parts one compose may have (S3's most parts of an upload).
pub const MAX_COMPOSE_PARTS: usize = 10_000;

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
    /// The id of the volume's log of damaged copies (new with each start),
    /// for `?damage_seen=<log>:<seq>`. (Absent from older volumes.)
    #[serde(default)]
    pub damage_log: u64,
    /// Copies a reader could not be given (damaged, or missing) that the
    /// master has not taken yet (`?damage_seen=` drops those it has),
    /// oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<DamageReport>,
}

/// A copy a volume could not give a reader (a block failing its CRC32C,
/// metadata that does not read, no copy of the key at all), for the
/// master to check and repair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamageReport {
    /// The report's number in its volume's log, from 1.
    pub seq: u64,
    pub key: String,
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
    /// How long the oldest read of this dir's disk still in progress has
    /// waited, in ms, when that is longer than the volume's stall timeout:
    /// the disk is not answering. (Absent from older volumes' answers.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stalled_ms: Option<u64>,
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
                sha256: Some("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".into()),
                write: Some("00ff".into()),
                created: Some(1_700_000_000_123),
            },
            &[
                ("created", "1700000000123"),
                ("key", "/k"),
                ("md5", "5d41402abc4b2a76b9719d911017c592"),
                (
                    "sha256",
                    "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
                ),
                ("state", "live"),
                ("write", "00ff"),
            ],
        );
        round_trip(
            &MarkQuery {
                key: "/k".into(),
                state: BlobState::Unlinked,
                md5: None,
                sha256: None,
                write: None,
                created: None,
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
            &ComposeQuery {
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
                created: Some(7),
            },
            &[
                ("created", "7"),
                ("from", "h:1"),
                ("key", "/k"),
                ("sha256", "s"),
                ("state", "live"),
            ],
        );
    }

    #[test]
    fn compose_plans_round_trip_and_are_checked() {
        let part = ComposePart {
            key: "/a b".into(),
            sha256: "ab".repeat(32),
            size: 10,
            write: Some("w0".into()),
            range: [2, 10],
            volumes: vec!["h:1".into(), "h:2".into()],
        };
        let plan = ComposePlan {
            parts: vec![
                part.clone(),
                ComposePart {
                    write: None,
                    range: [0, 0],
                    ..part.clone()
                },
            ],
        };
        let sha = "ab".repeat(32);
        json_round_trip(
            &plan,
            &format!(
                r#"{{"parts":[{{"key":"/a b","sha256":"{sha}","size":10,"write":"w0","range":[2,10],"volumes":["h:1","h:2"]}},{{"key":"/a b","sha256":"{sha}","size":10,"range":[0,0],"volumes":["h:1","h:2"]}}]}}"#
            ),
        );
        assert_eq!(plan.len(), 8);
        assert!(plan.check().is_ok());
        for bad in [
            ComposePart {
                range: [3, 2],
                ..part.clone()
            },
            ComposePart {
                range: [0, 11],
                ..part.clone()
            },
            ComposePart {
                sha256: "xyz".into(),
                ..part.clone()
            },
            ComposePart {
                volumes: vec![],
                ..part.clone()
            },
        ] {
            let e = ComposePlan { parts: vec![bad] }.check().unwrap_err();
            assert!(e.contains("/a b"), "{e}");
        }
        let too_many = ComposePlan {
            parts: vec![part; MAX_COMPOSE_PARTS + 1],
        };
        assert!(too_many.check().is_err());
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
                dirs: vec![
                    DirStatus {
                        path: "/d".into(),
                        id: "i".into(),
                        free_bytes: 100,
                        total_bytes: 200,
                        writable: true,
                        stalled_ms: None,
                    },
                    DirStatus {
                        path: "/e".into(),
                        id: "j".into(),
                        free_bytes: 0,
                        total_bytes: 200,
                        writable: false,
                        stalled_ms: Some(2500),
                    },
                ],
                damage_log: 7,
                damaged: vec![DamageReport {
                    seq: 3,
                    key: "/k".into(),
                }],
            },
            r#"{"version":"0.1.0","blobs":2,"used_bytes":10,"free_bytes":100,"writable":true,"fsync":false,"dirs":[{"path":"/d","id":"i","free_bytes":100,"total_bytes":200,"writable":true},{"path":"/e","id":"j","free_bytes":0,"total_bytes":200,"writable":false,"stalled_ms":2500}],"damage_log":7,"damaged":[{"seq":3,"key":"/k"}]}"#,
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
