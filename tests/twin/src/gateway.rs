//! The ingress gateway of one cluster: an HTTP and HTTPS front door on loopback (each port
//! answers both; a TLS ClientHello selects HTTPS) that routes by `Host` through the cluster's
//! Ingresses, like ingress-nginx: a Service with a selector goes to one of its Ready pods, a
//! selectorless Service to its EndpointSlice addresses. Plain HTTP is redirected to HTTPS (308)
//! where ingress-nginx would: `force-ssl-redirect`, or a `tls` entry for the host unless
//! `ssl-redirect: "false"`. The annotations
//! `nginx.ingress.kubernetes.io/backend-protocol: HTTPS` (TLS to the upstream, certificate not
//! verified) and `nginx.ingress.kubernetes.io/upstream-vhost` (the `Host` header and SNI sent
//! upstream) are honoured; pods cut off the network are skipped, and so are pods that are not
//! Ready unless the Service publishes not-ready addresses.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::catalog::{self, ResourceType};
use crate::faults::PodFault;
use crate::httpc::{self, Transport};
use crate::server::ClusterState;
use crate::tls::Authority;

/// Ingress-nginx annotations the gateway reads.
pub const BACKEND_PROTOCOL: &str = "nginx.ingress.kubernetes.io/backend-protocol";
pub const UPSTREAM_VHOST: &str = "nginx.ingress.kubernetes.io/upstream-vhost";
pub const PROXY_SSL_NAME: &str = "nginx.ingress.kubernetes.io/proxy-ssl-name";
pub const SSL_REDIRECT: &str = "nginx.ingress.kubernetes.io/ssl-redirect";
pub const FORCE_SSL_REDIRECT: &str = "nginx.ingress.kubernetes.io/force-ssl-redirect";

/// How long connecting to one upstream may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

type GatewayBody = BoxBody<Bytes, hyper::Error>;

/// The addresses one cluster's gateway listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayAddresses {
    /// Where `https://<host>` goes (port 443 when the twin may bind it).
    pub https: SocketAddr,
    /// Where `http://<host>` goes (port 80 when the twin may bind it).
    pub http: SocketAddr,
}

impl GatewayAddresses {
    /// The address for URLs with `scheme` (`http` or `https`).
    pub fn for_scheme(&self, scheme: &str) -> SocketAddr {
        if scheme == "http" {
            self.http
        } else {
            self.https
        }
    }

    /// `scheme://host` with the port when it is not the scheme's default.
    pub fn url(&self, scheme: &str, host: &str) -> String {
        let address = self.for_scheme(scheme);
        let default = if scheme == "http" { 80 } else { 443 };
        if address.port() == default {
            format!("{scheme}://{host}")
        } else {
            format!("{scheme}://{host}:{}", address.port())
        }
    }
}

/// Binds a gateway on `ip`: ports 443 and 80 when allowed, else one free port for both.
pub fn bind(ip: IpAddr) -> std::io::Result<(Vec<std::net::TcpListener>, GatewayAddresses)> {
    let bind = |port: u16| -> std::io::Result<std::net::TcpListener> {
        let listener = std::net::TcpListener::bind((ip, port))?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    };
    if let (Ok(https), Ok(http)) = (bind(443), bind(80)) {
        let addresses = GatewayAddresses {
            https: https.local_addr()?,
            http: http.local_addr()?,
        };
        return Ok((vec![https, http], addresses));
    }
    let any = bind(0)?;
    let address = any.local_addr()?;
    Ok((
        vec![any],
        GatewayAddresses {
            https: address,
            http: address,
        },
    ))
}

/// Serves `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ClusterState>,
    authority: Arc<Authority>,
    mut shutdown: watch::Receiver<bool>,
) {
    let tls = match authority.server_config() {
        Ok(config) => Some(tokio_rustls::TlsAcceptor::from(config)),
        Err(_) => None,
    };
    let rotation = Arc::new(AtomicUsize::new(0));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let tls = tls.clone();
                let rotation = rotation.clone();
                connections.spawn(async move {
                    let mut first = [0u8; 1];
                    let is_tls = matches!(stream.peek(&mut first).await, Ok(1) if first[0] == 0x16);
                    let scheme = if is_tls { "https" } else { "http" };
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let state = state.clone();
                        let rotation = rotation.clone();
                        async move {
                            Ok::<_, Infallible>(handle(&state, request, peer, scheme, &rotation).await)
                        }
                    });
                    let builder = hyper::server::conn::http1::Builder::new().timer(TokioTimer::new()).clone();
                    if is_tls {
                        let Some(acceptor) = tls else { return };
                        if let Ok(stream) = acceptor.accept(stream).await {
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                    } else {
                        let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    connections.shutdown().await;
}

fn text_response(code: u16, text: &str) -> Response<GatewayBody> {
    Response::builder()
        .status(code)
        .header(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(
            Full::new(Bytes::from(format!("{text}\n")))
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap_or_else(|_| {
            Response::new(
                Full::new(Bytes::new())
                    .map_err(|never| match never {})
                    .boxed(),
            )
        })
}

fn resource(group: &str, plural: &str) -> &'static ResourceType {
    catalog::find(group, "v1", plural).expect("the gateway's resource types are in the catalogue")
}

/// Where a request goes: the Ingress's namespace, annotations and backend.
#[derive(Debug, Clone, PartialEq)]
pub struct IngressRoute {
    pub namespace: String,
    pub ingress: String,
    pub service: String,
    /// The Service port: a number, or a name.
    pub port: ServicePort,
    pub annotations: serde_json::Map<String, Value>,
    /// The Ingress has a `tls` entry for the requested host.
    pub tls: bool,
}

impl IngressRoute {
    /// Whether a plain-HTTP request is redirected to HTTPS, as ingress-nginx decides it:
    /// `force-ssl-redirect: "true"`, or TLS for the host and `ssl-redirect` not `"false"`.
    pub fn redirects_to_https(&self) -> bool {
        let flag = |name: &str| self.annotations.get(name).and_then(Value::as_str);
        flag(FORCE_SSL_REDIRECT) == Some("true")
            || (self.tls && flag(SSL_REDIRECT) != Some("false"))
    }
}

/// A Service port as an Ingress backend names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServicePort {
    Number(i64),
    Name(String),
}

fn path_matches(rule_path: &str, path_type: &str, path: &str) -> Option<usize> {
    if path_type == "Exact" {
        return (rule_path == path).then_some(rule_path.len());
    }
    let prefix = rule_path.trim_end_matches('/');
    if prefix.is_empty() {
        return Some(0);
    }
    (path == prefix || path.starts_with(&format!("{prefix}/"))).then_some(prefix.len())
}

fn host_matches(rule_host: &str, host: &str) -> bool {
    match rule_host.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .is_some_and(|rest| rest.ends_with('.') && !rest[..rest.len() - 1].contains('.')),
        None => rule_host.eq_ignore_ascii_case(host),
    }
}

fn backend_of(backend: &Value) -> Option<(String, ServicePort)> {
    let service = backend.get("service")?;
    let name = service["name"].as_str()?.to_string();
    let port = match (
        service.pointer("/port/number").and_then(Value::as_i64),
        service.pointer("/port/name").and_then(Value::as_str),
    ) {
        (Some(number), _) => ServicePort::Number(number),
        (None, Some(name)) => ServicePort::Name(name.to_string()),
        _ => return None,
    };
    Some((name, port))
}

/// The Ingress rule for `host` and `path` among `ingresses` (longest path wins).
pub fn find_route(ingresses: &[Value], host: &str, path: &str) -> Option<IngressRoute> {
    let mut best: Option<(usize, IngressRoute)> = None;
    let mut default: Option<IngressRoute> = None;
    for ingress in ingresses {
        let namespace = ingress
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("");
        let name = ingress
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let annotations = ingress
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let tls = ingress
            .pointer("/spec/tls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|entry| entry["hosts"].as_array().into_iter().flatten())
            .filter_map(Value::as_str)
            .any(|tls_host| host_matches(tls_host, host));
        let route = |service: String, port: ServicePort| IngressRoute {
            namespace: namespace.to_string(),
            ingress: name.to_string(),
            service,
            port,
            annotations: annotations.clone(),
            tls,
        };
        for rule in ingress
            .pointer("/spec/rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let rule_host = rule["host"].as_str().unwrap_or("");
            if !rule_host.is_empty() && !host_matches(rule_host, host) {
                continue;
            }
            for rule_path in rule
                .pointer("/http/paths")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(length) = path_matches(
                    rule_path["path"].as_str().unwrap_or("/"),
                    rule_path["pathType"].as_str().unwrap_or("Prefix"),
                    path,
                ) else {
                    continue;
                };
                let Some((service, port)) = backend_of(&rule_path["backend"]) else {
                    continue;
                };
                // A rule naming the host beats a catch-all rule of the same length.
                let score = length * 2 + usize::from(!rule_host.is_empty());
                if best.as_ref().is_none_or(|(s, _)| score > *s) {
                    best = Some((score, route(service, port)));
                }
            }
        }
        if default.is_none()
            && let Some((service, port)) =
                ingress.pointer("/spec/defaultBackend").and_then(backend_of)
        {
            default = Some(route(service, port));
        }
    }
    best.map(|(_, route)| route).or(default)
}

fn labels_match(selector: &serde_json::Map<String, Value>, pod: &Value) -> bool {
    selector
        .iter()
        .all(|(key, value)| pod.pointer("/metadata/labels").and_then(|l| l.get(key)) == Some(value))
}

fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// The upstream addresses of `route`'s Service, or why there are none.
pub fn endpoints(
    state: &ClusterState,
    route: &IngressRoute,
) -> Result<Vec<SocketAddr>, (u16, String)> {
    let store = &state.store;
    let service = store
        .get(resource("", "services"), &route.namespace, &route.service)
        .map_err(|_| {
            (
                503,
                format!("service {}/{} not found", route.namespace, route.service),
            )
        })?;
    if service.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName") {
        return Err((
            503,
            "ExternalName services are not modelled by the twin's gateway".to_string(),
        ));
    }
    let ports = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let port = ports
        .iter()
        .find(|port| match &route.port {
            ServicePort::Number(number) => port["port"].as_i64() == Some(*number),
            ServicePort::Name(name) => port["name"].as_str() == Some(name.as_str()),
        })
        .ok_or_else(|| {
            (
                503,
                format!("service {} has no port {:?}", route.service, route.port),
            )
        })?;
    let port_name = port["name"].as_str().unwrap_or("");
    let selector = service
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .filter(|s| !s.is_empty());
    let mut addresses = Vec::new();
    if let Some(selector) = selector {
        let (pods, _) = store.list(resource("", "pods"), Some(&route.namespace), &|pod| {
            labels_match(selector, pod) && pod_ready(pod)
        });
        for pod in pods {
            let name = pod
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            if state
                .faults
                .has_pod_fault(&route.namespace, name, PodFault::NetworkCut)
            {
                continue;
            }
            let Some(ip) = pod
                .pointer("/status/podIP")
                .and_then(Value::as_str)
                .and_then(|ip| ip.parse::<IpAddr>().ok())
            else {
                continue;
            };
            let target = match &port["targetPort"] {
                Value::Number(number) => number.as_u64(),
                Value::String(name) => pod
                    .pointer("/spec/containers")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
                    .find(|p| p["name"].as_str() == Some(name.as_str()))
                    .and_then(|p| p["containerPort"].as_u64())
                    .or_else(|| name.parse().ok()),
                _ => port["port"].as_u64(),
            };
            if let Some(target) = target.and_then(|t| u16::try_from(t).ok()) {
                addresses.push(SocketAddr::new(ip, target));
            }
        }
        if addresses.is_empty() {
            return Err((503, format!("service {} has no ready pod", route.service)));
        }
        return Ok(addresses);
    }
    let (slices, _) = store.list(
        resource("discovery.k8s.io", "endpointslices"),
        Some(&route.namespace),
        &|slice| {
            slice
                .pointer("/metadata/labels/kubernetes.io~1service-name")
                .and_then(Value::as_str)
                == Some(route.service.as_str())
        },
    );
    for slice in slices {
        let slice_ports = slice["ports"].as_array().cloned().unwrap_or_default();
        let slice_port = slice_ports
            .iter()
            .find(|p| p["name"].as_str().unwrap_or("") == port_name)
            .or_else(|| (slice_ports.len() == 1).then(|| &slice_ports[0]))
            .and_then(|p| p["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok());
        let Some(slice_port) = slice_port else {
            continue;
        };
        for endpoint in slice["endpoints"].as_array().into_iter().flatten() {
            if endpoint.pointer("/conditions/ready") == Some(&Value::Bool(false)) {
                continue;
            }
            for address in endpoint["addresses"].as_array().into_iter().flatten() {
                if let Some(ip) = address.as_str().and_then(|a| a.parse::<IpAddr>().ok()) {
                    addresses.push(SocketAddr::new(ip, slice_port));
                }
            }
        }
    }
    if addresses.is_empty() {
        return Err((503, format!("service {} has no endpoints", route.service)));
    }
    Ok(addresses)
}

/// The TLS configuration for HTTPS upstreams (built once).
fn upstream_tls() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| httpc::insecure_client_config(true))
        .clone()
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

async fn handle(
    state: &ClusterState,
    request: Request<Incoming>,
    peer: SocketAddr,
    scheme: &str,
    rotation: &AtomicUsize,
) -> Response<GatewayBody> {
    let host_header = request
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host())
        .unwrap_or("")
        .to_string();
    let host = host_header
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host_header.as_str(), |(host, _)| host)
        .to_ascii_lowercase();
    let (ingresses, _) =
        state
            .store
            .list(resource("networking.k8s.io", "ingresses"), None, &|_| true);
    let Some(route) = find_route(&ingresses, &host, request.uri().path()) else {
        return text_response(404, "default backend - 404");
    };
    if scheme == "http" && route.redirects_to_https() {
        let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let mut response = text_response(308, "308 Permanent Redirect");
        if let Ok(location) =
            hyper::header::HeaderValue::from_str(&format!("https://{host}{target}"))
        {
            response
                .headers_mut()
                .insert(hyper::header::LOCATION, location);
        }
        return response;
    }
    let mut upstreams = match endpoints(state, &route) {
        Ok(upstreams) => upstreams,
        Err((code, why)) => return text_response(code, &format!("twin gateway: {why}")),
    };
    let start = rotation.fetch_add(1, Ordering::Relaxed) % upstreams.len();
    upstreams.rotate_left(start);
    let annotation = |name: &str| {
        route
            .annotations
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let vhost = annotation(UPSTREAM_VHOST).filter(|v| !v.is_empty());
    let upstream_host = vhost.clone().unwrap_or_else(|| host_header.clone());
    let transport = match annotation(BACKEND_PROTOCOL).map(|p| p.to_ascii_uppercase()) {
        Some(protocol) if protocol == "HTTPS" => Transport::Tls {
            config: upstream_tls(),
            server_name: Some(
                annotation(PROXY_SSL_NAME)
                    .or(vhost)
                    .unwrap_or_else(|| host.clone()),
            ),
        },
        _ => Transport::Plain,
    };
    let (parts, body) = request.into_parts();
    let mut upstream = Request::builder()
        .method(parts.method.clone())
        .uri(parts.uri.path_and_query().map_or("/", |pq| pq.as_str()));
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            upstream = upstream.header(name, value);
        }
    }
    upstream = upstream
        .header(hyper::header::HOST, &upstream_host)
        .header("X-Forwarded-For", peer.ip().to_string())
        .header("X-Real-IP", peer.ip().to_string())
        .header("X-Forwarded-Host", &host_header)
        .header("X-Forwarded-Proto", scheme);
    let Ok(upstream) = upstream.body(body) else {
        return text_response(400, "twin gateway: the request cannot be forwarded");
    };
    let mut failures = Vec::new();
    for address in upstreams {
        match tokio::time::timeout(
            CONNECT_TIMEOUT,
            httpc::connect::<Incoming>(address, &transport),
        )
        .await
        {
            Ok(Ok(mut sender)) => {
                return match sender.send_request(upstream).await {
                    Ok(response) => response.map(|body| body.boxed()),
                    Err(error) => text_response(
                        502,
                        &format!("twin gateway: upstream {address} failed: {error}"),
                    ),
                };
            }
            Ok(Err(error)) => failures.push(error.to_string()),
            Err(_) => failures.push(format!("connecting to {address} timed out")),
        }
    }
    text_response(
        502,
        &format!(
            "twin gateway: no upstream answered: {}",
            failures.join("; ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress(namespace: &str, host: &str, path: &str, service: &str) -> Value {
        json!({
            "metadata": {"namespace": namespace, "name": "i", "annotations": {UPSTREAM_VHOST: "x"}},
            "spec": {"rules": [{"host": host, "http": {"paths": [
                {"path": path, "pathType": "Prefix", "backend": {"service": {"name": service, "port": {"number": 8200}}}},
            ]}}]},
        })
    }

    #[test]
    fn routes_pick_host_then_longest_path() {
        let ingresses = [
            ingress("a", "vault.old.test", "/", "root"),
            ingress("a", "vault.old.test", "/v1/sys", "sys"),
            ingress("b", "*.new.test", "/", "wild"),
        ];
        let route = |host: &str, path: &str| find_route(&ingresses, host, path).map(|r| r.service);
        assert_eq!(route("vault.old.test", "/v1/kv").as_deref(), Some("root"));
        assert_eq!(
            route("vault.old.test", "/v1/sys/health").as_deref(),
            Some("sys")
        );
        assert_eq!(
            route("vault.old.test", "/v1/system").as_deref(),
            Some("root")
        );
        assert_eq!(route("vault.new.test", "/").as_deref(), Some("wild"));
        assert_eq!(route("a.b.new.test", "/"), None);
        assert_eq!(route("other.test", "/"), None);
        let found = find_route(&ingresses, "vault.old.test", "/").unwrap();
        assert_eq!(found.port, ServicePort::Number(8200));
        assert_eq!(found.annotations[UPSTREAM_VHOST], "x");
    }

    #[test]
    fn a_gateway_falls_back_to_one_free_port_when_443_is_taken() {
        let ip: IpAddr = "127.19.99.1".parse().unwrap();
        let taken = std::net::TcpListener::bind((ip, 443));
        let (listeners, addresses) = bind(ip).unwrap();
        if taken.is_ok() {
            assert_eq!(listeners.len(), 1);
            assert_eq!(addresses.http, addresses.https);
            assert_ne!(addresses.https.port(), 443);
        }
        assert_eq!(addresses.https.ip(), ip);
    }

    #[test]
    fn urls_leave_out_default_ports() {
        let addresses = GatewayAddresses {
            https: "127.0.0.1:443".parse().unwrap(),
            http: "127.0.0.1:80".parse().unwrap(),
        };
        assert_eq!(
            addresses.url("https", "vault.old.test"),
            "https://vault.old.test"
        );
        assert_eq!(
            addresses.url("http", "vault.old.test"),
            "http://vault.old.test"
        );
        let odd = GatewayAddresses {
            https: "127.0.0.1:4000".parse().unwrap(),
            http: "127.0.0.1:4000".parse().unwrap(),
        };
        assert_eq!(odd.url("http", "h"), "http://h:4000");
    }
}
