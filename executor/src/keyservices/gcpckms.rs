//! Google Cloud KMS access for `preflight.key-access` and `keys.disable`: the crypto key read
//! (purpose, primary version enabled), an encrypt/decrypt round trip of a random probe, and, for
//! the service account the Vault pods use, the key's IAM policy, read for the check and set without
//! the account for the withdrawal. Requests go over reqwest to the Cloud KMS REST API with the
//! operator's access token, from `GOOGLE_OAUTH_ACCESS_TOKEN` or from
//! `gcloud auth print-access-token`.

use std::path::{Path, PathBuf};

use planc::model::CompiledTarget;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::keyservices::{self, KeyServiceError, Probe};
use crate::secrets::Secret;

const DEFAULT_CLOUD_KMS_URL: &str = "https://cloudkms.googleapis.com/v1";
/// The role that holds `cloudkms.cryptoKeyVersions.useToEncrypt` and `useToDecrypt`.
pub const ENCRYPTER_DECRYPTER_ROLE: &str = "roles/cloudkms.cryptoKeyEncrypterDecrypter";

/// Where Cloud KMS is: `https://cloudkms.googleapis.com/v1`, or `PLANX_GCP_KMS_URL` (a private
/// endpoint, a local replay server in tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudKmsEndpoint {
    /// The API root, up to and including `/v1`.
    pub url: String,
}

impl Default for CloudKmsEndpoint {
    fn default() -> CloudKmsEndpoint {
        CloudKmsEndpoint {
            url: DEFAULT_CLOUD_KMS_URL.into(),
        }
    }
}

impl CloudKmsEndpoint {
    /// `PLANX_GCP_KMS_URL` if set, else the public endpoint.
    pub fn from_env() -> CloudKmsEndpoint {
        CloudKmsEndpoint::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`CloudKmsEndpoint::from_env`], reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> CloudKmsEndpoint {
        keyservices::url_variable(&lookup, "PLANX_GCP_KMS_URL")
            .map_or_else(CloudKmsEndpoint::default, |url| CloudKmsEndpoint { url })
    }
}

/// How the operator running planx obtains an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GcpCredential {
    /// A token given in `GOOGLE_OAUTH_ACCESS_TOKEN`.
    AccessToken(Secret),
    /// The signed-in Google Cloud CLI: `gcloud auth print-access-token`.
    Gcloud { program: PathBuf },
}

impl GcpCredential {
    /// `GOOGLE_OAUTH_ACCESS_TOKEN` if set, else the Google Cloud CLI.
    pub fn from_env() -> GcpCredential {
        GcpCredential::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`GcpCredential::from_env`], reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> GcpCredential {
        keyservices::variable(&lookup, "GOOGLE_OAUTH_ACCESS_TOKEN").map_or_else(
            || GcpCredential::Gcloud {
                program: PathBuf::from("gcloud"),
            },
            |token| GcpCredential::AccessToken(Secret::new(token)),
        )
    }

    async fn access_token(&self) -> Result<Secret, GcpKmsError> {
        match self {
            GcpCredential::AccessToken(token) => Ok(token.clone()),
            GcpCredential::Gcloud { program } => gcloud_access_token(program).await,
        }
    }
}

/// The attributes of a `gcpckms` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoKeyTarget {
    pub project: String,
    /// The key ring's location (`global`, `europe-west1`, ...).
    pub region: String,
    pub key_ring: String,
    pub crypto_key: String,
}

impl CryptoKeyTarget {
    /// The attributes of a compiled `gcpckms` target.
    pub fn from_compiled(target: &CompiledTarget) -> Result<CryptoKeyTarget, GcpKmsError> {
        let required = |name: &str| {
            keyservices::required_attribute(target, "gcpckms", name)
                .map(|value| value.trim().to_owned())
        };
        Ok(CryptoKeyTarget {
            project: required("project")?,
            region: required("region")?,
            key_ring: required("key_ring")?,
            crypto_key: required("crypto_key")?,
        })
    }

    /// `projects/P/locations/L/keyRings/R/cryptoKeys/K`.
    pub fn resource_name(&self) -> String {
        format!(
            "projects/{}/locations/{}/keyRings/{}/cryptoKeys/{}",
            self.project, self.region, self.key_ring, self.crypto_key
        )
    }

    /// The `--keyring --location --project` flags of `gcloud kms keys` for this key.
    fn gcloud_flags(&self) -> String {
        format!(
            "--keyring {} --location {} --project {}",
            self.key_ring, self.region, self.project
        )
    }
}

/// What went wrong checking or withdrawing key access. Never carries the access token. A
/// `Status` carries Google's `error.status` (`PERMISSION_DENIED`), and is transient for
/// throttling, a server error, or a policy that changed between its read and its write (409
/// ABORTED: the read-modify-write starts over).
pub type GcpKmsError = KeyServiceError;

/// Check that the target's key can seal a Vault: its purpose is ENCRYPT_DECRYPT and its primary
/// version is enabled, and a random plaintext survives `encrypt` and `decrypt` with the
/// operator's token. That proves the key works, not that the Vault pods may use it: planx cannot
/// act as their service account. So when `identity` is that service account's email, the key's
/// IAM policy is read and the summary says whether it grants the account
/// `roles/cloudkms.cryptoKeyEncrypterDecrypter`, as a note when it does not, since a grant on
/// the key ring or the project serves too. Returns a one-line summary.
pub async fn check_key_access(
    endpoint: &CloudKmsEndpoint,
    credential: &GcpCredential,
    target: &CryptoKeyTarget,
    identity: &str,
) -> Result<String, GcpKmsError> {
    let identity = identity.trim();
    let member = if identity.is_empty() {
        None
    } else {
        Some(service_account_member(identity).ok_or_else(|| {
            GcpKmsError::Check(format!(
                "`identity: {identity}` is not a service account; set it to the email of the service account the Vault pods use (NAME@PROJECT.iam.gserviceaccount.com), or leave it out to skip the key's IAM policy"
            ))
        })?)
    };
    let client = CloudKmsClient::new(endpoint, credential, target).await?;
    let version = client.primary_version().await?;
    client.encrypt_decrypt_round_trip().await?;
    let name = target.resource_name();
    let mut summary = format!(
        "key {name} (ENCRYPT_DECRYPT) primary version {version} enabled; encrypt and decrypt succeeded as the operator, which proves the key works, not that the Vault pods' service account may use it"
    );
    match member {
        None => summary.push_str(
            "; set `identity:` to the email of the service account the Vault pods use to check the key's IAM policy too",
        ),
        Some(member) => {
            let policy = client
                .iam_policy(
                    "cloudkms.cryptoKeys.getIamPolicy to check the key's IAM policy for `identity:` (or leave `identity:` out)",
                )
                .await?;
            summary.push_str("; ");
            summary.push_str(&iam_policy_finding(&policy, &member, target));
        }
    }
    Ok(summary)
}

/// `serviceAccount:EMAIL` for a service account's email (with or without that prefix), as IAM
/// policies name members.
fn service_account_member(identity: &str) -> Option<String> {
    let email = identity.strip_prefix("serviceAccount:").unwrap_or(identity);
    is_service_account_email(email).then(|| format!("serviceAccount:{email}"))
}

/// `NAME@DOMAIN.gserviceaccount.com`, as service accounts (user-managed, default and Google's
/// service agents) are named.
fn is_service_account_email(text: &str) -> bool {
    text.split_once('@').is_some_and(|(name, domain)| {
        !name.is_empty() && domain.ends_with("gserviceaccount.com") && !text.contains(' ')
    })
}

/// What `keys.disable` withdraws from a service account on a Cloud KMS key: its membership in
/// the key's `roles/cloudkms.cryptoKeyEncrypterDecrypter` bindings. Read first with
/// [`plan_withdrawal`]; [`KeyAccessWithdrawal::apply`] then sets the policy without it (the
/// caller journals that), and [`KeyAccessWithdrawal::summary`] says what was done. Grants on the
/// key ring or the project are not in the key's policy: planx names them for the operator.
pub struct KeyAccessWithdrawal<'a> {
    client: CloudKmsClient<'a>,
    member: String,
    /// The key's policy as read, without the member in the role's bindings (and without the
    /// bindings left empty), etag included; `None` when the key's policy does not grant it.
    policy: Option<Value>,
    /// Other roles the member holds on the key, which planx leaves.
    other_roles: Vec<String>,
}

/// Read the key's IAM policy and find the service account `identity` (an email, or
/// `serviceAccount:EMAIL`) in its `roles/cloudkms.cryptoKeyEncrypterDecrypter` bindings.
/// Changes nothing.
pub async fn plan_withdrawal<'a>(
    endpoint: &CloudKmsEndpoint,
    credential: &GcpCredential,
    target: &'a CryptoKeyTarget,
    identity: &str,
) -> Result<KeyAccessWithdrawal<'a>, GcpKmsError> {
    let identity = identity.trim();
    if identity.is_empty() {
        return Err(GcpKmsError::Check(format!(
            "set `identity:` to the email of the service account the Vault pods use, to withdraw its access to key {}",
            target.resource_name()
        )));
    }
    let member = service_account_member(identity).ok_or_else(|| {
        GcpKmsError::Check(format!(
            "`identity: {identity}` is not a service account; set it to the email of the service account the Vault pods use (NAME@PROJECT.iam.gserviceaccount.com)"
        ))
    })?;
    let client = CloudKmsClient::new(endpoint, credential, target).await?;
    let policy: Value = client
        .iam_policy("cloudkms.cryptoKeys.getIamPolicy to read the key's IAM policy")
        .await?;
    let bindings = policy["bindings"].as_array().cloned().unwrap_or_default();
    let holds = |binding: &Value| {
        binding["members"]
            .as_array()
            .is_some_and(|members| members.iter().any(|m| m == member.as_str()))
    };
    let mut other_roles: Vec<String> = bindings
        .iter()
        .filter(|binding| binding["role"] != ENCRYPTER_DECRYPTER_ROLE && holds(binding))
        .filter_map(|binding| binding["role"].as_str().map(str::to_owned))
        .collect();
    other_roles.sort();
    other_roles.dedup();
    let granted = bindings
        .iter()
        .any(|binding| binding["role"] == ENCRYPTER_DECRYPTER_ROLE && holds(binding));
    let policy = granted.then(|| {
        let kept: Vec<Value> = bindings
            .into_iter()
            .filter_map(|mut binding| {
                if binding["role"] != ENCRYPTER_DECRYPTER_ROLE {
                    return Some(binding);
                }
                let members = binding["members"].as_array_mut()?;
                members.retain(|m| m != member.as_str());
                (!members.is_empty()).then_some(binding)
            })
            .collect();
        let mut policy = policy;
        policy["bindings"] = Value::Array(kept);
        policy
    });
    Ok(KeyAccessWithdrawal {
        client,
        member,
        policy,
        other_roles,
    })
}

impl KeyAccessWithdrawal<'_> {
    /// The key's policy grants the member the role no more.
    pub fn is_withdrawn(&self) -> bool {
        self.policy.is_none()
    }

    /// The change as the journal records it, before it is made; `None` when there is none.
    pub fn effect(&self) -> Option<String> {
        self.policy.as_ref().map(|_| {
            format!(
                "remove {} from {ENCRYPTER_DECRYPTER_ROLE} in the IAM policy of key {}",
                self.member,
                self.client.target.resource_name()
            )
        })
    }

    /// `setIamPolicy` with the policy as read (its etag included, so a concurrent change fails
    /// with 409 ABORTED and the step reads the policy again when retried), without the member.
    pub async fn apply(&self) -> Result<(), GcpKmsError> {
        let Some(policy) = &self.policy else {
            return Ok(());
        };
        let _: serde::de::IgnoredAny = self
            .client
            .send(
                "setIamPolicy",
                self.client
                    .http
                    .post(format!("{}:setIamPolicy", self.client.url))
                    .json(&json!({ "policy": policy })),
                "cloudkms.cryptoKeys.setIamPolicy (roles/cloudkms.admin)",
            )
            .await?;
        Ok(())
    }

    /// What was done, with the commands for a grant above the key, which the key's policy does
    /// not show.
    pub fn summary(&self) -> String {
        let target = self.client.target;
        let member = &self.member;
        let key = target.resource_name();
        let done = if self.policy.is_some() {
            format!(
                "removed {member} from {ENCRYPTER_DECRYPTER_ROLE} in the IAM policy of key {key}"
            )
        } else {
            format!(
                "{member} not found on the key: the IAM policy of key {key} grants it no {ENCRYPTER_DECRYPTER_ROLE}, nothing removed"
            )
        };
        let others = if self.other_roles.is_empty() {
            String::new()
        } else {
            format!(
                "; it still holds {} on the key, which planx leaves",
                self.other_roles.join(", ")
            )
        };
        format!(
            "{done}{others}; if it holds the role on key ring {ring} or project {project}, that is granted above the key: remove by hand with: gcloud kms keyrings remove-iam-policy-binding {ring} --location {location} --project {project} --member {member} --role {ENCRYPTER_DECRYPTER_ROLE}, or gcloud projects remove-iam-policy-binding {project} --member {member} --role {ENCRYPTER_DECRYPTER_ROLE} (which may cut other keys too)",
            ring = target.key_ring,
            location = target.region,
            project = target.project,
        )
    }
}

#[derive(Deserialize)]
struct CryptoKey {
    purpose: String,
    #[serde(default)]
    primary: Option<CryptoKeyVersion>,
}

#[derive(Deserialize)]
struct CryptoKeyVersion {
    name: String,
    state: String,
}

#[derive(Deserialize)]
struct EncryptResponse {
    ciphertext: String,
}

#[derive(Deserialize)]
struct DecryptResponse {
    plaintext: String,
}

#[derive(Deserialize)]
struct Policy {
    #[serde(default)]
    bindings: Vec<Binding>,
}

#[derive(Deserialize)]
struct Binding {
    role: String,
    #[serde(default)]
    members: Vec<String>,
    #[serde(default)]
    condition: Option<Value>,
}

/// Whether the key's own policy grants `member` the encrypter/decrypter role, as a clause of
/// the summary.
fn iam_policy_finding(policy: &Policy, member: &str, target: &CryptoKeyTarget) -> String {
    let binding = policy
        .bindings
        .iter()
        .filter(|binding| binding.role == ENCRYPTER_DECRYPTER_ROLE)
        .find(|binding| binding.members.iter().any(|m| m == member));
    match binding {
        Some(binding) => format!(
            "{member} holds {ENCRYPTER_DECRYPTER_ROLE} on the key{}",
            if binding.condition.is_some() {
                " (under a condition planx does not evaluate)"
            } else {
                ""
            }
        ),
        None => format!(
            "note: {member} does not hold {ENCRYPTER_DECRYPTER_ROLE} on the key itself; it may hold it on the key ring or the project, or grant it with: gcloud kms keys add-iam-policy-binding {} {} --member {member} --role {ENCRYPTER_DECRYPTER_ROLE}",
            target.crypto_key,
            target.gcloud_flags()
        ),
    }
}

/// Requests about one crypto key, with one access token.
struct CloudKmsClient<'a> {
    http: reqwest::Client,
    /// The key's URL.
    url: String,
    token: Secret,
    target: &'a CryptoKeyTarget,
}

impl<'a> CloudKmsClient<'a> {
    /// A client for the target's key, with an access token fetched once.
    async fn new(
        endpoint: &CloudKmsEndpoint,
        credential: &GcpCredential,
        target: &'a CryptoKeyTarget,
    ) -> Result<CloudKmsClient<'a>, GcpKmsError> {
        Ok(CloudKmsClient {
            http: keyservices::http_client("Cloud KMS")?,
            url: format!("{}/{}", endpoint.url, target.resource_name()),
            token: credential.access_token().await?,
            target,
        })
    }

    /// The key's purpose is ENCRYPT_DECRYPT and its primary version is enabled; returns that
    /// version's number.
    async fn primary_version(&self) -> Result<String, GcpKmsError> {
        let name = self.target.resource_name();
        let key: CryptoKey = self
            .send("get", self.http.get(&self.url), "cloudkms.cryptoKeys.get")
            .await?;
        if key.purpose != "ENCRYPT_DECRYPT" {
            return Err(GcpKmsError::Check(format!(
                "key {name} has purpose {}, not ENCRYPT_DECRYPT: a Vault seal needs a symmetric encryption key",
                key.purpose
            )));
        }
        let Some(primary) = key.primary else {
            return Err(GcpKmsError::Check(format!(
                "key {name} has no primary version: the seal has nothing to encrypt with; make one primary with: gcloud kms keys set-primary-version {} --version N {}",
                self.target.crypto_key,
                self.target.gcloud_flags()
            )));
        };
        let version = primary
            .name
            .rsplit('/')
            .next()
            .unwrap_or(&primary.name)
            .to_string();
        match primary.state.as_str() {
            "ENABLED" => Ok(version),
            "DISABLED" => Err(GcpKmsError::Check(format!(
                "primary version {version} of key {name} is disabled: the seal cannot encrypt or decrypt with it; enable it with: gcloud kms keys versions enable {version} --key {} {}",
                self.target.crypto_key,
                self.target.gcloud_flags()
            ))),
            state => Err(GcpKmsError::Check(format!(
                "primary version {version} of key {name} is {state}, not ENABLED: the seal cannot encrypt or decrypt with it"
            ))),
        }
    }

    /// Encrypt a random plaintext and decrypt it again: the bytes must come back.
    async fn encrypt_decrypt_round_trip(&self) -> Result<(), GcpKmsError> {
        let probe = Probe::draw()?;
        let encrypted: EncryptResponse = self
            .send(
                "encrypt",
                self.http
                    .post(format!("{}:encrypt", self.url))
                    .json(&json!({ "plaintext": probe.encoded() })),
                "cloudkms.cryptoKeyVersions.useToEncrypt (roles/cloudkms.cryptoKeyEncrypterDecrypter)",
            )
            .await?;
        let decrypted: DecryptResponse = self
            .send(
                "decrypt",
                self.http
                    .post(format!("{}:decrypt", self.url))
                    .json(&json!({ "ciphertext": encrypted.ciphertext })),
                "cloudkms.cryptoKeyVersions.useToDecrypt (roles/cloudkms.cryptoKeyEncrypterDecrypter)",
            )
            .await?;
        probe.check_returned(
            || format!("Cloud KMS decrypt with {}", self.target.resource_name()),
            &decrypted.plaintext,
        )
    }

    /// The key's own IAM policy, conditional bindings included; a 403 names `permission`.
    async fn iam_policy<T: DeserializeOwned>(&self, permission: &str) -> Result<T, GcpKmsError> {
        self.send(
            "getIamPolicy",
            self.http
                .get(format!("{}:getIamPolicy", self.url))
                .query(&[("options.requestedPolicyVersion", "3")]),
            permission,
        )
        .await
    }

    /// Send `request`, the API method `api_method` (`get`, `encrypt`, ...), with the token; a 403
    /// names `permission`, a 404 the key.
    async fn send<T: DeserializeOwned>(
        &self,
        api_method: &str,
        request: reqwest::RequestBuilder,
        permission: &str,
    ) -> Result<T, GcpKmsError> {
        let name = self.target.resource_name();
        let call = format!("Cloud KMS {api_method} {name}");
        let request = request
            .bearer_auth(self.token.expose())
            .header("Accept", "application/json");
        let (status, body) = keyservices::exchange(&call, request).await?;
        if (200..300).contains(&status) {
            return keyservices::parse_answer(&call, &body);
        }
        let parsed: Value = serde_json::from_str(&body).unwrap_or_default();
        let code = parsed["error"]["status"].as_str().unwrap_or("error");
        let message = parsed["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| keyservices::body_excerpt(&body));
        if status == 404 {
            return Err(GcpKmsError::Check(format!(
                "Cloud KMS has no key {name} ({code}: {message}); check the target's `project`, `region`, `key_ring` and `crypto_key`"
            )));
        }
        let remedy = match status {
            403 => format!("; the operator running planx needs {permission} on the key"),
            401 => "; the access token was refused: run `gcloud auth login` again, or set GOOGLE_OAUTH_ACCESS_TOKEN to a fresh token".into(),
            409 if code == "ABORTED" => "; the policy changed since planx read it: retrying the step reads it again (give the step `retry:`)".into(),
            _ => String::new(),
        };
        Err(GcpKmsError::Status {
            call,
            status,
            code: code.to_string(),
            message,
            remedy,
            transient: status == 429 || status >= 500 || (status == 409 && code == "ABORTED"),
        })
    }
}

/// `gcloud auth print-access-token`; the token is read from stdout and never shown.
async fn gcloud_access_token(program: &Path) -> Result<Secret, GcpKmsError> {
    keyservices::cli_token(
        program,
        &["auth", "print-access-token"],
        "set GOOGLE_OAUTH_ACCESS_TOKEN, or install the Google Cloud CLI and run `gcloud auth login`",
        "access token",
        |stdout| {
            let token = String::from_utf8_lossy(stdout).trim().to_string();
            (!token.is_empty() && !token.contains(char::is_whitespace)).then_some(token)
        },
    )
    .await
}

/// Google Cloud KMS as a [`KeyService`](super::KeyService).
pub struct CloudKmsService {
    pub endpoint: CloudKmsEndpoint,
    pub credential: GcpCredential,
    pub target: CryptoKeyTarget,
}

impl super::KeyService for CloudKmsService {
    fn check_access<'a>(
        &'a self,
        identity: &'a str,
        _role: &'a str,
    ) -> crate::engine::BoxFuture<'a, Result<String, crate::engine::ActionError>> {
        Box::pin(async move {
            Ok(check_key_access(&self.endpoint, &self.credential, &self.target, identity).await?)
        })
    }

    fn plan_withdrawal<'a>(
        &'a self,
        identity: &'a str,
        _role: &'a str,
    ) -> crate::engine::BoxFuture<
        'a,
        Result<Box<dyn super::Withdrawal + 'a>, crate::engine::ActionError>,
    > {
        Box::pin(async move {
            let withdrawal =
                plan_withdrawal(&self.endpoint, &self.credential, &self.target, identity).await?;
            Ok(Box::new(withdrawal) as Box<dyn super::Withdrawal + 'a>)
        })
    }
}

impl super::Withdrawal for KeyAccessWithdrawal<'_> {
    fn is_withdrawn(&self) -> bool {
        KeyAccessWithdrawal::is_withdrawn(self)
    }

    fn removals(&self) -> Vec<String> {
        self.effect().into_iter().collect()
    }

    fn remove(
        &mut self,
        _index: usize,
    ) -> crate::engine::BoxFuture<'_, Result<(), crate::engine::ActionError>> {
        Box::pin(async move { Ok(self.apply().await?) })
    }

    fn finish(
        &mut self,
    ) -> crate::engine::BoxFuture<'_, Result<String, crate::engine::ActionError>> {
        Box::pin(async move { Ok(self.summary()) })
    }
}
