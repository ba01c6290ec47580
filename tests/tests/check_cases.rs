//! Data-driven diagnostic cases: each `tests/cases/check/NAME.yaml` (with `NAME.params.yaml`
//! beside it when it has one) carries the diagnostics it must produce as annotations under the
//! offending lines; modules in `modules/` carry those of every case that uses them.
//! `UPDATE_EXPECT=1` rewrites the annotations from the compiler's output.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use planc::{CompileRequest, FileLoader};
use workspace_tests::{annotate, line_diff, notes, updating, workspace_root};

fn yaml_files(folder: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .expect("case folder exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_case_reports_exactly_its_annotations() {
    let folder = workspace_root().join("tests/cases/check");
    let modules = yaml_files(&folder.join("modules"));
    let cases: Vec<PathBuf> = yaml_files(&folder)
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with(".params.yaml"))
        .collect();
    assert!(cases.len() >= 10, "the case folder went missing");
    let mut expected: Vec<(PathBuf, String)> = Vec::new();
    let mut module_notes: BTreeMap<PathBuf, BTreeSet<(u32, String)>> = BTreeMap::new();
    for plan in cases {
        let params = plan.with_extension("params.yaml");
        let request = CompileRequest {
            plan: plan.clone(),
            params_files: if params.exists() {
                vec![params.clone()]
            } else {
                vec![]
            },
            set: Vec::new(),
        };
        let compilation = planc::compile(&request, &FileLoader).expect("case files are readable");
        for path in [&plan, &params] {
            if let Some(file) = compilation.sources.find(path) {
                let text = &compilation.sources.get(file).text;
                let notes = notes(&compilation.sources, path, &compilation.diagnostics);
                expected.push((path.clone(), annotate(text, &notes)));
            }
        }
        for module in &modules {
            module_notes
                .entry(module.clone())
                .or_default()
                .extend(notes(
                    &compilation.sources,
                    module,
                    &compilation.diagnostics,
                ));
        }
    }
    for (module, notes) in module_notes {
        let text = std::fs::read_to_string(&module).expect("readable module");
        let notes: Vec<(u32, String)> = notes.into_iter().collect();
        expected.push((module, annotate(&text, &notes)));
    }
    let mut failures = Vec::new();
    for (path, want) in expected {
        let actual = std::fs::read_to_string(&path).expect("readable");
        if actual == want {
            continue;
        }
        if updating() {
            std::fs::write(&path, &want).expect("writable");
        } else {
            failures.push(format!(
                "{}:\n{}",
                path.display(),
                line_diff(&actual, &want)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "annotations differ (UPDATE_EXPECT=1 rewrites them):\n{}",
        failures.join("\n")
    );
}
