//! The `preflight.*` actions: read-only checks before anything changes (the cluster's API
//! versions, replicas, seal overrides in the container's environment, key access, the recovery
//! keys).

use planc_schema::actions as inputs;
use serde_json::{Value, json};

use super::{Live, Outputs, flavour_hint, typed};
use crate::adapters::cluster;
use crate::adapters::vault::EarlierGeneration;
use crate::engine::{ActionError, Effects, StepRun};

use super::live_action_fns;

live_action_fns!(
    /// `preflight.cluster`.
    Cluster: apply cluster
);
live_action_fns!(
    /// `preflight.replicas`.
    Replicas: apply replicas
);
live_action_fns!(
    /// `preflight.seal-overrides`.
    SealOverrides: apply seal_overrides
);
live_action_fns!(
    /// `preflight.key-access`.
    KeyAccess: apply key_access
);
live_action_fns!(
    /// `preflight.recovery-keys`.
    RecoveryKeys: apply recovery_keys
);

/// `preflight.cluster`.
pub(super) async fn cluster(
    live: &Live,
    run: &StepRun,
    _: &Effects,
) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let mut outputs = Outputs::new();
    let input: inputs::PreflightClusterInput = typed(run)?;
    let cluster = live.cluster(on)?;
    let version = cluster.server_version().await?;
    let missing = cluster.missing_api_versions(&input.api_versions).await?;
    if !missing.is_empty() {
        return Err(ActionError::permanent(format!(
            "`{}` does not serve {}",
            cluster.context(),
            missing.join(", ")
        )));
    }
    // The namespace is readable.
    let _: Option<Value> = cluster.get("ConfigMap", "planx-preflight-probe").await?;
    // Everything the plan and its way back will ask of this cluster is allowed.
    let needed: Vec<planc::permissions::Access> = planc::permissions::needed(&live.plan)
        .remove(on)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let denied = cluster.denied(&needed).await?;
    if !denied.is_empty() {
        return Err(ActionError::permanent(format!(
            "the credentials of context `{}` may not, in namespace `{}`: {}; grant them (a Role and RoleBinding for this namespace) before the move: the plan or its rollback needs every one (`kubectl auth can-i VERB RESOURCE -n {}` checks one)",
            cluster.context(),
            cluster.namespace(),
            denied
                .iter()
                .map(planc::permissions::Access::describe)
                .collect::<Vec<_>>()
                .join(", "),
            cluster.namespace()
        )));
    }
    outputs.insert("server_version", json!(version));
    outputs.insert("permissions_checked", json!(needed.len()));
    Ok(outputs)
}

/// `preflight.replicas`: the install is the one the target describes (its flavour's names),
/// with the replicas expected available, and its server is a Vault or OpenBao planx supports.
pub(super) async fn replicas(
    live: &Live,
    run: &StepRun,
    _: &Effects,
) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let mut outputs = Outputs::new();
    let input: inputs::PreflightReplicasInput = typed(run)?;
    let target = live.vault_target(on)?;
    let cluster = live.cluster(on)?;
    let name = target.statefulset;
    let statefulset = cluster.get("StatefulSet", name).await?.ok_or_else(|| {
        ActionError::permanent(format!(
            "StatefulSet `{name}` does not exist in namespace `{}` of `{}`{}",
            cluster.namespace(),
            cluster.context(),
            flavour_hint(&target)
        ))
    })?;
    let active = cluster.get("Service", target.active_service).await?;
    let mismatches = install_mismatches(&target, &statefulset, active.as_ref());
    if !mismatches.is_empty() {
        return Err(ActionError::permanent(format!(
            "the install in namespace `{}` of `{}` is not what target `{on}` describes: {}{}",
            cluster.namespace(),
            cluster.context(),
            mismatches.join("; "),
            flavour_hint(&target)
        )));
    }
    let available = statefulset["status"]["availableReplicas"]
        .as_u64()
        .or(statefulset["status"]["readyReplicas"].as_u64())
        .unwrap_or(0);
    if available < u64::from(input.expected) {
        return Err(ActionError::permanent(format!(
            "StatefulSet `{name}` has {available} available replicas, the plan expects {}",
            input.expected
        )));
    }
    let server = live
        .vault_on(on, &format!("{name}-0"))
        .await?
        .server()
        .await?;
    server.supported().map_err(ActionError::permanent)?;
    outputs.insert("available", json!(available));
    outputs.insert("server", json!(server.describe()));
    Ok(outputs)
}

/// Where the objects of a vault target differ from what its flavour (or its explicit names)
/// says: the container missing from the StatefulSet, the raft data path on no persistent
/// volume, the active Service selecting on another product's status label.
fn install_mismatches(
    target: &planc::model::VaultTarget<'_>,
    statefulset: &Value,
    active_service: Option<&Value>,
) -> Vec<String> {
    let mut mismatches = Vec::new();
    let pod = &statefulset["spec"]["template"]["spec"];
    let containers: Vec<&str> = pod["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let container = pod["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == target.container);
    match container {
        None => mismatches.push(format!(
            "StatefulSet `{}` has no container `{}` (it has {})",
            target.statefulset,
            target.container,
            containers.join(", ")
        )),
        Some(container) => {
            let claims: Vec<&str> = statefulset["spec"]["volumeClaimTemplates"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["metadata"]["name"].as_str())
                .collect();
            let on_claim = container["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|mount| {
                    mount["name"].as_str().is_some_and(|n| claims.contains(&n))
                        && mount["mountPath"].as_str().is_some_and(|path| {
                            let path = path.trim_end_matches('/');
                            target.data_path == path
                                || target.data_path.starts_with(&format!("{path}/"))
                        })
                });
            if !on_claim {
                mismatches.push(format!(
                    "the raft data path `{}` is on no persistent volume of container `{}` (a restart would lose the node's data)",
                    target.data_path, target.container
                ));
            }
        }
    }
    match active_service {
        None => mismatches.push(format!(
            "Service `{}` does not exist",
            target.active_service
        )),
        Some(service) => {
            let label = format!("{}-active", target.status_labels);
            let selector = service["spec"]["selector"].as_object();
            let other = selector
                .into_iter()
                .flatten()
                .find(|(key, _)| key.ends_with("-active") && **key != label);
            if let Some((key, _)) = other {
                mismatches.push(format!(
                    "Service `{}` selects pods by `{key}`, but the server's service registration sets `{label}` (status_labels `{}`): the Service would never find the active node",
                    target.active_service, target.status_labels
                ));
            }
        }
    }
    mismatches
}

/// `preflight.seal-overrides`.
pub(super) async fn seal_overrides(
    live: &Live,
    run: &StepRun,
    _: &Effects,
) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let target = live.vault_target(on)?;
    let (name, container) = (target.statefulset, target.container);
    let statefulset = live
        .cluster(on)?
        .get("StatefulSet", name)
        .await?
        .unwrap_or(Value::Null);
    let spec = statefulset["spec"]["template"]["spec"]["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == container))
        .cloned()
        .unwrap_or(Value::Null);
    let overriding = seal_overriding_variables(live.cluster(on)?, &spec).await?;
    if !overriding.is_empty() {
        return Err(ActionError::permanent(format!(
            "the container `{container}` sets {}, which override the seal configuration: both seal blocks would point at one key",
            overriding.join(", ")
        )));
    }
    let configmap = live
        .cluster(on)?
        .get("ConfigMap", target.configmap)
        .await?
        .unwrap_or(Value::Null);
    // Every later step records the ConfigMap before changing it: a secret in it must be one
    // the plan holds by reference.
    live.refuse_unknown_seal_secrets(&configmap)?;
    let config = configmap["data"][target.config_key].as_str().unwrap_or("");
    if let Some(problem) = missing_kms_plugin(&spec, config) {
        return Err(ActionError::permanent(format!(
            "the container `{container}` {problem}"
        )));
    }
    let (contradictions, from_env) = identity_variables(&spec, config);
    if !contradictions.is_empty() {
        return Err(ActionError::permanent(format!(
            "the container `{container}` and the seal block in ConfigMap `{}` disagree on the seal's identity: {}; the environment wins, so the seal would sign in as someone else: make them agree, or set it in one place",
            target.configmap,
            contradictions.join("; ")
        )));
    }
    let mut outputs = Outputs::new();
    outputs.insert("identity_from_env", json!(from_env));
    Ok(outputs)
}

/// OpenBao moved these seals out of its binary into external KMS plugins in 2.7.0.
const PLUGIN_SEALS: &[&str] = &["azurekeyvault"];

/// For a container whose image is OpenBao 2.7 or later, the seals of `config` that need a
/// `plugin "kms" "<type>"` stanza and lack it, said as a problem.
fn missing_kms_plugin(container: &Value, config: &str) -> Option<String> {
    let image = container["image"].as_str()?;
    let (name, tag) = image.rsplit_once(':')?;
    if !name.contains("openbao") {
        return None;
    }
    let mut numbers = tag
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|part| part.parse::<u32>().ok());
    let (Some(Some(major)), Some(Some(minor))) = (numbers.next(), numbers.next()) else {
        return None;
    };
    if (major, minor) < (2, 7) {
        return None;
    }
    let missing: Vec<&str> = PLUGIN_SEALS
        .iter()
        .copied()
        .filter(|seal| !planc::edit::seal::block_attributes(config, seal).is_empty())
        .filter(|seal| !planc::edit::seal::has_block(config, "plugin", &["kms", seal]))
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "runs {image}: OpenBao 2.7 and later have no `{}` seal built in (it is an external KMS plugin), and the configuration has no `plugin \"kms\" \"{}\" {{ command = ..., sha256sum = ... }}` stanza (with `plugin_directory`): the pods would not start after their restart; add the stanza and the plugin binary, or run OpenBao 2.6",
            missing.join("`, `"),
            missing[0]
        )
    })
}

/// The environment variables Azure Key Vault seals take their identity from, and the seal
/// attribute each stands for.
const AZURE_IDENTITY_VARIABLES: &[(&str, &str)] = &[
    ("AZURE_TENANT_ID", "tenant_id"),
    ("AZURE_CLIENT_ID", "client_id"),
    ("AZURE_CLIENT_SECRET", "client_secret"),
    ("VAULT_AZUREKEYVAULT_AUTH_METHOD", "auth_method"),
];

/// The identity variables of `container` (from `env`) that contradict an `azurekeyvault` seal
/// block of `config` (a literal value that differs, or one from a Secret or ConfigMap where
/// the block sets the attribute too), and those that only supply what the block leaves out.
/// Secret values are compared, never shown.
fn identity_variables(container: &Value, config: &str) -> (Vec<String>, Vec<String>) {
    let blocks = planc::edit::seal::block_attributes(config, "azurekeyvault");
    let mut contradictions = Vec::new();
    let mut from_env = Vec::new();
    for entry in container["env"].as_array().into_iter().flatten() {
        let Some(name) = entry["name"].as_str() else {
            continue;
        };
        let Some((_, attribute)) = AZURE_IDENTITY_VARIABLES.iter().find(|(v, _)| *v == name) else {
            continue;
        };
        let literal = entry["value"].as_str();
        let mut agrees = true;
        for block in &blocks {
            let Some((_, in_block)) = block.iter().find(|(key, _)| key == attribute) else {
                continue;
            };
            let in_block = in_block.as_deref();
            match literal {
                Some(value) if in_block == Some(value) => {}
                Some(_) if *attribute == "client_secret" || in_block.is_none() => {
                    contradictions.push(format!("{name} differs from the block's `{attribute}`"));
                    agrees = false;
                }
                Some(value) => {
                    contradictions.push(format!(
                        "{name}={value} but the block has {attribute} = \"{}\"",
                        in_block.unwrap_or_default()
                    ));
                    agrees = false;
                }
                None => {
                    contradictions.push(format!(
                        "{name} comes from a Secret or ConfigMap and the block sets `{attribute}` too"
                    ));
                    agrees = false;
                }
            }
            break;
        }
        if agrees {
            from_env.push(name.to_string());
        }
    }
    (contradictions, from_env)
}

/// `preflight.key-access`.
pub(super) async fn key_access(
    live: &Live,
    run: &StepRun,
    _: &Effects,
) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let mut outputs = Outputs::new();
    let input: inputs::PreflightKeyAccessInput = typed(run)?;
    let summary = live
        .key_service(on)?
        .check_access(input.identity.as_deref().unwrap_or_default(), &input.role)
        .await?;
    outputs.insert("summary", json!(summary));
    Ok(outputs)
}

/// `preflight.recovery-keys`.
pub(super) async fn recovery_keys(
    live: &Live,
    run: &StepRun,
    effects: &Effects,
) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let keys = live.secret(run, "recovery_keys")?.lines();
    let token = match run.step.with.get("token") {
        Some(planc::expr::Resolved::Secret { reference, .. })
            if reference == planc::params::NO_SECRET =>
        {
            None
        }
        _ => Some(live.secret(run, "token")?),
    };
    let (leader, _) = live.leader(on).await?;
    let client = live.vault_on(on, &leader).await?;
    let earlier = earlier_generation(effects.in_doubt().as_deref());
    let proof = effects
        .perform(
            &format!("{BEGIN_KEY_PROOF} on {on} to prove the recovery keys"),
            async {
                client
                    .begin_key_proof(token.as_ref(), &earlier)
                    .await
                    .map_err(ActionError::from)
            },
        )
        .await?;
    effects
        .perform(
            &format!(
                "prove the recovery keys on {on} {PROOF_NONCE}{} (the root token is revoked at once)",
                proof.nonce()
            ),
            async {
                client
                    .complete_key_proof(proof, &keys)
                    .await
                    .map_err(ActionError::from)
            },
        )
        .await?;
    Ok(Outputs::new())
}

/// How the journal names the start of a root-token generation, and the nonce of one begun.
const BEGIN_KEY_PROOF: &str = "start a root-token generation";
const PROOF_NONCE: &str = "with root-token generation ";

/// The root-token generation an earlier attempt of the step began, from the effect it left in
/// doubt.
fn earlier_generation(in_doubt: Option<&str>) -> EarlierGeneration {
    let Some(effect) = in_doubt else {
        return EarlierGeneration::None;
    };
    if effect.starts_with(BEGIN_KEY_PROOF) {
        return EarlierGeneration::Begun;
    }
    match effect.split_once(PROOF_NONCE) {
        Some((_, rest)) => EarlierGeneration::Nonce(
            rest.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string(),
        ),
        None => EarlierGeneration::None,
    }
}

/// The environment variables of a container spec that override a seal's configuration:
/// from `env`, and from the ConfigMaps and Secrets of `envFrom` (their keys, with the
/// source's prefix), each named with where it comes from. Only key names are read.
async fn seal_overriding_variables(
    cluster: &cluster::Cluster,
    container: &Value,
) -> Result<Vec<String>, ActionError> {
    // OpenBao reads `BAO_SEAL_TYPE` where Vault reads `VAULT_SEAL_TYPE`; the seal wrappers'
    // own variables keep their names in both. The sign-in method is an identity variable,
    // checked against the seal block instead.
    let overrides = |name: &str| {
        let moves_the_key = name.starts_with("VAULT_SEAL_")
            || name.starts_with("BAO_SEAL_")
            || name.starts_with("VAULT_AZUREKEYVAULT_")
            || name.starts_with("VAULT_TRANSIT_SEAL_")
            || name.starts_with("VAULT_AWSKMS_SEAL_")
            || name.starts_with("VAULT_GCPCKMS_SEAL_")
            || name.starts_with("AZUREKEYVAULT_WRAPPER_")
            || name == "AZURE_ENVIRONMENT"
            || name == "AZURE_AD_RESOURCE";
        moves_the_key && name != "VAULT_AZUREKEYVAULT_AUTH_METHOD"
    };
    let mut found: Vec<String> = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str())
        .filter(|n| overrides(n))
        .map(str::to_owned)
        .collect();
    for source in container["envFrom"].as_array().into_iter().flatten() {
        let prefix = source["prefix"].as_str().unwrap_or_default();
        let (kind, name) = match (
            source["configMapRef"]["name"].as_str(),
            source["secretRef"]["name"].as_str(),
        ) {
            (Some(name), _) => ("ConfigMap", name),
            (None, Some(name)) => ("Secret", name),
            (None, None) => continue,
        };
        // A missing optional source adds nothing; a missing required one keeps the pod
        // from starting, which the restart reports.
        let Some(object) = cluster.get(kind, name).await? else {
            continue;
        };
        let keys = ["data", "binaryData", "stringData"]
            .into_iter()
            .filter_map(|field| object[field].as_object())
            .flat_map(|map| map.keys());
        for key in keys {
            let variable = format!("{prefix}{key}");
            if overrides(&variable) {
                found.push(format!("{variable} (from {kind} `{name}`)"));
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The effect texts the proof journals are read back into what a resumed run may cancel.
    #[test]
    fn the_generation_left_in_doubt_is_read_from_the_journaled_effect() {
        let begin = format!("{BEGIN_KEY_PROOF} on old_vault to prove the recovery keys");
        let prove = format!(
            "prove the recovery keys on old_vault {PROOF_NONCE}2dbd10f1-643f-1ba6-fc2a-6c2f3d3a1b22 (the root token is revoked at once)"
        );
        assert_eq!(earlier_generation(None), EarlierGeneration::None);
        assert_eq!(earlier_generation(Some(&begin)), EarlierGeneration::Begun);
        assert_eq!(
            earlier_generation(Some(&prove)),
            EarlierGeneration::Nonce("2dbd10f1-643f-1ba6-fc2a-6c2f3d3a1b22".into())
        );
        // A journal written before planx journaled the nonce names no generation.
        assert_eq!(
            earlier_generation(Some(
                "prove the recovery keys on old_vault (a root token generated and revoked)"
            )),
            EarlierGeneration::None
        );
    }
}
