//! Keys with a TTL: the write headers and `--default-ttl`, reads that turn
//! into `404` at the expiry time, the expirer deleting the bytes from every
//! volume, and expiry times that survive a master restart.

use futures::StreamExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use trove_client::{Expiry, GetOptions, PutOptions};
use trove_tests::{pattern, wait_for, Cluster, ClusterOptions};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn ttl(d: Duration) -> PutOptions {
    PutOptions {
        expires: Some(Expiry::After(d)),
        ..Default::default()
    }
}

/// A default cluster whose master runs with `master_args`.
async fn cluster(master_args: &[&str]) -> Cluster {
    Cluster::start(ClusterOptions {
        master_args: master_args.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    })
    .await
}

async fn gone_everywhere(c: &Cluster, key: &str) -> bool {
    c.copies_of(key).await == 0 && (0..c.volumes.len()).all(|i| !c.blob_path(i, key).exists())
}

#[tokio::test]
async fn ttl_headers_default_ttl_and_the_cli() {
    let c = cluster(&["--default-ttl", "1h"]).await;
    let client = c.client();
    let before = now_ms();
    client
        .put_bytes("/ttl/default", "d".into(), &PutOptions::default())
        .await
        .unwrap();
    let expires = client.stat("/ttl/default").await.unwrap().expires.unwrap();
    assert!(
        (before + 3_600_000..=now_ms() + 3_600_000).contains(&expires),
        "--default-ttl applies"
    );
    let never = PutOptions {
        expires: Some(Expiry::Never),
        ..Default::default()
    };
    client.put_bytes("/ttl/never", "n".into(), &never).await.unwrap();
    assert_eq!(client.stat("/ttl/never").await.unwrap().expires, None);
    let at = SystemTime::now() + Duration::from_secs(7200);
    let opts = PutOptions {
        expires: Some(Expiry::At(at)),
        ..Default::default()
    };
    client.put_bytes("/ttl/at", "a".into(), &opts).await.unwrap();
    let at_ms = at.duration_since(UNIX_EPOCH).unwrap().as_secs() * 1000;
    assert_eq!(client.stat("/ttl/at").await.unwrap().expires, Some(at_ms));
    assert_eq!(
        c.head("/ttl/at").await.headers()["key-expires"],
        at_ms.to_string().as_str()
    );

    // The CLI: --ttl, and `stat` shows the expiry.
    let file = c.dir.path().join("v");
    std::fs::write(&file, b"value").unwrap();
    let before = now_ms();
    assert_eq!(
        c.trove(&["put", file.to_str().unwrap(), "/ttl/cli", "--ttl", "2h"])
            .await
            .code,
        0
    );
    let expires = client.stat("/ttl/cli").await.unwrap().expires.unwrap();
    assert!((before + 7_200_000..=now_ms() + 7_200_000).contains(&expires));
    let stat = c.trove(&["stat", "/ttl/cli"]).await;
    assert!(
        !stat.stdout.contains("expires   never") && stat.stdout.contains("expires   20"),
        "{}",
        stat.stdout
    );
    let bad = c
        .trove(&["put", file.to_str().unwrap(), "/ttl/bad", "--ttl", "soon"])
        .await;
    assert_eq!(bad.code, 2, "a bad --ttl is a usage error");

    // Bad headers: 400 with the reason, nothing stored.
    for (name, value) in [
        ("trove-expires-after", "soon"),
        ("trove-expires-after", "0"),
        ("trove-expires-at", "1000000000"),
    ] {
        let resp = c
            .http
            .put(c.url("/ttl/refused"))
            .header(name, value)
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{name}: {value}");
        assert!(resp.text().await.unwrap().contains(name));
    }
    assert_eq!(c.head("/ttl/refused").await.status(), 404);
}

/// A body that sends half of `value`, waits `pause`, then the rest: an
/// upload slower than a short TTL.
fn slow_body(value: &'static [u8], pause: Duration) -> reqwest::Body {
    let (first, rest) = value.split_at(value.len() / 2);
    let pieces =
        futures::stream::iter([(first, Duration::ZERO), (rest, pause)]).then(|(piece, wait)| async move {
            tokio::time::sleep(wait).await;
            Ok::<_, std::io::Error>(piece.to_vec())
        });
    reqwest::Body::wrap_stream(pieces)
}

/// A TTL counts from the commit, so an upload slower than its TTL is
/// still readable when answered `201`; a `Trove-Expires-At` that passes
/// while the value is on its way fails the write, and nothing is stored.
#[tokio::test]
async fn a_ttl_counts_from_the_commit_not_from_the_upload() {
    let c = cluster(&[]).await;
    let pause = Duration::from_millis(2500);
    let put = c
        .http
        .put(c.url("/ttl/slow"))
        .header("trove-expires-after", "2")
        .body(slow_body(b"a slow upload", pause))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let committed = now_ms();
    let head = c.head("/ttl/slow").await;
    assert_eq!(head.status(), 302, "readable once stored");
    let expires: u64 = head.headers()["key-expires"].to_str().unwrap().parse().unwrap();
    assert!(
        (committed - 1_000..=committed + 2_000).contains(&(expires - 2_000)),
        "2 s from the commit ({committed}), not from the request: {expires}"
    );

    let soon = (now_ms() / 1000 + 2).to_string();
    let put = c
        .http
        .put(c.url("/ttl/late"))
        .header("trove-expires-at", &soon)
        .body(slow_body(
            b"arrives after its expiry",
            Duration::from_millis(3500),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 400);
    assert!(put
        .text()
        .await
        .unwrap()
        .contains("passed while the value was being written"));
    assert_eq!(c.head("/ttl/late").await.status(), 404);
    assert_eq!(c.copies_of("/ttl/late").await, 0, "nothing stored");
}

#[tokio::test]
async fn expired_keys_read_as_absent_and_are_collected_even_across_a_restart() {
    // The reader below pauses for longer than the harness's usual 5 s
    // stall timeout, after which a volume drops a client that reads nothing.
    let mut c = Cluster::start(ClusterOptions {
        master_args: vec!["--expiry-interval".into(), "100ms".into()],
        volume_args: vec!["--stall-timeout".into(), "60s".into()],
        ..Default::default()
    })
    .await;
    let client = c.client();

    // A key that expires while it is being read.
    let (stream, digest) = pattern(16 << 20, 3);
    let w = client
        .put_stream(
            "/ttl/reading",
            stream,
            Some(16 << 20),
            &ttl(Duration::from_secs(8)),
        )
        .await
        .unwrap();
    assert_eq!(Some(w.sha256), digest.lock().unwrap().clone());
    let kept = client
        .put_bytes("/ttl/kept", "stays".into(), &PutOptions::default())
        .await
        .unwrap();
    let mut reader = client.get("/ttl/reading", &GetOptions::default()).await.unwrap();
    let expires = reader.stat().expires.expect("Key-Expires on the redirect");
    let mut read = reader.next().await.unwrap().unwrap().len();
    wait_for("the key to read as absent", || async {
        c.head("/ttl/reading").await.status() == 404
    })
    .await;
    assert!(now_ms() >= expires, "absent only from its expiry time");
    let e = client
        .get("/ttl/reading", &GetOptions::default())
        .await
        .err()
        .unwrap();
    assert!(e.is_not_found(), "{e}");
    wait_for("the expirer to delete its bytes from every volume", || {
        gone_everywhere(&c, "/ttl/reading")
    })
    .await;
    // The read that started before the expiry still gets every byte: the
    // volume serves it from the memory map it opened (a reader that stalls
    // beyond the volume's --stall-timeout is cut off, and cannot resume).
    while let Some(chunk) = reader.next().await {
        read += chunk.unwrap().len();
    }
    assert_eq!(read, 16 << 20);
    assert!(reader.report().verified);
    assert_eq!(
        client.stat("/ttl/kept").await.unwrap().sha256,
        kept.sha256,
        "a key without TTL stays"
    );

    // A key whose expiry passes while the master is down: the restarted
    // master still knows it (the expiry index is in RocksDB) and collects it.
    client
        .put_bytes("/ttl/restart", "r".into(), &ttl(Duration::from_secs(2)))
        .await
        .unwrap();
    let expires = client.stat("/ttl/restart").await.unwrap().expires.unwrap();
    c.master.kill();
    wait_for("the expiry time to pass", || async { now_ms() > expires }).await;
    assert_eq!(
        c.copies_of("/ttl/restart").await,
        2,
        "nothing deleted it while the master was down"
    );
    c.master.restart();
    c.wait_until_ready().await;
    assert_eq!(c.head("/ttl/restart").await.status(), 404);
    wait_for("the restarted master to collect it", || {
        gone_everywhere(&c, "/ttl/restart")
    })
    .await;
    // The record goes after the replicas: wait for the expirer to finish.
    wait_for("the expirer to count it", || async {
        c.status().await["expired"].as_u64() >= Some(1)
    })
    .await;
    let status = c.status().await;
    assert_eq!(status["keys"]["live"], 1, "only /ttl/kept is left: {status}");
    let metrics = c.text("/-/metrics").await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("trove_expired_keys_total "))
        .expect("the expiry counter");
    assert!(
        line.split(' ').nth(1).unwrap().parse::<u64>().unwrap() >= 1,
        "{line}"
    );
    assert_eq!(client.stat("/ttl/kept").await.unwrap().size, 5);
}

#[tokio::test]
async fn an_expired_key_is_unlisted_and_may_be_written_again_before_it_is_collected() {
    // The expirer's first pass happens at start-up; the next not within
    // this test: the key stays in the index, expired.
    let c = cluster(&["--expiry-interval", "1h"]).await;
    let client = c.client();
    client
        .put_bytes("/ttl/again", "old".into(), &ttl(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(c.trove(&["ls", "/ttl/"]).await.stdout, "/ttl/again\n");
    wait_for("the key to expire", || async {
        c.head("/ttl/again").await.status() == 404
    })
    .await;
    assert_eq!(c.copies_of("/ttl/again").await, 2, "not collected yet");
    assert_eq!(
        c.trove(&["ls", "/ttl/"]).await.stdout,
        "",
        "an expired key is not listed"
    );
    assert_eq!(c.trove(&["unlink", "/ttl/again"]).await.code, 3, "nor unlinked");
    let delete = c.http.delete(c.url("/ttl/again")).send().await.unwrap();
    assert_eq!(delete.status(), 404, "nor deleted: it is absent already");
    assert_eq!(c.copies_of("/ttl/again").await, 2, "the expirer's to collect");
    // Written again, it is an ordinary key.
    let w = client
        .put_bytes("/ttl/again", "new".into(), &PutOptions::default())
        .await
        .unwrap();
    let stat = client.stat("/ttl/again").await.unwrap();
    assert_eq!((stat.sha256, stat.expires), (w.sha256, None));
    let (status, body) = c.get("/ttl/again").await;
    assert_eq!((status, &body[..]), (200, &b"new"[..]));
    assert_eq!(c.status().await["keys"]["live"], 1);
}
