//! Every plan in `plans/` checks clean with its example parameters, carries the schema line, reads
//! as the schema's document type, and has golden graph and rendering files; the AKS plan's graph
//! runs the 14 chapters of the seed procedure in order.

use std::collections::HashSet;
use std::path::Path;

use planc::graph::GraphFormat;
use planc::render::compiled_plan_json;
use planc_schema::plan::PlanDocument;
use workspace_tests::{compile_with_params, expect_file, plan_files, workspace_root};

#[test]
fn every_plan_checks_clean_with_its_example_parameters() {
    let plans = plan_files();
    assert!(plans.len() >= 4, "plans/ lost a plan: {plans:?}");
    for plan in plans {
        assert!(
            workspace_root()
                .join(plan.with_extension("params.yaml"))
                .exists(),
            "{} has no example parameter file beside it",
            plan.display()
        );
        let compilation = compile_with_params(&plan);
        let problems: Vec<String> = compilation
            .diagnostics
            .iter()
            .map(|d| format!("{} {}", d.code.as_str(), d.message))
            .collect();
        assert!(problems.is_empty(), "{}: {problems:#?}", plan.display());
        assert!(compilation.plan.is_some());
    }
}

#[test]
fn graphs_and_renderings_match_their_golden_files() {
    let golden = workspace_root().join("tests/golden");
    for plan in plan_files() {
        let compilation = compile_with_params(&plan);
        let compiled = compilation.plan.as_ref().expect("clean plan");
        let stem = plan.file_stem().and_then(|s| s.to_str()).expect("a name");
        expect_file(
            &golden.join(format!("{stem}.graph.txt")),
            &compiled.graph.render(&compiled.name, GraphFormat::Text),
        );
        let mut rendered =
            serde_json::to_string_pretty(&compiled_plan_json(compiled, &compilation.sources))
                .expect("json");
        rendered.push('\n');
        expect_file(&golden.join(format!("{stem}.render.json")), &rendered);
    }
    let aks = compile_with_params(Path::new("plans/vault-aks-migration.yaml"));
    let compiled = aks.plan.expect("clean plan");
    for (format, extension) in [
        (GraphFormat::Dot, "dot"),
        (GraphFormat::Mermaid, "mmd"),
        (GraphFormat::Json, "graph.json"),
    ] {
        expect_file(
            &golden.join(format!("vault-aks-migration.{extension}")),
            &compiled.graph.render(&compiled.name, format),
        );
    }
}

#[test]
fn the_aks_plan_runs_the_fourteen_chapters_in_order() {
    let compilation = compile_with_params(Path::new("plans/vault-aks-migration.yaml"));
    let plan = compilation.plan.expect("clean plan");
    let index = |id: &str| {
        plan.steps
            .iter()
            .position(|s| s.id == id)
            .unwrap_or_else(|| panic!("no step {id}"))
    };
    // Ancestors by walking the dependencies.
    let ancestors = |step: usize| {
        let mut seen = HashSet::new();
        let mut stack = vec![step];
        while let Some(node) = stack.pop() {
            for &dep in &plan.graph.deps[node] {
                if seen.insert(dep) {
                    stack.push(dep);
                }
            }
        }
        seen
    };
    // Stages of the seed procedure: every step of a stage happens before every step of the next.
    let stages: &[&[&str]] = &[
        &[
            "old-cluster",
            "preflight.cluster",
            "preflight.replicas",
            "preflight.seal-overrides",
            "preflight.old-key-access",
            "preflight.new-key-access",
            "old-recovery-keys",
        ], // 1
        &["new-token", "old-token"],           // 2
        &["cutover.backup-ingress"],           // 3
        &["cutover.block-writes"],             // 3
        &["cutover.block-in-cluster-writes"],  // 3
        &["cutover.snapshot"],                 // 4
        &["cutover.disable-old"],              // 4
        &["cutover.restart-old"],              // 4
        &["cutover.restore"],                  // 5
        &["cutover.point-at-old-key"],         // 6
        &["cutover.restart-new"],              // 6
        &["seal-migration.disable-and-add"],   // 7
        &["seal-migration.find-leader"],       // 8
        &["seal-migration.migrate-followers"], // 8
        &["seal-migration.step-down"],         // 9
        &["seal-migration.remove-disabled"],   // 10
        &["seal-migration.restart"],           // 11
        &["proxy.proxy"],                      // 12
        &["proxy.reroute-ingress"],            // 13
        &["proxy.verify"],                     // 14
        &["revoke-old-token"],
        &["withdraw-old-key"], // the new identity loses the old key
    ];
    for pair in stages.windows(2) {
        for earlier in pair[0] {
            for later in pair[1] {
                assert!(
                    ancestors(index(later)).contains(&index(earlier)),
                    "`{earlier}` must happen before `{later}`"
                );
            }
        }
    }
    // The StatefulSet backup runs beside the Ingress's, before the StatefulSet is patched.
    assert!(ancestors(index("cutover.disable-old")).contains(&index("cutover.backup-statefulset")));
    let all: usize = stages.iter().map(|s| s.len()).sum();
    assert_eq!(
        all + 1,
        plan.steps.len(),
        "every step of the plan belongs to a chapter"
    );
    let followers = &plan.steps[index("seal-migration.migrate-followers")];
    assert!(
        followers.for_each.is_some(),
        "followers are a per-item group"
    );
    assert!(
        plan.steps[index("cutover.block-writes")].gate.is_some(),
        "the maintenance window is announced"
    );
}

#[test]
fn plans_and_modules_carry_the_schema_line_and_read_as_schema_documents() {
    let root = workspace_root();
    let mut files = Vec::new();
    for folder in ["plans", "plans/modules"] {
        for entry in std::fs::read_dir(root.join(folder)).expect("folder") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string();
            if name.ends_with(".yaml") && !name.ends_with(".params.yaml") {
                files.push(path);
            }
        }
    }
    assert!(files.len() >= 8);
    for path in files {
        let text = std::fs::read_to_string(&path).expect("readable");
        let first = text.lines().next().unwrap_or("");
        assert!(
            first.starts_with("# yaml-language-server: $schema=")
                && first.ends_with("schema/plan.schema.json"),
            "{} must start with the yaml-language-server schema line",
            path.display()
        );
        let schema_path = path
            .parent()
            .expect("folder")
            .join(first.split('=').nth(1).expect("a path"));
        assert!(
            schema_path.exists(),
            "{} points at a missing schema",
            path.display()
        );
        let parsed: Result<PlanDocument, _> = serde_saphyr::from_str(&text);
        assert!(
            parsed.is_ok(),
            "{} does not read as a PlanDocument: {:?}",
            path.display(),
            parsed.err()
        );
    }
}

#[test]
fn skipped_steps_hand_their_dependencies_on() {
    let compilation = planc::compile(
        &planc::CompileRequest {
            plan: "tests/cases/check/clean.yaml".into(),
            ..Default::default()
        },
        &workspace_tests::RootedLoader,
    )
    .expect("readable");
    let plan = compilation.plan.expect("clean");
    expect_file(
        &workspace_root().join("tests/golden/clean.graph.txt"),
        &plan.graph.render(&plan.name, GraphFormat::Text),
    );
    assert!(
        plan.steps.iter().all(|s| s.id != "verify"),
        "`when: false` leaves the step out"
    );
}
