//! Single objects as the S3 gateway needs them (issue 9): replacing a live
//! value atomically for readers (`Trove-Replace`), conditional writes
//! (`If-Match`, `If-None-Match`), empty values (`Trove-Allow-Empty`), and
//! metadata stored with the value — through failures, rebuild, rebalance,
//! repair and kill -9.

use base64::Engine;
use bytes::Bytes;
use futures::SinkExt;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use trove_tests::{header, md5_hex, pattern_bytes, sha256_hex, wait_for, Cluster, ClusterOptions};

const REPLACED: &str =
    "this volume no longer holds that write of the key (replaced, deleted or lost); ask the master again";

/// A client that follows redirects, as `curl -L` does.
fn follower() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// PUT `body` at `key` with `headers`; the answer.
async fn put_with(
    c: &Cluster,
    key: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut req = c.http.put(c.url(key)).body(body);
    for (n, v) in headers {
        // From bytes: metadata values may be UTF-8.
        req = req.header(
            *n,
            reqwest::header::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
        );
    }
    req.send().await.unwrap()
}

/// The master's `HEAD` answer headers for `key` (a 302 expected).
async fn head_302(c: &Cluster, key: &str) -> reqwest::header::HeaderMap {
    let r = c.head(key).await;
    assert_eq!(r.status(), 302, "HEAD {key}");
    r.headers().clone()
}

/// What a reader gets for `key`: master, then the pinned volume URL; a
/// "replaced" answer sends it back to the master, as the contract says
/// clients do. Returns the bytes and the volume's Content-Type.
async fn read(c: &Cluster, key: &str) -> (Bytes, Option<String>) {
    for _ in 0..20 {
        let r = c.http.get(c.url(key)).send().await.unwrap();
        assert_eq!(r.status(), 302, "GET {key}");
        let location = r.headers()["location"].to_str().unwrap().to_string();
        let v = c.http.get(&location).send().await.unwrap();
        if v.status() == 404 {
            assert_eq!(v.text().await.unwrap().trim(), REPLACED);
            continue;
        }
        assert_eq!(v.status(), 200, "{location}");
        let ct = v
            .headers()
            .get("content-type")
            .map(|h| h.to_str().unwrap().to_string());
        return (v.bytes().await.unwrap(), ct);
    }
    panic!("{key}: replaced 20 times in a row");
}

/// Every volume's metadata of `key` (read from the files), and whether a
/// value is kept aside (`.prev`) anywhere.
fn sidecars(c: &Cluster, key: &str) -> (Vec<serde_json::Value>, bool) {
    let mut metas = vec![];
    let mut aside = false;
    for i in 0..c.volumes.len() {
        let data = c.blob_path(i, key).into_os_string();
        metas.extend(c.blob_meta(i, key));
        let mut prev = data;
        prev.push(".prev");
        aside |= std::path::Path::new(&prev).exists();
    }
    (metas, aside)
}

/// The sha256 of every blob file of `key` on the volumes.
fn on_disk(c: &Cluster, key: &str) -> Vec<String> {
    (0..c.volumes.len())
        .filter_map(|i| std::fs::read(c.blob_path(i, key)).ok())
        .map(|b| sha256_hex(&b))
        .collect()
}

/// The headers a reader of the master sees that describe the value.
fn described(h: &reqwest::header::HeaderMap) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = h
        .iter()
        .filter(|(n, _)| {
            let n = n.as_str();
            n.starts_with("x-amz-meta-")
                || n.starts_with("content-")
                || [
                    "cache-control",
                    "expires",
                    "etag",
                    "last-modified",
                    "key-write",
                    "key-sha256",
                ]
                .contains(&n)
        })
        .filter(|(n, _)| n.as_str() != "content-length")
        .map(|(n, v)| (n.to_string(), String::from_utf8(v.as_bytes().to_vec()).unwrap()))
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn replace_needs_the_header_and_brings_new_bytes_and_metadata() {
    let c = Cluster::start_default().await;
    let (v1, v2) = (pattern_bytes(200_000, 1), pattern_bytes(150_000, 2));
    let r = put_with(
        &c,
        "/o/a",
        &[
            ("content-type", "text/plain"),
            ("cache-control", "max-age=60"),
            ("x-amz-meta-Colour", "blue"),
        ],
        v1.clone(),
    )
    .await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        header(r.headers(), "etag"),
        Some(format!("\"{}\"", md5_hex(&v1)).as_str())
    );
    let h = head_302(&c, "/o/a").await;
    assert_eq!(header(&h, "content-type"), Some("text/plain"));
    assert_eq!(header(&h, "cache-control"), Some("max-age=60"));
    assert_eq!(header(&h, "x-amz-meta-colour"), Some("blue"));
    assert_eq!(header(&h, "etag"), Some(format!("\"{}\"", md5_hex(&v1)).as_str()));
    let write1 = header(&h, "key-write").unwrap().to_string();
    assert_eq!(header(r.headers(), "key-write"), Some(write1.as_str()));
    let location = header(&h, "location").unwrap();
    assert!(location.contains(&format!("write={write1}")), "{location}");
    let created: u64 = header(&h, "key-created").unwrap().parse().unwrap();
    let modified = httpdate::parse_http_date(header(&h, "last-modified").unwrap()).unwrap();
    assert_eq!(
        modified,
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(created / 1000)
    );

    // Write-once without the header.
    let r = put_with(&c, "/o/a", &[], v2.clone()).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        put_with(&c, "/o/a", &[("trove-replace", "yes")], v2.clone())
            .await
            .status(),
        400
    );
    assert_eq!(read(&c, "/o/a").await.0, v1);

    // With it: the new bytes, and only the new metadata.
    let r = put_with(
        &c,
        "/o/a",
        &[
            ("trove-replace", "1"),
            ("content-type", "application/json"),
            ("x-amz-meta-shape", "round"),
            ("trove-etag", "0123abcd-2"),
        ],
        v2.clone(),
    )
    .await;
    assert_eq!(r.status(), 201);
    assert_eq!(header(r.headers(), "etag"), Some("\"0123abcd-2\""));
    let h = head_302(&c, "/o/a").await;
    assert_eq!(header(&h, "key-sha256"), Some(sha256_hex(&v2).as_str()));
    assert_eq!(header(&h, "content-md5"), Some(md5_hex(&v2).as_str()));
    assert_eq!(header(&h, "content-type"), Some("application/json"));
    assert_eq!(header(&h, "x-amz-meta-shape"), Some("round"));
    assert_eq!(header(&h, "etag"), Some("\"0123abcd-2\""));
    assert!(h.get("x-amz-meta-colour").is_none() && h.get("cache-control").is_none());
    assert_ne!(header(&h, "key-write"), Some(write1.as_str()));
    // Followed like curl -L: the volume answers the bytes with the metadata.
    let v = follower().get(c.url("/o/a")).send().await.unwrap();
    assert_eq!(v.status(), 200);
    assert_eq!(header(v.headers(), "content-type"), Some("application/json"));
    assert_eq!(header(v.headers(), "x-amz-meta-shape"), Some("round"));
    assert_eq!(header(v.headers(), "etag"), Some("\"0123abcd-2\""));
    assert_eq!(v.bytes().await.unwrap(), v2);
    let (metas, aside) = sidecars(&c, "/o/a");
    assert_eq!(metas.len(), 2);
    assert!(
        !aside,
        "the replaced value is dropped once the new one is confirmed"
    );
    for m in &metas {
        assert_eq!(m["meta"]["content-type"], "application/json");
        assert_eq!(m["sha256"], sha256_hex(&v2).as_str());
    }
    // The plain volume answer without metadata keeps its default type.
    assert_eq!(c.put("/o/plain", "x").await, 201);
    let v = follower().get(c.url("/o/plain")).send().await.unwrap();
    assert_eq!(
        header(v.headers(), "content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(
        header(v.headers(), "etag"),
        Some(format!("\"{}\"", md5_hex(b"x")).as_str())
    );

    // Metadata over 8 KiB: 400, saying so; nothing changes.
    let big = "m".repeat(8200);
    let r = put_with(
        &c,
        "/o/a",
        &[("trove-replace", "1"), ("x-amz-meta-big", &big)],
        "v3",
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("at most 8192"));
    let r = put_with(&c, "/o/new", &[("x-amz-meta-big", &big)], "v3").await;
    assert_eq!(r.status(), 400);
    assert_eq!(c.head("/o/new").await.status(), 404);
    assert_eq!(
        header(&head_302(&c, "/o/a").await, "key-sha256"),
        Some(sha256_hex(&v2).as_str())
    );
    // Replace is no way around DELETE for an absent key: it just writes.
    let r = put_with(&c, "/o/fresh", &[("trove-replace", "1")], "fresh").await;
    assert_eq!(r.status(), 201);
}

/// The body of a PUT the test sends piece by piece.
fn held_body() -> (
    futures::channel::mpsc::Sender<Result<Bytes, std::io::Error>>,
    reqwest::Body,
) {
    let (tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(0);
    (tx, reqwest::Body::wrap_stream(rx))
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_writes_are_checked_against_the_current_value() {
    let c = Cluster::start_default().await;
    let (v1, v2) = (pattern_bytes(10_000, 1), pattern_bytes(12_000, 2));
    let (etag1, etag2) = (format!("\"{}\"", md5_hex(&v1)), format!("\"{}\"", md5_hex(&v2)));
    let replace = ("trove-replace", "1");
    let reason = |r: reqwest::Response| async move { (r.status().as_u16(), r.text().await.unwrap()) };

    // If-Match on a key with no value.
    let (status, why) = reason(put_with(&c, "/c/a", &[("if-match", "*"), replace], v1.clone()).await).await;
    assert_eq!(status, 412);
    assert!(why.contains("no value at this key"), "{why}");
    assert_eq!(c.head("/c/a").await.status(), 404, "nothing stored");
    // Create only.
    let created = put_with(&c, "/c/a", &[("if-none-match", "*")], v1.clone()).await;
    assert_eq!(created.status(), 201);
    let (status, why) =
        reason(put_with(&c, "/c/a", &[("if-none-match", "*"), replace], v2.clone()).await).await;
    assert_eq!(status, 412);
    assert!(why.contains("If-None-Match: *"), "{why}");
    // Replace only a known value.
    let stale = "\"0123456789abcdef0123456789abcdef\"";
    let (status, why) = reason(put_with(&c, "/c/a", &[("if-match", stale), replace], v2.clone()).await).await;
    assert_eq!(status, 412);
    assert!(why.contains("If-Match"), "{why}");
    assert_eq!(read(&c, "/c/a").await.0, v1, "refused writes leave the value");
    // The ETag matches, but a replace still needs Trove-Replace, which the
    // refusal names.
    let (status, why) = reason(put_with(&c, "/c/a", &[("if-match", &etag1)], v2.clone()).await).await;
    assert_eq!(status, 403);
    assert!(
        why.contains("add Trove-Replace: 1 to this conditional write"),
        "{why}"
    );
    let list = format!("{stale}, {etag1}");
    assert_eq!(
        put_with(&c, "/c/a", &[("if-match", &list), replace], v2.clone())
            .await
            .status(),
        201
    );
    assert_eq!(read(&c, "/c/a").await.0, v2);
    // If-None-Match with tags: write unless the value is one of them.
    assert_eq!(
        put_with(&c, "/c/a", &[("if-none-match", &etag2), replace], v1.clone())
            .await
            .status(),
        412
    );
    assert_eq!(
        put_with(&c, "/c/a", &[("if-none-match", &etag1), replace], v1.clone())
            .await
            .status(),
        201
    );
    assert_eq!(read(&c, "/c/a").await.0, v1);
    // Malformed: a reason, nothing stored.
    let (status, why) = reason(put_with(&c, "/c/b", &[("if-match", "abc")], v1.clone()).await).await;
    assert_eq!(status, 400);
    assert!(why.contains("quoted entity tags"), "{why}");
    assert_eq!(c.head("/c/b").await.status(), 404);

    // Racing create-only writes: the check is made under the key's lock,
    // so exactly one is stored; the others are refused (412), or find the
    // key busy (409) and, sent again, are refused.
    for round in 0..3u64 {
        let key = format!("/c/race-{round}");
        let racers = (0..8u64).map(|n| {
            let (c, key) = (&c, key.clone());
            async move {
                let body = pattern_bytes(50_000, 100 * round + n);
                // The winner's write (synced on three volumes) can take a
                // while on a busy machine: retry for up to a minute.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while std::time::Instant::now() < deadline {
                    let status = put_with(c, &key, &[("if-none-match", "*")], body.clone())
                        .await
                        .status();
                    if status != 409 {
                        return (status.as_u16(), body);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                panic!("{key} stayed busy for a minute");
            }
        });
        let outcomes = futures::future::join_all(racers).await;
        let winners: Vec<&Vec<u8>> = outcomes
            .iter()
            .filter(|(s, _)| *s == 201)
            .map(|(_, b)| b)
            .collect();
        let statuses: Vec<u16> = outcomes.iter().map(|(s, _)| *s).collect();
        assert_eq!(winners.len(), 1, "{key}: {statuses:?}");
        assert!(statuses.iter().all(|s| [201, 412].contains(s)), "{statuses:?}");
        assert_eq!(&read(&c, &key).await.0.to_vec(), winners[0]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn readers_see_the_old_value_until_the_replace_commits() {
    let c = Arc::new(Cluster::start_default().await);
    let (v1, v2) = (pattern_bytes(300_000, 3), pattern_bytes(400_000, 4));
    let r = put_with(
        &c,
        "/held/k",
        &[("content-type", "text/old"), ("x-amz-meta-v", "1")],
        v1.clone(),
    )
    .await;
    assert_eq!(r.status(), 201);
    let before = described(&head_302(&c, "/held/k").await);

    // A replace whose body stops half-way, until the test sends the rest.
    let (mut tx, body) = held_body();
    let writer = {
        let c = Arc::clone(&c);
        tokio::spawn(async move {
            put_with(
                &c,
                "/held/k",
                &[
                    ("trove-replace", "1"),
                    ("content-type", "text/new"),
                    ("x-amz-meta-v", "2"),
                    ("content-length", "400000"),
                ],
                body,
            )
            .await
            .status()
        })
    };
    tx.send(Ok(Bytes::copy_from_slice(&v2[..200_000]))).await.unwrap();
    // Wait until the first half reached the volumes' temp files.
    wait_for("the new bytes on the volumes", || async {
        (0..c.volumes.len()).map(|i| c.temp_files(i)).sum::<usize>() == 2
    })
    .await;
    // A key being replaced is still a live key in the counts.
    let keys = &c.status().await["keys"];
    assert_eq!(
        (&keys["live"], &keys["writing"]),
        (&1.into(), &0.into()),
        "{keys}"
    );

    // The master and the volumes answer the old value, whole.
    let during = head_302(&c, "/held/k").await;
    assert_eq!(described(&during), before);
    let old_location = header(&during, "location").unwrap().to_string();
    let (bytes, ct) = read(&c, "/held/k").await;
    assert_eq!(
        (sha256_hex(&bytes), ct.as_deref()),
        (sha256_hex(&v1), Some("text/old"))
    );
    let v = follower().get(c.url("/held/k")).send().await.unwrap();
    assert_eq!(header(v.headers(), "x-amz-meta-v"), Some("1"));
    assert_eq!(v.bytes().await.unwrap(), v1);
    // Another writer, a DELETE or an UNLINK meanwhile: the key is busy.
    assert_eq!(
        put_with(&c, "/held/k", &[("trove-replace", "1")], "x")
            .await
            .status(),
        409
    );
    assert_eq!(
        c.http.delete(c.url("/held/k")).send().await.unwrap().status(),
        409
    );
    let unlink = reqwest::Method::from_bytes(b"UNLINK").unwrap();
    assert_eq!(
        c.http
            .request(unlink, c.url("/held/k"))
            .send()
            .await
            .unwrap()
            .status(),
        409
    );

    // The rest of the body: the new value, everywhere, at once.
    tx.send(Ok(Bytes::copy_from_slice(&v2[200_000..]))).await.unwrap();
    drop(tx);
    assert_eq!(writer.await.unwrap(), 201);
    let after = head_302(&c, "/held/k").await;
    assert_eq!(header(&after, "key-sha256"), Some(sha256_hex(&v2).as_str()));
    assert_eq!(header(&after, "content-type"), Some("text/new"));
    let (bytes, ct) = read(&c, "/held/k").await;
    assert_eq!(
        (sha256_hex(&bytes), ct.as_deref()),
        (sha256_hex(&v2), Some("text/new"))
    );
    // A reader redirected before the commit, arriving after it: told to
    // ask again, never given the new bytes under the old headers.
    let late = c.http.get(&old_location).send().await.unwrap();
    assert_eq!(late.status(), 404);
    assert_eq!(late.text().await.unwrap().trim(), REPLACED);
    // Without a pin, a volume serves what it holds (as before pins).
    let unpinned = old_location.split('?').next().unwrap();
    let v = c.http.get(unpinned).send().await.unwrap();
    assert_eq!(v.bytes().await.unwrap(), v2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_replace_leaves_the_old_value_exactly_as_it_was() {
    let c = Cluster::start_default().await;
    let v1 = pattern_bytes(300_000, 5);
    let r = put_with(
        &c,
        "/fail/k",
        &[
            ("content-type", "image/png"),
            ("x-amz-meta-owner", "ana"),
            ("trove-etag", "e-1"),
        ],
        v1.clone(),
    )
    .await;
    assert_eq!(r.status(), 201);
    let before = described(&head_302(&c, "/fail/k").await);
    let (sidecars_before, _) = sidecars(&c, "/fail/k");
    let unchanged = || async {
        let now = described(&head_302(&c, "/fail/k").await);
        let (metas, aside) = sidecars(&c, "/fail/k");
        now == before
            && metas == sidecars_before
            && !aside
            && on_disk(&c, "/fail/k") == vec![sha256_hex(&v1); 2]
    };

    // A wrong Content-MD5: 400, and the old value stays readable.
    let wrong = base64::engine::general_purpose::STANDARD.encode([0u8; 16]);
    let r = put_with(
        &c,
        "/fail/k",
        &[
            ("trove-replace", "1"),
            ("content-md5", &wrong),
            ("content-type", "text/bad"),
        ],
        pattern_bytes(200_000, 6),
    )
    .await;
    assert_eq!(r.status(), 400);
    wait_for("the old value restored", || async {
        let (bytes, ct) = read(&c, "/fail/k").await;
        assert_eq!(
            (sha256_hex(&bytes), ct.as_deref()),
            (sha256_hex(&v1), Some("image/png"))
        );
        unchanged().await
    })
    .await;

    // A client that sends part of its body and hangs up.
    let mut sock = tokio::net::TcpStream::connect(&c.master.addr).await.unwrap();
    sock.write_all(
        b"PUT /fail/k HTTP/1.1\r\nHost: t\r\nTrove-Replace: 1\r\nContent-Type: text/bad\r\nContent-Length: 5000000\r\n\r\n",
    )
    .await
    .unwrap();
    sock.write_all(&pattern_bytes(1_000_000, 7)).await.unwrap();
    // Under way: the key is locked by it (another writer is told `409`).
    wait_for("the replace to start", || async {
        put_with(&c, "/fail/k", &[], "x").await.status() == 409
    })
    .await;
    let counted = |keys: &serde_json::Value| (keys["live"].clone(), keys["writing"].clone());
    let live_only = (serde_json::json!(1), serde_json::json!(0));
    assert_eq!(
        counted(&c.status().await["keys"]),
        live_only,
        "counted as live while replaced"
    );
    let (bytes, ct) = read(&c, "/fail/k").await;
    assert_eq!(
        (sha256_hex(&bytes), ct.as_deref()),
        (sha256_hex(&v1), Some("image/png"))
    );
    drop(sock);
    wait_for("the old value restored", || async {
        let (bytes, _) = read(&c, "/fail/k").await;
        assert_eq!(sha256_hex(&bytes), sha256_hex(&v1), "readable throughout");
        unchanged().await
    })
    .await;
    wait_for("no temp file left", || async {
        (0..c.volumes.len()).all(|i| c.temp_files(i) == 0)
    })
    .await;
    assert_eq!(
        counted(&c.status().await["keys"]),
        live_only,
        "counts as they were"
    );
    // And the key is a live key again: write-once, replaceable.
    wait_for("the key's lock released", || async {
        put_with(&c, "/fail/k", &[], "x").await.status() == 403
    })
    .await;
}

/// A chunked replace followed by a `Key-Crc32c` trailer (what
/// trove-client sends for a stream it cannot read twice, the S3 gateway's
/// uploads among them) is checked before it commits: a wrong, malformed
/// or missing trailer, or a body longer or shorter than its
/// `Trove-Length`, stores nothing and leaves the old value as it was.
#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_replace_is_checked_against_its_trailer_before_it_commits() {
    use trove_tests::raw;
    let c = Cluster::start_default().await;
    let v1 = pattern_bytes(300_000, 5);
    assert_eq!(put_with(&c, "/trailer/k", &[], v1.clone()).await.status(), 201);
    let v2 = pattern_bytes(200_000, 6);
    let right = {
        let mut h = trove_common::digest::ContentHasher::crc32c_only();
        h.update(&v2);
        h.finish().crc32c_hex()
    };
    let wrong = format!("{:08x}", u32::from_str_radix(&right, 16).unwrap() ^ 1);
    // Announced by `Trailer: Key-Crc32c` unless `headers` says otherwise.
    let chunked = |headers: &str, trailer: &str| -> Vec<u8> {
        let announce = if headers.contains("Trailer:") {
            ""
        } else {
            "Trailer: Key-Crc32c\r\n"
        };
        let mut req = format!(
            "PUT /trailer/k HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTrove-Replace: 1\r\n\
             Transfer-Encoding: chunked\r\n{announce}{headers}\r\n"
        )
        .into_bytes();
        for part in v2.chunks(64 << 10) {
            req.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            req.extend_from_slice(part);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(format!("0\r\n{trailer}\r\n").as_bytes());
        req
    };
    let length = |n: usize| format!("Trove-Length: {n}\r\n");
    let crc = |v: &str| format!("Key-Crc32c: {v}\r\n");
    let refused = [
        (String::new(), crc(&wrong), "Key-Crc32c mismatch"),
        (String::new(), crc("not-hex!"), "not 8 hex digits"),
        (String::new(), String::new(), "ended without one"),
        (length(v2.len() + 1), crc(&right), "Trove-Length"),
        (length(v2.len() - 1), crc(&right), "Trove-Length"),
        (
            format!("Key-Crc32c: {right}\r\n"),
            crc(&right),
            "sent as a header and announced as a trailer",
        ),
        (String::new(), crc(&right) + &crc(&right), "more than once"),
        // Not announced, and wrong: checked all the same.
        ("Trailer: None\r\n".into(), crc(&wrong), "Key-Crc32c mismatch"),
    ];
    for (headers, trailer, reason) in refused {
        let answer = raw::exchange(&c.master.addr, &chunked(&headers, &trailer), false);
        assert_eq!(raw::status(&answer), 400, "{headers}{trailer}: {answer}");
        assert!(answer.contains(reason), "{reason}: {answer}");
        assert_eq!(
            read(&c, "/trailer/k").await.0,
            v1,
            "the old value, after: {reason}"
        );
    }
    wait_for("no temp file left", || async {
        (0..c.volumes.len()).all(|i| c.temp_files(i) == 0)
    })
    .await;

    // Right: stored, and the 201 says the same CRC32C.
    let answer = raw::exchange(&c.master.addr, &chunked(&length(v2.len()), &crc(&right)), false);
    assert_eq!(raw::status(&answer), 201, "{answer}");
    assert_eq!(raw::header(&answer, "key-crc32c"), Some(right.clone()));
    assert_eq!(read(&c, "/trailer/k").await.0, v2);
    // Without Trove-Length too (a stream of unknown length).
    let answer = raw::exchange(&c.master.addr, &chunked("", &crc(&right)), false);
    assert_eq!(raw::status(&answer), 201, "{answer}");
    // Refused before any body is read: Trove-Length beside Content-Length,
    // and a trailer announced on a body with a length (it cannot come).
    for (header, reason) in [
        ("Trove-Length: 2", "not both"),
        ("Trailer: Key-Crc32c", "can only follow a chunked body"),
    ] {
        let request = format!(
            "PUT /trailer/k HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTrove-Replace: 1\r\n\
             Content-Length: 2\r\n{header}\r\n\r\nab"
        );
        let answer = raw::exchange(&c.master.addr, request.as_bytes(), false);
        assert_eq!(raw::status(&answer), 400, "{answer}");
        assert!(answer.contains(reason), "{answer}");
    }
    // A compose's body is its plan: no trailer of the value can follow it.
    let r = put_with(
        &c,
        "/trailer/composed",
        &[("trove-compose", "1"), ("trailer", "Key-Crc32c")],
        r#"{"sources":[{"key":"/trailer/k"}]}"#,
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not a trailer"));
    assert_eq!(read(&c, "/trailer/k").await.0, v2);
}

/// Readers racing repeated replaces always get one whole written value.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_readers_always_get_a_whole_version() {
    let c = Arc::new(Cluster::start_default().await);
    let values: Vec<Vec<u8>> = (0..6)
        .map(|i| pattern_bytes(120_000 + i * 7_000, 100 + i as u64))
        .collect();
    let known: HashSet<String> = values.iter().map(|v| sha256_hex(v)).collect();
    assert_eq!(c.put("/race/k", values[0].clone()).await, 201);
    let done = Arc::new(AtomicBool::new(false));
    let (reads, retries) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let readers: Vec<_> = (0..6)
        .map(|_| {
            let (c, done, known) = (Arc::clone(&c), Arc::clone(&done), known.clone());
            let (reads, retries) = (Arc::clone(&reads), Arc::clone(&retries));
            tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    let r = c.http.get(c.url("/race/k")).send().await.unwrap();
                    assert_eq!(r.status(), 302, "never a gap");
                    let sha = r.headers()["key-sha256"].to_str().unwrap().to_string();
                    let location = r.headers()["location"].to_str().unwrap().to_string();
                    let v = c.http.get(&location).send().await.unwrap();
                    if v.status() == 404 {
                        assert_eq!(v.text().await.unwrap().trim(), REPLACED);
                        retries.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    assert_eq!(v.status(), 200);
                    let got = sha256_hex(&v.bytes().await.unwrap());
                    assert!(known.contains(&got), "a value never written");
                    assert_eq!(got, sha, "the bytes of the value the master named");
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for round in 0..3 {
        for v in &values[1..] {
            let r = put_with(&c, "/race/k", &[("trove-replace", "1")], v.clone()).await;
            assert_eq!(r.status(), 201, "round {round}");
        }
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    eprintln!(
        "{} whole reads, {} asked the master again",
        reads.load(Ordering::Relaxed),
        retries.load(Ordering::Relaxed)
    );
    assert!(reads.load(Ordering::Relaxed) > 0);
    assert_eq!(read(&c, "/race/k").await.0, values[5]);
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_values_need_the_header_and_are_kept_like_any_other() {
    let mut c = Cluster::start_default().await;
    // Without the header: 411, announced or chunked.
    assert_eq!(put_with(&c, "/e/a", &[], "").await.status(), 411);
    let chunked = reqwest::Body::wrap_stream(futures::stream::empty::<Result<Bytes, std::io::Error>>());
    assert_eq!(put_with(&c, "/e/a", &[], chunked).await.status(), 411);
    assert_eq!(c.head("/e/a").await.status(), 404);
    // Refused before anything was locked or stored: the key takes a
    // write at once (no clean-up holds it), and a chunked body that is not
    // empty keeps its first bytes.
    let parts = ["", "he", "llo"].map(|p| Ok::<_, std::io::Error>(Bytes::from(p)));
    let chunked = reqwest::Body::wrap_stream(futures::stream::iter(parts));
    assert_eq!(put_with(&c, "/e/a", &[], chunked).await.status(), 201);
    assert_eq!(read(&c, "/e/a").await.0, "hello");

    let allow = [
        ("trove-allow-empty", "1"),
        ("content-type", "application/x-directory"),
    ];
    let r = put_with(&c, "/e/dir/", &allow, "").await;
    assert_eq!(r.status(), 201);
    let empty_md5 = md5_hex(b"");
    assert_eq!(
        header(r.headers(), "etag"),
        Some(format!("\"{empty_md5}\"").as_str())
    );
    let chunked = reqwest::Body::wrap_stream(futures::stream::empty::<Result<Bytes, std::io::Error>>());
    assert_eq!(put_with(&c, "/e/chunked", &allow, chunked).await.status(), 201);
    for key in ["/e/dir/", "/e/chunked"] {
        let h = head_302(&c, key).await;
        assert_eq!(header(&h, "key-size"), Some("0"));
        assert_eq!(header(&h, "content-md5"), Some(empty_md5.as_str()));
        assert_eq!(header(&h, "key-sha256"), Some(sha256_hex(b"").as_str()));
        let v = follower().get(c.url(key)).send().await.unwrap();
        assert_eq!(v.status(), 200);
        assert_eq!(header(v.headers(), "content-length"), Some("0"));
        assert_eq!(
            header(v.headers(), "content-type"),
            Some("application/x-directory")
        );
        assert!(v.bytes().await.unwrap().is_empty());
        assert_eq!(
            on_disk(&c, key),
            vec![sha256_hex(b""); 2],
            "{key}: a zero-length blob"
        );
    }
    // Replacing with and by an empty value.
    assert_eq!(
        put_with(&c, "/e/dir/", &[("trove-replace", "1")], "full")
            .await
            .status(),
        201
    );
    assert_eq!(read(&c, "/e/dir/").await.0, "full");
    let r = put_with(
        &c,
        "/e/dir/",
        &[("trove-replace", "1"), ("trove-allow-empty", "1")],
        "",
    )
    .await;
    assert_eq!(r.status(), 201);
    assert!(read(&c, "/e/dir/").await.0.is_empty());

    // verify --deep checks them; a lost copy is repaired; rebuild keeps them.
    let (code, out) = c.admin(&["verify", "--deep"]).await;
    assert_eq!(code, 0, "{out}");
    let lost = c.volume_index(
        header(&head_302(&c, "/e/chunked").await, "key-volumes")
            .unwrap()
            .split(',')
            .next()
            .unwrap(),
    );
    c.remove_blob(lost, "/e/chunked");
    let (code, out) = c.admin(&["verify", "--repair"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(on_disk(&c, "/e/chunked"), vec![sha256_hex(b""); 2]);
    let (metas, _) = sidecars(&c, "/e/chunked");
    assert!(
        metas
            .iter()
            .all(|m| m["meta"]["content-type"] == "application/x-directory"),
        "{metas:?}"
    );
    c.serve_rebuilt_index().await;
    for key in ["/e/dir/", "/e/chunked"] {
        let h = head_302(&c, key).await;
        assert_eq!(header(&h, "key-size"), Some("0"), "{key}");
        assert!(read(&c, key).await.0.is_empty());
    }
    assert_eq!(
        header(&head_302(&c, "/e/chunked").await, "content-type"),
        Some("application/x-directory")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_survives_rebuild_rebalance_and_repair() {
    let mut c = Cluster::start(ClusterOptions {
        volumes: 3,
        replicas: 2,
        ..Default::default()
    })
    .await;
    let keys: Vec<String> = (0..12).map(|i| format!("/meta/{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        let ct = format!("text/x-{i}");
        let r = put_with(
            &c,
            key,
            &[
                ("content-type", &ct),
                ("content-disposition", "attachment; filename=\"a b.txt\""),
                ("content-encoding", "identity"),
                ("content-language", "fr"),
                ("expires", "Thu, 01 Dec 2094 16:00:00 GMT"),
                ("x-amz-meta-index", &i.to_string()),
                ("x-amz-meta-note", "héllo wörld"),
            ],
            pattern_bytes(50_000, i as u64),
        )
        .await;
        assert_eq!(r.status(), 201);
    }
    // A replaced one too: its old metadata must not come back.
    let r = put_with(
        &c,
        &keys[0],
        &[("trove-replace", "1"), ("content-type", "text/replaced")],
        "new",
    )
    .await;
    assert_eq!(r.status(), 201);
    let mut before = vec![];
    for key in &keys {
        before.push(described(&head_302(&c, key).await));
    }
    assert!(before[0].contains(&("content-type".into(), "text/replaced".into())));
    assert!(!before[0].iter().any(|(n, _)| n == "x-amz-meta-index"));
    assert!(
        before[3].contains(&("x-amz-meta-note".into(), "héllo wörld".into())),
        "{:?}",
        before[3]
    );

    // Rebuild into a fresh index: the same metadata, write ids, ETags.
    c.serve_rebuilt_index().await;
    for (key, expected) in keys.iter().zip(&before) {
        let mut now = described(&head_302(&c, key).await);
        let mut expected = expected.clone();
        // The record's creation time becomes the earliest copy's.
        now.retain(|(n, _)| n != "last-modified");
        expected.retain(|(n, _)| n != "last-modified");
        assert_eq!(&now, &expected, "{key} after rebuild");
    }

    // Rebalance onto a fourth volume: pulled copies carry the metadata
    // and the write id (pinned reads find them).
    let added = c.add_volume();
    c.restart_master_with_volumes(&[0, 1, 2, added]).await;
    let (code, out) = c.admin(&["rebalance"]).await;
    assert_eq!(code, 0, "{out}");
    let pulled = c.blobs(added).await;
    assert!(!pulled.is_empty(), "placement moved no key to the new volume");
    for b in &pulled {
        let key = b["key"].as_str().unwrap();
        let i = keys.iter().position(|k| k == key).unwrap();
        let h = head_302(&c, key).await;
        assert_eq!(b["write"].as_str(), header(&h, "key-write"), "{key}");
        assert_eq!(
            b["meta"]["content-type"].as_str(),
            header(&h, "content-type"),
            "{key}"
        );
        if i > 0 {
            assert_eq!(b["meta"]["x-amz-meta-index"], i.to_string().as_str());
        }
    }
    for (key, expected) in keys.iter().zip(&before) {
        let h = head_302(&c, key).await;
        assert_eq!(
            header(&h, "content-type"),
            expected
                .iter()
                .find(|(n, _)| n == "content-type")
                .map(|(_, v)| v.as_str())
        );
        // Every replica serves the pinned write, with the metadata.
        for addr in header(&h, "key-volumes").unwrap().split(',') {
            let url = format!("http://{addr}{key}?write={}", header(&h, "key-write").unwrap());
            let v = c.http.get(&url).send().await.unwrap();
            assert_eq!(v.status(), 200, "{url}");
            assert_eq!(
                header(v.headers(), "content-type"),
                header(&h, "content-type"),
                "{url}"
            );
            assert_eq!(header(v.headers(), "etag"), header(&h, "etag"), "{url}");
        }
    }
}

/// What the crash test compares of a key: its sha256, Content-Type and
/// one user metadata entry, as the master's redirect answers them.
fn state_of(h: &reqwest::header::HeaderMap) -> (String, String, String) {
    (
        header(h, "key-sha256").unwrap().to_string(),
        header(h, "content-type").unwrap().to_string(),
        header(h, "x-amz-meta-n").unwrap().to_string(),
    )
}

/// Rebuilds a fresh index from the volumes, serves it, checks that `key`
/// reads there as it does in the live index, then switches back.
async fn rebuild_agrees(c: &mut Cluster, key: &str, point: &str) {
    let expected = state_of(&head_302(c, key).await);
    c.serve_rebuilt_index().await;
    assert_eq!(state_of(&head_302(c, key).await), expected, "{point}: rebuild");
    c.serve_real_index().await;
}

/// kill -9 of the master at every step of a replace, and of the volumes
/// where they store and confirm: readers see the old value until the
/// commit; after a restart the key is the old value (bytes and metadata;
/// `gc` undoes the dead write) or — once the index committed — the new
/// one; and a rebuild from the volumes alone agrees.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_a_replace() {
    let mut c = Cluster::start_default().await;
    let (v1, v2) = (pattern_bytes(200_000, 30), pattern_bytes(150_000, 31));
    let (sha1, sha2) = (sha256_hex(&v1), sha256_hex(&v2));
    let old_meta = [("content-type", "text/one"), ("x-amz-meta-n", "1")];
    let new_meta = [
        ("trove-replace", "1"),
        ("content-type", "text/two"),
        ("x-amz-meta-n", "2"),
    ];
    let old = (sha1.clone(), "text/one".to_string(), "1".to_string());
    let new = (sha2.clone(), "text/two".to_string(), "2".to_string());

    let master_points = [
        ("write-recorded", false),
        ("write-stored", false),
        ("write-committed", true),
        ("write-confirmed", true),
    ];
    for (point, committed) in master_points {
        let key = format!("/crash/{point}");
        assert_eq!(put_with(&c, &key, &old_meta, v1.clone()).await.status(), 201);
        c.master.set_env("TROVE_CRASH_AT", Some(point));
        c.master.restart();
        c.wait_until_ready().await;
        let mut req = c.http.put(c.url(&key)).body(v2.clone());
        for (n, v) in new_meta {
            req = req.header(n, v);
        }
        assert!(req.send().await.is_err(), "{point}: the master answered");
        c.master.wait_exit();
        c.master.set_env("TROVE_CRASH_AT", None);
        c.master.restart();
        c.wait_until_ready().await;
        let h = head_302(&c, &key).await;
        let (bytes, ct) = read(&c, &key).await;
        if committed {
            assert_eq!(state_of(&h), new, "{point}");
            assert_eq!(
                (sha256_hex(&bytes), ct.as_deref()),
                (sha2.clone(), Some("text/two"))
            );
            let (code, out) = c.admin(&["verify"]).await;
            assert_eq!(code, 0, "{out}");
            assert_eq!(on_disk(&c, &key), vec![sha2.clone(); 2], "{point}");
        } else {
            // Before gc, the dead write's key still reads as the old value.
            assert_eq!(state_of(&h), old, "{point}");
            assert_eq!(
                (sha256_hex(&bytes), ct.as_deref()),
                (sha1.clone(), Some("text/one"))
            );
            assert_eq!(
                put_with(&c, &key, &[], "x").await.status(),
                403,
                "{point}: still live"
            );
            // A rebuild now (the new copies pending, or not there at all;
            // the old ones kept aside) finds the old value.
            let early = c.dir.path().join(format!("rebuilt-early-{point}"));
            let out = c.rebuild(&early, &[]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            c.master.set_arg("--db", early.to_str().unwrap());
            c.master.restart();
            c.wait_until_ready().await;
            assert_eq!(
                state_of(&head_302(&c, &key).await),
                old,
                "{point}: rebuilt mid-replace"
            );
            c.master
                .set_arg("--db", c.dir.path().join("db").to_str().unwrap());
            c.master.restart();
            c.wait_until_ready().await;
            let (code, out) = c.admin(&["gc", "--grace", "0s"]).await;
            assert_eq!(code, 0, "{out}");
            assert_eq!(state_of(&head_302(&c, &key).await), old, "{point}");
            assert_eq!(on_disk(&c, &key), vec![sha1.clone(); 2], "{point}");
            assert!(!sidecars(&c, &key).1, "{point}: a value left aside");
        }
        rebuild_agrees(&mut c, &key, point).await;
    }

    // Volume crash points: stored (before answering) and confirmed
    // (before the value kept aside is dropped).
    for (point, acked) in [("volume-stored", false), ("volume-marked", true)] {
        let key = format!("/crash/{point}");
        assert_eq!(put_with(&c, &key, &old_meta, v1.clone()).await.status(), 201);
        for v in &mut c.volumes {
            v.set_env("TROVE_CRASH_AT", Some(point));
            v.restart();
        }
        c.wait_until_ready().await;
        let mut req = c.http.put(c.url(&key)).body(v2.clone());
        for (n, v) in new_meta {
            req = req.header(n, v);
        }
        let status = req.send().await.map(|r| r.status().as_u16());
        for v in &mut c.volumes {
            v.set_env("TROVE_CRASH_AT", None);
            v.restart();
        }
        c.wait_until_ready().await;
        let (code, out) = c.admin(&["gc", "--grace", "0s"]).await;
        assert_eq!(code, 0, "{out}");
        if acked {
            assert_eq!(status.ok(), Some(201), "{point}");
            assert_eq!(state_of(&head_302(&c, &key).await), new, "{point}");
            let (code, out) = c.admin(&["verify"]).await;
            assert_eq!(code, 0, "{out}");
            assert_eq!(on_disk(&c, &key), vec![sha2.clone(); 2], "{point}");
        } else {
            assert!(
                status.is_err() || status.as_ref().is_ok_and(|s| *s >= 500),
                "{point}: {status:?}"
            );
            wait_for("the old value restored", || async {
                state_of(&head_302(&c, &key).await) == old && on_disk(&c, &key) == vec![sha1.clone(); 2]
            })
            .await;
        }
        let (bytes, _) = read(&c, &key).await;
        assert_eq!(sha256_hex(&bytes), state_of(&head_302(&c, &key).await).0);
        rebuild_agrees(&mut c, &key, point).await;
    }
}

/// A replica dies in the middle of a replace: the write fails, the old
/// value stays readable from the surviving replica throughout, and once
/// the volume is back the clean-up restores the key exactly.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_failing_mid_replace_leaves_the_old_value() {
    let mut c = Cluster::start_default().await;
    let v1 = pattern_bytes(300_000, 40);
    let r = put_with(
        &c,
        "/die/k",
        &[("content-type", "text/old"), ("x-amz-meta-a", "1")],
        v1.clone(),
    )
    .await;
    assert_eq!(r.status(), 201);
    let h = head_302(&c, "/die/k").await;
    let before = described(&h);
    let (sidecars_before, _) = sidecars(&c, "/die/k");
    let replicas: Vec<usize> = header(&h, "key-volumes")
        .unwrap()
        .split(',')
        .map(|a| c.volume_index(a))
        .collect();

    let (mut tx, body) = held_body();
    let writer = {
        let req = c
            .http
            .put(c.url("/die/k"))
            .header("trove-replace", "1")
            .header("content-type", "text/new")
            .header("content-length", "400000")
            .body(body);
        tokio::spawn(async move { req.send().await.map(|r| r.status().as_u16()) })
    };
    tx.send(Ok(Bytes::from(pattern_bytes(100_000, 41))))
        .await
        .unwrap();
    wait_for("the uploads under way", || async {
        replicas.iter().map(|i| c.temp_files(*i)).sum::<usize>() == 2
    })
    .await;
    let dead = replicas[1];
    c.volumes[dead].kill();
    // The client keeps sending; the master gives up on the write.
    let _ = tx.send(Ok(Bytes::from(pattern_bytes(300_000, 42)))).await;
    drop(tx);
    let status = writer.await.unwrap();
    assert!(
        status.is_err() || status.as_ref().is_ok_and(|s| *s >= 500),
        "{status:?}"
    );
    // Readable throughout, from the surviving replica.
    for _ in 0..5 {
        let (bytes, ct) = read(&c, "/die/k").await;
        assert_eq!(
            (sha256_hex(&bytes), ct.as_deref()),
            (sha256_hex(&v1), Some("text/old"))
        );
    }
    assert_eq!(
        put_with(&c, "/die/k", &[], "x").await.status(),
        403,
        "still a live key"
    );
    c.volumes[dead].restart();
    c.wait_until_ready().await;
    wait_for("the key restored", || async {
        let (metas, aside) = sidecars(&c, "/die/k");
        c.status().await["keys"]["writing"] == 0
            && described(&head_302(&c, "/die/k").await) == before
            && metas == sidecars_before
            && !aside
            && on_disk(&c, "/die/k") == vec![sha256_hex(&v1); 2]
    })
    .await;
    assert_eq!(read(&c, "/die/k").await.0, v1);
}

/// With a secret, the pin is part of the signed URL: a reader cannot
/// point a redirect at another write, and replaces work as without one.
#[tokio::test(flavor = "multi_thread")]
async fn the_pin_is_signed() {
    let secret = vec!["--secret".to_string(), "pin-secret".to_string()];
    let c = Cluster::start(ClusterOptions {
        master_args: secret.clone(),
        volume_args: secret,
        ..Default::default()
    })
    .await;
    assert_eq!(
        put_with(&c, "/signed/k", &[("content-type", "text/a")], "first")
            .await
            .status(),
        201
    );
    let first = header(&head_302(&c, "/signed/k").await, "location")
        .unwrap()
        .to_string();
    assert!(first.contains("write=") && first.contains("sig="), "{first}");
    assert_eq!(
        c.http.get(&first).send().await.unwrap().text().await.unwrap(),
        "first"
    );
    let r = put_with(
        &c,
        "/signed/k",
        &[("trove-replace", "1"), ("content-type", "text/b")],
        "second",
    )
    .await;
    assert_eq!(r.status(), 201);
    let second = header(&head_302(&c, "/signed/k").await, "location")
        .unwrap()
        .to_string();
    let (bytes, ct) = read(&c, "/signed/k").await;
    assert_eq!((bytes, ct.as_deref()), (Bytes::from("second"), Some("text/b")));
    // The old signed URL: replaced. Its signature with the new write id: refused.
    let late = c.http.get(&first).send().await.unwrap();
    assert_eq!(
        (late.status().as_u16(), late.text().await.unwrap().trim()),
        (404, REPLACED)
    );
    let write = |url: &str| {
        url.split(['?', '&'])
            .find_map(|p| p.strip_prefix("write="))
            .unwrap()
            .to_string()
    };
    let forged = first.replace(&write(&first), &write(&second));
    assert_eq!(c.http.get(&forged).send().await.unwrap().status(), 403);
}

/// After the master died mid-replace, the key reads as its old value, and
/// UNLINK and DELETE act on that value (undoing the dead write first), as
/// they would on any live key.
#[tokio::test(flavor = "multi_thread")]
async fn unlink_and_delete_after_a_dead_replace() {
    let mut c = Cluster::start_default().await;
    let v1 = pattern_bytes(200_000, 50);
    for key in ["/dead/unlink", "/dead/delete"] {
        assert_eq!(
            put_with(&c, key, &[("content-type", "text/one")], v1.clone())
                .await
                .status(),
            201
        );
        c.master.set_env("TROVE_CRASH_AT", Some("write-stored"));
        c.master.restart();
        c.wait_until_ready().await;
        let sent = put_with_result(&c, key, pattern_bytes(100_000, 51)).await;
        assert!(sent.is_err(), "the master answered");
        c.master.wait_exit();
        c.master.set_env("TROVE_CRASH_AT", None);
        c.master.restart();
        c.wait_until_ready().await;
        assert_eq!(read(&c, key).await.0, v1, "{key}: the old value");
    }
    let unlink = reqwest::Method::from_bytes(b"UNLINK").unwrap();
    let r = c
        .http
        .request(unlink, c.url("/dead/unlink"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(c.head("/dead/unlink").await.status(), 404);
    let listed = c.json("/dead/?unlinked").await;
    assert_eq!(listed["keys"], serde_json::json!(["/dead/unlink"]));
    let (metas, aside) = sidecars(&c, "/dead/unlink");
    assert!(!aside, "the dead write's old copy is back in place");
    assert_eq!(on_disk(&c, "/dead/unlink"), vec![sha256_hex(&v1); 2]);
    assert!(
        metas
            .iter()
            .all(|m| m["state"] == "unlinked" && m["meta"]["content-type"] == "text/one"),
        "{metas:?}"
    );

    let r = c.http.delete(c.url("/dead/delete")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(c.head("/dead/delete").await.status(), 404);
    assert!(on_disk(&c, "/dead/delete").is_empty());
    assert!(!sidecars(&c, "/dead/delete").1);
}

/// A replace PUT whose answer may never come (the master crashes).
async fn put_with_result(c: &Cluster, key: &str, body: Vec<u8>) -> reqwest::Result<reqwest::Response> {
    c.http
        .put(c.url(key))
        .header("trove-replace", "1")
        .header("content-type", "text/two")
        .body(body)
        .send()
        .await
}

/// An UNLINK acknowledged while every replica's volume is down reaches
/// the volumes once they are back (the master sends the mark again), so a
/// rebuild from them keeps the key unlinked: it used to revive it, live.
#[tokio::test(flavor = "multi_thread")]
async fn an_unlink_made_while_the_volumes_are_down_survives_a_rebuild() {
    let mut c = Cluster::start_default().await;
    assert_eq!(c.put("/unl/a", "v1").await, 201);
    assert_eq!(c.put("/unl/b", "kept").await, 201);
    for v in &mut c.volumes {
        v.kill();
    }
    assert_eq!(c.unlink("/unl/a").await, 204);
    for v in &mut c.volumes {
        v.restart();
    }
    wait_for("every copy of the unlinked key to be marked unlinked", || async {
        let mut states = vec![];
        for i in 0..c.volumes.len() {
            for b in c.blobs(i).await {
                if b["key"] == "/unl/a" {
                    states.push(b["state"].clone());
                }
            }
        }
        !states.is_empty() && states.iter().all(|s| s == "unlinked")
    })
    .await;
    c.serve_rebuilt_index().await;
    assert_eq!(c.get("/unl/a").await.0, 404);
    let unlinked: serde_json::Value = c.json("/unl/?unlinked").await;
    assert_eq!(unlinked["keys"], serde_json::json!(["/unl/a"]), "{unlinked}");
    assert_eq!(c.get("/unl/b").await, (200, "kept".into()));
}
