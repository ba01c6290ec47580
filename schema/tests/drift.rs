//! The committed JSON Schemas in `schema/` are what the Rust types generate; `UPDATE_EXPECT=1`
//! rewrites them after a deliberate change of a format.

use std::path::Path;

fn expect_schema(file: &str, generated: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    if std::env::var_os("UPDATE_EXPECT").is_some_and(|v| !v.is_empty()) {
        std::fs::write(&path, generated).expect("schema/ is writable");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema/{file} is stale: the types changed. Run `UPDATE_EXPECT=1 cargo test -p planc-schema` and commit the result"
    );
}

#[test]
fn the_committed_plan_schema_matches_the_types() {
    expect_schema("plan.schema.json", &planc_schema::plan_schema_json());
}

#[test]
fn the_committed_saved_plan_schema_matches_the_types() {
    expect_schema(
        "saved-plan.schema.json",
        &planc_schema::saved::saved_plan_schema_json(),
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
