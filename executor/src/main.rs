//! The `planx` command: arguments in, one library call, progress and a summary out.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use planc::report::{self, ReportFormat};
use planc::{CompileRequest, FileLoader};
use planx::engine::{Approver, BoxFuture, Outcome, Preapproved, Progress};
use planx::run::{self, RunRecord};

const EXAMPLES: &str = "\
Examples:
  planx explain plans/vault-aks-migration.yaml --params prod.params.yaml
  planx plan plans/vault-aks-migration.yaml --params prod.params.yaml -o saved-plan.json
  planx apply saved-plan.json --approve-all
  planx apply plans/vault-transit-migration.yaml --params $PARAMS_FILE --resolve vault.new.test=127.0.0.1:8443 --approve-all --yes
  planx status runs/vault-transit-migration-20261129T1230
  planx resume runs/vault-transit-migration-20261129T1230
  planx rollback runs/vault-transit-migration-20261129T1230 --yes";

/// Apply a compiled plan against the real Kubernetes and Vault APIs, journaling every step, so
/// that a run can be resumed after a crash and rolled back.
///
/// Secrets come from the references the plan carries (env:NAME, file:PATH), never from argv.
#[derive(Parser)]
#[command(name = "planx", version, after_help = EXAMPLES, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Show the run order, what each step changes, its undo, and the points of no return.
    Explain {
        plan: PathBuf,
        #[arg(long = "params", value_name = "FILE")]
        params: Vec<PathBuf>,
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
    /// Read the live clusters (read-only, no Lease), print what every step will change, and
    /// write a saved plan: the compiled plan, its previews and a digest of every object observed.
    ///
    /// `planx apply SAVED` then refuses to start when the plan files compile to something else,
    /// or when an observed object moved (it prints the drift), and checks each object again
    /// just before the first step that edits it. Secrets are redacted in the previews and never
    /// written to the saved plan; their references (env:, file:) are.
    Plan {
        plan: PathBuf,
        #[arg(long = "params", value_name = "FILE")]
        params: Vec<PathBuf>,
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// The kubeconfig with the plan's contexts (default: $KUBECONFIG, then ~/.kube/config).
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<PathBuf>,
        /// Where to write the saved plan.
        #[arg(short, long, value_name = "FILE", default_value = "saved-plan.json")]
        out: PathBuf,
    },
    /// Run a plan, or a saved plan from `planx plan`: take the Lease in every cluster, run every
    /// step, journal it. A saved plan is refused when it is stale or the clusters drifted.
    Apply {
        /// A plan (YAML) or a saved plan (JSON written by `planx plan`; run planx from the folder
        /// it was made in, since it names the plan and parameter files by their paths).
        plan: PathBuf,
        #[arg(long = "params", value_name = "FILE")]
        params: Vec<PathBuf>,
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
    Resume {
        run: PathBuf,
        #[command(flatten)]
        interaction: Interaction,
    },
    /// Undo what a run did, in reverse order, and say what cannot be undone.
    Rollback {
        run: PathBuf,
        #[arg(long)]
        yes: bool,
    },
    /// Show the state of every step of a run, from its journal.
    Status { run: PathBuf },
}

struct TerminalApprover {
    preapproved: Preapproved,
}

impl Approver for TerminalApprover {
    fn approve<'a>(&'a self, step: &'a str, message: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            if self.preapproved.all || self.preapproved.steps.iter().any(|s| s == step) {
                return true;
            }
            if !std::io::stdin().is_terminal() {
                eprintln!(
                    "gate `{step}`: {message} (not approved: pass --approve {step} or --approve-all)"
                );
                return false;
            }
            let question = format!("gate `{step}`: {message}\napprove? [y/N] ");
            tokio::task::spawn_blocking(move || ask(&question))
                .await
                .unwrap_or(false)
        })
    }
}

fn ask(question: &str) -> bool {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok() && matches!(answer.trim(), "y" | "Y" | "yes")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start: {error}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Explain { plan, params, set } => explain(plan, params, set),
        Command::Plan {
            plan,
            params,
            set,
            kubeconfig,
            out,
        } => runtime.block_on(make_plan(
            CompileRequest {
                plan,
                params_files: params,
                set,
            },
            default_kubeconfig(kubeconfig),
            out,
        )),
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
            plan,
            params,
            set,
            resolve,
            kubeconfig,
            runs_dir,
            yes,
            interaction,
        )),
        Command::Resume { run, interaction } => runtime.block_on(resume(run, interaction)),
        Command::Rollback { run, yes } => runtime.block_on(rollback(run, yes)),
        Command::Status { run } => status(&run),
    }
}

fn explain(plan: PathBuf, params_files: Vec<PathBuf>, set: Vec<String>) -> ExitCode {
    let request = CompileRequest {
        plan,
        params_files,
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
            let mut stdout = std::io::stdout().lock();
            let _ = stdout
                .write_all(planx::explain(plan).as_bytes())
                .and_then(|()| stdout.flush());
            ExitCode::SUCCESS
        }
        None => ExitCode::from(1),
    }
}

#[allow(clippy::too_many_arguments)]
async fn apply(
    plan: PathBuf,
    params_files: Vec<PathBuf>,
    set: Vec<String>,
    resolve: Vec<String>,
    kubeconfig: Option<PathBuf>,
    runs_dir: PathBuf,
    yes: bool,
    interaction: Interaction,
) -> ExitCode {
    let kubeconfig = default_kubeconfig(kubeconfig);
    let from_saved = run::is_saved_plan(&plan);
    let prepared = if from_saved {
        if !params_files.is_empty() || !set.is_empty() {
            eprintln!(
                "error: {} is a saved plan; it carries its parameters, so --params and --set do not apply (make a new one with `planx plan`)",
                plan.display()
            );
            return ExitCode::from(2);
        }
        run::read_saved_plan(&plan).and_then(|saved| {
            let (record, compiled) = run::record_from_saved(&plan, &saved, kubeconfig, resolve)?;
            Ok((record, compiled, Some(saved)))
        })
    } else {
        let record = RunRecord {
            plan: plan.clone(),
            params_files,
            set,
            kubeconfig,
            resolve,
            plan_sha256: String::new(),
            run_id: String::new(),
            saved_plan: None,
        };
        run::compile(&record).map(|(compiled, digest)| {
            let record = RunRecord {
                plan_sha256: digest,
                ..record
            };
            (record, compiled, None)
        })
    };
    let (mut record, compiled, saved) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            eprint!("{}", error.trim_end());
            eprintln!();
            return ExitCode::from(1);
        }
    };
    if let Err(error) = run::parse_resolve(&record.resolve) {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    record.run_id = run::run_id(&compiled.name);
    print!("{}", planx::explain(&compiled));
    if let Some(saved) = &saved {
        match drift_before_start(&compiled, saved, &record.kubeconfig).await {
            Ok(observed) => eprintln!(
                "the {observed} objects the saved plan observed are as they were; each is checked again before the step that edits it"
            ),
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(1);
            }
        }
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            eprintln!(
                "error: planx asks before it changes anything; pass --yes to apply without asking"
            );
            return ExitCode::from(2);
        }
        if !ask(&format!(
            "apply {} steps of `{}`? [y/N] ",
            compiled.steps.len(),
            compiled.name
        )) {
            eprintln!("not applied");
            return ExitCode::from(1);
        }
    }
    let run_dir = runs_dir.join(&record.run_id);
    if let Err(error) =
        run::create_private_dir(&runs_dir).and_then(|()| run::create_private_dir(&run_dir))
    {
        eprintln!(
            "error: cannot create the run directory {}: {error}",
            run_dir.display()
        );
        return ExitCode::from(2);
    }
    if let Err(error) =
        write_record(&run_dir, &record).and_then(|()| keep_saved_plan(saved.as_ref(), &run_dir))
    {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    eprintln!("run directory: {}", run_dir.display());
    execute(&record, &run_dir, false, interaction).await
}

fn default_kubeconfig(kubeconfig: Option<PathBuf>) -> PathBuf {
    kubeconfig
        .or_else(|| std::env::var_os("KUBECONFIG").map(PathBuf::from))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config")))
        .unwrap_or_else(|| PathBuf::from(".kube/config"))
}

async fn make_plan(request: CompileRequest, kubeconfig: PathBuf, out: PathBuf) -> ExitCode {
    let made = match run::make_saved_plan(&request, &kubeconfig).await {
        Ok(made) => made,
        Err(error) => {
            eprint!("{}", error.trim_end());
            eprintln!();
            return ExitCode::from(1);
        }
    };
    eprint!("{}", made.warnings);
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(planc::diff_view::text(&made.plan, &made.saved.previews, colour).as_bytes())
        .and_then(|()| stdout.flush());
    let mut text = serde_json::to_string_pretty(&made.saved).expect("saved plan serialises");
    text.push('\n');
    if let Err(error) = std::fs::write(&out, text) {
        eprintln!("error: cannot write {}: {error}", out.display());
        return ExitCode::from(2);
    }
    eprintln!(
        "saved plan: {} ({} objects observed); apply it with `planx apply {}`",
        out.display(),
        made.saved.observed.len(),
        out.display()
    );
    ExitCode::SUCCESS
}

/// Before a saved plan starts: every object it observed is as it was. Returns how many.
async fn drift_before_start(
    plan: &planc::CompiledPlan,
    saved: &planc_schema::saved::SavedPlan,
    kubeconfig: &Path,
) -> Result<usize, String> {
    let clusters = run::connect(plan, kubeconfig).await?;
    let reports = run::drift(saved, &clusters).await?;
    if reports.is_empty() {
        return Ok(saved.observed.len());
    }
    Err(format!(
        "the clusters moved since the plan was saved; nothing was changed:\n{}\nmake the plan again with `planx plan` and review its previews",
        reports.join("\n").trim_end()
    ))
}

/// The saved plan as it was checked, kept in the run so that a resume checks the same.
fn keep_saved_plan(
    saved: Option<&planc_schema::saved::SavedPlan>,
    run_dir: &Path,
) -> Result<(), String> {
    let Some(saved) = saved else {
        return Ok(());
    };
    let text = serde_json::to_vec_pretty(saved).map_err(|e| e.to_string())?;
    write_private(&run_dir.join(run::SAVED_PLAN_FILE), &text)
}

fn write_record(run_dir: &Path, record: &RunRecord) -> Result<(), String> {
    let text = serde_json::to_string_pretty(record).map_err(|e| e.to_string())?;
    write_private(&run_dir.join("run.json"), text.as_bytes())
}

/// Write a new file only its owner may read.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut file| file.write_all(bytes))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn read_record(run_dir: &Path) -> Result<RunRecord, String> {
    let path = run_dir.join("run.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{} is not a run directory ({}: {e})",
            run_dir.display(),
            path.display()
        )
    })?;
    serde_json::from_str(&text).map_err(|e| format!("{} is damaged: {e}", path.display()))
}

async fn execute(
    record: &RunRecord,
    run_dir: &Path,
    resume: bool,
    interaction: Interaction,
) -> ExitCode {
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
    let json = interaction.output == Output::Json;
    let started = Instant::now();
    let progress = move |event: Progress| print_progress(&event, json, started);
    let summary = match run::execute(record, run_dir, resume, approver, progress, stop).await {
        Ok(summary) => summary,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(1);
        }
    };
    let outcome = match &summary.outcome {
        Outcome::Completed => "completed".to_string(),
        Outcome::Failed { step, error } => format!("failed at `{step}`: {error}"),
        Outcome::NotApproved { step } => format!("stopped at gate `{step}`, not approved"),
        Outcome::Interrupted => "interrupted".to_string(),
    };
    let outage = match (summary.outage, summary.outage_waits) {
        (Some(outage), Some(waits)) => format!(
            "{:.1}s, of which {:.1}s waiting on the servers (restarts, elections, seal changes) and {:.1}s by planx",
            outage.as_secs_f64(),
            waits.as_secs_f64(),
            outage.saturating_sub(waits).as_secs_f64()
        ),
        _ => "n/a (writes were not blocked and verified in this run)".into(),
    };
    if json {
        println!(
            "{}",
            serde_json::json!({"event": "summary", "outcome": outcome, "total_secs": summary.total.as_secs_f64(), "outage_secs": summary.outage.map(|d| d.as_secs_f64()), "outage_waits_secs": summary.outage_waits.map(|d| d.as_secs_f64()), "run": summary.run_dir})
        );
    } else {
        eprintln!(
            "\n{outcome}\ntotal {:.1}s, outage window {outage}\nrun: {} (planx status / resume / rollback)",
            summary.total.as_secs_f64(),
            summary.run_dir.display()
        );
    }
    match summary.outcome {
        Outcome::Completed => ExitCode::SUCCESS,
        Outcome::Interrupted => ExitCode::from(130),
        _ => ExitCode::from(1),
    }
}

fn print_progress(event: &Progress, json: bool, started: Instant) {
    let at = started.elapsed().as_secs_f64();
    let (kind, key, detail) = match event {
        Progress::Started { key, attempt } => ("started", key, format!("attempt {attempt}")),
        Progress::Retrying {
            key,
            attempt,
            error,
        } => ("retrying", key, format!("attempt {attempt}: {error}")),
        Progress::Skipped { key } => ("skipped", key, "done before".to_string()),
        Progress::Succeeded { key, elapsed } => {
            ("ok", key, format!("{:.1}s", elapsed.as_secs_f64()))
        }
        Progress::Failed { key, error } => ("failed", key, error.clone()),
        Progress::WaitingForApproval { key, message } => ("gate", key, message.clone()),
        Progress::Activity {
            what,
            unit,
            done,
            total,
        } => {
            print_activity(what, *unit, *done, *total, json, at);
            return;
        }
    };
    if json {
        println!(
            "{}",
            serde_json::json!({"event": kind, "step": key, "detail": detail, "t": at})
        );
    } else {
        // On a terminal, the activity line is overwritten by the next step line.
        let clear = if std::io::stderr().is_terminal() {
            "\r\x1b[2K"
        } else {
            ""
        };
        eprintln!("{clear}[{at:>7.1}s] {kind:<9} {key}  {detail}");
    }
}

/// An activity inside a step: a JSON event, or on a terminal one line redrawn in place with a
/// bar when the total is known (a snapshot's size, a wait's timeout). Plain logs skip it.
fn print_activity(
    what: &str,
    unit: planx::engine::ActivityUnit,
    done: u64,
    total: Option<u64>,
    json: bool,
    at: f64,
) {
    let amount = |n: u64| match unit {
        planx::engine::ActivityUnit::Bytes => format!("{:.1} MB", n as f64 / 1e6),
        planx::engine::ActivityUnit::Seconds => format!("{n}s"),
    };
    if json {
        println!(
            "{}",
            serde_json::json!({"event": "activity", "detail": what, "done": done, "total": total, "unit": match unit {
                planx::engine::ActivityUnit::Bytes => "bytes",
                planx::engine::ActivityUnit::Seconds => "seconds",
            }, "t": at})
        );
        return;
    }
    if !std::io::stderr().is_terminal() {
        return;
    }
    let progress = match total.filter(|t| *t > 0) {
        Some(total) => {
            let filled = ((done.min(total) * 20) / total) as usize;
            format!(
                "[{}{}] {} of {}",
                "#".repeat(filled),
                "-".repeat(20 - filled),
                amount(done),
                amount(total)
            )
        }
        None => amount(done),
    };
    eprint!("\r\x1b[2K[{at:>7.1}s] {:<9} {what}  {progress}", "working");
    let _ = std::io::stderr().flush();
}

async fn resume(run_dir: PathBuf, interaction: Interaction) -> ExitCode {
    let record = match read_record(&run_dir) {
        Ok(record) => record,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    execute(&record, &run_dir, true, interaction).await
}

async fn rollback(run_dir: PathBuf, yes: bool) -> ExitCode {
    let (record, plan, states) = match load_run(&run_dir) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    eprint!(
        "{}",
        planx::recovery::describe(&planx::recovery::rollback(&plan, &states))
    );
    let confirmed = yes || (std::io::stdin().is_terminal() && ask("roll back? [y/N] "));
    if !confirmed {
        eprintln!("not rolled back (pass --yes to roll back without asking)");
        return ExitCode::from(1);
    }
    match run::roll_back(&record, &run_dir).await {
        Ok(lines) => {
            for line in lines {
                eprintln!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(1)
        }
    }
}

/// A run's record, its plan compiled again and each step's state from the journal; on failure
/// the message is printed and the exit code returned.
fn load_run(
    run_dir: &Path,
) -> Result<
    (
        RunRecord,
        planc::CompiledPlan,
        std::collections::BTreeMap<String, planx::journal::StepState>,
    ),
    ExitCode,
> {
    let record = read_record(run_dir).map_err(|error| {
        eprintln!("error: {error}");
        ExitCode::from(2)
    })?;
    let (plan, _) = run::compile(&record).map_err(|diagnostics| {
        eprint!("{diagnostics}");
        ExitCode::from(1)
    })?;
    let states = read_states(run_dir).map_err(|error| {
        eprintln!("error: {error}");
        ExitCode::from(1)
    })?;
    Ok((record, plan, states))
}

fn read_states(
    run_dir: &Path,
) -> Result<std::collections::BTreeMap<String, planx::journal::StepState>, String> {
    let path = run_dir.join("journal.jsonl");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (events, _) = planx::journal::read(&text).map_err(|e| e.to_string())?;
    Ok(planx::journal::replay(&events))
}

fn status(run_dir: &Path) -> ExitCode {
    let (record, plan, states) = match load_run(run_dir) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let mut out = format!("run {} of {}\n", record.run_id, plan.name);
    for &index in &plan.graph.order {
        let id = &plan.steps[index].id;
        let state = match states.get(id) {
            None => "not started".to_string(),
            Some(planx::journal::StepState::Succeeded { .. }) => "succeeded".to_string(),
            Some(planx::journal::StepState::InDoubt { effect }) => format!("in doubt: {effect}"),
            Some(planx::journal::StepState::Failed { error }) => format!("failed: {error}"),
            Some(other) => format!("{other:?}").to_lowercase(),
        };
        out.push_str(&format!("  {id:<40} {state}\n"));
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());
    ExitCode::SUCCESS
}
