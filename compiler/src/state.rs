//! The starting state of the objects a plan touches, as a person captured it with
//! `kubectl get -o yaml`: one folder per kubernetes target, each file one or many YAML documents
//! (a `List` too). The binary lists the folders; this module only reads the texts it is given.

use std::collections::BTreeMap;
use std::path::PathBuf;

use planc_schema::plan::TargetKind;
use planc_schema::saved::ObjectRef;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::edit::k8s::clean_for_backup;
use crate::model::CompiledPlan;
use crate::source::{FileId, SourceMap, Span};
use crate::yaml::Pos;

/// One file of a state folder: the kubernetes target it belongs to (the folder's name) and its text.
#[derive(Debug, Clone)]
pub struct StateFile {
    pub target: String,
    pub path: PathBuf,
    pub text: String,
}

/// Every captured object, by where it lives.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub objects: BTreeMap<ObjectRef, Value>,
}

/// The files of a state folder: `DIR/<kubernetes target>/*.yaml` (also `.yml`, `.json`), sorted.
pub fn read_folder(dir: &std::path::Path) -> std::io::Result<Vec<StateFile>> {
    let mut files = Vec::new();
    let mut targets: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    targets.sort();
    for target in targets {
        if !target.is_dir() {
            continue;
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&target)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?;
        paths.retain(|p| {
            p.extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        });
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path)?;
            files.push(StateFile {
                target: name.clone(),
                path,
                text,
            });
        }
    }
    Ok(files)
}

/// Read the state files for a plan. Objects without a namespace take their target's.
pub fn read_state(
    files: Vec<StateFile>,
    plan: &CompiledPlan,
    sources: &mut SourceMap,
    diagnostics: &mut Diagnostics,
) -> State {
    let mut state = State::default();
    for file in files {
        let id = sources.add(file.path.clone(), file.text);
        let Some(target) = plan
            .targets
            .get(&file.target)
            .filter(|t| t.kind == TargetKind::Kubernetes)
        else {
            let kubernetes: Vec<&str> = plan
                .targets
                .values()
                .filter(|t| t.kind == TargetKind::Kubernetes)
                .map(|t| t.id.as_str())
                .collect();
            diagnostics.push(
                Diagnostic::new(
                    Code::StateFile,
                    Span::file_start(id),
                    format!(
                        "the state folder `{}` is not a kubernetes target of the plan",
                        file.target
                    ),
                )
                .with_help(format!(
                    "name each folder after a kubernetes target: {}",
                    kubernetes.join(", ")
                )),
            );
            continue;
        };
        let namespace = target
            .kubernetes()
            .map(|k| k.namespace.to_string())
            .unwrap_or_default();
        let text = sources.get(id).text.clone();
        for object in documents(id, &text, diagnostics) {
            let (kind, object_namespace, name) = crate::edit::k8s::identity(&object);
            if kind.is_empty() || name.is_empty() {
                diagnostics.push(Diagnostic::new(
                    Code::StateFile,
                    Span::file_start(id),
                    "a document in the state has no `kind` or `metadata.name`",
                ));
                continue;
            }
            let key = ObjectRef {
                target: file.target.clone(),
                kind,
                namespace: if object_namespace.is_empty() {
                    namespace.clone()
                } else {
                    object_namespace
                },
                name,
            };
            if state.objects.insert(key.clone(), object).is_some() {
                diagnostics.push(Diagnostic::new(
                    Code::StateFile,
                    Span::file_start(id),
                    format!(
                        "{} `{}/{}` of `{}` appears twice in the state",
                        key.kind, key.namespace, key.name, key.target
                    ),
                ));
            }
        }
    }
    state
}

/// The objects of one file: each document, and the items of `List` documents.
fn documents(file: FileId, text: &str, diagnostics: &mut Diagnostics) -> Vec<Value> {
    let mut options = crate::yaml::options();
    if let Some(budget) = options.budget.as_mut() {
        budget.max_documents = 10_000;
    }
    let parsed: Result<Vec<Value>, _> = serde_saphyr::from_str_multiple_with_options(text, options);
    let documents = match parsed {
        Ok(documents) => documents,
        Err(error) => {
            let span = error
                .location()
                .filter(|l| l.line() > 0)
                .map(|l| Pos::from(l).span(file))
                .unwrap_or_else(|| Span::file_start(file));
            let message = error.to_string();
            let message = message.lines().next().unwrap_or_default().to_string();
            diagnostics.push(Diagnostic::new(
                Code::StateFile,
                span,
                format!("the state file is not valid YAML: {message}"),
            ));
            return Vec::new();
        }
    };
    let mut objects = Vec::new();
    for document in documents {
        match document {
            Value::Null => {}
            Value::Object(ref map)
                if map
                    .get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.ends_with("List"))
                    && map.get("items").is_some_and(Value::is_array) =>
            {
                objects.extend(map["items"].as_array().into_iter().flatten().cloned());
            }
            other => objects.push(other),
        }
    }
    objects
}

/// SHA-256 of an object's canonical JSON (sorted keys, server-owned fields removed), hex.
pub fn digest(object: &Value) -> String {
    let mut canonical = String::new();
    write_canonical(&clean_for_backup(object), &mut canonical);
    let hash = Sha256::digest(canonical.as_bytes());
    crate::hex::encode(&hash)
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_ignore_key_order_and_server_fields() {
        let a = serde_json::json!({"kind": "ConfigMap", "metadata": {"name": "x", "resourceVersion": "1"}, "data": {"a": "1", "b": "2"}});
        let b = serde_json::json!({"data": {"b": "2", "a": "1"}, "metadata": {"resourceVersion": "9", "name": "x"}, "kind": "ConfigMap"});
        assert_eq!(digest(&a), digest(&b));
        let c = serde_json::json!({"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1", "b": "3"}});
        assert_ne!(digest(&a), digest(&c));
    }
}
