//! A run of a plan on the real clusters: the run directory (0700; journal, backups, snapshots,
//! the record of what was compiled), secrets resolved from their references, the Lease taken in
//! every cluster, the engine started or resumed, and the summary with the outage window.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use kube::config::Kubeconfig;
use planc::expr::Resolved;
use planc::{CompileRequest, CompiledPlan, FileLoader};
use planc_schema::ActionKind;
use planc_schema::plan::TargetKind;
use planc_schema::saved::{SAVED_PLAN_FORMAT, SavedPlan};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::actions::Live;
use crate::cluster::Cluster;
use crate::engine::{self, Approver, Engine, Options, Outcome, Progress};
use crate::journal::{self, Event, Journal};
use crate::secrets::{self, Secret};

/// What a run was started with; written to `RUN/run.json` so that `resume` compiles the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub plan: PathBuf,
    pub params_files: Vec<PathBuf>,
    pub set: Vec<String>,
    pub kubeconfig: PathBuf,
    pub resolve: Vec<String>,
    /// SHA-256 of the compiled plan's rendering: a resume refuses a plan that changed.
    pub plan_sha256: String,
    pub run_id: String,
    /// The saved plan the run applies, when it was started from one; its copy is
    /// `RUN/saved-plan.json`, and every step that edits an object first checks it for drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_plan: Option<PathBuf>,
}

/// Where a run keeps the saved plan it applies.
pub const SAVED_PLAN_FILE: &str = "saved-plan.json";

/// Whether a file is a saved plan (JSON of `planc.saved-plan/…`) rather than a plan.
pub fn is_saved_plan(path: &Path) -> bool {
    let mut head = [0u8; 256];
    let read = std::fs::File::open(path)
        .and_then(|mut file| std::io::Read::read(&mut file, &mut head))
        .unwrap_or(0);
    let head = String::from_utf8_lossy(&head[..read]);
    head.trim_start().starts_with('{') && head.contains("planc.saved-plan/")
}

/// Read a saved plan, refusing another format or version.
pub fn read_saved_plan(path: &Path) -> Result<SavedPlan, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the saved plan {}: {e}", path.display()))?;
    let saved: SavedPlan = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{} is not a saved plan planx can apply ({e}); make it again with `planx plan`",
            path.display()
        )
    })?;
    if saved.format != SAVED_PLAN_FORMAT {
        return Err(format!(
            "{} is `{}`; this planx applies `{SAVED_PLAN_FORMAT}`",
            path.display(),
            saved.format
        ));
    }
    Ok(saved)
}

/// The run record for applying a saved plan: its plan compiled again from the files it names,
/// refused when that no longer compiles to what was saved.
pub fn record_from_saved(
    path: &Path,
    saved: &SavedPlan,
    kubeconfig: PathBuf,
    resolve: Vec<String>,
) -> Result<(RunRecord, CompiledPlan), String> {
    let mut record = RunRecord {
        plan: PathBuf::from(&saved.request.plan),
        params_files: saved
            .request
            .params_files
            .iter()
            .map(PathBuf::from)
            .collect(),
        set: saved.request.set.clone(),
        kubeconfig,
        resolve,
        plan_sha256: String::new(),
        run_id: String::new(),
        saved_plan: Some(path.to_path_buf()),
    };
    let (plan, digest) = compile(&record).map_err(|diagnostics| {
        format!(
            "the saved plan {} names {}, which does not compile now (run planx from the folder `planx plan` ran in):\n{diagnostics}",
            path.display(),
            record.plan.display()
        )
    })?;
    let saved_digest = planc::render::compiled_digest(&saved.compiled);
    if digest != saved_digest {
        return Err(format!(
            "the saved plan {} is stale: {} and its parameters compile to something else now (SHA-256 {digest}, saved {saved_digest}); make it again with `planx plan` and review its previews",
            path.display(),
            record.plan.display()
        ));
    }
    record.plan_sha256 = digest;
    Ok((record, plan))
}

/// What `planx plan` observed: every object the plan reads or edits, fetched from the live
/// clusters (read-only; an absent object is left out, as the previews expect).
pub async fn observe(
    plan: &CompiledPlan,
    clusters: &HashMap<String, Cluster>,
) -> Result<planc::state::State, String> {
    let mut state = planc::state::State::default();
    for object in planc::preview::objects_needed(plan) {
        let cluster = clusters
            .get(&object.target)
            .ok_or_else(|| format!("no connection to cluster `{}`", object.target))?;
        if let Some(live) = cluster
            .get(&object.kind, &object.name)
            .await
            .map_err(|e| e.to_string())?
        {
            state.objects.insert(object, live);
        }
    }
    Ok(state)
}

/// A saved plan made from the live clusters, and the warnings its compilation gave.
pub struct MadePlan {
    pub plan: CompiledPlan,
    pub saved: SavedPlan,
    pub warnings: String,
}

/// `planx plan`: compile, read every object the plan touches from the live clusters (read-only,
/// no Lease), compute the previews and the saved plan. Errors come rendered, with positions.
pub async fn make_saved_plan(
    request: &CompileRequest,
    kubeconfig: &Path,
) -> Result<MadePlan, String> {
    let mut compilation = planc::compile(request, &FileLoader).map_err(|e| e.to_string())?;
    let render = |diagnostics: &[planc::Diagnostic], sources: &planc::SourceMap| {
        planc::report::render(
            diagnostics,
            sources,
            planc::report::ReportFormat::Human,
            false,
        )
    };
    let Some(plan) = compilation.plan.take() else {
        return Err(render(&compilation.diagnostics, &compilation.sources));
    };
    let clusters = connect(&plan, kubeconfig).await?;
    let state = observe(&plan, &clusters).await?;
    let mut diagnostics = planc::Diagnostics::default();
    let previews = planc::preview::preview(&plan, &state, &mut diagnostics);
    let mut all = compilation.diagnostics.clone();
    all.extend(diagnostics.into_sorted());
    if all.iter().any(|d| d.severity == planc::Severity::Error) {
        return Err(render(&all, &compilation.sources));
    }
    let saved = planc::render::saved_plan(request, &plan, &compilation.sources, &previews);
    Ok(MadePlan {
        warnings: render(&all, &compilation.sources),
        plan,
        saved,
    })
}

/// Every object a saved plan observed that is not as it was now, as drift reports.
pub async fn drift(
    saved: &SavedPlan,
    clusters: &HashMap<String, Cluster>,
) -> Result<Vec<String>, String> {
    let mut reports = Vec::new();
    for expectations in planc::drift::expectations(saved).values() {
        reports.extend(
            crate::actions::drift_reports(expectations, clusters)
                .await
                .map_err(|e| e.message)?,
        );
    }
    Ok(reports)
}

/// Compile a plan as a run records it; the digest of what it compiled to.
pub fn compile(record: &RunRecord) -> Result<(CompiledPlan, String), String> {
    let request = CompileRequest {
        plan: record.plan.clone(),
        params_files: record.params_files.clone(),
        set: record.set.clone(),
    };
    let compilation = planc::compile(&request, &FileLoader).map_err(|e| e.to_string())?;
    match compilation.plan {
        Some(plan) => {
            let digest = plan_digest(&plan, &compilation.sources);
            Ok((plan, digest))
        }
        None => Err(planc::report::render(
            &compilation.diagnostics,
            &compilation.sources,
            planc::report::ReportFormat::Human,
            false,
        )),
    }
}

/// SHA-256 of a compiled plan's JSON rendering, source positions left out.
fn plan_digest(plan: &CompiledPlan, sources: &planc::SourceMap) -> String {
    planc::render::compiled_digest(&planc::render::compiled_plan_json(plan, sources))
}

/// `host=ip:port` (or `host=ip`, port 443) pairs, as curl's `--resolve`.
pub fn parse_resolve(pairs: &[String]) -> Result<Vec<(String, SocketAddr)>, String> {
    pairs
        .iter()
        .map(|pair| {
            let (host, address) = pair
                .split_once('=')
                .ok_or_else(|| format!("--resolve `{pair}`: write host=ip:port"))?;
            let address = if address.contains(':') {
                address.to_string()
            } else {
                format!("{address}:443")
            };
            let socket: SocketAddr = address
                .parse()
                .map_err(|_| format!("--resolve `{pair}`: `{address}` is not ip:port"))?;
            Ok((host.to_string(), socket))
        })
        .collect()
}

/// Create `path` as a directory only its owner may enter.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Resolve every secret parameter of the plan (`env:`, `file:` relative to `base`).
pub fn resolve_secrets(
    plan: &CompiledPlan,
    base: &Path,
) -> Result<HashMap<String, Secret>, String> {
    let mut resolved = HashMap::new();
    let mut references: Vec<(String, String)> = plan
        .params
        .iter()
        .filter_map(|p| match &p.value {
            Resolved::Secret { param, reference } => Some((param.clone(), reference.clone())),
            _ => None,
        })
        .collect();
    for target in plan.targets.values() {
        for value in target.attributes.values() {
            if let Resolved::Secret { param, reference } = value {
                references.push((param.clone(), reference.clone()));
            }
        }
    }
    for (param, reference) in references {
        if resolved.contains_key(&param) {
            continue;
        }
        let secret = if reference == "prompt" {
            secrets::prompt(&param).map_err(|e| e.to_string())?
        } else {
            secrets::resolve(&reference, base).map_err(|e| format!("secret `{param}`: {e}"))?
        };
        resolved.insert(param, secret);
    }
    Ok(resolved)
}

/// Clients for every kubernetes target of the plan.
pub async fn connect(
    plan: &CompiledPlan,
    kubeconfig: &Path,
) -> Result<HashMap<String, Cluster>, String> {
    let config = Kubeconfig::read_from(kubeconfig)
        .map_err(|e| format!("cannot read the kubeconfig {}: {e}", kubeconfig.display()))?;
    let mut clusters = HashMap::new();
    for target in plan
        .targets
        .values()
        .filter(|t| t.kind == TargetKind::Kubernetes)
    {
        let context = target.attribute("context").unwrap_or_default();
        let namespace = target.attribute("namespace").unwrap_or("default");
        let cluster = Cluster::connect(&config, context, namespace)
            .await
            .map_err(|e| e.to_string())?;
        clusters.insert(target.id.clone(), cluster);
    }
    Ok(clusters)
}

/// What every command on a run starts from.
struct Prepared {
    plan: CompiledPlan,
    digest: String,
    clusters: HashMap<String, Cluster>,
    live: Live,
}

/// Compile the plan the run recorded (refusing one that changed), resolve its secrets, connect
/// to its clusters and take the Lease in each.
async fn prepare(record: &RunRecord, run_dir: &Path) -> Result<Prepared, String> {
    let (plan, digest) = compile(record)?;
    if digest != record.plan_sha256 {
        return Err(format!(
            "the plan changed since the run started (compiled plan SHA-256 {digest}, the run recorded {}); refusing to continue it: finish or roll back with the plan it started with",
            record.plan_sha256
        ));
    }
    let base = std::env::current_dir().map_err(|e| e.to_string())?;
    let secrets = resolve_secrets(&plan, &base)?;
    let resolve = parse_resolve(&record.resolve)?;
    let clusters = connect(&plan, &record.kubeconfig).await?;
    for cluster in clusters.values() {
        cluster
            .acquire_lease(&record.run_id, Duration::from_secs(3600))
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut live = Live::new(
        plan.clone(),
        clusters.clone(),
        secrets,
        run_dir.to_path_buf(),
        resolve,
    );
    if record.saved_plan.is_some() {
        let saved = read_saved_plan(&run_dir.join(SAVED_PLAN_FILE))?;
        live.expect(planc::drift::expectations(&saved));
    }
    Ok(Prepared {
        plan,
        digest,
        clusters,
        live,
    })
}

/// How a run went, for the closing summary.
#[derive(Debug, Clone)]
pub struct Summary {
    pub outcome: Outcome,
    pub total: Duration,
    /// From the step that blocked writes to the last verification that succeeded.
    pub outage: Option<Duration>,
    /// How much of the outage planx spent waiting on the servers (pod restarts, elections,
    /// seal changes); the rest is what the executor adds.
    pub outage_waits: Option<Duration>,
    pub run_dir: PathBuf,
}

/// Start a new run or resume one: `record` says what to compile, `run_dir` holds everything.
pub async fn execute(
    record: &RunRecord,
    run_dir: &Path,
    resume: bool,
    approver: Arc<dyn Approver>,
    progress: impl Fn(Progress) + Send + Sync + 'static,
    stop: watch::Receiver<bool>,
) -> Result<Summary, String> {
    let started = Instant::now();
    let Prepared {
        plan,
        digest,
        clusters,
        live,
    } = prepare(record, run_dir).await?;
    let journal_path = run_dir.join("journal.jsonl");
    let (journal, states) = if resume {
        let (journal, events) = Journal::reopen(&journal_path).map_err(|e| e.to_string())?;
        (journal, journal::replay(&events))
    } else {
        let mut journal = Journal::create(&journal_path).map_err(|e| e.to_string())?;
        journal
            .append(Event::RunStarted {
                plan: plan.name.clone(),
                plan_sha256: digest,
            })
            .map_err(|e| e.to_string())?;
        (journal, BTreeMap::new())
    };
    let progress: Arc<dyn Fn(Progress) + Send + Sync> = Arc::new(progress);
    let mut live = live;
    live.report_to(progress.clone());
    let live = Arc::new(live);
    let engine = Engine {
        actions: live.clone(),
        approver,
        options: Options::default(),
    };
    let window = Arc::new(std::sync::Mutex::new(OutageWindow::default()));
    let blocking: Vec<String> = writes_blocking_steps(&plan);
    let verifying: Vec<String> = plan
        .steps
        .iter()
        .filter(|s| s.action == ActionKind::Verify)
        .map(|s| s.id.clone())
        .collect();
    let tracker = window.clone();
    let outcome = engine::run(
        engine,
        plan,
        states,
        journal,
        move |event| {
            tracker
                .lock()
                .expect("window")
                .see(&event, &blocking, &verifying);
            progress(event);
        },
        stop,
    )
    .await
    .map_err(|e| e.to_string())?;
    if matches!(outcome, Outcome::Completed) {
        for cluster in clusters.values() {
            let _ = cluster.release_lease(&record.run_id).await;
        }
    }
    let window = window.lock().expect("window");
    let outage = window.length();
    let outage_waits = window
        .span()
        .map(|(from, to)| live.waited_between(from, to));
    Ok(Summary {
        outcome,
        total: started.elapsed(),
        outage,
        outage_waits,
        run_dir: run_dir.to_path_buf(),
    })
}

/// Steps after which clients can no longer write: an Ingress deleted, a StatefulSet stopped.
fn writes_blocking_steps(plan: &CompiledPlan) -> Vec<String> {
    plan.steps
        .iter()
        .filter(|s| {
            (s.action == ActionKind::Delete
                && s.with.get("kind").and_then(Resolved::as_str) == Some("Ingress"))
                || s.action == ActionKind::PatchArgs
        })
        .map(|s| s.id.clone())
        .collect()
}

/// The outage window: from the first step that blocks writes starting, to the last
/// verification through the domains succeeding.
#[derive(Debug, Default)]
struct OutageWindow {
    blocked: Option<Instant>,
    verified: Option<Instant>,
}

impl OutageWindow {
    fn see(&mut self, event: &Progress, blocking: &[String], verifying: &[String]) {
        match event {
            Progress::Started { key, .. } if self.blocked.is_none() && blocking.contains(key) => {
                self.blocked = Some(Instant::now());
            }
            Progress::Succeeded { key, .. } if verifying.contains(key) => {
                self.verified = Some(Instant::now());
            }
            _ => {}
        }
    }

    fn length(&self) -> Option<Duration> {
        self.span().map(|(from, to)| to.duration_since(from))
    }

    fn span(&self) -> Option<(Instant, Instant)> {
        Some((self.blocked?, self.verified?))
    }
}

/// A run id: the plan's name and the start time.
pub fn run_id(plan: &str) -> String {
    let stamp = crate::cluster::rfc3339_micros(SystemTime::now());
    let compact: String = stamp
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .take(15)
        .collect();
    format!("{plan}-{compact}")
}

/// Roll a run back: undo, in reverse order, every step that ran and can be undone (objects put
/// back as recorded before the step; the pods of a restored StatefulSet restarted), and say what
/// cannot be undone. Returns what was done, line by line.
pub async fn roll_back(record: &RunRecord, run_dir: &Path) -> Result<Vec<String>, String> {
    let Prepared {
        plan,
        clusters,
        live,
        ..
    } = prepare(record, run_dir).await?;
    let (mut journal, events) =
        Journal::reopen(&run_dir.join("journal.jsonl")).map_err(|e| e.to_string())?;
    let states = journal::replay(&events);
    let rollback = crate::recovery::rollback(&plan, &states);
    let mut done = Vec::new();
    for (step_id, action) in &rollback.actions {
        let step = plan
            .steps
            .iter()
            .find(|s| &s.id == step_id)
            .expect("rollback names plan steps");
        let undo = match action {
            crate::recovery::RollbackAction::CannotUndo(why) => {
                done.push(format!("{step_id}: cannot be undone: {why}"));
                continue;
            }
            crate::recovery::RollbackAction::Undo(undo)
            | crate::recovery::RollbackAction::ObserveThenUndo(undo) => *undo,
        };
        journal
            .append(Event::UndoStarted {
                step: step_id.clone(),
            })
            .map_err(|e| e.to_string())?;
        match undo {
            planc::catalog::Undo::RestoreRecorded => {
                let keys: Vec<&String> = states
                    .keys()
                    .filter(|k| *k == step_id || k.starts_with(&format!("{step_id}[")))
                    .collect();
                for key in keys {
                    let lines = live
                        .undo(key)
                        .await
                        .map_err(|e| format!("{step_id}: {}", e.message))?;
                    done.extend(lines.into_iter().map(|l| format!("{step_id}: {l}")));
                }
                if step.action == ActionKind::PatchArgs
                    && let Some(name) = step.with.get("statefulset").and_then(Resolved::as_str)
                {
                    let lines = live
                        .restart_vaults_of(&step.on, name)
                        .await
                        .map_err(|e| format!("{step_id}: {}", e.message))?;
                    done.extend(lines.into_iter().map(|l| format!("{step_id}: {l}")));
                }
            }
            planc::catalog::Undo::Action(action) => {
                let accessor = match states.get(step_id) {
                    Some(journal::StepState::Succeeded { outputs }) => {
                        outputs.get("accessor").and_then(|a| a.as_str())
                    }
                    _ => None,
                };
                let line = match accessor {
                    Some(accessor) => live
                        .revoke_created_token(step, accessor)
                        .await
                        .unwrap_or_else(|e| {
                            format!(
                                "{action} failed ({}); revoke accessor {accessor} by hand",
                                e.message
                            )
                        }),
                    None => format!("{action}: no accessor journaled, nothing to revoke"),
                };
                done.push(format!("{step_id}: {line}"));
            }
            planc::catalog::Undo::NotNeeded | planc::catalog::Undo::None(_) => {}
        }
        journal
            .append(Event::UndoFinished {
                step: step_id.clone(),
            })
            .map_err(|e| e.to_string())?;
    }
    if !rollback.past_no_return.is_empty() {
        done.push(format!(
            "past the point of no return ({}): the source is back; what happened to the target stays",
            rollback.past_no_return.join(", ")
        ));
    }
    journal
        .append(Event::RunFinished {
            outcome: "rolled back".into(),
        })
        .map_err(|e| e.to_string())?;
    for cluster in clusters.values() {
        let _ = cluster.release_lease(&record.run_id).await;
    }
    Ok(done)
}
