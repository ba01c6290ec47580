//! Diffs as data: an object before and after a step, with secrets redacted, rendered to YAML and
//! compared line by line; every multi-line text inside it (a configuration file in a ConfigMap,
//! a start script) is taken out and compared as a section of its own.

use std::collections::{BTreeMap, HashMap};

use planc_schema::saved::{ChangeKind, DiffLine, DiffSection, Hunk, ObjectDiff, ObjectRef};
use serde_json::Value;
use similar::{ChangeTag, TextDiff};

use crate::edit::seal;

/// Keys whose string values are secrets wherever they appear in an object.
const SENSITIVE_KEYS: &[&str] = &[
    "token",
    "client_secret",
    "clientSecret",
    "password",
    "secret_key",
    "secretKey",
    "secret_id",
    "access_key",
    "session_token",
    "credentials",
];

/// Annotations that hold a whole copy of an object, secrets included.
const COPY_ANNOTATIONS: &[&str] = &["kubectl.kubernetes.io/last-applied-configuration"];

/// Replaces secret values by `<redacted #N>`, the same value always by the same N: a diff can
/// say that a value changed, never what it is.
#[derive(Debug, Default)]
pub struct Redactor {
    seen: HashMap<String, usize>,
}

impl Redactor {
    pub fn mark(&mut self, secret: &str) -> String {
        let next = self.seen.len() + 1;
        let number = *self.seen.entry(secret.to_string()).or_insert(next);
        format!("<redacted #{number}>")
    }

    /// The object with every secret replaced.
    pub fn object(&mut self, object: &Value) -> Value {
        let is_secret_kind = object["kind"] == "Secret";
        let mut redacted = object.clone();
        self.walk(&mut redacted, None, is_secret_kind, 0);
        redacted
    }

    fn walk(&mut self, value: &mut Value, key: Option<&str>, secret_kind: bool, depth: usize) {
        match value {
            Value::Object(map) => {
                // Kubernetes env vars: {name: X_TOKEN, value: ...}.
                let sensitive_env = map
                    .get("name")
                    .and_then(Value::as_str)
                    .is_some_and(is_sensitive_name)
                    && map.contains_key("value");
                for (child_key, child) in map.iter_mut() {
                    let whole_secret = (secret_kind
                        && depth == 0
                        && (child_key == "data" || child_key == "stringData"))
                        || COPY_ANNOTATIONS.contains(&child_key.as_str())
                        || (sensitive_env && child_key == "value");
                    if whole_secret {
                        self.redact_all(child);
                    } else {
                        self.walk(child, Some(child_key), secret_kind, depth + 1);
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.walk(item, key, secret_kind, depth + 1);
                }
            }
            Value::String(text) => {
                if key.is_some_and(|k| SENSITIVE_KEYS.contains(&k)) {
                    *text = self.mark(text);
                } else if text.contains('\n') {
                    *text = seal::redact(text, |secret| self.mark(secret));
                }
            }
            _ => {}
        }
    }

    fn redact_all(&mut self, value: &mut Value) {
        match value {
            Value::Object(map) => map.values_mut().for_each(|v| self.redact_all(v)),
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_all(v)),
            Value::String(text) => *text = self.mark(text),
            Value::Null => {}
            other => *other = Value::String(self.mark(&other.to_string())),
        }
    }
}

fn is_sensitive_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "PRIVATE_KEY"]
        .iter()
        .any(|word| upper.contains(word))
}

/// The diff of one object, or `None` when nothing changed.
pub fn object_diff(
    object: ObjectRef,
    before: Option<&Value>,
    after: Option<&Value>,
    redactor: &mut Redactor,
) -> Option<ObjectDiff> {
    let change = match (before, after) {
        (None, None) => return None,
        (None, Some(_)) => ChangeKind::Create,
        (Some(_), None) => ChangeKind::Delete,
        (Some(a), Some(b)) if a == b => return None,
        (Some(_), Some(_)) => ChangeKind::Update,
    };
    let before = before.map(|v| redactor.object(v));
    let after = after.map(|v| redactor.object(v));
    let (before_yaml, before_texts) = before.as_ref().map(split).unwrap_or_default();
    let (after_yaml, after_texts) = after.as_ref().map(split).unwrap_or_default();
    let mut sections = Vec::new();
    let object_hunks = hunks(&before_yaml, &after_yaml);
    if !object_hunks.is_empty() {
        sections.push(DiffSection {
            path: String::new(),
            hunks: object_hunks,
        });
    }
    let mut paths: Vec<&String> = before_texts.keys().chain(after_texts.keys()).collect();
    paths.sort();
    paths.dedup();
    for path in paths {
        let old = before_texts
            .get(path)
            .map(String::as_str)
            .unwrap_or_default();
        let new = after_texts
            .get(path)
            .map(String::as_str)
            .unwrap_or_default();
        let text_hunks = hunks(old, new);
        if !text_hunks.is_empty() {
            sections.push(DiffSection {
                path: path.clone(),
                hunks: text_hunks,
            });
        }
    }
    if sections.is_empty() {
        // Only secrets changed, and both sides redact the same: still say it changed.
        sections.push(DiffSection {
            path: String::new(),
            hunks: vec![Hunk {
                old_start: 0,
                old_lines: 0,
                new_start: 0,
                new_lines: 0,
                lines: vec![DiffLine {
                    tag: "~".into(),
                    text: "a redacted value changed".into(),
                }],
            }],
        });
    }
    Some(ObjectDiff {
        object,
        change,
        sections,
    })
}

/// The object's YAML with multi-line texts replaced by a pointer, and those texts by path.
fn split(object: &Value) -> (String, BTreeMap<String, String>) {
    let mut texts = BTreeMap::new();
    let mut shown = object.clone();
    extract(&mut shown, String::new(), &mut texts);
    let yaml = serde_saphyr::to_string(&shown)
        .unwrap_or_else(|_| serde_json::to_string_pretty(&shown).expect("json values serialise"));
    (yaml, texts)
}

fn extract(value: &mut Value, path: String, texts: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                let child_path = if path.is_empty() {
                    key.clone()
                } else if key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    format!("{path}.{key}")
                } else {
                    format!("{path}[\"{key}\"]")
                };
                extract(child, child_path, texts);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                let label = item
                    .get("name")
                    .and_then(Value::as_str)
                    .map(|n| format!("{path}[{n}]"))
                    .unwrap_or_else(|| format!("{path}[{index}]"));
                extract(item, label, texts);
            }
        }
        Value::String(text) if text.contains('\n') => {
            texts.insert(path.clone(), std::mem::take(text));
            *text = format!("<text, diffed below as {path}>");
        }
        _ => {}
    }
}

/// Unified hunks with three lines of context.
fn hunks(old: &str, new: &str) -> Vec<Hunk> {
    if old == new {
        return Vec::new();
    }
    let diff = TextDiff::from_lines(old, new);
    let mut out = Vec::new();
    for group in diff.grouped_ops(3) {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            continue;
        };
        let old_range = first.old_range().start..last.old_range().end;
        let new_range = first.new_range().start..last.new_range().end;
        let mut lines = Vec::new();
        for op in &group {
            for change in diff.iter_changes(op) {
                let tag = match change.tag() {
                    ChangeTag::Equal => " ",
                    ChangeTag::Delete => "-",
                    ChangeTag::Insert => "+",
                };
                lines.push(DiffLine {
                    tag: tag.into(),
                    text: change.value().trim_end_matches(['\n', '\r']).to_string(),
                });
            }
        }
        out.push(Hunk {
            old_start: if old_range.is_empty() {
                old_range.start
            } else {
                old_range.start + 1
            },
            old_lines: old_range.len(),
            new_start: if new_range.is_empty() {
                new_range.start
            } else {
                new_range.start + 1
            },
            new_lines: new_range.len(),
            lines,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> ObjectRef {
        ObjectRef {
            target: "new".into(),
            kind: "ConfigMap".into(),
            namespace: "vault".into(),
            name: "vault-config".into(),
        }
    }

    #[test]
    fn embedded_configuration_is_diffed_line_by_line() {
        let before = json!({"kind": "ConfigMap", "data": {"config.hcl": "ui = true\nseal \"transit\" {\n  key_name = \"old\"\n}\n"}});
        let after = json!({"kind": "ConfigMap", "data": {"config.hcl": "ui = true\nseal \"transit\" {\n  key_name = \"new\"\n}\n"}});
        let diff =
            object_diff(key(), Some(&before), Some(&after), &mut Redactor::default()).unwrap();
        assert_eq!(diff.change, ChangeKind::Update);
        assert_eq!(diff.sections.len(), 1, "the YAML itself is unchanged");
        assert_eq!(diff.sections[0].path, "data[\"config.hcl\"]");
        let changed: Vec<String> = diff.sections[0].hunks[0]
            .lines
            .iter()
            .filter(|l| l.tag != " ")
            .map(|l| format!("{}{}", l.tag, l.text))
            .collect();
        assert_eq!(
            changed,
            vec!["-  key_name = \"old\"", "+  key_name = \"new\""]
        );
    }

    #[test]
    fn secrets_are_redacted_but_changes_show() {
        let before =
            json!({"kind": "Secret", "metadata": {"name": "s"}, "data": {"token": "aGVsbG8="}});
        let after =
            json!({"kind": "Secret", "metadata": {"name": "s"}, "data": {"token": "d29ybGQ="}});
        let diff =
            object_diff(key(), Some(&before), Some(&after), &mut Redactor::default()).unwrap();
        let text = serde_json::to_string(&diff).unwrap();
        assert!(!text.contains("aGVsbG8=") && !text.contains("d29ybGQ="));
        assert!(text.contains("<redacted #1>") && text.contains("<redacted #2>"));
    }
}
