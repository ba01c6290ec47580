//! The `twin` binary: start, inspect and stop a local twin of clusters `old` and `new`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

const EXAMPLE: &str = "Example:
  twin up --dir /tmp/bed              # background; OLD and NEW with real OpenBao (vault-pair)
  . /tmp/bed/env                      # KUBECONFIG, OLD_VAULT_URL, RESOLVE, PARAMS_FILE, ...
  kubectl --context old -n vault get pods -L vault-active,vault-sealed
  curl $CURL_CONNECT_TO -H \"X-Vault-Token: $(cat $OLD_ROOT_TOKEN_FILE)\" $OLD_VAULT_URL/v1/sys/leader
  twin status --dir /tmp/bed
  twin down --dir /tmp/bed            # stops the twin and every process it started
  twin up --scenario empty --dir /tmp/api-only   # API servers only, no Vault";

/// A local twin of two Kubernetes clusters (`old` and `new`): in-memory API servers on
/// loopback that kubectl and kube-rs accept, with the Vault Helm chart's pods running as real
/// OpenBao (`bao`) processes, ingress gateways and transit key services.
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
        /// Directory for the kubeconfig, env file, secrets, pid and log (created 0700).
        #[arg(long)]
        dir: PathBuf,
        /// Serve in this process until Ctrl-C or SIGTERM.
        #[arg(long)]
        foreground: bool,
        /// `vault-pair` (OLD with data, NEW empty, both with real OpenBao), `vault-pair-live` (NEW left
        /// uninitialised, for the live plan), `vault-pair-azure` (sealed by Azure Key Vault through
        /// the twin's Azure emulator, OpenBao 2.6.2, https URLs; for plans/vault-aks-migration.yaml),
        /// `vault-pair-azure-live` (as vault-pair-azure, NEW left uninitialised; for
        /// plans/vault-aks-migration-live.yaml),
        /// `openbao-pair` (as vault-pair, installed with OpenBao's chart: namespace and release
        /// `openbao`; the plans take `flavour: openbao-helm` from DIR/params.yaml) or `empty`.
        #[arg(long, default_value = "vault-pair")]
        scenario: String,
        /// Scheme of the Vault URLs in the env and params files (the gateways serve both).
        #[arg(long, default_value = "http", value_parser = ["http", "https"])]
        url_scheme: String,
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
        #[arg(long, default_value = "vault-pair")]
        scenario: String,
        #[arg(long, default_value = "http")]
        url_scheme: String,
    },
}

fn up_options(scenario: &str, url_scheme: String) -> Result<twin::daemon::UpOptions, String> {
    Ok(twin::daemon::UpOptions {
        scenario: twin::daemon::ScenarioName::parse(scenario)?,
        url_scheme,
    })
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Commands::Up {
            dir,
            foreground,
            scenario,
            url_scheme,
        } => up_options(&scenario, url_scheme).and_then(|options| {
            if foreground {
                twin::daemon::serve(&dir, &options).map(|()| None)
            } else {
                std::env::current_exe()
                    .map_err(|e| format!("cannot find the twin binary: {e}"))
                    .and_then(|exe| {
                        twin::daemon::up(&dir, &exe, &options, Duration::from_secs(180))
                    })
                    .map(Some)
            }
        }),
        Commands::Serve {
            dir,
            scenario,
            url_scheme,
        } => up_options(&scenario, url_scheme)
            .and_then(|options| twin::daemon::serve(&dir, &options))
            .map(|()| None),
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
