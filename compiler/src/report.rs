//! The one reporter: renders diagnostics for people (with the source line and a caret), as JSON
//! for tools, or as GitHub workflow annotations for pull requests.

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

/// Render every diagnostic, then a summary line (human) or an envelope (JSON).
pub fn render(
    diagnostics: &[Diagnostic],
    sources: &SourceMap,
    format: ReportFormat,
    colour: bool,
) -> String {
    match format {
        ReportFormat::Human => human(diagnostics, sources, colour),
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

fn human(diagnostics: &[Diagnostic], sources: &SourceMap, colour: bool) -> String {
    let paint = Paint { on: colour };
    let mut out = String::new();
    for diagnostic in diagnostics {
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
    let (errors, warnings) = counts(diagnostics);
    let summary = match (errors, warnings) {
        (0, 0) => "no problems found".to_string(),
        (e, w) => format!("{} and {}", plural(e, "error"), plural(w, "warning")),
    };
    let _ = writeln!(out, "{summary}");
    out
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
    json!({ "errors": errors, "warnings": warnings, "diagnostics": items })
}

/// `::error file=...,line=...,col=...,title=...::message`, escaped as the runner expects.
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
