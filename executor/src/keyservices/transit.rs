//! A transit key on another Vault or OpenBao, as a transit seal uses it: the encrypt/decrypt
//! probe of `preflight.key-access`, and for `keys.disable` the seal's token revoked
//! (`auth/token/revoke-self`) and the revocation proved. The seal's access to the key is its
//! token: once the token is revoked, the old Vault can no longer unseal through the key.

use planc::model::CompiledTarget;
use serde_json::{Value, json};

use crate::engine::ActionError;
use crate::secrets::Secret;

/// The probe plaintext, "planx-probe" in base64.
const PROBE: &str = "cGxhbngtcHJvYmU=";

/// The attributes of a `transit` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitKey {
    /// The Vault or OpenBao holding the key, `http(s)://host:port`.
    pub address: String,
    /// The transit mount, without slashes at the ends (`transit`).
    pub mount: String,
    pub key_name: String,
}

impl TransitKey {
    /// The attributes of a compiled `transit` target (`mount_path` defaults to `transit/`).
    pub fn from_compiled(target: &CompiledTarget) -> TransitKey {
        TransitKey {
            address: target
                .attribute("address")
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_string(),
            mount: target
                .attribute("mount_path")
                .unwrap_or("transit/")
                .trim_matches('/')
                .to_string(),
            key_name: target.attribute("key_name").unwrap_or_default().to_string(),
        }
    }

    /// Encrypt and decrypt a probe with the key, as the seal will.
    pub async fn probe(&self, token: &Secret) -> Result<(), ActionError> {
        let http = http();
        let address = &self.address;
        let key = &self.key_name;
        let encrypt = self.encrypt(&http, token).await?;
        if !encrypt.status().is_success() {
            return Err(ActionError::permanent(format!(
                "transit at {address}: encrypt with `{key}` answered HTTP {}",
                encrypt.status().as_u16()
            )));
        }
        let body: Value = encrypt
            .json()
            .await
            .map_err(|e| ActionError::permanent(e.to_string()))?;
        let ciphertext = body["data"]["ciphertext"].as_str().unwrap_or_default();
        let decrypt = http
            .put(format!("{address}/v1/{}/decrypt/{key}", self.mount))
            .header("X-Vault-Token", token.expose())
            .json(&json!({ "ciphertext": ciphertext }))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let body: Value = decrypt.json().await.unwrap_or(Value::Null);
        if body["data"]["plaintext"] != PROBE {
            return Err(ActionError::permanent(format!(
                "transit at {address}: decrypt with `{key}` did not give the probe back"
            )));
        }
        Ok(())
    }

    /// Whether the token's access to the key is gone: `auth/token/lookup-self` and an encrypt
    /// with the key both answer 403, as they do for a revoked token.
    pub async fn access_withdrawn(&self, token: &Secret) -> Result<bool, ActionError> {
        let http = http();
        let lookup = http
            .get(format!("{}/v1/auth/token/lookup-self", self.address))
            .header("X-Vault-Token", token.expose())
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        match lookup.status().as_u16() {
            403 => {}
            status if status >= 500 => return Err(self.server_error("lookup-self", status)),
            _ => return Ok(false),
        }
        self.encrypt_denied(&http, token).await
    }

    /// Revoke the token with itself: `auth/token/revoke-self`, which also revokes the tokens it
    /// created.
    pub async fn revoke_token(&self, token: &Secret) -> Result<(), ActionError> {
        let address = &self.address;
        let revoke = http()
            .post(format!("{address}/v1/auth/token/revoke-self"))
            .header("X-Vault-Token", token.expose())
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        match revoke.status().as_u16() {
            200..=299 => Ok(()),
            status if status >= 500 => Err(self.server_error("revoke-self", status)),
            status => Err(ActionError::permanent(format!(
                "transit at {address}: the seal's token may not revoke itself (revoke-self answered HTTP {status}; a token made without the default policy cannot): revoke it by hand with a token allowed to, e.g. `VAULT_ADDR={address} vault token revoke -accessor ACCESSOR`, then run the step again"
            ))),
        }
    }

    /// The token no longer reaches the key: an encrypt with it answers 403.
    pub async fn prove_withdrawn(&self, token: &Secret) -> Result<(), ActionError> {
        if self.encrypt_denied(&http(), token).await? {
            Ok(())
        } else {
            Err(ActionError::permanent(format!(
                "transit at {}: the seal's token can still encrypt with `{}`",
                self.address, self.key_name
            )))
        }
    }

    /// An encrypt with the key answers 403; any other answer but a server error means the token
    /// still reaches the key.
    async fn encrypt_denied(
        &self,
        http: &reqwest::Client,
        token: &Secret,
    ) -> Result<bool, ActionError> {
        match self.encrypt(http, token).await?.status().as_u16() {
            403 => Ok(true),
            status if status >= 500 => Err(self.server_error("encrypt", status)),
            _ => Ok(false),
        }
    }

    async fn encrypt(
        &self,
        http: &reqwest::Client,
        token: &Secret,
    ) -> Result<reqwest::Response, ActionError> {
        http.put(format!(
            "{}/v1/{}/encrypt/{}",
            self.address, self.mount, self.key_name
        ))
        .header("X-Vault-Token", token.expose())
        .json(&json!({ "plaintext": PROBE }))
        .send()
        .await
        .map_err(|e| self.unreachable(e))
    }

    fn unreachable(&self, error: reqwest::Error) -> ActionError {
        ActionError::transient(format!("transit at {}: {error}", self.address))
    }

    /// A sealed or unwell server: worth retrying.
    fn server_error(&self, call: &str, status: u16) -> ActionError {
        ActionError::transient(format!(
            "transit at {}: {call} answered HTTP {status}",
            self.address
        ))
    }
}

/// An HTTP client for the transit server, with planx's HTTP policy.
fn http() -> reqwest::Client {
    crate::keyservices::http_client("transit").unwrap_or_default()
}

/// A transit key as a [`KeyService`](super::KeyService): the seal's access is its token.
pub struct TransitService {
    pub key: TransitKey,
    pub token: Secret,
}

impl super::KeyService for TransitService {
    fn check_access<'a>(
        &'a self,
        _identity: &'a str,
        _role: &'a str,
    ) -> crate::engine::BoxFuture<'a, Result<String, ActionError>> {
        Box::pin(async move {
            self.key.probe(&self.token).await?;
            Ok(format!(
                "the seal's token encrypts and decrypts with transit key {} at {}",
                self.key.key_name, self.key.address
            ))
        })
    }

    fn plan_withdrawal<'a>(
        &'a self,
        _identity: &'a str,
        _role: &'a str,
    ) -> crate::engine::BoxFuture<'a, Result<Box<dyn super::Withdrawal + 'a>, ActionError>> {
        Box::pin(async move {
            let withdrawn = self.key.access_withdrawn(&self.token).await?;
            Ok(Box::new(TransitWithdrawal {
                service: self,
                withdrawn,
                revoked: false,
            }) as Box<dyn super::Withdrawal + 'a>)
        })
    }
}

/// Revoking a transit seal's token.
struct TransitWithdrawal<'a> {
    service: &'a TransitService,
    /// Revoked before this run looked.
    withdrawn: bool,
    /// Revoked by this withdrawal.
    revoked: bool,
}

impl super::Withdrawal for TransitWithdrawal<'_> {
    fn is_withdrawn(&self) -> bool {
        self.withdrawn
    }

    fn removals(&self) -> Vec<String> {
        if self.withdrawn {
            return Vec::new();
        }
        let key = &self.service.key;
        vec![format!(
            "revoke the seal's token at {} (transit key {})",
            key.address, key.key_name
        )]
    }

    fn remove(&mut self, _index: usize) -> crate::engine::BoxFuture<'_, Result<(), ActionError>> {
        Box::pin(async move {
            self.service.key.revoke_token(&self.service.token).await?;
            self.revoked = true;
            Ok(())
        })
    }

    fn finish(&mut self) -> crate::engine::BoxFuture<'_, Result<String, ActionError>> {
        Box::pin(async move {
            let key = &self.service.key;
            let (address, name) = (&key.address, &key.key_name);
            if self.revoked {
                key.prove_withdrawn(&self.service.token).await?;
                Ok(format!(
                    "revoked the seal's token at {address}: an encrypt with transit key {name} now answers 403"
                ))
            } else {
                Ok(format!(
                    "the seal's token at {address} is revoked already (lookup-self and an encrypt with transit key {name} answer 403): nothing to withdraw"
                ))
            }
        })
    }
}
