//! The status page (`/-/ui`) and the API description (`docs/openapi.yaml`,
//! served at `/-/openapi.json`), tested for real:
//!
//! - over HTTP: what `--ui-admin` gates and what it leaves alone, the key
//!   record, the page's security headers, `GET /` → the page;
//! - in headless Chromium (driven by selenium from `tests/ui/`): the page
//!   with a real cluster behind it — three healthy volumes, a key browsed
//!   and downloaded through the signed redirect, a verify started, followed
//!   and stopped from the page, a killed volume turning red within seconds,
//!   the problems a verify found, a phone-width layout, a volume whose disk
//!   stops taking writes (a file system of its own, frozen) named as
//!   such. Every state is
//!   saved as a screenshot under `target/<profile>/test-output/ui/<test>/`;
//! - with schemathesis: a live master against `docs/openapi.yaml`, and a
//!   live volume against its `x-volume-paths`: no 5xx, every answer as
//!   described, bounded in examples and time.
//!
//! The tools come from `scripts/ui-deps.sh` (which `scripts/test.sh` runs):
//! Debian's `chromium` and `chromium-driver` on `PATH`, and a venv
//! (`$TROVE_UI_VENV`, default `~/.cache/trove-ui-venv`) with selenium,
//! pytest and schemathesis. When they are missing, the tests that need them
//! say so and pass without checking anything, except under CI (`CI=true`),
//! where that is a failure.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Command;
use trove_tests::frozen_disk::LoopDisk;
use trove_tests::{sha256_hex, tools, wait_for, Cluster, ClusterOptions};

/// The cluster's secret: every URL the page follows must be signed.
const SECRET: &str = "ui-test-secret";
/// How long the browser suite or schemathesis may run.
const TOOL_LIMIT: Duration = Duration::from_secs(300);

/// What the stored value of `key` is (tests/ui/test_status_page.py
/// computes the same).
fn value_of(key: &str) -> Vec<u8> {
    format!("the value of {key}\n").repeat(64).into_bytes()
}

/// The venv's `bin/` with selenium, pytest and schemathesis, when it and
/// Chromium are installed; `None` (after saying so) otherwise, outside CI.
fn ui_tools() -> Option<PathBuf> {
    let bin = tools::venv_bin("TROVE_UI_VENV", "trove-ui-venv");
    let needs = tools::Needs {
        suite: "the UI suite",
        installer: "scripts/ui-deps.sh",
        venv_bin: &bin,
        in_venv: &["python", "schemathesis"],
        on_path: &["chromium", "chromedriver"],
    };
    needs.present().then_some(bin)
}

/// `target/<profile>/test-output/ui/<name>/`, emptied: where screenshots
/// and reports stay after the test, for people to look at.
fn output_dir(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile = exe.ancestors().nth(2).expect("target/<profile>/deps/<exe>");
    let dir = profile.join("test-output/ui").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("output dir");
    dir
}

/// Runs a tool to its end (killed after [`TOOL_LIMIT`]); panics with its
/// output and the master's log unless it succeeds.
async fn run_tool(mut cmd: Command, cluster: &Cluster, what: &str) -> String {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let out = tokio::time::timeout(TOOL_LIMIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {TOOL_LIMIT:?}"))
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!(
        "{what}: {} in {:.1?}\n{stdout}\n{stderr}",
        out.status,
        started.elapsed()
    );
    let log = cluster.master.log();
    let tail: Vec<&str> = log.lines().rev().take(30).collect();
    assert!(
        out.status.success(),
        "{what} failed (its output is above); the master's log ends:\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    stdout
}

/// A cluster of three volumes with a secret, the master with `extra` flags.
async fn cluster(extra: &[&str]) -> Cluster {
    cluster_in(tempfile::tempdir().expect("temp dir"), extra).await
}

/// The same, in `dir`.
async fn cluster_in(dir: tempfile::TempDir, extra: &[&str]) -> Cluster {
    let secret = vec!["--secret".to_string(), SECRET.to_string()];
    let mut master_args = secret.clone();
    master_args.extend(["--no-fsync".to_string()]);
    master_args.extend(extra.iter().map(|s| s.to_string()));
    let stall = vec!["--stall-timeout".to_string(), "2s".to_string()];
    Cluster::start_in(
        dir,
        ClusterOptions {
            volumes: 3,
            replicas: 2,
            master_args,
            volume_args: [secret, stall, vec!["--no-fsync".into()]].concat(),
        },
    )
    .await
}

/// Writes `keys` with [`value_of`] values, 16 at a time.
async fn write_keys(cluster: &Cluster, keys: impl Iterator<Item = String>) {
    let values = keys.map(|k| {
        let v = value_of(&k);
        (k, v)
    });
    cluster.put_all(values.collect(), 16).await;
}

// --- HTTP --------------------------------------------------------------------------

#[tokio::test]
async fn without_ui_admin_the_page_only_shows_and_the_job_endpoints_are_unchanged() {
    let c = cluster(&[]).await;
    let page = c.http.get(c.url("/-/ui")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(page.text().await.unwrap().contains("/-/ui/app.js"));
    let root = c.http.get(c.url("/")).send().await.unwrap();
    assert_eq!(
        (
            root.status().as_u16(),
            root.headers()["location"].to_str().unwrap()
        ),
        (302, "/-/ui")
    );
    // `/` is still no key, and `/?list` still lists.
    assert_eq!(c.put("/", "x").await, 400);
    assert_eq!(c.http.get(c.url("/?list")).send().await.unwrap().status(), 200);

    let state = c.json("/-/ui/state").await;
    assert_eq!(state["admin"], false);
    assert_eq!(state["status"]["healthy_volumes"], 3);
    for (method, job) in [("POST", "verify"), ("DELETE", "verify"), ("POST", "gc")] {
        let resp = c
            .http
            .request(method.parse().unwrap(), c.url(&format!("/-/ui/jobs/{job}")))
            .header("trove-ui", "1")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{method} /-/ui/jobs/{job}");
        assert!(resp.text().await.unwrap().contains("--ui-admin"));
    }
    // The endpoints the CLI uses answer as before.
    let started = c.http.post(c.url("/-/verify")).body("{}").send().await.unwrap();
    assert_eq!(started.status(), 202);
    assert_eq!(c.admin(&["gc", "--dry-run"]).await.0, 0);
    // The page sees the jobs the CLI ran.
    trove_tests::wait_for("the verify listed on the page", || async {
        let s = c.json("/-/ui/state").await;
        s["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["job"] == "verify" && j["state"] == "done")
    })
    .await;
}

#[tokio::test]
async fn with_ui_admin_the_page_starts_and_stops_jobs_behind_its_header() {
    let c = cluster(&["--ui-admin"]).await;
    write_keys(&c, (0..200).map(|i| format!("/k/{i:04}"))).await;
    let ui_job = |method: &str, job: &str, header: bool| {
        let mut req = c
            .http
            .request(method.parse().unwrap(), c.url(&format!("/-/ui/jobs/{job}")))
            .body(r#"{"deep":true,"concurrency":1}"#);
        if header {
            req = req.header("trove-ui", "1");
        }
        req.send()
    };
    assert_eq!(c.json("/-/ui/state").await["admin"], true);
    // Without the header (a form or an image on another site): refused.
    let refused = ui_job("POST", "verify", false).await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("trove-ui: 1"));
    let wrong = c.http.get(c.url("/-/ui/jobs/verify")).send().await.unwrap();
    assert_eq!(wrong.status(), 405);
    assert_eq!(wrong.headers()["allow"], "POST, DELETE");

    let started = ui_job("POST", "verify", true).await.unwrap();
    assert_eq!(started.status(), 202);
    let report: Value = started.json().await.unwrap();
    assert_eq!(
        (report["job"].as_str(), report["params"]["deep"].as_bool()),
        (Some("verify"), Some(true))
    );
    // Refused while it runs (a fast machine may have finished it: then a
    // new one starts); stopping answers 202 while one runs, 404 after.
    let again = ui_job("POST", "verify", true).await.unwrap().status().as_u16();
    let stopped = ui_job("DELETE", "verify", true).await.unwrap().status().as_u16();
    assert!(
        matches!(again, 409 | 202) && matches!(stopped, 202 | 404),
        "{again} {stopped}"
    );
    trove_tests::wait_for("the verify over", || async {
        c.json("/-/verify").await["state"] != "running"
    })
    .await;
    assert_eq!(ui_job("DELETE", "verify", true).await.unwrap().status(), 404);
}

#[tokio::test]
async fn a_keys_record_as_the_page_reads_it() {
    let c = cluster(&[]).await;
    let key = "/photos/b c+€.jpg";
    write_keys(&c, [key.to_string()].into_iter()).await;
    let url = |k: &str| {
        let mut u = reqwest::Url::parse(&c.url("/-/ui/key")).unwrap();
        u.query_pairs_mut().append_pair("key", k);
        u
    };
    let record: Value = c.http.get(url(key)).send().await.unwrap().json().await.unwrap();
    let value = value_of(key);
    assert_eq!(record["key"], key);
    assert_eq!(record["size"], value.len());
    assert_eq!(record["sha256"], sha256_hex(&value));
    assert_eq!(record["md5"], trove_tests::md5_hex(&value));
    assert_eq!(record["balance"], "balanced");
    assert_eq!(record["volumes"].as_array().unwrap().len(), 2);
    assert_eq!(record["healthy"], record["volumes"]);
    assert_eq!(c.http.get(url("/nothing")).send().await.unwrap().status(), 404);
    assert_eq!(c.http.get(url("/-/ready")).send().await.unwrap().status(), 400);
    assert_eq!(
        c.http
            .get(url(&format!("/{}", "k".repeat(5000))))
            .send()
            .await
            .unwrap()
            .status(),
        414
    );
    let missing = c.http.get(c.url("/-/ui/key")).send().await.unwrap();
    assert_eq!(missing.status(), 400);
}

#[tokio::test]
async fn the_api_description_is_served_as_json() {
    let c = cluster(&[]).await;
    let doc = c.json("/-/openapi.json").await;
    assert_eq!(doc["openapi"], "3.1.0");
    for path in ["/{key}", "/-/status", "/-/verify", "/-/ui/state"] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc["x-volume-paths"]["/-/pull"]["post"].is_object());
    let docs = c.text("/-/docs").await;
    assert!(docs.contains("/-/docs/docs.js"));
}

// --- the browser ---------------------------------------------------------------------

/// Runs tests/ui/test_status_page.py against `c` (only its tests named
/// with `only`, if given).
async fn browser_suite(c: &Cluster, bin: &Path, out: &Path, envs: &[(&str, String)], only: Option<&str>) {
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("ui/test_status_page.py");
    let mut cmd = Command::new(bin.join("python"));
    cmd.args([
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfEs",
        "--color=no",
    ])
    .arg(&suite)
    .args(only.map(|name| ["-k", name]).into_iter().flatten())
    .current_dir(out)
    .env("TROVE_UI_MASTER", format!("http://{}", c.master.addr))
    .env("TROVE_UI_OUT", out)
    // Selenium finds nothing on the network: the browser and driver
    // are Debian's, named by path.
    .env("SE_OFFLINE", "true")
    .env("PYTHONDONTWRITEBYTECODE", "1");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let stdout = run_tool(cmd, c, "the browser suite (pytest + selenium + chromium)").await;
    assert!(stdout.contains(" passed"), "pytest ran no test:\n{stdout}");
    eprintln!("screenshots: {}", out.display());
}

/// The keys the suite browses: 60 under /photos/ (two pages of 50), one
/// a level down, and two under /dots/, one whose name starts with a dot.
fn browsed_keys() -> impl Iterator<Item = String> {
    let photos = (0..60).map(|i| format!("/photos/a-{i:03}.jpg"));
    let more = ["/photos/2024/cat.jpg", "/dots/.hidden", "/dots/plain"].map(String::from);
    photos.chain(more)
}

#[tokio::test]
async fn status_page_in_a_browser() {
    let Some(bin) = ui_tools() else { return };
    let out = output_dir("status_page_in_a_browser");
    let c = cluster(&["--ui-admin"]).await;
    // The browsed keys, and 1,500 under /bulk/: a deep verify paced at
    // 20 keys a second runs for over a minute, so the page can be read
    // while it runs.
    let bulk = (0..1500).map(|i| format!("/bulk/{i:05}"));
    write_keys(&c, browsed_keys().chain(bulk)).await;
    let victim = &c.volumes[1];
    let envs = [
        ("TROVE_UI_ADMIN", "1".to_string()),
        ("TROVE_UI_VICTIM", format!("{}@{}", victim.pid(), victim.addr)),
    ];
    browser_suite(&c, &bin, &out, &envs, None).await;
    for shot in [
        "01-healthy",
        "02-listing",
        "03-key",
        "04-confirm",
        "05-verify-running",
        "06-verify-stopped",
        "07-volume-down",
        "08-problems",
        "09-phone",
    ] {
        assert!(out.join(format!("{shot}.png")).exists(), "no screenshot {shot}");
    }
}

/// Without `--ui-admin`; then volume 2's disk (a file system of its own)
/// stops taking writes, and the page must say so.
#[tokio::test]
async fn read_only_status_page_in_a_browser() {
    let Some(bin) = ui_tools() else { return };
    let out = output_dir("read_only_status_page_in_a_browser");
    let dir = tempfile::tempdir().expect("temp dir");
    let disk = LoopDisk::mount(&dir.path().join("vol2"), 1024).unwrap_or_else(|e| {
        panic!(
            "cannot mount a file system of its own for volume 2: {e} (this test needs root and loop devices)"
        )
    });
    // The master waits 120 s for a volume's answer: the write left
    // waiting on the frozen disk must not time out, and so have the master
    // mark the volume down, while the page is read.
    let c = cluster_in(dir, &["--stall-timeout", "120s"]).await;
    // Unmounted before the cluster's dir is removed (dropped first): a
    // dir still mounted stops the removal half-way, leaving the rest of
    // the cluster's dir behind in /tmp.
    let disk = disk;
    write_keys(&c, browsed_keys()).await;
    browser_suite(&c, &bin, &out, &[], None).await;

    // A key placed on volume 2, deleted again, then written once its disk
    // is frozen: that write waits, and the volume reports its disk stalled.
    let key = c
        .put_until_on(2, "/frozen/")
        .await
        .expect("of 30 keys, one placed on volume 2");
    assert_eq!(c.delete(&key).await, 204);
    let frozen = disk.freeze().expect("fsfreeze");
    let url = format!("http://{}{key}", c.master.addr);
    let http = c.http.clone();
    let waiting = tokio::spawn(async move { http.put(url).body("written while frozen").send().await });
    wait_for("the master to see volume 2's disk stalled", || async {
        let status = c.status().await;
        let volumes = status["volumes"].as_array().cloned().unwrap_or_default();
        volumes
            .iter()
            .any(|v| v["address"] == c.volumes[2].addr.as_str() && v["stalled"].is_string())
    })
    .await;
    let stalled = [("TROVE_UI_STALLED", c.volumes[2].addr.clone())];
    browser_suite(&c, &bin, &out, &stalled, Some("disk_stalled")).await;
    drop(frozen);
    let written = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("the write still waiting after the thaw")
        .unwrap()
        .unwrap();
    assert_eq!(written.status(), 201, "the write that waited on the frozen disk");
    assert!(
        out.join("10-disk-stalled.png").exists(),
        "no screenshot 10-disk-stalled"
    );
}

// --- schemathesis --------------------------------------------------------------------

#[tokio::test]
async fn schemathesis_finds_the_master_as_described() {
    let Some(bin) = ui_tools() else { return };
    let out = output_dir("schemathesis");
    let c = cluster(&[]).await;
    write_keys(&c, (0..20).map(|i| format!("/s/{i}"))).await;
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.yaml");
    let cmd = schemathesis(&bin, &schema, &c.master.addr, &out);
    run_tool(cmd, &c, "schemathesis").await;
}

/// The volume API (`x-volume-paths`) against a live volume: the same file,
/// its volume paths made the description's `paths`. Without a secret (a
/// volume with one answers `403` to every unsigned request, which is all
/// schemathesis could send), and without `/-/pull` and `/-/compose`, whose
/// made-up `from` addresses would send the volume calling them.
#[tokio::test]
async fn schemathesis_finds_a_volume_as_described() {
    let Some(bin) = ui_tools() else { return };
    let out = output_dir("schemathesis-volume");
    let c = Cluster::start(ClusterOptions {
        volumes: 1,
        replicas: 1,
        master_args: vec!["--no-fsync".into()],
        volume_args: vec!["--no-fsync".into()],
    })
    .await;
    write_keys(&c, (0..20).map(|i| format!("/s/{i}"))).await;
    let mut doc = c.json("/-/openapi.json").await;
    let mut paths = doc["x-volume-paths"].take();
    let described = paths.as_object_mut().expect("x-volume-paths is an object");
    for calls_out in ["/-/pull", "/-/compose"] {
        assert!(described.remove(calls_out).is_some(), "{calls_out} is described");
    }
    assert!(described.len() >= 6, "the volume's paths: {:?}", described.keys());
    doc["paths"] = paths;
    doc.as_object_mut().unwrap().remove("x-volume-paths");
    let schema = out.join("volume-openapi.json");
    std::fs::write(&schema, doc.to_string()).unwrap();
    let cmd = schemathesis(&bin, &schema, &c.volumes[0].addr, &out);
    run_tool(cmd, &c, "schemathesis (volume)").await;
}

/// schemathesis checking the server at `addr` against `schema`: no 5xx,
/// every answer as described, bounded in examples and time, its report
/// left in `out`.
fn schemathesis(bin: &Path, schema: &Path, addr: &str, out: &Path) -> Command {
    let mut cmd = Command::new(bin.join("schemathesis"));
    cmd.args(["--no-color", "run"])
        .arg(schema)
        .args(["--url", &format!("http://{addr}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        // One worker: schemathesis's coverage phase, on two threads, can
        // trip over CPython 3.11's AST compiler (a SystemError in
        // schemathesis itself, not an answer of the server).
        .args(["--max-examples", "25", "--max-time", "90", "--workers", "1"])
        .args(["--request-timeout", "20", "--max-redirects", "0", "--seed", "1"])
        .args(["--suppress-health-check", "all"])
        .args(["--report", "junit", "--report-dir"])
        .arg(out)
        .current_dir(out)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}
