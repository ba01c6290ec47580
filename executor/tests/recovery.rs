//! Resume and rollback of the AKS migration computed from journals cut at every step.

use std::collections::BTreeMap;
use std::path::Path;

use planc::catalog::Undo;
use planc::{CompileRequest, CompiledPlan, FileLoader};
use planx::journal::{Event, StepState, read, replay};
use planx::recovery::{ResumeAction, RollbackAction, resume, rollback};

fn aks() -> CompiledPlan {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace");
    let request = CompileRequest {
        plan: root.join("plans/vault-aks-migration.yaml"),
        params_files: vec![root.join("plans/vault-aks-migration.params.yaml")],
        set: Vec::new(),
    };
    planc::compile(&request, &FileLoader)
        .expect("readable")
        .plan
        .expect("clean")
}

/// The journal of a run that completed the first `done` steps, then announced the next one's
/// side effect and crashed.
fn crashed_after(plan: &CompiledPlan, done: usize) -> Vec<Event> {
    let mut events = vec![Event::RunStarted {
        plan: plan.name.clone(),
        plan_sha256: "00".into(),
    }];
    for &index in plan.graph.order.iter().take(done) {
        let step = plan.steps[index].id.clone();
        events.push(Event::StepStarted {
            step: step.clone(),
            attempt: 1,
        });
        events.push(Event::StepSucceeded {
            step,
            outputs: BTreeMap::new(),
        });
    }
    if let Some(&next) = plan.graph.order.get(done) {
        let step = plan.steps[next].id.clone();
        events.push(Event::StepStarted {
            step: step.clone(),
            attempt: 1,
        });
        events.push(Event::Intent {
            step,
            effect: "the effect".into(),
        });
    }
    events
}

#[test]
fn resume_skips_what_succeeded_and_observes_what_is_in_doubt() {
    let plan = aks();
    for done in 0..plan.steps.len() {
        let states = replay(&crashed_after(&plan, done));
        let actions = resume(&plan, &states).expect("resumable");
        assert_eq!(actions.len(), plan.steps.len());
        for (position, (_, action)) in actions.iter().enumerate() {
            let expected = match position.cmp(&done) {
                std::cmp::Ordering::Less => ResumeAction::Skip,
                std::cmp::Ordering::Equal => ResumeAction::ObserveThenRun {
                    effect: "the effect".into(),
                },
                std::cmp::Ordering::Greater => ResumeAction::Run,
            };
            assert_eq!(
                action, &expected,
                "crash after {done} steps, position {position}"
            );
        }
    }
}

#[test]
fn rollback_undoes_in_reverse_and_names_the_points_of_no_return() {
    let plan = aks();
    let position = |id: &str| {
        plan.graph
            .order
            .iter()
            .position(|&i| plan.steps[i].id == id)
            .unwrap()
    };
    // Crash while restoring into the new Vault: the restore is in doubt.
    let states = replay(&crashed_after(&plan, position("cutover.restore")));
    let plan_rollback = rollback(&plan, &states);
    let ids: Vec<&str> = plan_rollback
        .actions
        .iter()
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "cutover.restore",
            "cutover.disable-old",
            "cutover.block-in-cluster-writes",
            "cutover.block-writes",
            "old-token",
            "new-token"
        ],
        "reverse execution order, read-only steps and restarts left out"
    );
    assert!(matches!(
        plan_rollback.actions[0].1,
        RollbackAction::CannotUndo(_)
    ));
    assert_eq!(
        plan_rollback.actions[1].1,
        RollbackAction::Undo(Undo::RestoreRecorded)
    );
    assert_eq!(
        plan_rollback.actions[2].1,
        RollbackAction::Undo(Undo::RestoreRecorded),
        "the Services get their selectors back"
    );
    assert_eq!(
        plan_rollback.actions[4].1,
        RollbackAction::Undo(Undo::Action("vault.token-revoke"))
    );
    assert!(
        plan_rollback.past_no_return.is_empty(),
        "the restore is only in doubt"
    );
    // After the step-down, rollback says what it cannot undo.
    let states = replay(&crashed_after(
        &plan,
        position("seal-migration.remove-disabled"),
    ));
    let plan_rollback = rollback(&plan, &states);
    assert_eq!(
        plan_rollback.past_no_return,
        [
            "cutover.restore",
            "seal-migration.migrate-followers",
            "seal-migration.step-down"
        ]
    );
    let text = planx::recovery::describe(&plan_rollback);
    // The new Vault holds the restored data, its keys wrapped by the old key, then the new: the
    // seal edits stay, or it could not unseal after its next restart.
    assert!(text.contains("seal-migration.remove-disabled: kept: `new_vault` passed the point of no return `cutover.restore`"), "{text}");
    assert!(
        text.contains("cutover.point-at-old-key: kept: `new_vault`"),
        "{text}"
    );
    assert!(
        text.contains("cutover.block-writes: undo: put back the recorded state"),
        "{text}"
    );
    assert!(text.contains("past the point of no return (cutover.restore, seal-migration.migrate-followers, seal-migration.step-down)"));
}

#[test]
fn a_rolled_back_run_is_not_resumed() {
    let plan = aks();
    let mut events = crashed_after(&plan, 10);
    events.push(Event::UndoStarted {
        step: "cutover.block-writes".into(),
    });
    events.push(Event::UndoFinished {
        step: "cutover.block-writes".into(),
    });
    let error = resume(&plan, &replay(&events)).unwrap_err();
    assert_eq!(
        error.0,
        "the run was rolled back (step `cutover.block-writes` was undone); start a new run"
    );
    assert_eq!(replay(&events)["cutover.block-writes"], StepState::Undone);
    let _ = read("");
}

#[test]
fn sensitive_outputs_never_reach_the_journal() {
    let plan = aks();
    let token_step = plan
        .steps
        .iter()
        .find(|s| s.id == "old-token")
        .expect("old-token");
    let outputs = BTreeMap::from([
        (
            "token".to_string(),
            serde_json::json!("hvs.PLANTEDsecretTokenValue0000"),
        ),
        ("accessor".to_string(), serde_json::json!("accessor-1")),
        ("undeclared".to_string(), serde_json::json!("x")),
    ]);
    let event = Event::succeeded(token_step, outputs);
    let text = serde_json::to_string(&event).unwrap();
    assert!(
        !text.contains("PLANTED") && !text.contains("undeclared"),
        "{text}"
    );
    assert!(text.contains("accessor-1"));
}

/// The journal of a run that succeeded up to the first follower of `seal-migration`'s
/// `migrate-followers` (a `for_each` step), and failed on the second.
fn failed_on_the_second_follower(plan: &CompiledPlan) -> (Vec<Event>, String) {
    let step = plan
        .steps
        .iter()
        .find(|s| s.id.ends_with("migrate-followers"))
        .expect("the AKS plan migrates the followers one by one")
        .id
        .clone();
    let mut events = vec![Event::RunStarted {
        plan: plan.name.clone(),
        plan_sha256: "00".into(),
    }];
    for &index in &plan.graph.order {
        let id = plan.steps[index].id.clone();
        if id == step {
            break;
        }
        events.push(Event::StepSucceeded {
            step: id,
            outputs: BTreeMap::new(),
        });
    }
    for (follower, fails) in [("vault-1", false), ("vault-2", true)] {
        let key = format!("{step}[{follower}]");
        events.push(Event::StepStarted {
            step: key.clone(),
            attempt: 1,
        });
        events.push(match fails {
            false => Event::StepSucceeded {
                step: key,
                outputs: BTreeMap::new(),
            },
            true => Event::StepFailed {
                step: key,
                error: "the node did not unseal".into(),
            },
        });
    }
    (events, step)
}

#[test]
fn a_for_each_step_failed_part_way_shows_its_items_and_its_point_of_no_return() {
    let plan = aks();
    let (events, step) = failed_on_the_second_follower(&plan);
    let states = replay(&events);
    let progress = planx::recovery::progress(&plan, &states);
    let followers = progress
        .iter()
        .find(|p| p.id == step)
        .expect("the step is listed");
    assert_eq!(
        followers.state,
        StepState::Failed {
            error: "the node did not unseal".into()
        }
    );
    let items: Vec<&str> = followers.items.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        items,
        [format!("{step}[vault-1]"), format!("{step}[vault-2]")]
    );
    let plan_rollback = rollback(&plan, &states);
    assert!(
        plan_rollback.past_no_return.contains(&step),
        "a follower was seal-migrated: {:?}",
        plan_rollback.past_no_return
    );
    assert!(
        plan_rollback
            .actions
            .iter()
            .any(|(id, action)| id == &step && matches!(action, RollbackAction::CannotUndo(_))),
        "the rollback names the step: {:?}",
        plan_rollback.actions
    );
}

#[test]
fn an_undo_started_keeps_the_outputs_it_needs() {
    let plan = aks();
    let step = plan
        .steps
        .iter()
        .find(|s| s.id == "new-token")
        .expect("the AKS plan creates a migration token")
        .id
        .clone();
    let events = vec![
        Event::StepSucceeded {
            step: step.clone(),
            outputs: BTreeMap::from([("accessor".into(), "acc-123".into())]),
        },
        Event::UndoStarted { step: step.clone() },
    ];
    assert_eq!(replay(&events).get(&step), Some(&StepState::UndoInDoubt));
    assert_eq!(
        planx::journal::outputs(&events)[&step].get("accessor"),
        Some(&serde_json::json!("acc-123")),
        "a rollback killed while revoking still finds the accessor"
    );
}

/// A step that made a change and then stopped (killed while it waited, failed, or retried and
/// failed before a second change) is rolled back, and says so in its state; a step that never
/// got to a change is not.
#[test]
fn a_step_stopped_after_a_change_is_rolled_back() {
    let plan = aks();
    let step = plan
        .steps
        .iter()
        .find(|s| s.id == "cutover.block-writes")
        .expect("the cutover deletes the Ingress")
        .id
        .clone();
    let step_of = |step: &str| step.to_string();
    let started = |attempt| Event::StepStarted {
        step: step_of(&step),
        attempt,
    };
    let changed = vec![
        started(1),
        Event::Intent {
            step: step_of(&step),
            effect: "delete Ingress vault".into(),
        },
        Event::Done {
            step: step_of(&step),
            effect: "delete Ingress vault".into(),
        },
    ];
    let killed = replay(&changed);
    assert_eq!(
        killed[&step],
        StepState::Changed {
            effect: "delete Ingress vault".into(),
            error: None
        }
    );
    let mut failed_later = changed.clone();
    failed_later.extend([
        Event::StepFailed {
            step: step_of(&step),
            error: "timed out".into(),
        },
        started(2),
        Event::StepFailed {
            step: step_of(&step),
            error: "timed out again".into(),
        },
    ]);
    let failed = replay(&failed_later);
    assert_eq!(
        failed[&step],
        StepState::Changed {
            effect: "delete Ingress vault".into(),
            error: Some("timed out again".into())
        },
        "a second attempt does not forget the first one's change"
    );
    for states in [&killed, &failed] {
        let undo = rollback(&plan, states);
        assert!(
            undo.actions
                .iter()
                .any(|(id, action)| id == &step
                    && matches!(action, RollbackAction::ObserveThenUndo(_))),
            "{undo:?}"
        );
    }
    let nothing = replay(&[
        started(1),
        Event::StepFailed {
            step: step_of(&step),
            error: "refused".into(),
        },
    ]);
    assert!(
        !rollback(&plan, &nothing)
            .actions
            .iter()
            .any(|(id, _)| id == &step),
        "a step that changed nothing has nothing to undo"
    );
}
