//! Exec in pods (`pods/<name>/exec?command=...`) over WebSocket with the `v4.channel.k8s.io` /
//! `v5.channel.k8s.io` framing kube-rs and kubectl speak: stdout on channel 1, stderr on 2, and
//! the outcome as a `Status` on channel 3. The one command the twin runs is the reachability
//! probe a platform engineer runs in a pod, busybox's `nc -z -w SECONDS HOST PORT`: a TCP connect
//! from the pod's address, to IP addresses on loopback only (no name is resolved, no packet
//! leaves 127.0.0.0/8). A pod cut off the network (`PodFault::NetworkCut`) reaches nothing; a
//! pod cut off the other clusters (`PodFault::OtherClustersCut`) reaches only its own cluster's
//! pods. Any other command exits 126 with a message on stderr.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::api::Query;
use crate::catalog::ResourceType;
use crate::channels::{self, framed};
use crate::faults::PodFault;
use crate::portforward::pod_address;
use crate::server::{ClusterState, ResponseBody};
use crate::status::ApiError;

const PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;

/// What a command did: its exit code and what it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Where the probing pod may connect to.
struct Reach {
    source: IpAddr,
    /// Every address refused (the pod cut off the network).
    cut: bool,
    /// Only these destinations are reached (the pod cut off the other clusters).
    only: Option<Vec<IpAddr>>,
}

pub async fn handle(
    state: &Arc<ClusterState>,
    resource: &'static ResourceType,
    namespace: &str,
    name: &str,
    request: Request<Incoming>,
    query: &Query,
) -> Result<Response<ResponseBody>, ApiError> {
    let pod = state.store.get(resource, namespace, name)?;
    let handshake = channels::accept(
        &request,
        PROTOCOLS,
        "exec",
        "the twin serves exec over WebSocket with v5.channel.k8s.io or v4.channel.k8s.io only (SPDY is not served)",
    )?;
    if pod.pointer("/status/phase").and_then(Value::as_str) != Some("Running") {
        return Err(ApiError::bad_request(format!(
            "pod {name} is not running: cannot exec into it"
        )));
    }
    if let Some(container) = query.get("container") {
        let known = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .is_some_and(|containers| containers.iter().any(|c| c["name"] == container));
        if !known {
            return Err(ApiError::bad_request(format!(
                "container {container} is not valid for pod {name}"
            )));
        }
    }
    let command: Vec<String> = query
        .all("command")
        .into_iter()
        .map(str::to_owned)
        .collect();
    let source = pod_address(state, namespace, name, &pod)?;
    let faults = &state.faults;
    let reach = Reach {
        source,
        cut: faults.has_pod_fault(namespace, name, PodFault::NetworkCut),
        only: faults
            .has_pod_fault(namespace, name, PodFault::OtherClustersCut)
            .then(|| pod_ips(state)),
    };
    let upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        if let Ok(upgraded) = upgrade.await {
            let mut socket =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            let outcome = run(&command, &reach).await;
            for (channel, text) in [(STDOUT, &outcome.stdout), (STDERR, &outcome.stderr)] {
                if !text.is_empty() {
                    let _ = socket
                        .send(Message::binary(framed(channel, text.as_bytes())))
                        .await;
                }
            }
            let status = status(&command, outcome.code);
            let _ = socket
                .send(Message::binary(framed(
                    STATUS,
                    status.to_string().as_bytes(),
                )))
                .await;
            // A normal closure (1000): kubectl takes a close without a code as an error.
            let _ = socket
                .close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                }))
                .await;
            // Drain what the client still sends until it closes too.
            while let Some(Ok(message)) = socket.next().await {
                if message.is_close() {
                    break;
                }
            }
        }
    });
    channels::switching(&handshake)
}

/// The IPs of this cluster's pods.
fn pod_ips(state: &ClusterState) -> Vec<IpAddr> {
    let Some(pods) = crate::catalog::find("", "v1", "pods") else {
        return Vec::new();
    };
    state
        .store
        .list(pods, None, &|_| true)
        .0
        .iter()
        .filter_map(|pod| pod.pointer("/status/podIP")?.as_str()?.parse().ok())
        .collect()
}

/// The `Status` the API server sends on the error channel when the command ends.
fn status(command: &[String], code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// Runs `command` as the twin can: `nc -z -w SECONDS HOST PORT`.
async fn run(command: &[String], reach: &Reach) -> Outcome {
    let words: Vec<&str> = command.iter().map(String::as_str).collect();
    let probe = match words.as_slice() {
        ["nc", "-z", "-w", seconds, host, port] => seconds
            .parse::<u64>()
            .ok()
            .zip(port.parse::<u16>().ok())
            .map(|(seconds, port)| (Duration::from_secs(seconds.max(1)), *host, port)),
        _ => None,
    };
    let Some((timeout, host, port)) = probe else {
        return Outcome {
            code: 126,
            stdout: String::new(),
            stderr: format!("twin: exec runs only `nc -z -w SECONDS HOST PORT`, not {command:?}\n"),
        };
    };
    let failed = |why: &str| Outcome {
        code: 1,
        stdout: String::new(),
        stderr: format!("nc: {host} ({host}:{port}): {why}\n"),
    };
    let Ok(ip) = host.parse::<Ipv4Addr>() else {
        return failed("bad address");
    };
    if !ip.is_loopback() {
        // Nothing the twin runs sends a packet outside 127.0.0.0/8.
        return failed("Network unreachable");
    }
    let destination = IpAddr::V4(ip);
    if reach.cut
        || reach
            .only
            .as_ref()
            .is_some_and(|only| !only.contains(&destination))
    {
        return failed("Connection timed out");
    }
    let connect = async {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(reach.source, 0))?;
        socket.connect(SocketAddr::new(destination, port)).await
    };
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(_)) => Outcome {
            code: 0,
            stdout: String::new(),
            stderr: String::new(),
        },
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
            failed("Connection refused")
        }
        Ok(Err(error)) => failed(&error.to_string()),
        Err(_) => failed("Connection timed out"),
    }
}
