//! The shape of a plan or module document (version 1) and the JSON Schema generated from it.
//!
//! The compiler reads documents through its own position-keeping tree so that it can report every
//! mistake at once; these types describe the same shape for editors and for the committed schema.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::actions::ActionKind;

/// A plan (the default) or a module: a plan fragment with its own parameters and no targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DocumentKind {
    Plan,
    Module,
}

/// A plan document.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "planc plan, version 1")]
pub struct PlanDocument {
    /// The plan language version; this schema describes version 1.
    pub version: u64,
    /// `plan` (the default) or `module`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<DocumentKind>,
    /// Lowercase letters, digits and dashes.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub params: IndexMap<String, ParamSpec>,
    /// Execution contexts; only plans have them, modules take targets as parameters.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub targets: IndexMap<String, TargetSpec>,
    pub steps: Vec<StepSpec>,
}

/// Types a parameter can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Integer,
    Boolean,
    List,
    Map,
    /// A reference to a secret: `env:NAME`, `file:PATH` or `prompt`; only planx resolves it.
    Secret,
    /// A target of the instantiating plan (modules only).
    Target,
}

/// A parameter declaration.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    #[serde(rename = "type")]
    pub param_type: ParamType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Used when no value is supplied; a parameter without default is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// The value must be one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<Value>>,
    /// A regular expression a string value must match as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// For `type: target`: the kind of target expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_kind: Option<TargetKind>,
}

/// Kinds of execution context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Kubernetes,
    Vault,
    Azurekeyvault,
    Transit,
    Awskms,
    Gcpckms,
}

impl TargetKind {
    pub const ALL: &'static [TargetKind] = &[
        TargetKind::Kubernetes,
        TargetKind::Vault,
        TargetKind::Azurekeyvault,
        TargetKind::Transit,
        TargetKind::Awskms,
        TargetKind::Gcpckms,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Kubernetes => "kubernetes",
            TargetKind::Vault => "vault",
            TargetKind::Azurekeyvault => "azurekeyvault",
            TargetKind::Transit => "transit",
            TargetKind::Awskms => "awskms",
            TargetKind::Gcpckms => "gcpckms",
        }
    }

    pub fn from_name(name: &str) -> Option<TargetKind> {
        TargetKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.name() == name)
    }

    pub fn is_key_service(self) -> bool {
        !matches!(self, TargetKind::Kubernetes | TargetKind::Vault)
    }
}

/// How planx reaches one Vault pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Reach {
    /// Port-forward through the Kubernetes API, as an operator's laptop does.
    PortForward,
    /// Connect to `address_template` with `{pod}` replaced by the pod name.
    Address,
}

/// An execution context.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
// Only the JSON Schema of plan files is made from it (planc reads plans into its own node
// tree), so the size of its variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum TargetSpec {
    /// A Kubernetes cluster reached through a kubeconfig context.
    Kubernetes {
        context: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
    },
    /// A Vault or OpenBao (raft storage) installed by a Helm chart in a Kubernetes target.
    Vault {
        /// Id of the kubernetes target the Vault runs in.
        cluster: String,
        /// The chart it was installed with: `vault-helm` (default) or `openbao-helm`; the
        /// defaults of every name below come from it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        flavour: Option<String>,
        /// The chart's full name, which every object is named after (default: the chart's
        /// name, `vault` or `openbao`; `""` means the default).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        release: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        statefulset: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        container: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        configmap: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        config_key: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ingress: Option<String>,
        /// Service that selects every node (the chart's `vault`); `""` when the install has
        /// none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        /// Service that selects the active node (the chart's `vault-active`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        active_service: Option<String>,
        /// Service that selects the standby nodes (the chart's `vault-standby`); `""` when the
        /// install has none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        standby_service: Option<String>,
        /// Headless service of the raft peers (the chart's `vault-internal`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        internal_service: Option<String>,
        /// Label selector of the Vault pods.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        selector: Option<String>,
        /// Prefix of the status labels the server's Kubernetes service registration sets
        /// (`vault` for `vault-active`; `openbao` for `openbao-active`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status_labels: Option<String>,
        /// Prefix of the server's environment variables (`VAULT_`, `BAO_`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        env_prefix: Option<String>,
        /// The raft storage path (`/vault/data`, `/openbao/data`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data_path: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        /// Raft nodes it runs (the chart's `server.ha.replicas`, default 3): the voters the
        /// raft membership lints count from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replicas: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reach: Option<Reach>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address_template: Option<String>,
        /// The URL clients outside the cluster use.
        url: String,
    },
    /// An Azure Key Vault key.
    Azurekeyvault {
        tenant_id: String,
        vault_name: String,
        key_name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subscription: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resource_group: Option<String>,
    },
    /// A transit secrets engine key on another Vault or OpenBao.
    Transit {
        address: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mount_path: Option<String>,
        key_name: String,
        /// The token the seal uses, by reference.
        token: String,
    },
    /// An AWS KMS key.
    Awskms { region: String, kms_key_id: String },
    /// A Google Cloud KMS key.
    Gcpckms {
        project: String,
        region: String,
        key_ring: String,
        crypto_key: String,
    },
}

/// How often and how patiently a step is retried on transient errors.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    pub attempts: u32,
    /// Initial wait between attempts, doubled each time, e.g. `2s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
}

/// A step: one action on one target, or one instantiation of a module.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Lowercase letters, digits and dashes; unique in the plan.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// An action of the catalog; exclusive with `module`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<String>,
    /// Path of a module file, relative to this file; exclusive with `uses`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// The target the action runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<String>,
    /// The action's inputs, or the module's arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    /// Run once per element: a list, or `{{ steps.ID.outputs.NAME }}` known only at apply time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<Value>,
    /// A condition over parameters; the step is left out when it is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// e.g. `90s`, `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySpec>,
    /// A human approval asked for before the step runs, with this message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
    /// Ordering lints (`L1xx`) this step deliberately breaks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
}

/// The JSON Schema of a plan document, with each action's input typed by `uses`.
pub fn plan_schema() -> Value {
    let mut generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let mut root = generator.root_schema_for::<PlanDocument>().to_value();
    let mut branches = Vec::new();
    for &action in ActionKind::ALL {
        let input = action.input_schema(&mut generator).to_value();
        branches.push(json!({
            "if": { "properties": { "uses": { "const": action.name() } }, "required": ["uses"] },
            "then": { "properties": { "with": input } }
        }));
    }
    let definitions = generator.take_definitions(true);
    let root_defs = root
        .as_object_mut()
        .expect("schema root is an object")
        .entry("$defs")
        .or_insert_with(|| json!({}));
    for (name, definition) in definitions {
        root_defs[&name] = definition;
    }
    let step = &mut root["$defs"]["StepSpec"];
    step["allOf"] = Value::Array(branches);
    step["properties"]["uses"]["enum"] =
        Value::Array(ActionKind::ALL.iter().map(|a| json!(a.name())).collect());
    accept_expressions(&mut root["$defs"]);
    root
}

/// Inputs may hold `{{ ... }}` expressions wherever a number or boolean is expected; widen those
/// types to also accept a string so editors do not flag them.
fn accept_expressions(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(kind)) = map.get("type")
                && matches!(kind.as_str(), "integer" | "number" | "boolean")
            {
                let kind = kind.clone();
                map.insert("type".into(), json!([kind, "string"]));
            }
            for child in map.values_mut() {
                accept_expressions(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(accept_expressions),
        _ => {}
    }
}
