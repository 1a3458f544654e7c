//! The command line: clear errors for bad flags, environment variables,
//! graceful shutdown on SIGTERM.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use trove_tests::bin;

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
