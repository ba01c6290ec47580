//! What each action of the closed catalog is: the target kind it runs on, its side-effect class,
//! its undo, its named outputs, which inputs are secrets or name targets, and the chapter of the
//! seed procedure it automates.

use planc_schema::ActionKind;
use planc_schema::plan::TargetKind;
use serde::Serialize;

/// The policy of the tokens `vault.token-create` makes: exactly what a migration needs
/// (snapshot, snapshot-force, step-down, raft configuration, revoking itself), nothing else; the
/// tokens get no `default` policy.
pub const MIGRATION_POLICY: &str = r#"path "sys/step-down"                   { capabilities = ["update", "sudo"] }
path "sys/storage/raft/snapshot"       { capabilities = ["read"] }
path "sys/storage/raft/snapshot-force" { capabilities = ["update"] }
path "sys/storage/raft/configuration"  { capabilities = ["read"] }
path "auth/token/revoke-self"          { capabilities = ["update"] }
"#;

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

/// A plain (not sensitive) output, as a constant the catalog's tables can borrow for `'static`.
macro_rules! output {
    ($name:literal, $description:literal) => {
        Output {
            name: $name,
            sensitive: false,
            description: $description,
        }
    };
}

/// One row of the catalog table, in the order of [`ActionSpec`]'s fields after the name.
type Row = (
    &'static str,
    TargetRequirement,
    SideEffect,
    Undo,
    &'static [Output],
    &'static [&'static str],
    &'static [(&'static str, TargetRequirement)],
    &'static str,
);

pub fn spec(action: ActionKind) -> ActionSpec {
    use ActionKind as A;
    use SideEffect::*;
    use TargetRequirement::*;
    let (summary, target, side_effect, undo, outputs, secret_inputs, target_inputs, chapter): Row =
        match action {
            A::PreflightCluster => (
                "check that the context answers, the namespace is readable and the API groups are served",
                Kubernetes,
                ReadOnly,
                Undo::NotNeeded,
                &[output!("server_version", "the API server's version")],
                &[],
                &[],
                "1.3-1.4",
            ),
            A::PreflightReplicas => (
                "check that the Vault StatefulSet has the expected available replicas",
                Vault,
                ReadOnly,
                Undo::NotNeeded,
                &[output!("available", "available replicas")],
                &[],
                &[],
                "1.5",
            ),
            A::PreflightKeyAccess => (
                "check that the Vault identity can wrap and unwrap with the key",
                KeyService,
                ReadOnly,
                Undo::NotNeeded,
                &[],
                &[],
                &[],
                "1.6",
            ),
            A::PreflightRecoveryKeys => (
                "prove that the recovery keys open the Vault (a root token generated and revoked at once)",
                Vault,
                ReadOnly,
                Undo::NotNeeded,
                &[],
                &["recovery_keys", "token"],
                &[],
                "8",
            ),
            A::PreflightSealOverrides => (
                "check that no container environment variable overrides the seal configuration",
                Vault,
                ReadOnly,
                Undo::NotNeeded,
                &[],
                &[],
                &[],
                "1",
            ),
            A::TokenCreate => (
                "create an orphan token with the least-privilege migration policy",
                Vault,
                Reversible,
                Undo::Action("vault.token-revoke"),
                &[
                    Output {
                        name: "token",
                        sensitive: true,
                        description: "the migration token (sensitive, held in memory only)",
                    },
                    output!("accessor", "the token's accessor, journaled for revocation"),
                ],
                &["admin_token"],
                &[],
                "2",
            ),
            A::TokenRevoke => (
                "revoke a token",
                Vault,
                Irreversible,
                Undo::None("a revoked token cannot be restored; create a new one"),
                &[],
                &["token"],
                &[],
                "end",
            ),
            A::Backup => (
                "store an object, cleaned of server fields, in the run directory",
                Kubernetes,
                ReadOnly,
                Undo::NotNeeded,
                &[output!("backup", "path of the backup in the run directory")],
                &[],
                &[],
                "3",
            ),
            A::Delete => (
                "delete an object and wait until it is gone",
                Kubernetes,
                Reversible,
                Undo::RestoreRecorded,
                &[],
                &[],
                &[],
                "3",
            ),
            A::Restore => (
                "write a backed-up object back",
                Kubernetes,
                Reversible,
                Undo::RestoreRecorded,
                &[],
                &[],
                &[],
                "restore",
            ),
            A::PatchArgs => (
                "set the args of a StatefulSet's container",
                Kubernetes,
                Reversible,
                Undo::RestoreRecorded,
                &[],
                &[],
                &[],
                "4.4",
            ),
            A::ProxyService => (
                "create a selectorless Service and an EndpointSlice to the address of a DNS name",
                Kubernetes,
                Reversible,
                Undo::RestoreRecorded,
                &[output!("address", "the IPv4 address the name resolved to")],
                &[],
                &[],
                "12",
            ),
            A::IngressRewrite => (
                "send an Ingress to another backend service",
                Kubernetes,
                Reversible,
                Undo::RestoreRecorded,
                &[],
                &[],
                &[],
                "13",
            ),
            A::Restart => (
                "delete pods with a uid precondition and wait for them to come back",
                Vault,
                Reversible,
                Undo::NotNeeded,
                &[],
                &[],
                &[],
                "4, 6, 11",
            ),
            A::SnapshotSave => (
                "stream a raft snapshot from the active node to the run directory",
                Vault,
                ReadOnly,
                Undo::NotNeeded,
                &[
                    output!("snapshot", "path of the snapshot in the run directory"),
                    output!("sha256", "SHA-256 of the snapshot"),
                    output!("bytes", "size of the snapshot"),
                ],
                &["token"],
                &[],
                "4.1-4.3",
            ),
            A::SnapshotRestore => (
                "stream a snapshot into snapshot-force and wait until every node reports sealed",
                Vault,
                Irreversible,
                Undo::None("the target's previous raft data is replaced"),
                &[],
                &["token"],
                &[],
                "5",
            ),
            A::SealPointAtKey => (
                "point a seal block of the Vault configuration at another key",
                Vault,
                Reversible,
                Undo::RestoreRecorded,
                &[],
                &[],
                &[("key_service", KeyService)],
                "6",
            ),
            A::SealDisableAndAdd => (
                "mark a seal block disabled and add one for another key beside it",
                Vault,
                Reversible,
                Undo::RestoreRecorded,
                &[],
                &[],
                &[("key_service", KeyService)],
                "7",
            ),
            A::SealRemoveDisabled => (
                "remove the disabled seal block",
                Vault,
                Reversible,
                Undo::RestoreRecorded,
                &[],
                &[],
                &[],
                "10",
            ),
            A::Leader => (
                "look up the active node and the standbys",
                Vault,
                ReadOnly,
                Undo::NotNeeded,
                &[
                    output!("leader", "the active pod"),
                    output!("followers", "the standby pods, in ordinal order"),
                ],
                &[],
                &[],
                "8",
            ),
            A::SealMigrate => (
                "restart a follower into seal migration and unseal it with the recovery keys",
                Vault,
                Irreversible,
                Undo::None(
                    "the node runs the migration configuration; roll back to the source instead",
                ),
                &[],
                &["recovery_keys"],
                &[],
                "8",
            ),
            A::StepDown => (
                "step the active node down and wait for a leader that finished the seal migration",
                Vault,
                Irreversible,
                Undo::None("the barrier keys are now wrapped by the new key"),
                &[output!("leader", "the new active pod")],
                &["token"],
                &[],
                "9",
            ),
            A::Verify => (
                "log in through each URL and list the mounts",
                Vault,
                ReadOnly,
                Undo::NotNeeded,
                &[],
                &["token"],
                &[],
                "14",
            ),
            A::KeysDisable => (
                "withdraw the Vault identity's access to a key service",
                KeyService,
                Irreversible,
                Undo::None("grant the access again by hand"),
                &[output!(
                    "summary",
                    "what was withdrawn, or that nothing was left to withdraw"
                )],
                &[],
                &[],
                "after 14",
            ),
        };
    ActionSpec {
        name: action.name(),
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
