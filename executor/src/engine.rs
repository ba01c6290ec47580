//! The engine: walks the compiled graph with bounded concurrency, runs each step's action with a
//! timeout and retries for transient errors, journals every start, intent, effect and outcome,
//! asks for approval at gates, expands `for_each` groups one item at a time, and stops cleanly
//! when asked to: no new step starts, steps in flight finish or are recorded as interrupted.
//!
//! What an action does is behind [`Actions`]; the engine only schedules and journals.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use planc::CompiledPlan;
use planc::expr::Resolved;
use planc::model::CompiledStep;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::journal::{Event, Journal, JournalError, StepState};
use crate::recovery::{self, ResumeAction};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why an action failed. Transient failures are retried; others end the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionError {
    pub message: String,
    pub transient: bool,
}

impl ActionError {
    pub fn permanent(message: impl Into<String>) -> ActionError {
        ActionError {
            message: message.into(),
            transient: false,
        }
    }

    pub fn transient(message: impl Into<String>) -> ActionError {
        ActionError {
            message: message.into(),
            transient: true,
        }
    }
}

/// One run of one step (or one item of a `for_each` step), inputs resolved.
#[derive(Debug, Clone)]
pub struct StepRun {
    /// The step's id, with `[item]` for an element of a `for_each` group.
    pub key: String,
    pub step: CompiledStep,
    /// Inputs with step outputs and the item substituted; secrets stay references, which the
    /// actions resolve.
    pub inputs: BTreeMap<String, Resolved>,
    pub item: Option<Value>,
    /// Sensitive outputs of earlier steps this step reads (`step:ID.NAME` references), held in
    /// memory only.
    pub step_secrets: BTreeMap<String, crate::secrets::Secret>,
}

/// Journals the side effects of one step run.
#[derive(Clone)]
pub struct Effects {
    journal: Arc<Mutex<Journal>>,
    key: String,
    /// The effect an earlier attempt of the step began and did not see through: from the
    /// journal when a run resumes, then kept as this run's attempts go.
    in_doubt: Arc<Mutex<Option<String>>>,
}

impl Effects {
    /// Record the intent, run the side effect, record that it happened. The intent is on disk
    /// before the effect starts, so a crash in between leaves the step in doubt, never unrecorded.
    pub async fn perform<T, F>(&self, effect: &str, run: F) -> Result<T, ActionError>
    where
        F: Future<Output = Result<T, ActionError>>,
    {
        self.write(Event::Intent {
            step: self.key.clone(),
            effect: effect.to_string(),
        })?;
        *self.in_doubt.lock().expect("effects lock") = Some(effect.to_string());
        let result = run.await?;
        self.write(Event::Done {
            step: self.key.clone(),
            effect: effect.to_string(),
        })?;
        *self.in_doubt.lock().expect("effects lock") = None;
        Ok(result)
    }

    /// The effect an earlier attempt of this step (in this run, or before the run was resumed)
    /// began and did not finish, if any: what an action may find half-done in the world.
    pub fn in_doubt(&self) -> Option<String> {
        self.in_doubt.lock().expect("effects lock").clone()
    }

    fn write(&self, event: Event) -> Result<(), ActionError> {
        self.journal
            .lock()
            .expect("journal lock")
            .append(event)
            .map_err(|e| ActionError::permanent(e.to_string()))
    }
}

/// What a step produced: values, journaled and read by later steps, and secrets (a migration
/// token), held in memory for the steps that need them. A [`Secret`](crate::secrets::Secret)
/// never prints and never serialises, so a secret output cannot reach the journal or a log.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    pub values: BTreeMap<String, Value>,
    pub secrets: BTreeMap<String, crate::secrets::Secret>,
}

impl Outputs {
    pub fn new() -> Outputs {
        Outputs::default()
    }

    /// Outputs made of journaled values only.
    pub fn from_values(values: BTreeMap<String, Value>) -> Outputs {
        Outputs {
            values,
            secrets: BTreeMap::new(),
        }
    }

    pub fn insert(&mut self, name: &str, value: Value) {
        self.values.insert(name.to_string(), value);
    }

    pub fn insert_secret(&mut self, name: &str, secret: crate::secrets::Secret) {
        self.secrets.insert(name.to_string(), secret);
    }
}

impl<const N: usize> From<[(&str, Value); N]> for Outputs {
    fn from(values: [(&str, Value); N]) -> Outputs {
        Outputs::from_values(
            values
                .into_iter()
                .map(|(name, value)| (name.to_string(), value))
                .collect(),
        )
    }
}

/// What actions do. Implemented by the adapters on the real APIs.
pub trait Actions: Send + Sync + 'static {
    /// Run the step, journaling each side effect through `effects`; return its outputs.
    fn apply<'a>(
        &'a self,
        run: &'a StepRun,
        effects: &'a Effects,
    ) -> BoxFuture<'a, Result<Outputs, ActionError>>;

    /// For a step whose effect is in doubt after a crash: its outputs when the effect is in
    /// place, `None` when it must run again.
    fn observe<'a>(
        &'a self,
        run: &'a StepRun,
    ) -> BoxFuture<'a, Result<Option<Outputs>, ActionError>>;
}

/// Asks a person (or the command line) whether a gated step may run.
pub trait Approver: Send + Sync + 'static {
    fn approve<'a>(&'a self, step: &'a str, message: &'a str) -> BoxFuture<'a, bool>;
}

/// Approves the gates named in advance (`--approve GATE`), or all (`--approve-all`).
pub struct Preapproved {
    pub all: bool,
    pub steps: Vec<String>,
}

impl Approver for Preapproved {
    fn approve<'a>(&'a self, step: &'a str, _message: &'a str) -> BoxFuture<'a, bool> {
        let approved = self.all || self.steps.iter().any(|s| s == step);
        Box::pin(async move { approved })
    }
}

/// What the engine reports as it goes, for the terminal or `--output json`.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    Started {
        key: String,
        attempt: u32,
    },
    Retrying {
        key: String,
        attempt: u32,
        error: String,
    },
    Skipped {
        key: String,
    },
    Succeeded {
        key: String,
        elapsed: Duration,
    },
    Failed {
        key: String,
        error: String,
    },
    WaitingForApproval {
        key: String,
        message: String,
    },
    /// Work under way inside a step, reported by the actions: bytes of a snapshot moved, or
    /// seconds spent waiting on the servers, of `total` when it is known (a file's size, a
    /// wait's timeout).
    Activity {
        what: String,
        unit: ActivityUnit,
        done: u64,
        total: Option<u64>,
    },
}

/// What an activity counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityUnit {
    Bytes,
    Seconds,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Failed { step: String, error: String },
    NotApproved { step: String },
    Interrupted,
}

pub struct Options {
    /// Steps run at once, at most.
    pub concurrency: usize,
    /// Backoff before the first retry when a step sets none.
    pub default_backoff: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            concurrency: 4,
            default_backoff: Duration::from_secs(2),
        }
    }
}

struct Shared {
    plan: CompiledPlan,
    actions: Arc<dyn Actions>,
    approver: Arc<dyn Approver>,
    journal: Arc<Mutex<Journal>>,
    outputs: Mutex<HashMap<String, Outputs>>,
    /// The journal's replay: what each step or item key reached before this run.
    states: BTreeMap<String, StepState>,
    /// Succeeded steps that run again, just before the first step that needs their sensitive
    /// outputs (tokens), which were never journaled: when they are needed, not at the start,
    /// since what they act on may only be ready by then.
    rerun: tokio::sync::Mutex<std::collections::HashSet<String>>,
    progress: Box<dyn Fn(Progress) + Send + Sync>,
    options: Options,
}

/// What a run is made with: the actions, who approves gates, and the limits.
pub struct Engine {
    pub actions: Arc<dyn Actions>,
    pub approver: Arc<dyn Approver>,
    pub options: Options,
}

/// Run (or resume) a plan. `states` is the journal's replay (empty for a new run); `stop`
/// turns true when the run must stop (Ctrl-C).
pub async fn run(
    engine: Engine,
    plan: CompiledPlan,
    states: BTreeMap<String, StepState>,
    journal: Journal,
    progress: impl Fn(Progress) + Send + Sync + 'static,
    mut stop: watch::Receiver<bool>,
) -> Result<Outcome, JournalError> {
    let Engine {
        actions,
        approver,
        options,
    } = engine;
    let resume = recovery::resume(&plan, &states).map_err(|e| JournalError::Corrupt {
        line: 0,
        reason: e.0,
    })?;
    let rerun = sensitive_producers_still_needed(&plan, &states);
    let shared = Arc::new(Shared {
        actions,
        approver,
        journal: Arc::new(Mutex::new(journal)),
        outputs: Mutex::new(HashMap::new()),
        progress: Box::new(progress),
        options,
        plan,
        states,
        rerun: tokio::sync::Mutex::new(rerun),
    });
    // Outputs of steps that succeeded before (journaled, non-sensitive).
    for (key, state) in &shared.states {
        if let StepState::Succeeded { outputs } = state {
            shared
                .outputs
                .lock()
                .expect("outputs")
                .insert(key.clone(), Outputs::from_values(outputs.clone()));
        }
    }
    let count = shared.plan.steps.len();
    let index_of: HashMap<&str, usize> = shared
        .plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let mut done = vec![false; count];
    for (id, action) in resume {
        if action == ResumeAction::Skip {
            done[index_of[id.as_str()]] = true;
            (shared.progress)(Progress::Skipped { key: id });
        }
    }
    let mut started = done.clone();
    let mut in_flight: JoinSet<(usize, Result<(), Outcome>)> = JoinSet::new();
    let mut outcome = Outcome::Completed;
    loop {
        let stopping = *stop.borrow() || outcome != Outcome::Completed;
        if !stopping {
            for &index in &shared.plan.graph.order {
                if in_flight.len() >= shared.options.concurrency.max(1) {
                    break;
                }
                if started[index] || !shared.plan.graph.deps[index].iter().all(|&d| done[d]) {
                    continue;
                }
                started[index] = true;
                let shared = shared.clone();
                in_flight.spawn(async move { (index, run_step(&shared, index).await) });
            }
        }
        if in_flight.is_empty() {
            break;
        }
        tokio::select! {
            joined = in_flight.join_next() => {
                let Some(joined) = joined else { break };
                let (index, result) = joined.map_err(|e| JournalError::Corrupt { line: 0, reason: format!("a step panicked: {e}") })?;
                match result {
                    Ok(()) => done[index] = true,
                    Err(failure) => {
                        if outcome == Outcome::Completed {
                            outcome = failure;
                        }
                    }
                }
            }
            _ = stop.changed() => {}
        }
    }
    if outcome == Outcome::Completed && done.iter().any(|d| !d) {
        outcome = Outcome::Interrupted;
    }
    let text = match &outcome {
        Outcome::Completed => "completed".to_string(),
        Outcome::Failed { step, .. } => format!("failed at {step}"),
        Outcome::NotApproved { step } => format!("not approved at {step}"),
        Outcome::Interrupted => "interrupted".to_string(),
    };
    shared
        .journal
        .lock()
        .expect("journal")
        .append(Event::RunFinished { outcome: text })?;
    Ok(outcome)
}

fn journal(shared: &Shared, event: Event) -> Result<(), Outcome> {
    shared
        .journal
        .lock()
        .expect("journal")
        .append(event)
        .map_err(|e| Outcome::Failed {
            step: "journal".into(),
            error: e.to_string(),
        })
}

/// Run one step, or each item of a `for_each` step in turn.
async fn run_step(shared: &Shared, index: usize) -> Result<(), Outcome> {
    let step = shared.plan.steps[index].clone();
    if let Some(gate) = &step.gate {
        (shared.progress)(Progress::WaitingForApproval {
            key: step.id.clone(),
            message: gate.clone(),
        });
        if !shared.approver.approve(&step.id, gate).await {
            return Err(Outcome::NotApproved { step: step.id });
        }
    }
    let items: Vec<Option<Value>> = match &step.for_each {
        None => vec![None],
        Some(list) => match substitute(shared, list, None)? {
            Value::Array(items) => items.into_iter().map(Some).collect(),
            other => {
                return Err(Outcome::Failed {
                    step: step.id.clone(),
                    error: format!("for_each must give a list, got {other}"),
                });
            }
        },
    };
    let grouped = step.for_each.is_some();
    for item in items {
        let key = match (&item, grouped) {
            (Some(Value::String(text)), true) => format!("{}[{text}]", step.id),
            (Some(other), true) => format!("{}[{other}]", step.id),
            _ => step.id.clone(),
        };
        let mut inputs = BTreeMap::new();
        for (name, value) in &step.with {
            inputs.insert(name.clone(), resolve_refs(shared, value, item.as_ref())?);
        }
        rerun_producers(shared, &inputs).await?;
        let step_secrets = step_secrets(shared, &inputs);
        let run = StepRun {
            key: key.clone(),
            step: step.clone(),
            inputs,
            item,
            step_secrets,
        };
        let outputs = run_once(shared, &run, false).await?;
        shared.outputs.lock().expect("outputs").insert(key, outputs);
    }
    if grouped {
        journal(shared, Event::succeeded(&step, BTreeMap::new()))?;
    }
    Ok(())
}

/// One run: skipped when the journal says it succeeded, observed first when its effect is in
/// doubt, else applied with a timeout and retries for transient errors.
async fn run_once(shared: &Shared, run: &StepRun, force: bool) -> Result<Outputs, Outcome> {
    let fail = |error: String| Outcome::Failed {
        step: run.key.clone(),
        error,
    };
    let state = shared.states.get(&run.key);
    if let Some(StepState::Succeeded { outputs }) = state
        && !force
    {
        (shared.progress)(Progress::Skipped {
            key: run.key.clone(),
        });
        return Ok(Outputs::from_values(outputs.clone()));
    }
    if matches!(state, Some(StepState::InDoubt { .. }))
        && let Some(outputs) = shared
            .actions
            .observe(run)
            .await
            .map_err(|e| fail(e.message))?
    {
        journal(shared, succeeded(run, &outputs))?;
        (shared.progress)(Progress::Skipped {
            key: run.key.clone(),
        });
        return Ok(outputs);
    }
    let attempts = run.step.retry.as_ref().map_or(1, |r| r.attempts.max(1));
    let mut backoff = run
        .step
        .retry
        .as_ref()
        .map(|r| Duration::from_secs(r.backoff_secs))
        .unwrap_or(shared.options.default_backoff);
    let effects = Effects {
        journal: shared.journal.clone(),
        key: run.key.clone(),
        in_doubt: Arc::new(Mutex::new(match state {
            Some(StepState::InDoubt { effect }) => Some(effect.clone()),
            _ => None,
        })),
    };
    for attempt in 1..=attempts {
        journal(
            shared,
            Event::StepStarted {
                step: run.key.clone(),
                attempt,
            },
        )?;
        (shared.progress)(Progress::Started {
            key: run.key.clone(),
            attempt,
        });
        let started = std::time::Instant::now();
        let applied = shared.actions.apply(run, &effects);
        let result = match run.step.timeout_secs {
            Some(secs) => tokio::time::timeout(Duration::from_secs(secs), applied)
                .await
                .unwrap_or_else(|_| {
                    Err(ActionError::permanent(format!("timed out after {secs}s")))
                }),
            None => applied.await,
        };
        match result {
            Ok(outputs) => {
                journal(shared, succeeded(run, &outputs))?;
                (shared.progress)(Progress::Succeeded {
                    key: run.key.clone(),
                    elapsed: started.elapsed(),
                });
                return Ok(outputs);
            }
            Err(error) if error.transient && attempt < attempts => {
                (shared.progress)(Progress::Retrying {
                    key: run.key.clone(),
                    attempt,
                    error: error.message.clone(),
                });
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(error) => {
                journal(
                    shared,
                    Event::StepFailed {
                        step: run.key.clone(),
                        error: error.message.clone(),
                    },
                )?;
                (shared.progress)(Progress::Failed {
                    key: run.key.clone(),
                    error: error.message.clone(),
                });
                return Err(fail(error.message));
            }
        }
    }
    unreachable!("the last attempt returns")
}

/// Steps that succeeded before but must run again: a step that has not succeeded reads one of
/// their sensitive outputs, which lived in memory only.
fn sensitive_producers_still_needed(
    plan: &CompiledPlan,
    states: &BTreeMap<String, StepState>,
) -> std::collections::HashSet<String> {
    let succeeded = |id: &str| matches!(states.get(id), Some(StepState::Succeeded { .. }));
    let mut rerun = std::collections::HashSet::new();
    for step in plan.steps.iter().filter(|s| !succeeded(&s.id)) {
        for value in step.with.values() {
            if let Resolved::Secret { reference, .. } = value
                && let Some((producer, _)) = reference
                    .strip_prefix("step:")
                    .and_then(|path| path.rsplit_once('.'))
                && succeeded(producer)
            {
                rerun.insert(producer.to_string());
            }
        }
    }
    rerun
}

/// Run again, now, the succeeded steps whose in-memory tokens these inputs need.
async fn rerun_producers(
    shared: &Shared,
    inputs: &BTreeMap<String, Resolved>,
) -> Result<(), Outcome> {
    let mut pending = shared.rerun.lock().await;
    for value in inputs.values() {
        let Resolved::Secret { reference, .. } = value else {
            continue;
        };
        let Some((producer, _)) = reference
            .strip_prefix("step:")
            .and_then(|path| path.rsplit_once('.'))
        else {
            continue;
        };
        if !pending.remove(producer) {
            continue;
        }
        let Some(step) = shared.plan.steps.iter().find(|s| s.id == producer).cloned() else {
            continue;
        };
        let mut step_inputs = BTreeMap::new();
        for (name, value) in &step.with {
            step_inputs.insert(name.clone(), resolve_refs(shared, value, None)?);
        }
        let step_secrets = step_secrets(shared, &step_inputs);
        let run = StepRun {
            key: step.id.clone(),
            step,
            inputs: step_inputs,
            item: None,
            step_secrets,
        };
        let outputs = run_once(shared, &run, true).await?;
        shared
            .outputs
            .lock()
            .expect("outputs")
            .insert(run.key.clone(), outputs);
    }
    Ok(())
}

/// The success record of a run, under its key (`step[item]` for an item): its values, never its
/// secrets.
fn succeeded(run: &StepRun, outputs: &Outputs) -> Event {
    let mut event = Event::succeeded(&run.step, outputs.values.clone());
    if let Event::StepSucceeded { step, .. } = &mut event {
        step.clone_from(&run.key);
    }
    event
}

/// The sensitive step outputs (`step:ID.NAME`) that the inputs refer to.
fn step_secrets(
    shared: &Shared,
    inputs: &BTreeMap<String, Resolved>,
) -> BTreeMap<String, crate::secrets::Secret> {
    let outputs = shared.outputs.lock().expect("outputs");
    let mut found = BTreeMap::new();
    for value in inputs.values() {
        if let Resolved::Secret { reference, .. } = value
            && let Some(path) = reference.strip_prefix("step:")
            && let Some((step, output)) = path.rsplit_once('.')
            && let Some(secret) = outputs.get(step).and_then(|o| o.secrets.get(output))
        {
            found.insert(reference.clone(), secret.clone());
        }
    }
    found
}

/// A `for_each` list or other value with step outputs substituted.
fn substitute(shared: &Shared, value: &Resolved, item: Option<&Value>) -> Result<Value, Outcome> {
    Ok(match resolve_refs(shared, value, item)? {
        Resolved::List(items) => Value::Array(items.iter().map(Resolved::to_json).collect()),
        other => other.to_json(),
    })
}

/// Replace step outputs and the item by their values; leave secrets as references.
fn resolve_refs(
    shared: &Shared,
    value: &Resolved,
    item: Option<&Value>,
) -> Result<Resolved, Outcome> {
    Ok(match value {
        Resolved::StepOutput { step, output } => {
            let outputs = shared.outputs.lock().expect("outputs");
            let found = outputs
                .get(step)
                .and_then(|o| o.values.get(output))
                .cloned();
            match found {
                Some(value) => Resolved::from_json(&value),
                None => {
                    return Err(Outcome::Failed {
                        step: step.clone(),
                        error: format!("output `{output}` of step `{step}` is not available"),
                    });
                }
            }
        }
        Resolved::Item { path } => {
            let mut current = item.cloned().unwrap_or(Value::Null);
            for part in path {
                current = current.get(part).cloned().unwrap_or(Value::Null);
            }
            Resolved::from_json(&current)
        }
        Resolved::List(items) => Resolved::List(
            items
                .iter()
                .map(|v| resolve_refs(shared, v, item))
                .collect::<Result<_, _>>()?,
        ),
        Resolved::Map(map) => Resolved::Map(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), resolve_refs(shared, v, item)?)))
                .collect::<Result<_, Outcome>>()?,
        ),
        other => other.clone(),
    })
}
