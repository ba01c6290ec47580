//! The adapters to the APIs planx changes: Kubernetes through kube ([`cluster`]) and Vault or
//! OpenBao over HTTP ([`vault`]), and the one HTTP policy every client follows ([`http`]). They speak the API and say what failed; what a step means is
//! in `actions`, never here.

pub mod cluster;
pub mod http;
pub mod vault;
