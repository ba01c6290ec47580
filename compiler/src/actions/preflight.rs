//! `preflight.*`: the read-only checks before any change (cluster, replicas, key access,
//! recovery keys, seal overrides).

use crate::catalog::{Action, Line, SideEffect::ReadOnly, TargetRequirement::*, Undo, output};
use crate::model::{CompiledPlan, CompiledStep};
use crate::permissions::{self, Access};

/// `preflight.cluster`.
pub struct Cluster;

impl Action for Cluster {
    fn line(&self) -> Line {
        Line {
            summary: "check that the context answers, the namespace is readable, the API groups are served, and the credentials may do everything the plan and its rollback do there",
            target: Kubernetes,
            side_effect: ReadOnly,
            undo: Undo::NotNeeded,
            outputs: &[
                output!("server_version", "the API server's version"),
                output!(
                    "permissions_checked",
                    "how many verbs on resources were asked (SelfSubjectAccessReview)"
                ),
            ],
            secret_inputs: &[],
            target_inputs: &[],
            chapter: "1.3-1.4",
        }
    }

    /// The namespace read (through a ConfigMap that need not exist).
    fn access(&self, _plan: &CompiledPlan, step: &CompiledStep) -> Vec<(String, Access)> {
        permissions::on(&step.on, "ConfigMap", &["get"])
    }
}

/// `preflight.replicas`.
pub struct Replicas;

impl Action for Replicas {
    fn line(&self) -> Line {
        Line {
            summary: "check that the install is the one the target describes (the StatefulSet and its container, the raft data path on a persistent volume, the active Service on the server's status label) with the expected available replicas, and that its server is a supported Vault or OpenBao",
            target: Vault,
            side_effect: ReadOnly,
            undo: Undo::NotNeeded,
            outputs: &[
                output!("available", "available replicas"),
                output!(
                    "server",
                    "the product and version the server reports, e.g. `OpenBao 2.7.2`"
                ),
            ],
            secret_inputs: &[],
            target_inputs: &[],
            chapter: "1.5",
        }
    }

    /// The StatefulSet and the active Service read, pod 0 reached.
    fn access(&self, plan: &CompiledPlan, step: &CompiledStep) -> Vec<(String, Access)> {
        let mut access = vault_objects_read(plan, step, &["StatefulSet", "Service"]);
        access.extend(permissions::vault_pods(plan, &step.on));
        access
    }
}

/// `preflight.key-access`.
pub struct KeyAccess;

impl Action for KeyAccess {
    fn line(&self) -> Line {
        Line {
            summary: "check that the Vault identity can wrap and unwrap with the key",
            target: KeyService,
            side_effect: ReadOnly,
            undo: Undo::NotNeeded,
            outputs: &[],
            secret_inputs: &[],
            target_inputs: &[],
            chapter: "1.6",
        }
    }
}

/// `preflight.recovery-keys`.
pub struct RecoveryKeys;

impl Action for RecoveryKeys {
    fn line(&self) -> Line {
        Line {
            summary: "prove that the recovery keys open the Vault (a root token generated and revoked at once)",
            target: Vault,
            side_effect: ReadOnly,
            undo: Undo::NotNeeded,
            outputs: &[],
            secret_inputs: &["recovery_keys", "token"],
            target_inputs: &[],
            chapter: "8",
        }
    }
}

/// `preflight.seal-overrides`.
pub struct SealOverrides;

impl Action for SealOverrides {
    fn line(&self) -> Line {
        Line {
            summary: "check that the container starts with its seal: no environment variable moves the key or contradicts the identity, the server has the seal, no seal secret is unknown to the plan",
            target: Vault,
            side_effect: ReadOnly,
            undo: Undo::NotNeeded,
            outputs: &[output!(
                "identity_from_env",
                "the identity variables that only supply what the seal block leaves out"
            )],
            secret_inputs: &[],
            target_inputs: &[],
            chapter: "1",
        }
    }

    /// The StatefulSet and the configuration read (the ConfigMaps and Secrets its `envFrom`
    /// may name are known only when the step runs, which then says which one it could not read).
    fn access(&self, plan: &CompiledPlan, step: &CompiledStep) -> Vec<(String, Access)> {
        vault_objects_read(plan, step, &["StatefulSet", "ConfigMap"])
    }
}

/// `get` on `kinds` in the cluster a Vault target runs in.
fn vault_objects_read(
    plan: &CompiledPlan,
    step: &CompiledStep,
    kinds: &[&str],
) -> Vec<(String, Access)> {
    let Some(vault) = plan.targets.get(&step.on).and_then(|t| t.vault()) else {
        return Vec::new();
    };
    kinds
        .iter()
        .flat_map(|kind| permissions::on(vault.cluster, kind, &["get"]))
        .collect()
}
