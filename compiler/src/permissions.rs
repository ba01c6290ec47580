//! What a plan asks of each cluster's Kubernetes API: every verb on every resource its steps,
//! their undo and planx's own Lease use, per kubernetes target, for the permissions preflight
//! (`preflight.cluster` asks each cluster with a SelfSubjectAccessReview before any change).
//! Each action says what it needs ([`crate::catalog::Action::access`]); [`default_access`] is
//! what most share.

use std::collections::{BTreeMap, BTreeSet};

use planc_schema::plan::TargetKind;

use crate::catalog::{Action, TargetRequirement};
use crate::model::{CompiledPlan, CompiledStep};

/// One verb on one resource (or subresource) of the Kubernetes API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Access {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
}

/// The kinds planx reads or writes: (kind, API group, resource).
const KINDS: &[(&str, &str, &str)] = &[
    ("Pod", "", "pods"),
    ("Service", "", "services"),
    ("ConfigMap", "", "configmaps"),
    ("Secret", "", "secrets"),
    ("Namespace", "", "namespaces"),
    ("StatefulSet", "apps", "statefulsets"),
    ("Ingress", "networking.k8s.io", "ingresses"),
    ("EndpointSlice", "discovery.k8s.io", "endpointslices"),
    ("PodDisruptionBudget", "policy", "poddisruptionbudgets"),
    ("Lease", "coordination.k8s.io", "leases"),
];

impl Access {
    /// `verb` on the resource of `kind` (`None` for a kind planx does not handle).
    pub fn on_kind(verb: &'static str, kind: &str) -> Option<Access> {
        KINDS
            .iter()
            .find(|(known, _, _)| *known == kind)
            .map(|&(_, group, resource)| Access {
                verb,
                group,
                resource,
                subresource: "",
            })
    }

    /// `verb` on a subresource of pods (`portforward`, `exec`).
    pub fn on_pods(verb: &'static str, subresource: &'static str) -> Access {
        Access {
            verb,
            group: "",
            resource: "pods",
            subresource,
        }
    }

    /// As `kubectl auth can-i` names it: `create pods/exec`, `update statefulsets.apps`.
    pub fn describe(&self) -> String {
        let mut resource = self.resource.to_string();
        if !self.group.is_empty() {
            resource = format!("{resource}.{}", self.group);
        }
        if !self.subresource.is_empty() {
            resource = format!("{resource}/{}", self.subresource);
        }
        format!("{} {resource}", self.verb)
    }
}

/// What the plan needs, per kubernetes target id: its steps' and their undo's accesses, and the
/// Lease planx holds in every cluster it uses.
pub fn needed(plan: &CompiledPlan) -> BTreeMap<String, BTreeSet<Access>> {
    let mut needed: BTreeMap<String, BTreeSet<Access>> = BTreeMap::new();
    for target in plan.targets.values() {
        if target.kind == TargetKind::Kubernetes {
            let lease = ["get", "create", "update", "delete"]
                .into_iter()
                .filter_map(|verb| Access::on_kind(verb, "Lease"));
            needed.entry(target.id.clone()).or_default().extend(lease);
        }
    }
    for step in &plan.steps {
        for (cluster, access) in crate::catalog::action(step.action).access(plan, step) {
            needed.entry(cluster).or_default().insert(access);
        }
    }
    needed
}

/// What most actions need: a Vault target's pods listed, read and reached by port-forward in
/// its cluster; and every object the step changes read, and created, updated or deleted by the
/// step or by its undo (a rollback puts back what was recorded: it may re-create a deleted
/// object or delete a created one).
pub fn default_access<A: Action + ?Sized>(
    plan: &CompiledPlan,
    step: &CompiledStep,
    action: &A,
) -> Vec<(String, Access)> {
    let mut access = Vec::new();
    if action.line().target == TargetRequirement::Vault {
        access.extend(vault_pods(plan, &step.on));
    }
    let inputs = crate::preview::checked_inputs(&step.with);
    for object in action.writes(plan, &step.on, &inputs).into_iter().flatten() {
        for verb in ["get", "create", "update", "delete"] {
            if let Some(one) = Access::on_kind(verb, &object.kind) {
                access.push((object.target.clone(), one));
            }
        }
    }
    access
}

/// A Vault target's pods, listed, read and reached by port-forward (unless the target reaches
/// them by address), in its cluster.
pub fn vault_pods(plan: &CompiledPlan, vault: &str) -> Vec<(String, Access)> {
    let Some(target) = plan.targets.get(vault).and_then(|t| t.vault()) else {
        return Vec::new();
    };
    let cluster = target.cluster.to_string();
    [
        Access::on_kind("get", "Pod"),
        Access::on_kind("list", "Pod"),
        target
            .address_template
            .is_none()
            .then(|| Access::on_pods("create", "portforward")),
    ]
    .into_iter()
    .flatten()
    .map(|one| (cluster.clone(), one))
    .collect()
}

/// Pods of a Vault target restarted (deleted and watched until they are back).
pub fn pod_restarts(plan: &CompiledPlan, vault: &str) -> Vec<(String, Access)> {
    let mut access = vault_pods(plan, vault);
    if let Some(cluster) = access.first().map(|(cluster, _)| cluster.clone()) {
        for verb in ["delete", "watch"] {
            if let Some(one) = Access::on_kind(verb, "Pod") {
                access.push((cluster.clone(), one));
            }
        }
    }
    access
}

/// `verbs` on `kind` in `cluster`.
pub fn on(cluster: &str, kind: &str, verbs: &[&'static str]) -> Vec<(String, Access)> {
    verbs
        .iter()
        .filter_map(|verb| Access::on_kind(verb, kind))
        .map(|one| (cluster.to_string(), one))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_are_named_as_kubectl_names_them() {
        assert_eq!(
            Access::on_pods("create", "exec").describe(),
            "create pods/exec"
        );
        assert_eq!(
            Access::on_kind("update", "StatefulSet").unwrap().describe(),
            "update statefulsets.apps"
        );
        assert!(Access::on_kind("get", "Deployment").is_none());
    }
}
