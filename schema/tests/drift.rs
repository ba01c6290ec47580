//! The committed `schema/plan.schema.json` is what the Rust types generate; `UPDATE_EXPECT=1`
//! rewrites it after a deliberate change of the plan format.

use std::path::Path;

#[test]
fn the_committed_schema_matches_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("plan.schema.json");
    let generated = planc_schema::plan_schema_json();
    if std::env::var_os("UPDATE_EXPECT").is_some_and(|v| !v.is_empty()) {
        std::fs::write(&path, &generated).expect("schema/ is writable");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema/plan.schema.json is stale: the plan types changed. Run `UPDATE_EXPECT=1 cargo test -p planc-schema` and commit the result"
    );
}

#[test]
fn every_action_has_a_typed_input_branch() {
    let schema: serde_json::Value =
        serde_json::from_str(&planc_schema::plan_schema_json()).expect("valid JSON");
    let branches = schema["$defs"]["StepSpec"]["allOf"]
        .as_array()
        .expect("allOf branches");
    assert_eq!(branches.len(), planc_schema::ActionKind::ALL.len());
    let uses = schema["$defs"]["StepSpec"]["properties"]["uses"]["enum"]
        .as_array()
        .expect("uses enum");
    assert!(uses.contains(&serde_json::json!("vault.seal-migrate")));
    // Expressions are accepted where numbers are expected.
    let port = &schema["$defs"]["ProxyServiceInput"]["properties"]["port"]["type"];
    assert_eq!(port, &serde_json::json!(["integer", "string"]));
}
