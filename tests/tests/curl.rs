//! The plain API as its users drive it: the `curl` command lines of the
//! README, run with the real curl binary (scripts/deps.sh installs it)
//! against a real cluster. What curl adds on its own — `Expect:
//! 100-continue` on a large upload, following the 302 to the volume,
//! `application/x-www-form-urlencoded` on a `-d` body — is part of what
//! is tested.

use std::path::{Path, PathBuf};
use std::process::Command;
use trove_tests::{pattern_bytes, sha256_hex, Cluster};

/// One curl run: the status of the last answer, its headers (lower-case
/// names) and where its body went.
struct Curled {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Curled {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Runs `curl -sS <args> URL`, keeping the last answer's headers and
/// body (a followed redirect's first answer is dropped). Panics when curl
/// cannot run or fails to talk to the server at all.
fn curl(dir: &Path, args: &[&str], url: &str) -> Curled {
    let headers_file = dir.join("curl-headers");
    let body_file = dir.join("curl-body");
    let out = Command::new("curl")
        .args(["-sS", "-D"])
        .arg(&headers_file)
        .arg("-o")
        .arg(&body_file)
        .args(["-w", "%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl runs (scripts/deps.sh installs it)");
    assert!(
        out.status.success(),
        "curl {args:?} {url} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let raw = std::fs::read_to_string(&headers_file).unwrap_or_default();
    // With -L the file holds every answer's headers: keep the last block.
    let last = raw
        .split("\r\n\r\n")
        .filter(|block| block.starts_with("HTTP/"))
        .last()
        .unwrap_or_default();
    let headers = last
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = std::fs::read(&body_file).unwrap_or_default();
    let _ = std::fs::remove_file(&body_file);
    Curled {
        status,
        headers,
        body,
    }
}

fn file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The README's curl session, line by line: write, read following the
/// redirect, inspect the 302, list, unlink, delete, a TTL — and the
/// refusals a script meets (a second write, an empty body, a missing key).
#[tokio::test]
async fn the_readme_curl_session() {
    let c = Cluster::start_default().await;
    let dir = c.dir.path();
    let url = c.url("/photos/photo.jpg");
    // Large enough for curl to send `Expect: 100-continue`.
    let photo = pattern_bytes(3 << 20, 7);
    let photo_path = file(dir, "photo.jpg", &photo);
    let photo_arg = photo_path.to_str().unwrap();

    let put = curl(
        dir,
        &["-L", "-T", photo_arg, "-H", "Content-Type: image/jpeg"],
        &url,
    );
    assert_eq!(put.status, 201, "{}", put.text());
    let again = curl(dir, &["-L", "-T", photo_arg], &url);
    assert_eq!(again.status, 403, "keys are write-once");
    assert!(again.text().contains("key exists"), "{}", again.text());

    let read = curl(dir, &["-L"], &url);
    assert_eq!(read.status, 200);
    assert_eq!(sha256_hex(&read.body), sha256_hex(&photo), "the bytes read back");
    assert_eq!(
        read.header("content-type"),
        Some("image/jpeg"),
        "the volume answers the stored type"
    );

    let head = curl(dir, &["-I"], &url);
    assert_eq!(head.status, 302);
    assert_eq!(head.header("key-size"), Some("3145728"));
    assert_eq!(head.header("key-sha256"), Some(sha256_hex(&photo).as_str()));
    assert_eq!(
        head.header("content-md5"),
        Some(trove_tests::md5_hex(&photo).as_str())
    );
    assert_eq!(
        head.header("key-volumes").map(|v| v.split(',').count()),
        Some(2),
        "the default cluster keeps 2 replicas"
    );
    assert!(head.header("location").is_some_and(|l| l.starts_with("http://")));

    let list = curl(dir, &[], &c.url("/photos/?list"));
    assert_eq!(list.status, 200);
    let listed: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
    assert_eq!(
        listed["keys"],
        serde_json::json!(["/photos/photo.jpg"]),
        "{listed}"
    );

    assert_eq!(curl(dir, &["-X", "UNLINK"], &url).status, 204);
    assert_eq!(
        curl(dir, &["-L"], &url).status,
        404,
        "an unlinked key reads as absent"
    );
    assert_eq!(curl(dir, &["-X", "DELETE"], &url).status, 204);
    assert_eq!(curl(dir, &["-X", "DELETE"], &url).status, 404, "already gone");
    assert_eq!(curl(dir, &["-L"], &url).status, 404);

    let f = file(dir, "f", b"expires in an hour");
    let ttl = curl(
        dir,
        &["-L", "-T", f.to_str().unwrap(), "-H", "Trove-Expires-After: 1h"],
        &c.url("/tmp/f"),
    );
    assert_eq!(ttl.status, 201, "{}", ttl.text());
    let expires: u64 = curl(dir, &["-I"], &c.url("/tmp/f"))
        .header("key-expires")
        .expect("a key with a TTL says when it expires")
        .parse()
        .unwrap();
    let in_an_hour = trove_common::time::now_ms() + 3_600_000;
    assert!(
        expires <= in_an_hour && expires + 60_000 > in_an_hour,
        "expires at {expires}, not in an hour"
    );

    let empty = file(dir, "empty", b"");
    let refused = curl(dir, &["-T", empty.to_str().unwrap()], &c.url("/empty"));
    assert_eq!(refused.status, 411, "{}", refused.text());
    assert!(refused.text().contains("empty"), "{}", refused.text());
}

/// A compose sent the way curl sends a JSON body (`-d`, which makes it a
/// POST with `Content-Type: application/x-www-form-urlencoded`): the
/// value is the sources' concatenation, and the form type, which
/// describes the plan as curl saw it, is not stored as the value's; a
/// type the caller names is.
#[tokio::test]
async fn a_compose_sent_with_curl_d() {
    let c = Cluster::start_default().await;
    let dir = c.dir.path();
    let (a, b) = (pattern_bytes(1 << 20, 1), pattern_bytes(1 << 20, 2));
    assert_eq!(c.put("/parts/a", a.clone()).await, 201);
    assert_eq!(c.put("/parts/b", b.clone()).await, 201);
    let plan = r#"{"sources":[{"key":"/parts/a"},{"key":"/parts/b","range":[0,1000]}]}"#;
    let mut whole = a.clone();
    whole.extend_from_slice(&b[..1000]);

    let made = curl(dir, &["-d", plan, "-H", "Trove-Compose: 1"], &c.url("/whole"));
    assert_eq!(made.status, 201, "{}", made.text());
    let read = curl(dir, &["-L"], &c.url("/whole"));
    assert_eq!((read.status, sha256_hex(&read.body)), (200, sha256_hex(&whole)));
    assert_eq!(curl(dir, &["-I"], &c.url("/whole")).header("content-type"), None);

    let typed = curl(
        dir,
        &[
            "-d",
            plan,
            "-H",
            "Trove-Compose: 1",
            "-H",
            "Content-Type: text/plain",
        ],
        &c.url("/typed"),
    );
    assert_eq!(typed.status, 201, "{}", typed.text());
    assert_eq!(
        curl(dir, &["-L"], &c.url("/typed")).header("content-type"),
        Some("text/plain")
    );
}
