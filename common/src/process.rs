//! What every binary does around serving: logging set-up and the
//! shutdown signal.

/// Logs to stderr through `tracing`, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// A future that resolves on SIGINT (ctrl-c) or SIGTERM. The handlers are
/// installed when this is called, not when the future is first polled, so
/// a signal that arrives right after start-up is not lost (nor allowed to
/// kill the process the default way).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    async move {
        let term = async {
            match term.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let int = async {
            match int.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = term => {},
            _ = int => {},
        }
        tracing::info!("shutdown signal received, finishing in-flight requests");
    }
}

/// Lets a closed standard output end the process quietly, as it ends `cat`
/// or `grep` (`SIGPIPE`, exit status 141 in a shell), instead of the first
/// `println!` after it panicking: for commands whose report is read
/// through a pipe (`trove-master verify | head`). Not for servers, which
/// must see a peer's closed socket as an error on that socket only.
pub fn die_quietly_on_closed_stdout() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: restores the default disposition, which runs no handler
    // code in this process; called at start-up, before other threads.
    if let Err(e) = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) } {
        tracing::debug!(error = %e, "cannot restore SIGPIPE's default");
    }
}
