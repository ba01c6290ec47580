//! The `vault.*` actions on a running Vault: migration tokens (revoked by accessor on undo),
//! restarts, raft snapshots, the leader, the step-down and the verification through the domains.

use planc::expr::Resolved;
use planc_schema::actions as inputs;
use serde_json::json;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{Live, Outputs, typed};
use crate::adapters::vault::Vault;
use crate::engine::{ActionError, Effects, StepRun};
use crate::secrets::Secret;

use super::{LiveAction, live_action_fns};
use crate::engine::BoxFuture;
use planc::model::CompiledStep;
use serde_json::Value;
use std::collections::BTreeMap;

/// `vault.token-create`: undone by revoking the token through its journaled accessor.
pub(super) struct TokenCreate;

impl LiveAction for TokenCreate {
    fn apply<'a>(
        &self,
        live: &'a Live,
        run: &'a StepRun,
        effects: &'a Effects,
    ) -> BoxFuture<'a, Result<Outputs, ActionError>> {
        Box::pin(token_create(live, run, effects))
    }

    fn undo<'a>(
        &self,
        live: &'a Live,
        step: &'a CompiledStep,
        _keys: &'a [&'a String],
        journaled: Option<&'a BTreeMap<String, Value>>,
    ) -> BoxFuture<'a, Result<Vec<String>, ActionError>> {
        let accessor = journaled
            .and_then(|o| o.get("accessor"))
            .and_then(Value::as_str);
        Box::pin(async move {
            Ok(vec![match accessor {
                Some(accessor) => revoke_created_token(live, step, accessor)
                    .await
                    .unwrap_or_else(|e| {
                        format!(
                            "vault.token-revoke failed ({}); revoke accessor {accessor} by hand",
                            e.message
                        )
                    }),
                None => "vault.token-revoke: no accessor journaled, nothing to revoke".to_string(),
            }])
        })
    }
}

live_action_fns!(
    /// `vault.token-revoke`.
    TokenRevoke: apply token_revoke
);
live_action_fns!(
    /// `vault.restart`.
    Restart: apply restart
);
live_action_fns!(
    /// `vault.block-services`.
    BlockServices: apply block_services, observe block_services_done
);
live_action_fns!(
    /// `vault.snapshot-save`.
    SnapshotSave: apply snapshot_save
);
live_action_fns!(
    /// `vault.snapshot-restore`.
    SnapshotRestore: apply snapshot_restore
);
live_action_fns!(
    /// `vault.snapshot-transfer`.
    SnapshotTransfer: apply snapshot_transfer, observe snapshot_transfer_done
);
live_action_fns!(
    /// `vault.leader`.
    Leader: apply leader
);
live_action_fns!(
    /// `vault.step-down`.
    StepDown: apply step_down
);
live_action_fns!(
    /// `vault.verify`.
    Verify: apply verify
);

/// `vault.token-create`.
pub(super) async fn token_create(
    live: &Live,
    run: &StepRun,
    effects: &Effects,
) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let mut outputs = Outputs::new();
    let input: inputs::TokenCreateInput = typed(run)?;
    let admin = live.secret(run, "admin_token")?;
    let serving = live.serving_vault(on).await?;
    let (leader, _) = live.leader(&serving).await?;
    let client = live.vault_on(&serving, &leader).await?;
    let (token, accessor) = effects
        .perform(&format!("create a migration token on {on}"), async {
            client
                .create_migration_token(&admin, &input.policy_name, &input.ttl)
                .await
                .map_err(ActionError::from)
        })
        .await?;
    outputs.insert_secret("token", token);
    outputs.insert("accessor", json!(accessor));
    Ok(outputs)
}

/// `vault.token-revoke`.
pub(super) async fn token_revoke(
    live: &Live,
    run: &StepRun,
    effects: &Effects,
) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let token = live.secret(run, "token")?;
    let (leader, _) = live.leader(on).await?;
    let client = live.vault_on(on, &leader).await?;
    effects
        .perform(&format!("revoke a migration token on {on}"), async {
            client.revoke_self(&token).await.map_err(ActionError::from)
        })
        .await?;
    Ok(Outputs::new())
}

/// `vault.block-services`: each client Service of the Vault (as planc plans them) replaced
/// without its selector, by the edit the preview showed.
pub(super) async fn block_services(
    live: &Live,
    run: &StepRun,
    effects: &Effects,
) -> Result<Outputs, ActionError> {
    for (cluster, service) in client_services(live, run).await? {
        let Some(service) = service else {
            continue;
        };
        let name = service["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if service.pointer("/spec/selector").is_none() {
            continue;
        }
        let blocked = planc::edit::k8s::without_selector(&service)
            .map_err(|e| ActionError::permanent(e.0))?;
        effects
            .perform(&format!("take the selector off Service {name}"), async {
                cluster
                    .replace(&blocked)
                    .await
                    .map(drop)
                    .map_err(ActionError::from)
            })
            .await?;
    }
    Ok(Outputs::new())
}

/// For a `vault.block-services` in doubt: done once no client Service has a selector.
pub(super) async fn block_services_done(
    live: &Live,
    run: &StepRun,
) -> Result<Option<Outputs>, ActionError> {
    let services = client_services(live, run).await?;
    Ok(services
        .iter()
        .all(|(_, service)| {
            service
                .as_ref()
                .is_none_or(|s| s.pointer("/spec/selector").is_none())
        })
        .then(Outputs::new))
}

/// The client Services of the step's Vault as they are now (`None`: absent), with the cluster
/// they live in; a Service the install lacks is an error, as in the preview.
async fn client_services<'l>(
    live: &'l Live,
    run: &StepRun,
) -> Result<
    Vec<(
        &'l crate::adapters::cluster::Cluster,
        Option<serde_json::Value>,
    )>,
    ActionError,
> {
    let inputs = planc::preview::checked_inputs(&run.inputs);
    let written =
        planc::preview::objects_written(&live.plan, run.step.action, &run.step.on, &inputs);
    let mut services = Vec::new();
    for object in written {
        let cluster = live.cluster(&object.target)?;
        let service = cluster.get(&object.kind, &object.name).await?;
        if service.is_none() {
            return Err(ActionError::permanent(format!(
                "Service `{}` of `{}` does not exist in `{}`: set the target's `service`, `active_service` or `standby_service` to the install's names (`\"\"` for one it does not have)",
                object.name,
                run.step.on,
                cluster.context()
            )));
        }
        services.push((cluster, service));
    }
    Ok(services)
}

/// `vault.restart`.
pub(super) async fn restart(
    live: &Live,
    run: &StepRun,
    effects: &Effects,
) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let input: inputs::RestartInput = typed(run)?;
    let pods = match (&input.pod, input.pods) {
        (Some(pod), _) => vec![pod.clone()],
        (None, Some(inputs::PodSet::Leader)) => vec![live.leader(on).await?.0],
        (None, Some(inputs::PodSet::Followers)) => live.leader(on).await?.1,
        (None, _) => live.vault_pods(on).await?,
    };
    if input.pods == Some(inputs::PodSet::Followers) {
        for pod in &pods {
            live.restart(on, pod, input.wait, effects).await?;
        }
    } else {
        // All at once, as `kubectl delete pod --selector` does; then wait for each.
        let cluster = live.cluster(on)?;
        effects
            .perform(&format!("delete pods {} of {on}", pods.join(", ")), async {
                let mut restarts = tokio::task::JoinSet::new();
                for pod in pods.clone() {
                    let cluster = cluster.clone();
                    let wait = live.wait;
                    restarts.spawn(async move { cluster.restart_pod(&pod, wait).await });
                }
                live.waiting(async {
                    while let Some(done) = restarts.join_next().await {
                        done.map_err(|e| {
                            ActionError::permanent(format!("a restart failed: {e}"))
                        })??;
                    }
                    Ok::<(), ActionError>(())
                })
                .await
            })
            .await?;
        for pod in &pods {
            match input.wait {
                inputs::RestartWait::Running => {}
                inputs::RestartWait::Unsealed => live.wait_unsealed(on, pod, false).await?,
                inputs::RestartWait::Sealed => live.wait_unsealed(on, pod, true).await?,
            }
        }
        if input.wait == inputs::RestartWait::Unsealed {
            // Every node restarted: the cluster serves once it elected a leader.
            live.leader(on).await?;
        }
    }
    Ok(Outputs::new())
}

/// `vault.snapshot-save`.
pub(super) async fn snapshot_save(
    live: &Live,
    run: &StepRun,
    _: &Effects,
) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let mut outputs = Outputs::new();
    let token = live.secret(run, "token")?;
    let (leader, _) = live.leader(on).await?;
    let client = live.vault_on(on, &leader).await?;
    let path = live.run_dir.snapshot_path(on, &run.key);
    tokio::fs::create_dir_all(path.parent().expect("a folder"))
        .await
        .map_err(|e| ActionError::permanent(format!("cannot create the snapshot folder: {e}")))?;
    let _ = tokio::fs::remove_file(&path).await;
    let received = live.byte_reporter(format!("snapshot from {leader} of {on}"), None);
    let file = client.snapshot_save(&token, &path, received).await?;
    outputs.insert("snapshot", json!(path.display().to_string()));
    outputs.insert("sha256", json!(file.sha256));
    outputs.insert("bytes", json!(file.bytes));
    Ok(outputs)
}

/// `vault.snapshot-restore`.
pub(super) async fn snapshot_restore(
    live: &Live,
    run: &StepRun,
    effects: &Effects,
) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let input: inputs::SnapshotRestoreInput = typed(run)?;
    let token = live.secret(run, "token")?;
    let path = PathBuf::from(&input.snapshot);
    let (leader, _) = live.leader(on).await?;
    let client = live.vault_on(on, &leader).await?;
    let size = tokio::fs::metadata(&path).await.map(|m| m.len()).ok();
    let sent = live.byte_reporter(format!("snapshot into {leader} of {on}"), size);
    effects
        .perform(&format!("force-restore the snapshot into {on}"), async {
            client
                .snapshot_restore_force(&token, &path, input.sha256.as_deref(), sent)
                .await
                .map_err(ActionError::from)
        })
        .await?;
    for pod in live.vault_pods(on).await? {
        live.wait_unsealed(on, &pod, true).await?;
    }
    Ok(Outputs::new())
}

/// `vault.snapshot-transfer`.
pub(super) async fn snapshot_transfer(
    live: &Live,
    run: &StepRun,
    effects: &Effects,
) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let input: inputs::SnapshotTransferInput = typed(run)?;
    let source = input.from.as_str();
    let source_token = live.secret(run, "source_token")?;
    let token = live.secret(run, "token")?;
    let (source_leader, _) = live.leader(source).await?;
    let (leader, _) = live.leader(on).await?;
    let from = live.vault_on(source, &source_leader).await?;
    let into = live.vault_on(on, &leader).await?;
    let path = live.run_dir.snapshot_path(source, &run.key);
    tokio::fs::create_dir_all(path.parent().expect("a folder"))
        .await
        .map_err(|e| ActionError::permanent(format!("cannot create the snapshot folder: {e}")))?;
    let _ = tokio::fs::remove_file(&path).await;
    let moved = live.byte_reporter(
        format!("snapshot from {source_leader} of {source} into {leader} of {on}"),
        None,
    );
    let file = effects
        .perform(
            &format!("stream a snapshot of {source} into {on} (force-restore)"),
            async {
                from.snapshot_transfer(&source_token, &into, &token, &path, moved)
                    .await
                    .map_err(ActionError::from)
            },
        )
        .await?;
    match input.expect {
        inputs::TransferExpect::Sealed => {
            for pod in live.vault_pods(on).await? {
                live.wait_unsealed(on, &pod, true).await?;
            }
        }
        inputs::TransferExpect::Serving => {
            live.wait_serving_data_of(on, source, &source_token).await?
        }
    }
    let mut outputs = Outputs::new();
    outputs.insert("snapshot", json!(path.display().to_string()));
    outputs.insert("sha256", json!(file.sha256));
    outputs.insert("bytes", json!(file.bytes));
    Ok(outputs)
}

/// For a `vault.snapshot-transfer` in doubt: done once the target serves the source's data (a
/// run again would fail: the target's own token went with its data). The copy on disk is
/// reported as it is. A transfer that expects the target sealed runs again.
pub(super) async fn snapshot_transfer_done(
    live: &Live,
    run: &StepRun,
) -> Result<Option<Outputs>, ActionError> {
    let on = run.step.on.as_str();
    let input: inputs::SnapshotTransferInput = typed(run)?;
    if input.expect != inputs::TransferExpect::Serving {
        return Ok(None);
    }
    let source_token = live.secret(run, "source_token")?;
    let (leader, _) = live.leader(on).await?;
    let client = live.vault_on(on, &leader).await?;
    if client.raft_configuration(&source_token).await.is_err() {
        return Ok(None);
    }
    let path = live.run_dir.snapshot_path(&input.from, &run.key);
    let sha256 = crate::adapters::vault::file_sha256(&path)
        .await
        .map_err(|e| ActionError::permanent(format!("cannot read {}: {e}", path.display())))?;
    let bytes = tokio::fs::metadata(&path)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    let mut outputs = Outputs::new();
    outputs.insert("snapshot", json!(path.display().to_string()));
    outputs.insert("sha256", json!(sha256));
    outputs.insert("bytes", json!(bytes));
    Ok(Some(outputs))
}

/// `vault.leader`.
pub(super) async fn leader(
    live: &Live,
    run: &StepRun,
    _: &Effects,
) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let mut outputs = Outputs::new();
    let (leader, followers) = live.leader(on).await?;
    outputs.insert("leader", json!(leader));
    outputs.insert("followers", json!(followers));
    Ok(outputs)
}

/// `vault.step-down`. The new active node may be a pod of another Vault sharing the raft
/// cluster (after a `vault.raft-join`): then the step-down moves leadership between them.
pub(super) async fn step_down(
    live: &Live,
    run: &StepRun,
    effects: &Effects,
) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let mut outputs = Outputs::new();
    let token = live.secret(run, "token")?;
    let (leader_vault, leader) = live.raft_leader(on).await?;
    let client = live.vault_on(&leader_vault, &leader).await?;
    effects
        .perform(&format!("step {leader} of {leader_vault} down"), async {
            client.step_down(&token).await.map_err(ActionError::from)
        })
        .await?;
    let deadline = tokio::time::Instant::now() + live.wait;
    let election = Instant::now();
    let new_leader = loop {
        if let Ok((vault, now)) = live.raft_leader(on).await
            && (vault.as_str(), now.as_str()) != (leader_vault.as_str(), leader.as_str())
            && let Ok(client) = live.vault_on(&vault, &now).await
            && client
                .seal_status()
                .await
                .is_ok_and(|s| !s.sealed && !s.migration)
        {
            break now;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ActionError::permanent(format!(
                "timed out after {}s waiting for a new leader of `{on}` that finished the seal migration",
                live.wait.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    live.count_wait(election);
    outputs.insert("leader", json!(new_leader));
    Ok(outputs)
}

/// `vault.verify`.
pub(super) async fn verify(
    live: &Live,
    run: &StepRun,
    _: &Effects,
) -> Result<Outputs, ActionError> {
    let input: inputs::VerifyInput = typed(run)?;
    let token = live.secret(run, "token")?;
    for url in &input.urls {
        verify_url(url, &token, &input.expect_mounts, &live.resolve).await?;
    }
    Ok(Outputs::new())
}

/// Undo a `vault.token-create` step: revoke the token by its journaled accessor with the
/// step's admin token, on the node that serves the Vault now.
pub(super) async fn revoke_created_token(
    live: &Live,
    step: &CompiledStep,
    accessor: &str,
) -> Result<String, ActionError> {
    let admin = match step.with.get("admin_token") {
        Some(Resolved::Secret { param, .. }) => live.secrets.get(param).cloned(),
        _ => None,
    }
    .ok_or_else(|| {
        ActionError::permanent(format!(
            "`{}` has no admin token to revoke with; revoke accessor {accessor} by hand",
            step.id
        ))
    })?;
    let serving = live.serving_vault(&step.on).await?;
    let (leader, _) = live.leader(&serving).await?;
    live.vault_on(&serving, &leader)
        .await?
        .revoke_accessor(&admin, accessor)
        .await?;
    Ok(format!(
        "revoked the token with accessor {accessor} on {serving}"
    ))
}

/// Through a URL (a domain, via `--resolve`): the token works and the mounts are listed.
async fn verify_url(
    url: &str,
    token: &Secret,
    expect_mounts: &[String],
    resolve: &[(String, SocketAddr)],
) -> Result<(), ActionError> {
    let vault = Vault::new(url, resolve)?;
    let health = vault.health().await?;
    if health.sealed {
        return Err(ActionError::permanent(format!(
            "{url} answers but is sealed"
        )));
    }
    if !vault.token_valid(token).await? {
        return Err(ActionError::permanent(format!(
            "{url}: the token is not valid there"
        )));
    }
    if !expect_mounts.is_empty() {
        let mounts = vault.mounts(token).await?;
        for mount in expect_mounts {
            let key = format!("{}/", mount.trim_end_matches('/'));
            if !mounts.contains(&key) {
                return Err(ActionError::permanent(format!(
                    "{url}: the mount `{key}` is missing"
                )));
            }
        }
    }
    Ok(())
}
