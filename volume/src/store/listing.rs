//! `GET /-/listing` from the store: every blob in key order, walking the
//! [`super::keyset`] (the sorted keys) and reporting what is on disk, a
//! file lost or damaged behind the volume's back included.
//!
//! Each entry is read from the blob itself — its metadata (attribute or
//! sidecar) and the length of its data file — unless the key set keeps a
//! *description* of it that still holds: the entry's frame as the store
//! last made it, with the data dir, inode, change time and length its file
//! had then. The store describes a copy whenever it stores a confirmed
//! one or changes one's metadata in place, under the key's stripe, and
//! the start-up walk describes what it finds; a listing then costs one
//! `lstat` per blob, and any change to the file since it was described (a
//! new file renamed in, an attribute set, a length cut, a removal) shows
//! in what `lstat` says, so the entry is read from the blob again. A
//! copy listed from its kept-aside previous value is never described.
//!
//! Two rules keep the key set holding every key that has a file:
//!
//! - a key is added before the first file of a write is renamed into
//!   place, under the key's stripe (a write that cannot add it fails, and
//!   nothing becomes visible);
//! - a key is removed only after the last of its files (data, sidecar,
//!   previous value, in every data dir) is gone, under the same stripe.

use super::keyset::Description;
use super::previous::{listed, prev_of};
use super::{BlobStore, StoreError};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use trove_common::key::Key;
use trove_common::protocol::listing::{put_frame, Listed, END};
use trove_common::record::{BlobMeta, BlobState};

/// A description's head: data dir index (u8), then the file's inode,
/// change time (seconds, nanoseconds) and length, little-endian (u64, i64,
/// i64, u64); the entry's frame follows.
const HEAD: usize = 1 + 8 + 8 + 8 + 8;

/// Frames gathered before they are handed to the answer's body.
const CHUNK: usize = 64 << 10;

impl BlobStore {
    /// Every blob, in key order, as listing frames handed to `send` in
    /// chunks of about 64 KiB, then the end frame — until `send` answers
    /// `false` (the reader went away). On an error the end frame is not
    /// sent. Blocking.
    pub fn listing(&self, mut send: impl FnMut(Vec<u8>) -> bool) -> Result<(), StoreError> {
        let mut chunk = Vec::with_capacity(CHUNK + 1024);
        for k in self.keys.snapshot() {
            let (k, description) = k?;
            let Some(key) = std::str::from_utf8(&k).ok().and_then(|s| Key::new(s).ok()) else {
                tracing::warn!(key = ?String::from_utf8_lossy(&k), "the listing holds an invalid key; skipped");
                continue;
            };
            if let Some(frame) = self.still_holds(&key, &description) {
                chunk.extend_from_slice(frame);
            } else if let Some(entry) = self.listed_entry(&key) {
                put_frame(&mut chunk, &entry);
            }
            if chunk.len() >= CHUNK && !send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK + 1024)))
            {
                return Ok(());
            }
        }
        chunk.extend_from_slice(&END);
        send(chunk);
        Ok(())
    }

    /// What the listing says of `key`, read from its files: the copy in
    /// its home dir, else in another dir (as `GET` finds it); the value
    /// kept aside while a newer write is unconfirmed (what the volume
    /// holds for certain, as `/-/blobs` reports it). `None` when no copy
    /// is left.
    fn listed_entry(&self, key: &Key) -> Option<Listed> {
        let _stripe = self.stripe(key);
        let home = self.home_dir(key);
        let dirs = std::iter::once(home).chain(self.dirs.iter().map(PathBuf::as_path).filter(|d| *d != home));
        for dir in dirs {
            let (data, _) = Self::paths_in(dir, key);
            match listed(&data) {
                Ok(Some((mut meta, path))) => {
                    meta.crc32c = None;
                    let fault = match fs::symlink_metadata(&path) {
                        Ok(m) if m.len() == meta.size => None,
                        Ok(m) => Some(format!(
                            "{} is {} bytes but its metadata says {}",
                            path.display(),
                            m.len(),
                            meta.size
                        )),
                        Err(_) => continue, // removed behind our back since
                    };
                    return Some(Listed {
                        meta,
                        fault,
                        unreadable: false,
                    });
                }
                Ok(None) => {}
                Err(e) => return Some(Listed::unreadable(key.as_str().to_string(), e.to_string())),
            }
        }
        None
    }

    /// The frame a key's description keeps, if its file is still as it was
    /// described (one `lstat`).
    fn still_holds<'a>(&self, key: &Key, description: &'a [u8]) -> Option<&'a [u8]> {
        let (head, frame) = description.split_at_checked(HEAD)?;
        let dir = self.dirs.get(head[0] as usize)?;
        let file = fs::symlink_metadata(Self::paths_in(dir, key).0).ok()?;
        (head[1..] == stat_head(&file)).then_some(frame)
    }

    /// Keeps in the key set what the listing says of `key`, whose copy
    /// `meta` was just put in file `data` or changed there (caller holds
    /// the key's stripe) — or nothing, where the copy cannot be described,
    /// so that no older description outlives the change.
    pub(super) fn describe(&self, key: &Key, data: &Path, meta: &BlobMeta) {
        self.keys
            .describe(key.as_bytes(), description(&self.dirs, data, meta));
    }

    /// Drops `key` from the listing if none of its files is left in any
    /// data dir (caller holds the key's stripe).
    pub(super) fn forget_if_gone(&self, key: &Key) {
        let any_file = self.dirs.iter().any(|dir| {
            let (data, meta) = Self::paths_in(dir, key);
            let (prev, prev_meta) = prev_of(&data);
            [&data, &meta, &prev, &prev_meta]
                .iter()
                .any(|p| p.symlink_metadata().is_ok())
        });
        if !any_file {
            self.keys.remove(key.as_bytes());
        }
    }
}

/// The description of the copy `meta` in file `data` (one of `dirs`), or
/// an empty one where the copy is not what the listing shows (a pending
/// write beside a kept-aside previous value) or its file does not `lstat`.
pub(super) fn description(dirs: &[PathBuf], data: &Path, meta: &BlobMeta) -> Description {
    let none = || Description::from([]);
    if meta.state == BlobState::Pending && prev_of(data).0.symlink_metadata().is_ok() {
        return none();
    }
    let Some(dir) = dirs
        .iter()
        .position(|d| data.starts_with(d))
        .filter(|&i| i <= u8::MAX as usize)
    else {
        return none();
    };
    let Ok(file) = fs::symlink_metadata(data) else {
        return none();
    };
    if file.len() != meta.size {
        return none();
    }
    let entry = Listed {
        meta: BlobMeta {
            crc32c: None,
            ..meta.clone()
        },
        fault: None,
        unreadable: false,
    };
    let mut bytes = Vec::with_capacity(HEAD + 160);
    bytes.push(dir as u8);
    bytes.extend_from_slice(&stat_head(&file));
    put_frame(&mut bytes, &entry);
    bytes.into()
}

/// What a description records of a file's `lstat`.
fn stat_head(file: &fs::Metadata) -> [u8; HEAD - 1] {
    let mut head = [0; HEAD - 1];
    head[0..8].copy_from_slice(&file.ino().to_le_bytes());
    head[8..16].copy_from_slice(&file.ctime().to_le_bytes());
    head[16..24].copy_from_slice(&file.ctime_nsec().to_le_bytes());
    head[24..32].copy_from_slice(&file.len().to_le_bytes());
    head
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Expected;
    use bytes::Bytes;
    use std::io;
    use std::sync::Arc;
    use std::time::Duration;
    use trove_common::protocol::listing::decode_all;
    use trove_common::record::{BlobMeta, BlobState};

    fn key(k: &str) -> Key {
        Key::new(k).unwrap()
    }

    /// The store's listing, decoded; it must end with its end frame.
    fn listed(store: &BlobStore) -> Vec<Listed> {
        let mut bytes = vec![];
        store
            .listing(|chunk| {
                bytes.extend_from_slice(&chunk);
                true
            })
            .unwrap();
        decode_all(&bytes).unwrap()
    }

    fn keys(store: &BlobStore) -> Vec<String> {
        listed(store).into_iter().map(|e| e.meta.key).collect()
    }

    fn in_set(store: &BlobStore, k: &str) -> bool {
        store.keys.contains(k.as_bytes())
    }

    async fn put(store: &Arc<BlobStore>, k: &str, value: &'static [u8], write: &str) -> BlobMeta {
        let expected = Expected {
            len: Some(value.len() as u64),
            write: Some(write.into()),
            ..Default::default()
        };
        let body = futures::stream::iter([Ok::<_, io::Error>(Bytes::from_static(value))]);
        store
            .write_stream(&key(k), body, expected, Duration::from_secs(5))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn lists_in_key_order_and_follows_every_change() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let dirs = vec![d1.path().to_path_buf(), d2.path().to_path_buf()];
        let store = Arc::new(BlobStore::open(dirs.clone(), false).unwrap());
        for (k, w) in [
            ("/b", "01"),
            ("/a", "02"),
            ("/c/d", "03"),
            ("/z", "04"),
            ("/y", "05"),
        ] {
            put(&store, k, b"hello", w).await;
        }
        store
            .set_state(&key("/a"), BlobState::Live, None, Some("aa".into()), Some("02"))
            .unwrap();
        assert_eq!(keys(&store), ["/a", "/b", "/c/d", "/y", "/z"]);
        let a = &listed(&store)[0];
        assert_eq!(
            (a.meta.state, a.meta.sha256.as_str(), a.meta.size),
            (BlobState::Live, "aa", 5)
        );
        assert_eq!(a.meta.write.as_deref(), Some("02"));
        assert!(a.servable() && a.meta.crc32c.is_none());

        // A delete and an abort that leave no file take the key out.
        assert!(store.delete(&key("/b")).unwrap());
        store.abort(&key("/z"), "04").unwrap();
        assert_eq!(keys(&store), ["/a", "/c/d", "/y"]);
        assert!(!in_set(&store, "/b") && !in_set(&store, "/z"));

        // A write over the confirmed /a, unconfirmed yet: the listing shows
        // the value kept aside; an abort puts it back, still listed.
        put(&store, "/a", b"other", "06").await;
        assert_eq!(listed(&store)[0].meta.write.as_deref(), Some("02"));
        store.abort(&key("/a"), "06").unwrap();
        assert_eq!(listed(&store)[0].meta.write.as_deref(), Some("02"));
        assert!(in_set(&store, "/a"));

        // Behind the store's back: a file removed is not listed (its key
        // stays in the set, harmlessly); one cut short is a fault.
        let data = |k: &str| {
            dirs.iter()
                .map(|d| BlobStore::paths_in(d, &key(k)).0)
                .find(|p| p.exists())
                .unwrap()
        };
        fs::remove_file(data("/c/d")).unwrap();
        fs::OpenOptions::new()
            .write(true)
            .open(data("/y"))
            .unwrap()
            .set_len(2)
            .unwrap();
        let now = listed(&store);
        assert_eq!(
            now.iter().map(|e| e.meta.key.as_str()).collect::<Vec<_>>(),
            ["/a", "/y"]
        );
        assert!(in_set(&store, "/c/d"));
        assert!(now[1]
            .fault
            .as_deref()
            .unwrap()
            .contains("is 2 bytes but its metadata says 5"));

        // Opening again makes the set from the blobs: the same listing,
        // and no key without a file.
        drop(store);
        let store = BlobStore::open(dirs, false).unwrap();
        assert_eq!(listed(&store), now);
        assert!(!in_set(&store, "/c/d"));
        // The walk described the confirmed /a, not /y, cut short: its
        // fault is found by reading it, each time.
        assert!(!description_of(&store, "/a").is_empty());
        assert!(description_of(&store, "/y").is_empty());
    }

    fn description_of(store: &BlobStore, k: &str) -> Description {
        store
            .keys
            .snapshot()
            .map(Result::unwrap)
            .find(|(key, _)| key.as_ref() == k.as_bytes())
            .map(|(_, d)| d)
            .unwrap()
    }

    #[tokio::test]
    async fn a_description_is_trusted_only_while_the_file_is_as_described() {
        let d = tempfile::tempdir().unwrap();
        let store = Arc::new(BlobStore::open(vec![d.path().to_path_buf()], false).unwrap());
        put(&store, "/a", b"hello", "01").await;
        // A master write is described once confirmed, not before.
        assert!(description_of(&store, "/a").is_empty());
        store
            .set_state(&key("/a"), BlobState::Live, None, Some("aa".into()), Some("01"))
            .unwrap();
        let described = description_of(&store, "/a");
        assert!(!described.is_empty());
        assert_eq!(listed(&store)[0].meta.sha256, "aa");

        // The listing takes the kept frame without reading the blob: a
        // frame planted with the file's own head is what it lists.
        let mut planted = described[..HEAD].to_vec();
        let mut fake = listed(&store)[0].clone();
        fake.meta.sha256 = "bb".into();
        put_frame(&mut planted, &fake);
        store.keys.describe(b"/a", planted.into());
        assert_eq!(listed(&store)[0].meta.sha256, "bb");

        // Any change to the file — here its mode, which only moves its
        // change time (once the clock's tick has passed) — and the blob is
        // read again.
        let data = BlobStore::paths_in(d.path(), &key("/a")).0;
        let ctime = |m: &fs::Metadata| (m.ctime(), m.ctime_nsec());
        let before = ctime(&fs::symlink_metadata(&data).unwrap());
        for mode in [0o600, 0o644].into_iter().cycle().take(200) {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&data, fs::Permissions::from_mode(mode)).unwrap();
            if ctime(&fs::symlink_metadata(&data).unwrap()) != before {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(listed(&store)[0].meta.sha256, "aa");
        // A description of a dir the store does not have is not used.
        let mut elsewhere = described.to_vec();
        elsewhere[0] = 7;
        store.keys.describe(b"/a", elsewhere.into());
        assert_eq!(listed(&store)[0].meta.sha256, "aa");
    }
}
