//! A volume whose disk stops answering must still answer `/-/healthy`
//! and every request that does not need that disk: disk work runs on the
//! blocking pool, except one short call at a time on a thread that serves
//! HTTP (the servers run two: `TOKIO_WORKER_THREADS`). (Readers of the hung disk's copies
//! wait; a client's or the gateway's timeout sends them to another
//! replica.) The disk here is a FUSE file bind-mounted over a stored
//! blob whose reads hang until released (`trove_tests::hung_disk`); it
//! needs root and `/dev/fuse`, which CI has — without them this test
//! fails, it does not skip. A disk that hangs writes only is a frozen
//! file system of its own (`trove_tests::frozen_disk`: root and loop
//! devices).

use std::path::{Path, PathBuf};
use std::time::Duration;
use trove_tests::frozen_disk::LoopDisk;
use trove_tests::hung_disk::HungFile;
use trove_tests::{
    lone_volume, no_redirects, pattern_bytes, sha256_hex, wait_for, Cluster, ClusterOptions, Server, WAIT,
};

const MIB: usize = 1 << 20;
/// The volume's `DISK_READS_PER_DIR`.
const READS_PER_DIR: usize = 64;
/// Readers beyond it.
const EXCESS: usize = 4;

/// A lone volume (stall timeout 2 s) holding a value under `/stuck`, and
/// that blob's file.
struct Stuck {
    v: Server,
    blob: PathBuf,
    _dir: tempfile::TempDir,
}

async fn stuck(value: &[u8]) -> Stuck {
    let dir = tempfile::tempdir().unwrap();
    let v = lone_volume(dir.path(), &["--stall-timeout", "2s"]);
    let url = format!("http://{}/stuck", v.addr);
    let put = no_redirects()
        .put(&url)
        .header("trove-master", "1")
        .body(value.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let h = sha256_hex(b"/stuck");
    let blob = dir.path().join("vol0").join(&h[0..2]).join(&h[2..4]).join(&h);
    Stuck { v, blob, _dir: dir }
}

/// A FUSE file that can hang, over `blob`; fails loudly where it cannot
/// be mounted.
fn hang_over(blob: &Path) -> HungFile {
    HungFile::over(blob).unwrap_or_else(|e| {
        panic!(
            "cannot put a hanging FUSE file over {}: {e} (this test needs root and /dev/fuse)",
            blob.display()
        )
    })
}

/// A client that gives up after 5 s: what must answer promptly.
fn quick_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .unwrap()
}

/// A volume's `/-/status`.
async fn status_of(http: &reqwest::Client, addr: &str) -> serde_json::Value {
    let resp = http.get(format!("http://{addr}/-/status")).send().await.unwrap();
    resp.json().await.unwrap()
}

/// Waits until the `EXCESS` requests beyond the dir's slots have been
/// answered, checks that no other one was (they wait on the hung disk),
/// and that the volume at `addr` reports the dir stalled past its 2 s
/// stall timeout.
async fn only_the_excess_answered<T>(requests: &[tokio::task::JoinHandle<T>], what: &str, addr: &str) {
    let answered = || requests.iter().filter(|r| r.is_finished()).count();
    wait_for(&format!("the {what} beyond the limit to be refused"), || async {
        answered() >= EXCESS
    })
    .await;
    assert_eq!(
        answered(),
        EXCESS,
        "one of the {what} of the hung disk finished before the disk came back"
    );
    // The oldest may have begun a little after the first was refused.
    let quick = quick_client();
    wait_for(
        "the volume to report the dir stalled past its 2 s stall timeout",
        || async {
            status_of(&quick, addr).await["dirs"][0]["stalled_ms"]
                .as_u64()
                .is_some_and(|ms| ms > 2000)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_stuck_on_a_hung_disk_do_not_stall_the_volume() {
    let value = pattern_bytes(3 * MIB + 5, 3);
    let Stuck { v, blob, .. } = &stuck(&value).await;
    let http = no_redirects();
    let url = format!("http://{}/stuck", v.addr);
    let other = format!("http://{}/elsewhere", v.addr);
    let put = http
        .put(&other)
        .header("trove-master", "1")
        .body("another blob")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);

    let disk = hang_over(blob);
    disk.hang();

    // More readers than the volume has threads serving HTTP: were any of
    // them to read the disk on such a thread, every one would be stuck.
    // And more than may wait on one data dir's disk at once: those get
    // `503` once the stall timeout has passed.
    let readers = READS_PER_DIR + EXCESS;
    let gets: Vec<_> = (0..readers)
        .map(|i| {
            let (http, url) = (http.clone(), url.clone());
            // Half of them ask for a range in the middle (another block).
            let range = (i % 2 == 1).then(|| format!("bytes={}-{}", MIB + 7, 2 * MIB + 9));
            tokio::spawn(async move {
                let mut req = http.get(&url);
                if let Some(r) = &range {
                    req = req.header("range", r);
                }
                let resp = req.send().await.unwrap();
                let status = resp.status().as_u16();
                (range.is_some(), status, resp.bytes().await.unwrap())
            })
        })
        .collect();
    wait_for("a read waiting on the hung disk", || async {
        disk.reads_waiting() > 0
    })
    .await;

    // The volume still answers what needs no disk, promptly, again and again.
    let quick = quick_client();
    for i in 0..5 {
        let healthy = quick.get(format!("http://{}/-/healthy", v.addr)).send().await;
        let status = healthy.map(|r| r.status().as_u16());
        assert!(
            matches!(status, Ok(200)),
            "/-/healthy try {i}, with {} reads stuck on the disk: {status:?}",
            disk.reads_waiting()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Other blobs are read and written meanwhile.
    let read = quick.get(&other).send().await.unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.bytes().await.unwrap(), "another blob");
    let new = format!("http://{}/written-meanwhile", v.addr);
    let put = quick
        .put(&new)
        .header("trove-master", "1")
        .body("new")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    only_the_excess_answered(&gets, "reads", &v.addr).await;

    // The disk comes back: every read completes, with the stored bytes.
    disk.release();
    let mut refused = 0;
    for get in gets {
        let (ranged, status, body) = tokio::time::timeout(WAIT, get)
            .await
            .expect("a read still stuck after the disk came back")
            .unwrap();
        if status == 503 {
            refused += 1;
            let why = String::from_utf8_lossy(&body);
            assert!(why.contains("disk is not answering"), "{why}");
        } else if ranged {
            assert_eq!(status, 206);
            assert!(body[..] == value[MIB + 7..2 * MIB + 10], "the range read back");
        } else {
            assert_eq!(status, 200);
            assert_eq!(sha256_hex(&body), sha256_hex(&value), "the value read back");
        }
    }
    assert_eq!(refused, EXCESS, "the readers beyond the limit are answered 503");
    drop(disk);
}

/// Once a read has waited on a volume's disk past the volume's stall
/// timeout, the volume says so in `/-/status`, and the master stops using
/// it: readers are sent to another replica, writes go to other volumes.
/// When the disk answers again, the volume is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_sends_readers_and_writers_away_from_a_hung_disk() {
    let c = Cluster::start(ClusterOptions {
        volumes: 3,
        replicas: 2,
        volume_args: vec!["--stall-timeout".into(), "2s".into()],
        ..Default::default()
    })
    .await;
    let value = pattern_bytes(2 * MIB + 3, 5);
    assert_eq!(c.put("/stuck", value.clone()).await, 201);
    let holders = c.volumes_of("/stuck").await;
    let (hung, other) = (c.volume_index(&holders[0]), c.volume_index(&holders[1]));
    let blob = c.blob_path(hung, "/stuck");
    let disk = hang_over(&blob);
    disk.hang();

    // A reader the master sent to the copy on the hung disk, earlier.
    let url = format!("http://{}/stuck", c.volumes[hung].addr);
    let reader = tokio::spawn(async move {
        let resp = no_redirects().get(url).send().await.unwrap();
        (resp.status().as_u16(), resp.bytes().await.unwrap())
    });
    wait_for("a read waiting on the hung disk", || async {
        disk.reads_waiting() > 0
    })
    .await;

    // Past the stall timeout: the volume reports the dir, and the master
    // says why it sends nobody there.
    wait_for("the master to see the stalled disk", || async {
        master_entry(&c, hung).await["stalled"].is_string()
    })
    .await;
    let entry = master_entry(&c, hung).await;
    assert!(
        entry["stalled"].as_str().unwrap().contains("not answering"),
        "{entry}"
    );
    assert_eq!(entry["healthy"], true, "it still answers: {entry}");
    assert_eq!(entry["writable"], false, "it takes no writes: {entry}");
    let status = c.volume_status(hung).await;
    assert!(status["dirs"][0]["stalled_ms"].as_u64().is_some(), "{status}");

    // Every reader is sent to the other replica; new writes avoid the
    // volume (of 12 keys, about 8 would have had a copy there).
    for _ in 0..6 {
        assert!(
            c.location("/stuck").await.contains(&c.volumes[other].addr),
            "a reader sent to the hung disk"
        );
    }
    for i in 0..12 {
        let key = format!("/written-meanwhile/{i}");
        assert_eq!(c.put(&key, "new").await, 201);
        let written = c.volumes_of(&key).await;
        assert!(
            !written.contains(&c.volumes[hung].addr),
            "{key} placed on the hung volume: {written:?}"
        );
    }

    // The disk answers again: the reader gets its bytes, the volume is back.
    disk.release();
    let (status, body) = tokio::time::timeout(WAIT, reader)
        .await
        .expect("the read still stuck after the disk came back")
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(sha256_hex(&body), sha256_hex(&value));
    wait_for("the master to see the disk answer again", || async {
        master_entry(&c, hung).await["stalled"].is_null()
    })
    .await;
    drop(disk);
}

/// A disk that hangs on metadata too: finding a blob waits on it (one
/// such read in place, the rest on the blocking pool), bounded like the
/// reads of bytes — the volume
/// still answers `/-/healthy` and takes writes, the reads beyond the
/// limit get `503`, and `/-/status` reports the stalled dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_reads_stuck_on_a_hung_disk_are_bounded_and_reported() {
    let Stuck { v, blob, .. } = &stuck(&pattern_bytes(MIB + 9, 6)).await;
    let http = no_redirects();
    let url = format!("http://{}/stuck", v.addr);
    let disk = hang_over(blob);
    disk.hang_metadata();

    let readers = READS_PER_DIR + EXCESS;
    let heads: Vec<_> = (0..readers)
        .map(|_| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let resp = http.head(&url).send().await.unwrap();
                resp.status().as_u16()
            })
        })
        .collect();
    wait_for("a metadata read waiting on the hung disk", || async {
        disk.reads_waiting() > 0
    })
    .await;
    let quick = quick_client();
    let healthy = quick
        .get(format!("http://{}/-/healthy", v.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(healthy.status(), 200);
    let put = quick
        .put(format!("http://{}/written-meanwhile", v.addr))
        .header("trove-master", "1")
        .body("new")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    only_the_excess_answered(&heads, "metadata reads", &v.addr).await;

    disk.release();
    let mut refused = 0;
    for head in heads {
        let status = tokio::time::timeout(WAIT, head)
            .await
            .expect("a read still stuck after the disk came back")
            .unwrap();
        match status {
            503 => refused += 1,
            s => assert_eq!(s, 200),
        }
    }
    assert_eq!(refused, EXCESS, "the readers beyond the limit are answered 503");
    let status = status_of(&quick, &v.addr).await;
    assert!(status["dirs"][0].get("stalled_ms").is_none(), "{status}");
    drop(disk);
}

/// A deep verify re-reads a whole blob on the blocking pool: the read it
/// waits on is timed like a GET's, so a hung disk is reported stalled,
/// and the verify completes once the disk answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verify_stuck_on_a_hung_disk_is_reported() {
    let value = pattern_bytes(2 * MIB + 1, 8);
    let Stuck { v, blob, .. } = &stuck(&value).await;
    let disk = hang_over(blob);
    disk.hang();
    let url = format!("http://{}/-/verify?key=/stuck", v.addr);
    let verify = tokio::spawn(async move {
        let resp = no_redirects().get(&url).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    });
    wait_for("a read of the verify waiting on the hung disk", || async {
        disk.reads_waiting() > 0
    })
    .await;
    let quick = quick_client();
    wait_for("the volume to report the stalled dir", || async {
        status_of(&quick, &v.addr).await["dirs"][0]["stalled_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 2000)
    })
    .await;
    let healthy = quick
        .get(format!("http://{}/-/healthy", v.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(healthy.status(), 200);
    assert!(
        !verify.is_finished(),
        "the verify finished before the disk came back"
    );

    disk.release();
    let (status, body) = tokio::time::timeout(WAIT, verify)
        .await
        .expect("the verify still stuck after the disk came back")
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["actual_size"], value.len() as u64);
    let status = status_of(&quick, &v.addr).await;
    assert!(status["dirs"][0].get("stalled_ms").is_none(), "{status}");
    drop(disk);
}

/// The master's entry for volume `i` in its `/-/status`.
async fn master_entry(c: &Cluster, i: usize) -> serde_json::Value {
    let master = c.status().await;
    master["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["address"] == c.volumes[i].addr.as_str())
        .unwrap()
        .clone()
}

/// A disk that stops taking writes but still serves reads (a frozen file
/// system). Once a write has waited on it past the stall timeout, the
/// volume refuses new writes and deletes there at once (`503`, saying
/// why) instead of giving each a thread to wait on, reports the dir in
/// `/-/status`, and still serves what it holds; the master sends new
/// writes to other volumes. Thawed, the waiting write completes and the
/// volume takes writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_stuck_on_a_frozen_disk_are_refused_and_sent_elsewhere() {
    writes_stuck_on_a_frozen_disk(&[]).await;
}

/// The same without fsync, where a small write is committed on a thread
/// that serves HTTP rather than on the blocking pool: the one it holds
/// while the disk is frozen must leave the volume answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_writes_stuck_in_place_on_a_frozen_disk_leave_the_volume_answering() {
    writes_stuck_on_a_frozen_disk(&["--no-fsync"]).await;
}

/// An ext4 file system of its own at `at` for `whose` data; fails loudly
/// where it cannot be mounted.
fn loop_disk(at: &Path, mib: u64, whose: &str) -> LoopDisk {
    LoopDisk::mount(at, mib).unwrap_or_else(|e| {
        panic!(
            "cannot mount a file system of its own for {whose}: {e} (this test needs root and loop devices)"
        )
    })
}

/// A small PUT to each of `urls`, each in a task of its own that yields
/// its status.
fn small_puts(urls: impl Iterator<Item = String>) -> Vec<tokio::task::JoinHandle<u16>> {
    urls.map(|url| {
        tokio::spawn(async move {
            let resp = no_redirects()
                .put(url)
                .header("trove-master", "1")
                .body("waited")
                .send()
                .await
                .unwrap();
            resp.status().as_u16()
        })
    })
    .collect()
}

/// Waits (bounded) for each of `puts` to be answered `201`.
async fn all_written(puts: Vec<tokio::task::JoinHandle<u16>>) {
    for put in puts {
        let status = tokio::time::timeout(WAIT, put)
            .await
            .expect("a write still waiting after the thaw")
            .unwrap();
        assert_eq!(status, 201, "a write that waited");
    }
}

async fn writes_stuck_on_a_frozen_disk(volume_args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let disk = loop_disk(&dir.path().join("vol0"), 1024, "volume 0");
    let c = Cluster::start_in(
        dir,
        ClusterOptions {
            volumes: 3,
            replicas: 2,
            volume_args: ["--stall-timeout", "2s"]
                .iter()
                .chain(volume_args)
                .map(|a| a.to_string())
                .collect(),
            ..Default::default()
        },
    )
    .await;
    // Unmounted before the cluster's dir is removed (dropped first).
    let disk = disk;
    let held = c
        .put_until_on(0, "/before/")
        .await
        .expect("of 30 keys, one placed on volume 0");
    let frozen = disk.freeze().expect("fsfreeze");

    // Writes sent to the volume wait on the frozen disk: small ones, so
    // that without fsync one of them waits on a thread serving HTTP.
    let volume = format!("http://{}", c.volumes[0].addr);
    let stuck_puts = small_puts((0..3).map(|i| format!("{volume}/stuck/{i}")));
    wait_for("the volume to report the dir its writes wait on", || async {
        c.volume_status(0).await["dirs"][0]["stalled_ms"]
            .as_u64()
            .is_some()
    })
    .await;
    assert!(
        stuck_puts.iter().all(|p| !p.is_finished()),
        "a write finished on a frozen disk"
    );

    // New writes and deletes there are refused at once, saying why.
    let quick = quick_client();
    // With a body of some size: the sender gets the answer, not a reset.
    let refused = quick
        .put(format!("{volume}/refused"))
        .header("trove-master", "1")
        .body(pattern_bytes(8 * MIB, 9))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    let why = refused.text().await.unwrap();
    assert!(why.contains("is not taking writes"), "{why}");
    let delete = quick
        .delete(format!("{volume}{held}"))
        .header("trove-master", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 503);
    // And so is a copy pulled from another replica (a repair's, a
    // rebalance's), before it is fetched.
    let holders = c.volumes_of(&held).await;
    let source = holders
        .iter()
        .find(|a| **a != c.volumes[0].addr)
        .expect("another replica");
    let pull = quick
        .post(format!(
            "{volume}/-/pull?key=/pulled&from={source}&sha256={}",
            sha256_hex(held.as_bytes())
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(pull.status(), 503);
    let why = pull.text().await.unwrap();
    assert!(why.contains("is not taking writes"), "{why}");
    // And a value composed of others (S3's multipart complete and copy).
    let plan = serde_json::json!({"parts": [{
        "key": held,
        "sha256": sha256_hex(held.as_bytes()),
        "size": held.len(),
        "range": [0, held.len()],
        "volumes": [source],
    }]});
    let compose = quick
        .post(format!("{volume}/-/compose?key=/composed&write=w1"))
        .json(&plan)
        .send()
        .await
        .unwrap();
    assert_eq!(compose.status(), 503);
    let why = compose.text().await.unwrap();
    assert!(why.contains("is not taking writes"), "{why}");
    // So are the master's marks, alone and batched, and its aborts: each
    // would otherwise take a thread to wait on the disk.
    let mark = quick
        .post(format!("{volume}/-/mark?key={held}&state=unlinked"))
        .send()
        .await
        .unwrap();
    assert_eq!(mark.status(), 503);
    let why = mark.text().await.unwrap();
    assert!(why.contains("is not taking writes"), "{why}");
    let marks = serde_json::to_vec(&serde_json::json!([{"key": held, "state": "unlinked"}])).unwrap();
    let batch = quick
        .post(format!("{volume}/-/marks?body_sha256={}", sha256_hex(&marks)))
        .body(marks)
        .send()
        .await
        .unwrap();
    assert_eq!(batch.status(), 200);
    let outcomes: serde_json::Value = batch.json().await.unwrap();
    assert_eq!(outcomes[0]["status"], 503, "{outcomes}");
    let abort = quick
        .post(format!("{volume}/-/abort?key={held}&write=w1"))
        .send()
        .await
        .unwrap();
    assert_eq!(abort.status(), 503);

    // Reads and the health check are answered as before.
    let healthy = quick.get(format!("{volume}/-/healthy")).send().await.unwrap();
    assert_eq!(healthy.status(), 200);
    let read = quick.get(format!("{volume}{held}")).send().await.unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(
        read.text().await.unwrap(),
        held,
        "the value read from the frozen disk"
    );

    // The master sees it, and new writes go to the other volumes.
    wait_for("the master to see the stalled disk", || async {
        master_entry(&c, 0).await["stalled"].is_string()
    })
    .await;
    let entry = master_entry(&c, 0).await;
    assert_eq!(entry["healthy"], true, "it still answers: {entry}");
    assert_eq!(entry["writable"], false, "it takes no writes: {entry}");
    // So do the metrics, and `trove status`, with the reason.
    let metrics = c.metrics_of(&c.master.addr).await;
    let gauge = format!("trove_volume_stalled{{volume=\"{}\"}} 1", c.volumes[0].addr);
    assert!(metrics.lines().any(|l| l == gauge), "no `{gauge}` in:\n{metrics}");
    let cli = c.trove(&["status"]).await;
    assert_eq!(cli.code, 0, "{}", cli.stderr);
    let line = cli
        .stdout
        .lines()
        .find(|l| l.starts_with(c.volumes[0].addr.as_str()))
        .unwrap_or_else(|| panic!("no line for volume 0:\n{}", cli.stdout));
    assert!(
        line.contains("up (disk stalled)") && line.contains("is not answering"),
        "{line}"
    );
    for i in 0..12 {
        let key = format!("/written-meanwhile/{i}");
        assert_eq!(c.put(&key, "new").await, 201, "{key}");
        let written = c.volumes_of(&key).await;
        assert!(
            !written.contains(&c.volumes[0].addr),
            "{key} placed on the frozen volume: {written:?}"
        );
    }

    // Thawed: the waiting write completes, and writes reach the volume again.
    drop(frozen);
    all_written(stuck_puts).await;
    wait_for("the master to see the disk take writes again", || async {
        master_entry(&c, 0).await["stalled"].is_null()
    })
    .await;
    assert!(
        c.put_until_on(0, "/after/").await.is_some(),
        "of 30 keys written after the thaw, none was placed on volume 0"
    );
}

/// The master's index on a disk that stops taking writes (a frozen file
/// system). Writes that reach the index wait on it; once one has waited
/// past the stall timeout, new writes and deletes are refused at once
/// (`503`, saying why) instead of each taking a thread to wait on, and
/// `/-/ready` and `/-/status` say so — while reads (redirects from the
/// index already in memory), `/-/healthy` and `/-/status` are answered as
/// before. Thawed, the waiting writes complete and writes work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_stuck_on_a_frozen_index_disk_are_refused() {
    index_writes_stuck_on_a_frozen_disk(&[]).await;
}

/// The same without fsync, where an index write runs on a thread that
/// serves HTTP rather than on the blocking pool: the one it holds while
/// the disk is frozen must leave the master answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_writes_stuck_in_place_on_a_frozen_disk_leave_the_master_answering() {
    index_writes_stuck_on_a_frozen_disk(&["--no-fsync"]).await;
}

async fn index_writes_stuck_on_a_frozen_disk(master_args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let disk = loop_disk(&dir.path().join("db"), 64, "the index");
    let c = Cluster::start_in(
        dir,
        ClusterOptions {
            volumes: 3,
            replicas: 2,
            master_args: ["--stall-timeout", "2s"]
                .iter()
                .chain(master_args)
                .map(|a| a.to_string())
                .collect(),
            ..Default::default()
        },
    )
    .await;
    // Unmounted before the cluster's dir is removed (dropped first).
    let disk = disk;
    assert_eq!(c.put("/before", "held").await, 201);
    // Keys placed on the volume `/before` is not on: the first write
    // naming a volume stores its id in the index, which must not hold up
    // reads while it waits on the disk.
    let before = c.home(2, "/before");
    let stuck_keys: Vec<String> = (0..1000)
        .map(|i| format!("/stuck/{i}"))
        .filter(|k| !c.home(2, k).is_subset(&before))
        .take(3)
        .collect();
    let frozen = disk.freeze().expect("fsfreeze");

    // Small writes through the master: each waits on the index.
    let stuck_puts = small_puts(stuck_keys.iter().map(|key| c.url(key)));
    let quick = quick_client();
    let status = || async {
        let resp = quick.get(c.url("/-/status")).send().await.unwrap();
        resp.json::<serde_json::Value>().await.unwrap()
    };
    wait_for("the master to report its index not taking writes", || async {
        status().await["index"]["stalled_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 2000)
    })
    .await;
    assert!(
        stuck_puts.iter().all(|p| !p.is_finished()),
        "a write finished on a frozen index"
    );

    // Reads and the health check are answered as before.
    let healthy = quick.get(c.url("/-/healthy")).send().await.unwrap();
    assert_eq!(healthy.status(), 200);
    // (With redirects followed, and an answer within 5 s.)
    let read = quick.get(c.url("/before")).send().await.unwrap();
    assert_eq!(read.status(), 200, "a read of a key written before");
    assert_eq!(read.text().await.unwrap(), "held");

    // New writes and deletes are refused at once, saying why; so is
    // readiness.
    let refused = quick.put(c.url("/refused")).body("no").send().await.unwrap();
    assert_eq!(refused.status(), 503);
    let why = refused.text().await.unwrap();
    assert!(why.contains("index is not taking writes"), "{why}");
    let delete = quick.delete(c.url("/before")).send().await.unwrap();
    assert_eq!(delete.status(), 503);
    let ready = quick.get(c.url("/-/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let why = ready.text().await.unwrap();
    assert!(why.contains("index is not taking writes"), "{why}");
    let metrics = c.metrics_of(&c.master.addr).await;
    assert!(
        metrics.lines().any(|l| l == "trove_index_stalled 1"),
        "no `trove_index_stalled 1` in:\n{metrics}"
    );

    // Thawed: the waiting writes complete, and writes work again.
    drop(frozen);
    all_written(stuck_puts).await;
    wait_for("the index to take writes again", || async {
        status().await["index"]["stalled_ms"].is_null()
    })
    .await;
    assert_eq!(c.put("/after", "written").await, 201);
    assert_eq!(c.get("/after").await.0, 200);
    assert_eq!(c.delete("/before").await, 204);
}

/// A device that hangs reads under the master's index. A record not held
/// in memory is read from one of RocksDB's table files, and here that
/// read never returns: each such read must hold no thread that serves
/// HTTP, so the master goes on answering `/-/healthy` and `/-/status`
/// (without the fix, two stuck readers stopped it). Once a read has waited
/// past the stall timeout, further reads of the disk are refused at once
/// (`503`, saying why), and `/-/ready` and `/-/status` say so. Released,
/// the waiting readers get their redirects and reads work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_reads_stuck_on_a_hung_disk_leave_the_master_answering() {
    let mut c = Cluster::start(ClusterOptions {
        volumes: 1,
        replicas: 1,
        master_args: vec!["--stall-timeout".into(), "2s".into()],
        ..Default::default()
    })
    .await;
    // About 1.5 MiB of records (each carries 6 KB of metadata that no
    // compression would shrink), so that most of the table they land in
    // lies outside the tail RocksDB reads when it opens a table.
    let keys: Vec<String> = (0..256).map(|i| format!("/k/{i:04}")).collect();
    for key in &keys {
        let pad: String = (0..94)
            .map(|j| sha256_hex(format!("{key}/{j}").as_bytes()))
            .collect();
        let put = c
            .http
            .put(c.url(key))
            .header("x-amz-meta-pad", pad)
            .body("v")
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201, "{key}");
    }
    // RocksDB flushes the log it recovers at start-up into a table file.
    c.master.restart();
    c.wait_until_ready().await;
    c.master.kill();
    let db = c.dir.path().join("db");
    let tables: Vec<PathBuf> = std::fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sst"))
        .collect();
    assert!(!tables.is_empty(), "no table file in {}", db.display());
    let hung: Vec<HungFile> = tables.iter().map(|t| hang_over(t)).collect();
    c.master.restart();
    c.wait_until_ready().await;
    // Written now: its record is in memory.
    assert_eq!(c.put("/fresh", "in memory").await, 201);
    for h in &hung {
        h.hang();
    }

    // More readers than the master has serving threads, each of a record
    // in another block of the table, all in its first third (RocksDB
    // read the last 512 KiB when it opened the table, so those may be
    // cached by the kernel).
    let stuck: Vec<tokio::task::JoinHandle<u16>> = (0..4)
        .map(|i| {
            let (http, url) = (c.http.clone(), c.url(&keys[i * 25]));
            tokio::spawn(async move { http.get(url).send().await.unwrap().status().as_u16() })
        })
        .collect();
    // More reads waiting than there are serving threads (a reader may
    // wait behind another's read of the same pages).
    wait_for("reads of the index to wait on the hung disk", || async {
        hung.iter().map(HungFile::reads_waiting).sum::<usize>() >= 3
    })
    .await;
    let quick = quick_client();
    let healthy = quick.get(c.url("/-/healthy")).send().await.unwrap();
    assert_eq!(healthy.status(), 200);
    // A record in memory is served as before.
    let fresh = no_redirects_quick().get(c.url("/fresh")).send().await.unwrap();
    assert_eq!(fresh.status(), 302);
    let status = || async {
        let resp = quick.get(c.url("/-/status")).send().await.unwrap();
        resp.json::<serde_json::Value>().await.unwrap()
    };
    wait_for("the master to report its index not answering reads", || async {
        status().await["index"]["stalled_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 2000)
    })
    .await;
    let why = status().await["index"]["stalled"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(why.contains("not answering reads"), "{why}");
    assert!(
        stuck.iter().all(|r| !r.is_finished()),
        "a read of a record on the hung disk was answered"
    );

    // Further reads of the disk are refused at once, saying why; so is
    // readiness (a write reads the key's record first).
    let refused = no_redirects_quick().get(c.url(&keys[250])).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    let why = refused.text().await.unwrap();
    assert!(why.contains("not answering reads"), "{why}");
    let ready = quick.get(c.url("/-/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let why = ready.text().await.unwrap();
    assert!(why.contains("not answering reads"), "{why}");
    // So are listings, which read the same disk on the blocking pool (so
    // that they cannot take all of its threads).
    let listing = quick.get(c.url("/k/?list")).send().await.unwrap();
    assert_eq!(listing.status(), 503);
    let why = listing.text().await.unwrap();
    assert!(why.contains("not answering reads"), "{why}");
    let healthy = quick.get(c.url("/-/healthy")).send().await.unwrap();
    assert_eq!(healthy.status(), 200);
    let fresh = no_redirects_quick().get(c.url("/fresh")).send().await.unwrap();
    assert_eq!(fresh.status(), 302);

    // Released: the waiting readers get their redirects, and reads work.
    for h in &hung {
        h.release();
    }
    for r in stuck {
        assert_eq!(r.await.unwrap(), 302);
    }
    wait_for("the index to answer reads again", || async {
        status().await["index"]["stalled_ms"].is_null()
    })
    .await;
    assert_eq!(c.get(&keys[250]).await.0, 200);
    let listing = quick.get(c.url("/k/?list")).send().await.unwrap();
    assert_eq!(listing.status(), 200);
    let listed = listing.json::<serde_json::Value>().await.unwrap();
    assert_eq!(
        listed["keys"].as_array().map(Vec::len),
        Some(keys.len()),
        "{listed}"
    );
    assert_eq!(c.put("/after", "written").await, 201);
}

/// [`quick_client`] that follows no redirects.
fn no_redirects_quick() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}
