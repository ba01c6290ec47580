//! Parameter values: read from a `--params` file, `--set name=value` or module arguments, checked
//! against the declarations (type, allowed values, pattern, secret references) with defaults
//! filled in.

use std::collections::HashSet;

use indexmap::IndexMap;
use planc_schema::plan::ParamType;

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::expr::Resolved;
use crate::source::{FileId, Span};
use crate::suggest::Suggester;
use crate::syntax::ParamDecl;
use crate::yaml::{self, Node, Value};

/// One value given for a parameter.
#[derive(Debug, Clone)]
pub struct Supplied {
    pub name: String,
    pub name_span: Span,
    pub value: Resolved,
    pub value_span: Span,
    /// Given as text on the command line: converted to the declared type.
    pub from_text: bool,
}

/// The values of a `--params` file: a mapping from names to values.
pub fn read_params_file(file: FileId, root: &Node, diagnostics: &mut Diagnostics) -> Vec<Supplied> {
    match &root.value {
        Value::Null => Vec::new(),
        Value::Map(entries) => entries
            .iter()
            .map(|(key, node)| Supplied {
                name: key.name.clone(),
                name_span: key.pos.span(file),
                value: Resolved::from_json(&node.to_json()),
                value_span: node.pos.span(file),
                from_text: false,
            })
            .collect(),
        other => {
            diagnostics.error(
                Code::WrongType,
                root.pos.span(file),
                format!(
                    "a parameter file must be a mapping of names to values, found {}",
                    other.describe()
                ),
            );
            Vec::new()
        }
    }
}

/// `--set` arguments, read from a synthetic source whose line N is the N-th argument.
pub fn read_set_arguments(
    file: FileId,
    text: &str,
    diagnostics: &mut Diagnostics,
) -> Vec<Supplied> {
    let mut supplied = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index as u32 + 1;
        let Some((name, value)) = line.split_once('=') else {
            diagnostics.push(
                Diagnostic::new(
                    Code::InvalidValue,
                    Span::new(file, line_number, 1, line.chars().count() as u32),
                    format!("`--set {line}` has no `=`"),
                )
                .with_help("write `--set name=value`"),
            );
            continue;
        };
        let name_len = name.chars().count() as u32;
        supplied.push(Supplied {
            name: name.trim().to_string(),
            name_span: Span::new(file, line_number, 1, name_len),
            value: Resolved::Str(value.to_string()),
            value_span: Span::new(
                file,
                line_number,
                name_len + 2,
                value.chars().count() as u32,
            ),
            from_text: true,
        });
    }
    supplied
}

/// Values for every declared parameter: supplied ones checked and converted, defaults for the
/// rest. A parameter without a value stays absent after its diagnostic, which points at
/// `missing_at` (a module's instantiating step) or else at the declaration.
pub fn bind(
    declarations: &[ParamDecl],
    declaration_file: FileId,
    supplied: Vec<Supplied>,
    missing_at: Option<Span>,
    suggester: &mut Suggester,
    diagnostics: &mut Diagnostics,
) -> IndexMap<String, Resolved> {
    let mut given: IndexMap<String, Supplied> = IndexMap::new();
    let names: Vec<&str> = declarations.iter().map(|d| d.name.value.as_str()).collect();
    let declared: HashSet<&str> = names.iter().copied().collect();
    for value in supplied {
        if !declared.contains(value.name.as_str()) {
            let help = match suggester.closest(&value.name, names.iter().copied()) {
                Some(near) => format!("did you mean `{near}`?"),
                None if names.is_empty() => "this plan declares no parameters".to_string(),
                None => format!("declared parameters: {}", first_few(&names)),
            };
            diagnostics.push(
                Diagnostic::new(
                    Code::UnknownField,
                    value.name_span,
                    format!("unknown parameter `{}`", value.name),
                )
                .with_help(help),
            );
            continue;
        }
        // A later source (--set after --params) wins.
        given.insert(value.name.clone(), value);
    }
    let mut values = IndexMap::new();
    for declaration in declarations {
        let name = &declaration.name.value;
        let checked = if let Some(value) = given.swap_remove(name) {
            check(declaration, &value.value, value.value_span, value.from_text)
        } else if let Some(default) = &declaration.default {
            let span = default.pos.span(declaration_file);
            check(
                declaration,
                &Resolved::from_json(&default.to_json()),
                span,
                false,
            )
        } else {
            let help = match missing_at {
                None => format!("give it in the --params file or with `--set {name}=...`"),
                Some(_) => format!("pass `{name}` in the step's `with`"),
            };
            Err(Diagnostic::new(
                Code::MissingParam,
                missing_at.unwrap_or(declaration.name.pos.span(declaration_file)),
                format!("parameter `{name}` has no value"),
            )
            .with_help(help))
        };
        match checked {
            Ok(value) => {
                values.insert(name.clone(), value);
            }
            Err(diagnostic) => diagnostics.push(diagnostic),
        }
    }
    values
}

/// Check one value against its declaration, converting command-line text to the declared type.
pub fn check(
    declaration: &ParamDecl,
    value: &Resolved,
    span: Span,
    from_text: bool,
) -> Result<Resolved, Diagnostic> {
    let name = &declaration.name.value;
    let wrong_type = |found: &Resolved| {
        Diagnostic::new(
            Code::WrongType,
            span,
            format!(
                "parameter `{name}` takes {}, found {}",
                param_type_phrase(declaration.param_type),
                found.describe()
            ),
        )
    };
    let value = match (declaration.param_type, value) {
        (ParamType::Secret, Resolved::Secret { .. }) => value.clone(),
        (ParamType::Secret, Resolved::Str(text)) if is_secret_reference(text) => Resolved::Secret {
            param: name.clone(),
            reference: text.clone(),
        },
        (ParamType::Secret, _) => {
            return Err(Diagnostic::new(
                Code::SecretLiteral,
                span,
                format!("secret parameter `{name}` is given a literal value"),
            )
            .with_help(
                "give a reference instead: `env:VARIABLE`, `file:PATH` or `prompt`; planx reads the secret when it applies the plan",
            ));
        }
        (ParamType::Integer, Resolved::Str(text)) if from_text => text
            .trim()
            .parse::<i64>()
            .map(Resolved::Int)
            .map_err(|_| wrong_type(value))?,
        (ParamType::Boolean, Resolved::Str(text)) if from_text => match text.trim() {
            "true" => Resolved::Bool(true),
            "false" => Resolved::Bool(false),
            _ => return Err(wrong_type(value)),
        },
        (ParamType::List | ParamType::Map, Resolved::Str(text)) if from_text => {
            let parsed = yaml::parse(span.file, text)
                .map(|node| Resolved::from_json(&node.to_json()))
                .map_err(|_| wrong_type(value))?;
            return check(declaration, &parsed, span, false);
        }
        (ParamType::String | ParamType::List | ParamType::Map, Resolved::StepOutput { .. })
        | (ParamType::String | ParamType::Target, Resolved::Str(_))
        | (ParamType::Integer, Resolved::Int(_))
        | (ParamType::Boolean, Resolved::Bool(_))
        | (ParamType::List, Resolved::List(_))
        | (ParamType::Map, Resolved::Map(_)) => value.clone(),
        (_, Resolved::Secret { param, .. }) => {
            return Err(Diagnostic::new(
                Code::SecretLiteral,
                span,
                format!("secret `{param}` is passed to parameter `{name}`, which is not a secret"),
            )
            .with_help(format!("declare `{name}` with `type: secret`")));
        }
        (_, other) => return Err(wrong_type(other)),
    };
    if let Resolved::Str(text) = &value
        && contains_token(text)
    {
        return Err(Diagnostic::new(
            Code::SecretLiteral,
            span,
            format!("the value of parameter `{name}` looks like a vault token"),
        )
        .with_help(
            "tokens belong in parameters of `type: secret`, given as `env:`, `file:` or `prompt`",
        ));
    }
    if let Some(allowed) = &declaration.allowed {
        let json = value.to_json();
        if !allowed.iter().any(|a| a.to_json() == json) {
            let choices: Vec<String> = allowed.iter().map(|a| a.to_json().to_string()).collect();
            return Err(Diagnostic::new(
                Code::InvalidValue,
                span,
                format!("parameter `{name}` must be one of {}", choices.join(", ")),
            ));
        }
    }
    if let (Some(pattern), Resolved::Str(text)) = (&declaration.pattern, &value) {
        let anchored = format!("^(?:{})$", pattern.value);
        match regex_lite::Regex::new(&anchored) {
            Ok(regex) if regex.is_match(text) => {}
            Ok(_) => {
                return Err(Diagnostic::new(
                    Code::InvalidValue,
                    span,
                    format!(
                        "parameter `{name}` does not match the pattern `{}`",
                        pattern.value
                    ),
                ));
            }
            Err(_) => {
                return Err(Diagnostic::new(
                    Code::InvalidValue,
                    span,
                    format!("the pattern of parameter `{name}` is not a valid regular expression"),
                ));
            }
        }
    }
    Ok(value)
}

/// The secret reference that gives no secret: an optional secret parameter left unset (an
/// Azure client secret where the pods sign in another way).
pub const NO_SECRET: &str = "none";

/// `env:NAME`, `file:PATH`, `prompt` or `none`.
pub fn is_secret_reference(text: &str) -> bool {
    if text == "prompt" || text == NO_SECRET {
        return true;
    }
    if let Some(variable) = text.strip_prefix("env:") {
        let mut chars = variable.chars();
        return matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    }
    text.strip_prefix("file:")
        .is_some_and(|path| !path.trim().is_empty())
}

/// Does a plain string hold something that looks like a Vault or OpenBao token? Such a literal
/// in a plan or parameter file is a leaked secret.
pub fn contains_token(text: &str) -> bool {
    text.split(is_token_boundary).any(looks_like_token)
}

/// The text with every token-shaped word replaced by `<redacted>`, for showing source lines.
pub fn redact_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if looks_like_token(word) {
            out.push_str("<redacted>");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if is_token_boundary(c) {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn is_token_boundary(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '`' | ',' | ';' | '(' | ')' | '=' | ':' | '[' | ']' | '{' | '}'
        )
}

fn looks_like_token(text: &str) -> bool {
    let Some((prefix, rest)) = text.split_once('.') else {
        return false;
    };
    matches!(prefix, "hvs" | "hvb" | "hvr" | "s" | "b" | "r")
        && rest.len() >= 20
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn param_type_phrase(param_type: ParamType) -> &'static str {
    match param_type {
        ParamType::String => "a string",
        ParamType::Integer => "an integer",
        ParamType::Boolean => "a boolean",
        ParamType::List => "a list",
        ParamType::Map => "a mapping",
        ParamType::Secret => "a secret reference",
        ParamType::Target => "a target id",
    }
}

/// Up to ten names, then how many more: a help line stays short however many there are.
fn first_few(names: &[&str]) -> String {
    const SHOWN: usize = 10;
    let mut list = names[..names.len().min(SHOWN)].join(", ");
    if names.len() > SHOWN {
        list.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_references() {
        assert!(is_secret_reference("env:VAULT_TOKEN"));
        assert!(is_secret_reference("file:/run/secrets/token"));
        assert!(is_secret_reference("prompt"));
        assert!(!is_secret_reference("env:"));
        assert!(!is_secret_reference("hvs.CAESIJ"));
    }

    #[test]
    fn tokens() {
        assert!(looks_like_token("hvs.CAESIJlU9JMYEhOPYv4KEvKZ2QpC"));
        assert!(contains_token("use s.Qf1s5zigZ4OX6akYjQXJC1jY if unset"));
        assert!(contains_token("token=hvs.CAESIJlU9JMYEhOPYv4KEvKZ2QpC"));
        assert_eq!(
            redact_tokens("  admin: \"hvs.CAESIJlU9JMYEhOPYv4KEvKZ2QpC\" # x"),
            "  admin: \"<redacted>\" # x"
        );
        assert!(looks_like_token("s.Qf1s5zigZ4OX6akYjQXJC1jY"));
        assert!(!looks_like_token("vault.example.com"));
        assert!(!looks_like_token("s.short"));
    }
}
