//! A bounded load of concurrent writers and readers, and the checker of
//! everything it saw.
//!
//! Writers PUT values of 16–256 KiB under `<prefix>/w<writer>-<n>` (each
//! key's bytes are fixed by its name, so a retry sends the same value and
//! every key has exactly one sha256 that may ever be read back), retrying
//! a refused write a few times as a client would. Readers read keys already
//! acknowledged, the way a careful client does: ask the master, follow its
//! redirect, and when that replica fails, try the other replicas the master
//! listed (`Key-Volumes`, same signed path); when the master itself does
//! not answer (it is restarting), ask again for up to [`READ_WINDOW`].
//!
//! The [`History`] keeps every write attempt and every read, with its
//! outcome and duration; the tests then prove what the README promises:
//! no request hung, every read served the bytes written under its key,
//! no read of an acknowledged key failed, and at the end every
//! acknowledged write reads back whole.
//!
//! Everything is bounded: writes per writer, time ([`LoadOptions::limit`]),
//! attempts per write, and every request ([`HANG`]).

use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{pattern_bytes, sha256_hex, wait_for};

/// A request that takes longer than this hung: every server-side wait is
/// bounded by the clusters' stall timeout (3 s) and the client's (10 s).
pub const HANG: Duration = Duration::from_secs(60);
/// How long a read keeps asking a master that does not answer.
pub const READ_WINDOW: Duration = Duration::from_secs(30);
/// Attempts of one write before the writer gives up on its key.
const ATTEMPTS: u32 = 6;
/// A writer's pause between two keys.
const PACE: Duration = Duration::from_millis(200);

/// How much load.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub writers: usize,
    pub readers: usize,
    /// Keys each writer writes at most.
    pub per_writer: usize,
    /// The load stops by itself after this long.
    pub limit: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            writers: 4,
            readers: 2,
            per_writer: 150,
            limit: Duration::from_secs(180),
        }
    }
}

/// How a request ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The HTTP status.
    Status(u16),
    /// A transport error (refused, reset, timed out by the client).
    Failed(String),
    /// No answer within [`HANG`].
    Hung,
}

/// One attempt to write a key.
#[derive(Clone, Debug)]
pub struct WriteAttempt {
    pub key: String,
    pub sha256: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub outcome: Outcome,
    pub took: Duration,
}

/// What a read got.
#[derive(Clone, Debug, PartialEq)]
pub enum Served {
    /// A volume served bytes with this sha256.
    Bytes(String),
    /// The master said 404.
    Absent,
    /// Neither the master nor any replica delivered within the window.
    Failed(String),
    Hung,
}

/// One read.
#[derive(Clone, Debug)]
pub struct Read {
    pub key: String,
    pub served: Served,
    /// Replicas that failed before one served the bytes.
    pub failovers: u32,
    /// Why they failed.
    pub failover_errors: Vec<String>,
    /// Times the master had to be asked again.
    pub master_retries: u32,
    pub took: Duration,
}

/// Talks to a cluster: writes through the master, reads with fail-over.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    /// `http://host:port` of the master.
    pub master: String,
}

/// Each key's value: 16–256 KiB of pattern bytes fixed by the key.
pub fn value_of(key: &str) -> Vec<u8> {
    let h = Sha256::digest(key.as_bytes());
    let seed = u64::from_le_bytes(h[..8].try_into().expect("8 bytes"));
    let size = (1 + (seed % 16) as usize) * 16 * 1024;
    pattern_bytes(size, seed)
}

impl Client {
    /// PUT `body` at `key`.
    pub async fn put(&self, key: &str, body: Vec<u8>) -> Outcome {
        let url = format!("{}{}", self.master, trove_common::key::encode_path(key));
        match tokio::time::timeout(HANG, self.http.put(url).body(body).send()).await {
            Err(_) => Outcome::Hung,
            Ok(Err(e)) => Outcome::Failed(chain(&e)),
            Ok(Ok(r)) => Outcome::Status(r.status().as_u16()),
        }
    }

    /// Reads `key` as a careful client does (see the module's comment).
    pub async fn read(&self, key: &str) -> Read {
        let started = Instant::now();
        let mut read = Read {
            key: key.to_string(),
            served: Served::Hung,
            failovers: 0,
            failover_errors: Vec::new(),
            master_retries: 0,
            took: Duration::ZERO,
        };
        if let Ok(served) = tokio::time::timeout(HANG, self.read_with_failover(key, &mut read)).await {
            read.served = served;
        }
        read.took = started.elapsed();
        read
    }

    async fn read_with_failover(&self, key: &str, read: &mut Read) -> Served {
        let url = format!("{}{}", self.master, trove_common::key::encode_path(key));
        let deadline = Instant::now() + READ_WINDOW;
        loop {
            let why = match self.http.get(&url).send().await {
                Ok(r) if r.status() == 404 => return Served::Absent,
                Ok(r) if r.status() == 302 => match self.read_replicas(&r, read).await {
                    Ok(sha) => return Served::Bytes(sha),
                    Err(why) => why,
                },
                Ok(r) => format!("the master answered {}", r.status()),
                Err(e) => format!("the master: {}", chain(&e)),
            };
            if Instant::now() > deadline {
                return Served::Failed(why);
            }
            read.master_retries += 1;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The redirect's replica first, then every other one the master listed.
    async fn read_replicas(&self, redirect: &reqwest::Response, read: &mut Read) -> Result<String, String> {
        let header = |name: &str| {
            redirect
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
        };
        let location = header("location").to_string();
        let rest = location
            .strip_prefix("http://")
            .ok_or_else(|| format!("a redirect to {location}"))?;
        let (first, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut replicas = vec![first.to_string()];
        replicas.extend(
            header("key-volumes")
                .split(',')
                .filter(|v| *v != first)
                .map(String::from),
        );
        let mut errors = Vec::new();
        for replica in replicas {
            match self.fetch(&format!("http://{replica}{path}")).await {
                Ok(sha) => return Ok(sha),
                Err(e) => {
                    read.failovers += 1;
                    read.failover_errors.push(e.clone());
                    errors.push(e);
                }
            }
        }
        Err(errors.join("; "))
    }

    /// GET a volume URL; the sha256 of the whole body on a 200.
    async fn fetch(&self, url: &str) -> Result<String, String> {
        let r = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url}: {}", chain(&e)))?;
        if r.status() != 200 {
            return Err(format!("{url} answered {}", r.status()));
        }
        let mut hasher = Sha256::new();
        let mut body = r.bytes_stream();
        while let Some(chunk) = body.next().await {
            hasher.update(chunk.map_err(|e| format!("{url}: the body broke off: {}", chain(&e)))?);
        }
        Ok(hex::encode(hasher.finalize()))
    }
}

/// An error and its causes (reqwest's own message names only the URL).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Everything the load did.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub writes: Vec<WriteAttempt>,
    pub reads: Vec<Read>,
}

impl History {
    /// Every key written or tried, with the one value it may hold.
    pub fn values(&self) -> HashMap<String, String> {
        self.writes
            .iter()
            .map(|w| (w.key.clone(), w.sha256.clone()))
            .collect()
    }

    /// Keys some attempt got a `201` for, with their sha256.
    pub fn acknowledged(&self) -> HashMap<String, String> {
        self.writes
            .iter()
            .filter(|w| w.outcome == Outcome::Status(201))
            .map(|w| (w.key.clone(), w.sha256.clone()))
            .collect()
    }

    /// Reads that did not deliver an acknowledged key's bytes.
    pub fn failed_reads(&self) -> Vec<&Read> {
        self.reads
            .iter()
            .filter(|r| !matches!(r.served, Served::Bytes(_)))
            .collect()
    }

    /// Write attempts that were not a `201`.
    pub fn refused_writes(&self) -> Vec<&WriteAttempt> {
        self.writes
            .iter()
            .filter(|w| w.outcome != Outcome::Status(201))
            .collect()
    }

    /// One line of counts, for the test's output.
    pub fn summary(&self) -> String {
        let refused = self.refused_writes();
        let by_status = refused.iter().fold(HashMap::<String, usize>::new(), |mut m, w| {
            let what = match &w.outcome {
                Outcome::Status(s) => s.to_string(),
                Outcome::Failed(_) => "transport".into(),
                Outcome::Hung => "hung".into(),
            };
            *m.entry(what).or_default() += 1;
            m
        });
        format!(
            "{} write attempts: {} acknowledged keys, refused {by_status:?}; {} reads: {} failed, {} replica fail-overs, {} master retries",
            self.writes.len(),
            self.acknowledged().len(),
            self.reads.len(),
            self.failed_reads().len(),
            self.reads.iter().map(|r| r.failovers).sum::<u32>(),
            self.reads.iter().map(|r| r.master_retries).sum::<u32>(),
        ) + &self.failover_sample()
    }

    /// Up to three reasons replicas failed, for the test's output.
    fn failover_sample(&self) -> String {
        let errors: Vec<&String> = self
            .reads
            .iter()
            .flat_map(|r| &r.failover_errors)
            .take(3)
            .collect();
        if errors.is_empty() {
            String::new()
        } else {
            format!(" (e.g. {errors:?})")
        }
    }

    /// What every case must show: no request hung, no read served bytes
    /// other than the value written under its key, and no read of an
    /// acknowledged key failed (fail-over and retries included).
    pub fn assert_clean(&self) {
        eprintln!("{}", self.summary());
        assert!(
            !self.writes.is_empty() && !self.reads.is_empty(),
            "the load did nothing"
        );
        for w in &self.writes {
            assert_ne!(w.outcome, Outcome::Hung, "PUT {} hung", w.key);
            if let Outcome::Status(s) = w.outcome {
                // 201; 5xx for a failed replica, 409 while an earlier
                // attempt's clean-up holds the key, 403 when an attempt the
                // client saw fail had in fact landed.
                assert!(
                    s == 201 || s >= 500 || s == 409 || (s == 403 && w.attempt > 1),
                    "PUT {} (attempt {}) answered {s}",
                    w.key,
                    w.attempt
                );
            }
        }
        let values = self.values();
        for r in &self.reads {
            if let Served::Bytes(sha) = &r.served {
                assert_eq!(
                    Some(sha),
                    values.get(&r.key),
                    "{} served bytes never written under it",
                    r.key
                );
            }
        }
        let failed = self.failed_reads();
        assert!(
            failed.is_empty(),
            "reads of acknowledged keys failed: {failed:#?}"
        );
    }

    /// The end state: every acknowledged key reads back whole; a key no
    /// attempt got a `201` for is absent, or (only if `lost_acks_ok`: a
    /// server died between storing it and answering) whole.
    pub async fn assert_readable(&self, client: &Client, lost_acks_ok: bool) {
        let acked = self.acknowledged();
        for (key, sha) in &acked {
            let read = client.read(key).await;
            assert_eq!(read.served, Served::Bytes(sha.clone()), "acknowledged {key}");
        }
        for (key, sha) in self.values() {
            if acked.contains_key(&key) {
                continue;
            }
            match client.read(&key).await.served {
                Served::Absent => {}
                Served::Bytes(got) if lost_acks_ok => assert_eq!(got, sha, "{key} is whole"),
                other => panic!("{key} was never acknowledged, yet reads as {other:?}"),
            }
        }
        eprintln!("{} acknowledged keys read back whole", acked.len());
    }
}

/// A running load; [`Workload::stop`] ends it and returns its history.
pub struct Workload {
    stop: Arc<AtomicBool>,
    writers_left: Arc<std::sync::atomic::AtomicUsize>,
    history: Arc<Mutex<History>>,
    acked: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    /// Starts writers and readers on keys under `prefix` (e.g. `/part`).
    pub fn start(client: &Client, prefix: &str, opts: LoadOptions) -> Workload {
        let load = Workload {
            stop: Arc::new(AtomicBool::new(false)),
            writers_left: Arc::new(opts.writers.into()),
            history: Arc::default(),
            acked: Arc::default(),
            tasks: Vec::new(),
        };
        let until = Instant::now() + opts.limit;
        let mut tasks = Vec::new();
        for w in 0..opts.writers {
            let (client, prefix) = (client.clone(), prefix.to_string());
            let (stop, history, acked) = (
                Arc::clone(&load.stop),
                Arc::clone(&load.history),
                Arc::clone(&load.acked),
            );
            let writers_left = Arc::clone(&load.writers_left);
            tasks.push(tokio::spawn(async move {
                for n in 0..opts.per_writer {
                    if stop.load(Ordering::SeqCst) || Instant::now() > until {
                        break;
                    }
                    let key = format!("{prefix}/w{w}-{n}");
                    let value = value_of(&key);
                    let sha256 = sha256_hex(&value);
                    for attempt in 1..=ATTEMPTS {
                        let started = Instant::now();
                        let outcome = client.put(&key, value.clone()).await;
                        let done = match &outcome {
                            Outcome::Status(201) => {
                                acked.lock().unwrap().push(key.clone());
                                true
                            }
                            Outcome::Status(s) => *s != 409 && *s < 500,
                            Outcome::Failed(_) => false,
                            Outcome::Hung => true,
                        };
                        history.lock().unwrap().writes.push(WriteAttempt {
                            key: key.clone(),
                            sha256: sha256.clone(),
                            attempt,
                            outcome,
                            took: started.elapsed(),
                        });
                        if done {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(500) * attempt).await;
                    }
                    // A steady trickle rather than a burst: the load must
                    // last as long as the fault, whatever the machine.
                    tokio::time::sleep(PACE).await;
                }
                writers_left.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for r in 0..opts.readers {
            let client = client.clone();
            let (stop, history, acked) = (
                Arc::clone(&load.stop),
                Arc::clone(&load.history),
                Arc::clone(&load.acked),
            );
            tasks.push(tokio::spawn(async move {
                let mut turn = r;
                while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                    let key = {
                        let acked = acked.lock().unwrap();
                        // A spread of old and new keys, without a shared RNG.
                        (!acked.is_empty()).then(|| acked[(turn * 7919) % acked.len()].clone())
                    };
                    turn += 1;
                    if let Some(key) = key {
                        let read = client.read(&key).await;
                        history.lock().unwrap().reads.push(read);
                    }
                    // Readers leave the machine's two cores to the servers.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }));
        }
        Workload { tasks, ..load }
    }

    /// The keys acknowledged so far.
    pub fn acked_keys(&self) -> Vec<String> {
        self.acked.lock().unwrap().clone()
    }

    /// How many keys were acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// How many reads were done so far.
    pub fn reads(&self) -> usize {
        self.history.lock().unwrap().reads.len()
    }

    /// Waits until `n` keys were acknowledged.
    pub async fn wait_acked(&self, n: usize) {
        wait_for(&format!("{n} acknowledged writes"), || async {
            self.acked() >= n
        })
        .await;
    }

    /// Waits for `more` acknowledgements than now.
    pub async fn wait_more_acked(&self, more: usize) {
        self.wait_acked(self.acked() + more).await;
    }

    /// Waits until every writer has written its keys (readers go on).
    pub async fn wait_writers_done(&self) {
        wait_for("the writers to finish", || async {
            self.writers_left.load(Ordering::SeqCst) == 0
        })
        .await;
    }

    /// Stops the load (requests in flight finish) and returns its history.
    pub async fn stop(self) -> History {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.expect("a load task panicked");
        }
        let history = self.history.lock().unwrap().clone();
        history
    }
}

#[cfg(test)]
mod tests {
    //! The checker must fail on what it is there to catch.
    use super::*;

    fn history(write: Outcome, served: Served) -> History {
        History {
            writes: vec![WriteAttempt {
                key: "/k".into(),
                sha256: "aa".into(),
                attempt: 1,
                outcome: write,
                took: Duration::ZERO,
            }],
            reads: vec![Read {
                key: "/k".into(),
                served,
                failovers: 0,
                failover_errors: vec![],
                master_retries: 0,
                took: Duration::ZERO,
            }],
        }
    }

    #[test]
    fn a_clean_history_passes() {
        history(Outcome::Status(201), Served::Bytes("aa".into())).assert_clean();
    }

    #[test]
    #[should_panic(expected = "served bytes never written under it")]
    fn bytes_never_written_are_caught() {
        history(Outcome::Status(201), Served::Bytes("bb".into())).assert_clean();
    }

    #[test]
    #[should_panic(expected = "reads of acknowledged keys failed")]
    fn a_failed_read_is_caught() {
        history(Outcome::Status(201), Served::Failed("refused".into())).assert_clean();
    }

    #[test]
    #[should_panic(expected = "reads of acknowledged keys failed")]
    fn an_acknowledged_key_read_as_absent_is_caught() {
        history(Outcome::Status(201), Served::Absent).assert_clean();
    }

    #[test]
    #[should_panic(expected = "hung")]
    fn a_hung_write_is_caught() {
        history(Outcome::Hung, Served::Bytes("aa".into())).assert_clean();
    }

    #[test]
    #[should_panic(expected = "answered 400")]
    fn a_client_error_is_caught() {
        history(Outcome::Status(400), Served::Bytes("aa".into())).assert_clean();
    }
}
