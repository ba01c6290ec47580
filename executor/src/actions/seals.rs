//! The `vault.seal-*` actions: the seal blocks of the Vault's configuration edited (point at a
//! key, disable and add, remove the disabled block) and a follower's seal migration.

use planc::edit::{k8s, seal};
use planc_schema::actions as inputs;

use super::{Live, Outputs, typed};
use crate::engine::{ActionError, Effects, StepRun};

use super::live_action_fns;

live_action_fns!(
    /// `vault.seal-point-at-key`.
    PointAtKey: apply point_at_key
);
live_action_fns!(
    /// `vault.seal-disable-and-add`.
    DisableAndAdd: apply disable_and_add
);
live_action_fns!(
    /// `vault.seal-remove-disabled`.
    RemoveDisabled: apply remove_disabled
);
live_action_fns!(
    /// `vault.seal-migrate`.
    Migrate: apply migrate, observe migrate_done
);

/// `vault.seal-point-at-key`.
pub(super) async fn point_at_key(
    live: &Live,
    run: &StepRun,
    effects: &Effects,
) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let input: inputs::SealPointAtKeyInput = typed(run)?;
    let mut attributes = live.seal_attributes(&input.key_service, &input.attributes)?;
    attributes.extend(live.client_secret_attribute(run)?);
    let edit = seal::SealEdit::PointAtKey {
        selector: selector(&input.seal),
        attributes,
    };
    live.edit_seal(on, edit, effects).await?;
    Ok(Outputs::new())
}

/// `vault.seal-disable-and-add`.
pub(super) async fn disable_and_add(
    live: &Live,
    run: &StepRun,
    effects: &Effects,
) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let input: inputs::SealDisableAndAddInput = typed(run)?;
    let mut attributes = live.seal_attributes(&input.key_service, &input.attributes)?;
    attributes.extend(live.client_secret_attribute(run)?);
    let edit = seal::SealEdit::DisableAndAdd {
        selector: selector(&input.seal),
        new_type: live.target(&input.key_service)?.kind.name().to_string(),
        new_name: input.name.clone().filter(|n| !n.is_empty()),
        attributes,
    };
    live.edit_seal(on, edit, effects).await?;
    Ok(Outputs::new())
}

/// `vault.seal-remove-disabled`.
pub(super) async fn remove_disabled(
    live: &Live,
    run: &StepRun,
    effects: &Effects,
) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let input: inputs::SealRemoveDisabledInput = typed(run)?;
    let edit = seal::SealEdit::RemoveDisabled {
        selector: input.seal.as_ref().map(selector),
    };
    live.edit_seal(on, edit, effects).await?;
    Ok(Outputs::new())
}

/// `vault.seal-migrate`.
pub(super) async fn migrate(
    live: &Live,
    run: &StepRun,
    effects: &Effects,
) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let input: inputs::SealMigrateInput = typed(run)?;
    let keys = live.secret(run, "recovery_keys")?.lines();
    // The leader is looked up again before every restart: never restart the active node here.
    let (leader, _) = live.leader(on).await?;
    if leader == input.pod {
        return Err(ActionError::permanent(format!(
            "`{}` is the active node now; seal migration restarts followers only",
            input.pod
        )));
    }
    live.restart(on, &input.pod, inputs::RestartWait::Running, effects)
        .await?;
    let client = live.vault_on(on, &input.pod).await?;
    let pod = input.pod.clone();
    let probe = &client;
    live.wait_for(
        &format!("pod `{pod}` to start in seal migration"),
        move || Box::pin(async move { probe.seal_status().await.is_ok_and(|s| s.migration) }),
    )
    .await?;
    effects
        .perform(&format!("unseal {} with migrate", input.pod), async {
            // Between two auto-unseals OpenBao 2.6 unseals a standby with the migration seal
            // by itself (Azure Key Vault to Azure Key Vault); the recovery keys are for the rest.
            if !client.seal_status().await?.sealed {
                return Ok(());
            }
            for key in &keys {
                let status = client.unseal(key, true).await?;
                if !status.sealed {
                    break;
                }
            }
            Ok::<(), ActionError>(())
        })
        .await?;
    live.wait_for(
        &format!("pod `{pod}` to be an unsealed standby"),
        move || {
            Box::pin(async move {
                let unsealed = probe.seal_status().await.is_ok_and(|s| !s.sealed);
                unsealed && probe.leader().await.is_ok_and(|l| !l.is_self)
            })
        },
    )
    .await?;
    // Caught up: the standby has applied what the active node had committed when it came back.
    let (leader, _) = live.leader(on).await?;
    let active = live.vault_on(on, &leader).await?;
    let committed = active.leader().await?.raft_committed_index;
    live.wait_for(
        &format!("pod `{pod}` to catch up with `{leader}`"),
        move || {
            Box::pin(async move {
                probe
                    .leader()
                    .await
                    .is_ok_and(|l| l.raft_applied_index >= committed)
            })
        },
    )
    .await?;
    Ok(Outputs::new())
}

/// For a `vault.seal-migrate` in doubt: done once the node is unsealed and a standby.
pub(super) async fn migrate_done(
    live: &Live,
    run: &StepRun,
) -> Result<Option<Outputs>, ActionError> {
    let input: inputs::SealMigrateInput = typed(run)?;
    let client = live.vault_on(&run.step.on, &input.pod).await?;
    let unsealed = client.seal_status().await.is_ok_and(|s| !s.sealed);
    let standby = client.leader().await.is_ok_and(|l| !l.is_self);
    Ok((unsealed && standby).then(Outputs::new))
}

impl Live {
    /// `client_secret` with the value of the step's `client_secret` input, when it is given and
    /// its parameter is not `none`.
    fn client_secret_attribute(
        &self,
        run: &StepRun,
    ) -> Result<Option<(String, String)>, ActionError> {
        match run.step.with.get("client_secret") {
            Some(planc::expr::Resolved::Secret { reference, .. })
                if reference != planc::params::NO_SECRET =>
            {
                let secret = self.secret(run, "client_secret")?;
                Ok(Some((
                    "client_secret".to_string(),
                    secret.expose().to_string(),
                )))
            }
            _ => Ok(None),
        }
    }

    fn seal_attributes(
        &self,
        key_service: &str,
        extra: &indexmap::IndexMap<String, String>,
    ) -> Result<Vec<(String, String)>, ActionError> {
        let target = self.target(key_service)?;
        let names = seal::key_attributes(target.kind);
        let mut attributes = Vec::new();
        for name in names {
            let value = self.secret_attribute(target, name).ok_or_else(|| {
                ActionError::permanent(format!("key service `{key_service}` has no `{name}`"))
            })?;
            attributes.push((name.to_string(), value.expose().to_string()));
        }
        attributes.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(attributes)
    }

    /// Read the vault target's ConfigMap, apply a seal edit, write it back (conflicts surface).
    async fn edit_seal(
        &self,
        vault: &str,
        edit: seal::SealEdit,
        effects: &Effects,
    ) -> Result<(), ActionError> {
        let target = self.vault_target(vault)?;
        let (name, key) = (target.configmap, target.config_key);
        let cluster = self.cluster(vault)?;
        let configmap = cluster.get("ConfigMap", name).await?.ok_or_else(|| {
            ActionError::permanent(format!(
                "ConfigMap `{name}` does not exist in `{}`",
                cluster.context()
            ))
        })?;
        let text =
            k8s::configmap_value(&configmap, key).map_err(|e| ActionError::permanent(e.0))?;
        let edited = seal::apply(text, &edit).map_err(|e| {
            ActionError::permanent(format!("ConfigMap `{name}` key `{key}`: {}", e.0))
        })?;
        let updated = k8s::set_configmap_value(&configmap, key, &edited)
            .map_err(|e| ActionError::permanent(e.0))?;
        effects
            .perform(&format!("update ConfigMap {name} of {vault}"), async {
                cluster
                    .replace(&updated)
                    .await
                    .map(drop)
                    .map_err(ActionError::from)
            })
            .await
    }
}

fn selector(seal: &inputs::SealSelector) -> seal::SealSelector {
    seal::SealSelector {
        seal_type: seal.seal_type.clone(),
        name: seal.name.clone().filter(|n| !n.is_empty()),
    }
}
