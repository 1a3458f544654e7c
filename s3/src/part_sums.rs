//! The checksums an uploaded part was verified against, kept beside it so
//! that CompleteMultipartUpload can compare the ones its part list names
//! (AWS refuses a mismatch with `InvalidPart`).
//!
//! They are known only once the part's body has streamed (a trailer
//! comes last), so they cannot go into the part's own metadata: they go
//! in a small key beside it, `<part key>.<part md5>.sums`. Naming it by the
//! part's md5 makes a part uploaded again (the last upload wins) find its
//! own checksums, never those of an upload it replaced. The key lives in
//! the upload's folder, so it expires and is removed with the parts; it
//! is not a part (part keys are five digits), so ListParts and Complete's
//! part lookup pass it by.
//!
//! What is not checked: a part with no kept checksums (uploaded without
//! one, by UploadPartCopy, or whose sidecar could not be written) and an
//! algorithm the part was not sent with are accepted, as before.

use s3s::dto::{Checksum, CompletedPart};
use s3s::{s3_error, S3Result};
use serde::{Deserialize, Serialize};

/// A part's verified checksums (base64, as S3 sends them).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartSums {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc64nvme: Option<String>,
}

impl PartSums {
    /// The checksums an UploadPart's body matched.
    pub fn verified(c: &Checksum) -> PartSums {
        PartSums {
            crc32: c.checksum_crc32.clone(),
            crc32c: c.checksum_crc32c.clone(),
            sha1: c.checksum_sha1.clone(),
            sha256: c.checksum_sha256.clone(),
            crc64nvme: c.checksum_crc64nvme.clone(),
        }
    }

    /// The checksums a Complete's part list gives for one part.
    pub fn listed(p: &CompletedPart) -> PartSums {
        PartSums {
            crc32: p.checksum_crc32.clone(),
            crc32c: p.checksum_crc32c.clone(),
            sha1: p.checksum_sha1.clone(),
            sha256: p.checksum_sha256.clone(),
            crc64nvme: p.checksum_crc64nvme.clone(),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == PartSums::default()
    }

    /// `InvalidPart` when a checksum `listed` for part `n` differs from
    /// the one the part was verified against; one the part was not sent
    /// with cannot be compared and passes.
    pub fn check(&self, n: i32, listed: &PartSums) -> S3Result<()> {
        let pairs = [
            ("CRC32", &self.crc32, &listed.crc32),
            ("CRC32C", &self.crc32c, &listed.crc32c),
            ("SHA1", &self.sha1, &listed.sha1),
            ("SHA256", &self.sha256, &listed.sha256),
            ("CRC64NVME", &self.crc64nvme, &listed.crc64nvme),
        ];
        for (name, kept, given) in pairs {
            if let (Some(kept), Some(given)) = (kept, given) {
                if kept.trim() != given.trim() {
                    return Err(s3_error!(
                        InvalidPart,
                        "part {n}'s {name} checksum in the part list ({given}) is not the one the part was uploaded with ({kept}); nothing was completed"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The key of the checksums of the part stored at `part_key` whose md5
/// (its ETag) is `md5`.
pub fn key(part_key: &str, md5: &str) -> String {
    format!("{part_key}.{md5}.sums")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_checksums_must_be_those_the_part_matched() {
        let kept = PartSums {
            crc32: Some("jt9Hdw==".into()),
            ..Default::default()
        };
        let same = PartSums {
            crc32: Some("jt9Hdw==".into()),
            ..Default::default()
        };
        assert!(kept.check(1, &same).is_ok());
        let wrong = PartSums {
            crc32: Some("AAAAAA==".into()),
            ..Default::default()
        };
        let e = kept.check(2, &wrong).unwrap_err();
        assert_eq!(*e.code(), s3s::S3ErrorCode::InvalidPart);
        assert!(e.message().unwrap().contains("part 2's CRC32"));
        let other_algorithm = PartSums {
            sha256: Some("x".into()),
            ..Default::default()
        };
        assert!(kept.check(1, &other_algorithm).is_ok(), "nothing to compare");
        assert_eq!(
            key("/.s3/uploads/ab/00001", "0cc1"),
            "/.s3/uploads/ab/00001.0cc1.sums"
        );
        let raw = serde_json::to_vec(&kept).unwrap();
        assert_eq!(raw, br#"{"crc32":"jt9Hdw=="}"#);
        assert_eq!(serde_json::from_slice::<PartSums>(&raw).unwrap(), kept);
    }
}
