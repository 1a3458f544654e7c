//! Compose (`PUT /key` with `Trove-Compose: 1`) against real masters and
//! volumes: values built on the volumes out of ranges of other values —
//! read back with a plain redirect, sources on other volumes than the
//! result (and failing over between their replicas), sources missing or
//! changed, a replace over a live key, a volume dying mid-compose, and the
//! volume's memory while it composes 256 MiB.

use base64::Engine;
use futures::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use trove_tests::{
    key_volumes, md5_hex, pattern, pattern_bytes, sha256_hex, wait_for, Cluster, ClusterOptions,
};

const MIB: usize = 1 << 20;

async fn cluster(volumes: usize, replicas: usize, fsync: bool) -> Cluster {
    let flags: Vec<String> = if fsync { vec![] } else { vec!["--no-fsync".into()] };
    Cluster::start(ClusterOptions {
        volumes,
        replicas,
        master_args: flags.clone(),
        volume_args: flags,
    })
    .await
}

/// A key with `stem` whose home shares no volume with `avoid`.
fn key_away_from(c: &Cluster, replicas: usize, stem: &str, avoid: &HashSet<String>) -> String {
    (0..1000)
        .map(|i| format!("{stem}{i}"))
        .find(|k| c.home(replicas, k).is_disjoint(avoid))
        .expect("a key placed elsewhere")
}

/// `PUT key` with `Trove-Compose: 1`, the JSON `body` and extra headers.
async fn compose(c: &Cluster, key: &str, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = c
        .http
        .put(c.url(key))
        .header("Trove-Compose", "1")
        .body(body.to_string());
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn composes_ranges_of_values_on_other_volumes() {
    let c = cluster(4, 2, true).await;
    let target = "/c/result";
    let target_home = c.home(2, target);
    // Two parts live only on the volumes the result does not use.
    let far1 = key_away_from(&c, 2, "/c/far-a-", &target_home);
    let far2 = key_away_from(&c, 2, "/c/far-b-", &target_home);
    let parts: Vec<(String, Vec<u8>)> = vec![
        (far1.clone(), pattern_bytes(3 * MIB + 5, 1)),
        ("/c/near".into(), pattern_bytes(MIB + 1, 2)),
        (far2.clone(), pattern_bytes(100, 3)),
        ("/c/sp ace+%".into(), pattern_bytes(2 * MIB, 4)),
    ];
    for (k, v) in &parts {
        assert_eq!(
            c.put(&trove_common::key::encode_path(k), v.clone()).await,
            201,
            "{k}"
        );
    }
    let body = json!({"sources": [
        {"key": far1},
        {"key": "/c/near", "range": [10, MIB]},
        {"key": far2, "range": [0, 50], "md5": md5_hex(&parts[2].1)},
        {"key": "/c/sp ace+%", "range": [7, 7]},
        {"key": "/c/sp ace+%", "range": [MIB, 2 * MIB], "etag": format!("\"{}\"", md5_hex(&parts[3].1))},
    ]});
    let mut expected = parts[0].1.clone();
    expected.extend_from_slice(&parts[1].1[10..MIB]);
    expected.extend_from_slice(&parts[2].1[..50]);
    expected.extend_from_slice(&parts[3].1[MIB..]);

    let md5 = md5::Md5::digest(&expected);
    let content_md5 = base64::engine::general_purpose::STANDARD.encode(md5);
    let sha = sha256_hex(&expected);
    let r = compose(
        &c,
        target,
        &body,
        &[("Content-MD5", &content_md5), ("Key-Sha256", &sha)],
    )
    .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    assert_eq!(r.headers()["key-sha256"], sha.as_str());
    assert_eq!(r.headers()["etag"], format!("\"{}\"", hex::encode(md5)).as_str());

    // A plain redirect serves it, from the volumes placement chose.
    let head = c.head(target).await;
    assert_eq!(head.status(), 302);
    assert_eq!(head.headers()["key-size"], expected.len().to_string().as_str());
    assert_eq!(head.headers()["content-md5"], hex::encode(md5).as_str());
    assert_eq!(
        key_volumes(head.headers()).into_iter().collect::<HashSet<_>>(),
        target_home
    );
    let far: HashSet<String> = c.volumes_of(&far1).await.into_iter().collect();
    assert!(far.is_disjoint(&target_home));
    let (status, bytes) = c.get(target).await;
    assert_eq!(status, 200);
    assert_eq!(sha256_hex(&bytes), sha);
    // Each replica's copy is confirmed, with its md5, under its write.
    for addr in &target_home {
        let blobs = c.blobs(c.volume_index(addr)).await;
        let blob = blobs.iter().find(|b| b["key"] == target).expect("a copy");
        assert_eq!(blob["state"], "live");
        assert_eq!(blob["md5"], hex::encode(md5));
        assert_eq!(blob["sha256"], sha.as_str());
    }
    // Verify (deep) finds every copy sound: it is a value like any other.
    let (code, report) = c.admin(&["verify", "--deep"]).await;
    assert_eq!(code, 0, "{report}");

    // A source's first replica stops answering (frozen: the master still
    // counts it healthy, so the plan lists it first): the composing volume
    // waits out its stall timeout and reads the value from the other one.
    let first = head_volumes_in_order(&c, &far1).await[0].clone();
    let frozen = c.volume_index(&first);
    c.volumes[frozen].signal("STOP");
    let second = key_away_from(&c, 2, "/c/again-", &c.home(2, &far1));
    let r = compose(&c, &second, &json!({"sources": [{"key": far1}]}), &[]).await;
    c.volumes[frozen].signal("CONT");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let (status, bytes) = c.get(&second).await;
    assert_eq!((status, sha256_hex(&bytes)), (200, sha256_hex(&parts[0].1)));
}

/// The volumes of `key` in the record's order (`Key-Volumes`).
async fn head_volumes_in_order(c: &Cluster, key: &str) -> Vec<String> {
    let head = c.head(key).await;
    head.headers()["key-volumes"]
        .to_str()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect()
}

/// Sends `sig` (`-STOP`, `-CONT`) to process `pid`.
#[tokio::test]
async fn missing_changed_and_malformed_sources_store_nothing() {
    let c = cluster(3, 2, false).await;
    let value = pattern_bytes(1000, 9);
    assert_eq!(c.put("/m/part", value.clone()).await, 201);

    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"sources": [{"key": "/m/part"}, {"key": "/m/missing"}]}),
            404,
            "/m/missing",
        ),
        (
            json!({"sources": [{"key": "/m/part", "md5": "0".repeat(32)}]}),
            412,
            "/m/part",
        ),
        (
            json!({"sources": [{"key": "/m/part", "etag": "\"abc-2\""}]}),
            412,
            "/m/part",
        ),
        (
            json!({"sources": [{"key": "/m/part", "range": [0, 1001]}]}),
            400,
            "/m/part",
        ),
        (
            json!({"sources": [{"key": "/m/part", "range": [5, 4]}]}),
            400,
            "/m/part",
        ),
        (
            json!({"sources": [{"key": "/m/part", "range": [5]}]}),
            400,
            "range",
        ),
        (json!({"sources": []}), 400, "at least one"),
        (json!({"sources": [{"key": "relative"}]}), 400, "source 0"),
        (json!({"parts": [{"key": "/m/part"}]}), 400, "sources"),
        (
            json!({"sources": vec![json!({"key": "/m/part"}); 10_001]}),
            400,
            "at most 10000",
        ),
    ];
    for (body, status, says) in cases {
        let r = compose(&c, "/m/out", &body, &[]).await;
        assert_eq!(r.status(), status, "{body}");
        let text = r.text().await.unwrap();
        assert!(text.contains(says), "{status} for {body} says {text:?}");
    }
    let r = c
        .http
        .put(c.url("/m/out"))
        .header("Trove-Compose", "1")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .http
        .put(c.url("/m/out"))
        .header("Trove-Compose", "2")
        .body(json!({"sources": [{"key": "/m/part"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "Trove-Compose must be 1 or 0");
    // A wrong Content-MD5 of the result: nothing stored.
    let r = compose(
        &c,
        "/m/out",
        &json!({"sources": [{"key": "/m/part"}]}),
        &[("Content-MD5", "AAAAAAAAAAAAAAAAAAAAAA==")],
    )
    .await;
    assert_eq!(r.status(), 400);
    // An empty result needs Trove-Allow-Empty, as an empty PUT does.
    let empty = json!({"sources": [{"key": "/m/part", "range": [3, 3]}]});
    assert_eq!(compose(&c, "/m/out", &empty, &[]).await.status(), 411);

    assert_eq!(c.head("/m/out").await.status(), 404);
    wait_for("no copy of /m/out on any volume", || async {
        c.copies_of("/m/out").await == 0
    })
    .await;
    for i in 0..c.volumes.len() {
        assert_eq!(c.temp_files(i), 0);
    }

    let r = compose(&c, "/m/empty", &empty, &[("Trove-Allow-Empty", "1")]).await;
    assert_eq!(r.status(), 201);
    let (status, bytes) = c.get("/m/empty").await;
    assert_eq!((status, bytes.len()), (200, 0));
}

#[tokio::test]
async fn compose_replaces_a_live_key_only_when_asked() {
    let c = cluster(3, 2, false).await;
    let old = pattern_bytes(2 * MIB, 5);
    let tail = pattern_bytes(MIB, 6);
    assert_eq!(c.put("/r/k", old.clone()).await, 201);
    assert_eq!(c.put("/r/tail", tail.clone()).await, 201);
    // The key composed from itself and another value (CopyObject onto
    // itself, an append): write-once without Trove-Replace.
    let body = json!({"sources": [{"key": "/r/k"}, {"key": "/r/tail"}]});
    assert_eq!(compose(&c, "/r/k", &body, &[]).await.status(), 403);
    let r = compose(
        &c,
        "/r/k",
        &body,
        &[("Trove-Replace", "1"), ("Content-Type", "text/plain")],
    )
    .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let mut expected = old.clone();
    expected.extend_from_slice(&tail);
    let (status, bytes) = c.get("/r/k").await;
    assert_eq!((status, sha256_hex(&bytes)), (200, sha256_hex(&expected)));
    assert_eq!(c.head("/r/k").await.headers()["content-type"], "text/plain");
    // The volumes keep the same metadata (what rebuild restores, and what
    // they answer after a redirect).
    let location = c.head("/r/k").await.headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    let direct = c.http.head(location).send().await.unwrap();
    assert_eq!(direct.headers()["content-type"], "text/plain");
    for i in 0..c.volumes.len() {
        for blob in c.blobs(i).await.iter().filter(|b| b["key"] == "/r/k") {
            assert_eq!(blob["meta"], json!({"content-type": "text/plain"}), "{blob}");
        }
    }
    // One copy per replica: the old value's blobs are gone or replaced.
    wait_for("two copies of /r/k", || async { c.copies_of("/r/k").await == 2 }).await;
}

/// A target volume killed while it composes (its source frozen, so the
/// compose is certainly in flight): the write fails, the key stays absent,
/// and the other replica's partial or finished copy is removed.
#[tokio::test]
async fn a_volume_dying_mid_compose_leaves_nothing_visible() {
    let mut c = cluster(4, 2, false).await;
    let target = "/d/result";
    let target_home = c.home(2, target);
    let far = key_away_from(&c, 2, "/d/far-", &target_home);
    let value = pattern_bytes(4 * MIB, 7);
    assert_eq!(c.put(&far, value).await, 201);
    // Freeze the source's volumes: the targets start, then wait for bytes.
    let sources: Vec<usize> = c.home(2, &far).iter().map(|a| c.volume_index(a)).collect();
    for &s in &sources {
        c.volumes[s].signal("STOP");
    }
    let url = c.url(target);
    let http = c.http.clone();
    let body = json!({"sources": [{"key": far}]}).to_string();
    let mut pending = tokio::spawn(async move {
        http.put(url)
            .header("Trove-Compose", "1")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    let targets: Vec<usize> = target_home.iter().map(|a| c.volume_index(a)).collect();
    wait_for("both targets composing", || async {
        targets.iter().all(|&t| c.temp_files(t) > 0) || pending.is_finished()
    })
    .await;
    assert!(
        !pending.is_finished(),
        "the compose ended (answering {}) before both targets were composing",
        (&mut pending).await.unwrap()
    );
    c.volumes[targets[0]].kill();
    for &s in &sources {
        c.volumes[s].signal("CONT");
    }
    let status = pending.await.unwrap();
    assert!((500..600).contains(&status), "compose answered {status}");
    assert_eq!(c.head(target).await.status(), 404);
    let survivor = targets[1];
    wait_for(
        "no copy of the failed compose on the surviving target",
        || async { c.blobs(survivor).await.iter().all(|b| b["key"] != target) },
    )
    .await;
    assert_eq!(c.temp_files(survivor), 0);
    // The killed volume comes back with nothing of it either.
    c.volumes[targets[0]].restart();
    c.wait_until_ready().await;
    assert!(c.blobs(targets[0]).await.iter().all(|b| b["key"] != target));
    assert_eq!(c.temp_files(targets[0]), 0);
    let list = c.json("/d/?list").await;
    assert_eq!(list["keys"], json!([far]));
}

/// A part whose local copy has rotted (a byte flipped in its second
/// block): the composing volume notices at that block's CRC32C, reads the
/// rest from the other replica, and marks its copy damaged and reports it;
/// the result is still exactly right, and the master repairs the copy.
#[tokio::test]
async fn a_rotten_local_part_is_read_from_its_replica() {
    let c = cluster(3, 2, false).await;
    let target = "/rot/result";
    let target_home = c.home(2, target);
    let part = (0..1000)
        .map(|i| format!("/rot/part-{i}"))
        .find(|k| c.home(2, k) == target_home)
        .expect("a key placed with the target");
    let value = pattern_bytes(3 * MIB, 21);
    assert_eq!(c.put(&part, value.clone()).await, 201);
    let rotten = c.volume_index(target_home.iter().next().unwrap());
    trove_tests::flip_byte(&c.blob_path(rotten, &part), (MIB + 10) as u64);

    let r = compose(&c, target, &json!({"sources": [{"key": part}]}), &[]).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let (status, bytes) = c.get(target).await;
    assert_eq!((status, sha256_hex(&bytes)), (200, sha256_hex(&value)));
    // Both replicas of the result hold the right bytes.
    for addr in &target_home {
        let blobs = c.blobs(c.volume_index(addr)).await;
        let copy = blobs.iter().find(|b| b["key"] == target).expect("a copy");
        assert_eq!(copy["sha256"], sha256_hex(&value).as_str());
    }
    // The volume marked its copy damaged and reported it; the master
    // re-copies it from the part's other replica.
    let path = c.blob_path(rotten, &part);
    wait_for("the rotten part's copy repaired", || async {
        std::fs::read(&path).is_ok_and(|b| b == value)
    })
    .await;
    assert!(
        c.master.log().contains("was repaired from a good replica"),
        "the repair came from the volume's report"
    );
}

/// A source replaced while the compose is in flight (the compose held up
/// by a frozen volume holding its first part): the volumes find the second
/// part's pinned value gone and the compose fails, rather than mixing the
/// new value in; nothing becomes visible.
#[tokio::test]
async fn a_source_replaced_mid_compose_is_never_mixed_in() {
    let c = cluster(4, 2, false).await;
    let target = "/x/result";
    let target_home = c.home(2, target);
    let far = key_away_from(&c, 2, "/x/far-", &target_home);
    // The second part lives on the targets themselves.
    let near = (0..1000)
        .map(|i| format!("/x/near-{i}"))
        .find(|k| c.home(2, k) == target_home)
        .expect("a key placed with the target");
    assert_eq!(c.put(&far, pattern_bytes(MIB, 11)).await, 201);
    assert_eq!(c.put(&near, pattern_bytes(MIB, 12)).await, 201);
    let sources: Vec<usize> = c.home(2, &far).iter().map(|a| c.volume_index(a)).collect();
    for &s in &sources {
        c.volumes[s].signal("STOP");
    }
    let (url, http) = (c.url(target), c.http.clone());
    let body = json!({"sources": [{"key": far}, {"key": near}]}).to_string();
    let pending = tokio::spawn(async move {
        let r = http
            .put(url)
            .header("Trove-Compose", "1")
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    let targets: Vec<usize> = target_home.iter().map(|a| c.volume_index(a)).collect();
    wait_for("both targets composing", || async {
        targets.iter().all(|&t| c.temp_files(t) > 0)
    })
    .await;
    let replaced = c
        .http
        .put(c.url(&near))
        .header("Trove-Replace", "1")
        .body(pattern_bytes(MIB, 13))
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), 201);
    for &s in &sources {
        c.volumes[s].signal("CONT");
    }
    let (status, text) = pending.await.unwrap();
    assert!((500..600).contains(&status), "compose answered {status}: {text}");
    assert!(text.contains(&near), "{text}");
    assert_eq!(c.head(target).await.status(), 404);
    wait_for("no copy of the failed compose", || async {
        c.copies_of(target).await == 0
    })
    .await;
}

/// 256 MiB composed out of 32 parts of 8 MiB, half of them on the other
/// volume: the composing volume's peak memory (VmHWM) grows by far less
/// than the value. A memory check, not a timing.
#[tokio::test]
async fn composing_256_mib_keeps_the_volume_memory_flat() {
    let c = cluster(2, 1, false).await;
    const PARTS: u64 = 32;
    const PART: u64 = 8 << 20;
    let mut whole = Sha256::new();
    let mut sources = vec![];
    for i in 0..PARTS {
        let key = format!("/big/part{i:02}");
        let (stream, _) = pattern(PART, 100 + i);
        let resp = c
            .http
            .put(c.url(&key))
            .header("content-length", PART)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        // The same bytes again, for the expected digest.
        let (mut again, _) = pattern(PART, 100 + i);
        while let Some(chunk) = again.next().await {
            whole.update(chunk.unwrap());
        }
        sources.push(json!({"key": key}));
    }
    let target = "/big/whole";
    let t = c.volume_index(c.home(1, target).iter().next().unwrap());
    let before = c.volumes[t].peak_rss();
    let r = compose(&c, target, &json!({"sources": sources}), &[]).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    assert_eq!(r.headers()["key-sha256"], hex::encode(whole.finalize()).as_str());
    let after = c.volumes[t].peak_rss();
    let head = c.head(target).await;
    assert_eq!(head.headers()["key-size"], (PARTS * PART).to_string().as_str());
    eprintln!(
        "composing volume VmHWM: {} MiB before, {} MiB after",
        before >> 20,
        after >> 20
    );
    assert!(
        after < before + (48 << 20),
        "VmHWM grew from {before} to {after} bytes composing {} MiB",
        (PARTS * PART) >> 20
    );
}

/// With `Trove-Keep-Parts: 1` the record keeps each source's length as a
/// part: a read says how many (`Key-Parts`) and, asked `Trove-Part: N`,
/// where part N is; a plain compose (or PUT) keeps none.
#[tokio::test]
async fn kept_parts_are_answered_on_reads() {
    let c = cluster(3, 2, false).await;
    for (k, size) in [("/kp/a", 300), ("/kp/b", 500), ("/kp/c", 7)] {
        assert_eq!(c.put(k, pattern_bytes(size, size as u64)).await, 201);
    }
    let sources =
        json!({"sources": [{"key": "/kp/a"}, {"key": "/kp/b", "range": [100, 500]}, {"key": "/kp/c"}]});
    assert_eq!(
        compose(&c, "/kp/kept", &sources, &[("Trove-Keep-Parts", "1")])
            .await
            .status(),
        201
    );
    assert_eq!(compose(&c, "/kp/plain", &sources, &[]).await.status(), 201);
    let head = |key: &'static str, part: Option<&'static str>| {
        let c = &c;
        async move {
            let mut req = c.http.head(c.url(key));
            if let Some(n) = part {
                req = req.header("Trove-Part", n);
            }
            req.send().await.unwrap()
        }
    };
    let header =
        |r: &reqwest::Response, name: &str| r.headers().get(name).map(|v| v.to_str().unwrap().to_string());
    let described = |r: &reqwest::Response| {
        (
            header(r, "key-parts"),
            header(r, "key-part-offset"),
            header(r, "key-part-size"),
        )
    };
    let some = |s: &str| Some(s.to_string());
    let kept = head("/kp/kept", None).await;
    assert_eq!(
        (kept.status().as_u16(), header(&kept, "key-size")),
        (302, some("707"))
    );
    assert_eq!(described(&kept), (some("3"), None, None));
    assert_eq!(
        described(&head("/kp/kept", Some("1")).await),
        (some("3"), some("0"), some("300"))
    );
    assert_eq!(
        described(&head("/kp/kept", Some("2")).await),
        (some("3"), some("300"), some("400"))
    );
    assert_eq!(
        described(&head("/kp/kept", Some("3")).await),
        (some("3"), some("700"), some("7"))
    );
    assert_eq!(
        described(&head("/kp/kept", Some("4")).await),
        (some("3"), None, None)
    );
    assert_eq!(described(&head("/kp/plain", Some("1")).await), (None, None, None));
    assert_eq!(described(&head("/kp/a", Some("1")).await), (None, None, None));
    for bad in ["0", "x", "-1"] {
        assert_eq!(
            head("/kp/kept", Some(bad)).await.status(),
            400,
            "Trove-Part: {bad}"
        );
    }
    // A replace by a plain compose keeps no parts.
    let replace = [("Trove-Replace", "1")];
    assert_eq!(compose(&c, "/kp/kept", &sources, &replace).await.status(), 201);
    assert_eq!(described(&head("/kp/kept", Some("1")).await), (None, None, None));
}
