//! The index record (master side) and the blob sidecar (volume side).
//!
//! Both are stored as JSON: records in RocksDB under the key's bytes, the
//! sidecar as `<hash>.meta` beside each blob, so that an operator can read
//! either with ordinary tools, and `rebuild` can recreate records from
//! sidecars alone.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Re-exported: records and sidecars are stamped with it.
pub use crate::time::now_ms;

/// A value's metadata: lower-cased header name → value as sent. The
/// headers kept are [`STORED_HEADERS`], every `x-amz-meta-*`, and
/// [`ETAG_META`] (the ETag to report instead of the md5).
pub type Meta = BTreeMap<String, String>;

/// The standard headers a write may give its value, stored and answered
/// on every read.
pub const STORED_HEADERS: [&str; 6] = [
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-type",
    "expires",
];
/// The prefix of user metadata headers (S3's).
pub const USER_META_PREFIX: &str = "x-amz-meta-";
/// The metadata entry holding the ETag to report (from `Trove-Etag`).
pub const ETAG_META: &str = "trove-etag";
/// At most this many bytes of metadata (names and values) per value, as S3
/// allows for user metadata: metadata travels in headers, and a record
/// stays small.
pub const META_LIMIT: usize = 8 << 10;

/// The size of metadata as [`META_LIMIT`] counts it.
pub fn meta_size(meta: &Meta) -> usize {
    meta.iter().map(|(n, v)| n.len() + v.len()).sum()
}

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// A PUT is streaming the value; the key reads as absent.
    Writing,
    /// Every replica holds the value; the key is readable.
    Live,
    /// Soft-deleted (`UNLINK`, or a `DELETE` that could not finish); reads
    /// as absent, the bytes stay on the volumes until `DELETE`.
    Unlinked,
}

/// What the master's index stores for a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub state: State,
    /// `host:port` of each volume holding a replica.
    pub volumes: Vec<String>,
    /// Value length in bytes (0 while writing).
    pub size: u64,
    /// Hex sha256 of the value (empty while writing).
    pub sha256: String,
    /// Hex md5 of the value (empty while writing).
    pub md5: String,
    /// When the write started (writing) or finished (live), Unix milliseconds.
    pub created: u64,
    /// When the key expires, Unix milliseconds (written with a TTL): from
    /// then on it reads as absent, and the master's expirer deletes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    /// Volumes among `volumes` whose copy `verify` found missing or corrupt:
    /// readers are never sent there, and `verify --repair` re-copies them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<String>,
    /// The id of the write that stored the value, which every replica's
    /// upload carries: cleaning up a failed write touches only the blobs
    /// that write stored (never a newer write's, never an older value's),
    /// and a live value's readers are sent to exactly this write's copy
    /// (`?write=`). Absent for values stored before writes had ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<String>,
    /// While *writing* over an existing key (unlinked, expired, or live and
    /// replaced with `Trove-Replace`): that key's record, which is what the
    /// key reads as until the write commits ([`Record::settled`]), and is
    /// put back if the write fails — the volumes keep its bytes aside until
    /// the new value is confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<Box<Record>>,
    /// The value's metadata (content type, user metadata, ETag), returned
    /// on reads. Empty while writing.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: Meta,
    /// The sizes of the parts the value was composed from, in order, when
    /// the compose asked to keep them (`Trove-Keep-Parts`: S3's completed
    /// multipart uploads, so that a reader can ask for part N's bytes).
    /// Empty for every other value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<u64>,
}

/// A stored record that cannot be decoded: the index is damaged or was
/// written by an incompatible version.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot decode index record: {0}")]
    Json(#[from] serde_json::Error),
    /// A binary record (the master's index format) that does not parse.
    #[error("cannot decode index record: {0}")]
    Corrupt(String),
    /// A volume's description of a blob that does not parse.
    #[error("cannot decode the blob's metadata (its user.trove.meta attribute, or its .meta sidecar): {0}")]
    BlobMeta(serde_json::Error),
}

impl Record {
    /// A record for write `write` that has started on `volumes`, over the
    /// unlinked record `replaces` (if any).
    pub fn writing(volumes: Vec<String>, now_ms: u64, write: String, replaces: Option<Record>) -> Record {
        Record {
            state: State::Writing,
            volumes,
            size: 0,
            sha256: String::new(),
            md5: String::new(),
            created: now_ms,
            expires: None,
            damaged: vec![],
            write: Some(write),
            replaces: replaces.map(Box::new),
            meta: Meta::new(),
            parts: vec![],
        }
    }

    /// The state the key counts as in the index's key counts: what it
    /// reads as ([`Record::settled`]). A write over an earlier value —
    /// a replace of a live key, a write over an unlinked one — leaves the
    /// key counted as that value until it commits (or fails, and the
    /// value is put back); only a write over nothing counts as *writing*.
    pub fn counted_state(&self) -> State {
        self.settled().map_or(State::Writing, |r| r.state)
    }

    /// The byte range `[start, end)` of part `n` (1-based) of a value
    /// composed with its parts kept ([`Record::parts`]); `None` when it
    /// has no such part.
    pub fn part_range(&self, n: u32) -> Option<[u64; 2]> {
        let i = usize::try_from(n).ok()?.checked_sub(1)?;
        let size = *self.parts.get(i)?;
        let start: u64 = self.parts[..i].iter().sum();
        Some([start, start + size])
    }

    /// The record the key reads as, whatever its state: a *writing*
    /// record's [`Record::replaces`] (the value it replaces stays what
    /// readers see until the write commits), else the record itself.
    /// `None` for a write over nothing. Every read path (redirects,
    /// listings, `UNLINK`) goes through this or [`Record::visible`], so
    /// that a replace is atomic for readers.
    pub fn settled(&self) -> Option<&Record> {
        match self.state {
            State::Writing => self.replaces.as_deref(),
            _ => Some(self),
        }
    }

    /// The live value a reader is given at `now_ms`, if any: the settled
    /// record, when it is live and not expired.
    pub fn visible(&self, now_ms: u64) -> Option<&Record> {
        self.settled()
            .filter(|r| r.state == State::Live && !r.expired(now_ms))
    }

    /// The ETag to report, unquoted: the one given at write time
    /// (`Trove-Etag`), else the hex md5.
    pub fn etag(&self) -> &str {
        self.meta.get(ETAG_META).map_or(&self.md5, String::as_str)
    }

    /// The stored `Content-Type`, if one was given.
    pub fn content_type(&self) -> Option<&str> {
        self.meta.get("content-type").map(String::as_str)
    }

    /// Whether the key has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires.is_some_and(|t| t <= now_ms)
    }

    /// The volumes a reader may be sent to: all but the damaged ones.
    pub fn readable(&self) -> Vec<String> {
        self.volumes
            .iter()
            .filter(|v| !self.damaged.contains(v))
            .cloned()
            .collect()
    }

    /// The bytes stored in the index.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record always serializes")
    }

    /// Reads bytes stored by [`Record::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// Where a blob is in its life, as its volume knows it. `rebuild` uses this
/// to tell finished writes from failed ones when the index is lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobState {
    /// Stored, but the master has not (yet) confirmed the write: every
    /// replica of a failed write stays pending.
    #[default]
    Pending,
    /// The master confirmed that every replica has it.
    Live,
    /// The key was unlinked; the bytes wait for `DELETE`.
    Unlinked,
}

impl BlobState {
    pub fn as_str(self) -> &'static str {
        match self {
            BlobState::Pending => "pending",
            BlobState::Live => "live",
            BlobState::Unlinked => "unlinked",
        }
    }
}

/// The sidecar a volume keeps beside each blob (`<hash>.meta`) and streams
/// as one line of `GET /-/blobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobMeta {
    /// The decoded key.
    pub key: String,
    pub size: u64,
    /// Hex sha256 of the blob's bytes.
    pub sha256: String,
    /// Hex md5 of the blob's bytes.
    pub md5: String,
    /// When the blob was stored, Unix milliseconds.
    pub created: u64,
    #[serde(default)]
    pub state: BlobState,
    /// The volume's own `verify` found the bytes no longer match: the blob
    /// is not served until it is replaced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub damaged: bool,
    /// The id of the master's write that stored this blob (absent for
    /// copies made by pulls): the confirming mark and a failed write's
    /// clean-up name it, so neither can act on another write's blob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<String>,
    /// CRC32C of each 1 MiB block of the bytes, 8 hex digits a block,
    /// computed as they were stored: a volume checks every block it serves
    /// against it, so corrupt bytes are never served silently. Absent for
    /// blobs stored before volumes kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<String>,
    /// The value's metadata, as the master's record has it, so that
    /// `rebuild` restores it and the volume answers it on reads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: Meta,
}

impl BlobMeta {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a sidecar always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<BlobMeta, RecordError> {
        serde_json::from_slice(bytes).map_err(RecordError::BlobMeta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden value: records already in an index must stay readable.
    #[test]
    fn record_encoding_is_stable() {
        let r = Record {
            state: State::Live,
            volumes: vec!["a:1".into(), "b:2".into()],
            size: 5,
            sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".into(),
            md5: "5d41402abc4b2a76b9719d911017c592".into(),
            created: 1_700_000_000_000,
            expires: None,
            damaged: vec![],
            write: None,
            replaces: None,
            meta: Meta::new(),
            parts: vec![],
        };
        let encoded = String::from_utf8(r.encode()).unwrap();
        assert_eq!(
            encoded,
            r#"{"state":"live","volumes":["a:1","b:2"],"size":5,"sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824","md5":"5d41402abc4b2a76b9719d911017c592","created":1700000000000}"#
        );
        assert_eq!(Record::decode(encoded.as_bytes()).unwrap(), r);
        let w = Record::writing(vec!["a:1".into()], 7, "w1".into(), None);
        assert_eq!(
            String::from_utf8(w.encode()).unwrap(),
            r#"{"state":"writing","volumes":["a:1"],"size":0,"sha256":"","md5":"","created":7,"write":"w1"}"#
        );
        assert_eq!(Record::decode(&w.encode()).unwrap(), w);
        let unlinked = Record {
            state: State::Unlinked,
            ..r.clone()
        };
        let over = Record::writing(vec!["a:1".into()], 8, "w2".into(), Some(unlinked.clone()));
        assert!(String::from_utf8(over.encode())
            .unwrap()
            .ends_with(r#""write":"w2","replaces":{"state":"unlinked","volumes":["a:1","b:2"],"size":5,"sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824","md5":"5d41402abc4b2a76b9719d911017c592","created":1700000000000}}"#));
        assert_eq!(
            Record::decode(&over.encode()).unwrap().replaces.as_deref(),
            Some(&unlinked)
        );
        let d = Record {
            damaged: vec!["b:2".into()],
            ..r.clone()
        };
        assert!(String::from_utf8(d.encode())
            .unwrap()
            .ends_with(r#","damaged":["b:2"]}"#));
        assert_eq!(Record::decode(&d.encode()).unwrap(), d);
        assert_eq!(d.readable(), vec!["a:1".to_string()]);
        // A key written with a TTL; records from before TTLs have none.
        let e = Record {
            expires: Some(1_700_003_600_000),
            ..r.clone()
        };
        assert_eq!(
            String::from_utf8(e.encode()).unwrap(),
            r#"{"state":"live","volumes":["a:1","b:2"],"size":5,"sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824","md5":"5d41402abc4b2a76b9719d911017c592","created":1700000000000,"expires":1700003600000}"#
        );
        assert_eq!(Record::decode(&e.encode()).unwrap(), e);
        assert!(!e.expired(1_700_003_599_999) && e.expired(1_700_003_600_000));
        assert!(!r.expired(u64::MAX), "no TTL, never expires");
        // A completed multipart upload keeps its part sizes; records
        // without parts are written as before.
        let p = Record {
            parts: vec![5, 5, 2],
            ..r.clone()
        };
        assert!(String::from_utf8(p.encode())
            .unwrap()
            .ends_with(r#","created":1700000000000,"parts":[5,5,2]}"#));
        assert_eq!(Record::decode(&p.encode()).unwrap(), p);
        assert!(Record::decode(b"{not json").is_err());
        assert!(Record::decode(br#"{"state":"gone"}"#).is_err());
    }

    /// Metadata is stored only when there is some, so records and
    /// sidecars written before it decode unchanged.
    #[test]
    fn metadata_encoding_is_stable() {
        let mut r = Record::writing(vec!["a:1".into()], 7, "w1".into(), None);
        r.state = State::Live;
        r.meta.insert("content-type".into(), "text/plain".into());
        r.meta.insert(ETAG_META.into(), "abc-2".into());
        assert_eq!(
            String::from_utf8(r.encode()).unwrap(),
            r#"{"state":"live","volumes":["a:1"],"size":0,"sha256":"","md5":"","created":7,"write":"w1","meta":{"content-type":"text/plain","trove-etag":"abc-2"}}"#
        );
        assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        assert_eq!((r.etag(), r.content_type()), ("abc-2", Some("text/plain")));
        r.meta.clear();
        r.md5 = "m".into();
        assert_eq!(r.etag(), "m");
        let m = BlobMeta::decode(
            br#"{"key":"/a","size":1,"sha256":"s","md5":"m","created":2,"meta":{"x-amz-meta-a":"b"}}"#,
        )
        .unwrap();
        assert_eq!(m.meta["x-amz-meta-a"], "b");
        assert!(String::from_utf8(m.encode())
            .unwrap()
            .ends_with(r#""meta":{"x-amz-meta-a":"b"}}"#));
    }

    /// What a key reads as: a write in progress shows the value it
    /// replaces (live, or not), never itself.
    #[test]
    fn a_write_reads_as_what_it_replaces() {
        let live = Record {
            state: State::Live,
            ..Record::writing(vec!["a:1".into()], 5, "w0".into(), None)
        };
        assert_eq!(live.visible(10), Some(&live));
        let replacing = Record::writing(vec!["b:2".into()], 8, "w1".into(), Some(live.clone()));
        assert_eq!(replacing.settled(), Some(&live));
        assert_eq!(replacing.visible(10), Some(&live));
        let fresh = Record::writing(vec!["b:2".into()], 8, "w1".into(), None);
        assert_eq!((fresh.settled(), fresh.visible(10)), (None, None));
        let unlinked = Record {
            state: State::Unlinked,
            ..live.clone()
        };
        let over_unlinked = Record::writing(vec!["b:2".into()], 8, "w1".into(), Some(unlinked.clone()));
        assert_eq!(over_unlinked.settled(), Some(&unlinked));
        assert_eq!(over_unlinked.visible(10), None);
        let expiring = Record {
            expires: Some(9),
            ..live.clone()
        };
        let over_expired = Record::writing(vec!["b:2".into()], 8, "w1".into(), Some(expiring));
        assert!(over_expired.visible(8).is_some() && over_expired.visible(9).is_none());
    }

    /// A key being replaced counts as the value it replaces; only a write
    /// over nothing counts as writing.
    #[test]
    fn a_write_counts_as_what_it_replaces() {
        let live = Record {
            state: State::Live,
            ..Record::writing(vec!["a:1".into()], 5, "w0".into(), None)
        };
        let unlinked = Record {
            state: State::Unlinked,
            ..live.clone()
        };
        assert_eq!(live.counted_state(), State::Live);
        assert_eq!(unlinked.counted_state(), State::Unlinked);
        let counted = |over: Option<&Record>| {
            Record::writing(vec!["b:2".into()], 8, "w1".into(), over.cloned()).counted_state()
        };
        assert_eq!(counted(None), State::Writing);
        assert_eq!(counted(Some(&live)), State::Live);
        assert_eq!(counted(Some(&unlinked)), State::Unlinked);
    }

    #[test]
    fn part_ranges_add_up_the_sizes_before() {
        let r = Record {
            parts: vec![5, 5, 2],
            ..Record::writing(vec![], 0, "w".into(), None)
        };
        assert_eq!(r.part_range(1), Some([0, 5]));
        assert_eq!(r.part_range(2), Some([5, 10]));
        assert_eq!(r.part_range(3), Some([10, 12]));
        assert_eq!((r.part_range(0), r.part_range(4)), (None, None));
        let plain = Record::writing(vec![], 0, "w".into(), None);
        assert_eq!(plain.part_range(1), None);
    }

    #[test]
    fn sidecar_encoding_is_stable() {
        let m = BlobMeta {
            key: "/a".into(),
            size: 1,
            sha256: "s".into(),
            md5: "m".into(),
            created: 2,
            state: BlobState::Live,
            damaged: false,
            write: None,
            crc32c: None,
            meta: Meta::new(),
        };
        assert_eq!(
            String::from_utf8(m.encode()).unwrap(),
            r#"{"key":"/a","size":1,"sha256":"s","md5":"m","created":2,"state":"live"}"#
        );
        let w = BlobMeta {
            write: Some("00ff".into()),
            crc32c: Some("a9421b7c".into()),
            ..m.clone()
        };
        assert_eq!(
            String::from_utf8(w.encode()).unwrap(),
            r#"{"key":"/a","size":1,"sha256":"s","md5":"m","created":2,"state":"live","write":"00ff","crc32c":"a9421b7c"}"#
        );
        assert_eq!(BlobMeta::decode(&w.encode()).unwrap(), w);
        let old = BlobMeta::decode(br#"{"key":"/a","size":1,"sha256":"s","md5":"m","created":2}"#).unwrap();
        assert_eq!(
            old.state,
            BlobState::Pending,
            "a sidecar without state is pending"
        );
        assert_eq!(BlobMeta::decode(&m.encode()).unwrap(), m);
    }
}
