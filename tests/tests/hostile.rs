//! Hostile and malformed input against the master and the volumes: every
//! case gets a clear 4xx (or the documented behaviour), nothing is stored,
//! no file appears outside a data dir, and the servers keep serving.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use trove_tests::raw::{self, status};
use trove_tests::{unique_suffix, wait_for, Cluster};

/// Sends raw bytes and returns what came back until the server closes.
fn send(addr: &str, request: &[u8]) -> String {
    raw::exchange(addr, request, false)
}

fn put_raw(addr: &str, path: &str, body: &str) -> String {
    send(
        addr,
        format!(
            "PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
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
    let key = format!("/alive/{}", unique_suffix());
    assert_eq!(c.put(&key, "still here").await, 201);
    assert_eq!(c.get(&key).await, (200, "still here".into()));
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
        // A 1 MiB header: refused with 431; no crash.
        let big = format!(
            "GET /x HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(1 << 20)
        );
        let answer = send(&addr, big.as_bytes());
        assert_eq!(
            status(&answer),
            431,
            "{addr}: {}",
            &answer[..answer.len().min(200)]
        );
        // A Content-Length that is not a number.
        let answer = send(
            &addr,
            b"PUT /cl HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n0123456789",
        );
        assert_eq!(status(&answer), 400, "{addr}: {answer}");
        // Garbage instead of HTTP.
        let answer = send(
            &addr,
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",
        );
        assert_eq!(status(&answer), 400, "{addr}: {answer}");
    }
    // Content-Length smaller than what follows: the value is exactly the
    // announced bytes; the rest is read as the next request and refused.
    let answer = send(
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
    let answer = raw::exchange(
        &c.master.addr,
        b"PUT /short HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly this",
        true,
    );
    assert_eq!(status(&answer), 400, "{answer}");
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
    assert_eq!(status(&send(m, &with_body("POST", "/-/healthy"))), 405);
    assert_eq!(status(&send(m, &with_body("PUT", "/-/status"))), 405);
    assert_eq!(
        status(&send(m, &with_body("GET", "/-/status"))),
        200,
        "a body on a GET is ignored"
    );
    assert_eq!(status(&send(m, &with_body("PUT", "/-/rebalance"))), 405);
    assert_eq!(
        status(&send(m, &with_body("POST", "/-/rebalance"))),
        400,
        "'body' is not JSON parameters"
    );
    assert_eq!(status(&send(m, &with_body("POST", "/-/nothing"))), 400);
    assert_eq!(status(&send(m, &with_body("GET", "/-/nothing"))), 404);
    assert_eq!(status(&send(v, &with_body("POST", "/-/healthy"))), 405);
    assert_eq!(status(&send(v, &with_body("PUT", "/-/blobs"))), 405);
    assert_eq!(status(&send(v, &with_body("PUT", "/-/nothing"))), 400);
    assert_eq!(status(&send(v, &with_body("PATCH", "/key"))), 405);
    assert_eq!(status(&send(m, &with_body("PATCH", "/key"))), 405);
    assert_eq!(
        status(&send(v, &with_body("POST", "/-/pull?key=%2Fk"))),
        400,
        "from= missing"
    );
    assert_eq!(
        status(&send(v, &with_body("POST", "/-/mark?key=%2Fk&state=gone"))),
        400
    );
    assert_eq!(status(&send(v, &with_body("GET", "/-/verify?key=%2Fnope"))), 404);
    let list: serde_json::Value = c.json("/?list").await;
    assert_eq!(list["keys"], serde_json::json!([]));
    assert_still_serving(&c).await;
}

#[tokio::test]
async fn slow_and_stalled_clients_do_not_hold_up_others() {
    let c = Cluster::start_default().await;
    // A slowloris: its request one byte every 50 ms, on another thread,
    // until told to stop (bounded: its body is 1000 bytes).
    let addr = c.master.addr.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = std::sync::Arc::clone(&stop);
    let slowloris = std::thread::spawn(move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        let head = b"PUT /slowloris HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n";
        let mut whole = true;
        for b in head.iter().chain([b'x'; 999].iter()) {
            if stopped.load(std::sync::atomic::Ordering::SeqCst) || s.write_all(&[*b]).is_err() {
                whole = false;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        (s, whole)
    });
    // Meanwhile everyone else is served: 20 PUTs complete while the
    // slowloris still holds its connection mid-request.
    for i in 0..20 {
        assert_eq!(c.put(&format!("/meanwhile/{i}"), "v").await, 201);
    }
    assert!(
        !slowloris.is_finished(),
        "the slowloris stopped (cut off or done) before the other PUTs were served"
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    // A body that stops moving: after the stall timeout (5 s here) the
    // write is abandoned with 408, and the key is free again.
    let mut stalled = TcpStream::connect(&c.master.addr).unwrap();
    stalled
        .write_all(b"PUT /stalled HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nfirst bytes")
        .unwrap();
    stalled.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut answer = vec![0u8; 4096];
    let n = stalled.read(&mut answer).unwrap_or(0);
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert_eq!(status(&answer), 408, "{answer}");
    assert!(answer.contains("no bytes arrived"), "{answer}");
    wait_for("the stalled key to be writable", || async {
        c.put("/stalled", "v").await == 201
    })
    .await;
    let (slowloris, whole) = slowloris.join().unwrap();
    assert!(!whole, "the slowloris sent its whole request");
    drop(slowloris);
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

/// A faulty or hostile volume whose `/-/listing` is one endless frame
/// (its length says 1 GiB; 64 MiB follow) cannot make the master buffer
/// it: `rebuild` stops as soon as it reads the frame's length, with a
/// clear error.
#[test]
fn a_volume_sending_an_endless_frame_is_cut_off() {
    use std::io::BufRead;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fake = listener.local_addr().unwrap().to_string();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = std::sync::Arc::clone(&sent);
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            line.clear();
        }
        let mut out = stream;
        let _ = out.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.trove.listing\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        // A frame's length is a varint: 1 GiB is 0x80 0x80 0x80 0x80 0x04.
        let _ = out.write_all(b"5\r\n\x80\x80\x80\x80\x04\r\n");
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..64 {
            let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            if out.write_all(&framed).is_err() {
                return; // the master hung up: what this test wants
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let _ = out.write_all(b"0\r\n\r\n");
    });
    let db = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(trove_tests::bin("trove-master"))
        .args(["rebuild", "--db"])
        .arg(db.path().join("index"))
        .args(["--volumes", &fake])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "rebuild accepted an endless frame");
    assert!(
        stderr.contains("a listing entry of 1073741824 bytes (at most 65536)"),
        "{stderr}"
    );
    let mib = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        mib < 64,
        "the master read all {mib} MiB instead of stopping at the limit"
    );
}
