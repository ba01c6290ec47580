//! The engine's scheduling and journaling, with actions that record what they are asked to do:
//! dependency order and bounded concurrency, `for_each` over an output, retries for transient
//! errors only, timeouts, gates, a clean stop, and a resume that never repeats a side effect.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use planc::{CompileRequest, CompiledPlan, Loader};
use planx::engine::{
    ActionError, Actions, BoxFuture, Effects, Engine, Options, Outcome, Outputs, Preapproved,
    Progress, StepRun, run,
};
use planx::journal::{Event, Journal, read, replay};
use planx::secrets::Secret;
use serde_json::json;
use tokio::sync::watch;

const PLAN: &str = r#"
version: 1
name: engine-test
params:
  token:
    type: secret
    default: env:TOKEN
targets:
  cluster:
    kind: kubernetes
    context: test
  vault:
    kind: vault
    cluster: cluster
    url: https://vault.test
steps:
  - id: backup
    uses: k8s.backup
    on: cluster
    with: {kind: Ingress, name: vault}
  - id: block
    uses: k8s.delete
    on: cluster
    with: {kind: Ingress, name: vault}
    needs: [backup]
  - id: token
    uses: vault.token-create
    on: vault
    with: {admin_token: "{{ params.token }}"}
  - id: leader
    uses: vault.leader
    on: vault
    needs: [block]
  - id: followers
    uses: vault.restart
    on: vault
    for_each: "{{ steps.leader.outputs.followers }}"
    with: {pod: "{{ item }}"}
    retry: {attempts: 3, backoff: 0s}
  - id: step-down
    uses: vault.step-down
    on: vault
    with: {token: "{{ steps.token.outputs.token }}"}
    needs: [followers]
    gate: step the leader down?
"#;

struct Memory(String);

impl Loader for Memory {
    fn load(&self, _: &Path) -> std::io::Result<String> {
        Ok(self.0.clone())
    }
}

fn plan() -> CompiledPlan {
    let compilation = planc::compile(
        &CompileRequest {
            plan: "engine-test.yaml".into(),
            ..Default::default()
        },
        &Memory(PLAN.into()),
    )
    .unwrap();
    compilation
        .plan
        .unwrap_or_else(|| panic!("{:?}", compilation.diagnostics))
}

/// Records every call; fails the way a test asks.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
    running: Mutex<usize>,
    most_at_once: Mutex<usize>,
    /// Transient failures left for a key.
    transient: Mutex<BTreeMap<String, u32>>,
    permanent: Mutex<Vec<String>>,
    slow: Mutex<Vec<String>>,
    /// Keys whose effect `observe` reports as done.
    observed_done: Mutex<Vec<String>>,
    seen_secrets: Mutex<Vec<String>>,
    /// What each key's apply was told an earlier attempt left in doubt.
    in_doubt_seen: Mutex<BTreeMap<String, Option<String>>>,
}

impl Actions for Recorder {
    fn apply<'a>(
        &'a self,
        run: &'a StepRun,
        effects: &'a Effects,
    ) -> BoxFuture<'a, Result<Outputs, ActionError>> {
        Box::pin(async move {
            {
                let mut running = self.running.lock().unwrap();
                *running += 1;
                let mut most = self.most_at_once.lock().unwrap();
                *most = (*most).max(*running);
            }
            self.calls.lock().unwrap().push(run.key.clone());
            self.in_doubt_seen
                .lock()
                .unwrap()
                .insert(run.key.clone(), effects.in_doubt());
            for (reference, secret) in &run.step_secrets {
                self.seen_secrets
                    .lock()
                    .unwrap()
                    .push(format!("{reference}={}", secret.expose()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            if self.slow.lock().unwrap().contains(&run.key) {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            let result = async {
                if let Some(left) = self
                    .transient
                    .lock()
                    .unwrap()
                    .get_mut(&run.key)
                    .filter(|n| **n > 0)
                {
                    *left -= 1;
                    return Err(ActionError::transient("connection reset"));
                }
                if self.permanent.lock().unwrap().contains(&run.key) {
                    return Err(ActionError::permanent("403 permission denied"));
                }
                effects
                    .perform(&format!("effect of {}", run.key), async { Ok(()) })
                    .await?;
                Ok(match run.step.id.as_str() {
                    "leader" => Outputs::from([
                        ("leader", json!("vault-0")),
                        ("followers", json!(["vault-1", "vault-2"])),
                    ]),
                    "token" => {
                        let mut outputs = Outputs::from([("accessor", json!("acc-1"))]);
                        outputs.insert_secret("token", Secret::new("hvs.PLANTEDengineToken"));
                        outputs
                    }
                    "backup" => Outputs::from([("backup", json!("backups/ingress.yaml"))]),
                    _ => Outputs::new(),
                })
            }
            .await;
            *self.running.lock().unwrap() -= 1;
            result
        })
    }

    fn observe<'a>(
        &'a self,
        run: &'a StepRun,
    ) -> BoxFuture<'a, Result<Option<Outputs>, ActionError>> {
        Box::pin(async move {
            self.calls
                .lock()
                .unwrap()
                .push(format!("observe {}", run.key));
            Ok(self
                .observed_done
                .lock()
                .unwrap()
                .contains(&run.key)
                .then(Outputs::new))
        })
    }
}

fn journal_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("planx-engine-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("journal.jsonl")
}

async fn go(
    recorder: Arc<Recorder>,
    journal: Journal,
    states: BTreeMap<String, planx::journal::StepState>,
    approve: bool,
    stop: watch::Receiver<bool>,
) -> (Outcome, Vec<Progress>) {
    let progress = Arc::new(Mutex::new(Vec::new()));
    let sink = progress.clone();
    let engine = Engine {
        actions: recorder,
        approver: Arc::new(Preapproved {
            all: approve,
            steps: vec![],
        }),
        options: Options {
            concurrency: 2,
            default_backoff: Duration::from_millis(1),
        },
    };
    let outcome = run(
        engine,
        plan(),
        states,
        journal,
        move |p| sink.lock().unwrap().push(p),
        stop,
    )
    .await
    .expect("journal writes");
    let progress = progress.lock().unwrap().clone();
    (outcome, progress)
}

fn events(path: &Path) -> Vec<Event> {
    read(&std::fs::read_to_string(path).unwrap()).unwrap().0
}

#[tokio::test]
async fn runs_in_dependency_order_with_items_and_retries() {
    let recorder = Arc::new(Recorder::default());
    recorder
        .transient
        .lock()
        .unwrap()
        .insert("followers[vault-2]".into(), 2);
    let path = journal_path("order");
    let (_stop_tx, stop) = watch::channel(false);
    let (outcome, progress) = go(
        recorder.clone(),
        Journal::create(&path).unwrap(),
        BTreeMap::new(),
        true,
        stop,
    )
    .await;
    assert_eq!(outcome, Outcome::Completed);
    let calls = recorder.calls.lock().unwrap().clone();
    let position = |key: &str| {
        calls
            .iter()
            .position(|c| c == key)
            .unwrap_or_else(|| panic!("{key} never ran: {calls:?}"))
    };
    assert!(position("backup") < position("block") && position("block") < position("leader"));
    assert!(
        position("leader") < position("followers[vault-1]")
            && position("followers[vault-1]") < position("followers[vault-2]")
    );
    assert!(
        position("followers[vault-2]") < position("step-down")
            && position("token") < position("step-down")
    );
    assert_eq!(
        calls.iter().filter(|c| *c == "followers[vault-2]").count(),
        3,
        "two transient failures, then success"
    );
    assert!(
        *recorder.most_at_once.lock().unwrap() <= 2,
        "concurrency is bounded"
    );
    assert!(
        progress
            .iter()
            .any(|p| matches!(p, Progress::Retrying { key, .. } if key == "followers[vault-2]"))
    );
    // The step-down got the token that `token` created, from memory.
    assert_eq!(
        *recorder.seen_secrets.lock().unwrap(),
        ["step:token.token=hvs.PLANTEDengineToken"]
    );
    // The journal: intents before effects, outputs without the token, a finished run.
    let journal_text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !journal_text.contains("PLANTED"),
        "the token never reaches the journal"
    );
    let events = events(&path);
    let states = replay(&events);
    for key in [
        "backup",
        "block",
        "token",
        "leader",
        "followers[vault-1]",
        "followers[vault-2]",
        "followers",
        "step-down",
    ] {
        assert!(
            matches!(states[key], planx::journal::StepState::Succeeded { .. }),
            "{key}: {:?}",
            states[key]
        );
    }
    assert_eq!(
        events.last(),
        Some(&Event::RunFinished {
            outcome: "completed".into()
        })
    );
}

#[tokio::test]
async fn a_permanent_failure_stops_the_run_and_a_gate_can_say_no() {
    let recorder = Arc::new(Recorder::default());
    recorder.permanent.lock().unwrap().push("block".into());
    let path = journal_path("failure");
    let (_tx, stop) = watch::channel(false);
    let (outcome, _) = go(
        recorder.clone(),
        Journal::create(&path).unwrap(),
        BTreeMap::new(),
        true,
        stop,
    )
    .await;
    assert_eq!(
        outcome,
        Outcome::Failed {
            step: "block".into(),
            error: "403 permission denied".into()
        }
    );
    let calls = recorder.calls.lock().unwrap().clone();
    assert_eq!(
        calls.iter().filter(|c| *c == "block").count(),
        1,
        "permanent errors are not retried"
    );
    assert!(
        !calls.contains(&"leader".to_string()),
        "nothing after the failure starts"
    );

    let recorder = Arc::new(Recorder::default());
    let path = journal_path("gate");
    let (_tx, stop) = watch::channel(false);
    let (outcome, _) = go(
        recorder.clone(),
        Journal::create(&path).unwrap(),
        BTreeMap::new(),
        false,
        stop,
    )
    .await;
    assert_eq!(
        outcome,
        Outcome::NotApproved {
            step: "step-down".into()
        }
    );
    assert!(
        !recorder
            .calls
            .lock()
            .unwrap()
            .contains(&"step-down".to_string())
    );
}

#[tokio::test]
async fn a_stopped_run_resumes_without_repeating_side_effects() {
    let recorder = Arc::new(Recorder::default());
    recorder.slow.lock().unwrap().push("leader".into());
    let path = journal_path("resume");
    let (stop_tx, stop) = watch::channel(false);
    let first = recorder.clone();
    let journal = Journal::create(&path).unwrap();
    let handle = tokio::spawn(async move { go(first, journal, BTreeMap::new(), true, stop).await });
    // Ask to stop while `leader` is in flight: it finishes, nothing new starts.
    for _ in 0..200 {
        if recorder
            .calls
            .lock()
            .unwrap()
            .contains(&"leader".to_string())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop_tx.send(true).unwrap();
    let (outcome, _) = handle.await.unwrap();
    assert_eq!(outcome, Outcome::Interrupted);
    let first_calls = recorder.calls.lock().unwrap().clone();
    assert!(
        first_calls.contains(&"leader".to_string())
            && !first_calls.iter().any(|c| c.starts_with("followers"))
    );

    // A crash right after the intent of the first follower: the journal ends there.
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&fake_intent(&text, "followers[vault-1]"));
    // And the second follower's, which `observe` cannot settle: its apply is told.
    text.push_str(&fake_intent(&text, "followers[vault-2]"));
    std::fs::write(&path, &text).unwrap();
    let (journal, events) = Journal::reopen(&path).unwrap();
    let states = replay(&events);
    let second = Arc::new(Recorder::default());
    second
        .observed_done
        .lock()
        .unwrap()
        .push("followers[vault-1]".into());
    let (_tx, stop) = watch::channel(false);
    let (outcome, progress) = go(second.clone(), journal, states, true, stop).await;
    let calls = second.calls.lock().unwrap().clone();
    for done_before in ["backup", "block", "leader"] {
        assert!(
            !calls.contains(&done_before.to_string()),
            "{done_before} ran again: {calls:?}"
        );
        assert!(progress.contains(&Progress::Skipped {
            key: done_before.into()
        }));
    }
    assert!(calls.contains(&"observe followers[vault-1]".to_string()));
    assert!(
        !calls.contains(&"followers[vault-1]".to_string()),
        "an effect observed as done is not repeated"
    );
    assert!(calls.contains(&"followers[vault-2]".to_string()));
    let in_doubt = second.in_doubt_seen.lock().unwrap().clone();
    assert_eq!(
        in_doubt["followers[vault-2]"].as_deref(),
        Some("effect of followers[vault-2]"),
        "the apply of a step in doubt is told what its crashed attempt began"
    );
    assert_eq!(in_doubt["step-down"], None, "{in_doubt:?}");
    // `token` succeeded before the stop, but its token lived in memory only and the step-down
    // still needs it: it runs again, and the step-down gets the new token.
    assert!(calls.contains(&"token".to_string()));
    assert_eq!(
        *second.seen_secrets.lock().unwrap(),
        ["step:token.token=hvs.PLANTEDengineToken"]
    );
    assert_eq!(outcome, Outcome::Completed);
}

/// Append a started + intent pair for `key` with correct sequence numbers, as a crashed run leaves it.
fn fake_intent(text: &str, key: &str) -> String {
    let path = std::env::temp_dir().join(format!("planx-engine-{}-scratch", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).unwrap();
    let scratch = path.join("journal.jsonl");
    std::fs::write(&scratch, text).unwrap();
    let (mut journal, _) = Journal::reopen(&scratch).unwrap();
    journal
        .append(Event::StepStarted {
            step: key.into(),
            attempt: 1,
        })
        .unwrap();
    journal
        .append(Event::Intent {
            step: key.into(),
            effect: format!("effect of {key}"),
        })
        .unwrap();
    let all = std::fs::read_to_string(&scratch).unwrap();
    all[text.len()..].to_string()
}

#[tokio::test]
async fn a_step_past_its_timeout_fails() {
    let recorder = Arc::new(Recorder::default());
    recorder.slow.lock().unwrap().push("backup".into());
    let mut compiled = plan();
    compiled
        .steps
        .iter_mut()
        .find(|s| s.id == "backup")
        .unwrap()
        .timeout_secs = Some(1);
    let path = journal_path("timeout");
    let (_tx, stop) = watch::channel(false);
    let engine = Engine {
        actions: recorder,
        approver: Arc::new(Preapproved {
            all: true,
            steps: vec![],
        }),
        options: Options::default(),
    };
    let outcome = run(
        engine,
        compiled,
        BTreeMap::new(),
        Journal::create(&path).unwrap(),
        |_| {},
        stop,
    )
    .await
    .unwrap();
    assert_eq!(
        outcome,
        Outcome::Failed {
            step: "backup".into(),
            error: "timed out after 1s".into()
        }
    );
}
