//! A local twin of two Kubernetes clusters whose Vault pods are real OpenBao processes.
