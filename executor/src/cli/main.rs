//! The `planx` command: arguments in, library calls, one place that prints an error and picks
//! the exit code (0 done, 1 a step failed or a check refused, 2 usage or unreadable input,
//! 3 refused to start: stale, drifted, locked, 130 interrupted).

mod approve;
mod view;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::{CommandFactory, Parser, Subcommand};
use planc::CompileRequest;
use planx::engine::{Outcome, Preapproved};
use planx::error::{ErrorKind, PlanxError};
use planx::run::{self, RunDir, RunRecord, Session};

use approve::{TerminalApprover, confirm};
use view::Output;

const EXAMPLES: &str = "\
Examples:
  planx explain plans/vault-aks-migration.yaml --params prod.params.yaml
  planx plan plans/vault-aks-migration.yaml --params prod.params.yaml -o saved-plan.json
  planx apply saved-plan.json --approve-all
  planx apply plans/vault-transit-migration.yaml --params $PARAMS_FILE --resolve vault.new.test=127.0.0.1:8443 --approve-all --yes
  planx status runs/vault-transit-migration-20261129T1230
  planx resume runs/vault-transit-migration-20261129T1230
  planx rollback runs/vault-transit-migration-20261129T1230 --yes
  planx unlock runs/vault-transit-migration-20261129T1230

Exit codes: 0 done, 1 a step failed or a check refused, 2 usage or unreadable input,
3 refused to start (stale saved plan, drifted objects, another run's Lease), 130 interrupted.";

/// Apply a compiled plan against the real Kubernetes and Vault APIs, journaling every step, so
/// that a run can be resumed after a crash and rolled back.
///
/// Secrets come from the references the plan carries (env:NAME, file:PATH, prompt), never from
/// argv. A run directory holds everything needed to continue: `status`, `resume`, `rollback`
/// and `unlock` work from any folder, without the plan files.
#[derive(Parser)]
#[command(name = "planx", version, after_help = EXAMPLES, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct PlanFiles {
    /// The plan (YAML).
    plan: PathBuf,
    /// A parameters file (YAML, `name: value`); repeatable, later files override earlier ones.
    #[arg(long = "params", value_name = "FILE")]
    params: Vec<PathBuf>,
    /// Set one parameter, overriding the files; repeatable. Secrets take a reference
    /// (`env:NAME`, `file:PATH`, `prompt`), never a value.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
}

impl PlanFiles {
    fn request(&self) -> CompileRequest {
        CompileRequest {
            plan: self.plan.clone(),
            params_files: self.params.clone(),
            set: self.set.clone(),
        }
    }
}

#[derive(clap::Args, Clone)]
struct Interaction {
    /// Approve this gate (by step id) without asking; repeat for several.
    #[arg(long = "approve", value_name = "STEP")]
    approve: Vec<String>,
    /// Approve every gate (rehearsals, CI).
    #[arg(long)]
    approve_all: bool,
    /// `human` prints a line per step; `json` streams one event per line.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
}

#[derive(Subcommand)]
enum Command {
    /// Show the run order, what each step changes, its undo, and the points of no return.
    Explain {
        #[command(flatten)]
        files: PlanFiles,
    },
    /// Read the live clusters (read-only, no Lease), print what every step will change, and
    /// write a saved plan: the compiled plan, its previews and a digest of every object observed.
    ///
    /// `planx apply SAVED` then refuses to start when the plan files compile to something else,
    /// or when an observed object moved (it prints the drift), and checks each object again
    /// just before the first step that edits it. Secrets are redacted in the previews and never
    /// written to the saved plan; their references (env:, file:) are.
    Plan {
        #[command(flatten)]
        files: PlanFiles,
        /// The kubeconfig with the plan's contexts (default: $KUBECONFIG, then ~/.kube/config).
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<PathBuf>,
        /// Where to write the saved plan.
        #[arg(short, long, value_name = "FILE", default_value = "saved-plan.json")]
        out: PathBuf,
    },
    /// Run a plan, or a saved plan from `planx plan`: read every secret and the kubeconfig,
    /// take the Lease in every cluster, create the run directory, run every step, journal it.
    /// A saved plan is refused when it is stale or the clusters drifted.
    Apply {
        /// A plan (YAML) or a saved plan (JSON written by `planx plan`; run planx from the folder
        /// it was made in, since it names the plan and parameter files by their paths).
        plan: PathBuf,
        /// A parameters file (YAML); repeatable, later files override earlier ones.
        #[arg(long = "params", value_name = "FILE")]
        params: Vec<PathBuf>,
        /// Set one parameter, overriding the files; repeatable. Secrets take a reference
        /// (`env:NAME`, `file:PATH`, `prompt`), never a value.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// Pin a host name to an address (`host=ip:port`), as curl's --resolve; repeatable.
        #[arg(long = "resolve", value_name = "HOST=IP:PORT")]
        resolve: Vec<String>,
        /// The kubeconfig with the plan's contexts (default: $KUBECONFIG, then ~/.kube/config).
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<PathBuf>,
        /// Where run directories are created.
        #[arg(long, value_name = "DIR", default_value = "runs")]
        runs_dir: PathBuf,
        /// Do not ask for confirmation before starting.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        interaction: Interaction,
    },
    /// Continue a run that stopped: skip what succeeded, check what is in doubt, run the rest.
    /// The run continues with the plan stored in its directory.
    Resume {
        /// The run directory (`planx apply` printed it as `run directory:`).
        run: PathBuf,
        /// Compare the stored plan with these plan files: planx says when they differ, and
        /// continues with the stored plan.
        #[arg(long, value_name = "FILE")]
        plan: Option<PathBuf>,
        /// Parameter files for `--plan`.
        #[arg(long = "params", value_name = "FILE", requires = "plan")]
        params: Vec<PathBuf>,
        /// `--set` arguments for `--plan`.
        #[arg(long = "set", value_name = "NAME=VALUE", requires = "plan")]
        set: Vec<String>,
        #[command(flatten)]
        interaction: Interaction,
    },
    /// Undo what a run did, in reverse order, and say what cannot be undone. A rollback that
    /// stopped can be run again: it finishes what is left.
    Rollback {
        /// The run directory.
        run: PathBuf,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Show the state of every step of a run (and of each item of a `for_each` step), from its
    /// journal; no cluster is contacted.
    Status {
        /// The run directory.
        run: PathBuf,
        /// `human` prints a table; `json` one object.
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
    },
    /// Release the Lease a stopped run holds in every cluster, without resuming or rolling it
    /// back, so that another run may start. Its changes stay as they are.
    Unlock {
        /// The run directory.
        run: PathBuf,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Write the man pages, planx.1 and one per subcommand, into DIR (book/man/ holds them).
    #[command(hide = true)]
    Man { dir: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return report(&PlanxError::failed(format!("cannot start: {error}"))),
    };
    let result = match cli.command {
        Command::Explain { files } => explain(&files),
        Command::Plan {
            files,
            kubeconfig,
            out,
        } => runtime.block_on(make_plan(&files, default_kubeconfig(kubeconfig), &out)),
        Command::Apply {
            plan,
            params,
            set,
            resolve,
            kubeconfig,
            runs_dir,
            yes,
            interaction,
        } => runtime.block_on(apply(
            PlanFiles { plan, params, set },
            resolve,
            default_kubeconfig(kubeconfig),
            runs_dir,
            yes,
            interaction,
        )),
        Command::Resume {
            run,
            plan,
            params,
            set,
            interaction,
        } => {
            let files = plan.map(|plan| PlanFiles { plan, params, set });
            runtime.block_on(resume(run, files, interaction))
        }
        Command::Rollback { run, yes } => runtime.block_on(rollback(run, yes)),
        Command::Status { run, output } => status(&run, output),
        Command::Unlock { run, yes } => runtime.block_on(unlock(run, yes)),
        Command::Man { dir } => std::fs::create_dir_all(&dir)
            .and_then(|()| clap_mangen::generate_to(Cli::command(), &dir))
            .map(|()| ExitCode::SUCCESS)
            .map_err(|e| {
                PlanxError::input(format!(
                    "cannot write the man pages into {}: {e}",
                    dir.display()
                ))
            }),
    };
    match result {
        Ok(code) => code,
        Err(error) => report(&error),
    }
}

/// The one place an error is printed.
fn report(error: &PlanxError) -> ExitCode {
    let message = error.message.trim_end();
    if message.starts_with("error") || message.contains("\n  --> ") {
        // Diagnostics come rendered with their own severity and positions.
        eprintln!("{message}");
    } else {
        eprintln!("error: {message}");
    }
    ExitCode::from(error.kind.exit_code())
}

fn write_stdout(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

fn explain(files: &PlanFiles) -> Result<ExitCode, PlanxError> {
    let compiled = run::compile(&files.request())?;
    write_stdout(&planx::explain(&compiled.plan));
    Ok(ExitCode::SUCCESS)
}

fn default_kubeconfig(kubeconfig: Option<PathBuf>) -> PathBuf {
    kubeconfig
        .or_else(|| std::env::var_os("KUBECONFIG").map(PathBuf::from))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config")))
        .unwrap_or_else(|| PathBuf::from(".kube/config"))
}

async fn make_plan(
    files: &PlanFiles,
    kubeconfig: PathBuf,
    out: &Path,
) -> Result<ExitCode, PlanxError> {
    let made = run::make_saved_plan(&files.request(), &kubeconfig).await?;
    eprint!("{}", made.warnings);
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    write_stdout(&planc::diff_view::text(
        &made.plan,
        &made.saved.previews,
        colour,
    ));
    let mut text = serde_json::to_string_pretty(&made.saved)
        .map_err(|e| PlanxError::failed(format!("cannot write the saved plan: {e}")))?;
    text.push('\n');
    std::fs::write(out, text)
        .map_err(|e| PlanxError::input(format!("cannot write {}: {e}", out.display())))?;
    eprintln!(
        "saved plan: {} ({} objects observed); apply it with `planx apply {}`",
        out.display(),
        made.saved.observed.len(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn apply(
    files: PlanFiles,
    resolve: Vec<String>,
    kubeconfig: PathBuf,
    runs_dir: PathBuf,
    yes: bool,
    interaction: Interaction,
) -> Result<ExitCode, PlanxError> {
    let saved = if run::is_saved_plan(&files.plan) {
        if !files.params.is_empty() || !files.set.is_empty() {
            return Err(PlanxError::input(format!(
                "{} is a saved plan; it carries its parameters, so --params and --set do not apply (make a new one with `planx plan`)",
                files.plan.display()
            )));
        }
        Some(run::read_saved_plan(&files.plan)?)
    } else {
        None
    };
    let compiled = match &saved {
        Some(saved) => run::compile_saved(&files.plan, saved)?,
        None => run::compile(&files.request())?,
    };
    run::parse_resolve(&resolve)?;
    let record = RunRecord::new(
        run::run_id(&compiled.plan.name),
        &compiled.request,
        compiled.plan,
        &compiled.sources,
        &kubeconfig,
        resolve,
        saved.as_ref().map(|_| files.plan.clone()),
    )?;
    write_stdout(&planx::explain(&record.compiled));
    // Every input is read before anything is written: secrets, the kubeconfig, the clusters.
    let session = Session::open(record).await?;
    if let Some(saved) = &saved {
        let observed = session.check_drift(saved).await?;
        eprintln!(
            "the {observed} objects the saved plan observed are as they were; each is checked again before the step that edits it"
        );
    }
    let question = format!(
        "apply {} steps of `{}`? [y/N] ",
        session.plan().steps.len(),
        session.plan().name
    );
    if !confirm(yes, &question, "pass --yes to apply without asking")? {
        return Err(PlanxError::failed("not applied"));
    }
    let run_dir = run::start(&session, &runs_dir, saved.as_ref()).await?;
    eprintln!("run directory: {}", run_dir.path().display());
    execute(session, &run_dir, false, interaction).await
}

async fn execute(
    session: Session,
    run_dir: &RunDir,
    resume: bool,
    interaction: Interaction,
) -> Result<ExitCode, PlanxError> {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nstopping: the steps in flight finish, nothing new starts (resume later)");
            let _ = stop_tx.send(true);
        }
    });
    let approver = Arc::new(TerminalApprover {
        preapproved: Preapproved {
            all: interaction.approve_all,
            steps: interaction.approve.clone(),
        },
    });
    let output = interaction.output;
    let started = Instant::now();
    let progress = move |event: planx::engine::Progress| view::progress(&event, output, started);
    let summary = run::execute(session, run_dir, resume, approver, progress, stop).await?;
    view::summary(&summary, output);
    Ok(match summary.outcome {
        Outcome::Completed => ExitCode::SUCCESS,
        Outcome::Interrupted => ExitCode::from(ErrorKind::Interrupted.exit_code()),
        Outcome::Failed { .. } | Outcome::NotApproved { .. } => {
            ExitCode::from(ErrorKind::Failed.exit_code())
        }
    })
}

async fn resume(
    run: PathBuf,
    files: Option<PlanFiles>,
    interaction: Interaction,
) -> Result<ExitCode, PlanxError> {
    let (run_dir, record) = RunDir::open(&run)?;
    if let Some(files) = files {
        let compiled = run::compile(&files.request())?;
        let digest = planx::rundir::digest(&compiled.plan, &compiled.sources);
        if digest == record.plan_sha256 {
            eprintln!(
                "{} compiles to the plan the run started with",
                files.plan.display()
            );
        } else {
            eprintln!(
                "warning: {} compiles to another plan (SHA-256 {digest}) than the run started with ({}); continuing with the plan stored in the run",
                files.plan.display(),
                record.plan_sha256
            );
        }
    }
    let session = Session::open(record).await?;
    execute(session, &run_dir, true, interaction).await
}

/// A run's directory, record and each step's state from its journal.
fn load_run(
    run: &Path,
) -> Result<
    (
        RunDir,
        RunRecord,
        std::collections::BTreeMap<String, planx::journal::StepState>,
    ),
    PlanxError,
> {
    let (run_dir, record) = RunDir::open(run)?;
    let path = run_dir.journal_path();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| PlanxError::input(format!("cannot read {}: {e}", path.display())))?;
    let (events, _) = planx::journal::read(&text)
        .map_err(|e| PlanxError::input(format!("{}: {e}", path.display())))?;
    Ok((run_dir, record, planx::journal::replay(&events)))
}

async fn rollback(run: PathBuf, yes: bool) -> Result<ExitCode, PlanxError> {
    let (run_dir, record, states) = load_run(&run)?;
    eprint!(
        "{}",
        planx::recovery::describe(&planx::recovery::rollback(&record.compiled, &states))
    );
    if !confirm(
        yes,
        "roll back? [y/N] ",
        "pass --yes to roll back without asking",
    )? {
        return Err(PlanxError::failed("not rolled back"));
    }
    let session = Session::open(record).await?;
    run::roll_back(session, &run_dir, &mut |line| eprintln!("{line}")).await?;
    Ok(ExitCode::SUCCESS)
}

fn status(run: &Path, output: Output) -> Result<ExitCode, PlanxError> {
    let (_, record, states) = load_run(run)?;
    let steps = planx::recovery::progress(&record.compiled, &states);
    write_stdout(&view::status(
        &record.run_id,
        &record.compiled.name,
        &steps,
        output,
    ));
    Ok(ExitCode::SUCCESS)
}

async fn unlock(run: PathBuf, yes: bool) -> Result<ExitCode, PlanxError> {
    let (_, record, states) = load_run(&run)?;
    let unfinished: Vec<String> = planx::recovery::progress(&record.compiled, &states)
        .into_iter()
        .filter(|s| {
            !matches!(
                s.state,
                planx::journal::StepState::Succeeded { .. } | planx::journal::StepState::NotStarted
            )
        })
        .map(|s| format!("{} ({})", s.id, view::state_text(&s.state)))
        .collect();
    eprintln!(
        "unlocking {} lets another run start while this one's changes stay as they are{}",
        record.run_id,
        if unfinished.is_empty() {
            String::new()
        } else {
            format!("; left unfinished: {}", unfinished.join(", "))
        }
    );
    if !confirm(yes, "unlock? [y/N] ", "pass --yes to unlock without asking")? {
        return Err(PlanxError::failed("not unlocked"));
    }
    for line in run::unlock(&record).await? {
        eprintln!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
