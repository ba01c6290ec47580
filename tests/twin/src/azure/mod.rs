//! The twin's Azure: an emulator of Entra ID, the Key Vault keys API, Microsoft Graph and Azure
//! Resource Manager, reached only through its own CONNECT proxy (`proxy`), so a pod with
//! `HTTPS_PROXY` set to it and the twin's CA in `SSL_CERT_FILE` runs a real `seal
//! "azurekeyvault"`, and planx checks and withdraws key access, with nothing leaving the
//! machine. The tenant's state (`state`) is what tests change to inject faults; every request
//! is appended to `<twin dir>/azure/requests.jsonl`.

pub mod proxy;
mod routes;
pub mod state;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};

use crate::clock::now_rfc3339;
use crate::identity::{TokenSigner, unix_now};
pub use state::{KeyOperation, Tenant};

/// The hosts the emulator serves; every other host is refused by the proxy.
pub const LOGIN_HOST: &str = "login.microsoftonline.com";
pub const GRAPH_HOST: &str = "graph.microsoft.com";
pub const ARM_HOST: &str = "management.azure.com";
pub const KEY_VAULT_SUFFIX: &str = ".vault.azure.net";

/// The audience of the service-account tokens Entra ID exchanges (workload identity).
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// The request log, one JSON object per line.
pub const REQUEST_LOG: &str = "requests.jsonl";

/// One emulated Azure tenant and its request log.
pub struct AzureCloud {
    tenant: Mutex<Tenant>,
    signer: Arc<TokenSigner>,
    log: Mutex<Option<std::fs::File>>,
    log_path: PathBuf,
}

impl std::fmt::Debug for AzureCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureCloud")
            .field("log", &self.log_path)
            .finish_non_exhaustive()
    }
}

/// Which emulated service a host is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Service {
    Login,
    Graph,
    ResourceManager,
    /// The data plane of the key vault named so.
    KeyVault(String),
}

impl AzureCloud {
    /// A cloud holding `tenant`, logging into `dir` (created), signing with `signer`.
    pub fn new(
        tenant: Tenant,
        signer: Arc<TokenSigner>,
        dir: &Path,
    ) -> std::io::Result<AzureCloud> {
        crate::twin::create_private_dir(dir)?;
        let log_path = dir.join(REQUEST_LOG);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        Ok(AzureCloud {
            tenant: Mutex::new(tenant),
            signer,
            log: Mutex::new(Some(log)),
            log_path,
        })
    }

    /// The tenant, to read or change (a fault); requests wait while it is held.
    pub fn tenant(&self) -> MutexGuard<'_, Tenant> {
        self.tenant
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn signer(&self) -> &TokenSigner {
        &self.signer
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The service `host` is, if the emulator serves it: the three fixed hosts, and the data
    /// plane of each vault that exists (another vault name does not resolve, as in Azure).
    pub fn service(&self, host: &str) -> Option<Service> {
        let host = host.to_ascii_lowercase();
        match host.as_str() {
            LOGIN_HOST => Some(Service::Login),
            GRAPH_HOST => Some(Service::Graph),
            ARM_HOST => Some(Service::ResourceManager),
            _ => {
                let name = host.strip_suffix(KEY_VAULT_SUFFIX)?;
                self.tenant()
                    .vault(name)
                    .map(|vault| Service::KeyVault(vault.name.clone()))
            }
        }
    }

    /// Appends one entry to the request log.
    pub fn record(&self, entry: Value) {
        let mut entry = entry;
        entry["at"] = json!(now_rfc3339());
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = log.as_mut() {
            let _ = writeln!(file, "{entry}");
        }
    }

    /// Every entry of the request log so far.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    // Faults and changes a test or a person makes, as `az` would.

    /// Deletes every role assignment of the application `client_id` whose scope covers the
    /// key vault `vault` (its key included); how many.
    pub fn revoke_roles_on_vault(&self, client_id: &str, vault: &str) -> usize {
        let mut tenant = self.tenant();
        let Some(object_id) = tenant.application(client_id).map(|a| a.object_id.clone()) else {
            return 0;
        };
        let Some(vault_id) = tenant.vault(vault).map(|v| tenant.vault_id(v)) else {
            return 0;
        };
        let before = tenant.role_assignments.len();
        tenant.role_assignments.retain(|assignment| {
            !(assignment.principal_id.eq_ignore_ascii_case(&object_id)
                && (state::scope_covers(&assignment.scope, &vault_id)
                    || state::scope_covers(&vault_id, &assignment.scope)))
        });
        before - tenant.role_assignments.len()
    }

    /// Enables or disables the current version of `key` in `vault`.
    pub fn set_key_enabled(&self, vault: &str, key: &str, enabled: bool) -> bool {
        self.with_current_version(vault, key, |version| version.enabled = enabled)
    }

    /// Sets the expiry of the current version of `key` in `vault` to `seconds_from_now`
    /// (negative: already expired).
    pub fn set_key_expiry(&self, vault: &str, key: &str, seconds_from_now: i64) -> bool {
        let at = (unix_now() as i64 + seconds_from_now).max(0) as u64;
        self.with_current_version(vault, key, |version| version.expires_at = Some(at))
    }

    /// Adds a new current version to `key` in `vault` (older versions stay usable).
    pub fn rotate_key(&self, vault: &str, key: &str) -> Result<(), String> {
        let version = state::new_version()?;
        let mut tenant = self.tenant();
        let key = tenant
            .vault_mut(vault)
            .and_then(|v| v.keys.iter_mut().find(|k| k.name == key))
            .ok_or_else(|| format!("no key {key} in vault {vault}"))?;
        key.versions.push(version);
        Ok(())
    }

    /// Makes every client secret of `client_id` expired.
    pub fn expire_client_secrets(&self, client_id: &str) -> bool {
        let mut tenant = self.tenant();
        let Some(application) = tenant.application_mut(client_id) else {
            return false;
        };
        for secret in &mut application.secrets {
            secret.expires_at = Some(unix_now().saturating_sub(1));
        }
        true
    }

    fn with_current_version(
        &self,
        vault: &str,
        key: &str,
        change: impl FnOnce(&mut state::KeyVersion),
    ) -> bool {
        let mut tenant = self.tenant();
        match tenant
            .vault_mut(vault)
            .and_then(|v| v.keys.iter_mut().find(|k| k.name == key))
            .and_then(|k| k.versions.last_mut())
        {
            Some(version) => {
                change(version);
                true
            }
            None => false,
        }
    }
}

/// Starts the proxy for `cloud` on `listener` on the twin's runtime.
pub fn spawn_proxy(
    runtime: &tokio::runtime::Handle,
    listener: std::net::TcpListener,
    cloud: Arc<AzureCloud>,
    authority: Arc<crate::tls::Authority>,
) -> Result<(), String> {
    let tls = authority.server_config()?;
    let _guard = runtime.enter();
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| format!("cannot serve the Azure proxy: {e}"))?;
    runtime.spawn(proxy::serve(listener, cloud, tls));
    Ok(())
}
