//! What planx shows while and after it runs, for people (one line per step, a redrawn activity
//! line on a terminal) and as JSON lines for machines: progress, the summary, a run's status.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use planx::engine::{ActivityUnit, Outcome, Progress};
use planx::journal::StepState;
use planx::recovery::StepProgress;
use planx::run::Summary;
use serde_json::json;

/// How planx prints: for people, or one JSON object per line.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Human,
    Json,
}

pub fn progress(event: &Progress, output: Output, started: Instant) {
    let at = started.elapsed().as_secs_f64();
    let (kind, key, detail) = match event {
        Progress::Started { key, attempt } => ("started", key, format!("attempt {attempt}")),
        Progress::Retrying {
            key,
            attempt,
            error,
        } => ("retrying", key, format!("attempt {attempt}: {error}")),
        Progress::Skipped { key } => ("skipped", key, "done before".to_string()),
        Progress::Succeeded { key, elapsed } => {
            ("ok", key, format!("{:.1}s", elapsed.as_secs_f64()))
        }
        Progress::Failed { key, error } => ("failed", key, error.clone()),
        Progress::WaitingForApproval { key, message } => ("gate", key, message.clone()),
        Progress::Activity {
            what,
            unit,
            done,
            total,
        } => {
            activity(what, *unit, *done, *total, output, at);
            return;
        }
    };
    match output {
        Output::Json => println!(
            "{}",
            json!({"event": kind, "step": key, "detail": detail, "t": at})
        ),
        Output::Human => {
            // On a terminal, the activity line is overwritten by the next step line.
            let clear = if std::io::stderr().is_terminal() {
                "\r\x1b[2K"
            } else {
                ""
            };
            eprintln!("{clear}[{at:>7.1}s] {kind:<9} {key}  {detail}");
        }
    }
}

/// An activity inside a step: a JSON event, or on a terminal one line redrawn in place with a
/// bar when the total is known (a snapshot's size, a wait's timeout). Plain logs skip it.
fn activity(
    what: &str,
    unit: ActivityUnit,
    done: u64,
    total: Option<u64>,
    output: Output,
    at: f64,
) {
    let amount = |n: u64| match unit {
        ActivityUnit::Bytes => format!("{:.1} MB", n as f64 / 1e6),
        ActivityUnit::Seconds => format!("{n}s"),
    };
    if output == Output::Json {
        let unit = match unit {
            ActivityUnit::Bytes => "bytes",
            ActivityUnit::Seconds => "seconds",
        };
        println!(
            "{}",
            json!({"event": "activity", "detail": what, "done": done, "total": total, "unit": unit, "t": at})
        );
        return;
    }
    if !std::io::stderr().is_terminal() {
        return;
    }
    let shown = match total.filter(|t| *t > 0) {
        Some(total) => {
            let filled = ((done.min(total) * 20) / total) as usize;
            format!(
                "[{}{}] {} of {}",
                "#".repeat(filled),
                "-".repeat(20 - filled),
                amount(done),
                amount(total)
            )
        }
        None => amount(done),
    };
    eprint!("\r\x1b[2K[{at:>7.1}s] {:<9} {what}  {shown}", "working");
    let _ = std::io::stderr().flush();
}

/// The closing summary of an apply or a resume.
pub fn summary(summary: &Summary, output: Output) {
    let outcome = match &summary.outcome {
        Outcome::Completed => "completed".to_string(),
        Outcome::Failed { step, error } => format!("failed at `{step}`: {error}"),
        Outcome::NotApproved { step } => format!("stopped at gate `{step}`, not approved"),
        Outcome::Interrupted => "interrupted".to_string(),
    };
    if output == Output::Json {
        println!(
            "{}",
            json!({"event": "summary", "outcome": outcome, "total_secs": summary.total.as_secs_f64(), "outage_secs": summary.outage.map(|d| d.as_secs_f64()), "outage_waits_secs": summary.outage_waits.map(|d| d.as_secs_f64()), "run": summary.run_dir})
        );
        return;
    }
    let outage = match (summary.outage, summary.outage_waits) {
        (Some(outage), Some(waits)) => format!(
            "{:.1}s, of which {:.1}s waiting on the servers (restarts, elections, seal changes) and {:.1}s by planx",
            outage.as_secs_f64(),
            waits.as_secs_f64(),
            outage.saturating_sub(waits).as_secs_f64()
        ),
        _ if !summary.blocks_writes => {
            "none planned (no step blocks writes; elections interrupt clients briefly)".into()
        }
        _ => "n/a (writes were not blocked and verified in this run)".into(),
    };
    eprintln!(
        "\n{outcome}\ntotal {:.1}s, outage window {outage}\nrun: {} (planx status / resume / rollback)",
        summary.total.as_secs_f64(),
        summary.run_dir.display()
    );
}

/// A step's state as a person reads it.
pub fn state_text(state: &StepState) -> String {
    match state {
        StepState::NotStarted => "not started".into(),
        StepState::StartedNoEffect => "started, nothing changed yet".into(),
        StepState::InDoubt { effect } => format!("in doubt: {effect}"),
        StepState::Succeeded { .. } => "succeeded".into(),
        StepState::Failed { error } => format!("failed: {error}"),
        StepState::Changed {
            effect,
            error: Some(error),
        } => format!("failed after a change ({effect}): {error}"),
        StepState::Changed {
            effect,
            error: None,
        } => format!("stopped after a change ({effect})"),
        StepState::Interrupted => "interrupted".into(),
        StepState::Undone => "undone".into(),
        StepState::UndoInDoubt => "undo in doubt (run planx rollback again)".into(),
    }
}

/// `planx status`: every step in run order with its state, and each item of a `for_each`.
pub fn status(run_id: &str, plan: &str, steps: &[StepProgress], output: Output) -> String {
    if output == Output::Json {
        let steps: Vec<serde_json::Value> = steps
            .iter()
            .map(|step| {
                json!({
                    "step": step.id,
                    "state": state_text(&step.state),
                    "items": step.items.iter().map(|(key, state)| json!({"key": key, "state": state_text(state)})).collect::<Vec<_>>(),
                })
            })
            .collect();
        return format!("{}\n", json!({"run": run_id, "plan": plan, "steps": steps}));
    }
    let mut out = format!("run {run_id} of {plan}\n");
    let width = steps
        .iter()
        .flat_map(|s| std::iter::once(s.id.len()).chain(s.items.iter().map(|(k, _)| k.len() + 2)))
        .max()
        .unwrap_or(0);
    for step in steps {
        out.push_str(&format!(
            "  {:<width$}  {}\n",
            step.id,
            state_text(&step.state)
        ));
        for (key, state) in &step.items {
            out.push_str(&format!(
                "    {:<w$}  {}\n",
                key,
                state_text(state),
                w = width - 2
            ));
        }
    }
    out
}
