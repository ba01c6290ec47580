//! Vault's HTTP API as planx uses it: vaultrs where it covers a call (policies, tokens), own
//! endpoints where it does not or falls short (seal-status, unseal with `migrate`, leader,
//! step-down, raft configuration, a health call that tolerates OpenBao), and raft snapshots
//! streamed to and from disk, never whole in memory.

use std::net::SocketAddr;
use std::path::Path;

use futures_util::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::server::Server;
use super::snapshot_archive::StreamRefusal;
use super::snapshot_receive::{self, ReceiveFailure};
use crate::secrets::Secret;

/// What went wrong talking to a Vault. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("{call} on {address}: HTTP {status}: {message}")]
    Status {
        call: &'static str,
        address: String,
        status: u16,
        message: String,
    },
    #[error("{call} on {address}: {source}")]
    Transport {
        call: &'static str,
        address: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{call} on {address}: {message}")]
    Client {
        call: &'static str,
        address: String,
        message: String,
    },
    #[error("snapshot {path}: {message}")]
    Snapshot { path: String, message: String },
}

impl VaultError {
    /// Worth retrying: the server or the network hiccuped, not the request.
    pub fn is_transient(&self) -> bool {
        match self {
            VaultError::Status { status, .. } => matches!(status, 429 | 500 | 502 | 503 | 504),
            VaultError::Transport { source, .. } => source.is_connect() || source.is_timeout(),
            _ => false,
        }
    }
}

/// `sys/seal-status`, with the fields a migration watches.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct SealStatus {
    #[serde(rename = "type")]
    pub seal_type: String,
    pub initialized: bool,
    pub sealed: bool,
    #[serde(rename = "t")]
    pub threshold: u32,
    #[serde(rename = "n")]
    pub shares: u32,
    pub progress: u32,
    #[serde(default)]
    pub migration: bool,
    #[serde(default)]
    pub recovery_seal: bool,
    #[serde(default)]
    pub cluster_id: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
}

/// `sys/leader`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Leader {
    pub ha_enabled: bool,
    /// OpenBao 2.6 leaves it out on a standby.
    #[serde(default)]
    pub is_self: bool,
    #[serde(default)]
    pub leader_address: String,
    #[serde(default)]
    pub leader_cluster_address: String,
    /// Raft log entries this node knows committed, and has applied (0 where not reported).
    #[serde(default)]
    pub raft_committed_index: u64,
    #[serde(default)]
    pub raft_applied_index: u64,
}

/// `sys/health`, whatever the node's state.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Health {
    pub initialized: bool,
    pub sealed: bool,
    pub standby: bool,
    #[serde(default)]
    pub version: String,
}

/// One raft peer from `sys/storage/raft/configuration`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct RaftServer {
    pub node_id: String,
    pub address: String,
    pub leader: bool,
    pub voter: bool,
}

/// A change of a raft cluster's membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaftChange {
    /// A non-voter becomes a voter.
    Promote,
    /// A voter becomes a non-voter.
    Demote,
    /// The node leaves the cluster's configuration.
    RemovePeer,
}

impl RaftChange {
    fn path(self) -> &'static str {
        match self {
            RaftChange::Promote => "promote",
            RaftChange::Demote => "demote",
            RaftChange::RemovePeer => "remove-peer",
        }
    }

    fn call(self) -> &'static str {
        match self {
            RaftChange::Promote => "raft promote",
            RaftChange::Demote => "raft demote",
            RaftChange::RemovePeer => "raft remove-peer",
        }
    }
}

impl RaftServer {
    /// Whether this peer is the node running in pod `pod` at `pod_ip`: its cluster address is
    /// the pod's IP, or a DNS name whose first label is the pod's name (the chart's
    /// `POD.RELEASE-internal`), or its node id is the pod's name.
    pub fn runs_in(&self, pod: &str, pod_ip: Option<&str>) -> bool {
        let host = self
            .address
            .rsplit_once(':')
            .map_or(self.address.as_str(), |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        pod_ip.is_some_and(|ip| ip == host)
            || host.split('.').next() == Some(pod)
            || self.node_id == pod
    }
}

/// A snapshot on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub sha256: String,
    pub bytes: u64,
}

/// One Vault node (or a load-balanced address), reached over HTTP.
#[derive(Clone)]
pub struct Vault {
    address: String,
    http: reqwest::Client,
    /// The `--resolve` pins the client was built with (a snapshot transfer builds its own).
    resolve: Vec<(String, SocketAddr)>,
}

pub use super::http::install_crypto_provider;

impl Vault {
    /// A client for `address`; `resolve` pins host names to socket addresses, as curl's
    /// `--resolve` does (a port-forward, or a test's ingress).
    pub fn new(address: &str, resolve: &[(String, SocketAddr)]) -> Result<Vault, VaultError> {
        let client_error = |message: String| VaultError::Client {
            call: "client",
            address: address.to_string(),
            message,
        };
        let http = super::http::builder(resolve)
            .map_err(client_error)?
            .build()
            .map_err(|e| client_error(e.to_string()))?;
        Ok(Vault {
            address: address.trim_end_matches('/').to_string(),
            http,
            resolve: resolve.to_vec(),
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1/{path}", self.address)
    }

    /// A vaultrs client sharing this client's connection settings and carrying `token`.
    fn vaultrs(
        &self,
        call: &'static str,
        token: &Secret,
    ) -> Result<vaultrs::client::VaultClient, VaultError> {
        let settings = vaultrs::client::VaultClientSettingsBuilder::default()
            .address(&self.address)
            .token(token.expose())
            .build()
            .map_err(|e| VaultError::Client {
                call,
                address: self.address.clone(),
                message: e.to_string(),
            })?;
        let mut client =
            vaultrs::client::VaultClient::new(settings).map_err(|e| self.client_error(call, e))?;
        client.http = rustify::clients::reqwest::Client::new(&self.address, self.http.clone());
        Ok(client)
    }

    fn client_error(&self, call: &'static str, error: vaultrs::error::ClientError) -> VaultError {
        match error {
            vaultrs::error::ClientError::APIError { code, errors } => VaultError::Status {
                call,
                address: self.address.clone(),
                status: code,
                message: errors.join("; "),
            },
            other => VaultError::Client {
                call,
                address: self.address.clone(),
                message: other.to_string(),
            },
        }
    }

    async fn send(
        &self,
        call: &'static str,
        request: reqwest::RequestBuilder,
        accept: &[u16],
    ) -> Result<reqwest::Response, VaultError> {
        let response = request
            .send()
            .await
            .map_err(|source| VaultError::Transport {
                call,
                address: self.address.clone(),
                source,
            })?;
        let status = response.status().as_u16();
        if accept.contains(&status) {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v["errors"].as_array().map(|errors| {
                    errors
                        .iter()
                        .filter_map(|e| e.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                })
            })
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| body.chars().take(300).collect());
        Err(VaultError::Status {
            call,
            address: self.address.clone(),
            status,
            message,
        })
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        call: &'static str,
        response: reqwest::Response,
    ) -> Result<T, VaultError> {
        response
            .json::<T>()
            .await
            .map_err(|source| VaultError::Transport {
                call,
                address: self.address.clone(),
                source,
            })
    }

    pub async fn seal_status(&self) -> Result<SealStatus, VaultError> {
        let response = self.seal_status_response().await?;
        self.json("seal-status", response).await
    }

    async fn seal_status_response(&self) -> Result<reqwest::Response, VaultError> {
        self.send(
            "seal-status",
            self.http.get(self.url("sys/seal-status")),
            &[200],
        )
        .await
    }

    /// One unseal share; with `migrate` for a node in seal migration (sent with every share).
    pub async fn unseal(&self, key: &Secret, migrate: bool) -> Result<SealStatus, VaultError> {
        let body = serde_json::json!({ "key": key.expose(), "migrate": migrate });
        let response = self
            .send(
                "unseal",
                self.http.put(self.url("sys/unseal")).json(&body),
                &[200],
            )
            .await?;
        self.json("unseal", response).await
    }

    pub async fn leader(&self) -> Result<Leader, VaultError> {
        let response = self
            .send("leader", self.http.get(self.url("sys/leader")), &[200])
            .await?;
        self.json("leader", response).await
    }

    /// Whether `token` is valid on this Vault (`auth/token/lookup-self`): `false` on 403.
    pub async fn token_valid(&self, token: &Secret) -> Result<bool, VaultError> {
        let request = self
            .http
            .get(self.url("auth/token/lookup-self"))
            .header("X-Vault-Token", token.expose());
        let response = self.send("lookup-self", request, &[200, 403]).await?;
        Ok(response.status().as_u16() == 200)
    }

    /// The paths of the secret engines mounted (`sys/mounts`), each ending in `/`.
    pub async fn mounts(&self, token: &Secret) -> Result<Vec<String>, VaultError> {
        let request = self
            .http
            .get(self.url("sys/mounts"))
            .header("X-Vault-Token", token.expose());
        let response = self.send("mounts", request, &[200]).await?;
        let body: serde_json::Value = self.json("mounts", response).await?;
        // Vault answers the mounts at the top level and again under `data`.
        let mounts = body["data"].as_object().or(body.as_object());
        Ok(mounts
            .into_iter()
            .flatten()
            .map(|(path, _)| path.clone())
            .filter(|path| path.ends_with('/'))
            .collect())
    }

    /// `sys/health` with every state answering with a body (OpenBao omits fields vaultrs wants).
    pub async fn health(&self) -> Result<Health, VaultError> {
        let response = self.health_response().await?;
        self.json("health", response).await
    }

    /// What the server says it is, from `sys/seal-status` and `sys/health` (both
    /// unauthenticated, answered in every state).
    pub async fn server(&self) -> Result<Server, VaultError> {
        let response = self.seal_status_response().await?;
        let seal_status: serde_json::Value = self.json("seal-status", response).await?;
        let response = self.health_response().await?;
        let health: serde_json::Value = self.json("health", response).await?;
        Server::identify(&seal_status, &health).map_err(|message| VaultError::Client {
            call: "seal-status",
            address: self.address.clone(),
            message,
        })
    }

    async fn health_response(&self) -> Result<reqwest::Response, VaultError> {
        let request = self.http.get(self.url("sys/health")).query(&[
            ("standbyok", "true"),
            ("perfstandbyok", "true"),
            ("sealedcode", "299"),
            ("uninitcode", "299"),
            ("drsecondarycode", "299"),
            ("performancestandbycode", "299"),
            ("standbycode", "299"),
            ("removedcode", "299"),
        ]);
        self.send("health", request, &[200, 299, 429]).await
    }

    /// Begin proving that keys (recovery keys, or unseal keys of a Shamir seal) open this Vault,
    /// keeping nothing: start a root-token generation with a one-time pad, which stays in memory.
    /// [`Vault::complete_key_proof`] submits the keys. A generation already in progress is
    /// cancelled only when it is the one `earlier` says planx began (a run stopped half-way);
    /// anyone else's is refused, never cancelled. The endpoint is the one the server's product
    /// and version document ([`Server::root_token_generation`]); `token` (`None` when the plan
    /// gives none) is sent where it is asked for.
    pub async fn begin_key_proof(
        &self,
        token: Option<&Secret>,
        earlier: &EarlierGeneration,
    ) -> Result<KeyProof, VaultError> {
        let call = "generate-root";
        let server = self.server().await?;
        let generation = server
            .root_token_generation(token.is_some())
            .map_err(|message| VaultError::Client {
                call,
                address: self.address.clone(),
                message,
            })?;
        let base = generation.base;
        let token = token.filter(|_| generation.authenticated);
        let status = self
            .generate_root(base, "attempt", token, reqwest::Method::GET, None)
            .await
            .map_err(|error| match error {
                VaultError::Status { status: 405, .. } => VaultError::Client {
                    call,
                    address: self.address.clone(),
                    message: server.root_generation_blocked(),
                },
                other => other,
            })?;
        if status.started {
            if !earlier.is(&status) {
                return Err(VaultError::Client {
                    call,
                    address: self.address.clone(),
                    message: format!(
                        "a root-token generation is already in progress (nonce {}, {} of {} keys given) and planx did not begin it; planx will not cancel someone else's: finish or cancel it (`bao operator generate-root -cancel`), then resume",
                        status.nonce, status.progress, status.required
                    ),
                });
            }
            self.generate_root(base, "attempt", token, reqwest::Method::DELETE, None)
                .await?;
        }
        let started = self
            .generate_root(
                base,
                "attempt",
                token,
                reqwest::Method::PUT,
                Some(serde_json::json!({})),
            )
            .await?;
        Ok(KeyProof {
            base,
            token: token.cloned(),
            started,
        })
    }

    /// Submit `keys` to the generation `proof` began (the server checks them when the threshold
    /// is reached), decode the root token and revoke it at once. On a wrong key, too few keys or
    /// an error, the generation is cancelled: no attempt is left behind.
    pub async fn complete_key_proof(
        &self,
        proof: KeyProof,
        keys: &[Secret],
    ) -> Result<(), VaultError> {
        let KeyProof {
            base,
            token,
            started,
        } = proof;
        let token = token.as_ref();
        let result = self.submit_keys(base, token, keys, &started).await;
        if !matches!(result, Ok(Some(_))) {
            let _ = self
                .generate_root(base, "attempt", token, reqwest::Method::DELETE, None)
                .await;
        }
        let root = result?.ok_or_else(|| VaultError::Client {
            call: "generate-root",
            address: self.address.clone(),
            message: format!(
                "{} keys given, the Vault needs {}: give at least the threshold, one per line",
                keys.len(),
                started.required
            ),
        })?;
        self.revoke_self(&root).await
    }

    /// One call on `BASE/ENDPOINT` (`attempt` or `update`).
    async fn generate_root(
        &self,
        base: &str,
        endpoint: &str,
        token: Option<&Secret>,
        method: reqwest::Method,
        body: Option<serde_json::Value>,
    ) -> Result<GenerateRoot, VaultError> {
        let call = "generate-root";
        let mut request = self
            .http
            .request(method.clone(), self.url(&format!("{base}/{endpoint}")));
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token.expose());
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = self.send(call, request, &[200, 204]).await?;
        if method == reqwest::Method::DELETE {
            return Ok(GenerateRoot::default());
        }
        let value: serde_json::Value = self.json(call, response).await?;
        let fields = value
            .get("data")
            .filter(|d| d.is_object())
            .unwrap_or(&value);
        serde_json::from_value(fields.clone()).map_err(|e| VaultError::Client {
            call,
            address: self.address.clone(),
            message: format!("unexpected answer: {e}"),
        })
    }

    /// Submit keys to a started generation; the decoded root token once it completes.
    async fn submit_keys(
        &self,
        base: &str,
        token: Option<&Secret>,
        keys: &[Secret],
        started: &GenerateRoot,
    ) -> Result<Option<Secret>, VaultError> {
        let call = "generate-root";
        let otp = started.otp.clone().unwrap_or_default();
        for key in keys {
            let body = serde_json::json!({ "key": key.expose(), "nonce": started.nonce });
            let progress = match self
                .generate_root(base, "update", token, reqwest::Method::PUT, Some(body))
                .await
            {
                Ok(progress) => progress,
                // A wrong key is a 400, or a 500 "root generation aborted: unable to
                // authenticate" on OpenBao.
                Err(VaultError::Status {
                    status, message, ..
                }) if status == 400
                    || message.contains("root generation aborted")
                    || message.contains("verification failed") =>
                {
                    return Err(VaultError::Client {
                        call,
                        address: self.address.clone(),
                        message: format!(
                            "the keys do not open this Vault ({}); check that the file holds the recovery keys of the Vault the data comes from, one per line",
                            message.trim()
                        ),
                    });
                }
                Err(other) => return Err(other),
            };
            if progress.complete {
                let encoded = progress.encoded_token.or(progress.encoded_root_token);
                return decode_root_token(encoded.as_deref().unwrap_or_default(), &otp)
                    .map(Some)
                    .map_err(|message| VaultError::Client {
                        call,
                        address: self.address.clone(),
                        message,
                    });
            }
        }
        Ok(None)
    }

    /// Make the active node step down (needs `update` and `sudo` on `sys/step-down`).
    pub async fn step_down(&self, token: &Secret) -> Result<(), VaultError> {
        let request = self
            .http
            .put(self.url("sys/step-down"))
            .header("X-Vault-Token", token.expose());
        self.send("step-down", request, &[200, 204]).await.map(drop)
    }

    pub async fn raft_configuration(&self, token: &Secret) -> Result<Vec<RaftServer>, VaultError> {
        let request = self
            .http
            .get(self.url("sys/storage/raft/configuration"))
            .header("X-Vault-Token", token.expose());
        let response = self.send("raft configuration", request, &[200]).await?;
        let body: serde_json::Value = self.json("raft configuration", response).await?;
        serde_json::from_value(body["data"]["config"]["servers"].clone()).map_err(|e| {
            VaultError::Client {
                call: "raft configuration",
                address: self.address.clone(),
                message: format!("unexpected answer: {e}"),
            }
        })
    }

    /// Ask this (uninitialised) node to join the raft cluster whose node answers at
    /// `leader_api_addr` (`sys/storage/raft/join`, unauthenticated on an uninitialised node).
    /// The node then unseals itself through its seal, which must use the cluster's key. With
    /// `leader_ca_cert` (PEM), the node verifies an `https` leader against that CA.
    pub async fn raft_join(
        &self,
        leader_api_addr: &str,
        non_voter: bool,
        leader_ca_cert: Option<&str>,
    ) -> Result<(), VaultError> {
        let mut body =
            serde_json::json!({ "leader_api_addr": leader_api_addr, "non_voter": non_voter });
        if let Some(ca) = leader_ca_cert {
            body["leader_ca_cert"] = serde_json::Value::from(ca);
        }
        let request = self
            .http
            .post(self.url("sys/storage/raft/join"))
            .json(&body);
        let response = self.send("raft join", request, &[200]).await?;
        let answer: serde_json::Value = self.json("raft join", response).await?;
        if answer["joined"].as_bool() == Some(true) {
            return Ok(());
        }
        Err(VaultError::Client {
            call: "raft join",
            address: self.address.clone(),
            message: format!("the node did not join: {answer}"),
        })
    }

    /// A raft membership change by node id (`promote`, `demote` or `remove-peer` under
    /// `sys/storage/raft/`), sent to any unsealed member (a standby forwards it to the active
    /// node). `token` needs `update` there.
    pub async fn raft_membership(
        &self,
        change: RaftChange,
        token: &Secret,
        node_id: &str,
    ) -> Result<(), VaultError> {
        let call = change.call();
        let request = self
            .http
            .post(self.url(&format!("sys/storage/raft/{}", change.path())))
            .header("X-Vault-Token", token.expose())
            .json(&serde_json::json!({ "server_id": node_id }));
        self.send(call, request, &[200, 204]).await.map(drop)
    }

    /// Write the least-privilege migration policy and create an orphan token with it.
    /// Returns the token and its accessor.
    pub async fn create_migration_token(
        &self,
        admin: &Secret,
        policy_name: &str,
        ttl: &str,
    ) -> Result<(Secret, String), VaultError> {
        let client = self.vaultrs("token create", admin)?;
        vaultrs::sys::policy::set(&client, policy_name, planc::catalog::MIGRATION_POLICY)
            .await
            .map_err(|e| self.client_error("policy write", e))?;
        let mut options = vaultrs::api::token::requests::CreateOrphanTokenRequest::builder();
        options
            .policies(vec![policy_name.to_string()])
            .ttl(ttl)
            .explicit_max_ttl(ttl)
            .no_default_policy(true)
            .display_name("planx-migration");
        let auth = vaultrs::token::new_orphan(&client, Some(&mut options))
            .await
            .map_err(|e| self.client_error("token create", e))?;
        Ok((Secret::new(auth.client_token), auth.accessor))
    }

    /// Revoke a token by its accessor (needs `update` on `auth/token/revoke-accessor`). A token
    /// that is already gone (revoked, expired, or replaced by a restore) is not an error: the
    /// answer says whether there was one to revoke.
    pub async fn revoke_accessor(
        &self,
        token: &Secret,
        accessor: &str,
    ) -> Result<bool, VaultError> {
        let request = self
            .http
            .put(self.url("auth/token/revoke-accessor"))
            .header("X-Vault-Token", token.expose())
            .json(&serde_json::json!({ "accessor": accessor }));
        match self
            .send("token revoke-accessor", request, &[200, 204])
            .await
        {
            Err(VaultError::Status {
                status: 400,
                message,
                ..
            }) if message.contains("invalid accessor") => Ok(false),
            other => other.map(|_| true),
        }
    }

    /// Revoke the token itself.
    pub async fn revoke_self(&self, token: &Secret) -> Result<(), VaultError> {
        let client = self.vaultrs("token revoke", token)?;
        vaultrs::token::revoke_self(&client)
            .await
            .map_err(|e| self.client_error("token revoke", e))
    }

    /// Stream a raft snapshot from the active node into `path`: on a thread of its own, with a
    /// current-thread runtime and a client of its own (built by the same HTTP policy), each chunk
    /// is hashed (SHA-256), written (one vectored write a MiB, writeback started every 8 MiB, one
    /// sync at the end) and walked as an archive (gunzip and tar: a non-empty
    /// `SHA256SUMS.sealed`, nothing after its end) as it arrives; see
    /// `snapshot_receive`. `progress` sees the byte count.
    pub async fn snapshot_save(
        &self,
        token: &Secret,
        path: &Path,
        progress: impl FnMut(u64),
    ) -> Result<SnapshotFile, VaultError> {
        self.save_snapshot(token, path, None, progress).await
    }

    /// [`Vault::snapshot_save`] that also streams the snapshot, as it arrives, into `target`'s
    /// `sys/storage/raft/snapshot-force` with `target_token`: one pass, the copy in `path`
    /// written and hashed alongside. The last 256 KiB received are held back until the archive
    /// proved whole, so a damaged snapshot never reaches the target whole (its upload is cut).
    pub async fn snapshot_transfer(
        &self,
        token: &Secret,
        target: &Vault,
        target_token: &Secret,
        path: &Path,
        progress: impl FnMut(u64),
    ) -> Result<SnapshotFile, VaultError> {
        let restore = Restore {
            target: target.clone(),
            token: target_token.clone(),
        };
        self.save_snapshot(token, path, Some(restore), progress)
            .await
    }

    async fn save_snapshot(
        &self,
        token: &Secret,
        path: &Path,
        restore: Option<Restore>,
        mut progress: impl FnMut(u64),
    ) -> Result<SnapshotFile, VaultError> {
        let snapshot_error = |message: String| VaultError::Snapshot {
            path: path.display().to_string(),
            message,
        };
        let file = create_private(path)
            .await
            .map_err(|e| snapshot_error(format!("cannot create: {e}")))?
            .into_std()
            .await;
        let (report, mut received) = tokio::sync::watch::channel(0u64);
        let (done, transfer) = tokio::sync::oneshot::channel();
        let vault = self.clone();
        let token = token.clone();
        let shown_path = path.display().to_string();
        std::thread::Builder::new()
            .name("planx-snapshot".into())
            .spawn(move || {
                let _ =
                    done.send(vault.receive_snapshot(&token, file, restore, report, shown_path));
            })
            .map_err(|e| snapshot_error(format!("cannot start the transfer: {e}")))?;
        while received.changed().await.is_ok() {
            progress(*received.borrow_and_update());
        }
        transfer
            .await
            .map_err(|_| snapshot_error("the transfer thread stopped".into()))?
    }

    /// The thread of [`Vault::save_snapshot`]: a current-thread runtime and a client of its own
    /// `GET` the snapshot (and, for a transfer, `POST` it into the target) while
    /// [`snapshot_receive::receive`] hashes, writes and walks it on this thread.
    fn receive_snapshot(
        self,
        token: &Secret,
        file: std::fs::File,
        restore: Option<Restore>,
        report: tokio::sync::watch::Sender<u64>,
        path: String,
    ) -> Result<SnapshotFile, VaultError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| VaultError::Client {
                call: "snapshot",
                address: self.address.clone(),
                message: e.to_string(),
            })?;
        let http = self.own_client("snapshot")?;
        let vault = Vault { http, ..self };
        let request = vault
            .http
            .get(vault.url("sys/storage/raft/snapshot"))
            .header("X-Vault-Token", token.expose());
        let response = runtime.block_on(vault.send("snapshot", request, &[200]))?;
        let (upload, restoring) = match restore {
            Some(restore) => {
                let (sender, chunks) = tokio::sync::mpsc::channel(UPLOAD_CHUNKS);
                (Some(sender), Some(runtime.spawn(restore.run(chunks))))
            }
            None => (None, None),
        };
        let received = snapshot_receive::receive(
            &runtime,
            response.bytes_stream().boxed(),
            file,
            upload,
            report,
        );
        let restored = restoring.map(|task| {
            runtime
                .block_on(task)
                .map_err(|e| VaultError::Snapshot {
                    path: path.clone(),
                    message: format!("the upload stopped: {e}"),
                })
                .and_then(|restored| restored)
        });
        // A transfer's upload was cut short before its end: the target restored nothing.
        let cut = if restored.is_some() {
            "; refusing to restore it (the upload was cut short: nothing was restored)"
        } else {
            ""
        };
        let received = received.map_err(|failure| match failure {
            ReceiveFailure::Transport(source) => VaultError::Transport {
                call: "snapshot",
                address: vault.address.clone(),
                source,
            },
            ReceiveFailure::Write(error) => VaultError::Snapshot {
                path: path.clone(),
                message: format!("cannot write: {error}{cut}"),
            },
            ReceiveFailure::Refused(message) => VaultError::Snapshot {
                path: path.clone(),
                message: format!("{message}{cut}"),
            },
        })?;
        if let Some(restored) = restored {
            restored?;
        }
        Ok(received)
    }

    /// A client of this Vault's HTTP policy for a runtime of its own.
    fn own_client(&self, call: &'static str) -> Result<reqwest::Client, VaultError> {
        super::http::builder(&self.resolve)
            .and_then(|builder| builder.build().map_err(|e| e.to_string()))
            .map_err(|message| VaultError::Client {
                call,
                address: self.address.clone(),
                message,
            })
    }

    /// Stream a saved snapshot into `sys/storage/raft/snapshot-force` in one pass over the file:
    /// it is hashed and its archive walked as it goes, and its tail is held back until the
    /// archive proved whole, with nothing after it, and its SHA-256 matched `expected_sha256`
    /// (when given). A file that fails either has its upload cut short, so the server never
    /// receives it whole. `progress` sees the bytes sent. The server answers at once and
    /// restores in the background: watch `seal_status` afterwards.
    pub async fn snapshot_restore_force(
        &self,
        token: &Secret,
        path: &Path,
        expected_sha256: Option<&str>,
        mut progress: impl FnMut(u64) + Send + Sync + 'static,
    ) -> Result<(), VaultError> {
        let snapshot_error = |message: String| VaultError::Snapshot {
            path: path.display().to_string(),
            message,
        };
        let file =
            std::fs::File::open(path).map_err(|e| snapshot_error(format!("cannot open: {e}")))?;
        let (upload, chunks) = tokio::sync::mpsc::channel(UPLOAD_CHUNKS);
        let expected = expected_sha256.map(str::to_owned);
        let reader = tokio::task::spawn_blocking(move || {
            super::snapshot_archive::stream_verified(file, expected.as_deref(), upload)
        });
        let mut sent = 0u64;
        let body = futures_util::stream::unfold(chunks, |mut chunks| async move {
            chunks.recv().await.map(|chunk| (chunk, chunks))
        })
        .inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                sent += chunk.len() as u64;
                progress(sent);
            }
        });
        let request = self
            .http
            .post(self.url("sys/storage/raft/snapshot-force"))
            .header("X-Vault-Token", token.expose())
            .header("Content-Type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body));
        let uploaded = self.send("snapshot-force", request, &[200, 204]).await;
        let read = reader
            .await
            .map_err(|e| snapshot_error(format!("the reader stopped: {e}")))?;
        match (read, uploaded) {
            (Err(StreamRefusal::Refused(message)), Err(_)) => Err(snapshot_error(format!(
                "{message}; refusing to restore it (the upload was cut short: nothing was restored)"
            ))),
            (Err(StreamRefusal::Refused(message)), Ok(_)) => Err(snapshot_error(format!(
                "{message}; the server answered before the upload's end, so it may have restored part of it: check this Vault before going on"
            ))),
            (Err(StreamRefusal::Unreadable(message)), _) => Err(snapshot_error(format!(
                "{message} (the upload was cut short: nothing was restored)"
            ))),
            (_, Err(error)) => Err(error),
            (Err(StreamRefusal::UploadEnded), Ok(_)) => Err(snapshot_error(
                "the server answered before the whole snapshot was sent; check this Vault before going on".into(),
            )),
            (Ok(()), Ok(_)) => Ok(()),
        }
    }
}

/// What planx knows of a root-token generation it began earlier for the same step (the
/// journal's effect in doubt), so that a resumed run can cancel its own leftover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EarlierGeneration {
    /// planx began none: a generation in progress is someone else's.
    None,
    /// planx stopped between asking for a generation and journaling its nonce: a generation in
    /// progress that no key has been given to is taken for that one.
    Begun,
    /// planx began the generation with this nonce.
    Nonce(String),
}

impl EarlierGeneration {
    fn is(&self, status: &GenerateRoot) -> bool {
        match self {
            EarlierGeneration::None => false,
            EarlierGeneration::Begun => status.progress == 0,
            EarlierGeneration::Nonce(nonce) => *nonce == status.nonce,
        }
    }
}

/// A root-token generation begun to prove keys. Its one-time pad never leaves memory; the
/// nonce, which the server shows to anyone asking for the generation's status, is journaled.
pub struct KeyProof {
    base: &'static str,
    token: Option<Secret>,
    started: GenerateRoot,
}

impl KeyProof {
    pub fn nonce(&self) -> &str {
        &self.started.nonce
    }
}

/// The state of a root-token generation, as `sys/generate-root*/*` answers.
#[derive(Default, serde::Deserialize)]
struct GenerateRoot {
    #[serde(default)]
    started: bool,
    #[serde(default)]
    nonce: String,
    #[serde(default)]
    progress: u32,
    #[serde(default)]
    required: u32,
    #[serde(default)]
    complete: bool,
    #[serde(default)]
    otp: Option<String>,
    #[serde(default)]
    encoded_token: Option<String>,
    #[serde(default)]
    encoded_root_token: Option<String>,
}

/// The root token of a completed generation: the encoded token, base64, XOR the one-time pad.
fn decode_root_token(encoded: &str, otp: &str) -> Result<Secret, String> {
    use base64::Engine as _;
    let engines = [
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::STANDARD,
    ];
    let bytes = engines
        .iter()
        .find_map(|engine| engine.decode(encoded.trim()).ok())
        .ok_or("the generated root token is not base64; revoke it by hand (`bao token revoke -accessor`)")?;
    if bytes.len() != otp.len() {
        return Err(format!(
            "the generated root token has {} bytes and the one-time pad {}; revoke it by hand",
            bytes.len(),
            otp.len()
        ));
    }
    let token: Vec<u8> = bytes.iter().zip(otp.bytes()).map(|(a, b)| a ^ b).collect();
    String::from_utf8(token)
        .map(Secret::new)
        .map_err(|_| "the decoded root token is not text; revoke it by hand".to_string())
}

async fn create_private(path: &Path) -> std::io::Result<tokio::fs::File> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path).await
}

/// SHA-256 of a file, read in chunks.
pub async fn file_sha256(path: &Path) -> std::io::Result<String> {
    let path = path.to_path_buf();
    // Plain blocking reads of 1 MiB on a thread of their own: a third faster than tokio's.
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; SNAPSHOT_BUFFER];
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
        Ok(planc::hex::encode(&hasher.finalize()))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// The Vault a transfer restores into, and its token.
struct Restore {
    target: Vault,
    token: Secret,
}

impl Restore {
    /// `POST` the chunks that arrive into `sys/storage/raft/snapshot-force` (on the transfer's
    /// runtime, with a client of its own); an `Err` chunk aborts the upload.
    async fn run(
        self,
        chunks: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    ) -> Result<(), VaultError> {
        let http = self.target.own_client("snapshot-force")?;
        let target = Vault {
            http,
            ..self.target
        };
        let body = futures_util::stream::unfold(chunks, |mut chunks| async move {
            chunks.recv().await.map(|chunk| (chunk, chunks))
        });
        let request = target
            .http
            .post(target.url("sys/storage/raft/snapshot-force"))
            .header("X-Vault-Token", self.token.expose())
            .header("Content-Type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body));
        target
            .send("snapshot-force", request, &[200, 204])
            .await
            .map(drop)
    }
}

/// How much of a file [`file_sha256`] reads at once.
const SNAPSHOT_BUFFER: usize = 1 << 20;

/// Chunks in flight into an upload (a restore's or a transfer's): room for what is read while
/// the connection writes, and no more (16 raised a restore's peak RSS from 9 to 12 MB).
const UPLOAD_CHUNKS: usize = 4;
