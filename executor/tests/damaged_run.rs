//! planx reading damaged files, generator-driven: seeded mutants (`workspace_tests::mutate`) of
//! a run directory (the run record, its checksum, the journal, an object record) and of a saved
//! plan. Each is refused with an error that names the file, or read back exactly as it was
//! written (a journal may lose a torn last line, never change one); never a panic. `planx
//! status` exits 0 or 2 on them, and `planx rollback` refuses a damaged run before it sends a
//! single packet to the cluster.
//!
//! `PLANX_FUZZ_CASES` (default 400) sets how many mutants, `PLANX_FUZZ_SEED` the first seed.

mod common;

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use planx::journal::{self, Event, Journal};
use planx::rundir::{self, RunDir, RunRecord};
use serde_json::json;
use workspace_tests::mutate::{Rng, json_mutant, mutate_text};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// A run directory as planx leaves it after a few steps: the record, a journal, an object
/// record; with a kubeconfig that points at `listener`, which counts any connection.
struct Pristine {
    dir: PathBuf,
    run: PathBuf,
    record: serde_json::Value,
    events: Vec<Event>,
    object_record: PathBuf,
    object_text: String,
}

/// `name` keeps the tests of this file, which run at once, in folders of their own.
fn pristine(listener: &TcpListener, name: &str) -> Pristine {
    let dir = std::env::temp_dir().join(format!("planx-damaged-{}-{name}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let address = listener.local_addr().unwrap();
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"http://{address}\"}}\nusers:\n- name: u\n  user: {{token: t}}\ncontexts:\n- name: old\n  context: {{cluster: c, user: u}}\n- name: new\n  context: {{cluster: c, user: u}}\ncurrent-context: old\n"
        ),
    )
    .unwrap();
    let request = planc::CompileRequest {
        plan: root().join("plans/vault-transit-migration.yaml"),
        params_files: vec![root().join("plans/vault-transit-migration.params.yaml")],
        set: Vec::new(),
    };
    let compilation = planc::compile(&request, &planc::FileLoader).expect("readable plan");
    let plan = compilation.plan.expect("the transit plan compiles");
    let record = RunRecord::new(
        "vault-transit-migration-damaged".into(),
        &request,
        plan,
        &compilation.sources,
        &kubeconfig,
        Vec::new(),
        None,
    )
    .unwrap();
    let run_dir = RunDir::create(&dir.join("runs"), &record).unwrap();
    let events = vec![
        Event::RunStarted {
            plan: record.compiled.name.clone(),
            plan_sha256: record.plan_sha256.clone(),
        },
        Event::StepStarted {
            step: "preflight.replicas-old".into(),
            attempt: 1,
        },
        Event::StepSucceeded {
            step: "preflight.replicas-old".into(),
            outputs: BTreeMap::from([("replicas".to_string(), json!(3))]),
        },
        Event::StepStarted {
            step: "cutover.block-writes".into(),
            attempt: 1,
        },
        Event::Intent {
            step: "cutover.block-writes".into(),
            effect: "delete Ingress vault in old".into(),
        },
        Event::Done {
            step: "cutover.block-writes".into(),
            effect: "delete Ingress vault in old".into(),
        },
        Event::StepSucceeded {
            step: "cutover.block-writes".into(),
            outputs: BTreeMap::new(),
        },
    ];
    let mut journal = Journal::create(&run_dir.journal_path()).unwrap();
    for event in &events {
        journal.append(event.clone()).unwrap();
    }
    let object_record =
        run_dir.object_record_path("cutover.block-writes", "old", "Ingress", "vault");
    std::fs::create_dir_all(object_record.parent().unwrap()).unwrap();
    let object_text = serde_json::to_string_pretty(&json!({
        "target": "old", "kind": "Ingress", "namespace": "vault", "name": "vault",
        "object": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                   "metadata": {"name": "vault", "namespace": "vault"},
                   "spec": {"rules": [{"host": "vault.old.test"}]}}
    }))
    .unwrap();
    rundir::write_checked(&object_record, object_text.as_bytes()).unwrap();
    Pristine {
        run: run_dir.path().to_path_buf(),
        record: serde_json::to_value(&record).unwrap(),
        dir,
        events,
        object_record,
        object_text,
    }
}

/// A copy of the pristine run directory, to damage.
fn copy_run(pristine: &Pristine, name: &str) -> PathBuf {
    let copy = pristine.dir.join("damaged").join(name);
    std::fs::remove_dir_all(&copy).ok();
    copy_tree(&pristine.run, &copy);
    copy
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

fn planx(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_planx"))
        .args(args)
        .current_dir(dir)
        .env_remove("KUBECONFIG")
        .output()
        .expect("planx runs")
}

/// The pristine run's files, relative to the run directory, that a mutant may damage.
fn damageable(pristine: &Pristine) -> Vec<String> {
    let record = pristine.object_record.strip_prefix(&pristine.run).unwrap();
    let record = record.to_str().unwrap();
    vec![
        "run.json".into(),
        "run.json.sha256".into(),
        "journal.jsonl".into(),
        record.into(),
        format!("{record}.sha256"),
    ]
}

/// Check what planx makes of the run at `run` whose `file` was damaged; `None` when it is
/// sound, else what went wrong.
fn examine(pristine: &Pristine, run: &Path, file: &str) -> Option<String> {
    let outcome = std::panic::catch_unwind(|| {
        match RunDir::open(run) {
            Ok((_, record)) => {
                if serde_json::to_value(&record).unwrap() != pristine.record {
                    return Some(format!("a damaged {file} was read as another record"));
                }
            }
            Err(error) => {
                if !error.message.contains(run.to_str().unwrap()) {
                    return Some(format!("the refusal names no file: {}", error.message));
                }
            }
        }
        let journal_text = std::fs::read_to_string(run.join("journal.jsonl")).unwrap_or_default();
        if let Ok((events, _)) = journal::read(&journal_text)
            && !pristine.events.starts_with(&events)
        {
            return Some("a damaged journal was read as other events".into());
        }
        let relative = pristine.object_record.strip_prefix(&pristine.run).unwrap();
        if let Ok(text) = rundir::read_checked(&run.join(relative))
            && text != pristine.object_text
        {
            return Some("a damaged object record was read as another".into());
        }
        None
    });
    match outcome {
        Ok(problem) => problem,
        Err(_) => Some(format!("panicked reading a damaged {file}")),
    }
}

/// Keep a failing input under `target/fuzz-failures/`, to save under `tests/cases/damaged-run/`.
fn keep_failure(seed: u64, file: &str, text: &str) -> PathBuf {
    let dir = root().join("target/fuzz-failures");
    std::fs::create_dir_all(&dir).unwrap();
    let name = Path::new(file).file_name().unwrap().to_string_lossy();
    let kept = dir.join(format!("run-{seed}-{name}"));
    std::fs::write(&kept, text).unwrap();
    kept
}

/// Damage that once got through, kept as found: `tests/cases/damaged-run/FILE--NAME` replaces
/// the run's `FILE` (`run.json`, `journal.jsonl`, or `record.json` for the object record), and
/// must be refused.
#[test]
fn saved_damage_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let pristine = pristine(&listener, "saved");
    let cases = root().join("tests/cases/damaged-run");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&cases)
        .expect("tests/cases/damaged-run exists")
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert!(!names.is_empty(), "the damaged-run cases went missing");
    let record = pristine.object_record.strip_prefix(&pristine.run).unwrap();
    for case in names {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let (file, _) = name.split_once("--").expect("FILE--NAME");
        let replaced = match file {
            "record.json" => record.to_path_buf(),
            other => PathBuf::from(other),
        };
        let run = copy_run(&pristine, &name);
        std::fs::copy(&case, run.join(&replaced)).unwrap();
        assert_eq!(examine(&pristine, &run, file), None, "{name}");
        let refused = match file {
            "run.json" => RunDir::open(&run).is_err(),
            "journal.jsonl" => {
                journal::read(&std::fs::read_to_string(run.join(&replaced)).unwrap()).is_err()
            }
            _ => rundir::read_checked(&run.join(&replaced)).is_err(),
        };
        assert!(refused, "{name} was read as sound");
    }
    std::fs::remove_dir_all(&pristine.dir).ok();
}

/// A run directory of an older planx (its record without a checksum beside it) is refused as
/// another format, not as damage.
#[test]
fn a_run_of_an_older_planx_is_sent_back_to_it() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let pristine = pristine(&listener, "older");
    let run = copy_run(&pristine, "older");
    let mut record = pristine.record.clone();
    record["format"] = json!("planx.run/v3");
    std::fs::write(run.join("run.json"), record.to_string()).unwrap();
    std::fs::remove_file(run.join("run.json.sha256")).unwrap();
    let error = RunDir::open(&run).unwrap_err();
    assert!(
        error
            .message
            .contains("is `planx.run/v3`; this planx reads `planx.run/v4`")
            && error
                .message
                .contains("continue the run with the planx that started it"),
        "{}",
        error.message
    );
    std::fs::remove_dir_all(&pristine.dir).ok();
}

#[test]
fn damaged_run_directories_are_refused_never_misread() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let pristine = pristine(&listener, "mutants");
    // The pristine run reads back whole, and planx status shows it.
    assert_eq!(examine(&pristine, &pristine.run, "nothing"), None);
    let out = planx(&["status", pristine.run.to_str().unwrap()], &pristine.dir);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let start = setting("PLANX_FUZZ_SEED", 0);
    let cases = setting("PLANX_FUZZ_CASES", 400);
    let mut failures = Vec::new();
    let mut refused = 0;
    let files = damageable(&pristine);
    for seed in start..start + cases {
        let file = files[(seed % files.len() as u64) as usize].as_str();
        let run = copy_run(&pristine, &format!("s{seed}"));
        let path = run.join(file);
        let original = std::fs::read_to_string(&path).unwrap();
        let damaged = if file.ends_with(".json") {
            json_mutant(&original, seed)
        } else {
            mutate_text(&original, &mut Rng::new(seed))
        };
        std::fs::write(&path, &damaged).unwrap();
        if let Some(problem) = examine(&pristine, &run, file) {
            let kept = keep_failure(seed, file, &damaged);
            failures.push(format!(
                "seed {seed} ({file}): {problem}\n  input: {}",
                kept.display()
            ));
            continue;
        }
        // One in eight through the binary: status answers 0 or 2, never a panic; rollback of a
        // run it cannot read sends nothing.
        if seed % 8 == 0 {
            let out = planx(&["status", run.to_str().unwrap()], &pristine.dir);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if !matches!(out.status.code(), Some(0 | 2)) || stderr.contains("panicked") {
                failures.push(format!(
                    "seed {seed} ({file}): status {:?}: {stderr}",
                    out.status.code()
                ));
            }
            if out.status.code() == Some(2) {
                refused += 1;
                let out = planx(&["rollback", run.to_str().unwrap(), "--yes"], &pristine.dir);
                if out.status.code() != Some(2) {
                    failures.push(format!(
                        "seed {seed} ({file}): rollback of an unreadable run exited {:?}",
                        out.status.code()
                    ));
                }
            }
        }
        std::fs::remove_dir_all(&run).ok();
    }
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => failures.push(format!("a damaged run reached the cluster: {other:?}")),
    }
    eprintln!("{cases} damaged runs, {refused} refused by planx status");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    std::fs::remove_dir_all(&pristine.dir).ok();
}

/// Saved plans that once got through (`tests/cases/damaged-saved-plan/`, kept as found; their
/// `request` is pointed at this checkout's plan files) are refused without a panic.
#[test]
fn saved_damaged_saved_plans_are_refused() {
    let dir = std::env::temp_dir().join(format!("planx-damaged-cases-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let request = json!({
        "plan": root().join("plans/vault-transit-migration.yaml"),
        "params_files": [root().join("plans/vault-transit-migration.params.yaml")],
        "set": [],
    });
    let cases = root().join("tests/cases/damaged-saved-plan");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&cases)
        .expect("tests/cases/damaged-saved-plan exists")
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert!(
        !names.is_empty(),
        "the damaged saved plan cases went missing"
    );
    for case in names {
        let mut saved: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&case).unwrap()).unwrap();
        saved["request"] = request.clone();
        let path = dir.join(case.file_name().unwrap());
        std::fs::write(&path, saved.to_string()).unwrap();
        let outcome = std::panic::catch_unwind(|| {
            let saved = planx::run::read_saved_plan(&path)?;
            planx::run::compile_saved(&path, &saved).map(drop)
        });
        let error = outcome
            .unwrap_or_else(|_| panic!("{}: panicked", case.display()))
            .expect_err("a damaged compiled plan is refused");
        assert!(
            error.message.contains(path.to_str().unwrap()),
            "{}",
            error.message
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn damaged_saved_plans_are_refused_never_applied() {
    let dir = std::env::temp_dir().join(format!("planx-damaged-saved-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    let request = planc::CompileRequest {
        plan: root().join("plans/vault-transit-migration.yaml"),
        params_files: vec![root().join("plans/vault-transit-migration.params.yaml")],
        set: Vec::new(),
    };
    let mut compilation = planc::compile(&request, &planc::FileLoader).unwrap();
    let plan = compilation.plan.take().unwrap();
    let files = planc::state::read_folder(&root().join("tests/state/transit")).unwrap();
    let mut diagnostics = planc::Diagnostics::default();
    let state = planc::state::read_state(files, &plan, &mut compilation.sources, &mut diagnostics);
    let previews = planc::preview::preview(&plan, &state, &mut diagnostics);
    let saved = planc::render::saved_plan(&request, &plan, &compilation.sources, &previews);
    let original = serde_json::to_string_pretty(&saved).unwrap();
    let path = dir.join("saved.json");
    std::fs::write(&path, &original).unwrap();
    let pristine = planx::run::read_saved_plan(&path).unwrap();
    planx::run::compile_saved(&path, &pristine).expect("the pristine saved plan compiles");

    let start = setting("PLANX_FUZZ_SEED", 0);
    let mut failures = Vec::new();
    let mut accepted = 0;
    for seed in start..start + setting("PLANX_FUZZ_CASES", 400) / 2 {
        let damaged = json_mutant(&original, seed);
        std::fs::write(&path, &damaged).unwrap();
        let outcome = std::panic::catch_unwind(|| {
            let saved = planx::run::read_saved_plan(&path)?;
            planx::run::compile_saved(&path, &saved).map(|compiled| (saved, compiled))
        });
        let problem = match outcome {
            Err(_) => Some("panicked".to_string()),
            Ok(Err(error)) if !error.message.contains(path.to_str().unwrap()) => {
                Some(format!("the refusal names no file: {}", error.message))
            }
            Ok(Err(_)) => None,
            Ok(Ok((saved, compiled))) => {
                accepted += 1;
                // Accepted only when the plan it applies (compiled again from the files) is the
                // one the damaged file still vouches for: damage outside the compiled plan (the
                // previews people read, what was observed) is caught by the drift check.
                (planc::render::compiled_digest(&saved.compiled)
                    != rundir::digest(&compiled.plan, &compiled.sources))
                .then(|| "a damaged compiled plan was accepted".to_string())
            }
        };
        if let Some(problem) = problem {
            let kept = keep_failure(seed, "saved.json", &damaged);
            failures.push(format!(
                "seed {seed}: {problem}\n  input: {}",
                kept.display()
            ));
        }
    }
    eprintln!("{accepted} damaged saved plans kept the compiled plan intact and were accepted");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    std::fs::remove_dir_all(&dir).ok();
}
