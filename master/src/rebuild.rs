//! `trove-master rebuild`: recreate a lost index from the volumes alone.
//!
//! Every volume's `GET /-/listing` — its blobs in key order, compact
//! binary frames — is read at once, each by a task of its own that
//! decodes it, and the listings are merged in key order (a k-way merge:
//! the smallest key among the volumes' next entries, with every volume's
//! entry for it). So all replicas of a key meet at once, memory holds a
//! few chunks per volume whatever the number of keys, and records reach
//! the new index in sorted batches, written by a thread of their own
//! while the merge goes on. Each key's replicas are merged:
//!
//! - replicas of a key holding the same sha256 become one record, with its
//!   volumes in placement order and its size, sha256 and md5 restored;
//! - a key any replica knows as unlinked comes back unlinked;
//! - a key whose replicas are all *pending* was never confirmed by the
//!   master (a failed or interrupted write) and is not revived — `gc`
//!   removes those blobs;
//! - live replicas of different writes (a replaced value whose old copy
//!   survived on a volume the new value does not use) resolve to the
//!   newest write: write ids are ordered by time, and a live copy proves
//!   its write was committed — after the older one it replaced;
//! - a record gets back its metadata and write id from the blobs'
//!   metadata (the copy a volume keeps aside while a replace is in flight
//!   is what it lists, so an unconfirmed replace leaves the old value);
//! - a copy its volume cannot serve (damaged, unreadable metadata, a data
//!   file of the wrong length) is no evidence and is left out;
//! - confirmed replicas that disagree otherwise (different sha256) are
//!   reported with their locations, and the key is left out rather than
//!   guessed.

use crate::client::VolumeClient;
use crate::index::Index;
use crate::listing::Cursor;
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::path::Path;
use trove_common::http::Timeouts;
use trove_common::key::Key;
use trove_common::placement::Placement;
use trove_common::protocol::listing::Listed;
use trove_common::record::{BlobMeta, BlobState, Record, State};
use trove_common::signing::Signer;

/// Records written to the new index per batch.
const BATCH: usize = 10_000;

/// What a rebuild found.
#[derive(Debug, Default)]
pub struct RebuildReport {
    /// Blobs listed by all volumes.
    pub blobs: u64,
    pub live: u64,
    pub unlinked: u64,
    /// Keys left out because no replica was confirmed.
    pub unconfirmed: u64,
    /// Keys left out because replicas disagree, one line each.
    pub conflicts: Vec<String>,
    /// Keys rebuilt from their live value although older unlinked copies
    /// with other bytes remain (for `gc`), one line each.
    pub superseded: Vec<String>,
}

/// Writes a fresh index at `db` from the volumes of `placement`.
pub async fn rebuild(
    db: &Path,
    placement: &Placement,
    timeouts: Timeouts,
    signer: Option<Signer>,
) -> anyhow::Result<RebuildReport> {
    if db.exists()
        && std::fs::read_dir(db)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} is not empty: rebuild writes a fresh index; move the old one away or pass a new --db",
            db.display()
        );
    }
    // Listings are single requests: a short-lived signature is enough.
    let client = VolumeClient::new(timeouts, signer, std::time::Duration::from_secs(300));
    // Every volume must answer: a missing listing would silently drop keys.
    let opened = placement.volumes().iter().map(|v| async {
        let addr = v.addr.clone();
        let stream = client
            .listing(&addr)
            .await
            .with_context(|| format!("cannot list volume {addr}; every volume must answer for a rebuild"))?;
        anyhow::Ok(Cursor::start(addr, stream))
    });
    let mut cursors = futures::future::try_join_all(opened).await?;
    let index = Index::open(db, true, crate::index::DEFAULT_CACHE, None)
        .with_context(|| format!("cannot create the index at {}", db.display()))?;
    // The volumes' blobs are this index's: a master on it does not take
    // them for a lost index's.
    index
        .set_origin(crate::index::Origin::Rebuilt(trove_common::record::now_ms()))
        .context("cannot write to the new index")?;
    // The index is written by a thread of its own, a batch behind the merge.
    let (batches, to_write) = std::sync::mpsc::sync_channel::<Vec<(Key, Record)>>(2);
    let writer = std::thread::spawn(move || -> anyhow::Result<()> {
        for batch in to_write {
            index.import(batch)?;
        }
        Ok(())
    });
    let merged = merge_listings(placement, &mut cursors, &batches).await;
    drop(batches);
    let written = writer
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the index writer stopped unexpectedly")));
    let mut report = merged?;
    written?;
    for c in &cursors {
        tracing::info!(volume = %c.addr(), blobs = c.count(), "volume listed");
        report.blobs += c.count();
    }
    Ok(report)
}

/// The k-way merge: every key's entries, across volumes, merged into at
/// most one record, sent to the index writer in batches.
async fn merge_listings(
    placement: &Placement,
    cursors: &mut [Cursor],
    batches: &std::sync::mpsc::SyncSender<Vec<(Key, Record)>>,
) -> anyhow::Result<RebuildReport> {
    let mut report = RebuildReport::default();
    for c in cursors.iter_mut() {
        c.pop().await?;
    }
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(smallest) = cursors
        .iter()
        .filter_map(Cursor::head)
        .map(|h| h.meta.key.as_str())
        .min()
        .map(str::to_string)
    {
        let mut group = Vec::with_capacity(cursors.len());
        for c in cursors.iter_mut() {
            if c.head().is_some_and(|h| h.meta.key == smallest) {
                let Listed { mut meta, fault, .. } = c.pop().await?.expect("the head was there");
                // A copy its volume cannot serve is no evidence of anything.
                meta.damaged |= fault.is_some();
                group.push((c.addr().to_string(), meta));
            }
        }
        merge(placement, group, &mut report, &mut batch);
        // A writer that went away failed, and the caller reports why.
        if batch.len() >= BATCH && batches.send(std::mem::take(&mut batch)).is_err() {
            bail!("the index writer stopped");
        }
    }
    if batches.send(batch).is_err() {
        bail!("the index writer stopped");
    }
    Ok(report)
}

/// When confirmed copies disagree only because some are older *unlinked*
/// copies of the key beside one *live* value written after them (a key
/// written again after `UNLINK`, whose old copy survived on a volume the
/// new write did not use), the live value's sha256: the master committed
/// it after the unlink. `None` in every other case.
fn newer_live_value(confirmed: &[&(String, BlobMeta)]) -> Option<String> {
    let live: Vec<&BlobMeta> = confirmed
        .iter()
        .map(|(_, m)| m)
        .filter(|m| m.state == BlobState::Live)
        .collect();
    let sha = &live.first()?.sha256;
    let written = live.iter().map(|m| m.created).min()?;
    let others_older_unlinked = confirmed
        .iter()
        .map(|(_, m)| m)
        .filter(|m| m.sha256 != *sha)
        .all(|m| m.state == BlobState::Unlinked && m.created < written);
    let disagree = confirmed.iter().any(|(_, m)| m.sha256 != *sha);
    (disagree && others_older_unlinked && live.iter().all(|m| m.sha256 == *sha)).then(|| sha.clone())
}

/// When confirmed copies disagree and each names its write, the newest
/// write: write ids are ordered by time, a key's writes one at a time,
/// and a confirmed copy proves the master committed its write — so the
/// newest one was committed over the others. `None` in every other case
/// (and when the newest write's own copies disagree).
fn newest_write(confirmed: &[&(String, BlobMeta)]) -> Option<String> {
    let first = &confirmed.first()?.1;
    let disagree = confirmed
        .iter()
        .any(|(_, m)| m.sha256 != first.sha256 || m.write != first.write);
    if !disagree {
        return None;
    }
    let writes: Option<Vec<&String>> = confirmed.iter().map(|(_, m)| m.write.as_ref()).collect();
    let newest = writes?.into_iter().max()?;
    let mut values = confirmed
        .iter()
        .filter(|(_, m)| m.write.as_ref() == Some(newest))
        .map(|(_, m)| &m.sha256);
    let value = values.next()?;
    values.all(|s| s == value).then(|| newest.clone())
}

/// Turns every replica of one key into at most one record.
fn merge(
    placement: &Placement,
    group: Vec<(String, BlobMeta)>,
    report: &mut RebuildReport,
    out: &mut Vec<(Key, Record)>,
) {
    let Some((_, first)) = group.first() else {
        return;
    };
    let Ok(key) = Key::new(&first.key) else {
        report
            .conflicts
            .push(format!("{:?}: not a valid key; left out", first.key));
        return;
    };
    // A copy its volume found damaged is no evidence of anything.
    let group: Vec<(String, BlobMeta)> = group.into_iter().filter(|(_, m)| !m.damaged).collect();
    let mut confirmed: Vec<&(String, BlobMeta)> = group
        .iter()
        .filter(|(_, m)| m.state != BlobState::Pending)
        .collect();
    if confirmed.is_empty() {
        report.unconfirmed += 1;
        return;
    }
    if let Some(live) = newer_live_value(&confirmed) {
        let stale: Vec<&str> = confirmed
            .iter()
            .filter(|(_, m)| m.sha256 != live)
            .map(|(a, _)| a.as_str())
            .collect();
        report.superseded.push(format!(
            "{key}: older unlinked copies on {} differ from the live value; kept the live one (gc removes them)",
            stale.join(",")
        ));
        confirmed.retain(|(_, m)| m.sha256 == live);
    }
    if let Some(newest) = newest_write(&confirmed) {
        let stale: Vec<&str> = confirmed
            .iter()
            .filter(|(_, m)| m.write.as_ref() != Some(&newest))
            .map(|(a, _)| a.as_str())
            .collect();
        report.superseded.push(format!(
            "{key}: copies on {} are of values replaced by write {newest}; kept the newest (gc removes them)",
            stale.join(",")
        ));
        confirmed.retain(|(_, m)| m.write.as_ref() == Some(&newest));
    }
    let mut by_sha: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (addr, m) in &confirmed {
        by_sha.entry(m.sha256.as_str()).or_default().push(addr.as_str());
    }
    if by_sha.len() > 1 {
        let sides: Vec<String> = by_sha
            .iter()
            .map(|(sha, addrs)| format!("sha256 {sha} on {}", addrs.join(",")))
            .collect();
        report.conflicts.push(format!(
            "{key}: replicas disagree: {}; left out",
            sides.join(" vs ")
        ));
        return;
    }
    let meta = &confirmed[0].1;
    let order: Vec<&str> = placement
        .order(key.as_bytes())
        .iter()
        .map(|v| v.addr.as_str())
        .collect();
    // Readers are pinned to the record's write, so when every confirmed
    // copy names one write, only copies of that write count (a copy of
    // another write with the same bytes would answer them "replaced").
    // Copies that do not agree on it (one pulled before pulls carried the
    // write id) leave the record unpinned, with every copy of the bytes.
    let write = confirmed
        .iter()
        .all(|(_, m)| m.write == meta.write)
        .then(|| meta.write.clone())
        .flatten();
    let mut volumes: Vec<String> = group
        .iter()
        .filter(|(_, m)| {
            // An unconfirmed copy of a master write knows no sha256 yet
            // (its confirmation brings it): it counts when it is of the
            // record's write, whose replicas the master checked by CRC32C.
            let same_bytes = m.sha256 == meta.sha256 || (m.sha256.is_empty() && write.is_some());
            same_bytes && (write.is_none() || m.write == write)
        })
        .map(|(a, _)| a.clone())
        .collect();
    volumes.sort_by_key(|a| order.iter().position(|o| o == a).unwrap_or(usize::MAX));
    let unlinked = confirmed.iter().any(|(_, m)| m.state == BlobState::Unlinked);
    if unlinked {
        report.unlinked += 1;
    } else {
        report.live += 1;
    }
    out.push((
        key,
        Record {
            state: if unlinked { State::Unlinked } else { State::Live },
            volumes,
            size: meta.size,
            sha256: meta.sha256.clone(),
            md5: meta.md5.clone(),
            created: group.iter().map(|(_, m)| m.created).min().unwrap_or(meta.created),
            // Sidecars do not carry expiry times: a rebuilt key has no TTL.
            expires: None,
            damaged: vec![],
            write,
            replaces: None,
            meta: meta.meta.clone(),
            // Sidecars do not carry part sizes either: a rebuilt multipart
            // object answers S3's `partNumber` as a single part would.
            parts: vec![],
        },
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use trove_common::placement::parse_volume_list;

    fn meta(key: &str, sha: &str, state: BlobState) -> BlobMeta {
        BlobMeta {
            key: key.into(),
            size: 3,
            sha256: sha.into(),
            md5: "m".into(),
            created: 10,
            state,
            damaged: false,
            write: None,
            crc32c: None,
            meta: Default::default(),
        }
    }

    #[test]
    fn merges_replicas_by_rule() {
        let placement = Placement::new(parse_volume_list("a:1,b:2,c:3").unwrap(), 1).unwrap();
        let mut report = RebuildReport::default();
        let mut out = vec![];
        let g = |m: Vec<(&str, BlobMeta)>| m.into_iter().map(|(a, m)| (a.to_string(), m)).collect::<Vec<_>>();
        // Two live replicas and a pending one with the same bytes: one record, three volumes.
        merge(
            &placement,
            g(vec![
                ("c:3", meta("/k", "s1", BlobState::Live)),
                ("a:1", meta("/k", "s1", BlobState::Pending)),
                ("b:2", meta("/k", "s1", BlobState::Live)),
            ]),
            &mut report,
            &mut out,
        );
        let order: Vec<String> = placement.order(b"/k").iter().map(|v| v.addr.clone()).collect();
        assert_eq!(out[0].1.volumes, order, "volumes in placement order");
        assert_eq!(out[0].1.state, State::Live);
        // Only pending replicas: never confirmed, not revived.
        merge(
            &placement,
            g(vec![("a:1", meta("/p", "s", BlobState::Pending))]),
            &mut report,
            &mut out,
        );
        assert_eq!(report.unconfirmed, 1);
        // Unlinked anywhere: unlinked.
        merge(
            &placement,
            g(vec![
                ("a:1", meta("/u", "s", BlobState::Live)),
                ("b:2", meta("/u", "s", BlobState::Unlinked)),
            ]),
            &mut report,
            &mut out,
        );
        assert_eq!(out[1].1.state, State::Unlinked);
        // Disagreeing confirmed replicas: reported with both locations, left out.
        merge(
            &placement,
            g(vec![
                ("a:1", meta("/x", "s1", BlobState::Live)),
                ("b:2", meta("/x", "s2", BlobState::Live)),
            ]),
            &mut report,
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert!(report.conflicts[0].contains("s1 on a:1") && report.conflicts[0].contains("s2 on b:2"));
        assert_eq!((report.live, report.unlinked), (1, 1));
        // An old unlinked copy beside a live value written after it: the
        // live value, and a note.
        let mut old = meta("/again", "s-old", BlobState::Unlinked);
        old.created = 5;
        merge(
            &placement,
            g(vec![
                ("a:1", old.clone()),
                ("b:2", meta("/again", "s-new", BlobState::Live)),
                ("c:3", meta("/again", "s-new", BlobState::Live)),
            ]),
            &mut report,
            &mut out,
        );
        let again = out.last().unwrap();
        assert_eq!((again.0.as_str(), again.1.state), ("/again", State::Live));
        assert_eq!(again.1.sha256, "s-new");
        assert!(!again.1.volumes.contains(&"a:1".to_string()));
        assert!(report.superseded[0].contains("a:1"), "{:?}", report.superseded);
        // But an unlinked copy newer than the live one is a real conflict.
        old.created = 50;
        old.key = "/later".into();
        merge(
            &placement,
            g(vec![
                ("a:1", old),
                ("b:2", meta("/later", "s-new", BlobState::Live)),
            ]),
            &mut report,
            &mut out,
        );
        assert_eq!(report.conflicts.len(), 2);

        // A replaced value's live copy left on a volume the new value does
        // not use: the newest write wins, with its metadata and write id.
        let with = |sha: &str, write: &str, ct: &str| {
            let mut m = meta("/replaced", sha, BlobState::Live);
            m.write = Some(write.into());
            m.meta.insert("content-type".into(), ct.into());
            m
        };
        merge(
            &placement,
            g(vec![
                ("a:1", with("s-old", "0001", "text/old")),
                ("b:2", with("s-new", "0002", "text/new")),
                ("c:3", with("s-new", "0002", "text/new")),
            ]),
            &mut report,
            &mut out,
        );
        let replaced = out.last().unwrap();
        assert_eq!(replaced.0.as_str(), "/replaced");
        assert_eq!(replaced.1.sha256, "s-new");
        assert_eq!(replaced.1.write.as_deref(), Some("0002"));
        assert_eq!(replaced.1.content_type(), Some("text/new"));
        assert!(!replaced.1.volumes.contains(&"a:1".to_string()));
        assert!(report.superseded.last().unwrap().contains("a:1"));
        // Same bytes, other writes: only the newest write's copies.
        merge(
            &placement,
            g(vec![
                ("a:1", with("s", "0001", "text/old")),
                ("b:2", with("s", "0002", "text/new")),
            ]),
            &mut report,
            &mut out,
        );
        let same = out.last().unwrap();
        assert_eq!(same.1.volumes, vec!["b:2".to_string()]);
        assert_eq!(same.1.content_type(), Some("text/new"));
        // A copy without a write id beside one with (pulled before pulls
        // carried it): both count, and the record is not pinned.
        let mut pulled = meta("/legacy", "s", BlobState::Live);
        pulled.write = None;
        let written = BlobMeta {
            key: "/legacy".into(),
            ..with("s", "0001", "text/a")
        };
        merge(
            &placement,
            g(vec![("a:1", written), ("b:2", pulled)]),
            &mut report,
            &mut out,
        );
        let legacy = out.last().unwrap();
        assert_eq!((legacy.0.as_str(), legacy.1.write.as_deref()), ("/legacy", None));
        assert_eq!(legacy.1.volumes.len(), 2);
        // Unlinked after the replace: the newest write, unlinked.
        merge(
            &placement,
            g(vec![
                ("a:1", with("s-old", "0001", "text/old")),
                (
                    "b:2",
                    BlobMeta {
                        state: BlobState::Unlinked,
                        ..with("s-new", "0002", "text/new")
                    },
                ),
            ]),
            &mut report,
            &mut out,
        );
        assert_eq!(out.last().unwrap().1.state, State::Unlinked);
        assert_eq!(out.last().unwrap().1.sha256, "s-new");
        // Without write ids, disagreeing live copies stay a conflict.
        assert_eq!(report.conflicts.len(), 2);
    }
}
