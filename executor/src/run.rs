//! A run of a plan on the real clusters: the plan compiled for a new run (or read back from its
//! run directory), secrets resolved from their references, the Lease taken and renewed in every
//! cluster, the engine started or resumed, the summary with the outage window, the rollback and
//! the unlock.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use kube::config::Kubeconfig;
use planc::{CompileRequest, CompiledPlan, FileLoader};
use planc_schema::ActionKind;
use planc_schema::saved::{SAVED_PLAN_FORMAT, SavedPlan};
use tokio::sync::watch;

use crate::actions::Live;
use crate::adapters::cluster::Cluster;
use crate::engine::{self, Approver, Engine, Options, Outcome, Progress};
use crate::error::PlanxError;
use crate::journal::{self, Event, Journal};
pub use crate::rundir::{RunDir, RunRecord};
use crate::secrets::{self, Secret};

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
pub fn read_saved_plan(path: &Path) -> Result<SavedPlan, PlanxError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        PlanxError::input(format!(
            "cannot read the saved plan {}: {e}",
            path.display()
        ))
    })?;
    let saved: SavedPlan = serde_json::from_str(&text).map_err(|e| {
        PlanxError::input(format!(
            "{} is not a saved plan planx can apply ({e}); make it again with `planx plan`",
            path.display()
        ))
    })?;
    if saved.format != SAVED_PLAN_FORMAT {
        return Err(PlanxError::input(format!(
            "{} is `{}`; this planx applies `{SAVED_PLAN_FORMAT}`",
            path.display(),
            saved.format
        )));
    }
    Ok(saved)
}

/// A plan compiled from its files, with the files it read.
pub struct Compiled {
    pub request: CompileRequest,
    pub plan: CompiledPlan,
    pub sources: planc::SourceMap,
}

/// Compile the plan files of `request`; errors come rendered, with positions.
pub fn compile(request: &CompileRequest) -> Result<Compiled, PlanxError> {
    let compilation =
        planc::compile(request, &FileLoader).map_err(|e| PlanxError::input(e.to_string()))?;
    match compilation.plan {
        Some(plan) => Ok(Compiled {
            request: request.clone(),
            plan,
            sources: compilation.sources,
        }),
        None => Err(PlanxError::failed(
            planc::report::render(
                &compilation.diagnostics,
                &compilation.sources,
                planc::report::ReportFormat::Human,
                &planc::report::Options::default(),
            )
            .trim_end()
            .to_string(),
        )),
    }
}

/// The plan of a saved plan, compiled again from the files it names and refused (exit 3) when
/// that no longer compiles to what was saved.
pub fn compile_saved(path: &Path, saved: &SavedPlan) -> Result<Compiled, PlanxError> {
    let request = CompileRequest {
        plan: PathBuf::from(&saved.request.plan),
        params_files: saved
            .request
            .params_files
            .iter()
            .map(PathBuf::from)
            .collect(),
        set: saved.request.set.clone(),
    };
    let compiled = compile(&request).map_err(|error| {
        PlanxError::refused(format!(
            "the saved plan {} names {}, which does not compile now (run planx from the folder `planx plan` ran in):\n{error}",
            path.display(),
            request.plan.display()
        ))
    })?;
    let digest = crate::rundir::digest(&compiled.plan, &compiled.sources);
    let saved_digest = planc::render::compiled_digest(&saved.compiled);
    if digest != saved_digest {
        return Err(PlanxError::refused(format!(
            "the saved plan {} is stale: {} and its parameters compile to something else now (SHA-256 {digest}, saved {saved_digest}); make it again with `planx plan` and review its previews",
            path.display(),
            request.plan.display()
        )));
    }
    Ok(compiled)
}

/// What `planx plan` observed: every object the plan reads or edits, fetched from the live
/// clusters (read-only; an absent object is left out, as the previews expect).
pub async fn observe(
    plan: &CompiledPlan,
    clusters: &HashMap<String, Cluster>,
) -> Result<planc::state::State, PlanxError> {
    let mut state = planc::state::State::default();
    for object in planc::preview::objects_needed(plan) {
        let cluster = clusters.get(&object.target).ok_or_else(|| {
            PlanxError::failed(format!("no connection to cluster `{}`", object.target))
        })?;
        if let Some(live) = cluster
            .get(&object.kind, &object.name)
            .await
            .map_err(|e| PlanxError::failed(e.to_string()))?
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
) -> Result<MadePlan, PlanxError> {
    let mut compilation =
        planc::compile(request, &FileLoader).map_err(|e| PlanxError::input(e.to_string()))?;
    let render = |diagnostics: &[planc::Diagnostic], sources: &planc::SourceMap| {
        planc::report::render(
            diagnostics,
            sources,
            planc::report::ReportFormat::Human,
            &planc::report::Options::default(),
        )
    };
    let Some(plan) = compilation.plan.take() else {
        return Err(PlanxError::failed(render(
            &compilation.diagnostics,
            &compilation.sources,
        )));
    };
    let clusters = connect(&plan, kubeconfig).await?;
    let state = observe(&plan, &clusters).await?;
    let mut diagnostics = planc::Diagnostics::default();
    let previews = planc::preview::preview(&plan, &state, &mut diagnostics);
    let mut all = compilation.diagnostics.clone();
    all.extend(diagnostics.into_sorted());
    if all.iter().any(|d| d.severity == planc::Severity::Error) {
        return Err(PlanxError::failed(render(&all, &compilation.sources)));
    }
    let saved = planc::render::saved_plan(request, &plan, &compilation.sources, &previews);
    Ok(MadePlan {
        warnings: render(&all, &compilation.sources),
        plan,
        saved,
    })
}

/// `host=ip:port` (or `host=ip`, port 443) pairs, as curl's `--resolve`.
pub fn parse_resolve(pairs: &[String]) -> Result<Vec<(String, SocketAddr)>, PlanxError> {
    pairs
        .iter()
        .map(|pair| {
            let (host, address) = pair.split_once('=').ok_or_else(|| {
                PlanxError::input(format!("--resolve `{pair}`: write host=ip:port"))
            })?;
            let address = if address.contains(':') {
                address.to_string()
            } else {
                format!("{address}:443")
            };
            let socket: SocketAddr = address.parse().map_err(|_| {
                PlanxError::input(format!("--resolve `{pair}`: `{address}` is not ip:port"))
            })?;
            Ok((host.to_string(), socket))
        })
        .collect()
}

/// Resolve every secret parameter of a run from its reference (`env:`, `file:` relative to the
/// folder the run started in, `prompt`).
pub fn resolve_secrets(record: &RunRecord) -> Result<HashMap<String, Secret>, PlanxError> {
    let mut resolved = HashMap::new();
    for (param, reference) in &record.secret_references {
        if reference == planc::params::NO_SECRET {
            continue;
        }
        let secret = if reference == "prompt" {
            secrets::prompt(param).map_err(|e| PlanxError::input(e.to_string()))?
        } else {
            secrets::resolve(reference, &record.started_in)
                .map_err(|e| PlanxError::input(format!("secret `{param}`: {e}")))?
        };
        resolved.insert(param.clone(), secret);
    }
    Ok(resolved)
}

/// Clients for every kubernetes target of the plan.
pub async fn connect(
    plan: &CompiledPlan,
    kubeconfig: &Path,
) -> Result<HashMap<String, Cluster>, PlanxError> {
    let config = Kubeconfig::read_from(kubeconfig).map_err(|e| {
        PlanxError::input(format!(
            "cannot read the kubeconfig {}: {e}",
            kubeconfig.display()
        ))
    })?;
    let mut clusters = HashMap::new();
    for target in plan.targets.values().filter_map(|t| t.kubernetes()) {
        let cluster = Cluster::connect(&config, target.context, target.namespace)
            .await
            .map_err(|e| PlanxError::input(e.to_string()))?;
        clusters.insert(target.id.to_string(), cluster);
    }
    Ok(clusters)
}

/// A run with everything it reads resolved: its record, secrets, clusters and host pins.
/// Opening one writes nothing and takes no Lease.
pub struct Session {
    pub record: RunRecord,
    secrets: HashMap<String, Secret>,
    clusters: HashMap<String, Cluster>,
    resolve: Vec<(String, SocketAddr)>,
    lease: Duration,
}

impl Session {
    /// Read every input of a run: the host pins, the secrets (a `prompt` asks now), the
    /// kubeconfig and a client per cluster.
    pub async fn open(record: RunRecord) -> Result<Session, PlanxError> {
        let resolve = parse_resolve(&record.resolve)?;
        let secrets = resolve_secrets(&record)?;
        let clusters = connect(&record.compiled, &record.kubeconfig).await?;
        Ok(Session {
            record,
            secrets,
            clusters,
            resolve,
            lease: lease_duration(),
        })
    }

    /// The same session with Leases of `duration` (renewed every third of it).
    pub fn with_lease_duration(self, duration: Duration) -> Session {
        Session {
            lease: duration,
            ..self
        }
    }

    pub fn plan(&self) -> &CompiledPlan {
        &self.record.compiled
    }

    /// Before a saved plan starts: refuse (exit 3, nothing changed) when an object it observed
    /// is not as it was; otherwise how many objects were checked.
    pub async fn check_drift(&self, saved: &SavedPlan) -> Result<usize, PlanxError> {
        let mut reports = Vec::new();
        for expectations in planc::drift::expectations(saved).values() {
            reports.extend(
                crate::actions::drift_reports(expectations, &self.clusters)
                    .await
                    .map_err(|e| PlanxError::failed(e.message))?,
            );
        }
        if reports.is_empty() {
            return Ok(saved.observed.len());
        }
        Err(PlanxError::refused(format!(
            "the clusters moved since the plan was saved; nothing was changed:\n{}\nmake the plan again with `planx plan` and review its previews",
            reports.join("\n").trim_end()
        )))
    }

    /// Take the run's Lease in every cluster (refused, exit 3, when another run holds one).
    async fn take_leases(&self) -> Result<(), PlanxError> {
        for cluster in self.clusters.values() {
            cluster
                .acquire_lease(&self.record.run_id, self.lease)
                .await
                .map_err(|e| match e {
                    crate::adapters::cluster::ClusterError::Refused(message) => {
                        PlanxError::refused(message)
                    }
                    other => PlanxError::failed(other.to_string()),
                })?;
        }
        Ok(())
    }

    async fn release_leases(&self) {
        for cluster in self.clusters.values() {
            let _ = cluster.release_lease(&self.record.run_id).await;
        }
    }

    /// A run that stops without completing keeps its Leases for its resume or rollback, marked
    /// as not running.
    async fn park_leases(&self) {
        for cluster in self.clusters.values() {
            let _ = cluster.park_lease(&self.record.run_id).await;
        }
    }

    /// Renew the Leases every third of their duration until the returned guard is dropped.
    fn keep_leases(&self) -> LeaseKeeper {
        let clusters: Vec<Cluster> = self.clusters.values().cloned().collect();
        let holder = self.record.run_id.clone();
        let every = (self.lease / 3).max(Duration::from_millis(100));
        LeaseKeeper(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                for cluster in &clusters {
                    // A failed renewal is tried again at the next tick; the Lease is never
                    // given to another run meanwhile.
                    let _ = cluster.renew_lease(&holder).await;
                }
            }
        }))
    }

    fn live(&self, run_dir: &RunDir) -> Result<Live, PlanxError> {
        let mut live = Live::new(
            self.record.compiled.clone(),
            self.clusters.clone(),
            self.secrets.clone(),
            run_dir.clone(),
            self.resolve.clone(),
        );
        if self.record.saved_plan.is_some() {
            let saved = read_saved_plan(&run_dir.saved_plan_path())?;
            live.expect(planc::drift::expectations(&saved));
        }
        Ok(live)
    }
}

/// How long a Lease lasts without renewal (`PLANX_LEASE_SECONDS`, default 60); planx renews it
/// every third of that while it runs.
pub fn lease_duration() -> Duration {
    let seconds = std::env::var("PLANX_LEASE_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(60);
    Duration::from_secs(seconds)
}

/// Renews a run's Leases while it lives.
struct LeaseKeeper(tokio::task::JoinHandle<()>);

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Start a new run: take the Lease in every cluster, then create the run directory with the
/// run record (and the saved plan it applies). A refusal leaves nothing behind.
pub async fn start(
    session: &Session,
    runs: &Path,
    saved: Option<&SavedPlan>,
) -> Result<RunDir, PlanxError> {
    session.take_leases().await?;
    let created = RunDir::create(runs, &session.record).and_then(|run_dir| {
        if let Some(saved) = saved {
            run_dir.keep_saved_plan(saved)?;
        }
        Ok(run_dir)
    });
    if created.is_err() {
        session.release_leases().await;
    }
    created
}

/// How a run went, for the closing summary.
#[derive(Debug, Clone)]
pub struct Summary {
    pub outcome: Outcome,
    pub total: Duration,
    /// From the step that blocked writes to the first verification after it that succeeded:
    /// clients are served again.
    pub outage: Option<Duration>,
    /// How much of the outage planx spent waiting on the servers (pod restarts, elections,
    /// seal changes); the rest is what the executor adds.
    pub outage_waits: Option<Duration>,
    /// Whether any step of the plan blocks writes (a live move never does: its only outage is
    /// an election, which a client sees and planx does not measure).
    pub blocks_writes: bool,
    pub run_dir: PathBuf,
}

/// Run a started run, or resume one, from its record; `run_dir` holds everything.
pub async fn execute(
    session: Session,
    run_dir: &RunDir,
    resume: bool,
    approver: Arc<dyn Approver>,
    progress: impl Fn(Progress) + Send + Sync + 'static,
    stop: watch::Receiver<bool>,
) -> Result<Summary, PlanxError> {
    let started = Instant::now();
    session.take_leases().await?;
    let keeper = session.keep_leases();
    let plan = session.plan().clone();
    let journal_error = |e: journal::JournalError| PlanxError::failed(e.to_string());
    let (journal, states) = if resume {
        let (journal, events) = Journal::reopen(&run_dir.journal_path()).map_err(journal_error)?;
        (journal, journal::replay(&events))
    } else {
        let mut journal = Journal::create(&run_dir.journal_path()).map_err(journal_error)?;
        journal
            .append(Event::RunStarted {
                plan: plan.name.clone(),
                plan_sha256: session.record.plan_sha256.clone(),
            })
            .map_err(journal_error)?;
        (journal, BTreeMap::new())
    };
    let progress: Arc<dyn Fn(Progress) + Send + Sync> = Arc::new(progress);
    let mut live = session.live(run_dir)?;
    live.report_to(progress.clone());
    let live = Arc::new(live);
    let engine = Engine {
        actions: live.clone(),
        approver,
        options: Options::default(),
    };
    let window = Arc::new(std::sync::Mutex::new(OutageWindow::default()));
    let blocking = planc::lints::writes_blocking_steps(&plan);
    let blocks_writes = !blocking.is_empty();
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
    .await;
    drop(keeper);
    match &outcome {
        Ok(Outcome::Completed) => session.release_leases().await,
        // Stopped at a gate, failed, interrupted, or the journal could not be written: the
        // Leases stay with the run for its resume or rollback.
        _ => session.park_leases().await,
    }
    let outcome = outcome.map_err(|e| PlanxError::failed(e.to_string()))?;
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
        blocks_writes,
        run_dir: run_dir.path().to_path_buf(),
    })
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
            Progress::Succeeded { key, .. }
                if self.blocked.is_some() && self.verified.is_none() && verifying.contains(key) =>
            {
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

/// A run id: the plan's name, the start time to the second, and 4 random hex digits, so two
/// runs started in the same second (two laptops, one plan) never share an id, and so never a
/// Lease.
pub fn run_id(plan: &str) -> String {
    let stamp = crate::adapters::cluster::rfc3339_micros(SystemTime::now());
    let compact: String = stamp
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .take(15)
        .collect();
    let mut random = [0u8; 2];
    // Without randomness the time alone still names the run.
    let _ = getrandom::fill(&mut random);
    format!("{plan}-{compact}-{}", planc::hex::encode(&random))
}

/// Roll a run back: undo, in reverse order, every step that ran and can be undone (objects put
/// back as recorded before the step; the pods of a restored StatefulSet restarted), and say what
/// cannot be undone. Each line of what it does goes to `report` as it happens, and
/// `STEP: undone` once a step's undo is journaled. A rollback that stops half-way can be run
/// again: what is already as recorded is left alone, and journaled outputs stay readable.
pub async fn roll_back(
    session: Session,
    run_dir: &RunDir,
    report: &mut (dyn FnMut(String) + Send),
) -> Result<(), PlanxError> {
    session.take_leases().await?;
    let keeper = session.keep_leases();
    let rolled_back = undo_run(&session, run_dir, report).await;
    drop(keeper);
    match rolled_back {
        Ok(()) => session.release_leases().await,
        // Run again, the rollback continues where it stopped: the Leases stay with the run.
        Err(_) => session.park_leases().await,
    }
    rolled_back
}

/// The undo of [`roll_back`], with the Leases held.
async fn undo_run(
    session: &Session,
    run_dir: &RunDir,
    report: &mut (dyn FnMut(String) + Send),
) -> Result<(), PlanxError> {
    let plan = session.plan().clone();
    let live = session.live(run_dir)?;
    let journal_error = |e: journal::JournalError| PlanxError::failed(e.to_string());
    let (mut journal, events) = Journal::reopen(&run_dir.journal_path()).map_err(journal_error)?;
    let states = journal::replay(&events);
    let outputs = journal::outputs(&events);
    let rollback = crate::recovery::rollback(&plan, &states);
    for (step_id, action) in &rollback.actions {
        let Some(step) = plan.steps.iter().find(|s| &s.id == step_id) else {
            continue;
        };
        match action {
            crate::recovery::RollbackAction::CannotUndo(why) => {
                report(format!("{step_id}: cannot be undone: {why}"));
                continue;
            }
            crate::recovery::RollbackAction::Kept { target, past } => {
                report(format!(
                    "{step_id}: {}",
                    crate::recovery::kept_line(target, past)
                ));
                continue;
            }
            _ => {}
        }
        journal
            .append(Event::UndoStarted {
                step: step_id.clone(),
            })
            .map_err(journal_error)?;
        let failed = |e: crate::engine::ActionError| {
            PlanxError::failed(format!(
                "{step_id}: {}; run `planx rollback` again to finish",
                e.message
            ))
        };
        let item_prefix = format!("{step_id}[");
        let keys: Vec<&String> = states
            .keys()
            .filter(|k| *k == step_id || k.starts_with(&item_prefix))
            .collect();
        for line in live
            .undo_step(step, &keys, outputs.get(step_id))
            .await
            .map_err(failed)?
        {
            report(format!("{step_id}: {line}"));
        }
        journal
            .append(Event::UndoFinished {
                step: step_id.clone(),
            })
            .map_err(journal_error)?;
        report(format!("{step_id}: undone"));
    }
    if !rollback.past_no_return.is_empty() {
        report(format!(
            "past the point of no return ({}): the source is back; what happened to the target stays",
            rollback.past_no_return.join(", ")
        ));
    }
    journal
        .append(Event::RunFinished {
            outcome: "rolled back".into(),
        })
        .map_err(journal_error)?;
    Ok(())
}

/// `planx unlock`: release the Lease the run holds in every cluster, without resuming or
/// rolling it back. Returns what it released, line by line.
pub async fn unlock(record: &RunRecord) -> Result<Vec<String>, PlanxError> {
    let clusters = connect(&record.compiled, &record.kubeconfig).await?;
    let mut done = Vec::new();
    let mut targets: Vec<&String> = clusters.keys().collect();
    targets.sort();
    for target in targets {
        let cluster = &clusters[target];
        let held = cluster
            .lease_holder()
            .await
            .map_err(|e| PlanxError::failed(e.to_string()))?;
        match held {
            Some(held) if held.holder == record.run_id => {
                cluster
                    .release_lease(&record.run_id)
                    .await
                    .map_err(|e| PlanxError::failed(e.to_string()))?;
                done.push(format!(
                    "{target}: released the lease of {} (last renewed {}{})",
                    record.run_id,
                    held.renewed,
                    if held.live {
                        "; it was still being renewed: a planx may be running this run"
                    } else {
                        ""
                    }
                ));
            }
            Some(held) => done.push(format!(
                "{target}: the lease is held by another run ({}); left alone",
                held.holder
            )),
            None => done.push(format!("{target}: no lease held")),
        }
    }
    Ok(done)
}
