//! Copies a reader could not be given, kept for the master: found damaged
//! while being read (a GET, or a compose reading its own copy of a part),
//! or missing when the master sent a reader for them (a file deleted
//! under the volume). The master's poll of `/-/status` takes them and
//! checks each key's replicas, re-copying a bad or missing one from a good
//! one, so that the reader who found the problem is the last one sent to
//! it — without waiting for an operator's `verify`. (A reader who arrives
//! just after a replace also finds its write gone; the master's check then
//! finds every copy as it should be, and changes nothing.)
//!
//! The log holds at most [`KEPT`] reports, each key once. The master says
//! which it has handled by passing the last number it took back on its
//! next poll (`?damage_seen=<log>:<seq>`), and those are dropped. `log` is
//! this process's own id, so that numbers from before a restart are never
//! mistaken for new ones; a report lost with a restart is not lost for
//! good: the copy stays marked damaged, and the next reader sent to it
//! reports it again.

use parking_lot::Mutex;
use std::collections::VecDeque;
use trove_common::key::Key;
use trove_common::protocol::DamageReport;

/// The most reports waiting for the master.
pub const KEPT: usize = 256;

pub struct DamageLog {
    /// This log's id: random, new with each start of the volume (52 bits,
    /// so that JSON readers that hold numbers as doubles keep it exact).
    id: u64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The number the next report gets (from 1).
    next: u64,
    waiting: VecDeque<DamageReport>,
}

impl Default for DamageLog {
    fn default() -> Self {
        DamageLog {
            id: rand::random::<u64>() >> 12,
            inner: Mutex::new(Inner {
                next: 1,
                ..Default::default()
            }),
        }
    }
}

impl DamageLog {
    /// Notes that this volume could not serve its copy of `key` (unless
    /// that is waiting already). The oldest report makes room when the log is full.
    pub fn report(&self, key: &Key) {
        let mut inner = self.inner.lock();
        if inner.waiting.iter().any(|r| r.key == key.as_str()) {
            return;
        }
        if inner.waiting.len() == KEPT {
            if let Some(dropped) = inner.waiting.pop_front() {
                tracing::warn!(key = %dropped.key, "too many damaged copies waiting for the master: this one is left to `verify --repair`");
            }
        }
        let seq = inner.next;
        inner.next += 1;
        inner.waiting.push_back(DamageReport {
            seq,
            key: key.as_str().to_string(),
        });
    }

    /// Drops what the master says it has taken (`seen`: `<log>:<seq>`, as
    /// it got them from [`DamageLog::waiting`]) and answers the rest, with
    /// this log's id.
    pub fn waiting(&self, seen: Option<&str>) -> (u64, Vec<DamageReport>) {
        let mut inner = self.inner.lock();
        let taken = seen
            .and_then(|s| s.split_once(':'))
            .and_then(|(log, seq)| Some((log.parse::<u64>().ok()?, seq.parse::<u64>().ok()?)))
            .filter(|(log, _)| *log == self.id)
            .map(|(_, seq)| seq);
        if let Some(seq) = taken {
            inner.waiting.retain(|r| r.seq > seq);
        }
        (self.id, inner.waiting.iter().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Key::new(s).unwrap()
    }

    #[test]
    fn reports_wait_until_the_master_has_taken_them() {
        let log = DamageLog::default();
        log.report(&key("/a"));
        log.report(&key("/b"));
        log.report(&key("/a"));
        let (id, waiting) = log.waiting(None);
        assert_eq!(
            waiting.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
            ["/a", "/b"]
        );
        // Another log's numbers, or nonsense, take nothing.
        assert_eq!(log.waiting(Some(&format!("{}:2", id + 1))).1.len(), 2);
        assert_eq!(log.waiting(Some("x")).1.len(), 2);
        let first = waiting[0].seq;
        let (_, left) = log.waiting(Some(&format!("{id}:{first}")));
        assert_eq!(left.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["/b"]);
        // Taken, a key is reported again when it is found damaged again.
        log.report(&key("/a"));
        let (_, left) = log.waiting(Some(&format!("{id}:{first}")));
        assert_eq!(
            left.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
            ["/b", "/a"]
        );
        assert!(left[1].seq > left[0].seq);
    }

    #[test]
    fn a_full_log_drops_its_oldest_report() {
        let log = DamageLog::default();
        for i in 0..KEPT + 3 {
            log.report(&key(&format!("/k{i}")));
        }
        let (_, waiting) = log.waiting(None);
        assert_eq!(waiting.len(), KEPT);
        assert_eq!(waiting[0].key, "/k3");
    }
}
