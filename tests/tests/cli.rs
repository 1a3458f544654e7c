//! The command line: clear errors for bad flags, environment variables,
//! graceful shutdown on SIGTERM; and the `trove` client against a real
//! cluster where its edges are: TTLs, empty files, directory markers,
//! file names that cannot be keys, file modes, `ls -l --unlinked`, and
//! error messages that say each cause once.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use trove_tests::{bin, CliRun, Cluster, ClusterOptions};

fn run(bin_name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin(bin_name));
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn master_rejects_more_replicas_than_volumes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let o = run(
        "trove-master",
        &[
            "serve",
            "--port",
            "0",
            "--db",
            db.to_str().unwrap(),
            "--volumes",
            "127.0.0.1:1,127.0.0.1:2",
        ],
        &[],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--replicas is 3 but only 2 volume(s)"),
        "{}",
        stderr(&o)
    );
    // The same through the environment.
    let o = run(
        "trove-master",
        &["serve", "--port", "0"],
        &[
            ("TROVE_DB", db.to_str().unwrap()),
            ("TROVE_VOLUMES", "127.0.0.1:1"),
            ("TROVE_REPLICAS", "2"),
        ],
    );
    assert!(
        stderr(&o).contains("--replicas is 2 but only 1 volume(s)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn master_rejects_bad_volume_lists_and_db_dirs() {
    let o = run(
        "trove-master",
        &["serve", "--db", "/tmp/x", "--volumes", "no-port"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "a usage error");
    assert!(stderr(&o).contains("host:port"), "{}", stderr(&o));
    let o = run(
        "trove-master",
        &[
            "serve",
            "--port",
            "0",
            "--db",
            "/proc/trove-cannot-exist/db",
            "--volumes",
            "127.0.0.1:1",
            "--replicas",
            "1",
        ],
        &[],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot open the index at /proc/trove-cannot-exist/db"),
        "{}",
        stderr(&o)
    );
    let o = run("trove-master", &["serve", "--help"], &[]);
    let help = String::from_utf8_lossy(&o.stdout);
    for env in [
        "TROVE_DB",
        "TROVE_VOLUMES",
        "TROVE_REPLICAS",
        "TROVE_PROTECT",
        "TROVE_NO_FSYNC",
        "TROVE_STALL_TIMEOUT",
    ] {
        assert!(help.contains(env), "--help names {env}");
    }
}

#[test]
fn volume_rejects_unusable_data_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let o = run("trove-volume", &["--port", "0", file.to_str().unwrap()], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot create data dir"), "{}", stderr(&o));
    let o = run("trove-volume", &["--port", "0", "/proc/trove-cannot-exist"], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/proc/trove-cannot-exist"), "{}", stderr(&o));
    let o = run("trove-volume", &["--port", "0"], &[]);
    assert_eq!(o.status.code(), Some(2), "no data dir is a usage error");
}

#[test]
fn sigterm_stops_servers_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin("trove-volume"))
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            dir.path().join("data").to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the "listening on" line, then ask it to stop.
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.contains("listening on 127.0.0.1:"), "{line}");
    trove_tests::signal(child.id(), "TERM");
    let deadline = Instant::now() + trove_tests::WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "volume did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "clean exit, got {status}");
}

/// A one-volume cluster whose master runs with `master_args`.
async fn small_cluster(master_args: &[&str]) -> Cluster {
    Cluster::start(ClusterOptions {
        volumes: 1,
        replicas: 1,
        master_args: master_args.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    })
    .await
}

/// Writes an empty value at `key` straight to the master.
async fn put_empty(c: &Cluster, key: &str) {
    let resp = c
        .http
        .put(c.url(key))
        .header("trove-allow-empty", "1")
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "PUT {key}");
}

/// The `--json` summary of a `cp`/`sync` run.
fn summary(run: &CliRun) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

#[tokio::test]
async fn a_zero_ttl_is_refused_and_never_overrides_the_default() {
    let c = small_cluster(&["--default-ttl", "1h"]).await;
    let dir = c.dir.path();
    let file = dir.join("v");
    std::fs::write(&file, b"value").unwrap();
    let tree = dir.join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("a"), b"a").unwrap();
    let (f, t) = (file.to_str().unwrap(), tree.to_str().unwrap());

    // Zero, however written: a usage error, and nothing stored (the CLI
    // used to send it as 1ms and print "stored").
    for args in [
        &["put", f, "/zero/put", "--ttl", "0"][..],
        &["put", f, "/zero/put", "--ttl", "0s"],
        &["cp", f, "/zero/put", "--ttl", "0"],
        &["cp", "-r", t, "/zero/", "--ttl", "0ms"],
        &["sync", t, "/zero/", "--ttl", "0"],
    ] {
        let r = c.trove(args).await;
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("would expire the key as it is written"),
            "{args:?}: {}",
            r.stderr
        );
    }
    let from_env = c
        .trove_command()
        .env("TROVE_TTL", "0")
        .args(["put", f, "/zero/put"])
        .output()
        .await
        .unwrap();
    assert_eq!(from_env.status.code(), Some(2), "TROVE_TTL=0");
    for key in ["/zero/put", "/zero/a"] {
        assert_eq!(c.head(key).await.status(), 404, "{key} was not stored");
    }

    // `never` beats the master's --default-ttl, for put and for cp -r.
    assert_eq!(c.trove(&["put", f, "/ttl/never", "--ttl", "never"]).await.code, 0);
    assert_eq!(
        c.trove(&["cp", "-r", t, "/ttl/tree/", "--ttl", "never"])
            .await
            .code,
        0
    );
    assert_eq!(c.trove(&["put", f, "/ttl/default"]).await.code, 0);
    let client = c.client();
    for key in ["/ttl/never", "/ttl/tree/a"] {
        assert_eq!(
            client.stat(key).await.unwrap().expires,
            None,
            "{key} never expires"
        );
    }
    assert!(client.stat("/ttl/default").await.unwrap().expires.is_some());
}

#[tokio::test]
async fn empty_files_are_stored_synced_and_read_back() {
    let c = small_cluster(&[]).await;
    let dir = c.dir.path();
    let empty = dir.join("empty");
    std::fs::write(&empty, b"").unwrap();
    assert_eq!(
        c.trove(&["put", empty.to_str().unwrap(), "/e/file"]).await.code,
        0
    );
    // From stdin that ends at once.
    let mut child = c
        .trove_command()
        .args(["put", "-", "/e/stdin"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().shutdown().await.unwrap();
    assert!(child.wait().await.unwrap().success(), "put - of nothing");
    for key in ["/e/file", "/e/stdin"] {
        assert_eq!(c.client().stat(key).await.unwrap().size, 0, "{key}");
        let out = dir.join("got");
        std::fs::write(&out, b"old bytes").unwrap();
        let get = c.trove(&["get", key, "-o", out.to_str().unwrap()]).await;
        assert_eq!(get.code, 0, "{}", get.stderr);
        assert_eq!(std::fs::read(&out).unwrap(), b"", "{key} read back empty");
    }

    // A tree with empty files syncs, and sync --delete then deletes.
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("pkg")).unwrap();
    std::fs::write(src.join(".keep"), b"").unwrap();
    std::fs::write(src.join("pkg/__init__.py"), b"").unwrap();
    std::fs::write(src.join("pkg/mod.py"), b"x = 1\n").unwrap();
    let s = src.to_str().unwrap();
    let sync = c.trove(&["sync", s, "/py/"]).await;
    assert_eq!(sync.code, 0, "{}", sync.stderr);
    assert_eq!(c.put("/py/extra", "x").await, 201);
    let sync = c.trove(&["sync", s, "/py/", "--delete", "--json"]).await;
    assert_eq!(sync.code, 0, "{}", sync.stderr);
    let done = summary(&sync);
    assert_eq!(
        (done["skipped"].as_u64(), done["deleted"].as_u64()),
        (Some(3), Some(1)),
        "{done}"
    );
    assert_eq!(c.head("/py/extra").await.status(), 404);
    let down = dir.join("down");
    let cp = c.trove(&["cp", "-r", "/py/", down.to_str().unwrap()]).await;
    assert_eq!(cp.code, 0, "{}", cp.stderr);
    assert_eq!(std::fs::read(down.join(".keep")).unwrap(), b"");
    assert_eq!(std::fs::read(down.join("pkg/__init__.py")).unwrap(), b"");
    assert_eq!(std::fs::read(down.join("pkg/mod.py")).unwrap(), b"x = 1\n");
}

#[tokio::test]
async fn downloads_make_markers_directories_and_fail_only_keys_that_are_no_path() {
    let c = small_cluster(&[]).await;
    let dir = c.dir.path();
    // A bucket's marker, a folder marker, an empty directory's marker,
    // a marker with bytes and a key with an empty segment.
    for key in ["/pics/", "/pics/sub/", "/pics/emptydir/"] {
        put_empty(&c, key).await;
    }
    for (key, value) in [
        ("/pics/a.jpg", "A"),
        ("/pics/sub/b.jpg", "B"),
        ("/pics/full/", "bytes"),
        ("/pics//x", "X"),
    ] {
        assert_eq!(c.put(key, value).await, 201, "{key}");
    }
    let dl = dir.join("dl");
    let cp = c
        .trove(&["cp", "-r", "/pics/", dl.to_str().unwrap(), "--json"])
        .await;
    assert_eq!(cp.code, 1, "two keys failed: {}", cp.stderr);
    let done = summary(&cp);
    assert_eq!(done["failed"], 2, "{done}");
    assert_eq!(std::fs::read(dl.join("a.jpg")).unwrap(), b"A");
    assert_eq!(std::fs::read(dl.join("sub/b.jpg")).unwrap(), b"B");
    assert!(dl.join("emptydir").is_dir(), "an empty marker is a directory");
    assert!(!dl.join("x").exists(), "/pics//x does not land on /pics/x's path");
    for said in [
        "/pics//x: it cannot be a path under",
        "empty path segment",
        "/pics/full/ → ",
        "a key ending in `/` can only be a directory here",
    ] {
        assert!(cp.stderr.contains(said), "{said} in {}", cp.stderr);
    }
    assert!(!cp.stderr.contains("Not a directory"), "{}", cp.stderr);
    // Once more: what is there is skipped, the same two fail.
    let again = c.trove(&["sync", "/pics/", dl.to_str().unwrap(), "--json"]).await;
    let done = summary(&again);
    assert_eq!(
        (done["copied"].as_u64(), done["failed"].as_u64()),
        (Some(0), Some(2)),
        "{done}"
    );

    // A bucket alone is copied whole, its marker being the directory.
    put_empty(&c, "/bkt/").await;
    assert_eq!(c.put("/bkt/k", "K").await, 201);
    let bkt = dir.join("bkt");
    let cp = c.trove(&["cp", "-r", "/bkt/", bkt.to_str().unwrap()]).await;
    assert_eq!(cp.code, 0, "{}", cp.stderr);
    assert_eq!(std::fs::read(bkt.join("k")).unwrap(), b"K");
}

#[tokio::test]
async fn sync_delete_keeps_the_markers_of_directories_that_exist() {
    let c = small_cluster(&[]).await;
    let up = c.dir.path().join("up");
    for d in ["d", "e", "unmarked"] {
        std::fs::create_dir_all(up.join(d)).unwrap();
    }
    std::fs::write(up.join("f"), b"f").unwrap();
    std::fs::write(up.join("d/g"), b"g").unwrap();
    // The bucket's marker; folder markers of a directory with files, of an
    // empty one, and of one that is not there.
    for key in ["/up/", "/up/d/", "/up/e/", "/up/gone/"] {
        put_empty(&c, key).await;
    }
    let u = up.to_str().unwrap();
    let sync = c.trove(&["sync", u, "/up/", "--delete", "--json"]).await;
    assert_eq!(sync.code, 0, "{}", sync.stderr);
    let done = summary(&sync);
    assert_eq!(
        (done["copied"].as_u64(), done["deleted"].as_u64()),
        (Some(2), Some(1)),
        "{done}"
    );
    assert_eq!(
        c.head("/up/gone/").await.status(),
        404,
        "its directory is not in DIR"
    );
    for key in ["/up/", "/up/d/", "/up/e/", "/up/f", "/up/d/g"] {
        assert_eq!(c.head(key).await.status(), 302, "{key}");
    }
    // Uploads carry files only, as aws-cli: no marker is made.
    assert_eq!(c.head("/up/unmarked/").await.status(), 404);
    // And back down, the markers are directories again.
    let back = c.dir.path().join("back");
    assert_eq!(
        c.trove(&["cp", "-r", "/up/", back.to_str().unwrap()]).await.code,
        0
    );
    assert!(back.join("e").is_dir() && back.join("d/g").is_file());
    // Its directory gone, a marker goes with sync --delete.
    std::fs::remove_dir(up.join("e")).unwrap();
    let sync = c.trove(&["sync", u, "/up/", "--delete", "--json"]).await;
    assert_eq!(summary(&sync)["deleted"], 1, "{}", sync.stdout);
    assert_eq!(c.head("/up/e/").await.status(), 404);
    assert_eq!(c.head("/up/").await.status(), 302, "the bucket stays");
}

#[tokio::test]
async fn a_file_name_that_is_not_utf8_is_one_failed_upload() {
    use std::os::unix::ffi::OsStrExt;
    let c = small_cluster(&[]).await;
    let src = c.dir.path().join("up8");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("good1"), b"1").unwrap();
    std::fs::write(src.join("good2"), b"2").unwrap();
    std::fs::write(src.join(std::ffi::OsStr::from_bytes(b"bad\xff")), b"3").unwrap();
    for (command, prefix) in [(&["cp", "-r"][..], "/u8/"), (&["sync"], "/s8/")] {
        let mut args = command.to_vec();
        args.extend([src.to_str().unwrap(), prefix, "--json"]);
        let r = c.trove(&args).await;
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        let done = summary(&r);
        assert_eq!(
            (done["copied"].as_u64(), done["failed"].as_u64()),
            (Some(2), Some(1)),
            "{done}"
        );
        let line = r
            .stderr
            .lines()
            .find(|l| l.contains("bad"))
            .expect("the bad name is reported");
        assert!(
            line.ends_with("its name is not UTF-8, and keys are UTF-8 text: rename it to copy it"),
            "a whole sentence: {line}"
        );
        for good in ["good1", "good2"] {
            assert_eq!(c.head(&format!("{prefix}{good}")).await.status(), 302);
        }
    }
}

/// Runs `trove <args>` against `c` under `umask`.
async fn trove_under_umask(c: &Cluster, umask: &str, args: &[&str]) -> i32 {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(bin("trove"))
        .args(args)
        .env("TROVE_MASTER", format!("http://{}", c.master.addr))
        .env("TROVE_CONFIG", c.dir.path().join("trove-config.json"))
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    eprintln!(
        "$ trove {} → {:?}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.code().unwrap_or(-1)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn downloads_get_a_new_files_mode_or_keep_the_replaced_ones() {
    let c = small_cluster(&[]).await;
    let dir = c.dir.path();
    assert_eq!(c.put("/m/a", "a").await, 201);
    let new = dir.join("new");
    assert_eq!(
        trove_under_umask(&c, "027", &["get", "/m/a", "-o", new.to_str().unwrap()]).await,
        0
    );
    assert_eq!(mode(&new), 0o640, "0666 less the umask, not the temp file's 0600");
    let old = dir.join("old");
    std::fs::write(&old, b"old").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o604)).unwrap();
    assert_eq!(
        trove_under_umask(&c, "027", &["get", "/m/a", "-o", old.to_str().unwrap()]).await,
        0
    );
    assert_eq!(std::fs::read(&old).unwrap(), b"a");
    assert_eq!(mode(&old), 0o604, "a replaced file keeps its mode");
    let tree = dir.join("tree");
    assert_eq!(
        trove_under_umask(&c, "022", &["cp", "-r", "/m/", tree.to_str().unwrap()]).await,
        0
    );
    assert_eq!(mode(&tree.join("a")), 0o644);
}

#[tokio::test]
async fn ls_long_describes_unlinked_keys() {
    let c = small_cluster(&[]).await;
    assert_eq!(c.put("/gone/k", vec![7u8; 2048]).await, 201);
    assert_eq!(c.put("/gone/live", "x").await, 201);
    assert_eq!(c.unlink("/gone/k").await, 204);
    let ls = c.trove(&["ls", "-l", "--unlinked", "/gone/"]).await;
    assert_eq!(ls.code, 0, "{}", ls.stderr);
    let line = ls.stdout.trim_end();
    assert!(
        line.contains("2.00 KiB") && line.contains("  unlinked  ") && line.ends_with("/gone/k"),
        "the long format: {line}"
    );
    assert_eq!(ls.stdout.lines().count(), 1, "{}", ls.stdout);
    let json = c.trove(&["ls", "-l", "--unlinked", "/gone/", "--json"]).await;
    let objects: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        (&objects[0]["key"], &objects[0]["size"]),
        (&"/gone/k".into(), &2048.into())
    );
}

#[tokio::test]
async fn errors_say_each_cause_once() {
    let c = small_cluster(&[]).await;
    let file = c.dir.path().join("v1");
    std::fs::write(&file, b"v").unwrap();
    let f = file.to_str().unwrap();
    let r = c.trove(&["put", f, "odd/a/../b"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr.matches("rename it").count(), 1, "{}", r.stderr);
    // A download into a path under a file: the OS error, once.
    assert_eq!(c.put("/k", "v").await, 201);
    let r = c.trove(&["get", "/k", "-o", &format!("{f}/inside")]).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr.matches("Not a directory").count(), 1, "{}", r.stderr);
}

#[tokio::test]
async fn a_sync_whose_upload_fails_keeps_the_old_value() {
    // Two volumes, two replicas: with one down no write can be placed,
    // while the old value still reads from the other.
    let mut c = Cluster::start(ClusterOptions {
        volumes: 2,
        replicas: 2,
        ..Default::default()
    })
    .await;
    let src = c.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "version one").unwrap();
    let s = src.to_str().unwrap();
    assert_eq!(c.trove(&["sync", s, "/kept/"]).await.code, 0);
    std::fs::write(src.join("f"), "version two, which never lands").unwrap();
    c.volumes[1].kill();
    c.wait_volume_health(1, false).await;
    let sync = c.trove(&["sync", s, "/kept/", "--retries", "1", "--json"]).await;
    assert_eq!(sync.code, 1, "{}", sync.stderr);
    assert_eq!(summary(&sync)["failed"], 1, "{}", sync.stdout);
    // Sync used to delete the key before uploading: it was gone for good.
    assert_eq!(c.get("/kept/f").await, (200, "version one".into()));
}

#[tokio::test]
async fn a_second_copy_of_a_tree_skips_what_a_concurrent_one_stored() {
    let c = small_cluster(&[]).await;
    let src = c.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "the same bytes").unwrap();
    // Another writer of the same bytes, holding the key until it sends the
    // body's last byte: `cp` finds the key absent, and its PUT is busy.
    let mut other = trove_tests::raw::connect(&c.master.addr);
    let head = "PUT /race/f HTTP/1.1\r\nHost: x\r\nContent-Length: 14\r\n\r\nthe same byte";
    std::io::Write::write_all(&mut other, head.as_bytes()).unwrap();
    let busy = "trove_requests_total{method=\"PUT\",status=\"409\"}";
    trove_tests::wait_for("the first writer to hold the key", || async {
        c.status().await["keys"]["writing"] == 1
    })
    .await;
    let cp = c
        .trove_command()
        .args(["cp", "-r", src.to_str().unwrap(), "/race/", "--json"])
        .output();
    let cp = tokio::spawn(cp);
    trove_tests::wait_for("cp's PUT to be answered 409", || async {
        trove_tests::metric(&c.http, &c.master.addr, busy).await >= 1.0
    })
    .await;
    std::io::Write::write_all(&mut other, b"s").unwrap();
    let (head, _) = trove_tests::raw::read_answer(&mut other);
    assert_eq!(trove_tests::raw::status(&head), 201, "{head}");
    let out = cp.await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (done["skipped"].as_u64(), done["failed"].as_u64()),
        (Some(1), Some(0)),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_file_put_under_a_key_ending_in_a_slash_takes_its_name() {
    let c = small_cluster(&[]).await;
    let file = c.dir.path().join("notes.txt");
    std::fs::write(&file, "n").unwrap();
    assert_eq!(c.trove(&["put", file.to_str().unwrap(), "/docs/"]).await.code, 0);
    assert_eq!(c.get("/docs/notes.txt").await, (200, "n".into()));
    assert_eq!(c.get("/docs/").await.0, 404, "no marker holding the file's bytes");
}

#[tokio::test]
async fn get_into_a_fifo_writes_through_it_and_leaves_it_a_fifo() {
    use std::os::unix::fs::FileTypeExt;
    let c = small_cluster(&[]).await;
    assert_eq!(c.put("/piped", "through the pipe").await, 201);
    let fifo = c.dir.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let get = c.trove(&["get", "/piped", "-o", fifo.to_str().unwrap()]).await;
    assert_eq!(get.code, 0, "{}", get.stderr);
    // Checked before the reader is joined: with the FIFO replaced, the
    // reader would wait for a writer forever.
    let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(kind.is_fifo(), "the FIFO was replaced by a file: {kind:?}");
    assert_eq!(reader.join().unwrap(), b"through the pipe");

    // A tree download meeting a FIFO where a file belongs fails that file
    // (opening it would wait for a reader for ever).
    assert_eq!(c.put("/tree/fifo", "x").await, 201);
    let into = c.dir.path().join("into");
    std::fs::create_dir_all(&into).unwrap();
    let made = Command::new("mkfifo").arg(into.join("fifo")).status().unwrap();
    assert!(made.success());
    let cp = c.trove(&["cp", "-r", "/tree/", into.to_str().unwrap()]).await;
    assert_eq!(cp.code, 1, "{}", cp.stderr);
    assert!(cp.stderr.contains("is not a regular file"), "{}", cp.stderr);
}
