//! `trove-bench`: measures a fresh local Trove cluster (a master and three
//! volumes, three replicas) side by side with nginx doing the same work,
//! and prints a Markdown table of medians, ranges and ratios.
//!
//! It builds nothing: it runs the `trove-master`, `trove-volume` and
//! `trove-s3` (the S3 rows, in `s3.rs`) found next to itself (`cargo build --release --bins` puts them there), and
//! Debian's `nginx` (with its WebDAV module) as the reference. Without
//! nginx the reference columns say so and Trove is still measured.
//!
//! Every measurement alternates Trove and the reference, `--iterations`
//! times each, on the same machine in the same run. Every loop is bounded
//! in count or time, and everything listens on 127.0.0.1.

mod nginx;
mod s3;
mod stats;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use futures::StreamExt;
use stats::{Row, Samples};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use trove_tests::{Cluster, ClusterOptions};

const MIB: u64 = 1 << 20;

/// Benchmark Trove against nginx on this machine.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Size of the large value (GET, PUT, range reads).
    #[arg(long, default_value = "1GiB", value_parser = trove_common::flags::parse_size)]
    size: u64,
    /// Runs of each measurement, alternating Trove and the reference.
    #[arg(long, default_value_t = 3)]
    iterations: usize,
    /// How long the redirect load runs, per run.
    #[arg(long, default_value = "3s", value_parser = trove_common::flags::parse_duration)]
    redirect_time: Duration,
    /// Keys in the small-value cycle test.
    #[arg(long, default_value_t = 10_000)]
    small_keys: usize,
    /// Leave out the S3 gateway's rows.
    #[arg(long)]
    skip_s3: bool,
    /// Measure only these groups of rows (repeatable; default: all). For
    /// example `--only small` runs just the 4 KiB cycles, to profile them.
    #[arg(long, value_enum)]
    only: Vec<Group>,
    /// Only the large GETs: via the master's redirect and through the S3
    /// gateway, each against nginx (the rows that zero-copy sending
    /// changes; a few minutes instead of the whole run).
    #[arg(long)]
    only_gets: bool,
    /// A tiny run (8 MiB values, one iteration, few keys): checks that the
    /// command works, measures nothing worth reading.
    #[arg(long)]
    smoke: bool,
}

/// A group of rows, for `--only`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Group {
    /// PUT and GET of the large value, range reads, CPU per GiB.
    Large,
    /// 16 parallel PUTs and GETs of 16 MiB.
    Parallel,
    /// GET redirects from the master.
    Redirects,
    /// 4 KiB write/read/delete cycles.
    Small,
    /// The S3 gateway's rows.
    S3,
}

impl Args {
    fn runs(&self, group: Group) -> bool {
        (self.only.is_empty() || self.only.contains(&group)) && !(group == Group::S3 && self.skip_s3)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.size = 8 * MIB;
        args.iterations = 1;
        args.redirect_time = Duration::from_millis(300);
        args.small_keys = 64;
    }
    let started = Instant::now();
    eprintln!("starting two clusters (fsync on, --no-fsync) and nginx…");
    let fsync = Cluster::start(ClusterOptions {
        replicas: 3,
        ..Default::default()
    })
    .await;
    let no_fsync = Cluster::start(ClusterOptions {
        replicas: 3,
        master_args: vec!["--no-fsync".into()],
        volume_args: vec!["--no-fsync".into()],
        ..Default::default()
    })
    .await;
    let nginx_needed = [Group::Large, Group::Parallel, Group::Redirects, Group::S3]
        .into_iter()
        .any(|g| args.runs(g));
    let nginx = match nginx_needed.then(nginx::Nginx::start) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(e)) => {
            eprintln!("nginx reference rows skipped: {e:#}");
            None
        }
    };
    let b = Bench {
        args,
        http: http_client(),
        nginx,
    };
    let mut rows = vec![];
    if b.args.only_gets {
        b.large_gets(&fsync, &mut rows).await?;
        if !b.args.skip_s3 {
            b.s3_gets_only(&no_fsync, &mut rows).await?;
        }
    } else {
        if b.args.runs(Group::Large) {
            b.large_values(&fsync, &no_fsync, &mut rows).await?;
        }
        if b.args.runs(Group::Parallel) {
            b.parallel_values(&no_fsync, &mut rows).await?;
        }
        if b.args.runs(Group::Redirects) {
            b.redirects(&fsync, &mut rows).await?;
        }
        if b.args.runs(Group::Small) {
            b.small_cycles(&fsync, &no_fsync, &mut rows).await?;
        }
        if !b.args.runs(Group::S3) {
            eprintln!("S3 rows skipped");
        } else if let Err(e) = b.s3(&no_fsync, &mut rows).await {
            // The other rows are measured already: print them all the same.
            eprintln!("S3 rows incomplete: {e:#}");
        }
    }

    println!("{}", stats::machine());
    println!(
        "`trove-bench{}{}` — {} iteration(s), large value {} MiB, {:.0} s in all.\n",
        if b.args.smoke { " --smoke" } else { "" },
        if b.args.only_gets { " --only-gets" } else { "" },
        b.args.iterations,
        b.args.size / MIB,
        started.elapsed().as_secs_f64()
    );
    println!("{}", stats::table(&rows));
    Ok(())
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .build()
        .expect("client")
}

struct Bench {
    args: Args,
    http: reqwest::Client,
    nginx: Option<nginx::Nginx>,
}

/// A body of `size` bytes made of one shared 1 MiB buffer: costs the
/// client next to nothing to produce.
fn body(size: u64) -> reqwest::Body {
    let chunk = Bytes::from((0..MIB).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>());
    let chunks = (0..size.div_ceil(MIB)).map(move |i| {
        let n = (size - i * MIB).min(MIB) as usize;
        Ok::<_, std::io::Error>(chunk.slice(..n))
    });
    reqwest::Body::wrap_stream(futures::stream::iter(chunks))
}

/// Per-operation latencies of the small cycles (ms).
#[derive(Default)]
struct Latencies {
    put: Samples,
    get: Samples,
    delete: Samples,
}

impl Latencies {
    fn extend(&mut self, other: Latencies) {
        self.put.extend(other.put);
        self.get.extend(other.get);
        self.delete.extend(other.delete);
    }
}

fn mib_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / MIB as f64 / took.as_secs_f64()
}

impl Bench {
    async fn put(&self, url: &str, size: u64) -> anyhow::Result<()> {
        let r = self
            .http
            .put(url)
            .header("content-length", size)
            .body(body(size))
            .send()
            .await
            .with_context(|| format!("PUT {url}"))?;
        anyhow::ensure!(r.status().is_success(), "PUT {url}: {}", r.status());
        Ok(())
    }

    /// Reads `url` to the end (following one redirect by hand); bytes read.
    async fn get(&self, url: &str, range: Option<&str>) -> anyhow::Result<u64> {
        let mut url = url.to_string();
        for _ in 0..2 {
            let mut req = self.http.get(&url);
            if let Some(r) = range {
                req = req.header("range", r);
            }
            let resp = req.send().await.with_context(|| format!("GET {url}"))?;
            if resp.status() == 302 {
                url = resp.headers()["location"].to_str()?.to_string();
                continue;
            }
            anyhow::ensure!(resp.status().is_success(), "GET {url}: {}", resp.status());
            let mut n = 0;
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.next().await {
                n += chunk?.len() as u64;
            }
            return Ok(n);
        }
        anyhow::bail!("GET {url}: too many redirects")
    }

    async fn delete(&self, url: &str) -> anyhow::Result<()> {
        let r = self.http.delete(url).send().await?;
        anyhow::ensure!(r.status().is_success(), "DELETE {url}: {}", r.status());
        Ok(())
    }

    /// PUT and GET of the large value, range reads from its middle, and the
    /// master's peak memory during the PUT.
    async fn large_values(
        &self,
        fsync: &Cluster,
        no_fsync: &Cluster,
        rows: &mut Vec<Row>,
    ) -> anyhow::Result<()> {
        let size = self.args.size;
        let label = format!("{} MiB", size / MIB);
        let (mut put_fsync, mut put_nofsync, mut put_ref) = (
            Samples::after_warm_up(),
            Samples::after_warm_up(),
            Samples::after_warm_up(),
        );
        let cpu = |c: &Cluster| {
            (
                c.master.cpu_seconds(),
                c.volumes.iter().map(|v| v.cpu_seconds()).sum::<f64>(),
            )
        };
        let (mut master_before, mut volumes_before) = cpu(fsync);
        let mut nginx_cpu = 0.0;
        // Run 0 is a warm-up and is not counted: on these VMs, writing into
        // page-cache memory the guest has not used lately costs ~7× more
        // than into pages just freed (dd: 400 MB/s against 2.9 GB/s), and
        // without it the first writer of the run paid for that alone.
        for i in 0..=self.args.iterations {
            if i == 1 {
                (master_before, volumes_before) = cpu(fsync);
            }
            for (cluster, samples) in [(fsync, &mut put_fsync), (no_fsync, &mut put_nofsync)] {
                let url = cluster.url(&format!("/bench/put-{i}"));
                let t = Instant::now();
                self.put(&url, size).await?;
                samples.push(mib_per_s(size, t.elapsed()));
                self.delete(&url).await?;
            }
            if let Some(n) = &self.nginx {
                let cpu_before = n.cpu_seconds();
                let t = Instant::now();
                let puts = n.dav.iter().map(|d| self.put_owned(format!("{d}/put-{i}"), size));
                for r in futures::future::join_all(puts).await {
                    r?;
                }
                put_ref.push(mib_per_s(size, t.elapsed()));
                if i > 0 {
                    nginx_cpu += n.cpu_seconds() - cpu_before;
                }
                for d in &n.dav {
                    self.delete(&format!("{d}/put-{i}")).await?;
                }
            }
        }
        let (master_after, volumes_after) = cpu(fsync);
        let gib_put = (size * self.args.iterations as u64) as f64 / (1u64 << 30) as f64;
        let rss = fsync.master.peak_rss();
        rows.push(Row::new(
            &format!("PUT {label} ×3 replicas, fsync (MiB/s)"),
            put_fsync,
            put_ref.clone(),
            "≥ 0.6×",
        ));
        rows.push(Row::new(
            &format!("PUT {label} ×3 replicas, --no-fsync (MiB/s)"),
            put_nofsync,
            put_ref,
            "≥ 0.8×",
        ));
        rows.push(Row::single(
            "master peak RSS during the PUTs (MiB)",
            (rss / MIB) as f64,
            "≤ 64",
        ));
        // Where the PUT's time goes: CPU seconds per GiB stored (×3 replicas).
        rows.push(Row::single(
            "CPU s per GiB PUT ×3: master (md5 + sha256 + proxying)",
            (master_after - master_before) / gib_put,
            "—",
        ));
        rows.push(Row::single(
            "CPU s per GiB PUT ×3: three volumes together",
            (volumes_after - volumes_before) / gib_put,
            "—",
        ));
        rows.push(Row::single(
            "CPU s per GiB PUT ×3: Trove (master + volumes), fsync",
            (master_after - master_before + volumes_after - volumes_before) / gib_put,
            "≤ 6",
        ));
        if self.nginx.is_some() {
            rows.push(Row::single(
                "CPU s per GiB PUT ×3: nginx (3 WebDAV servers, no fsync)",
                nginx_cpu / gib_put,
                "—",
            ));
        }

        self.large_gets(fsync, rows).await
    }

    /// GETs of the large value via the master's redirect, and 1 MiB
    /// ranges of it, each against nginx serving the same bytes.
    async fn large_gets(&self, fsync: &Cluster, rows: &mut Vec<Row>) -> anyhow::Result<()> {
        let size = self.args.size;
        let label = format!("{} MiB", size / MIB);
        // The value to read: in Trove and, byte for byte, in nginx's root.
        fsync
            .http
            .put(fsync.url("/bench/big"))
            .header("content-length", size)
            .body(body(size))
            .send()
            .await?;
        self.nginx_put_large().await?;
        let (mut get, mut get_ref) = (Samples::new(), Samples::new());
        let (mut range, mut range_ref) = (Samples::new(), Samples::new());
        let middle = format!("bytes={}-{}", size / 2, size / 2 + MIB - 1);
        for _ in 0..self.args.iterations {
            let t = Instant::now();
            anyhow::ensure!(
                self.get(&fsync.url("/bench/big"), None).await? == size,
                "short read"
            );
            get.push(mib_per_s(size, t.elapsed()));
            self.nginx_large_get(&mut get_ref).await?;
            for _ in 0..20 {
                let t = Instant::now();
                self.get(&fsync.url("/bench/big"), Some(&middle)).await?;
                range.push(t.elapsed().as_secs_f64() * 1000.0);
                if let Some(n) = &self.nginx {
                    let t = Instant::now();
                    self.get(&format!("{}/big", n.dav[0]), Some(&middle)).await?;
                    range_ref.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
        }
        rows.push(Row::new(
            &format!("GET {label} via redirect (MiB/s)"),
            get,
            get_ref,
            "≥ 0.95×",
        ));
        rows.push(
            Row::new(
                "1 MiB range from the middle, incl. redirect (ms)",
                range,
                range_ref,
                "—",
            )
            .lower_is_better(),
        );
        Ok(())
    }

    /// Stores the large value in nginx's root, for [`Self::nginx_large_get`].
    async fn nginx_put_large(&self) -> anyhow::Result<()> {
        match &self.nginx {
            Some(n) => self.put(&format!("{}/big", n.dav[0]), self.args.size).await,
            None => Ok(()),
        }
    }

    /// The reference of the large-GET rows: one GET of the large value
    /// from nginx (stored by [`Self::nginx_put_large`]), its MiB/s added
    /// to `samples`. Nothing without nginx.
    async fn nginx_large_get(&self, samples: &mut Samples) -> anyhow::Result<()> {
        let Some(n) = &self.nginx else {
            return Ok(());
        };
        let size = self.args.size;
        let t = Instant::now();
        anyhow::ensure!(
            self.get(&format!("{}/big", n.dav[0]), None).await? == size,
            "short read"
        );
        samples.push(mib_per_s(size, t.elapsed()));
        Ok(())
    }

    async fn put_owned(&self, url: String, size: u64) -> anyhow::Result<()> {
        self.put(&url, size).await
    }

    /// 16 parallel PUTs of 16 MiB values, then 16 parallel GETs of them.
    async fn parallel_values(&self, c: &Cluster, rows: &mut Vec<Row>) -> anyhow::Result<()> {
        const N: usize = 16;
        let size = if self.args.smoke { MIB } else { 16 * MIB };
        let (mut put, mut put_ref, mut get, mut get_ref) = (
            Samples::after_warm_up(),
            Samples::after_warm_up(),
            Samples::after_warm_up(),
            Samples::after_warm_up(),
        );
        // Run 0 is a warm-up and is not counted (see `large_values`).
        for i in 0..=self.args.iterations {
            let urls: Vec<String> = (0..N).map(|k| c.url(&format!("/bench/par-{i}-{k}"))).collect();
            let t = Instant::now();
            for r in futures::future::join_all(urls.iter().map(|u| self.put(u, size))).await {
                r?;
            }
            put.push(mib_per_s(size * N as u64, t.elapsed()));
            let t = Instant::now();
            for r in futures::future::join_all(urls.iter().map(|u| self.get(u, None))).await {
                r?;
            }
            get.push(mib_per_s(size * N as u64, t.elapsed()));
            for u in &urls {
                self.delete(u).await?;
            }
            if let Some(n) = &self.nginx {
                // The same work for nginx: every value to all three volumes.
                let urls: Vec<String> = (0..N)
                    .flat_map(|k| n.dav.iter().map(move |d| format!("{d}/par-{i}-{k}")))
                    .collect();
                let t = Instant::now();
                for r in futures::future::join_all(urls.iter().map(|u| self.put(u, size))).await {
                    r?;
                }
                put_ref.push(mib_per_s(size * N as u64, t.elapsed()));
                let t = Instant::now();
                for r in futures::future::join_all(urls[..N].iter().map(|u| self.get(u, None))).await {
                    r?;
                }
                get_ref.push(mib_per_s(size * N as u64, t.elapsed()));
                for u in &urls {
                    self.delete(u).await?;
                }
            }
        }
        let label = format!("{N} × {} MiB", size / MIB);
        rows.push(Row::new(
            &format!("{label} parallel PUTs, ×3, --no-fsync (MiB/s)"),
            put,
            put_ref,
            "≥ 0.8×",
        ));
        rows.push(Row::new(
            &format!("{label} parallel GETs (MiB/s)"),
            get,
            get_ref,
            "≥ 0.9×",
        ));
        Ok(())
    }

    /// Redirects per second on one key, 100 connections, not following.
    async fn redirects(&self, c: &Cluster, rows: &mut Vec<Row>) -> anyhow::Result<()> {
        c.http.put(c.url("/bench/redirect")).body("x").send().await?;
        let (mut trove, mut reference) = (Samples::new(), Samples::new());
        for _ in 0..self.args.iterations {
            trove.push(self.redirect_rate(&c.url("/bench/redirect")).await?);
            if let Some(n) = &self.nginx {
                reference.push(
                    self.redirect_rate(&format!("{}/bench/redirect", n.redirect))
                        .await?,
                );
            }
        }
        rows.push(Row::new(
            "redirects/s, 100 connections",
            trove,
            reference,
            "≥ 0.5×",
        ));
        Ok(())
    }

    async fn redirect_rate(&self, url: &str) -> anyhow::Result<f64> {
        const CONNECTIONS: usize = 100;
        let count = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + self.args.redirect_time;
        let tasks: Vec<_> = (0..CONNECTIONS)
            .map(|_| {
                // One client per task: one connection each, kept alive.
                let http = http_client();
                let (url, count) = (url.to_string(), Arc::clone(&count));
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        match http.get(&url).send().await {
                            Ok(r) if r.status() == 302 => {
                                count.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => return Err(anyhow::anyhow!("{url}: {}", r.status())),
                            Err(e) => return Err(e.into()),
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        let t = Instant::now();
        for task in tasks {
            task.await??;
        }
        Ok(count.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64())
    }

    /// Write, read (through the redirect) and delete of 4 KiB values: 16
    /// clients over `small_keys` keys; cycles per second.
    async fn small_cycles(
        &self,
        fsync: &Cluster,
        no_fsync: &Cluster,
        rows: &mut Vec<Row>,
    ) -> anyhow::Result<()> {
        for (cluster, label, target) in [(fsync, "fsync", "≥ 1000"), (no_fsync, "--no-fsync", "≥ 2000")] {
            let mut samples = Samples::new();
            let mut latency = Latencies::default();
            let cpu =
                |c: &Cluster| c.master.cpu_seconds() + c.volumes.iter().map(|v| v.cpu_seconds()).sum::<f64>();
            let cpu_before = cpu(cluster);
            for i in 0..self.args.iterations {
                samples.push(self.cycle_rate(cluster, i, &mut latency).await?);
            }
            let cycles = (self.args.iterations * self.args.small_keys) as f64;
            let cpu_per_cycle = (cpu(cluster) - cpu_before) / cycles * 1000.0;
            rows.push(Row::new(
                &format!("4 KiB write/read/delete cycles/s, 16 clients, {label}"),
                samples,
                Samples::new(),
                target,
            ));
            let cell = |s: &Samples| {
                let (p50, p99) = (
                    s.percentile(50.0).unwrap_or(0.0),
                    s.percentile(99.0).unwrap_or(0.0),
                );
                format!("{p50:.2} / {p99:.2}")
            };
            rows.push(Row::text(
                &format!("4 KiB cycle latency p50 / p99 (ms), {label}: PUT · GET (incl. redirect) · DELETE"),
                format!(
                    "{} · {} · {}",
                    cell(&latency.put),
                    cell(&latency.get),
                    cell(&latency.delete)
                ),
                "—",
            ));
            rows.push(Row::single(
                &format!("4 KiB cycle: CPU ms per cycle, master + volumes, {label}"),
                cpu_per_cycle,
                "—",
            ));
        }
        Ok(())
    }

    async fn cycle_rate(&self, c: &Cluster, run: usize, latency: &mut Latencies) -> anyhow::Result<f64> {
        const CLIENTS: usize = 16;
        let keys = self.args.small_keys;
        let value = Bytes::from(vec![42u8; 4096]);
        let t = Instant::now();
        let tasks = (0..CLIENTS).map(|client| {
            let value = value.clone();
            async move {
                let mut mine = Latencies::default();
                let ms = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
                for k in (client..keys).step_by(CLIENTS) {
                    let url = c.url(&format!("/bench/small-{run}/{k}"));
                    let t = Instant::now();
                    let r = self.http.put(&url).body(value.clone()).send().await?;
                    anyhow::ensure!(r.status() == 201, "PUT {url}: {}", r.status());
                    mine.put.push(ms(t));
                    let t = Instant::now();
                    anyhow::ensure!(self.get(&url, None).await? == 4096, "short read of {url}");
                    mine.get.push(ms(t));
                    let t = Instant::now();
                    self.delete(&url).await?;
                    mine.delete.push(ms(t));
                }
                Ok(mine)
            }
        });
        let results = futures::future::join_all(tasks).await;
        let rate = keys as f64 / t.elapsed().as_secs_f64();
        for r in results {
            latency.extend(r?);
        }
        Ok(rate)
    }
}
