//! Malformed input gets diagnostics and no plan: never a panic, a hang or unbounded memory.
//! Truncated plans, binary garbage, deep nesting, alias bombs, a 50 MB file, unknown versions,
//! empty files.

use std::path::{Path, PathBuf};

use planc::{Code, Compilation, CompileRequest};
use workspace_tests::{VirtualLoader, workspace_root};

fn compile_text(text: &str) -> Compilation {
    let path = PathBuf::from("/virtual/plan.yaml");
    let mut loader = VirtualLoader::default();
    loader.files.insert(path.clone(), text.to_string());
    let request = CompileRequest {
        plan: path,
        ..Default::default()
    };
    planc::compile(&request, &loader).expect("in-memory files are readable")
}

fn codes(compilation: &Compilation) -> Vec<&'static str> {
    compilation
        .diagnostics
        .iter()
        .map(|d| d.code.as_str())
        .collect()
}

fn assert_rejected(compilation: &Compilation, code: Code) {
    assert!(compilation.plan.is_none(), "a malformed plan compiled");
    assert!(
        compilation.diagnostics.iter().any(|d| d.code == code),
        "expected {}, got {:?}",
        code.as_str(),
        compilation.diagnostics
    );
    for diagnostic in &compilation.diagnostics {
        assert!(
            diagnostic.span.is_some(),
            "every diagnostic has a position: {diagnostic:?}"
        );
        assert_eq!(diagnostic.message, diagnostic.message.trim_end_matches('.'));
    }
}

#[test]
fn empty_files_and_comment_only_files() {
    assert_rejected(&compile_text(""), Code::MissingField);
    assert_rejected(&compile_text("# nothing here\n"), Code::MissingField);
    assert_rejected(&compile_text("\n\n   \n"), Code::MissingField);
}

#[test]
fn unknown_and_malformed_versions() {
    assert_rejected(
        &compile_text("version: 2\nname: x\nsteps: []\n"),
        Code::UnsupportedVersion,
    );
    assert_rejected(
        &compile_text("version: one\nname: x\nsteps: []\n"),
        Code::WrongType,
    );
    assert_rejected(&compile_text("name: x\nsteps: []\n"), Code::MissingField);
}

#[test]
fn documents_of_the_wrong_shape() {
    assert_rejected(&compile_text("- just\n- a list\n"), Code::WrongType);
    assert_rejected(&compile_text("a scalar\n"), Code::WrongType);
    assert_rejected(
        &compile_text("version: 1\nname: x\nsteps: []\n---\nversion: 1\n"),
        Code::YamlSyntax,
    );
}

#[test]
fn every_truncation_of_a_real_plan_is_handled() {
    let text = std::fs::read_to_string(workspace_root().join("plans/vault-transit-migration.yaml"))
        .expect("plan");
    let mut rejected = 0;
    for cut in (0..text.len()).step_by(53) {
        let Some(prefix) = text.get(..cut) else {
            continue;
        };
        let compilation = compile_text(prefix);
        if compilation.plan.is_none() {
            rejected += 1;
            assert!(
                !compilation.diagnostics.is_empty(),
                "rejected without a diagnostic at cut {cut}"
            );
        }
    }
    assert!(rejected > 10, "truncated plans should mostly be rejected");
}

#[test]
fn binary_garbage() {
    // Deterministic noise, made valid UTF-8 by keeping the low 7 bits.
    let mut state: u64 = 0x9e3779b97f4a7c15;
    let noise: String = (0..20_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from((state & 0x7f) as u8)
        })
        .collect();
    let compilation = compile_text(&noise);
    assert!(compilation.plan.is_none());
    assert!(!compilation.diagnostics.is_empty());
    // Bytes that are not UTF-8 at all stop at reading, with the file named.
    let folder = std::env::temp_dir().join(format!("planc-garbage-{}", std::process::id()));
    std::fs::create_dir_all(&folder).expect("temp dir");
    let path = folder.join("garbage.yaml");
    std::fs::write(&path, [0xff_u8, 0xfe, 0x00, 0x9f, 0x80, 0xc3]).expect("write");
    let error = planc::compile(
        &CompileRequest {
            plan: path.clone(),
            ..Default::default()
        },
        &planc::FileLoader,
    )
    .err()
    .expect("not UTF-8 is an input error");
    assert!(
        error.to_string().contains("garbage.yaml") && error.to_string().contains("UTF-8"),
        "{error}"
    );
    std::fs::remove_dir_all(&folder).ok();
}

#[test]
fn deep_nesting_stops_at_the_depth_limit() {
    let flow = format!(
        "version: 1\nname: x\nsteps: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert_rejected(&compile_text(&flow), Code::YamlSyntax);
    let mut block = String::from("version: 1\nname: x\nsteps:\n");
    for depth in 0..2_000 {
        block.push_str(&" ".repeat(depth * 2 + 2));
        block.push_str("- k:\n");
    }
    assert_rejected(&compile_text(&block), Code::YamlSyntax);
}

#[test]
fn alias_bombs_are_stopped() {
    let mut bomb = String::from(
        "version: 1\nname: x\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for level in 1..10 {
        let previous = format!("*a{}", level - 1);
        bomb.push_str(&format!(
            "a{level}: &a{level} [{}]\n",
            [previous.as_str(); 10].join(", ")
        ));
    }
    bomb.push_str("steps: *a9\n");
    let compilation = compile_text(&bomb);
    assert!(compilation.plan.is_none());
    assert!(
        codes(&compilation).contains(&"E001") || codes(&compilation).contains(&"E003"),
        "{:?}",
        compilation.diagnostics
    );
}

#[test]
fn a_fifty_megabyte_file_is_refused_with_a_diagnostic() {
    let mut text = String::from("version: 1\nname: big\ndescription: |\n");
    let line = "  0123456789012345678901234567890123456789012345678901234567890123456789\n";
    while text.len() < 50 * 1024 * 1024 {
        text.push_str(line);
    }
    text.push_str("steps: []\n");
    let compilation = compile_text(&text);
    assert_rejected(&compilation, Code::YamlSyntax);
    assert!(
        compilation.diagnostics[0].message.contains("MiB"),
        "{:?}",
        compilation.diagnostics
    );
}

#[test]
fn missing_plan_and_parameter_files_are_input_errors() {
    let missing = Path::new("/nonexistent/plan.yaml");
    let error = planc::compile(
        &CompileRequest {
            plan: missing.into(),
            ..Default::default()
        },
        &planc::FileLoader,
    )
    .err()
    .expect("missing file");
    assert!(error.to_string().contains("/nonexistent/plan.yaml"));
}

/// Found by the error-heavy benchmark: a cycle through 100,000 steps overflowed the stack in
/// the cycle search (petgraph's Tarjan recurses once per node). A test thread's 2 MiB stack
/// shows it at 30,000. The message elides the middle of the path.
#[test]
fn a_cycle_through_thirty_thousand_steps_is_one_short_diagnostic() {
    let steps = 30_000;
    let mut text = String::from(
        "version: 1\nname: ring\ntargets:\n  k:\n    kind: kubernetes\n    context: old\n    namespace: vault\nsteps:\n",
    );
    for i in 0..steps {
        text.push_str(&format!(
            "  - id: s-{i}\n    uses: k8s.backup\n    on: k\n    with: {{kind: Ingress, name: vault}}\n    needs: [s-{}]\n",
            (i + 1) % steps
        ));
    }
    let compilation = compile_text(&text);
    assert_rejected(&compilation, Code::Cycle);
    let cycle = &compilation.diagnostics[0];
    assert_eq!(
        cycle.message,
        "dependency cycle: s-0 -> s-1 -> s-2 -> s-3 -> s-4 -> s-5 -> s-6 -> s-7 -> ... 29990 more steps ... -> s-29998 -> s-29999 -> s-0"
    );
}

/// Every need dangling: each gets its own diagnostic, and suggestions stop at the budget
/// instead of searching every id for every miss.
#[test]
fn thousands_of_dangling_needs_each_get_a_diagnostic() {
    let steps = 5_000;
    let mut text = String::from(
        "version: 1\nname: dangling\ntargets:\n  k:\n    kind: kubernetes\n    context: old\n    namespace: vault\nsteps:\n",
    );
    for i in 0..steps {
        text.push_str(&format!(
            "  - id: step-{i}\n    uses: k8s.backup\n    on: k\n    with: {{kind: Ingress, name: vault}}\n    needs: [stepp-{i}]\n"
        ));
    }
    let compilation = compile_text(&text);
    assert_rejected(&compilation, Code::UnknownDependency);
    assert_eq!(compilation.diagnostics.len(), steps);
    assert_eq!(
        compilation.diagnostics[0].help.as_deref(),
        Some("did you mean `step-0`?"),
        "the first misses are searched"
    );
    let searched = compilation
        .diagnostics
        .iter()
        .filter(|d| d.help.is_some())
        .count();
    assert_eq!(searched, planc::suggest::BUDGET / steps);
}
