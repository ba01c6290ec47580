//! The kube-proxy of one cluster: every Service with a ClusterIP (from the cluster's loopback
//! range, `addresses::Slot::service_prefix`) gets a TCP listener on `ClusterIP:port` for each of
//! its TCP ports, and each connection is spliced to a ready endpoint of the Service, chosen when
//! the connection arrives: the pods its selector matches, or for a selectorless Service the
//! addresses of its EndpointSlices (the same choice as the ingress gateway's, so pods cut off the
//! network and pods not Ready are skipped). A Service with no endpoint refuses the connection
//! with a reset, as a real cluster answers. Listeners follow the Services as they come, change
//! ports and go; established connections stay up, as with iptables conntrack.
//!
//! Ports below 1024 need privileges this process may not have: such a port is skipped and said
//! once in `CLUSTER/kube-proxy.log` in the twin's directory, with every listener opened and
//! closed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::catalog;
use crate::gateway::{self, IngressRoute, ServicePort};
use crate::server::ClusterState;

/// How long connecting to one endpoint may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// One Service port to listen on: where, and which Service it leads to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Frontend {
    address: SocketAddr,
    namespace: String,
    service: String,
    port: u16,
}

/// Run the cluster's kube-proxy until shutdown.
pub async fn run(state: Arc<ClusterState>, mut shutdown: watch::Receiver<bool>) {
    let mut changes = state.store.subscribe();
    let mut listening: HashMap<Frontend, JoinHandle<()>> = HashMap::new();
    let mut refused: std::collections::HashSet<Frontend> = Default::default();
    loop {
        let wanted = frontends(&state);
        listening.retain(|frontend, task| {
            let keep = wanted.contains(frontend);
            if !keep {
                task.abort();
                log(&state, &format!("closed {}", describe(frontend)));
            }
            keep
        });
        for frontend in wanted {
            if listening.contains_key(&frontend) || refused.contains(&frontend) {
                continue;
            }
            match TcpListener::bind(frontend.address).await {
                Ok(listener) => {
                    log(&state, &format!("listening for {}", describe(&frontend)));
                    let task = tokio::spawn(accept(listener, state.clone(), frontend.clone()));
                    listening.insert(frontend, task);
                }
                Err(error) => {
                    log(
                        &state,
                        &format!("cannot listen for {}: {error}", describe(&frontend)),
                    );
                    refused.insert(frontend);
                }
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break },
            _ = shutdown.changed() => break,
        }
    }
    for task in listening.into_values() {
        task.abort();
    }
}

/// Every Service port of the cluster that has a loopback ClusterIP and speaks TCP.
fn frontends(state: &ClusterState) -> std::collections::HashSet<Frontend> {
    let Some(services) = catalog::find("", "v1", "services") else {
        return Default::default();
    };
    let (services, _) = state.store.list(services, None, &|_| true);
    let mut wanted = std::collections::HashSet::new();
    for service in services {
        let Some(ip) = service
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .filter(IpAddr::is_loopback)
        else {
            continue;
        };
        let text = |pointer: &str| {
            service
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        for port in service
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if port["protocol"].as_str().unwrap_or("TCP") != "TCP" {
                continue;
            }
            let Some(number) = port["port"].as_u64().and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            wanted.insert(Frontend {
                address: SocketAddr::new(ip, number),
                namespace: text("/metadata/namespace"),
                service: text("/metadata/name"),
                port: number,
            });
        }
    }
    wanted
}

/// Accept connections on one frontend and splice each to an endpoint.
async fn accept(listener: TcpListener, state: Arc<ClusterState>, frontend: Frontend) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            // Out of descriptors, or a connection gone before it was accepted: try again soon
            // rather than spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        let frontend = frontend.clone();
        tokio::spawn(async move {
            splice(client, &state, &frontend).await;
        });
    }
}

/// Connect `client` to the first endpoint of the Service that answers; with none, reset it.
async fn splice(mut client: TcpStream, state: &ClusterState, frontend: &Frontend) {
    let route = IngressRoute {
        namespace: frontend.namespace.clone(),
        ingress: String::new(),
        service: frontend.service.clone(),
        port: ServicePort::Number(i64::from(frontend.port)),
        annotations: Default::default(),
        tls: false,
    };
    let endpoints = gateway::endpoints(state, &route).unwrap_or_default();
    for endpoint in endpoints {
        let Ok(Ok(mut upstream)) =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(endpoint)).await
        else {
            continue;
        };
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        return;
    }
    // No endpoint: a reset, not a clean close, so the client sees the connection refused.
    // A zero linger never blocks the drop (the deprecation warns of non-zero ones).
    #[allow(deprecated)]
    let _ = client.set_linger(Some(Duration::ZERO));
}

fn describe(frontend: &Frontend) -> String {
    format!(
        "{} (service {}/{} port {})",
        frontend.address, frontend.namespace, frontend.service, frontend.port
    )
}

/// A line in the cluster folder's `kube-proxy.log`, when the cluster runs workloads.
fn log(state: &ClusterState, message: &str) {
    use std::io::Write;
    let Some(node) = &state.node else {
        return;
    };
    let path = node.state_dir.join("kube-proxy.log");
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(
            file,
            "{} [{}] {message}",
            crate::clock::now_rfc3339(),
            state.name
        );
    }
}
