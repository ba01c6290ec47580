//! The closed catalog of action names and the typed input (`with:`) of each action.
//!
//! Every input struct rejects unknown fields. Fields typed [`SecretRef`] only accept a reference
//! to a secret parameter or to a sensitive step output, never a literal.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A secret given by reference: `{{ params.NAME }}` of a `secret` parameter, or
/// `{{ steps.ID.outputs.token }}` of a step whose output is sensitive. Only planx resolves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
#[schemars(
    description = "A secret by reference: `{{ params.NAME }}` of a secret parameter or `{{ steps.ID.outputs.token }}`; never a literal"
)]
pub struct SecretRef(pub String);

/// Kubernetes object kinds the actions can back up, delete and restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ObjectKind {
    ConfigMap,
    Secret,
    Service,
    StatefulSet,
    Ingress,
    EndpointSlice,
    PodDisruptionBudget,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::ConfigMap => "ConfigMap",
            ObjectKind::Secret => "Secret",
            ObjectKind::Service => "Service",
            ObjectKind::StatefulSet => "StatefulSet",
            ObjectKind::Ingress => "Ingress",
            ObjectKind::EndpointSlice => "EndpointSlice",
            ObjectKind::PodDisruptionBudget => "PodDisruptionBudget",
        }
    }
}

/// Addresses one `seal` block of a Vault configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SealSelector {
    /// Seal type, the block's label: `azurekeyvault`, `transit`, `awskms`, `gcpckms`, ...
    #[serde(rename = "type")]
    pub seal_type: String,
    /// The block's `name` attribute, when two blocks share a type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Which pods of a Vault StatefulSet a restart addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PodSet {
    /// Every pod of the StatefulSet, all at once (the seed's `kubectl delete pod --selector`).
    All,
    /// The active node, looked up again right before the restart.
    Leader,
    /// Every standby, one at a time.
    Followers,
}

/// What a restart waits for once the pod is back with a new uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartWait {
    /// Phase Running with a new uid (sealed pods are NotReady, so never wait for Ready here).
    Running,
    /// Running and `sys/seal-status` reports `sealed: false`.
    Unsealed,
    /// Running and `sys/seal-status` reports `sealed: true`.
    Sealed,
}

/// `preflight.cluster`: the kubeconfig context exists, the API answers, the namespace is readable
/// and the API groups the plan needs are served.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreflightClusterInput {
    /// API group versions that must be served.
    #[serde(default = "default_api_versions")]
    pub api_versions: Vec<String>,
}

fn default_api_versions() -> Vec<String> {
    [
        "v1",
        "apps/v1",
        "networking.k8s.io/v1",
        "discovery.k8s.io/v1",
    ]
    .map(String::from)
    .to_vec()
}

/// `preflight.replicas`: the Vault StatefulSet has at least this many available replicas.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreflightReplicasInput {
    pub expected: u32,
}

/// `preflight.key-access`: the identity the Vault pods use can wrap and unwrap with the key.
/// For transit the probe uses the target's own token.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreflightKeyAccessInput {
    /// The identity the Vault pods use: an Azure managed identity client id, an AWS role ARN,
    /// a GCP service account. Unused for transit, which probes with the target's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Role the identity needs on an Azure Key Vault in RBAC mode.
    #[serde(default = "default_key_role")]
    pub role: String,
}

fn default_key_role() -> String {
    "Key Vault Crypto Service Encryption User".into()
}

/// `preflight.recovery-keys`: the keys open this Vault, proved before anything restarts. planx
/// starts a root-token generation with a one-time pad, submits the keys (a wrong one fails the
/// check at the threshold), and revokes the decoded token at once; an attempt already in
/// progress is refused, not cancelled.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreflightRecoveryKeysInput {
    /// The recovery keys (or unseal keys of a Shamir-sealed Vault), one per line.
    pub recovery_keys: SecretRef,
    /// A token with `sudo` on `sys/generate-root-token/*` (OpenBao 2.6+ asks for one).
    pub token: SecretRef,
}

/// `preflight.seal-overrides`: the Vault container sets no environment variable that overrides
/// the seal configuration (`VAULT_SEAL_TYPE`, `VAULT_AZUREKEYVAULT_*`, `VAULT_TRANSIT_SEAL_*`, ...).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreflightSealOverridesInput {}

/// `vault.token-create`: an orphan token with the least-privilege migration policy.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreateInput {
    /// A token allowed to write policies and create tokens.
    pub admin_token: SecretRef,
    #[serde(default = "default_policy_name")]
    pub policy_name: String,
    /// Time to live: must cover the run up to the last use of the token.
    #[serde(default = "default_token_ttl")]
    pub ttl: String,
}

fn default_policy_name() -> String {
    "planx-migration".into()
}

fn default_token_ttl() -> String {
    "2h".into()
}

/// `vault.token-revoke`: revoke a token (by itself), at the end of a run.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRevokeInput {
    pub token: SecretRef,
}

/// `k8s.backup`: store an object, cleaned of server fields, in the run directory.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupInput {
    pub kind: ObjectKind,
    pub name: String,
    /// Succeed without a backup when the object does not exist (its output `backup` is null).
    #[serde(default)]
    pub if_exists: bool,
}

/// `k8s.delete`: delete an object and wait until it is gone.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteInput {
    pub kind: ObjectKind,
    pub name: String,
    #[serde(default = "default_true")]
    pub wait: bool,
    /// Succeed when the object does not exist (a delete of nothing).
    #[serde(default)]
    pub if_exists: bool,
}

fn default_true() -> bool {
    true
}

/// How a restore writes the object back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestoreMode {
    /// Create it; fails when it exists.
    Create,
    /// Replace the live object (carrying its resourceVersion), or create it when missing.
    Replace,
}

/// `k8s.restore`: write a backed-up object back.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreInput {
    /// A backup: `{{ steps.ID.outputs.backup }}`, or a file path in a run directory.
    pub backup: String,
    #[serde(default = "default_restore_mode")]
    pub mode: RestoreMode,
}

fn default_restore_mode() -> RestoreMode {
    RestoreMode::Replace
}

/// `k8s.patch-args`: set the args of one container of a StatefulSet (strategic merge, by
/// container name).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchArgsInput {
    pub statefulset: String,
    #[serde(default = "default_container")]
    pub container: String,
    pub args: Vec<String>,
}

fn default_container() -> String {
    "vault".into()
}

/// `vault.restart`: delete pods with a uid precondition and wait for them to come back.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestartInput {
    /// `all`, `leader` or `followers`; exclusive with `pod`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<PodSet>,
    /// One pod by name, e.g. `{{ item }}` in a `for_each`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The pods matching this label selector, instead of the target's own selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default = "default_restart_wait")]
    pub wait: RestartWait,
}

fn default_restart_wait() -> RestartWait {
    RestartWait::Running
}

/// `vault.block-services`: take the selectors off the Vault's client Services (the target's
/// `service`, `active_service` and `standby_service`), so clients inside the cluster reach no
/// pod; planx still reaches the pods directly.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockServicesInput {}

/// `vault.snapshot-save`: stream a raft snapshot from the active node to the run directory.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSaveInput {
    pub token: SecretRef,
}

/// `vault.snapshot-restore`: stream a snapshot into `sys/storage/raft/snapshot-force`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRestoreInput {
    /// `{{ steps.ID.outputs.snapshot }}` of a `vault.snapshot-save` step.
    pub snapshot: String,
    /// Expected SHA-256 of the file, checked as it is sent: the file's last 256 KiB are held back
    /// until it matches, so the server never receives a changed file whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub token: SecretRef,
}

/// `vault.snapshot-transfer`: stream a raft snapshot from another Vault's active node straight
/// into this Vault's `sys/storage/raft/snapshot-force`, writing and hashing a copy in the run
/// directory on the way (one pass, no second read of the disk).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotTransferInput {
    /// Id of the Vault target the snapshot is taken from.
    pub from: String,
    /// A token of the source with read on `sys/storage/raft/snapshot`.
    pub source_token: SecretRef,
    /// A token of this Vault with update on `sys/storage/raft/snapshot-force`.
    pub token: SecretRef,
    /// What this Vault does with the restored data.
    #[serde(default = "default_transfer_expect")]
    pub expect: TransferExpect,
}

fn default_transfer_expect() -> TransferExpect {
    TransferExpect::Sealed
}

/// What a Vault does after a snapshot of another Vault is forced into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TransferExpect {
    /// Its seal cannot unwrap the restored keys (another key): every node seals itself, and it
    /// must be pointed at the source's key and restarted.
    Sealed,
    /// Its seal already uses the source's key: it stays unsealed and serves the restored data
    /// (planx waits until the source's token is valid on it).
    Serving,
}

/// `vault.seal-point-at-key`: point an existing seal block at the key of a key-service target.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SealPointAtKeyInput {
    pub seal: SealSelector,
    /// Id of a key-service target (`azurekeyvault`, `transit`, `awskms`, `gcpckms`).
    pub key_service: String,
    /// Extra attributes to set in the block, e.g. `client_id` for Azure.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub attributes: IndexMap<String, String>,
    /// The client secret of the service principal the seal signs in as (Azure), by reference;
    /// set as `client_secret` in the block. A parameter set to `none` writes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<SecretRef>,
}

/// `vault.seal-disable-and-add`: mark a seal block `disabled = "true"` and add a new block beside
/// it that points at another key: the configuration that starts a seal migration.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SealDisableAndAddInput {
    /// The block to disable.
    pub seal: SealSelector,
    /// Id of the key-service target the new block points at.
    pub key_service: String,
    /// `name` of the new block (Vault 1.16+ wants distinct names for blocks of one type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub attributes: IndexMap<String, String>,
    /// The client secret of the service principal the seal signs in as (Azure), by reference;
    /// set as `client_secret` in the new block. A parameter set to `none` writes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<SecretRef>,
}

/// `vault.seal-remove-disabled`: remove the seal block marked `disabled`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SealRemoveDisabledInput {
    /// Narrow the match when more than one block could be meant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<SealSelector>,
}

/// `vault.leader`: look up the active node and the standbys.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaderInput {}

/// `vault.seal-migrate`: restart one follower into migration mode and unseal it with the
/// recovery keys and `migrate: true`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SealMigrateInput {
    /// The follower pod, usually `{{ item }}` of a `for_each` over `vault.leader`'s followers.
    pub pod: String,
    /// Recovery keys of the cluster whose data the nodes hold (after a restore: the source's).
    pub recovery_keys: SecretRef,
}

/// `vault.step-down`: make the active node step down and wait for a new leader that has
/// finished the seal migration.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepDownInput {
    /// A token with `update` and `sudo` on `sys/step-down` (after a restore: the source's).
    pub token: SecretRef,
}

/// `preflight.raft-join`: before anything changes, this Vault's pods can join the raft cluster
/// of `to`: its configuration has no `retry_join`, every pod answers uninitialised, no pod could
/// be mistaken for one of `to`'s peers (its IP, DNS name or node id), and from inside each pod
/// (`nc -z` in its Vault container) every peer's API and cluster ports connect.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreflightRaftJoinInput {
    /// Id of the Vault target whose raft cluster the pods will join.
    pub to: String,
    /// A token of `to` with `read` on `sys/storage/raft/configuration`.
    pub token: SecretRef,
    /// The CA certificate (PEM) the join will be given (`vault.raft-join`'s `leader_ca_cert`):
    /// the API certificate of `to`'s active node must chain to it, as a joining pod will check.
    /// Without it only the certificate's names are checked (the pods' own roots judge the
    /// chain); an empty string is the same as none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_ca_cert: Option<String>,
}

/// `vault.raft-join`: every pod of this Vault, uninitialised and sealed by the key of the Vault
/// `to`, joins `to`'s raft cluster as a non-voter, one at a time; planx waits until each has
/// unsealed and caught up with the active node. The data moves through raft while `to` serves.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RaftJoinInput {
    /// Id of the Vault target whose raft cluster the pods join.
    pub to: String,
    /// A token of `to` with `read` on `sys/storage/raft/configuration` and `update` on
    /// `sys/storage/raft/remove-peer` (the undo).
    pub token: SecretRef,
    /// API address of `to`'s active node as this Vault's pods reach it; default: the address
    /// the active node advertises (`sys/leader`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_api_addr: Option<String>,
    /// The CA certificate (PEM) that the API certificate at the join address chains to, for an
    /// `https` join address whose certificate the pods' own roots do not trust (a private CA):
    /// sent with each join as `leader_ca_cert`. A certificate, not a secret; without it a pod
    /// verifies the leader with its system roots and refuses a private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_ca_cert: Option<String>,
}

/// `vault.raft-promote`: make the node in `pod` of this Vault a voter of the raft cluster it
/// joined.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RaftPromoteInput {
    /// The pod, e.g. `vault-0`.
    pub pod: String,
    /// A token valid in the raft cluster's data, with `update` on `sys/storage/raft/promote`.
    pub token: SecretRef,
}

/// `vault.raft-remove-peer`: take the node in `pod` of this Vault out of the raft cluster's
/// configuration. Refused while that node is the active one: step it down first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RaftRemovePeerInput {
    /// The pod, e.g. `{{ item }}` of a `for_each` over `vault.leader`'s followers.
    pub pod: String,
    /// A token valid in the raft cluster's data, with `update` on `sys/storage/raft/remove-peer`.
    pub token: SecretRef,
}

/// `k8s.proxy-service`: a Service without selector and an EndpointSlice that send traffic to
/// the address a DNS name resolves to.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyServiceInput {
    #[serde(default = "default_proxy_name")]
    pub name: String,
    /// DNS name resolved at apply time (planx `--resolve host=ip` overrides it).
    pub target_host: String,
    #[serde(default = "default_https_port")]
    pub port: u16,
    #[serde(default = "default_port_name")]
    pub port_name: String,
}

fn default_proxy_name() -> String {
    "vault-migration-proxy".into()
}

fn default_https_port() -> u16 {
    443
}

fn default_port_name() -> String {
    "https".into()
}

/// `k8s.ingress-rewrite`: send an Ingress to another backend service (ingress-nginx annotations).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IngressRewriteInput {
    pub ingress: String,
    /// Start from this backup instead of the live object (the Ingress was deleted earlier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_backup: Option<String>,
    /// Rewrite only the backends on this service (the Vault's active service); without it,
    /// every backend. An Ingress without such a backend is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_service: Option<String>,
    pub service: String,
    pub port: u16,
    /// Host name sent upstream (`nginx.ingress.kubernetes.io/upstream-vhost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_vhost: Option<String>,
    #[serde(default = "default_backend_protocol")]
    pub backend_protocol: String,
    /// Further annotations to set.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub annotations: IndexMap<String, String>,
}

fn default_backend_protocol() -> String {
    "HTTPS".into()
}

/// `vault.verify`: through each URL, log in with the token, list the mounts, read secrets.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyInput {
    pub urls: Vec<String>,
    pub token: SecretRef,
    /// Mounts that must be listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect_mounts: Vec<String>,
}

/// `keys.disable`: withdraw the Vault identity's access to a key service once nothing needs it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeysDisableInput {
    /// The identity whose access is withdrawn: an Azure managed identity client id, an AWS role
    /// ARN, a GCP service account. Unused for transit, where the seal's access is the target's
    /// token, which is revoked.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub identity: String,
    /// Role whose assignments are deleted on an Azure Key Vault in RBAC mode.
    #[serde(default = "default_key_role")]
    pub role: String,
}

macro_rules! action_catalog {
    ($( $variant:ident => $name:literal, $input:ty; )*) => {
        /// Every action a step can `use`. The catalog is closed: a plan names one of these.
        /// Serialised as its name (`vault.snapshot-save`).
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
        )]
        pub enum ActionKind {
            $( #[serde(rename = $name)] $variant, )*
        }

        impl ActionKind {
            pub const ALL: &'static [ActionKind] = &[$( ActionKind::$variant, )*];

            /// The name a plan uses in `uses:`.
            pub fn name(self) -> &'static str {
                match self {
                    $( ActionKind::$variant => $name, )*
                }
            }

            pub fn from_name(name: &str) -> Option<ActionKind> {
                match name {
                    $( $name => Some(ActionKind::$variant), )*
                    _ => None,
                }
            }

            /// Name of the input type in the JSON Schema's `$defs`.
            pub fn input_type_name(self) -> &'static str {
                match self {
                    $( ActionKind::$variant => stringify!($input), )*
                }
            }

            /// Deserialise `with:` into this action's input type, naming the failing field.
            pub fn check_input(self, with: serde_json::Value) -> Result<(), InputError> {
                match self {
                    $( ActionKind::$variant => check::<$input>(with), )*
                }
            }

            /// The JSON Schema of this action's input.
            pub fn input_schema(self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                match self {
                    $( ActionKind::$variant => generator.subschema_for::<$input>(), )*
                }
            }
        }
    };
}

action_catalog! {
    PreflightCluster => "preflight.cluster", PreflightClusterInput;
    PreflightReplicas => "preflight.replicas", PreflightReplicasInput;
    PreflightKeyAccess => "preflight.key-access", PreflightKeyAccessInput;
    PreflightRecoveryKeys => "preflight.recovery-keys", PreflightRecoveryKeysInput;
    PreflightSealOverrides => "preflight.seal-overrides", PreflightSealOverridesInput;
    PreflightRaftJoin => "preflight.raft-join", PreflightRaftJoinInput;
    TokenCreate => "vault.token-create", TokenCreateInput;
    TokenRevoke => "vault.token-revoke", TokenRevokeInput;
    Backup => "k8s.backup", BackupInput;
    Delete => "k8s.delete", DeleteInput;
    Restore => "k8s.restore", RestoreInput;
    PatchArgs => "k8s.patch-args", PatchArgsInput;
    ProxyService => "k8s.proxy-service", ProxyServiceInput;
    IngressRewrite => "k8s.ingress-rewrite", IngressRewriteInput;
    Restart => "vault.restart", RestartInput;
    BlockServices => "vault.block-services", BlockServicesInput;
    SnapshotSave => "vault.snapshot-save", SnapshotSaveInput;
    SnapshotRestore => "vault.snapshot-restore", SnapshotRestoreInput;
    SnapshotTransfer => "vault.snapshot-transfer", SnapshotTransferInput;
    SealPointAtKey => "vault.seal-point-at-key", SealPointAtKeyInput;
    SealDisableAndAdd => "vault.seal-disable-and-add", SealDisableAndAddInput;
    SealRemoveDisabled => "vault.seal-remove-disabled", SealRemoveDisabledInput;
    Leader => "vault.leader", LeaderInput;
    SealMigrate => "vault.seal-migrate", SealMigrateInput;
    StepDown => "vault.step-down", StepDownInput;
    RaftJoin => "vault.raft-join", RaftJoinInput;
    RaftPromote => "vault.raft-promote", RaftPromoteInput;
    RaftRemovePeer => "vault.raft-remove-peer", RaftRemovePeerInput;
    Verify => "vault.verify", VerifyInput;
    KeysDisable => "keys.disable", KeysDisableInput;
}

/// A `with:` block that does not fit the action's input type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// Path of the offending field inside `with:`, e.g. `seal.type` or `args[0]`; empty for the
    /// block itself.
    pub path: Vec<PathSegment>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    Field(String),
    Index(usize),
}

fn check<T: serde::de::DeserializeOwned>(with: serde_json::Value) -> Result<(), InputError> {
    match serde_path_to_error::deserialize::<_, T>(with) {
        Ok(_) => Ok(()),
        Err(error) => {
            let path = error
                .path()
                .iter()
                .filter_map(|segment| match segment {
                    serde_path_to_error::Segment::Map { key } => {
                        Some(PathSegment::Field(key.clone()))
                    }
                    serde_path_to_error::Segment::Seq { index } => Some(PathSegment::Index(*index)),
                    serde_path_to_error::Segment::Enum { variant } => {
                        Some(PathSegment::Field(variant.clone()))
                    }
                    serde_path_to_error::Segment::Unknown => None,
                })
                .collect();
            Err(InputError {
                path,
                message: error.inner().to_string(),
            })
        }
    }
}
