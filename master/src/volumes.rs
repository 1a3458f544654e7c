//! The volume roster: which volumes exist, which are healthy, and the
//! monitor that keeps that knowledge fresh.
//!
//! The master never probes a volume on the request path. A background task
//! polls every volume's `/-/status` each interval (learning its free space
//! and blob count as it goes); a call that finds a volume unreachable marks
//! it down at once, and the next successful poll brings it back.

use crate::client::{VolumeClient, VolumeError};
use parking_lot::RwLock;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use trove_common::key::Key;
use trove_common::placement::{Placement, VolumeSpec};
use trove_common::record::{now_ms, BlobState, Record};

/// What the master last learned about one volume.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Health {
    pub healthy: bool,
    /// Unix ms of the last successful poll.
    pub last_seen: Option<u64>,
    /// Why the last poll or call failed, while unhealthy.
    pub last_error: Option<String>,
    /// Why the volume's disk is taken for hung, while it is: one of its
    /// data dirs has made a read wait past the volume's stall timeout, or
    /// left its writes waiting with none finishing for that long
    /// (`stalled_ms` in its `/-/status`). It takes no new writes, and
    /// readers are sent to other replicas while there are any.
    pub stalled: Option<String>,
    /// Healthy, and more than `--min-free` bytes free: takes new writes.
    pub writable: bool,
    pub free_bytes: Option<u64>,
    /// The volume says it cannot store new blobs (read-only data dirs).
    pub read_only: bool,
    pub used_bytes: Option<u64>,
    pub blobs: Option<u64>,
    /// The ids of the volume's data dirs, as last reported.
    pub data_ids: Option<Vec<String>>,
    /// When the volume came back with a data dir it did not have before
    /// (an emptied or replaced disk), Unix ms: it may lack any key written
    /// before then, so readers of those keys are sent elsewhere until a
    /// `verify --repair` has run since.
    pub lost_data_at: Option<u64>,
    /// When this index first saw the volume, Unix ms, if the volume then
    /// held blobs and the index is one a master created empty: a master
    /// started on an empty (lost, mistyped) index in front of a cluster's
    /// volumes — whenever each of them first answers.
    /// Blobs older than this may be a lost index's values: `gc` leaves
    /// them alone, and a `rebuild` (a fresh index) adopts them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub foreign_before: Option<u64>,
    /// What the index holds of the volume's data dirs (see [`Disks`]):
    /// where it differs from the above, it is written again.
    #[serde(skip)]
    pub saved: Option<Disks>,
    /// The last damage report taken from the volume, as `(log, seq)`.
    #[serde(skip)]
    pub damage_seen: Option<(u64, u64)>,
}

/// What the master remembers of a volume's data dirs across its restarts
/// (in the index: [`crate::index::Index::put_volume_disks`]): their ids,
/// and when the volume came back without one of them. Without it, a
/// volume emptied while the master was down, or before a restart (an
/// `add-volume`), would be taken for whole, and readers of older keys
/// sent to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Disks {
    pub ids: Vec<String>,
    pub lost_data_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreign_before: Option<u64>,
}

impl Disks {
    fn of(h: &Health) -> Option<Disks> {
        Some(Disks {
            ids: h.data_ids.clone()?,
            lost_data_at: h.lost_data_at,
            foreign_before: h.foreign_before,
        })
    }
}

/// The configured volumes and their health.
pub struct Volumes {
    placement: Placement,
    health: HashMap<String, RwLock<Health>>,
    client: VolumeClient,
    /// Marks on their way to volumes, batched per volume.
    marks: crate::marks::MarkQueues,
    /// Spreads reads across replicas.
    next_read: AtomicUsize,
    /// A volume with less free space than this takes no new writes.
    min_free: u64,
    /// Held while [`Volumes::save_disks`] writes.
    saving: tokio::sync::Mutex<()>,
    /// Volumes no longer in the list that records still name (removed,
    /// not yet rebalanced): whether each answered its last probe, and
    /// when ([`Volumes::pick_reader`]).
    retired: parking_lot::Mutex<HashMap<String, (std::time::Instant, bool)>>,
    /// Copies the volumes could not give a reader (damaged or missing), on
    /// their way to [`crate::repair`]: `(volume, key)`.
    damaged: tokio::sync::mpsc::Sender<(String, String)>,
    damaged_inbox: parking_lot::Mutex<Option<tokio::sync::mpsc::Receiver<(String, String)>>>,
    /// The reports sent to the repairer and not yet handled.
    damage_queued: parking_lot::Mutex<std::collections::HashSet<(String, String)>>,
    /// When the index was created empty by a master, if it was (Unix ms;
    /// see [`Health::foreign_before`]).
    born_empty: Option<u64>,
}

/// Damage reports waiting for the repairer; more are dropped (each copy
/// stays marked damaged on its volume, which reports it again when the
/// next reader is sent to it, and `verify --repair` finds it).
const DAMAGE_QUEUE: usize = 1024;

/// How long a probe of a volume no longer in the list is trusted.
const RETIRED_PROBE_TTL: std::time::Duration = std::time::Duration::from_secs(2);

impl Volumes {
    /// Every volume starts unhealthy until its first successful poll.
    pub fn new(placement: Placement, client: VolumeClient, min_free: u64) -> Volumes {
        let health = placement
            .volumes()
            .iter()
            .map(|v| (v.addr.clone(), RwLock::new(Health::default())))
            .collect();
        let (damaged, inbox) = tokio::sync::mpsc::channel(DAMAGE_QUEUE);
        Volumes {
            placement,
            health,
            marks: crate::marks::MarkQueues::new(client.clone()),
            client,
            next_read: AtomicUsize::new(0),
            min_free,
            saving: tokio::sync::Mutex::new(()),
            retired: parking_lot::Mutex::default(),
            damaged,
            damaged_inbox: parking_lot::Mutex::new(Some(inbox)),
            born_empty: None,
            damage_queued: parking_lot::Mutex::default(),
        }
    }

    /// The repairer is done with a report of [`Volumes::take_damage_reports`].
    pub fn damage_handled(&self, volume: &str, key: &str) {
        self.damage_queued
            .lock()
            .remove(&(volume.to_string(), key.to_string()));
    }

    /// The index was created empty by a master at `at` (Unix ms): a
    /// volume it meets for the first time holding blobs is marked
    /// [`Health::foreign_before`].
    pub fn set_born_empty(&mut self, at: u64) {
        self.born_empty = Some(at);
    }

    /// The damage reports the polls collect, `(volume, key)`: for the one
    /// task that repairs them (`None` once taken).
    pub fn take_damage_reports(&self) -> Option<tokio::sync::mpsc::Receiver<(String, String)>> {
        self.damaged_inbox.lock().take()
    }

    /// Takes what the index remembers of each volume's data dirs (see
    /// [`Disks`]), before the first poll; entries of volumes no longer
    /// configured, or unreadable, are skipped.
    pub fn remember_disks(&self, stored: Vec<(String, Vec<u8>)>) {
        for (addr, bytes) in stored {
            let Some(h) = self.health.get(&addr) else {
                continue;
            };
            match serde_json::from_slice::<Disks>(&bytes) {
                Ok(disks) => {
                    let mut h = h.write();
                    h.data_ids = Some(disks.ids.clone());
                    h.lost_data_at = disks.lost_data_at;
                    h.foreign_before = disks.foreign_before;
                    h.saved = Some(disks);
                }
                Err(e) => {
                    tracing::warn!(volume = %addr, error = %e, "unreadable record of the volume's data dirs; it is taken as first seen")
                }
            }
        }
    }

    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    pub fn client(&self) -> &VolumeClient {
        &self.client
    }

    /// Whether `addr` is a configured volume that did not answer its last
    /// poll (or a call since). A volume no longer configured is not "down":
    /// nothing polls it.
    pub fn is_down(&self, addr: &str) -> bool {
        self.health.get(addr).is_some_and(|h| {
            let h = h.read();
            // Before its first poll a volume is not known to be down.
            !h.healthy && h.last_error.is_some()
        })
    }

    /// Whether `addr` is a configured volume that answered its last poll.
    pub fn is_healthy(&self, addr: &str) -> bool {
        self.health.get(addr).is_some_and(|h| h.read().healthy)
    }

    /// Whether `addr` can take a new write of `len` bytes (unknown: 0):
    /// healthy, and (as of its last poll) with `len` plus `--min-free` bytes
    /// free. A full volume is skipped like a down one, so writes go on
    /// elsewhere instead of failing.
    pub fn can_take(&self, addr: &str, len: Option<u64>) -> bool {
        self.health.get(addr).is_some_and(|h| {
            let h = h.read();
            let need = len.unwrap_or(0).saturating_add(self.min_free);
            h.healthy && h.stalled.is_none() && !h.read_only && h.free_bytes.is_none_or(|free| free >= need)
        })
    }

    /// How many volumes are healthy now.
    pub fn healthy_count(&self) -> usize {
        self.placement
            .volumes()
            .iter()
            .filter(|v| self.is_healthy(&v.addr))
            .count()
    }

    /// How many volumes can take a write now ([`Volumes::can_take`]).
    pub fn writable_count(&self) -> usize {
        self.placement
            .volumes()
            .iter()
            .filter(|v| self.can_take(&v.addr, None))
            .count()
    }

    /// A snapshot of every volume with its health, in configured order.
    pub fn snapshot(&self) -> Vec<(VolumeSpec, Health)> {
        self.placement
            .volumes()
            .iter()
            .map(|v| {
                let mut h = self.health[&v.addr].read().clone();
                h.writable = self.can_take(&v.addr, None);
                (v.clone(), h)
            })
            .collect()
    }

    /// Whether `addr` can serve a key written at `created` (Unix ms):
    /// healthy, and not emptied since.
    fn can_serve(&self, addr: &str, created: u64) -> bool {
        self.health.get(addr).is_some_and(|h| {
            let h = h.read();
            h.healthy && h.lost_data_at.is_none_or(|lost| created >= lost)
        })
    }

    /// The replica of a record (its `stored` volumes, written at `created`)
    /// to send a reader to: a healthy one that has not lost its data since,
    /// rotating between them, and one whose disk is not stalled if there is
    /// any. A volume no longer in the list (removed, not yet rebalanced)
    /// cannot be monitored and is used only when no configured replica can
    /// serve. `None` when none can.
    pub fn pick_replica<'a>(&self, stored: &'a [String], created: u64) -> Option<&'a str> {
        let (healthy, stalled): (Vec<&str>, Vec<&str>) = stored
            .iter()
            .map(String::as_str)
            .filter(|a| self.can_serve(a, created))
            .partition(|a| self.health[*a].read().stalled.is_none());
        let healthy = if healthy.is_empty() { stalled } else { healthy };
        let candidates = if healthy.is_empty() {
            stored
                .iter()
                .map(String::as_str)
                .filter(|a| !self.health.contains_key(*a))
                .collect()
        } else {
            healthy
        };
        if candidates.is_empty() {
            return None;
        }
        let n = self.next_read.fetch_add(1, Ordering::Relaxed);
        Some(candidates[n % candidates.len()])
    }

    /// [`Volumes::pick_replica`], where a volume no longer in the list —
    /// which the monitor does not poll — is used only if it answers a
    /// probe (each probe's answer is kept for [`RETIRED_PROBE_TTL`]): a
    /// reader is never sent to a removed volume that is down.
    pub async fn pick_reader<'a>(&self, stored: &'a [String], created: u64) -> Option<&'a str> {
        let first = self.pick_replica(stored, created)?;
        if self.health.contains_key(first) {
            return Some(first);
        }
        let start = stored.iter().position(|a| a == first).unwrap_or(0);
        let retired = stored[start..]
            .iter()
            .chain(&stored[..start])
            .filter(|a| !self.health.contains_key(a.as_str()));
        for addr in retired {
            if self.retired_answers(addr).await {
                return Some(addr);
            }
        }
        None
    }

    /// Whether `addr`, a volume no longer in the list, answered its last
    /// probe (made now if none was within [`RETIRED_PROBE_TTL`]).
    async fn retired_answers(&self, addr: &str) -> bool {
        if let Some((at, up)) = self.retired.lock().get(addr) {
            if at.elapsed() < RETIRED_PROBE_TTL {
                return *up;
            }
        }
        let up = self.client.status(addr, None).await.is_ok();
        self.retired
            .lock()
            .insert(addr.to_string(), (std::time::Instant::now(), up));
        up
    }

    /// Records that a call to `addr` found it unreachable.
    pub fn mark_down(&self, addr: &str, error: &str) {
        if let Some(h) = self.health.get(addr) {
            let mut h = h.write();
            if h.healthy {
                tracing::warn!(volume = %addr, error = %error, "volume marked down");
            }
            h.healthy = false;
            h.last_error = Some(error.to_string());
        }
    }

    /// Marks the volume of a failed call down when the failure says it is
    /// unreachable (not when it merely refused the request), so reads and
    /// writes avoid it until the monitor sees it again.
    pub fn note_error(&self, e: &VolumeError) {
        if let VolumeError::Unreachable { addr, .. } | VolumeError::Timeout { addr, .. } = e {
            self.mark_down(addr, &e.to_string());
        }
    }

    /// Records `state` in the sidecars of `key` on every volume of `addrs`,
    /// in parallel. The first failure is returned (after all have run).
    pub async fn mark_all(
        &self,
        key: &Key,
        addrs: &[String],
        state: BlobState,
        digests: Option<&Record>,
        write: Option<&str>,
    ) -> Result<(), VolumeError> {
        let query = crate::client::mark_query(key, state, digests, write);
        let marks = addrs.iter().map(|a| self.marks.mark(a, query.clone()));
        let mut first_error = None;
        for result in futures::future::join_all(marks).await {
            if let Err(e) = result {
                self.note_error(&e);
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// A healthy replica among `stored` other than `not`, to copy from.
    pub async fn source_for(&self, stored: &[String], created: u64, not: &str) -> Option<String> {
        let others: Vec<String> = stored.iter().filter(|a| *a != not).cloned().collect();
        self.pick_reader(&others, created).await.map(str::to_string)
    }

    /// Whether `addr` still holds what it was given for a key written at
    /// `created` (Unix ms), as far as the master knows: `false` for a
    /// volume emptied since, until a `verify --repair` has run. Health
    /// aside: a volume down for a while still holds its copies.
    pub fn kept_data(&self, addr: &str, created: u64) -> bool {
        self.health
            .get(addr)
            .is_none_or(|h| h.read().lost_data_at.is_none_or(|lost| created >= lost))
    }

    /// The copies of `record` the master vouches for: not found damaged
    /// ([`Record::readable`]), on volumes that have not lost their data
    /// since the value was written ([`Volumes::kept_data`]), health aside.
    /// What `Key-Volumes` lists for a reader to fall back on.
    pub fn held_copies(&self, record: &Record) -> Vec<String> {
        let mut copies = record.readable();
        copies.retain(|a| self.kept_data(a, record.created));
        copies
    }

    /// Whether `key`'s copies are where the placement puts them, each one
    /// still held (a copy on a volume emptied since is not).
    pub fn balanced(&self, key: &Key, record: &Record) -> bool {
        self.placement().is_balanced(key.as_bytes(), &record.volumes)
            && record.volumes.iter().all(|a| self.kept_data(a, record.created))
    }

    /// Why none of `stored` (the replicas of a key written at `created`)
    /// can serve it, one reason per replica, for a `503`: down, or up but
    /// emptied since the key was written.
    pub fn why_unreadable(&self, stored: &[String], created: u64) -> String {
        let why = |addr: &String| {
            match self.health.get(addr.as_str()) {
            None => format!("{addr}: removed from this master's volumes, and not answering"),
            Some(h) if !h.read().healthy => format!("{addr}: down"),
            Some(_) if !self.kept_data(addr, created) => format!(
                "{addr}: lost its data since this key was written (a new or emptied disk): run `trove-master verify --repair`"
            ),
            Some(_) => format!("{addr}: cannot serve it"),
        }
        };
        stored.iter().map(why).collect::<Vec<_>>().join("; ")
    }

    /// A `verify --repair` that started at `since` (Unix ms) has finished
    /// without failures: every volume emptied before then holds its keys
    /// again (in memory: [`Volumes::save_disks`] writes it down).
    pub fn data_restored(&self, since: u64) {
        for (addr, h) in &self.health {
            let mut h = h.write();
            if h.lost_data_at.is_some_and(|lost| lost <= since) {
                tracing::info!(volume = %addr, "volume repaired: readers may use it for every key again");
                h.lost_data_at = None;
            }
        }
    }

    /// Writes to `index` what it does not hold yet of the volumes' data
    /// dirs (first seen, one of them gone, a repair done): one writer at a
    /// time, each writing what is current when it runs, so an older state
    /// never lands after a newer one. A write that fails is tried again
    /// at the next call (the monitor calls this after every poll).
    pub async fn save_disks(&self, index: &crate::index::Index) {
        let _one_at_a_time = self.saving.lock().await;
        for v in self.placement.volumes() {
            let h = &self.health[&v.addr];
            let Some(current) = ({
                let h = h.read();
                Disks::of(&h).filter(|d| h.saved.as_ref() != Some(d))
            }) else {
                continue;
            };
            let bytes = serde_json::to_vec(&current).expect("plain data");
            match index.put_volume_disks(&v.addr, bytes).await {
                Ok(()) => h.write().saved = Some(current),
                Err(e) => {
                    tracing::warn!(volume = %v.addr, error = %e, "cannot record the volume's data dirs in the index (trying again after the next poll): were the master to restart meanwhile, it would not know whether this volume lost data")
                }
            }
        }
    }

    /// Passes on the damage reports of `addr`'s answer that are new since
    /// `seen`, and answers what has been taken now.
    fn take_damage(
        &self,
        addr: &str,
        seen: Option<(u64, u64)>,
        log: u64,
        reports: &[trove_common::protocol::DamageReport],
    ) -> Option<(u64, u64)> {
        let after = match seen {
            Some((l, seq)) if l == log => seq,
            _ => 0,
        };
        let mut last = after;
        for r in reports.iter().filter(|r| r.seq > after) {
            let report = (addr.to_string(), r.key.clone());
            // One check per copy at a time: a key read often while it
            // waits is reported again after each acknowledgement.
            if self.damage_queued.lock().insert(report.clone()) {
                if self.damaged.try_send(report.clone()).is_err() {
                    self.damage_queued.lock().remove(&report);
                    // Not acknowledged: the volume keeps it (and the rest)
                    // for a later poll.
                    tracing::warn!(volume = %addr, "too many copies waiting for repair: the rest wait on the volume");
                    break;
                }
                tracing::info!(volume = %addr, key = %r.key, "a reader could not be served this volume's copy (damaged or missing): checking the key's replicas");
            }
            last = last.max(r.seq);
        }
        (last > 0).then_some((log, last)).or(seen)
    }

    /// Polls every volume once, concurrently.
    pub async fn poll_all(&self) {
        let polls = self.placement.volumes().iter().map(|v| async move {
            let seen = self.health[&v.addr].read().damage_seen;
            let result = self.client.status(&v.addr, seen).await;
            let mut h = self.health[&v.addr].write();
            match result {
                Ok(status) => {
                    h.damage_seen = self.take_damage(&v.addr, seen, status.damage_log, &status.damaged);
                    // A data dir whose disk has made a read or a write
                    // wait past the volume's stall timeout is not
                    // answering: writers go to other volumes, readers to
                    // other replicas, until it does.
                    let stalled = status.dirs.iter().find_map(|d| {
                        d.stalled_ms.map(|ms| {
                            format!(
                                "the disk of data dir {} is not answering: a read or write has waited {:.1} s",
                                d.path,
                                ms as f64 / 1000.0
                            )
                        })
                    });
                    if !h.healthy {
                        tracing::info!(volume = %v.addr, "volume healthy");
                    }
                    match (&h.stalled, &stalled) {
                        (None, Some(why)) => tracing::warn!(
                            volume = %v.addr,
                            error = %why,
                            "volume's disk stalled: it takes no writes, and readers go to other replicas"
                        ),
                        (Some(_), None) => tracing::info!(volume = %v.addr, "volume's disk answers again"),
                        _ => {}
                    }
                    h.healthy = true;
                    h.stalled = stalled;
                    h.last_seen = Some(now_ms());
                    h.last_error = None;
                    h.free_bytes = Some(status.free_bytes);
                    h.read_only = !status.writable;
                    h.used_bytes = Some(status.used_bytes);
                    h.blobs = Some(status.blobs);
                    let ids: Vec<String> = status.dirs.into_iter().map(|d| d.id).collect();
                    if let Some(old) = &h.data_ids {
                        if old.iter().any(|id| !ids.contains(id)) {
                            tracing::warn!(volume = %v.addr, "volume came back without a data dir it had (emptied or replaced disk): readers of older keys go to other replicas until `verify --repair` has run");
                            h.lost_data_at = Some(now_ms());
                        }
                    } else if status.blobs > 0 && self.born_empty.is_some() {
                        tracing::error!(
                            volume = %v.addr,
                            blobs = status.blobs,
                            "the volume holds blobs this index has never known: if the index was lost (or --db is not the cluster's), stop this master and run `trove-master rebuild` (README, \"Recover a lost index\"); gc leaves these blobs alone"
                        );
                        h.foreign_before = Some(now_ms());
                    }
                    h.data_ids = Some(ids);
                }
                Err(e) => {
                    if h.healthy || h.last_error.is_none() {
                        tracing::warn!(volume = %v.addr, error = %e, "volume unhealthy");
                    }
                    h.healthy = false;
                    h.last_error = Some(e.to_string());
                    // Unknown while it does not answer; its next poll says.
                    h.stalled = None;
                }
            }
        });
        futures::future::join_all(polls).await;
    }

    /// Polls every `interval` until the task is dropped, and writes what
    /// changed of the volumes' data dirs to `index`.
    pub async fn monitor(self: Arc<Self>, interval: Duration, index: crate::index::Index) {
        loop {
            let started = Instant::now();
            self.poll_all().await;
            // In a task of its own, one at a time: a write that waits on a
            // frozen index disk must not hold up the polls (a later call
            // writes what this one could not).
            if self.saving.try_lock().is_ok() {
                let (this, index) = (Arc::clone(&self), index.clone());
                tokio::spawn(async move { this.save_disks(&index).await });
            }
            tokio::time::sleep(interval.saturating_sub(started.elapsed())).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trove_common::http::Timeouts;

    fn volumes() -> Volumes {
        let specs = trove_common::placement::parse_volume_list("a:1,b:2,c:3").unwrap();
        let t = Timeouts {
            connect: Duration::from_secs(1),
            stall: Duration::from_secs(1),
        };
        Volumes::new(
            Placement::new(specs, 2).unwrap(),
            VolumeClient::new(t, None, Duration::from_secs(60)),
            0,
        )
    }

    fn set_healthy(v: &Volumes, addr: &str) {
        v.health[addr].write().healthy = true;
    }

    #[test]
    fn reads_go_to_healthy_replicas_in_turn() {
        let v = volumes();
        let stored = vec!["a:1".to_string(), "b:2".to_string()];
        assert_eq!(v.pick_replica(&stored, 0), None, "nothing healthy yet");
        set_healthy(&v, "a:1");
        set_healthy(&v, "b:2");
        let picks: Vec<_> = (0..4).map(|_| v.pick_replica(&stored, 0).unwrap()).collect();
        assert!(picks.contains(&"a:1") && picks.contains(&"b:2"));
        v.mark_down("a:1", "refused");
        assert!((0..4).all(|_| v.pick_replica(&stored, 0) == Some("b:2")));
        assert_eq!(v.healthy_count(), 1);
        // A volume no longer configured is a last resort.
        let old = vec!["gone:9".to_string(), "a:1".to_string()];
        assert_eq!(v.pick_replica(&old, 0), Some("gone:9"));
        // A volume that lost its data serves only keys written since.
        set_healthy(&v, "a:1");
        v.health["a:1"].write().lost_data_at = Some(100);
        assert!((0..4).all(|_| v.pick_replica(&stored, 99) == Some("b:2")));
        let picks: Vec<_> = (0..4).map(|_| v.pick_replica(&stored, 100).unwrap()).collect();
        assert!(picks.contains(&"a:1"));
        v.data_restored(100);
        let picks: Vec<_> = (0..4).map(|_| v.pick_replica(&stored, 99).unwrap()).collect();
        assert!(picks.contains(&"a:1"));
    }

    /// A volume whose disk stalled takes no writes, and serves a key only
    /// when no other replica can.
    #[test]
    fn a_stalled_disk_is_a_last_resort_for_reads_and_takes_no_writes() {
        let v = volumes();
        let stored = vec!["a:1".to_string(), "b:2".to_string()];
        set_healthy(&v, "a:1");
        set_healthy(&v, "b:2");
        v.health["a:1"].write().stalled = Some("hung".into());
        assert!(!v.can_take("a:1", None));
        assert!(v.can_take("b:2", None));
        assert!((0..4).all(|_| v.pick_replica(&stored, 0) == Some("b:2")));
        v.mark_down("b:2", "refused");
        assert_eq!(v.pick_replica(&stored, 0), Some("a:1"), "better than no answer");
        assert_eq!(v.healthy_count(), 1, "it still answers");
    }
}
