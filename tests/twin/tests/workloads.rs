//! Workloads without Vault: the StatefulSet controller and kubelet with `sleep infinity`
//! containers (pods, addresses, recreation, scale, faults, no process left behind).

mod common;

use std::time::Duration;

use common::{eventually, process_alive};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;
use twin::{Twin, TwinOptions};

fn idle_statefulset(name: &str, replicas: i32) -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": format!("{name}-internal"),
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "OnDelete"},
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "main",
                    "image": "busybox",
                    "command": ["/bin/sh", "-ec"],
                    "args": ["sleep infinity"],
                }]},
            },
        },
    }))
    .unwrap()
}

fn is_running_and_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
}

async fn running_pod(pods: &Api<Pod>, name: &str, not_uid: Option<&str>) -> Pod {
    eventually(
        &format!("pod {name} Running and Ready"),
        Duration::from_secs(15),
        || async {
            let pod = pods.get(name).await.map_err(|e| e.to_string())?;
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if is_running_and_ready(&pod) && Some(uid.as_str()) != not_uid {
                Ok(pod)
            } else {
                Err(format!("{:?}", pod.status))
            }
        },
    )
    .await
}

#[tokio::test]
async fn sleep_infinity_pods_run_without_vault_and_come_back_after_delete() {
    let twin = Twin::start_with(TwinOptions::new(&["old"]).with_workloads()).unwrap();
    let client = common::client(&twin, "old").await;
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client);
    sets.create(&PostParams::default(), &idle_statefulset("idle", 2))
        .await
        .unwrap();

    let first = running_pod(&pods, "idle-0", None).await;
    let second = running_pod(&pods, "idle-1", None).await;
    let labels = first.metadata.labels.clone().unwrap();
    assert_eq!(labels["app"], "idle");
    assert_eq!(labels["statefulset.kubernetes.io/pod-name"], "idle-0");
    assert_eq!(labels["apps.kubernetes.io/pod-index"], "0");
    let owner = &first.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("StatefulSet", "idle")
    );
    let ip = first.status.as_ref().unwrap().pod_ip.clone().unwrap();
    assert_ne!(Some(ip.clone()), second.status.as_ref().unwrap().pod_ip);
    assert!(ip.starts_with("127."), "{ip}");

    let cluster = twin.cluster("old");
    let runtime = cluster.pod_runtime("default", "idle-0").unwrap();
    assert!(!runtime.runs_vault);
    let pid = runtime.pid.unwrap();
    assert!(process_alive(pid));
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline, "sleep\0infinity\0");
    let vault_port: std::net::SocketAddr = format!("{ip}:8200").parse().unwrap();
    assert!(
        !common::listening(vault_port),
        "no Vault listens in a sleep pod"
    );

    // A stale uid precondition is refused; the right one deletes; the pod comes back.
    let old_uid = first.metadata.uid.clone().unwrap();
    let stale = pods
        .delete(
            "idle-0",
            &DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some("not-the-uid".to_string()),
                    resource_version: None,
                }),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(common::status_of(stale).code, 409);
    pods.delete(
        "idle-0",
        &DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(old_uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let again = running_pod(&pods, "idle-0", Some(&old_uid)).await;
    assert_ne!(again.metadata.uid.as_deref(), Some(old_uid.as_str()));
    assert_eq!(
        again.status.unwrap().pod_ip.unwrap(),
        ip,
        "the address is stable"
    );
    assert!(!process_alive(pid), "the old process was stopped");

    // Scale down: the pod beyond the count goes, with its process.
    let second_pid = cluster
        .pod_runtime("default", "idle-1")
        .unwrap()
        .pid
        .unwrap();
    sets.patch(
        "idle",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    eventually(
        "idle-1 deleted and stopped",
        Duration::from_secs(15),
        || async {
            match pods.get_opt("idle-1").await.map_err(|e| e.to_string())? {
                None if !process_alive(second_pid)
                    && !twin.processes().iter().any(|(pid, _)| *pid == second_pid) =>
                {
                    Ok(())
                }
                other => Err(format!("{:?}", other.map(|p| p.status))),
            }
        },
    )
    .await;
    let status = eventually(
        "status counts one ready pod",
        Duration::from_secs(5),
        || async {
            let set = sets.get("idle").await.map_err(|e| e.to_string())?;
            let status = set.status.clone().unwrap_or_default();
            if status.replicas == 1 && status.ready_replicas == Some(1) {
                Ok(status)
            } else {
                Err(format!("{status:?}"))
            }
        },
    )
    .await;
    assert_eq!(status.updated_replicas, Some(1));

    let pids: Vec<u32> = twin.processes().iter().map(|(pid, _)| *pid).collect();
    assert_eq!(pids.len(), 1, "{:?}", twin.processes());
    drop(twin);
    for pid in pids {
        assert!(!process_alive(pid), "process {pid} outlived the twin");
    }
}

#[tokio::test]
async fn a_failing_container_restarts_with_backoff_and_deleting_the_set_removes_its_pods() {
    let twin = Twin::start_with(TwinOptions::new(&["old"]).with_workloads()).unwrap();
    let cluster = twin.cluster("old");
    cluster.fail_pod_start("default", "broken-0");
    let client = common::client(&twin, "old").await;
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client);
    sets.create(&PostParams::default(), &idle_statefulset("broken", 1))
        .await
        .unwrap();
    let crashed = eventually(
        "broken-0 restarted after failing",
        Duration::from_secs(15),
        || async {
            let pod = pods.get("broken-0").await.map_err(|e| e.to_string())?;
            let container = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first().cloned())
                .ok_or("no container status")?;
            if container.restart_count >= 1 {
                Ok((pod, container))
            } else {
                Err(format!("{container:?}"))
            }
        },
    )
    .await;
    let (pod, container) = crashed;
    assert!(!is_running_and_ready(&pod));
    let last = container.last_state.unwrap().terminated.unwrap();
    assert_eq!(last.exit_code, 1);
    let log =
        std::fs::read_to_string(cluster.pod_runtime("default", "broken-0").unwrap().log).unwrap();
    assert!(log.contains("injected fault"), "{log}");

    cluster.clear_pod_fault("default", "broken-0", twin::PodFault::FailStart);
    running_pod(&pods, "broken-0", None).await;

    sets.delete("broken", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "the pods of a deleted set go",
        Duration::from_secs(15),
        || async {
            let left = pods
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            if left.items.is_empty() && twin.processes().is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} pods, processes {:?}",
                    left.items.len(),
                    twin.processes()
                ))
            }
        },
    )
    .await;
}
