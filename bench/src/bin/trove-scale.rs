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
//! Every phase is bounded: the load by `--keys`, the lookups by
//! `--lookups`, the listing by `--list-time`.

use clap::Parser;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::time::{Duration, Instant};
use trove_common::key::{encode_query_value, Key};
use trove_common::record::{now_ms, Record, State};
use trove_master::index::{Index, DEFAULT_CACHE};
use trove_tests::{bin, no_redirects, Server};

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

    // Three empty volumes: the master's health checks need them; no
    // redirect below reaches them.
    let volumes: Vec<Server> = (0..3)
        .map(|i| {
            let args = ["--bind", "127.0.0.1", "--port", "0", "--no-fsync"]
                .iter()
                .map(|a| a.to_string())
                .chain([root.join(format!("vol{i}")).display().to_string()])
                .collect();
            Server::start(bin("trove-volume"), args, root.join(format!("vol{i}.log")))
        })
        .collect();
    let addrs: Vec<String> = volumes.iter().map(|v| v.addr.clone()).collect();

    // Load.
    let t = Instant::now();
    {
        let index = Index::open(&db, false, DEFAULT_CACHE)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut i = 0;
        while i < args.keys {
            let end = (i + BATCH).min(args.keys);
            let batch = (i..end)
                .map(|n| Ok((Key::new(&key_of(n))?, record(&mut rng, &addrs))))
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
    Ok(())
}
