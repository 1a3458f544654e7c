//! The S3 rows: a `trove-s3` gateway in front of the `--no-fsync` cluster,
//! driven with plain HTTP requests to presigned URLs (signed by the
//! `rusty-s3` crate, so no SigV4 is written here and the client side costs
//! next to nothing).
//!
//! - GET of the large value through the gateway, against nginx serving it;
//! - PUT of the large value through the gateway, against Trove's own PUT
//!   through the master on the same cluster;
//! - 16 × 16 MiB parallel PUTs and GETs through the gateway;
//! - ListObjectsV2 over 10,000 keys, pages per second;
//! - the gateway's peak RSS while 4 clients each move the large value up
//!   and down at once.

use crate::stats::{Row, Samples};
use crate::{mib_per_s, Bench, MIB};
use anyhow::Context;
use futures::StreamExt;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use std::time::{Duration, Instant};
use trove_tests::{bin, Cluster, Server};

const ACCESS_KEY: &str = "bench";
const SECRET_KEY: &str = "bench-secret";
const BUCKET: &str = "bench-s3";
/// How long a presigned URL is valid.
const VALID: Duration = Duration::from_secs(3600);

/// A gateway for `cluster`, and a signer for its bucket.
pub struct Gateway {
    pub server: Server,
    bucket: Bucket,
    creds: Credentials,
}

impl Gateway {
    pub fn start(cluster: &Cluster) -> anyhow::Result<Gateway> {
        let args = [
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--master",
            &format!("http://{}", cluster.master.addr),
            "--access-key",
            ACCESS_KEY,
            "--secret-key",
            SECRET_KEY,
        ];
        let server = Server::start(
            bin("trove-s3"),
            args.iter().map(|a| a.to_string()).collect(),
            cluster.dir.path().join("s3.log"),
        );
        let endpoint = format!("http://{}", server.addr).parse()?;
        let bucket = Bucket::new(endpoint, UrlStyle::Path, BUCKET, "us-east-1")?;
        Ok(Gateway {
            server,
            bucket,
            creds: Credentials::new(ACCESS_KEY, SECRET_KEY),
        })
    }

    fn get_url(&self, key: &str) -> String {
        self.bucket
            .get_object(Some(&self.creds), key)
            .sign(VALID)
            .to_string()
    }

    fn put_url(&self, key: &str) -> String {
        self.bucket
            .put_object(Some(&self.creds), key)
            .sign(VALID)
            .to_string()
    }

    fn delete_url(&self, key: &str) -> String {
        self.bucket
            .delete_object(Some(&self.creds), key)
            .sign(VALID)
            .to_string()
    }

    fn list_url(&self, max_keys: usize, token: Option<&str>) -> String {
        let mut action = self.bucket.list_objects_v2(Some(&self.creds));
        action.with_max_keys(max_keys);
        if let Some(t) = token {
            action.with_continuation_token(t);
        }
        action.sign(VALID).to_string()
    }
}

impl Bench {
    pub async fn s3(&self, c: &Cluster, rows: &mut Vec<Row>) -> anyhow::Result<()> {
        let gw = Gateway::start(c)?;
        let create = gw.bucket.create_bucket(&gw.creds).sign(VALID);
        let r = self.http.put(create.as_str()).send().await?;
        anyhow::ensure!(r.status().is_success(), "CreateBucket: {}", r.status());

        let size = self.args.size;
        let label = format!("{} MiB", size / MIB);
        // PUT through the gateway, alternating with Trove's own PUT.
        let (mut put, mut put_trove) = (Samples::after_warm_up(), Samples::after_warm_up());
        let mut gateway_cpu = 0.0;
        for i in 0..=self.args.iterations {
            let gateway_before = gw.server.cpu_seconds();
            let t = Instant::now();
            self.put(&gw.put_url(&format!("put-{i}")), size).await?;
            put.push(mib_per_s(size, t.elapsed()));
            if i > 0 {
                // As the MiB/s: not the warm-up run.
                gateway_cpu += gw.server.cpu_seconds() - gateway_before;
            }
            self.delete(&gw.delete_url(&format!("put-{i}"))).await?;
            let url = c.url(&format!("/bench/s3-ref-{i}"));
            let t = Instant::now();
            self.put(&url, size).await?;
            put_trove.push(mib_per_s(size, t.elapsed()));
            self.delete(&url).await?;
        }
        rows.push(Row::new(
            &format!("S3 PUT {label} ×3, --no-fsync (MiB/s; reference: Trove's own PUT)"),
            put,
            put_trove,
            "≥ 0.9×",
        ));
        let gib = (size * self.args.iterations as u64) as f64 / (1u64 << 30) as f64;
        rows.push(Row::single(
            "CPU s per GiB S3 PUT: the gateway",
            gateway_cpu / gib,
            "—",
        ));

        self.s3_get(c, &gw, rows).await?;
        self.s3_parallel(&gw, rows).await?;
        self.s3_listing(c, &gw, rows).await?;
        self.s3_memory(&gw, rows).await?;
        Ok(())
    }

    /// The S3 GET row alone (`--only-gets`).
    pub async fn s3_gets_only(&self, c: &Cluster, rows: &mut Vec<Row>) -> anyhow::Result<()> {
        let gw = Gateway::start(c)?;
        let create = gw.bucket.create_bucket(&gw.creds).sign(VALID);
        let r = self.http.put(create.as_str()).send().await?;
        anyhow::ensure!(r.status().is_success(), "CreateBucket: {}", r.status());
        self.s3_get(c, &gw, rows).await
    }

    /// GET of the large value through the gateway, against nginx serving
    /// the same bytes, and the CPU
    /// the gateway and the volumes spend on it.
    async fn s3_get(&self, c: &Cluster, gw: &Gateway, rows: &mut Vec<Row>) -> anyhow::Result<()> {
        let size = self.args.size;
        let label = format!("{} MiB", size / MIB);
        self.put(&gw.put_url("big"), size).await?;
        // Again, for runs without the large rows (`--only s3`).
        self.nginx_put_large().await?;
        let (mut get, mut get_ref) = (Samples::new(), Samples::new());
        let volumes_cpu = || c.volumes.iter().map(|v| v.cpu_seconds()).sum::<f64>();
        let (mut gateway_cpu, mut volume_cpu) = (0.0, 0.0);
        for _ in 0..self.args.iterations {
            let (gateway_before, volumes_before) = (gw.server.cpu_seconds(), volumes_cpu());
            let t = Instant::now();
            anyhow::ensure!(self.get(&gw.get_url("big"), None).await? == size, "short S3 read");
            get.push(mib_per_s(size, t.elapsed()));
            gateway_cpu += gw.server.cpu_seconds() - gateway_before;
            volume_cpu += volumes_cpu() - volumes_before;
            self.nginx_large_get(&mut get_ref).await?;
        }
        rows.push(Row::new(
            &format!("S3 GET {label} through the gateway (MiB/s)"),
            get,
            get_ref,
            "≥ 0.8×",
        ));
        let gib = (size * self.args.iterations as u64) as f64 / (1u64 << 30) as f64;
        rows.push(Row::single(
            "CPU s per GiB S3 GET: the gateway",
            gateway_cpu / gib,
            "—",
        ));
        rows.push(Row::single(
            "CPU s per GiB S3 GET: the volume serving it",
            volume_cpu / gib,
            "—",
        ));
        self.delete(&gw.delete_url("big")).await?;
        Ok(())
    }

    /// 16 parallel PUTs of 16 MiB values through the gateway, then 16
    /// parallel GETs of them.
    async fn s3_parallel(&self, gw: &Gateway, rows: &mut Vec<Row>) -> anyhow::Result<()> {
        const N: usize = 16;
        let size = if self.args.smoke { MIB } else { 16 * MIB };
        let (mut put, mut get) = (Samples::after_warm_up(), Samples::after_warm_up());
        for i in 0..=self.args.iterations {
            let keys: Vec<String> = (0..N).map(|k| format!("par-{i}-{k}")).collect();
            let t = Instant::now();
            for r in futures::future::join_all(keys.iter().map(|k| self.put_owned(gw.put_url(k), size))).await
            {
                r?;
            }
            put.push(mib_per_s(size * N as u64, t.elapsed()));
            let t = Instant::now();
            let gets = keys.iter().map(|k| {
                let url = gw.get_url(k);
                async move { self.get(&url, None).await }
            });
            for r in futures::future::join_all(gets).await {
                anyhow::ensure!(r? == size, "short S3 read");
            }
            get.push(mib_per_s(size * N as u64, t.elapsed()));
            for k in &keys {
                self.delete(&gw.delete_url(k)).await?;
            }
        }
        let label = format!("{N} × {} MiB", size / MIB);
        rows.push(Row::new(
            &format!("{label} parallel S3 PUTs, ×3, --no-fsync (MiB/s)"),
            put,
            Samples::new(),
            "—",
        ));
        rows.push(Row::new(
            &format!("{label} parallel S3 GETs (MiB/s)"),
            get,
            Samples::new(),
            "—",
        ));
        Ok(())
    }

    /// ListObjectsV2 over every key of a bucket of 10,000 (written through
    /// the master, which S3 sees as the same bucket), page after page.
    async fn s3_listing(&self, c: &Cluster, gw: &Gateway, rows: &mut Vec<Row>) -> anyhow::Result<()> {
        let (keys, page) = if self.args.smoke {
            (300, 100)
        } else {
            (10_000, 1000)
        };
        let writes = futures::stream::iter(0..keys)
            .map(|k| {
                let url = c.url(&format!("/{BUCKET}/list/{k:06}"));
                async move {
                    let r = self.http.put(&url).body("x").send().await?;
                    anyhow::ensure!(r.status() == 201, "PUT {url}: {}", r.status());
                    Ok(())
                }
            })
            .buffer_unordered(16);
        let results: Vec<anyhow::Result<()>> = writes.collect().await;
        results.into_iter().collect::<anyhow::Result<()>>()?;
        let mut rate = Samples::new();
        for _ in 0..self.args.iterations {
            let t = Instant::now();
            let (mut pages, mut listed, mut token) = (0usize, 0usize, None::<String>);
            loop {
                let url = gw.list_url(page, token.as_deref());
                let text = self
                    .http
                    .get(&url)
                    .send()
                    .await?
                    .error_for_status()?
                    .text()
                    .await?;
                let parsed = rusty_s3::actions::ListObjectsV2::parse_response(&text)
                    .with_context(|| format!("not a ListObjectsV2 answer: {text:.200}"))?;
                pages += 1;
                listed += parsed.contents.len();
                match parsed.next_continuation_token {
                    Some(t) => token = Some(t),
                    None => break,
                }
                anyhow::ensure!(pages <= keys / page + 2, "the listing does not end");
            }
            anyhow::ensure!(listed >= keys, "listed {listed} of {keys} keys");
            rate.push(pages as f64 / t.elapsed().as_secs_f64());
        }
        rows.push(Row::new(
            &format!("S3 ListObjectsV2 of {keys} keys, {page} per page (pages/s)"),
            rate,
            Samples::new(),
            "—",
        ));
        Ok(())
    }

    /// 4 clients each PUT the large value through the gateway and GET it
    /// back, all at once; the gateway's peak RSS.
    async fn s3_memory(&self, gw: &Gateway, rows: &mut Vec<Row>) -> anyhow::Result<()> {
        const CLIENTS: usize = 4;
        let size = self.args.size;
        let rounds = (0..CLIENTS).map(|i| {
            let key = format!("rss-{i}");
            async move {
                self.put(&gw.put_url(&key), size).await?;
                anyhow::ensure!(self.get(&gw.get_url(&key), None).await? == size, "short S3 read");
                self.delete(&gw.delete_url(&key)).await
            }
        });
        for r in futures::future::join_all(rounds).await {
            r?;
        }
        rows.push(Row::single(
            &format!(
                "gateway peak RSS, {CLIENTS} clients × {} MiB up and down (MiB)",
                size / MIB
            ),
            (gw.server.peak_rss() / MIB) as f64,
            "≤ 64",
        ));
        Ok(())
    }
}
