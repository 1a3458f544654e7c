//! Faults injected for real under concurrent load — 32 writers of 1–16 MiB
//! values and readers of everything acknowledged: a volume killed (-9) and
//! restarted, the master killed and restarted, a volume frozen (SIGSTOP)
//! past the stall timeout, a volume's disk full and then read-only, a byte
//! of a stored blob flipped. After each: every acknowledged write reads
//! back byte-identical, no refused write is visible, no request hung, and
//! after `verify --repair` and `gc` there are no orphans and no missing
//! replicas.

use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::future::Future;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use trove_tests::{pattern, sha256_hex, wait_for, Cluster, ClusterOptions, MasterClient as Client};

const WRITERS: usize = 32;
const PER_WRITER: usize = 2;
/// Longer than any request may take: one that does is a hang.
const HANG: Duration = Duration::from_secs(90);

/// What happened to one write.
#[derive(Debug, Clone)]
struct Write {
    key: String,
    sha256: String,
    /// The status, or the transport error.
    result: Result<u16, String>,
    /// When the answer (or the transport error) came.
    ended: Instant,
}

fn size_of(writer: usize, n: usize) -> u64 {
    let mix = (writer as u64 * 7919 + n as u64 * 104_729) % 15;
    (1 + mix) << 20 // 1–16 MiB
}

/// Runs the load while `fault` runs; returns every write's outcome once
/// both are done. `acked` counts 201s as they come; readers leave alone
/// the keys the fault puts in `corrupted` (nothing can know they are bad
/// until `verify` runs).
async fn under_load<F: Future<Output = ()>>(
    client: &Client,
    tag: &str,
    acked: Arc<AtomicUsize>,
    corrupted: &Mutex<HashSet<String>>,
    fault: F,
) -> Vec<Write> {
    let done = Arc::new(Mutex::new(Vec::<Write>::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (http, master, tag) = (client.http.clone(), client.master.clone(), tag.to_string());
            let (done, acked) = (Arc::clone(&done), Arc::clone(&acked));
            tokio::spawn(async move {
                for n in 0..PER_WRITER {
                    let key = format!("/{tag}/{w}-{n}");
                    let size = size_of(w, n);
                    let (body, digest) = pattern(size, (w * 100 + n) as u64);
                    let request = http
                        .put(format!("http://{master}{key}"))
                        .header("content-length", size)
                        .body(reqwest::Body::wrap_stream(body))
                        .send();
                    let result = match tokio::time::timeout(HANG, request).await {
                        Err(_) => Err("hung".to_string()),
                        Ok(Err(e)) => Err(e.to_string()),
                        Ok(Ok(r)) => Ok(r.status().as_u16()),
                    };
                    if result == Ok(201) {
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    let sha256 = digest.lock().unwrap().clone().unwrap_or_default();
                    done.lock().unwrap().push(Write {
                        key,
                        sha256,
                        result,
                        ended: Instant::now(),
                    });
                }
            })
        })
        .collect();
    let readers = read_while_writing(client, Arc::clone(&done), corrupted);
    let ((), read_count) = tokio::join!(fault, readers);
    for w in writers {
        w.await.unwrap();
    }
    eprintln!("{tag}: {read_count} reads during the load");
    let writes = done.lock().unwrap().clone();
    assert_eq!(writes.len(), WRITERS * PER_WRITER);
    for w in &writes {
        assert_ne!(w.result, Err("hung".into()), "{} hung", w.key);
    }
    writes
}

/// Reads acknowledged values while the writers run; each read may be
/// retried (a replica may be going down) for up to 30 s, but must succeed
/// with the right bytes.
async fn read_while_writing(
    c: &Client,
    done: Arc<Mutex<Vec<Write>>>,
    corrupted: &Mutex<HashSet<String>>,
) -> usize {
    let mut reads = 0;
    for round in 0..400 {
        let target = {
            let done = done.lock().unwrap();
            let ok: Vec<&Write> = done.iter().filter(|w| w.result == Ok(201)).collect();
            if done.len() == WRITERS * PER_WRITER {
                break;
            }
            ok.get(round % ok.len().max(1))
                .map(|w| (w.key.clone(), w.sha256.clone()))
        };
        let Some((key, sha)) = target else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // A key to be flipped is left alone: a reader that found the damage
        // would have it repaired before the check the test makes of it.
        if corrupted.lock().unwrap().contains(&key) {
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let result = read_sha(c, &key).await;
            if corrupted.lock().unwrap().contains(&key) {
                break;
            }
            match result {
                Ok(got) if got == sha => break,
                Ok(got) => panic!("{key} read back as {got}, written as {sha}"),
                Err(e) => {
                    assert!(Instant::now() < deadline, "{key} unreadable for 30 s: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        reads += 1;
    }
    reads
}

/// Follows the master's redirect and hashes the body as it streams.
async fn read_sha(c: &Client, key: &str) -> Result<String, String> {
    let r = tokio::time::timeout(Duration::from_secs(10), c.http.get(c.url(key)).send())
        .await
        .map_err(|_| "master timed out".to_string())?
        .map_err(|e| e.to_string())?;
    if r.status() != 302 {
        return Err(format!("master answered {}", r.status()));
    }
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let read = async {
        let r = c.http.get(&location).send().await.map_err(|e| e.to_string())?;
        if r.status() != 200 {
            return Err(format!("{location} answered {}", r.status()));
        }
        let mut h = Sha256::new();
        let mut body = r.bytes_stream();
        while let Some(chunk) = body.next().await {
            h.update(chunk.map_err(|e| e.to_string())?);
        }
        Ok(hex::encode(h.finalize()))
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .map_err(|_| format!("{location} timed out"))?
}

/// Waits until `n` writes were acknowledged.
async fn after_acks(acked: &AtomicUsize, n: usize) {
    wait_for(&format!("{n} acknowledged writes"), || async {
        acked.load(Ordering::SeqCst) >= n
    })
    .await;
}

/// The checks every scenario ends with. `lost_acks_ok`: a refused write may
/// be visible (only when the master itself died between storing a record
/// and answering), but then it must be whole.
async fn assert_recovered(c: &Cluster, writes: &[Write], replicas: usize, lost_acks_ok: bool) {
    for w in writes {
        let visible = c.head(&w.key).await.status() == 302;
        let client = Client::of(c);
        if w.result == Ok(201) {
            assert_eq!(
                read_sha(&client, &w.key).await,
                Ok(w.sha256.clone()),
                "acknowledged {}",
                w.key
            );
        } else if visible {
            assert!(
                lost_acks_ok,
                "{} was refused ({:?}) but is visible",
                w.key, w.result
            );
            assert_eq!(
                read_sha(&client, &w.key).await,
                Ok(w.sha256.clone()),
                "{} is whole",
                w.key
            );
        }
    }
    let (code, out) = c.admin(&["verify", "--repair"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = c.admin(&["gc", "--grace", "0s"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = c.admin(&["verify", "--deep"]).await;
    assert_eq!(code, 0, "no missing or corrupt replica: {out}");
    c.assert_no_orphans().await;
    // Every live key has its full replica count.
    let list: serde_json::Value = c.json("/?list").await;
    for key in list["keys"].as_array().unwrap() {
        let key = trove_common::key::encode_path(key.as_str().unwrap());
        let vols = c.head(&key).await.headers()["key-volumes"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(vols.split(',').count(), replicas, "{key}");
    }
    assert_eq!(c.status().await["keys"]["writing"], 0);
}

/// A `408`: the master waited the stall timeout for the next chunk of
/// the write's body. On a 2-core machine, 32 writers starting at once (in
/// this process, which also hashes every body it sends and reads) are
/// sometimes not fed that long; seen on the first write of a writer, with
/// or without a fault, and with the code of earlier sessions too. It is
/// the client's stall, not the server's failure: a volume's own `408`
/// becomes a `502` at the master (`a_volumes_status_is_not_passed_through`
/// in master/src/error.rs), so a `408` here can only be the master's
/// correct answer to a starved writer. Tolerated, and logged.
fn stalled(w: &Write) -> bool {
    if w.result == Ok(408) {
        eprintln!("{}: 408 (the body stalled)", w.key);
        return true;
    }
    false
}

/// Refused writes failed as a server error, not a hang or another 4xx.
fn assert_failures_are_5xx(writes: &[Write]) -> usize {
    let failed: Vec<_> = writes.iter().filter(|w| w.result != Ok(201)).collect();
    for w in failed.iter().filter(|w| !stalled(w)) {
        assert!(matches!(w.result, Ok(s) if s >= 500), "{}: {:?}", w.key, w.result);
    }
    eprintln!("{} of {} writes refused", failed.len(), writes.len());
    failed.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_killed_mid_writes() {
    let mut c = Cluster::start_default().await;
    let client = Client::of(&c);
    let acked = Arc::new(AtomicUsize::new(0));
    let fault = async {
        after_acks(&acked, 8).await;
        c.volumes[1].kill();
        c.wait_volume_health(1, false).await;
        c.volumes[1].restart();
        c.wait_volume_health(1, true).await;
    };
    let writes = under_load(&client, "vkill", Arc::clone(&acked), &Mutex::default(), fault).await;
    assert_failures_are_5xx(&writes);
    assert_recovered(&c, &writes, 2, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_killed_mid_writes() {
    let mut c = Cluster::start_default().await;
    let client = Client::of(&c);
    let acked = Arc::new(AtomicUsize::new(0));
    let fault = async {
        after_acks(&acked, 8).await;
        c.master.kill();
        c.master.restart();
        c.wait_until_ready().await;
    };
    let writes = under_load(&client, "mkill", Arc::clone(&acked), &Mutex::default(), fault).await;
    // Writes cut off by the kill fail at the transport (none hung:
    // `under_load` checked); with 32 writers busy when it died, some were.
    let cut = writes.iter().filter(|w| w.result.is_err()).count();
    eprintln!("{cut} writes cut off by the master's death");
    assert!(cut > 0, "no write was in flight when the master died");
    assert_recovered(&c, &writes, 2, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_frozen_past_the_stall_timeout() {
    // Not shorter: 32 writers start at once on a 2-core machine, and a
    // writer whose body the busy test process does not produce for a
    // stall timeout gets a (correct) 408 that has nothing to do with the
    // frozen volume.
    const STALL: Duration = Duration::from_secs(5);
    let stall = ["--stall-timeout".to_string(), format!("{}s", STALL.as_secs())];
    let c = Cluster::start(ClusterOptions {
        master_args: stall.to_vec(),
        volume_args: stall.to_vec(),
        ..Default::default()
    })
    .await;
    let client = Client::of(&c);
    let acked = Arc::new(AtomicUsize::new(0));
    let thawed = Mutex::new(None);
    let fault = async {
        after_acks(&acked, 8).await;
        c.volumes[1].signal("STOP");
        // The master notices (its poll times out after the stall timeout)…
        c.wait_volume_health(1, false).await;
        // …and reads go to the other replicas while writes go elsewhere.
        after_acks(&acked, 24).await;
        c.volumes[1].signal("CONT");
        *thawed.lock().unwrap() = Some(Instant::now());
        c.wait_volume_health(1, true).await;
    };
    let writes = under_load(&client, "frozen", Arc::clone(&acked), &Mutex::default(), fault).await;
    assert_failures_are_5xx(&writes);
    // Failed fast: no refused write waited for the frozen volume to come
    // back. Its answer came while the volume was frozen, or within one
    // stall timeout of the thaw for a write that was already timing out
    // then.
    let thawed = thawed.lock().unwrap().expect("the volume was thawed");
    for w in writes.iter().filter(|w| w.result != Ok(201)) {
        assert!(
            w.ended <= thawed + STALL,
            "{} was answered {:?} after the thaw",
            w.key,
            w.ended - thawed
        );
    }
    // The key locks were released: each refused write takes a retry at
    // once (README: a 5xx write may be retried).
    for w in writes.iter().filter(|w| w.result != Ok(201)) {
        assert_eq!(
            c.put(&w.key, vec![7u8; 1000]).await,
            201,
            "the retry of {}",
            w.key
        );
    }
    let retried: Vec<Write> = writes
        .into_iter()
        .map(|w| {
            if w.result == Ok(201) {
                w
            } else {
                Write {
                    sha256: sha256_hex(&[7u8; 1000]),
                    result: Ok(201),
                    ..w
                }
            }
        })
        .collect();
    assert_recovered(&c, &retried, 2, false).await;
}

/// A tmpfs mounted on a volume's data dir, unmounted on drop.
struct Mount(std::path::PathBuf);

impl Mount {
    /// `None` (with a note) where mounting is not permitted (not root);
    /// a failure under CI.
    fn tmpfs(dir: &std::path::Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                dir.to_str().unwrap(),
            ])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Under CI the case must run: a skip there would pass without
            // checking anything.
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "cannot mount a tmpfs under CI (needs root): the disk-full case must run"
            );
            eprintln!("SKIPPED: cannot mount a tmpfs here (needs root); the disk-full case was not run");
        }
        ok.then(|| Mount(dir.to_path_buf()))
    }

    fn remount(&self, opts: &str) {
        let status = Command::new("mount")
            .args(["-o", opts, self.0.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .args(["-l", self.0.to_str().unwrap()])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_then_read_only() {
    let mut c = Cluster::start(ClusterOptions {
        master_args: vec!["--min-free".into(), "4MiB".into()],
        ..Default::default()
    })
    .await;
    // Volume 2's data dir becomes a 40 MiB disk.
    c.volumes[2].kill();
    let Some(disk) = Mount::tmpfs(&c.volume_dir(2), "40m") else {
        return;
    };
    c.volumes[2].restart();
    c.wait_volume_health(2, true).await;
    let client = Client::of(&c);
    let acked = Arc::new(AtomicUsize::new(0));
    let writes = under_load(&client, "full", Arc::clone(&acked), &Mutex::default(), async {}).await;
    // The small disk filled: writes that still reached it got 507 (the
    // volume said it is full), the rest went elsewhere.
    for w in writes.iter().filter(|w| w.result != Ok(201) && !stalled(w)) {
        assert_eq!(w.result, Ok(507), "{}", w.key);
    }
    eprintln!(
        "{} writes got 507",
        writes.iter().filter(|w| w.result == Ok(507)).count()
    );
    // It did fill: less is free than the largest value (16 MiB) and
    // --min-free (4 MiB) need (about 360 MiB of the load was placed on it)…
    wait_for("the master to see the small disk full", || async {
        c.status().await["volumes"][2]["free_bytes"]
            .as_u64()
            .is_some_and(|free| free < 20 << 20)
    })
    .await;
    // …and acknowledged values whose home includes it went around it.
    let full = c.volumes[2].addr.clone();
    let mut went_around = 0;
    for w in writes.iter().filter(|w| w.result == Ok(201)) {
        let r = c.head(&w.key).await;
        let volumes = trove_tests::key_volumes(r.headers());
        if !volumes.contains(&full) && r.headers()["key-balance"] == "unbalanced" {
            went_around += 1;
        }
    }
    assert!(went_around > 0, "no write was sent around the full disk");
    assert!(
        writes.iter().filter(|w| w.result == Ok(201)).count() >= WRITERS,
        "most writes landed"
    );
    assert_eq!(c.temp_files(2), 0, "nothing partial on the full disk");

    // Now read-only: the volume says so, the master stops writing there,
    // and its blobs are still served.
    disk.remount("remount,ro");
    wait_for("the master to see the read-only volume", || async {
        c.status().await["volumes"][2]["read_only"] == true
    })
    .await;
    for i in 0..10 {
        let key = format!("/after-ro/{i}");
        assert_eq!(c.put(&key, vec![1u8; 100_000]).await, 201, "{key}");
        let vols = c.head(&key).await.headers()["key-volumes"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            !vols.contains(&c.volumes[2].addr),
            "{key} was written to the read-only volume"
        );
    }
    // Direct writes to it fail with a clear 507.
    let r = c
        .http
        .put(format!("http://{}/direct", c.volumes[2].addr))
        .header("trove-master", "1")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 507);
    assert!(r.text().await.unwrap().contains("read-only"));
    disk.remount("remount,rw");
    wait_for("the volume to be writable again", || async {
        c.status().await["volumes"][2]["read_only"] == false
    })
    .await;
    assert_recovered(&c, &writes, 2, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_found_skipped_and_repaired() {
    let c = Cluster::start_default().await;
    let client = Client::of(&c);
    let acked = Arc::new(AtomicUsize::new(0));
    let rotten: Mutex<Option<(String, String)>> = Mutex::new(None);
    // Named before the load starts, so that no reader is ever reading it
    // when the byte flips (the volume would report it, and the master
    // repair it before the check below).
    let corrupted = Mutex::new(HashSet::from(["/rot/0-0".to_string()]));
    let fault = async {
        after_acks(&acked, 8).await;
        // The first key written by writer 0 is acknowledged by now or soon.
        wait_for("writer 0's first value", || async {
            c.head("/rot/0-0").await.status() == 302
        })
        .await;
        let vols = c.head("/rot/0-0").await.headers()["key-volumes"]
            .to_str()
            .unwrap()
            .to_string();
        let addr = vols.split(',').next().unwrap().to_string();
        let path = c.blob_path(c.volume_index(&addr), "/rot/0-0");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[1000] ^= 0x20;
        // Flip in place (same inode), as bit rot would.
        use std::io::{Seek, SeekFrom, Write as _};
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(SeekFrom::Start(1000)).unwrap();
        f.write_all(&bytes[1000..1001]).unwrap();
        *rotten.lock().unwrap() = Some(("/rot/0-0".into(), addr));
    };
    let writes = under_load(&client, "rot", Arc::clone(&acked), &corrupted, fault).await;
    let (key, bad) = rotten.lock().unwrap().clone().unwrap();

    let (code, out) = c.admin(&["verify", "--deep"]).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(out.matches("is corrupt").count(), 1, "{out}");
    assert!(
        out.contains(&format!("{key}: replica on {bad} is corrupt")),
        "{out}"
    );
    // The volume refuses to serve what it knows is wrong (a HEAD: a
    // reader's GET would have the copy repaired at once)…
    let direct = c.http.head(format!("http://{bad}{key}")).send().await.unwrap();
    assert_eq!(direct.status(), 503);
    // …and the master sends every reader to the good replica.
    for _ in 0..6 {
        let location = c.head(&key).await.headers()["location"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            !location.contains(&bad),
            "redirected to the damaged copy: {location}"
        );
        assert_eq!(
            read_sha(&client, &key).await.unwrap(),
            writes.iter().find(|w| w.key == key).unwrap().sha256
        );
    }
    let (code, out) = c.admin(&["verify", "--deep", "--repair"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 repaired"), "{out}");
    assert_eq!(
        c.http
            .get(format!("http://{bad}{key}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_recovered(&c, &writes, 2, false).await;
}
