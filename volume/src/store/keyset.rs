//! The volume's key set: every key it holds a blob for, in key order, so
//! that `GET /-/listing` streams its blobs sorted without walking
//! directories or sorting anything (see [`super::listing`]).
//!
//! It is a one-level log-structured set, in `<first data dir>/listing/`:
//!
//! - `keys`, a *run*: the keys sorted, each a little-endian `u16` length
//!   and its bytes, after a magic line and before an end mark (a zero
//!   length) and the count. Written whole to a temp file and renamed in,
//!   then only read (a snapshot reads the file it opened, even after a
//!   newer run is renamed over it).
//! - in memory, the changes since that run was written: key → present or
//!   removed. When there are [`MERGE_AT`] of them, a background thread
//!   merges them into a new run while newer changes gather beside.
//!
//! Nothing is open for writing between merges, so the data dir can be
//! remounted read-only under a running volume.
//!
//! The set is only an index of the blobs, never their truth: it must hold
//! every key that has a file (a key without one is skipped when listed).
//! After a crash the in-memory changes are lost, so start-up makes the set
//! again from the blobs (the walk), sorting them in chunks of
//! [`LOAD_CHUNK`] keys spilled to runs and merged. After a clean shutdown
//! ([`KeySet::close`] wrote every change into the run and left a `clean`
//! mark with the store's counts) the run is trusted as it is, and start-up
//! does not depend on the number of blobs.

use super::StoreError;
use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The key set's folder inside the first data dir.
pub(super) const LISTING_DIR: &str = "listing";
const RUN_FILE: &str = "keys";
const CLEAN_FILE: &str = "clean";
const MAGIC: &[u8] = b"trove key set 1\n";
/// Changes kept in memory before they are merged into the run.
pub(super) const MERGE_AT: usize = 64 << 10;
/// Keys sorted in memory at a time while the set is made at start-up.
const LOAD_CHUNK: usize = 1 << 20;
const BUFFER: usize = 256 << 10;

/// A key and whether it is in the set (`false`: removed).
type Entry = (Box<[u8]>, bool);
type Changes = BTreeMap<Box<[u8]>, bool>;

/// What a clean shutdown leaves for the next start-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct CleanMark {
    /// The ids of the data dirs, in order: the run covers exactly these.
    pub dirs: Vec<String>,
    pub blobs: u64,
    pub bytes: u64,
}

/// The sorted set of keys a volume holds blobs for.
pub(super) struct KeySet {
    dir: PathBuf,
    state: Mutex<State>,
    /// Signalled when a merge ends.
    merged: Condvar,
}

struct State {
    run: Arc<Run>,
    /// Changes being merged into a new run by a background thread.
    merging: Option<Arc<Changes>>,
    /// Changes since (newer than `merging`).
    changes: Changes,
    /// After a failed merge (a full or read-only disk), changes wait for
    /// this many before the next try.
    merge_at: usize,
    /// Set by [`KeySet::close`]: no key may be added any more.
    closed: bool,
}

/// A run file, open for reading.
struct Run {
    file: File,
}

impl KeySet {
    /// The set a clean shutdown left in `dir`, if it covers data dirs
    /// `ids`, with the counts it recorded. The `clean` mark is removed
    /// (durably) first: from now on, a crash makes the next start-up walk.
    pub(super) fn reopen(dir: &Path, ids: &[String]) -> anyhow::Result<Option<(KeySet, CleanMark)>> {
        let mark_path = dir.join(CLEAN_FILE);
        let mark: CleanMark = match fs::read(&mark_path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(mark) => mark,
                Err(e) => {
                    tracing::warn!(error = %e, "the key set's clean mark does not parse: the blobs are listed again");
                    return Ok(None);
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if mark.dirs != ids {
            tracing::info!("the data dirs changed since the key set was written: the blobs are listed again");
            return Ok(None);
        }
        let run = match Run::open(&dir.join(RUN_FILE)) {
            Ok(run) => run,
            Err(e) => {
                tracing::warn!(error = %e, "the key set does not read: the blobs are listed again");
                return Ok(None);
            }
        };
        fs::remove_file(&mark_path)?;
        File::open(dir)?.sync_all()?;
        Ok(Some((KeySet::with_run(dir, run), mark)))
    }

    /// Starts the set again from nothing: `dir` is emptied and a
    /// [`Loader`] takes the keys of the start-up walk.
    pub(super) fn load(dir: &Path) -> anyhow::Result<Loader> {
        use anyhow::Context;
        if dir.exists() {
            fs::remove_dir_all(dir)
                .with_context(|| format!("cannot clear the old key set {}", dir.display()))?;
        }
        fs::create_dir_all(dir).with_context(|| format!("cannot create the key set {}", dir.display()))?;
        Ok(Loader {
            dir: dir.to_path_buf(),
            chunk: Vec::new(),
            spilled: Vec::new(),
        })
    }

    fn with_run(dir: &Path, run: Run) -> KeySet {
        KeySet {
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                run: Arc::new(run),
                merging: None,
                changes: Changes::new(),
                merge_at: MERGE_AT,
                closed: false,
            }),
            merged: Condvar::new(),
        }
    }

    /// Adds `key`; refused once the set is closed.
    pub(super) fn insert(self: &Arc<Self>, key: &[u8]) -> Result<(), StoreError> {
        let mut state = self.state.lock();
        if state.closed {
            return Err(StoreError::Io(io::Error::other("the volume is shutting down")));
        }
        state.changes.insert(key.into(), true);
        self.merge_if_due(&mut state);
        Ok(())
    }

    /// Removes `key` (after its last file is gone).
    pub(super) fn remove(self: &Arc<Self>, key: &[u8]) {
        let mut state = self.state.lock();
        state.changes.insert(key.into(), false);
        if !state.closed {
            self.merge_if_due(&mut state);
        }
    }

    /// Whether `key` is in the set. Reads the run: for tests.
    #[cfg(test)]
    pub(super) fn contains(&self, key: &[u8]) -> bool {
        self.snapshot().any(|k| k.unwrap().as_ref() == key)
    }

    /// The keys in the set at this moment, in order (changes made after
    /// this call are not seen). Reading the run can fail.
    pub(super) fn snapshot(&self) -> impl Iterator<Item = io::Result<Box<[u8]>>> + Send + use<> {
        let state = self.state.lock();
        let changes: Vec<Entry> = state.changes.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let merging: Vec<Entry> = state
            .merging
            .iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k.clone(), *v)))
            .collect();
        let run = state.run.entries();
        drop(state);
        Merge::new(vec![
            Box::new(changes.into_iter().map(Ok)),
            Box::new(merging.into_iter().map(Ok)),
            Box::new(run),
        ])
        .present()
    }

    /// Hands the changes to a background merge when there are enough and
    /// no merge is running.
    fn merge_if_due(self: &Arc<Self>, state: &mut State) {
        if state.changes.len() < state.merge_at || state.merging.is_some() {
            return;
        }
        let changes = Arc::new(std::mem::take(&mut state.changes));
        state.merging = Some(Arc::clone(&changes));
        let (set, run) = (Arc::clone(self), Arc::clone(&state.run));
        std::thread::Builder::new()
            .name("key-set-merge".into())
            .spawn(move || {
                let merged = set.write_merged(&run, &changes);
                set.merge_done(merged, &changes);
            })
            .expect("can start a thread");
    }

    /// A new run: `run` with `changes` applied.
    fn write_merged(&self, run: &Arc<Run>, changes: &Changes) -> io::Result<Run> {
        let changes = changes.iter().map(|(k, v)| Ok((k.clone(), *v)));
        let merged = Merge::new(vec![Box::new(changes), Box::new(run.entries())]).present();
        let path = self.dir.join(RUN_FILE);
        write_run(&self.dir.join("keys.tmp"), merged)?;
        fs::rename(self.dir.join("keys.tmp"), &path)?;
        Run::open(&path)
    }

    fn merge_done(&self, merged: io::Result<Run>, changes: &Changes) {
        let mut state = self.state.lock();
        state.merging = None;
        match merged {
            Ok(run) => {
                state.run = Arc::new(run);
                state.merge_at = MERGE_AT;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot merge the key set's changes; they stay in memory");
                for (k, v) in changes {
                    state.changes.entry(k.clone()).or_insert(*v);
                }
                state.merge_at = state.changes.len() + MERGE_AT;
            }
        }
        self.merged.notify_all();
    }

    /// Closes the set for a clean shutdown: no key can be added any more,
    /// every change goes into the run, and the `clean` mark records
    /// `mark`, so that the next start-up trusts the run. Blocking.
    pub(super) fn close(&self, mark: &CleanMark) -> io::Result<()> {
        let mut state = self.state.lock();
        state.closed = true;
        while state.merging.is_some() {
            self.merged.wait(&mut state);
        }
        if !state.changes.is_empty() {
            let run = self.write_merged(&state.run, &state.changes)?;
            state.run = Arc::new(run);
            state.changes.clear();
        }
        state.run.file.sync_all()?;
        let temp = self.dir.join("clean.tmp");
        let mut file = File::create(&temp)?;
        file.write_all(&serde_json::to_vec(mark).map_err(io::Error::other)?)?;
        file.sync_all()?;
        fs::rename(&temp, self.dir.join(CLEAN_FILE))?;
        File::open(&self.dir)?.sync_all()
    }
}

/// Makes a fresh [`KeySet`] from the keys of the start-up walk, in any
/// order, with duplicates (a key can have copies in two data dirs).
pub(super) struct Loader {
    dir: PathBuf,
    chunk: Vec<Box<[u8]>>,
    spilled: Vec<PathBuf>,
}

impl Loader {
    pub(super) fn add(&mut self, key: &str) -> io::Result<()> {
        self.chunk.push(key.as_bytes().into());
        if self.chunk.len() >= LOAD_CHUNK {
            self.spill()?;
        }
        Ok(())
    }

    /// Writes the chunk sorted to a run of its own.
    fn spill(&mut self) -> io::Result<()> {
        let path = self.dir.join(format!("load-{}", self.spilled.len()));
        write_run(&path, sorted(std::mem::take(&mut self.chunk)))?;
        self.spilled.push(path);
        Ok(())
    }

    pub(super) fn finish(mut self) -> io::Result<KeySet> {
        let path = self.dir.join(RUN_FILE);
        if self.spilled.is_empty() {
            write_run(&path, sorted(std::mem::take(&mut self.chunk)))?;
        } else {
            self.spill()?;
            let runs = self
                .spilled
                .iter()
                .map(|p| Run::open(p).map(Arc::new))
                .collect::<io::Result<Vec<_>>>()?;
            let sources = runs.iter().map(|r| Box::new(r.entries()) as Source).collect();
            write_run(&path, Merge::new(sources).present())?;
            for p in &self.spilled {
                fs::remove_file(p)?;
            }
        }
        Ok(KeySet::with_run(&self.dir, Run::open(&path)?))
    }
}

fn sorted(mut keys: Vec<Box<[u8]>>) -> impl Iterator<Item = io::Result<Box<[u8]>>> {
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter().map(Ok)
}

/// Writes `keys` (sorted) as a run at `path`, synced.
fn write_run(path: &Path, keys: impl Iterator<Item = io::Result<Box<[u8]>>>) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(BUFFER, File::create(path)?);
    out.write_all(MAGIC)?;
    let mut count = 0u64;
    for key in keys {
        let key = key?;
        let len = u16::try_from(key.len()).map_err(|_| io::Error::other("a key too long for the key set"))?;
        out.write_all(&len.to_le_bytes())?;
        out.write_all(&key)?;
        count += 1;
    }
    out.write_all(&0u16.to_le_bytes())?;
    out.write_all(&count.to_le_bytes())?;
    out.into_inner().map_err(|e| e.into_error())?.sync_data()
}

impl Run {
    fn open(path: &Path) -> io::Result<Run> {
        let file = File::open(path)?;
        let mut magic = [0; MAGIC.len()];
        file.read_exact_at(&mut magic, 0)?;
        if magic != MAGIC {
            return Err(io::Error::other(format!("{} is not a key set", path.display())));
        }
        Ok(Run { file })
    }

    /// The run's keys, read from the start (each reader has its own
    /// position in the file).
    fn entries(self: &Arc<Self>) -> RunReader {
        RunReader {
            input: BufReader::with_capacity(
                BUFFER,
                At {
                    run: Arc::clone(self),
                    pos: MAGIC.len() as u64,
                },
            ),
            done: false,
        }
    }
}

/// Reads a run at its own offset (`pread`), so readers never share one.
struct At {
    run: Arc<Run>,
    pos: u64,
}

impl Read for At {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.run.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

struct RunReader {
    input: BufReader<At>,
    done: bool,
}

impl RunReader {
    fn next_key(&mut self) -> io::Result<Option<Box<[u8]>>> {
        let mut len = [0; 2];
        self.input.read_exact(&mut len)?;
        let len = u16::from_le_bytes(len) as usize;
        if len == 0 {
            // The end mark; the count after it is for people with a hex dump.
            return Ok(None);
        }
        let mut key = vec![0; len];
        self.input.read_exact(&mut key)?;
        Ok(Some(key.into()))
    }
}

impl Iterator for RunReader {
    type Item = io::Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_key() {
            Ok(Some(key)) => Some(Ok((key, true))),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                let e = if e.kind() == io::ErrorKind::UnexpectedEof {
                    io::Error::other("the key set's run is cut short")
                } else {
                    e
                };
                Some(Err(e))
            }
        }
    }
}

type Source<'a> = Box<dyn Iterator<Item = io::Result<Entry>> + Send + 'a>;

/// Merges sorted sources into one sorted stream; where several hold a
/// key, the first source's entry wins (sources go newest first).
struct Merge<'a> {
    sources: Vec<Source<'a>>,
    heads: Vec<Option<Entry>>,
    started: bool,
}

impl<'a> Merge<'a> {
    fn new(sources: Vec<Source<'a>>) -> Merge<'a> {
        let heads = sources.iter().map(|_| None).collect();
        Merge {
            sources,
            heads,
            started: false,
        }
    }

    /// The keys present, without the removals.
    fn present(self) -> impl Iterator<Item = io::Result<Box<[u8]>>> + Send + 'a {
        self.filter_map(|entry| match entry {
            Ok((key, true)) => Some(Ok(key)),
            Ok((_, false)) => None,
            Err(e) => Some(Err(e)),
        })
    }

    fn advance(&mut self, i: usize) -> io::Result<()> {
        self.heads[i] = self.sources[i].next().transpose()?;
        Ok(())
    }
}

impl Iterator for Merge<'_> {
    type Item = io::Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.started {
            self.started = true;
            for i in 0..self.sources.len() {
                if let Err(e) = self.advance(i) {
                    return Some(Err(e));
                }
            }
        }
        // The smallest head; on a tie the first source's (strict `<`).
        let mut first: Option<usize> = None;
        for (i, head) in self.heads.iter().enumerate() {
            if let Some((key, _)) = head {
                if first.is_none_or(|f| key < &self.heads[f].as_ref().expect("a head").0) {
                    first = Some(i);
                }
            }
        }
        let first = first?;
        let entry = self.heads[first].take().expect("a head");
        for i in first..self.heads.len() {
            let same = i == first || self.heads[i].as_ref().is_some_and(|(k, _)| *k == entry.0);
            if same {
                if let Err(e) = self.advance(i) {
                    return Some(Err(e));
                }
            }
        }
        Some(Ok(entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(set: &KeySet) -> Vec<String> {
        set.snapshot()
            .map(|k| String::from_utf8(k.unwrap().into()).unwrap())
            .collect()
    }

    fn loaded(dir: &Path, keys: &[&str]) -> Arc<KeySet> {
        let mut loader = KeySet::load(dir).unwrap();
        for k in keys {
            loader.add(k).unwrap();
        }
        Arc::new(loader.finish().unwrap())
    }

    fn wait_merged(set: &KeySet) {
        let mut state = set.state.lock();
        while state.merging.is_some() {
            set.merged.wait(&mut state);
        }
    }

    #[test]
    fn loads_sorted_without_duplicates_and_follows_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(LISTING_DIR);
        let set = loaded(&dir, &["/c", "/a", "/b", "/a", "/a/b"]);
        assert_eq!(keys(&set), ["/a", "/a/b", "/b", "/c"]);
        set.insert(b"/0").unwrap();
        set.remove(b"/b");
        set.remove(b"/never");
        set.insert(b"/d").unwrap();
        // A snapshot does not see what changes after it is taken.
        let before = set.snapshot();
        set.remove(b"/d");
        assert_eq!(before.count(), 5);
        assert_eq!(keys(&set), ["/0", "/a", "/a/b", "/c"]);
        assert!(set.contains(b"/a/b") && !set.contains(b"/b"));
    }

    #[test]
    fn merges_changes_into_a_new_run_while_snapshots_read_the_old() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(LISTING_DIR);
        let set = loaded(&dir, &["/keep", "/gone"]);
        let old = set.snapshot();
        set.remove(b"/gone");
        // With the removal, MERGE_AT changes: a merge starts.
        for i in 1..MERGE_AT {
            set.insert(format!("/k/{i:06}").as_bytes()).unwrap();
        }
        wait_merged(&set);
        {
            let state = set.state.lock();
            assert!(state.changes.is_empty(), "the changes went into the run");
        }
        let now = keys(&set);
        assert_eq!(now.len(), MERGE_AT);
        assert_eq!(now.last().unwrap(), "/keep");
        assert!(now.windows(2).all(|w| w[0] < w[1]));
        // The snapshot taken before still reads the run it started on.
        let old: Vec<_> = old.map(Result::unwrap).collect();
        assert_eq!(old, [b"/gone".as_slice().into(), b"/keep".as_slice().into()]);
    }

    #[test]
    fn a_clean_close_is_trusted_once_and_a_crash_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(LISTING_DIR);
        let ids = vec!["d1".to_string()];
        let set = loaded(&dir, &["/a"]);
        set.insert(b"/b").unwrap();
        let mark = CleanMark {
            dirs: ids.clone(),
            blobs: 2,
            bytes: 10,
        };
        set.close(&mark).unwrap();
        assert!(set.insert(b"/late").is_err(), "no key is added once closed");
        drop(set);

        let (set, got) = KeySet::reopen(&dir, &ids).unwrap().expect("trusted");
        assert_eq!(got, mark);
        assert_eq!(keys(&set), ["/a", "/b"]);
        drop(set);
        // The mark was used up: without another clean close, walk again.
        assert!(KeySet::reopen(&dir, &ids).unwrap().is_none());
        // Other data dirs than the run covers: walk again.
        let set = loaded(&dir, &["/a"]);
        set.close(&mark).unwrap();
        assert!(KeySet::reopen(&dir, &["d2".to_string()]).unwrap().is_none());
    }

    #[test]
    fn loads_more_keys_than_one_chunk_holds() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(LISTING_DIR);
        let mut loader = KeySet::load(&dir).unwrap();
        let n = LOAD_CHUNK + 10;
        for i in (0..n).rev() {
            loader.add(&format!("/{i:08}")).unwrap();
        }
        loader.add("/00000005").unwrap();
        let set = loader.finish().unwrap();
        let got: Vec<_> = set.snapshot().map(Result::unwrap).collect();
        assert_eq!(got.len(), n);
        assert!(got.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "only the run is left");
    }

    #[test]
    fn a_run_cut_short_is_an_error_not_a_shorter_listing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(LISTING_DIR);
        let set = loaded(&dir, &["/a", "/b", "/c"]);
        let path = dir.join(RUN_FILE);
        let len = fs::metadata(&path).unwrap().len();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 12)
            .unwrap();
        let listed: Vec<_> = set.snapshot().collect();
        assert!(listed.last().unwrap().is_err(), "{listed:?}");
    }
}
