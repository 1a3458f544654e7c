//! `trove-master`: the index and HTTP API of a Trove cluster.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use trove_common::flags::{parse_duration, parse_master_url, parse_size, parse_timeout};
use trove_common::http::Timeouts;
use trove_common::placement::{parse_volume_list, Placement, VolumeSpec};
use trove_common::process::say;
use trove_common::server::ConnectionArgs;
use trove_common::signing::Signer;
use trove_master::jobs::{JobKind, JobParams, JobState};

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
    /// Recreate a lost index from the volumes alone, into a new --db that
    /// no running master holds.
    Rebuild(RebuildArgs),
    /// Move every key whose volumes differ from its placement under the
    /// current volume list (run after adding or removing a volume).
    Rebalance(RebalanceArgs),
    /// Check every key's replicas (presence, size, sha256); --deep re-hashes
    /// the bytes, --repair re-copies bad replicas from a good one.
    Verify(VerifyArgs),
    /// Delete blobs no live record references (failed writes, deletes done
    /// while a volume was down), older than a grace period.
    Gc(GcArgs),
    /// GET a URL and exit 0 if it answers 2xx, 1 otherwise: the health
    /// check of the container image, which has no shell and no curl.
    Probe(ProbeArgs),
}

/// Where the running master is, and how hard to work.
#[derive(clap::Args, Debug)]
struct JobArgs {
    /// The running master; with several (repeated, or comma-separated as
    /// for `trove`), the first that answers runs the job.
    #[arg(long, env = "TROVE_MASTER", default_value = "http://127.0.0.1:3000",
          value_delimiter = ',', value_parser = parse_master_url)]
    master: Vec<reqwest::Url>,
    /// Keys worked on at once (1 to 256).
    #[arg(long, env = "TROVE_CONCURRENCY", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,
    /// At most this many keys acted on a second (verify: checked; rebalance:
    /// moved; gc: cleared or collected), to leave the disks and the
    /// network to the traffic; 0: no limit.
    #[arg(long, env = "TROVE_JOB_RATE", default_value_t = 0)]
    rate: u32,
}

#[derive(clap::Args, Debug)]
struct RebalanceArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Only count the keys and bytes that would move.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args, Debug)]
struct VerifyArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Have the volumes re-read and re-hash every replica (bit rot).
    #[arg(long)]
    deep: bool,
    /// Re-copy missing or corrupt replicas from a good one.
    #[arg(long)]
    repair: bool,
}

#[derive(clap::Args, Debug)]
struct GcArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Only blobs older than this are removed (writes in flight are safe
    /// anyway: they hold their key's lock).
    #[arg(long, env = "TROVE_GC_GRACE", default_value = "1h", value_parser = parse_duration)]
    grace: Duration,
    /// Only count what would be deleted.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args, Debug)]
struct ProbeArgs {
    /// What to GET, e.g. http://127.0.0.1:3000/-/ready. The image's
    /// HEALTHCHECK runs `trove-master probe` with this set per container.
    #[arg(env = "TROVE_PROBE_URL")]
    url: String,
    /// Give up (exit 1) when the whole answer has not arrived in this long.
    #[arg(long, env = "TROVE_PROBE_TIMEOUT", default_value = "3s", value_parser = parse_timeout)]
    timeout: Duration,
    /// Any HTTP answer counts as alive, not only a 2xx (for a server whose
    /// every path wants credentials, such as an S3 gateway).
    #[arg(long, env = "TROVE_PROBE_ANY_STATUS", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    any_status: bool,
    /// Print the answer's body on stdout (to read /-/status without curl).
    #[arg(long)]
    print: bool,
}

#[derive(clap::Args, Debug)]
struct RebuildArgs {
    /// Directory for the new index: must not exist or be empty.
    #[arg(long, env = "TROVE_DB")]
    db: PathBuf,
    /// Every volume that holds data, as for `serve`.
    #[arg(long, env = "TROVE_VOLUMES", value_parser = parse_volumes, required = true)]
    volumes: Vec<Vec<VolumeSpec>>,
    #[arg(long, env = "TROVE_CONNECT_TIMEOUT", default_value = "2s", value_parser = parse_timeout)]
    connect_timeout: Duration,
    #[arg(long, env = "TROVE_STALL_TIMEOUT", default_value = "30s", value_parser = parse_timeout)]
    stall_timeout: Duration,
    /// The cluster's secret, if it has one (volumes refuse unsigned listings).
    #[arg(long, env = "TROVE_SECRET", hide_env_values = true)]
    secret: Option<String>,
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
    #[arg(long, env = "TROVE_PROTECT", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    protect: bool,
    /// Do not sync index writes to disk. Faster, but a crash of the machine
    /// can forget writes that were acknowledged. (Volumes have their own
    /// --no-fsync.)
    #[arg(long, env = "TROVE_NO_FSYNC", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    no_fsync: bool,
    /// Memory for the index's block cache (RocksDB): records and the
    /// filters that let a lookup of a missing key skip the disk. More
    /// keeps more of a large index's reads in memory.
    #[arg(long, env = "TROVE_INDEX_CACHE", default_value = "8MiB", value_parser = parse_size)]
    index_cache: u64,
    /// Give up connecting to a volume after this long.
    #[arg(long, env = "TROVE_CONNECT_TIMEOUT", default_value = "2s", value_parser = parse_timeout)]
    connect_timeout: Duration,
    /// Give up on a volume (or a client upload), or drop an answer the
    /// client stopped reading, when no byte has moved for this long. There
    /// is no total timeout: large transfers take the time they need while
    /// they keep moving.
    #[arg(long, env = "TROVE_STALL_TIMEOUT", default_value = "30s", value_parser = parse_timeout)]
    stall_timeout: Duration,
    /// How often to poll every volume's health.
    #[arg(long, env = "TROVE_HEALTH_INTERVAL", default_value = "1s", value_parser = parse_timeout)]
    health_interval: Duration,
    /// Shared secret: sign every redirect and volume request (HMAC-SHA256);
    /// volumes started with the same secret refuse anything unsigned.
    #[arg(long, env = "TROVE_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// A volume with less free space than this takes no new writes (they
    /// go to the next volume in the key's order, as when it is down).
    #[arg(long, env = "TROVE_MIN_FREE", default_value = "256MiB", value_parser = parse_size)]
    min_free: u64,
    /// How long a signed URL (a redirect, a volume request) stays valid.
    #[arg(long, env = "TROVE_URL_TTL", default_value = "5m", value_parser = parse_timeout)]
    url_ttl: Duration,
    /// Expire writes that name no expiry (Trove-Expires-After/-At) this long
    /// after they are written (`30d`, `12h`). Default: they never expire.
    #[arg(long, env = "TROVE_DEFAULT_TTL", value_parser = parse_timeout)]
    default_ttl: Option<Duration>,
    /// How often the expirer looks for expired keys to delete.
    #[arg(long, env = "TROVE_EXPIRY_INTERVAL", default_value = "1s", value_parser = parse_timeout)]
    expiry_interval: Duration,
    /// At most this many expired keys are deleted from the volumes per second.
    #[arg(long, env = "TROVE_EXPIRY_RATE", default_value_t = 100)]
    expiry_rate: u32,
    /// Let the status page (/-/ui) start and stop rebalance, verify and gc
    /// (behind a confirmation). Off: the page only shows, and its admin
    /// endpoints (/-/ui/jobs/…) answer 403. /-/rebalance, /-/verify and
    /// /-/gc, which the admin commands use, answer either way.
    #[arg(long, env = "TROVE_UI_ADMIN", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    ui_admin: bool,
    #[command(flatten)]
    connections: ConnectionArgs,
}

/// `--volumes a,b,c` as one flag value (clap calls this once per flag).
fn parse_volumes(list: &str) -> Result<Vec<VolumeSpec>, String> {
    parse_volume_list(list).map_err(|e| e.to_string())
}

fn main() {
    trove_common::process::init_logging(&[]);
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("trove-master: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let holds_index = matches!(cli.command, Command::Serve(_) | Command::Rebuild(_));
    let code = runtime.block_on(command(cli));
    // Tasks still running (a write's clean-up, a job) hold the index. They
    // are stopped and dropped here, so that the index closes before the
    // process exits: exiting with RocksDB in use by another thread races
    // its teardown and can abort ("pthread lock: Invalid argument"). The
    // other commands (clients of a running master) exit at once.
    runtime.shutdown_timeout(if holds_index { EXIT_GRACE } else { Duration::ZERO });
    std::process::exit(code)
}

/// How long blocking work still in flight when `serve` or `rebuild` exits
/// (an index write) gets to finish.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// Runs the command line's command; its exit code.
async fn command(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Serve(args) => serve(args).await.map(|()| 0),
        Command::Rebuild(args) => rebuild(args).await,
        Command::Rebalance(a) => {
            job(
                &a.job,
                JobKind::Rebalance,
                JobParams {
                    dry_run: a.dry_run,
                    ..a.job.params()
                },
            )
            .await
        }
        Command::Verify(a) => {
            let params = JobParams {
                deep: a.deep,
                repair: a.repair,
                ..a.job.params()
            };
            job(&a.job, JobKind::Verify, params).await
        }
        Command::Gc(a) => {
            let params = JobParams {
                grace_secs: Some(a.grace.as_secs()),
                dry_run: a.dry_run,
                ..a.job.params()
            };
            job(&a.job, JobKind::Gc, params).await
        }
        Command::Probe(args) => probe(args).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("trove-master: {e:#}");
            1
        }
    }
}

impl JobArgs {
    fn params(&self) -> JobParams {
        JobParams {
            concurrency: Some(usize::from(self.concurrency)),
            rate: Some(self.rate).filter(|r| *r > 0),
            ..Default::default()
        }
    }
}

/// The first of `masters` that answers `/-/healthy` within a couple of
/// seconds, else the first (whose error the job then reports).
async fn answering(masters: &[reqwest::Url]) -> &reqwest::Url {
    if let [only] = masters {
        return only;
    }
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()
        .expect("an HTTP client");
    for master in masters {
        let healthy = master.join("/-/healthy").expect("a path on a master URL");
        if http
            .get(healthy)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return master;
        }
    }
    &masters[0]
}

/// Runs an admin job on the master; the exit code is 0 only when it
/// finished with nothing failed and nothing left broken.
async fn job(args: &JobArgs, kind: JobKind, params: JobParams) -> anyhow::Result<i32> {
    let started = std::time::Instant::now();
    let master = answering(&args.master).await;
    let report = trove_master::cli::run_job(master.as_str(), kind, params).await?;
    say(format_args!(
        "{}",
        trove_master::cli::summary(&report, started.elapsed())
    ));
    for line in &report.planned {
        say(format_args!("  {line}"));
    }
    if report.planned_dropped > 0 {
        say(format_args!("  … and {} more", report.planned_dropped));
    }
    for p in &report.problems {
        say(format_args!("  {p}"));
    }
    if report.problems_dropped > 0 {
        say(format_args!(
            "  … and {} more (see the master's log)",
            report.problems_dropped
        ));
    }
    if let Some(e) = &report.error {
        say(format_args!("error: {e}"));
    }
    let unrepaired = kind == JobKind::Verify && report.found > report.changed;
    Ok(match report.state {
        JobState::Cancelled => 130,
        JobState::Done if report.failed == 0 && !unrepaired => 0,
        _ => 1,
    })
}

/// One bounded GET. A total timeout is right here, unlike between servers:
/// a health answer is a few bytes, and a health check must never hang.
async fn probe(args: ProbeArgs) -> anyhow::Result<i32> {
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()?;
    let answer = client
        .get(&args.url)
        .send()
        .await
        .with_context(|| format!("GET {}", args.url))?;
    let status = answer.status();
    let body = answer
        .text()
        .await
        .with_context(|| format!("GET {}: reading the answer", args.url))?;
    if args.print {
        print!("{body}");
    }
    if status.is_success() || args.any_status {
        Ok(0)
    } else {
        eprintln!("trove-master probe: {} answered {status}", args.url);
        Ok(1)
    }
}

/// Refuses a `--volumes` list that names one server twice under two names
/// (`127.0.0.1:3001` and `localhost:3001`): its "replicas" would share a
/// disk. Names are resolved and their socket addresses compared; a name
/// that does not resolve now is left to the health monitor (the volume may
/// come up later), with a warning.
async fn check_distinct_volumes(volumes: &[VolumeSpec], within: Duration) -> anyhow::Result<()> {
    let mut seen: std::collections::HashMap<std::net::SocketAddr, &str> = Default::default();
    for v in volumes {
        let addrs = match tokio::time::timeout(within, tokio::net::lookup_host(v.addr.as_str())).await {
            Ok(Ok(addrs)) => addrs,
            Ok(Err(e)) => {
                tracing::warn!(volume = %v.addr, error = %e, "cannot resolve this volume now; not checked for duplicates");
                continue;
            }
            Err(_) => {
                tracing::warn!(volume = %v.addr, "resolving this volume timed out; not checked for duplicates");
                continue;
            }
        };
        for addr in addrs {
            match seen.insert(addr, &v.addr) {
                Some(other) if other != v.addr => anyhow::bail!(
                    "--volumes names one server twice: {other} and {} are both {addr}; list each volume once",
                    v.addr
                ),
                _ => {}
            }
        }
    }
    Ok(())
}

async fn rebuild(args: RebuildArgs) -> anyhow::Result<i32> {
    let volumes: Vec<VolumeSpec> = args.volumes.into_iter().flatten().collect();
    check_distinct_volumes(&volumes, args.connect_timeout).await?;
    let placement = Placement::new(volumes, 1).context("bad --volumes")?;
    let timeouts = Timeouts {
        connect: args.connect_timeout,
        stall: args.stall_timeout,
    };
    let signer = args.secret.as_deref().filter(|s| !s.is_empty()).map(Signer::new);
    let report = trove_master::rebuild::rebuild(&args.db, &placement, timeouts, signer).await?;
    println!(
        "rebuilt {}: {} blob(s) read, {} live key(s), {} unlinked, {} never confirmed (left for gc), {} conflict(s)",
        args.db.display(),
        report.blobs,
        report.live,
        report.unlinked,
        report.unconfirmed,
        report.conflicts.len()
    );
    for c in report.conflicts.iter().chain(&report.superseded) {
        println!("  {c}");
    }
    Ok(0)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let volumes: Vec<VolumeSpec> = args.volumes.into_iter().flatten().collect();
    check_distinct_volumes(&volumes, args.connect_timeout).await?;
    let placement = Placement::new(volumes, args.replicas).context("bad --volumes / --replicas")?;
    let config = trove_master::Config {
        db: args.db,
        placement,
        protect: args.protect,
        fsync: !args.no_fsync,
        index_cache: args.index_cache as usize,
        timeouts: Timeouts {
            connect: args.connect_timeout,
            stall: args.stall_timeout,
        },
        health_interval: args.health_interval,
        signer: args.secret.as_deref().filter(|s| !s.is_empty()).map(Signer::new),
        url_ttl: args.url_ttl,
        min_free: args.min_free,
        default_ttl: args.default_ttl,
        expiry_interval: args.expiry_interval,
        expiry_rate: args.expiry_rate,
        connections: args.connections.limits(args.stall_timeout),
        ui_admin: args.ui_admin,
    };
    let state = trove_master::AppState::open(config)?;
    let listener = tokio::net::TcpListener::bind((args.bind.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.bind, args.port))?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(trove_master::run(
        listener,
        state,
        trove_common::process::shutdown_signal(),
    ));
    // Printed once the socket is bound, for people and for tests.
    println!("trove-master listening on {addr}");
    server.await.context("server task failed")?
}
