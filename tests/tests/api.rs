//! Every row of the master's API table (DESIGN.md), against a real cluster:
//! a master and three volumes on 127.0.0.1, two replicas.

use reqwest::Method;
use serde_json::json;
use trove_tests::{
    header, key_volumes, md5_hex, pattern_bytes, sha256_hex, wait_for, Cluster, ClusterOptions,
};

#[tokio::test]
async fn put_get_head_delete() {
    let c = Cluster::start_default().await;
    let value = pattern_bytes(3 << 20, 1);
    assert_eq!(c.put("/photos/a.jpg", value.clone()).await, 201);

    for method in [Method::GET, Method::HEAD] {
        let r = c
            .http
            .request(method.clone(), c.url("/photos/a.jpg"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302, "{method}");
        let h = r.headers();
        assert_eq!(h["content-length"], "0");
        assert_eq!(h["content-md5"], md5_hex(&value).as_str());
        assert_eq!(h["key-sha256"], sha256_hex(&value).as_str());
        assert_eq!(h["key-size"], (3 << 20).to_string().as_str());
        assert_eq!(h["key-balance"], "balanced");
        let vols: Vec<&str> = h["key-volumes"].to_str().unwrap().split(',').collect();
        assert_eq!(vols.len(), 2);
        let location = h["location"].to_str().unwrap();
        assert!(
            vols.iter()
                .any(|v| location.starts_with(&format!("http://{v}/photos/a.jpg?write="))),
            "{location}"
        );
    }

    // The volume answers the redirect with the bytes and their metadata.
    let (status, body) = c.get("/photos/a.jpg").await;
    assert_eq!(status, 200);
    assert_eq!(sha256_hex(&body), sha256_hex(&value));
    let location = c.http.get(c.url("/photos/a.jpg")).send().await.unwrap().headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    let r = c.http.head(&location).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], (3 << 20).to_string().as_str());
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert_eq!(r.headers()["etag"], format!("\"{}\"", md5_hex(&value)).as_str());
    assert!(r.headers().contains_key("last-modified"));

    // POST writes too; keys are write-once.
    assert_eq!(
        c.http
            .post(c.url("/posted"))
            .body("x")
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    assert_eq!(c.put("/photos/a.jpg", "again").await, 403);

    let r = c.http.delete(c.url("/photos/a.jpg")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = c.http.get(c.url("/photos/a.jpg")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-length"], "0");
    assert_eq!(
        c.http
            .delete(c.url("/photos/a.jpg"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.http.get(&location).send().await.unwrap().status(),
        404,
        "gone from the volume"
    );
    // Deleted keys can be written again.
    assert_eq!(c.put("/photos/a.jpg", "new").await, 201);
    assert_eq!(c.get("/photos/a.jpg").await.1, "new");
}

#[tokio::test]
async fn empty_bodies_are_refused() {
    let c = Cluster::start_default().await;
    let r = c
        .http
        .put(c.url("/empty"))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 411);
    assert!(!r.text().await.unwrap().is_empty(), "a reason is given");
    // A chunked body that turns out empty is refused too, and leaves nothing.
    let chunked = reqwest::Body::wrap_stream(futures::stream::iter(
        Vec::<Result<Vec<u8>, std::io::Error>>::new(),
    ));
    assert_eq!(c.put("/empty", chunked).await, 411);
    trove_tests::wait_for("clean-up of the empty write", || async {
        c.put("/empty", "now").await == 201
    })
    .await;
}

#[tokio::test]
async fn chunked_bodies_and_odd_keys() {
    let c = Cluster::start_default().await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..50).map(|i| Ok(vec![i as u8; 100_000])).collect();
    let expected: Vec<u8> = (0..50).flat_map(|i| vec![i as u8; 100_000]).collect();
    assert_eq!(
        c.put(
            "/chunked",
            reqwest::Body::wrap_stream(futures::stream::iter(chunks))
        )
        .await,
        201
    );
    assert_eq!(c.get("/chunked").await.1, expected);

    for key in [
        "/sp%20ace/x",
        "/%C3%BC/%E2%9C%93",
        "/a%3Fb%23c",
        "/a/../b",
        "/nul%00byte",
    ] {
        assert_eq!(c.put(key, key.to_string()).await, 201, "{key}");
        let (status, body) = c.get(key).await;
        assert_eq!((status, body.as_ref()), (200, key.as_bytes()), "{key}");
    }
    let list: serde_json::Value = c.json("/sp%20ace/?list").await;
    assert_eq!(list, json!({"next": "", "keys": ["/sp ace/x"]}));
}

#[tokio::test]
async fn content_md5_is_checked() {
    let c = Cluster::start_default().await;
    // md5("hello") = 5d41402abc4b2a76b9719d911017c592, base64 below.
    let r = c
        .http
        .put(c.url("/good"))
        .header("content-md5", "XUFAKrxLKna5cZ2REBfFkg==")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c
        .http
        .put(c.url("/bad"))
        .header("content-md5", "XUFAKrxLKna5cZ2REBfFkg==")
        .body("hellO")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Content-MD5 mismatch"));
    assert_eq!(c.get("/bad").await.0, 404);
    let r = c
        .http
        .put(c.url("/bad"))
        .header("content-md5", "not base64!")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Nothing of /bad is left on any volume once the clean-up ran.
    trove_tests::wait_for("clean-up of the rejected write", || async {
        c.copies_of("/bad").await == 0
    })
    .await;
    assert!((0..3).all(|i| c.temp_files(i) == 0));
}

#[tokio::test]
async fn concurrent_write_of_one_key_conflicts() {
    let c = Cluster::start_default().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    tx.send(Ok(vec![1; 1000])).await.unwrap();
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let first = {
        let (http, url) = (c.http.clone(), c.url("/busy"));
        tokio::spawn(async move { http.put(url).body(body).send().await.unwrap().status() })
    };
    // Once the first write is in flight, the key is locked.
    trove_tests::wait_for("the first write to start", || async {
        c.status().await["keys"]["writing"] == 1
    })
    .await;
    assert_eq!(c.put("/busy", "second").await, 409);
    assert_eq!(c.delete("/busy").await, 409);
    assert_eq!(
        c.http.get(c.url("/busy")).send().await.unwrap().status(),
        404,
        "not visible while writing"
    );
    tx.send(Ok(vec![2; 1000])).await.unwrap();
    drop(tx);
    assert_eq!(first.await.unwrap(), 201);
    assert_eq!(c.get("/busy").await.1.len(), 2000);
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn unlink_and_listings() {
    let c = Cluster::start_default().await;
    for k in ["/l/a", "/l/b", "/l/c", "/l2/x"] {
        assert_eq!(c.put(k, k).await, 201);
    }
    let list = |q: &str| {
        let url = c.url(q);
        let http = c.http.clone();
        async move {
            let r = http.get(url).send().await.unwrap();
            let status = r.status().as_u16();
            if status == 200 {
                assert_eq!(r.headers()["content-type"], "application/json");
            }
            (status, r.text().await.unwrap())
        }
    };
    assert_eq!(
        list("/l/?list").await,
        (200, r#"{"next":"","keys":["/l/a","/l/b","/l/c"]}"#.into())
    );
    assert_eq!(
        list("/l/?list&limit=2").await,
        (200, r#"{"next":"/l/c","keys":["/l/a","/l/b"]}"#.into())
    );
    assert_eq!(
        list("/l/?list&start=%2Fl%2Fb&limit=1").await,
        (200, r#"{"next":"/l/c","keys":["/l/b"]}"#.into())
    );
    assert_eq!(
        list("/nothing/?list").await,
        (200, r#"{"next":"","keys":[]}"#.into())
    );
    assert_eq!(
        list("/?list").await.1,
        r#"{"next":"","keys":["/l/a","/l/b","/l/c","/l2/x"]}"#
    );
    assert_eq!(list("/l/?list&limit=ten").await.0, 400);
    assert_eq!(
        list("/l/?unlinked").await,
        (200, r#"{"next":"","keys":[]}"#.into())
    );

    // UNLINK: reads as absent, listed as unlinked, bytes kept until DELETE.
    assert_eq!(c.unlink("/l/b").await, 204);
    assert_eq!(c.http.get(c.url("/l/b")).send().await.unwrap().status(), 404);
    assert_eq!(c.unlink("/l/b").await, 404);
    assert_eq!(c.unlink("/nope").await, 404);
    assert_eq!(list("/l/?list").await.1, r#"{"next":"","keys":["/l/a","/l/c"]}"#);
    assert_eq!(list("/l/?unlinked").await.1, r#"{"next":"","keys":["/l/b"]}"#);
    assert_eq!(
        c.copies_of("/l/b").await,
        2,
        "unlinked bytes stay on both replicas"
    );
    // DELETE finishes the job.
    assert_eq!(c.delete("/l/b").await, 204);
    assert_eq!(list("/l/?unlinked").await.1, r#"{"next":"","keys":[]}"#);

    // An unlinked key may be written again.
    assert_eq!(c.unlink("/l/c").await, 204);
    assert_eq!(c.put("/l/c", "v2").await, 201);
    assert_eq!(c.get("/l/c").await.1, "v2");
}

#[tokio::test]
async fn bad_requests_get_clear_answers() {
    let c = Cluster::start_default().await;
    assert_eq!(c.put("/k", "v").await, 201);
    // Any other query string on a key: 403.
    let r = c.http.get(c.url("/k?foo=1")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(!r.text().await.unwrap().is_empty());
    assert_eq!(
        c.http
            .put(c.url("/k2?list"))
            .body("v")
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    // Keys over 4096 bytes: 414; exactly 4096 is fine.
    let long = format!("/{}", "x".repeat(4096));
    assert_eq!(c.put(&long, "v").await, 414);
    assert_eq!(c.put(&long[..4096], "v").await, 201);
    // /-/ is reserved.
    let r = c.http.put(c.url("/-/mine")).body("v").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("reserved"));
    // Bad escapes, unknown methods, the empty key.
    assert_eq!(c.put("/bad%zzescape", "v").await, 400);
    assert_eq!(c.put("/", "v").await, 400);
    let r = c
        .http
        .request(Method::from_bytes(b"BREW").unwrap(), c.url("/k"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.headers().contains_key("allow"));
}

/// `/-/ready` (and `trove health`, which asks it) says whether a write can
/// succeed: with every volume up but short of `--min-free`, writes fail
/// with `507`, so the master is not ready.
#[tokio::test]
async fn not_ready_while_no_volume_has_room() {
    let mut c = Cluster::start(ClusterOptions {
        master_args: vec!["--min-free".into(), "0".into()],
        ..Default::default()
    })
    .await;
    c.master.set_arg("--min-free", "1000000GiB");
    c.master.restart();
    wait_for("the restarted master to have polled the volumes", || async {
        let status = c.http.get(c.url("/-/status")).send().await;
        match status {
            Ok(r) => r.json::<serde_json::Value>().await.unwrap()["healthy_volumes"] == 3,
            Err(_) => false,
        }
    })
    .await;
    let ready = c.http.get(c.url("/-/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let reason = ready.text().await.unwrap();
    assert!(
        reason.contains("take writes") && reason.contains("--min-free"),
        "{reason}"
    );
    assert_eq!(c.put("/no/room", "v").await, 507);
    let health = c.trove(&["health"]).await;
    assert_ne!(health.code, 0, "{} {}", health.stdout, health.stderr);

    c.master.set_arg("--min-free", "0");
    c.master.restart();
    c.wait_until_ready().await;
    assert_eq!(c.put("/no/room", "v").await, 201);
}

#[tokio::test]
async fn operations_endpoints() {
    let c = Cluster::start_default().await;
    assert_eq!(
        c.http.get(c.url("/-/healthy")).send().await.unwrap().status(),
        200
    );
    assert_eq!(c.http.get(c.url("/-/ready")).send().await.unwrap().status(), 200);
    assert_eq!(c.put("/s", "value").await, 201);
    let status = c.status().await;
    assert_eq!(status["replicas"], 2);
    assert_eq!(status["healthy_volumes"], 3);
    assert_eq!(status["keys"]["live"], 1);
    let vols = status["volumes"].as_array().unwrap();
    assert_eq!(vols.len(), 3);
    for v in vols {
        assert_eq!(v["healthy"], true);
        assert!(v["last_seen"].as_u64().unwrap() > 0);
        assert!(v["free_bytes"].as_u64().unwrap() > 0);
    }
    let blobs: u64 = vols.iter().map(|v| v["blobs"].as_u64().unwrap()).sum();
    let used: u64 = vols.iter().map(|v| v["used_bytes"].as_u64().unwrap()).sum();
    // The monitor refreshes these every 200 ms; wait for it.
    if (blobs, used) != (2, 10) {
        trove_tests::wait_for("volume counts in /-/status", || async {
            let s = c.status().await;
            let vols = s["volumes"].as_array().unwrap().clone();
            vols.iter().map(|v| v["blobs"].as_u64().unwrap()).sum::<u64>() == 2
                && vols
                    .iter()
                    .map(|v| v["used_bytes"].as_u64().unwrap())
                    .sum::<u64>()
                    == 10
        })
        .await;
    }
    // A volume's own status and listing.
    let v = &c.volumes[0].addr;
    let vs = c.volume_status(0).await;
    assert!(vs["dirs"][0]["free_bytes"].as_u64().unwrap() > 0);

    // Prometheus metrics, on the master and on a volume.
    let metrics = c.text("/-/metrics").await;
    for line in [
        "trove_requests_total{method=\"PUT\",status=\"201\"} 1",
        "trove_keys{state=\"live\"} 1",
        &format!("trove_volume_up{{volume=\"{v}\"}} 1"),
        "# TYPE trove_request_duration_seconds histogram",
        "trove_received_bytes_total 5",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing from:\n{metrics}"
        );
    }
    let vm = c.metrics_of(v).await;
    assert!(vm.contains("# TYPE trove_blobs gauge"), "{vm}");
    assert!(vm.contains("trove_dir_free_bytes{dir="), "{vm}");
}

#[tokio::test]
async fn protect_requires_unlink_before_delete() {
    let c = Cluster::start(ClusterOptions {
        master_args: vec!["--protect".into()],
        ..Default::default()
    })
    .await;
    assert_eq!(c.put("/p", "v").await, 201);
    let r = c.http.delete(c.url("/p")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("UNLINK"));
    assert_eq!(c.get("/p").await.1, "v");
    assert_eq!(c.unlink("/p").await, 204);
    assert_eq!(c.delete("/p").await, 204);
}

#[tokio::test]
async fn volume_ranges() {
    let c = Cluster::start_default().await;
    assert_eq!(c.put("/r", "01234").await, 201);
    let location = c.http.get(c.url("/r")).send().await.unwrap().headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    let range = |spec: &'static str| {
        let (http, url) = (c.http.clone(), location.clone());
        async move {
            let r = http.get(url).header("range", spec).send().await.unwrap();
            let status = r.status().as_u16();
            let cr = r
                .headers()
                .get("content-range")
                .map(|v| v.to_str().unwrap().to_string());
            (status, cr, r.text().await.unwrap())
        }
    };
    assert_eq!(
        range("bytes=1-2").await,
        (206, Some("bytes 1-2/5".into()), "12".into())
    );
    assert_eq!(
        range("bytes=2-5").await,
        (206, Some("bytes 2-4/5".into()), "234".into()),
        "clamped"
    );
    assert_eq!(
        range("bytes=3-").await,
        (206, Some("bytes 3-4/5".into()), "34".into())
    );
    assert_eq!(
        range("bytes=-2").await,
        (206, Some("bytes 3-4/5".into()), "34".into())
    );
    assert_eq!(range("bytes=5-9").await.0, 416);
    assert_eq!(range("bytes=5-9").await.1, Some("bytes */5".into()));
    assert_eq!(range("bytes=0-0,2-3").await.0, 416, "multiple ranges are refused");
    assert_eq!(
        range("bytes=oops").await,
        (200, None, "01234".into()),
        "malformed ranges are ignored"
    );
}

/// A value has one time everywhere: each replica takes the time of the
/// master's record when its copy is confirmed, so the volume's
/// `Last-Modified` after a redirect is the master's (and an `If-Range`
/// with either date works on both), and a rebuilt index keeps it.
#[tokio::test]
async fn replicas_take_the_masters_time() {
    let c = Cluster::start_default().await;
    let http = trove_tests::no_redirects();
    for i in 0..8 {
        let key = format!("/time/{i}");
        assert_eq!(c.put(&key, pattern_bytes(10_000, i)).await, 201);
        let head = http.head(c.url(&key)).send().await.unwrap();
        let headers = head.headers();
        let created: u64 = header(headers, "key-created").unwrap().parse().unwrap();
        let modified = header(headers, "last-modified").unwrap();
        let replicas = key_volumes(headers);
        assert_eq!(replicas.len(), 2, "{headers:?}");
        for addr in replicas {
            let meta = c.blob_meta(c.volume_index(&addr), &key).unwrap();
            assert_eq!(meta["created"], created, "{key} on {addr}: {meta}");
        }
        let location = header(headers, "location").unwrap();
        let at_volume = http.head(location).send().await.unwrap();
        assert_eq!(
            header(at_volume.headers(), "last-modified"),
            Some(modified),
            "{key}"
        );
    }
    // A copy a repair makes (a pull) keeps the value's time too.
    let head = http.head(c.url("/time/0")).send().await.unwrap();
    let created: u64 = header(head.headers(), "key-created").unwrap().parse().unwrap();
    let lost = c.volume_index(&key_volumes(head.headers())[0]);
    c.remove_blob(lost, "/time/0");
    let (code, out) = c.admin(&["verify", "--repair"]).await;
    assert_eq!(code, 0, "{out}");
    let meta = c.blob_meta(lost, "/time/0").expect("repaired");
    assert_eq!(meta["created"], created, "{meta}");
}

/// Conditional requests (RFC 9110 §13) on every method of a key: a
/// `DELETE` or `UNLINK` whose condition fails changes nothing (`412`); a
/// read whose client copy is current is `304`, from the master (no
/// redirect) and from the volume alike.
#[tokio::test]
async fn conditional_deletes_and_reads() {
    let c = Cluster::start(ClusterOptions::default()).await;
    let http = trove_tests::no_redirects();
    assert_eq!(c.put("/c", "v").await, 201);
    let head = http.head(c.url("/c")).send().await.unwrap();
    let header = |name: &str| head.headers()[name].to_str().unwrap().to_string();
    let (etag, modified) = (header("etag"), header("last-modified"));
    let long_ago = "Mon, 01 Jan 2001 00:00:00 GMT";

    // A delete or unlink whose condition fails: 412, and the key is as it was.
    for method in ["DELETE", "UNLINK"] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        for (name, value) in [
            ("if-match", "\"not-the-etag\""),
            ("if-none-match", "*"),
            ("if-none-match", etag.as_str()),
            ("if-unmodified-since", long_ago),
        ] {
            let r = http
                .request(method.clone(), c.url("/c"))
                .header(name, value)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 412, "{method} with {name}: {value}");
            let reason = r.text().await.unwrap();
            assert!(
                reason.trim_end().ends_with("nothing was changed"),
                "{method}: {reason}"
            );
            assert_eq!(c.get("/c").await, (200, "v".into()), "after {method} with {name}");
        }
        // A guard that cannot be read is refused, not dropped (the change
        // would go ahead): ISO 8601, Unix seconds, a wrong weekday.
        for bad in [
            "2001-01-01T00:00:00Z",
            "978307200",
            "Thu, 01 Jan 2000 00:00:00 GMT",
        ] {
            let r = http
                .request(method.clone(), c.url("/c"))
                .header("if-unmodified-since", bad)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "{method} with If-Unmodified-Since: {bad}");
            assert_eq!(c.get("/c").await, (200, "v".into()), "after {method} with {bad}");
        }
    }
    // So is a replace's.
    let r = http
        .put(c.url("/c"))
        .header("trove-replace", "1")
        .header("if-unmodified-since", "2001-01-01T00:00:00Z")
        .body("replaced")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(c.get("/c").await, (200, "v".into()));
    // One whose condition holds goes ahead.
    let r = http
        .request(Method::from_bytes(b"UNLINK").unwrap(), c.url("/c"))
        .header("if-match", &etag)
        .header("if-unmodified-since", &modified)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // An unlinked key has no value: If-Match fails, as on an absent key.
    let r = http
        .delete(c.url("/c"))
        .header("if-match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    let r = http.delete(c.url("/c")).send().await.unwrap();
    assert_eq!(r.status(), 204);

    // Reads: the master answers 304 itself, with the value's ETag.
    assert_eq!(c.put("/r", "w").await, 201);
    let head = http.head(c.url("/r")).send().await.unwrap();
    let etag = head.headers()["etag"].to_str().unwrap().to_string();
    let modified = head.headers()["last-modified"].to_str().unwrap().to_string();
    let location = head.headers()["location"].to_str().unwrap().to_string();
    for (name, value) in [
        ("if-none-match", etag.as_str()),
        ("if-modified-since", modified.as_str()),
    ] {
        let r = http.get(c.url("/r")).header(name, value).send().await.unwrap();
        assert_eq!(r.status(), 304, "master, {name}");
        assert_eq!(r.headers()["etag"], etag.as_str());
        assert!(r.headers().get("location").is_none());
        let r = http.get(&location).header(name, value).send().await.unwrap();
        assert_eq!(r.status(), 304, "volume, {name}");
        assert_eq!(r.headers()["etag"], etag.as_str());
        assert!(r.bytes().await.unwrap().is_empty());
    }
    // A stale copy, or a failed If-Match, is served or refused as asked.
    let r = http
        .get(c.url("/r"))
        .header("if-none-match", "\"old\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let r = http
        .get(&location)
        .header("if-modified-since", long_ago)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (200, "w".to_string())
    );
    let r = http
        .get(c.url("/r"))
        .header("if-match", "\"old\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412, "master");
    // The redirect's read is the master's to judge (it did, above: a copy
    // not yet confirmed has another ETag, a volume another clock); a read
    // of the volume's copy without a pin is judged there.
    let r = http
        .get(&location)
        .header("if-match", "\"old\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "pinned");
    let unpinned = location.split('?').next().unwrap();
    let r = http
        .get(unpinned)
        .header("if-match", "\"old\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412, "unpinned");
    // A write's If-Unmodified-Since is checked too.
    let r = http
        .put(c.url("/r"))
        .header("trove-replace", "1")
        .header("if-unmodified-since", long_ago)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    assert_eq!(c.get("/r").await, (200, "w".into()));
}
