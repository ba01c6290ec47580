//! Previews: every step's edits applied in graph order to the captured state, giving for each
//! step the objects it changes, before and after. Each action's edits live with the action
//! ([`crate::actions`]); this module runs them over the state ([`PreviewRun`]) and diffs the
//! result. The edits are the functions of [`crate::edit`] that planx applies to the live
//! objects, so what is shown is what will be done.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use planc_schema::ActionKind;
use planc_schema::saved::{ObjectRef, ObservedObject, StepPreview};
use serde_json::Value;

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::diff::{Redactor, object_diff};
use crate::edit::k8s;
use crate::expr::Resolved;
use crate::model::{CompiledPlan, CompiledStep, CompiledTarget};
use crate::state::{State, digest};

/// The previews of a plan, and what was observed of every object they read.
pub struct Previews {
    pub steps: Vec<StepPreview>,
    pub observed: Vec<ObservedObject>,
}

/// What one step does to the objects, unredacted: for the executor and for tests, never for
/// display.
pub struct StepEffect {
    pub step: String,
    pub changes: Vec<Change>,
    pub notes: Vec<String>,
}

/// Apply the plan's edits to the state, step by step in execution order, and diff each change
/// with secrets redacted; what was observed is redacted by the same hand, so a secret keeps its
/// `<redacted #N>` across the previews and the observed objects.
pub fn preview(plan: &CompiledPlan, state: &State, diagnostics: &mut Diagnostics) -> Previews {
    let (effects, touched) = apply_edits(plan, state, diagnostics);
    let mut redactor = Redactor::default();
    let steps = effects
        .into_iter()
        .zip(&plan.graph.order)
        .map(|(effect, &index)| {
            let step = &plan.steps[index];
            StepPreview {
                step: effect.step,
                uses: step.action.name().to_string(),
                on: step.on.clone(),
                changes: effect
                    .changes
                    .into_iter()
                    .filter_map(|(key, before, after)| {
                        object_diff(key, before.as_ref(), after.as_ref(), &mut redactor)
                    })
                    .collect(),
                notes: effect.notes,
            }
        })
        .collect();
    let observed = touched
        .into_iter()
        .filter_map(|key| {
            let object = state.objects.get(&key)?;
            Some(ObservedObject {
                object: key,
                resource_version: object["metadata"]["resourceVersion"]
                    .as_str()
                    .map(str::to_owned),
                sha256: digest(object),
                content: redactor.object(&k8s::clean_for_backup(object)),
            })
        })
        .collect();
    Previews { steps, observed }
}

/// The objects of the starting state a plan reads or edits: what `planx plan` fetches from the
/// live clusters before computing the previews.
pub fn objects_needed(plan: &CompiledPlan) -> BTreeSet<ObjectRef> {
    let mut run = PreviewRun::new(plan, &State::default());
    for &index in &plan.graph.order {
        let _ = run.step(&plan.steps[index], &mut Vec::new());
    }
    // With nothing in the state, every read misses and `touched` holds what steps write.
    let mut needed = run.missing;
    needed.extend(run.touched);
    needed
}

/// An object a step changes: the kubernetes target it lives in, its kind and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub target: String,
    pub kind: String,
    pub name: String,
}

impl Written {
    pub fn new(target: &str, kind: &str, name: &str) -> Written {
        Written {
            target: target.to_string(),
            kind: kind.to_string(),
            name: name.to_string(),
        }
    }
}

/// The objects a step changes, from its typed inputs (`inputs`: the inputs as checked, apply-time
/// values standing as `<step.output>` in a preview and resolved in planx): what the preview
/// diffs and what planx records before the step, planned here once. A `k8s.restore` changes the
/// object of a backup file, known only once the file is read, and is not listed.
pub fn objects_written(
    plan: &CompiledPlan,
    action: ActionKind,
    on: &str,
    inputs: &Value,
) -> Vec<Written> {
    crate::catalog::action(action)
        .writes(plan, on, inputs)
        .unwrap_or_default()
}

/// A step's inputs as checked: apply-time values stand as `<step.output>`.
pub fn checked_inputs<'a>(inputs: impl IntoIterator<Item = (&'a String, &'a Resolved)>) -> Value {
    Value::Object(
        inputs
            .into_iter()
            .map(|(name, value)| (name.clone(), value.to_check_json()))
            .collect(),
    )
}

/// The edits of every step in execution order, unredacted, and every object of the starting
/// state a step read or changed.
pub fn apply_edits(
    plan: &CompiledPlan,
    state: &State,
    diagnostics: &mut Diagnostics,
) -> (Vec<StepEffect>, BTreeSet<ObjectRef>) {
    let mut run = PreviewRun::new(plan, state);
    let mut effects = Vec::new();
    for &index in &plan.graph.order {
        let step = &plan.steps[index];
        let mut notes = Vec::new();
        let changes = match run.step(step, &mut notes) {
            Ok(changes) => changes,
            Err(diagnostic) => {
                diagnostics.push(*diagnostic);
                Vec::new()
            }
        };
        effects.push(StepEffect {
            step: step.id.clone(),
            changes,
            notes,
        });
    }
    let touched = run
        .touched
        .into_iter()
        .filter(|key| state.objects.contains_key(key))
        .collect();
    (effects, touched)
}

/// An object before and after a step (`None`: absent).
pub type Change = (ObjectRef, Option<Value>, Option<Value>);

/// A preview in progress: the objects as the steps so far left them, what `k8s.backup` steps
/// stored, and what was read. Each action's [`crate::catalog::Action::preview`] works on it.
pub struct PreviewRun<'p> {
    plan: &'p CompiledPlan,
    current: BTreeMap<ObjectRef, Value>,
    /// What each `k8s.backup` step stored.
    backups: HashMap<String, Value>,
    /// Every object of the starting state a step read or changed.
    touched: BTreeSet<ObjectRef>,
    /// Every object a step needed that the state lacks.
    missing: BTreeSet<ObjectRef>,
}

/// An apply-time value stands in the compiled inputs as `<step.output>`.
fn is_apply_time(text: &str) -> bool {
    text.starts_with('<') && text.ends_with('>')
}

impl<'p> PreviewRun<'p> {
    fn new(plan: &'p CompiledPlan, state: &State) -> PreviewRun<'p> {
        PreviewRun {
            plan,
            current: state.objects.clone(),
            backups: HashMap::new(),
            touched: BTreeSet::new(),
            missing: BTreeSet::new(),
        }
    }

    fn step(
        &mut self,
        step: &CompiledStep,
        notes: &mut Vec<String>,
    ) -> Result<Vec<Change>, Box<Diagnostic>> {
        crate::catalog::action(step.action).preview(self, step, notes)
    }

    pub(crate) fn plan(&self) -> &'p CompiledPlan {
        self.plan
    }

    pub(crate) fn target(&self, id: &str) -> &CompiledTarget {
        &self.plan.targets[id]
    }

    pub(crate) fn namespace(&self, cluster: &str) -> String {
        self.target(cluster)
            .kubernetes()
            .map(|k| k.namespace.to_string())
            .unwrap_or_default()
    }

    /// The `nth` object the step changes, as [`objects_written`] plans it.
    pub(crate) fn written(
        &self,
        step: &CompiledStep,
        nth: usize,
    ) -> Result<ObjectRef, Box<Diagnostic>> {
        let inputs = checked_inputs(&step.with);
        match objects_written(self.plan, step.action, &step.on, &inputs).get(nth) {
            Some(object) => self.key(step, &object.target, &object.kind, &object.name),
            None => Err(Box::new(Diagnostic::new(
                Code::EditImpossible,
                step.span,
                format!("step `{}` names no object to change", step.id),
            ))),
        }
    }

    pub(crate) fn key(
        &self,
        step: &CompiledStep,
        cluster: &str,
        kind: &str,
        name: &str,
    ) -> Result<ObjectRef, Box<Diagnostic>> {
        if is_apply_time(name) {
            return Err(Box::new(Diagnostic::new(
                Code::EditImpossible,
                step.span,
                format!(
                    "step `{}` names its object with a value known only at apply time",
                    step.id
                ),
            )));
        }
        Ok(ObjectRef {
            target: cluster.to_string(),
            kind: kind.to_string(),
            namespace: self.namespace(cluster),
            name: name.to_string(),
        })
    }

    /// Whether the object exists before this step (an absent one is still fetched by
    /// `planx plan`, so that the saved plan knows it was absent).
    pub(crate) fn exists(&mut self, key: &ObjectRef) -> bool {
        let exists = self.current.contains_key(key);
        if !exists {
            self.missing.insert(key.clone());
        }
        exists
    }

    /// The object as it is before this step; a step on an object the state lacks is an error.
    pub(crate) fn read(
        &mut self,
        step: &CompiledStep,
        key: &ObjectRef,
    ) -> Result<Value, Box<Diagnostic>> {
        if let Some(object) = self.current.get(key) {
            self.touched.insert(key.clone());
            return Ok(object.clone());
        }
        self.missing.insert(key.clone());
        let cluster = self.target(&key.target);
        let context = cluster.kubernetes().map(|k| k.context).unwrap_or_default();
        Err(Box::new(
            Diagnostic::new(
                Code::ObjectMissing,
                step.span,
                format!(
                    "step `{}` needs {} `{}` in namespace `{}` of `{}`, which is not in the state",
                    step.id, key.kind, key.name, key.namespace, key.target
                ),
            )
            .with_help(format!(
                "capture it: kubectl --context {context} -n {} get {} {} -o yaml > STATE/{}/{}-{}.yaml",
                key.namespace,
                key.kind.to_lowercase(),
                key.name,
                key.target,
                key.kind.to_lowercase(),
                key.name
            )),
        ))
    }

    pub(crate) fn write(&mut self, key: ObjectRef, after: Value) -> Change {
        let before = self.current.insert(key.clone(), after.clone());
        self.touched.insert(key.clone());
        (key, before, Some(after))
    }

    pub(crate) fn backup_of(&self, step: &CompiledStep, field: &str) -> Option<Value> {
        match step.with.get(field) {
            Some(Resolved::StepOutput { step: source, .. }) => self.backups.get(source).cloned(),
            _ => None,
        }
    }

    pub(crate) fn impossible(
        &self,
        step: &CompiledStep,
        key: &ObjectRef,
        message: &str,
    ) -> Box<Diagnostic> {
        Box::new(Diagnostic::new(
            Code::EditImpossible,
            step.span,
            format!(
                "step `{}` cannot change {} `{}` of `{}`: {message}",
                step.id, key.kind, key.name, key.target
            ),
        ))
    }

    /// The object removed by this step, as a change.
    pub(crate) fn remove(&mut self, key: ObjectRef, before: Value) -> Change {
        self.current.remove(&key);
        (key, Some(before), None)
    }

    /// Keep what a `k8s.backup` step stored, for the steps that read its output.
    pub(crate) fn keep_backup(&mut self, step: &CompiledStep, object: Value) {
        self.backups.insert(step.id.clone(), object);
    }
}
