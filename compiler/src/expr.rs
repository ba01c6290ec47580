//! Expressions inside scalar values: `{{ ... }}` templates evaluated with minijinja after parsing,
//! so the scalar keeps its position. Compile-time expressions read `params` and `targets`;
//! apply-time references (`steps.ID.outputs.NAME`, `item`) must stand alone in their scalar and
//! become typed references that planx resolves.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use indexmap::IndexMap;
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// A value after compile-time evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub enum Resolved {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Resolved>),
    Map(IndexMap<String, Resolved>),
    /// An output of an earlier step, known at apply time.
    StepOutput {
        step: String,
        output: String,
    },
    /// The current element of a `for_each` (with an optional attribute path).
    Item {
        path: Vec<String>,
    },
    /// A secret by reference: the parameter it came from and its `env:`/`file:`/`prompt`
    /// reference. Never a secret value.
    Secret {
        param: String,
        reference: String,
    },
}

impl Resolved {
    /// JSON for the rendered plan: references become small tagged objects.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Resolved::Null => serde_json::Value::Null,
            Resolved::Bool(b) => json!(b),
            Resolved::Int(i) => json!(i),
            Resolved::Float(f) => json!(f),
            Resolved::Str(s) => json!(s),
            Resolved::List(items) => items.iter().map(Resolved::to_json).collect(),
            Resolved::Map(map) => map
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
            Resolved::StepOutput { step, output } => {
                json!({ "from_step": step, "output": output })
            }
            Resolved::Item { path } => json!({ "item": path.join(".") }),
            Resolved::Secret { param, reference } => {
                json!({ "secret": param, "ref": reference })
            }
        }
    }

    /// JSON for checking against an action's input type: references stand in as strings, since
    /// inputs that take them are strings.
    pub fn to_check_json(&self) -> serde_json::Value {
        match self {
            Resolved::StepOutput { step, output } => format!("<{step}.{output}>").into(),
            Resolved::Item { .. } => "<item>".into(),
            Resolved::Secret { param, .. } => format!("<secret {param}>").into(),
            Resolved::List(items) => items.iter().map(Resolved::to_check_json).collect(),
            Resolved::Map(map) => map
                .iter()
                .map(|(k, v)| (k.clone(), v.to_check_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
            other => other.to_json(),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Resolved::Str(s) => Some(s),
            _ => None,
        }
    }

    /// What the value is, for "expected X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match self {
            Resolved::Null => "null",
            Resolved::Bool(_) => "a boolean",
            Resolved::Int(_) => "an integer",
            Resolved::Float(_) => "a number",
            Resolved::Str(_) => "a string",
            Resolved::List(_) => "a list",
            Resolved::Map(_) => "a mapping",
            Resolved::StepOutput { .. } => "a step output",
            Resolved::Item { .. } => "a for_each item",
            Resolved::Secret { .. } => "a secret",
        }
    }

    pub fn from_json(value: &serde_json::Value) -> Resolved {
        match value {
            serde_json::Value::Null => Resolved::Null,
            serde_json::Value::Bool(b) => Resolved::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Resolved::Int(i),
                None => Resolved::Float(n.as_f64().unwrap_or_default()),
            },
            serde_json::Value::String(s) => Resolved::Str(s.clone()),
            serde_json::Value::Array(items) => {
                Resolved::List(items.iter().map(Resolved::from_json).collect())
            }
            serde_json::Value::Object(map) => Resolved::Map(
                map.iter()
                    .map(|(k, v)| (k.clone(), Resolved::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// Plain data for the template context (references are not plain data).
    pub fn to_context(&self) -> Option<serde_json::Value> {
        match self {
            Resolved::StepOutput { .. } | Resolved::Item { .. } | Resolved::Secret { .. } => None,
            Resolved::List(items) => items.iter().map(Resolved::to_context).collect(),
            Resolved::Map(map) => map
                .iter()
                .map(|(k, v)| Some((k.clone(), v.to_context()?)))
                .collect::<Option<serde_json::Map<_, _>>>()
                .map(Into::into),
            other => Some(other.to_json()),
        }
    }
}

/// What a scalar holding `{{` turned out to be, before it is evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expression {
    /// `{{ steps.ID.outputs.NAME }}` alone; `path` is everything after `steps.`.
    StepOutput { path: Vec<String> },
    /// `{{ item }}` or `{{ item.attr }}` alone.
    Item { path: Vec<String> },
    /// `{{ params.NAME }}` alone: keeps the parameter's type (and secrets stay references).
    Param { name: String },
    /// Any other template, rendered to a string at compile time.
    Template { references: Vec<String> },
}

/// Does this scalar contain template syntax?
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// Classify a template scalar, or explain why it is not a usable expression.
pub fn classify(text: &str) -> Result<Expression, String> {
    if let Some(path) = single_reference(text) {
        let mut parts = path.split('.').map(str::to_owned);
        return Ok(match parts.next().as_deref() {
            Some("steps") => Expression::StepOutput {
                path: parts.collect(),
            },
            Some("item") => Expression::Item {
                path: parts.collect(),
            },
            Some("params") => {
                let rest: Vec<String> = parts.collect();
                if rest.len() == 1 {
                    Expression::Param {
                        name: rest[0].clone(),
                    }
                } else {
                    Expression::Template {
                        references: vec![path.to_string()],
                    }
                }
            }
            _ => Expression::Template {
                references: vec![path.to_string()],
            },
        });
    }
    refuse_deep_unary(text, true)?;
    let template = environment()
        .template_from_str(text)
        .map_err(|e| describe_error(&e))?;
    let mut references: Vec<String> = template.undeclared_variables(true).into_iter().collect();
    references.sort();
    if let Some(apply_time) = references
        .iter()
        .find(|r| r.starts_with("steps") || r.as_str() == "item" || r.starts_with("item."))
    {
        return Err(format!(
            "`{apply_time}` is known only at apply time and must stand alone in its value"
        ));
    }
    Ok(Expression::Template { references })
}

/// `{{ a.b-c.d }}` with nothing else around it: the dotted path, dashes allowed in step ids.
fn single_reference(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let valid = !inner.is_empty()
        && inner.split('.').all(|part| {
            let mut chars = part.chars();
            matches!(chars.next(), Some('a'..='z' | 'A'..='Z' | '_'))
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    valid.then_some(inner)
}

/// Render a compile-time template with `params` and `targets`.
pub fn render(text: &str, context: &minijinja::Value) -> Result<String, String> {
    refuse_deep_unary(text, true)?;
    environment()
        .render_str(text, context)
        .map_err(|e| describe_error(&e))
}

/// Evaluate a `when:` condition, written as a bare expression or inside `{{ }}`.
pub fn condition_references(source: &str) -> Result<Vec<String>, String> {
    let source = strip_braces(source);
    refuse_deep_unary(source, false)?;
    let expression = environment()
        .compile_expression(source)
        .map_err(|e| describe_error(&e))?;
    let mut references: Vec<String> = expression.undeclared_variables(true).into_iter().collect();
    references.sort();
    Ok(references)
}

pub fn evaluate_condition(source: &str, context: &minijinja::Value) -> Result<bool, String> {
    let source = strip_braces(source);
    refuse_deep_unary(source, false)?;
    let expression = environment()
        .compile_expression(source)
        .map_err(|e| describe_error(&e))?;
    expression
        .eval(context)
        .map(|value| value.is_true())
        .map_err(|e| describe_error(&e))
}

/// Unary operators (`-`, `not`) one inside the other that an expression may hold. minijinja
/// parses each with a recursive call and no limit: a `when:` of 40,000 `- ` overflowed the stack
/// (found by `tests/tests/fuzz.rs`, kept in `tests/cases/fuzz/`).
pub const MAX_UNARY_NESTING: usize = 64;

/// Refuse an expression with more than [`MAX_UNARY_NESTING`] unary operators in a row, before
/// minijinja parses it. `template` when `text` is a template (only `{{ }}` and `{% %}` hold
/// expressions), else the whole text is one expression.
fn refuse_deep_unary(text: &str, template: bool) -> Result<(), String> {
    let mut run = 0usize;
    let mut inside = !template;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if !inside {
            if c == '{' && matches!(chars.peek(), Some('{' | '%')) {
                chars.next();
                inside = true;
                run = 0;
            }
            continue;
        }
        match c {
            '}' | '%' if template && chars.peek() == Some(&'}') => {
                chars.next();
                inside = false;
            }
            '\'' | '"' => {
                let mut escaped = false;
                for d in chars.by_ref() {
                    if d == c && !escaped {
                        break;
                    }
                    escaped = d == '\\' && !escaped;
                }
                run = 0;
            }
            '-' => run += 1,
            c if c.is_whitespace() => {}
            c if c.is_alphanumeric() || c == '_' => {
                let mut word = String::from(c);
                while let Some(&d) = chars.peek() {
                    if !(d.is_alphanumeric() || d == '_') {
                        break;
                    }
                    word.push(d);
                    chars.next();
                }
                run = if word == "not" { run + 1 } else { 0 };
            }
            _ => run = 0,
        }
        if run > MAX_UNARY_NESTING {
            return Err(format!(
                "the expression nests more than {MAX_UNARY_NESTING} `-` or `not` operators one inside the other"
            ));
        }
    }
    Ok(())
}

fn strip_braces(source: &str) -> &str {
    let trimmed = source.trim();
    trimmed
        .strip_prefix("{{")
        .and_then(|s| s.strip_suffix("}}"))
        .map(str::trim)
        .unwrap_or(trimmed)
}

/// The values a compile-time template sees.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TemplateContext {
    pub params: BTreeMap<String, serde_json::Value>,
    pub targets: BTreeMap<String, serde_json::Value>,
}

impl TemplateContext {
    /// Converted once per scope, then shared by every template of that scope.
    pub fn to_value(&self) -> minijinja::Value {
        minijinja::Value::from(minijinja::value::Serde(self))
    }
}

fn environment() -> &'static Environment<'static> {
    static ENVIRONMENT: OnceLock<Environment<'static>> = OnceLock::new();
    ENVIRONMENT.get_or_init(|| {
        let mut environment = Environment::new();
        environment.set_undefined_behavior(UndefinedBehavior::Strict);
        environment
    })
}

fn describe_error(error: &minijinja::Error) -> String {
    let mut text = error.kind().to_string();
    if let Some(detail) = error.detail() {
        text.push_str(": ");
        text.push_str(detail);
    }
    text.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(
            classify("{{ steps.find-leader.outputs.followers }}"),
            Ok(Expression::StepOutput {
                path: vec!["find-leader".into(), "outputs".into(), "followers".into()]
            })
        );
        assert_eq!(classify("{{item}}"), Ok(Expression::Item { path: vec![] }));
        assert_eq!(
            classify("{{ params.token }}"),
            Ok(Expression::Param {
                name: "token".into()
            })
        );
        assert_eq!(
            classify("https://{{ params.domain }}:{{ targets.old.namespace }}"),
            Ok(Expression::Template {
                references: vec!["params.domain".into(), "targets.old.namespace".into()]
            })
        );
        assert!(classify("x {{ steps.a.outputs.b }}").is_err());
        assert!(classify("{{ params.a ").is_err());
    }

    #[test]
    fn rendering() {
        let mut context = TemplateContext::default();
        context
            .params
            .insert("domain".into(), "vault.example.com".into());
        assert_eq!(
            render("https://{{ params.domain }}", &context.to_value()).as_deref(),
            Ok("https://vault.example.com")
        );
        assert!(render("{{ params.nope }}", &context.to_value()).is_err());
        assert_eq!(
            evaluate_condition("params.domain != ''", &context.to_value()),
            Ok(true)
        );
    }

    #[test]
    fn deep_unary_chains_are_refused_before_minijinja_sees_them() {
        let context = TemplateContext::default().to_value();
        let deep = "- ".repeat(40_000) + "1";
        assert!(
            evaluate_condition(&deep, &context)
                .unwrap_err()
                .contains("more than 64")
        );
        let nots = "not ".repeat(65) + "true";
        assert!(condition_references(&nots).is_err());
        assert!(classify(&format!("{{{{ {deep} }}}}")).is_err());
        // Dashes outside an expression, or inside a string, are not operators.
        assert!(refuse_deep_unary(&format!("{} {{{{ 1 }}}}", "-".repeat(200)), true).is_ok());
        assert!(refuse_deep_unary(&format!("'{}' == 'x'", "-".repeat(200)), false).is_ok());
        assert_eq!(evaluate_condition("not not - -1 < 0", &context), Ok(false));
    }
}
