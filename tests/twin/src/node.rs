//! The "node" of one cluster: what its controllers and kubelet share (store, addresses, process
//! registry, state directory, the `bao` binary) and what they tell tests about running pods
//! (address, process, generated configuration, log and volume directories).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::addresses::{MAX_STATEFULSETS, Slot};
use crate::faults::Faults;
use crate::gateway::GatewayAddresses;
use crate::process::Processes;
use crate::store::Store;
use crate::tls::Authority;

/// What the twin knows about one running pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRuntime {
    pub uid: String,
    pub ip: Option<Ipv4Addr>,
    /// The pid of the container's current process, while it runs.
    pub pid: Option<u32>,
    /// Whether the container runs Vault (`bao server`) rather than a stand-in.
    pub runs_vault: bool,
    /// The configuration file `bao` was last started with.
    pub config: Option<PathBuf>,
    /// Where the container's output goes (appended across restarts and pod incarnations).
    pub log: PathBuf,
    /// Persistent volume directories by volume name.
    pub volumes: Vec<(String, PathBuf)>,
    /// Container restarts in this pod incarnation.
    pub restarts: u32,
}

/// Shared by the controllers and the kubelet of one cluster.
pub struct Node {
    pub cluster_name: String,
    pub cluster_index: usize,
    pub slot: Arc<Slot>,
    pub store: Arc<Store>,
    pub faults: Arc<Faults>,
    pub processes: Arc<Processes>,
    /// `<twin dir>/<cluster>`: pod run directories, persistent volumes and logs.
    pub state_dir: PathBuf,
    /// The `bao` binary, or why it is missing (reported in the pod's status).
    pub bao: Result<PathBuf, String>,
    /// Where the cluster's ingress gateway listens.
    pub gateway: GatewayAddresses,
    /// The CA of the ingress gateways' certificates.
    pub authority: Arc<Authority>,
    /// Signs the service-account tokens of projected volumes.
    pub signer: Arc<crate::identity::TokenSigner>,
    /// The cgroup its pod processes run in (what a network cut between clusters acts on), or
    /// why there is none.
    pub group: Result<crate::netcut::ClusterGroup, String>,
    statefulset_indexes: Mutex<Vec<(String, String)>>,
    pods: Mutex<HashMap<String, PodRuntime>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("cluster_name", &self.cluster_name)
            .field("cluster_index", &self.cluster_index)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What every cluster of one twin shares.
#[derive(Debug)]
pub struct Shared {
    pub slot: Arc<Slot>,
    pub processes: Arc<Processes>,
    /// The `bao` binary, or why it is missing.
    pub bao: Result<PathBuf, String>,
    /// The twin's directory.
    pub dir: PathBuf,
    /// The CA of the ingress gateways' certificates.
    pub authority: Arc<Authority>,
    /// Signs the service-account tokens of projected volumes.
    pub signer: Arc<crate::identity::TokenSigner>,
}

impl Node {
    pub fn new(
        cluster_name: &str,
        cluster_index: usize,
        shared: &Shared,
        store: Arc<Store>,
        faults: Arc<Faults>,
        gateway: GatewayAddresses,
    ) -> Node {
        Node {
            cluster_name: cluster_name.to_string(),
            cluster_index,
            slot: shared.slot.clone(),
            store,
            faults,
            processes: shared.processes.clone(),
            state_dir: {
                let dir = shared.dir.join(cluster_name);
                let _ = crate::twin::create_private_dir(&dir);
                dir
            },
            bao: shared.bao.clone(),
            gateway,
            authority: shared.authority.clone(),
            signer: shared.signer.clone(),
            group: crate::netcut::ClusterGroup::create(cluster_name),
            statefulset_indexes: Mutex::new(Vec::new()),
            pods: Mutex::new(HashMap::new()),
        }
    }

    /// The index of StatefulSet `namespace/name` in this cluster (assigned on first use, stable
    /// for the life of the twin); `None` once every index is taken.
    pub fn statefulset_index(&self, namespace: &str, name: &str) -> Option<usize> {
        let mut indexes = lock(&self.statefulset_indexes);
        let key = (namespace.to_string(), name.to_string());
        if let Some(index) = indexes.iter().position(|k| *k == key) {
            return Some(index);
        }
        if indexes.len() >= MAX_STATEFULSETS {
            return None;
        }
        indexes.push(key);
        Some(indexes.len() - 1)
    }

    /// The addresses of the pods that have run here.
    pub fn pod_ips(&self) -> Vec<Ipv4Addr> {
        lock(&self.pods).values().filter_map(|pod| pod.ip).collect()
    }

    /// The address pod `ordinal` of StatefulSet `namespace/name` gets.
    pub fn pod_ip(&self, namespace: &str, statefulset: &str, ordinal: u32) -> Option<Ipv4Addr> {
        let index = self.statefulset_index(namespace, statefulset)?;
        self.slot.pod_ip(self.cluster_index, index, ordinal)
    }

    /// What the twin knows about pod `namespace/name`, if it has run.
    pub fn pod_runtime(&self, namespace: &str, name: &str) -> Option<PodRuntime> {
        lock(&self.pods)
            .get(&format!("{namespace}/{name}"))
            .cloned()
    }

    /// Changes (or creates) the record of pod `namespace/name`.
    pub fn update_pod_runtime(
        &self,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&mut PodRuntime),
    ) {
        let mut pods = lock(&self.pods);
        change(pods.entry(format!("{namespace}/{name}")).or_default());
    }

    /// Directory of one pod incarnation (configuration copies, emptyDirs, `/tmp`).
    pub fn pod_dir(&self, namespace: &str, name: &str) -> PathBuf {
        self.state_dir.join("pods").join(namespace).join(name)
    }

    /// The persistent directory of claim `claim` (survives pod restarts).
    pub fn claim_dir(&self, namespace: &str, claim: &str) -> PathBuf {
        self.state_dir.join("volumes").join(namespace).join(claim)
    }

    /// The log of pod `namespace/name`.
    pub fn log_path(&self, namespace: &str, name: &str) -> PathBuf {
        self.state_dir
            .join("logs")
            .join(namespace)
            .join(format!("{name}.log"))
    }
}
