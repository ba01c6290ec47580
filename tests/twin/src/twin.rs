//! `Twin`: a set of named clusters, each an API server on its own loopback port, served by one
//! runtime on a thread of its own, with the kubeconfig that reaches them; with workloads, also
//! each cluster's StatefulSet controller and kubelet (real processes) and ingress gateway.
//! Dropping it stops every server and every process it started.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::addresses::{MAX_CLUSTERS, Slot};
use crate::faults::{Fault, Faults, PodFault};
use crate::kubeconfig;
use crate::node::{Node, PodRuntime, Shared};
use crate::process::Processes;
use crate::server::{self, ClusterState, ServerSettings};
use crate::store::{DEFAULT_HISTORY_CAPACITY, Store};
use crate::tls::Authority;

/// The file in the twin's directory holding the ingress gateways' CA certificate (PEM).
pub const CA_FILE: &str = "ca.pem";

/// How to start a twin.
#[derive(Debug, Clone)]
pub struct TwinOptions {
    /// Cluster names; each becomes a kubeconfig context of the same name.
    pub clusters: Vec<String>,
    /// Where the kubeconfig goes. `None`: a private temporary directory removed with the twin.
    pub dir: Option<PathBuf>,
    pub settings: ServerSettings,
    /// Watch events kept per cluster for watches from an older resourceVersion.
    pub history_capacity: usize,
    /// Run workloads: StatefulSet controllers, pods as real processes, ingress gateways.
    pub workloads: bool,
    /// The OpenBao release Vault pods run.
    pub openbao: crate::bao::OpenBao,
}

impl TwinOptions {
    pub fn new(clusters: &[&str]) -> TwinOptions {
        TwinOptions {
            clusters: clusters.iter().map(|name| name.to_string()).collect(),
            dir: None,
            settings: ServerSettings::default(),
            history_capacity: DEFAULT_HISTORY_CAPACITY,
            workloads: false,
            openbao: crate::bao::OpenBao::default(),
        }
    }

    /// Also run workloads: StatefulSet pods as real processes (`bao` for the Vault chart's
    /// container), each on its own loopback address, and an ingress gateway per cluster.
    pub fn with_workloads(mut self) -> TwinOptions {
        self.workloads = true;
        self
    }

    pub fn dir(mut self, dir: &Path) -> TwinOptions {
        self.dir = Some(dir.to_path_buf());
        self
    }
}

/// One cluster of a twin: its API server's address, store and fault rules. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Cluster {
    state: Arc<ClusterState>,
}

impl Cluster {
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.state.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.state.address
    }

    /// The objects, for in-process controllers and assertions.
    /// Where a client inside the cluster reaches port `port` of Service `namespace/name`: its
    /// ClusterIP, which the cluster's kube-proxy forwards (with workloads).
    pub fn service_address(&self, namespace: &str, name: &str, port: u16) -> Option<SocketAddr> {
        let services = crate::catalog::find("", "v1", "services")?;
        let service = self.state.store.get(services, namespace, name).ok()?;
        let ip = service.pointer("/spec/clusterIP")?.as_str()?.parse().ok()?;
        Some(SocketAddr::new(ip, port))
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.state.store
    }

    pub fn faults(&self) -> &Faults {
        &self.state.faults
    }

    /// Adds a fault rule.
    pub fn inject(&self, fault: Fault) {
        self.state.faults.inject(fault);
    }

    /// The node running this cluster's workloads (`None` unless the twin runs workloads).
    pub fn node(&self) -> Option<&Arc<Node>> {
        self.state.node.as_ref()
    }

    /// What the twin knows about pod `namespace/pod` (address, process, configuration, log,
    /// volumes), once it has run.
    pub fn pod_runtime(&self, namespace: &str, pod: &str) -> Option<PodRuntime> {
        self.node()?.pod_runtime(namespace, pod)
    }

    /// Makes every future start of pod `namespace/pod`'s container fail at once (exit code 1),
    /// until `clear_pod_fault`.
    pub fn fail_pod_start(&self, namespace: &str, pod: &str) {
        self.state
            .faults
            .add_pod_fault(namespace, pod, PodFault::FailStart);
    }

    /// Cuts pod `namespace/pod` off the network: the ingress gateway and port-forward no longer
    /// reach it, until `clear_pod_fault`.
    pub fn cut_pod_network(&self, namespace: &str, pod: &str) {
        self.state
            .faults
            .add_pod_fault(namespace, pod, PodFault::NetworkCut);
    }

    /// Makes SelfSubjectAccessReviews (`kubectl auth can-i`, planx's permissions preflight)
    /// deny `verb` on `resource` (`pods/exec`, `apps/statefulsets`, ...).
    pub fn deny(&self, verb: &str, resource: &str) {
        self.state.faults.deny(verb, resource);
    }

    /// Cuts the network between this cluster's pods and `other`'s, for the pods' own processes
    /// (raft, joins, forwarding): TCP from one side's processes to the other side's pod
    /// addresses is reset, both ways, until the returned cut is dropped. Clients, planx and the
    /// twin still reach every pod. Pods must have run on both sides.
    pub fn cut_network_to(&self, other: &Cluster) -> Result<crate::netcut::NetCut, String> {
        let (Some(own), Some(theirs)) = (self.node(), other.node()) else {
            return Err("both clusters must run workloads".into());
        };
        fn group(node: &Node) -> Result<&crate::netcut::ClusterGroup, String> {
            node.group.as_ref().map_err(|why| {
                format!(
                    "cluster {} runs its pods in no cgroup: {why}",
                    node.cluster_name
                )
            })
        }
        crate::netcut::NetCut::between(
            group(own)?,
            &own.pod_ips(),
            group(theirs)?,
            &theirs.pod_ips(),
        )
    }

    /// Cuts pod `namespace/pod` off the other clusters: what it runs in exec reaches only this
    /// cluster's pods, until `clear_pod_fault`.
    pub fn cut_pod_from_other_clusters(&self, namespace: &str, pod: &str) {
        self.state
            .faults
            .add_pod_fault(namespace, pod, PodFault::OtherClustersCut);
    }

    pub fn clear_pod_fault(&self, namespace: &str, pod: &str, fault: PodFault) {
        self.state.faults.clear_pod_fault(namespace, pod, fault);
    }

    /// Makes port-forward to pod `namespace/pod` connect to `address` instead of `status.podIP`.
    pub fn set_pod_address(&self, namespace: &str, pod: &str, address: IpAddr) {
        self.state
            .pod_addresses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(format!("{namespace}/{pod}"), address);
    }
}

/// Running clusters. Dropping it (or `shutdown`) stops every server and closes every connection.
#[derive(Debug)]
pub struct Twin {
    clusters: Vec<Cluster>,
    shared: Option<Arc<Shared>>,
    dir: PathBuf,
    owned_dir: bool,
    kubeconfig: PathBuf,
    runtime: tokio::runtime::Handle,
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Why a twin could not start.
#[derive(Debug)]
pub enum StartError {
    InvalidName(String),
    Io(String, std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::InvalidName(why) => f.write_str(why),
            StartError::Io(what, error) => write!(f, "{what}: {error}"),
        }
    }
}

impl std::error::Error for StartError {}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let what = what.into();
    move |error| StartError::Io(what, error)
}

/// Creates `dir` (and parents) with mode 0700, or sets an existing one to 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

impl Twin {
    /// Starts clusters with these names and default options.
    pub fn start(clusters: &[&str]) -> Result<Twin, StartError> {
        Twin::start_with(TwinOptions::new(clusters))
    }

    pub fn start_with(options: TwinOptions) -> Result<Twin, StartError> {
        check_names(&options.clusters)?;
        let (dir, owned_dir) = match &options.dir {
            Some(dir) => (dir.clone(), false),
            None => (
                std::env::temp_dir().join(format!("twin-{}", uuid::Uuid::new_v4().simple())),
                true,
            ),
        };
        create_private_dir(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
        let started = Twin::start_in(options, &dir, owned_dir);
        if started.is_err() && owned_dir {
            let _ = std::fs::remove_dir_all(&dir);
        }
        started
    }

    fn start_in(options: TwinOptions, dir: &Path, owned_dir: bool) -> Result<Twin, StartError> {
        let dir = dir
            .canonicalize()
            .map_err(io(format!("cannot resolve {}", dir.display())))?;
        let shared = if options.workloads {
            if options.clusters.len() > MAX_CLUSTERS {
                return Err(StartError::InvalidName(format!(
                    "a twin with workloads holds at most {MAX_CLUSTERS} clusters"
                )));
            }
            let slot = Slot::acquire().map_err(io("cannot reserve loopback addresses"))?;
            let processes = Processes::new(&dir.join("pids"))
                .map_err(io(format!("cannot create {}", dir.join("pids").display())))?;
            let authority =
                Authority::generate(&format!("twin CA {}", dir.display())).map_err(|why| {
                    StartError::Io(why, std::io::Error::other("certificate authority"))
                })?;
            let ca_path = dir.join(CA_FILE);
            kubeconfig::write_private(&ca_path, authority.ca_pem())
                .map_err(io(format!("cannot write {}", ca_path.display())))?;
            Some(Arc::new(Shared {
                slot: Arc::new(slot),
                processes: Arc::new(processes),
                bao: options
                    .openbao
                    .path()
                    .map(|path| path.canonicalize().unwrap_or(path))
                    .map_err(|missing| missing.to_string()),
                dir: dir.clone(),
                authority: Arc::new(authority),
                signer: Arc::new(crate::identity::TokenSigner::for_dir(&dir).map_err(io(
                    format!("cannot write the signing key in {}", dir.display()),
                ))?),
            }))
        } else {
            None
        };
        let mut listeners = Vec::new();
        let mut gateways = Vec::new();
        let mut clusters = Vec::new();
        for (index, name) in options.clusters.iter().enumerate() {
            let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
                .map_err(io(format!("cannot listen on 127.0.0.1 for cluster {name}")))?;
            listener
                .set_nonblocking(true)
                .map_err(io("cannot make the listener non-blocking"))?;
            let address = listener
                .local_addr()
                .map_err(io("cannot read the listener address"))?;
            let store = Arc::new(Store::new(options.history_capacity));
            let faults = Arc::new(Faults::default());
            let mut node = None;
            if let Some(shared) = &shared {
                let ip = shared.slot.gateway_ip(index).ok_or_else(|| {
                    StartError::InvalidName(format!("too many clusters for {name}"))
                })?;
                if let Some(prefix) = shared.slot.service_prefix(index) {
                    store.set_cluster_ip_prefix(prefix);
                }
                store.set_graceful_pod_deletion();
                let (gateway_listeners, addresses) = crate::gateway::bind(ip.into()).map_err(
                    io(format!("cannot listen on {ip} for the gateway of {name}")),
                )?;
                gateways.push((gateway_listeners, name.clone()));
                node = Some(Arc::new(Node::new(
                    name,
                    index,
                    shared,
                    store.clone(),
                    faults.clone(),
                    addresses,
                )));
            }
            let state = Arc::new(ClusterState {
                name: name.clone(),
                address,
                store,
                faults,
                settings: options.settings.clone(),
                pod_addresses: Arc::new(Mutex::new(Default::default())),
                node,
            });
            listeners.push((listener, state.clone()));
            clusters.push(Cluster { state });
        }
        let urls: Vec<String> = clusters.iter().map(Cluster::url).collect();
        let entries: Vec<kubeconfig::Entry<'_>> = clusters
            .iter()
            .zip(&urls)
            .map(|(cluster, url)| kubeconfig::Entry {
                name: cluster.name(),
                server: url,
            })
            .collect();
        let kubeconfig_path = dir.join("kubeconfig");
        kubeconfig::write_private(&kubeconfig_path, &kubeconfig::render(&entries))
            .map_err(io(format!("cannot write {}", kubeconfig_path.display())))?;

        let (shutdown, shutdown_receiver) = watch::channel(false);
        let (ready_sender, ready_receiver) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("twin-api".to_string())
            .spawn(move || run_servers(listeners, gateways, shutdown_receiver, ready_sender))
            .map_err(io("cannot start the server thread"))?;
        let runtime = match ready_receiver.recv() {
            Ok(Ok(runtime)) => runtime,
            Ok(Err(error)) => {
                return Err(StartError::Io(
                    "cannot start the server runtime".to_string(),
                    error,
                ));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(StartError::Io(
                    "the server thread stopped at start".to_string(),
                    std::io::Error::other("no runtime"),
                ));
            }
        };
        Ok(Twin {
            clusters,
            shared,
            dir,
            owned_dir,
            kubeconfig: kubeconfig_path,
            runtime,
            shutdown,
            thread: Some(thread),
        })
    }

    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    /// The cluster named `name`; panics with the known names if there is none.
    pub fn cluster(&self, name: &str) -> &Cluster {
        self.clusters
            .iter()
            .find(|cluster| cluster.name() == name)
            .unwrap_or_else(|| {
                let names: Vec<&str> = self.clusters.iter().map(Cluster::name).collect();
                panic!("the twin has no cluster {name:?} (it has {names:?})")
            })
    }

    /// The kubeconfig with one context per cluster (context name = cluster name).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The directory holding the kubeconfig.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The runtime serving the clusters, for in-process controllers.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// The processes this twin started and that still run: (pid, name).
    pub fn processes(&self) -> Vec<(u32, String)> {
        self.shared
            .as_ref()
            .map(|shared| shared.processes.list())
            .unwrap_or_default()
    }

    /// What every cluster shares (addresses, processes), when the twin runs workloads.
    pub fn shared(&self) -> Option<&Arc<Shared>> {
        self.shared.as_ref()
    }

    /// Stops every server and process and waits until all connections are closed.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(shared) = &self.shared {
            shared.processes.stop_all(crate::kubelet::MAX_GRACE);
        }
        if self.owned_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for Twin {
    fn drop(&mut self) {
        self.stop();
    }
}

fn check_names(names: &[String]) -> Result<(), StartError> {
    if names.is_empty() {
        return Err(StartError::InvalidName(
            "a twin needs at least one cluster".to_string(),
        ));
    }
    for (index, name) in names.iter().enumerate() {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !valid {
            return Err(StartError::InvalidName(format!(
                "cluster name {name:?} must be lowercase letters, digits and '-' (at most 63)"
            )));
        }
        if names[..index].contains(name) {
            return Err(StartError::InvalidName(format!(
                "cluster name {name:?} is given twice"
            )));
        }
    }
    Ok(())
}

type Ready = std::sync::mpsc::Sender<std::io::Result<tokio::runtime::Handle>>;

/// The server thread: one current-thread runtime serving every cluster until shutdown; leaving
/// it drops the runtime, which closes every connection and ends every watch.
fn run_servers(
    listeners: Vec<(std::net::TcpListener, Arc<ClusterState>)>,
    gateways: Vec<(Vec<std::net::TcpListener>, String)>,
    shutdown: watch::Receiver<bool>,
    ready: Ready,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    let gateways_authority = listeners
        .first()
        .and_then(|(_, state)| state.node.as_ref().map(|node| node.authority.clone()));
    runtime.block_on(async move {
        let mut servers = tokio::task::JoinSet::new();
        let authority = gateways_authority;
        let states: Vec<(String, Arc<ClusterState>)> = listeners
            .iter()
            .map(|(_, state)| (state.name.clone(), state.clone()))
            .collect();
        for (listener, state) in listeners {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => {
                    servers.spawn(server::serve(listener, state, shutdown.clone()));
                }
                Err(error) => {
                    let _ = ready.send(Err(error));
                    return;
                }
            }
        }
        for (_, state) in &states {
            if let Some(node) = &state.node {
                servers.spawn(crate::statefulset::run(node.clone(), shutdown.clone()));
                servers.spawn(crate::kubeproxy::run(state.clone(), shutdown.clone()));
            }
        }
        for (gateway_listeners, name) in gateways {
            let Some(state) = states
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, s)| s.clone())
            else {
                continue;
            };
            let Some(authority) = authority.clone() else {
                continue;
            };
            for listener in gateway_listeners {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => {
                        servers.spawn(crate::gateway::serve(
                            listener,
                            state.clone(),
                            authority.clone(),
                            shutdown.clone(),
                        ));
                    }
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                }
            }
        }
        let _ = ready.send(Ok(tokio::runtime::Handle::current()));
        while servers.join_next().await.is_some() {}
    });
}
