//! The adapters to the APIs planx changes: Kubernetes through kube ([`cluster`]) and Vault or
//! OpenBao over HTTP ([`vault`], what the server is and which endpoint each operation takes
//! there in [`server`]; what a snapshot archive must be, and the verified read of a saved one, in
//! [`snapshot_archive`]; a save received on one thread in `snapshot_receive`; which names a TLS server's certificate covers in [`tls_names`]), the one HTTP policy every client follows ([`http`]) and which hosts bypass a proxy ([`proxy`]). They speak the API and say what failed; what a step means is
//! in `actions`, never here.

pub mod cluster;
pub mod http;
pub mod proxy;
pub mod server;
pub mod snapshot_archive;
pub(crate) mod snapshot_receive;
pub mod tls_names;
pub mod vault;
