//! `trove-s3`: see `trove_s3::server::Args` for the flags.

use anyhow::Context as _;
use clap::Parser;
use trove_s3::server::{self, Args};

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("trove-s3: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    // s3s logs every error answer as an error, a client's NoSuchKey
    // included; the gateway logs its answers itself (`server::stamp`).
    trove_common::process::init_logging(&["s3s"]);
    let args = Args::parse();
    let pairs = args.key_pairs()?;
    let client = trove_client::Client::builder()
        .masters(args.masters.iter().cloned())
        .retry(gateway_retries())
        .build()
        .context("bad --master")?;
    let gateway = trove_s3::Gateway::new(client, args.upload_ttl);
    let service = server::service(gateway, &pairs);
    let addr = format!("{}:{}", args.bind, args.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr().context("the listener has no address")?;
    tracing::info!(addr = %bound, masters = ?args.masters, keys = pairs.len(), "trove-s3 serving");
    // On stdout, for scripts and tests that start it with --port 0.
    println!("trove-s3 listening on {bound}");
    server::run(listener, service, trove_common::process::shutdown_signal()).await
}

/// A few quick retries, about half a second in all: an S3 client waits on
/// each request, and retries a `503` itself (SDKs back off), so a master
/// that is down answers `503 ServiceUnavailable` promptly rather than
/// after the client's default ~20 s of trying.
fn gateway_retries() -> trove_client::RetryPolicy {
    trove_client::RetryPolicy {
        attempts: 4,
        initial_backoff: std::time::Duration::from_millis(50),
        max_backoff: std::time::Duration::from_millis(400),
    }
}
