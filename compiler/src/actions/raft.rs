//! `vault.raft-*`: raft membership across two Vaults, the live move's actions (a Vault's pods
//! join another's raft cluster, are promoted to voters, and the other's peers are removed).

use crate::catalog::{
    Action, Line,
    SideEffect::{Irreversible, ReadOnly, Reversible},
    TargetRequirement::Vault,
    Undo, output,
};
use crate::expr::Resolved;
use crate::lints::{Facts, Index, text};
use crate::model::{CompiledPlan, CompiledStep};
use crate::permissions::{self, Access};

/// `preflight.raft-join`.
pub struct Preflight;

impl Action for Preflight {
    fn line(&self) -> Line {
        Line {
            summary: "check, before anything changes, that this Vault's pods can join another Vault's raft cluster: no retry_join, every pod uninitialised, no pod mistaken for one of its peers, every peer's API and cluster ports reached from each pod, and an https join address named by the active node's API certificate, which chains to the `leader_ca_cert` given",
            target: Vault,
            side_effect: ReadOnly,
            undo: Undo::NotNeeded,
            outputs: &[output!(
                "leader_api_addr",
                "the API address the joined cluster's active node advertises, which the pods must reach"
            )],
            secret_inputs: &["token"],
            target_inputs: &[("to", Vault)],
            chapter: "live",
        }
    }

    /// Its pods reached, and `nc -z` run in each (exec).
    fn access(&self, plan: &CompiledPlan, step: &CompiledStep) -> Vec<(String, Access)> {
        let mut access = permissions::vault_pods(plan, &step.on);
        if let Some((cluster, _)) = access.first().cloned() {
            access.push((cluster, Access::on_pods("create", "exec")));
        }
        access
    }
}

/// `vault.raft-join`.
pub struct Join;

impl Action for Join {
    fn line(&self) -> Line {
        Line {
            summary: "join every pod of this uninitialised Vault to another Vault's raft cluster as a non-voter, and wait until each has unsealed and caught up",
            target: Vault,
            side_effect: Reversible,
            undo: Undo::Action("vault.raft-remove-peer"),
            outputs: &[output!(
                "nodes",
                "the raft node ids of the pods that joined, in pod order"
            )],
            secret_inputs: &["token"],
            target_inputs: &[("to", Vault)],
            chapter: "live",
        }
    }

    /// The Vault joined now shares its raft cluster with this one.
    fn establish(
        &self,
        step: &CompiledStep,
        _position: usize,
        _index: &Index<'_>,
        facts: &mut Facts,
    ) -> bool {
        let Some(to) = text(step, "to") else {
            return false;
        };
        facts.vaults.entry(to.to_string()).or_default().raft_joined = true;
        true
    }
}

/// `vault.raft-promote`.
pub struct Promote;

impl Action for Promote {
    fn line(&self) -> Line {
        Line {
            summary: "make one pod's node a voter of the raft cluster it joined",
            target: Vault,
            side_effect: Reversible,
            undo: Undo::NotNeeded,
            outputs: &[],
            secret_inputs: &["token"],
            target_inputs: &[],
            chapter: "live",
        }
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
            .raft_promoted = true;
        true
    }
}

/// `vault.raft-remove-peer`.
pub struct RemovePeer;

impl Action for RemovePeer {
    fn line(&self) -> Line {
        Line {
            summary: "take one pod's node out of the raft cluster (refused while it is the active node)",
            target: Vault,
            side_effect: Irreversible,
            undo: Undo::None(
                "a removed node must be stopped and wiped before it can join again; the remaining voters keep the data",
            ),
            outputs: &[],
            secret_inputs: &["token"],
            target_inputs: &[],
            chapter: "live",
        }
    }

    /// A `vault.leader`'s `leader` removes the former leader; anything else (`{{ item }}` over
    /// its followers, a pod by name) a standby.
    fn establish(
        &self,
        step: &CompiledStep,
        _position: usize,
        _index: &Index<'_>,
        facts: &mut Facts,
    ) -> bool {
        let entry = facts.vaults.entry(step.on.clone()).or_default();
        if removes_leader(step) {
            entry.raft_leader_removed = true;
        } else {
            entry.raft_followers_removed = true;
        }
        true
    }
}

/// Whether a `vault.raft-remove-peer` step names a `vault.leader` step's `leader`.
pub(crate) fn removes_leader(step: &CompiledStep) -> bool {
    matches!(step.with.get("pod"), Some(Resolved::StepOutput { output, .. }) if output == "leader")
}
