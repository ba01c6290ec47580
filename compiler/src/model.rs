//! The compiled plan: parameters with their values (secrets as references), resolved targets, and
//! steps with resolved inputs, ready for the graph, the lints, the renderers and planx.

use indexmap::IndexMap;
use planc_schema::ActionKind;
use planc_schema::plan::{ParamType, TargetKind};

use crate::diagnostic::Code;
use crate::expr::Resolved;
use crate::graph::ExecutionGraph;
use crate::source::Span;

#[derive(Debug, Clone)]
pub struct CompiledPlan {
    pub name: String,
    pub description: Option<String>,
    pub params: Vec<CompiledParam>,
    pub targets: IndexMap<String, CompiledTarget>,
    pub steps: Vec<CompiledStep>,
    pub graph: ExecutionGraph,
}

#[derive(Debug, Clone)]
pub struct CompiledParam {
    pub name: String,
    pub param_type: ParamType,
    pub description: Option<String>,
    /// Secrets are `Resolved::Secret` references, never values.
    pub value: Resolved,
}

#[derive(Debug, Clone)]
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
}

#[derive(Debug, Clone)]
pub struct Retry {
    pub attempts: u32,
    pub backoff_secs: u64,
}

#[derive(Debug, Clone)]
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
