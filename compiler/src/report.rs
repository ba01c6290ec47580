//! The one reporter: renders diagnostics for people (with the source line and a caret, the first
//! ones up to a limit and counts per code), as JSON for tools, or as GitHub workflow annotations
//! for pull requests (every one in both). Linear in the number of diagnostics.

use std::fmt::Write as _;

use serde_json::json;

use crate::diagnostic::{Code, Diagnostic, Severity};
use crate::source::SourceMap;

/// How `planc check` prints diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Human,
    Json,
    Github,
}

/// How many diagnostics people see by default; `--max-diagnostics` changes it.
pub const DEFAULT_SHOWN: usize = 50;

/// Annotations of each severity GitHub shows per workflow step; the rest stay in the log
/// (actions/toolkit, docs/problem-matchers.md: "10 warning annotations, 10 error annotations,
/// and 10 notice annotations per step", 50 per job).
pub const GITHUB_ANNOTATIONS_PER_STEP: usize = 10;

/// What the human view shows: colour, and how many diagnostics before "and N more".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub colour: bool,
    /// `None` shows every diagnostic.
    pub shown: Option<usize>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            colour: false,
            shown: Some(DEFAULT_SHOWN),
        }
    }
}

impl Options {
    /// Every diagnostic, no colour.
    pub fn all_shown() -> Options {
        Options {
            colour: false,
            shown: None,
        }
    }
}

/// Render diagnostics (sorted by position, as [`crate::Compilation`] holds them), then a summary
/// line (human) or an envelope (JSON). Only the human view is limited by `options.shown`.
pub fn render(
    diagnostics: &[Diagnostic],
    sources: &SourceMap,
    format: ReportFormat,
    options: &Options,
) -> String {
    match format {
        ReportFormat::Human => human(diagnostics, sources, options),
        ReportFormat::Json => {
            let mut text = serde_json::to_string_pretty(&to_json(diagnostics, sources))
                .expect("diagnostics serialise");
            text.push('\n');
            text
        }
        ReportFormat::Github => github(diagnostics, sources),
    }
}

pub fn counts(diagnostics: &[Diagnostic]) -> (usize, usize) {
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    (errors, diagnostics.len() - errors)
}

struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

fn human(diagnostics: &[Diagnostic], sources: &SourceMap, options: &Options) -> String {
    let paint = Paint { on: options.colour };
    let mut out = String::new();
    let shown = options.shown.unwrap_or(usize::MAX).min(diagnostics.len());
    for diagnostic in &diagnostics[..shown] {
        let (label, style) = match diagnostic.severity {
            Severity::Error => ("error", "1;31"),
            Severity::Warning => ("warning", "1;33"),
        };
        let _ = writeln!(
            out,
            "{}: {}",
            paint.wrap(style, &format!("{label}[{}]", diagnostic.code.as_str())),
            paint.wrap("1", &diagnostic.message)
        );
        if let Some(span) = diagnostic.span {
            let file = sources.get(span.file);
            let gutter = span.line.to_string().len();
            let _ = writeln!(
                out,
                "{:gutter$}{} {}:{}:{}",
                "",
                paint.wrap("1;34", "-->"),
                file.path.display(),
                span.line,
                span.column
            );
            // A line that holds a secret literal is not shown, and token-shaped words in any
            // other line are masked: diagnostics end up in CI logs.
            let shown = file
                .line(span.line)
                .filter(|l| l.len() <= 400 && diagnostic.code != Code::SecretLiteral)
                .map(crate::params::redact_tokens);
            if let Some(line) = shown.as_deref() {
                let bar = paint.wrap("1;34", "|");
                let _ = writeln!(out, "{:gutter$} {bar}", "");
                let _ = writeln!(
                    out,
                    "{} {bar} {line}",
                    paint.wrap("1;34", &span.line.to_string())
                );
                let indent: String = line
                    .chars()
                    .take(span.column.saturating_sub(1) as usize)
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                let available = line
                    .chars()
                    .count()
                    .saturating_sub(indent.chars().count())
                    .max(1);
                let width = (span.len as usize).clamp(1, available);
                let _ = writeln!(
                    out,
                    "{:gutter$} {bar} {indent}{}",
                    "",
                    paint.wrap(style, &"^".repeat(width))
                );
            }
        }
        if let Some(help) = &diagnostic.help {
            let _ = writeln!(out, "  = {}: {help}", paint.wrap("1", "help"));
        }
        out.push('\n');
    }
    let hidden = diagnostics.len() - shown;
    if hidden > 0 {
        let _ = writeln!(
            out,
            "... and {hidden} more not shown (`planc check --max-diagnostics 0` shows all, `--format json` lists all)\n"
        );
    }
    let (errors, warnings) = counts(diagnostics);
    let summary = match (errors, warnings) {
        (0, 0) => "no problems found".to_string(),
        (e, w) => format!("{} and {}", plural(e, "error"), plural(w, "warning")),
    };
    let _ = writeln!(out, "{summary}");
    if hidden > 0 {
        let per_code = per_code(diagnostics)
            .into_iter()
            .map(|(code, count)| format!("{} {}", code.as_str(), count))
            .collect::<Vec<_>>();
        let _ = writeln!(out, "by code: {}", per_code.join(", "));
    }
    out
}

/// How many diagnostics of each code, in code order.
pub fn per_code(diagnostics: &[Diagnostic]) -> Vec<(Code, usize)> {
    let mut counts = std::collections::BTreeMap::new();
    for diagnostic in diagnostics {
        *counts.entry(diagnostic.code).or_insert(0) += 1;
    }
    counts.into_iter().collect()
}

fn plural(count: usize, word: &str) -> String {
    if count == 1 {
        format!("1 {word}")
    } else {
        format!("{count} {word}s")
    }
}

pub fn to_json(diagnostics: &[Diagnostic], sources: &SourceMap) -> serde_json::Value {
    let (errors, warnings) = counts(diagnostics);
    let items: Vec<serde_json::Value> = diagnostics
        .iter()
        .map(|d| {
            let mut item = json!({
                "code": d.code.as_str(),
                "title": d.code.title(),
                "severity": d.severity.as_str(),
                "message": d.message,
            });
            if let Some(span) = d.span {
                item["file"] = json!(sources.path(span.file).display().to_string());
                item["line"] = json!(span.line);
                item["column"] = json!(span.column);
                item["length"] = json!(span.len);
            }
            if let Some(help) = &d.help {
                item["help"] = json!(help);
            }
            item
        })
        .collect();
    let by_code: serde_json::Map<String, serde_json::Value> = per_code(diagnostics)
        .into_iter()
        .map(|(code, count)| (code.as_str().to_string(), json!(count)))
        .collect();
    json!({ "errors": errors, "warnings": warnings, "by_code": by_code, "diagnostics": items })
}

/// `::error file=...,line=...,col=...,title=...::message`, escaped as the runner expects, for
/// every diagnostic; then, when GitHub will show only some as annotations, a line that says so.
fn github(diagnostics: &[Diagnostic], sources: &SourceMap) -> String {
    let mut out = String::new();
    for d in diagnostics {
        let mut properties = Vec::new();
        if let Some(span) = d.span {
            properties.push(format!(
                "file={}",
                escape_property(&sources.path(span.file).display().to_string())
            ));
            properties.push(format!("line={}", span.line));
            properties.push(format!("col={}", span.column));
        }
        properties.push(format!(
            "title={}",
            escape_property(&format!("planc {}", d.code.as_str()))
        ));
        let mut message = d.message.clone();
        if let Some(help) = &d.help {
            message.push_str("\nhelp: ");
            message.push_str(help);
        }
        let _ = writeln!(
            out,
            "::{} {}::{}",
            d.severity.as_str(),
            properties.join(","),
            escape_data(&message)
        );
    }
    let (errors, warnings) = counts(diagnostics);
    if errors.max(warnings) > GITHUB_ANNOTATIONS_PER_STEP {
        let _ = writeln!(
            out,
            "planc: {} and {}; GitHub shows the first {GITHUB_ANNOTATIONS_PER_STEP} errors and {GITHUB_ANNOTATIONS_PER_STEP} warnings of a step as annotations, every one is in this log",
            plural(errors, "error"),
            plural(warnings, "warning")
        );
    }
    out
}

fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}
