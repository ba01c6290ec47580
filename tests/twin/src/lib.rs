//! A local twin of Kubernetes clusters for tests and rehearsals: in-memory API servers on
//! loopback that the `kube` client and the real `kubectl` accept.
//!
//! ```no_run
//! let twin = twin::Twin::start(&["old", "new"]).unwrap();
//! println!("KUBECONFIG={}", twin.kubeconfig_path().display());
//! println!("old API server: {}", twin.cluster("old").url());
//! // dropping `twin` stops both servers
//! ```
//!
//! What is modelled: discovery, OpenAPI v3 enough for `kubectl apply`, CRUD with
//! resourceVersion/uid/generation, label and field selectors, the four patch types, delete
//! preconditions and finalizers, `status` and `scale` subresources, watches with bookmarks, and
//! port-forward over WebSocket (`v4.channel.k8s.io`, as kube-rs speaks it).
//!
//! What is not: authentication and authorization (any token is accepted); admission and schema
//! validation; server-side apply conflicts and field removal (apply merges like a strategic merge
//! patch and records one `managedFields` entry per manager); Tables (`kubectl get` shows NAME and
//! AGE only); paging (`limit` is ignored); protobuf bodies other than the Namespaces, ConfigMaps
//! and Secrets that `kubectl create` sends; port-forward over SPDY (what `kubectl port-forward`
//! uses); and controllers (nothing creates pods for a StatefulSet yet).

pub mod api;
pub mod bao;
pub mod catalog;
pub mod clock;
pub mod daemon;
pub mod discovery;
pub mod faults;
pub mod kubeconfig;
pub mod patch;
pub mod portforward;
pub mod protobuf;
pub mod selector;
pub mod server;
pub mod status;
pub mod store;
pub mod twin;
pub mod watch;

pub use bao::{BaoNotFound, bao_path};
pub use faults::{Fault, Verb};
pub use server::ServerSettings;
pub use status::ApiError;
pub use store::Store;
pub use twin::{Cluster, StartError, Twin, TwinOptions};
