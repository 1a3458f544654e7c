//! Changes to a stored blob's metadata: the master's confirming mark
//! (`pending` → `live`, with the md5 and sha256), and a copy found
//! damaged. Metadata in the blob file's attribute is changed in place (one
//! `setxattr`, then an fsync of the file); a sidecar is replaced
//! atomically and durably, by a swap ([`How::Swap`]).

use super::durable::{put_in_place, remove_attr, set_attr, How, TempFile};
use super::layout::{meta_in_attr, read_meta, TMP_DIR};
use super::{BlobStore, StoreError};
use trove_common::key::Key;
use trove_common::record::{BlobMeta, BlobState};
use trove_common::xattr;

impl BlobStore {
    /// Changes the state recorded in a blob's sidecar, and its md5 and
    /// sha256 when given (atomically, durably) — a master write's copy
    /// learns its sha256 here, from the master, having checked its bytes
    /// by CRC32C. A sha256 the copy already knows is never changed.
    /// Blocking.
    ///
    /// With `write`, the blob must be the one that master write stored
    /// (else [`StoreError::OtherWrite`]); confirming it (`live`) drops the
    /// value it replaced.
    pub fn set_state(
        &self,
        key: &Key,
        state: BlobState,
        md5: Option<String>,
        sha256: Option<String>,
        write: Option<&str>,
    ) -> Result<BlobMeta, StoreError> {
        let _stripe = self.stripe(key);
        if let Some(write) = write {
            let (data, _) = self.locate(key).ok_or(StoreError::NotFound)?;
            if read_meta(&data)?.write.as_deref() != Some(write) {
                return Err(StoreError::OtherWrite(write.to_string()));
            }
        }
        let mut was_pending = false;
        let meta = self.update_meta_locked(key, |m| {
            was_pending = m.state == BlobState::Pending;
            m.state = state;
            if let Some(md5) = md5 {
                m.md5 = md5;
            }
            if let Some(sha256) = sha256.filter(|_| m.sha256.is_empty()) {
                m.sha256 = sha256;
            }
        })?;
        trove_common::crash::point("volume-marked");
        // Confirming the blob in place settles the write that stored it:
        // the value it replaced is no longer needed.
        if state == BlobState::Live && (write.is_some() || was_pending) {
            for dir in &self.dirs {
                self.remove_previous(dir, key)?;
            }
        }
        Ok(meta)
    }

    /// Rewrites a blob's sidecar with `change` applied, if it changes
    /// anything (atomically, durably). Blocking.
    fn update_meta(&self, key: &Key, change: impl FnOnce(&mut BlobMeta)) -> Result<BlobMeta, StoreError> {
        let _stripe = self.stripe(key);
        self.update_meta_locked(key, change)
    }

    /// [`BlobStore::update_meta`] for a caller that holds the key's stripe.
    fn update_meta_locked(
        &self,
        key: &Key,
        change: impl FnOnce(&mut BlobMeta),
    ) -> Result<BlobMeta, StoreError> {
        let (data, meta_path) = self.locate(key).ok_or(StoreError::NotFound)?;
        let mut meta = read_meta(&data)?;
        let before = meta.clone();
        change(&mut meta);
        if meta == before {
            return Ok(meta);
        }
        let encoded = meta.encode();
        let in_attr = meta_in_attr(&data);
        if in_attr && encoded.len() <= xattr::META_ATTR_LIMIT {
            // One `setxattr` on the blob file: no file created. Made
            // durable by a sync shared with concurrent writers.
            set_attr(&data, &encoded)?;
            self.commit(&data)?;
            return Ok(meta);
        }
        let dir = data.ancestors().nth(3).expect("<dir>/aa/bb/<hash>");
        let temp = TempFile::with_bytes(&dir.join(TMP_DIR), ".meta.tmp", &encoded, self.fsync)?;
        // The old sidecar lands at the temp path, and `temp` deletes it.
        put_in_place(vec![(temp, meta_path, How::Swap)], self.fsync)?;
        if in_attr {
            // Grown past what an attribute holds: the sidecar is in place,
            // and the attribute (read first) goes. A crash in between
            // leaves the metadata as it was before this change.
            remove_attr(&data, self.fsync)?;
        }
        Ok(meta)
    }

    /// Records that the copy of `key` described by `seen` is damaged, so it
    /// is never served again; a replacement (a pull, a new PUT) brings a
    /// fresh sidecar. Only that copy is marked: one that replaced it
    /// meanwhile is left alone. Blocking.
    pub fn mark_damaged(&self, key: &Key, seen: &BlobMeta) -> Result<BlobMeta, StoreError> {
        let (sha256, created) = (seen.sha256.clone(), seen.created);
        self.update_meta(key, |m| {
            if m.sha256 == sha256 && m.created == created {
                m.damaged = true;
            }
        })
    }
}
