//! The `vault.raft-*` actions on the real servers: a Vault's pods joined to another's raft
//! cluster (undone by removing them again), promoted to voters, and peers removed, each change
//! sent to the cluster's active node and waited for in its raft configuration.

use std::collections::BTreeMap;
use std::time::Duration;

use planc::expr::Resolved;
use planc::model::CompiledStep;
use planc_schema::actions as inputs;
use serde_json::{Value, json};

use super::{Live, LiveAction, Outputs, live_action_fns, typed};
use crate::adapters::tls_names::CertificateRefusal;
use crate::adapters::vault::{RaftChange, RaftServer, Vault, VaultError};
use crate::engine::{ActionError, BoxFuture, Effects, StepRun};
use crate::secrets::Secret;

/// `vault.raft-join`: undone by removing the nodes that joined.
pub(super) struct Join;

impl LiveAction for Join {
    fn apply<'a>(
        &self,
        live: &'a Live,
        run: &'a StepRun,
        effects: &'a Effects,
    ) -> BoxFuture<'a, Result<Outputs, ActionError>> {
        Box::pin(join(live, run, effects))
    }

    fn undo<'a>(
        &self,
        live: &'a Live,
        step: &'a CompiledStep,
        _keys: &'a [&'a String],
        _journaled: Option<&'a BTreeMap<String, Value>>,
    ) -> BoxFuture<'a, Result<Vec<String>, ActionError>> {
        Box::pin(leave(live, step))
    }
}

live_action_fns!(
    /// `preflight.raft-join`.
    Preflight: apply preflight
);
live_action_fns!(
    /// `vault.raft-promote`.
    Promote: apply promote
);
live_action_fns!(
    /// `vault.raft-remove-peer`.
    RemovePeer: apply remove_peer
);

/// The active node of the raft cluster `vault` belongs to, as a client.
async fn active_client(live: &Live, vault: &str) -> Result<Vault, ActionError> {
    let (target, pod) = live.raft_leader(vault).await?;
    live.vault_on(&target, &pod).await
}

/// The peer running in `pod` of `vault`, among `servers`; an error when two could be meant
/// (cluster addresses that are the same DNS name in both clusters).
async fn peer_of(
    live: &Live,
    vault: &str,
    pod: &str,
    servers: &[RaftServer],
) -> Result<Option<RaftServer>, ActionError> {
    let ip = live.pod_ip(vault, pod).await?;
    let matching: Vec<&RaftServer> = servers
        .iter()
        .filter(|s| s.runs_in(pod, ip.as_deref()))
        .collect();
    match matching.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).clone())),
        many => Err(ActionError::permanent(format!(
            "pod `{pod}` of `{vault}` could be any of the raft peers {}: the two clusters' nodes must advertise distinct cluster addresses (for example `https://$(POD_IP):8201`) and node ids",
            many.iter()
                .map(|s| format!("{} ({})", s.node_id, s.address))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Why a Vault whose configuration has `retry_join` cannot join another's raft cluster under
/// the plan's control (once one pod has joined, the others would join on their own and
/// autopilot would promote them when it likes); `None` without one.
async fn retry_join_problem(live: &Live, vault: &str) -> Result<Option<String>, ActionError> {
    let target = live.vault_target(vault)?;
    let Some(configmap) = live
        .cluster(vault)?
        .get("ConfigMap", target.configmap)
        .await?
    else {
        return Ok(None);
    };
    let text = configmap["data"][target.config_key].as_str().unwrap_or("");
    let joins = text.lines().any(|line| {
        let line = line.trim_start();
        line.starts_with("retry_join") && !line.starts_with('#')
    });
    Ok(joins.then(|| format!(
        "the configuration of `{vault}` (ConfigMap {}, key {}) has `retry_join`: once one pod joins, the others would join on their own and autopilot would promote them, so the plan could not keep the voter count odd; remove the `retry_join` blocks and restart the pods before the live move",
        target.configmap, target.config_key
    )))
}

/// Refuse a Vault whose configuration has `retry_join`.
async fn refuse_retry_join(live: &Live, vault: &str) -> Result<(), ActionError> {
    match retry_join_problem(live, vault).await? {
        Some(problem) => Err(ActionError::permanent(problem)),
        None => Ok(()),
    }
}

/// `preflight.raft-join`: what the join needs, read only: no `retry_join`, every pod answering
/// uninitialised, none that the joined cluster's peers could be taken for.
async fn preflight(live: &Live, run: &StepRun, _: &Effects) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let input: inputs::PreflightRaftJoinInput = typed(run)?;
    let token = live.secret(run, "token")?;
    let active = active_client(live, &input.to).await?;
    let servers = active.raft_configuration(&token).await?;
    let mut problems: Vec<String> = retry_join_problem(live, on).await?.into_iter().collect();
    for pod in live.vault_pods(on).await? {
        let client = live.vault_on(on, &pod).await?;
        match client.seal_status().await {
            Ok(status) if status.initialized => problems.push(format!(
                "pod `{pod}` is initialised: a joining node must be empty (deploy the new Vault without initialising it, or wipe its data volume)"
            )),
            Ok(_) => {}
            Err(error) => problems.push(format!("pod `{pod}` does not answer: {error}")),
        }
        if let Some(peer) = peer_of(live, on, &pod, &servers).await? {
            problems.push(format!(
                "pod `{pod}` could be taken for the peer {} ({}) of `{}`: give the new pods cluster addresses and node ids of their own (for example `VAULT_CLUSTER_ADDR=https://$(POD_IP):8201`)",
                peer.node_id, peer.address, input.to
            ));
        }
    }
    problems.extend(unreachable_peers(live, on, &input.to, &servers).await?);
    let leader_address = active.leader().await?.leader_address;
    let leader_ca_cert = input
        .leader_ca_cert
        .as_deref()
        .filter(|pem| !pem.is_empty());
    problems.extend(tls_problem(&active, &input.to, &leader_address, leader_ca_cert).await);
    if !problems.is_empty() {
        return Err(ActionError::permanent(format!(
            "the pods of `{on}` cannot join the raft cluster of `{}`:\n  {}",
            input.to,
            problems.join("\n  ")
        )));
    }
    let mut outputs = Outputs::new();
    outputs.insert("leader_api_addr", json!(leader_address));
    Ok(outputs)
}

/// When the new pods join at an `https` address: the API certificate of the active node they
/// join must be valid for that address's host, which a joining node checks, and, when the join
/// is given the CA (`leader_ca_cert`), chain to it. Without a CA the chain is checked by the
/// pods' own roots, which planx cannot see: it reads only the names. Through the connection
/// planx already has to the node. `None` for `http`, or when the certificate passes.
async fn tls_problem(
    active: &Vault,
    to: &str,
    leader_address: &str,
    leader_ca_cert: Option<&str>,
) -> Option<String> {
    let url = reqwest::Url::parse(leader_address).ok()?;
    if url.scheme() != "https" {
        return None;
    }
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let reached = reqwest::Url::parse(active.address()).ok()?;
    let address = reached
        .socket_addrs(|| Some(8200))
        .ok()?
        .into_iter()
        .next()?;
    let checked_host = host.clone();
    let ca = leader_ca_cert.map(str::to_owned);
    let answer = tokio::task::spawn_blocking(move || {
        crate::adapters::tls_names::certificate_is_valid_for(address, &checked_host, ca.as_deref())
    })
    .await
    .ok()?;
    answer.err().map(|refusal| match refusal {
        CertificateRefusal::UnusableCa(why) => format!(
            "the `leader_ca_cert` given (the live plans' `old_vault_ca_cert`) cannot be used: {why}; give the PEM of the CA that issued the API certificate of `{to}`"
        ),
        CertificateRefusal::Chain(why) => format!(
            "the API certificate of `{to}`'s active node ({leader_address}) does not chain to the `leader_ca_cert` given, so the joining pods would refuse it: {why}; give the PEM of the CA that issued it (the live plans' `old_vault_ca_cert`)"
        ),
        CertificateRefusal::Names(why) | CertificateRefusal::Unread(why) => format!(
            "the API certificate of `{to}`'s active node is not valid for `{host}`, the name the new pods join at ({leader_address}): {why}; reissue it with that name, or give the join a `leader_api_addr` it names"
        ),
    })
}

/// From inside each running pod of `vault` (its Vault container), the API and cluster ports of
/// every peer of the raft cluster it will join, probed with busybox's `nc -z -w 3` (what the
/// Vault and OpenBao images ship); one line per path that does not connect.
async fn unreachable_peers(
    live: &Live,
    vault: &str,
    to: &str,
    servers: &[RaftServer],
) -> Result<Vec<String>, ActionError> {
    let target = live.vault_target(vault)?;
    let api_port = live.vault_target(to)?.port;
    let cluster = live.cluster(vault)?;
    let mut paths = Vec::new();
    for server in servers {
        let Some((host, cluster_port)) = server.address.rsplit_once(':') else {
            continue;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        paths.push((
            host.to_string(),
            api_port.to_string(),
            "API",
            &server.node_id,
        ));
        paths.push((
            host.to_string(),
            cluster_port.to_string(),
            "cluster",
            &server.node_id,
        ));
    }
    let mut problems = Vec::new();
    for pod in live.vault_pods(vault).await? {
        for (host, port, what, node) in &paths {
            let command: Vec<String> = ["nc", "-z", "-w", "3", host, port]
                .iter()
                .map(|word| word.to_string())
                .collect();
            let executed = cluster
                .exec(&pod, target.container, &command, Duration::from_secs(15))
                .await?;
            match executed.code {
                Some(0) => {}
                Some(126 | 127) => {
                    problems.push(format!(
                        "pod `{pod}` cannot run `nc -z` ({}): probe {host}:{port} from the pod by hand",
                        executed.stderr.trim()
                    ));
                    return Ok(problems);
                }
                _ => problems.push(format!(
                    "pod `{pod}` does not reach the {what} port of `{to}`'s peer {node} at {host}:{port}: {}",
                    executed.stderr.trim()
                )),
            }
        }
    }
    Ok(problems)
}

/// `vault.raft-join`: every pod, one at a time, as a non-voter; each waited for until it has
/// unsealed (through its seal, with the joined cluster's key), is listed in the raft
/// configuration and has applied what the active node had committed when it joined.
async fn join(live: &Live, run: &StepRun, effects: &Effects) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let input: inputs::RaftJoinInput = typed(run)?;
    let token = live.secret(run, "token")?;
    refuse_retry_join(live, on).await?;
    let active = active_client(live, &input.to).await?;
    let leader_api_addr = match &input.leader_api_addr {
        Some(address) => address.clone(),
        None => active.leader().await?.leader_address,
    };
    // A module passes an empty value when the plan gives no CA.
    let leader_ca_cert = input
        .leader_ca_cert
        .as_deref()
        .filter(|pem| !pem.trim().is_empty());
    let mut nodes = Vec::new();
    for pod in live.vault_pods(on).await? {
        let client = live.vault_on(on, &pod).await?;
        let before = active.raft_configuration(&token).await?;
        let answered = std::sync::Mutex::new(None);
        let (client_ref, answered_ref) = (&client, &answered);
        live.wait_for(&format!("pod `{pod}` of `{on}` to answer"), move || {
            Box::pin(async move {
                let status = client_ref.seal_status().await;
                let ok = status.is_ok();
                *answered_ref.lock().expect("seal status") = status.ok();
                ok
            })
        })
        .await?;
        let status = answered.into_inner().expect("seal status").ok_or_else(|| {
            ActionError::permanent(format!("pod `{pod}` of `{on}` did not answer"))
        })?;
        if status.initialized {
            let Some(peer) = peer_of(live, on, &pod, &before).await? else {
                return Err(ActionError::permanent(format!(
                    "pod `{pod}` of `{on}` is initialised but no peer of `{}`'s raft cluster: a joining node must be empty (uninitialised, no raft data)",
                    input.to
                )));
            };
            nodes.push(peer.node_id);
            continue;
        }
        effects
            .perform(
                &format!(
                    "join pod {pod} of {on} to the raft cluster of {} at {leader_api_addr} as a non-voter",
                    input.to
                ),
                async {
                    client
                        .raft_join(&leader_api_addr, true, leader_ca_cert)
                        .await
                        .map_err(|error| join_error(error, &leader_api_addr, leader_ca_cert))
                },
            )
            .await?;
        let committed = active.leader().await?.raft_committed_index;
        let known: Vec<String> = before.iter().map(|s| s.node_id.clone()).collect();
        let node = std::sync::Mutex::new(None::<String>);
        let (client, active, token, known, node_found) = (&client, &active, &token, &known, &node);
        let what = format!("pod `{pod}` of `{on}` to unseal and catch up with the raft cluster");
        live.wait_for(&what, move || {
            Box::pin(async move {
                let unsealed = client
                    .seal_status()
                    .await
                    .is_ok_and(|s| s.initialized && !s.sealed);
                let caught_up = client
                    .leader()
                    .await
                    .is_ok_and(|l| l.raft_applied_index >= committed);
                let new_peers: Vec<String> = active
                    .raft_configuration(token)
                    .await
                    .map(|servers| {
                        servers
                            .into_iter()
                            .map(|s| s.node_id)
                            .filter(|id| !known.contains(id))
                            .collect()
                    })
                    .unwrap_or_default();
                if let [one] = new_peers.as_slice() {
                    *node_found.lock().expect("joined node") = Some(one.clone());
                }
                unsealed && caught_up && new_peers.len() == 1
            })
        })
        .await?;
        let node = node.into_inner().expect("joined node");
        nodes.extend(node);
    }
    let mut outputs = Outputs::new();
    outputs.insert("nodes", json!(nodes));
    Ok(outputs)
}

/// A refused join, with what to do when the likely cause is a leader certificate the pod does
/// not trust: OpenBao answers only "failed to get raft challenge" and logs the x509 error.
fn join_error(
    error: VaultError,
    leader_api_addr: &str,
    leader_ca_cert: Option<&str>,
) -> ActionError {
    let mut refused = ActionError::from(error);
    if refused.message.contains("raft challenge")
        && leader_api_addr.starts_with("https://")
        && leader_ca_cert.is_none()
    {
        refused.message.push_str(&format!(
            "; if the pod's log says `certificate signed by unknown authority`, the API certificate at {leader_api_addr} comes from a CA the pod does not trust: give the join that CA's PEM as `leader_ca_cert` (the live plans' `old_vault_ca_cert` parameter)"
        ));
    }
    refused
}

/// Undo a `vault.raft-join`: every pod of the target that is a peer of the joined cluster is
/// removed from it (the pods keep their copy: stop and wipe them before joining again).
async fn leave(live: &Live, step: &CompiledStep) -> Result<Vec<String>, ActionError> {
    let to = step
        .with
        .get("to")
        .and_then(Resolved::as_str)
        .ok_or_else(|| ActionError::permanent(format!("`{}` names no Vault joined", step.id)))?;
    let token: Secret = match step.with.get("token") {
        Some(Resolved::Secret { param, reference }) if !reference.starts_with("step:") => {
            live.secrets.get(param).cloned()
        }
        _ => None,
    }
    .ok_or_else(|| {
        ActionError::permanent(format!(
            "`{}` has no token of its own to remove the joined nodes with (give it a secret parameter, not a step's token); remove them by hand with `bao operator raft remove-peer`",
            step.id
        ))
    })?;
    let active = active_client(live, to).await?;
    let servers = active.raft_configuration(&token).await?;
    let mut done = Vec::new();
    for pod in live.vault_pods(&step.on).await? {
        let Some(peer) = peer_of(live, &step.on, &pod, &servers).await? else {
            continue;
        };
        if peer.leader {
            return Err(ActionError::permanent(format!(
                "pod `{pod}` of `{}` is the raft leader of `{to}`'s cluster now; step it down before the rollback removes it",
                step.on
            )));
        }
        active
            .raft_membership(RaftChange::RemovePeer, &token, &peer.node_id)
            .await?;
        done.push(format!(
            "removed pod {pod} of {} (node {}) from the raft cluster of {to}; the pod keeps a copy: stop it and wipe its data before joining again",
            step.on, peer.node_id
        ));
    }
    Ok(done)
}

/// Wait until the raft configuration, read on the active node, says `holds` of the peer in
/// `pod` of `vault` (`None`: not a peer).
async fn wait_for_peer(
    live: &Live,
    vault: &str,
    pod: &str,
    token: &Secret,
    what: &str,
    holds: fn(Option<&RaftServer>) -> bool,
) -> Result<(), ActionError> {
    let ip = live.pod_ip(vault, pod).await?;
    let (ip, token) = (&ip, token);
    live.wait_for(what, move || {
        Box::pin(async move {
            let Ok(active) = active_client(live, vault).await else {
                return false;
            };
            let Ok(servers) = active.raft_configuration(token).await else {
                return false;
            };
            holds(servers.iter().find(|s| s.runs_in(pod, ip.as_deref())))
        })
    })
    .await
}

/// `vault.raft-promote`: the non-voter in `pod` made a voter (a node already voting is left as
/// it is), then waited for until the configuration shows it voting.
async fn promote(live: &Live, run: &StepRun, effects: &Effects) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let input: inputs::RaftPromoteInput = typed(run)?;
    let token = live.secret(run, "token")?;
    let active = active_client(live, on).await?;
    let servers = active.raft_configuration(&token).await?;
    let candidates: Vec<RaftServer> = servers.iter().filter(|s| !s.voter).cloned().collect();
    let peer = match peer_of(live, on, &input.pod, &candidates).await? {
        Some(peer) => peer,
        None if peer_of(live, on, &input.pod, &servers).await?.is_some() => {
            return Ok(Outputs::new());
        }
        None => {
            return Err(ActionError::permanent(format!(
                "pod `{}` of `{on}` is no peer of its raft cluster: join it first (`vault.raft-join`)",
                input.pod
            )));
        }
    };
    effects
        .perform(
            &format!(
                "promote pod {} of {on} (node {}) to voter",
                input.pod, peer.node_id
            ),
            async {
                active
                    .raft_membership(RaftChange::Promote, &token, &peer.node_id)
                    .await
                    .map_err(ActionError::from)
            },
        )
        .await?;
    wait_for_peer(
        live,
        on,
        &input.pod,
        &token,
        &format!("pod `{}` of `{on}` to vote", input.pod),
        |peer| peer.is_some_and(|p| p.voter),
    )
    .await?;
    Ok(Outputs::new())
}

/// `vault.raft-remove-peer`: the node in `pod` taken out of the configuration, refused while it
/// is the leader; a pod that is no peer any more is done.
async fn remove_peer(
    live: &Live,
    run: &StepRun,
    effects: &Effects,
) -> Result<Outputs, ActionError> {
    let on = run.step.on.as_str();
    let input: inputs::RaftRemovePeerInput = typed(run)?;
    let token = live.secret(run, "token")?;
    let active = active_client(live, on).await?;
    let servers = active.raft_configuration(&token).await?;
    let Some(peer) = peer_of(live, on, &input.pod, &servers).await? else {
        return Ok(Outputs::new());
    };
    if peer.leader {
        return Err(ActionError::permanent(format!(
            "pod `{}` of `{on}` is the raft leader: step it down first (`vault.step-down`), so leadership moves to another voter",
            input.pod
        )));
    }
    effects
        .perform(
            &format!(
                "remove pod {} of {on} (node {}) from the raft cluster",
                input.pod, peer.node_id
            ),
            async {
                active
                    .raft_membership(RaftChange::RemovePeer, &token, &peer.node_id)
                    .await
                    .map_err(ActionError::from)
            },
        )
        .await?;
    wait_for_peer(
        live,
        on,
        &input.pod,
        &token,
        &format!("pod `{}` of `{on}` to leave the raft cluster", input.pod),
        |peer| peer.is_none(),
    )
    .await?;
    Ok(Outputs::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> VaultError {
        VaultError::Status {
            call: "raft join",
            address: "http://127.0.0.1:8200".into(),
            status: 500,
            message: "failed to join raft cluster: failed to get raft challenge".into(),
        }
    }

    #[test]
    fn a_refused_https_join_without_a_ca_says_to_give_the_ca() {
        let hinted = join_error(refused(), "https://vault-0.vault-internal:8200", None);
        assert!(
            hinted
                .message
                .starts_with("raft join on http://127.0.0.1:8200: HTTP 500")
                && hinted
                    .message
                    .contains("give the join that CA's PEM as `leader_ca_cert`"),
            "{}",
            hinted.message
        );
        assert!(hinted.transient, "a 500 stays worth retrying");
        for (address, ca) in [
            ("http://vault-0.vault-internal:8200", None),
            ("https://vault-0.vault-internal:8200", Some("PEM")),
        ] {
            let plain = join_error(refused(), address, ca);
            assert!(
                !plain.message.contains("leader_ca_cert"),
                "{}",
                plain.message
            );
        }
    }
}
