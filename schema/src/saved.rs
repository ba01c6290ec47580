//! The saved plan (`planc.saved-plan/v1`) and the previews it carries: what each step will change,
//! as structured diffs, and what was observed of every object the plan edits, so that planx can
//! refuse to apply when the world has moved. It never holds a secret value.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The format name and version written into every saved plan.
pub const SAVED_PLAN_FORMAT: &str = "planc.saved-plan/v1";

/// A compiled plan with its previews and observations; self-contained and byte-stable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "planc saved plan, version 1")]
pub struct SavedPlan {
    /// Always `planc.saved-plan/v1`.
    pub format: String,
    /// The files and settings the plan was compiled from, for `planx apply` to compile again
    /// and refuse the saved plan when the result differs.
    pub request: SavedRequest,
    /// The compiled plan as `planc render` prints it (`planc.compiled-plan/v1`).
    pub compiled: serde_json::Value,
    /// What was observed of every object the plan reads or edits.
    pub observed: Vec<ObservedObject>,
    /// What each step changes, in execution order.
    pub previews: Vec<StepPreview>,
}

/// What a saved plan was compiled from: paths as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SavedRequest {
    pub plan: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params_files: Vec<String>,
    /// `--set NAME=VALUE` pairs (secrets are references there too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<String>,
}

/// Where an object lives: the plan's kubernetes target, its kind, namespace and name.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct ObjectRef {
    pub target: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// One object as it was observed when the plan was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObservedObject {
    pub object: ObjectRef,
    /// `metadata.resourceVersion`, when the object came from a server.
    pub resource_version: Option<String>,
    /// SHA-256 of the object's canonical JSON without server-owned metadata, secrets included:
    /// a secret that changed is drift too.
    pub sha256: String,
    /// The object without server-owned metadata, secrets redacted as in the previews: what a
    /// drift report is diffed against.
    pub content: serde_json::Value,
}

/// What one step changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepPreview {
    pub step: String,
    pub uses: String,
    pub on: String,
    pub changes: Vec<ObjectDiff>,
    /// Things the preview cannot show (values known only at apply time).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// How an object changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Create,
    Update,
    Delete,
}

impl ChangeKind {
    /// The symbol a diff shows for it.
    pub fn symbol(self) -> char {
        match self {
            ChangeKind::Create => '+',
            ChangeKind::Update => '~',
            ChangeKind::Delete => '-',
        }
    }
}

/// The diff of one object: its YAML, and each multi-line text inside it (a configuration file in
/// a ConfigMap, a start script) as a section of its own, diffed line by line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectDiff {
    pub object: ObjectRef,
    pub change: ChangeKind,
    pub sections: Vec<DiffSection>,
}

/// One text diffed line by line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiffSection {
    /// `""` for the object's YAML, else the path of the embedded text, e.g.
    /// `data["extraconfig-from-values.hcl"]`.
    pub path: String,
    pub hunks: Vec<Hunk>,
}

/// A unified-diff hunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hunk {
    pub old_start: usize,
    pub old_lines: usize,
    pub new_start: usize,
    pub new_lines: usize,
    pub lines: Vec<DiffLine>,
}

/// One line of a hunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiffLine {
    /// ` ` unchanged, `-` removed, `+` added.
    pub tag: String,
    pub text: String,
}

/// The JSON Schema of a saved plan, as committed in `schema/saved-plan.schema.json`.
pub fn saved_plan_schema_json() -> String {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let schema = generator.into_root_schema_for::<SavedPlan>();
    let mut text = serde_json::to_string_pretty(&schema).expect("schema serialises");
    text.push('\n');
    text
}
