//! The volume's key set: every key it holds a blob for, in key order, so
//! that `GET /-/listing` streams its blobs sorted without walking
//! directories or sorting anything (see [`super::listing`]).
//!
//! Each key carries a *description*: bytes the set keeps for it without
//! looking inside (empty when there is none). The store keeps there what
//! the listing would read from the blob, with what it needs to tell
//! whether the blob changed since ([`super::listing`]), so that a listing
//! reads no blob's metadata.
//!
//! It is a one-level log-structured set, in `<first data dir>/listing/`:
//!
//! - `keys`, a *run*: the keys sorted, each a little-endian `u16` length
//!   and its bytes, then its description the same way, after a magic line
//!   and before an end mark (a zero length) and the count. Written whole
//!   to a temp file and renamed in, then only read (a snapshot reads the
//!   file it opened, even after a newer run is renamed over it).
//! - in memory, the changes since that run was written: key → present
//!   (with its description) or removed. When there are enough of them
//!   ([`MERGE_AT`], or a sixteenth of the run for a large one, up to
//!   [`MERGE_AT_MOST`]: a merge rewrites the whole run, so a large set
//!   gathers more changes per merge), a background thread merges them
//!   into a new run while newer changes gather beside.
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
/// Version 1 (keys only) is not read: a volume that finds one walks its
/// blobs once and writes version 2.
const MAGIC: &[u8] = b"trove key set 2\n";
/// Changes kept in memory before they are merged into the run.
pub(super) const MERGE_AT: usize = 64 << 10;
/// The most changes kept in memory between merges (~200 MiB of them).
const MERGE_AT_MOST: usize = 1 << 20;
/// Keys sorted in memory at a time while the set is made at start-up.
const LOAD_CHUNK: usize = 1 << 20;
/// ... or this many bytes of their descriptions (~400,000 blobs' worth:
/// the walk's memory stays near 100 MiB whatever the number of blobs).
const LOAD_DESCRIBED: usize = 64 << 20;
const BUFFER: usize = 256 << 10;

/// What the set keeps for a key: opaque to it; empty for nothing.
pub(super) type Description = Arc<[u8]>;
/// A key and its description, or `None` when it was removed.
type Entry = (Box<[u8]>, Option<Description>);
type Changes = BTreeMap<Box<[u8]>, Option<Description>>;

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
    /// Its keys, as its tail says.
    count: u64,
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
            described: 0,
            spilled: Vec::new(),
        })
    }

    fn with_run(dir: &Path, run: Run) -> KeySet {
        let merge_at = run.merge_at();
        KeySet {
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                run: Arc::new(run),
                merging: None,
                changes: Changes::new(),
                merge_at,
                closed: false,
            }),
            merged: Condvar::new(),
        }
    }

    /// Adds `key`, without a description (any it had is dropped);
    /// refused once the set is closed.
    pub(super) fn insert(self: &Arc<Self>, key: &[u8]) -> Result<(), StoreError> {
        if self.describe(key, Description::from([])) {
            Ok(())
        } else {
            Err(StoreError::Io(io::Error::other("the volume is shutting down")))
        }
    }

    /// Adds `key` with `description` (replacing the one it had): whether
    /// it was taken (not once the set is closed).
    pub(super) fn describe(self: &Arc<Self>, key: &[u8], description: Description) -> bool {
        let mut state = self.state.lock();
        if state.closed {
            return false;
        }
        state.changes.insert(key.into(), Some(description));
        self.merge_if_due(&mut state);
        true
    }

    /// Removes `key` (after its last file is gone).
    pub(super) fn remove(self: &Arc<Self>, key: &[u8]) {
        let mut state = self.state.lock();
        state.changes.insert(key.into(), None);
        if !state.closed {
            self.merge_if_due(&mut state);
        }
    }

    /// Whether `key` is in the set. Reads the run: for tests.
    #[cfg(test)]
    pub(super) fn contains(&self, key: &[u8]) -> bool {
        self.snapshot().any(|k| k.unwrap().0.as_ref() == key)
    }

    /// The keys in the set at this moment, in order, with their
    /// descriptions (changes made after this call are not seen). Reading
    /// the run can fail.
    pub(super) fn snapshot(
        &self,
    ) -> impl Iterator<Item = io::Result<(Box<[u8]>, Description)>> + Send + use<> {
        let state = self.state.lock();
        let changes: Vec<Entry> = state
            .changes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let merging: Vec<Entry> = state
            .merging
            .iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())))
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
        let changes = changes.iter().map(|(k, v)| Ok((k.clone(), v.clone())));
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
                state.merge_at = run.merge_at();
                state.run = Arc::new(run);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot merge the key set's changes; they stay in memory");
                for (k, v) in changes {
                    state.changes.entry(k.clone()).or_insert_with(|| v.clone());
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
/// order, with duplicates (a key can have copies in two data dirs: such a
/// key keeps no description, as neither copy's alone describes it).
pub(super) struct Loader {
    dir: PathBuf,
    chunk: Vec<(Box<[u8]>, Description)>,
    /// Bytes of descriptions in `chunk`.
    described: usize,
    spilled: Vec<PathBuf>,
}

impl Loader {
    pub(super) fn add(&mut self, key: &str, description: Description) -> io::Result<()> {
        self.described += description.len();
        self.chunk.push((key.as_bytes().into(), description));
        if self.chunk.len() >= LOAD_CHUNK || self.described >= LOAD_DESCRIBED {
            self.spill()?;
        }
        Ok(())
    }

    /// Writes the chunk sorted to a run of its own.
    fn spill(&mut self) -> io::Result<()> {
        let path = self.dir.join(format!("load-{}", self.spilled.len()));
        self.described = 0;
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
            let mut merge = Merge::new(sources);
            merge.ties_undescribed = true;
            write_run(&path, merge.present())?;
            for p in &self.spilled {
                fs::remove_file(p)?;
            }
        }
        Ok(KeySet::with_run(&self.dir, Run::open(&path)?))
    }
}

/// `keys` sorted, each once; a key added more than once keeps no
/// description.
fn sorted(
    mut keys: Vec<(Box<[u8]>, Description)>,
) -> impl Iterator<Item = io::Result<(Box<[u8]>, Description)>> {
    keys.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    keys.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            kept.1 = Description::from([]);
        }
        same
    });
    keys.into_iter().map(Ok)
}

/// Writes `keys` (sorted) as a run at `path`, synced.
fn write_run(
    path: &Path,
    keys: impl Iterator<Item = io::Result<(Box<[u8]>, Description)>>,
) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(BUFFER, File::create(path)?);
    out.write_all(MAGIC)?;
    let mut count = 0u64;
    for entry in keys {
        let (key, description) = entry?;
        let len = u16::try_from(key.len()).map_err(|_| io::Error::other("a key too long for the key set"))?;
        // A description too long to keep is dropped: the key stays.
        let kept: &[u8] = if description.len() <= u16::MAX as usize {
            &description
        } else {
            &[]
        };
        out.write_all(&len.to_le_bytes())?;
        out.write_all(&key)?;
        out.write_all(&(kept.len() as u16).to_le_bytes())?;
        out.write_all(kept)?;
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
        let mut count = [0; 8];
        let len = file.metadata()?.len();
        file.read_exact_at(&mut count, len.saturating_sub(8).max(MAGIC.len() as u64))?;
        Ok(Run {
            file,
            count: u64::from_le_bytes(count),
        })
    }

    /// Changes to gather before merging them into this run.
    fn merge_at(&self) -> usize {
        usize::try_from(self.count / 16)
            .unwrap_or(usize::MAX)
            .clamp(MERGE_AT, MERGE_AT_MOST)
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
    fn next_key(&mut self) -> io::Result<Option<(Box<[u8]>, Description)>> {
        let len = self.length()?;
        if len == 0 {
            // The end mark; the count after it is for people with a hex dump.
            return Ok(None);
        }
        let mut key = vec![0; len];
        self.input.read_exact(&mut key)?;
        let mut description = vec![0; self.length()?];
        self.input.read_exact(&mut description)?;
        Ok(Some((key.into(), description.into())))
    }

    fn length(&mut self) -> io::Result<usize> {
        let mut len = [0; 2];
        self.input.read_exact(&mut len)?;
        Ok(u16::from_le_bytes(len) as usize)
    }
}

impl Iterator for RunReader {
    type Item = io::Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_key() {
            Ok(Some((key, description))) => Some(Ok((key, Some(description)))),
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
/// key, the first source's entry wins (sources go newest first) — or,
/// with `ties_undescribed` (sources of equal standing), it is kept without
/// a description.
struct Merge<'a> {
    sources: Vec<Source<'a>>,
    heads: Vec<Option<Entry>>,
    started: bool,
    ties_undescribed: bool,
}

impl<'a> Merge<'a> {
    fn new(sources: Vec<Source<'a>>) -> Merge<'a> {
        let heads = sources.iter().map(|_| None).collect();
        Merge {
            sources,
            heads,
            started: false,
            ties_undescribed: false,
        }
    }

    /// The keys present, with their descriptions, without the removals.
    fn present(self) -> impl Iterator<Item = io::Result<(Box<[u8]>, Description)>> + Send + 'a {
        self.filter_map(|entry| match entry {
            Ok((key, Some(description))) => Some(Ok((key, description))),
            Ok((_, None)) => None,
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
        let mut entry = self.heads[first].take().expect("a head");
        for i in first..self.heads.len() {
            let same = i == first || self.heads[i].as_ref().is_some_and(|(k, _)| *k == entry.0);
            if same {
                if i != first && self.ties_undescribed {
                    entry.1 = entry.1.map(|_| Description::from([]));
                }
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
            .map(|k| String::from_utf8(k.unwrap().0.into()).unwrap())
            .collect()
    }

    /// Every key's description, as text.
    fn described(set: &KeySet) -> Vec<(String, String)> {
        set.snapshot()
            .map(|k| {
                let (k, d) = k.unwrap();
                (
                    String::from_utf8(k.into()).unwrap(),
                    String::from_utf8(d.to_vec()).unwrap(),
                )
            })
            .collect()
    }

    fn description(text: &str) -> Description {
        text.as_bytes().into()
    }

    fn loaded(dir: &Path, keys: &[&str]) -> Arc<KeySet> {
        let mut loader = KeySet::load(dir).unwrap();
        for k in keys {
            loader.add(k, description(&format!("of {k}"))).unwrap();
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
    fn descriptions_follow_their_keys_through_merges_and_a_clean_close() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(LISTING_DIR);
        // Loaded twice (two data dirs): no description.
        let set = loaded(&dir, &["/a", "/b", "/a"]);
        assert_eq!(
            described(&set),
            [("/a".into(), "".into()), ("/b".into(), "of /b".into())]
        );
        assert!(set.describe(b"/a", description("a2")));
        // Added again for a new write: the old description no longer holds.
        set.insert(b"/b").unwrap();
        assert!(set.describe(b"/c", description("c1")));
        let expected: Vec<(String, String)> = vec![
            ("/a".into(), "a2".into()),
            ("/b".into(), "".into()),
            ("/c".into(), "c1".into()),
        ];
        assert_eq!(described(&set), expected);
        let ids = vec!["d1".to_string()];
        let mark = CleanMark {
            dirs: ids.clone(),
            blobs: 3,
            bytes: 0,
        };
        set.close(&mark).unwrap();
        assert!(!set.describe(b"/d", description("late")), "closed");
        drop(set);
        let (set, _) = KeySet::reopen(&dir, &ids).unwrap().expect("trusted");
        assert_eq!(described(&set), expected);
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
        let old: Vec<_> = old.map(|k| k.unwrap().0).collect();
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
    fn a_version_1_run_left_by_a_clean_stop_is_walked_again() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(LISTING_DIR);
        fs::create_dir_all(&dir).unwrap();
        // What the previous version wrote: keys only, its own magic line.
        let mut v1 = b"trove key set 1\n".to_vec();
        v1.extend_from_slice(&2u16.to_le_bytes());
        v1.extend_from_slice(b"/a");
        v1.extend_from_slice(&0u16.to_le_bytes());
        v1.extend_from_slice(&1u64.to_le_bytes());
        fs::write(dir.join(RUN_FILE), v1).unwrap();
        let ids = vec!["d1".to_string()];
        let mark = CleanMark {
            dirs: ids.clone(),
            blobs: 1,
            bytes: 0,
        };
        fs::write(dir.join(CLEAN_FILE), serde_json::to_vec(&mark).unwrap()).unwrap();
        assert!(KeySet::reopen(&dir, &ids).unwrap().is_none(), "not trusted: walk");
        // The walk starts the set afresh, in the current format.
        let set = loaded(&dir, &["/a"]);
        assert_eq!(described(&set), [("/a".into(), "of /a".into())]);
    }

    #[test]
    fn loads_more_keys_than_one_chunk_holds() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(LISTING_DIR);
        let mut loader = KeySet::load(&dir).unwrap();
        let n = LOAD_CHUNK + 10;
        for i in (0..n).rev() {
            loader.add(&format!("/{i:08}"), description("d")).unwrap();
        }
        // A key seen twice (copies in two data dirs), in two chunks.
        loader.add("/00000005", description("d")).unwrap();
        let set = loader.finish().unwrap();
        let got: Vec<_> = set.snapshot().map(Result::unwrap).collect();
        assert_eq!(got.len(), n);
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
        for (key, d) in &got {
            let twice = key.as_ref() == b"/00000005";
            assert_eq!(d.is_empty(), twice, "{}", String::from_utf8_lossy(key));
        }
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
