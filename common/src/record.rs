//! The index record (master side) and the blob sidecar (volume side).
//!
//! Both are stored as JSON: records in RocksDB under the key's bytes, the
//! sidecar as `<hash>.meta` beside each blob, so that an operator can read
//! either with ordinary tools, and `rebuild` can recreate records from
//! sidecars alone.

use serde::{Deserialize, Serialize};

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
    /// While *writing*: the write's id, which every replica's upload
    /// carries, so that cleaning up a failed write touches only the blobs
    /// that write stored (never a newer write's, never an older value's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<String>,
    /// While *writing* over an unlinked key: that key's record, put back
    /// if the write fails — the volumes keep its bytes aside until the new
    /// value is confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<Box<Record>>,
}

/// A stored record that cannot be decoded: the index is damaged or was
/// written by an incompatible version.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode index record: {0}")]
pub struct RecordError(#[from] serde_json::Error);

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
        }
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
}

impl BlobMeta {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a sidecar always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<BlobMeta, RecordError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
        assert!(Record::decode(b"{not json").is_err());
        assert!(Record::decode(br#"{"state":"gone"}"#).is_err());
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
