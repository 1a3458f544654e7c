//! Listings: the keys under a prefix in one state, in byte order, a page
//! at a time — optionally rolled up at a delimiter into common prefixes.
//!
//! A common prefix costs one RocksDB seek, never a walk over its keys:
//! once the first visible key under `p/` is found, the iterator jumps to
//! the first key after everything that starts with `p/` (the *successor*
//! of `p/`: its last byte incremented). A bucket of a million keys under
//! ten prefixes is listed in about ten seeks. Each page counts the
//! iterator moves it made ([`Page::reads`]) so the tests can hold the
//! listing to that promise without timing anything.
//!
//! What a listing answers, with `after = a` (exclusive) or `start = s`
//! (inclusive):
//!
//! - the *entries* are the visible keys under the prefix, each key that
//!   contains the delimiter after the prefix replaced by its common prefix
//!   (the key up to and including that delimiter), duplicates merged;
//! - an entry is listed when it is `> a` (so `after` naming a common
//!   prefix, or any key inside one, skips that whole prefix, as S3's
//!   markers do), or when it holds a key `>= s`;
//! - at most `limit` entries, in byte order; `next` is the first visible
//!   key not accounted for — a page that starts there (inclusive) lists
//!   exactly the entries that follow.
//!
//! Only keys in the requested state count; a common prefix is listed only
//! when at least one visible key is under it. Keys in other states are
//! stepped over one by one (there is no per-state index), so a prefix
//! holding many unlisted keys costs a walk over those.

use super::{Index, IndexError};
use rocksdb::ReadOptions;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use trove_common::record::{now_ms, Record, State};

/// Where a listing starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Bound {
    /// At the prefix.
    #[default]
    Beginning,
    /// At this key, inclusive (`start=`, and every `next`).
    Start(String),
    /// After this key or common prefix, exclusive (`after=`: S3's marker
    /// and start-after).
    After(String),
}

/// What to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Only keys that start with these bytes.
    pub prefix: String,
    pub from: Bound,
    /// Roll keys up at the first occurrence of this (non-empty) text
    /// after the prefix.
    pub delimiter: Option<String>,
    /// At most this many entries (keys and common prefixes together).
    pub limit: usize,
    /// Live keys, or unlinked ones.
    pub state: State,
    /// Keep each listed key's record ([`Page::records`]).
    pub detail: bool,
}

impl Listing {
    /// A plain listing of `state` keys under `prefix`, first page.
    pub fn new(prefix: impl Into<String>, limit: usize, state: State) -> Listing {
        Listing {
            prefix: prefix.into(),
            from: Bound::Beginning,
            delimiter: None,
            limit,
            state,
            detail: false,
        }
    }
}

/// One page of a listing.
#[derive(Debug, Default, PartialEq)]
pub struct Page {
    /// Keys, in byte order.
    pub keys: Vec<String>,
    /// Common prefixes (with a delimiter), in byte order.
    pub prefixes: Vec<String>,
    /// With `detail`: the record each of `keys` reads as, in the same order.
    pub records: Vec<Record>,
    /// The first visible key not accounted for, if any: where the next
    /// page starts (inclusive).
    pub next: Option<String>,
    /// How many times the iterator was positioned (seeks plus steps).
    pub reads: u64,
}

/// The record `record` reads as to a listing of `state` keys at `now`, if
/// it is listed at all: its settled record ([`Record::settled`] — a key
/// being written over another value still reads as that value until the
/// write commits), when in `state` and not expired (an expired key is
/// absent though the expirer has yet to delete it).
pub fn visible(record: Record, state: State, now: u64) -> Option<Record> {
    let settled = match record.state {
        State::Writing => *record.replaces?,
        _ => record,
    };
    (settled.state == state && !settled.expired(now)).then_some(settled)
}

/// The smallest byte string greater than every string that starts with
/// `prefix`; `None` when there is none (`prefix` is all `0xff`, or empty).
pub fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xff)?;
    let mut s = prefix[..=last].to_vec();
    s[last] += 1;
    Some(s)
}

/// The common prefix `key` rolls up into: `key` up to and including the
/// first `delimiter` after its first `skip` bytes.
pub fn rolled_up<'k>(key: &'k [u8], skip: usize, delimiter: &[u8]) -> Option<&'k [u8]> {
    if delimiter.is_empty() || key.len() < skip {
        return None;
    }
    key[skip..]
        .windows(delimiter.len())
        .position(|w| w == delimiter)
        .map(|i| &key[..skip + i + delimiter.len()])
}

impl Index {
    /// One page of `listing`, read on the blocking pool with one of the
    /// [`super::LISTINGS`] slots: refused at once while reads of the
    /// index's disk are stalled ([`Index::get`]), or when every slot is
    /// taken. So on a device that hangs, listings hold at most that many
    /// of the pool's threads (which `block_in_place` needs too) instead of
    /// taking threads until none is left. A page is not timed: how long it
    /// takes depends on how many keys it passes over, which says nothing
    /// of the disk; the cold record reads tell a hung disk.
    pub async fn list(&self, listing: Listing) -> Result<Page, IndexError> {
        self.check_readable()?;
        let slot = Arc::clone(&self.inner.listings)
            .try_acquire_owned()
            .map_err(|_| IndexError::ListingsQueued)?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            this.list_blocking(&listing)
        })
        .await
        .map_err(|e| IndexError::Task(e.to_string()))?
    }

    /// Iterator moves made by listings since the index was opened.
    pub fn list_reads(&self) -> u64 {
        self.inner.list_reads.load(Ordering::Relaxed)
    }

    fn list_blocking(&self, l: &Listing) -> Result<Page, IndexError> {
        let prefix = l.prefix.as_bytes();
        let delimiter = l.delimiter.as_deref().unwrap_or("").as_bytes();
        let mut first: Vec<u8> = match &l.from {
            Bound::Beginning => prefix.to_vec(),
            Bound::Start(s) => s.as_bytes().to_vec(),
            Bound::After(a) => {
                let a = a.as_bytes();
                match a.strip_prefix(prefix).and(rolled_up(a, prefix.len(), delimiter)) {
                    // Inside (or naming) a common prefix: past all of it.
                    Some(common) => match successor(common) {
                        Some(s) => s,
                        None => return Ok(Page::default()),
                    },
                    // The smallest string after `a`.
                    None => [a, b"\0"].concat(),
                }
            }
        };
        if first.as_slice() < prefix {
            first = prefix.to_vec();
        }

        let mut opts = ReadOptions::default();
        if let Some(end) = successor(prefix) {
            opts.set_iterate_upper_bound(end);
        }
        let mut it = self.inner.db.raw_iterator_opt(opts);
        let mut page = Page::default();
        let now = now_ms();
        it.seek(&first);
        page.reads += 1;
        let mut entries = 0;
        loop {
            let (Some(key), Some(value)) = (it.key(), it.value()) else {
                it.status()?;
                break;
            };
            if !key.starts_with(prefix) {
                break;
            }
            let Some(record) = visible(self.decode(value)?, l.state, now) else {
                it.next();
                page.reads += 1;
                continue;
            };
            if entries == l.limit {
                page.next = Some(String::from_utf8_lossy(key).into_owned());
                break;
            }
            entries += 1;
            match rolled_up(key, prefix.len(), delimiter) {
                Some(common) => {
                    page.prefixes.push(String::from_utf8_lossy(common).into_owned());
                    // One seek past every key under the common prefix.
                    match successor(common) {
                        Some(past) => it.seek(past),
                        None => break,
                    }
                }
                None => {
                    page.keys.push(String::from_utf8_lossy(key).into_owned());
                    if l.detail {
                        page.records.push(record);
                    }
                    it.next();
                }
            }
            page.reads += 1;
        }
        self.inner.list_reads.fetch_add(page.reads, Ordering::Relaxed);
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use trove_common::key::Key;

    fn rec(state: State) -> Record {
        Record {
            state,
            volumes: vec!["v:1".into()],
            size: 1,
            sha256: "s".into(),
            md5: "m".into(),
            created: 0,
            expires: None,
            damaged: vec![],
            write: None,
            replaces: None,
            meta: Default::default(),
            parts: vec![],
        }
    }

    fn open() -> (tempfile::TempDir, Index) {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path(), false, crate::index::DEFAULT_CACHE, None).unwrap();
        (dir, index)
    }

    fn import(index: &Index, keys: &[(&str, State)]) {
        index
            .import(
                keys.iter()
                    .map(|(k, s)| (Key::new(k).unwrap(), rec(*s)))
                    .collect(),
            )
            .unwrap();
    }

    fn with(prefix: &str, delimiter: &str, from: Bound, limit: usize) -> Listing {
        Listing {
            from,
            delimiter: Some(delimiter.to_string()).filter(|d| !d.is_empty()),
            ..Listing::new(prefix, limit, State::Live)
        }
    }

    #[test]
    fn successors_and_roll_ups() {
        assert_eq!(successor(b"/a/"), Some(b"/a0".to_vec()));
        assert_eq!(successor(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(successor(b"\xff"), None);
        assert_eq!(successor(b""), None);
        assert_eq!(rolled_up(b"/b/x/y", 3, b"/"), Some(&b"/b/x/"[..]));
        assert_eq!(rolled_up(b"/b/x", 3, b"/"), None);
        assert_eq!(rolled_up(b"/b/x--y--z", 3, b"--"), Some(&b"/b/x--"[..]));
        assert_eq!(rolled_up(b"/b/x", 3, b""), None);
        assert_eq!(rolled_up(b"/b", 3, b"/"), None);
    }

    #[test]
    fn what_a_key_being_replaced_reads_as() {
        let old = Record {
            md5: "old".into(),
            ..rec(State::Live)
        };
        let replacing = Record::writing(vec![], 1, "w".into(), Some(old.clone()));
        assert_eq!(visible(replacing.clone(), State::Live, 0), Some(old));
        assert_eq!(visible(replacing, State::Unlinked, 0), None);
        let over_unlinked = Record::writing(vec![], 1, "w".into(), Some(rec(State::Unlinked)));
        assert_eq!(visible(over_unlinked.clone(), State::Live, 0), None);
        assert_eq!(
            visible(over_unlinked, State::Unlinked, 0),
            Some(rec(State::Unlinked))
        );
        assert_eq!(
            visible(Record::writing(vec![], 1, "w".into(), None), State::Live, 0),
            None
        );
        let expired = Record {
            expires: Some(5),
            ..rec(State::Live)
        };
        assert_eq!(visible(expired.clone(), State::Live, 4), Some(expired.clone()));
        assert_eq!(visible(expired, State::Live, 5), None);
    }

    #[tokio::test]
    async fn delimiter_after_and_next() {
        let (_dir, index) = open();
        import(
            &index,
            &[
                ("/b/a", State::Live),
                ("/b/a/b", State::Live),
                ("/b/a/c", State::Live),
                ("/b/c", State::Unlinked),
                ("/b/d/x", State::Unlinked),
                ("/b/e/x", State::Writing),
                ("/b/f/", State::Live),
                ("/b/g", State::Live),
                ("/c/a", State::Live),
            ],
        );
        let page = index.list(with("/b/", "/", Bound::Beginning, 10)).await.unwrap();
        assert_eq!(page.keys, vec!["/b/a", "/b/g"]);
        assert_eq!(page.prefixes, vec!["/b/a/", "/b/f/"]);
        assert_eq!(page.next, None);

        // Two entries a page; `next` resumes exactly where the page ended.
        let one = index.list(with("/b/", "/", Bound::Beginning, 2)).await.unwrap();
        assert_eq!(
            (one.keys, one.prefixes),
            (vec!["/b/a".into()], vec!["/b/a/".into()])
        );
        assert_eq!(one.next.as_deref(), Some("/b/f/"));
        let two = index
            .list(with("/b/", "/", Bound::Start(one.next.unwrap()), 2))
            .await
            .unwrap();
        assert_eq!(
            (two.keys, two.prefixes),
            (vec!["/b/g".into()], vec!["/b/f/".into()])
        );
        assert_eq!(two.next, None);

        // `after` a common prefix, or a key inside one, skips it all.
        for after in ["/b/a/", "/b/a/b", "/b/a/zzz"] {
            let p = index
                .list(with("/b/", "/", Bound::After(after.into()), 10))
                .await
                .unwrap();
            assert_eq!(p.keys, vec!["/b/g"], "after {after}");
            assert_eq!(p.prefixes, vec!["/b/f/"], "after {after}");
        }
        // `after` a plain key is exclusive; `start` inside a prefix lists it.
        let p = index
            .list(with("/b/", "/", Bound::After("/b/a".into()), 10))
            .await
            .unwrap();
        assert_eq!(p.prefixes, vec!["/b/a/", "/b/f/"]);
        let p = index
            .list(with("/b/", "/", Bound::Start("/b/a/c".into()), 10))
            .await
            .unwrap();
        assert_eq!(p.prefixes, vec!["/b/a/", "/b/f/"]);
        assert!(p.keys == vec!["/b/g"]);
        // Before the prefix is the prefix; past it is nothing.
        let p = index
            .list(with("/b/", "/", Bound::After("/a".into()), 1))
            .await
            .unwrap();
        assert_eq!(p.keys, vec!["/b/a"]);
        let p = index
            .list(with("/b/", "/", Bound::After("/b0".into()), 10))
            .await
            .unwrap();
        assert_eq!(
            p,
            Page {
                reads: 1,
                ..Page::default()
            }
        );

        // limit 0: nothing listed, `next` is where a page would start.
        let p = index
            .list(with("/b/", "/", Bound::After("/b/a".into()), 0))
            .await
            .unwrap();
        assert!(p.keys.is_empty() && p.prefixes.is_empty());
        assert_eq!(p.next.as_deref(), Some("/b/a/b"));

        // Unlinked keys roll up too, and only they.
        let unlinked = Listing {
            state: State::Unlinked,
            ..with("/b/", "/", Bound::Beginning, 10)
        };
        let p = index.list(unlinked).await.unwrap();
        assert_eq!((p.keys, p.prefixes), (vec!["/b/c".into()], vec!["/b/d/".into()]));

        // A multi-byte delimiter, and no delimiter at all.
        let p = index.list(with("/b/", "a/", Bound::Beginning, 10)).await.unwrap();
        assert_eq!(p.prefixes, vec!["/b/a/"]);
        assert_eq!(p.keys, vec!["/b/a", "/b/f/", "/b/g"]);
        let p = index.list(with("/b/", "", Bound::Beginning, 10)).await.unwrap();
        assert_eq!(p.keys, vec!["/b/a", "/b/a/b", "/b/a/c", "/b/f/", "/b/g"]);

        // Detail keeps the records, in key order.
        let detailed = Listing {
            detail: true,
            ..with("/b/", "/", Bound::Beginning, 10)
        };
        assert_eq!(index.list(detailed).await.unwrap().records.len(), 2);
    }

    /// The promise behind "a bucket with a million keys under ten prefixes
    /// lists its prefixes in milliseconds", checked by counting, not timing:
    /// a delimiter listing positions the iterator about twice per common
    /// prefix (the seek that finds its first key, the seek past it),
    /// whatever the number of keys under each.
    #[tokio::test]
    async fn a_common_prefix_costs_one_seek() {
        let (_dir, index) = open();
        const PREFIXES: usize = 10;
        const KEYS_EACH: usize = 10_000;
        for p in 0..PREFIXES {
            let batch = (0..KEYS_EACH)
                .map(|i| {
                    (
                        Key::new(&format!("/b/dir{p}/key{i:05}")).unwrap(),
                        rec(State::Live),
                    )
                })
                .collect();
            index.import(batch).unwrap();
        }
        import(&index, &[("/b/top", State::Live)]);
        let before = index.list_reads();
        let page = index
            .list(with("/b/", "/", Bound::Beginning, 1000))
            .await
            .unwrap();
        assert_eq!(page.prefixes.len(), PREFIXES);
        assert_eq!(page.keys, vec!["/b/top"]);
        assert!(
            page.reads <= PREFIXES as u64 + 3,
            "{} iterator moves for {PREFIXES} prefixes",
            page.reads
        );
        assert_eq!(index.list_reads() - before, page.reads);
        // Paging one entry at a time costs the same per entry.
        let mut from = Bound::Beginning;
        let (mut entries, mut reads) = (0, 0);
        loop {
            let page = index.list(with("/b/", "/", from, 1)).await.unwrap();
            entries += page.keys.len() + page.prefixes.len();
            reads += page.reads;
            match page.next {
                Some(n) => from = Bound::Start(n),
                None => break,
            }
        }
        assert_eq!(entries, PREFIXES + 1);
        assert!(reads <= 3 * (PREFIXES as u64 + 1), "{reads} iterator moves");
        // Without a delimiter, the same listing walks every key.
        let all = index
            .list(with("/b/", "", Bound::Beginning, usize::MAX))
            .await
            .unwrap();
        assert_eq!(all.keys.len(), PREFIXES * KEYS_EACH + 1);
        assert!(all.reads > (PREFIXES * KEYS_EACH) as u64);
    }

    /// The naive model: filter every visible key, roll up, deduplicate,
    /// keep the entries that the bound admits, cut at `limit`.
    fn model(keys: &BTreeMap<String, State>, l: &Listing) -> (Vec<String>, Vec<String>, Option<String>) {
        let delimiter = l.delimiter.as_deref().unwrap_or("");
        let mut entries: Vec<(String, bool, String)> = vec![]; // (entry, is_prefix, first key)
        for (k, s) in keys {
            if *s != l.state || !k.starts_with(&l.prefix) {
                continue;
            }
            let (entry, is_prefix) = match rolled_up(k.as_bytes(), l.prefix.len(), delimiter.as_bytes()) {
                Some(c) => (String::from_utf8(c.to_vec()).unwrap(), true),
                None => (k.clone(), false),
            };
            let admitted = match &l.from {
                Bound::Beginning => true,
                Bound::Start(s) => k >= s,
                Bound::After(a) => entry.as_str() > a.as_str(),
            };
            if admitted && entries.last().is_none_or(|(e, _, _)| *e != entry) {
                entries.push((entry, is_prefix, k.clone()));
            }
        }
        let next = entries.get(l.limit).map(|(_, _, first)| first.clone());
        entries.truncate(l.limit);
        let (prefixes, keys): (Vec<_>, Vec<_>) = entries.into_iter().partition(|(_, p, _)| *p);
        (
            keys.into_iter().map(|e| e.0).collect(),
            prefixes.into_iter().map(|e| e.0).collect(),
            next,
        )
    }

    fn state() -> impl Strategy<Value = State> {
        prop_oneof![
            6 => Just(State::Live),
            1 => Just(State::Unlinked),
            1 => Just(State::Writing),
        ]
    }

    /// Keys from a small alphabet (delimiters, `+`, `%`, a space, a
    /// two-byte and a three-byte character, `/`-runs, trailing `/`), so
    /// that prefixes, roll-ups and bounds collide often.
    fn key() -> impl Strategy<Value = String> {
        "/[ab/+% é€-]{0,6}".prop_filter("a valid key", |k| Key::new(k).is_ok())
    }

    fn bound(keys: Vec<String>) -> impl Strategy<Value = Bound> {
        let any_key = proptest::sample::select(keys);
        prop_oneof![
            Just(Bound::Beginning),
            any_key.clone().prop_map(Bound::Start),
            any_key.clone().prop_map(Bound::After),
            key().prop_map(Bound::Start),
            key().prop_map(Bound::After),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Every page matches the model, and paging with `next` from any
        /// start lists every entry of the model exactly once.
        #[test]
        fn listing_matches_the_model(
            (keys, from) in proptest::collection::btree_map(key(), state(), 1..40)
                .prop_flat_map(|keys| {
                    let names: Vec<String> = keys.keys().cloned().collect();
                    (Just(keys), bound(names))
                }),
            prefix in "/[ab/]{0,2}",
            delimiter in prop_oneof![Just(""), Just("/"), Just("a"), Just("/b"), Just("€"), Just("+")],
            limit in 0usize..6,
            unlinked in any::<bool>(),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (_dir, index) = open();
            let records: Vec<(Key, Record)> = keys
                .iter()
                .map(|(k, s)| (Key::new(k).unwrap(), rec(*s)))
                .collect();
            index.import(records).unwrap();
            let l = Listing {
                prefix,
                from,
                delimiter: Some(delimiter.to_string()).filter(|d| !d.is_empty()),
                limit,
                state: if unlinked { State::Unlinked } else { State::Live },
                detail: true,
            };
            let page = rt.block_on(index.list(l.clone())).unwrap();
            let (mkeys, mprefixes, mnext) = model(&keys, &l);
            prop_assert_eq!(&page.keys, &mkeys);
            prop_assert_eq!(&page.prefixes, &mprefixes);
            prop_assert_eq!(&page.next, &mnext);
            prop_assert_eq!(page.records.len(), page.keys.len());

            // Paging through from the same bound lists what one page does.
            if limit > 0 {
                let whole = model(&keys, &Listing { limit: usize::MAX, ..l.clone() });
                let (mut got_keys, mut got_prefixes) = (vec![], vec![]);
                let mut cur = l.clone();
                loop {
                    let p = rt.block_on(index.list(cur.clone())).unwrap();
                    prop_assert!(p.keys.len() + p.prefixes.len() <= limit);
                    got_keys.extend(p.keys);
                    got_prefixes.extend(p.prefixes);
                    match p.next {
                        Some(n) => cur.from = Bound::Start(n),
                        None => break,
                    }
                }
                prop_assert_eq!(got_keys, whole.0);
                prop_assert_eq!(got_prefixes, whole.1);
            }
        }
    }
}
