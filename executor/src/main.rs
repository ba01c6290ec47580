//! The `planx` command: arguments in, one library call, output and an exit code out.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use planc::report::{self, ReportFormat};
use planc::{CompileRequest, FileLoader};

/// Apply a compiled plan against the real Kubernetes and Vault APIs.
///
/// This version explains what a run will do; applying, resuming and rolling back are not built
/// yet. Check plans with `planc check` first.
#[derive(Parser)]
#[command(
    name = "planx",
    version,
    after_help = "Example:\n  planx explain plans/vault-aks-migration.yaml --params plans/vault-aks-migration.params.yaml"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the run order, what each step changes, its undo, and the points of no return.
    Explain {
        plan: PathBuf,
        /// A YAML file of parameter values; repeat to layer files.
        #[arg(long = "params", value_name = "FILE")]
        params: Vec<PathBuf>,
        /// Set one parameter: `--set name=value`.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
}

fn main() -> ExitCode {
    let Command::Explain { plan, params, set } = Cli::parse().command;
    let request = CompileRequest {
        plan,
        params_files: params,
        set,
    };
    let compilation = match planc::compile(&request, &FileLoader) {
        Ok(compilation) => compilation,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    if !compilation.diagnostics.is_empty() {
        eprint!(
            "{}",
            report::render(
                &compilation.diagnostics,
                &compilation.sources,
                ReportFormat::Human,
                false
            )
        );
    }
    match &compilation.plan {
        Some(plan) => {
            // A reader that went away (`planx explain ... | head`) is not an error.
            let mut stdout = std::io::stdout().lock();
            let _ = stdout
                .write_all(planx::explain(plan).as_bytes())
                .and_then(|()| stdout.flush());
            ExitCode::SUCCESS
        }
        None => ExitCode::from(1),
    }
}
