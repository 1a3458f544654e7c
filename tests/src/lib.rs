//! # trove-tests
//!
//! A harness that runs real `trove-master` and `trove-volume` processes on
//! 127.0.0.1, each cluster in its own temp dir, and stops them on drop.
//! Servers are started with `--port 0` and print the address they bound on
//! their first line of stdout, so tests never race for ports; readiness is
//! awaited with bounded polling, never a fixed sleep.
//!
//! The binaries are found next to the test executable's folder
//! (`target/<profile>/`); build them first with `cargo build --release
//! --bins` (`scripts/test.sh` does).

use bytes::Bytes;
use futures::Stream;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a server may take to start, or a condition to come true.
pub const WAIT: Duration = Duration::from_secs(30);

/// Where the binaries are: `target/<profile>/`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // A test runs from target/<profile>/deps/, a binary (trove-bench) from
    // target/<profile>/ itself.
    let mut dir = exe.parent().expect("the executable's folder");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().expect("target/<profile>");
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build the binaries first (cargo build --release --bins, as scripts/test.sh does)",
        path.display()
    );
    path
}

/// One running server process, killed on drop.
pub struct Server {
    child: Option<Child>,
    bin: PathBuf,
    args: Vec<String>,
    /// Extra environment variables (for the next start).
    envs: Vec<(String, String)>,
    log: PathBuf,
    /// `127.0.0.1:port`
    pub addr: String,
    /// How long a start waits for the "listening on" line.
    start_wait: Duration,
}

impl Server {
    /// Starts `bin` with `args` and waits for its "listening on" line.
    /// `--port 0` in `args` is replaced by the bound port on restart.
    pub fn start(bin: PathBuf, args: Vec<String>, log: PathBuf) -> Server {
        Server::start_within(bin, args, log, WAIT)
    }

    /// [`Server::start`], waiting up to `wait` for the "listening on" line
    /// (a volume with millions of blobs walks them all first).
    pub fn start_within(bin: PathBuf, args: Vec<String>, log: PathBuf, wait: Duration) -> Server {
        let mut s = Server {
            child: None,
            bin,
            args,
            envs: vec![],
            log,
            addr: String::new(),
            start_wait: wait,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut child = Command::new(&self.bin)
            .args(&self.args)
            .env("RUST_LOG", "info")
            // Two threads serving HTTP, as on the 2-core machines the
            // suite is made for, whatever this one has: the hung-disk
            // tests hold one of them with a call stuck in place.
            .env("TOKIO_WORKER_THREADS", "2")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let addr = rx.recv_timeout(self.start_wait).unwrap_or_else(|_| {
            let _ = child.kill();
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!(
                "{} did not start within {:?}; its log:\n{log}",
                self.bin.display(),
                self.start_wait
            )
        });
        self.child = Some(child);
        // Restart on the same port.
        if let Some(i) = self.args.iter().position(|a| a == "--port") {
            self.args[i + 1] = addr.rsplit(':').next().expect("host:port").to_string();
        }
        self.addr = addr;
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `signal` (`"STOP"`, `"CONT"`, `"TERM"`…) to the process:
    /// `STOP` freezes it as a hung host would, `CONT` thaws it.
    pub fn signal(&self, signal: &str) {
        crate::signal(self.pid(), signal);
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the process again, with the same arguments and port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Replaces the value of `flag` (for the next restart).
    pub fn set_arg(&mut self, flag: &str, value: &str) {
        let i = self.args.iter().position(|a| a == flag).expect("flag present");
        self.args[i + 1] = value.to_string();
    }

    /// Sets (`Some`) or removes (`None`) an environment variable, for the
    /// next restart.
    pub fn set_env(&mut self, name: &str, value: Option<&str>) {
        self.envs.retain(|(k, _)| k != name);
        if let Some(v) = value {
            self.envs.push((name.to_string(), v.to_string()));
        }
    }

    /// Waits (bounded) until the process has exited on its own, e.g. at a
    /// crash point; panics if it is still running after [`WAIT`].
    pub fn wait_exit(&mut self) {
        let deadline = Instant::now() + WAIT;
        let child = self.child.as_mut().expect("started");
        while child.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "{} did not exit", self.bin.display());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log so far (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// CPU time (user + system) the process has used so far, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("proc stat");
        // Fields after the command name (which is in parentheses): utime is
        // the 12th, stime the 13th; both in clock ticks (100 per second).
        let after = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
        ticks as f64 / 100.0
    }

    /// Peak resident memory (VmHWM) in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        let line = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .expect("VmHWM line");
        let kb: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("VmHWM kB");
        kb * 1024
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Options for [`Cluster::start`].
#[derive(Clone)]
pub struct ClusterOptions {
    pub volumes: usize,
    pub replicas: usize,
    /// Extra `trove-master serve` flags.
    pub master_args: Vec<String>,
    /// Extra `trove-volume` flags.
    pub volume_args: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            volumes: 3,
            replicas: 2,
            master_args: vec![],
            volume_args: vec![],
        }
    }
}

/// A master and its volumes in one temp dir.
pub struct Cluster {
    pub master: Server,
    pub volumes: Vec<Server>,
    pub dir: tempfile::TempDir,
    /// Follows no redirects.
    pub http: reqwest::Client,
    volume_args: Vec<String>,
}

/// A failed test keeps its cluster's temp dir — the servers' logs
/// (`master.log`, `vol<i>.log`), the index and the data dirs — and says
/// where it is, so the failure can be read.
impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
            eprintln!(
                "the failed test's cluster is kept in {} (server logs: master.log, vol<i>.log)",
                self.dir.path().display()
            );
        }
    }
}

fn start_volume(dir: &Path, i: usize, extra: &[String]) -> Server {
    let data = dir.join(format!("vol{i}"));
    let mut args: Vec<String> = vec!["--bind".into(), "127.0.0.1".into(), "--port".into(), "0".into()];
    if !extra.iter().any(|a| a == "--stall-timeout") {
        args.extend(["--stall-timeout".into(), "5s".into()]);
    }
    args.extend(extra.iter().cloned());
    args.push(data.display().to_string());
    Server::start(bin("trove-volume"), args, dir.join(format!("vol{i}.log")))
}

impl Cluster {
    /// A master with 3 volumes and 2 replicas, ready.
    pub async fn start_default() -> Cluster {
        Cluster::start(ClusterOptions::default()).await
    }

    pub async fn start(opts: ClusterOptions) -> Cluster {
        Cluster::start_in(tempfile::tempdir().expect("temp dir"), opts).await
    }

    /// A cluster in `dir`, which may hold already what a test set up for
    /// it: volume `i`'s data dir is `dir/vol<i>` (a file system mounted
    /// there, say).
    pub async fn start_in(dir: tempfile::TempDir, opts: ClusterOptions) -> Cluster {
        let volumes: Vec<Server> = (0..opts.volumes)
            .map(|i| start_volume(dir.path(), i, &opts.volume_args))
            .collect();
        let list: Vec<&str> = volumes.iter().map(|v| v.addr.as_str()).collect();
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--port".into(),
            "0".into(),
            "--db".into(),
            dir.path().join("db").display().to_string(),
            "--volumes".into(),
            list.join(","),
            "--replicas".into(),
            opts.replicas.to_string(),
            "--health-interval".into(),
            "200ms".into(),
        ];
        if !opts.master_args.iter().any(|a| a == "--stall-timeout") {
            args.extend(["--stall-timeout".into(), "5s".into()]);
        }
        args.extend(opts.master_args.iter().cloned());
        let master = Server::start(bin("trove-master"), args, dir.path().join("master.log"));
        let cluster = Cluster {
            master,
            volumes,
            dir,
            http: no_redirects(),
            volume_args: opts.volume_args,
        };
        cluster.wait_until_ready().await;
        cluster
    }

    /// Starts one more volume (not yet known to the master); its index.
    pub fn add_volume(&mut self) -> usize {
        let i = self.volumes.len();
        self.volumes
            .push(start_volume(self.dir.path(), i, &self.volume_args));
        i
    }

    /// Restarts the master with `--volumes` set to the volumes `which`.
    pub async fn restart_master_with_volumes(&mut self, which: &[usize]) {
        let list: Vec<&str> = which.iter().map(|i| self.volumes[*i].addr.as_str()).collect();
        self.master.set_arg("--volumes", &list.join(","));
        self.master.restart();
        self.wait_until_ready().await;
    }

    /// Runs `trove-master <args> --master <this master>` (an admin job) and
    /// returns its exit code and stdout.
    pub async fn admin(&self, args: &[&str]) -> (i32, String) {
        let out = tokio::process::Command::new(bin("trove-master"))
            .args(args)
            .args(["--master", &format!("http://{}", self.master.addr)])
            .stdin(Stdio::null())
            .output()
            .await
            .expect("trove-master runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!(
            "$ trove-master {}\n{stdout}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), stdout)
    }

    /// Runs `trove-master rebuild --db <db> --volumes <every volume> <extra>`.
    pub fn rebuild(&self, db: &Path, extra: &[&str]) -> std::process::Output {
        let volumes: Vec<&str> = self.volumes.iter().map(|v| v.addr.as_str()).collect();
        Command::new(bin("trove-master"))
            .args([
                "rebuild",
                "--db",
                db.to_str().unwrap(),
                "--volumes",
                &volumes.join(","),
            ])
            .args(extra)
            .output()
            .expect("trove-master runs")
    }

    /// Rebuilds an index from the volumes alone (`trove-master rebuild`,
    /// into a new dir of the cluster's) and has the master serve it.
    pub async fn serve_rebuilt_index(&mut self) {
        let rebuilt = self.dir.path().join(format!("rebuilt-{}", unique_suffix()));
        let out = self.rebuild(&rebuilt, &[]);
        assert!(
            out.status.success(),
            "rebuild: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.master.set_arg("--db", rebuilt.to_str().unwrap());
        self.master.restart();
        self.wait_until_ready().await;
    }

    /// Has the master serve its own index again (after
    /// [`Cluster::serve_rebuilt_index`]).
    pub async fn serve_real_index(&mut self) {
        let real = self.dir.path().join("db");
        self.master.set_arg("--db", real.to_str().unwrap());
        self.master.restart();
        self.wait_until_ready().await;
    }

    /// Every blob sidecar on volume `i` (its `/-/blobs`).
    pub async fn blobs(&self, i: usize) -> Vec<serde_json::Value> {
        let url = format!("http://{}/-/blobs", self.volumes[i].addr);
        let text = self.http.get(url).send().await.unwrap().text().await.unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Volume `i`'s `/-/listing`, decoded: its blobs in the order it sent
    /// them. Panics unless the listing is whole (ends with its end frame).
    pub async fn listing(&self, i: usize) -> Vec<trove_common::protocol::listing::Listed> {
        let url = format!("http://{}/-/listing", self.volumes[i].addr);
        let bytes = self.http.get(url).send().await.unwrap().bytes().await.unwrap();
        trove_common::protocol::listing::decode_all(&bytes).expect("a whole listing")
    }

    /// Where volume `i` keeps the bytes of `key` (single data dir).
    pub fn blob_path(&self, i: usize, key: &str) -> PathBuf {
        let h = sha256_hex(key.as_bytes());
        self.volume_dir(i).join(&h[0..2]).join(&h[2..4]).join(&h)
    }

    /// The metadata volume `i` keeps for `key`, read from disk: the
    /// `user.trove.meta` attribute of the blob file, else its `.meta`
    /// sidecar; `None` when there is neither.
    pub fn blob_meta(&self, i: usize, key: &str) -> Option<serde_json::Value> {
        let data = self.blob_path(i, key);
        let bytes = match trove_common::xattr::get(&data) {
            Ok(Some(b)) => b,
            _ => std::fs::read(sidecar_of(&data)).ok()?,
        };
        Some(serde_json::from_slice(&bytes).expect("stored metadata is JSON"))
    }

    /// Overwrites the metadata volume `i` keeps for `key` with `bytes`,
    /// behind the volume's back, where it lives (attribute or sidecar).
    pub fn write_blob_meta(&self, i: usize, key: &str, bytes: &[u8]) {
        let data = self.blob_path(i, key);
        if matches!(trove_common::xattr::get(&data), Ok(Some(_))) {
            trove_common::xattr::set_path(&data, bytes).unwrap();
        } else {
            std::fs::write(sidecar_of(&data), bytes).unwrap();
        }
    }

    /// Removes volume `i`'s copy of `key` from disk (data and sidecar),
    /// behind the volume's back.
    pub fn remove_blob(&self, i: usize, key: &str) {
        let data = self.blob_path(i, key);
        std::fs::remove_file(&data).unwrap();
        let _ = std::fs::remove_file(sidecar_of(&data));
    }

    /// The master's answer to `HEAD key`.
    pub async fn head(&self, key: &str) -> reqwest::Response {
        self.http.head(self.url(key)).send().await.unwrap()
    }

    /// PUTs `values` (key, bytes) with `concurrency` writers; panics unless
    /// every one gets 201.
    pub async fn put_all(&self, values: Vec<(String, Vec<u8>)>, concurrency: usize) {
        use futures::StreamExt;
        futures::stream::iter(values)
            .for_each_concurrent(concurrency, |(k, v)| async move {
                assert_eq!(self.put(&k, v).await, 201, "PUT {k}");
            })
            .await;
    }

    /// `http://master<key>`
    pub fn url(&self, key: &str) -> String {
        format!("http://{}{key}", self.master.addr)
    }

    /// A volume's data dir.
    pub fn volume_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("vol{i}"))
    }

    /// Waits for `/-/ready`, and for the master to see every volume it
    /// knows as healthy (so that writes land where placement says).
    pub async fn wait_until_ready(&self) {
        let url = self.url("/-/ready");
        let http = &self.http;
        wait_for("master ready", || async {
            http.get(&url).send().await.is_ok_and(|r| r.status() == 200)
        })
        .await;
        wait_for("every volume healthy", || async {
            let s = self.status().await;
            s["healthy_volumes"] == s["volumes"].as_array().map_or(0, |v| v.len())
        })
        .await;
    }

    /// `GET` a master path, as text.
    pub async fn text(&self, path: &str) -> String {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// How many volumes hold a blob of `key` (by their `/-/blobs`).
    pub async fn copies_of(&self, key: &str) -> usize {
        let mut n = 0;
        for i in 0..self.volumes.len() {
            n += self.blobs(i).await.iter().filter(|b| b["key"] == key).count();
        }
        n
    }

    /// `GET` a master path, as JSON (a listing, a job report…).
    pub async fn json(&self, path: &str) -> serde_json::Value {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The master's `/-/status`.
    pub async fn status(&self) -> serde_json::Value {
        self.json("/-/status").await
    }

    /// Volume `i`'s own `/-/status`.
    pub async fn volume_status(&self, i: usize) -> serde_json::Value {
        let url = format!("http://{}/-/status", self.volumes[i].addr);
        self.http.get(url).send().await.unwrap().json().await.unwrap()
    }

    /// Waits until the master sees volume `i` as `healthy`.
    pub async fn wait_volume_health(&self, i: usize, healthy: bool) {
        let addr = self.volumes[i].addr.clone();
        wait_for(&format!("volume {addr} healthy={healthy}"), || async {
            let status = self.status().await;
            status["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["address"] == addr.as_str() && v["healthy"] == healthy)
        })
        .await;
    }

    /// Which volume (by index) has `addr`.
    pub fn volume_index(&self, addr: &str) -> usize {
        self.volumes
            .iter()
            .position(|v| v.addr == addr)
            .expect("a volume of this cluster")
    }

    /// Files in volume `i`'s temp dir (uploads in progress).
    pub fn temp_files(&self, i: usize) -> usize {
        std::fs::read_dir(self.volume_dir(i).join("tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// PUT `body` at `key`; returns the status.
    pub async fn put(&self, key: &str, body: impl Into<reqwest::Body>) -> u16 {
        self.http
            .put(self.url(key))
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// `DELETE key`; returns the status.
    pub async fn delete(&self, key: &str) -> u16 {
        let resp = self.http.delete(self.url(key)).send().await.unwrap();
        resp.status().as_u16()
    }

    /// `UNLINK key` (soft delete); returns the status.
    pub async fn unlink(&self, key: &str) -> u16 {
        let unlink = reqwest::Method::from_bytes(b"UNLINK").expect("a method name");
        let resp = self.http.request(unlink, self.url(key)).send().await.unwrap();
        resp.status().as_u16()
    }

    /// The volume URL the master redirects a `GET` of `key` to; panics
    /// unless the answer is a `302`.
    pub async fn location(&self, key: &str) -> String {
        let resp = self.http.get(self.url(key)).send().await.unwrap();
        assert_eq!(resp.status(), 302, "GET {key}");
        resp.headers()["location"].to_str().unwrap().to_string()
    }

    /// The metrics scrape of the server at `addr` (the master's, or a
    /// volume's), as text.
    pub async fn metrics_of(&self, addr: &str) -> String {
        let resp = self
            .http
            .get(format!("http://{addr}/-/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "/-/metrics of {addr}");
        resp.text().await.unwrap()
    }

    /// Writes keys `<prefix>0`, `<prefix>1`… (each its own name as its
    /// value) until one has a copy on volume `i`, 30 at most; that key.
    /// (A key's volumes depend on the key and the volumes alone.)
    pub async fn put_until_on(&self, i: usize, prefix: &str) -> Option<String> {
        for n in 0..30 {
            let key = format!("{prefix}{n}");
            assert_eq!(self.put(&key, key.clone()).await, 201, "{key}");
            if self.volumes_of(&key).await.contains(&self.volumes[i].addr) {
                return Some(key);
            }
        }
        None
    }

    /// Where `key` lives when every volume is up: the master's placement
    /// with `replicas` replicas over this cluster's volumes.
    pub fn home(&self, replicas: usize, key: &str) -> std::collections::HashSet<String> {
        use trove_common::placement::{parse_volume_list, Placement};
        let list: Vec<&str> = self.volumes.iter().map(|v| v.addr.as_str()).collect();
        let placement = Placement::new(parse_volume_list(&list.join(",")).unwrap(), replicas).unwrap();
        placement
            .home(key.as_bytes())
            .into_iter()
            .map(|v| v.addr.clone())
            .collect()
    }

    /// The volumes the master names for `key` (`Key-Volumes` of a `HEAD`),
    /// in its order; panics unless the answer is a `302`.
    pub async fn volumes_of(&self, key: &str) -> Vec<String> {
        let resp = self.head(key).await;
        assert_eq!(resp.status(), 302, "HEAD {key}");
        key_volumes(resp.headers())
    }

    /// The volumes `key`'s record names (`/-/ui/key`), whether or not
    /// they still hold a copy: `Key-Volumes` ([`Cluster::volumes_of`])
    /// lists only those the master vouches for. `key` must need no
    /// escaping in a query.
    pub async fn recorded_on(&self, key: &str) -> Vec<String> {
        let record = self.json(&format!("/-/ui/key?key={key}")).await;
        serde_json::from_value(record["volumes"].clone()).expect("a record's volumes")
    }

    /// No orphans: every blob on every volume is a replica that a live
    /// record names (by its `Key-Volumes`), and no temp file is left.
    pub async fn assert_no_orphans(&self) {
        for i in 0..self.volumes.len() {
            let addr = self.volumes[i].addr.clone();
            for blob in self.blobs(i).await {
                let key = trove_common::key::encode_path(blob["key"].as_str().unwrap());
                let r = self.head(&key).await;
                assert_eq!(r.status(), 302, "orphan {key} on {addr}");
                let volumes = key_volumes(r.headers());
                assert!(
                    volumes.contains(&addr),
                    "{key} on {addr} is not one of {volumes:?}"
                );
            }
            assert_eq!(self.temp_files(i), 0, "temp files left on {addr}");
        }
    }

    /// GET `key` through the master, following the redirect by hand.
    /// Returns the final status and body.
    pub async fn get(&self, key: &str) -> (u16, Bytes) {
        let resp = self.http.get(self.url(key)).send().await.unwrap();
        if resp.status() != 302 {
            let status = resp.status().as_u16();
            return (status, resp.bytes().await.unwrap());
        }
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        let resp = self.http.get(location).send().await.unwrap();
        (resp.status().as_u16(), resp.bytes().await.unwrap())
    }
}

/// Sends `signal` (`"STOP"`, `"CONT"`, `"TERM"`, `"INT"`…) to process
/// `pid`; panics if `kill` fails.
pub fn signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{signal} {pid} failed");
}

/// A header's value as text, when present and UTF-8 (metadata may be).
pub fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
}

/// The `Key-Volumes` of a master's answer, in order (none when absent).
pub fn key_volumes(headers: &reqwest::header::HeaderMap) -> Vec<String> {
    header(headers, "key-volumes")
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

/// What a master's `HEAD` says of a key: status and the headers that
/// describe its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    pub status: u16,
    pub md5: String,
    pub sha256: String,
    pub size: String,
    pub volumes: String,
}

impl Cluster {
    /// The master's view of `key`'s record, from a `HEAD`.
    pub async fn record_of(&self, key: &str) -> RecordView {
        let r = self.head(key).await;
        let h = |name| header(r.headers(), name).unwrap_or_default().to_string();
        RecordView {
            status: r.status().as_u16(),
            md5: h("content-md5"),
            sha256: h("key-sha256"),
            size: h("key-size"),
            volumes: h("key-volumes"),
        }
    }
}

/// A number that differs between calls (nanoseconds now), for keys that
/// must not repeat.
pub fn unique_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// What a load generator needs of a cluster, detached from it: a client
/// and the master's address (which a restarted master keeps), so that a
/// fault injected meanwhile can own the cluster.
#[derive(Clone)]
pub struct MasterClient {
    pub http: reqwest::Client,
    pub master: String,
}

impl MasterClient {
    pub fn of(c: &Cluster) -> MasterClient {
        MasterClient {
            http: c.http.clone(),
            master: c.master.addr.clone(),
        }
    }

    /// `http://master<key>`
    pub fn url(&self, key: &str) -> String {
        format!("http://{}{key}", self.master)
    }
}

/// A client that follows no redirects (to see the master's 302s).
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

/// Polls `cond` every 50 ms until it holds; panics after [`WAIT`].
pub async fn wait_for<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        // A check that does not return (a server that stopped answering)
        // fails the wait too, rather than holding it past its deadline.
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, cond()).await {
            Ok(true) => return,
            // (With no time left the check is polled once: not a hang.)
            Err(_) if !left.is_zero() => {
                panic!("timed out waiting for {what}: the last check did not return")
            }
            _ => {}
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Deterministic pseudo-random bytes: `size` bytes from `seed`, produced in
/// 64 KiB chunks, never all in memory. The sha256 of what was produced is
/// left in the returned handle once the stream has ended.
pub fn pattern(
    size: u64,
    seed: u64,
) -> (
    impl Stream<Item = Result<Bytes, std::io::Error>>,
    Arc<Mutex<Option<String>>>,
) {
    let digest = Arc::new(Mutex::new(None));
    let out = Arc::clone(&digest);
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut left = size;
    let mut hasher = Some(Sha256::new());
    let stream = futures::stream::poll_fn(move |_| {
        if left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = left.min(64 * 1024) as usize;
        let mut buf = Vec::with_capacity(n + 8);
        while buf.len() < n {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            buf.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        buf.truncate(n);
        left -= n as u64;
        if let Some(h) = hasher.as_mut() {
            h.update(&buf);
        }
        // Set with the last chunk: a client that knows the length may not
        // poll the stream once more to see it end.
        if left == 0 {
            if let Some(h) = hasher.take() {
                *out.lock().unwrap() = Some(hex::encode(h.finalize()));
            }
        }
        std::task::Poll::Ready(Some(Ok(Bytes::from(buf))))
    });
    (stream, digest)
}

/// `size` pattern bytes in memory (for small values).
pub fn pattern_bytes(size: usize, seed: u64) -> Vec<u8> {
    use futures::StreamExt;
    let (stream, _) = pattern(size as u64, seed);
    futures::executor::block_on(stream.map(|c| c.unwrap().to_vec()).concat())
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Hex md5 of `bytes`.
pub fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest as _;
    hex::encode(md5::Md5::digest(bytes))
}

/// What a run of the `trove` command line left behind.
pub struct CliRun {
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Cluster {
    /// A `trove_client::Client` for this cluster's master.
    pub fn client(&self) -> trove_client::Client {
        trove_client::Client::new(&format!("http://{}", self.master.addr)).expect("a valid master URL")
    }

    /// A `trove` command aimed at this master, with its own config file in
    /// the cluster's temp dir (never the user's) and no stdin.
    pub fn trove_command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(bin("trove"));
        cmd.env("TROVE_MASTER", format!("http://{}", self.master.addr))
            .env("TROVE_CONFIG", self.dir.path().join("trove-config.json"))
            .env_remove("TROVE_JSON")
            .env_remove("TROVE_QUIET")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `trove <args>` to the end (see [`Cluster::trove_command`]).
    pub async fn trove(&self, args: &[&str]) -> CliRun {
        let out = self
            .trove_command()
            .args(args)
            .output()
            .await
            .expect("trove runs");
        let run = CliRun {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        eprintln!("$ trove {} → {}\n{}", args.join(" "), run.code, run.stderr);
        run
    }
}

/// A volume on its own (no master) in `dir`, with `extra` flags: for tests
/// that count a server's connections, which a master's health polls would
/// disturb.
pub fn lone_volume(dir: &Path, extra: &[&str]) -> Server {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    start_volume(dir, 0, &extra)
}

/// One series of a server's `/-/metrics` (e.g.
/// `trove_connections_timed_out_total{reason="idle"}`); 0 when absent.
pub async fn metric(http: &reqwest::Client, addr: &str, series: &str) -> f64 {
    let resp = http.get(format!("http://{addr}/-/metrics")).send().await;
    let text = resp.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// HTTP/1.1 by hand over a socket, for what client libraries hide:
/// half-sent requests, bodies sent before the answer is read, `100
/// Continue`, connections a server closes. Every read and write is bounded
/// by [`WAIT`].
pub mod raw {
    use super::WAIT;
    use std::io::{ErrorKind, Read};
    use std::net::TcpStream;

    /// A connection with read and write timeouts of [`WAIT`].
    pub fn connect(addr: &str) -> TcpStream {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_write_timeout(Some(WAIT)).unwrap();
        s
    }

    /// Sends `request` whole and reads until the server closes (or
    /// resets) the connection, within [`WAIT`]: everything that came back,
    /// as text. For requests with `Connection: close`, or that a server
    /// answers and then drops. `hang_up`: shut the sending side down after
    /// the request (a client that gave up on sending).
    pub fn exchange(addr: &str, request: &[u8], hang_up: bool) -> String {
        use std::io::Write;
        let mut s = connect(addr);
        // The server may answer and close before it read everything (a
        // refused request): what it sent still arrives.
        let _ = s.write_all(request);
        if hang_up {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                    ) =>
                {
                    break
                }
                Err(e) => panic!("no end of the answer from {addr} within {WAIT:?} ({e})"),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// One answer: its head (status line and headers, as text) and body
    /// (`Content-Length` bytes). Panics when the server closes or resets
    /// the connection first, or says nothing for [`WAIT`].
    pub fn read_answer(s: &mut TcpStream) -> (String, Vec<u8>) {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match s.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                other => panic!(
                    "no complete answer ({other:?}) after {:?}",
                    String::from_utf8_lossy(&head)
                ),
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let len: usize = header(&head, "content-length").map_or(0, |v| v.parse().unwrap());
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).unwrap();
        (head, body)
    }

    /// The status code of an answer's head.
    pub fn status(head: &str) -> u16 {
        head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    /// A header's value in an answer's head (name case-insensitive).
    pub fn header(head: &str, name: &str) -> Option<String> {
        head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// Reads until the server closes the connection (an end of stream or a
    /// reset) and returns how many bytes came before. Panics if it is
    /// still open after [`WAIT`].
    pub fn wait_closed(s: &mut TcpStream) -> u64 {
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) => return total,
                Ok(n) => total += n as u64,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                    ) =>
                {
                    return total
                }
                Err(e) => panic!("the server did not close the connection within {WAIT:?} ({e})"),
            }
        }
    }
}

/// Runs a system tool (`mount`, `fsfreeze`…) to completion; its stderr
/// is the error when it fails.
pub(crate) fn run_tool(program: &str, args: &[&std::ffi::OsStr]) -> std::io::Result<()> {
    let out = std::process::Command::new(program).args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

pub mod docker;
pub mod frozen_disk;
pub mod hung_disk;
pub mod tools;

/// Flips one byte of a file in place (same inode, same length), as bit rot
/// would.
pub fn flip_byte(path: &Path, offset: u64) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&[b[0] ^ 0x01]).unwrap();
    f.sync_all().unwrap();
}

/// The access key of every test gateway ([`Gateway::start`]).
pub const S3_ACCESS_KEY: &str = "trove-test-access-key";
/// The secret key that goes with [`S3_ACCESS_KEY`].
pub const S3_SECRET_KEY: &str = "trove-test-secret-key/0123456789";

/// A `trove-s3` gateway in front of a cluster's master: started with
/// `--port 0` (it prints the address it bound, as the other servers do),
/// one key pair ([`S3_ACCESS_KEY`], [`S3_SECRET_KEY`]), its log in the
/// cluster's temp dir; ready once its unauthenticated `GET /-/healthy`
/// answers 200; killed on drop.
pub struct Gateway {
    pub server: Server,
}

impl Gateway {
    /// Starts a gateway for `cluster`'s master, with `extra` flags, and
    /// waits (bounded) until it is healthy.
    pub async fn start(cluster: &Cluster, extra: &[&str]) -> Gateway {
        let mut args: Vec<String> = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--port".into(),
            "0".into(),
            "--master".into(),
            format!("http://{}", cluster.master.addr),
            "--access-key".into(),
            S3_ACCESS_KEY.into(),
            "--secret-key".into(),
            S3_SECRET_KEY.into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let log = cluster.dir.path().join("gateway.log");
        let server = Server::start(bin("trove-s3"), args, log);
        let gateway = Gateway { server };
        let url = format!("{}/-/healthy", gateway.endpoint());
        let http = &cluster.http;
        wait_for("the S3 gateway healthy", || async {
            http.get(&url).send().await.is_ok_and(|r| r.status() == 200)
        })
        .await;
        gateway
    }

    /// `http://127.0.0.1:port`, what S3 clients take as their endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// Peak resident memory of the gateway process (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        self.server.peak_rss()
    }

    /// The last `lines` lines of the gateway's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.server.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// The `.meta` sidecar path beside a blob file.
pub fn sidecar_of(data: &std::path::Path) -> PathBuf {
    let mut p = data.as_os_str().to_owned();
    p.push(".meta");
    p.into()
}

/// One counter of `/proc/PID/io` (`rchar`, `wchar`): the bytes a process
/// moved through read and write system calls. `sendfile` counts in both;
/// memory-mapped reads, `recv`/`send` and `splice` in neither.
pub fn proc_io(pid: u32, counter: &str) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix(counter)?.strip_prefix(": "))
        .unwrap_or_else(|| panic!("no {counter} in /proc/{pid}/io"))
        .parse()
        .unwrap()
}
