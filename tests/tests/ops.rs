//! The admin jobs on live clusters: rebalance after adding and removing a
//! volume, rebuild of a lost index, verify/repair of bit rot and lost
//! replicas, gc of orphans — with real processes, and client traffic
//! running alongside.

use serde_json::Value;
use std::time::Duration;
use trove_tests::{flip_byte, header, pattern_bytes, sha256_hex, wait_for, Cluster, ClusterOptions};

fn value(i: usize) -> Vec<u8> {
    pattern_bytes(1024 + (i * 37) % 4096, i as u64)
}

fn dataset(n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n).map(|i| (format!("/data/{i:04}"), value(i))).collect()
}

/// Every key reads back intact (through the redirect) and is balanced,
/// with `replicas` volumes.
async fn assert_all_readable_and_balanced(c: &Cluster, data: &[(String, Vec<u8>)], replicas: usize) {
    for (k, v) in data {
        let r = c.head(k).await;
        assert_eq!(r.status(), 302, "{k}");
        assert_eq!(
            header(r.headers(), "key-balance").unwrap_or_default(),
            "balanced",
            "{k}"
        );
        assert_eq!(
            header(r.headers(), "key-volumes")
                .unwrap_or_default()
                .split(',')
                .count(),
            replicas,
            "{k}"
        );
        let (status, body) = c.get(k).await;
        assert_eq!(status, 200, "{k}");
        assert_eq!(sha256_hex(&body), sha256_hex(v), "{k} intact");
    }
}

async fn job(c: &Cluster, name: &str) -> Value {
    c.json(&format!("/-/{name}")).await
}

async fn total_blobs(c: &Cluster, vols: &[usize]) -> usize {
    let mut n = 0;
    for i in vols {
        n += c.blobs(*i).await.len();
    }
    n
}

#[tokio::test]
async fn adding_a_volume_then_rebalancing_moves_a_quarter_of_the_data() {
    let mut c = Cluster::start(ClusterOptions {
        replicas: 3,
        ..Default::default()
    })
    .await;
    let data = dataset(1000);
    c.put_all(data.clone(), 16).await;
    let new = c.add_volume();
    c.restart_master_with_volumes(&[0, 1, 2, 3]).await;
    let unbalanced = {
        let mut n = 0;
        for (k, _) in &data {
            if header(c.head(k).await.headers(), "key-balance").unwrap_or_default() == "unbalanced" {
                n += 1;
            }
        }
        n
    };
    // The new volume is in the top 3 of 4 for about 3/4 of the keys.
    assert!((650..850).contains(&unbalanced), "{unbalanced} unbalanced keys");

    let (code, out) = c.admin(&["rebalance", "--dry-run"]).await;
    assert_eq!(code, 0);
    assert!(out.contains(&format!("{unbalanced} would move")), "{out}");
    // …and names each key, with where its new copy goes and which copy
    // goes away.
    let plan: Vec<&str> = out.lines().filter(|l| l.starts_with("  would move /")).collect();
    assert_eq!(plan.len() as u64, unbalanced, "{out}");
    let new_addr = &c.volumes[new].addr;
    for line in &plan {
        assert!(
            line.contains(&format!(": a copy to {new_addr}, delete the copy on 127.0.0.1:")),
            "{line}"
        );
    }
    assert_eq!(total_blobs(&c, &[new]).await, 0, "a dry run moves nothing");

    // Start, stop part-way, run again: stopping is safe. (Paced at 100
    // moves a second, so that it is still running when stopped.)
    let r = c
        .http
        .post(c.url("/-/rebalance"))
        .body(r#"{"concurrency":2,"rate":100}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let again = c.http.post(c.url("/-/rebalance")).send().await.unwrap();
    assert_eq!(again.status(), 409, "a second start while one runs is refused");
    wait_for("the rebalance to move 100 keys", || async {
        job(&c, "rebalance").await["changed"].as_u64().unwrap_or(0) >= 100
    })
    .await;
    assert_eq!(
        c.http
            .delete(c.url("/-/rebalance"))
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    wait_for("the rebalance to stop", || async {
        job(&c, "rebalance").await["state"] != "running"
    })
    .await;
    let stopped = job(&c, "rebalance").await;
    assert_eq!(stopped["state"], "cancelled", "{stopped}");
    let moved_first = stopped["changed"].as_u64().unwrap();
    // Nothing left to stop, and the answer says the last one has ended.
    let again = c.http.delete(c.url("/-/rebalance")).send().await.unwrap();
    assert_eq!(again.status(), 404);
    let why = again.text().await.unwrap();
    assert!(why.contains("the last one has ended (cancelled)"), "{why}");

    let (code, out) = c.admin(&["rebalance", "--concurrency", "8"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("rebalance done: 1000 keys scanned"), "{out}");
    let moved_second = job(&c, "rebalance").await["changed"].as_u64().unwrap();
    assert_eq!(
        moved_first + moved_second,
        unbalanced,
        "each key moved once, by one run or the other"
    );

    assert_all_readable_and_balanced(&c, &data, 3).await;
    // Old copies are gone: exactly 3 copies of each key remain, and the new
    // volume took about a quarter of them.
    assert_eq!(total_blobs(&c, &[0, 1, 2, 3]).await, 3000);
    let share = total_blobs(&c, &[new]).await as f64 / 3000.0;
    assert!(
        (0.2..0.3).contains(&share),
        "new volume holds {share} of all copies"
    );
    assert_eq!(c.status().await["keys"]["live"], 1000, "no key lost");

    // Nothing left to do.
    let (code, out) = c.admin(&["rebalance"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("1000 keys scanned, 0 moved"), "{out}");
}

/// `--rate` holds a job to that many keys a second however many run at
/// once, and a paced job stops at once: keys waiting for their turn do
/// not start after the stop.
#[tokio::test]
async fn a_paced_job_keeps_its_rate_and_stops_at_once() {
    let c = Cluster::start_default().await;
    c.put_all(dataset(40), 16).await;
    let started = std::time::Instant::now();
    let (code, out) = c.admin(&["verify", "--concurrency", "8", "--rate", "20"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("40 keys scanned"), "{out}");
    // 40 keys, the first at once and one every 1/20 s after it.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "40 keys at 20/s took {took:?}"
    );
    assert_eq!(job(&c, "verify").await["params"]["rate"], 20);

    // One key a second, all 40 in hand at once (a deep verify reads no
    // listings, so it takes a whole page at a time): 39 wait for their turn
    // (the last for 39 s, longer than `wait_for` waits) when the job is
    // stopped, and it stops at once all the same, none of them started.
    let r = c
        .http
        .post(c.url("/-/verify"))
        .body(r#"{"concurrency":64,"rate":1,"deep":true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_for("the paced verify to start a key", || async {
        job(&c, "verify").await["scanned"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    let asked = std::time::Instant::now();
    let before = job(&c, "verify").await["scanned"].as_u64().unwrap();
    let r = c.http.delete(c.url("/-/verify")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    // Keys whose turn came before the stop landed: one a second.
    let turns_meanwhile = asked.elapsed().as_secs() + 1;
    wait_for("the paced verify to stop", || async {
        job(&c, "verify").await["state"] != "running"
    })
    .await;
    let stopped = job(&c, "verify").await;
    assert_eq!(stopped["state"], "cancelled", "{stopped}");
    assert!(
        stopped["scanned"].as_u64().unwrap() <= before + turns_meanwhile,
        "{before} keys started before the stop; after it: {stopped}"
    );
}

#[tokio::test]
async fn removing_a_volume_then_rebalancing_restores_every_replica() {
    let mut c = Cluster::start(ClusterOptions {
        volumes: 4,
        replicas: 2,
        ..Default::default()
    })
    .await;
    let data = dataset(300);
    c.put_all(data.clone(), 16).await;
    let gone = c.volumes[3].addr.clone();
    // The disk died: the volume is gone, and so is it from the list.
    c.volumes[3].kill();
    c.restart_master_with_volumes(&[0, 1, 2]).await;
    let (code, out) = c.admin(&["rebalance"]).await;
    assert_eq!(code, 0, "{out}");
    // The copies left on the dead volume are reported; gc, which walks
    // only the master's volumes, will not reach them, and the report
    // says so.
    let left = format!("the old copy on {gone} remains");
    assert!(out.contains(&left), "{out}");
    assert!(
        out.lines()
            .filter(|l| l.contains(&left))
            .all(|l| l.contains("gc will not reach it")),
        "{out}"
    );
    assert_all_readable_and_balanced(&c, &data, 2).await;
    for (k, _) in &data {
        assert!(!header(c.head(k).await.headers(), "key-volumes")
            .unwrap_or_default()
            .contains(&gone));
    }
    assert_eq!(total_blobs(&c, &[0, 1, 2]).await, 600);
}

/// A dead volume removed while another one is down: rebalance cannot give
/// every key its replicas back yet. It names each key it leaves
/// under-replicated, says what to do, and fails (exit code 1) — never
/// "skipped" and exit 0. Once the other volume is back, a second run
/// gives every key its 2 replicas on the master's volumes and succeeds.
#[tokio::test]
async fn rebalance_fails_while_a_down_volume_leaves_keys_under_replicated() {
    let mut c = Cluster::start(ClusterOptions {
        volumes: 4,
        replicas: 2,
        ..Default::default()
    })
    .await;
    let data = dataset(60);
    c.put_all(data.clone(), 16).await;
    let gone = c.volumes[3].addr.clone();
    let away = c.volumes[2].addr.clone();
    // Volume 3's disk died, and is removed from the list; volume 2 is down
    // for maintenance meanwhile.
    c.volumes[3].kill();
    c.restart_master_with_volumes(&[0, 1, 2]).await;
    c.volumes[2].kill();
    c.wait_volume_health(2, false).await;
    // A dry run tells what the real run would fail on.
    let (code, out) = c.admin(&["rebalance", "--dry-run"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("would not move: its home volume {away} is down")),
        "{out}"
    );
    let (code, out) = c.admin(&["rebalance"]).await;
    assert_eq!(code, 1, "keys were left under-replicated: {out}");
    let mut short = 0;
    for (k, _) in &data {
        // A key with a replica up reads as a redirect naming its volumes;
        // one whose replicas are all down (the removed volume and the one
        // away) answers 503.
        let head = c.head(k).await;
        let on_gone = match head.status().as_u16() {
            302 => trove_tests::key_volumes(head.headers()).contains(&gone),
            503 => true,
            other => panic!("HEAD {k}: {other}"),
        };
        if !on_gone {
            continue;
        }
        // Still on the removed volume: one replica on the master's volumes
        // at most, and the report names the key and why.
        short += 1;
        assert!(
            out.lines().any(|l| l.contains(&format!("{k}: not moved: "))
                && l.contains("under-replicated: ")
                && l.contains("run rebalance again")),
            "{k} is left on {gone}, unreported: {out}"
        );
    }
    assert!(
        short > 0,
        "no key was left on the dead volume: the test proves nothing"
    );
    assert!(
        out.contains(&format!("{short} key(s) left under-replicated")),
        "{out}"
    );
    assert!(out.contains(&format!("its home volume {away} is down")), "{out}");
    let report = job(&c, "rebalance").await;
    assert!(report["failed"].as_u64().unwrap() >= short, "{report}");

    // The volume is back: every key gets its replicas again.
    c.volumes[2].restart();
    c.wait_volume_health(2, true).await;
    let (code, out) = c.admin(&["rebalance"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("under-replicated"), "{out}");
    assert!(out.contains(", 0 failed"), "{out}");
    let configured: Vec<String> = (0..3).map(|i| c.volumes[i].addr.clone()).collect();
    for (k, _) in &data {
        let volumes = c.volumes_of(k).await;
        assert_eq!(volumes.len(), 2, "{k}: {volumes:?}");
        assert!(volumes.iter().all(|v| configured.contains(v)), "{k}: {volumes:?}");
    }
    assert_all_readable_and_balanced(&c, &data, 2).await;
    assert_eq!(total_blobs(&c, &[0, 1, 2]).await, 2 * data.len());
}

/// Rebalance moves live keys only: an unlinked key whose record names a
/// volume since removed (the master restarted without it, the volume
/// decommissioned) is deleted all the same — DELETE does not wait on a
/// volume that is no longer the master's — and nothing of it is left on
/// the master's volumes or in its index.
#[tokio::test]
async fn unlinked_keys_on_a_removed_volume_can_be_deleted() {
    let mut c = Cluster::start(ClusterOptions {
        volumes: 4,
        replicas: 2,
        ..Default::default()
    })
    .await;
    let data = dataset(30);
    c.put_all(data.clone(), 16).await;
    for (k, _) in &data {
        assert_eq!(c.unlink(k).await, 204, "{k}");
    }
    let on_removed: Vec<String> = c
        .blobs(3)
        .await
        .iter()
        .map(|b| b["key"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !on_removed.is_empty(),
        "no unlinked key on the removed volume: the test proves nothing"
    );
    c.restart_master_with_volumes(&[0, 1, 2]).await;
    let (code, out) = c.admin(&["rebalance"]).await;
    assert_eq!(code, 0, "{out}");
    c.volumes[3].kill();
    for (k, _) in &data {
        assert_eq!(
            c.delete(k).await,
            204,
            "DELETE {k} (a copy on the removed volume: {})",
            on_removed.contains(k)
        );
        assert_eq!(c.delete(k).await, 404, "{k} is gone");
    }
    assert_eq!(c.status().await["keys"]["unlinked"], 0);
    let unlinked: Value = serde_json::from_str(&c.text("/data/?unlinked").await).unwrap();
    assert_eq!(unlinked["keys"], serde_json::json!([]), "{unlinked}");
    assert_eq!(total_blobs(&c, &[0, 1, 2]).await, 0);
}

#[tokio::test]
async fn rebuild_recreates_the_index_from_the_volumes() {
    let mut c = Cluster::start_default().await;
    let data = dataset(100);
    c.put_all(data.clone(), 16).await;
    let unlink = reqwest::Method::from_bytes(b"UNLINK").unwrap();
    for (k, _) in &data[..5] {
        assert_eq!(
            c.http
                .request(unlink.clone(), c.url(k))
                .send()
                .await
                .unwrap()
                .status(),
            204
        );
    }
    // A write the master never confirmed (as if it failed half-way): a
    // blob on a volume, still pending.
    let v0 = c.volumes[0].addr.clone();
    let r = c
        .http
        .put(format!("http://{v0}/never/confirmed"))
        .header("trove-master", "1")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Replicas that disagree: one copy of /data/0050 replaced behind the
    // master's back (and marked live), so its two replicas differ.
    let conflicted = "/data/0050";
    let first = first_replica(&c, conflicted).await;
    let r = c
        .http
        .put(format!("http://{first}{conflicted}"))
        .header("trove-master", "1")
        .body("other bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mark = format!("http://{first}/-/mark?key=%2Fdata%2F0050&state=live");
    assert_eq!(c.http.post(mark).send().await.unwrap().status(), 200);

    // A deleted key leaves every listing; and a volume that crashed
    // (kill -9) makes its listing again from its blobs when it starts.
    assert_eq!(c.put("/deleted/soon", "x").await, 201);
    assert_eq!(c.delete("/deleted/soon").await, 204);
    c.volumes[1].kill();
    c.volumes[1].restart();
    c.wait_volume_health(1, true).await;

    let mut before = vec![];
    for (k, _) in &data {
        before.push(c.record_of(k).await);
    }
    let unlinked_before = c.text("/?unlinked").await;

    // The index is lost.
    c.master.kill();
    let db = c.dir.path().join("db");
    std::fs::remove_dir_all(&db).unwrap();
    let out = c.rebuild(&db, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("94 live key(s), 5 unlinked, 1 never confirmed"),
        "{stdout}"
    );
    assert!(stdout.contains("/data/0050: replicas disagree"), "{stdout}");
    // A second rebuild into the same dir is refused.
    let out = c.rebuild(&db, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not empty"));

    c.master.restart();
    c.wait_until_ready().await;
    for ((k, _), expected) in data.iter().zip(&before) {
        let got = c.record_of(k).await;
        if k == conflicted {
            assert_eq!(got.status, 404, "a conflicted key is left out, not guessed");
        } else {
            assert_eq!(&got, expected, "{k}: same record, digests included");
        }
    }
    let unlinked_after = c.text("/?unlinked").await;
    assert_eq!(unlinked_after, unlinked_before, "unlinked keys stay unlinked");
    assert_eq!(
        c.http
            .get(c.url("/never/confirmed"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(c.record_of("/deleted/soon").await.status, 404);
}

/// A volume's `/-/listing`: its blobs in key order, each read from disk
/// (a file lost or cut short behind the volume's back shows), following
/// writes and deletes, and the same after a crash and restart.
#[tokio::test]
async fn volume_listings_are_sorted_and_tell_what_is_on_disk() {
    let mut c = Cluster::start(ClusterOptions {
        volumes: 1,
        replicas: 1,
        ..Default::default()
    })
    .await;
    let mut data = dataset(50);
    data.reverse(); // written out of order
    c.put_all(data.clone(), 8).await;
    let keys = |listing: &[trove_common::protocol::listing::Listed]| -> Vec<String> {
        listing.iter().map(|e| e.meta.key.clone()).collect()
    };
    let listing = c.listing(0).await;
    let mut expected: Vec<String> = data.iter().map(|(k, _)| k.clone()).collect();
    expected.sort();
    assert_eq!(keys(&listing), expected, "every key, in key order");
    for e in &listing {
        let value = &data.iter().find(|(k, _)| *k == e.meta.key).unwrap().1;
        assert_eq!(e.meta.size, value.len() as u64);
        assert_eq!(e.meta.sha256, sha256_hex(value), "{}", e.meta.key);
        assert_eq!(e.meta.state, trove_common::record::BlobState::Live);
        assert!(e.servable() && e.meta.write.is_some());
    }
    // The listing says what /-/blobs says, blob for blob.
    let mut blobs: Vec<String> = c
        .blobs(0)
        .await
        .iter()
        .map(|b| b["key"].as_str().unwrap().to_string())
        .collect();
    blobs.sort();
    assert_eq!(blobs, expected);

    // Writes and deletes show at once.
    assert_eq!(c.delete("/data/0003").await, 204);
    assert_eq!(c.put("/data/0003a", "new").await, 201);
    // Behind the volume's back: one blob lost, one cut short.
    c.remove_blob(0, "/data/0004");
    std::fs::OpenOptions::new()
        .write(true)
        .open(c.blob_path(0, "/data/0005"))
        .unwrap()
        .set_len(1)
        .unwrap();
    let listing = c.listing(0).await;
    let listed = keys(&listing);
    assert!(!listed.contains(&"/data/0003".to_string()) && !listed.contains(&"/data/0004".to_string()));
    assert!(listed.contains(&"/data/0003a".to_string()));
    assert!(listed.windows(2).all(|w| w[0] < w[1]), "still in key order");
    let short = listing.iter().find(|e| e.meta.key == "/data/0005").unwrap();
    assert!(!short.servable(), "a file cut short is listed as a fault");
    assert!(
        short.fault.as_deref().unwrap().contains("is 1 bytes"),
        "{short:?}"
    );

    // A crash, a restart: the listing is made again from the blobs.
    c.volumes[0].kill();
    c.volumes[0].restart();
    c.wait_volume_health(0, true).await;
    assert_eq!(c.listing(0).await, listing);
    let trusted = |c: &Cluster| c.volumes[0].log().matches(TRUSTED).count();
    assert_eq!(trusted(&c), 0, "a crash is never trusted");

    // A clean stop (SIGTERM) writes the key set whole: the next start-up
    // trusts it without a walk, and lists and counts the same.
    let counts = volume_counts(&c).await;
    assert_eq!(c.put("/data/after-crash", "x").await, 201);
    let listing = c.listing(0).await;
    c.volumes[0].signal("TERM");
    c.volumes[0].wait_exit();
    c.volumes[0].restart();
    c.wait_volume_health(0, true).await;
    assert_eq!(trusted(&c), 1, "{}", c.volumes[0].log());
    assert_eq!(c.listing(0).await, listing);
    let (blobs, bytes) = volume_counts(&c).await;
    assert_eq!(blobs.as_u64(), counts.0.as_u64().map(|n| n + 1));
    assert_eq!(bytes.as_u64(), counts.1.as_u64().map(|n| n + 1));
    // It is trusted once: a crash after it makes the next start walk.
    assert_eq!(c.delete("/data/0006").await, 204);
    let listing = c.listing(0).await;
    c.volumes[0].kill();
    c.volumes[0].restart();
    c.wait_volume_health(0, true).await;
    assert_eq!(trusted(&c), 1, "a crash after a trusted start is not trusted");
    assert_eq!(c.listing(0).await, listing);
}

/// The first volume the master records for `key`.
async fn first_replica(c: &Cluster, key: &str) -> String {
    let volumes = c.record_of(key).await.volumes;
    volumes.split(',').next().unwrap().to_string()
}

/// The blob count and bytes volume 0 reports.
async fn volume_counts(c: &Cluster) -> (Value, Value) {
    let s = c.volume_status(0).await;
    (s["blobs"].clone(), s["used_bytes"].clone())
}

/// What a volume logs when it starts on the key set of a clean stop.
const TRUSTED: &str = "its key set is trusted";

#[tokio::test]
async fn verify_finds_bit_rot_and_lost_replicas_and_repair_fixes_them() {
    let c = Cluster::start_default().await;
    let data = dataset(20);
    c.put_all(data.clone(), 8).await;

    let rotten = "/data/0007";
    let rotten_vol = first_replica(&c, rotten).await;
    let rotten_path = c.blob_path(c.volume_index(&rotten_vol), rotten);
    flip_byte(&rotten_path, 100);

    // Sidecars still agree with the index: only a deep check sees it.
    let (code, out) = c.admin(&["verify"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = c.admin(&["verify", "--deep"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("1 bad replica(s) found"), "{out}");
    assert!(
        out.contains(&format!("{rotten}: replica on {rotten_vol} is corrupt")),
        "{out}"
    );
    assert_eq!(out.matches("is corrupt").count(), 1, "exactly that one");

    let (code, out) = c.admin(&["verify", "--deep", "--repair"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 repaired"), "{out}");
    assert_eq!(
        std::fs::read(&rotten_path).unwrap(),
        data[7].1,
        "the bytes are restored"
    );
    let (code, out) = c.admin(&["verify", "--deep"]).await;
    assert_eq!(code, 0, "{out}");

    // A lost replica (blob and sidecar gone): the plain verify sees it.
    let lost = "/data/0011";
    let lost_vol = c
        .record_of(lost)
        .await
        .volumes
        .split(',')
        .nth(1)
        .unwrap()
        .to_string();
    c.remove_blob(c.volume_index(&lost_vol), lost);
    let (code, out) = c.admin(&["verify"]).await;
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!("{lost}: replica on {lost_vol} is missing")),
        "{out}"
    );
    let (code, _) = c.admin(&["verify", "--repair"]).await;
    assert_eq!(code, 0);
    let lost_path = c.blob_path(c.volume_index(&lost_vol), lost);
    assert_eq!(std::fs::read(&lost_path).unwrap(), data[11].1);
    assert_all_readable_and_balanced(&c, &data, 2).await;
}

/// A copy that rots is repaired once a reader finds it, without a
/// `verify`: the volume refuses it, reports it to the master, and the
/// master re-copies it from the good replica; no reader gets a wrong byte,
/// and the readers after the repair are all served.
#[tokio::test]
async fn a_damaged_copy_a_reader_finds_is_repaired_without_verify() {
    let c = Cluster::start_default().await;
    // Over a MiB, so that the damage (in the second MiB) is found after
    // the answer has started: the body is cut short there.
    let data = vec![
        ("/rot/small".to_string(), pattern_bytes(3000, 1)),
        ("/rot/large".to_string(), pattern_bytes(3 << 20, 2)),
    ];
    c.put_all(data.clone(), 2).await;
    for ((key, bytes), at) in data.iter().zip([100u64, (5 << 19) + 7]) {
        let bad = first_replica(&c, key).await;
        let path = c.blob_path(c.volume_index(&bad), key);
        flip_byte(&path, at);
        // Read straight from the damaged copy, as a reader the master sent
        // there: refused at once, or cut short before the damaged block.
        let r = c.http.get(format!("http://{bad}{key}")).send().await.unwrap();
        match r.status().as_u16() {
            503 => assert!(r.text().await.unwrap().contains("failed verification")),
            200 => {
                let got = r.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
                assert!(
                    got.len() < bytes.len(),
                    "{key}: the damaged copy was served whole"
                );
                assert_eq!(got[..], bytes[..got.len()], "{key}: a wrong byte was served");
            }
            other => panic!("{key}: the damaged copy answered {other}"),
        }
        wait_for("the master to repair the copy", || async {
            std::fs::read(&path).is_ok_and(|b| b == *bytes)
        })
        .await;
        let direct = c.http.get(format!("http://{bad}{key}")).send().await.unwrap();
        assert_eq!(direct.status(), 200, "{key}");
        assert_eq!(direct.bytes().await.unwrap()[..], bytes[..], "{key}");
    }
    assert!(
        c.master.log().contains("was repaired from a good replica"),
        "the master logs the report"
    );
    let metrics = c.text("/-/metrics").await;
    assert!(metrics.contains("\ntrove_read_repairs_total 2\n"), "{metrics}");
    assert!(
        metrics.contains("\ntrove_read_repair_failures_total 0\n"),
        "{metrics}"
    );
    // Nothing is left for verify to find.
    let (code, out) = c.admin(&["verify", "--deep"]).await;
    assert_eq!(code, 0, "{out}");
    assert_all_readable_and_balanced(&c, &data, 2).await;
}

/// A master started on an empty index in front of a cluster's volumes
/// (the index disk lost and the master restarted anyway, or a mistyped
/// `--db`) says so, and its gc deletes none of the blobs it found there:
/// they are the lost index's values, which `rebuild` brings back.
#[tokio::test]
async fn gc_on_an_empty_index_in_front_of_full_volumes_deletes_nothing() {
    let mut c = Cluster::start_default().await;
    let data = dataset(12);
    c.put_all(data.clone(), 4).await;
    let blobs_before: usize = futures::future::join_all((0..3).map(|i| c.blobs(i)))
        .await
        .iter()
        .map(Vec::len)
        .sum();
    assert_eq!(blobs_before, 24);

    // One volume is still down when the master starts: it is first seen
    // after a key has been written, and is marked all the same.
    c.volumes[2].kill();
    let empty = c.dir.path().join("wrong-db");
    c.master.set_arg("--db", empty.to_str().unwrap());
    c.master.restart();
    let url = c.url("/-/ready");
    wait_for("master ready", || async {
        c.http.get(&url).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    // A key written meanwhile does not make the old blobs garbage.
    assert_eq!(c.put("/new/key", value(99)).await, 201);
    c.volumes[2].restart();
    wait_for("the master to see every volume's blobs", || async {
        c.status().await["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["foreign_before"].is_u64())
    })
    .await;
    assert!(
        c.master.log().contains("run `trove-master rebuild`"),
        "the master says what to do"
    );
    let (code, out) = c.admin(&["gc", "--grace", "0s"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("left alone"), "{out}");
    assert!(out.contains("trove-master rebuild"), "{out}");
    let blobs_after: usize = futures::future::join_all((0..3).map(|i| c.blobs(i)))
        .await
        .iter()
        .map(Vec::len)
        .sum();
    assert_eq!(
        blobs_after,
        blobs_before + 2,
        "nothing deleted, the new key's copies added"
    );

    // The operator follows the advice: every value is back.
    c.master.kill();
    let db = c.dir.path().join("rebuilt");
    let out = c.rebuild(&db, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.master.set_arg("--db", db.to_str().unwrap());
    c.master.restart();
    c.wait_until_ready().await;
    assert_all_readable_and_balanced(&c, &data, 2).await;
    let (code, out) = c.admin(&["gc", "--grace", "0s"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains("left alone"),
        "a rebuilt index owns its volumes: {out}"
    );
}

/// A copy whose file is deleted under its running volume: the reader the
/// master sends there gets `404` once, the volume reports it, and the
/// master re-copies it; the readers after that are all served.
#[tokio::test]
async fn a_missing_copy_a_reader_finds_is_restored_without_verify() {
    let c = Cluster::start_default().await;
    let data = dataset(4);
    c.put_all(data.clone(), 2).await;
    let (key, bytes) = &data[2];
    let lost = first_replica(&c, key).await;
    let i = c.volume_index(&lost);
    c.remove_blob(i, key);
    // The master alternates replicas: within a few redirects one is there.
    let mut met = false;
    for _ in 0..8 {
        let r = c.head(key).await;
        let location = header(r.headers(), "location").unwrap().to_string();
        if location.contains(&lost) {
            let got = c.http.get(&location).send().await.unwrap();
            assert_eq!(got.status(), 404);
            met = true;
            break;
        }
    }
    assert!(met, "no redirect went to {lost}");
    let path = c.blob_path(i, key);
    wait_for("the master to restore the copy", || async {
        std::fs::read(&path).is_ok_and(|b| b == *bytes)
    })
    .await;
    for _ in 0..4 {
        let (status, body) = c.get(key).await;
        assert_eq!((status, sha256_hex(&body)), (200, sha256_hex(bytes)));
    }
    assert!(c.master.log().contains("was repaired from a good replica"));
}

/// Jobs do not wait on a volume the master has marked down (a frozen
/// one held verify for the stall timeout on every key it holds): its
/// copies are reported as not checked, a repair whose only good copy is
/// there says so, and verify and gc exit 1 — their work is not done.
#[tokio::test]
async fn jobs_do_not_wait_on_a_volume_that_is_down() {
    let c = Cluster::start_default().await;
    let data = dataset(16);
    c.put_all(data.clone(), 4).await;
    let frozen = c.volumes[0].addr.clone();
    // A key with a copy on the frozen volume, whose other copy rots.
    let mut rotten = None;
    for (k, _) in &data {
        let volumes = c.record_of(k).await.volumes;
        if let Some(other) = volumes.split(',').find(|v| *v != frozen) {
            if volumes.contains(&frozen) {
                flip_byte(&c.blob_path(c.volume_index(other), k), 10);
                rotten = Some(k.clone());
                break;
            }
        }
    }
    let rotten = rotten.expect("a key with a copy on volume 0");
    c.volumes[0].signal("STOP");
    wait_for("the master to mark the frozen volume down", || async {
        c.status().await["volumes"][0]["healthy"] == false
    })
    .await;

    let (code, out) = c.admin(&["verify", "--deep", "--repair"]).await;
    let (gc_code, gc_out) = c.admin(&["gc", "--grace", "0s"]).await;
    c.volumes[0].signal("CONT");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "replica on {frozen} not checked: volume {frozen} unreachable: marked down"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{rotten}: no good replica reached to repair from (1 could not be checked"
        )),
        "{out}"
    );
    assert_eq!(gc_code, 1, "{gc_out}");
    assert!(gc_out.contains(&format!("volume {frozen} is down")), "{gc_out}");

    // Once the volume answers, the same repair finishes the job.
    wait_for("the volume back up", || async {
        c.status().await["volumes"][0]["healthy"] == true
    })
    .await;
    let (code, out) = c.admin(&["verify", "--deep", "--repair"]).await;
    assert_eq!(code, 0, "{out}");
    assert_all_readable_and_balanced(&c, &data, 2).await;
}

/// A `DELETE` that cannot reach one of the key's volumes leaves the key
/// unlinked, and the master finishes it once the volume is back: the
/// copy there is removed (it stayed `live`, so a `rebuild` brought the
/// deleted key back), and then the record.
#[tokio::test]
async fn a_delete_a_dead_volume_interrupts_is_finished_once_it_is_back() {
    let mut c = Cluster::start_default().await;
    let data = dataset(8);
    c.put_all(data.clone(), 4).await;
    let dead = c.volumes[1].addr.clone();
    let mut key = None;
    for (k, _) in &data {
        if c.record_of(k).await.volumes.contains(&dead) {
            key = Some(k.clone());
            break;
        }
    }
    let key = key.expect("a key on volume 1");
    c.volumes[1].kill();
    let r = c.http.delete(c.url(&key)).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("the master removes that copy once its volume answers again"),
        "{body}"
    );
    assert_eq!(c.record_of(&key).await.status, 404, "it reads as absent");
    c.volumes[1].restart();
    wait_for("the delete to finish", || async {
        !c.blob_path(1, &key).exists() && c.json("/?unlinked").await["keys"] == serde_json::json!([])
    })
    .await;
    assert_eq!(c.delete(&key).await, 404, "nothing left to delete");
    // Nothing for a rebuild to bring back.
    c.serve_rebuilt_index().await;
    assert_eq!(c.record_of(&key).await.status, 404);
}

/// A `SIGTERM` to the command following a job stops the job, as Ctrl-C
/// does, instead of leaving it running unwatched.
#[tokio::test]
async fn sigterm_stops_the_job_the_command_follows() {
    let c = Cluster::start_default().await;
    c.put_all(dataset(30), 8).await;
    let child = tokio::process::Command::new(trove_tests::bin("trove-master"))
        .args([
            "verify",
            "--rate",
            "2",
            "--master",
            &format!("http://{}", c.master.addr),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the verify to run", || async {
        let r = c.http.get(c.url("/-/verify")).send().await.unwrap();
        // Before the job starts: 404, no job yet.
        r.json::<Value>().await.is_ok_and(|v| v["state"] == "running")
    })
    .await;
    trove_tests::signal(child.id().unwrap(), "TERM");
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("terminated: stopping the verify"), "{stderr}");
    let state = c
        .http
        .get(c.url("/-/verify"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(state["state"], "cancelled", "{state}");
}

/// An admin job sent to a volume's address (an operator mixing up the
/// ports) says the address is not the master's, not what the volume
/// answered to the job's request.
#[tokio::test]
async fn an_admin_job_sent_to_a_volume_names_the_mistake() {
    let c = Cluster::start_default().await;
    for job in [&["verify"][..], &["gc", "--dry-run"], &["rebalance"]] {
        let out = std::process::Command::new(trove_tests::bin("trove-master"))
            .args(job)
            .args(["--master", &format!("http://{}", c.volumes[0].addr)])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{job:?}: {stderr}");
        assert!(
            stderr.contains("does not answer as a Trove master (is it a volume?"),
            "{job:?}: {stderr}"
        );
    }
}

/// A slow streaming body: `chunks` × 256 KiB, one every 20 ms.
fn slow_body(chunks: usize) -> reqwest::Body {
    let stream = futures::stream::unfold(0usize, move |i| async move {
        if i == chunks {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        Some((Ok::<_, std::io::Error>(vec![i as u8; 256 * 1024]), i + 1))
    });
    reqwest::Body::wrap_stream(stream)
}

#[tokio::test]
async fn gc_removes_orphans_and_keeps_everything_live() {
    let mut c = Cluster::start_default().await;
    let data = dataset(30);
    c.put_all(data.clone(), 8).await;

    // Writes in flight when a volume dies: some fail, some may land elsewhere.
    let writes: Vec<_> = (0..6)
        .map(|i| {
            let (http, url) = (c.http.clone(), c.url(&format!("/slow/{i}")));
            tokio::spawn(async move {
                http.put(url)
                    .body(slow_body(40))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    wait_for("the slow writes to start", || async {
        c.status().await["keys"]["writing"] == 6
    })
    .await;
    c.volumes[0].kill();
    let mut acked = vec![];
    for (i, w) in writes.into_iter().enumerate() {
        let status = w.await.unwrap().unwrap_or(0);
        assert!(status == 201 || status >= 500, "slow write {i}: {status}");
        if status == 201 {
            acked.push(i);
        }
    }
    c.volumes[0].restart();
    c.wait_volume_health(0, true).await;
    // An orphan for sure: a blob no record knows (a failed write whose
    // clean-up could not reach its volume).
    let v2 = c.volumes[2].addr.clone();
    assert_eq!(
        c.http
            .put(format!("http://{v2}/orphan"))
            .header("trove-master", "1")
            .body("junk")
            .send()
            .await
            .unwrap()
            .status(),
        201
    );

    // Within the grace period nothing is touched.
    let (code, out) = c.admin(&["gc"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(" 0 deleted"), "{out}");
    let (code, out) = c.admin(&["gc", "--grace", "0s"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains(" 0 deleted"), "{out}");

    // Every blob left is a replica a live record names.
    c.assert_no_orphans().await;
    assert_all_readable_and_balanced(&c, &data, 2).await;
    for i in acked {
        let (status, body) = c.get(&format!("/slow/{i}")).await;
        assert_eq!(
            (status, body.len()),
            (200, 40 * 256 * 1024),
            "acknowledged /slow/{i}"
        );
    }
    assert_eq!(c.status().await["keys"]["writing"], 0);
}

#[tokio::test]
async fn gc_clears_a_write_the_master_died_in() {
    let mut c = Cluster::start_default().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    tx.send(Ok(vec![1; 1000])).await.unwrap();
    let body = reqwest::Body::wrap_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let put = {
        let (http, url) = (c.http.clone(), c.url("/interrupted"));
        tokio::spawn(async move { http.put(url).body(body).send().await })
    };
    wait_for("the write to start", || async {
        c.status().await["keys"]["writing"] == 1
    })
    .await;
    c.master.kill();
    assert!(put.await.unwrap().is_err(), "the client sees the connection drop");
    drop(tx);
    c.master.restart();
    c.wait_until_ready().await;
    assert_eq!(
        c.status().await["keys"]["writing"],
        1,
        "the dead write's record survived"
    );
    assert_eq!(
        c.http.get(c.url("/interrupted")).send().await.unwrap().status(),
        404
    );
    let (code, out) = c.admin(&["gc", "--grace", "0s"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(c.status().await["keys"]["writing"], 0);
    assert_eq!(c.put("/interrupted", "again").await, 201);
}

#[tokio::test]
async fn traffic_during_rebalance_succeeds() {
    let mut c = Cluster::start_default().await;
    let data: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| (format!("/busy/{i:03}"), pattern_bytes(64 * 1024, i)))
        .collect();
    c.put_all(data.clone(), 16).await;
    c.add_volume();
    c.restart_master_with_volumes(&[0, 1, 2, 3]).await;
    let r = c
        .http
        .post(c.url("/-/rebalance"))
        .body(r#"{"concurrency":2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    // Readers and writers while it runs; bounded in count.
    let readers = async {
        let mut reads = 0;
        for round in 0..20 {
            for (k, v) in data.iter().skip(round % 7).step_by(7) {
                let (status, body) = c.get(k).await;
                assert_eq!(status, 200, "read of {k} during rebalance");
                assert_eq!(sha256_hex(&body), sha256_hex(v), "{k} intact during rebalance");
                reads += 1;
            }
            if job(&c, "rebalance").await["state"] != "running" {
                break;
            }
        }
        reads
    };
    let written: Vec<(String, Vec<u8>)> = (0..60)
        .map(|i| (format!("/during/{i}"), pattern_bytes(32 * 1024, 1000 + i)))
        .collect();
    let writers = c.put_all(written.clone(), 4);
    let (reads, ()) = tokio::join!(readers, writers);
    assert!(reads > 0);
    wait_for("the rebalance to finish", || async {
        job(&c, "rebalance").await["state"] != "running"
    })
    .await;
    let report = job(&c, "rebalance").await;
    assert_eq!(report["state"], "done", "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    // Keys skipped because a writer held them are moved by a second run.
    let (code, out) = c.admin(&["rebalance"]).await;
    assert_eq!(code, 0, "{out}");
    assert_all_readable_and_balanced(&c, &data, 2).await;
    assert_all_readable_and_balanced(&c, &written, 2).await;
}

#[tokio::test]
async fn a_volume_emptied_before_a_master_restart_is_known_to_lack_older_keys_until_rebalance_restores_them()
{
    let mut c = Cluster::start(ClusterOptions {
        volumes: 3,
        replicas: 2,
        ..Default::default()
    })
    .await;
    let data = dataset(200);
    c.put_all(data.clone(), 16).await;
    // Volume 1's disk is replaced: an empty data dir (a new id), same address.
    c.volumes[1].kill();
    std::fs::remove_dir_all(c.volume_dir(1)).unwrap();
    c.volumes[1].restart();
    let emptied = c.volumes[1].addr.clone();
    let lost_data_at = |status: Value| {
        status["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["address"] == emptied.as_str())
            .map(|v| v["lost_data_at"].clone())
            .unwrap()
    };
    wait_for("the master to see volume 1 emptied", || async {
        lost_data_at(c.status().await).is_u64()
    })
    .await;

    // The master restarts, growing by a volume as `add-volume` does: it
    // still knows, and sends no reader of an older key to the empty disk.
    let added = c.add_volume();
    c.restart_master_with_volumes(&[0, 1, 2, added]).await;
    assert!(
        lost_data_at(c.status().await).is_u64(),
        "the master forgot, across its restart, that volume 1 lost its data"
    );
    for (k, v) in &data {
        for _ in 0..2 {
            let r = c.head(k).await;
            let location = header(r.headers(), "location").unwrap_or_default();
            assert!(
                !location.contains(&emptied),
                "{k} redirected to the emptied volume"
            );
            // Nor is a reader told to fall back on it, or the key said
            // to be balanced with a copy missing there.
            let listed = trove_tests::key_volumes(r.headers());
            assert!(!listed.contains(&emptied), "{k}: Key-Volumes {listed:?}");
            if c.recorded_on(k).await.contains(&emptied) {
                assert_eq!(header(r.headers(), "key-balance"), Some("unbalanced"), "{k}");
            }
        }
        let (status, body) = c.get(k).await;
        assert_eq!((status, sha256_hex(&body)), (200, sha256_hex(v)), "{k}");
    }

    // A rebalance gives the emptied volume a fresh copy of every key it
    // is home to — moved there or recorded there all along — so no record
    // names a volume without a copy, and with none left failing the
    // master forgets the loss (as a `verify --repair` would), also across
    // a restart.
    let mut before = vec![];
    for (k, _) in &data {
        before.push(c.recorded_on(k).await);
    }
    let (code, out) = c.admin(&["rebalance"]).await;
    assert_eq!(code, 0, "{out}");
    let mut held = std::collections::HashMap::new();
    for (i, v) in c.volumes.iter().enumerate() {
        let keys: std::collections::HashSet<String> = c
            .blobs(i)
            .await
            .iter()
            .map(|b| b["key"].as_str().unwrap().to_string())
            .collect();
        held.insert(v.addr.clone(), keys);
    }
    let mut stayed_on_emptied = 0;
    for ((k, _), before) in data.iter().zip(&before) {
        let after = c.volumes_of(k).await;
        stayed_on_emptied += usize::from(before.contains(&emptied) && after.contains(&emptied));
        for addr in &after {
            assert!(
                held[addr].contains(k),
                "{k} is recorded on {after:?}, but {addr} holds no copy"
            );
        }
    }
    assert!(
        stayed_on_emptied > 0,
        "no key stayed on the emptied volume: the test proves nothing"
    );
    assert!(
        lost_data_at(c.status().await).is_null(),
        "a rebalance that restored every copy leaves the volume marked as having lost its data"
    );
    let (code, out) = c.admin(&["verify"]).await;
    assert_eq!(code, 0, "{out}");
    c.restart_master_with_volumes(&[0, 1, 2, added]).await;
    assert!(
        lost_data_at(c.status().await).is_null(),
        "and stays so after a restart"
    );
    assert_all_readable_and_balanced(&c, &data, 2).await;
    assert_eq!(total_blobs(&c, &[0, 1, 2, added]).await, 400);
}

/// A copy its volume refuses to serve (a truncated file) is reported by
/// a plain verify with the volume's own reason, which its `HEAD` answer
/// carries in `Trove-Error` (it has no body).
#[tokio::test]
async fn verify_reports_why_a_volume_cannot_serve_a_copy() {
    let c = Cluster::start_default().await;
    assert_eq!(c.put("/short", pattern_bytes(4096, 3)).await, 201);
    let vol = first_replica(&c, "/short").await;
    let path = c.blob_path(c.volume_index(&vol), "/short");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(1000)
        .unwrap();
    let (code, out) = c.admin(&["verify"]).await;
    assert_eq!(code, 1, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains(&format!("/short: replica on {vol} is corrupt")))
        .unwrap_or_else(|| panic!("no report of the short copy:\n{out}"));
    assert!(
        line.contains("1000") && line.contains("4096"),
        "the volume's reason: {line}"
    );
}

/// A report read through a pipe that closes early (`trove-master verify |
/// head -1`, `trove ls | head -1`) ends the command quietly, with the
/// status a shell gives a command `SIGPIPE` ended (141), not with a panic.
#[tokio::test]
async fn a_report_cut_off_by_its_reader_ends_quietly() {
    let c = Cluster::start_default().await;
    assert_eq!(c.put("/listed", "v").await, 201);
    let master = format!("http://{}", c.master.addr);
    for (program, args) in [
        ("trove-master", ["verify", "--master", &master]),
        ("trove", ["ls", "/", "-l"]),
    ] {
        let mut child = std::process::Command::new(trove_tests::bin(program))
            .args(args)
            .env("TROVE_MASTER", &master)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("it runs");
        // The reader goes away before the report is written.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{program}: {stderr}");
        assert_eq!(
            out.status.code(),
            Some(141),
            "{program}: {:?}\n{stderr}",
            out.status
        );
    }
}

/// A key whose every replica is on volumes removed from the list is read
/// from them while they answer (the master probes them, as it does not
/// poll them), and once they are down answers `503` saying why — never a
/// redirect to a dead volume; a rebalance then names them as the copies
/// it could not read.
#[tokio::test]
async fn a_key_only_on_removed_volumes_is_read_while_they_answer_then_503() {
    let mut c = Cluster::start(ClusterOptions {
        volumes: 4,
        replicas: 2,
        ..Default::default()
    })
    .await;
    let kept = [c.volumes[0].addr.clone(), c.volumes[1].addr.clone()];
    let mut key = None;
    for i in 0..100 {
        let k = format!("/retired/{i}");
        assert_eq!(c.put(&k, k.clone()).await, 201);
        if !c.volumes_of(&k).await.iter().any(|a| kept.contains(a)) {
            key = Some(k);
            break;
        }
    }
    let key = key.expect("a key on volumes 2 and 3 only");
    c.restart_master_with_volumes(&[0, 1]).await;
    assert_eq!(c.get(&key).await, (200, key.clone().into()));
    c.volumes[2].kill();
    c.volumes[3].kill();
    wait_for("the removed volumes' probes to lapse", || async {
        c.head(&key).await.status() == 503
    })
    .await;
    let head = c.head(&key).await;
    assert!(header(head.headers(), "location").is_none());
    let reason = header(head.headers(), "trove-error")
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.contains(&format!(
            "{}: removed from this master's volumes, and not answering",
            c.volumes[2].addr
        )),
        "{reason}"
    );
    let (code, out) = c.admin(&["rebalance"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("{key}: not moved: no healthy replica to copy from")),
        "{out}"
    );
}

/// A replace the master died in (its copies stored, the commit never
/// made) leaves the key *writing* over its old value, which readers still
/// get. `verify` used to leave such a key out silently — its value went
/// unchecked, and unrepaired, until gc's grace period (an hour) let gc
/// undo the dead write. Now a plain verify says so and fails, `verify
/// --repair` undoes the dead write and checks the value, and `gc` undoes
/// one at once: a free key proves its write dead.
#[tokio::test(flavor = "multi_thread")]
async fn a_replace_the_master_died_in_is_undone_by_verify_repair_and_gc() {
    let mut c = Cluster::start_default().await;
    for key in ["/died/verified", "/died/collected"] {
        assert_eq!(c.put(key, format!("old value of {key}")).await, 201);
        die_in_a_replace(&mut c, key).await;
    }
    let (code, out) = c.admin(&["verify"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("/died/verified: not checked: a replace that failed (or that the master died in)"),
        "{out}"
    );
    let (code, out) = c.admin(&["gc"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 dead write(s) undone"), "{out}");
    // gc undid both (the default grace period applies to orphans only);
    // write one dead replace again for verify --repair.
    die_in_a_replace(&mut c, "/died/verified").await;
    let (code, out) = c.admin(&["verify", "--repair"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("/died/verified: a replace that failed (or that the master died in) was undone"),
        "{out}"
    );
    assert!(out.contains("2 keys scanned"), "both keys checked: {out}");
    assert_eq!(c.status().await["keys"]["writing"], 0);
    for key in ["/died/verified", "/died/collected"] {
        assert_eq!(c.get(key).await, (200, format!("old value of {key}").into()));
    }
}

/// Makes the master die in a replace of `key`, after every copy was
/// stored and before the commit, and starts it again.
async fn die_in_a_replace(c: &mut Cluster, key: &str) {
    c.master.set_env("TROVE_CRASH_AT", Some("write-stored"));
    c.master.restart();
    c.wait_until_ready().await;
    let sent = c
        .http
        .put(c.url(key))
        .header("trove-replace", "1")
        .body("the new value, never committed")
        .send()
        .await;
    assert!(sent.is_err(), "the master answered");
    c.master.wait_exit();
    c.master.set_env("TROVE_CRASH_AT", None);
    c.master.restart();
    c.wait_until_ready().await;
}

/// A server's switch takes `1`, `yes` or `on` from its environment
/// variable, as the client's do (clap's default took only `true`, so
/// `TROVE_PROTECT=1` stopped the master at start-up); and the admin
/// commands take a list of masters, as `trove` does, running the job on
/// the first that answers.
#[tokio::test]
async fn switches_take_boolish_values_and_jobs_take_a_list_of_masters() {
    let mut c = Cluster::start_default().await;
    c.master.set_env("TROVE_PROTECT", Some("1"));
    c.master.restart();
    c.wait_until_ready().await;
    assert_eq!(c.put("/protected", "v").await, 201);
    assert_eq!(c.delete("/protected").await, 403, "--protect is on");
    let masters = format!("http://127.0.0.1:1,http://{}", c.master.addr);
    let out = tokio::process::Command::new(trove_tests::bin("trove-master"))
        .args(["gc", "--master", &masters])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("gc done"), "{said}");
}
