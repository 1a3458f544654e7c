//! The client library (`trove-client`) and the `trove` command line against
//! real clusters: every command and exit code, replica fail-over and
//! resumption, the sha256 check, retries through a master restart, Ctrl-C.

use futures::{StreamExt, TryStreamExt};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use trove_client::{ByteRange, Client, Error, GetOptions, ListOptions, PutOptions, RetryPolicy};
use trove_tests::{md5_hex, pattern, pattern_bytes, sha256_hex, wait_for, Cluster, ClusterOptions};

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
    }
}

fn crc32c_hex(bytes: &[u8]) -> String {
    let mut h = trove_common::digest::ContentHasher::crc32c_only();
    h.update(bytes);
    h.finish().crc32c_hex()
}

/// One request read off a raw socket.
struct Request {
    method: String,
    /// The request line and headers.
    head: String,
    /// By `Content-Length`, or decoded from chunks.
    body: Vec<u8>,
    /// The trailer lines of a chunked body.
    trailers: String,
}

/// Reads one line (up to and without its CRLF).
async fn read_line(sock: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        let mut byte = [0u8; 1];
        if sock.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        line.push(byte[0]);
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).ok()
}

/// Lines up to the next empty one, each ended by CRLF: a head, or the
/// trailers after a chunked body.
async fn read_block(sock: &mut tokio::net::TcpStream) -> Option<String> {
    let mut block = String::new();
    loop {
        let line = read_line(sock).await?;
        if line.is_empty() {
            return Some(block);
        }
        block.push_str(&line);
        block.push_str("\r\n");
    }
}

/// One request, or `None` once the client closed the connection.
async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Request> {
    use tokio::io::AsyncReadExt;
    use trove_tests::raw::header;
    let head = read_block(sock).await?;
    let method = head.split(' ').next().unwrap().to_string();
    let mut body = vec![];
    let mut trailers = String::new();
    if header(&head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let size = usize::from_str_radix(read_line(sock).await?.trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            let at = body.len();
            body.resize(at + size, 0);
            sock.read_exact(&mut body[at..]).await.ok()?;
            assert_eq!(read_line(sock).await?, "", "a chunk ends with CRLF");
        }
        trailers = read_block(sock).await?;
    } else {
        let len = header(&head, "content-length").map_or(0, |v| v.parse::<usize>().unwrap());
        body.resize(len, 0);
        sock.read_exact(&mut body).await.ok()?;
    }
    Some(Request {
        method,
        head,
        body,
        trailers,
    })
}

/// A one-shot stream cannot be hashed before it is sent. It goes chunked,
/// its CRC32C following it as a trailer for the master to check before it
/// commits, and its length, when known, as `Trove-Length` (a
/// `Content-Length` body could carry no trailer, and a replace damaged on
/// the way would then be caught only after it had replaced the old value).
/// (Given its md5, which the master checks the same way, it goes with its
/// length.) The client also compares the `201`'s `Key-Crc32c` with what it sent: a
/// stand-in master that ignores the trailer (one that predates it) and
/// answers with another CRC makes the put fail as garbled — and the key is
/// deleted again, so no value other than the one sent stays stored.
#[tokio::test]
async fn a_stream_the_master_received_garbled_fails_and_is_deleted() {
    let value = pattern_bytes(200_000, 9);
    for len in [None, Some(value.len() as u64)] {
        let (put, trailers) = garbled_put(&value, len, &PutOptions::default()).await;
        let head = put.to_ascii_lowercase();
        assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
        assert!(head.contains("trailer: key-crc32c\r\n"), "{head}");
        assert!(!head.contains("content-length"), "{head}");
        assert_eq!(
            trailers.to_ascii_lowercase(),
            format!("key-crc32c: {}\r\n", crc32c_hex(&value))
        );
        match len {
            Some(n) => assert!(head.contains(&format!("trove-length: {n}\r\n")), "{head}"),
            None => assert!(!head.contains("trove-length"), "{head}"),
        }
    }
    // With its md5 given, which the master checks before committing, a
    // stream of known length needs no trailer: it goes with its length.
    let md5 = PutOptions {
        content_md5: Some(<md5::Md5 as md5::Digest>::digest(&value).into()),
        ..Default::default()
    };
    let (put, trailers) = garbled_put(&value, Some(value.len() as u64), &md5).await;
    let head = put.to_ascii_lowercase();
    assert!(
        head.contains(&format!("content-length: {}\r\n", value.len())),
        "{head}"
    );
    assert!(head.contains("content-md5: "), "{head}");
    assert!(!head.contains("trailer") && trailers.is_empty(), "{head}");
}

/// The same against a real master, through a proxy that flips one byte
/// of the value on its way: a stream replacing a live key is refused
/// before the commit (the master's CRC32C of what arrived is not the
/// trailer's), so the old value stays readable. Sent with a
/// `Content-Length`, it would have been caught only from the `201`, after
/// the damaged value had replaced the old one.
#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_replace_damaged_on_the_way_is_refused_and_the_old_value_stays() {
    let c = Cluster::start_default().await;
    let direct = c.client();
    let old = pattern_bytes(300_000, 11);
    direct
        .put_bytes("/damaged/k", old.clone().into(), &PutOptions::default())
        .await
        .unwrap();
    // Far enough in to be past the request's head, inside a chunk's data.
    let proxy = flipping_proxy(&c.master.addr, 150_000).await;
    let through_proxy = Client::new(&format!("http://{proxy}")).unwrap();
    let new = pattern_bytes(300_000, 12);
    let chunks = futures::stream::iter(
        new.chunks(64 << 10)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let replace = PutOptions {
        replace: true,
        ..Default::default()
    };
    let e = through_proxy
        .put_stream("/damaged/k", chunks, Some(new.len() as u64), &replace)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Rejected { status: 400, message, .. } if message.contains("Key-Crc32c mismatch")),
        "{e}"
    );
    let mut read = Vec::new();
    direct
        .get_to("/damaged/k", &mut read, &GetOptions::default())
        .await
        .unwrap();
    assert!(read == old, "the old value, whole");
}

/// A TCP proxy to `upstream` that flips the byte at `offset` of what the
/// first connection sends (answers pass unchanged). Returns its address.
async fn flipping_proxy(upstream: &str, offset: usize) -> String {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let upstream = upstream.to_string();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
            let (mut from_client, mut to_client) = client.into_split();
            let (mut from_server, mut to_server) = server.into_split();
            let flip_at = std::mem::take(&mut first).then_some(offset);
            tokio::spawn(async move {
                let (mut buf, mut seen) = (vec![0u8; 64 << 10], 0usize);
                loop {
                    let n = match from_client.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if let Some(at) = flip_at.filter(|at| (seen..seen + n).contains(at)) {
                        buf[at - seen] ^= 0x01;
                    }
                    seen += n;
                    if to_server.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = to_server.shutdown().await;
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                let _ = to_client.shutdown().await;
            });
        }
    });
    addr
}

/// Streams `value` to a stand-in master that answers the PUT with a wrong
/// CRC32C, checks the put fails as garbled and is followed by a DELETE,
/// and returns the PUT's head and trailers.
async fn garbled_put(value: &[u8], len: Option<u64>, opts: &PutOptions) -> (String, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let wrong_crc = format!("{:08x}", u32::from_str_radix(&crc32c_hex(value), 16).unwrap() ^ 1);
    let answer_put = format!(
        "HTTP/1.1 201 Created\r\nkey-sha256: {}\r\nkey-crc32c: {wrong_crc}\r\ncontent-length: 0\r\n\r\n",
        sha256_hex(value)
    );
    let master = tokio::spawn(async move {
        let mut seen = vec![];
        while seen.len() < 2 {
            let (mut sock, _) = listener.accept().await.unwrap();
            while let Some(req) = read_request(&mut sock).await {
                let answer = match req.method.as_str() {
                    "PUT" => answer_put.as_str(),
                    _ => "HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
                };
                sock.write_all(answer.as_bytes()).await.unwrap();
                seen.push(req);
                if seen.len() == 2 {
                    break;
                }
            }
        }
        seen
    });
    let client = Client::new(&format!("http://{addr}")).unwrap();
    let chunks = futures::stream::iter(
        value
            .chunks(64 << 10)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let e = client
        .put_stream("/garbled/k", chunks, len, opts)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Garbled { received, .. } if *received == wrong_crc),
        "{e}"
    );
    assert!(e.to_string().contains("send it again"), "{e}");
    let mut seen = tokio::time::timeout(Duration::from_secs(30), master)
        .await
        .expect("the client deletes the garbled key")
        .unwrap();
    let methods: Vec<_> = seen.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["PUT", "DELETE"]);
    let put = seen.remove(0);
    assert!(put.body == value, "the PUT carried other bytes than the stream's");
    (put.head, put.trailers)
}

#[tokio::test]
async fn library_writes_reads_lists_and_deletes() {
    let c = Cluster::start_default().await;
    let client = c.client();
    let opts = PutOptions::default();

    let value = pattern_bytes(300_000, 1);
    let w = client
        .put_bytes("/lib/bytes", value.clone().into(), &opts)
        .await
        .unwrap();
    assert_eq!(
        (w.size, w.sha256.as_str()),
        (300_000, sha256_hex(&value).as_str())
    );
    assert_eq!(w.crc32c, Some(crc32c_hex(&value)), "the 201's Key-Crc32c");
    let e = client
        .put_bytes("/lib/bytes", value.clone().into(), &opts)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Exists { .. }), "{e}");

    let path = c.dir.path().join("file.bin");
    let file_value = pattern_bytes(1 << 20, 2);
    std::fs::write(&path, &file_value).unwrap();
    let w = client.put_file("/lib/file", &path, &opts).await.unwrap();
    assert_eq!(w.sha256, sha256_hex(&file_value));

    // A one-shot stream of unknown length goes out chunked.
    let (stream, digest) = pattern(5_000_000, 3);
    let w = client
        .put_stream("/lib/stream", stream, None, &opts)
        .await
        .unwrap();
    assert_eq!(w.size, 5_000_000);
    assert_eq!(Some(w.sha256), digest.lock().unwrap().clone());
    let streamed = pattern_bytes(5_000_000, 3);
    assert_eq!(w.crc32c, Some(crc32c_hex(&streamed)));

    let s = client.stat("/lib/bytes").await.unwrap();
    assert_eq!(s.size, 300_000);
    assert_eq!(s.md5, md5_hex(&value));
    assert_eq!(s.sha256, sha256_hex(&value));
    assert_eq!(s.volumes.len(), 2);
    assert!(s.balanced);
    assert!(client.exists("/lib/file").await.unwrap());
    assert!(!client.exists("/lib/nothing").await.unwrap());

    let mut out = Vec::new();
    let r = client
        .get_to("/lib/bytes", &mut out, &GetOptions::default())
        .await
        .unwrap();
    assert!(out == value, "the value read back is the value written");
    assert!(r.verified && r.resumes == 0 && r.bytes == 300_000);
    let ranged = |range| GetOptions {
        range: Some(range),
        ..Default::default()
    };
    let mut out = Vec::new();
    let r = client
        .get_to(
            "/lib/bytes",
            &mut out,
            &ranged(ByteRange::Bounded { first: 10, last: 19 }),
        )
        .await
        .unwrap();
    assert_eq!(out, &value[10..20]);
    assert!(
        !r.verified,
        "a range cannot be checked against the whole value's sha256"
    );
    let mut out = Vec::new();
    client
        .get_to("/lib/bytes", &mut out, &ranged(ByteRange::Suffix(5)))
        .await
        .unwrap();
    assert_eq!(out, &value[value.len() - 5..]);
    let e = client
        .get("/lib/bytes", &ranged(ByteRange::From(300_000)))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(e, Error::RangeNotSatisfiable { len: 300_000, .. }),
        "{e}"
    );
    let mut stream = client.get("/lib/stream", &GetOptions::default()).await.unwrap();
    let mut n = 0;
    while let Some(chunk) = stream.next().await {
        n += chunk.unwrap().len();
    }
    assert_eq!(n, 5_000_000);
    assert!(stream.report().verified);

    // Listing: a stream over pages of 7.
    let keys: Vec<String> = (0..25).map(|i| format!("/lib/list/{i:02}")).collect();
    for k in &keys {
        client.put_bytes(k, "x".into(), &opts).await.unwrap();
    }
    let small_pages = ListOptions {
        page_size: Some(7),
        ..Default::default()
    };
    let listed: Vec<String> = client
        .list("/lib/list/", small_pages.clone())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed, keys);
    let page = client.list_page("/lib/list/", &small_pages).await.unwrap();
    assert_eq!(page.keys, keys[..7]);
    assert_eq!(page.next.as_deref(), Some("/lib/list/07"));

    // Unlink, then delete; typed errors for what is gone.
    client.unlink("/lib/list/00").await.unwrap();
    assert!(client.stat("/lib/list/00").await.unwrap_err().is_not_found());
    let unlinked = ListOptions {
        unlinked: true,
        ..Default::default()
    };
    let gone: Vec<String> = client.list("/lib/", unlinked).try_collect().await.unwrap();
    assert_eq!(gone, ["/lib/list/00"]);
    assert!(matches!(
        client.unlink("/lib/list/00").await,
        Err(Error::NotFound { .. })
    ));
    client.delete("/lib/list/00").await.unwrap();
    assert!(matches!(
        client.delete("/lib/list/00").await,
        Err(Error::NotFound { .. })
    ));
    let e = client
        .get("/lib/none", &GetOptions::default())
        .await
        .err()
        .unwrap();
    assert!(e.is_not_found(), "{e}");

    // Bad input is refused with the reason.
    assert!(matches!(
        client.stat("/a/../b").await,
        Err(Error::InvalidKey { .. })
    ));
    // A sha256 the body does not have: the master refuses, stores nothing.
    let wrong = PutOptions {
        sha256: Some([0; 32]),
        ..Default::default()
    };
    let e = client
        .put_bytes("/lib/wrong", "abc".into(), &wrong)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Rejected { status: 400, .. }), "{e}");
    assert!(!client.exists("/lib/wrong").await.unwrap());
    let e = client
        .put_bytes("/lib/empty", "".into(), &opts)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Rejected { status: 411, .. }), "{e}");

    // Fail-over: an unreachable first master is skipped.
    let failing_over = Client::builder()
        .master("http://127.0.0.1:1")
        .master(format!("http://{}", c.master.addr))
        .retry(quick_retries())
        .build()
        .unwrap();
    failing_over
        .put_bytes("/lib/failover", "ok".into(), &opts)
        .await
        .unwrap();
    assert_eq!(failing_over.stat("/lib/failover").await.unwrap().size, 2);
    let unreachable = Client::builder()
        .master("http://127.0.0.1:1")
        .retry(quick_retries())
        .build()
        .unwrap();
    let e = unreachable.stat("/lib/bytes").await.unwrap_err();
    assert!(
        matches!(e, Error::Transport { .. }) && e.to_string().contains("cannot connect"),
        "{e}"
    );
}

/// `PutOptions::meta` carries only the metadata Trove stores. A control
/// header smuggled through it (`Trove-Replace` would replace a write-once
/// key) or a name the master would drop is refused, as is a name or value
/// no request can carry — at once, before anything is sent, and never
/// retried — whatever kind of write it is.
#[tokio::test]
async fn meta_other_than_stored_metadata_is_refused_before_anything_is_sent() {
    let c = Cluster::start_default().await;
    let retries = Arc::new(Mutex::new(0));
    let counted = Arc::clone(&retries);
    // The default policy: 10 attempts, ~20 s, were the error retryable.
    let client = Client::builder()
        .master(format!("http://{}", c.master.addr))
        .on_retry(move |_, _| *counted.lock().unwrap() += 1)
        .build()
        .unwrap();
    let meta = |name: &str, value: &str| PutOptions {
        meta: vec![(name.to_string(), value.to_string())],
        ..Default::default()
    };

    client
        .put_bytes("/meta/once", "abcdef".into(), &PutOptions::default())
        .await
        .unwrap();
    let e = client
        .put_bytes("/meta/once", "smuggled".into(), &meta("Trove-Replace", "1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidHeader { name, .. } if name == "Trove-Replace"),
        "{e}"
    );
    assert!(
        e.to_string().contains("x-amz-meta-<name>"),
        "says what is allowed: {e}"
    );
    assert_eq!(
        c.get("/meta/once").await,
        (200, "abcdef".into()),
        "the key is unchanged"
    );
    for name in [
        "trove-compose",
        "If-None-Match",
        "Trove-Expires-After",
        "Content-MD5",
        "X-Custom",
    ] {
        let e = client
            .put_bytes("/meta/other", "v".into(), &meta(name, "1"))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidHeader { .. }), "{name}: {e}");
    }

    for (name, value) in [("x-amz-meta-a", "line\nbreak"), ("Bad Name", "x")] {
        let started = std::time::Instant::now();
        let e = client
            .put_bytes("/meta/bad", "v".into(), &meta(name, value))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidHeader { name: n, value: v, .. } if n == name && v == value),
            "{e}"
        );
        assert!(!e.is_retryable(), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    let stream = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from("v"))]);
    let e = client
        .put_stream("/meta/bad", stream, Some(1), &meta("x-amz-meta-a", "a\r\nb"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidHeader { .. }), "{e}");
    let sources = [trove_client::ComposeSource {
        key: "/meta/once".into(),
        ..Default::default()
    }];
    let e = client
        .compose("/meta/bad", &sources, &meta("Trove-Replace", "1"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidHeader { .. }), "{e}");
    assert_eq!(*retries.lock().unwrap(), 0, "a refused header is never retried");
    assert!(!client.exists("/meta/bad").await.unwrap());

    // The stored metadata goes through, names in any case.
    let opts = PutOptions {
        meta: vec![
            ("Content-Type".into(), "text/plain".into()),
            ("X-Amz-Meta-City".into(), "Zürich".into()),
        ],
        ..Default::default()
    };
    client.put_bytes("/meta/kept", "v".into(), &opts).await.unwrap();
    let stat = client.stat("/meta/kept").await.unwrap();
    assert_eq!(
        stat.meta,
        [
            ("content-type".to_string(), "text/plain".to_string()),
            ("x-amz-meta-city".to_string(), "Zürich".to_string())
        ]
    );
}

/// A caller's body stream that fails, or ends before the length it
/// announced, is the caller's error (`Io`, its reason in the message), not
/// an unreachable master; nothing is stored, and the key can be written
/// again.
#[tokio::test]
async fn a_failing_body_stream_is_the_callers_error() {
    let c = Cluster::start_default().await;
    let client = c.client();
    let mib = || Ok::<_, std::io::Error>(bytes::Bytes::from(vec![7u8; 1 << 20]));

    let failing = futures::stream::iter([mib(), mib(), Err(std::io::Error::other("boom"))]);
    let started = std::time::Instant::now();
    let e = client
        .put_stream("/body/failing", failing, None, &PutOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert!(
        e.to_string().contains("boom") && !e.to_string().contains("cannot reach"),
        "{e}"
    );
    assert!(!e.is_retryable(), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Short of its length: chunked with the length as `Trove-Length`, and
    // with a `Content-Length` when a digest is given up front.
    let with_sha256 = PutOptions {
        sha256: Some([1; 32]),
        ..Default::default()
    };
    for opts in [PutOptions::default(), with_sha256] {
        let short = futures::stream::iter([mib()]);
        let e = client
            .put_stream("/body/short", short, Some(3 << 20), &opts)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
        assert!(
            e.to_string().contains(&format!(
                "ended after {} of the {} bytes announced",
                1 << 20,
                3 << 20
            )),
            "{e}"
        );
    }

    for key in ["/body/failing", "/body/short"] {
        assert!(!client.exists(key).await.unwrap(), "{key}: nothing stored");
        // Retried past the master's brief hold on a key whose writer hung up.
        client
            .put_bytes(key, "again".into(), &PutOptions::default())
            .await
            .unwrap();
    }
}

/// A `HEAD` answer has no body: the reason of a `503` is in its
/// `Trove-Error` header, which `stat`, `exists` and `stat_part` report.
#[tokio::test]
async fn stat_of_a_key_whose_replicas_are_all_down_says_why() {
    let mut c = Cluster::start_default().await;
    let client = Client::builder()
        .master(format!("http://{}", c.master.addr))
        .retry(quick_retries())
        .build()
        .unwrap();
    client
        .put_bytes("/down/k", "v".into(), &PutOptions::default())
        .await
        .unwrap();
    for addr in client.stat("/down/k").await.unwrap().volumes {
        let i = c.volume_index(&addr);
        c.volumes[i].kill();
        c.wait_volume_health(i, false).await;
    }
    let unavailable = |e: Error| match e {
        Error::Unavailable { message } => message,
        e => panic!("{e}"),
    };
    let message = unavailable(client.stat("/down/k").await.unwrap_err());
    assert!(message.contains("down"), "{message:?}");
    let message = unavailable(client.exists("/down/k").await.unwrap_err());
    assert!(message.contains("down"), "{message:?}");
    let message = unavailable(client.stat_part("/down/k", 1).await.unwrap_err());
    assert!(message.contains("down"), "{message:?}");
}

/// Reads 32 MiB, killing the volume that serves it after the first chunk
/// (once `before_kill` returns); the read must resume from the other replica
/// and verify.
async fn read_through_a_volume_kill<F, Fut>(mut c: Cluster, before_kill: F) -> trove_client::GetReport
where
    F: FnOnce(trove_client::Stat) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let client = c.client();
    let (stream, digest) = pattern(32 << 20, 11);
    client
        .put_stream("/big/resume", stream, Some(32 << 20), &PutOptions::default())
        .await
        .unwrap();
    let sha = digest.lock().unwrap().clone().unwrap();

    let mut reader = client.get("/big/resume", &GetOptions::default()).await.unwrap();
    let mut hasher = sha2::Sha256::new();
    use sha2::Digest;
    let first = reader.next().await.unwrap().unwrap();
    hasher.update(&first);
    let mut read = first.len() as u64;
    let serving = reader.source().expect("a replica is serving");
    // Far more than a socket can buffer is still to come: kill its volume.
    assert!(read < 8 << 20);
    before_kill(reader.stat().clone()).await;
    let i = c.volume_index(&serving);
    c.volumes[i].kill();
    while let Some(chunk) = reader.next().await {
        let chunk = chunk.unwrap();
        read += chunk.len() as u64;
        hasher.update(&chunk);
    }
    assert_eq!(read, 32 << 20);
    assert_eq!(hex::encode(hasher.finalize()), sha);
    let report = reader.report();
    assert!(report.resumes >= 1, "{report:?}");
    assert!(report.verified, "{report:?}");
    assert_eq!(report.sources.first(), Some(&serving));
    assert!(
        report.sources.iter().skip(1).any(|s| s != &serving),
        "the rest came from the other replica: {report:?}"
    );
    assert!(
        report.failures.iter().any(|f| f.starts_with(&serving)),
        "{report:?}"
    );
    report
}

#[tokio::test]
async fn get_resumes_from_another_replica_when_its_volume_dies() {
    let c = Cluster::start_default().await;
    read_through_a_volume_kill(c, |_| async {}).await;
}

#[tokio::test]
async fn a_signed_read_resumes_on_another_replica_after_its_url_expired() {
    const SECRET: &str = "client test secret";
    let c = Cluster::start(ClusterOptions {
        master_args: vec!["--secret".into(), SECRET.into(), "--url-ttl".into(), "1s".into()],
        volume_args: vec!["--secret".into(), SECRET.into()],
        ..Default::default()
    })
    .await;
    // The redirect's signature is valid on every volume (it covers the
    // path, not the host), but only until it expires: wait that out before
    // the kill, so the resumed read must ask the master for a fresh one.
    let report = read_through_a_volume_kill(c, |stat| async move {
        let expires: u64 = stat
            .location
            .split(['?', '&'])
            .find_map(|p| p.strip_prefix("expires="))
            .expect("a signed redirect")
            .parse()
            .unwrap();
        let now_secs = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        wait_for("the signed URL to expire", || async { now_secs() > expires }).await;
    })
    .await;
    assert!(
        report.relocations >= 1,
        "a fresh redirect was asked for: {report:?}"
    );
}

/// Flips one byte of `key`'s first replica on disk, behind its volume's
/// back; with `unchecked`, also drops the blob's block checksums from its
/// sidecar (a blob stored by a volume that kept none), so that only the
/// reader's sha256 can notice. Returns the damaged replica's volume.
async fn rot(c: &Cluster, key: &str, unchecked: bool) -> String {
    let bad = c.client().stat(key).await.unwrap().volumes[0].clone();
    let blob = c.blob_path(c.volume_index(&bad), key);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[12_345] ^= 0x01;
    std::fs::write(&blob, &bytes).unwrap();
    if unchecked {
        let i = c.volume_index(&bad);
        let mut meta = c.blob_meta(i, key).expect("the blob has metadata");
        assert!(meta.as_object_mut().unwrap().remove("crc32c").is_some(), "{meta}");
        c.write_blob_meta(i, key, meta.to_string().as_bytes());
    }
    bad
}

#[tokio::test]
async fn a_corrupt_replica_is_detected_and_the_value_served_from_another() {
    let c = Cluster::start_default().await;
    let client = c.client();
    let value = pattern_bytes((1 << 20) + 5, 5);
    for key in ["/rot/checked", "/rot/unchecked"] {
        client
            .put_bytes(key, value.clone().into(), &PutOptions::default())
            .await
            .unwrap();
    }
    // The master alternates replicas: within a few reads, each is first.
    // Every read delivers the good value; what noticed the rot is reported.
    let reads = |key: &'static str| {
        let (c, client, value) = (&c, &client, &value);
        async move {
            let mut reports = vec![];
            for i in 0..4 {
                let out = c.dir.path().join(format!("out{i}"));
                let report = client.download(key, &out, &GetOptions::default()).await.unwrap();
                assert!(
                    std::fs::read(&out).unwrap() == *value,
                    "the file holds the good value"
                );
                assert!(report.verified);
                reports.push(report);
            }
            reports
        }
    };

    // The volume's block checksums catch rot on disk: it refuses the copy,
    // and the reader moves on to the other replica.
    let bad = rot(&c, "/rot/checked", false).await;
    let reports = reads("/rot/checked").await;
    assert!(
        reports
            .iter()
            .any(|r| r.failures.iter().any(|f| f.starts_with(&bad))),
        "the damaged replica was tried and refused at least once: {reports:?}"
    );
    assert!(reports.iter().all(|r| r.corrupt.is_empty()), "{reports:?}");

    // Bytes the volume cannot check reach the reader: its sha256 catches
    // them, and the value is fetched again from the other replica.
    let bad = rot(&c, "/rot/unchecked", true).await;
    let reports = reads("/rot/unchecked").await;
    assert!(
        reports.iter().any(|r| r.corrupt == [bad.clone()]),
        "the corrupt replica was read at least once and caught: {reports:?}"
    );
    assert!(
        reports.iter().all(|r| r.corrupt.iter().all(|v| v == &bad)),
        "{reports:?}"
    );
    // To stdout the bytes are gone before the check: it fails loudly, exit 1.
    let mut failures = 0;
    for _ in 0..4 {
        let r = c.trove(&["get", "/rot/unchecked"]).await;
        if r.code == 1 {
            assert!(r.stderr.contains("sha256 mismatch"), "{}", r.stderr);
            failures += 1;
        } else {
            assert_eq!(r.code, 0, "{}", r.stderr);
        }
    }
    assert!(
        failures >= 1,
        "the CLI read the corrupt replica at least once and said so"
    );
}

fn write_tree(dir: &Path, files: usize, size: usize) -> Vec<(String, Vec<u8>)> {
    (0..files)
        .map(|i| {
            let rel = format!("d{}/f{i:03}.bin", i % 7);
            let value = pattern_bytes(size + i, i as u64);
            let path = dir.join(&rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &value).unwrap();
            (rel, value)
        })
        .collect()
}

#[tokio::test]
async fn bulk_copy_of_500_files_survives_a_master_restart() {
    let mut c = Cluster::start_default().await;
    let src = c.dir.path().join("src");
    let tree = write_tree(&src, 500, 4096);
    let mut child = c
        .trove_command()
        .args([
            "cp",
            "-r",
            src.to_str().unwrap(),
            "/bulk/",
            "--jobs",
            "8",
            "--retries",
            "30",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    // The CLI says when it retries: collect its stderr as it comes.
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let log = Arc::clone(&stderr);
    let reader = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            log.lock().unwrap().push_str(&format!("{line}\n"));
        }
    });
    let client = c.client();
    let count = || async {
        let keys: Vec<String> = client
            .list("/bulk/", ListOptions::default())
            .try_collect()
            .await
            .unwrap();
        keys.len()
    };
    wait_for("the copy under way", || async { count().await >= 50 }).await;
    // Freeze the copy so that it is certainly mid-way, take the master away
    // under it, let it run into the dead master, then bring the master back.
    trove_tests::signal(pid, "STOP");
    let before = count().await;
    assert!(before < 500, "the copy is mid-way ({before} keys)");
    c.master.kill();
    trove_tests::signal(pid, "CONT");
    wait_for("the copy to find the master gone and retry", || async {
        stderr.lock().unwrap().contains("retrying in")
    })
    .await;
    c.master.restart();
    c.wait_until_ready().await;
    let out = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .expect("the copy finishes")
        .unwrap();
    reader.await.unwrap();
    assert!(out.status.success(), "{}", stderr.lock().unwrap());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(
        summary["copied"].as_u64().unwrap() + summary["skipped"].as_u64().unwrap(),
        500
    );
    assert_eq!(count().await, 500);
    for (rel, value) in &tree {
        let s = client.stat(&format!("/bulk/{rel}")).await.unwrap();
        assert_eq!(
            (s.size, s.md5.as_str()),
            (value.len() as u64, md5_hex(value).as_str()),
            "{rel}"
        );
    }

    // Again: everything matches and is skipped.
    let again = c
        .trove(&[
            "cp",
            "-r",
            src.to_str().unwrap(),
            "/bulk",
            "--json",
            "--jobs",
            "8",
        ])
        .await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    let summary: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(
        (summary["copied"].as_u64(), summary["skipped"].as_u64()),
        (Some(0), Some(500))
    );

    // Down again into a new directory, verified, then skipped.
    let dst = c.dir.path().join("dst");
    let down = c
        .trove(&["cp", "-r", "trove:/bulk/", dst.to_str().unwrap(), "--json"])
        .await;
    assert_eq!(down.code, 0, "{}", down.stderr);
    for (rel, value) in &tree {
        assert!(std::fs::read(dst.join(rel)).unwrap() == *value, "{rel}");
    }
    let down = c
        .trove(&["cp", "-r", "/bulk", dst.to_str().unwrap(), "--json"])
        .await;
    let summary: serde_json::Value = serde_json::from_str(&down.stdout).unwrap();
    assert_eq!(summary["skipped"], 500, "{summary}");
}

#[tokio::test]
async fn ctrl_c_during_put_leaves_nothing() {
    let c = Cluster::start_default().await;
    let mut child = c
        .trove_command()
        .args(["put", "-", "/interrupted"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&pattern_bytes(1 << 20, 9)).await.unwrap();
    wait_for("the upload reaching the volumes", || async {
        (0..3).any(|i| c.temp_files(i) > 0)
    })
    .await;
    trove_tests::signal(child.id().unwrap(), "INT");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("trove stops on Ctrl-C")
        .unwrap();
    assert_eq!(out.status.code(), Some(130));
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"));
    drop(stdin);
    assert_eq!(c.head("/interrupted").await.status(), 404);
    wait_for("no temp files and no blob left", || async {
        (0..3).all(|i| c.temp_files(i) == 0) && c.copies_of("/interrupted").await == 0
    })
    .await;
    assert_eq!(c.head("/interrupted").await.status(), 404);
}

#[tokio::test]
async fn cli_commands_and_exit_codes() {
    let c = Cluster::start_default().await;
    let dir = c.dir.path();
    let value = pattern_bytes(200_000, 7);
    let file = dir.join("a.bin");
    std::fs::write(&file, &value).unwrap();
    let f = file.to_str().unwrap();

    // put / get / stat
    assert_eq!(c.trove(&["put", f, "docs/a.bin"]).await.code, 0);
    let again = c.trove(&["put", f, "/docs/a.bin"]).await;
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    let out = dir.join("a.copy");
    assert_eq!(
        c.trove(&["get", "/docs/a.bin", "-o", out.to_str().unwrap()])
            .await
            .code,
        0
    );
    assert!(std::fs::read(&out).unwrap() == value);
    let stat = c.trove(&["stat", "docs/a.bin"]).await;
    assert_eq!(stat.code, 0);
    for expected in [
        "200000",
        &md5_hex(&value),
        &sha256_hex(&value),
        "expires   never",
        "balanced",
    ] {
        assert!(stat.stdout.contains(expected), "{expected} in {}", stat.stdout);
    }
    let json: serde_json::Value =
        serde_json::from_str(&c.trove(&["stat", "/docs/a.bin", "--json"]).await.stdout).unwrap();
    assert_eq!(json["size"], 200_000);
    assert_eq!(json["volumes"].as_array().unwrap().len(), 2);

    // stdin and stdout
    let mut child = c
        .trove_command()
        .args(["put", "-", "/docs/stdin.txt", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello from stdin")
        .await
        .unwrap();
    let put = child.wait_with_output().await.unwrap();
    assert!(put.status.success());
    assert!(
        put.stdout.is_empty() && put.stderr.is_empty(),
        "--quiet prints nothing"
    );
    let got = c.trove(&["get", "docs/stdin.txt"]).await;
    assert_eq!((got.code, got.stdout.as_str()), (0, "hello from stdin"));

    // ls, ls -l, JSON
    let ls = c.trove(&["ls", "/docs/"]).await;
    assert_eq!(ls.stdout, "/docs/a.bin\n/docs/stdin.txt\n");
    let long = c.trove(&["ls", "-l", "docs"]).await;
    let line = long.stdout.lines().next().unwrap();
    assert!(
        line.contains("2 replicas") && line.ends_with("/docs/a.bin") && line.contains("KiB"),
        "{line}"
    );
    let json: serde_json::Value = serde_json::from_str(&c.trove(&["ls", "--json"]).await.stdout).unwrap();
    assert_eq!(json, serde_json::json!(["/docs/a.bin", "/docs/stdin.txt"]));
    let empty = c.trove(&["ls", "/nothing/"]).await;
    assert_eq!((empty.code, empty.stdout.as_str()), (0, ""));

    // not found: exit 3
    for args in [
        &["get", "/docs/none"][..],
        &["get", "/docs/none", "-o", out.to_str().unwrap()],
        &["stat", "/docs/none"],
        &["rm", "/docs/none"],
        &["unlink", "/docs/none"],
        &["cp", "-r", "/nothing/", dir.join("x").to_str().unwrap()],
    ] {
        let r = c.trove(args).await;
        assert_eq!(r.code, 3, "{args:?}: {}", r.stderr);
    }

    // unlink, rm
    assert_eq!(c.trove(&["unlink", "/docs/stdin.txt"]).await.code, 0);
    assert_eq!(c.trove(&["get", "/docs/stdin.txt"]).await.code, 3);
    assert_eq!(c.trove(&["ls", "--unlinked"]).await.stdout, "/docs/stdin.txt\n");
    assert_eq!(c.trove(&["rm", "/docs/stdin.txt"]).await.code, 0);
    for k in ["/docs/x", "/docs/y"] {
        assert_eq!(c.put(k, "v").await, 201);
    }
    assert_eq!(c.trove(&["rm", "/docs/x", "/docs/y"]).await.code, 0);
    assert_eq!(c.put("/docs/x", "v").await, 201);
    let partial = c.trove(&["rm", "/docs/missing", "/docs/x"]).await;
    assert_eq!(partial.code, 3, "the first failure decides");
    assert_eq!(
        c.head("/docs/x").await.status(),
        404,
        "the other key was still deleted"
    );

    // health, ping, status
    let health = c.trove(&["health"]).await;
    assert_eq!(health.code, 0);
    assert!(health.stdout.contains("ready"), "{}", health.stdout);
    let ping = c.trove(&["ping"]).await;
    assert_eq!(ping.code, 0);
    assert_eq!(
        ping.stdout.lines().filter(|l| l.ends_with(" ms")).count(),
        4,
        "{}",
        ping.stdout
    );
    let status = c.trove(&["status"]).await;
    assert_eq!(status.code, 0);
    for v in &c.volumes {
        assert!(status.stdout.contains(&v.addr), "{}", status.stdout);
    }
    assert!(status.stdout.contains("keys: 1 live"), "{}", status.stdout);
    let json: serde_json::Value = serde_json::from_str(&c.trove(&["status", "--json"]).await.stdout).unwrap();
    assert_eq!(json["status"]["volumes"].as_array().unwrap().len(), 3);

    // usage: exit 2
    for args in [
        &[][..],
        &["put", f],
        &["put", dir.to_str().unwrap(), "/k"],
        &["cp", dir.to_str().unwrap(), "/k/"],
        &["--master", "ftp://x", "ls"],
        &["ls", "--bogus"],
        &["config", "set", "colour", "blue"],
    ] {
        let r = c.trove(args).await;
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
    }
    // an unreachable master: exit 1, and the reason
    let r = c
        .trove(&["--master", "http://127.0.0.1:1", "--retries", "1", "ls"])
        .await;
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("cannot reach http://127.0.0.1:1"),
        "{}",
        r.stderr
    );

    // the config file names the master when nothing else does
    let config = dir.join("trove-config.json");
    let set = c
        .trove(&["config", "set", "master", &format!("http://{}", c.master.addr)])
        .await;
    assert_eq!(set.code, 0);
    assert_eq!(
        c.trove(&["config", "path"]).await.stdout.trim(),
        config.to_str().unwrap()
    );
    assert_eq!(
        c.trove(&["config", "get", "master"]).await.stdout.trim(),
        format!("http://{}", c.master.addr)
    );
    let out = c
        .trove_command()
        .env_remove("TROVE_MASTER")
        .args(["ls"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/docs/a.bin\n");
}

#[tokio::test]
async fn sync_replaces_what_differs_and_deletes_what_is_gone() {
    let c = Cluster::start_default().await;
    let src = c.dir.path().join("src");
    write_tree(&src, 5, 1000);
    let s = src.to_str().unwrap();
    assert_eq!(c.trove(&["sync", s, "/mirror/"]).await.code, 0);
    // Change one file, remove another, and put an extra key.
    let changed = src.join("d0/f000.bin");
    std::fs::write(&changed, b"new content").unwrap();
    std::fs::remove_file(src.join("d1/f001.bin")).unwrap();
    assert_eq!(c.put("/mirror/extra", "x").await, 201);
    // cp refuses to replace a key (write-once)...
    let cp = c.trove(&["cp", "-r", s, "/mirror/"]).await;
    assert_eq!(cp.code, 1);
    assert!(cp.stderr.contains("write-once"), "{}", cp.stderr);
    // ...sync replaces it, and --delete removes what the source lacks.
    let sync = c.trove(&["sync", s, "/mirror/", "--delete", "--json"]).await;
    assert_eq!(sync.code, 0, "{}", sync.stderr);
    let summary: serde_json::Value = serde_json::from_str(&sync.stdout).unwrap();
    assert_eq!(
        (
            summary["copied"].as_u64(),
            summary["skipped"].as_u64(),
            summary["deleted"].as_u64()
        ),
        (Some(1), Some(3), Some(2))
    );
    let (status, body) = c.get("/mirror/d0/f000.bin").await;
    assert_eq!((status, &body[..]), (200, &b"new content"[..]));
    let keys: Vec<String> = c
        .client()
        .list("/mirror/", ListOptions::default())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(keys.len(), 4);
    assert!(!keys.contains(&"/mirror/extra".to_string()));
}

/// Every copy of a key found damaged by verify: the master's `503` says
/// so, and no repeat can cure it, so neither the library nor `trove stat`
/// / `trove get` retries it (they did ten times, ~10 s); a `503` a repeat
/// can cure (replicas down) still is.
#[tokio::test]
async fn a_key_whose_every_replica_is_damaged_fails_at_once() {
    let c = Cluster::start_default().await;
    let value = pattern_bytes(300_000, 9);
    assert_eq!(c.put("/rot/all", value.clone()).await, 201);
    for addr in trove_tests::key_volumes(c.head("/rot/all").await.headers()) {
        trove_tests::flip_byte(&c.blob_path(c.volume_index(&addr), "/rot/all"), 10);
    }
    let (code, out) = c.admin(&["verify", "--deep"]).await;
    assert_eq!(code, 1, "{out}");

    let retries = Arc::new(Mutex::new(0));
    let counted = retries.clone();
    let client = Client::builder()
        .master(format!("http://{}", c.master.addr))
        .retry(quick_retries())
        .on_retry(move |_, _| *counted.lock().unwrap() += 1)
        .build()
        .unwrap();
    let e = client.stat("/rot/all").await.unwrap_err();
    assert!(e.is_all_damaged() && !e.is_retryable(), "{e}");
    let e = client
        .get_to("/rot/all", tokio::io::sink(), &GetOptions::default())
        .await;
    assert!(e.unwrap_err().is_all_damaged());
    assert_eq!(*retries.lock().unwrap(), 0, "nothing was retried");

    let out = c.dir.path().join("rot.out");
    for args in [
        &["stat", "/rot/all"][..],
        &["get", "/rot/all"],
        &["get", "/rot/all", "-o", out.to_str().unwrap()],
    ] {
        let started = std::time::Instant::now();
        let r = c.trove(args).await;
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{args:?}: {:?}",
            started.elapsed()
        );
        assert_eq!(
            r.stderr.matches("found damaged by verify").count(),
            1,
            "{args:?}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("retrying"), "{args:?}: {}", r.stderr);
    }
}

/// What `trove` prints, and where: `--json get` to stdout keeps the value
/// alone there (the report on stderr); boolean variables take 1/yes/on;
/// bad master URLs and a missing named config file are usage errors at
/// once; a volume given as the master is named as such; keys with control
/// characters are escaped for people and exact in JSON; each failure is
/// said once; a key ending in `/` read into a directory says why it
/// cannot be; `trove health` says "not ready" once.
#[tokio::test]
async fn cli_output_goes_where_it_belongs_and_says_things_once() {
    let mut c = Cluster::start_default().await;
    let dir = c.dir.path().to_path_buf();
    let value = pattern_bytes(300_000, 3);
    assert_eq!(c.put("/out/a.bin", value.clone()).await, 201);

    // --json get to stdout: the value alone on stdout, the report on stderr.
    for (env, flag) in [(None, Some("--json")), (Some("1"), None), (Some("true"), None)] {
        let mut cmd = c.trove_command();
        if let Some(v) = env {
            cmd.env("TROVE_JSON", v);
        }
        cmd.args(["get", "/out/a.bin"]);
        if let Some(f) = flag {
            cmd.arg(f);
        }
        let out = cmd.output().await.unwrap();
        assert!(
            out.status.success(),
            "{env:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout == value,
            "{env:?}: stdout holds {} bytes",
            out.stdout.len()
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
        assert_eq!(
            (report["bytes"].as_u64(), report["verified"].as_bool()),
            (Some(300_000), Some(true))
        );
    }
    // To a file, the report stays on stdout.
    let file = dir.join("a.out");
    let r = c
        .trove(&["--json", "get", "/out/a.bin", "-o", file.to_str().unwrap()])
        .await;
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["verified"], true);
    assert!(std::fs::read(&file).unwrap() == value);

    // A symlink as the output is written through: the link stays.
    let target = dir.join("target.bin");
    std::fs::write(&target, "old").unwrap();
    let link = dir.join("link.bin");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let r = c
        .trove(&["get", "/out/a.bin", "-o", link.to_str().unwrap()])
        .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert!(std::fs::read(&target).unwrap() == value);

    // put's report names the md5 it sent (which the master checked).
    let r = c
        .trove(&["--json", "put", file.to_str().unwrap(), "/out/b.bin"])
        .await;
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["md5"], md5_hex(&value), "{report}");

    // Boolean variables: 1/0, yes/no, on/off, true/false.
    for (quiet, silent) in [
        ("1", true),
        ("yes", true),
        ("on", true),
        ("0", false),
        ("off", false),
        ("false", false),
    ] {
        let out = c
            .trove_command()
            .env("TROVE_QUIET", quiet)
            .args(["get", "/out/a.bin", "-o", file.to_str().unwrap()])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "TROVE_QUIET={quiet}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stderr.is_empty(), silent, "TROVE_QUIET={quiet}");
    }
    let out = c
        .trove_command()
        .env("TROVE_JSON", "no")
        .args(["stat", "/out/a.bin"])
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("key       /out/a.bin"));

    // Bad master URLs and a missing config file: usage errors, at once.
    let started = std::time::Instant::now();
    let r = c.trove(&["--master", "notaurl", "stat", "/out/a.bin"]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("`notaurl` is not a master URL"), "{}", r.stderr);
    assert!(started.elapsed() < Duration::from_secs(3));
    for bad in ["notaurl", "ftp://x"] {
        let r = c.trove(&["config", "set", "master", bad]).await;
        assert_eq!(r.code, 2, "{bad}: {}", r.stderr);
    }
    let missing = dir.join("no-such-config.json");
    let out = c
        .trove_command()
        .env_remove("TROVE_MASTER")
        .args(["--config", missing.to_str().unwrap(), "stat", "/out/a.bin"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(missing.to_str().unwrap()) && stderr.contains("does not exist"),
        "{stderr}"
    );
    assert!(!stderr.contains("retrying"), "{stderr}");

    // A volume given as the master.
    let volume = c.client().stat("/out/a.bin").await.unwrap().volumes[0].clone();
    for args in [&["stat", "/out/a.bin"][..], &["ls"], &["status"]] {
        let mut all = vec!["--master", volume.as_str(), "--retries", "1"];
        all.extend_from_slice(args);
        let r = c.trove(&all).await;
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!(
                "the server at http://{volume} does not answer as a Trove master"
            )),
            "{args:?}: {}",
            r.stderr
        );
    }

    // Control characters in keys: escaped for people, exact in JSON.
    let client = c.client();
    for key in ["/esc/nl\nx", "/esc/\x1b[31mRED\x1b[0m"] {
        client
            .put_bytes(key, "v".into(), &PutOptions::default())
            .await
            .unwrap();
    }
    let ls = c.trove(&["ls", "/esc/"]).await;
    assert_eq!(ls.stdout, "/esc/\\x1b[31mRED\\x1b[0m\n/esc/nl\\nx\n");
    let long = c.trove(&["ls", "-l", "/esc/"]).await;
    assert_eq!(long.stdout.lines().count(), 2, "{}", long.stdout);
    assert!(!long.stdout.contains('\x1b'), "{}", long.stdout);
    let json: serde_json::Value =
        serde_json::from_str(&c.trove(&["ls", "/esc/", "--json"]).await.stdout).unwrap();
    assert_eq!(json, serde_json::json!(["/esc/\x1b[31mRED\x1b[0m", "/esc/nl\nx"]));

    // rm: each failure once, then how many; 3 only when all were missing.
    assert_eq!(c.put("/out/x", "v").await, 201);
    let r = c.trove(&["rm", "/out/x", "/out/nope1", "/out/nope2"]).await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(
        r.stderr.matches("/out/nope1: not found").count(),
        1,
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stderr.matches("/out/nope2: not found").count(),
        1,
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("2 of 3 keys were not deleted"), "{}", r.stderr);

    // A key ending in `/` read into a directory.
    client
        .put_bytes("/out/dir/", "hi".into(), &PutOptions::default())
        .await
        .unwrap();
    let outdir = dir.join("outdir");
    std::fs::create_dir(&outdir).unwrap();
    let r = c
        .trove(&["get", "/out/dir/", "-o", outdir.to_str().unwrap()])
        .await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("ends in `/`") && !r.stderr.contains("rename"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read_dir(&outdir).unwrap().count(), 0);
    let named = outdir.join("marker");
    let r = c
        .trove(&["get", "/out/dir/", "-o", named.to_str().unwrap()])
        .await;
    assert_eq!((r.code, std::fs::read(&named).unwrap()), (0, b"hi".to_vec()));

    // health with too few volumes for a write: "not ready" once.
    for i in 0..2 {
        c.volumes[i].kill();
        c.wait_volume_health(i, false).await;
    }
    let r = c.trove(&["health"]).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.stderr.matches("not ready").count(), 1, "{}", r.stderr);
    // status: a volume that is down shows its last figures as such.
    let status = c.trove(&["status"]).await;
    let down: Vec<_> = status.stdout.lines().filter(|l| l.contains("DOWN")).collect();
    assert_eq!(down.len(), 2, "{}", status.stdout);
    assert!(
        down.iter().all(|l| l.contains("as last seen")),
        "{}",
        status.stdout
    );
    let up = status
        .stdout
        .lines()
        .find(|l| l.contains(&c.volumes[2].addr))
        .unwrap();
    assert!(!up.contains("as last seen"), "{up}");
}

/// A reader of stderr that goes away (`trove … 2>&1 | head -1`) ends
/// `trove` quietly with 141, as a closed stdout does, not with a panic
/// (101); so does a closed stdout under `get`.
#[tokio::test]
async fn a_closed_stderr_or_stdout_ends_trove_with_141() {
    let c = Cluster::start_default().await;
    // Retry lines, then the error, go to a stderr no one reads.
    let mut child = c
        .trove_command()
        .args(["--master", "http://127.0.0.1:1", "status"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(141), "{status:?}");

    // A value bigger than a pipe's buffer, to a reader that is gone.
    assert_eq!(c.put("/big", pattern_bytes(4 << 20, 5)).await, 201);
    let mut child = c
        .trove_command()
        .args(["get", "/big"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

/// Ctrl-C during a download says a download was abandoned, not that "an
/// unfinished upload stores nothing".
#[tokio::test]
async fn ctrl_c_during_a_download_speaks_of_the_download() {
    let c = Cluster::start_default().await;
    // A master that accepts and never answers: the command waits.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let mut held = vec![];
        while let Ok((sock, _)) = silent.accept().await {
            held.push(sock);
            let _ = tx.send(()).await;
        }
    });
    let target = c.dir.path().join("never.bin");
    std::fs::write(&target, "old").unwrap();
    let child = c
        .trove_command()
        .args([
            "--master",
            &format!("http://{addr}"),
            "get",
            "/k",
            "-o",
            target.to_str().unwrap(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    rx.recv().await.expect("trove connects");
    tokio::time::sleep(Duration::from_millis(200)).await;
    trove_tests::signal(child.id().unwrap(), "INT");
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted; the download was abandoned"),
        "{stderr}"
    );
    assert!(!stderr.contains("upload"), "{stderr}");
    assert_eq!(std::fs::read(&target).unwrap(), b"old");
}

/// A volume's address given as the master's (`--master`, or curl): a
/// write, a delete and an unlink are refused by the volume, the CLI names
/// the mistake, and nothing is stored or removed — the volume once took
/// the write (a copy no record names, for gc to delete) and the delete (a
/// replica taken from under a live key), and the CLI said both were done.
#[tokio::test]
async fn a_volume_given_as_the_master_is_named_and_changes_nothing() {
    let c = Cluster::start_default().await;
    assert_eq!(c.put("/kept", "kept value").await, 201);
    let copies = c.copies_of("/kept").await;
    let file = c.dir.path().join("file.txt");
    std::fs::write(&file, "through the wrong port").unwrap();
    let tree = c.dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("a.txt"), "a").unwrap();
    let volume = format!("http://{}", c.volumes[0].addr);
    let file = file.to_str().unwrap();
    let tree = tree.to_str().unwrap();
    for args in [
        &["put", file, "/via-volume"][..],
        &["cp", "-r", tree, "/via-volume-tree/"],
        &["rm", "/kept"],
        &["unlink", "/kept"],
        // Reads: a volume serves its copies and `/-/healthy` as a master
        // would, and answers `404` for a key it holds no copy of; each
        // answer names its server.
        &["stat", "/kept"],
        &["stat", "/not-on-any-volume"],
        &["get", "/kept"],
        &["ls", "/"],
        &["health"],
        &["ping"],
        &["status"],
    ] {
        let r = c
            .trove(&[&["--master", volume.as_str()][..], args].concat())
            .await;
        assert_ne!(r.code, 0, "{args:?} succeeded against a volume: {}", r.stdout);
        assert!(
            r.stderr
                .contains("does not answer as a Trove master (is it a volume?"),
            "{args:?}: {}",
            r.stderr
        );
    }
    // curl gets the volume's reason.
    for method in [reqwest::Method::PUT, reqwest::Method::DELETE] {
        let resp = c
            .http
            .request(method.clone(), format!("{volume}/kept"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{method}");
        let why = resp.text().await.unwrap();
        assert!(
            why.contains("is a Trove volume, not the master"),
            "{method}: {why}"
        );
    }
    assert_eq!(c.get("/kept").await, (200, "kept value".into()));
    assert_eq!(c.copies_of("/kept").await, copies);
    for i in 0..c.volumes.len() {
        let blobs = c.blobs(i).await;
        assert!(
            blobs
                .iter()
                .all(|b| b["key"].as_str().is_some_and(|k| !k.starts_with("/via-volume"))),
            "volume {i} stored a write sent to it directly: {blobs:?}"
        );
    }
}
