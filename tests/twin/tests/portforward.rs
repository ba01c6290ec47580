//! Port-forward over WebSocket (`v4.channel.k8s.io`) with kube-rs: bytes reach the pod's address
//! and come back; connection errors arrive on the error channel.

mod common;

use common::client;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use twin::Twin;

async fn pod(api: &Api<Pod>, name: &str, pod_ip: Option<&str>) {
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name},
        "spec": {"containers": [{"name": "vault", "image": "openbao"}]}}))
    .unwrap();
    api.create(&PostParams::default(), &pod).await.unwrap();
    if let Some(ip) = pod_ip {
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"podIP": ip, "phase": "Running"}})),
        )
        .await
        .unwrap();
    }
}

/// A one-connection echo server on loopback; returns its port and the task serving it.
async fn echo_server() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let (mut reader, mut writer) = socket.split();
        tokio::io::copy(&mut reader, &mut writer).await.unwrap();
    });
    (port, task)
}

#[tokio::test]
async fn bytes_reach_the_pod_ip_and_come_back() {
    let twin = Twin::start(&["old"]).unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client(&twin, "old").await);
    pod(&pods, "vault-0", Some("127.0.0.1")).await;
    let (port, echo) = echo_server().await;

    let mut forwarder = pods.portforward("vault-0", &[port]).await.unwrap();
    let mut stream = forwarder.take_stream(port).unwrap();
    stream.write_all(b"hello through the twin").await.unwrap();
    let mut answer = vec![0u8; 22];
    stream.read_exact(&mut answer).await.unwrap();
    assert_eq!(answer, b"hello through the twin");
    drop(stream);
    forwarder.join().await.unwrap();
    echo.await.unwrap();
}

#[tokio::test]
async fn a_configured_pod_address_overrides_the_pod_ip() {
    let twin = Twin::start(&["old"]).unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client(&twin, "old").await);
    pod(&pods, "vault-1", None).await;
    assert!(
        pods.portforward("vault-1", &[8200]).await.is_err(),
        "a pod without an IP cannot be reached"
    );

    twin.cluster("old")
        .set_pod_address("default", "vault-1", "127.0.0.1".parse().unwrap());
    let (port, echo) = echo_server().await;
    let mut forwarder = pods.portforward("vault-1", &[port]).await.unwrap();
    let mut stream = forwarder.take_stream(port).unwrap();
    stream.write_all(b"ping").await.unwrap();
    let mut answer = [0u8; 4];
    stream.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"ping");
    drop(stream);
    forwarder.join().await.unwrap();
    echo.await.unwrap();
}

#[tokio::test]
async fn a_closed_port_is_reported_on_the_error_channel() {
    let twin = Twin::start(&["old"]).unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client(&twin, "old").await);
    pod(&pods, "vault-2", Some("127.0.0.1")).await;
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut forwarder = pods.portforward("vault-2", &[closed_port]).await.unwrap();
    let error = forwarder
        .take_error(closed_port)
        .unwrap()
        .await
        .expect("an error message");
    assert!(
        error.contains(&format!("error forwarding port {closed_port}")),
        "{error}"
    );
    assert!(error.to_lowercase().contains("refused"), "{error}");
    let mut stream = forwarder.take_stream(closed_port).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "the data stream ends");
}
