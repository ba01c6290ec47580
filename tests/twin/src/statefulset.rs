//! The StatefulSet controller of one cluster, in-process against the store: pods `<name>-0..N-1`
//! created together (podManagementPolicy Parallel) from the current template; template changes
//! never touch running pods (updateStrategy OnDelete); a deleted pod stays `Terminating` until
//! its process has stopped (SIGTERM, SIGKILL after its grace period), is then removed, and
//! recreated with a new uid; pods beyond `replicas` and pods of a deleted StatefulSet are
//! deleted; the StatefulSet's status counts its pods. Each pod incarnation runs in a kubelet
//! task (`kubelet::run_pod`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::catalog::{self, ResourceType};
use crate::events;
use crate::kubelet::{self, PodKey};
use crate::node::Node;
use crate::store::{Preconditions, UpdateMode, WriteOptions};

fn pods() -> &'static ResourceType {
    catalog::find("", "v1", "pods").expect("pods are in the catalogue")
}

fn statefulsets() -> &'static ResourceType {
    catalog::find("apps", "v1", "statefulsets").expect("statefulsets are in the catalogue")
}

/// One running kubelet task.
struct Supervisor {
    key: PodKey,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Runs the controller until `shutdown` turns true, then stops every pod's process and waits.
pub async fn run(node: Arc<Node>, mut shutdown: watch::Receiver<bool>) {
    let mut changes = node.store.subscribe();
    let mut supervisors: Vec<Supervisor> = Vec::new();
    loop {
        reconcile(&node, &mut supervisors);
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    for supervisor in &supervisors {
        supervisor.stop.send_replace(true);
    }
    for supervisor in supervisors {
        let _ = supervisor.task.await;
    }
}

/// FNV-1a of the template, as a short revision name.
fn revision(statefulset: &Value) -> String {
    let name = statefulset
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let template = statefulset
        .pointer("/spec/template")
        .map(Value::to_string)
        .unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in template.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{name}-{:010x}", hash & 0xff_ffff_ffff)
}

/// A new pod for `ordinal` of `statefulset` from its current template.
pub fn pod_from_template(statefulset: &Value, ordinal: u32) -> Value {
    let name = statefulset
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let pod_name = format!("{name}-{ordinal}");
    let template = statefulset
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(json!({}));
    let mut labels = template
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    labels.insert(
        "statefulset.kubernetes.io/pod-name".to_string(),
        json!(pod_name),
    );
    labels.insert(
        "apps.kubernetes.io/pod-index".to_string(),
        json!(ordinal.to_string()),
    );
    labels.insert(
        "controller-revision-hash".to_string(),
        json!(revision(statefulset)),
    );
    let mut metadata = Map::new();
    metadata.insert("name".to_string(), json!(pod_name));
    metadata.insert("labels".to_string(), Value::Object(labels));
    if let Some(annotations) = template.pointer("/metadata/annotations") {
        metadata.insert("annotations".to_string(), annotations.clone());
    }
    metadata.insert(
        "ownerReferences".to_string(),
        json!([{
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "name": name,
            "uid": statefulset.pointer("/metadata/uid").cloned().unwrap_or(json!("")),
            "controller": true,
            "blockOwnerDeletion": true,
        }]),
    );
    let mut spec = template
        .get("spec")
        .filter(|spec| spec.is_object())
        .cloned()
        .unwrap_or(json!({}));
    spec["hostname"] = json!(pod_name);
    if let Some(service) = statefulset.pointer("/spec/serviceName") {
        spec["subdomain"] = service.clone();
    }
    if !spec["volumes"].is_array() {
        spec["volumes"] = json!([]);
    }
    for claim in statefulset
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(claim_name) = claim.pointer("/metadata/name").and_then(Value::as_str) else {
            continue;
        };
        let volumes = spec["volumes"]
            .as_array_mut()
            .expect("set to an array above");
        if !volumes.iter().any(|v| v["name"] == claim_name) {
            volumes.push(json!({
                "name": claim_name,
                "persistentVolumeClaim": {"claimName": format!("{claim_name}-{pod_name}")},
            }));
        }
    }
    json!({"metadata": Value::Object(metadata), "spec": spec})
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn reconcile(node: &Arc<Node>, supervisors: &mut Vec<Supervisor>) {
    let store = &node.store;
    let (sets, _) = store.list(statefulsets(), None, &|_| true);
    let (all_pods, _) = store.list(pods(), None, &|_| true);
    supervisors.retain(|supervisor| !supervisor.task.is_finished());
    // Stop the kubelet of every pod incarnation that is gone.
    for supervisor in supervisors.iter() {
        let alive = all_pods.iter().any(|pod| {
            PodKey::of(pod).as_ref() == Some(&supervisor.key)
                && pod.pointer("/metadata/deletionTimestamp").is_none()
        });
        if !alive {
            supervisor.stop.send_replace(true);
        }
    }
    let busy = |supervisors: &Vec<Supervisor>, namespace: &str, name: &str| {
        supervisors
            .iter()
            .any(|s| s.key.namespace == namespace && s.key.name == name)
    };
    for pod in &all_pods {
        let Some(key) = PodKey::of(pod) else {
            continue;
        };
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            // Terminating: removed once its kubelet has stopped the container.
            if !busy(supervisors, &key.namespace, &key.name) {
                finish_deletion(node, &key);
            }
            continue;
        }
        let Some((owner, owner_uid)) = kubelet::owning_statefulset(pod) else {
            continue;
        };
        let owner_alive = sets.iter().any(|set| {
            text(set, "/metadata/namespace") == key.namespace
                && text(set, "/metadata/name") == owner
                && text(set, "/metadata/uid") == owner_uid
        });
        if !owner_alive {
            // Garbage collection of the pods of a deleted StatefulSet.
            let _ = store.delete(
                pods(),
                &key.namespace,
                &key.name,
                &Preconditions {
                    uid: Some(key.uid.clone()),
                    ..Preconditions::default()
                },
                &WriteOptions::default(),
            );
            continue;
        }
        if busy(supervisors, &key.namespace, &key.name) {
            continue;
        }
        let (stop, stop_receiver) = watch::channel(false);
        let task = tokio::spawn(kubelet::run_pod(node.clone(), pod.clone(), stop_receiver));
        supervisors.push(Supervisor { key, stop, task });
    }
    for set in &sets {
        reconcile_statefulset(node, set, &all_pods, supervisors);
    }
}

/// Remove a Terminating pod whose containers have stopped (what the kubelet's final delete with
/// no grace period does); a pod that still has finalizers waits for them.
fn finish_deletion(node: &Arc<Node>, key: &PodKey) {
    let _ = node.store.delete(
        pods(),
        &key.namespace,
        &key.name,
        &Preconditions {
            uid: Some(key.uid.clone()),
            resource_version: None,
            grace_period_seconds: Some(0),
        },
        &WriteOptions::default(),
    );
}

fn reconcile_statefulset(
    node: &Arc<Node>,
    set: &Value,
    all_pods: &[Value],
    supervisors: &[Supervisor],
) {
    let store = &node.store;
    let namespace = text(set, "/metadata/namespace");
    let name = text(set, "/metadata/name");
    let uid = text(set, "/metadata/uid");
    if set.pointer("/metadata/deletionTimestamp").is_some() {
        return;
    }
    let replicas = set
        .pointer("/spec/replicas")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .min(u64::from(crate::addresses::MAX_ORDINALS)) as u32;
    let owned: Vec<&Value> = all_pods
        .iter()
        .filter(|pod| {
            text(pod, "/metadata/namespace") == namespace
                && kubelet::owning_statefulset(pod).is_some_and(|(_, owner)| owner == uid)
        })
        .collect();
    for ordinal in 0..replicas {
        let pod_name = format!("{name}-{ordinal}");
        let exists = all_pods.iter().any(|pod| {
            text(pod, "/metadata/namespace") == namespace && text(pod, "/metadata/name") == pod_name
        });
        let stopping = supervisors
            .iter()
            .any(|s| s.key.namespace == namespace && s.key.name == pod_name);
        if !exists && !stopping {
            let created = store.create(
                pods(),
                namespace,
                pod_from_template(set, ordinal),
                &WriteOptions::default(),
            );
            let (kind, reason, outcome) = match &created {
                Ok(_) => (
                    events::Kind::Normal,
                    "SuccessfulCreate",
                    "successful".to_string(),
                ),
                Err(error) => (
                    events::Kind::Warning,
                    "FailedCreate",
                    format!("failed error: {}", error.message),
                ),
            };
            events::record(
                store,
                set,
                kind,
                reason,
                &format!("create Pod {pod_name} in StatefulSet {name} {outcome}"),
                "statefulset-controller",
            );
        }
    }
    for pod in &owned {
        let beyond = kubelet::ordinal_of(name, text(pod, "/metadata/name"))
            .is_none_or(|ordinal| ordinal >= replicas);
        if beyond {
            let pod_name = text(pod, "/metadata/name");
            if store
                .delete(
                    pods(),
                    namespace,
                    pod_name,
                    &Preconditions::default(),
                    &WriteOptions::default(),
                )
                .is_ok()
            {
                events::record(
                    store,
                    set,
                    events::Kind::Normal,
                    "SuccessfulDelete",
                    &format!("delete Pod {pod_name} in StatefulSet {name} successful"),
                    "statefulset-controller",
                );
            }
        }
    }
    let update_revision = revision(set);
    let count = owned.len();
    let ready = owned.iter().filter(|pod| is_ready(pod)).count();
    let updated = owned
        .iter()
        .filter(|pod| text(pod, "/metadata/labels/controller-revision-hash") == update_revision)
        .count();
    let current_revision = owned
        .iter()
        .map(|pod| text(pod, "/metadata/labels/controller-revision-hash"))
        .find(|revision| *revision != update_revision)
        .unwrap_or(&update_revision)
        .to_string();
    let status = json!({
        "observedGeneration": set.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
        "replicas": count,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "currentReplicas": if current_revision == update_revision { updated } else { count - updated },
        "updatedReplicas": updated,
        "currentRevision": current_revision,
        "updateRevision": update_revision,
        "collisionCount": 0,
    });
    if set.get("status") != Some(&status) {
        let _ = store.update(
            statefulsets(),
            namespace,
            name,
            UpdateMode::Status,
            &WriteOptions::default(),
            |current| {
                let current = current
                    .ok_or_else(|| crate::status::ApiError::not_found(statefulsets(), name))?;
                let mut next = current.clone();
                next["status"] = status.clone();
                Ok(next)
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_come_from_the_template_with_identity_labels_and_claims() {
        let set = json!({
            "metadata": {"name": "vault", "namespace": "vault", "uid": "u-1"},
            "spec": {
                "serviceName": "vault-internal",
                "template": {
                    "metadata": {"labels": {"app": "vault"}},
                    "spec": {"containers": [{"name": "vault"}], "volumes": [{"name": "config", "configMap": {"name": "vault-config"}}]},
                },
                "volumeClaimTemplates": [{"metadata": {"name": "data"}}],
            },
        });
        let pod = pod_from_template(&set, 2);
        assert_eq!(pod["metadata"]["name"], "vault-2");
        assert_eq!(pod["metadata"]["labels"]["app"], "vault");
        assert_eq!(
            pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
            "2"
        );
        assert_eq!(
            pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
            "vault-2"
        );
        assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(pod["spec"]["subdomain"], "vault-internal");
        assert_eq!(
            pod["spec"]["volumes"][1]["persistentVolumeClaim"]["claimName"],
            "data-vault-2"
        );
        assert_eq!(
            kubelet::owning_statefulset(&pod),
            Some(("vault".to_string(), "u-1".to_string()))
        );
        let mut changed = set.clone();
        changed["spec"]["template"]["metadata"]["labels"]["tier"] = json!("x");
        assert_ne!(revision(&set), revision(&changed));
        assert!(pod_from_template(&json!(null), 0).is_object());
    }
}
