//! `preflight.*`: the read-only checks before any change (cluster, replicas, key access,
//! recovery keys, seal overrides).

use crate::catalog::{Action, Line, SideEffect::ReadOnly, TargetRequirement::*, Undo, output};

/// `preflight.cluster`.
pub struct Cluster;

impl Action for Cluster {
    fn line(&self) -> Line {
        Line {
            summary: "check that the context answers, the namespace is readable and the API groups are served",
            target: Kubernetes,
            side_effect: ReadOnly,
            undo: Undo::NotNeeded,
            outputs: &[output!("server_version", "the API server's version")],
            secret_inputs: &[],
            target_inputs: &[],
            chapter: "1.3-1.4",
        }
    }
}

/// `preflight.replicas`.
pub struct Replicas;

impl Action for Replicas {
    fn line(&self) -> Line {
        Line {
            summary: "check that the Vault StatefulSet has the expected available replicas",
            target: Vault,
            side_effect: ReadOnly,
            undo: Undo::NotNeeded,
            outputs: &[output!("available", "available replicas")],
            secret_inputs: &[],
            target_inputs: &[],
            chapter: "1.5",
        }
    }
}

/// `preflight.key-access`.
pub struct KeyAccess;

impl Action for KeyAccess {
    fn line(&self) -> Line {
        Line {
            summary: "check that the Vault identity can wrap and unwrap with the key",
            target: KeyService,
            side_effect: ReadOnly,
            undo: Undo::NotNeeded,
            outputs: &[],
            secret_inputs: &[],
            target_inputs: &[],
            chapter: "1.6",
        }
    }
}

/// `preflight.recovery-keys`.
pub struct RecoveryKeys;

impl Action for RecoveryKeys {
    fn line(&self) -> Line {
        Line {
            summary: "prove that the recovery keys open the Vault (a root token generated and revoked at once)",
            target: Vault,
            side_effect: ReadOnly,
            undo: Undo::NotNeeded,
            outputs: &[],
            secret_inputs: &["recovery_keys", "token"],
            target_inputs: &[],
            chapter: "8",
        }
    }
}

/// `preflight.seal-overrides`.
pub struct SealOverrides;

impl Action for SealOverrides {
    fn line(&self) -> Line {
        Line {
            summary: "check that no container environment variable overrides the seal configuration",
            target: Vault,
            side_effect: ReadOnly,
            undo: Undo::NotNeeded,
            outputs: &[],
            secret_inputs: &[],
            target_inputs: &[],
            chapter: "1",
        }
    }
}
