//! Resume and rollback as functions of the compiled plan and the journal's step states: which
//! steps to skip, which to observe before acting, which to undo, and which are past a point of
//! no return.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use planc::CompiledPlan;
use planc::catalog::{self, SideEffect, Undo};

use crate::journal::StepState;

/// What a resumed run does with one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeAction {
    /// It succeeded; its journaled outputs are reused.
    Skip,
    /// Its side effect may have happened: ask the world first, then finish or redo it.
    ObserveThenRun {
        effect: String,
    },
    Run,
}

/// Why a run cannot be resumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CannotResume(pub String);

/// The steps in execution order with what a resume does with each.
pub fn resume(
    plan: &CompiledPlan,
    states: &BTreeMap<String, StepState>,
) -> Result<Vec<(String, ResumeAction)>, CannotResume> {
    if let Some((step, _)) = states
        .iter()
        .find(|(_, s)| matches!(s, StepState::Undone | StepState::UndoInDoubt))
    {
        return Err(CannotResume(format!(
            "the run was rolled back (step `{step}` was undone); start a new run"
        )));
    }
    Ok(plan
        .graph
        .order
        .iter()
        .map(|&index| {
            let id = &plan.steps[index].id;
            let action = match states.get(id) {
                Some(StepState::Succeeded { .. }) => ResumeAction::Skip,
                Some(StepState::InDoubt { effect }) => ResumeAction::ObserveThenRun {
                    effect: effect.clone(),
                },
                _ => ResumeAction::Run,
            };
            (id.clone(), action)
        })
        .collect())
}

/// What a rollback does with one step that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackAction {
    Undo(Undo),
    /// An undo began and did not finish, or the step's effect is in doubt: observe, then undo.
    ObserveThenUndo(Undo),
    /// A point of no return.
    CannotUndo(&'static str),
    /// A step on a target that later passed a point of no return (the step named): its undo
    /// would not bring back what was, so what happened to the target stays. Undoing a seal
    /// edit of a Vault whose keys were re-wrapped or replaced would leave it unable to unseal.
    Kept {
        target: String,
        past: String,
    },
}

/// The rollback of a run: undo actions in reverse execution order, and the points of no return
/// that were passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollback {
    pub actions: Vec<(String, RollbackAction)>,
    pub past_no_return: Vec<String>,
}

/// Where one step of the plan stands: its own state, and for a `for_each` step each item's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepProgress {
    pub id: String,
    /// The step's state as a whole. A `for_each` step is journaled per item until every item
    /// succeeded, so without an entry of its own it takes the state of its items: in doubt when
    /// one is, failed or interrupted when the last one stopped so, started when some succeeded.
    pub state: StepState,
    /// `id[item]` keys and their states, in the order they ran.
    pub items: Vec<(String, StepState)>,
}

/// Every step in execution order with where it stands.
pub fn progress(plan: &CompiledPlan, states: &BTreeMap<String, StepState>) -> Vec<StepProgress> {
    plan.graph
        .order
        .iter()
        .map(|&index| step_progress(&plan.steps[index].id, states))
        .collect()
}

/// Where the step `id` stands, from the journal's states.
pub fn step_progress(id: &str, states: &BTreeMap<String, StepState>) -> StepProgress {
    let prefix = format!("{id}[");
    let items: Vec<(String, StepState)> = states
        .range(prefix.clone()..)
        .take_while(|(key, _)| key.starts_with(&prefix))
        .map(|(key, state)| (key.clone(), state.clone()))
        .collect();
    let state = match states.get(id) {
        Some(state) => state.clone(),
        None => aggregate(&items),
    };
    StepProgress {
        id: id.to_string(),
        state,
        items,
    }
}

/// The state of a `for_each` step that has no entry of its own, from its items'.
fn aggregate(items: &[(String, StepState)]) -> StepState {
    let states = || items.iter().map(|(_, state)| state);
    if let Some(doubt) = states().find(|s| {
        matches!(
            s,
            StepState::InDoubt { .. }
                | StepState::Changed { .. }
                | StepState::UndoInDoubt
                | StepState::Undone
        )
    }) {
        return doubt.clone();
    }
    if let Some(stopped) = states().find(|s| {
        matches!(
            s,
            StepState::Failed { .. } | StepState::Interrupted | StepState::StartedNoEffect
        )
    }) {
        return stopped.clone();
    }
    if items.is_empty() {
        StepState::NotStarted
    } else {
        StepState::StartedNoEffect
    }
}

/// Whether any item of a `for_each` step succeeded or may have had its effect.
fn items_ran(items: &[(String, StepState)]) -> bool {
    items.iter().any(|(_, state)| {
        matches!(
            state,
            StepState::Succeeded { .. }
                | StepState::InDoubt { .. }
                | StepState::Changed { .. }
                | StepState::UndoInDoubt
        )
    })
}

/// Whether a step surely had its effect: succeeded, or a `for_each` item of it did.
fn passed(progress: &StepProgress) -> bool {
    matches!(progress.state, StepState::Succeeded { .. })
        || progress
            .items
            .iter()
            .any(|(_, s)| matches!(s, StepState::Succeeded { .. }))
}

pub fn rollback(plan: &CompiledPlan, states: &BTreeMap<String, StepState>) -> Rollback {
    let mut actions = Vec::new();
    let mut past_no_return = Vec::new();
    // The first point of no return each target passed: its steps keep what they did.
    let mut target_passed: BTreeMap<&str, &str> = BTreeMap::new();
    for &index in &plan.graph.order {
        let step = &plan.steps[index];
        if matches!(catalog::spec(step.action).undo, Undo::None(_))
            && passed(&step_progress(&step.id, states))
        {
            target_passed.entry(step.on.as_str()).or_insert(&step.id);
        }
    }
    for &index in plan.graph.order.iter().rev() {
        let step = &plan.steps[index];
        let spec = catalog::spec(step.action);
        let progress = step_progress(&step.id, states);
        let item_succeeded = progress
            .items
            .iter()
            .any(|(_, s)| matches!(s, StepState::Succeeded { .. }));
        // Whether the step ran, and if so whether its effect is in doubt. A `for_each` step
        // stopped part-way ran if one of its items did, in doubt unless every item succeeded.
        let ran = match &progress.state {
            StepState::Succeeded { .. } => Some(false),
            StepState::InDoubt { .. } | StepState::Changed { .. } | StepState::UndoInDoubt => {
                Some(true)
            }
            StepState::Failed { .. } | StepState::Interrupted | StepState::StartedNoEffect
                if items_ran(&progress.items) =>
            {
                Some(
                    progress
                        .items
                        .iter()
                        .any(|(_, s)| !matches!(s, StepState::Succeeded { .. })),
                )
            }
            _ => None,
        };
        let Some(in_doubt) = ran else { continue };
        let action = match (spec.side_effect, spec.undo) {
            (SideEffect::ReadOnly, _) | (_, Undo::NotNeeded) => continue,
            (SideEffect::Irreversible, Undo::None(why))
            | (SideEffect::Reversible, Undo::None(why)) => {
                if !in_doubt || item_succeeded {
                    past_no_return.push(step.id.clone());
                }
                RollbackAction::CannotUndo(why)
            }
            (_, _) if target_passed.contains_key(step.on.as_str()) => RollbackAction::Kept {
                target: step.on.clone(),
                past: target_passed[step.on.as_str()].to_string(),
            },
            (_, undo) if in_doubt => RollbackAction::ObserveThenUndo(undo),
            (_, undo) => RollbackAction::Undo(undo),
        };
        actions.push((step.id.clone(), action));
    }
    past_no_return.reverse();
    Rollback {
        actions,
        past_no_return,
    }
}

/// The rollback as a person reads it before confirming.
pub fn describe(rollback: &Rollback) -> String {
    let mut out = String::new();
    if rollback.actions.is_empty() {
        out.push_str("nothing to undo: no step with a side effect ran\n");
        return out;
    }
    for (step, action) in &rollback.actions {
        let line = match action {
            RollbackAction::Undo(undo) => undo.describe(),
            RollbackAction::ObserveThenUndo(undo) => {
                format!("check whether it happened, then {}", undo.describe())
            }
            RollbackAction::CannotUndo(why) => format!("cannot be undone: {why}"),
            RollbackAction::Kept { target, past } => kept_line(target, past),
        };
        let _ = writeln!(out, "{step}: {line}");
    }
    if !rollback.past_no_return.is_empty() {
        let _ = writeln!(
            out,
            "past the point of no return ({}): the rollback brings the source back; what happened to the target stays",
            rollback.past_no_return.join(", ")
        );
    }
    out
}

/// Why a rollback keeps a step's effect: its target passed a point of no return later.
pub fn kept_line(target: &str, past: &str) -> String {
    format!("kept: `{target}` passed the point of no return `{past}`, so what happened to it stays")
}
