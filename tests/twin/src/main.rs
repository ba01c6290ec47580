//! The `twin` binary: start, inspect and stop a local twin of clusters `old` and `new`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

const EXAMPLE: &str = "Example:
  twin up --dir /tmp/bed              # background; writes /tmp/bed/kubeconfig and /tmp/bed/env
  . /tmp/bed/env                      # KUBECONFIG, OLD_API_URL, NEW_API_URL
  kubectl --context old create configmap demo --from-literal=k=v
  kubectl --context new get namespaces
  twin status --dir /tmp/bed
  twin down --dir /tmp/bed            # stops the server process recorded in /tmp/bed/twin.pid";

/// A local twin of two Kubernetes clusters (`old` and `new`): in-memory API servers on
/// loopback that kubectl and kube-rs accept.
#[derive(Parser)]
#[command(name = "twin", version, after_help = EXAMPLE)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Start clusters `old` and `new` (in the background unless --foreground).
    Up {
        /// Directory for the kubeconfig, env file, pid and log (created 0700).
        #[arg(long)]
        dir: PathBuf,
        /// Serve in this process until Ctrl-C or SIGTERM.
        #[arg(long)]
        foreground: bool,
    },
    /// Stop the twin started from DIR (by the pid recorded there).
    Down {
        /// The directory given to `twin up`.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Show whether the twin from DIR runs and its clusters answer.
    Status {
        /// The directory given to `twin up`.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Serve in the foreground (what `up` runs in the background).
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Commands::Up {
            dir,
            foreground: true,
        }
        | Commands::Serve { dir } => twin::daemon::serve(&dir).map(|()| None),
        Commands::Up {
            dir,
            foreground: false,
        } => std::env::current_exe()
            .map_err(|e| format!("cannot find the twin binary: {e}"))
            .and_then(|exe| twin::daemon::up(&dir, &exe, Duration::from_secs(20)))
            .map(Some),
        Commands::Down { dir } => twin::daemon::down(&dir, Duration::from_secs(10)).map(Some),
        Commands::Status { dir } => twin::daemon::status(&dir).map(Some),
    };
    match result {
        Ok(output) => {
            if let Some(output) = output {
                println!("{output}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("twin: {error}");
            ExitCode::FAILURE
        }
    }
}
