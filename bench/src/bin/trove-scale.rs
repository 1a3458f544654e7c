//! `trove-scale`: how the master's index behaves with many keys.
//!
//! Loads `--keys` records straight through the index library (the write
//! path would take hours at 10M+ keys on two cores: this measures the
//! index, not the write path, which `trove-bench` does), each a live
//! 3-replica 4 KiB value with real-looking digests and write ids; then
//! starts a real master on that index (and three empty volumes, for its
//! health checks) and measures what an operator of a big index cares
//! about: bytes per key on disk, start-up time, redirect latency with a
//! cold and a warm cache, lookups of missing keys, listing pages per
//! second, and the master's memory.
//!
//! With `--blobs`, every key also gets its blob (an empty value, so that
//! millions fit on one disk: a file and its metadata attribute) on each
//! of the three volumes, written through the volume store library before
//! the volume servers start; then it times the volumes' start-up (after
//! the clean stop of the library's stores, and one volume's again with
//! `--rescan`: the walk a crash costs), `rebuild` of the whole
//! index from the volumes' listings, and the `verify` and `gc --dry-run`
//! jobs on the running master.
//!
//! Every phase is bounded: the load by `--keys`, the lookups by
//! `--lookups`, the listing by `--list-time`, each job by `--job-time`
//! (a job still running then is stopped, and its rate is what it did).

use clap::Parser;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::time::{Duration, Instant};
use trove_common::digest::ContentHasher;
use trove_common::key::{encode_query_value, Key};
use trove_common::record::{now_ms, BlobState, Record, State};
use trove_master::index::{Index, DEFAULT_CACHE};
use trove_tests::{bin, no_redirects, Server};
use trove_volume::store::{BlobStore, Expected};

#[derive(Parser, Debug)]
#[command(about = "Measure the master's index at scale (bytes per key, start-up, lookups, listings)")]
struct Args {
    /// Keys to load into the index.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Redirects timed in each of the cold and warm passes.
    #[arg(long, default_value_t = 5_000)]
    lookups: usize,
    /// How long the listing measurement runs.
    #[arg(long, default_value = "5s", value_parser = trove_common::flags::parse_duration)]
    list_time: Duration,
    /// Where to put the index (default: a temp dir, removed at the end).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Also write every key's blob onto the volumes, and time the volumes'
    /// start-up, rebuild, verify and gc.
    #[arg(long)]
    blobs: bool,
    /// How long each of verify and gc may run before it is stopped.
    #[arg(long, default_value = "120s", value_parser = trove_common::flags::parse_duration)]
    job_time: Duration,
    /// Blobs written at once while loading the volumes.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

/// Records written per batch while loading.
const BATCH: u64 = 20_000;
const MIB: f64 = (1 << 20) as f64;

fn key_of(i: u64) -> String {
    // Keys shaped like a dataset's: a bucket, folders of 1000 files.
    format!("/dataset/images/{:07}/{i:010}.jpg", i / 1000)
}

fn record(rng: &mut impl Rng, volumes: &[String]) -> Record {
    let sha: [u8; 32] = rng.gen();
    let md5: [u8; 16] = rng.gen();
    let write: [u8; 8] = rng.gen();
    Record {
        state: State::Live,
        volumes: volumes.to_vec(),
        size: 4096,
        sha256: hex::encode(sha),
        md5: hex::encode(md5),
        created: now_ms(),
        expires: None,
        damaged: vec![],
        write: Some(hex::encode(write)),
        replaces: None,
        meta: Default::default(),
        parts: vec![],
    }
}

/// The write id of key `i`'s blob (with `--blobs`).
fn write_of(i: u64) -> String {
    format!("{:016x}", 0x0180_0000_0000_0000u64 + i)
}

/// The record of key `i` whose empty blob is on every volume (`--blobs`).
fn blob_record(i: u64, volumes: &[String]) -> Record {
    let empty = ContentHasher::new().finish();
    Record {
        state: State::Live,
        volumes: volumes.to_vec(),
        size: 0,
        sha256: empty.sha256_hex(),
        md5: empty.md5_hex(),
        created: now_ms(),
        expires: None,
        damaged: vec![],
        write: Some(write_of(i)),
        replaces: None,
        meta: Default::default(),
        parts: vec![],
    }
}

/// Writes key `0..keys`'s empty blob, confirmed, into each of `dirs` (one
/// volume each) through the volume store library.
async fn write_blobs(dirs: &[std::path::PathBuf], keys: u64, concurrency: usize) -> anyhow::Result<()> {
    use futures::StreamExt;
    let empty = ContentHasher::new().finish();
    let mut stores = vec![];
    for dir in dirs {
        let dir = dir.clone();
        let store = tokio::task::spawn_blocking(move || BlobStore::open(vec![dir], false)).await??;
        stores.push(std::sync::Arc::new(store));
    }
    let stores = &stores;
    let empty = &empty;
    futures::stream::iter(0..keys)
        .map(|i| async move {
            let key = Key::new(&key_of(i))?;
            for store in stores {
                let expected = Expected {
                    len: Some(0),
                    sha256: empty.sha256,
                    state: BlobState::Live,
                    md5: Some(empty.md5_hex()),
                    write: Some(write_of(i)),
                    ..Expected::default()
                };
                let body = futures::stream::empty::<Result<bytes::Bytes, std::io::Error>>();
                store
                    .write_stream(&key, body, expected, Duration::from_secs(30))
                    .await?;
            }
            anyhow::Ok(())
        })
        .buffer_unordered(concurrency)
        .fold(Ok(()), |acc, r| async move { acc.and(r) })
        .await?;
    // Stopped cleanly, as a volume server stops: its next start-up
    // trusts the key set.
    for store in stores {
        let store = std::sync::Arc::clone(store);
        tokio::task::spawn_blocking(move || store.close()).await?;
    }
    Ok(())
}

/// Runs admin job `job` with `params` on the master at `base` until it
/// ends or `limit` passes (then stops it); its last report and how long
/// it ran.
async fn time_job(
    http: &reqwest::Client,
    base: &str,
    job: &str,
    params: serde_json::Value,
    limit: Duration,
) -> anyhow::Result<(serde_json::Value, Duration)> {
    let url = format!("{base}/-/{job}");
    let t = Instant::now();
    let r = http.post(&url).json(&params).send().await?;
    anyhow::ensure!(r.status() == 202, "starting {job}: {}", r.status());
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let report: serde_json::Value = http.get(&url).send().await?.json().await?;
        if report["state"] != "running" {
            return Ok((report, t.elapsed()));
        }
        if t.elapsed() > limit {
            http.delete(&url).send().await?;
            let elapsed = t.elapsed();
            loop {
                let report: serde_json::Value = http.get(&url).send().await?.json().await?;
                if report["state"] != "running" {
                    return Ok((report, elapsed));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

fn row(what: &str, value: String) {
    println!("| {what} | {value} |");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let temp = tempfile::tempdir()?;
    let root = args.dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let db = root.join("db");
    anyhow::ensure!(!db.exists(), "{} exists: give an empty --dir", db.display());

    // Three volumes: empty (the master's health checks need them; no
    // redirect below reaches them), or with every key's blob.
    let vol_dirs: Vec<_> = (0..3).map(|i| root.join(format!("vol{i}"))).collect();
    if args.blobs {
        let t = Instant::now();
        write_blobs(&vol_dirs, args.keys, args.concurrency).await?;
        let took = t.elapsed();
        println!(
            "wrote {} blobs onto 3 volumes through the store library in {:.1} s ({:.0} blobs/s)",
            3 * args.keys,
            took.as_secs_f64(),
            (3 * args.keys) as f64 / took.as_secs_f64()
        );
    }
    let t = Instant::now();
    let volumes: Vec<Server> = (0..3)
        .map(|i| {
            let args = ["--bind", "127.0.0.1", "--port", "0", "--no-fsync"]
                .iter()
                .map(|a| a.to_string())
                .chain([vol_dirs[i].display().to_string()])
                .collect();
            Server::start_within(
                bin("trove-volume"),
                args,
                root.join(format!("vol{i}.log")),
                Duration::from_secs(3600),
            )
        })
        .collect();
    // `Server::start` returns once each volume printed its address, which
    // it does after opening its data dirs.
    let volumes_up = t.elapsed();
    // With blobs: one volume again, made to walk them (as after a crash).
    let mut volumes = volumes;
    let walk = args.blobs.then(|| {
        let v = &mut volumes[0];
        v.signal("TERM");
        v.wait_exit();
        v.set_env("TROVE_RESCAN", Some("true"));
        let t = Instant::now();
        v.restart();
        t.elapsed()
    });
    let addrs: Vec<String> = volumes.iter().map(|v| v.addr.clone()).collect();

    // Load.
    let t = Instant::now();
    {
        let index = Index::open(&db, false, DEFAULT_CACHE, None)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut i = 0;
        while i < args.keys {
            let end = (i + BATCH).min(args.keys);
            let batch = (i..end)
                .map(|n| {
                    let record = if args.blobs {
                        blob_record(n, &addrs)
                    } else {
                        record(&mut rng, &addrs)
                    };
                    Ok((Key::new(&key_of(n))?, record))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            index.import(batch)?;
            i = end;
        }
        index.compact()?;
    }
    let load = t.elapsed();
    let bytes = dir_bytes(&db);
    println!("| measurement ({} keys) | value |", args.keys);
    println!("|---|---|");
    row(
        "load straight into the index, then compact (keys/s)",
        format!("{:.0}", args.keys as f64 / load.as_secs_f64()),
    );
    row(
        "index on disk (bytes per key, every file)",
        format!("{:.1}", bytes as f64 / args.keys as f64),
    );
    if let Some(walk) = walk {
        row(
            "3 volumes' start-up after a clean stop, spawn to listening (s)",
            format!("{:.2}", volumes_up.as_secs_f64()),
        );
        row(
            "1 volume's start-up walking its blobs, as after a crash (s)",
            format!("{:.1}", walk.as_secs_f64()),
        );
        row(
            "start-up walk (blobs/s)",
            format!("{:.0}", args.keys as f64 / walk.as_secs_f64()),
        );
    }

    // Start-up: from spawn to the first answered request.
    let t = Instant::now();
    let master_args: Vec<String> = [
        "serve",
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--no-fsync",
        "--db",
        &db.display().to_string(),
        "--volumes",
        &addrs.join(","),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let master = Server::start(bin("trove-master"), master_args, root.join("master.log"));
    let http = no_redirects();
    let base = format!("http://{}", master.addr);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{base}/-/ready")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "the master was not ready within 60 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    row(
        "master start-up, spawn to ready (ms)",
        format!("{:.0}", t.elapsed().as_secs_f64() * 1000.0),
    );
    let status: serde_json::Value = http.get(format!("{base}/-/status")).send().await?.json().await?;
    row("live keys the master reports", status["keys"]["live"].to_string());

    // Redirects of random keys: the first pass finds a cold block cache
    // (the index was just opened), the second the same keys warm.
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let sample: Vec<u64> = (0..args.lookups).map(|_| rng.gen_range(0..args.keys)).collect();
    for pass in ["cold", "warm"] {
        let mut times = Vec::with_capacity(sample.len());
        for &n in &sample {
            let t = Instant::now();
            let r = http.get(format!("{base}{}", key_of(n))).send().await?;
            anyhow::ensure!(r.status() == 302, "{}: {}", key_of(n), r.status());
            times.push(t.elapsed());
        }
        times.sort();
        row(
            &format!("GET redirect, {pass} cache, p50 / p99 (ms)"),
            format!("{:.3} / {:.3}", percentile(&times, 0.5), percentile(&times, 0.99)),
        );
    }
    let mut times = Vec::with_capacity(sample.len());
    for &n in &sample {
        let t = Instant::now();
        let r = http.head(format!("{base}/missing{}", key_of(n))).send().await?;
        anyhow::ensure!(r.status() == 404, "missing key: {}", r.status());
        times.push(t.elapsed());
    }
    times.sort();
    row(
        "HEAD of a missing key, p50 / p99 (ms)",
        format!("{:.3} / {:.3}", percentile(&times, 0.5), percentile(&times, 0.99)),
    );

    // Listing pages of 1000 keys, following `next`, for --list-time.
    let t = Instant::now();
    let (mut pages, mut listed) = (0u64, 0u64);
    let mut start = String::new();
    while t.elapsed() < args.list_time {
        let mut url = format!("{base}/dataset/?list&limit=1000");
        if !start.is_empty() {
            url.push_str(&format!("&start={}", encode_query_value(&start)));
        }
        let page: serde_json::Value = http.get(url).send().await?.json().await?;
        listed += page["keys"].as_array().map_or(0, |k| k.len() as u64);
        pages += 1;
        start = page["next"].as_str().unwrap_or_default().to_string();
        if start.is_empty() {
            break;
        }
    }
    row(
        "listing, pages of 1000 keys per second",
        format!("{:.0} ({listed} keys)", pages as f64 / t.elapsed().as_secs_f64()),
    );
    row(
        "master peak RSS (MiB)",
        format!("{:.1}", master.peak_rss() as f64 / MIB),
    );
    if !args.blobs {
        return Ok(());
    }

    // Rebuild the whole index from the volumes, into a new dir.
    let rebuilt = root.join("rebuilt");
    let t = Instant::now();
    let out = std::process::Command::new(bin("trove-master"))
        .args([
            "rebuild",
            "--db",
            &rebuilt.display().to_string(),
            "--volumes",
            &addrs.join(","),
        ])
        .output()?;
    let took = t.elapsed();
    let said = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success() && said.contains(&format!("{} live key(s)", args.keys)),
        "rebuild: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    row(
        "rebuild from 3 volumes (keys/s)",
        format!(
            "{:.0} ({:.1} s)",
            args.keys as f64 / took.as_secs_f64(),
            took.as_secs_f64()
        ),
    );
    let _ = std::fs::remove_dir_all(&rebuilt);

    // The jobs on the running master, each bounded by --job-time.
    for (job, params, counted) in [
        ("verify", serde_json::json!({"concurrency": 16}), "keys"),
        (
            "gc",
            serde_json::json!({"concurrency": 16, "dry_run": true, "grace_secs": 0}),
            "blobs",
        ),
    ] {
        let (report, took) = time_job(&http, &base, job, params, args.job_time).await?;
        anyhow::ensure!(
            report["found"] == 0 && report["failed"] == 0 && report["changed"] == 0,
            "{job} found problems: {report}"
        );
        let scanned = report["scanned"].as_u64().unwrap_or(0);
        row(
            &format!("{job} ({counted} looked at per second)"),
            format!(
                "{:.0} ({scanned} in {:.1} s, {})",
                scanned as f64 / took.as_secs_f64(),
                took.as_secs_f64(),
                report["state"].as_str().unwrap_or("?")
            ),
        );
    }
    Ok(())
}
