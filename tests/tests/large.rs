//! A 1 GiB value through a 3-replica cluster: written, read back
//! byte-identical, while the master's memory stays small (it streams, it
//! never buffers a value).

use futures::StreamExt;
use sha2::{Digest, Sha256};
use trove_tests::{pattern, Cluster, ClusterOptions};

const GIB: u64 = 1 << 30;
const MASTER_PEAK_RSS_LIMIT: u64 = 64 << 20;

#[tokio::test]
async fn one_gib_round_trip_with_bounded_master_memory() {
    let c = Cluster::start(ClusterOptions {
        replicas: 3,
        ..Default::default()
    })
    .await;
    let (body, sent_sha) = pattern(GIB, 42);
    let started = std::time::Instant::now();
    let r = c
        .http
        .put(c.url("/big/one-gib"))
        .header("content-length", GIB)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let sent_sha = sent_sha.lock().unwrap().clone().expect("the whole body was sent");

    let peak = c.master.peak_rss();
    eprintln!(
        "1 GiB x3 PUT in {:.1?}; master peak RSS {} MiB",
        started.elapsed(),
        peak >> 20
    );
    assert!(
        peak < MASTER_PEAK_RSS_LIMIT,
        "master peak RSS {} MiB during a 1 GiB PUT (limit {} MiB)",
        peak >> 20,
        MASTER_PEAK_RSS_LIMIT >> 20
    );

    let head = c.http.head(c.url("/big/one-gib")).send().await.unwrap();
    assert_eq!(head.headers()["key-sha256"], sent_sha.as_str());
    assert_eq!(head.headers()["key-size"], GIB.to_string().as_str());
    assert_eq!(
        head.headers()["key-volumes"].to_str().unwrap().split(',').count(),
        3
    );

    // Read it back from the replica the master picks, streaming.
    let location = head.headers()["location"].to_str().unwrap().to_string();
    let resp = c.http.get(location).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.content_length(), Some(GIB));
    let mut hasher = Sha256::new();
    let mut got = 0u64;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        got += chunk.len() as u64;
        hasher.update(&chunk);
    }
    assert_eq!(got, GIB);
    assert_eq!(
        hex::encode(hasher.finalize()),
        sent_sha,
        "read back byte-identical"
    );
}
