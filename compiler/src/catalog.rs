//! The closed catalog of actions as planc knows them: the types of a catalog line (target kind,
//! side-effect class, undo, outputs, secret and target inputs), the [`Action`] trait each action
//! implements once in [`crate::actions`], and [`action`], the one line per action that finds it.

use planc_schema::ActionKind;
use planc_schema::plan::TargetKind;
use serde::Serialize;
use serde_json::Value;

use crate::diagnostic::Diagnostic;
use crate::lints::{Facts, Index};
use crate::model::{CompiledPlan, CompiledStep};
use crate::permissions::Access;
use crate::preview::{Change, PreviewRun, Written};

pub use crate::actions::vault::MIGRATION_POLICY;

/// The kind of target an action runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetRequirement {
    Kubernetes,
    Vault,
    /// Any of `azurekeyvault`, `transit`, `awskms`, `gcpckms`.
    KeyService,
}

impl TargetRequirement {
    pub fn accepts(self, kind: TargetKind) -> bool {
        match self {
            TargetRequirement::Kubernetes => kind == TargetKind::Kubernetes,
            TargetRequirement::Vault => kind == TargetKind::Vault,
            TargetRequirement::KeyService => kind.is_key_service(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TargetRequirement::Kubernetes => "kubernetes",
            TargetRequirement::Vault => "vault",
            TargetRequirement::KeyService => "key-service",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            TargetRequirement::Kubernetes => "a kubernetes target",
            TargetRequirement::Vault => "a vault target",
            TargetRequirement::KeyService => {
                "a key-service target (azurekeyvault, transit, awskms, gcpckms)"
            }
        }
    }
}

/// What running the action does to the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SideEffect {
    /// Reads only (a local file may be written in the run directory).
    ReadOnly,
    /// Changes something that its undo puts back.
    Reversible,
    /// A point of no return: nothing puts it back.
    Irreversible,
}

impl SideEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            SideEffect::ReadOnly => "read-only",
            SideEffect::Reversible => "reversible",
            SideEffect::Irreversible => "irreversible",
        }
    }
}

/// How a rollback reverses the action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
pub enum Undo {
    /// Nothing to reverse.
    NotNeeded,
    /// Write back the object state recorded in the journal before the step.
    RestoreRecorded,
    /// Run another action.
    Action(&'static str),
    /// Cannot be reversed; says why.
    None(&'static str),
}

impl Undo {
    /// How a person reads it: "undo: ...", "no undo: why".
    pub fn describe(self) -> String {
        match self {
            Undo::NotNeeded => "nothing to undo".to_string(),
            Undo::RestoreRecorded => "undo: put back the recorded state".to_string(),
            Undo::Action(action) => format!("undo: {action}"),
            Undo::None(why) => format!("no undo: {why}"),
        }
    }
}

/// A named value an action produces for later steps.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Output {
    pub name: &'static str,
    /// Sensitive outputs (tokens) may only feed secret inputs and are never journaled.
    pub sensitive: bool,
    pub description: &'static str,
}

/// Everything the compiler and executor need to know about one action.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ActionSpec {
    pub name: &'static str,
    pub summary: &'static str,
    pub target: TargetRequirement,
    pub side_effect: SideEffect,
    pub undo: Undo,
    pub outputs: &'static [Output],
    /// Top-level inputs typed `SecretRef`.
    pub secret_inputs: &'static [&'static str],
    /// Top-level inputs that name another target, with the kind they need.
    pub target_inputs: &'static [(&'static str, TargetRequirement)],
    /// Where the seed procedure (`vault-aks-migration.md`) does this.
    pub chapter: &'static str,
}

/// An action's catalog line: its [`ActionSpec`] but the name, which the schema's catalog gives.
pub struct Line {
    pub summary: &'static str,
    pub target: TargetRequirement,
    pub side_effect: SideEffect,
    pub undo: Undo,
    pub outputs: &'static [Output],
    pub secret_inputs: &'static [&'static str],
    pub target_inputs: &'static [(&'static str, TargetRequirement)],
    pub chapter: &'static str,
}

/// What one action means to planc, in one place: its catalog line, the objects it changes
/// (planned here once: the preview diffs them, planx records them before the step), and its
/// edits of those objects in a preview (the functions of [`crate::edit`] planx applies live).
/// Actions that change no object keep the defaults.
pub trait Action: Sync {
    fn line(&self) -> Line;

    /// The objects a step of this action changes, from its checked inputs (`None`: none, or
    /// inputs of another shape).
    fn writes(&self, _plan: &CompiledPlan, _on: &str, _inputs: &Value) -> Option<Vec<Written>> {
        None
    }

    /// The step's changes to the objects of a preview, in order; notes say what is known only
    /// when the step runs.
    fn preview(
        &self,
        _run: &mut PreviewRun<'_>,
        _step: &CompiledStep,
        _notes: &mut Vec<String>,
    ) -> Result<Vec<Change>, Box<Diagnostic>> {
        Ok(Vec::new())
    }

    /// What a step of this action (and its undo) asks of the Kubernetes API, per kubernetes
    /// target id: by default [`crate::permissions::default_access`] (a Vault target's pods
    /// reached; every object it changes read, written or deleted).
    fn access(&self, plan: &CompiledPlan, step: &CompiledStep) -> Vec<(String, Access)> {
        crate::permissions::default_access(plan, step, self)
    }

    /// What a step of this action establishes for the ordering lints, changed in `facts` (the
    /// facts before it): writes blocked, a Vault disabled or stepped down, a backup taken, a
    /// key withdrawn. `false` when it changes nothing. The one definition of "blocks writes"
    /// ([`crate::lints::writes_blocking_steps`]) reads what these say.
    fn establish(
        &self,
        _step: &CompiledStep,
        _position: usize,
        _index: &Index<'_>,
        _facts: &mut Facts,
    ) -> bool {
        false
    }
}

/// A plain (not sensitive) output, as a constant a catalog line can borrow for `'static`.
macro_rules! output {
    ($name:literal, $description:literal) => {
        $crate::catalog::Output {
            name: $name,
            sensitive: false,
            description: $description,
        }
    };
}
pub(crate) use output;

/// Where each action of the catalog lives: one line per action.
pub fn action(kind: ActionKind) -> &'static dyn Action {
    use crate::actions::{keys, kubernetes, preflight, raft, seals, vault};
    use ActionKind as A;
    match kind {
        A::PreflightCluster => &preflight::Cluster,
        A::PreflightReplicas => &preflight::Replicas,
        A::PreflightKeyAccess => &preflight::KeyAccess,
        A::PreflightRecoveryKeys => &preflight::RecoveryKeys,
        A::PreflightSealOverrides => &preflight::SealOverrides,
        A::PreflightRaftJoin => &raft::Preflight,
        A::TokenCreate => &vault::TokenCreate,
        A::TokenRevoke => &vault::TokenRevoke,
        A::Backup => &kubernetes::Backup,
        A::Delete => &kubernetes::Delete,
        A::Restore => &kubernetes::Restore,
        A::PatchArgs => &kubernetes::PatchArgs,
        A::ProxyService => &kubernetes::ProxyService,
        A::IngressRewrite => &kubernetes::IngressRewrite,
        A::Restart => &vault::Restart,
        A::BlockServices => &vault::BlockServices,
        A::SnapshotSave => &vault::SnapshotSave,
        A::SnapshotRestore => &vault::SnapshotRestore,
        A::SnapshotTransfer => &vault::SnapshotTransfer,
        A::SealPointAtKey => &seals::PointAtKey,
        A::SealDisableAndAdd => &seals::DisableAndAdd,
        A::SealRemoveDisabled => &seals::RemoveDisabled,
        A::Leader => &vault::Leader,
        A::SealMigrate => &seals::Migrate,
        A::StepDown => &vault::StepDown,
        A::RaftJoin => &raft::Join,
        A::RaftPromote => &raft::Promote,
        A::RaftRemovePeer => &raft::RemovePeer,
        A::Verify => &vault::Verify,
        A::KeysDisable => &keys::Disable,
    }
}

/// The spec of an action: its catalog line, named.
pub fn spec(kind: ActionKind) -> ActionSpec {
    let Line {
        summary,
        target,
        side_effect,
        undo,
        outputs,
        secret_inputs,
        target_inputs,
        chapter,
    } = action(kind).line();
    ActionSpec {
        name: kind.name(),
        summary,
        target,
        side_effect,
        undo,
        outputs,
        secret_inputs,
        target_inputs,
        chapter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The catalog's list of secret inputs must match the fields typed `SecretRef` in the schema.
    #[test]
    fn secret_inputs_match_the_schema_types() {
        let mut generator = schemars::SchemaGenerator::default();
        for &action in ActionKind::ALL {
            let schema = action.input_schema(&mut generator);
            let _ = schema;
        }
        let definitions = generator.take_definitions(true);
        for &action in ActionKind::ALL {
            let definition = &definitions[action.input_type_name()];
            let mut typed_secret: Vec<String> = definition["properties"]
                .as_object()
                .map(|props| {
                    props
                        .iter()
                        .filter(|(_, p)| p.to_string().contains("SecretRef"))
                        .map(|(k, _)| k.clone())
                        .collect()
                })
                .unwrap_or_default();
            typed_secret.sort();
            let mut declared: Vec<String> = spec(action)
                .secret_inputs
                .iter()
                .map(|s| s.to_string())
                .collect();
            declared.sort();
            assert_eq!(typed_secret, declared, "{}", action.name());
        }
    }
}
