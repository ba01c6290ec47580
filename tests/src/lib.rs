//! Shared helpers for the workspace-level tests: the workspace root, golden files rewritten by
//! `UPDATE_EXPECT=1`, inline diagnostic annotations, a loader with in-memory files, and the
//! seeded input mutator ([`mutate`]).

pub mod mutate;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use planc::{Diagnostic, FileLoader, Loader, SourceMap};

/// The workspace root (the folder holding `plans/`, `schema/`, `book/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Tests rewrite their expectations instead of failing when this is set.
pub fn updating() -> bool {
    std::env::var_os("UPDATE_EXPECT").is_some_and(|v| !v.is_empty())
}

/// Compare `actual` with the golden file, or rewrite it under `UPDATE_EXPECT=1`.
pub fn expect_file(path: &Path, actual: &str) {
    if updating() {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create golden folder");
        }
        std::fs::write(path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|_| {
        panic!(
            "golden file {} is missing; run with UPDATE_EXPECT=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "{} differs from the output (UPDATE_EXPECT=1 rewrites it):\n{}",
            path.display(),
            line_diff(&expected, actual)
        );
    }
}

/// A minimal line diff for failure messages.
pub fn line_diff(expected: &str, actual: &str) -> String {
    let expected: Vec<&str> = expected.lines().collect();
    let actual: Vec<&str> = actual.lines().collect();
    let mut out = String::new();
    for i in 0..expected.len().max(actual.len()) {
        match (expected.get(i), actual.get(i)) {
            (Some(e), Some(a)) if e == a => {}
            (e, a) => {
                if let Some(e) = e {
                    out.push_str(&format!("-{:>4} {e}\n", i + 1));
                }
                if let Some(a) = a {
                    out.push_str(&format!("+{:>4} {a}\n", i + 1));
                }
            }
        }
    }
    out
}

/// Reads from memory where a file was given, from the file system otherwise.
#[derive(Default)]
pub struct VirtualLoader {
    pub files: HashMap<PathBuf, String>,
}

impl Loader for VirtualLoader {
    fn load(&self, path: &Path) -> std::io::Result<String> {
        match self.files.get(path) {
            Some(text) => Ok(text.clone()),
            None => FileLoader.load(path),
        }
    }
}

/// Is this line an inline annotation (`#   ^^^ E006: message` or `#@1 E014: message`)?
pub fn is_annotation(line: &str) -> bool {
    let Some(rest) = line.strip_prefix('#') else {
        return false;
    };
    let rest = rest.trim_start_matches(' ');
    (rest.starts_with('^') || rest.starts_with('@'))
        && rest.contains(": ")
        && rest
            .trim_start_matches(['^', '@', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9'])
            .trim_start()
            .chars()
            .next()
            .is_some_and(|c| matches!(c, 'E' | 'W' | 'L'))
}

/// One annotation line for a diagnostic: carets under the span, or `#@COL` where the column is
/// too far left for a caret after the `#`.
fn annotation(diagnostic: &Diagnostic) -> String {
    let span = diagnostic.span.expect("annotated diagnostics have a span");
    let text = format!("{}: {}", diagnostic.code.as_str(), diagnostic.message);
    if span.column >= 3 {
        let width = span.len.clamp(1, 60) as usize;
        format!(
            "#{}{} {text}",
            " ".repeat(span.column as usize - 2),
            "^".repeat(width)
        )
    } else {
        format!("#@{} {text}", span.column)
    }
}

/// The annotations of the diagnostics that point into one file, as (line, annotation) pairs.
pub fn notes(sources: &SourceMap, path: &Path, diagnostics: &[Diagnostic]) -> Vec<(u32, String)> {
    let Some(file) = sources.find(path) else {
        return Vec::new();
    };
    diagnostics
        .iter()
        .filter_map(|d| {
            let span = d.span?;
            (span.file == file).then(|| (span.line, annotation(d)))
        })
        .collect()
}

/// The text of a file with its annotations replaced by `notes`, each under the line it points at.
pub fn annotate(text: &str, notes: &[(u32, String)]) -> String {
    let mut by_line: std::collections::BTreeMap<usize, Vec<&str>> = Default::default();
    for (line, note) in notes {
        by_line.entry(*line as usize).or_default().push(note);
    }
    let mut out = String::new();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if is_annotation(line.trim_end_matches(['\n', '\r'])) {
            continue;
        }
        out.push_str(line);
        if !line.ends_with('\n') {
            out.push('\n');
        }
        for note in by_line.remove(&(index + 1)).unwrap_or_default() {
            out.push_str(note);
            out.push('\n');
        }
    }
    // Diagnostics past the last line (e.g. at the end of a truncated file).
    for note in by_line.into_values().flatten() {
        out.push_str(note);
        out.push('\n');
    }
    out
}

/// Reads paths relative to the workspace root, so that outputs name files as a person at the
/// root would (`plans/x.yaml`), whatever the test's working directory.
pub struct RootedLoader;

impl Loader for RootedLoader {
    fn load(&self, path: &Path) -> std::io::Result<String> {
        FileLoader.load(&workspace_root().join(path))
    }
}

/// The plans in `plans/` (not their parameter files), as workspace-relative paths.
pub fn plan_files() -> Vec<PathBuf> {
    let mut plans: Vec<PathBuf> = std::fs::read_dir(workspace_root().join("plans"))
        .expect("plans/ exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".yaml") && !name.ends_with(".params.yaml")
        })
        .map(|path| Path::new("plans").join(path.file_name().expect("a file name")))
        .collect();
    plans.sort();
    plans
}

/// Compile a workspace-relative plan with its example parameter file.
pub fn compile_with_params(plan: &Path) -> planc::Compilation {
    planc::compile(&request_with_params(plan), &RootedLoader)
        .expect("plan and parameter files are readable")
}

/// The request for a plan with its example parameters beside it (`NAME.params.yaml`).
pub fn request_with_params(plan: &Path) -> planc::CompileRequest {
    planc::CompileRequest {
        plan: plan.to_path_buf(),
        params_files: vec![plan.with_extension("params.yaml")],
        set: Vec::new(),
    }
}

/// The files of a captured state folder (workspace-relative), with workspace-relative paths, as
/// a person at the root would name them.
pub fn state_files(folder: &Path) -> Vec<planc::state::StateFile> {
    let mut files =
        planc::state::read_folder(&workspace_root().join(folder)).expect("state folder");
    for file in &mut files {
        file.path = file
            .path
            .strip_prefix(workspace_root())
            .expect("under the root")
            .to_path_buf();
    }
    files
}
