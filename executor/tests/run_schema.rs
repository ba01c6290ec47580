//! `schema/run.schema.json` is what the run record's types generate (`UPDATE_EXPECT=1` rewrites
//! it after a deliberate change of the format), and a record planx writes reads back through
//! the same types, refusing a field it does not know.

use std::path::Path;

#[test]
fn the_committed_run_schema_matches_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema/run.schema.json");
    let generated = planx::rundir::run_schema_json();
    if std::env::var_os("UPDATE_EXPECT").is_some_and(|v| !v.is_empty()) {
        std::fs::write(&path, &generated).expect("schema/ is writable");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema/run.schema.json is stale: the types changed. Run `UPDATE_EXPECT=1 cargo test -p planx --test run_schema` and commit the result"
    );
    let schema: serde_json::Value = serde_json::from_str(&generated).unwrap();
    let required = schema["required"].as_array().unwrap();
    for field in [
        "format",
        "run_id",
        "plan_sha256",
        "secret_references",
        "compiled",
    ] {
        assert!(
            required.contains(&field.into()),
            "{field} is required: {schema}"
        );
    }
    // The compiled plan is described by its stored parts, the graph as dependencies.
    let text = generated.as_str();
    assert!(
        text.contains("\"deps\"") && text.contains("\"steps\""),
        "{text}"
    );
}
