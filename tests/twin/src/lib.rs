//! A local twin of Kubernetes clusters for tests and rehearsals: in-memory API servers on
//! loopback that the `kube` client and the real `kubectl` accept, and (with workloads) the
//! StatefulSet pods of the Vault Helm chart running as real OpenBao (`bao`) processes, an ingress
//! gateway per cluster and transit key services.
//!
//! ```no_run
//! let twin = twin::Twin::start(&["old", "new"]).unwrap();
//! println!("KUBECONFIG={}", twin.kubeconfig_path().display());
//! println!("old API server: {}", twin.cluster("old").url());
//! // dropping `twin` stops both servers
//! ```
//!
//! ```no_run
//! # async fn demo() -> Result<(), String> {
//! // OLD initialised with data and NEW empty, each with 3 bao pods and a key service.
//! let scenario = twin::Scenario::start_async(twin::ScenarioOptions::vault_pair()).await?;
//! let old = scenario.vault("old");
//! let (code, _) = old.ingress_endpoint("https").unwrap()
//!     .json("GET", "/v1/sys/health", old.root_token(), None).await.map_err(|e| e.to_string())?;
//! assert_eq!(code, 200);
//! // dropping `scenario` stops every server and process
//! # Ok(()) }
//! ```
//!
//! What is modelled: discovery, OpenAPI v3 enough for `kubectl apply`, CRUD with
//! resourceVersion/uid/generation, label and field selectors, the four patch types, delete
//! preconditions and finalizers, `status`, `scale` and `log` (`podlog`) subresources, watches with bookmarks,
//! port-forward over WebSocket (`v4.channel.k8s.io`, as kube-rs speaks it), and exec over
//! WebSocket for one command, the reachability probe `nc -z` (`exec`), and
//! SelfSubjectAccessReviews (allowed unless a fault denies a verb on a resource). With workloads
//! (`TwinOptions::with_workloads`): a StatefulSet controller (Parallel, OnDelete), a kubelet
//! running each pod as a process on its own loopback address (`kubelet`, `chart`), ingress
//! gateways (`gateway`, `tls`), a kube-proxy per cluster forwarding Service ClusterIPs (from the
//! twin's loopback range) to endpoints (`kubeproxy`), Events from the StatefulSet controller and
//! the kubelet (`events`), key services (`keyservice`), pod faults
//! (`faults`), and the write probe that counts acknowledged and lost writes (`probe`).
//!
//! What is not: authentication and authorization (any token is accepted, every request is
//! served whatever the access reviews answer); admission and schema
//! validation; server-side apply conflicts and field removal (apply merges like a strategic merge
//! patch and records one `managedFields` entry per manager); Tables other than for Pods, Services,
//! StatefulSets, ConfigMaps, Ingresses, EndpointSlices, Leases and Events (`table`; other kinds print
//! NAME and AGE); paging (`limit` is ignored); protobuf bodies other than the Namespaces, ConfigMaps
//! and Secrets that `kubectl create` sends; port-forward over SPDY (what `kubectl port-forward`
//! uses); exec of any command but `nc -z`; Deployments, PersistentVolumeClaims as objects, RBAC, and the other limits listed in the
//! README.

pub mod addresses;
pub mod api;
pub mod azure;
pub mod bao;
pub mod catalog;
pub mod channels;
pub mod chart;
pub mod clock;
pub mod daemon;
pub mod discovery;
pub mod events;
pub mod exec;
pub mod faults;
pub mod gateway;
pub mod hcl;
pub mod httpc;
pub mod identity;
pub mod install;
pub mod keyservice;
pub mod kubeconfig;
pub mod kubelet;
pub mod kubeproxy;
pub mod netcut;
pub mod netwatch;
pub mod node;
pub mod patch;
pub mod podlog;
pub mod portforward;
pub mod probe;
pub mod process;
pub mod protobuf;
pub mod scenario;
pub mod scenario_azure;
pub mod selector;
pub mod server;
pub mod statefulset;
pub mod status;
pub mod store;
pub mod table;
pub mod tls;
pub mod twin;
pub mod watch;

pub use bao::{BaoNotFound, bao_path};
pub use faults::{Fault, PodFault, Verb};
pub use node::PodRuntime;
pub use scenario::{ClusterPlan, Init, Scenario, ScenarioOptions, VaultCluster};
pub use server::ServerSettings;
pub use status::ApiError;
pub use store::Store;
pub use twin::{Cluster, StartError, Twin, TwinOptions};
