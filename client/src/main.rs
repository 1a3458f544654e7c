//! `trove`: the command line for a Trove cluster. The commands live in
//! `cli/`, one file per command (or family); this file parses, runs, and
//! turns the outcome into an exit code.

mod cli;

use clap::Parser;
use cli::{Cli, ExitCode};

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let transfers = cli.transfers();
    if std::env::var_os("RUST_LOG").is_some() {
        trove_common::process::init_logging(&[]);
    }
    let interrupted = tokio::signal::ctrl_c();
    // Ctrl-C drops the command where it is: an upload's connection closes
    // mid-body, so the master stores nothing, and nothing is retried.
    let code = tokio::select! {
        result = cli::run(cli) => match result {
            Ok(()) => ExitCode::Ok,
            Err(e) => {
                let code = ExitCode::of(&e);
                cli::ui::tell(&format!("trove: {}", cli::ui::error_text(&e)));
                code
            }
        },
        _ = interrupted => {
            cli::ui::tell(cli::interrupted_message(transfers));
            ExitCode::Interrupted
        }
    };
    std::process::exit(code as i32);
}
