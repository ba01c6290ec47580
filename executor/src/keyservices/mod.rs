//! The key services a seal uses: Azure Key Vault ([`azure`]), AWS KMS ([`awskms`]), Google Cloud
//! KMS ([`gcpckms`]) and a transit key on another Vault ([`transit`]), and what they share: the
//! error a check or a withdrawal fails with, the HTTP client and one exchange over it, the token
//! a signed-in CLI (`az`, `gcloud`) prints, the variables and target attributes they read, and
//! the random probe of an encrypt/decrypt round trip.

pub mod awskms;
pub mod azure;
pub mod gcpckms;
pub mod transit;

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use planc::model::CompiledTarget;
use serde::de::DeserializeOwned;

use crate::engine::{ActionError, BoxFuture};
use crate::secrets::Secret;

/// A key service a seal uses, as `preflight.key-access` and `keys.disable` see it. Each kind
/// (Azure Key Vault, AWS KMS, Cloud KMS, transit) implements it in its own module; [`for_target`]
/// picks the one a target is.
pub trait KeyService: Send + Sync {
    /// Check that the seal can use the key (for the cloud services: that `identity`, the
    /// identity the Vault pods use, holds what it needs, `role` on an Azure Key Vault in RBAC
    /// mode); a one-line summary.
    fn check_access<'a>(
        &'a self,
        identity: &'a str,
        role: &'a str,
    ) -> BoxFuture<'a, Result<String, ActionError>>;

    /// Find what grants `identity` the use of the key, to withdraw. Changes nothing.
    fn plan_withdrawal<'a>(
        &'a self,
        identity: &'a str,
        role: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn Withdrawal + 'a>, ActionError>>;
}

/// The withdrawal of access a [`KeyService`] found: each removal made on its own (the caller
/// journals each as an effect), then a summary, or a failure naming what planx leaves to the
/// operator.
pub trait Withdrawal: Send {
    /// Nothing grants the access any more: a step in doubt is done.
    fn is_withdrawn(&self) -> bool;

    /// The removals to make, in order, each said as the effect the journal records.
    fn removals(&self) -> Vec<String>;

    /// Make removal `index` of [`Withdrawal::removals`].
    fn remove(&mut self, index: usize) -> BoxFuture<'_, Result<(), ActionError>>;

    /// Once every removal is made: what was done, or why access remains.
    fn finish(&mut self) -> BoxFuture<'_, Result<String, ActionError>>;
}

/// The key service a target is, with the operator's credentials from the environment (the
/// cloud services) or the seal's `token` (transit).
pub fn for_target(
    target: &CompiledTarget,
    token: Option<Secret>,
) -> Result<Box<dyn KeyService>, ActionError> {
    use planc_schema::plan::TargetKind;
    Ok(match target.kind {
        TargetKind::Azurekeyvault => Box::new(azure::AzureKeyService {
            endpoints: azure::AzureEndpoints::from_env(),
            credential: azure::AzureCredential::from_env(),
            target: azure::KeyVaultTarget::from_compiled(target)?,
        }),
        TargetKind::Awskms => Box::new(awskms::AwsKmsService {
            endpoint: awskms::KmsEndpoint::from_env(),
            credentials: awskms::AwsCredentials::from_env()?,
            target: awskms::KmsKeyTarget::from_compiled(target)?,
        }),
        TargetKind::Gcpckms => Box::new(gcpckms::CloudKmsService {
            endpoint: gcpckms::CloudKmsEndpoint::from_env(),
            credential: gcpckms::GcpCredential::from_env(),
            target: gcpckms::CryptoKeyTarget::from_compiled(target)?,
        }),
        TargetKind::Transit => Box::new(transit::TransitService {
            key: transit::TransitKey::from_compiled(target),
            token: token.ok_or_else(|| {
                ActionError::permanent(format!("the transit target `{}` has no token", target.id))
            })?,
        }),
        other => {
            return Err(ActionError::permanent(format!(
                "`{}` is a {} target, not a key service",
                target.id,
                other.name()
            )));
        }
    })
}

/// Bytes of the random plaintext a round trip encrypts.
const PROBE_BYTES: usize = 32;
/// How long a CLI may take to print a token.
const CLI_TIMEOUT: Duration = Duration::from_secs(90);

/// What went wrong checking or withdrawing key access. Never carries a token, a client secret or
/// a secret key.
#[derive(Debug, thiserror::Error)]
pub enum KeyServiceError {
    /// The request did not get an answer.
    #[error("{call}: {source}")]
    Transport {
        call: String,
        #[source]
        source: reqwest::Error,
    },
    /// The service answered with an error status.
    #[error("{call}: HTTP {status}{}: {message}{remedy}", code_suffix(code))]
    Status {
        call: String,
        status: u16,
        /// The service's error code: Azure's `error.code` (or the token endpoint's `error`), the
        /// AWS error type without its namespace, Google's `error.status`; empty when it sent none.
        code: String,
        message: String,
        /// What to change, for errors where planx knows.
        remedy: String,
        /// Worth retrying by the service's rules: throttling, a server error, a conflict.
        transient: bool,
    },
    /// The service answered, but not with what its API documents.
    #[error("{call}: unexpected answer: {message}")]
    Answer { call: String, message: String },
    /// No credential or token could be obtained.
    #[error("{0}")]
    Credential(String),
    /// The check found missing access, a missing or unusable key, or incomplete target
    /// attributes or step input.
    #[error("{0}")]
    Check(String),
}

fn code_suffix(code: &str) -> String {
    if code.is_empty() {
        String::new()
    } else {
        format!(" {code}")
    }
}

impl KeyServiceError {
    /// Worth retrying: the network, or an error status the service marks so, not the request.
    pub fn is_transient(&self) -> bool {
        match self {
            KeyServiceError::Transport { .. } => true,
            KeyServiceError::Status { transient, .. } => *transient,
            _ => false,
        }
    }
}

impl From<KeyServiceError> for ActionError {
    fn from(error: KeyServiceError) -> ActionError {
        ActionError {
            transient: error.is_transient(),
            message: error.to_string(),
        }
    }
}

/// How long one call to a key service may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The HTTP client for `service`'s API (`Azure`, `AWS KMS`, transit, ...): planx's HTTP policy
/// (no redirects, so a token goes to no host planx did not address) and a limit per call.
pub fn http_client(service: &str) -> Result<reqwest::Client, KeyServiceError> {
    let cannot = |e: String| {
        KeyServiceError::Check(format!("cannot build the HTTP client for {service}: {e}"))
    };
    crate::adapters::http::builder(&[])
        .map_err(cannot)?
        .timeout(CALL_TIMEOUT)
        .build()
        .map_err(|e| cannot(e.to_string()))
}

/// Send `request`, named `call` in errors: the answer's status and body.
pub async fn exchange(
    call: &str,
    request: reqwest::RequestBuilder,
) -> Result<(u16, String), KeyServiceError> {
    let transport = |source| KeyServiceError::Transport {
        call: call.to_string(),
        source,
    };
    let response = request.send().await.map_err(transport)?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(transport)?;
    Ok((status, body))
}

/// A successful answer's `body` as `T`.
pub fn parse_answer<T: DeserializeOwned>(call: &str, body: &str) -> Result<T, KeyServiceError> {
    serde_json::from_str(body).map_err(|e| KeyServiceError::Answer {
        call: call.to_string(),
        message: e.to_string(),
    })
}

/// An error answer's body as its message, when it carries none planx can read: trimmed, its
/// first 300 characters.
pub fn body_excerpt(body: &str) -> String {
    body.trim().chars().take(300).collect()
}

/// The access token a signed-in CLI prints: `program args`, without stdin, given 90 seconds.
/// `read` takes the token from stdout (`None`: it printed no `token_name`); `instead` says what to
/// do when the program cannot run. The token is never shown.
pub async fn cli_token(
    program: &Path,
    args: &[&str],
    instead: &str,
    token_name: &str,
    read: impl FnOnce(&[u8]) -> Option<String>,
) -> Result<Secret, KeyServiceError> {
    let command = format!("{} {}", program.display(), args.join(" "));
    let run = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(CLI_TIMEOUT, run).await {
        Err(_) => {
            return Err(KeyServiceError::Credential(format!(
                "`{command}` did not finish in {} seconds",
                CLI_TIMEOUT.as_secs()
            )));
        }
        Ok(Err(error)) => {
            return Err(KeyServiceError::Credential(format!(
                "cannot run `{command}` ({error}): {instead}"
            )));
        }
        Ok(Ok(output)) => output,
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr: String = stderr.trim().chars().take(500).collect();
        return Err(KeyServiceError::Credential(format!(
            "`{command}` failed ({}): {stderr}",
            output.status
        )));
    }
    read(&output.stdout)
        .map(Secret::new)
        .ok_or_else(|| KeyServiceError::Credential(format!("`{command}` printed no {token_name}")))
}

/// The variable `name` read through `lookup`, trimmed; `None` when unset or blank.
pub fn variable(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name)
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

/// As [`variable`], an address without trailing slashes.
pub fn url_variable(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name)
        .map(|value| value.trim().trim_end_matches('/').to_string())
        .filter(|value| !value.is_empty())
}

/// The attribute `name` of `target`, as given, unless it is blank.
pub fn attribute<'t>(target: &'t CompiledTarget, name: &str) -> Option<&'t str> {
    target
        .attribute(name)
        .filter(|value| !value.trim().is_empty())
}

/// As [`attribute`], required of a `kind` target.
pub fn required_attribute<'t>(
    target: &'t CompiledTarget,
    kind: &str,
    name: &str,
) -> Result<&'t str, KeyServiceError> {
    attribute(target, name).ok_or_else(|| {
        KeyServiceError::Check(format!("the {kind} target `{}` has no `{name}`", target.id))
    })
}

/// The random plaintext of an encrypt/decrypt round trip.
pub struct Probe([u8; PROBE_BYTES]);

impl Probe {
    /// A fresh random plaintext.
    pub fn draw() -> Result<Probe, KeyServiceError> {
        let mut probe = [0u8; PROBE_BYTES];
        getrandom::fill(&mut probe).map_err(|e| {
            KeyServiceError::Check(format!("cannot draw a random plaintext to encrypt: {e}"))
        })?;
        Ok(Probe(probe))
    }

    /// In base64, as the encrypt sends it.
    pub fn encoded(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// The decrypt named by `call` gave the probe back as `plaintext` (base64).
    pub fn check_returned(
        &self,
        call: impl FnOnce() -> String,
        plaintext: &str,
    ) -> Result<(), KeyServiceError> {
        let decoded = base64::engine::general_purpose::STANDARD.decode(plaintext);
        if decoded.ok().as_deref() == Some(&self.0[..]) {
            return Ok(());
        }
        Err(KeyServiceError::Answer {
            call: call(),
            message: "the plaintext that came back is not the one encrypted".into(),
        })
    }
}
