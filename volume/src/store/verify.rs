//! Verifying a blob: its bytes re-read and re-hashed against its sidecar
//! (bit rot, truncation); a mismatch marks the copy damaged.

use super::blocks::BlockSums;
use super::{BlobStore, StoreError};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io;
use trove_common::key::Key;
use trove_common::protocol::Verified;

impl BlobStore {
    /// Re-reads a blob and checks its bytes against its sidecar (bit rot,
    /// truncation): `verify --deep`, which re-hashes sha256. Blocking;
    /// reads the whole file, each read timed as one of its data dir's
    /// (a hung disk is reported stalled, a large blob is not).
    pub fn verify(&self, key: &Key) -> Result<Verified, StoreError> {
        // Found and opened under the key's stripe, like every read, so
        // that a replace cannot slip a new file in between: the bytes
        // checked are the ones the metadata describes (else a copy being
        // replaced would be reported bad).
        let (meta, mut file, disk) = {
            let _stripe = self.stripe(key);
            let super::layout::Found { data, meta, .. } = self.find(key)?.ok_or(StoreError::NotFound)?;
            let file = File::open(&data).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => StoreError::NotFound,
                _ => e.into(),
            })?;
            (meta, file, self.disk_calls(self.dir_of(&data)))
        };
        let mut sha256 = Sha256::new();
        let mut sums = BlockSums::default();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let reading = disk.reading();
            let n = io::Read::read(&mut file, &mut buf)?;
            drop(reading);
            if n == 0 {
                break;
            }
            sha256.update(&buf[..n]);
            sums.update(&buf[..n]);
        }
        let (size, sha256) = (sums.size(), hex::encode(sha256.finalize()));
        // A master write's copy learns its sha256 with the confirmation;
        // until then its bytes are checked against its block CRC32Cs (and
        // the master compares the sha256 reported with its record).
        let ok = size == meta.size
            && if meta.sha256.is_empty() {
                meta.crc32c.as_deref() == Some(sums.finish().as_str())
            } else {
                sha256 == meta.sha256
            };
        let meta = if ok || meta.damaged {
            meta
        } else {
            self.mark_damaged(key, &meta)?
        };
        Ok(Verified {
            actual_sha256: sha256,
            actual_size: size,
            ok,
            meta,
        })
    }
}
