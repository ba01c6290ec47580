//! `keys.*`: the key services' side of a move (withdrawing the old identity's access).

use crate::catalog::{
    Action, Line, SideEffect::Irreversible, TargetRequirement::KeyService, Undo, output,
};
use crate::lints::{Facts, Index};
use crate::model::CompiledStep;

/// `keys.disable`.
pub struct Disable;

impl Action for Disable {
    fn line(&self) -> Line {
        Line {
            summary: "withdraw the Vault identity's access to a key service",
            target: KeyService,
            side_effect: Irreversible,
            undo: Undo::None("grant the access again by hand"),
            outputs: &[output!(
                "summary",
                "what was withdrawn, or that nothing was left to withdraw"
            )],
            secret_inputs: &[],
            target_inputs: &[],
            chapter: "after 14",
        }
    }

    fn establish(
        &self,
        step: &CompiledStep,
        position: usize,
        _index: &Index<'_>,
        facts: &mut Facts,
    ) -> bool {
        facts
            .keys_disabled
            .entry(step.on.clone())
            .or_insert(position);
        true
    }
}
