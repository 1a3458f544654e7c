//! Hostile and malformed input against the master and the volumes: every
//! case gets a clear 4xx (or the documented behaviour), nothing is stored,
//! no file appears outside a data dir, and the servers keep serving.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use trove_tests::{wait_for, Cluster};

/// Sends raw bytes and returns what came back (status line and all) until
/// the server closes, within 30 s. (Requests carry `Connection: close`.)
fn raw(addr: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Like [`raw`], but the client hangs up its side after sending.
fn raw_then_hang_up(addr: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(request);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn put_raw(addr: &str, path: &str, body: &str) -> String {
    raw(
        addr,
        format!(
            "PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

fn status(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

async fn assert_still_serving(c: &Cluster) {
    assert_eq!(
        c.http.get(c.url("/-/healthy")).send().await.unwrap().status(),
        200
    );
    for v in &c.volumes {
        assert_eq!(
            c.http
                .get(format!("http://{}/-/healthy", v.addr))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let key = format!("/alive/{}", rand_suffix());
    assert_eq!(c.put(&key, "still here").await, 201);
    assert_eq!(c.get(&key).await, (200, "still here".into()));
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[tokio::test]
async fn hostile_keys_are_refused_and_never_escape_the_data_dirs() {
    let c = Cluster::start_default().await;
    let escape = c.dir.path().join("escaped");
    let escape_key = format!("{}", escape.display()).replace('/', "%2F");
    let cases: Vec<(String, u16, &str)> = vec![
        ("/a/../b".into(), 400, "segment"),
        ("/../../../../../../tmp/x".into(), 400, "segment"),
        ("/a/%2e%2e/b".into(), 400, "segment"),
        ("/a/./b".into(), 400, "segment"),
        (
            format!("/..%2F..%2F..%2F..%2F..%2F..{escape_key}"),
            400,
            "segment",
        ),
        ("/%zz".into(), 400, "percent"),
        ("/%4".into(), 400, "percent"),
        ("/%FF%FE".into(), 400, "UTF-8"),
        ("/".into(), 400, "empty key"),
        ("/-/mine".into(), 400, "reserved"),
        (format!("/{}", "k".repeat(4096)), 414, "4096"),
        (format!("/{}", "k".repeat(8 * 1024)), 414, "4096"),
        // Past 64 KiB the HTTP parser itself answers 414 (without a reason).
        (format!("/{}", "k".repeat(64 * 1024)), 414, "414 URI Too Long"),
    ];
    for addr in [c.master.addr.clone(), c.volumes[0].addr.clone()] {
        for (path, code, reason) in &cases {
            let answer = put_raw(&addr, path, "payload");
            assert_eq!(
                status(&answer),
                *code,
                "PUT {} on {addr}: {answer}",
                &path[..path.len().min(60)]
            );
            assert!(answer.contains(reason), "{reason} in {answer}");
        }
    }
    // Nothing was stored anywhere, and nothing escaped.
    let list: serde_json::Value = c.json("/?list").await;
    assert_eq!(list["keys"], serde_json::json!([]));
    for i in 0..3 {
        assert!(c.blobs(i).await.is_empty());
    }
    assert!(!escape.exists());
    assert!(
        !std::path::Path::new("/tmp/x").exists()
            || std::fs::read("/tmp/x").map(|b| b != b"payload").unwrap_or(true)
    );

    // Documented: NUL and %2F are ordinary key bytes; files are hash-named.
    assert_eq!(status(&put_raw(&c.master.addr, "/nul%00byte", "n")), 201);
    assert_eq!(c.get("/nul%00byte").await, (200, "n".into()));
    assert_eq!(status(&put_raw(&c.master.addr, "/a%2Fb", "slash")), 201);
    assert_eq!(c.get("/a/b").await, (200, "slash".into()), "%2F decodes to /");
    assert_still_serving(&c).await;
}

#[tokio::test]
async fn oversized_headers_and_lying_lengths() {
    let c = Cluster::start_default().await;
    for addr in [c.master.addr.clone(), c.volumes[1].addr.clone()] {
        // A 1 MiB header: refused (431) or the connection closed; no crash.
        let big = format!(
            "GET /x HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(1 << 20)
        );
        let answer = raw(&addr, big.as_bytes());
        assert!(
            answer.is_empty() || status(&answer) == 431,
            "{addr}: {}",
            &answer[..answer.len().min(200)]
        );
        // A Content-Length that is not a number.
        let answer = raw(
            &addr,
            b"PUT /cl HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n0123456789",
        );
        assert_eq!(status(&answer), 400, "{addr}: {answer}");
        // Garbage instead of HTTP.
        let answer = raw(
            &addr,
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",
        );
        assert!(answer.is_empty() || status(&answer) == 400, "{addr}: {answer}");
    }
    // Content-Length smaller than what follows: the value is exactly the
    // announced bytes; the rest is read as the next request and refused.
    let answer = raw(
        &c.master.addr,
        b"PUT /lying HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloEXTRA BYTES THAT ARE NOT HTTP\r\n\r\n",
    );
    assert_eq!(status(&answer), 201, "{answer}");
    assert!(
        answer.contains("400 Bad Request"),
        "the trailing bytes are refused: {answer}"
    );
    assert_eq!(c.get("/lying").await, (200, "hello".into()));
    // Content-Length larger than what follows, then the client hangs up.
    let answer = raw_then_hang_up(
        &c.master.addr,
        b"PUT /short HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly this",
    );
    assert!(answer.is_empty() || status(&answer) == 400, "{answer}");
    wait_for("the cut-off write to be cleaned up", || async {
        c.put("/short", "ok").await == 201
    })
    .await;
    assert!((0..3).all(|i| c.temp_files(i) == 0));
    assert_still_serving(&c).await;
}

#[tokio::test]
async fn operations_paths_and_methods() {
    let c = Cluster::start_default().await;
    let m = &c.master.addr;
    let v = &c.volumes[0].addr;
    let with_body = |method: &str, path: &str| {
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody")
            .into_bytes()
    };
    // Another method on an operation: 405 (protocol.rs checks the Allow
    // header); a write to any other path under /-/: 400, never a key.
    assert_eq!(status(&raw(m, &with_body("POST", "/-/healthy"))), 405);
    assert_eq!(status(&raw(m, &with_body("PUT", "/-/status"))), 405);
    assert_eq!(
        status(&raw(m, &with_body("GET", "/-/status"))),
        200,
        "a body on a GET is ignored"
    );
    assert_eq!(status(&raw(m, &with_body("PUT", "/-/rebalance"))), 405);
    assert_eq!(
        status(&raw(m, &with_body("POST", "/-/rebalance"))),
        400,
        "'body' is not JSON parameters"
    );
    assert_eq!(status(&raw(m, &with_body("POST", "/-/nothing"))), 400);
    assert_eq!(status(&raw(m, &with_body("GET", "/-/nothing"))), 404);
    assert_eq!(status(&raw(v, &with_body("POST", "/-/healthy"))), 405);
    assert_eq!(status(&raw(v, &with_body("PUT", "/-/blobs"))), 405);
    assert_eq!(status(&raw(v, &with_body("PUT", "/-/nothing"))), 400);
    assert_eq!(status(&raw(v, &with_body("PATCH", "/key"))), 405);
    assert_eq!(status(&raw(m, &with_body("PATCH", "/key"))), 405);
    assert_eq!(
        status(&raw(v, &with_body("POST", "/-/pull?key=%2Fk"))),
        400,
        "from= missing"
    );
    assert_eq!(
        status(&raw(v, &with_body("POST", "/-/mark?key=%2Fk&state=gone"))),
        400
    );
    assert_eq!(status(&raw(v, &with_body("GET", "/-/verify?key=%2Fnope"))), 404);
    let list: serde_json::Value = c.json("/?list").await;
    assert_eq!(list["keys"], serde_json::json!([]));
    assert_still_serving(&c).await;
}

#[tokio::test]
async fn slow_and_stalled_clients_do_not_hold_up_others() {
    let c = Cluster::start_default().await;
    // A slowloris: headers one byte at a time, on another thread, bounded.
    let addr = c.master.addr.clone();
    let slowloris = std::thread::spawn(move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        let head = b"PUT /slowloris HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n";
        for b in head.iter().chain([b'x'; 20].iter()) {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    });
    // Meanwhile everyone else is served at once.
    for i in 0..20 {
        let started = Instant::now();
        assert_eq!(c.put(&format!("/meanwhile/{i}"), "v").await, 201);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a normal PUT waited {:?}",
            started.elapsed()
        );
    }
    // A body that stops moving: after the stall timeout (5 s here) the
    // write is abandoned with 408, and the key is free again.
    let mut stalled = TcpStream::connect(&c.master.addr).unwrap();
    stalled
        .write_all(b"PUT /stalled HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nfirst bytes")
        .unwrap();
    stalled.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let started = Instant::now();
    let mut answer = vec![0u8; 4096];
    let n = stalled.read(&mut answer).unwrap_or(0);
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert_eq!(status(&answer), 408, "{answer}");
    assert!(answer.contains("no bytes arrived"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(20));
    wait_for("the stalled key to be writable", || async {
        c.put("/stalled", "v").await == 201
    })
    .await;
    drop(slowloris.join().unwrap());
    assert_eq!(
        c.http.get(c.url("/slowloris")).send().await.unwrap().status(),
        404
    );
    assert_still_serving(&c).await;
}

#[tokio::test]
async fn a_thousand_idle_connections() {
    let c = Cluster::start_default().await;
    let mut idle = Vec::new();
    for addr in [&c.master.addr, &c.volumes[0].addr] {
        for _ in 0..1000 {
            idle.push(TcpStream::connect(addr).unwrap());
        }
    }
    assert_still_serving(&c).await;
    drop(idle);
    assert_still_serving(&c).await;
}
