//! A Trove cluster of containers, for the tests that cross a real network.
//!
//! Every cluster is made by the repository's own `docker.sh` (so the script
//! is tested with it) under a project name unique to the run
//! (`trove-test-<random>`): its containers, network and named volumes all
//! carry that prefix and a `trove.project` label, and [`DockerCluster`]'s
//! `Drop` removes them, whether the test passed or panicked.
//!
//! The test process stays on the host. The master answers reads with a
//! redirect to `http://<volume container>:3001/…`, a name only Docker's DNS
//! knows; on Linux the host can reach the containers' addresses on the
//! bridge network, so the harness's HTTP client resolves container names
//! itself, from `docker network inspect` ([`Names`]), refreshed after every
//! change the harness makes and whenever a name is new (a restarted or
//! reconnected container may get a new address; a disconnected or stopped
//! one keeps its old one, where nothing answers any more, as with a
//! partitioned or dead host).
//!
//! Needs the image (`./docker.sh build`, as `scripts/test.sh` does first).

pub mod compose;
pub mod workload;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::wait_for;
use trove_common::signing::{self, Signer};

/// The port of the master inside its container.
pub const MASTER_PORT: u16 = 3000;
/// The port of every volume inside its container.
pub const VOLUME_PORT: u16 = 3001;
/// The stall timeout of every test cluster: long enough for a busy 2-core
/// machine, short enough that a frozen volume is noticed quickly.
pub const STALL: Duration = Duration::from_secs(3);

/// The repository (where `docker.sh` is).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_path_buf()
}

/// A project name no other run uses.
pub fn unique_project() -> String {
    format!("trove-test-{:08x}", rand::random::<u32>())
}

/// Container names → addresses on a Docker network, for reqwest.
#[derive(Default)]
pub struct Names {
    /// The network whose containers are looked up on a miss (none: only
    /// the names given to [`Names::update`]).
    network: Option<String>,
    map: RwLock<HashMap<String, IpAddr>>,
}

impl Names {
    /// Names of the containers on `network`.
    pub fn of_network(network: String) -> Names {
        Names {
            network: Some(network),
            map: RwLock::default(),
        }
    }

    /// Adds or updates names. A name that is not given keeps its last
    /// address, as a client's DNS cache would: a stopped or disconnected
    /// container is then unreachable at it, as a dead host is.
    pub fn update(&self, map: HashMap<String, IpAddr>) {
        self.map.write().unwrap().extend(map);
    }

    fn get(&self, name: &str) -> Option<IpAddr> {
        self.map.read().unwrap().get(name).copied()
    }

    /// Re-reads the addresses of the network's containers.
    pub async fn refresh(&self) {
        let Some(network) = &self.network else {
            return;
        };
        let format = "{{range .Containers}}{{.Name}} {{.IPv4Address}}\n{{end}}";
        let (code, out, _) = run_quietly("docker", &["network", "inspect", network, "-f", format], &[]).await;
        if code != 0 {
            return;
        }
        let map = out
            .lines()
            .filter_map(|line| {
                let (name, cidr) = line.split_once(' ')?;
                let ip = cidr.split('/').next()?.parse().ok()?;
                Some((name.to_string(), ip))
            })
            .collect();
        self.update(map);
    }
}

/// Resolves from the map; a name not seen yet (a container started by
/// `docker.sh` while it still runs, as `add-volume` does) makes it look
/// again.
struct Resolver(Arc<Names>);

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let names = Arc::clone(&self.0);
        let name = name.as_str().to_string();
        Box::pin(async move {
            if names.get(&name).is_none() {
                names.refresh().await;
            }
            let ip = names
                .get(&name)
                .ok_or_else(|| format!("{name} is not a container on the cluster's network"))?;
            let addrs: reqwest::dns::Addrs = Box::new(std::iter::once(SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// A client for the cluster: follows no redirects (the checker follows
/// them itself, to fail over), resolves container names, and gives up on a
/// connection after 2 s and on a silent server after 10 s.
pub fn client(names: Arc<Names>) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Resolver(names))
        .connect_timeout(Duration::from_secs(2))
        .read_timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}

/// Runs `program args` with `env`, returning (exit code, stdout); the
/// command, its stdout and its stderr are echoed to the test's output.
async fn run(program: &str, args: &[&str], env: &[(String, String)]) -> (i32, String) {
    let (code, stdout, stderr) = run_quietly(program, args, env).await;
    eprintln!("$ {program} {}\n{stdout}{stderr}", args.join(" "));
    (code, stdout)
}

/// [`run`] without the echo (for polling); (exit code, stdout, stderr).
async fn run_quietly(program: &str, args: &[&str], env: &[(String, String)]) -> (i32, String, String) {
    let mut command = tokio::process::Command::new(program);
    command.args(args).stdin(Stdio::null()).kill_on_drop(true);
    // Only what the cluster is meant to see: no TROVE_* of the caller's.
    command.env_clear();
    for (k, v) in std::env::vars() {
        if k == "PATH" || k == "HOME" || k.starts_with("DOCKER_") {
            command.env(k, v);
        }
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
    let out = command
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `docker args`, which must succeed; its stdout.
pub async fn docker(args: &[&str]) -> String {
    let (code, out) = run("docker", args, &[]).await;
    assert_eq!(code, 0, "docker {} failed", args.join(" "));
    out
}

/// What Docker says of a container's health check (`healthy`,
/// `starting`…), polled twice a second until it is `healthy`.
pub async fn wait_healthy(container: &str) {
    wait_for(&format!("Docker to report {container} healthy"), || async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, health, _) = run_quietly(
            "docker",
            &["inspect", "-f", "{{.State.Health.Status}}", container],
            &[],
        )
        .await;
        health.trim() == "healthy"
    })
    .await;
}

/// Whether the Docker engine answers. The docker suite is run on purpose
/// (it is `#[ignore]`d otherwise), so a missing engine is a failure.
pub async fn require_docker() {
    let (code, _) = run("docker", &["info", "--format", "{{.ServerVersion}}"], &[]).await;
    assert_eq!(
        code, 0,
        "the Docker engine does not answer (docker info); the docker suite needs it"
    );
}

/// Settings of a test cluster.
#[derive(Clone)]
pub struct Options {
    pub volumes: usize,
    pub replicas: usize,
    /// `--secret` of master and volumes (signed URLs).
    pub secret: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            volumes: 3,
            replicas: 2,
            secret: None,
        }
    }
}

/// A cluster of containers made by `docker.sh up`, removed on drop.
pub struct DockerCluster {
    /// The prefix of every container, network and volume of the cluster.
    pub project: String,
    pub replicas: usize,
    pub secret: Option<String>,
    /// What `docker.sh` is run with.
    env: Vec<(String, String)>,
    names: Arc<Names>,
    /// Resolves container names; follows no redirects.
    pub http: reqwest::Client,
}

impl DockerCluster {
    /// `docker.sh up`, then waits until the master sees every volume healthy.
    pub async fn up(opts: Options) -> DockerCluster {
        require_docker().await;
        let project = unique_project();
        let mut env: Vec<(String, String)> = [
            ("TROVE_DOCKER_PROJECT", project.as_str()),
            // Docker picks the host ports: runs never collide.
            ("TROVE_DOCKER_PORT", "0"),
            ("TROVE_DOCKER_S3_PORT", "0"),
            // A killed container must stay dead until the test says.
            ("TROVE_DOCKER_RESTART", "no"),
            ("TROVE_STALL_TIMEOUT", "3s"),
            ("TROVE_CONNECT_TIMEOUT", "1s"),
            ("TROVE_HEALTH_INTERVAL", "250ms"),
            ("RUST_LOG", "info"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if let Some(secret) = &opts.secret {
            env.push(("TROVE_SECRET".into(), secret.clone()));
        }
        let names = Arc::new(Names::of_network(format!("{project}-net")));
        let cluster = DockerCluster {
            project,
            replicas: opts.replicas,
            secret: opts.secret,
            env,
            http: client(Arc::clone(&names)),
            names,
        };
        let (code, _) = cluster
            .docker_sh(&[
                "up",
                "--volumes",
                &opts.volumes.to_string(),
                "--replicas",
                &opts.replicas.to_string(),
            ])
            .await;
        assert_eq!(code, 0, "docker.sh up failed");
        cluster.wait_all_healthy().await;
        cluster
    }

    /// Runs `./docker.sh args` for this cluster; (exit code, stdout). The
    /// addresses are refreshed afterwards.
    pub async fn docker_sh(&self, args: &[&str]) -> (i32, String) {
        let script = repo().join("docker.sh");
        let result = run(script.to_str().expect("a UTF-8 path"), args, &self.env).await;
        self.refresh_names().await;
        result
    }

    /// `docker args` (which must succeed), then refreshes the addresses.
    pub async fn docker(&self, args: &[&str]) -> String {
        let out = docker(args).await;
        self.refresh_names().await;
        out
    }

    /// Re-reads which container has which address on the network.
    pub async fn refresh_names(&self) {
        self.names.refresh().await;
    }

    pub fn network(&self) -> String {
        format!("{}-net", self.project)
    }

    /// `<project>-<name>`: `master`, `vol2`, `index`, `vol2-data`.
    pub fn name(&self, name: &str) -> String {
        format!("{}-{name}", self.project)
    }

    /// Volume `i`'s container (1-based, as docker.sh numbers them).
    pub fn volume(&self, i: usize) -> String {
        self.name(&format!("vol{i}"))
    }

    /// Volume `i`'s address as the master knows it (`host:port`).
    pub fn volume_addr(&self, i: usize) -> String {
        format!("{}:{VOLUME_PORT}", self.volume(i))
    }

    /// `http://<master container>:3000`.
    pub fn master_url(&self) -> String {
        format!("http://{}:{MASTER_PORT}", self.name("master"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.master_url())
    }

    /// The master's port published on the host, as `docker port` says.
    pub async fn published_master(&self) -> String {
        let out = docker(&["port", &self.name("master"), &format!("{MASTER_PORT}/tcp")]).await;
        out.lines().next().expect("a published port").trim().to_string()
    }

    /// `GET` a master path as JSON.
    pub async fn json(&self, path: &str) -> serde_json::Value {
        let r = self.http.get(self.url(path)).send().await;
        let r = r.unwrap_or_else(|e| panic!("GET {path}: {e}"));
        r.json().await.unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// The master's `/-/status`, or `None` while it does not answer.
    pub async fn status(&self) -> Option<serde_json::Value> {
        let r = self.http.get(self.url("/-/status")).send().await.ok()?;
        r.json().await.ok()
    }

    /// Volume `i` in the master's `/-/status` (health, `lost_data_at`…).
    pub async fn volume_status(&self, i: usize) -> Option<serde_json::Value> {
        let status = self.status().await?;
        let addr = self.volume_addr(i);
        status["volumes"]
            .as_array()?
            .iter()
            .find(|v| v["address"] == addr.as_str())
            .cloned()
    }

    /// Volume `i`'s health as the master reports it.
    async fn volume_healthy(&self, i: usize) -> Option<bool> {
        self.volume_status(i).await?["healthy"].as_bool()
    }

    /// Waits until the master reports volume `i` healthy (or down).
    pub async fn wait_volume_health(&self, i: usize, healthy: bool) {
        let what = format!("the master to report {} healthy={healthy}", self.volume(i));
        wait_for(&what, || async { self.volume_healthy(i).await == Some(healthy) }).await;
    }

    /// Waits until the master is ready and sees every volume it knows healthy.
    pub async fn wait_all_healthy(&self) {
        self.refresh_names().await;
        wait_for("the master to see every volume healthy", || async {
            self.status().await.is_some_and(|s| {
                let all = s["volumes"].as_array().map_or(usize::MAX, |v| v.len());
                s["healthy_volumes"].as_u64() == Some(all as u64)
            })
        })
        .await;
    }

    /// How many volumes the master knows.
    pub async fn volume_count(&self) -> usize {
        let status = self.status().await.expect("the master answers");
        status["volumes"].as_array().expect("volumes").len()
    }

    /// A URL for a volume request, signed when the cluster has a secret.
    pub fn volume_url(&self, i: usize, method: &str, path: &str) -> String {
        let signer = self.secret.as_deref().map(Signer::new);
        signing::url(
            signer.as_ref(),
            Duration::from_secs(300),
            method,
            &self.volume_addr(i),
            path,
            &[],
        )
    }

    /// Every blob on volume `i` (its `/-/blobs`).
    pub async fn blobs(&self, i: usize) -> Vec<serde_json::Value> {
        let url = self.volume_url(i, "GET", "/-/blobs");
        let r = self.http.get(&url).send().await;
        let r = r.unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(r.status(), 200, "GET {url}");
        let text = r.text().await.expect("the listing");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("an NDJSON line"))
            .collect()
    }

    /// The live keys under `prefix`.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let list = self.json(&format!("{prefix}?list")).await;
        list["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k.as_str().expect("a key").to_string())
            .collect()
    }

    /// The master's `HEAD` of `key`: (status, Key-Volumes, Key-Balance).
    pub async fn head(&self, key: &str) -> (u16, Vec<String>, String) {
        let url = self.url(&trove_common::key::encode_path(key));
        let r = self
            .http
            .head(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("HEAD {key}: {e}"));
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let volumes = header("key-volumes");
        let volumes = volumes
            .split(',')
            .filter(|v| !v.is_empty())
            .map(String::from)
            .collect();
        (r.status().as_u16(), volumes, header("key-balance"))
    }

    /// How many live keys under `prefix` are not where placement wants them.
    pub async fn unbalanced(&self, prefix: &str) -> usize {
        let mut n = 0;
        for key in self.keys(prefix).await {
            if self.head(&key).await.2 == "unbalanced" {
                n += 1;
            }
        }
        n
    }

    /// Runs an admin job through `docker.sh` (e.g. `["verify", "--repair"]`);
    /// (exit code, its output).
    pub async fn admin(&self, args: &[&str]) -> (i32, String) {
        self.docker_sh(args).await
    }

    /// The heal the README prescribes after a fault — `verify --repair`,
    /// then `gc` — and the proof that it worked: `verify --deep` finds
    /// nothing, every live key under `prefix` has its full replica count
    /// on volumes that hold it, no volume holds a blob that no live record
    /// names there (no orphan), and no write is left half-done.
    pub async fn heal_and_check(&self, prefix: &str) {
        let (code, out) = self.admin(&["verify", "--repair"]).await;
        assert_eq!(code, 0, "verify --repair: {out}");
        let (code, out) = self.admin(&["gc", "--grace", "0s"]).await;
        assert_eq!(code, 0, "gc: {out}");
        let (code, out) = self.admin(&["verify", "--deep"]).await;
        assert_eq!(code, 0, "verify --deep after the repair: {out}");
        assert!(out.contains(" 0 bad replica(s) found"), "{out}");

        let mut holders: HashMap<String, Vec<String>> = HashMap::new();
        for i in 1..=self.volume_count().await {
            for blob in self.blobs(i).await {
                let key = blob["key"].as_str().expect("a key").to_string();
                holders.entry(key).or_default().push(self.volume_addr(i));
            }
        }
        let live = self.keys(prefix).await;
        for key in &live {
            let (status, mut recorded, _) = self.head(key).await;
            assert_eq!(status, 302, "{key}");
            assert_eq!(recorded.len(), self.replicas, "{key} is on {recorded:?}");
            let mut held = holders.remove(key).unwrap_or_default();
            recorded.sort();
            held.sort();
            assert_eq!(held, recorded, "{key}: the volumes holding it, and its record");
        }
        // Whatever is left is held by a volume but named by no live record
        // (the whole cluster is this test's).
        assert!(holders.is_empty(), "orphans: {holders:?}");
        let status = self.status().await.expect("the master answers");
        assert_eq!(status["keys"]["writing"], 0, "writes left half-done");
        eprintln!(
            "healed: {} live keys, each on {} volumes, no orphan",
            live.len(),
            self.replicas
        );
    }
}

impl Drop for DockerCluster {
    fn drop(&mut self) {
        let mut down = std::process::Command::new(repo().join("docker.sh"));
        down.args(["down", "--purge"])
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        for (k, v) in std::env::vars() {
            if k == "PATH" || k == "HOME" || k.starts_with("DOCKER_") {
                down.env(k, v);
            }
        }
        down.envs(self.env.iter().map(|(k, v)| (k, v)));
        let ok = down.status().is_ok_and(|s| s.success());
        // Whatever docker.sh did not remove (it failed, or the test broke it).
        let label = format!("label=trove.project={}", self.project);
        let sweep = |kind: &str| {
            let list = std::process::Command::new("docker")
                .args([kind, "ls", "-q", "--filter", &label])
                .args(if kind == "container" { &["-a"][..] } else { &[][..] })
                .output();
            let ids: Vec<String> = list
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            if !ids.is_empty() {
                let mut rm = std::process::Command::new("docker");
                rm.args([kind, "rm"]);
                if kind != "network" {
                    rm.arg("-f");
                }
                let _ = rm.args(&ids).stdout(Stdio::null()).status();
            }
            ids.len()
        };
        let left = sweep("container") + sweep("network") + sweep("volume");
        if !ok || left > 0 {
            eprintln!(
                "docker.sh down --purge for {} {}; {left} leftover(s) removed",
                self.project,
                if ok { "succeeded" } else { "FAILED" }
            );
        }
    }
}
