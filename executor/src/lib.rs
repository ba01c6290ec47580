//! planx, the executor: applies a plan that planc compiled against the real Kubernetes and Vault
//! APIs. [`run`] starts, resumes and rolls back runs kept in a [`rundir`]; the [`engine`] walks
//! the graph and journals every effect ([`journal`]); [`recovery`] computes resume and rollback
//! from plan and journal; [`actions`] does what each step means through the Kubernetes
//! and Vault [`adapters`] and the [`keyservices`]; [`explain`] says the run
//! order, what each step changes, its undo and the points of no return.

pub mod actions;
pub mod adapters;
pub mod engine;
pub mod error;
pub mod journal;
pub mod keyservices;
pub mod recovery;
pub mod run;
pub mod rundir;
pub mod secrets;

use std::fmt::Write as _;

use planc::CompiledPlan;
use planc::catalog::{self, SideEffect};

/// The run order of a compiled plan, one line per step, with its side effect and undo, and a
/// closing list of the points of no return.
pub fn explain(plan: &CompiledPlan) -> String {
    let mut out = format!("plan {}: {} steps\n", plan.name, plan.steps.len());
    let width = plan.steps.iter().map(|s| s.id.len()).max().unwrap_or(0);
    let mut no_return = Vec::new();
    for (position, &index) in plan.graph.order.iter().enumerate() {
        let step = &plan.steps[index];
        let spec = catalog::spec(step.action);
        let undo = spec.undo.describe();
        let mut flags = String::new();
        if step.for_each.is_some() {
            flags.push_str(" [per item]");
        }
        if let Some(gate) = &step.gate {
            let _ = write!(flags, " [asks: {gate}]");
        }
        let _ = writeln!(
            out,
            "{:>3}. {:<width$}  {:<12} {} on {}; {undo}{flags}",
            position + 1,
            step.id,
            spec.side_effect.as_str(),
            step.action.name(),
            step.on,
        );
        if spec.side_effect == SideEffect::Irreversible {
            no_return.push(step.id.as_str());
        }
    }
    if no_return.is_empty() {
        out.push_str("no point of no return: a rollback can undo every step\n");
    } else {
        let _ = writeln!(
            out,
            "points of no return (a rollback past them restores the source instead): {}",
            no_return.join(", ")
        );
    }
    out
}
