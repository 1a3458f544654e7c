//! A volume's GET sends blob bytes with `sendfile` (the marker chunks of
//! `common/src/server/zerocopy.rs`): checked here from outside, on a real
//! volume, that the bytes are exactly the stored ones for every kind of
//! range, on keep-alive connections that mix answers of every kind, that
//! a corrupt block is still never sent, and that a slow reader is served
//! (one who stops is cut off after the stall timeout: `protocol.rs`,
//! `an_answer_nobody_reads_is_dropped_after_the_stall_timeout`, whose
//! answer now goes out by `sendfile`).
//!
//! That the zero-copy path is the one taken is seen in the volume's
//! `/proc/PID/io`: `sendfile` counts the bytes it moves as read by the
//! process (`rchar`), which the memory-mapped path never does.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use trove_tests::raw::{connect, header, read_answer, status};
use trove_tests::{
    flip_byte, lone_volume, no_redirects, pattern_bytes, proc_io, sha256_hex, wait_for, Server,
};

const MIB: usize = 1 << 20;

/// Where a lone volume in `dir` keeps `key`.
fn blob_path(dir: &Path, key: &str) -> PathBuf {
    let h = sha256_hex(key.as_bytes());
    dir.join("vol0").join(&h[0..2]).join(&h[2..4]).join(&h)
}

async fn put(v: &Server, key: &str, value: Vec<u8>) {
    let resp = no_redirects()
        .put(format!("http://{}{key}", v.addr))
        .header("trove-master", "1")
        .body(value)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn ranges_sent_by_sendfile_are_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let v = lone_volume(dir.path(), &[]);
    let size = 3 * MIB + MIB / 2 + 7;
    let value = pattern_bytes(size, 11);
    put(&v, "/ranges", value.clone()).await;
    let http = no_redirects();
    let url = format!("http://{}/ranges", v.addr);

    let before = proc_io(v.pid(), "rchar");
    let whole = http.get(&url).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert!(whole.bytes().await.unwrap() == value, "the whole value");
    let read = proc_io(v.pid(), "rchar") - before;
    assert!(
        read >= size as u64,
        "the volume read {read} bytes by system calls for a {size}-byte answer: not sendfile"
    );

    let last = size - 1;
    let cases: Vec<(String, std::ops::Range<usize>)> = vec![
        ("bytes=0-0".into(), 0..1),
        ("bytes=5-99".into(), 5..100),
        // Across one block boundary, and across two.
        (format!("bytes={}-{}", MIB - 10, MIB + 9), MIB - 10..MIB + 10),
        (format!("bytes={}-{}", MIB / 2, 2 * MIB + 3), MIB / 2..2 * MIB + 4),
        // Exactly one block; the short last block; a suffix; open-ended.
        (format!("bytes={}-{}", MIB, 2 * MIB - 1), MIB..2 * MIB),
        (format!("bytes={}-", 3 * MIB), 3 * MIB..size),
        ("bytes=-1000".into(), size - 1000..size),
        (format!("bytes={last}-"), last..size),
        (format!("bytes=1-{}", size + 100), 1..size),
    ];
    for (range, want) in cases {
        let resp = http.get(&url).header("range", &range).send().await.unwrap();
        assert_eq!(resp.status(), 206, "{range}");
        let expect_range = format!("bytes {}-{}/{size}", want.start, want.end - 1);
        assert_eq!(
            resp.headers()["content-range"].to_str().unwrap(),
            expect_range,
            "{range}"
        );
        let got = resp.bytes().await.unwrap();
        assert!(got[..] == value[want.clone()], "{range}: other bytes than stored");
    }
}

/// One raw request and its answer on `s`; a `HEAD` answer has no body
/// whatever its `Content-Length`.
fn ask(s: &mut std::net::TcpStream, method: &str, range: Option<&str>) -> (String, Vec<u8>) {
    let range = range.map(|r| format!("Range: {r}\r\n")).unwrap_or_default();
    write!(s, "{method} /kept HTTP/1.1\r\nHost: x\r\n{range}\r\n").unwrap();
    if method != "HEAD" {
        return read_answer(s);
    }
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    (String::from_utf8_lossy(&head).into_owned(), vec![])
}

#[tokio::test]
async fn one_keep_alive_connection_serves_many_answers_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let v = lone_volume(dir.path(), &[]);
    let size = 2 * MIB + 333;
    let value = pattern_bytes(size, 12);
    put(&v, "/kept", value.clone()).await;
    let mut s = connect(&v.addr);

    // Whole, HEAD (its body is never sent: nothing must be left queued
    // for the next answer), ranges, an unsatisfiable range (an ordinary
    // body), and whole again.
    let (head, body) = ask(&mut s, "GET", None);
    assert_eq!(status(&head), 200);
    assert!(body == value);
    let (head, body) = ask(&mut s, "HEAD", None);
    assert_eq!((status(&head), body.len()), (200, 0));
    assert_eq!(header(&head, "content-length"), Some(size.to_string()));
    let (head, body) = ask(&mut s, "GET", Some("bytes=100-1048675"));
    assert_eq!(status(&head), 206);
    assert!(body[..] == value[100..1_048_676]);
    let (head, _) = ask(&mut s, "HEAD", Some("bytes=5-9"));
    assert_eq!(status(&head), 206);
    let (head, body) = ask(&mut s, "GET", Some(&format!("bytes={size}-")));
    assert_eq!(status(&head), 416, "{}", String::from_utf8_lossy(&body));
    let (head, body) = ask(&mut s, "GET", Some("bytes=-5"));
    assert_eq!(status(&head), 206);
    assert!(body[..] == value[size - 5..]);
    let (head, body) = ask(&mut s, "GET", None);
    assert_eq!(status(&head), 200);
    assert!(body == value);

    // Two requests sent at once (pipelined): answered in order.
    write!(
        s,
        "GET /kept HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n\r\nGET /kept HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    let (_, first) = read_answer(&mut s);
    let (_, second) = read_answer(&mut s);
    assert!(first[..] == value[..10] && second == value);
}

#[tokio::test]
async fn a_corrupt_block_is_never_sent() {
    let dir = tempfile::tempdir().unwrap();
    let v = lone_volume(dir.path(), &[]);
    let value = pattern_bytes(3 * MIB, 13);
    put(&v, "/rotten", value.clone()).await;
    flip_byte(&blob_path(dir.path(), "/rotten"), (MIB + MIB / 2) as u64);
    let url = format!("http://{}/rotten", v.addr);
    let http = no_redirects();

    // The first block is sound: a range within it is served.
    let resp = http
        .get(&url)
        .header("range", "bytes=0-999")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert!(resp.bytes().await.unwrap()[..] == value[..1000]);

    // The whole value: the first block arrives, then the answer is cut
    // before any byte of the second.
    let mut s = connect(&v.addr);
    s.write_all(b"GET /rotten HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert_eq!(status(&String::from_utf8_lossy(&head)), 200);
    let mut got = vec![];
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    assert_eq!(got.len(), MIB, "exactly the sound first block");
    assert!(got[..] == value[..MIB]);

    // The copy is now marked damaged: not served at all.
    wait_for("the copy to be refused as damaged", || async {
        http.get(&url).send().await.unwrap().status() == 503
    })
    .await;
}

#[tokio::test]
async fn a_reader_slower_than_the_stall_timeout_in_all_is_served_whole() {
    let dir = tempfile::tempdir().unwrap();
    let v = lone_volume(dir.path(), &["--stall-timeout", "1s"]);
    let value = pattern_bytes(8 * MIB, 14);
    put(&v, "/slow", value.clone()).await;

    // A reader slower than the volume, but that keeps reading: served.
    let mut s = connect(&v.addr);
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nRange: bytes=0-4194303\r\n\r\n")
        .unwrap();
    let mut answer = vec![];
    let mut buf = vec![0u8; 64 * 1024];
    let started = std::time::Instant::now();
    while answer.len() < 4 * MIB + 200 {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => panic!("a slow reader was cut off: {e}"),
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        let at = answer.windows(4).position(|w| w == b"\r\n\r\n");
        if at.is_some_and(|at| answer.len() - at - 4 == 4 * MIB) {
            break;
        }
    }
    let body_at = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(answer[body_at..] == value[..4 * MIB], "the slow read's bytes");
    assert!(
        started.elapsed() > std::time::Duration::from_secs(1),
        "slower than the stall timeout in all"
    );
}
