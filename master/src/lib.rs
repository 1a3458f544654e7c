//! # trove-master
//!
//! The master keeps the index of every key and answers the HTTP API; it
//! never stores or serves a value's bytes itself. Reads are `302` redirects
//! to a volume; writes stream through to every replica at once.
//!
//! - [`index`]: the RocksDB index of key → [`trove_common::record::Record`].
//! - [`volumes`]: the volume roster and the health monitor.
//! - [`client`]: HTTP calls to volumes.
//! - [`marks`]: the marks that confirm writes, batched per volume.
//! - [`locks`]: one operation per key at a time.
//! - [`write`]: the streaming, all-or-nothing write path.
//! - [`compose`]: values built on the volumes out of ranges of others.
//! - [`delete`]: the delete path (`DELETE`, `UNLINK`) across the replicas.
//! - [`jobs`]: rebalance, verify and gc, run inside the live master.
//! - [`expiry`]: TTL headers and the expirer that deletes expired keys.
//! - [`repair`]: copies the volumes find damaged while serving them,
//!   re-copied from good replicas.
//! - [`rebuild`]: recreate a lost index from the volumes (offline).
//! - [`listing`]: volumes' sorted listings, read in step (rebuild's merge).
//! - [`cli`]: the admin commands' client side: start a job on the running
//!   master and follow its progress.
//! - [`api`]: HTTP handlers, one file per operation.
//! - [`ui`]: the operators' status page and the API description.
//! - [`error`]: the one place where errors become status codes.

pub mod api;
pub mod cli;
pub mod client;
pub mod compose;
pub mod delete;
pub mod error;
pub mod expiry;
pub mod index;
pub mod jobs;
pub mod listing;
pub mod locks;
pub mod marks;
pub mod rebuild;
pub mod repair;
pub mod ui;
pub mod volumes;
pub mod write;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use trove_common::http::Timeouts;
use trove_common::placement::Placement;
use trove_common::server::ConnectionLimits;
use trove_common::signing::Signer;

/// How the master runs (from `trove-master serve`).
#[derive(Debug, Clone)]
pub struct Config {
    /// The RocksDB index directory.
    pub db: PathBuf,
    /// Volumes and replica count.
    pub placement: Placement,
    /// `DELETE` of a live key is refused; `UNLINK` it first.
    pub protect: bool,
    /// Sync every index write to disk (on unless `--no-fsync`).
    pub fsync: bool,
    /// The index's block cache, in bytes (`--index-cache`).
    pub index_cache: usize,
    /// Timeouts for calls to volumes.
    pub timeouts: Timeouts,
    /// How often the monitor polls every volume.
    pub health_interval: Duration,
    /// Signs redirects and volume requests when the cluster has a secret.
    pub signer: Option<Signer>,
    /// How long a signed URL stays valid.
    pub url_ttl: Duration,
    /// Volumes with less free space take no new writes.
    pub min_free: u64,
    /// Expiry for writes that ask for none (`None`: they never expire).
    pub default_ttl: Option<Duration>,
    /// How often the expirer looks for expired keys.
    pub expiry_interval: Duration,
    /// At most this many expired keys are deleted per second.
    pub expiry_rate: u32,
    /// Timeouts and the connection limit for clients.
    pub connections: ConnectionLimits,
    /// The status page may start and stop admin jobs (`--ui-admin`).
    pub ui_admin: bool,
}

/// What every handler shares.
pub struct AppState {
    pub index: index::Index,
    pub volumes: Arc<volumes::Volumes>,
    pub locks: Arc<locks::KeyLocks>,
    pub jobs: jobs::Jobs,
    pub metrics: Arc<trove_common::metrics::HttpMetrics>,
    pub expiry: expiry::ExpiryStats,
    pub repairs: repair::RepairStats,
    pub config: Config,
}

impl AppState {
    /// Opens the index and sets up the volume roster (not yet polled).
    pub fn open(config: Config) -> anyhow::Result<AppState> {
        use anyhow::Context;
        let index = index::Index::open(
            &config.db,
            config.fsync,
            config.index_cache,
            Some(config.timeouts.stall),
        )
        .with_context(|| format!("cannot open the index at {}", config.db.display()))?;
        let client = client::VolumeClient::new(config.timeouts, config.signer.clone(), config.url_ttl);
        let mut volumes = volumes::Volumes::new(config.placement.clone(), client, config.min_free);
        let disks = index
            .volume_disks()
            .context("cannot read the volumes' data dirs from the index")?;
        // An index that starts out here empty, never having seen a volume,
        // is marked so for good: a volume it then meets holding blobs may
        // hold a lost index's values (see `Volumes::poll_all`).
        let mut origin = index.origin().context("cannot read the index")?;
        let counts = index.counts();
        if origin.is_none() && disks.is_empty() && counts.live + counts.unlinked + counts.writing == 0 {
            let born = index::Origin::BornEmpty(trove_common::record::now_ms());
            index.set_origin(born).context("cannot write to the index")?;
            origin = Some(born);
        }
        if let Some(index::Origin::BornEmpty(at)) = origin {
            volumes.set_born_empty(at);
        }
        volumes.remember_disks(disks);
        Ok(AppState {
            index,
            volumes: Arc::new(volumes),
            locks: Arc::default(),
            jobs: jobs::Jobs::default(),
            metrics: Arc::default(),
            expiry: expiry::ExpiryStats::default(),
            repairs: repair::RepairStats::default(),
            config,
        })
    }
}

/// Serves on `listener` until `shutdown` resolves, with the volume monitor
/// running alongside.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = Arc::new(state);
    let monitor =
        tokio::spawn(Arc::clone(&state.volumes).monitor(state.config.health_interval, state.index.clone()));
    let expirer = tokio::spawn(expiry::run(Arc::clone(&state)));
    let repairer = state
        .volumes
        .take_damage_reports()
        .map(|reports| tokio::spawn(repair::run(Arc::clone(&state), reports)));
    let counts = state.index.counts();
    tracing::info!(
        live = counts.live,
        unlinked = counts.unlinked,
        volumes = state.config.placement.volumes().len(),
        replicas = state.config.placement.replicas(),
        "index open"
    );
    let limits = state.config.connections;
    let metrics = Arc::clone(&state.metrics);
    let result = trove_common::server::serve(
        listener,
        api::router(state),
        trove_common::http::MASTER_SERVER,
        limits,
        metrics,
        shutdown,
    )
    .await;
    monitor.abort();
    expirer.abort();
    if let Some(r) = repairer {
        r.abort();
    }
    Ok(result?)
}
