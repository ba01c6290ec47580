//! The twin's kubelet: runs one pod incarnation (one uid) as a real process and writes what
//! happens into the pod's status and labels. A container running the Vault chart's start script
//! (or `vault server`) becomes `bao server` with a configuration rendered from the current
//! ConfigMap; any other container runs `sleep infinity` as a stand-in. Exited containers are
//! restarted with a bounded backoff; a Vault pod is Ready only while `sys/health` says unsealed,
//! and its status labels (`vault-active`, `vault-sealed`, `vault-initialized` for `vault server`,
//! `openbao-*` for `bao server`, as each server's service registration sets them) follow that
//! answer.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::catalog::{self, ResourceType};
use crate::chart::{self, HostMap, PathMap, PodFacts, Program};
use crate::clock::now_rfc3339;
use crate::events;
use crate::faults::PodFault;
use crate::httpc::{self, Endpoint, Transport};
use crate::node::Node;
use crate::status::ApiError;
use crate::store::{UpdateMode, WriteOptions};

/// How often a Vault pod's health is read.
pub const HEALTH_INTERVAL: Duration = Duration::from_millis(500);
/// How often the kubelet checks whether the process is still alive.
const EXIT_POLL: Duration = Duration::from_millis(100);
/// First restart delay of a crashing container, doubled up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A container that ran this long restarts with the first delay again.
const BACKOFF_RESET: Duration = Duration::from_secs(10);
/// The longest the kubelet waits for a process to stop after SIGTERM before SIGKILL.
pub const MAX_GRACE: Duration = Duration::from_secs(10);

fn pods() -> &'static ResourceType {
    catalog::find("", "v1", "pods").expect("pods are in the catalogue")
}

/// Which pod incarnation a kubelet task runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodKey {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl PodKey {
    pub fn of(pod: &Value) -> Option<PodKey> {
        let text = |pointer: &str| {
            pod.pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Some(PodKey {
            namespace: text("/metadata/namespace")?,
            name: text("/metadata/name")?,
            uid: text("/metadata/uid")?,
        })
    }
}

/// The StatefulSet owning `pod` (its name and uid), from the controller owner reference.
pub fn owning_statefulset(pod: &Value) -> Option<(String, String)> {
    pod.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|owner| {
            owner["kind"] == "StatefulSet" && owner["controller"].as_bool().unwrap_or(false)
        })
        .and_then(|owner| {
            Some((
                owner["name"].as_str()?.to_string(),
                owner["uid"].as_str()?.to_string(),
            ))
        })
}

/// The ordinal of pod `pod_name` of StatefulSet `statefulset`.
pub fn ordinal_of(statefulset: &str, pod_name: &str) -> Option<u32> {
    pod_name
        .strip_prefix(statefulset)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

#[derive(Debug, Clone, PartialEq)]
enum ContainerState {
    Waiting {
        reason: String,
        message: String,
    },
    Running {
        started_at: String,
    },
    Terminated {
        exit_code: i32,
        reason: String,
        started_at: String,
        finished_at: String,
    },
}

impl ContainerState {
    fn to_json(&self) -> Value {
        match self {
            ContainerState::Waiting { reason, message } => {
                json!({"waiting": {"reason": reason, "message": message}})
            }
            ContainerState::Running { started_at } => json!({"running": {"startedAt": started_at}}),
            ContainerState::Terminated {
                exit_code,
                reason,
                started_at,
                finished_at,
            } => json!({"terminated": {
                "exitCode": exit_code, "reason": reason,
                "startedAt": started_at, "finishedAt": finished_at,
            }}),
        }
    }
}

/// The pod status the kubelet owns.
#[derive(Debug, Clone, PartialEq)]
struct PodStatus {
    phase: &'static str,
    ip: Option<Ipv4Addr>,
    start_time: String,
    container: String,
    image: String,
    state: ContainerState,
    last_state: Option<ContainerState>,
    ready: bool,
    ready_changed: String,
    restarts: u32,
    pid: Option<u32>,
}

impl PodStatus {
    fn to_json(&self) -> Value {
        let ready = if self.ready { "True" } else { "False" };
        let mut status = json!({
            "phase": self.phase,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.start_time,
            "qosClass": "BestEffort",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": self.start_time},
                {"type": "Initialized", "status": "True", "lastTransitionTime": self.start_time},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": self.ready_changed},
                {"type": "Ready", "status": ready, "lastTransitionTime": self.ready_changed},
            ],
            "containerStatuses": [{
                "name": self.container,
                "image": self.image,
                "imageID": "",
                "ready": self.ready,
                "started": matches!(self.state, ContainerState::Running { .. }),
                "restartCount": self.restarts,
                "state": self.state.to_json(),
                "lastState": self.last_state.as_ref().map_or(json!({}), ContainerState::to_json),
            }],
        });
        if let Some(pid) = self.pid {
            status["containerStatuses"][0]["containerID"] = json!(format!("twin://{pid}"));
        }
        if let Some(ip) = self.ip {
            status["podIP"] = json!(ip.to_string());
            status["podIPs"] = json!([{"ip": ip.to_string()}]);
        }
        status
    }

    fn set_ready(&mut self, ready: bool) {
        if self.ready != ready {
            self.ready = ready;
            self.ready_changed = now_rfc3339();
        }
    }
}

/// Writes `status` to the pod if it is still the incarnation `key`.
fn write_status(node: &Node, key: &PodKey, status: &PodStatus) -> Result<(), ApiError> {
    let value = status.to_json();
    node.store
        .update(
            pods(),
            &key.namespace,
            &key.name,
            UpdateMode::Status,
            &WriteOptions::default(),
            |current| {
                let current = same_incarnation(current, key)?;
                let mut next = current.clone();
                next["status"] = value;
                Ok(next)
            },
        )
        .map(|_| ())
}

fn same_incarnation<'a>(current: Option<&'a Value>, key: &PodKey) -> Result<&'a Value, ApiError> {
    let current = current.ok_or_else(|| ApiError::not_found(pods(), &key.name))?;
    if current.pointer("/metadata/uid").and_then(Value::as_str) != Some(key.uid.as_str()) {
        return Err(ApiError::conflict(
            pods(),
            &key.name,
            "the pod was replaced",
        ));
    }
    Ok(current)
}

/// Sets `labels` on the pod if it is still the incarnation `key`.
fn write_labels(node: &Node, key: &PodKey, labels: &[(String, String)]) -> Result<(), ApiError> {
    node.store
        .update(
            pods(),
            &key.namespace,
            &key.name,
            UpdateMode::Main,
            &WriteOptions::default(),
            |current| {
                let mut next = same_incarnation(current, key)?.clone();
                if !next["metadata"]["labels"].is_object() {
                    next["metadata"]["labels"] = json!({});
                }
                for (name, value) in labels {
                    next["metadata"]["labels"][name.as_str()] = json!(value);
                }
                Ok(next)
            },
        )
        .map(|_| ())
}

/// What `sys/health` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub initialized: bool,
    pub sealed: bool,
    pub standby: bool,
}

impl Health {
    pub fn active(&self) -> bool {
        self.initialized && !self.sealed && !self.standby
    }
}

/// Reads `sys/health` of the Vault at `address`; `None` when it does not answer.
pub async fn probe_health(address: SocketAddr, tls: bool) -> Option<Health> {
    let mut endpoint = Endpoint::plain(address);
    endpoint.timeout = Duration::from_secs(1);
    if tls {
        endpoint.transport = Transport::Tls {
            config: httpc::insecure_client_config(false),
            server_name: None,
        };
    }
    let (_, body) = endpoint
        .json("GET", "/v1/sys/health", None, None)
        .await
        .ok()?;
    Some(Health {
        initialized: body["initialized"].as_bool()?,
        sealed: body["sealed"].as_bool()?,
        standby: body["standby"].as_bool().unwrap_or(false),
    })
}

/// A container start the kubelet prepared.
struct Launch {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    /// For Vault: the API port, whether it speaks TLS, and its status labels' prefix.
    vault: Option<(u16, bool, String)>,
    config: Option<PathBuf>,
}

/// Why a container could not start (reported as `waiting` with this reason).
struct NotStarted {
    reason: &'static str,
    message: String,
}

fn not_started(reason: &'static str) -> impl FnOnce(String) -> NotStarted {
    move |message| NotStarted { reason, message }
}

fn io_error(what: String) -> impl FnOnce(std::io::Error) -> NotStarted {
    move |error| NotStarted {
        reason: "CreateContainerError",
        message: format!("{what}: {error}"),
    }
}

/// The container the twin runs: the one named `vault` or `openbao` (the charts' names), else
/// the first.
fn main_container(pod: &Value) -> Option<&Value> {
    let containers = pod.pointer("/spec/containers")?.as_array()?;
    containers
        .iter()
        .find(|c| c["name"] == "vault" || c["name"] == "openbao")
        .or_else(|| containers.first())
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Writes the current content of ConfigMap or Secret volumes, and the service-account tokens of
/// projected volumes, into `dir`; mounts the rest.
fn materialise_volumes(
    node: &Node,
    key: &PodKey,
    pod: &Value,
    incarnation_dir: &Path,
) -> Result<Vec<(String, PathBuf, bool)>, NotStarted> {
    let mut volumes = Vec::new();
    for volume in pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = volume["name"].as_str() else {
            continue;
        };
        let source = [("configMap", false), ("secret", true)]
            .into_iter()
            .find(|(field, _)| volume.get(*field).is_some());
        if let Some((field, secret)) = source {
            let object_name = if secret {
                volume[field]["secretName"].as_str()
            } else {
                volume[field]["name"].as_str()
            }
            .unwrap_or("");
            let resource = catalog::find("", "v1", if secret { "secrets" } else { "configmaps" })
                .expect("configmaps and secrets are in the catalogue");
            let dir = incarnation_dir.join("volumes").join(name);
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)
                .map_err(io_error(format!("cannot create {}", dir.display())))?;
            match node.store.get(resource, &key.namespace, object_name) {
                Ok(object) => {
                    let data = decoded_data(&object, secret);
                    let items = volume[field]["items"].as_array();
                    for (data_key, content) in &data {
                        let path = match items {
                            Some(items) => match items
                                .iter()
                                .find(|i| i["key"] == data_key.as_str())
                            {
                                Some(item) => item["path"].as_str().unwrap_or(data_key).to_string(),
                                None => continue,
                            },
                            None => data_key.clone(),
                        };
                        if path.contains("..") {
                            continue;
                        }
                        let file = dir.join(&path);
                        if let Some(parent) = file.parent() {
                            let _ = std::fs::create_dir_all(parent);
                        }
                        write_private_bytes(&file, content)
                            .map_err(io_error(format!("cannot write {}", file.display())))?;
                    }
                }
                Err(_) if volume[field]["optional"].as_bool().unwrap_or(false) => {}
                Err(_) => {
                    return Err(NotStarted {
                        reason: "CreateContainerConfigError",
                        message: format!(
                            "volume {name:?}: {} {object_name:?} not found in namespace {}",
                            if secret { "secret" } else { "configmap" },
                            key.namespace
                        ),
                    });
                }
            }
            volumes.push((name.to_string(), dir, false));
        } else if let Some(sources) = volume
            .pointer("/projected/sources")
            .and_then(Value::as_array)
        {
            let dir = incarnation_dir.join("volumes").join(name);
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)
                .map_err(io_error(format!("cannot create {}", dir.display())))?;
            for source in sources {
                let Some(token) = source.get("serviceAccountToken") else {
                    continue;
                };
                let path = token["path"].as_str().unwrap_or("token");
                if path.contains("..") {
                    continue;
                }
                let service_account = pod
                    .pointer("/spec/serviceAccountName")
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                let lifetime = token["expirationSeconds"].as_u64().unwrap_or(3600);
                let audience = token["audience"]
                    .as_str()
                    .unwrap_or("https://kubernetes.default.svc");
                let content = crate::identity::service_account_token(
                    &node.signer,
                    &node.cluster_name,
                    &key.namespace,
                    service_account,
                    audience,
                    lifetime,
                );
                let file = dir.join(path);
                write_private_bytes(&file, content.as_bytes())
                    .map_err(io_error(format!("cannot write {}", file.display())))?;
            }
            volumes.push((name.to_string(), dir, false));
        } else if let Some(claim) = volume
            .pointer("/persistentVolumeClaim/claimName")
            .and_then(Value::as_str)
        {
            let dir = node.claim_dir(&key.namespace, claim);
            std::fs::create_dir_all(&dir)
                .map_err(io_error(format!("cannot create {}", dir.display())))?;
            volumes.push((name.to_string(), dir, true));
        } else {
            let dir = incarnation_dir.join("volumes").join(name);
            std::fs::create_dir_all(&dir)
                .map_err(io_error(format!("cannot create {}", dir.display())))?;
            volumes.push((name.to_string(), dir, false));
        }
    }
    Ok(volumes)
}

/// `data` (and `binaryData`) of a ConfigMap, or the decoded `data` of a Secret.
fn decoded_data(object: &Value, secret: bool) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for field in ["data", "binaryData"] {
        let Some(map) = object.get(field).and_then(Value::as_object) else {
            continue;
        };
        for (key, value) in map {
            let text = value.as_str().unwrap_or("");
            let bytes = if secret || field == "binaryData" {
                crate::store::base64_decode(text).unwrap_or_default()
            } else {
                text.as_bytes().to_vec()
            };
            out.push((key.clone(), bytes));
        }
    }
    out
}

/// A key of a ConfigMap or Secret in `namespace`, decoded; with an empty key, every key as
/// `KEY=value` lines (for `envFrom`).
fn lookup_key(node: &Node, namespace: &str, secret: bool, name: &str, key: &str) -> Option<String> {
    let resource = catalog::find("", "v1", if secret { "secrets" } else { "configmaps" })?;
    let object = node.store.get(resource, namespace, name).ok()?;
    let data = decoded_data(&object, secret);
    if key.is_empty() {
        return Some(
            data.iter()
                .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
    data.into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
}

/// Prepares the next start of the pod's container from the current pod and ConfigMaps.
fn prepare(
    node: &Node,
    key: &PodKey,
    pod: &Value,
    ip: Ipv4Addr,
    statefulset: &Value,
    incarnation_dir: &Path,
) -> Result<Launch, NotStarted> {
    let container = main_container(pod).ok_or_else(|| NotStarted {
        reason: "CreateContainerConfigError",
        message: "the pod has no containers".to_string(),
    })?;
    let program = chart::recognise(
        &strings(&container["command"]),
        &strings(&container["args"]),
    )
    .map_err(not_started("CreateContainerConfigError"))?;
    let volumes = materialise_volumes(node, key, pod, incarnation_dir)?;
    let persistent: Vec<(String, PathBuf)> = volumes
        .iter()
        .filter(|(_, _, persistent)| *persistent)
        .map(|(name, dir, _)| (name.clone(), dir.clone()))
        .collect();
    node.update_pod_runtime(&key.namespace, &key.name, |runtime| {
        runtime.volumes = persistent
    });
    for dir in ["tmp", "home"] {
        let path = incarnation_dir.join(dir);
        std::fs::create_dir_all(&path)
            .map_err(io_error(format!("cannot create {}", path.display())))?;
    }
    let start = match program {
        Program::Idle => {
            return Ok(Launch {
                program: PathBuf::from("sleep"),
                args: vec!["infinity".to_string()],
                env: Vec::new(),
                cwd: incarnation_dir.to_path_buf(),
                vault: None,
                config: None,
            });
        }
        Program::Vault(start) => start,
    };
    let bao = node
        .bao
        .clone()
        .map_err(not_started("CreateContainerError"))?;
    let mut mounts: Vec<(String, PathBuf)> =
        vec![("/tmp".to_string(), incarnation_dir.join("tmp"))];
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let (Some(name), Some(path)) = (mount["name"].as_str(), mount["mountPath"].as_str()) else {
            continue;
        };
        if let Some((_, dir, _)) = volumes.iter().find(|(n, _, _)| n == name) {
            let dir = match mount["subPath"]
                .as_str()
                .filter(|s| !s.is_empty() && !s.contains(".."))
            {
                Some(sub) => dir.join(sub),
                None => dir.clone(),
            };
            mounts.push((path.to_string(), dir));
        }
    }
    // The chart's data path, on the pod's claim when nothing is mounted there.
    let data_path = format!("/{}/data", start.labels_prefix);
    if !mounts.iter().any(|(path, _)| *path == data_path) {
        mounts.push((
            data_path,
            node.claim_dir(&key.namespace, &format!("data-{}", key.name)),
        ));
    }
    let paths = PathMap::new(mounts);
    let facts = PodFacts {
        name: key.name.clone(),
        namespace: key.namespace.clone(),
        uid: key.uid.clone(),
        ip,
        host_ip: "127.0.0.1".to_string(),
        node_name: format!("twin-{}", node.cluster_name),
    };
    let lookup = |secret: bool, name: &str, data_key: &str| {
        lookup_key(node, &key.namespace, secret, name, data_key)
    };
    let env = chart::container_env(container, pod, &facts, &lookup)
        .map_err(not_started("CreateContainerConfigError"))?;
    let statefulset_name = statefulset
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let replicas = statefulset
        .pointer("/spec/replicas")
        .and_then(Value::as_u64)
        .unwrap_or(1) as u32;
    let service = statefulset
        .pointer("/spec/serviceName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let own_ordinal = ordinal_of(statefulset_name, &key.name).unwrap_or(0);
    let peers: Vec<(String, Ipv4Addr)> = (0..replicas.max(own_ordinal + 1))
        .filter_map(|ordinal| {
            let peer_ip = node.pod_ip(&key.namespace, statefulset_name, ordinal)?;
            Some((format!("{statefulset_name}-{ordinal}"), peer_ip))
        })
        .collect();
    let hosts = HostMap::for_pods(&peers, service, &key.namespace).with_pod_local(ip);
    let source = start.copy_from.as_deref().unwrap_or(&start.config_path);
    let source_path = paths.host_path(source).ok_or_else(|| NotStarted {
        reason: "CreateContainerConfigError",
        message: format!("{source} is not on a volume the twin knows (mount the ConfigMap there)"),
    })?;
    let config = std::fs::read_to_string(&source_path).map_err(|error| NotStarted {
        reason: "CreateContainerConfigError",
        message: format!("cannot read {source} ({}): {error}", source_path.display()),
    })?;
    let rendered = chart::render(&config, &start, &env, &hosts, &paths);
    let target = if start.copy_from.is_some() {
        paths
            .host_path(&start.config_path)
            .unwrap_or_else(|| incarnation_dir.join("vault-config.hcl"))
    } else {
        incarnation_dir.join("vault-config.hcl")
    };
    let header: String = rendered
        .notes
        .iter()
        .map(|note| format!("# twin: {note}\n"))
        .collect();
    if let Some(parent) = target.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    write_private_bytes(&target, format!("{header}{}", rendered.text).as_bytes())
        .map_err(io_error(format!("cannot write {}", target.display())))?;
    let mut process_env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name != "HOME" && name != "PATH")
        .map(|(name, value)| {
            let value = paths.rewrite_value(&hosts.rewrite(&value));
            (name, value)
        })
        .collect();
    process_env.push((
        "HOME".to_string(),
        incarnation_dir.join("home").to_string_lossy().into_owned(),
    ));
    Ok(Launch {
        program: bao,
        args: vec![
            "server".to_string(),
            format!("-config={}", target.display()),
        ],
        env: process_env,
        cwd: incarnation_dir.to_path_buf(),
        vault: Some((
            rendered.api_port,
            rendered.api_tls,
            start.labels_prefix.clone(),
        )),
        config: Some(target),
    })
}

/// The process that stands for a container whose start is made to fail.
fn failing_launch(cwd: &Path) -> Launch {
    Launch {
        program: PathBuf::from("/bin/sh"),
        args: vec![
            "-c".to_string(),
            "echo 'twin: injected fault: the container fails at start' >&2; exit 1".to_string(),
        ],
        env: Vec::new(),
        cwd: cwd.to_path_buf(),
        vault: None,
        config: None,
    }
}

/// Waits for `duration` unless `stop` turns true first; whether to stop.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, duration: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(duration) => *stop.borrow(),
        changed = stop.changed() => changed.is_err() || *stop.borrow(),
    }
}

/// Runs pod incarnation `pod` (owned by `statefulset`) until `stop` turns true, then stops its
/// process.
pub async fn run_pod(node: Arc<Node>, pod: Value, mut stop: watch::Receiver<bool>) {
    let Some(key) = PodKey::of(&pod) else {
        return;
    };
    let statefulset_name = owning_statefulset(&pod)
        .map(|(name, _)| name)
        .unwrap_or_default();
    let ordinal = ordinal_of(&statefulset_name, &key.name);
    let ip = ordinal.and_then(|ordinal| node.pod_ip(&key.namespace, &statefulset_name, ordinal));
    let container = main_container(&pod).cloned().unwrap_or(json!({}));
    let now = now_rfc3339();
    let mut status = PodStatus {
        phase: "Pending",
        ip,
        start_time: now.clone(),
        container: container["name"].as_str().unwrap_or("main").to_string(),
        image: container["image"].as_str().unwrap_or("").to_string(),
        state: ContainerState::Waiting {
            reason: "ContainerCreating".to_string(),
            message: String::new(),
        },
        last_state: None,
        ready: false,
        ready_changed: now,
        restarts: 0,
        pid: None,
    };
    let incarnation_dir = node.pod_dir(&key.namespace, &key.name);
    let _ = std::fs::remove_dir_all(&incarnation_dir);
    let log = node.log_path(&key.namespace, &key.name);
    node.update_pod_runtime(&key.namespace, &key.name, |runtime| {
        *runtime = crate::node::PodRuntime {
            uid: key.uid.clone(),
            ip,
            log: log.clone(),
            ..Default::default()
        }
    });
    events::record(
        &node.store,
        &pod,
        events::Kind::Normal,
        "Scheduled",
        &format!(
            "Successfully assigned {}/{} to twin-{}",
            key.namespace, key.name, node.cluster_name
        ),
        "default-scheduler",
    );
    let Some(ip) = ip else {
        status.state = ContainerState::Waiting {
            reason: "NetworkUnavailable".to_string(),
            message: "the twin has no loopback address for this pod (more than 14 StatefulSets in the cluster, or not a StatefulSet pod)".to_string(),
        };
        let _ = write_status(&node, &key, &status);
        let _ = stop.wait_for(|stopped| *stopped).await;
        return;
    };
    let grace = pod
        .pointer("/spec/terminationGracePeriodSeconds")
        .and_then(Value::as_u64)
        .map_or(MAX_GRACE, |seconds| {
            Duration::from_secs(seconds).min(MAX_GRACE)
        });
    let restart_always =
        pod.pointer("/spec/restartPolicy").and_then(Value::as_str) != Some("Never");
    let mut backoff = FIRST_BACKOFF;
    loop {
        if *stop.borrow() {
            return;
        }
        // The current pod and StatefulSet: labels and env may have changed since creation.
        let current = node
            .store
            .get(pods(), &key.namespace, &key.name)
            .unwrap_or(pod.clone());
        let statefulset = node
            .store
            .get(statefulsets(), &key.namespace, &statefulset_name)
            .unwrap_or(json!({}));
        let prepared = if node
            .faults
            .has_pod_fault(&key.namespace, &key.name, PodFault::FailStart)
        {
            let _ = std::fs::create_dir_all(&incarnation_dir);
            Ok(failing_launch(&incarnation_dir))
        } else {
            prepare(&node, &key, &current, ip, &statefulset, &incarnation_dir)
        };
        let launch = match prepared {
            Ok(launch) => launch,
            Err(not_started) => {
                events::record(
                    &node.store,
                    &pod,
                    events::Kind::Warning,
                    "Failed",
                    &format!("Error: {}", not_started.message),
                    "kubelet",
                );
                status.state = ContainerState::Waiting {
                    reason: not_started.reason.to_string(),
                    message: not_started.message,
                };
                status.set_ready(false);
                if write_status(&node, &key, &status).is_err()
                    || wait_or_stop(&mut stop, backoff).await
                {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let mut command = Command::new(&launch.program);
        command
            .args(&launch.args)
            .current_dir(&launch.cwd)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .envs(launch.env.iter().map(|(k, v)| (k, v)));
        append_log(
            &log,
            &format!(
                "=== twin: starting container {} of pod {}/{} (uid {}): {} {}\n",
                status.container,
                key.namespace,
                key.name,
                key.uid,
                launch.program.display(),
                launch.args.join(" ")
            ),
        );
        let name = format!("{}/{}/{}", node.cluster_name, key.namespace, key.name);
        let group = node.group.as_ref().ok().and_then(|g| g.procs_file().ok());
        let pid = match node.processes.spawn(&name, command, &log, group) {
            Ok(pid) => pid,
            Err(error) => {
                status.state = ContainerState::Waiting {
                    reason: "CreateContainerError".to_string(),
                    message: format!("cannot start {}: {error}", launch.program.display()),
                };
                if write_status(&node, &key, &status).is_err()
                    || wait_or_stop(&mut stop, backoff).await
                {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let started = Instant::now();
        let started_at = now_rfc3339();
        node.update_pod_runtime(&key.namespace, &key.name, |runtime| {
            runtime.pid = Some(pid);
            runtime.runs_vault = launch.vault.is_some();
            runtime.config = launch.config.clone();
            runtime.restarts = status.restarts;
        });
        events::record(
            &node.store,
            &pod,
            events::Kind::Normal,
            "Started",
            &format!("Started container {}", status.container),
            "kubelet",
        );
        status.phase = "Running";
        status.pid = Some(pid);
        status.state = ContainerState::Running {
            started_at: started_at.clone(),
        };
        status.set_ready(launch.vault.is_none());
        if write_status(&node, &key, &status).is_err() {
            node.processes.stop(pid, grace).await;
            return;
        }
        let exit = supervise(&node, &key, &mut status, pid, launch.vault, ip, &mut stop).await;
        let Some(exit) = exit else {
            // Stopped: the pod is gone.
            events::record(
                &node.store,
                &pod,
                events::Kind::Normal,
                "Killing",
                &format!("Stopping container {}", status.container),
                "kubelet",
            );
            node.processes.stop(pid, grace).await;
            node.update_pod_runtime(&key.namespace, &key.name, |runtime| runtime.pid = None);
            return;
        };
        append_log(
            &log,
            &format!("=== twin: container exited with code {}\n", exit.code),
        );
        node.update_pod_runtime(&key.namespace, &key.name, |runtime| runtime.pid = None);
        let terminated = ContainerState::Terminated {
            exit_code: exit.code,
            reason: if exit.code == 0 { "Completed" } else { "Error" }.to_string(),
            started_at,
            finished_at: now_rfc3339(),
        };
        status.pid = None;
        status.set_ready(false);
        if !restart_always {
            status.phase = if exit.code == 0 {
                "Succeeded"
            } else {
                "Failed"
            };
            status.state = terminated;
            let _ = write_status(&node, &key, &status);
            let _ = stop.wait_for(|stopped| *stopped).await;
            return;
        }
        if started.elapsed() >= BACKOFF_RESET {
            backoff = FIRST_BACKOFF;
        }
        status.restarts += 1;
        status.state = terminated.clone();
        status.last_state = Some(terminated);
        if write_status(&node, &key, &status).is_err() {
            return;
        }
        events::record(
            &node.store,
            &pod,
            events::Kind::Warning,
            "BackOff",
            &format!(
                "Back-off restarting failed container {} in pod {}_{}({})",
                status.container, key.name, key.namespace, key.uid
            ),
            "kubelet",
        );
        status.state = ContainerState::Waiting {
            reason: "CrashLoopBackOff".to_string(),
            message: format!(
                "back-off {}s restarting failed container {} in pod {}",
                backoff.as_secs(),
                status.container,
                key.name
            ),
        };
        if write_status(&node, &key, &status).is_err() || wait_or_stop(&mut stop, backoff).await {
            return;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Writes `content` to `path` with mode 0600 (configurations carry the seal's token).
fn write_private_bytes(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content)
}

fn statefulsets() -> &'static ResourceType {
    catalog::find("apps", "v1", "statefulsets").expect("statefulsets are in the catalogue")
}

fn append_log(log: &Path, line: &str) {
    use std::io::Write;
    if let Some(parent) = log.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = file.write_all(line.as_bytes());
    }
}

/// Watches a running process until it exits (`Some(exit)`) or `stop` turns true (`None`),
/// keeping readiness and the Vault labels in step with `sys/health`.
async fn supervise(
    node: &Node,
    key: &PodKey,
    status: &mut PodStatus,
    pid: u32,
    vault: Option<(u16, bool, String)>,
    ip: Ipv4Addr,
    stop: &mut watch::Receiver<bool>,
) -> Option<crate::process::Exit> {
    let mut last_health: Option<Instant> = None;
    let mut last_labels: Option<Health> = None;
    loop {
        if let Some(exit) = node.processes.try_wait(pid) {
            return Some(exit);
        }
        if let Some((port, tls, prefix)) = &vault
            && last_health.is_none_or(|at| at.elapsed() >= HEALTH_INTERVAL)
        {
            last_health = Some(Instant::now());
            let health = probe_health(SocketAddr::from((ip, *port)), *tls).await;
            let ready = health.is_some_and(|h| !h.sealed);
            if ready != status.ready {
                status.set_ready(ready);
                if write_status(node, key, status).is_err() {
                    return None;
                }
            }
            if let Some(health) = health
                && last_labels != Some(health)
            {
                let flag = |on: bool| if on { "true" } else { "false" }.to_string();
                let labels = [
                    (format!("{prefix}-active"), flag(health.active())),
                    (format!("{prefix}-sealed"), flag(health.sealed)),
                    (format!("{prefix}-initialized"), flag(health.initialized)),
                    (format!("{prefix}-perf-standby"), flag(false)),
                ];
                if write_labels(node, key, &labels).is_err() {
                    return None;
                }
                last_labels = Some(health);
            }
        }
        if wait_or_stop(stop, EXIT_POLL).await {
            return None;
        }
    }
}
