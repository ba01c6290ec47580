//! Every catalog action as planc knows it, one home per action (a unit struct implementing
//! [`crate::catalog::Action`]), grouped by family as planx's `actions/` modules are: the catalog
//! line, the objects it changes, and its preview edits.

pub mod keys;
pub mod kubernetes;
pub mod preflight;
pub mod raft;
pub mod seals;
pub mod vault;

use serde_json::Value;

use crate::model::CompiledStep;
use crate::preview::checked_inputs;

/// A step's checked inputs as its action's input type: lowering checked them against that type,
/// so this holds for every compiled step.
fn input<T: serde::de::DeserializeOwned>(step: &CompiledStep) -> T {
    serde_json::from_value(checked_inputs(&step.with))
        .expect("inputs were checked when the plan compiled")
}

/// Checked inputs as an action's input type, or `None` for inputs of another shape (a step
/// record planx reads back).
fn typed<T: serde::de::DeserializeOwned>(inputs: &Value) -> Option<T> {
    serde_json::from_value(inputs.clone()).ok()
}
