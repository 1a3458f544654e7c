//! # trove-volume
//!
//! A volume server: it stores blobs on its disks and streams them in and out
//! over HTTP. It knows nothing of placement or of other volumes; the master
//! decides what goes where, and callers name keys, never file paths.
//!
//! - [`store`]: data dirs, the on-disk layout, durable writes.
//! - [`api`]: the HTTP handlers, one file per operation, and the signature
//!   check in front of them.
//! - [`error`]: the one place where errors become status codes.

pub mod api;
pub mod error;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use store::BlobStore;
use trove_common::http::Timeouts;
use trove_common::server::ConnectionLimits;
use trove_common::signing::Signer;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data dirs, one per disk.
    pub dirs: Vec<PathBuf>,
    /// fsync every write (on by default).
    pub fsync: bool,
    /// Walk the blobs at start-up even after a clean shutdown (`--rescan`).
    pub rescan: bool,
    /// Concurrent writers share syncs of the data dirs' file systems
    /// (`--shared-sync`; see `store::group`).
    pub shared_sync: bool,
    /// Connect and stall timeouts: for uploads to this volume, and for
    /// pulls from other volumes.
    pub timeouts: Timeouts,
    /// With a secret, every request but `/-/healthy` must be signed.
    pub signer: Option<Signer>,
    /// How long the URLs this volume signs (for pulls) stay valid.
    pub url_ttl: Duration,
    /// Timeouts and the connection limit for clients.
    pub connections: ConnectionLimits,
}

/// What every handler shares.
pub struct AppState {
    pub store: Arc<BlobStore>,
    pub config: Config,
    /// For pulls from other volumes.
    pub http: reqwest::Client,
    pub metrics: Arc<trove_common::metrics::HttpMetrics>,
}

/// Opens the data dirs (see [`BlobStore::open`]). A volume does this
/// before it binds its port, so that one whose disks are unusable fails
/// before it announces that it is listening.
pub async fn open_store(config: &Config) -> anyhow::Result<BlobStore> {
    let dirs = config.dirs.clone();
    let (fsync, shared_sync, rescan) = (config.fsync, config.shared_sync, config.rescan);
    let store = tokio::task::spawn_blocking(move || BlobStore::open_with(dirs, fsync, rescan))
        .await??
        .with_shared_sync(shared_sync)
        .with_stall_timeout(config.timeouts.stall);
    let (blobs, bytes) = store.counts();
    tracing::info!(blobs, bytes, fsync, shared_sync, dirs = ?config.dirs, "data dirs open");
    Ok(store)
}

/// Serves `store` on `listener` until `shutdown` resolves, then closes it
/// (see [`BlobStore::close`]).
pub async fn run(
    listener: tokio::net::TcpListener,
    store: BlobStore,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let limits = config.connections;
    let state = Arc::new(AppState {
        store: Arc::new(store),
        http: trove_common::http::client(config.timeouts),
        metrics: Arc::default(),
        config,
    });
    let metrics = Arc::clone(&state.metrics);
    let store = Arc::clone(&state.store);
    let served = trove_common::server::serve(
        listener,
        api::router(state),
        trove_common::http::VOLUME_SERVER,
        limits,
        metrics,
        shutdown,
    )
    .await;
    tokio::task::spawn_blocking(move || store.close()).await?;
    Ok(served?)
}
