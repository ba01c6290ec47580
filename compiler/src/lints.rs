//! The Vault ordering rules as compile-time lints (L101-L111): facts that steps establish
//! (writes blocked, source disabled, step-down done, ...) are propagated along the graph in
//! topological order, and each step is checked against the facts of its ancestors.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use indexmap::IndexMap;
use planc_schema::ActionKind;
use planc_schema::plan::TargetKind;

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::expr::Resolved;
use crate::graph::ExecutionGraph;
use crate::model::{CompiledPlan, CompiledStep, CompiledTarget};

/// What has happened to one Vault target before a step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VaultFacts {
    /// Its Ingress deleted: clients outside the cluster are blocked.
    pub(crate) ingress_blocked: bool,
    /// Its client Services without selectors: clients inside the cluster are blocked.
    pub(crate) services_blocked: bool,
    /// Every path blocked: the Ingress and the Services, or the Vault disabled.
    pub(crate) writes_blocked: bool,
    pub(crate) args_sleep: bool,
    pub(crate) disabled: bool,
    /// Seal migrations begun (`vault.seal-disable-and-add`) on the longest path here: the
    /// three facts below hold for the migration they name, so a plan may migrate twice.
    pub(crate) migration: u32,
    stepped_down_in: Option<u32>,
    disabled_seal_removed_in: Option<u32>,
    final_restart_in: Option<u32>,
    /// Its data streamed into another Vault (`vault.snapshot-transfer`).
    pub(crate) transferred_out: bool,
    /// Raft membership (`vault.raft-*`): another Vault's pods joined this one's raft cluster.
    pub(crate) raft_joined: bool,
    /// This Vault's pods joined another's raft cluster and were promoted to voters.
    pub(crate) raft_promoted: bool,
    /// This Vault's standbys (a `for_each` over `vault.leader`'s followers) removed from the raft
    /// cluster, and its former leader.
    pub(crate) raft_followers_removed: bool,
    pub(crate) raft_leader_removed: bool,
}

/// Everything known to have happened before a step (on every path to it). Each action says
/// what its steps establish ([`crate::catalog::Action::establish`]).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub(crate) vaults: HashMap<String, VaultFacts>,
    /// (kubernetes target, kind, name) of backed-up objects.
    pub(crate) backups: HashSet<(String, String, String)>,
    /// Key services disabled, with the step that did it.
    pub(crate) keys_disabled: HashMap<String, usize>,
}

impl VaultFacts {
    /// Its Ingress deleted.
    pub(crate) fn block_ingress(&mut self) {
        self.ingress_blocked = true;
        self.writes_blocked |= self.services_blocked;
    }

    /// Its client Services' selectors taken off.
    pub(crate) fn block_services(&mut self) {
        self.services_blocked = true;
        self.writes_blocked |= self.ingress_blocked;
    }

    /// A seal migration begins: the facts of the last one are history.
    pub(crate) fn begin_seal_migration(&mut self) {
        self.migration += 1;
    }

    /// The leader stepped down (in the current seal migration, if any).
    pub(crate) fn step_down(&mut self) {
        self.stepped_down_in = Some(self.migration);
    }

    pub(crate) fn remove_disabled_seal(&mut self) {
        self.disabled_seal_removed_in = Some(self.migration);
    }

    /// A restart after the disabled seal block was removed finishes the seal migration.
    pub(crate) fn restart(&mut self) {
        if self.disabled_seal_removed() {
            self.final_restart_in = Some(self.migration);
        }
    }

    pub(crate) fn stepped_down(&self) -> bool {
        self.stepped_down_in == Some(self.migration)
    }

    pub(crate) fn disabled_seal_removed(&self) -> bool {
        self.disabled_seal_removed_in == Some(self.migration)
    }

    pub(crate) fn final_restart(&self) -> bool {
        self.final_restart_in == Some(self.migration)
    }

    /// Some path clients use is blocked: the outage has begun.
    fn some_path_blocked(&self) -> bool {
        self.ingress_blocked || self.services_blocked || self.writes_blocked
    }
}

impl Facts {
    fn merge(&mut self, other: &Facts) {
        for (vault, facts) in &other.vaults {
            let entry = self.vaults.entry(vault.clone()).or_default();
            entry.ingress_blocked |= facts.ingress_blocked;
            entry.services_blocked |= facts.services_blocked;
            entry.writes_blocked |= facts.writes_blocked;
            entry.args_sleep |= facts.args_sleep;
            entry.disabled |= facts.disabled;
            entry.migration = entry.migration.max(facts.migration);
            entry.stepped_down_in = entry.stepped_down_in.max(facts.stepped_down_in);
            entry.disabled_seal_removed_in = entry
                .disabled_seal_removed_in
                .max(facts.disabled_seal_removed_in);
            entry.final_restart_in = entry.final_restart_in.max(facts.final_restart_in);
            entry.transferred_out |= facts.transferred_out;
            entry.raft_joined |= facts.raft_joined;
            entry.raft_promoted |= facts.raft_promoted;
            entry.raft_followers_removed |= facts.raft_followers_removed;
            entry.raft_leader_removed |= facts.raft_leader_removed;
        }
        self.backups.extend(other.backups.iter().cloned());
        for (key, step) in &other.keys_disabled {
            self.keys_disabled.entry(key.clone()).or_insert(*step);
        }
    }

    pub(crate) fn vault(&self, id: &str) -> VaultFacts {
        self.vaults.get(id).copied().unwrap_or_default()
    }
}

/// What the rules look up: vaults by the cluster they run in, steps by id.
pub struct Index<'a> {
    steps: &'a [CompiledStep],
    targets: &'a IndexMap<String, CompiledTarget>,
    vaults_by_cluster: HashMap<&'a str, Vec<&'a CompiledTarget>>,
    step_by_id: HashMap<&'a str, usize>,
    migrating_vaults: HashSet<&'a str>,
}

pub fn check(
    steps: &[CompiledStep],
    targets: &IndexMap<String, CompiledTarget>,
    graph: &ExecutionGraph,
    diagnostics: &mut Diagnostics,
) {
    // Sources of transfers, with the first transfer, and whether a later step disables them.
    let mut transferred: IndexMap<String, (usize, bool)> = IndexMap::new();
    propagate(steps, targets, graph, |index, position, before, after| {
        let step = &steps[position];
        for (vault, facts) in &after.vaults {
            if facts.transferred_out {
                let entry = transferred
                    .entry(vault.clone())
                    .or_insert((position, false));
                entry.1 |= facts.disabled;
            }
        }
        let mut found = Vec::new();
        check_step(step, position, index, before, &mut found);
        for diagnostic in found {
            if !step.allow.contains(&diagnostic.code) {
                diagnostics.push(diagnostic);
            }
        }
    });
    check_voter_parity(steps, targets, graph, diagnostics);
    for (source, (position, disabled)) in transferred {
        let step = &steps[position];
        if disabled || step.allow.contains(&Code::TransferSourceLeftRunning) {
            continue;
        }
        diagnostics.push(
            Diagnostic::new(
                Code::TransferSourceLeftRunning,
                step.span,
                format!("the data of `{source}` is transferred and `{source}` is never disabled afterwards"),
            )
            .with_help(format!(
                "after this step, patch `{source}`'s StatefulSet args to `sleep infinity` and restart its pods, so its lease revocations cannot diverge from the copy"
            )),
        );
    }
}

/// L111: the voters of each raft cluster a `vault.raft-join` links, counted from the joined
/// Vault's `replicas` through the membership steps in run order (a `for_each` over a
/// `vault.leader`'s followers removes `replicas - 1`): an even count may last for one
/// membership change, not two (an even count tolerates no more failures than one voter less).
/// A change whose count is known only at apply time stops the count for that cluster.
fn check_voter_parity(
    steps: &[CompiledStep],
    targets: &IndexMap<String, CompiledTarget>,
    graph: &ExecutionGraph,
    diagnostics: &mut Diagnostics,
) {
    let replicas = |id: &str| {
        targets
            .get(id)
            .and_then(CompiledTarget::vault)
            .map_or(3, |vault| i64::from(vault.replicas))
    };
    let mut cluster_of: HashMap<&str, &str> = HashMap::new();
    for step in steps.iter().filter(|s| s.action == ActionKind::RaftJoin) {
        if let Some(to) = text(step, "to") {
            cluster_of.insert(step.on.as_str(), to);
            cluster_of.insert(to, to);
        }
    }
    // Per cluster: the voters now, and the membership step after which the count became even.
    let mut counts: HashMap<&str, (i64, Option<usize>)> = cluster_of
        .values()
        .map(|&cluster| (cluster, (replicas(cluster), None)))
        .collect();
    for &position in &graph.order {
        let step = &steps[position];
        let sign = match step.action {
            ActionKind::RaftPromote => 1,
            ActionKind::RaftRemovePeer => -1,
            _ => continue,
        };
        let Some(&cluster) = cluster_of.get(step.on.as_str()) else {
            continue;
        };
        let items = match &step.for_each {
            None => Some(1),
            Some(Resolved::List(items)) => i64::try_from(items.len()).ok(),
            Some(Resolved::StepOutput {
                step: source,
                output,
            }) if output == "followers" => steps
                .iter()
                .find(|s| &s.id == source && s.action == ActionKind::Leader)
                .map(|leader| replicas(&leader.on) - 1),
            Some(_) => None,
        };
        let Some(items) = items else {
            counts.remove(cluster);
            continue;
        };
        let Some((voters, even_since)) = counts.get_mut(cluster) else {
            continue;
        };
        *voters += sign * items;
        if *voters % 2 != 0 {
            *even_since = None;
            continue;
        }
        match *even_since {
            Some(first) if !step.allow.contains(&Code::RaftVotersEven) => diagnostics.push(
                Diagnostic::new(
                    Code::RaftVotersEven,
                    step.span,
                    format!(
                        "the raft cluster of `{cluster}` still has an even number of voters ({}) after `{}` and this step",
                        *voters, steps[first].id
                    ),
                )
                .with_help("interleave promotions and removals so that each even count lasts for one change: for example promote two nodes, remove two standbys, then move leadership"),
            ),
            Some(_) => {}
            None => *even_since = Some(position),
        }
    }
}

/// The steps that block writes to a Vault: after each, some Vault all of whose paths were open
/// before has one blocked (its Ingress deleted, its client Services without selectors, or its
/// pods restarted into `sleep`): where the outage begins. The lints and planx's outage window
/// both use this one definition.
pub fn writes_blocking_steps(plan: &CompiledPlan) -> Vec<String> {
    let mut blocking = Vec::new();
    propagate(
        &plan.steps,
        &plan.targets,
        &plan.graph,
        |_, position, before, after| {
            let newly_blocked = after.vaults.iter().any(|(vault, facts)| {
                facts.some_path_blocked() && !before.vault(vault).some_path_blocked()
            });
            if newly_blocked {
                blocking.push(plan.steps[position].id.clone());
            }
        },
    );
    blocking
}

/// Walk the graph in order with the facts before and after each step.
fn propagate(
    steps: &[CompiledStep],
    targets: &IndexMap<String, CompiledTarget>,
    graph: &ExecutionGraph,
    mut visit: impl FnMut(&Index, usize, &Facts, &Facts),
) {
    let mut vaults_by_cluster: HashMap<&str, Vec<&CompiledTarget>> = HashMap::new();
    for target in targets.values() {
        if let Some(vault) = target.vault() {
            vaults_by_cluster
                .entry(vault.cluster)
                .or_default()
                .push(target);
        }
    }
    let index = Index {
        steps,
        targets,
        vaults_by_cluster,
        step_by_id: steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect(),
        migrating_vaults: steps
            .iter()
            .filter(|s| s.action == ActionKind::SealDisableAndAdd)
            .map(|s| s.on.as_str())
            .collect(),
    };
    let mut after: Vec<Option<Rc<Facts>>> = vec![None; steps.len()];
    let empty = Rc::new(Facts::default());
    for &position in &graph.order {
        let facts_before = match graph.deps[position].as_slice() {
            [] => empty.clone(),
            [single] => after[*single].clone().expect("dependencies come first"),
            many => {
                let mut merged = Facts::default();
                for &dep in many {
                    merged.merge(after[dep].as_ref().expect("dependencies come first"));
                }
                Rc::new(merged)
            }
        };
        let step = &steps[position];
        let mut changed = Facts::clone(&facts_before);
        let facts_after = if crate::catalog::action(step.action).establish(
            step,
            position,
            &index,
            &mut changed,
        ) {
            Rc::new(changed)
        } else {
            facts_before.clone()
        };
        visit(&index, position, &facts_before, &facts_after);
        after[position] = Some(facts_after);
    }
}

/// The Vault a snapshot step reads: its own target, or a transfer's `from`.
fn snapshot_source(step: &CompiledStep) -> Option<&str> {
    match step.action {
        ActionKind::SnapshotTransfer => text(step, "from"),
        _ => Some(step.on.as_str()),
    }
}

/// A step's input as text, when it is known at compile time.
pub(crate) fn text<'a>(step: &'a CompiledStep, input: &str) -> Option<&'a str> {
    step.with.get(input).and_then(Resolved::as_str)
}

impl<'a> Index<'a> {
    /// The vault targets living in a kubernetes target.
    pub(crate) fn vaults_in(&self, cluster: &str) -> impl Iterator<Item = &'a CompiledTarget> {
        self.vaults_by_cluster
            .get(cluster)
            .into_iter()
            .flatten()
            .copied()
    }
}

/// Whether a container's args run `sleep` (a Vault disabled in place).
pub(crate) fn is_sleep(args: Option<&Resolved>) -> bool {
    let Some(Resolved::List(items)) = args else {
        return false;
    };
    let words: Vec<&str> = items
        .iter()
        .filter_map(Resolved::as_str)
        .flat_map(str::split_whitespace)
        .collect();
    words.first() == Some(&"sleep")
}

fn check_step(
    step: &CompiledStep,
    position: usize,
    index: &Index,
    before: &Facts,
    found: &mut Vec<Diagnostic>,
) {
    let steps = index.steps;
    let on = step.on.as_str();
    let span = step.span;
    let needs_backup = |kind: &str, name: &str, found: &mut Vec<Diagnostic>| {
        if !before
            .backups
            .contains(&(on.to_string(), kind.to_string(), name.to_string()))
        {
            found.push(
                Diagnostic::new(
                    Code::BackupMissing,
                    span,
                    format!(
                        "step `{}` changes {kind} `{name}` on `{on}` with no `k8s.backup` of it before",
                        step.id
                    ),
                )
                .with_help(format!(
                    "add a step `uses: k8s.backup` with `kind: {kind}` and `name: {name}` on `{on}`, and list it in `needs`"
                )),
            );
        }
    };
    match step.action {
        ActionKind::Delete => {
            if let (Some(kind), Some(name)) = (text(step, "kind"), text(step, "name")) {
                needs_backup(kind, name, found);
            }
        }
        ActionKind::PatchArgs => {
            if let Some(name) = text(step, "statefulset") {
                needs_backup("StatefulSet", name, found);
            }
        }
        ActionKind::IngressRewrite => {
            if let Some(name) = text(step, "ingress") {
                needs_backup("Ingress", name, found);
            }
        }
        ActionKind::SnapshotSave | ActionKind::SnapshotTransfer
            if snapshot_source(step).is_some_and(|source| !before.vault(source).writes_blocked) =>
        {
            let source = snapshot_source(step).unwrap_or(on);
            let facts = before.vault(source);
            let open: Vec<&str> = [
                (!facts.ingress_blocked).then_some(
                    "clients outside the cluster (delete its Ingress after backing it up)",
                ),
                (!facts.services_blocked).then_some(
                    "clients inside the cluster (take its Services off with `vault.block-services`)",
                ),
            ]
            .into_iter()
            .flatten()
            .collect();
            found.push(
                Diagnostic::new(
                    Code::SnapshotBeforeWritesBlocked,
                    span,
                    format!("snapshot of `{source}` is taken while clients can still write to it"),
                )
                .with_help(format!(
                    "first block writes from {}, and list those steps in `needs`",
                    open.join(" and from ")
                )),
            )
        }
        ActionKind::SnapshotRestore => {
            if let Some(Resolved::StepOutput { step: source, .. }) = step.with.get("snapshot")
                && let Some(source_step) = index.step_by_id.get(source.as_str()).map(|&i| &steps[i])
                && source_step.action == ActionKind::SnapshotSave
                && !before.vault(&source_step.on).disabled
            {
                found.push(
                    Diagnostic::new(
                        Code::RestoreBeforeSourceDisabled,
                        span,
                        format!(
                            "snapshot is restored into `{on}` while the source `{}` may still run Vault",
                            source_step.on
                        ),
                    )
                    .with_help(format!(
                        "disable `{}` first (patch its StatefulSet args to `sleep infinity`, then restart its pods), so its lease revocations cannot diverge from the snapshot",
                        source_step.on
                    )),
                );
            }
        }
        ActionKind::SealMigrate if before.vault(on).stepped_down() => found.push(
            Diagnostic::new(
                Code::FollowerMigrationAfterStepDown,
                span,
                format!("follower of `{on}` is migrated after the leader stepped down"),
            )
            .with_help("migrate every follower first; the step-down hands the active lock to a migrated standby"),
        ),
        ActionKind::SealRemoveDisabled if !before.vault(on).stepped_down() => found.push(
            Diagnostic::new(
                Code::RemoveDisabledSealBeforeStepDown,
                span,
                format!("the disabled seal block of `{on}` is removed before the leader stepped down"),
            )
            .with_help("the seal migration completes only when a migrated standby becomes active: put `vault.step-down` before this step"),
        ),
        ActionKind::RaftRemovePeer
            if crate::actions::raft::removes_leader(step) && !before.vault(on).stepped_down() =>
        {
            found.push(
                Diagnostic::new(
                    Code::RaftLeaderRemovedBeforeStepDown,
                    span,
                    format!("the leader of `{on}` is removed from the raft cluster while it may still be the active node"),
                )
                .with_help(format!(
                    "step `{on}`'s active node down first (`vault.step-down`, after the joined nodes are voters), then look the leader up and remove it"
                )),
            );
        }
        ActionKind::Restart if before.vault(on).args_sleep && before.vault(on).raft_joined => {
            let facts = before.vault(on);
            let only_followers = text(step, "pods") == Some("followers");
            let removed = facts.raft_followers_removed && (only_followers || facts.raft_leader_removed);
            if !removed {
                found.push(
                    Diagnostic::new(
                        Code::RaftPeerStoppedBeforeRemoved,
                        span,
                        format!("pods of `{on}` are stopped while their nodes are still peers of the raft cluster another Vault joined"),
                    )
                    .with_help(
                        "remove them first with `vault.raft-remove-peer` (the standbys, then the leader after a step-down): a stopped voter counts against the quorum, and a removed node that keeps running serves stale reads",
                    ),
                );
            }
        }
        ActionKind::StepDown if before.vault(on).raft_joined => {
            let joiners: Vec<&str> = steps
                .iter()
                .filter(|s| s.action == ActionKind::RaftJoin && text(s, "to") == Some(on))
                .map(|s| s.on.as_str())
                .collect();
            if !joiners.iter().any(|joiner| before.vault(joiner).raft_promoted) {
                found.push(
                    Diagnostic::new(
                        Code::RaftLeadershipMovedBeforePromotion,
                        span,
                        format!("`{on}` steps down before any node that joined its raft cluster is a voter"),
                    )
                    .with_help(format!(
                        "promote the joined nodes first (`vault.raft-promote` on {}): leadership can only move to a voter",
                        joiners.join(", ")
                    )),
                );
            }
        }
        ActionKind::KeysDisable => {
            for vault in index.targets.values().filter(|t| t.kind == TargetKind::Vault) {
                let uses_key = steps.iter().any(|s| {
                    s.on == vault.id
                        && matches!(s.action, ActionKind::SealPointAtKey | ActionKind::SealDisableAndAdd)
                        && text(s, "key_service") == Some(on)
                });
                if uses_key
                    && index.migrating_vaults.contains(vault.id.as_str())
                    && !before.vault(&vault.id).final_restart()
                {
                    found.push(
                        Diagnostic::new(
                            Code::OldKeyServiceReleasedEarly,
                            span,
                            format!(
                                "key service `{on}` is disabled before the seal migration of `{}` is finished",
                                vault.id
                            ),
                        )
                        .with_help(format!(
                            "the migration unseals with the old key until the disabled block is removed and `{}` restarted: make this step need that restart",
                            vault.id
                        )),
                    );
                }
            }
        }
        _ => {}
    }
    // Any use of a key service after it was disabled.
    let uses: Vec<&str> = std::iter::once(on)
        .chain(text(step, "key_service"))
        .collect();
    for key in uses {
        if let Some(&disabled_by) = before.keys_disabled.get(key)
            && disabled_by != position
        {
            found.push(
                Diagnostic::new(
                    Code::OldKeyServiceReleasedEarly,
                    span,
                    format!(
                        "step `{}` uses key service `{key}` after step `{}` disabled it",
                        step.id, steps[disabled_by].id
                    ),
                )
                .with_help("disable a key service only after every step that needs it"),
            );
        }
    }
}
