//! The versioned file formats of planc and planx: the plan document (version 1), the typed inputs
//! of every action and the saved plan, as serde types from which the committed JSON Schemas are
//! generated.
//!
//! This crate is the boundary between people's YAML and the compiler. It holds data shapes only:
//! no checking beyond what serde does, no IO.

pub mod actions;
pub mod plan;
pub mod saved;

pub use actions::ActionKind;

/// The plan language version this build reads and writes.
pub const PLAN_VERSION: u64 = 1;

/// The JSON Schema of a plan document, as committed in `schema/plan.schema.json`.
pub fn plan_schema_json() -> String {
    let mut text = serde_json::to_string_pretty(&plan::plan_schema()).expect("schema serialises");
    text.push('\n');
    text
}
