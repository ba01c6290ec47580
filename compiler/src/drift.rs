//! Drift: whether an object is still as the saved plan observed it, checked before the first step
//! that edits it, and a diff of what moved with secrets redacted. Pure: the caller fetches.

use std::collections::{BTreeMap, BTreeSet};

use planc_schema::saved::{ChangeKind, ObjectRef, SavedPlan};
use serde_json::Value;

use crate::diff::{Redactor, object_diff};
use crate::edit::k8s::clean_for_backup;
use crate::state::digest;

/// What an object must look like just before the step that edits it first.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// As observed: the SHA-256 of the object and its redacted content, for the drift diff.
    Present { sha256: String, content: Value },
    /// It did not exist when the plan was made; the step creates it.
    Absent,
}

/// One object a step expects.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    pub object: ObjectRef,
    pub expected: Expected,
}

/// For each step, the objects it is the first to edit and how the saved plan saw them. Later
/// steps edit what planx itself wrote, under the run's Lease.
pub fn expectations(saved: &SavedPlan) -> BTreeMap<String, Vec<Expectation>> {
    let observed: BTreeMap<&ObjectRef, _> = saved.observed.iter().map(|o| (&o.object, o)).collect();
    let mut seen = BTreeSet::new();
    let mut by_step: BTreeMap<String, Vec<Expectation>> = BTreeMap::new();
    for preview in &saved.previews {
        for change in &preview.changes {
            if !seen.insert(change.object.clone()) {
                continue;
            }
            let expected = match (observed.get(&change.object), change.change) {
                (Some(object), _) => Expected::Present {
                    sha256: object.sha256.clone(),
                    content: object.content.clone(),
                },
                (None, ChangeKind::Create) => Expected::Absent,
                // An update of an object nobody observed is an object a step before created.
                (None, _) => continue,
            };
            by_step
                .entry(preview.step.clone())
                .or_default()
                .push(Expectation {
                    object: change.object.clone(),
                    expected,
                });
        }
    }
    by_step
}

/// `None` when the live object is as expected; otherwise what moved, as text for a person.
pub fn check(expectation: &Expectation, live: Option<&Value>) -> Option<String> {
    let object = &expectation.object;
    let label = format!(
        "{} `{}/{}` of `{}`",
        object.kind, object.namespace, object.name, object.target
    );
    match (&expectation.expected, live) {
        (Expected::Absent, None) => None,
        (Expected::Absent, Some(_)) => Some(format!(
            "{label} exists now; it did not when the plan was saved"
        )),
        (Expected::Present { .. }, None) => {
            Some(format!("{label} was deleted since the plan was saved"))
        }
        (Expected::Present { sha256, content }, Some(live)) => {
            if &digest(live) == sha256 {
                return None;
            }
            let was = unnumbered(content.clone());
            let is = unnumbered(Redactor::default().object(&clean_for_backup(live)));
            let diff = object_diff(
                object.clone(),
                Some(&was),
                Some(&is),
                &mut Redactor::default(),
            )
            .map(|diff| crate::diff_view::object_text(&diff))
            .unwrap_or_else(|| "  ~ a redacted value changed (secrets are not shown)\n".into());
            Some(format!(
                "{label} changed since the plan was saved (- as saved, + as it is now):\n{diff}"
            ))
        }
    }
}

/// Redacted values without their numbers: the saved plan and the live object were redacted by
/// different hands, so only "a secret is here" can be compared.
fn unnumbered(mut value: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => map.values_mut().for_each(walk),
            Value::Array(items) => items.iter_mut().for_each(walk),
            Value::String(text) if text.contains("<redacted #") => {
                let mut out = String::with_capacity(text.len());
                let mut rest = text.as_str();
                while let Some(start) = rest.find("<redacted #") {
                    out.push_str(&rest[..start]);
                    let tail = &rest[start..];
                    let end = tail.find('>').map(|e| e + 1).unwrap_or(tail.len());
                    out.push_str("<redacted>");
                    rest = &tail[end..];
                }
                out.push_str(rest);
                *text = out;
            }
            _ => {}
        }
    }
    walk(&mut value);
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use planc_schema::saved::{ObjectDiff, ObservedObject, SAVED_PLAN_FORMAT, StepPreview};
    use serde_json::json;

    fn reference(kind: &str, name: &str) -> ObjectRef {
        ObjectRef {
            target: "old".into(),
            kind: kind.into(),
            namespace: "vault".into(),
            name: name.into(),
        }
    }

    fn configmap(token: &str, extra: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "vault-config", "namespace": "vault", "resourceVersion": "7"},
            "data": {"config.hcl": format!("seal \"transit\" {{\n  token = \"{token}\"\n  key_name = \"{extra}\"\n}}\n")}})
    }

    fn saved(observed: &Value) -> SavedPlan {
        let change = |step: &str, object: ObjectRef, change| StepPreview {
            step: step.into(),
            uses: "x".into(),
            on: "old".into(),
            changes: vec![ObjectDiff {
                object,
                change,
                sections: Vec::new(),
            }],
            notes: Vec::new(),
        };
        SavedPlan {
            format: SAVED_PLAN_FORMAT.into(),
            request: planc_schema::saved::SavedRequest {
                plan: "p.yaml".into(),
                params_files: Vec::new(),
                set: Vec::new(),
            },
            compiled: json!({}),
            observed: vec![ObservedObject {
                object: reference("ConfigMap", "vault-config"),
                resource_version: Some("7".into()),
                sha256: digest(observed),
                content: Redactor::default().object(&clean_for_backup(observed)),
            }],
            previews: vec![
                change(
                    "first",
                    reference("ConfigMap", "vault-config"),
                    ChangeKind::Update,
                ),
                change(
                    "second",
                    reference("ConfigMap", "vault-config"),
                    ChangeKind::Update,
                ),
                change("proxy", reference("Service", "proxy"), ChangeKind::Create),
            ],
        }
    }

    #[test]
    fn each_object_is_expected_by_the_first_step_that_edits_it() {
        let observed = configmap("s.secret-one", "old");
        let by_step = expectations(&saved(&observed));
        assert_eq!(
            by_step.keys().collect::<Vec<_>>(),
            vec!["first", "proxy"],
            "the second edit of the ConfigMap edits what planx wrote"
        );
        assert_eq!(by_step["proxy"][0].expected, Expected::Absent);
    }

    #[test]
    fn an_unchanged_object_passes_and_a_changed_one_is_shown_redacted() {
        let observed = configmap("s.secret-one", "old");
        let first = &expectations(&saved(&observed))["first"][0];
        let mut same = observed.clone();
        same["metadata"]["resourceVersion"] = json!("8");
        assert_eq!(check(first, Some(&same)), None);

        let moved = configmap("s.secret-two", "other");
        let report = check(first, Some(&moved)).expect("drift");
        assert!(report.contains("ConfigMap `vault/vault-config` of `old` changed"));
        assert!(report.contains("-  key_name = \"old\""), "{report}");
        assert!(report.contains("+  key_name = \"other\""), "{report}");
        assert!(!report.contains("s.secret"), "{report}");

        let only_secret = configmap("s.secret-two", "old");
        let report = check(first, Some(&only_secret)).expect("a changed secret is drift");
        assert!(report.contains("a redacted value changed"), "{report}");
        assert!(!report.contains("s.secret"), "{report}");
    }

    #[test]
    fn appearing_and_vanishing_objects_are_drift() {
        let observed = configmap("t", "old");
        let by_step = expectations(&saved(&observed));
        assert!(
            check(&by_step["proxy"][0], Some(&json!({})))
                .unwrap()
                .contains("exists now")
        );
        assert_eq!(check(&by_step["proxy"][0], None), None);
        assert!(
            check(&by_step["first"][0], None)
                .unwrap()
                .contains("was deleted")
        );
    }
}
