//! `trove-volume`: serve blobs from one or more data dirs.

use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;
use trove_common::flags::parse_timeout;
use trove_common::http::Timeouts;
use trove_common::server::ConnectionArgs;
use trove_common::signing::Signer;

/// A Trove volume server: stores blobs in DIRs and streams them over HTTP.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Port to listen on (0 picks a free one; the address is printed on stdout).
    #[arg(long, env = "TROVE_PORT", default_value_t = 3001)]
    port: u16,
    /// Address to bind. Volumes trust every caller unless a secret is set:
    /// keep them on a private network.
    #[arg(long, env = "TROVE_BIND", default_value = "0.0.0.0")]
    bind: String,
    /// Do not fsync writes. Faster, but a power loss can lose values the
    /// master already acknowledged.
    #[arg(long, env = "TROVE_NO_FSYNC", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    no_fsync: bool,
    /// Let concurrent small writes, marks and deletes share syncs: one
    /// `syncfs` of a data dir's file system for a whole group of them,
    /// instead of fsyncs of their own files and directories. Faster under
    /// load, but each sync also flushes everything else dirty on that file
    /// system: only for data dirs on file systems of their own.
    #[arg(long, env = "TROVE_SHARED_SYNC", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    shared_sync: bool,
    /// Abandon an upload (or a pull from another volume), or drop an
    /// answer the client stopped reading, when no byte has moved for this
    /// long.
    #[arg(long, env = "TROVE_STALL_TIMEOUT", default_value = "30s", value_parser = parse_timeout)]
    stall_timeout: Duration,
    /// Shared secret (the master's --secret): refuse every request that is
    /// not signed with it (403), except /-/healthy.
    #[arg(long, env = "TROVE_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// How long the URLs this volume signs (to pull from another volume)
    /// stay valid.
    #[arg(long, env = "TROVE_URL_TTL", default_value = "5m", value_parser = parse_timeout)]
    url_ttl: Duration,
    /// Give up connecting to another volume (for a pull) after this long.
    #[arg(long, env = "TROVE_CONNECT_TIMEOUT", default_value = "2s", value_parser = parse_timeout)]
    connect_timeout: Duration,
    /// Walk every blob at start-up even if the volume last stopped
    /// cleanly (it then trusts the key set it wrote). Use after changing
    /// files in the data dirs by hand while the volume was stopped.
    #[arg(long, env = "TROVE_RESCAN", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    rescan: bool,
    #[command(flatten)]
    connections: ConnectionArgs,
    /// Data dirs, one per disk; created if missing. Keys are spread across
    /// them by hash.
    #[arg(env = "TROVE_DIRS", value_delimiter = ',', required = true)]
    dirs: Vec<PathBuf>,
}

#[tokio::main]
async fn main() {
    trove_common::process::init_logging(&[]);
    if let Err(e) = serve(Args::parse()).await {
        eprintln!("trove-volume: {e:#}");
        std::process::exit(1);
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    use anyhow::Context;
    let config = trove_volume::Config {
        dirs: args.dirs,
        fsync: !args.no_fsync,
        rescan: args.rescan,
        shared_sync: args.shared_sync,
        timeouts: Timeouts {
            connect: args.connect_timeout,
            stall: args.stall_timeout,
        },
        signer: args.secret.as_deref().filter(|s| !s.is_empty()).map(Signer::new),
        url_ttl: args.url_ttl,
        connections: args.connections.limits(args.stall_timeout),
    };
    // The data dirs first: a volume that cannot use them must fail before
    // it says it is listening.
    let store = trove_volume::open_store(&config).await?;
    let listener = tokio::net::TcpListener::bind((args.bind.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.bind, args.port))?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(trove_volume::run(
        listener,
        store,
        config,
        trove_common::process::shutdown_signal(),
    ));
    // Printed once the socket is bound, for people and for tests.
    println!("trove-volume listening on {addr}");
    server.await.context("server task failed")?
}
