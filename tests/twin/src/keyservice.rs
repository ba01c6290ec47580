//! Key services: each "key vault" is a dev-mode `bao` on its own loopback address with the
//! transit engine, one key, a policy allowing encrypt and decrypt with it, and the token the
//! Vault pods' seal uses (the pods' identity). The twin can revoke that access, revoke the
//! token, and stop and start the service: the key survives a restart (it is backed up before
//! the stop and restored after the start), as a managed key service's would.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::httpc::Endpoint;
use crate::process::Processes;

/// What to start.
#[derive(Debug, Clone)]
pub struct KeyServiceSpec {
    /// A short name (`old`, `new`), used in logs and process names.
    pub name: String,
    /// The transit key (`old-unseal`).
    pub key_name: String,
    pub address: SocketAddr,
}

#[derive(Debug)]
struct State {
    pid: Option<u32>,
    backup: Option<String>,
    access_revoked: bool,
    token_revoked: bool,
}

#[derive(Debug)]
struct Inner {
    spec: KeyServiceSpec,
    root_token: String,
    seal_token: String,
    bao: PathBuf,
    dir: PathBuf,
    processes: Arc<Processes>,
    runtime: tokio::runtime::Handle,
    state: Mutex<State>,
}

/// A running (or stopped) key service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct KeyService {
    inner: Arc<Inner>,
}

/// How long a key service may take to answer after its process starts.
const START_TIMEOUT: Duration = Duration::from_secs(30);

fn random_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Inner {
    fn endpoint(&self) -> Endpoint {
        Endpoint::plain(self.spec.address)
    }

    fn policy_name(&self) -> String {
        format!("seal-{}", self.spec.key_name)
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        ok: &[u16],
    ) -> Result<Value, String> {
        let (code, answer) = self
            .endpoint()
            .json(method, path, Some(&self.root_token), body.as_ref())
            .await
            .map_err(|e| format!("key service {}: {e}", self.spec.name))?;
        if ok.contains(&code) {
            Ok(answer)
        } else {
            Err(format!(
                "key service {}: {method} {path} answered {code}: {answer}",
                self.spec.name
            ))
        }
    }

    async fn spawn_process(&self) -> Result<u32, String> {
        let home = self.dir.join("home");
        std::fs::create_dir_all(&home)
            .map_err(|e| format!("cannot create {}: {e}", home.display()))?;
        let mut command = Command::new(&self.bao);
        command
            .args([
                "server",
                "-dev",
                &format!("-dev-listen-address={}", self.spec.address),
                "-dev-no-store-token",
            ])
            .current_dir(&self.dir)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", &home)
            // In the environment rather than the arguments, so `ps` does not show it.
            .env("VAULT_DEV_ROOT_TOKEN_ID", &self.root_token);
        let log = self.dir.join(format!("kms-{}.log", self.spec.name));
        let pid = self
            .processes
            .spawn(&format!("kms-{}", self.spec.name), command, &log, None)
            .map_err(|e| format!("cannot start key service {}: {e}", self.spec.name))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok((200, _)) = self
                .endpoint()
                .json("GET", "/v1/sys/health", None, None)
                .await
            {
                return Ok(pid);
            }
            if let Some(exit) = self.processes.try_wait(pid) {
                return Err(format!(
                    "key service {} exited at start with code {} (is {} free?); see {}",
                    self.spec.name,
                    exit.code,
                    self.spec.address,
                    log.display()
                ));
            }
            if Instant::now() > deadline {
                self.processes.stop(pid, Duration::from_secs(5)).await;
                return Err(format!(
                    "key service {} did not answer within {START_TIMEOUT:?}; see {}",
                    self.spec.name,
                    log.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn put_policy(&self) -> Result<(), String> {
        let key = &self.spec.key_name;
        let policy = format!(
            "path \"transit/encrypt/{key}\" {{ capabilities = [\"update\"] }}\npath \"transit/decrypt/{key}\" {{ capabilities = [\"update\"] }}\npath \"transit/keys/{key}\" {{ capabilities = [\"read\"] }}\n"
        );
        self.call(
            "PUT",
            &format!("/v1/sys/policies/acl/{}", self.policy_name()),
            Some(json!({"policy": policy})),
            &[200, 204],
        )
        .await
        .map(|_| ())
    }

    async fn create_seal_token(&self) -> Result<(), String> {
        self.call(
            "POST",
            "/v1/auth/token/create-orphan",
            Some(json!({
                "id": self.seal_token,
                "policies": [self.policy_name()],
                "ttl": "768h",
                "display_name": format!("seal-{}", self.spec.name),
            })),
            &[200],
        )
        .await
        .map(|_| ())
    }

    /// Starts the process and sets up transit, the key (new or restored), policy and token.
    async fn start(&self, state: &mut State) -> Result<(), String> {
        if state.pid.is_some_and(|pid| self.processes.is_running(pid)) {
            return Ok(());
        }
        let pid = self.spawn_process().await?;
        state.pid = Some(pid);
        self.call(
            "POST",
            "/v1/sys/mounts/transit",
            Some(json!({"type": "transit"})),
            &[200, 204],
        )
        .await?;
        match &state.backup {
            Some(backup) => {
                self.call(
                    "POST",
                    &format!("/v1/transit/restore/{}", self.spec.key_name),
                    Some(json!({"backup": backup})),
                    &[200, 204],
                )
                .await?;
            }
            None => {
                self.call(
                    "POST",
                    &format!("/v1/transit/keys/{}", self.spec.key_name),
                    Some(json!({
                        "type": "aes256-gcm96",
                        "exportable": true,
                        "allow_plaintext_backup": true,
                    })),
                    &[200, 204],
                )
                .await?;
                // Backed up at once, so even a key service that dies on its own restarts with it.
                state.backup = Some(self.backup().await?);
            }
        }
        if !state.access_revoked {
            self.put_policy().await?;
        }
        if !state.token_revoked {
            self.create_seal_token().await?;
        }
        Ok(())
    }

    /// A plaintext backup of the key (all versions), as `transit/restore` takes it.
    async fn backup(&self) -> Result<String, String> {
        let answer = self
            .call(
                "GET",
                &format!("/v1/transit/backup/{}", self.spec.key_name),
                None,
                &[200],
            )
            .await?;
        answer["data"]["backup"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("key service {}: the key backup is empty", self.spec.name))
    }

    async fn stop(&self, state: &mut State) -> Result<(), String> {
        let Some(pid) = state.pid else {
            return Ok(());
        };
        if self.processes.is_running(pid) {
            let backup = self
                .call(
                    "GET",
                    &format!("/v1/transit/backup/{}", self.spec.key_name),
                    None,
                    &[200],
                )
                .await?;
            let backup = backup["data"]["backup"].as_str().ok_or_else(|| {
                format!("key service {}: the key backup is empty", self.spec.name)
            })?;
            state.backup = Some(backup.to_string());
            self.processes.stop(pid, Duration::from_secs(10)).await;
        }
        state.pid = None;
        Ok(())
    }
}

impl KeyService {
    /// Starts a key service on the twin's runtime (so its process belongs to the twin).
    pub async fn start_new(
        spec: KeyServiceSpec,
        bao: PathBuf,
        dir: PathBuf,
        processes: Arc<Processes>,
        runtime: tokio::runtime::Handle,
    ) -> Result<KeyService, String> {
        let inner = Arc::new(Inner {
            spec,
            root_token: random_token(),
            seal_token: random_token(),
            bao,
            dir,
            processes,
            runtime,
            state: Mutex::new(State {
                pid: None,
                backup: None,
                access_revoked: false,
                token_revoked: false,
            }),
        });
        let service = KeyService { inner };
        service
            .on_runtime(|inner| async move {
                let mut state = inner.state.lock().await;
                inner.start(&mut state).await
            })
            .await?;
        Ok(service)
    }

    async fn on_runtime<F, Fut>(&self, work: F) -> Result<(), String>
    where
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        let inner = self.inner.clone();
        self.inner
            .runtime
            .spawn(work(inner))
            .await
            .map_err(|e| format!("the key service task failed: {e}"))?
    }

    pub fn name(&self) -> &str {
        &self.inner.spec.name
    }

    pub fn key_name(&self) -> &str {
        &self.inner.spec.key_name
    }

    pub fn socket_address(&self) -> SocketAddr {
        self.inner.spec.address
    }

    /// `http://<ip>:<port>`, as a seal's `address`.
    pub fn address(&self) -> String {
        format!("http://{}", self.inner.spec.address)
    }

    /// The token the Vault pods' seal uses (encrypt and decrypt with the key).
    pub fn seal_token(&self) -> &str {
        &self.inner.seal_token
    }

    /// The dev server's root token.
    pub fn root_token(&self) -> &str {
        &self.inner.root_token
    }

    /// Stops the service (the key is kept for the next `start`): seals cannot reach it.
    pub async fn stop(&self) -> Result<(), String> {
        self.on_runtime(|inner| async move {
            let mut state = inner.state.lock().await;
            inner.stop(&mut state).await
        })
        .await
    }

    /// Starts a stopped service again with the same address, key, tokens and policy.
    pub async fn start(&self) -> Result<(), String> {
        self.on_runtime(|inner| async move {
            let mut state = inner.state.lock().await;
            inner.start(&mut state).await
        })
        .await
    }

    /// Whether the service answers.
    pub async fn is_up(&self) -> bool {
        matches!(
            self.inner
                .endpoint()
                .json("GET", "/v1/sys/health", None, None)
                .await,
            Ok((200, _))
        )
    }

    /// Removes the seal's policy: the token stays valid, encrypt and decrypt answer 403.
    pub async fn revoke_access(&self) -> Result<(), String> {
        self.on_runtime(|inner| async move {
            let mut state = inner.state.lock().await;
            state.access_revoked = true;
            inner
                .call(
                    "DELETE",
                    &format!("/v1/sys/policies/acl/{}", inner.policy_name()),
                    None,
                    &[200, 204],
                )
                .await
                .map(|_| ())
        })
        .await
    }

    /// Gives the seal's token its policy back.
    pub async fn grant_access(&self) -> Result<(), String> {
        self.on_runtime(|inner| async move {
            let mut state = inner.state.lock().await;
            state.access_revoked = false;
            inner.put_policy().await
        })
        .await
    }

    /// Revokes the seal's token for good (restarts do not bring it back).
    pub async fn revoke_token(&self) -> Result<(), String> {
        self.on_runtime(|inner| async move {
            let mut state = inner.state.lock().await;
            state.token_revoked = true;
            inner
                .call(
                    "POST",
                    "/v1/auth/token/revoke",
                    Some(json!({"token": inner.seal_token})),
                    &[200, 204],
                )
                .await
                .map(|_| ())
        })
        .await
    }

    /// Encrypts and decrypts a probe with the seal's token, as a preflight does.
    pub async fn seal_token_works(&self) -> bool {
        let endpoint = self.inner.endpoint();
        let key = &self.inner.spec.key_name;
        let token = Some(self.inner.seal_token.as_str());
        let Ok((200, encrypted)) = endpoint
            .json(
                "POST",
                &format!("/v1/transit/encrypt/{key}"),
                token,
                Some(&json!({"plaintext": "cHJvYmU="})),
            )
            .await
        else {
            return false;
        };
        let Some(ciphertext) = encrypted["data"]["ciphertext"].as_str() else {
            return false;
        };
        matches!(
            endpoint
                .json(
                    "POST",
                    &format!("/v1/transit/decrypt/{key}"),
                    token,
                    Some(&json!({"ciphertext": ciphertext})),
                )
                .await,
            Ok((200, answer)) if answer["data"]["plaintext"] == "cHJvYmU="
        )
    }
}
