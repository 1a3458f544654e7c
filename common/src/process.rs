//! What every binary does around serving: logging set-up and the
//! shutdown signal.

/// Logs to stderr through `tracing`, filtered by `RUST_LOG` (default
/// `info`). The log of each target in `quiet` (a library too loud to
/// show by default) is off unless `RUST_LOG` names it.
pub fn init_logging(quiet: &[&str]) {
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref(), quiet);
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// The `EnvFilter` directives for `RUST_LOG` (`rust_log`) with the
/// targets in `quiet` turned off, unless it names them.
fn log_filter(rust_log: Option<&str>, quiet: &[&str]) -> String {
    let mut filter = rust_log
        .filter(|v| !v.trim().is_empty())
        .unwrap_or("info")
        .to_string();
    for target in quiet {
        if !filter.contains(target) {
            filter.push_str(&format!(",{target}=off"));
        }
    }
    filter
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

/// Prints a line of a command's report on standard output. A reader that
/// has gone away (`trove-master verify | head -1`) ends the process
/// quietly, with the status a shell gives a command `SIGPIPE` ended (141),
/// where `println!` would panic. (`SIGPIPE` itself stays ignored: a
/// client's sockets must fail as errors, not kill it.)
pub fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(line).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        panic!("cannot write to standard output: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn quiet_targets_are_off_unless_named() {
        assert_eq!(log_filter(None, &[]), "info");
        assert_eq!(log_filter(Some(""), &["s3s"]), "info,s3s=off");
        assert_eq!(log_filter(Some("debug"), &["s3s"]), "debug,s3s=off");
        assert_eq!(log_filter(Some("info,s3s=debug"), &["s3s"]), "info,s3s=debug");
        assert_eq!(log_filter(Some("warn"), &[]), "warn");
    }
}
