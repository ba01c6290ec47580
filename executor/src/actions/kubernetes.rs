//! The `k8s.*` actions: backups, deletes, restores, the StatefulSet's args, the proxy Service
//! and EndpointSlice, the Ingress rewrite; each object recorded before it changes, changed with
//! planc's edit functions, observed when in doubt, and put back (pods restarted) on undo.

use planc::edit::k8s;
use planc::expr::Resolved;
use planc_schema::actions as inputs;
use serde_json::{Value, json};

use super::{Live, Outputs, typed};
use crate::engine::{ActionError, Effects, StepRun};

use super::{LiveAction, live_action_fns};
use crate::engine::BoxFuture;
use planc::model::CompiledStep;

live_action_fns!(
    /// `k8s.backup`.
    Backup: apply backup
);
live_action_fns!(
    /// `k8s.delete`.
    Delete: apply delete, observe delete_done
);
live_action_fns!(
    /// `k8s.restore`.
    Restore: apply restore
);
live_action_fns!(
    /// `k8s.proxy-service`.
    ProxyService: apply proxy_service
);
live_action_fns!(
    /// `k8s.ingress-rewrite`.
    IngressRewrite: apply ingress_rewrite
);

/// `k8s.patch-args`: undone by putting the StatefulSet back, then restarting the pods of the
/// Vaults it runs (its updateStrategy is OnDelete).
pub(super) struct PatchArgs;

impl LiveAction for PatchArgs {
    fn apply<'a>(
        &self,
        live: &'a Live,
        run: &'a StepRun,
        effects: &'a Effects,
    ) -> BoxFuture<'a, Result<Outputs, ActionError>> {
        Box::pin(patch_args(live, run, effects))
    }

    fn observe<'a>(
        &self,
        live: &'a Live,
        run: &'a StepRun,
    ) -> BoxFuture<'a, Result<Option<Outputs>, ActionError>> {
        Box::pin(patch_args_done(live, run))
    }

    fn undo<'a>(
        &self,
        live: &'a Live,
        step: &'a CompiledStep,
        keys: &'a [&'a String],
        _journaled: Option<&'a std::collections::BTreeMap<String, Value>>,
    ) -> BoxFuture<'a, Result<Vec<String>, ActionError>> {
        Box::pin(async move {
            let mut done = live.put_back_step(step, keys).await?;
            done.extend(restart_after_undo(live, step).await?);
            Ok(done)
        })
    }
}

/// `k8s.backup`.
pub(super) async fn backup(
    live: &Live,
    run: &StepRun,
    _: &Effects,
) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let mut outputs = Outputs::new();
    let input: inputs::BackupInput = typed(run)?;
    let cluster = live.cluster(on)?;
    let found = cluster.get(input.kind.as_str(), &input.name).await?;
    if found.is_none() && input.if_exists {
        outputs.insert("backup", Value::Null);
        return Ok(outputs);
    }
    let object = found.ok_or_else(|| {
        ActionError::permanent(format!(
            "{} `{}` does not exist in `{}`",
            input.kind.as_str(),
            input.name,
            cluster.context()
        ))
    })?;
    let path = live
        .run_dir
        .backup_path(on, input.kind.as_str(), &input.name);
    live.write_backup(&path, &k8s::clean_for_backup(&object))
        .await?;
    outputs.insert("backup", json!(path.display().to_string()));
    Ok(outputs)
}

/// `k8s.delete`.
pub(super) async fn delete(
    live: &Live,
    run: &StepRun,
    effects: &Effects,
) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let input: inputs::DeleteInput = typed(run)?;
    let cluster = live.cluster(on)?;
    effects
        .perform(
            &format!("delete {} {} in {on}", input.kind.as_str(), input.name),
            async {
                cluster
                    .delete(input.kind.as_str(), &input.name, None, live.wait)
                    .await
                    .map_err(ActionError::from)
            },
        )
        .await?;
    Ok(Outputs::new())
}

/// `k8s.restore`.
pub(super) async fn restore(
    live: &Live,
    run: &StepRun,
    effects: &Effects,
) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let input: inputs::RestoreInput = typed(run)?;
    let object = live.read_backup(&input.backup).await?;
    let cluster = live.cluster(on)?;
    let (kind, _, name) = k8s::identity(&object);
    live.record_before(run, on, &kind, &name).await?;
    effects
        .perform(&format!("restore {kind} {name} in {on}"), async {
            match input.mode {
                inputs::RestoreMode::Create => cluster
                    .create(&object)
                    .await
                    .map(drop)
                    .map_err(ActionError::from),
                inputs::RestoreMode::Replace => live.put(cluster, &object).await,
            }
        })
        .await?;
    Ok(Outputs::new())
}

/// `k8s.patch-args`.
pub(super) async fn patch_args(
    live: &Live,
    run: &StepRun,
    effects: &Effects,
) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let input: inputs::PatchArgsInput = typed(run)?;
    let cluster = live.cluster(on)?;
    let statefulset = cluster
        .get("StatefulSet", &input.statefulset)
        .await?
        .ok_or_else(|| {
            ActionError::permanent(format!(
                "StatefulSet `{}` does not exist in `{}`",
                input.statefulset,
                cluster.context()
            ))
        })?;
    let patched = k8s::set_container_args(&statefulset, &input.container, &input.args)
        .map_err(|e| ActionError::permanent(e.0))?;
    effects
        .perform(
            &format!(
                "set the args of {} in StatefulSet {}",
                input.container, input.statefulset
            ),
            async {
                cluster
                    .replace(&patched)
                    .await
                    .map(drop)
                    .map_err(ActionError::from)
            },
        )
        .await?;
    Ok(Outputs::new())
}

/// `k8s.proxy-service`.
pub(super) async fn proxy_service(
    live: &Live,
    run: &StepRun,
    effects: &Effects,
) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let mut outputs = Outputs::new();
    let input: inputs::ProxyServiceInput = typed(run)?;
    let cluster = live.cluster(on)?;
    let address = live.resolve_host(&input.target_host).await?;
    let (service, slice) = k8s::proxy_objects(&k8s::Proxy {
        namespace: cluster.namespace().to_string(),
        name: input.name.clone(),
        port: input.port,
        port_name: input.port_name.clone(),
        address: address.clone(),
    });
    effects
        .perform(
            &format!("create the proxy {} to {address} in {on}", input.name),
            async {
                live.put(cluster, &service).await?;
                live.put(cluster, &slice).await
            },
        )
        .await?;
    outputs.insert("address", json!(address));
    Ok(outputs)
}

/// `k8s.ingress-rewrite`.
pub(super) async fn ingress_rewrite(
    live: &Live,
    run: &StepRun,
    effects: &Effects,
) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let input: inputs::IngressRewriteInput = typed(run)?;
    let cluster = live.cluster(on)?;
    let source = match &input.from_backup {
        Some(path) => live.read_backup(path).await?,
        None => cluster
            .get("Ingress", &input.ingress)
            .await?
            .ok_or_else(|| {
                ActionError::permanent(format!(
                    "Ingress `{}` does not exist in `{}`",
                    input.ingress,
                    cluster.context()
                ))
            })?,
    };
    let rewritten = k8s::rewrite_ingress(&source, &k8s::IngressRewrite::from_input(&input))
        .map_err(|e| ActionError::permanent(e.0))?;
    effects
        .perform(
            &format!("rewrite Ingress {} in {on}", input.ingress),
            async { live.put(cluster, &rewritten).await },
        )
        .await?;
    Ok(Outputs::new())
}

/// For a `k8s.delete` in doubt: done once the object is gone.
pub(super) async fn delete_done(
    live: &Live,
    run: &StepRun,
) -> Result<Option<Outputs>, ActionError> {
    let input: inputs::DeleteInput = typed(run)?;
    Ok(live
        .cluster(&run.step.on)?
        .get(input.kind.as_str(), &input.name)
        .await?
        .is_none()
        .then(Outputs::new))
}

/// For a `k8s.patch-args` in doubt: done once the container runs the args.
pub(super) async fn patch_args_done(
    live: &Live,
    run: &StepRun,
) -> Result<Option<Outputs>, ActionError> {
    let input: inputs::PatchArgsInput = typed(run)?;
    let statefulset = live
        .cluster(&run.step.on)?
        .get("StatefulSet", &input.statefulset)
        .await?;
    Ok(statefulset
        .and_then(|s| k8s::container_args(&s, &input.container))
        .is_some_and(|args| args == input.args)
        .then(Outputs::new))
}

/// Restart every pod of the vault targets that run from `statefulset` in `cluster`, and wait
/// until they are unsealed: what a restored StatefulSet needs (updateStrategy OnDelete).
/// After a `k8s.patch-args` is undone: restart the pods of the Vaults its StatefulSet runs.
pub(super) async fn restart_after_undo(
    live: &Live,
    step: &CompiledStep,
) -> Result<Vec<String>, ActionError> {
    match step.with.get("statefulset").and_then(Resolved::as_str) {
        Some(name) => restart_vaults_of(live, &step.on, name).await,
        None => Ok(Vec::new()),
    }
}

async fn restart_vaults_of(
    live: &Live,
    cluster_target: &str,
    statefulset: &str,
) -> Result<Vec<String>, ActionError> {
    let vaults: Vec<String> = live
        .plan
        .targets
        .values()
        .filter_map(|t| t.vault())
        .filter(|v| v.cluster == cluster_target && v.statefulset == statefulset)
        .map(|v| v.id.to_string())
        .collect();
    let mut done = Vec::new();
    for vault in vaults {
        let cluster = live.cluster(&vault)?;
        let pods = live.vault_pods(&vault).await?;
        for pod in &pods {
            live.waiting(cluster.restart_pod(pod, live.wait)).await?;
        }
        for pod in &pods {
            live.wait_unsealed(&vault, pod, false).await?;
        }
        done.push(format!(
            "restarted the pods of {vault} ({})",
            pods.join(", ")
        ));
    }
    Ok(done)
}
