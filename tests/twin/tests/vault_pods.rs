//! Vault pods as real OpenBao (`bao`) processes: lifecycle (delete, recreate, same volume,
//! raft rejoin), configuration changes taking effect on restart, the Vault labels following the
//! process, key-service and network faults. Each test brings up the small scenario it needs.

mod common;

use std::time::Duration;

use common::{eventually, process_alive};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use serde_json::Value;
use twin::{ClusterPlan, Init, Scenario, ScenarioOptions, VaultCluster};

async fn scenario(clusters: Vec<ClusterPlan>) -> Scenario {
    Scenario::start_async(ScenarioOptions::with_clusters(clusters))
        .await
        .unwrap_or_else(|why| panic!("the scenario did not come up: {why}"))
}

fn plan(name: &str, init: Init, replicas: u32) -> ClusterPlan {
    ClusterPlan {
        replicas,
        ..ClusterPlan::new(name, init)
    }
}

async fn vault_pods(scenario: &Scenario, cluster: &str) -> Api<Pod> {
    Api::namespaced(common::client(scenario.twin(), cluster).await, "vault")
}

fn label(pod: &Pod, name: &str) -> Option<String> {
    pod.metadata.labels.as_ref()?.get(name).cloned()
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn phase(pod: &Pod) -> Option<String> {
    pod.status.as_ref()?.phase.clone()
}

async fn delete_by_uid(pods: &Api<Pod>, name: &str) -> String {
    let pod = pods.get(name).await.unwrap();
    let uid = pod.metadata.uid.clone().unwrap();
    pods.delete(
        name,
        &DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    uid
}

/// Waits for pod `name` with a uid other than `old_uid` for which `check` holds.
async fn replaced_pod(
    pods: &Api<Pod>,
    name: &str,
    old_uid: &str,
    what: &str,
    check: impl Fn(&Pod) -> bool,
) -> Pod {
    eventually(what, Duration::from_secs(60), || async {
        let pod = pods.get_opt(name).await.map_err(|e| e.to_string())?;
        match pod {
            Some(pod) if pod.metadata.uid.as_deref() != Some(old_uid) && check(&pod) => Ok(pod),
            other => Err(format!(
                "{:?}",
                other.map(|p| (p.metadata.labels, p.status))
            )),
        }
    })
    .await
}

async fn vault_json(
    vault: &VaultCluster,
    ordinal: u32,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    vault
        .pod_endpoint(ordinal)
        .unwrap()
        .json(method, path, vault.root_token(), body.as_ref())
        .await
        .unwrap_or_else(|e| panic!("{method} {path} on pod {ordinal}: {e}"))
}

#[tokio::test]
async fn a_deleted_vault_pod_comes_back_with_its_volume_and_rejoins_raft() {
    let scenario = scenario(vec![plan("old", Init::Empty, 3)]).await;
    let vault = scenario.vault("old");
    let cluster = scenario.twin().cluster("old");
    let pods = vault_pods(&scenario, "old").await;
    let active = vault.active_pod().await.expect("an active pod");
    let follower = (active + 1) % 3;
    let name = format!("vault-{follower}");
    let before = cluster.pod_runtime("vault", &name).unwrap();
    let data = before
        .volumes
        .iter()
        .find(|(volume, _)| volume == "data")
        .map(|(_, dir)| dir.clone())
        .expect("a data volume");
    let node_id = std::fs::read_to_string(data.join("node-id")).expect("raft wrote its node id");
    let old_pid = before.pid.unwrap();

    let old_uid = delete_by_uid(&pods, &name).await;
    let pod = replaced_pod(
        &pods,
        &name,
        &old_uid,
        "the pod back, unsealed and Ready",
        |pod| {
            phase(pod).as_deref() == Some("Running")
                && ready(pod)
                && label(pod, "vault-sealed").as_deref() == Some("false")
        },
    )
    .await;
    assert!(!process_alive(old_pid), "the old bao process was stopped");
    let after = cluster.pod_runtime("vault", &name).unwrap();
    assert_eq!(after.uid, pod.metadata.uid.clone().unwrap());
    assert_ne!(after.pid, Some(old_pid));
    assert_eq!(after.volumes, before.volumes, "the same persistent volume");
    assert_eq!(
        std::fs::read_to_string(data.join("node-id")).unwrap(),
        node_id
    );
    assert_eq!(
        pod.status.as_ref().unwrap().pod_ip,
        Some(after.ip.unwrap().to_string())
    );

    // The restarted node is a raft voter again and follows the leader.
    let leader_ordinal = vault.active_pod().await.expect("an active pod");
    let (code, configuration) = vault_json(
        vault,
        leader_ordinal,
        "GET",
        "/v1/sys/storage/raft/configuration",
        None,
    )
    .await;
    assert_eq!(code, 200, "{configuration}");
    let servers = configuration["data"]["config"]["servers"]
        .as_array()
        .unwrap();
    assert_eq!(servers.len(), 3, "{configuration}");
    let rejoined = servers
        .iter()
        .find(|s| s["node_id"] == node_id.trim())
        .unwrap_or_else(|| panic!("node {node_id} in {configuration}"));
    assert_eq!(rejoined["voter"], true);
    let (_, leader) = vault_json(vault, follower, "GET", "/v1/sys/leader", None).await;
    assert_eq!(leader["ha_enabled"], true);
    assert!(
        !leader["leader_address"].as_str().unwrap_or("").is_empty(),
        "{leader}"
    );

    let pods_now = pods.list(&ListParams::default()).await.unwrap();
    let active_count = pods_now
        .items
        .iter()
        .filter(|p| label(p, "vault-active").as_deref() == Some("true"))
        .count();
    assert_eq!(active_count, 1);

    let pids: Vec<u32> = scenario
        .twin()
        .processes()
        .iter()
        .map(|(pid, _)| *pid)
        .collect();
    assert_eq!(pids.len(), 4, "3 bao pods and a key service");
    drop(scenario);
    for pid in pids {
        assert!(!process_alive(pid), "process {pid} outlived the scenario");
    }
}

#[tokio::test]
async fn a_configmap_change_is_in_effect_after_the_pod_restarts() {
    let scenario = scenario(vec![plan("old", Init::Empty, 1)]).await;
    let cluster = scenario.twin().cluster("old");
    let client = common::client(scenario.twin(), "old").await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client, "vault");
    let pods = vault_pods(&scenario, "old").await;
    let before = cluster.pod_runtime("vault", "vault-0").unwrap();
    let first_config = std::fs::read_to_string(before.config.as_ref().unwrap()).unwrap();
    assert!(!first_config.contains("log_level"));

    let mut configmap = configmaps.get("vault-config").await.unwrap();
    let data = configmap.data.as_mut().unwrap();
    let text = data["extraconfig-from-values.hcl"].clone();
    data.insert(
        "extraconfig-from-values.hcl".to_string(),
        format!("log_level = \"debug\"\n{text}"),
    );
    configmaps
        .replace("vault-config", &PostParams::default(), &configmap)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let unchanged = std::fs::read_to_string(before.config.as_ref().unwrap()).unwrap();
    assert_eq!(
        unchanged, first_config,
        "a running pod keeps its configuration"
    );

    let old_uid = delete_by_uid(&pods, "vault-0").await;
    replaced_pod(
        &pods,
        "vault-0",
        &old_uid,
        "vault-0 back and unsealed",
        |pod| ready(pod) && label(pod, "vault-sealed").as_deref() == Some("false"),
    )
    .await;
    let after = cluster.pod_runtime("vault", "vault-0").unwrap();
    let config = std::fs::read_to_string(after.config.as_ref().unwrap()).unwrap();
    assert!(config.contains("log_level = \"debug\""), "{config}");
    let log = std::fs::read_to_string(&after.log).unwrap();
    let latest_start = log.rfind("=== twin: starting container").unwrap();
    assert!(
        log[latest_start..].contains("[DEBUG]"),
        "the new process logs at debug level:\n{}",
        &log[latest_start..]
    );
}

#[tokio::test]
async fn vault_labels_and_readiness_follow_the_process() {
    let scenario = scenario(vec![
        plan("old", Init::Empty, 3),
        plan("bare", Init::None, 1),
    ])
    .await;
    let old = scenario.vault("old");
    let pods = vault_pods(&scenario, "old").await;
    let listed = pods.list(&ListParams::default()).await.unwrap().items;
    let labels = |pod: &Pod| {
        (
            label(pod, "vault-active"),
            label(pod, "vault-sealed"),
            label(pod, "vault-initialized"),
        )
    };
    let active: Vec<&Pod> = listed
        .iter()
        .filter(|p| label(p, "vault-active").as_deref() == Some("true"))
        .collect();
    assert_eq!(active.len(), 1, "exactly one active pod");
    for pod in &listed {
        assert_eq!(labels(pod).1.as_deref(), Some("false"));
        assert_eq!(labels(pod).2.as_deref(), Some("true"));
        assert!(ready(pod));
    }

    // An uninitialised Vault: sealed, not initialised, running but NotReady.
    let bare = vault_pods(&scenario, "bare").await;
    let pod = eventually(
        "labels on the uninitialised pod",
        Duration::from_secs(10),
        || async {
            let pod = bare.get("vault-0").await.map_err(|e| e.to_string())?;
            if label(&pod, "vault-initialized").is_some() {
                Ok(pod)
            } else {
                Err(format!("{:?}", pod.metadata.labels))
            }
        },
    )
    .await;
    assert_eq!(
        labels(&pod),
        (
            Some("false".into()),
            Some("true".into()),
            Some("false".into())
        )
    );
    assert_eq!(phase(&pod).as_deref(), Some("Running"));
    assert!(!ready(&pod), "a sealed pod is NotReady");

    // Seal the active node by hand: its labels and readiness follow, another takes over.
    let sealed_name = active[0].metadata.name.clone().unwrap();
    let ordinal: u32 = sealed_name.trim_start_matches("vault-").parse().unwrap();
    let (code, answer) = vault_json(old, ordinal, "PUT", "/v1/sys/seal", None).await;
    assert_eq!(code, 204, "{answer}");
    let sealed = eventually(
        "the sealed pod relabelled",
        Duration::from_secs(10),
        || async {
            let pod = pods.get(&sealed_name).await.map_err(|e| e.to_string())?;
            if label(&pod, "vault-sealed").as_deref() == Some("true") && !ready(&pod) {
                Ok(pod)
            } else {
                Err(format!("{:?}", labels(&pod)))
            }
        },
    )
    .await;
    assert_eq!(label(&sealed, "vault-active").as_deref(), Some("false"));
    eventually("another pod active", Duration::from_secs(30), || async {
        let listed = pods
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items;
        let active: Vec<String> = listed
            .iter()
            .filter(|p| label(p, "vault-active").as_deref() == Some("true"))
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        if active.len() == 1 && active[0] != sealed_name {
            Ok(())
        } else {
            Err(format!("{active:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn a_pod_cannot_unseal_while_its_key_service_is_down() {
    let scenario = scenario(vec![plan("old", Init::Empty, 1)]).await;
    let vault = scenario.vault("old");
    let cluster = scenario.twin().cluster("old");
    let pods = vault_pods(&scenario, "old").await;
    assert!(vault.key_service().seal_token_works().await);

    vault.key_service().stop().await.unwrap();
    assert!(!vault.key_service().is_up().await);
    let old_uid = delete_by_uid(&pods, "vault-0").await;
    let failing = replaced_pod(
        &pods,
        "vault-0",
        &old_uid,
        "vault-0 failing to start",
        |pod| {
            pod.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .is_some_and(|c| c.restart_count >= 1)
        },
    )
    .await;
    assert!(!ready(&failing));
    let container = &failing
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    let exit = container
        .last_state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap();
    assert_ne!(exit.exit_code, 0);
    let log =
        std::fs::read_to_string(cluster.pod_runtime("vault", "vault-0").unwrap().log).unwrap();
    assert!(log.contains("Error configuring seal"), "{log}");

    // The key service comes back with the same key: the next restart unseals.
    vault.key_service().start().await.unwrap();
    assert!(vault.key_service().seal_token_works().await);
    eventually(
        "vault-0 unsealed after the key service is back",
        Duration::from_secs(40),
        || async {
            let pod = pods.get("vault-0").await.map_err(|e| e.to_string())?;
            if ready(&pod) && label(&pod, "vault-sealed").as_deref() == Some("false") {
                Ok(())
            } else {
                Err(format!("{:?}", pod.status.map(|s| s.container_statuses)))
            }
        },
    )
    .await;

    // Revoking the pods' access: the seal's token can no longer use the key.
    vault.key_service().revoke_access().await.unwrap();
    assert!(!vault.key_service().seal_token_works().await);
    vault.key_service().grant_access().await.unwrap();
    assert!(vault.key_service().seal_token_works().await);
}

#[tokio::test]
async fn a_pod_cut_off_the_network_is_not_reached_by_ingress_or_port_forward() {
    let scenario = scenario(vec![plan("old", Init::Empty, 1)]).await;
    let vault = scenario.vault("old");
    let cluster = scenario.twin().cluster("old");
    let ingress = vault.ingress_endpoint("http").unwrap();
    let (code, _) = ingress
        .json("GET", "/v1/sys/health", None, None)
        .await
        .unwrap();
    assert_eq!(code, 200);
    let pods = vault_pods(&scenario, "old").await;
    assert!(port_forward_health(&pods).await.is_ok());

    cluster.cut_pod_network("vault", "vault-0");
    let (code, answer) = ingress
        .json("GET", "/v1/sys/health", None, None)
        .await
        .unwrap();
    assert_eq!(code, 503, "{answer}");
    let refused = port_forward_health(&pods).await.unwrap_err();
    assert!(refused.contains("cut off"), "{refused}");

    cluster.clear_pod_fault("vault", "vault-0", twin::PodFault::NetworkCut);
    let (code, _) = ingress
        .json("GET", "/v1/sys/health", None, None)
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert!(port_forward_health(&pods).await.is_ok());
}

/// `GET /v1/sys/health` through a port-forward to vault-0: the status line, or the error.
async fn port_forward_health(pods: &Api<Pod>) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut forwarder = pods
        .portforward("vault-0", &[8200])
        .await
        .map_err(|e| e.to_string())?;
    let mut stream = forwarder.take_stream(8200).ok_or("no stream")?;
    let errors = forwarder.take_error(8200).ok_or("no error channel")?;
    stream
        .write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: vault\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    if answer.is_empty() {
        let error = tokio::time::timeout(Duration::from_secs(5), errors)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| format!("no answer ({read:?})"));
        return Err(error);
    }
    let text = String::from_utf8_lossy(&answer);
    Ok(text.lines().next().unwrap_or("").to_string())
}
