//! The Kubernetes adapter over real HTTP against the twin's API server: objects as JSON with
//! conflicts surfaced, deletes with uid preconditions, the run's Lease keeping a second run out,
//! and a port-forward to one pod's port.

use std::time::Duration;

use kube::config::Kubeconfig;
use planx::adapters::cluster::{Cluster, ClusterError};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn connect(twin: &twin::Twin, context: &str) -> Cluster {
    let kubeconfig = Kubeconfig::read_from(twin.kubeconfig_path()).expect("kubeconfig");
    Cluster::connect(&kubeconfig, context, "default")
        .await
        .expect("connect")
}

fn configmap(name: &str, value: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": name, "namespace": "default" },
        "data": { "config.hcl": value },
    })
}

#[tokio::test]
async fn objects_round_trip_and_conflicts_surface() {
    let twin = twin::Twin::start(&["old", "new"]).expect("twin");
    let old = connect(&twin, "old").await;
    let new = connect(&twin, "new").await;
    assert_eq!(old.get("ConfigMap", "vault-config").await.unwrap(), None);
    let created = old
        .create(&configmap("vault-config", "ui = true"))
        .await
        .unwrap();
    assert_eq!(created["kind"], "ConfigMap");
    assert!(created["metadata"]["resourceVersion"].is_string());
    assert_eq!(
        new.get("ConfigMap", "vault-config").await.unwrap(),
        None,
        "two clusters, one kubeconfig"
    );

    // A replace carrying the read resourceVersion succeeds; a stale one is a conflict.
    let mut edited = created.clone();
    edited["data"]["config.hcl"] = json!("ui = false");
    let replaced = old.replace(&edited).await.unwrap();
    assert_eq!(replaced["data"]["config.hcl"], "ui = false");
    let error = old.replace(&edited).await.unwrap_err();
    assert!(matches!(error, ClusterError::Conflict { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "ConfigMap `vault-config` in `old` changed since it was read (resourceVersion conflict); re-plan"
    );

    // Delete with the wrong uid is refused; with the right one it goes.
    let error = old
        .delete(
            "ConfigMap",
            "vault-config",
            Some("not-the-uid"),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, ClusterError::Conflict { .. }), "{error}");
    let uid = replaced["metadata"]["uid"].as_str().unwrap().to_string();
    old.delete(
        "ConfigMap",
        "vault-config",
        Some(&uid),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(old.get("ConfigMap", "vault-config").await.unwrap(), None);
    old.delete("ConfigMap", "vault-config", None, Duration::from_secs(10))
        .await
        .expect("deleting what is gone is done");
}

#[tokio::test]
async fn the_lease_keeps_a_second_run_out() {
    let twin = twin::Twin::start(&["old"]).expect("twin");
    let cluster = connect(&twin, "old").await;
    cluster
        .acquire_lease("run-1", Duration::from_secs(300))
        .await
        .expect("first run takes it");
    cluster
        .acquire_lease("run-1", Duration::from_secs(300))
        .await
        .expect("the holder renews it");
    let error = cluster
        .acquire_lease("run-2", Duration::from_secs(300))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("another planx run (run-1, since "),
        "{error}"
    );
    cluster
        .release_lease("run-2")
        .await
        .expect("not the holder: nothing happens");
    assert!(
        cluster
            .get("Lease", planx::adapters::cluster::LEASE_NAME)
            .await
            .unwrap()
            .is_some()
    );
    cluster.release_lease("run-1").await.unwrap();
    cluster
        .acquire_lease("run-2", Duration::from_secs(1))
        .await
        .expect("free again");
    // A lease not renewed in time belongs to a run that stopped half-way: never taken over.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let error = cluster
        .acquire_lease("run-3", Duration::from_secs(60))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("(run-2, since ")
            && error.contains(
                "it is not running: resume it, roll it back, or release it with `planx unlock RUN`"
            ),
        "{error}"
    );
    let holder = cluster.lease_holder().await.unwrap().expect("held");
    assert_eq!((holder.holder.as_str(), holder.live), ("run-2", false));
    // Its own run takes it back, and renews it.
    cluster
        .acquire_lease("run-2", Duration::from_secs(60))
        .await
        .expect("the same run resumes");
    cluster.renew_lease("run-2").await.expect("renewed");
    assert!(cluster.lease_holder().await.unwrap().unwrap().live);
    let error = cluster.renew_lease("run-3").await.unwrap_err().to_string();
    assert!(error.contains("is held by run-2"), "{error}");
    // A run that stops (a gate, a failure) parks its lease: still its own, said not running at
    // once, though renewed moments ago; its resume takes it back as running.
    cluster
        .park_lease("run-3")
        .await
        .expect("not the holder: nothing happens");
    assert!(cluster.lease_holder().await.unwrap().unwrap().live);
    cluster.park_lease("run-2").await.expect("parked");
    let holder = cluster.lease_holder().await.unwrap().expect("still held");
    assert_eq!((holder.holder.as_str(), holder.live), ("run-2", false));
    let error = cluster
        .acquire_lease("run-3", Duration::from_secs(60))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("it is not running"), "{error}");
    cluster
        .acquire_lease("run-2", Duration::from_secs(60))
        .await
        .expect("the same run resumes");
    assert!(cluster.lease_holder().await.unwrap().unwrap().live);
}

#[tokio::test]
async fn a_port_forward_reaches_the_pods_port() {
    let twin = twin::Twin::start(&["old"]).expect("twin");
    let cluster = connect(&twin, "old").await;
    // A TCP echo server stands in for the pod's process at its address.
    let address: std::net::IpAddr = "127.0.55.1".parse().unwrap();
    let listener = tokio::net::TcpListener::bind((address, 8200))
        .await
        .expect("echo server");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 64];
                while let Ok(read) = socket.read(&mut buffer).await {
                    if read == 0 || socket.write_all(&buffer[..read]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    cluster
        .create(&json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "vault-0", "namespace": "default" },
            "spec": { "containers": [{ "name": "vault", "image": "openbao" }] },
        }))
        .await
        .unwrap();
    twin.cluster("old")
        .set_pod_address("default", "vault-0", address);
    let forward = cluster.port_forward("vault-0", 8200).await.unwrap();
    for message in ["hello", "again"] {
        let mut stream = tokio::net::TcpStream::connect(forward.local).await.unwrap();
        stream.write_all(message.as_bytes()).await.unwrap();
        let mut back = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut back))
            .await
            .expect("answer in time")
            .unwrap();
        assert_eq!(back, message.as_bytes());
    }
}

#[tokio::test]
async fn discovery_says_what_the_server_serves() {
    let twin = twin::Twin::start(&["old"]).expect("twin");
    let cluster = connect(&twin, "old").await;
    assert!(cluster.server_version().await.unwrap().starts_with("v1."));
    let wanted: Vec<String> = [
        "v1",
        "apps/v1",
        "networking.k8s.io/v1",
        "discovery.k8s.io/v1",
        "batch/v1",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(
        cluster.missing_api_versions(&wanted).await.unwrap(),
        ["batch/v1"]
    );
}
