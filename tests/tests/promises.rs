//! The README's guarantees, checked where they were once broken: a failed
//! write over an unlinked key, kill -9 at every step of the write, delete
//! and unlink paths, replicas that cannot serve, an emptied volume, and
//! corrupt bytes on disk.

use base64::Engine;
use tokio::io::AsyncWriteExt;
use trove_tests::{flip_byte, pattern_bytes, sha256_hex, wait_for, Cluster, ClusterOptions};

const CRASH_AT: &str = "TROVE_CRASH_AT";

/// What the cluster's index says about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Absent,
    /// Live, with this sha256.
    Live(String),
    Unlinked,
}

async fn seen(c: &Cluster, key: &str) -> Seen {
    let head = c.head(key).await;
    match head.status().as_u16() {
        302 => Seen::Live(head.headers()["key-sha256"].to_str().unwrap().to_string()),
        404 => {
            let (dir, _) = key.rsplit_once('/').unwrap();
            let listed = c.json(&format!("{dir}/?unlinked")).await;
            if listed["keys"].as_array().unwrap().iter().any(|k| k == key) {
                Seen::Unlinked
            } else {
                Seen::Absent
            }
        }
        s => panic!("HEAD {key}: {s}"),
    }
}

/// The sha256 of every copy of `key` on the volumes, as their listings say.
async fn copies(c: &Cluster, key: &str) -> Vec<String> {
    let mut shas = vec![];
    for i in 0..c.volumes.len() {
        for b in c.blobs(i).await.iter().filter(|b| b["key"] == key) {
            shas.push(b["sha256"].as_str().unwrap().to_string());
        }
    }
    shas
}

/// Waits until the key's failed rewrite has been undone: back in
/// `?unlinked`, every replica holding `sha` again.
async fn wait_restored(c: &Cluster, key: &str, sha: &str, replicas: usize) {
    wait_for("the unlinked record and its bytes back", || async {
        seen(c, key).await == Seen::Unlinked && on_disk(c, key) == vec![sha.to_string(); replicas]
    })
    .await;
}

/// The sha256 of the bytes in every volume's blob file of `key` — read
/// from the files themselves, not from the volumes' listings — and no
/// value kept aside (`.prev`) anywhere.
fn on_disk(c: &Cluster, key: &str) -> Vec<String> {
    let mut shas = vec![];
    for i in 0..c.volumes.len() {
        let path = c.blob_path(i, key);
        let mut prev = path.clone().into_os_string();
        prev.push(".prev");
        if std::path::Path::new(&prev).exists() {
            shas.push(format!("a value kept aside on volume {i}"));
        }
        if let Ok(bytes) = std::fs::read(&path) {
            shas.push(sha256_hex(&bytes));
        }
    }
    shas
}

/// A key written, unlinked, then written again with a failure — a wrong
/// `Content-MD5`, a client that hangs up mid-body — keeps its unlinked
/// record and every byte of its old value (README: bytes stay until
/// `DELETE`); with and without `--protect`.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_rewrite_leaves_the_unlinked_key_as_it_was() {
    for protect in [false, true] {
        let opts = ClusterOptions {
            master_args: if protect { vec!["--protect".into()] } else { vec![] },
            ..Default::default()
        };
        let c = Cluster::start(opts).await;
        let v1 = pattern_bytes(300_000, 1);
        let sha1 = sha256_hex(&v1);
        assert_eq!(c.put("/k/a", v1.clone()).await, 201);
        assert_eq!(c.unlink("/k/a").await, 204);

        // A wrong Content-MD5: 400, nothing stored, nothing lost.
        let wrong = base64::engine::general_purpose::STANDARD.encode([0u8; 16]);
        let resp = c
            .http
            .put(c.url("/k/a"))
            .header("content-md5", wrong)
            .body(pattern_bytes(200_000, 2))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        wait_restored(&c, "/k/a", &sha1, 2).await;

        // A client that sends part of its body and hangs up.
        let mut sock = tokio::net::TcpStream::connect(&c.master.addr).await.unwrap();
        sock.write_all(b"PUT /k/a HTTP/1.1\r\nHost: t\r\nContent-Length: 5000000\r\n\r\n")
            .await
            .unwrap();
        sock.write_all(&pattern_bytes(1_000_000, 3)).await.unwrap();
        // Under way: the key is locked by it, so a conditional write that
        // could never succeed is told 409 (412 once the lock is free).
        wait_for("the write to start", || async {
            let probe = c.http.put(c.url("/k/a")).header("if-match", "\"0\"").body("x");
            probe.send().await.unwrap().status() == 409
        })
        .await;
        drop(sock);
        wait_restored(&c, "/k/a", &sha1, 2).await;
        // The volumes notice the cut uploads and drop their temp files.
        wait_for("no temp file left", || async {
            (0..c.volumes.len()).all(|i| c.temp_files(i) == 0)
        })
        .await;

        // The unlinked key is still whole: DELETE finishes it (once the
        // clean-up has let go of the key: until then, 409).
        let status = std::sync::atomic::AtomicU16::new(409);
        wait_for("the key's lock released", || async {
            status.store(c.delete("/k/a").await, std::sync::atomic::Ordering::Relaxed);
            status.load(std::sync::atomic::Ordering::Relaxed) != 409
        })
        .await;
        assert_eq!(status.into_inner(), 204);
        assert!(copies(&c, "/k/a").await.is_empty());

        // A rewrite that succeeds replaces the value and leaves no
        // previous copy behind.
        assert_eq!(c.put("/k/b", v1.clone()).await, 201);
        assert_eq!(c.unlink("/k/b").await, 204);
        let v2 = pattern_bytes(250_000, 4);
        assert_eq!(c.put("/k/b", v2.clone()).await, 201);
        let (status, body) = c.get("/k/b").await;
        assert_eq!((status, sha256_hex(&body)), (200, sha256_hex(&v2)));
        assert_eq!(copies(&c, "/k/b").await, vec![sha256_hex(&v2); 2]);
        for i in 0..c.volumes.len() {
            let mut prev = c.blob_path(i, "/k/b").into_os_string();
            prev.push(".prev");
            assert!(
                !std::path::Path::new(&prev).exists(),
                "volume {i} kept the old value"
            );
        }
    }
}

/// Restarts `server` so that it crashes (as kill -9 would) when it reaches
/// `point`.
fn arm(server: &mut trove_tests::Server, point: Option<&str>) {
    server.set_env(CRASH_AT, point);
    server.restart();
}

/// kill -9 at every step of the write, delete and unlink paths — of the
/// master, and of the volumes — then a restart: the index says what the
/// client was told (or, where the client was told nothing, the old state
/// or the new), `gc` undoes what was left half-done, and a rebuild from
/// the volumes alone revives a key only if the master could have
/// acknowledged it.
/// From gc's summary, the blobs and bytes it deleted (`verb`: "deleted",
/// or "would delete" for a dry run).
fn gc_count(summary: &str, verb: &str) -> String {
    let (before, after) = summary
        .split_once(&format!(" {verb} ("))
        .unwrap_or_else(|| panic!("no `{verb}` in {summary}"));
    let blobs = before.rsplit(' ').next().unwrap();
    // "(585.94 KiB)" in a dry run, "(585.94 KiB, 2.27 MiB/s)" in a real one.
    let bytes = after.split([',', ')']).next().unwrap();
    format!("{blobs} blobs, {bytes}")
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_every_step() {
    let mut c = Cluster::start_default().await;
    let v1 = pattern_bytes(200_000, 10);
    let v2 = pattern_bytes(150_000, 11);
    let (sha1, sha2) = (sha256_hex(&v1), sha256_hex(&v2));

    // Master crash points of the write path, for a new key and for a key
    // written again after UNLINK. `committed`: whether the index commit
    // happened before the crash.
    for (point, committed) in [
        ("write-recorded", false),
        ("write-stored", false),
        ("write-committed", true),
        ("write-confirmed", true),
    ] {
        let (fresh, again) = (format!("/w/{point}/fresh"), format!("/w/{point}/again"));
        assert_eq!(c.put(&again, v1.clone()).await, 201);
        assert_eq!(c.unlink(&again).await, 204);
        for key in [&fresh, &again] {
            arm(&mut c.master, Some(point));
            c.wait_until_ready().await;
            let sent = c.http.put(c.url(key)).body(v2.clone()).send().await;
            assert!(
                sent.is_err(),
                "{point}: the master answered {:?}",
                sent.map(|r| r.status())
            );
            c.master.wait_exit();
            arm(&mut c.master, None);
            c.wait_until_ready().await;
        }
        let (old_fresh, old_again) = (Seen::Absent, Seen::Unlinked);
        let new = Seen::Live(sha2.clone());
        if committed {
            assert_eq!(seen(&c, &fresh).await, new, "{point}");
            assert_eq!(seen(&c, &again).await, new, "{point}");
            let (status, body) = c.get(&again).await;
            assert_eq!((status, sha256_hex(&body)), (200, sha2.clone()), "{point}");
            // verify confirms what the crash kept from being confirmed, and
            // the old value kept aside goes.
            let (code, out) = c.admin(&["verify"]).await;
            assert_eq!(code, 0, "{out}");
            assert_eq!(on_disk(&c, &again), vec![sha2.clone(); 2], "{point}");
        } else {
            // The dead write is undone by gc: the old state, bytes included.
            // A dry run first counts what the real run then deletes.
            let (code, dry) = c.admin(&["gc", "--grace", "0s", "--dry-run"]).await;
            assert_eq!(code, 0, "{dry}");
            let (code, out) = c.admin(&["gc", "--grace", "0s"]).await;
            assert_eq!(code, 0, "{out}");
            assert_eq!(
                gc_count(&dry, "would delete"),
                gc_count(&out, "deleted"),
                "{point}: the dry run said\n{dry}\nthe real run\n{out}"
            );
            // The dry run names each copy it counted.
            let planned: Vec<&str> = dry
                .lines()
                .filter(|l| l.starts_with("  would delete /w/"))
                .collect();
            assert_eq!(
                format!("{} blobs", planned.len()),
                gc_count(&dry, "would delete").split(',').next().unwrap(),
                "{point}:\n{dry}"
            );
            assert!(
                planned
                    .iter()
                    .all(|l| (l.contains(&fresh) || l.contains(&again)) && l.contains(" on 127.0.0.1:")),
                "{point}:\n{dry}"
            );
            // Both say how many dead writes (this point's two) they undo.
            assert!(
                dry.contains("2 dead write(s) to undo") && out.contains("2 dead write(s) undone"),
                "{point}:\n{dry}\n{out}"
            );
            assert_eq!(seen(&c, &fresh).await, old_fresh, "{point}");
            assert!(
                copies(&c, &fresh).await.is_empty(),
                "{point}: the dead write's blobs stay"
            );
            assert_eq!(seen(&c, &again).await, old_again, "{point}");
            assert_eq!(on_disk(&c, &again), vec![sha1.clone(); 2], "{point}");
        }
        let index = (seen(&c, &fresh).await, seen(&c, &again).await);
        c.serve_rebuilt_index().await;
        let rebuilt = (seen(&c, &fresh).await, seen(&c, &again).await);
        // After verify (committed) or gc (not), the volumes say what the
        // index says.
        assert_eq!(rebuilt, index, "{point}: rebuild and index disagree");
        c.serve_real_index().await;
    }

    // The delete and unlink paths.
    for point in ["delete-unlinked", "delete-removed", "unlink-recorded"] {
        let key = format!("/d/{point}");
        assert_eq!(c.put(&key, v1.clone()).await, 201);
        arm(&mut c.master, Some(point));
        c.wait_until_ready().await;
        let method = if point.starts_with("unlink") {
            "UNLINK"
        } else {
            "DELETE"
        };
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        assert!(
            c.http.request(method, c.url(&key)).send().await.is_err(),
            "{point}"
        );
        c.master.wait_exit();
        arm(&mut c.master, None);
        c.wait_until_ready().await;
        assert_eq!(seen(&c, &key).await, Seen::Unlinked, "{point}");
        c.serve_rebuilt_index().await;
        // Not acknowledged: the old state or the new, never anything else.
        let rebuilt = seen(&c, &key).await;
        let allowed = [Seen::Live(sha1.clone()), Seen::Unlinked, Seen::Absent];
        assert!(allowed.contains(&rebuilt), "{point}: {rebuilt:?}");
        c.serve_real_index().await;
        // A DELETE finishes the job, and nothing comes back.
        assert_eq!(c.delete(&key).await, 204, "{point}");
        assert_eq!(seen(&c, &key).await, Seen::Absent);
        assert!(copies(&c, &key).await.is_empty(), "{point}");
    }

    // Volume crash points: with the new blob written in full (bytes and
    // metadata attribute, fsynced) but not yet renamed into place; after a
    // blob is stored (before the volume answers); when the master's
    // confirming mark arrives (the index has committed: the master sends
    // the mark again once the volumes are back, so that a rebuild knows
    // the write); and after it is confirmed (before the old value is
    // dropped).
    for (point, acked) in [
        ("volume-staged", false),
        ("volume-stored", false),
        ("volume-marking", true),
        ("volume-marked", true),
    ] {
        let key = format!("/v/{point}");
        assert_eq!(c.put(&key, v1.clone()).await, 201);
        assert_eq!(c.unlink(&key).await, 204);
        for v in &mut c.volumes {
            arm(v, Some(point));
        }
        c.wait_until_ready().await;
        let status = c
            .http
            .put(c.url(&key))
            .body(v2.clone())
            .send()
            .await
            .map(|r| r.status().as_u16());
        // The replicas of the key crashed at the point; every volume is
        // restarted without it.
        for v in &mut c.volumes {
            arm(v, None);
        }
        c.wait_until_ready().await;
        if acked {
            assert_eq!(
                status.ok(),
                Some(201),
                "{point}: the index committed, so the client is told"
            );
            assert_eq!(seen(&c, &key).await, Seen::Live(sha2.clone()));
            wait_for("every replica's copy confirmed", || async {
                copies(&c, &key).await == vec![sha2.clone(); 2]
            })
            .await;
            let (code, out) = c.admin(&["gc", "--grace", "0s"]).await;
            assert_eq!(code, 0, "{out}");
            assert_eq!(copies(&c, &key).await, vec![sha2.clone(); 2], "{point}");
        } else {
            assert!(
                status.is_err() || status.as_ref().is_ok_and(|s| *s >= 500),
                "{point}: {status:?}"
            );
            let (code, out) = c.admin(&["gc", "--grace", "0s"]).await;
            assert_eq!(code, 0, "{out}");
            assert_eq!(seen(&c, &key).await, Seen::Unlinked, "{point}");
            assert_eq!(copies(&c, &key).await, vec![sha1.clone(); 2], "{point}");
        }
        let expected = seen(&c, &key).await;
        c.serve_rebuilt_index().await;
        assert_eq!(
            seen(&c, &key).await,
            expected,
            "{point}: rebuild and index disagree"
        );
        c.serve_real_index().await;
    }
}

/// Which volume a redirect for `key` points at.
async fn redirected_to(c: &Cluster, key: &str) -> Option<usize> {
    let resp = c.http.get(c.url(key)).send().await.unwrap();
    let location = resp.headers().get("location")?.to_str().unwrap().to_string();
    let addr = location
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    Some(c.volume_index(&addr))
}

/// A replica whose volume answers with an error (an unreadable sidecar, a
/// data file shorter than recorded) is reported by `verify` (non-zero
/// exit), marked damaged — no redirects, not in `Key-Volumes` — and
/// replaced by `verify --repair`.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_that_cannot_serve_are_flagged_and_repaired() {
    let c = Cluster::start(ClusterOptions {
        volumes: 3,
        replicas: 3,
        ..Default::default()
    })
    .await;
    let value = pattern_bytes(100_000, 20);
    for key in ["/bad/sidecar", "/bad/short"] {
        assert_eq!(c.put(key, value.clone()).await, 201);
    }
    c.write_blob_meta(0, "/bad/sidecar", b"{not json");
    let data = std::fs::OpenOptions::new()
        .write(true)
        .open(c.blob_path(1, "/bad/short"))
        .unwrap();
    data.set_len(10).unwrap();

    let (code, out) = c.admin(&["verify"]).await;
    assert_ne!(code, 0, "verify found damage but exited 0:\n{out}");
    let v0 = &c.volumes[0].addr;
    let v1 = &c.volumes[1].addr;
    assert!(out.contains(&format!("/bad/sidecar: replica on {v0}")), "{out}");
    assert!(out.contains(&format!("/bad/short: replica on {v1}")), "{out}");

    for (key, bad) in [("/bad/sidecar", 0), ("/bad/short", 1)] {
        let head = c.head(key).await;
        let listed = head.headers()["key-volumes"].to_str().unwrap();
        assert!(
            !listed.contains(&c.volumes[bad].addr),
            "{key}: Key-Volumes {listed}"
        );
        for _ in 0..12 {
            assert_ne!(
                redirected_to(&c, key).await,
                Some(bad),
                "{key}: a reader was sent to the damaged copy"
            );
        }
    }

    let (code, out) = c.admin(&["verify", "--repair"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = c.admin(&["verify", "--deep"]).await;
    assert_eq!(code, 0, "after repair: {out}");
    for key in ["/bad/sidecar", "/bad/short"] {
        let head = c.head(key).await;
        assert_eq!(
            head.headers()["key-volumes"].to_str().unwrap().split(',').count(),
            3
        );
        for i in 0..3 {
            let url = format!("http://{}{key}", c.volumes[i].addr);
            let body = c.http.get(url).send().await.unwrap().bytes().await.unwrap();
            assert_eq!(sha256_hex(&body), sha256_hex(&value), "{key} on volume {i}");
        }
    }
}

/// README's "Replace a dead disk": a volume restarted with an empty data
/// dir is noticed (its data dir has a new id); readers of the keys it held
/// go to other replicas until `verify --repair` has put them back.
#[tokio::test(flavor = "multi_thread")]
async fn an_emptied_volume_gets_no_reads_until_repaired() {
    let mut c = Cluster::start_default().await;
    let value = pattern_bytes(50_000, 30);
    let keys: Vec<String> = (0..12).map(|i| format!("/disk/{i}")).collect();
    c.put_all(keys.iter().map(|k| (k.clone(), value.clone())).collect(), 4)
        .await;
    let on_0: Vec<&String> = {
        let held: Vec<String> = c
            .blobs(0)
            .await
            .iter()
            .map(|b| b["key"].as_str().unwrap().to_string())
            .collect();
        keys.iter().filter(|k| held.contains(k)).collect()
    };
    assert!(!on_0.is_empty());

    c.volumes[0].kill();
    std::fs::remove_dir_all(c.volume_dir(0)).unwrap();
    c.volumes[0].restart();
    let addr = c.volumes[0].addr.clone();
    wait_for("the master to notice the emptied volume", || async {
        let s = c.status().await;
        s["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["address"] == addr.as_str() && v["lost_data_at"].is_u64() && v["healthy"] == true)
    })
    .await;
    for key in &on_0 {
        for _ in 0..6 {
            assert_ne!(
                redirected_to(&c, key).await,
                Some(0),
                "{key}: sent to the emptied volume"
            );
            let (status, body) = c.get(key).await;
            assert_eq!((status, body.len()), (200, value.len()), "{key}");
        }
    }
    let (code, out) = c.admin(&["verify", "--repair"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(c.status().await["volumes"][0]["lost_data_at"].is_null());
    for key in &on_0 {
        let url = format!("http://{}{key}", c.volumes[0].addr);
        let resp = c.http.get(url).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{key} not repaired on the emptied volume");
    }
    let mut seen_0 = false;
    for _ in 0..12 {
        seen_0 |= redirected_to(&c, on_0[0]).await == Some(0);
    }
    assert!(seen_0, "the repaired volume gets reads again");
}

/// A bit flipped on disk is never served: the first block is checked
/// before the answer starts (`503`), a later one before it is sent (the
/// response is cut, every byte before it correct). Either way the volume
/// marks the copy damaged, refuses it from then on, and reports it; the
/// master re-copies it from the other replica, after which the copy is
/// served whole again and verify finds nothing.
#[tokio::test(flavor = "multi_thread")]
async fn corrupt_bytes_are_never_served() {
    let c = Cluster::start_default().await;
    let big = pattern_bytes(3 << 20, 40);
    let small = pattern_bytes(4096, 41);
    assert_eq!(c.put("/rot/big", big.clone()).await, 201);
    assert_eq!(c.put("/rot/small", small.clone()).await, 201);
    let holder = |key: &str| {
        (0..c.volumes.len())
            .find(|i| c.blob_path(*i, key).exists())
            .expect("a replica")
    };
    let (b, s) = (holder("/rot/big"), holder("/rot/small"));
    flip_byte(&c.blob_path(b, "/rot/big"), (3 << 20) / 2);
    flip_byte(&c.blob_path(s, "/rot/small"), 100);

    // Small: one block, refused before anything is sent.
    let url = format!("http://{}/rot/small", c.volumes[s].addr);
    assert_eq!(c.http.get(&url).send().await.unwrap().status(), 503);

    // Big: the first block goes out, the corrupt second one never does.
    let url = format!("http://{}/rot/big", c.volumes[b].addr);
    let mut resp = c.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut got = vec![];
    let cut = loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => got.extend_from_slice(&chunk),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    assert!(cut, "the response was not cut off");
    assert!(
        got.len() <= 1 << 20,
        "{} bytes sent, past the bad block",
        got.len()
    );
    assert_eq!(
        got,
        big[..got.len()],
        "the bytes sent before the cut are the value's"
    );
    // The master re-copies each from the other replica; after that, the
    // copy is served whole again.
    for (key, i, value) in [("/rot/small", s, &small), ("/rot/big", b, &big)] {
        let url = format!("http://{}{key}", c.volumes[i].addr);
        let path = c.blob_path(i, key);
        wait_for("the copy repaired from the other replica", || async {
            std::fs::read(&path).is_ok_and(|b| b == *value)
        })
        .await;
        let body = c.http.get(&url).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(sha256_hex(&body), sha256_hex(value), "{key}");
    }
    let (code, out) = c.admin(&["verify", "--deep"]).await;
    assert_eq!(code, 0, "{out}");
    for _ in 0..4 {
        let (status, body) = c.get("/rot/big").await;
        assert_eq!((status, sha256_hex(&body)), (200, sha256_hex(&big)));
    }
}

/// A write that fails on a frozen volume (`504` after the stall timeout)
/// may be retried at once: the key is free once the failure is answered
/// (the undo waits on the frozen volume a second at most, then goes on in
/// the background), the retry goes to the healthy volumes, and the failed
/// write's late clean-up never touches the retry's blobs.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_failed_on_a_frozen_volume_can_be_retried_at_once() {
    let c = Cluster::start_default().await;
    c.volumes[0].signal("STOP");
    let value = pattern_bytes(64 << 10, 50);
    let mut retried = None;
    for i in 0..20 {
        let key = format!("/frozen/{i}");
        match c.put(&key, value.clone()).await {
            201 => continue,
            504 => {
                // The very next request, no waiting: it must succeed.
                assert_eq!(c.put(&key, value.clone()).await, 201, "the retry of {key}");
                retried = Some(key);
                break;
            }
            other => panic!("PUT {key}: {other}"),
        }
    }
    c.volumes[0].signal("CONT");
    let key = retried.expect("no write reached the frozen volume in 20 keys");
    // Whatever the failed write left on the thawed volume is its own: the
    // retry's value stays readable, whole, on every replica it names.
    c.wait_until_ready().await;
    let replicas = c.volumes_of(&key).await;
    assert!(
        !replicas.contains(&c.volumes[0].addr),
        "the retry went to the frozen volume"
    );
    let (code, out) = c.admin(&["verify", "--deep"]).await;
    assert_eq!(code, 0, "{out}");
    let (status, body) = c.get(&key).await;
    assert_eq!((status, sha256_hex(&body)), (200, sha256_hex(&value)));
    // The failed write's upload to the thawed volume — finished late, or
    // refused because the master aborted it — leaves nothing there.
    let late = c.blob_path(0, &key);
    wait_for("the failed write gone from the thawed volume", || async {
        !late.exists()
    })
    .await;
}

/// Concurrent small writes with fsync on — whose syncs the volumes share
/// (one group commit for many writers) — then kill -9 of every volume in
/// the middle of them: every write that was acknowledged is whole after
/// the restart, on every replica, and a rebuild from the volumes alone
/// revives it; every write that was not is gone after `gc`. (A process
/// kill leaves the page cache alone, so this checks that no write is
/// acknowledged before its files are in place and its share of a sync
/// has run, not the disk's flush itself; the commit queue's unit tests
/// check that each writer waits for a sync that began after it.)
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_fsynced_writes_survive_kill_9_of_the_volumes() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const WRITERS: usize = 16;
    const KEYS_EACH: usize = 12;
    const KILL_AFTER: usize = 60;
    let mut c = Cluster::start(ClusterOptions {
        volume_args: vec!["--shared-sync".into()],
        ..Default::default()
    })
    .await;
    let pids: Vec<u32> = c.volumes.iter().map(|v| v.pid()).collect();
    let acked_count = AtomicUsize::new(0);
    let value = |w: usize, k: usize| pattern_bytes(4096 + w * 97 + k, (w * 1000 + k) as u64);
    let writers = (0..WRITERS).map(|w| {
        let (c, acked_count) = (&c, &acked_count);
        async move {
            let mut outcomes = vec![];
            for k in 0..KEYS_EACH {
                let key = format!("/group/{w}/{k}");
                let status = c.put(&key, value(w, k)).await;
                if status == 201 {
                    acked_count.fetch_add(1, Ordering::SeqCst);
                }
                outcomes.push((key, sha256_hex(&value(w, k)), status == 201));
            }
            outcomes
        }
    });
    let killer = async {
        wait_for("some writes acknowledged", || async {
            acked_count.load(Ordering::SeqCst) >= KILL_AFTER
        })
        .await;
        for pid in &pids {
            trove_tests::signal(*pid, "KILL");
        }
    };
    let (outcomes, ()) = tokio::join!(futures::future::join_all(writers), killer);
    for v in &mut c.volumes {
        v.restart();
    }
    c.wait_until_ready().await;
    let outcomes: Vec<(String, String, bool)> = outcomes.into_iter().flatten().collect();
    let acked = outcomes.iter().filter(|o| o.2).count();
    assert!(acked >= KILL_AFTER, "only {acked} writes acknowledged");
    assert!(
        acked < outcomes.len(),
        "no write was in flight when the volumes were killed"
    );
    // A write acknowledged just before the kill may not have had its
    // confirming marks recorded: verify confirms them, gc undoes the rest.
    let (code, out) = c.admin(&["verify"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = c.admin(&["gc", "--grace", "0s"]).await;
    assert_eq!(code, 0, "{out}");
    check_outcomes(&c, &outcomes).await;
    // Every acknowledged key has its two replicas, both whole.
    for (key, sha, _) in outcomes.iter().filter(|o| o.2) {
        assert_eq!(copies(&c, key).await, vec![sha.clone(); 2], "{key}");
    }
    c.serve_rebuilt_index().await;
    check_outcomes(&c, &outcomes).await;
}

/// Each `(key, sha256, acknowledged)`: an acknowledged key reads whole, a
/// key that was not is absent.
async fn check_outcomes(c: &Cluster, outcomes: &[(String, String, bool)]) {
    for (key, sha, was_acked) in outcomes {
        let now = seen(c, key).await;
        if *was_acked {
            assert_eq!(now, Seen::Live(sha.clone()), "{key} was acknowledged");
            let (status, body) = c.get(key).await;
            assert_eq!((status, sha256_hex(&body)), (200, sha.clone()), "{key}");
        } else {
            assert_eq!(now, Seen::Absent, "{key} was not acknowledged");
        }
    }
}
