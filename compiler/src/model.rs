//! The compiled plan: parameters with their values (secrets as references), resolved targets, and
//! steps with resolved inputs, ready for the graph, the lints, the renderers and planx.

use indexmap::IndexMap;
use planc_schema::ActionKind;
use planc_schema::plan::{ParamType, TargetKind};
use serde::{Deserialize, Serialize};

use crate::catalog;
use crate::diagnostic::Code;
use crate::expr::Resolved;
use crate::graph::{ExecutionGraph, GraphNode};
use crate::source::Span;

/// A compiled plan. It serialises as its parts (the graph as each step's direct dependencies)
/// and is rebuilt from them when read back, so a stored plan is ordered exactly as compiled.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(into = "PlanParts", try_from = "PlanParts")]
pub struct CompiledPlan {
    pub name: String,
    pub description: Option<String>,
    pub params: Vec<CompiledParam>,
    pub targets: IndexMap<String, CompiledTarget>,
    pub steps: Vec<CompiledStep>,
    pub graph: ExecutionGraph,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompiledParam {
    pub name: String,
    pub param_type: ParamType,
    pub description: Option<String>,
    /// Secrets are `Resolved::Secret` references, never values.
    pub value: Resolved,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompiledTarget {
    pub id: String,
    pub kind: TargetKind,
    /// Every attribute of the kind, defaults filled in.
    pub attributes: IndexMap<String, Resolved>,
}

impl CompiledTarget {
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).and_then(Resolved::as_str)
    }

    /// A text attribute lowering always fills (a required one, or one with a chart default).
    fn filled(&self, name: &str) -> &str {
        self.attribute(name).unwrap_or_default()
    }

    /// This target as a kubernetes cluster, when it is one.
    pub fn kubernetes(&self) -> Option<KubernetesTarget<'_>> {
        (self.kind == TargetKind::Kubernetes).then(|| KubernetesTarget {
            id: &self.id,
            context: self.filled("context"),
            namespace: self.filled("namespace"),
        })
    }

    /// This target as a Vault, when it is one.
    pub fn vault(&self) -> Option<VaultTarget<'_>> {
        (self.kind == TargetKind::Vault).then(|| VaultTarget {
            id: &self.id,
            cluster: self.filled("cluster"),
            url: self.filled("url"),
            statefulset: self.filled("statefulset"),
            container: self.filled("container"),
            configmap: self.filled("configmap"),
            config_key: self.filled("config_key"),
            ingress: self.filled("ingress"),
            service: self.filled("service"),
            active_service: self.filled("active_service"),
            standby_service: self.filled("standby_service"),
            selector: self.filled("selector"),
            flavour: self.filled("flavour"),
            status_labels: self.filled("status_labels"),
            env_prefix: self.filled("env_prefix"),
            data_path: self.filled("data_path"),
            port: match self.attributes.get("port") {
                Some(Resolved::Int(port)) => u16::try_from(*port).unwrap_or(8200),
                _ => 8200,
            },
            replicas: match self.attributes.get("replicas") {
                Some(Resolved::Int(replicas)) => u32::try_from(*replicas).unwrap_or(3),
                _ => 3,
            },
            address_template: (self.attribute("reach") == Some("address"))
                .then(|| self.filled("address_template")),
        })
    }
}

/// A kubernetes target: a context of the kubeconfig and the namespace planx works in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KubernetesTarget<'a> {
    pub id: &'a str,
    pub context: &'a str,
    pub namespace: &'a str,
}

impl VaultTarget<'_> {
    /// The Services clients inside the cluster reach the Vault through (those the install has).
    pub fn client_services(&self) -> impl Iterator<Item = &str> {
        [self.service, self.active_service, self.standby_service]
            .into_iter()
            .filter(|name| !name.is_empty())
    }
}

/// A Vault target, its flavour's (Helm chart's) defaults filled once in lowering: the kubernetes target it
/// runs in and the names of its objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VaultTarget<'a> {
    pub id: &'a str,
    /// The id of the kubernetes target it runs in.
    pub cluster: &'a str,
    pub url: &'a str,
    pub statefulset: &'a str,
    pub container: &'a str,
    pub configmap: &'a str,
    /// The key of the ConfigMap that holds the seal configuration.
    pub config_key: &'a str,
    pub ingress: &'a str,
    /// The Service of every node; empty when the install has none.
    pub service: &'a str,
    pub active_service: &'a str,
    /// The Service of the standbys; empty when the install has none.
    pub standby_service: &'a str,
    /// The label selector of its pods.
    pub selector: &'a str,
    /// The chart it was installed with (`vault-helm`, `openbao-helm`): where the defaults of
    /// the other names come from.
    pub flavour: &'a str,
    /// The prefix of the labels the server's Kubernetes service registration puts on its pods
    /// (`vault` for `vault-active`, `vault-sealed`, ...; `openbao` for OpenBao).
    pub status_labels: &'a str,
    /// The prefix of the server's environment variables (`VAULT_`, `BAO_`).
    pub env_prefix: &'a str,
    /// The raft storage path, which must be on the pods' persistent volume.
    pub data_path: &'a str,
    /// The port its pods listen on.
    pub port: u16,
    /// Its raft nodes (the chart's `server.ha.replicas`).
    pub replicas: u32,
    /// `reach: address`: the pods' address template (`{pod}` replaced); `None` for a
    /// port-forward.
    pub address_template: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    pub attempts: u32,
    pub backoff_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompiledStep {
    /// Namespaced by the module instances it sits in: `cutover.snapshot`.
    pub id: String,
    pub action: ActionKind,
    /// Id of the target it runs on.
    pub on: String,
    pub description: Option<String>,
    pub with: IndexMap<String, Resolved>,
    /// Elements to run over; a `StepOutput` when known only at apply time.
    pub for_each: Option<Resolved>,
    pub timeout_secs: Option<u64>,
    pub retry: Option<Retry>,
    pub gate: Option<String>,
    /// Lints this step deliberately breaks.
    pub allow: Vec<Code>,
    /// Where the step is written (in a module file for module steps).
    pub span: Span,
}

impl CompiledPlan {
    /// Assemble a plan from its resolved steps and their direct dependencies (indices into
    /// `steps`); the cycles, each as a closed path of step ids and positions, when there are any.
    pub fn assemble(
        name: String,
        description: Option<String>,
        params: Vec<CompiledParam>,
        targets: IndexMap<String, CompiledTarget>,
        steps: Vec<CompiledStep>,
        deps: Vec<Vec<usize>>,
    ) -> Result<CompiledPlan, Vec<Vec<(String, Span)>>> {
        let nodes = steps
            .iter()
            .map(|step| GraphNode {
                id: step.id.clone(),
                action: step.action.name(),
                on: step.on.clone(),
                for_each: step.for_each.is_some(),
                gate: step.gate.is_some(),
                side_effect: catalog::spec(step.action).side_effect,
            })
            .collect();
        let graph = ExecutionGraph::build(nodes, deps).map_err(|cycles| {
            cycles
                .into_iter()
                .map(|cycle| {
                    cycle
                        .into_iter()
                        .map(|i| (steps[i].id.clone(), steps[i].span))
                        .collect()
                })
                .collect::<Vec<_>>()
        })?;
        Ok(CompiledPlan {
            name,
            description,
            params,
            targets,
            steps,
            graph,
        })
    }
}

/// What a compiled plan is stored as: everything but the derived graph.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct PlanParts {
    name: String,
    description: Option<String>,
    params: Vec<CompiledParam>,
    targets: IndexMap<String, CompiledTarget>,
    steps: Vec<CompiledStep>,
    /// Each step's direct dependencies, as indices into `steps`.
    deps: Vec<Vec<usize>>,
}

impl From<CompiledPlan> for PlanParts {
    fn from(plan: CompiledPlan) -> PlanParts {
        PlanParts {
            name: plan.name,
            description: plan.description,
            params: plan.params,
            targets: plan.targets,
            steps: plan.steps,
            deps: plan.graph.deps,
        }
    }
}

impl TryFrom<PlanParts> for CompiledPlan {
    type Error = String;

    fn try_from(parts: PlanParts) -> Result<CompiledPlan, String> {
        let count = parts.steps.len();
        if parts.deps.len() != count || parts.deps.iter().flatten().any(|&d| d >= count) {
            return Err(format!(
                "the dependencies do not match the {count} steps of the plan"
            ));
        }
        CompiledPlan::assemble(
            parts.name,
            parts.description,
            parts.params,
            parts.targets,
            parts.steps,
            parts.deps,
        )
        .map_err(|_| "the steps' dependencies form a cycle".to_string())
    }
}
