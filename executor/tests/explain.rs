//! `planx explain` on the AKS plan: run order, undo and points of no return; and where the
//! outage window of the shipped plans starts.

use std::path::Path;
use std::process::Command;

#[test]
fn explains_the_aks_migration() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace");
    let out = Command::new(env!("CARGO_BIN_EXE_planx"))
        .args([
            "explain",
            "plans/vault-aks-migration.yaml",
            "--params",
            "plans/vault-aks-migration.params.yaml",
        ])
        .current_dir(root)
        .output()
        .expect("planx runs");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        text.starts_with("plan vault-aks-migration: 30 steps\n"),
        "{text}"
    );
    let restore = text
        .lines()
        .find(|l| l.contains("cutover.restore "))
        .expect("restore line");
    assert!(
        restore.contains("irreversible") && restore.contains("no undo"),
        "{restore}"
    );
    let block = text
        .lines()
        .find(|l| l.contains("cutover.block-writes"))
        .expect("block line");
    assert!(
        block.contains("undo: put back the recorded state") && block.contains("[asks: Announce")
    );
    assert!(text.contains("points of no return (a rollback past them restores the source instead): cutover.restore, seal-migration.migrate-followers, seal-migration.step-down, revoke-old-token"), "{text}");
}

#[test]
fn a_broken_plan_exits_one_with_diagnostics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace");
    let out = Command::new(env!("CARGO_BIN_EXE_planx"))
        .args(["explain", "tests/cases/check/lints.yaml"])
        .current_dir(root)
        .output()
        .expect("planx runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("L102"));
}

/// Where the outage window starts is the lints' own notion of "writes blocked": in every shipped
/// migration, the Ingress deleted by `cutover.block-writes`, and nothing before it.
#[test]
fn the_outage_window_starts_where_the_lints_say_writes_are_blocked() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace");
    for plan in ["vault-aks-migration", "vault-transit-migration"] {
        let compiled = planx::run::compile(&planc::CompileRequest {
            plan: root.join(format!("plans/{plan}.yaml")),
            params_files: vec![root.join(format!("plans/{plan}.params.yaml"))],
            set: Vec::new(),
        })
        .expect("compiles");
        let blocking = planc::lints::writes_blocking_steps(&compiled.plan);
        assert_eq!(blocking, ["cutover.block-writes"], "{plan}");
    }
    // The in-place seal rotation keeps serving: no step blocks writes, so no outage window.
    let rotation = planx::run::compile(&planc::CompileRequest {
        plan: root.join("plans/vault-seal-rotation.yaml"),
        params_files: vec![root.join("plans/vault-seal-rotation.params.yaml")],
        set: Vec::new(),
    })
    .expect("compiles");
    assert_eq!(
        planc::lints::writes_blocking_steps(&rotation.plan),
        Vec::<String>::new()
    );
}
