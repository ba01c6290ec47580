//! The book stays true: every ```` ```yaml plan ```` example compiles clean, every
//! ```` ```yaml plan-errors ```` example has errors, and the catalog and code tables name every
//! action and every diagnostic code.

use std::path::PathBuf;

use planc::{CompileRequest, Severity};
use planc_schema::ActionKind;
use workspace_tests::{VirtualLoader, workspace_root};

/// (file, info string, body) of every fenced block.
fn code_blocks() -> Vec<(String, String, String)> {
    let folder = workspace_root().join("book/src");
    let mut blocks = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .expect("book/src exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let mut current: Option<(String, String)> = None;
        for line in text.lines() {
            match (&mut current, line.strip_prefix("```")) {
                (None, Some(info)) => current = Some((info.trim().to_string(), String::new())),
                (Some(_), Some("")) => {
                    let (info, body) = current.take().expect("open block");
                    blocks.push((name.clone(), info, body));
                }
                (Some((_, body)), _) => {
                    body.push_str(line);
                    body.push('\n');
                }
                (None, None) => {}
            }
        }
    }
    blocks
}

#[test]
fn plan_examples_in_the_book_compile_as_documented() {
    let mut checked = 0;
    for (index, (file, info, body)) in code_blocks().into_iter().enumerate() {
        let expect_errors = match info.as_str() {
            "yaml plan" => false,
            "yaml plan-errors" => true,
            _ => continue,
        };
        // Examples live beside the plans, so `module: modules/...` resolves as in plans/.
        let path = workspace_root().join(format!("plans/book-example-{index}.yaml"));
        let mut loader = VirtualLoader::default();
        loader.files.insert(path.clone(), body);
        let compilation = planc::compile(
            &CompileRequest {
                plan: path,
                ..Default::default()
            },
            &loader,
        )
        .expect("in memory");
        let errors: Vec<String> = compilation
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| format!("{} {}", d.code.as_str(), d.message))
            .collect();
        if expect_errors {
            assert!(
                !errors.is_empty(),
                "an example in {file} should fail but compiles"
            );
        } else {
            assert!(
                compilation.diagnostics.is_empty(),
                "an example in {file}: {:#?}",
                compilation.diagnostics
            );
        }
        checked += 1;
    }
    assert!(checked >= 4, "the book lost its examples");
}

#[test]
fn the_catalog_page_names_every_action() {
    let page =
        std::fs::read_to_string(workspace_root().join("book/src/actions.md")).expect("actions.md");
    for action in ActionKind::ALL {
        assert!(
            page.contains(&format!("| `{}` |", action.name())),
            "actions.md lacks {}",
            action.name()
        );
    }
}

#[test]
fn the_checks_page_names_every_code() {
    let page =
        std::fs::read_to_string(workspace_root().join("book/src/checks.md")).expect("checks.md");
    for code in planc::Code::ALL {
        assert!(
            page.contains(&format!("| {} |", code.as_str())),
            "checks.md lacks {}",
            code.as_str()
        );
    }
}

#[test]
fn the_graph_page_shows_the_real_restore_graph() {
    let page =
        std::fs::read_to_string(workspace_root().join("book/src/graph.md")).expect("graph.md");
    let golden =
        std::fs::read_to_string(workspace_root().join("tests/golden/vault-restore.graph.txt"))
            .expect("golden");
    assert!(
        page.contains(&golden),
        "graph.md shows an outdated graph of vault-restore"
    );
}
