//! `trove-master`: the index and HTTP API of a Trove cluster.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use trove_common::http::{parse_duration, Timeouts};
use trove_common::placement::{parse_volume_list, Placement, VolumeSpec};

/// Trove's master: keeps the key index and answers the HTTP API.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the HTTP API.
    Serve(ServeArgs),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Port to listen on (0 picks a free one; the address is printed on stdout).
    #[arg(long, env = "TROVE_PORT", default_value_t = 3000)]
    port: u16,
    /// Address to bind.
    #[arg(long, env = "TROVE_BIND", default_value = "0.0.0.0")]
    bind: String,
    /// Directory of the RocksDB index (created if missing).
    #[arg(long, env = "TROVE_DB")]
    db: PathBuf,
    /// Volume servers, comma-separated: host:port, optionally with a weight
    /// and a zone: host:port=weight@zone.
    #[arg(long, env = "TROVE_VOLUMES", value_parser = parse_volumes)]
    #[arg(required = true)]
    volumes: Vec<Vec<VolumeSpec>>,
    /// Copies of each value; at most the number of volumes.
    #[arg(long, env = "TROVE_REPLICAS", default_value_t = 3)]
    replicas: usize,
    /// Refuse DELETE of a live key: it must be UNLINKed first.
    #[arg(long, env = "TROVE_PROTECT")]
    protect: bool,
    /// Do not sync index writes to disk. Faster, but a crash of the machine
    /// can forget writes that were acknowledged. (Volumes have their own
    /// --no-fsync.)
    #[arg(long, env = "TROVE_NO_FSYNC")]
    no_fsync: bool,
    /// Give up connecting to a volume after this long.
    #[arg(long, env = "TROVE_CONNECT_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// Give up on a volume (or a client upload) when no byte has moved for
    /// this long. There is no total timeout: large transfers take the time
    /// they need while they keep moving.
    #[arg(long, env = "TROVE_STALL_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    stall_timeout: Duration,
    /// How often to poll every volume's health.
    #[arg(long, env = "TROVE_HEALTH_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    health_interval: Duration,
}

/// `--volumes a,b,c` as one flag value (clap calls this once per flag).
fn parse_volumes(list: &str) -> Result<Vec<VolumeSpec>, String> {
    parse_volume_list(list).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() {
    trove_common::http::init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
    };
    if let Err(e) = result {
        eprintln!("trove-master: {e:#}");
        std::process::exit(1);
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let volumes: Vec<VolumeSpec> = args.volumes.into_iter().flatten().collect();
    let placement = Placement::new(volumes, args.replicas).context("bad --volumes / --replicas")?;
    let config = trove_master::Config {
        db: args.db,
        placement,
        protect: args.protect,
        fsync: !args.no_fsync,
        timeouts: Timeouts {
            connect: args.connect_timeout,
            stall: args.stall_timeout,
        },
        health_interval: args.health_interval,
    };
    let state = trove_master::AppState::open(config)?;
    let listener = tokio::net::TcpListener::bind((args.bind.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.bind, args.port))?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(trove_master::run(
        listener,
        state,
        trove_common::http::shutdown_signal(),
    ));
    // Printed once the socket is bound, for people and for tests.
    println!("trove-master listening on {addr}");
    server.await.context("server task failed")?
}
