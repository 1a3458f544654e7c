//! The key index: RocksDB, key bytes → [`Record`] JSON.
//!
//! RocksDB's default comparator is bytewise, which is exactly the order
//! listings promise. Writes are synced to the WAL unless `--no-fsync`, so a
//! `201` survives a crash of the master. Point reads (`get`) run inline
//! (memtable or block cache); writes, listings and scans run on tokio's
//! blocking pool.

use rocksdb::{BlockBasedOptions, Cache, Direction, IteratorMode, Options, WriteOptions, DB};
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use trove_common::key::Key;
use trove_common::record::{Record, RecordError, State};

/// Index failures (the master answers `500` to these).
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index (RocksDB) error: {0}")]
    Db(#[from] rocksdb::Error),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("index task failed: {0}")]
    Task(String),
}

/// How many keys are in each state.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct KeyCounts {
    pub live: i64,
    pub writing: i64,
    pub unlinked: i64,
}

/// One page of a listing.
#[derive(Debug, Default, PartialEq)]
pub struct Page {
    pub keys: Vec<String>,
    /// The first matching key not returned, if any.
    pub next: Option<String>,
}

/// The RocksDB index. Cheap to clone.
#[derive(Clone)]
pub struct Index {
    inner: Arc<Inner>,
}

struct Inner {
    db: DB,
    sync: bool,
    live: AtomicI64,
    writing: AtomicI64,
    unlinked: AtomicI64,
}

impl Index {
    /// Opens (creating if missing) the index at `path` and counts its keys.
    pub fn open(path: &Path, sync: bool) -> Result<Index, IndexError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        // Records are ~200 bytes: small buffers keep the master's memory low.
        opts.set_write_buffer_size(8 << 20);
        opts.set_max_write_buffer_number(2);
        opts.set_keep_log_file_num(4);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&Cache::new_lru_cache(8 << 20));
        opts.set_block_based_table_factory(&table);
        let db = DB::open(&opts, path)?;
        let index = Index {
            inner: Arc::new(Inner {
                db,
                sync,
                live: AtomicI64::new(0),
                writing: AtomicI64::new(0),
                unlinked: AtomicI64::new(0),
            }),
        };
        for item in index.inner.db.iterator(IteratorMode::Start) {
            let (_, value) = item?;
            index.count(Some(Record::decode(&value)?.state), 1);
        }
        Ok(index)
    }

    fn count(&self, state: Option<State>, delta: i64) {
        let counter = match state {
            Some(State::Live) => &self.inner.live,
            Some(State::Writing) => &self.inner.writing,
            Some(State::Unlinked) => &self.inner.unlinked,
            None => return,
        };
        counter.fetch_add(delta, Ordering::Relaxed);
    }

    /// Keys per state.
    pub fn counts(&self) -> KeyCounts {
        KeyCounts {
            live: self.inner.live.load(Ordering::Relaxed),
            writing: self.inner.writing.load(Ordering::Relaxed),
            unlinked: self.inner.unlinked.load(Ordering::Relaxed),
        }
    }

    /// RocksDB's estimate of the live data size on disk, in bytes.
    pub fn disk_size(&self) -> u64 {
        self.inner
            .db
            .property_int_value("rocksdb.total-sst-files-size")
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    /// The record of `key`, if any. Fast (memtable / block cache).
    pub fn get(&self, key: &Key) -> Result<Option<Record>, IndexError> {
        match self.inner.db.get_pinned(key.as_bytes())? {
            Some(v) => Ok(Some(Record::decode(&v)?)),
            None => Ok(None),
        }
    }

    fn write_opts(&self) -> WriteOptions {
        let mut w = WriteOptions::default();
        w.set_sync(self.inner.sync);
        w
    }

    /// Stores `record` for `key`. `previous` is the state the caller saw
    /// under the key's lock (for the counts).
    pub async fn put(&self, key: &Key, record: Record, previous: Option<State>) -> Result<(), IndexError> {
        let this = self.clone();
        let k = key.clone();
        tokio::task::spawn_blocking(move || {
            this.inner
                .db
                .put_opt(k.as_bytes(), record.encode(), &this.write_opts())?;
            this.count(previous, -1);
            this.count(Some(record.state), 1);
            Ok(())
        })
        .await
        .map_err(|e| IndexError::Task(e.to_string()))?
    }

    /// Removes `key`'s record.
    pub async fn remove(&self, key: &Key, previous: Option<State>) -> Result<(), IndexError> {
        let this = self.clone();
        let k = key.clone();
        tokio::task::spawn_blocking(move || {
            this.inner.db.delete_opt(k.as_bytes(), &this.write_opts())?;
            this.count(previous, -1);
            Ok(())
        })
        .await
        .map_err(|e| IndexError::Task(e.to_string()))?
    }

    /// Up to `limit` keys in `state` that start with `prefix`, from `start`
    /// (inclusive) on, in bytewise order.
    pub async fn list(
        &self,
        prefix: String,
        start: Option<String>,
        limit: usize,
        state: State,
    ) -> Result<Page, IndexError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.list_blocking(&prefix, start.as_deref(), limit, state))
            .await
            .map_err(|e| IndexError::Task(e.to_string()))?
    }

    /// Writes many records at once (for `rebuild`, into a fresh index).
    /// Blocking.
    pub fn import(&self, records: Vec<(Key, Record)>) -> Result<(), IndexError> {
        let mut batch = rocksdb::WriteBatch::default();
        for (key, record) in &records {
            batch.put(key.as_bytes(), record.encode());
        }
        self.inner.db.write_opt(batch, &self.write_opts())?;
        for (_, record) in &records {
            self.count(Some(record.state), 1);
        }
        Ok(())
    }

    /// Up to `limit` records after `after` (exclusive), in key order: how
    /// admin jobs walk the whole index in pages, holding no iterator (and
    /// no snapshot) between pages.
    pub async fn scan(&self, after: Option<String>, limit: usize) -> Result<Vec<(Key, Record)>, IndexError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let mode = match &after {
                Some(a) => IteratorMode::From(a.as_bytes(), Direction::Forward),
                None => IteratorMode::Start,
            };
            let mut out = Vec::with_capacity(limit);
            for item in this.inner.db.iterator(mode) {
                let (k, v) = item?;
                if after.as_deref().is_some_and(|a| a.as_bytes() == &*k) {
                    continue;
                }
                let Ok(key) = std::str::from_utf8(&k)
                    .map_err(|_| ())
                    .and_then(|s| Key::new(s).map_err(|_| ()))
                else {
                    tracing::warn!(key = ?String::from_utf8_lossy(&k), "index holds an invalid key; skipped");
                    continue;
                };
                out.push((key, Record::decode(&v)?));
                if out.len() == limit {
                    break;
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| IndexError::Task(e.to_string()))?
    }

    fn list_blocking(
        &self,
        prefix: &str,
        start: Option<&str>,
        limit: usize,
        state: State,
    ) -> Result<Page, IndexError> {
        let from = match start {
            Some(s) if s > prefix => s,
            _ => prefix,
        };
        let mut page = Page::default();
        let iter = self
            .inner
            .db
            .iterator(IteratorMode::From(from.as_bytes(), Direction::Forward));
        for item in iter {
            let (key, value) = item?;
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            if Record::decode(&value)?.state != state {
                continue;
            }
            let key = String::from_utf8_lossy(&key).into_owned();
            if page.keys.len() == limit {
                page.next = Some(key);
                break;
            }
            page.keys.push(key);
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(state: State) -> Record {
        Record {
            state,
            volumes: vec!["v:1".into()],
            size: 1,
            sha256: "s".into(),
            md5: "m".into(),
            created: 0,
            damaged: vec![],
            write: None,
            replaces: None,
        }
    }

    fn key(k: &str) -> Key {
        Key::new(k).unwrap()
    }

    #[tokio::test]
    async fn stores_lists_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path(), false).unwrap();
        for k in ["/a/1", "/a/2", "/a/3", "/b/1", "/a0"] {
            index.put(&key(k), rec(State::Live), None).await.unwrap();
        }
        index
            .put(&key("/a/2"), rec(State::Unlinked), Some(State::Live))
            .await
            .unwrap();
        assert_eq!(index.get(&key("/a/2")).unwrap().unwrap().state, State::Unlinked);
        assert!(index.get(&key("/zz")).unwrap().is_none());

        let all = index.list("/a/".into(), None, 10, State::Live).await.unwrap();
        assert_eq!(
            all,
            Page {
                keys: vec!["/a/1".into(), "/a/3".into()],
                next: None
            }
        );
        let first = index.list("/".into(), None, 2, State::Live).await.unwrap();
        assert_eq!(first.keys, vec!["/a/1", "/a/3"]);
        assert_eq!(first.next.as_deref(), Some("/a0"));
        let rest = index.list("/".into(), first.next, 2, State::Live).await.unwrap();
        assert_eq!(
            rest,
            Page {
                keys: vec!["/a0".into(), "/b/1".into()],
                next: None
            }
        );
        let unlinked = index.list("/".into(), None, 10, State::Unlinked).await.unwrap();
        assert_eq!(unlinked.keys, vec!["/a/2"]);
        // A start before the prefix is the prefix.
        let before = index
            .list("/b".into(), Some("/a".into()), 10, State::Live)
            .await
            .unwrap();
        assert_eq!(before.keys, vec!["/b/1"]);

        index.remove(&key("/a/2"), Some(State::Unlinked)).await.unwrap();
        let c = index.counts();
        assert_eq!((c.live, c.unlinked, c.writing), (4, 0, 0));
        drop(index);
        // Counts are rebuilt on open.
        let index = Index::open(dir.path(), false).unwrap();
        assert_eq!(index.counts().live, 4);
    }
}
