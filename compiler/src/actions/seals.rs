//! `vault.seal-*`: the seal blocks of a Vault's configuration (pointed at another key, disabled
//! beside a new one, the disabled one removed) edited with [`crate::edit::seal`] inside the
//! ConfigMap that holds them, and a follower's seal migration.

use crate::permissions::{self, Access};
use planc_schema::actions::{SealDisableAndAddInput, SealPointAtKeyInput, SealRemoveDisabledInput};
use serde_json::Value;

use super::input;
use crate::catalog::{
    Action, Line,
    SideEffect::{Irreversible, Reversible},
    TargetRequirement::{KeyService, Vault},
    Undo,
};
use crate::diagnostic::Diagnostic;
use crate::edit::k8s;
use crate::edit::seal::{SealEdit, SealSelector};
use crate::expr::Resolved;
use crate::lints::{Facts, Index};
use crate::model::{CompiledPlan, CompiledStep};
use crate::preview::{Change, PreviewRun, Written};

/// `vault.seal-point-at-key`.
pub struct PointAtKey;

impl Action for PointAtKey {
    fn line(&self) -> Line {
        Line {
            summary: "point a seal block of the Vault configuration at another key",
            target: Vault,
            side_effect: Reversible,
            undo: Undo::RestoreRecorded,
            outputs: &[],
            secret_inputs: &["client_secret"],
            target_inputs: &[("key_service", KeyService)],
            chapter: "6",
        }
    }

    fn writes(&self, plan: &CompiledPlan, on: &str, _inputs: &Value) -> Option<Vec<Written>> {
        configmap_of(plan, on)
    }

    fn preview(
        &self,
        run: &mut PreviewRun<'_>,
        step: &CompiledStep,
        _notes: &mut Vec<String>,
    ) -> Result<Vec<Change>, Box<Diagnostic>> {
        let input: SealPointAtKeyInput = input(step);
        let attributes = key_attributes(run, step, &input.key_service, &input.attributes);
        seal_edit(
            run,
            step,
            SealEdit::PointAtKey {
                selector: selector(&input.seal),
                attributes,
            },
        )
    }
}

/// `vault.seal-disable-and-add`.
pub struct DisableAndAdd;

impl Action for DisableAndAdd {
    fn line(&self) -> Line {
        Line {
            summary: "mark a seal block disabled and add one for another key beside it",
            target: Vault,
            side_effect: Reversible,
            undo: Undo::RestoreRecorded,
            outputs: &[],
            secret_inputs: &["client_secret"],
            target_inputs: &[("key_service", KeyService)],
            chapter: "7",
        }
    }

    fn writes(&self, plan: &CompiledPlan, on: &str, _inputs: &Value) -> Option<Vec<Written>> {
        configmap_of(plan, on)
    }

    fn preview(
        &self,
        run: &mut PreviewRun<'_>,
        step: &CompiledStep,
        _notes: &mut Vec<String>,
    ) -> Result<Vec<Change>, Box<Diagnostic>> {
        let input: SealDisableAndAddInput = input(step);
        let attributes = key_attributes(run, step, &input.key_service, &input.attributes);
        let new_type = run
            .plan()
            .targets
            .get(&input.key_service)
            .map(|t| t.kind.name().to_string())
            .unwrap_or_default();
        seal_edit(
            run,
            step,
            SealEdit::DisableAndAdd {
                selector: selector(&input.seal),
                new_type,
                new_name: input.name.clone(),
                attributes,
            },
        )
    }

    /// A new seal migration begins: what the last one established is history.
    fn establish(
        &self,
        step: &CompiledStep,
        _position: usize,
        _index: &Index<'_>,
        facts: &mut Facts,
    ) -> bool {
        facts
            .vaults
            .entry(step.on.clone())
            .or_default()
            .begin_seal_migration();
        true
    }
}

/// `vault.seal-remove-disabled`.
pub struct RemoveDisabled;

impl Action for RemoveDisabled {
    fn line(&self) -> Line {
        Line {
            summary: "remove the disabled seal block",
            target: Vault,
            side_effect: Reversible,
            undo: Undo::RestoreRecorded,
            outputs: &[],
            secret_inputs: &[],
            target_inputs: &[],
            chapter: "10",
        }
    }

    fn writes(&self, plan: &CompiledPlan, on: &str, _inputs: &Value) -> Option<Vec<Written>> {
        configmap_of(plan, on)
    }

    fn preview(
        &self,
        run: &mut PreviewRun<'_>,
        step: &CompiledStep,
        _notes: &mut Vec<String>,
    ) -> Result<Vec<Change>, Box<Diagnostic>> {
        let input: SealRemoveDisabledInput = input(step);
        seal_edit(
            run,
            step,
            SealEdit::RemoveDisabled {
                selector: input.seal.as_ref().map(selector),
            },
        )
    }

    fn establish(
        &self,
        step: &CompiledStep,
        _position: usize,
        _index: &Index<'_>,
        facts: &mut Facts,
    ) -> bool {
        facts
            .vaults
            .entry(step.on.clone())
            .or_default()
            .remove_disabled_seal();
        true
    }
}

/// `vault.seal-migrate`.
pub struct Migrate;

impl Action for Migrate {
    fn line(&self) -> Line {
        Line {
            summary: "restart a follower into seal migration and unseal it with the recovery keys",
            target: Vault,
            side_effect: Irreversible,
            undo: Undo::None(
                "the node runs the migration configuration; roll back to the source instead",
            ),
            outputs: &[],
            secret_inputs: &["recovery_keys"],
            target_inputs: &[],
            chapter: "8",
        }
    }

    /// The follower restarted.
    fn access(&self, plan: &CompiledPlan, step: &CompiledStep) -> Vec<(String, Access)> {
        permissions::pod_restarts(plan, &step.on)
    }
}

/// The ConfigMap that holds a vault target's configuration: what every seal edit changes.
fn configmap_of(plan: &CompiledPlan, on: &str) -> Option<Vec<Written>> {
    let vault = plan.targets.get(on)?.vault()?;
    Some(vec![Written::new(
        vault.cluster,
        "ConfigMap",
        vault.configmap,
    )])
}

/// The seal attributes that point at a key service, then the extra ones.
fn key_attributes(
    run: &PreviewRun<'_>,
    step: &CompiledStep,
    key_service: &str,
    extra: &indexmap::IndexMap<String, String>,
) -> Vec<(String, String)> {
    let target = run.target(key_service);
    let mut attributes: Vec<(String, String)> = crate::edit::seal::key_attributes(target.kind)
        .iter()
        .filter_map(|name| {
            let value = match target.attributes.get(*name)? {
                Resolved::Str(text) => text.clone(),
                Resolved::Secret { param, .. } => format!("<secret {param}>"),
                other => other.to_json().to_string(),
            };
            Some((name.to_string(), value))
        })
        .collect();
    attributes.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    if let Some(Resolved::Secret { param, reference }) = step.with.get("client_secret")
        && reference != crate::params::NO_SECRET
    {
        attributes.push(("client_secret".to_string(), format!("<secret {param}>")));
    }
    attributes
}

/// Apply a seal edit to the configuration key of the vault target's ConfigMap.
fn seal_edit(
    run: &mut PreviewRun<'_>,
    step: &CompiledStep,
    edit: SealEdit,
) -> Result<Vec<Change>, Box<Diagnostic>> {
    // Lowering refuses a seal step on another kind of target.
    let Some(vault) = run.target(&step.on).vault() else {
        return Ok(Vec::new());
    };
    let config_key = vault.config_key.to_string();
    let key = run.written(step, 0)?;
    let before = run.read(step, &key)?;
    let text =
        k8s::configmap_value(&before, &config_key).map_err(|e| run.impossible(step, &key, &e.0))?;
    let edited = crate::edit::seal::apply(text, &edit)
        .map_err(|e| run.impossible(step, &key, &format!("in key `{config_key}`: {}", e.0)))?;
    let after = k8s::set_configmap_value(&before, &config_key, &edited)
        .map_err(|e| run.impossible(step, &key, &e.0))?;
    Ok(vec![run.write(key, after)])
}

/// The edit's selector from the plan's (an empty name selects by type alone).
fn selector(seal: &planc_schema::actions::SealSelector) -> SealSelector {
    SealSelector {
        seal_type: seal.seal_type.clone(),
        name: seal.name.clone().filter(|n| !n.is_empty()),
    }
}
