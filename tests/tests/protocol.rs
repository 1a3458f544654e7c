//! HTTP as the servers speak it, checked from outside with real processes
//! and, where client libraries would hide it, raw sockets: ranges and
//! `If-Range`, connection timeouts and limits, early refusals that clients
//! can read, methods, duplicate or wrong checksums, and start-up checks.

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use trove_tests::raw::{self, connect, read_answer, wait_closed};
use trove_tests::{
    bin, lone_volume, md5_hex, metric, pattern_bytes, sha256_hex, wait_for, Cluster, ClusterOptions, WAIT,
};

/// A `GET` of `url` with `headers`: status and body.
async fn get_with(c: &Cluster, url: &str, headers: &[(&str, &str)]) -> (u16, Vec<u8>) {
    let mut req = c.http.get(url);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn if_range_never_splices_two_versions() {
    let c = Cluster::start_default().await;
    let (old, new) = (pattern_bytes(100_000, 1), pattern_bytes(100_000, 2));
    assert_eq!(c.put("/resume", old.clone()).await, 201);
    let url = c.location("/resume").await;
    let first = c.http.get(&url).send().await.unwrap();
    let old_etag = first.headers()["etag"].to_str().unwrap().to_string();
    // The volume answers the value's ETag (its md5, as the master's).
    assert_eq!(old_etag, format!("\"{}\"", md5_hex(&old)));

    // The key is deleted and written again, same length, other bytes.
    assert_eq!(
        c.http.delete(c.url("/resume")).send().await.unwrap().status(),
        204
    );
    assert_eq!(c.put("/resume", new.clone()).await, 201);
    let url = c.location("/resume").await;
    let head = c.http.head(&url).send().await.unwrap();
    let etag = head.headers()["etag"].to_str().unwrap().to_string();
    let modified = head.headers()["last-modified"].to_str().unwrap().to_string();
    let earlier =
        httpdate::fmt_http_date(httpdate::parse_http_date(&modified).unwrap() - Duration::from_secs(86_400));

    let range = ("range", "bytes=50000-");
    // A resume of the old version: the whole new value, never its tail.
    for stale in [
        old_etag.as_str(),
        &format!("W/{etag}"),
        &earlier,
        "not a validator",
    ] {
        let (status, body) = get_with(&c, &url, &[range, ("if-range", stale)]).await;
        assert_eq!(status, 200, "If-Range: {stale}");
        assert!(body == new, "If-Range: {stale}: the whole current value");
    }
    // A resume of the current version: the range.
    for current in [etag.as_str(), &modified] {
        let (status, body) = get_with(&c, &url, &[range, ("if-range", current)]).await;
        assert_eq!(status, 206, "If-Range: {current}");
        assert!(body == new[50_000..], "If-Range: {current}: the tail");
    }
}

#[tokio::test]
async fn range_headers_in_every_legal_spelling() {
    let c = Cluster::start_default().await;
    assert_eq!(c.put("/ten", "0123456789").await, 201);
    let url = c.location("/ten").await;
    let cases: [(&str, u16, &str); 7] = [
        ("Bytes=0-5", 206, "012345"),
        ("BYTES=0-5", 206, "012345"),
        ("bytes=, 0-5", 206, "012345"),
        ("bytes=0-5,", 206, "012345"),
        // A last position past u64: "to the end".
        ("bytes=2-99999999999999999999999", 206, "23456789"),
        ("bytes=-99999999999999999999999", 206, "0123456789"),
        // A first position past u64 is past the end of any value.
        ("bytes=99999999999999999999999-", 416, "range not satisfiable"),
    ];
    for (range, code, want) in cases {
        let (status, body) = get_with(&c, &url, &[("range", range)]).await;
        assert_eq!(status, code, "Range: {range}");
        let body = String::from_utf8(body).unwrap();
        assert!(body.starts_with(want), "Range: {range}: {body}");
    }
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let v = lone_volume(dir.path(), &["--idle-timeout", "1s"]);
    // A connection that never sends anything.
    let mut silent = connect(&v.addr);
    assert_eq!(wait_closed(&mut silent), 0);
    // A keep-alive connection after one request.
    let mut kept = connect(&v.addr);
    kept.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (head, _) = read_answer(&mut kept);
    assert_eq!(raw::status(&head), 200, "{head}");
    assert_eq!(wait_closed(&mut kept), 0);
    let idle = r#"trove_connections_timed_out_total{reason="idle"}"#;
    let http = trove_tests::no_redirects();
    assert_eq!(metric(&http, &v.addr, idle).await, 2.0);
}

#[tokio::test]
async fn headers_that_never_finish_are_cut_off() {
    let c = Cluster::start(ClusterOptions {
        master_args: vec!["--header-timeout".into(), "1s".into()],
        volume_args: vec!["--header-timeout".into(), "1s".into()],
        ..Default::default()
    })
    .await;
    for addr in [&c.master.addr, &c.volumes[0].addr] {
        // Half a request, then nothing (the idle timeout is a minute).
        let mut half = connect(addr);
        half.write_all(b"PUT /half HTTP/1.1\r\nHost: x\r\nContent-Le")
            .unwrap();
        assert_eq!(wait_closed(&mut half), 0, "{addr}");
        // A slowloris: a byte every 100 ms never finishes its headers, and
        // is cut off while it still sends.
        let mut slow = connect(addr);
        let started = Instant::now();
        let mut cut = false;
        for b in b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n".iter().cycle() {
            if slow.write_all(&[*b]).is_err() {
                cut = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            if started.elapsed() > WAIT {
                break;
            }
        }
        assert!(cut, "{addr}: a slowloris kept its connection for {WAIT:?}");
        let reason = r#"trove_connections_timed_out_total{reason="headers"}"#;
        assert!(metric(&c.http, addr, reason).await >= 2.0, "{addr}");
    }
}

#[tokio::test]
async fn an_answer_nobody_reads_is_dropped_after_the_stall_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let v = lone_volume(dir.path(), &["--stall-timeout", "1s"]);
    let http = trove_tests::no_redirects();
    // More than the socket buffers of both ends hold.
    let size = 64 << 20;
    let put = http
        .put(format!("http://{}/big", v.addr))
        .header("trove-master", "1")
        .body(pattern_bytes(size, 3))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let mut reader = connect(&v.addr);
    reader.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let stalled = r#"trove_connections_timed_out_total{reason="stall"}"#;
    wait_for("the volume to drop the unread answer", || async {
        metric(&http, &v.addr, stalled).await == 1.0
    })
    .await;
    let got = wait_closed(&mut reader);
    assert!(got < size as u64, "the whole answer arrived ({got} bytes)");
    // Only the reader that stopped was dropped.
    let (status, body) = {
        let resp = http.get(format!("http://{}/big", v.addr)).send().await.unwrap();
        (resp.status(), resp.bytes().await.unwrap())
    };
    assert_eq!((status.as_u16(), body.len()), (200, size));
}

#[tokio::test]
async fn connections_over_the_limit_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let v = lone_volume(dir.path(), &["--max-connections", "3"]);
    let held: Vec<TcpStream> = (0..3).map(|_| connect(&v.addr)).collect();
    let mut extra = connect(&v.addr);
    extra
        .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (head, body) = read_answer(&mut extra);
    assert_eq!(raw::status(&head), 503, "{head}");
    let body = String::from_utf8(body).unwrap();
    assert!(
        body.contains("too many connections") && body.contains("3"),
        "{body}"
    );
    assert_eq!(wait_closed(&mut extra), 0);
    // A slot frees when a connection closes.
    drop(held);
    let http = trove_tests::no_redirects();
    let url = format!("http://{}/-/healthy", v.addr);
    wait_for("a connection to be served again", || async {
        http.get(&url).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    let refused = metric(&http, &v.addr, "trove_connections_refused_total").await;
    assert!(refused >= 1.0, "{refused}");
}

/// Sends a whole request — headers, then every byte of a `size`-byte
/// body — before reading anything, as Python's http.client does, and
/// returns the answer. Panics if the server cut the connection instead.
fn send_all_then_read(addr: &str, head: &str, size: usize) -> (String, String) {
    let mut s = connect(addr);
    let request = format!("{head}Content-Length: {size}\r\n\r\n");
    s.write_all(request.as_bytes()).unwrap();
    let body = vec![b'x'; size];
    if let Err(e) = s.write_all(&body) {
        panic!("{head}: the connection broke while the body was sent: {e}");
    }
    let (head, body) = read_answer(&mut s);
    (head, String::from_utf8(body).unwrap())
}

#[tokio::test]
async fn early_refusals_reach_clients_that_send_the_body_first() {
    let c = Cluster::start(ClusterOptions {
        // The write holding a key's lock below stalls (master and volumes
        // wait for its body); it must outlast the checks.
        master_args: vec!["--stall-timeout".into(), "60s".into()],
        volume_args: vec!["--stall-timeout".into(), "60s".into()],
        ..Default::default()
    })
    .await;
    assert_eq!(c.put("/taken", "v").await, 201);
    // A write in flight holds /busy.
    let mut holder = connect(&c.master.addr);
    holder
        .write_all(b"PUT /busy HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nfirst bytes")
        .unwrap();
    wait_for("the write of /busy to be in flight", || async {
        c.status().await["keys"]["writing"] == 1
    })
    .await;
    // Larger than the socket buffers: the server must read to let it in.
    let size = 16 << 20;
    let m = &c.master.addr;
    let v = &c.volumes[0].addr;
    let cases: [(&str, &str, u16, &str); 6] = [
        (m, "PUT /taken HTTP/1.1\r\nHost: x\r\n", 403, "key exists"),
        (m, "PUT /busy HTTP/1.1\r\nHost: x\r\n", 409, "in progress"),
        (m, "PUT /-/x HTTP/1.1\r\nHost: x\r\n", 400, "reserved"),
        (
            m,
            "PUT /md5 HTTP/1.1\r\nHost: x\r\nContent-MD5: nope\r\n",
            400,
            "Content-MD5",
        ),
        (m, "POST /-/rebalance HTTP/1.1\r\nHost: x\r\n", 413, "at most"),
        (
            v,
            "PUT /sha HTTP/1.1\r\nHost: x\r\nTrove-Master: 1\r\nKey-Sha256: nope\r\n",
            400,
            "Key-Sha256",
        ),
    ];
    for (addr, head, code, reason) in cases {
        let (answer, body) = send_all_then_read(addr, head, size);
        assert_eq!(raw::status(&answer), code, "{head}{answer}");
        assert!(body.contains(reason), "{head}: {body}");
    }
    drop(holder);
    assert_eq!(c.get("/taken").await, (200, "v".into()));
    let list: serde_json::Value = c.json("/?list").await;
    assert_eq!(list["keys"], serde_json::json!(["/taken"]));
}

#[tokio::test]
async fn refusals_of_expect_continue_come_before_any_body() {
    let c = Cluster::start_default().await;
    assert_eq!(c.put("/taken", "v").await, 201);
    let cases: [(&str, u16, &str); 3] = [
        ("PUT /taken", 403, "key exists"),
        ("PUT /-/x", 400, "reserved"),
        ("POST /-/verify", 413, "at most"),
    ];
    for (request, code, reason) in cases {
        let mut s = connect(&c.master.addr);
        let head = format!(
            "{request} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            3 << 20
        );
        s.write_all(head.as_bytes()).unwrap();
        // No body is sent: the final answer must come without it, and with
        // no `100 Continue` first.
        let (answer, body) = read_answer(&mut s);
        assert_eq!(raw::status(&answer), code, "{request}: {answer}");
        assert!(String::from_utf8(body).unwrap().contains(reason), "{request}");
    }
    // Sent anyway, a large body to an operation path is still refused for
    // what it is.
    let (answer, body) = send_all_then_read(&c.master.addr, "PUT /-/x HTTP/1.1\r\nHost: x\r\n", 3 << 20);
    assert_eq!(raw::status(&answer), 400, "{answer}");
    assert!(body.contains("reserved"), "{body}");
}

#[tokio::test]
async fn volume_metrics_need_a_signature() {
    let secret = vec!["--secret".to_string(), "s3cr3t".to_string()];
    let c = Cluster::start(ClusterOptions {
        master_args: secret.clone(),
        volume_args: secret,
        ..Default::default()
    })
    .await;
    let v = &c.volumes[0].addr;
    let metrics = c.http.get(format!("http://{v}/-/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 403);
    assert!(metrics.text().await.unwrap().contains("sig"));
    let healthy = c.http.get(format!("http://{v}/-/healthy")).send().await.unwrap();
    assert_eq!(healthy.status(), 200, "liveness needs no signature");
}

#[tokio::test]
async fn wrong_methods_get_405_with_allow() {
    let c = Cluster::start_default().await;
    let (m, v) = (c.master.addr.as_str(), c.volumes[0].addr.as_str());
    let cases: [(&str, &str, &str, &str); 11] = [
        (m, "POST", "/-/healthy", "GET, HEAD"),
        (m, "PUT", "/-/status", "GET, HEAD"),
        (m, "PUT", "/-/rebalance", "GET, HEAD, POST, DELETE"),
        (v, "PATCH", "/key", "GET, HEAD, PUT, DELETE"),
        (v, "POST", "/-/healthy", "GET, HEAD"),
        (v, "PUT", "/-/blobs", "GET, HEAD"),
        (v, "GET", "/-/pull", "POST"),
        (v, "GET", "/-/compose", "POST"),
        (v, "GET", "/-/mark", "POST"),
        (v, "GET", "/-/marks", "POST"),
        (v, "GET", "/-/abort", "POST"),
    ];
    for (addr, method, path, allow) in cases {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = c
            .http
            .request(method.clone(), format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "{method} {path} on {addr}");
        assert_eq!(resp.headers()["allow"], allow, "{method} {path} on {addr}");
        let reason = resp.text().await.unwrap();
        assert!(
            reason.contains(method.as_str()) && reason.contains("use"),
            "{reason}"
        );
    }
    // A path under /-/ that is no operation is never a key.
    let resp = c.http.put(c.url("/-/nothing")).body("x").send().await.unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn checksums_sent_twice_or_wrong_store_nothing() {
    let c = Cluster::start_default().await;
    let value = b"checked value".to_vec();
    let md5 = {
        use base64::Engine;
        use md5::Digest;
        base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&value))
    };
    let wrong_md5 = "AAAAAAAAAAAAAAAAAAAAAA==";
    let sha = sha256_hex(&value);
    let wrong_sha = sha256_hex(b"something else");
    let put = |key: &'static str, headers: Vec<(&'static str, String)>| {
        let mut req = c.http.put(c.url(key)).body(value.clone());
        for (n, v) in headers {
            req = req.header(n, v);
        }
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let refused = [
        (
            "/md5-twice",
            vec![("content-md5", md5.clone()), ("content-md5", wrong_md5.into())],
            "more than once",
        ),
        (
            "/sha-twice",
            vec![("key-sha256", sha.clone()), ("key-sha256", sha.clone())],
            "more than once",
        ),
        (
            "/sha-wrong",
            vec![("key-sha256", wrong_sha)],
            "Key-Sha256 mismatch",
        ),
        (
            "/sha-bad",
            vec![("key-sha256", "12ab".to_string())],
            "64 hex digits",
        ),
    ];
    for (key, headers, reason) in refused {
        let (status, body) = put(key, headers).await;
        assert_eq!(status, 400, "{key}: {body}");
        assert!(body.contains(reason), "{key}: {body}");
        assert_eq!(c.head(key).await.status(), 404, "{key}");
    }
    wait_for("the refused writes' replicas to be removed", || async {
        c.copies_of("/sha-wrong").await == 0
    })
    .await;
    let (status, body) = put(
        "/sha-right",
        vec![("key-sha256", sha.clone()), ("content-md5", md5)],
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(c.get("/sha-right").await, (200, value.into()));
}

#[tokio::test]
async fn listing_parameters_given_twice_are_refused() {
    let c = Cluster::start_default().await;
    for query in [
        "?list&limit=1&limit=2",
        "?list&start=%2Fa&start=%2Fb",
        "?unlinked&limit=5&limit=5",
    ] {
        let resp = c.http.get(c.url(&format!("/{query}"))).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{query}");
        assert!(resp.text().await.unwrap().contains("more than once"), "{query}");
    }
}

/// Runs a binary that is expected to fail at start-up; returns its exit
/// status, stdout and stderr. Panics if it is still running after [`WAIT`].
fn run_to_failure(bin_name: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new(bin(bin_name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{bin_name} {args:?} still runs after {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |p| std::fs::read_to_string(p).unwrap();
    (status.code(), read(&out), read(&err))
}

#[tokio::test]
async fn one_volume_under_two_names_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let v = lone_volume(dir.path(), &[]);
    let port = v.addr.rsplit(':').next().unwrap();
    let volumes = format!("127.0.0.1:{port},localhost:{port}");
    let db = dir.path().join("db");
    let (code, _, stderr) = run_to_failure(
        "trove-master",
        &[
            "serve",
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--db",
            db.to_str().unwrap(),
            "--volumes",
            &volumes,
            "--replicas",
            "1",
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{port} and localhost:{port}"))
            && stderr.contains("list each volume once"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_volume_with_an_unusable_data_dir_fails_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, "a file, not a directory").unwrap();
    let (code, stdout, stderr) = run_to_failure(
        "trove-volume",
        &["--port", "0", "--bind", "127.0.0.1", not_a_dir.to_str().unwrap()],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stdout.contains("listening"), "{stdout}");
    assert!(
        stderr.contains("trove-volume:") && stderr.contains("file"),
        "{stderr}"
    );
}

/// The admin commands refuse a master URL that is not one, and a
/// concurrency of 0, as usage errors (exit 2) that say what is wrong,
/// before calling anything.
#[tokio::test]
async fn admin_commands_refuse_bad_flags_as_usage_errors() {
    for (args, says) in [
        (
            &["verify", "--master", "not-a-url"][..],
            "is not a master URL like http://127.0.0.1:3000",
        ),
        (
            &["gc", "--master", "http://127.0.0.1:3000/path"],
            "a master URL has no path or query",
        ),
        (&["rebalance", "--concurrency", "0"], "--concurrency"),
    ] {
        let (code, _, stderr) = run_to_failure("trove-master", args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// A data dir belongs to one volume: a second volume on a dir in use,
/// or one volume given the same dir twice (under two paths), fails to
/// start and says why, rather than serving one copy as two replicas.
#[tokio::test]
async fn a_data_dir_in_use_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let _first = lone_volume(dir.path(), &[]);
    let data = dir.path().join("vol0");
    let also = dir.path().join(".").join("vol0");
    for dirs in [
        vec![data.to_str().unwrap()],
        vec![dir.path().join("other").to_str().unwrap(), also.to_str().unwrap()],
    ] {
        let mut args = vec!["--port", "0", "--bind", "127.0.0.1"];
        args.extend(&dirs);
        let (code, stdout, stderr) = run_to_failure("trove-volume", &args);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(!stdout.contains("listening"), "{stdout}");
        assert!(stderr.contains("is in use by another trove-volume"), "{stderr}");
    }
    // The same dir twice in one volume, once the first has stopped.
    drop(_first);
    let twice = [
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
        data.to_str().unwrap(),
        also.to_str().unwrap(),
    ];
    let (code, _, stderr) = run_to_failure("trove-volume", &twice);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("or given twice to this one"), "{stderr}");
}

#[tokio::test]
async fn shutdown_finishes_answers_in_flight_and_closes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let v = lone_volume(dir.path(), &[]);
    let size = 8 << 20;
    let http = trove_tests::no_redirects();
    let put = http
        .put(format!("http://{}/big", v.addr))
        .header("trove-master", "1")
        .body(pattern_bytes(size, 4))
        .send()
        .await;
    assert_eq!(put.unwrap().status(), 201);
    let mut idle = connect(&v.addr);
    let mut half = connect(&v.addr);
    half.write_all(b"GET /big HTTP/1.1\r\nHo").unwrap();
    // A download under way: its first byte has arrived.
    let mut download = connect(&v.addr);
    download
        .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 1];
    std::io::Read::read_exact(&mut download, &mut first).unwrap();

    v.signal("TERM");
    // Connections with no request in progress close at once, even one
    // whose headers are still arriving; the download finishes.
    assert_eq!(wait_closed(&mut idle), 0);
    assert_eq!(wait_closed(&mut half), 0);
    let rest = wait_closed(&mut download);
    assert!(rest + 1 > size as u64, "the download was cut at {rest} bytes");
    wait_for("the volume to stop accepting", || async {
        TcpStream::connect(&v.addr).is_err()
    })
    .await;
}

#[tokio::test]
async fn idle_sockets_cannot_starve_a_master_with_few_descriptors() {
    let c = Cluster::start_default().await;
    // A second master over the same volumes, with 128 descriptors: by
    // default it serves 64 connections at once.
    let volumes: Vec<&str> = c.volumes.iter().map(|v| v.addr.as_str()).collect();
    let master = bin("trove-master").display().to_string();
    let db = c.dir.path().join("db-low").display().to_string();
    let args: Vec<String> = [
        "-c",
        "ulimit -n 128 && exec \"$0\" \"$@\"",
        &master,
        "serve",
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--db",
        &db,
        "--volumes",
        &volumes.join(","),
        "--replicas",
        "2",
        "--health-interval",
        "200ms",
        "--idle-timeout",
        "2s",
    ]
    .map(String::from)
    .to_vec();
    let low = trove_tests::Server::start("/bin/sh".into(), args, c.dir.path().join("low.log"));
    let ready = format!("http://{}/-/ready", low.addr);
    wait_for("the second master to be ready", || async {
        c.http.get(&ready).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    // Far more idle sockets than it has descriptors.
    let idle: Vec<TcpStream> = (0..300).map(|_| connect(&low.addr)).collect();
    // Meanwhile a PUT never hangs: it is refused at once (503, or a closed
    // connection while refusals are many) until the idle sockets time out,
    // then it is stored.
    let url = format!("http://{}/starved", low.addr);
    wait_for("a PUT to be stored", || async {
        let put = c
            .http
            .put(&url)
            .header("trove-master", "1")
            .body("v")
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match put {
            Ok(r) if r.status() == 201 => true,
            Ok(r) if r.status() == 503 => false,
            Err(e) if !e.is_timeout() => false,
            other => panic!("a PUT hung or failed otherwise: {other:?}"),
        }
    })
    .await;
    drop(idle);
    assert!(metric(&c.http, &low.addr, "trove_connections_refused_total").await > 0.0);
    assert_eq!(c.http.head(&url).send().await.unwrap().status(), 302);
}
