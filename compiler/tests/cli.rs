//! The `planc` binary as a person and a CI job use it: exit codes, formats, colour, help.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn planc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_planc"))
        .args(args)
        .current_dir(root())
        .env_remove("NO_COLOR")
        .output()
        .expect("planc runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8 output")
}

const AKS: &str = "plans/vault-aks-migration.yaml";
const AKS_PARAMS: &str = "plans/vault-aks-migration.params.yaml";

#[test]
fn check_exits_zero_on_a_clean_plan() {
    let out = planc(&["check", AKS, "--params", AKS_PARAMS]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(text(&out.stdout), "no problems found\n");
}

#[test]
fn check_exits_one_on_errors_and_reports_them_all() {
    let out = planc(&["check", "tests/cases/check/dozen-mistakes.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("error[E006]: unknown action `vault.leadr`"));
    assert!(stdout.contains(" --> tests/cases/check/dozen-mistakes.yaml:"));
    assert!(stdout.ends_with("12 errors and 2 warnings\n"), "{stdout}");
    assert!(!stdout.contains('\x1b'), "no colour when not on a terminal");
}

#[test]
fn warnings_alone_exit_zero() {
    let out = planc(&[
        "check",
        "tests/cases/check/secrets.yaml",
        "--set",
        "domain=x",
    ]);
    assert_eq!(out.status.code(), Some(1), "secrets.yaml has errors");
    let dir = std::env::temp_dir().join(format!("planc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plan = dir.join("warn.yaml");
    std::fs::write(
        &plan,
        "version: 1\nname: warn\nparams:\n  unused: {type: string, default: x}\nsteps: []\n",
    )
    .unwrap();
    let out = planc(&["check", plan.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("warning[W012]"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unreadable_input_and_bad_usage_exit_two() {
    let out = planc(&["check", "no/such/plan.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read no/such/plan.yaml"));
    let out = planc(&["check", AKS, "--params", "no/such/params.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let out = planc(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let out = planc(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn json_and_github_formats() {
    let out = planc(&[
        "check",
        "tests/cases/check/dozen-mistakes.yaml",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid json");
    assert_eq!(report["errors"], 12);
    assert_eq!(report["warnings"], 2);
    let first_error = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "E006")
        .expect("E006 reported");
    assert_eq!(first_error["line"], 29);
    assert_eq!(first_error["column"], 11);
    let out = planc(&[
        "check",
        "tests/cases/check/dozen-mistakes.yaml",
        "--format",
        "github",
    ]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("::error file=tests/cases/check/dozen-mistakes.yaml,line=29,col=11,title=planc E006::unknown action `vault.leadr`%0Ahelp: did you mean `vault.leader`?"),
        "{stdout}"
    );
}

#[test]
fn set_overrides_the_parameter_file() {
    let out = planc(&[
        "render",
        AKS,
        "--params",
        AKS_PARAMS,
        "--set",
        "old_context=aks-prod-weu",
        "--set",
        "expected_replicas=5",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rendered: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rendered["targets"]["old"]["context"], "aks-prod-weu");
    let replicas = rendered["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "preflight.replicas")
        .unwrap();
    assert_eq!(replicas["with"]["expected"], 5);
    let out = planc(&[
        "check",
        AKS,
        "--params",
        AKS_PARAMS,
        "--set",
        "expected_replicas=many",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("--> --set:1:19"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn render_writes_a_file_without_secret_values() {
    let dir = std::env::temp_dir().join(format!("planc-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = dir.join("compiled.json");
    let out = planc(&[
        "render",
        AKS,
        "--params",
        AKS_PARAMS,
        "-o",
        output.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let rendered = std::fs::read_to_string(&output).unwrap();
    assert!(rendered.contains("\"ref\": \"env:OLD_VAULT_ADMIN_TOKEN\""));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn graph_formats() {
    for format in ["text", "dot", "mermaid", "json"] {
        let out = planc(&["graph", AKS, "--params", AKS_PARAMS, "--format", format]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{format}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains("seal-migration.step-down"),
            "{format}"
        );
    }
    // A plan with errors prints its diagnostics on stderr and no graph.
    let out = planc(&["graph", "tests/cases/check/dozen-mistakes.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains("error[E011]: dependency cycle: e -> f -> e"));
}

#[test]
fn help_teaches_with_examples() {
    let out = planc(&["--help"]);
    let help = text(&out.stdout);
    assert!(
        help.contains("Examples:") && help.contains("planc check plans/vault-aks-migration.yaml")
    );
    let out = planc(&["check", "--help"]);
    assert!(text(&out.stdout).contains("--set <NAME=VALUE>"));
}

#[test]
fn actions_schema_and_completions() {
    let out = planc(&["actions"]);
    assert!(text(&out.stdout).contains("vault.seal-migrate"));
    let out = planc(&["actions", "vault.step-down"]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains("irreversible") && shown.contains("secret inputs: token"),
        "{shown}"
    );
    let out = planc(&["actions", "vault.nope"]);
    assert_eq!(out.status.code(), Some(2));
    let out = planc(&["schema"]);
    let committed = std::fs::read_to_string(root().join("schema/plan.schema.json")).unwrap();
    assert!(
        text(&out.stdout) == committed,
        "`planc schema` differs from schema/plan.schema.json"
    );
    let out = planc(&["completions", "bash"]);
    let script = text(&out.stdout);
    assert!(
        script.contains("planc__subcmd__check") && script.contains("planc__subcmd__completions"),
        "{script}"
    );
    assert!(
        !script.contains("planc__subcmd__man"),
        "the hidden `man` is not offered"
    );
}

#[test]
fn diff_shows_every_change_and_exits_like_check() {
    let out = planc(&[
        "diff",
        AKS,
        "--params",
        AKS_PARAMS,
        "--state",
        "tests/state/aks",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("# vault-aks-migration: 8 of 30 steps change objects"));
    assert!(stdout.contains("step cutover.point-at-old-key: vault.seal-point-at-key on new_vault"));
    assert!(!stdout.contains('\x1b'));
    let out = planc(&[
        "diff",
        AKS,
        "--params",
        AKS_PARAMS,
        "--state",
        "tests/state/errors/missing-configmap",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(
            "error[E020]: step `cutover.point-at-old-key` needs ConfigMap `vault-config`"
        )
    );
    assert!(out.stdout.is_empty(), "no preview when an edit fails");
    let out = planc(&[
        "diff",
        AKS,
        "--params",
        AKS_PARAMS,
        "--state",
        "no/such/state",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read the state folder no/such/state"));
}

#[test]
fn diff_writes_markdown_comments_and_render_writes_a_saved_plan() {
    let dir = std::env::temp_dir().join(format!("planc-diff-{}", std::process::id()));
    let comments = dir.join("comments");
    let out = planc(&[
        "diff",
        AKS,
        "--params",
        AKS_PARAMS,
        "--state",
        "tests/state/aks",
        "--format",
        "markdown",
        "--comments-dir",
        comments.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let first = std::fs::read_to_string(comments.join("comment-1.md")).expect("one comment");
    assert!(first.starts_with("### planc diff: `vault-aks-migration`"));
    assert!(first.contains("<details><summary><code>cutover.point-at-old-key</code>"));
    let saved = dir.join("saved.json");
    let out = planc(&[
        "render",
        AKS,
        "--params",
        AKS_PARAMS,
        "--state",
        "tests/state/aks",
        "-o",
        saved.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(saved["format"], "planc.saved-plan/v1");
    assert_eq!(saved["previews"].as_array().unwrap().len(), 30);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_secret_literal_is_reported_without_being_shown() {
    let token = "hvs.CAESIJlU9JMYEhOPYv4KEvKZ2QpC";
    let setting = format!("old_admin_token={token}");
    for format in ["human", "json", "github"] {
        let out = planc(&[
            "check", AKS, "--params", AKS_PARAMS, "--set", &setting, "--format", format,
        ]);
        assert_eq!(out.status.code(), Some(1));
        let stdout = text(&out.stdout);
        assert!(stdout.contains("E013"), "{format}: {stdout}");
        assert!(
            !stdout.contains(token) && !text(&out.stderr).contains(token),
            "{format} shows the token"
        );
    }
    let out = planc(&["check", "tests/cases/check/secrets.yaml"]);
    assert!(!text(&out.stdout).contains("CAESIJlU9JMYEhOPYv4KEvKZ2QpC"));
    assert!(!text(&out.stdout).contains("Qf1s5zigZ4OX6akYjQXJC1jY"));
}

/// A plan of `steps` steps that each use an unknown action: one error each.
fn plan_with_unknown_actions(steps: usize) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("planc-many-{}-{steps}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = String::from(
        "version: 1\nname: many\ntargets:\n  k:\n    kind: kubernetes\n    context: old\n    namespace: vault\nsteps:\n",
    );
    for i in 0..steps {
        text.push_str(&format!(
            "  - id: s-{i}\n    uses: k8s.nope-{i}\n    on: k\n"
        ));
    }
    let plan = dir.join("many.yaml");
    std::fs::write(&plan, text).unwrap();
    plan
}

#[test]
fn people_see_the_first_diagnostics_and_tools_get_every_one() {
    let plan = plan_with_unknown_actions(120);
    let plan = plan.to_str().unwrap();

    let out = planc(&["check", plan]);
    assert_eq!(out.status.code(), Some(1));
    let human = text(&out.stdout);
    assert_eq!(human.matches("error[E006]").count(), 50, "{human}");
    let lines: Vec<u32> = human
        .lines()
        .filter_map(|l| l.split(&format!("{plan}:")).nth(1))
        .map(|at| at.split(':').next().unwrap().parse().unwrap())
        .collect();
    assert!(lines.windows(2).all(|w| w[0] < w[1]), "sorted by position");
    assert!(human.contains("`k8s.nope-0`") && human.contains("`k8s.nope-49`"));
    assert!(!human.contains("`k8s.nope-50`"), "the 51st is not shown");
    assert!(human.contains("... and 70 more not shown"), "{human}");
    assert!(
        human.ends_with("120 errors and 0 warnings\nby code: E006 120\n"),
        "{human}"
    );

    let out = planc(&["check", plan, "--max-diagnostics", "5"]);
    assert_eq!(text(&out.stdout).matches("error[E006]").count(), 5);
    let out = planc(&["check", plan, "--max-diagnostics", "0"]);
    let all = text(&out.stdout);
    assert_eq!(all.matches("error[E006]").count(), 120);
    assert!(!all.contains("more not shown") && !all.contains("by code"));

    let out = planc(&["check", plan, "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["diagnostics"].as_array().unwrap().len(), 120);
    assert_eq!(json["by_code"]["E006"], 120);

    let out = planc(&["check", plan, "--format", "github"]);
    let github = text(&out.stdout);
    assert_eq!(
        github.lines().filter(|l| l.starts_with("::error ")).count(),
        120
    );
    assert!(
        github.ends_with("GitHub shows the first 10 errors and 10 warnings of a step as annotations, every one is in this log\n"),
        "{github}"
    );
}
