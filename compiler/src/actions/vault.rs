//! `vault.*` outside the seal edits: migration tokens, the client Services blocked, restarts,
//! raft snapshots, the leader, step-down and verification.

use crate::catalog::{
    Action, Line, Output,
    SideEffect::{Irreversible, ReadOnly, Reversible},
    TargetRequirement::Vault,
    Undo, output,
};
use crate::permissions::{self, Access};
use serde_json::Value;

use crate::diagnostic::Diagnostic;
use crate::edit::k8s;
use crate::lints::{Facts, Index, text};
use crate::model::{CompiledPlan, CompiledStep};
use crate::preview::{Change, PreviewRun, Written};

/// The policy of the tokens `vault.token-create` makes: exactly what a migration needs
/// (snapshot, snapshot-force, step-down, raft configuration and membership, revoking itself),
/// nothing else; the
/// tokens get no `default` policy.
pub const MIGRATION_POLICY: &str = r#"path "sys/step-down"                   { capabilities = ["update", "sudo"] }
path "sys/storage/raft/snapshot"       { capabilities = ["read"] }
path "sys/storage/raft/snapshot-force" { capabilities = ["update"] }
path "sys/storage/raft/configuration"  { capabilities = ["read"] }
path "sys/storage/raft/promote"        { capabilities = ["update"] }
path "sys/storage/raft/remove-peer"    { capabilities = ["update"] }
path "auth/token/revoke-self"          { capabilities = ["update"] }
"#;

/// `vault.token-create`.
pub struct TokenCreate;

impl Action for TokenCreate {
    fn line(&self) -> Line {
        Line {
            summary: "create an orphan token with the least-privilege migration policy",
            target: Vault,
            side_effect: Reversible,
            undo: Undo::Action("vault.token-revoke"),
            outputs: &[
                Output {
                    name: "token",
                    sensitive: true,
                    description: "the migration token (sensitive, held in memory only)",
                },
                output!("accessor", "the token's accessor, journaled for revocation"),
            ],
            secret_inputs: &["admin_token"],
            target_inputs: &[],
            chapter: "2",
        }
    }
}

/// `vault.token-revoke`.
pub struct TokenRevoke;

impl Action for TokenRevoke {
    fn line(&self) -> Line {
        Line {
            summary: "revoke a token",
            target: Vault,
            side_effect: Irreversible,
            undo: Undo::None("a revoked token cannot be restored; create a new one"),
            outputs: &[],
            secret_inputs: &["token"],
            target_inputs: &[],
            chapter: "end",
        }
    }
}

/// `vault.block-services`: the Vault's client Services without selectors. With the Ingress
/// deleted, every path clients use is blocked.
pub struct BlockServices;

impl Action for BlockServices {
    fn line(&self) -> Line {
        Line {
            summary: "take the selectors off the Vault's client Services, so in-cluster clients reach no pod",
            target: Vault,
            side_effect: Reversible,
            undo: Undo::RestoreRecorded,
            outputs: &[],
            secret_inputs: &[],
            target_inputs: &[],
            chapter: "3",
        }
    }

    fn writes(&self, plan: &CompiledPlan, on: &str, _inputs: &Value) -> Option<Vec<Written>> {
        let vault = plan.targets.get(on)?.vault()?;
        Some(
            vault
                .client_services()
                .map(|name| Written::new(vault.cluster, "Service", name))
                .collect(),
        )
    }

    fn preview(
        &self,
        run: &mut PreviewRun<'_>,
        step: &CompiledStep,
        _notes: &mut Vec<String>,
    ) -> Result<Vec<Change>, Box<Diagnostic>> {
        let services = self
            .writes(run.plan(), &step.on, &Value::Null)
            .unwrap_or_default();
        let mut changes = Vec::new();
        for service in services {
            let key = run.key(step, &service.target, &service.kind, &service.name)?;
            let before = run.read(step, &key)?;
            let after =
                k8s::without_selector(&before).map_err(|e| run.impossible(step, &key, &e.0))?;
            changes.push(run.write(key, after));
        }
        Ok(changes)
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
            .block_services();
        true
    }
}

/// `vault.restart`.
pub struct Restart;

impl Action for Restart {
    fn line(&self) -> Line {
        Line {
            summary: "delete pods with a uid precondition and wait for them to come back",
            target: Vault,
            side_effect: Reversible,
            undo: Undo::NotNeeded,
            outputs: &[],
            secret_inputs: &[],
            target_inputs: &[],
            chapter: "4, 6, 11",
        }
    }

    /// Its pods deleted and watched until they are back.
    fn access(&self, plan: &CompiledPlan, step: &CompiledStep) -> Vec<(String, Access)> {
        permissions::pod_restarts(plan, &step.on)
    }

    /// A restart after args that run `sleep` disables the Vault and blocks its writes (its
    /// followers alone leave the active node serving).
    fn establish(
        &self,
        step: &CompiledStep,
        _position: usize,
        _index: &Index<'_>,
        facts: &mut Facts,
    ) -> bool {
        let entry = facts.vaults.entry(step.on.clone()).or_default();
        if entry.args_sleep && text(step, "pods") != Some("followers") {
            entry.disabled = true;
            // After a live move its data is served by the nodes that joined its raft cluster.
            entry.writes_blocked |= !(entry.raft_joined && entry.raft_leader_removed);
        }
        entry.restart();
        true
    }
}

/// `vault.snapshot-save`.
pub struct SnapshotSave;

impl Action for SnapshotSave {
    fn line(&self) -> Line {
        Line {
            summary: "stream a raft snapshot from the active node to the run directory",
            target: Vault,
            side_effect: ReadOnly,
            undo: Undo::NotNeeded,
            outputs: &[
                output!("snapshot", "path of the snapshot in the run directory"),
                output!("sha256", "SHA-256 of the snapshot"),
                output!("bytes", "size of the snapshot"),
            ],
            secret_inputs: &["token"],
            target_inputs: &[],
            chapter: "4.1-4.3",
        }
    }
}

/// `vault.snapshot-restore`.
pub struct SnapshotRestore;

impl Action for SnapshotRestore {
    fn line(&self) -> Line {
        Line {
            summary: "stream a snapshot into snapshot-force and wait until every node reports sealed",
            target: Vault,
            side_effect: Irreversible,
            undo: Undo::None("the target's previous raft data is replaced"),
            outputs: &[],
            secret_inputs: &["token"],
            target_inputs: &[],
            chapter: "5",
        }
    }
}

/// `vault.snapshot-transfer`.
pub struct SnapshotTransfer;

impl Action for SnapshotTransfer {
    fn line(&self) -> Line {
        Line {
            summary: "stream a raft snapshot from another Vault straight into snapshot-force, keeping a hashed copy",
            target: Vault,
            side_effect: Irreversible,
            undo: Undo::None("the target's previous raft data is replaced"),
            outputs: &[
                output!("snapshot", "path of the copy in the run directory"),
                output!("sha256", "SHA-256 of the snapshot"),
                output!("bytes", "size of the snapshot"),
            ],
            secret_inputs: &["source_token", "token"],
            target_inputs: &[("from", Vault)],
            chapter: "4-5",
        }
    }

    /// The source gave its data away: it must be disabled afterwards (L107).
    fn establish(
        &self,
        step: &CompiledStep,
        _position: usize,
        _index: &Index<'_>,
        facts: &mut Facts,
    ) -> bool {
        let Some(source) = crate::lints::text(step, "from") else {
            return false;
        };
        facts
            .vaults
            .entry(source.to_string())
            .or_default()
            .transferred_out = true;
        true
    }
}

/// `vault.leader`.
pub struct Leader;

impl Action for Leader {
    fn line(&self) -> Line {
        Line {
            summary: "look up the active node and the standbys",
            target: Vault,
            side_effect: ReadOnly,
            undo: Undo::NotNeeded,
            outputs: &[
                output!("leader", "the active pod"),
                output!("followers", "the standby pods, in ordinal order"),
            ],
            secret_inputs: &[],
            target_inputs: &[],
            chapter: "8",
        }
    }
}

/// `vault.step-down`.
pub struct StepDown;

impl Action for StepDown {
    fn line(&self) -> Line {
        Line {
            summary: "step the active node down and wait for a leader that finished the seal migration",
            target: Vault,
            side_effect: Irreversible,
            undo: Undo::None("the barrier keys are now wrapped by the new key"),
            outputs: &[output!("leader", "the new active pod")],
            secret_inputs: &["token"],
            target_inputs: &[],
            chapter: "9",
        }
    }

    fn establish(
        &self,
        step: &CompiledStep,
        _position: usize,
        _index: &Index<'_>,
        facts: &mut Facts,
    ) -> bool {
        facts.vaults.entry(step.on.clone()).or_default().step_down();
        true
    }
}

/// `vault.verify`.
pub struct Verify;

impl Action for Verify {
    fn line(&self) -> Line {
        Line {
            summary: "log in through each URL and list the mounts",
            target: Vault,
            side_effect: ReadOnly,
            undo: Undo::NotNeeded,
            outputs: &[],
            secret_inputs: &["token"],
            target_inputs: &[],
            chapter: "14",
        }
    }
}
