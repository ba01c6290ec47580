//! Azure Key Vault access for `preflight.key-access` and `keys.disable`: access tokens for the
//! operator running planx (client secret, workload identity or the Azure CLI), the managed
//! identity's service principal in Microsoft Graph, the vault and its role assignments or access
//! policies in Azure Resource Manager, and the key in the Key Vault data plane, over reqwest. The
//! check reads; the withdrawal deletes the identity's role assignments on the vault or the key, or
//! removes its key permissions from the vault's access policies, and leaves assignments above the
//! vault to the operator.

use std::collections::HashMap;
use std::path::PathBuf;

use planc::model::CompiledTarget;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::keyservices::{self, KeyServiceError};
use crate::secrets::Secret;

/// The built-in role "Key Vault Crypto Service Encryption User": get, wrapKey and unwrapKey on
/// keys, what an Azure Key Vault seal needs.
pub const KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER: &str = "e147488a-f6f5-4113-8e2d-b22465e65bf6";
const DEFAULT_ROLE_NAME: &str = "Key Vault Crypto Service Encryption User";

const ARM_SCOPE: &str = "https://management.azure.com/.default";
const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
const KEY_VAULT_SCOPE: &str = "https://vault.azure.net/.default";

const VAULT_API_VERSION: &str = "2023-07-01";
const AUTHORIZATION_API_VERSION: &str = "2022-04-01";
const KEYS_API_VERSION: &str = "7.4";

/// The key permissions an Azure Key Vault seal uses.
const SEAL_KEY_PERMISSIONS: [&str; 3] = ["get", "wrapKey", "unwrapKey"];
/// The key operations an Azure Key Vault seal uses.
const SEAL_KEY_OPERATIONS: [&str; 2] = ["wrapKey", "unwrapKey"];
/// Role-assignment pages followed at most before giving up.
const MAX_ROLE_ASSIGNMENT_PAGES: usize = 100;

/// Where the Azure APIs are: production by default, a local replay server in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureEndpoints {
    /// Microsoft Entra ID, which issues tokens (`AZURE_AUTHORITY_HOST`).
    pub authority: String,
    /// Azure Resource Manager (`PLANX_AZURE_ARM_URL`).
    pub arm: String,
    /// Microsoft Graph (`PLANX_AZURE_GRAPH_URL`).
    pub graph: String,
    /// A Key Vault's data plane, `{vault}` replaced by the vault name (`PLANX_AZURE_KEYVAULT_URL`).
    pub key_vault_url_template: String,
}

impl Default for AzureEndpoints {
    fn default() -> AzureEndpoints {
        AzureEndpoints {
            authority: "https://login.microsoftonline.com".into(),
            arm: "https://management.azure.com".into(),
            graph: "https://graph.microsoft.com".into(),
            key_vault_url_template: "https://{vault}.vault.azure.net".into(),
        }
    }
}

impl AzureEndpoints {
    /// The endpoints named by `AZURE_AUTHORITY_HOST`, `PLANX_AZURE_ARM_URL`,
    /// `PLANX_AZURE_GRAPH_URL` and `PLANX_AZURE_KEYVAULT_URL`, production where unset.
    pub fn from_env() -> AzureEndpoints {
        AzureEndpoints::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`AzureEndpoints::from_env`], reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> AzureEndpoints {
        let defaults = AzureEndpoints::default();
        let read = |name: &str, default: String| {
            keyservices::url_variable(&lookup, name).unwrap_or(default)
        };
        AzureEndpoints {
            authority: read("AZURE_AUTHORITY_HOST", defaults.authority),
            arm: read("PLANX_AZURE_ARM_URL", defaults.arm),
            graph: read("PLANX_AZURE_GRAPH_URL", defaults.graph),
            key_vault_url_template: read(
                "PLANX_AZURE_KEYVAULT_URL",
                defaults.key_vault_url_template,
            ),
        }
    }

    /// The data-plane address of the Key Vault `vault`.
    pub fn key_vault_url(&self, vault: &str) -> String {
        self.key_vault_url_template
            .replace("{vault}", vault)
            .trim_end_matches('/')
            .to_string()
    }
}

/// How the operator running planx obtains access tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AzureCredential {
    /// An application's client secret (`AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`,
    /// `AZURE_TENANT_ID`).
    ClientSecret {
        tenant_id: String,
        client_id: String,
        client_secret: Secret,
    },
    /// A federated token from a file, as AKS workload identity mounts it
    /// (`AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`).
    WorkloadIdentity {
        tenant_id: String,
        client_id: String,
        token_file: PathBuf,
    },
    /// The signed-in Azure CLI: `az account get-access-token` in the target's tenant.
    AzureCli { program: PathBuf },
}

impl AzureCredential {
    /// Client secret if its three variables are set, else workload identity if its three are
    /// set, else the Azure CLI.
    pub fn from_env() -> AzureCredential {
        AzureCredential::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`AzureCredential::from_env`], reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> AzureCredential {
        let read = |name: &str| keyservices::variable(&lookup, name);
        let tenant_id = read("AZURE_TENANT_ID");
        let client_id = read("AZURE_CLIENT_ID");
        if let (Some(tenant_id), Some(client_id)) = (tenant_id, client_id) {
            if let Some(secret) = read("AZURE_CLIENT_SECRET") {
                return AzureCredential::ClientSecret {
                    tenant_id,
                    client_id,
                    client_secret: Secret::new(secret),
                };
            }
            if let Some(token_file) = read("AZURE_FEDERATED_TOKEN_FILE") {
                return AzureCredential::WorkloadIdentity {
                    tenant_id,
                    client_id,
                    token_file: PathBuf::from(token_file),
                };
            }
        }
        AzureCredential::AzureCli {
            program: PathBuf::from("az"),
        }
    }
}

/// The attributes of an `azurekeyvault` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVaultTarget {
    pub tenant_id: String,
    pub vault_name: String,
    pub key_name: String,
    pub subscription: Option<String>,
    pub resource_group: Option<String>,
}

impl KeyVaultTarget {
    /// The attributes of a compiled `azurekeyvault` target.
    pub fn from_compiled(target: &CompiledTarget) -> Result<KeyVaultTarget, AzureError> {
        let required = |name: &str| {
            keyservices::required_attribute(target, "azurekeyvault", name).map(str::to_owned)
        };
        let optional = |name: &str| keyservices::attribute(target, name).map(str::to_owned);
        Ok(KeyVaultTarget {
            tenant_id: required("tenant_id")?,
            vault_name: required("vault_name")?,
            key_name: required("key_name")?,
            subscription: optional("subscription"),
            resource_group: optional("resource_group"),
        })
    }
}

/// What went wrong checking or withdrawing key access. Never carries a token or a client secret.
/// A `Status` carries Azure's `error.code` (or the token endpoint's `error`), and is transient
/// for throttling (429) and server errors.
pub type AzureError = KeyServiceError;

/// A 404 turned into `message`, with Azure's own words appended.
fn when_not_found(error: AzureError, message: impl FnOnce() -> String) -> AzureError {
    match error {
        AzureError::Status {
            status: 404,
            code,
            message: azure,
            ..
        } => AzureError::Check(format!("{} ({code}: {azure})", message())),
        other => other,
    }
}

/// Check that the managed identity with client id `identity` can use the target's key as an
/// Azure Key Vault seal (get, wrapKey, unwrapKey), holding `role` in a vault in RBAC mode; and
/// that the key exists, is enabled and allows wrapKey and unwrapKey. Returns a one-line summary.
pub async fn check_key_access(
    endpoints: &AzureEndpoints,
    credential: &AzureCredential,
    target: &KeyVaultTarget,
    identity: &str,
    role: &str,
) -> Result<String, AzureError> {
    let identity = identity.trim();
    let role = role.trim();
    let (mut session, object_id, vault) =
        open_vault(endpoints, credential, target, identity, "check").await?;
    let grantee = Grantee {
        client_id: identity,
        object_id: &object_id,
    };
    let rbac = vault.properties.enable_rbac_authorization.unwrap_or(false);
    let grant = if rbac {
        session
            .role_assignment_grant(&vault, &grantee, role, &target.vault_name, &target.key_name)
            .await?
    } else {
        access_policy_grant(&vault, &grantee, &target.vault_name)?
    };
    session
        .check_key(&target.vault_name, &target.key_name, rbac)
        .await?;
    Ok(format!(
        "identity {identity} (object id {object_id}) {grant}; key {} enabled with {}",
        target.key_name,
        SEAL_KEY_OPERATIONS.join(", ")
    ))
}

/// For the managed identity with client id `identity` (checked to be one), a session with the
/// target's tenant, the identity's object id, and the vault, checked to be in that tenant.
/// `purpose` (`check`, `withdraw`) says what the step does, in the message asking for
/// `identity:`.
async fn open_vault<'a>(
    endpoints: &'a AzureEndpoints,
    credential: &'a AzureCredential,
    target: &'a KeyVaultTarget,
    identity: &str,
    purpose: &str,
) -> Result<(Session<'a>, String, VaultResource), AzureError> {
    if identity.is_empty() {
        return Err(AzureError::Check(format!(
            "set `identity:` to the client id of the managed identity the Vault pods use, to {purpose} its access to Key Vault `{}`",
            target.vault_name
        )));
    }
    if !is_guid(identity) {
        return Err(AzureError::Check(format!(
            "`identity: {identity}` is not a client id; set it to the client id (a GUID) of the managed identity the Vault pods use"
        )));
    }
    let (Some(subscription), Some(resource_group)) = (&target.subscription, &target.resource_group)
    else {
        return Err(AzureError::Check(format!(
            "planx finds Key Vault `{}` through Azure Resource Manager: set `subscription:` and `resource_group:` on the target",
            target.vault_name
        )));
    };
    let mut session = Session::new(endpoints, credential, &target.tenant_id)?;
    let object_id = session.service_principal_object_id(identity).await?;
    let vault = session
        .vault_resource(subscription, resource_group, &target.vault_name)
        .await?;
    if let Some(vault_tenant) = &vault.properties.tenant_id
        && !vault_tenant.eq_ignore_ascii_case(&target.tenant_id)
    {
        return Err(AzureError::Check(format!(
            "Key Vault `{}` belongs to tenant {vault_tenant}, the target says `tenant_id: {}`",
            target.vault_name, target.tenant_id
        )));
    }
    Ok((session, object_id, vault))
}

/// The managed identity whose access is checked.
struct Grantee<'a> {
    client_id: &'a str,
    object_id: &'a str,
}

/// Requests for one check: one HTTP client, and one token per scope, fetched when first needed.
struct Session<'a> {
    http: reqwest::Client,
    endpoints: &'a AzureEndpoints,
    credential: &'a AzureCredential,
    /// The target's tenant, for the Azure CLI.
    tenant_id: &'a str,
    tokens: HashMap<&'static str, Secret>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
}

#[derive(Deserialize)]
struct AzureCliToken {
    #[serde(rename = "accessToken")]
    access_token: String,
}

#[derive(Deserialize)]
struct ServicePrincipalList {
    value: Vec<ServicePrincipal>,
}

#[derive(Deserialize)]
struct ServicePrincipal {
    id: String,
}

#[derive(Deserialize)]
struct VaultResource {
    id: String,
    properties: VaultProperties,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VaultProperties {
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    enable_rbac_authorization: Option<bool>,
    #[serde(default)]
    access_policies: Vec<AccessPolicy>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccessPolicy {
    #[serde(default)]
    tenant_id: Option<String>,
    object_id: String,
    /// Set in a compound policy: the principal through this application only.
    #[serde(default)]
    application_id: Option<String>,
    #[serde(default)]
    permissions: AccessPolicyPermissions,
}

#[derive(Deserialize, Default)]
struct AccessPolicyPermissions {
    #[serde(default)]
    keys: Vec<String>,
}

#[derive(Deserialize)]
struct RoleDefinitionList {
    value: Vec<RoleDefinition>,
}

#[derive(Deserialize)]
struct RoleDefinition {
    /// The role definition's GUID.
    name: String,
}

#[derive(Deserialize)]
struct RoleAssignmentList {
    value: Vec<RoleAssignment>,
    #[serde(default, rename = "nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct RoleAssignment {
    /// The assignment's resource id: its scope, then
    /// `/providers/Microsoft.Authorization/roleAssignments/GUID`.
    id: String,
    properties: RoleAssignmentProperties,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoleAssignmentProperties {
    role_definition_id: String,
    principal_id: String,
    scope: String,
}

#[derive(Deserialize)]
struct KeyBundle {
    key: JsonWebKey,
    attributes: KeyAttributes,
}

#[derive(Deserialize)]
struct JsonWebKey {
    #[serde(default)]
    key_ops: Vec<String>,
}

#[derive(Deserialize)]
struct KeyAttributes {
    #[serde(default)]
    enabled: Option<bool>,
    /// When the key stops working, in seconds since the epoch.
    #[serde(default)]
    exp: Option<i64>,
}

impl<'a> Session<'a> {
    fn new(
        endpoints: &'a AzureEndpoints,
        credential: &'a AzureCredential,
        tenant_id: &'a str,
    ) -> Result<Session<'a>, AzureError> {
        Ok(Session {
            http: keyservices::http_client("Azure")?,
            endpoints,
            credential,
            tenant_id,
            tokens: HashMap::new(),
        })
    }

    /// An access token for `scope`, fetched once per check.
    async fn token(&mut self, scope: &'static str) -> Result<Secret, AzureError> {
        if let Some(token) = self.tokens.get(scope) {
            return Ok(token.clone());
        }
        let token = match self.credential {
            AzureCredential::ClientSecret {
                tenant_id,
                client_id,
                client_secret,
            } => {
                self.token_from_authority(
                    tenant_id,
                    scope,
                    &[
                        ("client_id", client_id),
                        ("scope", scope),
                        ("client_secret", client_secret.expose()),
                        ("grant_type", "client_credentials"),
                    ],
                )
                .await?
            }
            AzureCredential::WorkloadIdentity {
                tenant_id,
                client_id,
                token_file,
            } => {
                let assertion = tokio::fs::read_to_string(token_file).await.map_err(|e| {
                    AzureError::Credential(format!(
                        "cannot read the federated token AZURE_FEDERATED_TOKEN_FILE={}: {e}",
                        token_file.display()
                    ))
                })?;
                let assertion = Secret::new(assertion.trim());
                self.token_from_authority(
                    tenant_id,
                    scope,
                    &[
                        ("client_id", client_id),
                        ("scope", scope),
                        (
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        ),
                        ("client_assertion", assertion.expose()),
                        ("grant_type", "client_credentials"),
                    ],
                )
                .await?
            }
            AzureCredential::AzureCli { program } => {
                azure_cli_token(program, scope, self.tenant_id).await?
            }
        };
        self.tokens.insert(scope, token.clone());
        Ok(token)
    }

    /// The client-credentials grant at `{authority}/{tenant}/oauth2/v2.0/token`.
    async fn token_from_authority(
        &self,
        tenant_id: &str,
        scope: &str,
        form: &[(&str, &str)],
    ) -> Result<Secret, AzureError> {
        let url = format!("{}/{tenant_id}/oauth2/v2.0/token", self.endpoints.authority);
        let call = format!("token for {scope} from {url}");
        let request = self.http.post(&url).form(form);
        let (status, body) = keyservices::exchange(&call, request).await?;
        if !(200..300).contains(&status) {
            return Err(status_error(
                call,
                status,
                &body,
                "; check AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE",
            ));
        }
        let token: TokenResponse = serde_json::from_str(&body).map_err(|_| AzureError::Answer {
            call,
            message: "no access_token in the answer".into(),
        })?;
        Ok(Secret::new(token.access_token))
    }

    /// GET `url` with a token for `scope`; a 401 or 403 names what the operator lacks.
    async fn get_json<T: DeserializeOwned>(
        &mut self,
        call: &str,
        url: &str,
        query: &[(&str, &str)],
        scope: &'static str,
        operator_needs: &str,
    ) -> Result<T, AzureError> {
        let request = self.http.get(url).query(query);
        self.send_json(call, request, scope, operator_needs).await
    }

    /// Send `request` with a token for `scope`; a 401 or 403 names what the operator lacks. An
    /// empty answer (204 No Content) reads as `null`.
    async fn send_json<T: DeserializeOwned>(
        &mut self,
        call: &str,
        request: reqwest::RequestBuilder,
        scope: &'static str,
        operator_needs: &str,
    ) -> Result<T, AzureError> {
        let token = self.token(scope).await?;
        let request = request
            .bearer_auth(token.expose())
            .header("Accept", "application/json");
        let (status, body) = keyservices::exchange(call, request).await?;
        if !(200..300).contains(&status) {
            let remedy = if matches!(status, 401 | 403) {
                format!("; the operator running planx needs {operator_needs}")
            } else {
                String::new()
            };
            return Err(status_error(call.to_string(), status, &body, &remedy));
        }
        let body = if body.trim().is_empty() {
            "null"
        } else {
            &body
        };
        keyservices::parse_answer(call, body)
    }

    /// The object id of the service principal whose application (client) id is `client_id`.
    async fn service_principal_object_id(&mut self, client_id: &str) -> Result<String, AzureError> {
        let url = format!("{}/v1.0/servicePrincipals", self.endpoints.graph);
        let filter = format!("appId eq '{client_id}'");
        let list: ServicePrincipalList = self
            .get_json(
                "Microsoft Graph: list service principals",
                &url,
                &[("$filter", &filter)],
                GRAPH_SCOPE,
                "read access to service principals in Microsoft Graph (Application.Read.All or Directory.Read.All for an application; default directory permissions for a user)",
            )
            .await?;
        list.value
            .into_iter()
            .next()
            .map(|principal| principal.id)
            .ok_or_else(|| {
                AzureError::Check(format!(
                    "no service principal with client id {client_id} in tenant {}: set `identity:` to the client id of the managed identity the Vault pods use (`az identity show --query clientId`)",
                    self.tenant_id
                ))
            })
    }

    async fn vault_resource(
        &mut self,
        subscription: &str,
        resource_group: &str,
        name: &str,
    ) -> Result<VaultResource, AzureError> {
        let url = format!(
            "{}/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.KeyVault/vaults/{name}",
            self.endpoints.arm
        );
        self.get_json(
            &format!("Azure Resource Manager: get Key Vault {name}"),
            &url,
            &[("api-version", VAULT_API_VERSION)],
            ARM_SCOPE,
            "Reader (Microsoft.KeyVault/vaults/read) on the vault",
        )
        .await
        .map_err(|error| {
            when_not_found(error, || {
                format!(
                    "Key Vault `{name}` not found in resource group `{resource_group}` of subscription {subscription}"
                )
            })
        })
    }

    /// The GUID of the role named `role` (or given as a GUID).
    async fn role_definition_id(
        &mut self,
        vault_id: &str,
        role: &str,
    ) -> Result<String, AzureError> {
        if is_guid(role) {
            return Ok(role.to_ascii_lowercase());
        }
        if role.eq_ignore_ascii_case(DEFAULT_ROLE_NAME) {
            return Ok(KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER.to_string());
        }
        let url = format!(
            "{}{vault_id}/providers/Microsoft.Authorization/roleDefinitions",
            self.endpoints.arm
        );
        let filter = format!("roleName eq '{}'", role.replace('\'', "''"));
        let list: RoleDefinitionList = self
            .get_json(
                &format!("Azure Resource Manager: find the role definition \"{role}\""),
                &url,
                &[
                    ("$filter", &filter),
                    ("api-version", AUTHORIZATION_API_VERSION),
                ],
                ARM_SCOPE,
                "Reader (Microsoft.Authorization/roleDefinitions/read) on the vault",
            )
            .await?;
        list.value
            .into_iter()
            .next()
            .map(|definition| definition.name.to_ascii_lowercase())
            .ok_or_else(|| {
                AzureError::Check(format!(
                    "no role named \"{role}\" is defined for {vault_id}; check the step's `role:`"
                ))
            })
    }

    /// Where the identity holds `role` over the vault or the key, as the summary says it.
    async fn role_assignment_grant(
        &mut self,
        vault: &VaultResource,
        grantee: &Grantee<'_>,
        role: &str,
        vault_name: &str,
        key_name: &str,
    ) -> Result<String, AzureError> {
        let role_id = self.role_definition_id(&vault.id, role).await?;
        let grants = self
            .covering_role_assignments(vault, grantee.object_id, &role_id, key_name, true)
            .await?;
        match grants.first() {
            Some(assignment) => Ok(format!("holds {role} on {}", assignment.properties.scope)),
            None => Err(AzureError::Check(format!(
                "the identity {} (object id {}) does not hold the role \"{role}\" on Key Vault {vault_name} ({}), its key {key_name} or a scope above them: the Vault pods cannot wrap and unwrap with the key; grant it with: az role assignment create --assignee-object-id {} --assignee-principal-type ServicePrincipal --role \"{role}\" --scope {}",
                grantee.client_id, grantee.object_id, vault.id, grantee.object_id, vault.id
            ))),
        }
    }

    /// The assignments of the role with GUID `role_id` to `object_id` that reach the vault's key
    /// `key_name`: on the vault, on the key, or on a scope above them. Pages are followed to the
    /// last one, or with `first_only` to the first page that holds one.
    async fn covering_role_assignments(
        &mut self,
        vault: &VaultResource,
        object_id: &str,
        role_id: &str,
        key_name: &str,
        first_only: bool,
    ) -> Result<Vec<RoleAssignment>, AzureError> {
        let key_id = format!("{}/keys/{key_name}", vault.id);
        let vault_name = vault.id.rsplit('/').next().unwrap_or(&vault.id);
        let call =
            format!("Azure Resource Manager: list role assignments on Key Vault {vault_name}");
        let filter = format!("principalId eq '{object_id}'");
        let mut page_url = format!(
            "{}{}/providers/Microsoft.Authorization/roleAssignments",
            self.endpoints.arm, vault.id
        );
        let mut query = vec![
            ("api-version", AUTHORIZATION_API_VERSION),
            ("$filter", filter.as_str()),
        ];
        let mut found = Vec::new();
        for _ in 0..MAX_ROLE_ASSIGNMENT_PAGES {
            let page: RoleAssignmentList = self
                .get_json(
                    &call,
                    &page_url,
                    &query,
                    ARM_SCOPE,
                    "Reader (Microsoft.Authorization/roleAssignments/read) on the vault",
                )
                .await?;
            found.extend(page.value.into_iter().filter(|assignment| {
                let properties = &assignment.properties;
                properties.principal_id.eq_ignore_ascii_case(object_id)
                    && is_role_definition(&properties.role_definition_id, role_id)
                    && scope_covers(&properties.scope, &vault.id, &key_id)
            }));
            match page.next_link.filter(|link| !link.is_empty()) {
                Some(_) if first_only && !found.is_empty() => return Ok(found),
                None => return Ok(found),
                Some(next) => {
                    if !next.starts_with(&format!("{}/", self.endpoints.arm)) {
                        return Err(AzureError::Answer {
                            call,
                            message: format!(
                                "the next page {next} is not on {}; planx sends its token nowhere else",
                                self.endpoints.arm
                            ),
                        });
                    }
                    page_url = next;
                    query.clear();
                }
            }
        }
        Err(AzureError::Answer {
            call,
            message: format!("more than {MAX_ROLE_ASSIGNMENT_PAGES} pages of role assignments"),
        })
    }

    /// The key exists, is enabled and allows wrapKey and unwrapKey.
    async fn check_key(
        &mut self,
        vault_name: &str,
        key_name: &str,
        rbac: bool,
    ) -> Result<(), AzureError> {
        let url = format!(
            "{}/keys/{key_name}",
            self.endpoints.key_vault_url(vault_name)
        );
        let operator_needs = if rbac {
            "Microsoft.KeyVault/vaults/keys/read on the key (Key Vault Crypto User or Key Vault Reader on the vault)"
        } else {
            "`get` on keys in an access policy of the vault"
        };
        let bundle: KeyBundle = self
            .get_json(
                &format!("Key Vault {vault_name}: get key {key_name}"),
                &url,
                &[("api-version", KEYS_API_VERSION)],
                KEY_VAULT_SCOPE,
                operator_needs,
            )
            .await
            .map_err(|error| {
                when_not_found(error, || {
                    format!("Key Vault {vault_name} has no key {key_name}")
                })
            })?;
        if bundle.attributes.enabled != Some(true) {
            return Err(AzureError::Check(format!(
                "key {key_name} in Key Vault {vault_name} is disabled: the seal cannot wrap or unwrap with it; enable it with: az keyvault key set-attributes --vault-name {vault_name} --name {key_name} --enabled true"
            )));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        if let Some(expiry) = bundle.attributes.exp.filter(|at| *at <= now) {
            return Err(AzureError::Check(format!(
                "key {key_name} in Key Vault {vault_name} expired {} s ago (exp {expiry}): the seal cannot wrap or unwrap with it; move its expiry with: az keyvault key set-attributes --vault-name {vault_name} --name {key_name} --expires <date>",
                now - expiry
            )));
        }
        let missing: Vec<&str> = SEAL_KEY_OPERATIONS
            .into_iter()
            .filter(|op| {
                !bundle
                    .key
                    .key_ops
                    .iter()
                    .any(|have| have.eq_ignore_ascii_case(op))
            })
            .collect();
        if !missing.is_empty() {
            let mut ops = bundle.key.key_ops.clone();
            ops.extend(missing.iter().map(|op| op.to_string()));
            return Err(AzureError::Check(format!(
                "key {key_name} in Key Vault {vault_name} does not allow {} (its key_ops: {}); allow them with: az keyvault key set-attributes --vault-name {vault_name} --name {key_name} --ops {}",
                missing.join(", "),
                bundle.key.key_ops.join(", "),
                ops.join(" ")
            )));
        }
        Ok(())
    }
}

/// In access-policy mode: the identity's policies grant get, wrapKey and unwrapKey on keys.
fn access_policy_grant(
    vault: &VaultResource,
    grantee: &Grantee<'_>,
    vault_name: &str,
) -> Result<String, AzureError> {
    let mut held: Vec<&str> = Vec::new();
    for policy in &vault.properties.access_policies {
        if policy.object_id.eq_ignore_ascii_case(grantee.object_id) {
            for permission in &policy.permissions.keys {
                if !held.iter().any(|h| h.eq_ignore_ascii_case(permission)) {
                    held.push(permission);
                }
            }
        }
    }
    let all = held.iter().any(|h| h.eq_ignore_ascii_case("all"));
    let missing: Vec<&str> = SEAL_KEY_PERMISSIONS
        .into_iter()
        .filter(|needed| !all && !held.iter().any(|h| h.eq_ignore_ascii_case(needed)))
        .collect();
    if missing.is_empty() {
        return Ok(format!(
            "has {} on keys in the access policy of {}",
            SEAL_KEY_PERMISSIONS.join(", "),
            vault.id
        ));
    }
    let holds = if held.is_empty() {
        "has no key permissions in an access policy".to_string()
    } else {
        format!("has only {} on keys", held.join(", "))
    };
    let mut fixed = held.clone();
    fixed.extend(missing.iter().copied());
    Err(AzureError::Check(format!(
        "Key Vault {vault_name} uses access policies, and the identity {} (object id {}) {holds}: it lacks {}; grant them with: az keyvault set-policy --name {vault_name} --object-id {} --key-permissions {}",
        grantee.client_id,
        grantee.object_id,
        missing.join(", "),
        grantee.object_id,
        fixed.join(" ")
    )))
}

/// What `keys.disable` removes on an Azure Key Vault, found before any change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// A role assignment on the vault or on the key.
    RoleAssignment {
        id: String,
        role: String,
        scope: String,
    },
    /// The key permissions of an access-policy entry of the vault (they cover every key in it).
    KeyPermissions {
        vault_id: String,
        tenant_id: String,
        object_id: String,
        application_id: Option<String>,
        keys: Vec<String>,
    },
}

/// The removal as the journal records it, before it is made.
impl std::fmt::Display for Removal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Removal::RoleAssignment { id, role, scope } => {
                write!(f, "delete role assignment {id} ({role} on {scope})")
            }
            Removal::KeyPermissions {
                vault_id,
                object_id,
                keys,
                ..
            } => write!(
                f,
                "remove key permissions {} of object id {object_id} from the access policies of {vault_id}",
                keys.join(", ")
            ),
        }
    }
}

impl Removal {
    /// The removal once made, as the summary says it.
    fn done(&self) -> String {
        match self {
            Removal::RoleAssignment { id, role, scope } => {
                format!("deleted role assignment {id} ({role} on {scope})")
            }
            Removal::KeyPermissions {
                keys,
                application_id,
                ..
            } => format!(
                "removed key permissions {} from its access policy{}",
                keys.join(", "),
                application_id
                    .as_ref()
                    .map(|app| format!(" through application {app}"))
                    .unwrap_or_default()
            ),
        }
    }
}

/// What `keys.disable` withdraws from a managed identity on an Azure Key Vault: read first with
/// [`plan_withdrawal`], each removal then made on its own with [`KeyAccessWithdrawal::remove`]
/// (the caller journals it), and [`KeyAccessWithdrawal::finish`] says what was done, or fails
/// naming the assignments above the vault that planx leaves to the operator.
pub struct KeyAccessWithdrawal<'a> {
    session: Session<'a>,
    target: &'a KeyVaultTarget,
    client_id: String,
    object_id: String,
    role: String,
    rbac: bool,
    removals: Vec<Removal>,
    /// Assignments of the role on a resource group, subscription or management group above the
    /// vault, as (id, scope): they may grant other vaults too, so planx never deletes them.
    above: Vec<(String, String)>,
}

/// Find what grants the managed identity with client id `identity` the use of the target's key.
/// A vault in RBAC mode: the assignments of `role` to the identity on the vault or the key, to
/// delete, and those above the vault, to report. A vault with access policies: the identity's
/// entries with key permissions, whose key permissions are to be removed. Changes nothing.
pub async fn plan_withdrawal<'a>(
    endpoints: &'a AzureEndpoints,
    credential: &'a AzureCredential,
    target: &'a KeyVaultTarget,
    identity: &str,
    role: &str,
) -> Result<KeyAccessWithdrawal<'a>, AzureError> {
    let identity = identity.trim();
    let role = role.trim();
    let (mut session, object_id, vault) =
        open_vault(endpoints, credential, target, identity, "withdraw").await?;
    let rbac = vault.properties.enable_rbac_authorization.unwrap_or(false);
    let mut removals = Vec::new();
    let mut above = Vec::new();
    if rbac {
        let role_id = session.role_definition_id(&vault.id, role).await?;
        let key_id = format!("{}/keys/{}", vault.id, target.key_name);
        let same = |scope: &str, id: &str| scope.trim_end_matches('/').eq_ignore_ascii_case(id);
        for assignment in session
            .covering_role_assignments(&vault, &object_id, &role_id, &target.key_name, false)
            .await?
        {
            let scope = assignment.properties.scope;
            if same(&scope, &vault.id) || same(&scope, &key_id) {
                removals.push(Removal::RoleAssignment {
                    id: assignment.id,
                    role: role.to_string(),
                    scope,
                });
            } else {
                above.push((assignment.id, scope));
            }
        }
    } else {
        for policy in &vault.properties.access_policies {
            if policy.object_id.eq_ignore_ascii_case(&object_id)
                && !policy.permissions.keys.is_empty()
            {
                removals.push(Removal::KeyPermissions {
                    vault_id: vault.id.clone(),
                    tenant_id: policy
                        .tenant_id
                        .clone()
                        .unwrap_or_else(|| target.tenant_id.clone()),
                    object_id: policy.object_id.clone(),
                    application_id: policy.application_id.clone(),
                    keys: policy.permissions.keys.clone(),
                });
            }
        }
    }
    Ok(KeyAccessWithdrawal {
        session,
        target,
        client_id: identity.to_string(),
        object_id,
        role: role.to_string(),
        rbac,
        removals,
        above,
    })
}

impl KeyAccessWithdrawal<'_> {
    /// What is to be removed, in order.
    pub fn removals(&self) -> &[Removal] {
        &self.removals
    }

    /// Nothing grants the identity the role or key permissions any more.
    pub fn is_withdrawn(&self) -> bool {
        self.removals.is_empty() && self.above.is_empty()
    }

    /// Make one removal: `DELETE` the role assignment by its id, or `PUT` the access-policy
    /// entry's key permissions to `accessPolicies/remove`.
    pub async fn remove(&mut self, removal: &Removal) -> Result<(), AzureError> {
        let arm = &self.session.endpoints.arm;
        let (call, request, operator_needs) = match removal {
            Removal::RoleAssignment { id, .. } => (
                format!("Azure Resource Manager: delete role assignment {id}"),
                self.session
                    .http
                    .delete(format!("{arm}{id}"))
                    .query(&[("api-version", AUTHORIZATION_API_VERSION)]),
                "Microsoft.Authorization/roleAssignments/delete on the vault (Role Based Access Control Administrator or User Access Administrator)",
            ),
            Removal::KeyPermissions {
                vault_id,
                tenant_id,
                object_id,
                application_id,
                keys,
            } => {
                let mut entry = serde_json::json!({
                    "tenantId": tenant_id,
                    "objectId": object_id,
                    "permissions": { "keys": keys },
                });
                if let Some(application_id) = application_id {
                    entry["applicationId"] = serde_json::json!(application_id);
                }
                (
                    format!(
                        "Azure Resource Manager: remove key permissions from the access policies of Key Vault {}",
                        self.target.vault_name
                    ),
                    self.session
                        .http
                        .put(format!("{arm}{vault_id}/accessPolicies/remove"))
                        .query(&[("api-version", VAULT_API_VERSION)])
                        .json(&serde_json::json!({
                            "properties": { "accessPolicies": [entry] }
                        })),
                    "Microsoft.KeyVault/vaults/accessPolicies/write on the vault (Key Vault Contributor)",
                )
            }
        };
        let _: serde::de::IgnoredAny = self
            .session
            .send_json(&call, request, ARM_SCOPE, operator_needs)
            .await?;
        Ok(())
    }

    /// Once every removal is made: a summary of them (or that there was nothing to withdraw); or,
    /// when the role is assigned above the vault, a failure naming those assignments and the
    /// `az role assignment delete` that removes them.
    pub fn finish(&self) -> Result<String, AzureError> {
        let who = format!("identity {} (object id {})", self.client_id, self.object_id);
        let vault = &self.target.vault_name;
        let role = &self.role;
        let done: Vec<String> = self.removals.iter().map(Removal::done).collect();
        if !self.above.is_empty() {
            let scopes: Vec<&str> = self.above.iter().map(|(_, scope)| scope.as_str()).collect();
            let ids: Vec<&str> = self.above.iter().map(|(id, _)| id.as_str()).collect();
            let before = if done.is_empty() {
                String::new()
            } else {
                format!("{}; but ", done.join("; "))
            };
            return Err(AzureError::Check(format!(
                "{before}{who} still holds {role} on Key Vault {vault} through {} above the vault ({}), which planx does not delete since it may grant access to other vaults too; if nothing else needs it, delete it and run the step again: az role assignment delete --ids {}",
                if ids.len() == 1 {
                    "an assignment"
                } else {
                    "assignments"
                },
                scopes.join(", "),
                ids.join(" ")
            )));
        }
        if done.is_empty() {
            return Ok(if self.rbac {
                format!(
                    "{who} holds no assignment of {role} on Key Vault {vault}, its key {} or a scope above them: nothing to withdraw",
                    self.target.key_name
                )
            } else {
                format!(
                    "{who} has no key permissions in the access policies of Key Vault {vault}: nothing to withdraw"
                )
            });
        }
        Ok(format!(
            "withdrew the access of {who} to Key Vault {vault}: {}",
            done.join("; ")
        ))
    }
}

/// `az account get-access-token` for the resource of `scope`; the token is read from stdout and
/// never shown.
async fn azure_cli_token(
    program: &std::path::Path,
    scope: &str,
    tenant_id: &str,
) -> Result<Secret, AzureError> {
    let resource = scope.trim_end_matches("/.default");
    keyservices::cli_token(
        program,
        &[
            "account",
            "get-access-token",
            "--resource",
            resource,
            "--tenant",
            tenant_id,
            "-o",
            "json",
        ],
        "set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET (or AZURE_FEDERATED_TOKEN_FILE), or install the Azure CLI and run `az login`",
        "accessToken",
        |stdout| {
            serde_json::from_slice::<AzureCliToken>(stdout)
                .ok()
                .map(|token| token.access_token)
        },
    )
    .await
}

/// An error status, with Azure's `error.code` and `error.message` (or the token endpoint's
/// `error` and `error_description`) when the body carries them.
fn status_error(call: String, status: u16, body: &str, remedy: &str) -> AzureError {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().map(|value| &value["error"]);
    let (code, message) = match error {
        Some(serde_json::Value::Object(fields)) => (
            fields
                .get("code")
                .and_then(|c| c.as_str())
                .unwrap_or_default(),
            fields
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or_default(),
        ),
        Some(serde_json::Value::String(code)) => (
            code.as_str(),
            parsed
                .as_ref()
                .and_then(|value| value["error_description"].as_str())
                .unwrap_or_default(),
        ),
        _ => ("", ""),
    };
    let message = if message.is_empty() {
        keyservices::body_excerpt(body)
    } else {
        message.to_string()
    };
    AzureError::Status {
        call,
        status,
        code: code.to_string(),
        message,
        remedy: remedy.to_string(),
        transient: status == 429 || status >= 500,
    }
}

/// `roleDefinitionId` (a full resource id) names the role with GUID `role_id`.
fn is_role_definition(role_definition_id: &str, role_id: &str) -> bool {
    role_definition_id
        .to_ascii_lowercase()
        .ends_with(&format!("/{role_id}"))
}

/// An assignment at `scope` applies to the key: the scope is the vault, the key, or an ancestor
/// of the vault (a prefix on a `/` boundary, compared without case, as Azure resource ids are).
/// Management-group scopes sit above every subscription they hold, and the list API returns only
/// those above the vault, so they count.
fn scope_covers(scope: &str, vault_id: &str, key_id: &str) -> bool {
    let scope = scope.trim_end_matches('/').to_ascii_lowercase();
    let vault_id = vault_id.to_ascii_lowercase();
    scope == vault_id
        || scope == key_id.to_ascii_lowercase()
        || vault_id.starts_with(&format!("{scope}/"))
        || scope.starts_with("/providers/microsoft.management/managementgroups/")
}

/// `8-4-4-4-12` hexadecimal digits, as Entra client ids, object ids and role ids are.
fn is_guid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(index, c)| match index {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Azure Key Vault as a [`KeyService`](super::KeyService).
pub struct AzureKeyService {
    pub endpoints: AzureEndpoints,
    pub credential: AzureCredential,
    pub target: KeyVaultTarget,
}

impl super::KeyService for AzureKeyService {
    fn check_access<'a>(
        &'a self,
        identity: &'a str,
        role: &'a str,
    ) -> crate::engine::BoxFuture<'a, Result<String, crate::engine::ActionError>> {
        Box::pin(async move {
            Ok(check_key_access(
                &self.endpoints,
                &self.credential,
                &self.target,
                identity,
                role,
            )
            .await?)
        })
    }

    fn plan_withdrawal<'a>(
        &'a self,
        identity: &'a str,
        role: &'a str,
    ) -> crate::engine::BoxFuture<
        'a,
        Result<Box<dyn super::Withdrawal + 'a>, crate::engine::ActionError>,
    > {
        Box::pin(async move {
            let withdrawal = plan_withdrawal(
                &self.endpoints,
                &self.credential,
                &self.target,
                identity,
                role,
            )
            .await?;
            Ok(Box::new(withdrawal) as Box<dyn super::Withdrawal + 'a>)
        })
    }
}

impl super::Withdrawal for KeyAccessWithdrawal<'_> {
    fn is_withdrawn(&self) -> bool {
        KeyAccessWithdrawal::is_withdrawn(self)
    }

    fn removals(&self) -> Vec<String> {
        self.removals.iter().map(Removal::to_string).collect()
    }

    fn remove(
        &mut self,
        index: usize,
    ) -> crate::engine::BoxFuture<'_, Result<(), crate::engine::ActionError>> {
        Box::pin(async move {
            let removal = self.removals[index].clone();
            Ok(KeyAccessWithdrawal::remove(self, &removal).await?)
        })
    }

    fn finish(
        &mut self,
    ) -> crate::engine::BoxFuture<'_, Result<String, crate::engine::ActionError>> {
        Box::pin(async move { Ok(KeyAccessWithdrawal::finish(self)?) })
    }
}
