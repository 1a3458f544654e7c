//! Volumes going down, clients misbehaving, many writers at once: real
//! processes, real sockets.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use trove_tests::{pattern_bytes, sha256_hex, wait_for, Cluster};

#[tokio::test]
async fn thirty_two_concurrent_writers() {
    let c = Cluster::start_default().await;
    let writes = (0..32).map(|i| {
        let (http, url) = (c.http.clone(), c.url(&format!("/many/{i}")));
        async move {
            let value = pattern_bytes((1 << 20) + i * 4099, i as u64);
            let status = http.put(url).body(value.clone()).send().await.unwrap().status();
            (status, sha256_hex(&value))
        }
    });
    let results = futures::future::join_all(writes).await;
    for (i, (status, sha)) in results.iter().enumerate() {
        assert_eq!(*status, 201, "writer {i}");
        let (st, body) = c.get(&format!("/many/{i}")).await;
        assert_eq!(st, 200);
        assert_eq!(&sha256_hex(&body), sha, "value {i} read back intact");
    }
}

#[tokio::test]
async fn writes_go_around_a_down_volume() {
    let mut c = Cluster::start_default().await;
    let down = c.volumes[0].addr.clone();
    c.volumes[0].kill();
    c.wait_volume_health(0, false).await;

    let mut unbalanced = 0;
    for i in 0..20 {
        let key = format!("/around/{i}");
        assert_eq!(c.put(&key, key.clone()).await, 201, "{key}");
        let r = c.http.head(c.url(&key)).send().await.unwrap();
        let vols = r.headers()["key-volumes"].to_str().unwrap().to_string();
        assert!(!vols.contains(&down), "{key} written to the down volume");
        assert_eq!(vols.split(',').count(), 2);
        if r.headers()["key-balance"] == "unbalanced" {
            unbalanced += 1;
        }
        assert_eq!(c.get(&key).await.1, key);
    }
    // Keys whose home includes the down volume are marked for rebalance.
    assert!(unbalanced > 0);

    // With two of three volumes down, two replicas cannot be written.
    c.volumes[1].kill();
    c.wait_volume_health(1, false).await;
    let r = c.http.put(c.url("/nowhere")).body("v").send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("healthy"));
    assert_eq!(c.http.get(c.url("/-/ready")).send().await.unwrap().status(), 503);
    assert_eq!(
        c.http.get(c.url("/-/healthy")).send().await.unwrap().status(),
        200
    );

    // Volumes come back, and so does the cluster.
    c.volumes[0].restart();
    c.volumes[1].restart();
    c.wait_until_ready().await;
    assert_eq!(c.put("/nowhere", "v").await, 201);
}

#[tokio::test]
async fn reads_go_to_the_replica_that_is_up() {
    let mut c = Cluster::start_default().await;
    assert_eq!(c.put("/r", "replicated").await, 201);
    let r = c.http.get(c.url("/r")).send().await.unwrap();
    let vols: Vec<String> = r.headers()["key-volumes"]
        .to_str()
        .unwrap()
        .split(',')
        .map(String::from)
        .collect();
    let down = c.volume_index(&vols[0]);
    c.volumes[down].kill();
    c.wait_volume_health(down, false).await;
    for _ in 0..6 {
        let r = c.http.get(c.url("/r")).send().await.unwrap();
        assert_eq!(r.status(), 302);
        let location = r.headers()["location"].to_str().unwrap();
        assert!(
            location.starts_with(&format!("http://{}/r?write=", vols[1])),
            "{location}"
        );
        assert_eq!(c.get("/r").await.1, "replicated");
    }
    // Both replicas down: 503, not a redirect to a dead volume.
    let other = c.volume_index(&vols[1]);
    c.volumes[other].kill();
    c.wait_volume_health(other, false).await;
    assert_eq!(c.http.get(c.url("/r")).send().await.unwrap().status(), 503);
}

/// Sends a PUT's head and `sent` bytes of a `declared`-byte body by hand.
fn partial_put(addr: &str, key: &str, declared: usize, sent: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "PUT {key} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {declared}\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let mut left = sent;
    while left > 0 {
        let n = left.min(chunk.len());
        s.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    s
}

/// After a failed upload: nothing visible, no temp file, the key writable.
async fn assert_nothing_left(c: &Cluster, key: &str) {
    wait_for("temp files to be removed", || async {
        (0..c.volumes.len()).all(|i| c.temp_files(i) == 0)
    })
    .await;
    assert_eq!(c.http.get(c.url(key)).send().await.unwrap().status(), 404);
    let list: serde_json::Value = c.json("/?list").await;
    assert_eq!(list["keys"], serde_json::json!([]));
    // The lock is released once clean-up is done; the same PUT then works.
    wait_for("the key to be writable again", || async {
        c.put(key, "retry").await == 201
    })
    .await;
    assert_eq!(c.get(key).await.1, "retry");
}

#[tokio::test]
async fn client_disconnecting_mid_upload_leaves_nothing() {
    let c = Cluster::start_default().await;
    let s = partial_put(&c.master.addr, "/cut", 8 << 20, 1 << 20);
    // Let the bytes reach the volumes' temp files before hanging up.
    wait_for("the upload to reach the volumes", || async {
        (0..3).any(|i| c.temp_files(i) > 0)
    })
    .await;
    drop(s);
    assert_nothing_left(&c, "/cut").await;
}

#[tokio::test]
async fn body_shorter_than_content_length_leaves_nothing() {
    let c = Cluster::start_default().await;
    let mut s = partial_put(&c.master.addr, "/short", 1000, 500);
    s.shutdown(std::net::Shutdown::Write).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    // A 400 naming the problem.
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_nothing_left(&c, "/short").await;
}

/// Every copy of a key rotten: `verify` records them all as damaged, so
/// the master answers `503` saying so instead of redirecting readers to
/// copies their volumes refuse; a value written again reads as before.
#[tokio::test]
async fn a_key_whose_every_copy_is_corrupt_reads_as_damaged() {
    let c = Cluster::start_default().await;
    let value = trove_tests::pattern_bytes(300_000, 9);
    assert_eq!(c.put("/rot/all", value.clone()).await, 201);
    let replicas = trove_tests::key_volumes(c.head("/rot/all").await.headers());
    assert_eq!(replicas.len(), 2);
    for addr in &replicas {
        trove_tests::flip_byte(&c.blob_path(c.volume_index(addr), "/rot/all"), 10);
    }
    let (code, out) = c.admin(&["verify", "--deep"]).await;
    assert_eq!(code, 1, "{out}");
    let head = c.head("/rot/all").await;
    assert_eq!(head.status(), 503);
    let reason = trove_tests::header(head.headers(), "trove-error")
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("found damaged by verify"), "{reason}");
    assert!(trove_tests::header(head.headers(), "location").is_none());

    // Written again, the key is whole; the next verify finds nothing.
    let r = c
        .http
        .put(c.url("/rot/all"))
        .header("trove-replace", "1")
        .body(value.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(c.get("/rot/all").await, (200, value.into()));
    let (code, out) = c.admin(&["verify", "--deep"]).await;
    assert_eq!(code, 0, "{out}");
}

/// A copy whose metadata no longer reads is damaged, not replaced: the
/// volume answers the master's pinned redirect (`?write=`) `503` saying
/// so, as it does an unpinned read, rather than `404` "ask the master
/// again", which sent readers round in circles.
#[tokio::test]
async fn a_copy_with_unreadable_metadata_answers_a_pinned_read_503() {
    let c = Cluster::start_default().await;
    assert_eq!(c.put("/meta/garbled", "value").await, 201);
    let head = c.head("/meta/garbled").await;
    let location = trove_tests::header(head.headers(), "location")
        .unwrap()
        .to_string();
    assert!(location.contains("write="), "{location}");
    let addr = location
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let blob = c.blob_path(c.volume_index(&addr), "/meta/garbled");
    trove_common::xattr::set_path(&blob, b"{garbage").unwrap();
    for url in [location.clone(), format!("http://{addr}/meta/garbled")] {
        let r = c.http.get(&url).send().await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 503, "{url}: {body}");
        assert!(body.contains("metadata"), "{url}: {body}");
    }
}

/// A data dir that disappears under a running volume (its disk unmounted
/// or wiped): the volume reports it without its id, the master takes its
/// blobs for lost, and readers go to the other replicas — none is sent
/// there for a `404` — until `verify --repair` has put them back.
#[tokio::test]
async fn a_data_dir_gone_under_a_running_volume_gets_no_readers() {
    let mut c = Cluster::start_default().await;
    let keys: Vec<String> = (0..30).map(|i| format!("/gone/{i}")).collect();
    for k in &keys {
        assert_eq!(c.put(k, k.clone()).await, 201);
    }
    std::fs::remove_dir_all(c.volume_dir(0)).unwrap();
    wait_for("the master to take volume 0's blobs for lost", || async {
        c.status().await["volumes"][0]["lost_data_at"].is_u64()
    })
    .await;
    // Each key read three times: the master rotates between replicas.
    for k in &keys {
        for _ in 0..3 {
            assert_eq!(c.get(k).await, (200, k.clone().into()), "{k}");
        }
    }
    // With its other replica down too, a key's 503 says why of each.
    let lost = c.volumes[0].addr.clone();
    let mut both = None;
    for k in &keys {
        let replicas = c.recorded_on(k).await;
        if replicas.contains(&lost) {
            let other = replicas.into_iter().find(|a| *a != lost).unwrap();
            both = Some((k.clone(), c.volume_index(&other)));
            break;
        }
    }
    let (key, other) = both.expect("a key with a copy on the emptied volume");
    c.volumes[other].kill();
    wait_for("the master to see the other replica down", || async {
        c.status().await["volumes"][other]["healthy"] == false
    })
    .await;
    let head = c.head(&key).await;
    assert_eq!(head.status(), 503);
    let reason = trove_tests::header(head.headers(), "trove-error")
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.contains(&format!("{lost}: lost its data")) && reason.contains(": down"),
        "{reason}"
    );
    // A repair cannot put the copies back while the disk is gone, and
    // says what to do rather than passing on an I/O error.
    let (code, out) = c.admin(&["verify", "--repair"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("has lost its files") && out.contains("restart the volume once the disk is back"),
        "{out}"
    );
}
