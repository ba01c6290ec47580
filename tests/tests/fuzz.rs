//! Generator-driven checks of planc on inputs nobody wrote by hand: seeded mutants of the real
//! plans, modules, parameter files and captured states (see `workspace_tests::mutate`), and
//! every byte-truncation of a small plan. For each input: no panic, no hang, errors exactly
//! when no plan comes out, every diagnostic placed inside the file it names, the same output
//! for the same input. Then every saved regression case under `tests/cases/fuzz/` (inputs that
//! once failed) gets the same checks.
//!
//! `PLANC_FUZZ_CASES` (default 2000) sets how many mutants per kind, `PLANC_FUZZ_SEED` the
//! first seed (default 0). A failure names its seed and writes the input under
//! `target/fuzz-failures/`; reproduce with `PLANC_FUZZ_SEED=<seed> PLANC_FUZZ_CASES=1`, then
//! save it under `tests/cases/fuzz/` as a regression case.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use planc::report::{self, ReportFormat};
use planc::{Compilation, CompileRequest, Loader, SourceMap, state};
use workspace_tests::mutate::mutant;
use workspace_tests::{RootedLoader, plan_files, workspace_root};

/// Long enough that only a real hang (an endless loop, a runaway) reaches it; never a timing
/// assertion.
const HANG: Duration = Duration::from_secs(300);

fn cases() -> u64 {
    std::env::var("PLANC_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000)
}

fn first_seed() -> u64 {
    std::env::var("PLANC_FUZZ_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Serves one replaced file from memory and every other from the workspace.
struct Overlay {
    path: PathBuf,
    text: String,
}

impl Loader for Overlay {
    fn load(&self, path: &Path) -> std::io::Result<String> {
        if path == self.path {
            Ok(self.text.clone())
        } else {
            RootedLoader.load(path)
        }
    }
}

/// One input of the corpus: the file mutated and the plan (with parameters) compiled around it.
#[derive(Clone)]
struct Seat {
    mutated: PathBuf,
    request: CompileRequest,
}

fn corpus() -> Vec<Seat> {
    let mut seats = Vec::new();
    for plan in plan_files() {
        let request = workspace_tests::request_with_params(&plan);
        seats.push(Seat {
            mutated: plan.clone(),
            request: request.clone(),
        });
        seats.push(Seat {
            mutated: request.params_files[0].clone(),
            request,
        });
    }
    let aks = workspace_tests::request_with_params(Path::new("plans/vault-aks-migration.yaml"));
    for module in ["preflight", "cutover", "seal-migration", "proxy"] {
        seats.push(Seat {
            mutated: PathBuf::from(format!("plans/modules/{module}.yaml")),
            request: aks.clone(),
        });
    }
    for name in [
        "dozen-mistakes",
        "lints",
        "module-errors",
        "references",
        "clean",
    ] {
        let plan = PathBuf::from(format!("tests/cases/check/{name}.yaml"));
        seats.push(Seat {
            mutated: plan.clone(),
            request: CompileRequest {
                plan,
                ..Default::default()
            },
        });
    }
    seats
}

/// What one compilation printed, in every format, and the compiled plan when there was one.
#[derive(PartialEq, Debug)]
struct Outcome {
    json: String,
    human: String,
    github: String,
    compiled: Option<String>,
}

/// Check one compilation's invariants; the outcome for the determinism comparison.
fn examine(compilation: &Compilation) -> Result<Outcome, String> {
    if compilation.has_errors() != compilation.plan.is_none() {
        return Err(format!(
            "errors ({}) and plan ({}) disagree",
            compilation.has_errors(),
            compilation.plan.is_some()
        ));
    }
    located(&compilation.diagnostics, &compilation.sources)?;
    let render = |format| {
        report::render(
            &compilation.diagnostics,
            &compilation.sources,
            format,
            &report::Options::default(),
        )
    };
    let compiled = compilation.plan.as_ref().map(|plan| {
        let json = planc::render::compiled_plan_json(plan, &compilation.sources);
        format!(
            "{json}\n{}",
            plan.graph
                .render(&plan.name, planc::graph::GraphFormat::Text)
        )
    });
    Ok(Outcome {
        json: render(ReportFormat::Json),
        human: render(ReportFormat::Human),
        github: render(ReportFormat::Github),
        compiled,
    })
}

/// Every diagnostic has a position, and it lies inside the file it names: a line the file has
/// (or the one just past its end) and a column within that line (or just after it).
fn located(diagnostics: &[planc::Diagnostic], sources: &SourceMap) -> Result<(), String> {
    for diagnostic in diagnostics {
        let Some(span) = diagnostic.span else {
            return Err(format!("no position: {diagnostic:?}"));
        };
        let file = sources.get(span.file);
        let lines = file.line_count();
        if span.line > lines {
            return Err(format!(
                "line {} of a {lines}-line file {}: {diagnostic:?}",
                span.line,
                file.path.display()
            ));
        }
        let width = file.line(span.line).map_or(0, |l| l.chars().count()) as u32;
        if span.column > width + 1 {
            return Err(format!(
                "column {} of a {width}-character line {}:{}: {diagnostic:?}",
                span.column,
                file.path.display(),
                span.line
            ));
        }
    }
    Ok(())
}

/// Run `check` on a worker thread: a panic or a hang becomes an error naming the input.
fn guarded<T: Send + 'static>(
    check: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let (send, receive) = mpsc::channel();
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || {
            let result = std::panic::catch_unwind(AssertUnwindSafe(check))
                .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_text(&panic))));
            let _ = send.send(result);
        })
        .expect("a worker thread");
    receive
        .recv_timeout(HANG)
        .unwrap_or_else(|_| Err(format!("no answer in {} s: a hang", HANG.as_secs())))
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Compile with `text` in place of the seat's file, twice; check both and compare. The codes
/// reported (`ok` when it compiled), for the summary a run prints.
fn compile_mutant(seat: &Seat, text: String) -> Result<Vec<&'static str>, String> {
    let loader = Overlay {
        path: seat.mutated.clone(),
        text,
    };
    let request = seat.request.clone();
    guarded(move || {
        let first = planc::compile(&request, &loader).map_err(|e| e.to_string())?;
        let first = examine(&first)?;
        let second = examine(&planc::compile(&request, &loader).map_err(|e| e.to_string())?)?;
        if first != second {
            return Err("the same input gave different output".into());
        }
        let compilation = planc::compile(&request, &loader).map_err(|e| e.to_string())?;
        let mut codes: Vec<&'static str> = compilation
            .diagnostics
            .iter()
            .map(|d| d.code.as_str())
            .collect();
        codes.dedup();
        if compilation.plan.is_some() {
            codes.push("compiled");
        }
        Ok(codes)
    })
}

/// How often each code came out over a run: shows what the mutants reach.
fn print_summary(what: &str, seen: &std::collections::BTreeMap<&'static str, usize>) {
    let line: Vec<String> = seen.iter().map(|(code, n)| format!("{code} {n}")).collect();
    eprintln!("{what}: {}", line.join(", "));
}

fn keep_failure(kind: &str, seed: u64, path: &Path, text: &str) -> PathBuf {
    let dir = workspace_root().join("target/fuzz-failures");
    std::fs::create_dir_all(&dir).expect("target/ is writable");
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("input");
    let kept = dir.join(format!("{kind}-{seed}-{name}"));
    std::fs::write(&kept, text).expect("writable");
    kept
}

fn report_failures(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} failing inputs (each kept under target/fuzz-failures/; save it under tests/cases/fuzz/):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn mutated_plans_modules_and_parameters() {
    let seats = corpus();
    let originals: HashMap<PathBuf, String> = seats
        .iter()
        .map(|s| {
            let text = RootedLoader.load(&s.mutated).expect("corpus file");
            (s.mutated.clone(), text)
        })
        .collect();
    let mut failures = Vec::new();
    let mut seen = std::collections::BTreeMap::new();
    let start = first_seed();
    for seed in start..start + cases() {
        let seat = &seats[(seed % seats.len() as u64) as usize];
        let text = mutant(&originals[&seat.mutated], seed);
        // A stack overflow aborts the whole process: the input being checked stays on disk.
        let current = keep_failure("running", seed, &seat.mutated, &text);
        let outcome = compile_mutant(seat, text.clone());
        std::fs::remove_file(&current).ok();
        match outcome {
            Ok(codes) => {
                for code in codes {
                    *seen.entry(code).or_insert(0) += 1;
                }
            }
            Err(problem) => {
                let kept = keep_failure("plan", seed, &seat.mutated, &text);
                failures.push(format!(
                    "seed {seed} ({}): {problem}\n  input: {}",
                    seat.mutated.display(),
                    kept.display()
                ));
            }
        }
    }
    print_summary("mutants per code", &seen);
    report_failures(failures);
}

#[test]
fn every_truncation_of_a_small_plan() {
    let plan = PathBuf::from("tests/cases/check/clean.yaml");
    let text = RootedLoader.load(&plan).expect("the clean case");
    let seat = Seat {
        mutated: plan.clone(),
        request: CompileRequest {
            plan: plan.clone(),
            ..Default::default()
        },
    };
    let mut failures = Vec::new();
    for cut in (0..=text.len()).filter(|&cut| text.is_char_boundary(cut)) {
        let truncated = text[..cut].to_string();
        if let Err(problem) = compile_mutant(&seat, truncated.clone()) {
            let kept = keep_failure("truncated", cut as u64, &plan, &truncated);
            failures.push(format!(
                "cut at byte {cut}: {problem}\n  input: {}",
                kept.display()
            ));
        }
    }
    report_failures(failures);
}

/// The captured state each plan is previewed against, with its plan compiled once.
fn state_seats() -> Vec<(planc::CompiledPlan, SourceMap, Vec<state::StateFile>)> {
    [
        ("plans/vault-aks-migration.yaml", "tests/state/aks"),
        ("plans/vault-transit-migration.yaml", "tests/state/transit"),
        ("plans/vault-restore.yaml", "tests/state/restore"),
        ("plans/vault-seal-rotation.yaml", "tests/state/rotation"),
    ]
    .into_iter()
    .map(|(plan, folder)| {
        let compilation = workspace_tests::compile_with_params(Path::new(plan));
        let plan = compilation.plan.expect("the real plans compile");
        let files = workspace_tests::state_files(Path::new(folder));
        (plan, compilation.sources, files)
    })
    .collect()
}

/// Preview a plan against `files`; the rendered diagnostics and diffs.
fn preview_outcome(
    plan: &planc::CompiledPlan,
    sources: &SourceMap,
    files: Vec<state::StateFile>,
) -> Result<String, String> {
    let mut sources = sources.clone();
    let mut diagnostics = planc::Diagnostics::default();
    let state = state::read_state(files, plan, &mut sources, &mut diagnostics);
    let previews = planc::preview::preview(plan, &state, &mut diagnostics);
    let diagnostics = diagnostics.into_sorted();
    located(&diagnostics, &sources)?;
    Ok(format!(
        "{}\n{}\n{}",
        report::render(
            &diagnostics,
            &sources,
            ReportFormat::Json,
            &report::Options::default()
        ),
        planc::diff_view::json(plan, &previews.steps),
        planc::diff_view::markdown(plan, &previews.steps).join("\n")
    ))
}

#[test]
fn diffs_over_mutated_captured_states() {
    let seats = std::sync::Arc::new(state_seats());
    let mut failures = Vec::new();
    let start = first_seed();
    for seed in start..start + cases() / 2 {
        let index = (seed % seats.len() as u64) as usize;
        let (_, _, files) = &seats[index];
        let mut files = files.clone();
        let which = (seed / seats.len() as u64) as usize % files.len();
        files[which].text = mutant(&files[which].text, seed);
        let text = files[which].text.clone();
        let path = files[which].path.clone();
        let shared = seats.clone();
        let result = guarded(move || {
            let (plan, sources, _) = &shared[index];
            let first = preview_outcome(plan, sources, files.clone())?;
            let second = preview_outcome(plan, sources, files)?;
            if first != second {
                return Err("the same state gave different previews".into());
            }
            Ok(())
        });
        if let Err(problem) = result {
            let kept = keep_failure("state", seed, &path, &text);
            failures.push(format!(
                "seed {seed} ({}): {problem}\n  input: {}",
                path.display(),
                kept.display()
            ));
        }
    }
    report_failures(failures);
}

/// Inputs that once failed, kept as they were found: `tests/cases/fuzz/NAME.yaml` replaces the
/// file its first line names (`# replaces: PATH`), and compiles with that file's seat.
#[test]
fn saved_regression_cases() {
    let folder = workspace_root().join("tests/cases/fuzz");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&folder)
        .expect("tests/cases/fuzz exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "the regression cases went missing");
    let seats = corpus();
    let mut failures = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).expect("readable case");
        let replaces = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# replaces: "))
            .unwrap_or_else(|| panic!("{}: first line `# replaces: PATH`", path.display()));
        let seat = seats
            .iter()
            .find(|s| s.mutated == Path::new(replaces))
            .unwrap_or_else(|| panic!("{}: {replaces} is not in the corpus", path.display()));
        if let Err(problem) = compile_mutant(seat, text) {
            failures.push(format!("{}: {problem}", path.display()));
        }
    }
    report_failures(failures);
}
