//! Renderings of previews computed by [`crate::preview`]: plain text for a terminal (coloured
//! unless told not to), Markdown for a pull request (a Mermaid graph and one collapsible section
//! per step, split into comments that fit GitHub's limit), and JSON.

use std::fmt::Write as _;

use planc_schema::saved::{ChangeKind, ObjectDiff, StepPreview};
use serde_json::json;

use crate::graph::GraphFormat;
use crate::model::CompiledPlan;

/// GitHub refuses comments longer than 65,536 characters; leave room for a header.
pub const COMMENT_LIMIT: usize = 60_000;

/// Output formats of `planc diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffFormat {
    Text,
    Markdown,
    Json,
}

fn changing(previews: &[StepPreview]) -> usize {
    previews.iter().filter(|p| !p.changes.is_empty()).count()
}

fn object_label(diff: &ObjectDiff) -> String {
    let o = &diff.object;
    format!("{} {}/{} ({})", o.kind, o.namespace, o.name, o.target)
}

fn verb(change: ChangeKind) -> &'static str {
    match change {
        ChangeKind::Create => "creates",
        ChangeKind::Update => "changes",
        ChangeKind::Delete => "deletes",
    }
}

/// The diff lines of one object, unified style, without colour.
fn diff_lines(diff: &ObjectDiff) -> Vec<String> {
    let mut lines = Vec::new();
    for section in &diff.sections {
        if !section.path.is_empty() {
            lines.push(format!("--- {} ({})", section.path, object_label(diff)));
        }
        for hunk in &section.hunks {
            if hunk.old_lines + hunk.new_lines > 0 {
                lines.push(format!(
                    "@@ -{},{} +{},{} @@",
                    hunk.old_start, hunk.old_lines, hunk.new_start, hunk.new_lines
                ));
            }
            for line in &hunk.lines {
                lines.push(format!("{}{}", line.tag, line.text));
            }
        }
    }
    lines
}

/// One object's diff as plain text: its label, then the unified lines, indented.
pub fn object_text(diff: &ObjectDiff) -> String {
    let mut out = format!("  {} {}\n", diff.change.symbol(), object_label(diff));
    for line in diff_lines(diff) {
        let _ = writeln!(out, "    {line}");
    }
    out
}

/// Plain text, one block per step that changes something or has notes.
pub fn text(plan: &CompiledPlan, previews: &[StepPreview], colour: bool) -> String {
    let paint = |code: &str, text: &str| {
        if colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    };
    let mut out = format!(
        "# {}: {} of {} steps change objects; secrets are redacted\n",
        plan.name,
        changing(previews),
        previews.len()
    );
    for preview in previews {
        if preview.changes.is_empty() && preview.notes.is_empty() {
            continue;
        }
        out.push('\n');
        let header = format!("step {}: {} on {}", preview.step, preview.uses, preview.on);
        let _ = writeln!(out, "{}", paint("1", &header));
        for diff in &preview.changes {
            let _ = writeln!(
                out,
                "  {} {}",
                paint("1", &diff.change.symbol().to_string()),
                object_label(diff)
            );
            for line in diff_lines(diff) {
                let styled = match line.chars().next() {
                    Some('+') if !line.starts_with("+++") => paint("32", &line),
                    Some('-') if !line.starts_with("---") => paint("31", &line),
                    Some('@') => paint("36", &line),
                    Some('-') => paint("1", &line),
                    _ => line,
                };
                let _ = writeln!(out, "    {styled}");
            }
        }
        for note in &preview.notes {
            let _ = writeln!(out, "  note: {note}");
        }
    }
    out
}

/// Markdown comments for a pull request, each under [`COMMENT_LIMIT`] characters; a step whose
/// diff alone is too long continues in the next comment instead of being cut.
pub fn markdown(plan: &CompiledPlan, previews: &[StepPreview]) -> Vec<String> {
    let mut blocks = vec![format!(
        "### planc diff: `{}`\n\n{} of {} steps change objects. Secrets are redacted: a changed secret shows as a new `<redacted #N>`.\n\n```mermaid\n{}```\n",
        plan.name,
        changing(previews),
        previews.len(),
        plan.graph.render(&plan.name, GraphFormat::Mermaid)
    )];
    for preview in previews {
        if preview.changes.is_empty() && preview.notes.is_empty() {
            continue;
        }
        let summary: Vec<String> = preview
            .changes
            .iter()
            .map(|d| format!("{} {}", verb(d.change), object_label(d)))
            .chain(preview.notes.iter().map(|_| "see note".to_string()))
            .collect();
        let title = format!(
            "<code>{}</code> {} on {}: {}",
            preview.step,
            preview.uses,
            preview.on,
            summary.join(", ")
        );
        let mut lines = Vec::new();
        for diff in &preview.changes {
            lines.push(format!("{} {}", diff.change.symbol(), object_label(diff)));
            lines.extend(diff_lines(diff));
        }
        let notes: String = preview.notes.iter().map(|n| format!("\n> {n}\n")).collect();
        for (index, chunk) in chunks(&lines, COMMENT_LIMIT - title.len() - 200)
            .into_iter()
            .enumerate()
        {
            let continued = if index > 0 { " (continued)" } else { "" };
            let body = if chunk.is_empty() {
                String::new()
            } else {
                format!("\n```diff\n{}\n```\n", chunk.join("\n"))
            };
            blocks.push(format!(
                "<details><summary>{title}{continued}</summary>\n{body}{}\n</details>\n",
                if index == 0 { notes.as_str() } else { "" }
            ));
        }
    }
    let mut parts: Vec<String> = Vec::new();
    let mut current = String::new();
    for block in blocks {
        if !current.is_empty() && current.len() + block.len() + 1 > COMMENT_LIMIT {
            parts.push(std::mem::take(&mut current));
        }
        current.push_str(&block);
        current.push('\n');
    }
    if !current.is_empty() {
        parts.push(current);
    }
    let total = parts.len();
    if total > 1 {
        for (index, part) in parts.iter_mut().enumerate() {
            *part = format!("<!-- planc diff: part {} of {total} -->\n{part}", index + 1);
        }
    }
    parts
}

/// Lines grouped so that each group's text stays under `limit` (a single longer line is cut
/// at a character boundary, the only case where text is shortened).
fn chunks(lines: &[String], limit: usize) -> Vec<Vec<String>> {
    let mut groups = vec![Vec::new()];
    let mut size = 0;
    for line in lines {
        let line = if line.len() > limit {
            let mut end = limit;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", &line[..end])
        } else {
            line.clone()
        };
        if size + line.len() + 1 > limit && !groups.last().is_some_and(Vec::is_empty) {
            groups.push(Vec::new());
            size = 0;
        }
        size += line.len() + 1;
        groups.last_mut().expect("one group").push(line);
    }
    groups
}

/// The previews as JSON.
pub fn json(plan: &CompiledPlan, previews: &[StepPreview]) -> String {
    let mut text = serde_json::to_string_pretty(&json!({
        "format": "planc.preview/v1",
        "plan": plan.name,
        "steps": previews,
    }))
    .expect("previews serialise");
    text.push('\n');
    text
}
