//! Previews: every step's edits applied in graph order to the captured state, giving for each
//! step the objects it changes, before and after. The edits are the functions of [`crate::edit`]
//! that planx applies to the live objects, so what is shown is what will be done.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use planc_schema::ActionKind;
use planc_schema::actions::{
    BackupInput, DeleteInput, IngressRewriteInput, PatchArgsInput, ProxyServiceInput, RestoreInput,
    SealDisableAndAddInput, SealPointAtKeyInput, SealRemoveDisabledInput,
};
use planc_schema::saved::{ObjectRef, ObservedObject, StepPreview};
use serde_json::Value;

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::diff::{Redactor, object_diff};
use crate::edit::k8s::{self, IngressRewrite, Proxy};
use crate::edit::seal::{SealEdit, SealSelector};
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
    let mut run = Run::new(plan, &State::default());
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
    fn typed<T: serde::de::DeserializeOwned>(inputs: &Value) -> Option<T> {
        serde_json::from_value(inputs.clone()).ok()
    }
    let object = |target: &str, kind: &str, name: &str| Written {
        target: target.to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
    };
    let written = match action {
        ActionKind::Delete => typed::<DeleteInput>(inputs)
            .map(|input| vec![object(on, input.kind.as_str(), &input.name)]),
        ActionKind::PatchArgs => typed::<PatchArgsInput>(inputs)
            .map(|input| vec![object(on, "StatefulSet", &input.statefulset)]),
        ActionKind::ProxyService => typed::<ProxyServiceInput>(inputs).map(|input| {
            vec![
                object(on, "Service", &input.name),
                object(on, "EndpointSlice", &input.name),
            ]
        }),
        ActionKind::IngressRewrite => typed::<IngressRewriteInput>(inputs)
            .map(|input| vec![object(on, "Ingress", &input.ingress)]),
        ActionKind::SealPointAtKey
        | ActionKind::SealDisableAndAdd
        | ActionKind::SealRemoveDisabled => plan
            .targets
            .get(on)
            .and_then(|t| t.vault())
            .map(|vault| vec![object(vault.cluster, "ConfigMap", vault.configmap)]),
        _ => None,
    };
    written.unwrap_or_default()
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
    let mut run = Run::new(plan, state);
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

struct Run<'p> {
    plan: &'p CompiledPlan,
    current: BTreeMap<ObjectRef, Value>,
    /// What each `k8s.backup` step stored.
    backups: HashMap<String, Value>,
    /// Every object of the starting state a step read or changed.
    touched: BTreeSet<ObjectRef>,
    /// Every object a step needed that the state lacks.
    missing: BTreeSet<ObjectRef>,
}

fn input<T: serde::de::DeserializeOwned>(step: &CompiledStep) -> T {
    serde_json::from_value(checked_inputs(&step.with))
        .expect("inputs were checked when the plan compiled")
}

/// An apply-time value stands in the compiled inputs as `<step.output>`.
fn is_apply_time(text: &str) -> bool {
    text.starts_with('<') && text.ends_with('>')
}

impl<'p> Run<'p> {
    fn new(plan: &'p CompiledPlan, state: &State) -> Run<'p> {
        Run {
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
        match step.action {
            ActionKind::Backup => {
                let input: BackupInput = input(step);
                let key = self.key(step, &step.on, input.kind.as_str(), &input.name)?;
                if input.if_exists && !self.exists(&key) {
                    notes.push(format!(
                        "{} `{}` does not exist: nothing to back up",
                        key.kind, key.name
                    ));
                    return Ok(Vec::new());
                }
                let object = self.read(step, &key)?;
                self.backups
                    .insert(step.id.clone(), k8s::clean_for_backup(&object));
                Ok(Vec::new())
            }
            ActionKind::Delete => {
                let input: DeleteInput = input(step);
                let key = self.written(step, 0)?;
                if input.if_exists && !self.exists(&key) {
                    notes.push(format!(
                        "{} `{}` does not exist: nothing to delete",
                        key.kind, key.name
                    ));
                    return Ok(Vec::new());
                }
                let before = self.read(step, &key)?;
                self.current.remove(&key);
                Ok(vec![(key, Some(before), None)])
            }
            ActionKind::Restore => {
                let input: RestoreInput = input(step);
                let Some(backup) = self.backup_of(step, "backup") else {
                    notes.push(format!(
                        "restores the backup file `{}`, read when the step runs",
                        input.backup
                    ));
                    return Ok(Vec::new());
                };
                let (kind, _, name) = k8s::identity(&backup);
                let key = self.key(step, &step.on, &kind, &name)?;
                Ok(vec![self.write(key, backup)])
            }
            ActionKind::PatchArgs => {
                let input: PatchArgsInput = input(step);
                let key = self.written(step, 0)?;
                let before = self.read(step, &key)?;
                let after = k8s::set_container_args(&before, &input.container, &input.args)
                    .map_err(|e| self.impossible(step, &key, &e.0))?;
                Ok(vec![self.write(key, after)])
            }
            ActionKind::ProxyService => {
                let input: ProxyServiceInput = input(step);
                let namespace = self.namespace(&step.on);
                notes.push(format!(
                    "the EndpointSlice gets the address `{}` resolves to when the step runs",
                    input.target_host
                ));
                let (service, slice) = k8s::proxy_objects(&Proxy {
                    namespace,
                    name: input.name.clone(),
                    port: input.port,
                    port_name: input.port_name,
                    address: format!("<address of {}>", input.target_host),
                });
                let service_key = self.written(step, 0)?;
                let slice_key = self.written(step, 1)?;
                Ok(vec![
                    self.write(service_key, service),
                    self.write(slice_key, slice),
                ])
            }
            ActionKind::IngressRewrite => {
                let input: IngressRewriteInput = input(step);
                let key = self.written(step, 0)?;
                let source = match (&input.from_backup, self.backup_of(step, "from_backup")) {
                    (Some(_), Some(backup)) => {
                        if let Some(Resolved::StepOutput { step: source, .. }) =
                            step.with.get("from_backup")
                        {
                            notes.push(format!(
                                "rewrites the Ingress as backed up by step `{source}`"
                            ));
                        }
                        backup
                    }
                    (Some(path), None) => {
                        notes.push(format!(
                            "starts from the backup file `{path}`, read when the step runs"
                        ));
                        return Ok(Vec::new());
                    }
                    (None, _) => self.read(step, &key)?,
                };
                let rewrite = IngressRewrite::from_input(&input);
                let after = k8s::rewrite_ingress(&source, &rewrite)
                    .map_err(|e| self.impossible(step, &key, &e.0))?;
                Ok(vec![self.write(key, after)])
            }
            ActionKind::SealPointAtKey => {
                let input: SealPointAtKeyInput = input(step);
                let attributes = self.key_attributes(&input.key_service, &input.attributes);
                self.seal_edit(
                    step,
                    SealEdit::PointAtKey {
                        selector: selector(&input.seal),
                        attributes,
                    },
                )
            }
            ActionKind::SealDisableAndAdd => {
                let input: SealDisableAndAddInput = input(step);
                let attributes = self.key_attributes(&input.key_service, &input.attributes);
                let new_type = self
                    .plan
                    .targets
                    .get(&input.key_service)
                    .map(|t| t.kind.name().to_string())
                    .unwrap_or_default();
                self.seal_edit(
                    step,
                    SealEdit::DisableAndAdd {
                        selector: selector(&input.seal),
                        new_type,
                        new_name: input.name.clone(),
                        attributes,
                    },
                )
            }
            ActionKind::SealRemoveDisabled => {
                let input: SealRemoveDisabledInput = input(step);
                self.seal_edit(
                    step,
                    SealEdit::RemoveDisabled {
                        selector: input.seal.as_ref().map(selector),
                    },
                )
            }
            _ => Ok(Vec::new()),
        }
    }

    fn target(&self, id: &str) -> &CompiledTarget {
        &self.plan.targets[id]
    }

    fn namespace(&self, cluster: &str) -> String {
        self.target(cluster)
            .kubernetes()
            .map(|k| k.namespace.to_string())
            .unwrap_or_default()
    }

    /// The `nth` object the step changes, as [`objects_written`] plans it.
    fn written(&self, step: &CompiledStep, nth: usize) -> Result<ObjectRef, Box<Diagnostic>> {
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

    fn key(
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
    fn exists(&mut self, key: &ObjectRef) -> bool {
        let exists = self.current.contains_key(key);
        if !exists {
            self.missing.insert(key.clone());
        }
        exists
    }

    /// The object as it is before this step; a step on an object the state lacks is an error.
    fn read(&mut self, step: &CompiledStep, key: &ObjectRef) -> Result<Value, Box<Diagnostic>> {
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

    fn write(&mut self, key: ObjectRef, after: Value) -> Change {
        let before = self.current.insert(key.clone(), after.clone());
        self.touched.insert(key.clone());
        (key, before, Some(after))
    }

    fn backup_of(&self, step: &CompiledStep, field: &str) -> Option<Value> {
        match step.with.get(field) {
            Some(Resolved::StepOutput { step: source, .. }) => self.backups.get(source).cloned(),
            _ => None,
        }
    }

    fn impossible(&self, step: &CompiledStep, key: &ObjectRef, message: &str) -> Box<Diagnostic> {
        Box::new(Diagnostic::new(
            Code::EditImpossible,
            step.span,
            format!(
                "step `{}` cannot change {} `{}` of `{}`: {message}",
                step.id, key.kind, key.name, key.target
            ),
        ))
    }

    /// The seal attributes that point at a key service, then the extra ones.
    fn key_attributes(
        &self,
        key_service: &str,
        extra: &indexmap::IndexMap<String, String>,
    ) -> Vec<(String, String)> {
        let target = self.target(key_service);
        let mut attributes: Vec<(String, String)> = crate::edit::seal::key_attributes(target.kind)
            .iter()
            .filter_map(|name| {
                let value = match target.attributes.get(*name)? {
                    Resolved::Str(text) => text.clone(),
                    Resolved::Secret { param, .. } => format!("<secret {param}>"),
                    other => other.to_json().to_string(),
                };
                Some((name.to_string(), value))
            })
            .collect();
        attributes.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        attributes
    }

    fn seal_edit(
        &mut self,
        step: &CompiledStep,
        edit: SealEdit,
    ) -> Result<Vec<Change>, Box<Diagnostic>> {
        // Lowering refuses a seal step on another kind of target.
        let Some(vault) = self.target(&step.on).vault() else {
            return Ok(Vec::new());
        };
        let config_key = vault.config_key.to_string();
        let key = self.written(step, 0)?;
        let before = self.read(step, &key)?;
        let text = k8s::configmap_value(&before, &config_key)
            .map_err(|e| self.impossible(step, &key, &e.0))?;
        let edited = crate::edit::seal::apply(text, &edit)
            .map_err(|e| self.impossible(step, &key, &format!("in key `{config_key}`: {}", e.0)))?;
        let after = k8s::set_configmap_value(&before, &config_key, &edited)
            .map_err(|e| self.impossible(step, &key, &e.0))?;
        Ok(vec![self.write(key, after)])
    }
}

fn selector(seal: &planc_schema::actions::SealSelector) -> SealSelector {
    SealSelector {
        seal_type: seal.seal_type.clone(),
        name: seal.name.clone().filter(|n| !n.is_empty()),
    }
}
