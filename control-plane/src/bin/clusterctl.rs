//! The `clusterctl` binary: parses the command line, runs the command, prints errors as
//! `[ERR] <message>` on stderr with exit code 1.

use std::process::ExitCode;

use clap::Parser;
use tessera_control_plane::clusterctl::{execute, Cli};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs (RUST_LOG) go to stderr, as every binary's do: stdout is the command's output.
    tessera_proto::process::init_logging(tessera_proto::process::LogFormat::Text);
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::stdout();
    match execute(cli, &mut input, &mut out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if !error.is_silent() {
                eprintln!("[ERR] {error}");
            }
            ExitCode::FAILURE
        }
    }
}
