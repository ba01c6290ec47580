//! Label selectors (`=`, `==`, `!=`, `in`, `notin`, exists, `!key`, `>`, `<`) and field selectors.

use serde_json::Value;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

/// A parsed `labelSelector`; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        for part in split_outside_parentheses(text) {
            let part = part.trim();
            if part.is_empty() {
                if text.trim().is_empty() {
                    continue;
                }
                return Err(format!(
                    "unable to parse requirement: empty requirement in {text:?}"
                ));
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(LabelSelector { requirements })
    }

    pub fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        self.requirements
            .iter()
            .all(|requirement| match requirement {
                Requirement::Equals(key, value) => label(key) == Some(value.as_str()),
                Requirement::NotEquals(key, value) => label(key) != Some(value.as_str()),
                Requirement::In(key, values) => {
                    label(key).is_some_and(|v| values.iter().any(|x| x == v))
                }
                Requirement::NotIn(key, values) => {
                    !label(key).is_some_and(|v| values.iter().any(|x| x == v))
                }
                Requirement::Exists(key) => label(key).is_some(),
                Requirement::DoesNotExist(key) => label(key).is_none(),
                Requirement::GreaterThan(key, bound) => label(key)
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v > *bound),
                Requirement::LessThan(key, bound) => label(key)
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v < *bound),
            })
    }

    /// Whether an object's `metadata.labels` match.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.matches(
            object
                .pointer("/metadata/labels")
                .and_then(Value::as_object),
        )
    }
}

fn split_outside_parentheses(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (index, character) in text.char_indices() {
        match character {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn is_key_character(character: char) -> bool {
    character.is_ascii_alphanumeric() || matches!(character, '.' | '-' | '_' | '/')
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        check_key(key, part)?;
        return Ok(Requirement::DoesNotExist(key.to_string()));
    }
    let key_end = part
        .char_indices()
        .find(|(_, c)| !is_key_character(*c))
        .map_or(part.len(), |(index, _)| index);
    let key = &part[..key_end];
    check_key(key, part)?;
    let rest = part[key_end..].trim_start();
    if rest.is_empty() {
        return Ok(Requirement::Exists(key.to_string()));
    }
    let key = key.to_string();
    if let Some(value) = rest.strip_prefix("!=") {
        return Ok(Requirement::NotEquals(
            key,
            check_value(value.trim(), part)?,
        ));
    }
    if let Some(value) = rest.strip_prefix("==") {
        return Ok(Requirement::Equals(key, check_value(value.trim(), part)?));
    }
    if let Some(value) = rest.strip_prefix('=') {
        return Ok(Requirement::Equals(key, check_value(value.trim(), part)?));
    }
    if let Some(value) = rest.strip_prefix('>') {
        return Ok(Requirement::GreaterThan(key, parse_integer(value, part)?));
    }
    if let Some(value) = rest.strip_prefix('<') {
        return Ok(Requirement::LessThan(key, parse_integer(value, part)?));
    }
    if let Some(values) = rest.strip_prefix("notin") {
        return Ok(Requirement::NotIn(key, parse_set(values, part)?));
    }
    if let Some(values) = rest.strip_prefix("in") {
        return Ok(Requirement::In(key, parse_set(values, part)?));
    }
    Err(format!(
        "unable to parse requirement: unknown operator in {part:?}"
    ))
}

fn check_key(key: &str, part: &str) -> Result<(), String> {
    if key.is_empty() || !key.chars().all(is_key_character) {
        return Err(format!(
            "unable to parse requirement: invalid label key in {part:?}"
        ));
    }
    Ok(())
}

fn check_value(value: &str, part: &str) -> Result<String, String> {
    if !value.chars().all(is_key_character) || value.contains('/') {
        return Err(format!(
            "unable to parse requirement: invalid label value in {part:?}"
        ));
    }
    Ok(value.to_string())
}

fn parse_integer(value: &str, part: &str) -> Result<i64, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("unable to parse requirement: {part:?} needs an integer value"))
}

fn parse_set(values: &str, part: &str) -> Result<Vec<String>, String> {
    let values = values.trim();
    let inner = values
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(|| {
            format!("unable to parse requirement: expected a parenthesised set in {part:?}")
        })?;
    inner
        .split(',')
        .map(|value| check_value(value.trim(), part))
        .collect()
}

/// A parsed `fieldSelector`: `path=value`, `path==value`, `path!=value`, comma-separated, on any
/// dotted field path (`metadata.name`, `metadata.namespace`, `status.phase`, ...).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector {
    requirements: Vec<(Vec<String>, bool, String)>,
}

impl FieldSelector {
    pub fn parse(text: &str) -> Result<FieldSelector, String> {
        let mut requirements = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (path, equal, value) = if let Some((path, value)) = part.split_once("!=") {
                (path, false, value)
            } else if let Some((path, value)) = part.split_once("==") {
                (path, true, value)
            } else if let Some((path, value)) = part.split_once('=') {
                (path, true, value)
            } else {
                return Err(format!("invalid field selector: {part:?} has no operator"));
            };
            let path = path.trim();
            if path.is_empty() {
                return Err(format!("invalid field selector: {part:?} has no field"));
            }
            requirements.push((
                path.split('.').map(str::to_string).collect(),
                equal,
                value.trim().to_string(),
            ));
        }
        Ok(FieldSelector { requirements })
    }

    pub fn matches_object(&self, object: &Value) -> bool {
        self.requirements.iter().all(|(path, equal, expected)| {
            let mut current = Some(object);
            for segment in path {
                current = current.and_then(|v| v.get(segment));
            }
            let actual = match current {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == *expected) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(value: Value) -> serde_json::Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn every_operator_matches_like_kubernetes() {
        let l = labels(json!({"app": "vault", "tier": "db", "n": "5"}));
        let matches = |s: &str| LabelSelector::parse(s).unwrap().matches(Some(&l));
        assert!(matches(""));
        assert!(matches("app=vault"));
        assert!(matches("app==vault"));
        assert!(!matches("app!=vault"));
        assert!(matches("missing!=x"));
        assert!(matches("app in (vault, consul)"));
        assert!(!matches("app notin (vault)"));
        assert!(matches("tier notin (web)"));
        assert!(matches("app"));
        assert!(!matches("!app"));
        assert!(matches("!missing"));
        assert!(matches("app=vault,tier in (db),!missing"));
        assert!(matches("n>4"));
        assert!(!matches("n<5"));
        assert!(!matches("app="));
    }

    #[test]
    fn bad_selectors_are_errors() {
        for bad in ["app in vault", "=x", "app=a,", "app ~ x", "app in (a/b)"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn field_selectors_read_dotted_paths() {
        let object =
            json!({"metadata": {"name": "a", "namespace": "ns"}, "status": {"phase": "Running"}});
        let matches = |s: &str| FieldSelector::parse(s).unwrap().matches_object(&object);
        assert!(matches("metadata.name=a"));
        assert!(matches("metadata.name==a,metadata.namespace=ns"));
        assert!(!matches("metadata.name!=a"));
        assert!(matches("status.phase=Running"));
        assert!(matches("spec.nodeName="));
    }
}
