//! `k8s.*`: backups, deletes, restores and the object edits (StatefulSet args, the proxy
//! Service and EndpointSlice, Ingress rewrites), previewed with the edit functions planx applies.

use crate::permissions::{self, Access};
use planc_schema::actions::{
    BackupInput, DeleteInput, IngressRewriteInput, PatchArgsInput, ProxyServiceInput, RestoreInput,
};
use serde_json::Value;

use super::{input, typed};
use crate::catalog::{
    Action, Line,
    SideEffect::{ReadOnly, Reversible},
    TargetRequirement::Kubernetes,
    Undo, output,
};
use crate::diagnostic::Diagnostic;
use crate::edit::k8s::{self, IngressRewrite as Rewrite, Proxy};
use crate::expr::Resolved;
use crate::lints::{Facts, Index, is_sleep, text};
use crate::model::{CompiledPlan, CompiledStep};
use crate::preview::{Change, PreviewRun, Written};

/// `k8s.backup`.
pub struct Backup;

impl Action for Backup {
    fn line(&self) -> Line {
        Line {
            summary: "store an object, cleaned of server fields, in the run directory",
            target: Kubernetes,
            side_effect: ReadOnly,
            undo: Undo::NotNeeded,
            outputs: &[output!("backup", "path of the backup in the run directory")],
            secret_inputs: &[],
            target_inputs: &[],
            chapter: "3",
        }
    }

    /// The object read.
    fn access(&self, _plan: &CompiledPlan, step: &CompiledStep) -> Vec<(String, Access)> {
        text(step, "kind")
            .map(|kind| permissions::on(&step.on, kind, &["get"]))
            .unwrap_or_default()
    }

    fn preview(
        &self,
        run: &mut PreviewRun<'_>,
        step: &CompiledStep,
        notes: &mut Vec<String>,
    ) -> Result<Vec<Change>, Box<Diagnostic>> {
        let input: BackupInput = input(step);
        let key = run.key(step, &step.on, input.kind.as_str(), &input.name)?;
        if input.if_exists && !run.exists(&key) {
            notes.push(format!(
                "{} `{}` does not exist: nothing to back up",
                key.kind, key.name
            ));
            return Ok(Vec::new());
        }
        let object = run.read(step, &key)?;
        run.keep_backup(step, k8s::clean_for_backup(&object));
        Ok(Vec::new())
    }

    fn establish(
        &self,
        step: &CompiledStep,
        _position: usize,
        _index: &Index<'_>,
        facts: &mut Facts,
    ) -> bool {
        let (Some(kind), Some(name)) = (text(step, "kind"), text(step, "name")) else {
            return false;
        };
        facts
            .backups
            .insert((step.on.clone(), kind.into(), name.into()));
        true
    }
}

/// `k8s.delete`.
pub struct Delete;

impl Action for Delete {
    fn line(&self) -> Line {
        Line {
            summary: "delete an object and wait until it is gone",
            target: Kubernetes,
            side_effect: Reversible,
            undo: Undo::RestoreRecorded,
            outputs: &[],
            secret_inputs: &[],
            target_inputs: &[],
            chapter: "3",
        }
    }

    fn writes(&self, _plan: &CompiledPlan, on: &str, inputs: &Value) -> Option<Vec<Written>> {
        let input: DeleteInput = typed(inputs)?;
        Some(vec![Written::new(on, input.kind.as_str(), &input.name)])
    }

    fn preview(
        &self,
        run: &mut PreviewRun<'_>,
        step: &CompiledStep,
        notes: &mut Vec<String>,
    ) -> Result<Vec<Change>, Box<Diagnostic>> {
        let input: DeleteInput = input(step);
        let key = run.written(step, 0)?;
        if input.if_exists && !run.exists(&key) {
            notes.push(format!(
                "{} `{}` does not exist: nothing to delete",
                key.kind, key.name
            ));
            return Ok(Vec::new());
        }
        let before = run.read(step, &key)?;
        Ok(vec![run.remove(key, before)])
    }

    /// Deleting a Vault's Ingress blocks the writes of clients outside the cluster.
    fn establish(
        &self,
        step: &CompiledStep,
        _position: usize,
        index: &Index<'_>,
        facts: &mut Facts,
    ) -> bool {
        let (Some(kind), Some(name)) = (text(step, "kind"), text(step, "name")) else {
            return false;
        };
        if kind != "Ingress" {
            return false;
        }
        let blocked: Vec<String> = index
            .vaults_in(&step.on)
            .filter(|v| v.vault().is_some_and(|v| v.ingress == name))
            .map(|v| v.id.clone())
            .collect();
        for vault in &blocked {
            facts
                .vaults
                .entry(vault.clone())
                .or_default()
                .block_ingress();
        }
        !blocked.is_empty()
    }
}

/// `k8s.restore`. The object it changes is the backup's, known once the file is read, so it
/// plans no writes: planx records the object when it reads the backup.
pub struct Restore;

impl Action for Restore {
    fn line(&self) -> Line {
        Line {
            summary: "write a backed-up object back",
            target: Kubernetes,
            side_effect: Reversible,
            undo: Undo::RestoreRecorded,
            outputs: &[],
            secret_inputs: &[],
            target_inputs: &[],
            chapter: "restore",
        }
    }

    /// The object of the backup (its kind known when the backup is a `k8s.backup` step's)
    /// read, written back, and deleted or written again by the undo.
    fn access(&self, plan: &CompiledPlan, step: &CompiledStep) -> Vec<(String, Access)> {
        let Some(Resolved::StepOutput { step: source, .. }) = step.with.get("backup") else {
            return Vec::new();
        };
        plan.steps
            .iter()
            .find(|s| &s.id == source)
            .and_then(|backup| text(backup, "kind"))
            .map(|kind| permissions::on(&step.on, kind, &["get", "create", "update", "delete"]))
            .unwrap_or_default()
    }

    fn preview(
        &self,
        run: &mut PreviewRun<'_>,
        step: &CompiledStep,
        notes: &mut Vec<String>,
    ) -> Result<Vec<Change>, Box<Diagnostic>> {
        let input: RestoreInput = input(step);
        let Some(backup) = run.backup_of(step, "backup") else {
            notes.push(format!(
                "restores the backup file `{}`, read when the step runs",
                input.backup
            ));
            return Ok(Vec::new());
        };
        let (kind, _, name) = k8s::identity(&backup);
        let key = run.key(step, &step.on, &kind, &name)?;
        Ok(vec![run.write(key, backup)])
    }
}

/// `k8s.patch-args`.
pub struct PatchArgs;

impl Action for PatchArgs {
    fn line(&self) -> Line {
        Line {
            summary: "set the args of a StatefulSet's container",
            target: Kubernetes,
            side_effect: Reversible,
            undo: Undo::RestoreRecorded,
            outputs: &[],
            secret_inputs: &[],
            target_inputs: &[],
            chapter: "4.4",
        }
    }

    /// The StatefulSet changed; its undo also restarts the pods it runs.
    fn access(&self, plan: &CompiledPlan, step: &CompiledStep) -> Vec<(String, Access)> {
        let mut access = permissions::default_access(plan, step, self);
        access.extend(permissions::on(
            &step.on,
            "Pod",
            &["get", "list", "delete", "watch"],
        ));
        access
    }

    fn writes(&self, _plan: &CompiledPlan, on: &str, inputs: &Value) -> Option<Vec<Written>> {
        let input: PatchArgsInput = typed(inputs)?;
        Some(vec![Written::new(on, "StatefulSet", &input.statefulset)])
    }

    fn preview(
        &self,
        run: &mut PreviewRun<'_>,
        step: &CompiledStep,
        _notes: &mut Vec<String>,
    ) -> Result<Vec<Change>, Box<Diagnostic>> {
        let input: PatchArgsInput = input(step);
        let key = run.written(step, 0)?;
        let before = run.read(step, &key)?;
        let after = k8s::set_container_args(&before, &input.container, &input.args)
            .map_err(|e| run.impossible(step, &key, &e.0))?;
        Ok(vec![run.write(key, after)])
    }

    /// Args that run `sleep` disable the Vaults the StatefulSet runs at their next restart;
    /// other args run them again.
    fn establish(
        &self,
        step: &CompiledStep,
        _position: usize,
        index: &Index<'_>,
        facts: &mut Facts,
    ) -> bool {
        let Some(statefulset) = text(step, "statefulset") else {
            return false;
        };
        let sleep = is_sleep(step.with.get("args"));
        let patched: Vec<String> = index
            .vaults_in(&step.on)
            .filter(|v| v.vault().is_some_and(|v| v.statefulset == statefulset))
            .map(|v| v.id.clone())
            .collect();
        for vault in patched {
            let entry = facts.vaults.entry(vault).or_default();
            entry.args_sleep = sleep;
            // Running Vault again (args restored) also unblocks a later disable check.
            if !sleep {
                entry.disabled = false;
            }
        }
        true
    }
}

/// `k8s.proxy-service`.
pub struct ProxyService;

impl Action for ProxyService {
    fn line(&self) -> Line {
        Line {
            summary: "create a selectorless Service and an EndpointSlice to the address of a DNS name",
            target: Kubernetes,
            side_effect: Reversible,
            undo: Undo::RestoreRecorded,
            outputs: &[output!("address", "the IPv4 address the name resolved to")],
            secret_inputs: &[],
            target_inputs: &[],
            chapter: "12",
        }
    }

    fn writes(&self, _plan: &CompiledPlan, on: &str, inputs: &Value) -> Option<Vec<Written>> {
        let input: ProxyServiceInput = typed(inputs)?;
        Some(vec![
            Written::new(on, "Service", &input.name),
            Written::new(on, "EndpointSlice", &input.name),
        ])
    }

    fn preview(
        &self,
        run: &mut PreviewRun<'_>,
        step: &CompiledStep,
        notes: &mut Vec<String>,
    ) -> Result<Vec<Change>, Box<Diagnostic>> {
        let input: ProxyServiceInput = input(step);
        notes.push(format!(
            "the EndpointSlice gets the address `{}` resolves to when the step runs",
            input.target_host
        ));
        let (service, slice) = k8s::proxy_objects(&Proxy {
            namespace: run.namespace(&step.on),
            name: input.name.clone(),
            port: input.port,
            port_name: input.port_name,
            address: format!("<address of {}>", input.target_host),
        });
        let service_key = run.written(step, 0)?;
        let slice_key = run.written(step, 1)?;
        Ok(vec![
            run.write(service_key, service),
            run.write(slice_key, slice),
        ])
    }
}

/// `k8s.ingress-rewrite`.
pub struct IngressRewrite;

impl Action for IngressRewrite {
    fn line(&self) -> Line {
        Line {
            summary: "send an Ingress to another backend service",
            target: Kubernetes,
            side_effect: Reversible,
            undo: Undo::RestoreRecorded,
            outputs: &[],
            secret_inputs: &[],
            target_inputs: &[],
            chapter: "13",
        }
    }

    fn writes(&self, _plan: &CompiledPlan, on: &str, inputs: &Value) -> Option<Vec<Written>> {
        let input: IngressRewriteInput = typed(inputs)?;
        Some(vec![Written::new(on, "Ingress", &input.ingress)])
    }

    fn preview(
        &self,
        run: &mut PreviewRun<'_>,
        step: &CompiledStep,
        notes: &mut Vec<String>,
    ) -> Result<Vec<Change>, Box<Diagnostic>> {
        let input: IngressRewriteInput = input(step);
        let key = run.written(step, 0)?;
        let source = match (&input.from_backup, run.backup_of(step, "from_backup")) {
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
            (None, _) => run.read(step, &key)?,
        };
        let rewrite = Rewrite::from_input(&input);
        let after = k8s::rewrite_ingress(&source, &rewrite)
            .map_err(|e| run.impossible(step, &key, &e.0))?;
        Ok(vec![run.write(key, after)])
    }
}
