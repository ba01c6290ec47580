//! AWS KMS access for `preflight.key-access` and `keys.disable`: the key described (enabled,
//! symmetric, for encryption), an encrypt/decrypt round trip of a random probe, and, for the IAM
//! role the Vault pods use, a reading of the key policy; the withdrawal revokes the role's grants
//! and names the key-policy statements that still name it, since planx never rewrites a key
//! policy. Requests go over reqwest in the JSON 1.1
//! protocol, signed with AWS Signature Version 4 here (no AWS SDK), with the operator's
//! credentials from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
//! planx reads no profile, SSO cache or instance metadata: for those, export the credentials
//! first with `eval "$(aws configure export-credentials --format env)"`.

use std::time::SystemTime;

use hmac::{Hmac, KeyInit, Mac};
use planc::model::CompiledTarget;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::keyservices::{self, KeyServiceError, Probe};
use crate::secrets::Secret;

/// The regional KMS endpoint, `{region}` replaced by the target's region.
const DEFAULT_KMS_URL: &str = "https://kms.{region}.amazonaws.com";
const JSON_1_1: &str = "application/x-amz-json-1.1";
const SIGNING_ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The key-policy actions an AWS KMS seal uses.
const SEAL_ACTIONS: [&str; 3] = ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"];
/// ListGrants pages followed at most before giving up.
const MAX_GRANT_PAGES: usize = 100;
/// Error codes worth retrying besides HTTP 5xx.
const TRANSIENT_CODES: [&str; 4] = [
    "ThrottlingException",
    "KMSInternalException",
    "DependencyTimeoutException",
    "ServiceUnavailable",
];
/// Error codes that mean the operator's credentials were refused.
const CREDENTIAL_CODES: [&str; 6] = [
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignature",
    "InvalidClientTokenId",
    "ExpiredTokenException",
    "RequestExpired",
];

/// Where AWS KMS is: the regional endpoint, or `PLANX_AWS_KMS_URL` (a FIPS endpoint, a VPC
/// endpoint, a local replay server in tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsEndpoint {
    /// `{region}` stands for the target's region.
    pub url_template: String,
}

impl Default for KmsEndpoint {
    fn default() -> KmsEndpoint {
        KmsEndpoint {
            url_template: DEFAULT_KMS_URL.into(),
        }
    }
}

impl KmsEndpoint {
    /// `PLANX_AWS_KMS_URL` if set, else the regional endpoint.
    pub fn from_env() -> KmsEndpoint {
        KmsEndpoint::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`KmsEndpoint::from_env`], reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> KmsEndpoint {
        keyservices::url_variable(&lookup, "PLANX_AWS_KMS_URL")
            .map_or_else(KmsEndpoint::default, |url_template| KmsEndpoint {
                url_template,
            })
    }

    /// The endpoint for `region`.
    pub fn url(&self, region: &str) -> String {
        self.url_template.replace("{region}", region)
    }
}

/// The credentials of the operator running planx. `Debug` shows neither the secret key nor the
/// session token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// For temporary credentials (an assumed role, SSO).
    pub session_token: Option<Secret>,
}

impl AwsCredentials {
    /// From `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and, if set, `AWS_SESSION_TOKEN`.
    pub fn from_env() -> Result<AwsCredentials, AwsKmsError> {
        AwsCredentials::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`AwsCredentials::from_env`], reading variables through `lookup`.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<AwsCredentials, AwsKmsError> {
        let read = |name: &str| keyservices::variable(&lookup, name);
        match (read("AWS_ACCESS_KEY_ID"), read("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret)) => Ok(AwsCredentials {
                access_key_id,
                secret_access_key: Secret::new(secret),
                session_token: read("AWS_SESSION_TOKEN").map(Secret::new),
            }),
            _ => {
                let profile = read("AWS_PROFILE")
                    .map(|profile| {
                        format!(
                            " (AWS_PROFILE={profile} is set, but planx reads no profiles: run `eval \"$(aws configure export-credentials --profile {profile} --format env)\"`)"
                        )
                    })
                    .unwrap_or_default();
                Err(AwsKmsError::Credential(format!(
                    "planx calls AWS KMS with the operator's credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones), which are not set{profile}; with a profile or SSO, export them first with `eval \"$(aws configure export-credentials --format env)\"`"
                )))
            }
        }
    }
}

/// The attributes of an `awskms` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsKeyTarget {
    pub region: String,
    /// A key id, key ARN, alias name (`alias/NAME`) or alias ARN, as the seal names the key.
    pub kms_key_id: String,
}

impl KmsKeyTarget {
    /// The attributes of a compiled `awskms` target.
    pub fn from_compiled(target: &CompiledTarget) -> Result<KmsKeyTarget, AwsKmsError> {
        let required = |name: &str| {
            keyservices::required_attribute(target, "awskms", name)
                .map(|value| value.trim().to_owned())
        };
        Ok(KmsKeyTarget {
            region: required("region")?,
            kms_key_id: required("kms_key_id")?,
        })
    }
}

/// What went wrong checking or withdrawing key access. Never carries the secret key or the session
/// token. A `Status` carries the AWS error type (`AccessDeniedException`) without its namespace,
/// and is transient for server errors and the throttling and internal error types.
pub type AwsKmsError = KeyServiceError;

/// Check that the target's key can seal a Vault: it exists and is an enabled symmetric
/// encryption key (`DescribeKey`), and a random plaintext survives `Encrypt` and `Decrypt` with
/// the operator's credentials. That proves the key works, not that the Vault pods may use it:
/// planx cannot act as their role. So when `identity` is the ARN of the IAM role (or user) the
/// pods use, the key policy is read (`GetKeyPolicy`) and the summary says whether it allows
/// that principal `kms:Encrypt`, `kms:Decrypt` and `kms:DescribeKey`, as a warning when it does
/// not, since IAM policies and grants can allow them too. Returns a one-line summary.
pub async fn check_key_access(
    endpoint: &KmsEndpoint,
    credentials: &AwsCredentials,
    target: &KmsKeyTarget,
    identity: &str,
) -> Result<String, AwsKmsError> {
    let identity = identity.trim();
    let principal = if identity.is_empty() {
        None
    } else {
        Some(IamPrincipal::parse(identity).ok_or_else(|| {
            AwsKmsError::Check(format!(
                "`identity: {identity}` is not an IAM role ARN; set it to the ARN of the role the Vault pods use (arn:aws:iam::ACCOUNT:role/NAME), or leave it out to skip the key policy"
            ))
        })?)
    };
    check_region(target)?;
    let client = KmsClient::new(endpoint, credentials, &target.region)?;
    let metadata = client.describe_key(&target.kms_key_id).await?;
    check_key_metadata(&metadata, &target.region)?;
    client.encrypt_decrypt_round_trip(&metadata.arn).await?;
    let mut summary = format!(
        "key {} enabled ({}, {}); encrypt and decrypt succeeded as the operator, which proves the key works, not that the Vault pods' role may use it",
        metadata.arn,
        metadata.key_spec(),
        metadata.key_usage
    );
    match principal {
        None => summary.push_str(
            "; set `identity:` to the ARN of the role the Vault pods use to check the key policy too",
        ),
        Some(principal) => {
            let policy = client.key_policy(&metadata.arn).await?;
            summary.push_str("; ");
            summary.push_str(&key_policy_finding(&policy, &principal));
        }
    }
    Ok(summary)
}

/// A key named by ARN is in the target's region.
fn check_region(target: &KmsKeyTarget) -> Result<(), AwsKmsError> {
    match arn_region(&target.kms_key_id) {
        Some(key_region) if key_region != target.region => Err(AwsKmsError::Check(format!(
            "the key {} is in region {key_region}, the target says `region: {}`",
            target.kms_key_id, target.region
        ))),
        _ => Ok(()),
    }
}

/// What `keys.disable` withdraws from an IAM role on an AWS KMS key: its grants, revoked one by
/// one with [`KeyAccessWithdrawal::revoke`] (the caller journals each), since grants are made to
/// be revoked. The key policy is only read: [`KeyAccessWithdrawal::finish`] fails naming the
/// statements that still name the role, with the commands to remove them by hand.
pub struct KeyAccessWithdrawal<'a> {
    client: KmsClient<'a>,
    key_arn: String,
    role: String,
    account: String,
    grants: Vec<KmsGrant>,
    /// The Allow statements of the key policy naming the role: their Sid, or their position.
    statements: Vec<String>,
    /// The key policy lets IAM policies in the role's account allow access.
    delegates_to_iam: bool,
}

/// A grant on the key to the role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsGrant {
    pub id: String,
    pub operations: Vec<String>,
}

/// Describe the key (resolving an alias), list its grants to the role `identity` (an IAM role
/// ARN) and read its key policy for statements that name the role. Changes nothing.
pub async fn plan_withdrawal<'a>(
    endpoint: &KmsEndpoint,
    credentials: &'a AwsCredentials,
    target: &'a KmsKeyTarget,
    identity: &str,
) -> Result<KeyAccessWithdrawal<'a>, AwsKmsError> {
    let identity = identity.trim();
    if identity.is_empty() {
        return Err(AwsKmsError::Check(format!(
            "set `identity:` to the ARN of the IAM role the Vault pods use, to withdraw its access to key {}",
            target.kms_key_id
        )));
    }
    let principal = IamPrincipal::parse(identity).ok_or_else(|| {
        AwsKmsError::Check(format!(
            "`identity: {identity}` is not an IAM role ARN; set it to the ARN of the role the Vault pods use (arn:aws:iam::ACCOUNT:role/NAME)"
        ))
    })?;
    check_region(target)?;
    let client = KmsClient::new(endpoint, credentials, &target.region)?;
    let key_arn = client.describe_key(&target.kms_key_id).await?.arn;
    let grants = client.grants_to(&key_arn, principal.arn).await?;
    let policy = client.key_policy(&key_arn).await.map_err(|mut error| {
        if let AwsKmsError::Status { code, remedy, .. } = &mut error
            && code == "AccessDeniedException"
        {
            *remedy = "; the operator running planx needs kms:GetKeyPolicy on the key".into();
        }
        error
    })?;
    let statements = policy_statements(&policy);
    let naming: Vec<String> = statements
        .iter()
        .enumerate()
        .filter(|(_, statement)| {
            statement["Effect"] == "Allow"
                && names_any_principal(&statement["Principal"], &[principal.arn])
        })
        .map(|(index, statement)| match statement["Sid"].as_str() {
            Some(sid) if !sid.is_empty() => format!("\"{sid}\""),
            _ => format!("#{}", index + 1),
        })
        .collect();
    let [root, account] = principal.account_principals();
    let delegates_to_iam = ["kms:Encrypt", "kms:Decrypt"]
        .into_iter()
        .any(|action| allowing(&statements, &[root.as_str(), account.as_str()], action).is_some());
    Ok(KeyAccessWithdrawal {
        key_arn,
        role: principal.arn.to_string(),
        account: principal.account.to_string(),
        client,
        grants,
        statements: naming,
        delegates_to_iam,
    })
}

impl KeyAccessWithdrawal<'_> {
    /// The grants to revoke.
    pub fn grants(&self) -> &[KmsGrant] {
        &self.grants
    }

    /// No grant and no key-policy statement gives the role the key any more.
    pub fn is_withdrawn(&self) -> bool {
        self.grants.is_empty() && self.statements.is_empty()
    }

    /// A revocation as the journal records it, before it is made.
    pub fn revoke_effect(&self, grant: &KmsGrant) -> String {
        format!(
            "revoke grant {} ({}) of {} on key {}",
            grant.id,
            grant.operations.join(", "),
            self.role,
            self.key_arn
        )
    }

    /// `RevokeGrant`.
    pub async fn revoke(&self, grant: &KmsGrant) -> Result<(), AwsKmsError> {
        let _: serde::de::IgnoredAny = self
            .client
            .call(
                "RevokeGrant",
                &self.key_arn,
                json!({ "KeyId": self.key_arn, "GrantId": grant.id }),
            )
            .await?;
        Ok(())
    }

    /// Once the grants are revoked: a summary; or, when key-policy statements still name the
    /// role, a failure naming them with the commands that remove them by hand.
    pub fn finish(&self) -> Result<String, AwsKmsError> {
        let (role, key, region) = (&self.role, &self.key_arn, self.client.region);
        let revoked = if self.grants.is_empty() {
            format!("{role} holds no grant on key {key}")
        } else {
            let ids: Vec<&str> = self.grants.iter().map(|g| g.id.as_str()).collect();
            format!(
                "revoked the {} of {role} on key {key}: {}",
                if ids.len() == 1 { "grant" } else { "grants" },
                ids.join(", ")
            )
        };
        let iam = if self.delegates_to_iam {
            format!(
                "; the key policy lets IAM policies in account {} allow access, which planx does not read: detach any IAM policy of {role} that allows kms:Decrypt on this key",
                self.account
            )
        } else {
            String::new()
        };
        if self.statements.is_empty() {
            return Ok(format!(
                "{revoked}; the key policy names it in no statement{iam}"
            ));
        }
        Err(AwsKmsError::Check(format!(
            "{revoked}; the key policy still names {role} in {} {}, and planx does not rewrite key policies (a wrong one can lock everyone out of the key): remove {role} from {} by hand with: aws kms get-key-policy --key-id {key} --policy-name default --region {region} --query Policy --output text > key-policy.json, edit key-policy.json, then aws kms put-key-policy --key-id {key} --policy-name default --policy file://key-policy.json --region {region}, and run the step again{iam}",
            if self.statements.len() == 1 {
                "statement"
            } else {
                "statements"
            },
            self.statements.join(", "),
            if self.statements.len() == 1 {
                "it"
            } else {
                "them"
            },
        )))
    }
}

/// An IAM role or user ARN: `arn:PARTITION:iam::ACCOUNT:role/NAME`.
struct IamPrincipal<'a> {
    arn: &'a str,
    partition: &'a str,
    account: &'a str,
}

impl<'a> IamPrincipal<'a> {
    fn parse(arn: &'a str) -> Option<IamPrincipal<'a>> {
        let mut parts = arn.splitn(6, ':');
        let (scheme, partition, service, region, account, resource) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        let named = resource
            .strip_prefix("role/")
            .or_else(|| resource.strip_prefix("user/"))
            .is_some_and(|name| !name.is_empty());
        (scheme == "arn"
            && partition.starts_with("aws")
            && service == "iam"
            && region.is_empty()
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && named)
            .then_some(IamPrincipal {
                arn,
                partition,
                account,
            })
    }

    /// The principals that stand for the whole account in a key policy, which lets the account's
    /// IAM policies allow access.
    fn account_principals(&self) -> [String; 2] {
        [
            format!("arn:{}:iam::{}:root", self.partition, self.account),
            self.account.to_string(),
        ]
    }
}

/// The region of a key or alias ARN (`arn:aws:kms:REGION:ACCOUNT:key/ID`).
fn arn_region(kms_key_id: &str) -> Option<&str> {
    let mut parts = kms_key_id.split(':');
    (parts.next() == Some("arn"))
        .then(|| parts.nth(2))
        .flatten()
        .filter(|region| !region.is_empty())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeKeyResponse {
    key_metadata: KeyMetadata,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyMetadata {
    arn: String,
    key_state: String,
    key_usage: String,
    #[serde(default)]
    key_spec: Option<String>,
    /// What `KeySpec` replaced; older answers carry only this.
    #[serde(default)]
    customer_master_key_spec: Option<String>,
}

impl KeyMetadata {
    fn key_spec(&self) -> &str {
        self.key_spec
            .as_deref()
            .or(self.customer_master_key_spec.as_deref())
            .unwrap_or("SYMMETRIC_DEFAULT")
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptResponse {
    ciphertext_blob: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptResponse {
    plaintext: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetKeyPolicyResponse {
    policy: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListGrantsResponse {
    #[serde(default)]
    grants: Vec<GrantListEntry>,
    #[serde(default)]
    truncated: bool,
    #[serde(default)]
    next_marker: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GrantListEntry {
    grant_id: String,
    #[serde(default)]
    grantee_principal: Option<String>,
    #[serde(default)]
    operations: Vec<String>,
}

/// The key is enabled, symmetric and for encryption, as a seal needs it.
fn check_key_metadata(metadata: &KeyMetadata, region: &str) -> Result<(), AwsKmsError> {
    let arn = &metadata.arn;
    match metadata.key_state.as_str() {
        "Enabled" => {}
        "Disabled" => {
            return Err(AwsKmsError::Check(format!(
                "key {arn} is disabled: the seal cannot encrypt or decrypt with it; enable it with: aws kms enable-key --key-id {arn} --region {region}"
            )));
        }
        "PendingDeletion" => {
            return Err(AwsKmsError::Check(format!(
                "key {arn} is pending deletion: the seal cannot use it; keep it with: aws kms cancel-key-deletion --key-id {arn} --region {region}, then aws kms enable-key --key-id {arn} --region {region}"
            )));
        }
        other => {
            return Err(AwsKmsError::Check(format!(
                "key {arn} is in state {other}, not Enabled: the seal cannot encrypt or decrypt with it"
            )));
        }
    }
    if metadata.key_usage != "ENCRYPT_DECRYPT" {
        return Err(AwsKmsError::Check(format!(
            "key {arn} is for {}, not ENCRYPT_DECRYPT: a Vault seal needs a symmetric encryption key",
            metadata.key_usage
        )));
    }
    if metadata.key_spec() != "SYMMETRIC_DEFAULT" {
        return Err(AwsKmsError::Check(format!(
            "key {arn} is a {} key, not SYMMETRIC_DEFAULT: a Vault seal needs a symmetric encryption key",
            metadata.key_spec()
        )));
    }
    Ok(())
}

/// What the key policy says about `principal`, as a clause of the summary.
fn key_policy_finding(policy: &Value, principal: &IamPrincipal<'_>) -> String {
    let statements = policy_statements(policy);
    let allowing = |names: &[&str], action: &str| allowing(&statements, names, action);
    let mut missing = Vec::new();
    let mut conditional = false;
    for action in SEAL_ACTIONS {
        match allowing(&[principal.arn, "*"], action) {
            Some(statement) => conditional |= !statement["Condition"].is_null(),
            None => missing.push(action),
        }
    }
    let conditions = if conditional {
        " (under conditions planx does not evaluate)"
    } else {
        ""
    };
    if missing.is_empty() {
        return format!(
            "the key policy allows {} {}{conditions}",
            principal.arn,
            SEAL_ACTIONS.join(", ")
        );
    }
    let [root, account] = principal.account_principals();
    let delegates = missing
        .iter()
        .all(|action| allowing(&[root.as_str(), account.as_str()], action).is_some());
    let elsewhere = if delegates {
        format!(
            "an IAM policy on it or a grant must allow them (the key policy lets IAM policies in account {} allow access)",
            principal.account
        )
    } else {
        format!(
            "only a grant can allow them, since the key policy does not let IAM policies in account {} allow access; add {} to the key policy",
            principal.account, principal.arn
        )
    };
    format!(
        "warning: the key policy does not allow {} {}; {elsewhere}",
        principal.arn,
        missing.join(", ")
    )
}

/// The statements of a key policy (a list, or a single statement).
fn policy_statements(policy: &Value) -> Vec<&Value> {
    match &policy["Statement"] {
        Value::Array(statements) => statements.iter().collect(),
        statement @ Value::Object(_) => vec![statement],
        _ => Vec::new(),
    }
}

/// The first statement that allows one of `names` the `action`.
fn allowing<'p>(statements: &[&'p Value], names: &[&str], action: &str) -> Option<&'p Value> {
    statements.iter().copied().find(|statement| {
        statement["Effect"] == "Allow"
            && names_any_principal(&statement["Principal"], names)
            && strings_of(&statement["Action"])
                .iter()
                .any(|pattern| action_matches(pattern, action))
    })
}

/// A statement's `Principal` names one of `names`: `"*"`, or an `AWS` entry.
fn names_any_principal(principal: &Value, names: &[&str]) -> bool {
    if principal == "*" {
        return names.contains(&"*");
    }
    strings_of(&principal["AWS"])
        .iter()
        .any(|named| names.contains(named))
}

/// A policy element that is a string or a list of strings.
fn strings_of(element: &Value) -> Vec<&str> {
    match element {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// An IAM action pattern (`kms:*`, `kms:Decrypt*`, `kms:?ncrypt`) covers `action`, without
/// regard to case, as IAM compares actions.
fn action_matches(pattern: &str, action: &str) -> bool {
    fn matches(pattern: &[u8], text: &[u8]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((b'*', rest)) => (0..=text.len()).any(|skip| matches(rest, &text[skip..])),
            Some((&expected, rest)) => text.split_first().is_some_and(|(&actual, text)| {
                (expected == b'?' || expected.eq_ignore_ascii_case(&actual)) && matches(rest, text)
            }),
        }
    }
    matches(pattern.as_bytes(), action.as_bytes())
}

/// Signed requests to AWS KMS in one region.
struct KmsClient<'a> {
    http: reqwest::Client,
    url: reqwest::Url,
    credentials: &'a AwsCredentials,
    region: &'a str,
}

impl<'a> KmsClient<'a> {
    fn new(
        endpoint: &KmsEndpoint,
        credentials: &'a AwsCredentials,
        region: &'a str,
    ) -> Result<KmsClient<'a>, AwsKmsError> {
        let address = endpoint.url(region);
        let url = reqwest::Url::parse(&address)
            .ok()
            .filter(|url| url.host_str().is_some())
            .ok_or_else(|| {
                AwsKmsError::Check(format!(
                    "the AWS KMS endpoint `{address}` is not a URL (check PLANX_AWS_KMS_URL)"
                ))
            })?;
        Ok(KmsClient {
            http: keyservices::http_client("AWS KMS")?,
            url,
            credentials,
            region,
        })
    }

    async fn describe_key(&self, kms_key_id: &str) -> Result<KeyMetadata, AwsKmsError> {
        let described: DescribeKeyResponse = self
            .call("DescribeKey", kms_key_id, json!({ "KeyId": kms_key_id }))
            .await?;
        Ok(described.key_metadata)
    }

    /// Encrypt a random plaintext and decrypt it again: the bytes must come back.
    async fn encrypt_decrypt_round_trip(&self, key_arn: &str) -> Result<(), AwsKmsError> {
        let probe = Probe::draw()?;
        let encrypted: EncryptResponse = self
            .call(
                "Encrypt",
                key_arn,
                json!({ "KeyId": key_arn, "Plaintext": probe.encoded() }),
            )
            .await?;
        let decrypted: DecryptResponse = self
            .call(
                "Decrypt",
                key_arn,
                json!({ "KeyId": key_arn, "CiphertextBlob": encrypted.ciphertext_blob }),
            )
            .await?;
        probe.check_returned(
            || format!("AWS KMS Decrypt with {key_arn}"),
            &decrypted.plaintext,
        )
    }

    /// The key's `default` policy, parsed.
    async fn key_policy(&self, key_arn: &str) -> Result<Value, AwsKmsError> {
        let answer: GetKeyPolicyResponse = self
            .call(
                "GetKeyPolicy",
                key_arn,
                json!({ "KeyId": key_arn, "PolicyName": "default" }),
            )
            .await?;
        serde_json::from_str(&answer.policy).map_err(|e| AwsKmsError::Answer {
            call: format!("AWS KMS GetKeyPolicy with {key_arn}"),
            message: format!("the policy is not JSON: {e}"),
        })
    }

    /// The grants on the key whose grantee is `grantee`, every page.
    async fn grants_to(&self, key_arn: &str, grantee: &str) -> Result<Vec<KmsGrant>, AwsKmsError> {
        let mut grants = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_GRANT_PAGES {
            let mut request = json!({ "KeyId": key_arn, "GranteePrincipal": grantee });
            if let Some(marker) = &marker {
                request["Marker"] = json!(marker);
            }
            let page: ListGrantsResponse = self.call("ListGrants", key_arn, request).await?;
            grants.extend(
                page.grants
                    .into_iter()
                    .filter(|grant| grant.grantee_principal.as_deref() == Some(grantee))
                    .map(|grant| KmsGrant {
                        id: grant.grant_id,
                        operations: grant.operations,
                    }),
            );
            match page
                .next_marker
                .filter(|next| page.truncated && !next.is_empty())
            {
                Some(next) => marker = Some(next),
                None => return Ok(grants),
            }
        }
        Err(AwsKmsError::Answer {
            call: format!("AWS KMS ListGrants with {key_arn}"),
            message: format!("more than {MAX_GRANT_PAGES} pages of grants"),
        })
    }

    /// POST one `TrentService` action, signed; an error answer names the call and, for access
    /// denied, the permission `kms:{action}` the operator lacks.
    async fn call<T: DeserializeOwned>(
        &self,
        action: &str,
        key: &str,
        body: Value,
    ) -> Result<T, AwsKmsError> {
        let call = format!("AWS KMS {action} with {key}");
        let payload = body.to_string().into_bytes();
        let host = match self.url.port() {
            Some(port) => format!("{}:{port}", self.url.host_str().unwrap_or_default()),
            None => self.url.host_str().unwrap_or_default().to_string(),
        };
        let amz_date = amz_date(SystemTime::now());
        let target = format!("TrentService.{action}");
        let mut headers = vec![
            ("content-type", JSON_1_1),
            ("host", host.as_str()),
            ("x-amz-date", amz_date.as_str()),
            ("x-amz-target", target.as_str()),
        ];
        if let Some(token) = &self.credentials.session_token {
            headers.push(("x-amz-security-token", token.expose()));
        }
        let authorization = sigv4_authorization(
            self.credentials,
            self.region,
            "kms",
            &amz_date,
            &SigningRequest {
                method: "POST",
                path: self.url.path(),
                query: &[],
                headers: &headers,
                payload: &payload,
            },
        );
        let mut request = self
            .http
            .post(self.url.clone())
            .header("authorization", authorization)
            .body(payload);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let (status, text) = keyservices::exchange(&call, request).await?;
        if !(200..300).contains(&status) {
            return Err(service_error(call, action, key, self.region, status, &text));
        }
        // Some actions (RevokeGrant) answer with an empty body.
        let text = if text.trim().is_empty() { "{}" } else { &text };
        keyservices::parse_answer(&call, text)
    }
}

/// An error answer as planx reports it: the error type and message AWS sent, with what to do
/// for a denied call, refused credentials, a missing or disabled key.
fn service_error(
    call: String,
    action: &str,
    key: &str,
    region: &str,
    status: u16,
    body: &str,
) -> AwsKmsError {
    let parsed: Value = serde_json::from_str(body).unwrap_or_default();
    let code = parsed["__type"]
        .as_str()
        .map(|kind| kind.rsplit('#').next().unwrap_or(kind))
        .map(|kind| kind.split(':').next().unwrap_or(kind))
        .unwrap_or_default()
        .to_string();
    let message = parsed["message"]
        .as_str()
        .or(parsed["Message"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| keyservices::body_excerpt(body));
    let remedy = match code.as_str() {
        "NotFoundException" => {
            return AwsKmsError::Check(format!(
                "AWS KMS has no key {key} in region {region} ({code}: {message}); check the target's `kms_key_id` and `region`"
            ));
        }
        "DisabledException" => {
            return AwsKmsError::Check(format!(
                "key {key} is disabled ({code}: {message}); enable it with: aws kms enable-key --key-id {key} --region {region}"
            ));
        }
        "KMSInvalidStateException" => {
            return AwsKmsError::Check(format!(
                "key {key} is not in a state that allows {action} ({code}: {message}); see its state with: aws kms describe-key --key-id {key} --region {region}"
            ));
        }
        "AccessDeniedException" if action == "GetKeyPolicy" => {
            "; the operator running planx needs kms:GetKeyPolicy on the key to check the key policy for `identity:` (or leave `identity:` out)".into()
        }
        "AccessDeniedException" => {
            format!("; the operator running planx needs kms:{action} on the key")
        }
        code if CREDENTIAL_CODES.contains(&code) => {
            "; AWS refused the operator's credentials: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN (temporary credentials expire: export them again with `aws configure export-credentials --format env`) and the clock".into()
        }
        _ => String::new(),
    };
    let transient = status >= 500 || TRANSIENT_CODES.contains(&code.as_str());
    AwsKmsError::Status {
        call,
        status,
        code: if code.is_empty() {
            "error".into()
        } else {
            code
        },
        message,
        remedy,
        transient,
    }
}

/// One request to sign with Signature Version 4.
pub struct SigningRequest<'a> {
    pub method: &'a str,
    /// The canonical URI: the absolute path, URI-encoded as SigV4 wants it (KMS's is `/`).
    pub path: &'a str,
    /// Query parameters, not encoded.
    pub query: &'a [(&'a str, &'a str)],
    /// The headers to sign, with distinct names in any case; `host` and `x-amz-date` among
    /// them, and `x-amz-security-token` with temporary credentials.
    pub headers: &'a [(&'a str, &'a str)],
    pub payload: &'a [u8],
}

/// The `Authorization` header of AWS Signature Version 4 for `request` to `service` in `region`
/// at `amz_date` (`YYYYMMDDTHHMMSSZ`, the request's `x-amz-date`): `AWS4-HMAC-SHA256
/// Credential=KEY/DATE/REGION/SERVICE/aws4_request, SignedHeaders=..., Signature=...`.
pub fn sigv4_authorization(
    credentials: &AwsCredentials,
    region: &str,
    service: &str,
    amz_date: &str,
    request: &SigningRequest<'_>,
) -> String {
    let date = amz_date.get(..8).unwrap_or(amz_date);
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.trim().to_ascii_lowercase(),
                value.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    headers.sort();
    let signed_headers = headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    let canonical_request = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        request.method,
        request.path,
        canonical_query(request.query),
        planc::hex::encode(&Sha256::digest(request.payload))
    );
    let string_to_sign = format!(
        "{SIGNING_ALGORITHM}\n{amz_date}\n{scope}\n{}",
        planc::hex::encode(&Sha256::digest(canonical_request.as_bytes()))
    );
    let secret = format!("AWS4{}", credentials.secret_access_key.expose());
    let signing_key = [region, service, "aws4_request"]
        .into_iter()
        .fold(hmac_sha256(secret.as_bytes(), date), |key, part| {
            hmac_sha256(&key, part)
        });
    let signature = planc::hex::encode(&hmac_sha256(&signing_key, &string_to_sign));
    format!(
        "{SIGNING_ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id
    )
}

/// Parameters URI-encoded, sorted by name and then value, joined with `&`.
fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(name, value)| (uri_encode(name), uri_encode(value)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Every byte but the unreserved `A-Z a-z 0-9 - _ . ~` as `%XX`, as SigV4 encodes.
fn uri_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// `YYYYMMDDTHHMMSSZ` in UTC, as `x-amz-date` carries it.
fn amz_date(time: SystemTime) -> String {
    jiff::Timestamp::try_from(time)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// AWS KMS as a [`KeyService`](super::KeyService).
pub struct AwsKmsService {
    pub endpoint: KmsEndpoint,
    pub credentials: AwsCredentials,
    pub target: KmsKeyTarget,
}

impl super::KeyService for AwsKmsService {
    fn check_access<'a>(
        &'a self,
        identity: &'a str,
        _role: &'a str,
    ) -> crate::engine::BoxFuture<'a, Result<String, crate::engine::ActionError>> {
        Box::pin(async move {
            Ok(check_key_access(&self.endpoint, &self.credentials, &self.target, identity).await?)
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
                plan_withdrawal(&self.endpoint, &self.credentials, &self.target, identity).await?;
            Ok(Box::new(withdrawal) as Box<dyn super::Withdrawal + 'a>)
        })
    }
}

impl super::Withdrawal for KeyAccessWithdrawal<'_> {
    fn is_withdrawn(&self) -> bool {
        KeyAccessWithdrawal::is_withdrawn(self)
    }

    fn removals(&self) -> Vec<String> {
        self.grants()
            .iter()
            .map(|g| self.revoke_effect(g))
            .collect()
    }

    fn remove(
        &mut self,
        index: usize,
    ) -> crate::engine::BoxFuture<'_, Result<(), crate::engine::ActionError>> {
        Box::pin(async move {
            let grant = &self.grants()[index];
            Ok(self.revoke(grant).await?)
        })
    }

    fn finish(
        &mut self,
    ) -> crate::engine::BoxFuture<'_, Result<String, crate::engine::ActionError>> {
        Box::pin(async move { Ok(KeyAccessWithdrawal::finish(self)?) })
    }
}
