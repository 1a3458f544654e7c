//! Changes to a stored blob's metadata: the master's confirming mark
//! (`pending` → `live`, with the md5 and sha256), and a copy found
//! damaged. Metadata in the blob file's attribute is changed in place (one
//! `setxattr`), then made durable — by an fsync of the file, or with
//! `--shared-sync` by a sync shared with concurrent writers
//! ([`super::group`]), one for several marks sent together
//! ([`BlobStore::set_states`]); a sidecar is replaced atomically and durably, by a swap
//! ([`How::Swap`]).

use super::durable::{put_in_place, remove_attr, set_attr, How, TempFile};
use super::layout::{Found, TMP_DIR};
use super::{BlobStore, DiskCalls, StoreError};
use std::path::PathBuf;
use std::sync::Arc;
use trove_common::key::Key;
use trove_common::record::{BlobMeta, BlobState};
use trove_common::xattr;

/// One mark: a change of a blob's state, as the master asks it (see
/// [`BlobStore::set_state`]).
#[derive(Debug, Clone)]
pub struct StateChange {
    pub key: Key,
    pub state: BlobState,
    pub md5: Option<String>,
    pub sha256: Option<String>,
    /// Only if the blob is this master write's.
    pub write: Option<String>,
    /// The value's time as the master recorded it (Unix ms).
    pub created: Option<u64>,
}

/// A change applied in place, not yet durable.
struct Applied {
    meta: BlobMeta,
    /// The blob file changed.
    data: PathBuf,
    /// Confirming it settles the write that stored it: the value that
    /// write replaced can go, once the confirmation is durable.
    settles: bool,
}

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
        let change = StateChange {
            key: key.clone(),
            state,
            md5,
            sha256,
            write: write.map(str::to_string),
            created: None,
        };
        let mut outcomes = self.set_states(vec![change]);
        outcomes.pop().expect("one outcome per change")
    }

    /// [`BlobStore::set_state`] for several blobs at once (the master's
    /// marks, batched): every change is applied in place, then one shared
    /// sync makes them all durable, then the writes they confirm are
    /// settled. One outcome per change, in order. Blocking.
    ///
    /// A change to a blob whose disk is not taking writes is refused
    /// ([`BlobStore::disk_for_writing`]); the others are timed as writes
    /// of their disks until all are settled.
    pub fn set_states(&self, changes: Vec<StateChange>) -> Vec<Result<BlobMeta, StoreError>> {
        trove_common::crash::point("volume-marking");
        // Every change is admitted (or refused) before any is timed, so
        // that a long batch is never refused by its own timers.
        let admitted: Vec<Result<Arc<DiskCalls>, StoreError>> =
            changes.iter().map(|c| self.disk_for_writing(&c.key)).collect();
        let mut disks: Vec<&Arc<DiskCalls>> = vec![];
        for disk in admitted.iter().flatten() {
            if !disks.iter().any(|d| Arc::ptr_eq(d, disk)) {
                disks.push(disk);
            }
        }
        let _timers: Vec<_> = disks.iter().map(|d| d.write(0)).collect();
        let mut applied: Vec<Result<Applied, StoreError>> = changes
            .iter()
            .zip(admitted)
            .map(|(c, admitted)| admitted.and_then(|_| self.apply_state(c)))
            .collect();
        let changed: Vec<PathBuf> = applied.iter().flatten().map(|a| a.data.clone()).collect();
        if let Err(e) = self.commit_files(&changed) {
            // None of them may be answered as recorded.
            let message = e.to_string();
            for a in applied.iter_mut().filter(|a| a.is_ok()) {
                *a = Err(StoreError::Io(std::io::Error::other(message.clone())));
            }
        }
        if applied.iter().any(Result::is_ok) {
            trove_common::crash::point("volume-marked");
        }
        changes
            .iter()
            .zip(applied)
            .map(|(change, applied)| {
                let applied = applied?;
                if applied.settles {
                    self.settle(&change.key, &applied.meta)?;
                }
                Ok(applied.meta)
            })
            .collect()
    }

    /// Applies one mark in place (not yet durable), under the key's stripe.
    fn apply_state(&self, change: &StateChange) -> Result<Applied, StoreError> {
        let _stripe = self.stripe(&change.key);
        let found = self.find(&change.key)?.ok_or(StoreError::NotFound)?;
        if let Some(write) = &change.write {
            if found.meta.write.as_ref() != Some(write) {
                return Err(StoreError::OtherWrite(write.clone()));
            }
        }
        let data = found.data.clone();
        let mut was_pending = false;
        let meta = self.update_found(&change.key, found, |m| {
            was_pending = m.state == BlobState::Pending;
            m.state = change.state;
            if let Some(md5) = &change.md5 {
                m.md5 = md5.clone();
            }
            if let Some(sha256) = change.sha256.as_ref().filter(|_| m.sha256.is_empty()) {
                m.sha256 = sha256.clone();
            }
            if let Some(created) = change.created {
                m.created = created;
            }
        })?;
        Ok(Applied {
            meta,
            data,
            // Confirming the blob in place settles the write that stored
            // it: the value it replaced is no longer needed.
            settles: change.state == BlobState::Live && (change.write.is_some() || was_pending),
        })
    }

    /// Drops the value a confirmed write replaced — if the blob in place
    /// is still that confirmed copy (`confirmed`, as marked): a newer
    /// write that took the key since keeps its own previous value.
    fn settle(&self, key: &Key, confirmed: &BlobMeta) -> Result<(), StoreError> {
        let _stripe = self.stripe(key);
        let in_place = self.find(key).ok().flatten().map(|found| found.meta);
        if in_place.is_some_and(|m| m.write == confirmed.write && m.created == confirmed.created) {
            for dir in &self.dirs {
                self.remove_previous(dir, key)?;
            }
        }
        Ok(())
    }

    /// Rewrites a blob's sidecar with `change` applied, if it changes
    /// anything (atomically, durably). Blocking.
    fn update_meta(&self, key: &Key, change: impl FnOnce(&mut BlobMeta)) -> Result<BlobMeta, StoreError> {
        let _stripe = self.stripe(key);
        let found = self.find(key)?.ok_or(StoreError::NotFound)?;
        let data = found.data.clone();
        let meta = self.update_found(key, found, change)?;
        self.commit(super::Durable::File(&data))?;
        Ok(meta)
    }

    /// [`BlobStore::update_meta`] of a blob the caller found under the
    /// key's stripe, which it still holds — but for durability: a change
    /// made in the blob's attribute is durable once the caller has had it
    /// committed ([`BlobStore::commit`]).
    fn update_found(
        &self,
        key: &Key,
        found: Found,
        change: impl FnOnce(&mut BlobMeta),
    ) -> Result<BlobMeta, StoreError> {
        let Found {
            data,
            sidecar: meta_path,
            mut meta,
            in_attr,
        } = found;
        let before = meta.clone();
        change(&mut meta);
        if meta == before {
            return Ok(meta);
        }
        let encoded = meta.encode();
        if in_attr && encoded.len() <= xattr::META_ATTR_LIMIT {
            // One `setxattr` on the blob file: no file created.
            set_attr(&data, &encoded)?;
            self.describe(key, &data, &meta);
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
        self.describe(key, &data, &meta);
        Ok(meta)
    }

    /// Records that the copy of `key` described by `seen` is damaged, so it
    /// is never served again; a replacement (a pull, a new PUT) brings a
    /// fresh sidecar. Only that copy is marked: one that replaced it
    /// meanwhile is left alone. Blocking.
    pub fn mark_damaged(&self, key: &Key, seen: &BlobMeta) -> Result<BlobMeta, StoreError> {
        let (sha256, created) = (seen.sha256.clone(), seen.created);
        self.small_write(key, || {
            self.update_meta(key, |m| {
                if m.sha256 == sha256 && m.created == created {
                    m.damaged = true;
                }
            })
        })
    }
}
