//! Group commit (`--shared-sync`): concurrent writers share one sync
//! instead of each paying for its own.
//!
//! A writer that needs what it has done so far made durable (a file's
//! bytes, a rename, an unlink) calls [`GroupSync::wait`]. Writers arrive
//! into the *gathering* group. If no sync is running, the caller becomes
//! the group's leader: it closes the group (later arrivals gather into the
//! next one), runs the sync once for everyone in it, and wakes them all
//! with its outcome. If a sync is running, the caller waits for it to end,
//! and then its own group is synced by whichever member leads it.
//!
//! So no writer returns before a sync that *began after it arrived* has
//! finished — every change it made before calling is covered — and under
//! load one sync serves as many writers as arrived while the previous one
//! ran. A failed sync fails every writer of its group (none of them may
//! acknowledge anything); the next group tries again.
//!
//! The sync is a `syncfs` of the data dir's file system ([`DirSync`]),
//! which also flushes whatever else is dirty there — on this project's
//! shared build machine a compile's hundreds of MiB, which once held a
//! small write past the master's stall timeout. Hence opt-in, for data
//! dirs on file systems of their own; without it every change fsyncs its
//! own file or directory.

use parking_lot::{Condvar, Mutex};
use std::io;
use std::sync::{Arc, OnceLock};

/// The outcome of one group's sync, shared by its members.
type Outcome = Arc<OnceLock<Result<(), (io::ErrorKind, String)>>>;

/// A commit queue: see the module's doc.
#[derive(Default)]
pub(super) struct GroupSync {
    state: Mutex<Queue>,
    ended: Condvar,
}

#[derive(Default)]
struct Queue {
    /// The group arrivals join: synced by the next sync to start.
    gathering: Outcome,
    /// Whether a leader is syncing (a group closed, its outcome not yet set).
    syncing: bool,
}

impl GroupSync {
    /// Returns once `sync` (run by this caller or another) has completed
    /// after this call began, with that sync's result. Blocking.
    pub(super) fn wait(&self, sync: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        let mut queue = self.state.lock();
        let mine = Arc::clone(&queue.gathering);
        loop {
            if let Some(outcome) = mine.get() {
                return outcome
                    .clone()
                    .map_err(|(kind, message)| io::Error::new(kind, message));
            }
            if !queue.syncing {
                // Lead: close the group this caller is in (it is still
                // gathering: its outcome is unset and no sync is running).
                queue.syncing = true;
                queue.gathering = Outcome::default();
                drop(queue);
                let result = sync();
                let _ = mine.set(result.as_ref().map(|_| ()).map_err(|e| (e.kind(), e.to_string())));
                let mut queue = self.state.lock();
                queue.syncing = false;
                drop(queue);
                self.ended.notify_all();
                return result;
            }
            self.ended.wait(&mut queue);
        }
    }
}

/// Values up to this size are made durable by shared syncs (with
/// `--shared-sync`); larger ones by their own fsyncs.
pub(super) const SHARED_SYNC_MAX: u64 = 1 << 20;

/// A data dir's commit queue: its members' changes are made durable by
/// one `syncfs` of the data dir's file system — data, extended
/// attributes, directory entries, unlinks, wherever they are in the dir —
/// so one call covers every member, whichever files and directories each
/// touched. (It also flushes whatever else is dirty on that file system:
/// a volume's data dirs are best on disks of their own.) Since Linux 5.8
/// `syncfs` reports write-back errors of the file system, as `fsync` does
/// for a file.
pub(super) struct DirSync {
    queue: GroupSync,
    root: std::fs::File,
}

impl DirSync {
    pub(super) fn open(dir: &std::path::Path) -> io::Result<DirSync> {
        Ok(DirSync {
            queue: GroupSync::default(),
            root: std::fs::File::open(dir)?,
        })
    }

    /// Returns once everything the caller changed in this data dir
    /// before calling is durable. Blocking.
    pub(super) fn commit(&self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        self.queue
            .wait(|| nix::unistd::syncfs(self.root.as_raw_fd()).map_err(io::Error::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::thread;

    /// Every writer returns only once a sync that saw its change has
    /// finished, and concurrent writers share syncs.
    #[test]
    fn each_writer_is_covered_by_a_sync_that_began_after_it() {
        const WRITERS: u64 = 16;
        const ROUNDS: u64 = 50;
        let group = Arc::new(GroupSync::default());
        // `written` counts changes made; `durable` is how many a finished
        // sync covered (what `written` was when that sync began).
        let written = Arc::new(AtomicU64::new(0));
        let durable = Arc::new(AtomicU64::new(0));
        let syncs = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..WRITERS)
            .map(|_| {
                let (group, written, durable, syncs) =
                    (group.clone(), written.clone(), durable.clone(), syncs.clone());
                thread::spawn(move || {
                    for _ in 0..ROUNDS {
                        let mine = written.fetch_add(1, Ordering::SeqCst) + 1;
                        group
                            .wait(|| {
                                let seen = written.load(Ordering::SeqCst);
                                syncs.fetch_add(1, Ordering::SeqCst);
                                thread::sleep(std::time::Duration::from_millis(1));
                                durable.fetch_max(seen, Ordering::SeqCst);
                                Ok(())
                            })
                            .unwrap();
                        assert!(
                            durable.load(Ordering::SeqCst) >= mine,
                            "a writer returned before its change was synced"
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let syncs = syncs.load(Ordering::SeqCst) as u64;
        assert!(syncs >= 1);
        assert!(
            syncs < WRITERS * ROUNDS,
            "{syncs} syncs for {} writes: none were shared",
            WRITERS * ROUNDS
        );
    }

    /// A failed sync fails every member of its group, and only them: the
    /// next group syncs again and succeeds.
    #[test]
    fn a_failed_sync_fails_its_whole_group_and_the_next_retries() {
        let group = Arc::new(GroupSync::default());
        let release = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        // A leader whose sync fails only once the others have queued.
        let leader = {
            let (group, release) = (group.clone(), release.clone());
            thread::spawn(move || {
                group.wait(|| {
                    let (lock, cv) = &*release;
                    let mut go = lock.lock().unwrap();
                    while !*go {
                        go = cv.wait(go).unwrap();
                    }
                    Err(io::Error::other("disk on fire"))
                })
            })
        };
        // Wait until the leader is syncing, then queue two more writers:
        // they form the next group, synced after the failed one.
        while !group.state.lock().syncing {
            thread::yield_now();
        }
        let followers: Vec<_> = (0..2)
            .map(|_| {
                let group = group.clone();
                thread::spawn(move || group.wait(|| Ok(())))
            })
            .collect();
        *release.0.lock().unwrap() = true;
        release.1.notify_all();
        let failed = leader.join().unwrap().unwrap_err();
        assert_eq!(failed.to_string(), "disk on fire");
        for f in followers {
            f.join().unwrap().expect("a later group syncs again");
        }
    }

    /// Members of a failed group that did not lead it get its error too.
    #[test]
    fn members_who_did_not_lead_get_the_groups_error() {
        let group = GroupSync::default();
        // Close a group by hand with two members: the first leads.
        let member = Arc::clone(&group.state.lock().gathering);
        let led = group.wait(|| Err(io::Error::new(io::ErrorKind::StorageFull, "full")));
        assert_eq!(led.unwrap_err().kind(), io::ErrorKind::StorageFull);
        let outcome = member.get().expect("the group has an outcome").clone();
        assert_eq!(outcome.unwrap_err().0, io::ErrorKind::StorageFull);
    }
}
