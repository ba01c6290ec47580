//! The emulated Azure APIs, by host: Entra ID (instance discovery, OpenID configuration, the
//! client-credentials token with a client secret or a federated assertion), Key Vault keys
//! (get, wrapkey, unwrapkey with RSA-OAEP-256, the 401 challenge), Microsoft Graph (service
//! principals by appId) and ARM (the vault, role definitions, role assignments with paging,
//! deleting an assignment, removing access-policy permissions). Answers and errors have the
//! shapes Azure documents; each request is logged without its secrets.

use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPublicKey};
use serde_json::{Value, json};

use super::state::{
    self, KeyOperation, KeyVault, ManagementAction, ROLES, RoleAssignment, Tenant, scope_covers,
};
use super::{AzureCloud, LOGIN_HOST, Service};
use crate::identity::unix_now;

/// Lifetime of an access token.
const ACCESS_TOKEN_SECONDS: u64 = 3599;
/// The largest request body read.
const MAX_BODY: usize = 1024 * 1024;

type Answer = Response<Full<Bytes>>;

fn answer(status: u16, body: &Value) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// Azure's `{"error": {"code", "message"}}`.
fn error(status: u16, code: &str, message: &str) -> Answer {
    answer(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

/// Entra ID's OAuth error shape.
fn oauth_error(status: u16, error: &str, code: u32, description: &str) -> Answer {
    answer(
        status,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description}"),
            "error_codes": [code],
            "timestamp": crate::clock::now_rfc3339(),
        }),
    )
}

/// Percent-decoding of a form or query component (`+` is a space).
fn decode_component(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(index + 1..index + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        index += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=b&c=d`, decoded.
fn pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_component(name), decode_component(value))
        })
        .collect()
}

fn find<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Percent-encoding of a query value.
fn encode_component(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// The value quoted in an OData filter `field eq 'value'`.
fn filter_value(filter: &str, field: &str) -> Option<String> {
    let rest = filter.trim();
    let (name, rest) = rest.split_once(char::is_whitespace)?;
    if !name.eq_ignore_ascii_case(field) {
        return None;
    }
    let rest = rest.trim_start();
    let rest = rest
        .strip_prefix("eq ")
        .or_else(|| rest.strip_prefix("EQ "))?;
    let quoted = rest.trim().strip_prefix('\'')?.strip_suffix('\'')?;
    Some(quoted.replace("''", "'"))
}

/// The principal an access token names.
struct Caller {
    object_id: String,
    client_id: String,
}

/// Serves one request to `host` (reached through the proxy by `peer`).
pub async fn handle(
    cloud: &AzureCloud,
    host: &str,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Answer {
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return error(413, "RequestTooLarge", "the request body is too large"),
    };
    let (response, principal) = match cloud.service(host) {
        Some(Service::Login) => (login(cloud, &method, &path, &query, &body), None),
        Some(Service::Graph) => with_caller(
            cloud,
            authorization.as_deref(),
            "https://graph.microsoft.com",
            |tenant, caller| graph(tenant, caller, &method, &path, &query),
        ),
        Some(Service::ResourceManager) => with_caller(
            cloud,
            authorization.as_deref(),
            "https://management.azure.com",
            |tenant, caller| arm(tenant, caller, &method, &path, &query, &body),
        ),
        Some(Service::KeyVault(vault)) => key_vault(
            cloud,
            &vault,
            authorization.as_deref(),
            &method,
            &path,
            &body,
        ),
        None => (
            error(404, "NotFound", &format!("{host} is not served")),
            None,
        ),
    };
    cloud.record(json!({
        "client": peer.to_string(),
        "host": host,
        "method": method,
        "path": path,
        "query": query,
        "status": response.status().as_u16(),
        "principal": principal,
    }));
    response
}

/// Runs `serve` for the caller of a valid token for `audience`, or answers 401.
fn with_caller(
    cloud: &AzureCloud,
    authorization: Option<&str>,
    audience: &str,
    serve: impl FnOnce(&mut Tenant, &Caller) -> Answer,
) -> (Answer, Option<String>) {
    match caller(cloud, authorization, audience) {
        Some(caller) => {
            let mut tenant = cloud.tenant();
            (serve(&mut tenant, &caller), Some(caller.client_id))
        }
        None => (
            error(
                401,
                "InvalidAuthenticationToken",
                &format!("The access token is missing, invalid or not for {audience}."),
            ),
            None,
        ),
    }
}

fn caller(cloud: &AzureCloud, authorization: Option<&str>, audience: &str) -> Option<Caller> {
    let token = authorization?
        .strip_prefix("Bearer ")
        .or_else(|| authorization?.strip_prefix("bearer "))?;
    let claims = cloud.signer().verify(token)?;
    let aud = claims["aud"].as_str()?.trim_end_matches('/');
    if aud != audience {
        return None;
    }
    let object_id = claims["oid"].as_str()?.to_string();
    // A deleted principal's tokens stop working.
    let client_id = cloud
        .tenant()
        .application_by_object(&object_id)?
        .client_id
        .clone();
    Some(Caller {
        object_id,
        client_id,
    })
}

// Entra ID.

fn login(cloud: &AzureCloud, method: &str, path: &str, query: &str, body: &[u8]) -> Answer {
    let tenant_id = cloud.tenant().tenant_id.clone();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("GET", ["common", "discovery", "instance"]) => {
            let _ = query;
            answer(
                200,
                &json!({
                    "tenant_discovery_endpoint": format!("https://{LOGIN_HOST}/{tenant_id}/v2.0/.well-known/openid-configuration"),
                    "api-version": "1.1",
                    "metadata": [{
                        "preferred_network": LOGIN_HOST,
                        "preferred_cache": LOGIN_HOST,
                        "aliases": [LOGIN_HOST],
                    }],
                }),
            )
        }
        ("GET", [tenant, "v2.0", ".well-known", "openid-configuration"]) => {
            if !tenant.eq_ignore_ascii_case(&tenant_id) {
                return oauth_error(
                    400,
                    "invalid_tenant",
                    90002,
                    &format!("Tenant '{tenant}' not found."),
                );
            }
            answer(
                200,
                &json!({
                    "token_endpoint": format!("https://{LOGIN_HOST}/{tenant_id}/oauth2/v2.0/token"),
                    "authorization_endpoint": format!("https://{LOGIN_HOST}/{tenant_id}/oauth2/v2.0/authorize"),
                    "issuer": format!("https://{LOGIN_HOST}/{tenant_id}/v2.0"),
                    "jwks_uri": format!("https://{LOGIN_HOST}/{tenant_id}/discovery/v2.0/keys"),
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                    "subject_types_supported": ["pairwise"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "tenant_region_scope": "EU",
                }),
            )
        }
        ("POST", [tenant, "oauth2", "v2.0", "token"]) => {
            if !tenant.eq_ignore_ascii_case(&tenant_id) {
                return oauth_error(
                    400,
                    "invalid_request",
                    90002,
                    &format!("Tenant '{tenant}' not found."),
                );
            }
            token(cloud, &pairs(&String::from_utf8_lossy(body)))
        }
        _ => oauth_error(
            404,
            "invalid_request",
            900561,
            &format!("{method} {path} is not an endpoint of the twin's Entra ID."),
        ),
    }
}

/// The client-credentials grant.
fn token(cloud: &AzureCloud, form: &[(String, String)]) -> Answer {
    if find(form, "grant_type") != Some("client_credentials") {
        return oauth_error(
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type; the twin issues client_credentials only.",
        );
    }
    let Some(audience) = find(form, "scope")
        .and_then(|scope| scope.split_whitespace().find(|s| s.ends_with("/.default")))
        .map(|scope| {
            scope
                .trim_end_matches("/.default")
                .trim_end_matches('/')
                .to_string()
        })
    else {
        return oauth_error(
            400,
            "invalid_scope",
            1002012,
            "The provided value for scope is not valid: ask for <resource>/.default.",
        );
    };
    let client_id = find(form, "client_id").unwrap_or("");
    let tenant = cloud.tenant();
    let Some(application) = tenant.application(client_id) else {
        return oauth_error(
            400,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'.",
                tenant.tenant_id
            ),
        );
    };
    if let Some(secret) = find(form, "client_secret") {
        let now = unix_now();
        match application.secrets.iter().find(|s| s.value == secret) {
            None => {
                return oauth_error(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
                );
            }
            Some(held) if held.expires_at.is_some_and(|at| at <= now) => {
                return oauth_error(
                    401,
                    "invalid_client",
                    7000222,
                    &format!("The provided client secret keys for app '{client_id}' are expired."),
                );
            }
            Some(_) => {}
        }
    } else if let Some(assertion) = find(form, "client_assertion") {
        if find(form, "client_assertion_type")
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return oauth_error(
                400,
                "invalid_request",
                50027,
                "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
            );
        }
        let Some(claims) = cloud.signer().verify(assertion) else {
            return oauth_error(
                401,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range, or its signature does not verify.",
            );
        };
        let audiences: Vec<&str> = match &claims["aud"] {
            Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
            Value::String(one) => vec![one.as_str()],
            _ => Vec::new(),
        };
        let issuer = claims["iss"].as_str().unwrap_or("");
        let subject = claims["sub"].as_str().unwrap_or("");
        let trusted = application.federated.iter().any(|credential| {
            credential.issuer == issuer
                && credential.subject == subject
                && audiences.contains(&credential.audience.as_str())
        });
        if !trusted {
            return oauth_error(
                401,
                "invalid_client",
                70021,
                &format!(
                    "No matching federated identity record found for presented assertion. Assertion Issuer: '{issuer}'. Assertion Subject: '{subject}'."
                ),
            );
        }
    } else {
        return oauth_error(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    }
    let now = unix_now();
    let access_token = cloud.signer().sign(&json!({
        "aud": audience,
        "iss": format!("https://sts.windows.net/{}/", tenant.tenant_id),
        "tid": tenant.tenant_id,
        "oid": application.object_id,
        "appid": application.client_id,
        "iat": now,
        "nbf": now,
        "exp": now + ACCESS_TOKEN_SECONDS,
    }));
    answer(
        200,
        &json!({
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_SECONDS,
            "ext_expires_in": ACCESS_TOKEN_SECONDS,
            "access_token": access_token,
        }),
    )
}

// Microsoft Graph.

fn graph(tenant: &mut Tenant, _caller: &Caller, method: &str, path: &str, query: &str) -> Answer {
    if method != "GET" || path.trim_end_matches('/') != "/v1.0/servicePrincipals" {
        return error(
            404,
            "Request_ResourceNotFound",
            &format!("{method} {path} is not served by the twin's Graph"),
        );
    }
    let query = pairs(query);
    let Some(app_id) = find(&query, "$filter").and_then(|f| filter_value(f, "appId")) else {
        return error(
            400,
            "Request_UnsupportedQuery",
            "the twin's Graph lists service principals by $filter=appId eq '<client id>' only",
        );
    };
    let value: Vec<Value> = tenant
        .application(&app_id)
        .map(|app| {
            json!({
                "id": app.object_id,
                "appId": app.client_id,
                "displayName": app.display_name,
                "servicePrincipalType": "Application",
            })
        })
        .into_iter()
        .collect();
    answer(
        200,
        &json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#servicePrincipals", "value": value}),
    )
}

// Azure Resource Manager.

const AUTHORIZATION_PROVIDER: &str = "/providers/microsoft.authorization/";

fn forbidden(caller: &Caller, action: &str, scope: &str) -> Answer {
    error(
        403,
        "AuthorizationFailed",
        &format!(
            "The client '{}' with object id '{}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid.",
            caller.client_id, caller.object_id
        ),
    )
}

fn vault_json(tenant: &Tenant, vault: &KeyVault) -> Value {
    let policies: Vec<Value> = vault
        .access_policies
        .iter()
        .map(|policy| {
            json!({
                "tenantId": tenant.tenant_id,
                "objectId": policy.object_id,
                "permissions": {"keys": policy.keys, "secrets": [], "certificates": []},
            })
        })
        .collect();
    json!({
        "id": tenant.vault_id(vault),
        "name": vault.name,
        "type": "Microsoft.KeyVault/vaults",
        "location": "westeurope",
        "properties": {
            "tenantId": tenant.tenant_id,
            "sku": {"family": "A", "name": "standard"},
            "enableRbacAuthorization": vault.rbac,
            "accessPolicies": policies,
            "vaultUri": format!("https://{}.vault.azure.net/", vault.name),
        },
    })
}

fn assignment_json(tenant: &Tenant, assignment: &RoleAssignment) -> Value {
    json!({
        "id": assignment.id(),
        "name": assignment.name,
        "type": "Microsoft.Authorization/roleAssignments",
        "properties": {
            "roleDefinitionId": format!("{}/providers/Microsoft.Authorization/roleDefinitions/{}", tenant.subscription_id(), assignment.role_definition),
            "principalId": assignment.principal_id,
            "principalType": "ServicePrincipal",
            "scope": assignment.scope,
        },
    })
}

fn arm(
    tenant: &mut Tenant,
    caller: &Caller,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> Answer {
    let path = path.trim_end_matches('/');
    let lower = path.to_ascii_lowercase();
    let query_pairs = pairs(query);
    if find(&query_pairs, "api-version").is_none() {
        return error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    }
    if let Some(at) = lower.find(AUTHORIZATION_PROVIDER) {
        let scope = &path[..at];
        let rest = &lower[at + AUTHORIZATION_PROVIDER.len()..];
        return match (method, rest.split('/').collect::<Vec<_>>().as_slice()) {
            ("GET", ["roledefinitions"]) => role_definitions(tenant, caller, scope, &query_pairs),
            ("GET", ["roleassignments"]) => {
                role_assignments(tenant, caller, path, scope, &query_pairs)
            }
            ("DELETE", ["roleassignments", name]) => {
                if !tenant.may_manage(&caller.object_id, scope, ManagementAction::Write) {
                    return forbidden(
                        caller,
                        "Microsoft.Authorization/roleAssignments/delete",
                        scope,
                    );
                }
                match tenant.role_assignments.iter().position(|a| {
                    a.name.eq_ignore_ascii_case(name) && a.scope.eq_ignore_ascii_case(scope)
                }) {
                    Some(index) => {
                        let removed = tenant.role_assignments.remove(index);
                        answer(200, &assignment_json(tenant, &removed))
                    }
                    None => Response::builder()
                        .status(204)
                        .body(Full::new(Bytes::new()))
                        .unwrap_or_default(),
                }
            }
            _ => error(
                404,
                "NotFound",
                &format!("{method} {path} is not served by the twin's ARM"),
            ),
        };
    }
    let vault_index = tenant
        .vaults
        .iter()
        .position(|vault| lower.starts_with(&tenant.vault_id(vault).to_ascii_lowercase()));
    let Some(vault_index) = vault_index else {
        return error(
            404,
            "ResourceNotFound",
            &format!("The Resource '{path}' was not found."),
        );
    };
    let vault_id = tenant.vault_id(&tenant.vaults[vault_index]);
    let rest = lower[vault_id.len()..].to_string();
    match (method, rest.as_str()) {
        ("GET", "") => {
            if !tenant.may_manage(&caller.object_id, &vault_id, ManagementAction::Read) {
                return forbidden(caller, "Microsoft.KeyVault/vaults/read", &vault_id);
            }
            answer(200, &vault_json(tenant, &tenant.vaults[vault_index]))
        }
        ("PUT", "/accesspolicies/remove" | "/accesspolicies/add" | "/accesspolicies/replace") => {
            if !tenant.may_manage(&caller.object_id, &vault_id, ManagementAction::Write) {
                return forbidden(
                    caller,
                    "Microsoft.KeyVault/vaults/accessPolicies/write",
                    &vault_id,
                );
            }
            let Ok(request) = serde_json::from_slice::<Value>(body) else {
                return error(400, "BadRequest", "the body is not JSON");
            };
            let kind = rest.rsplit('/').next().unwrap_or("");
            let entries = request
                .pointer("/properties/accessPolicies")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let vault = &mut tenant.vaults[vault_index];
            for entry in &entries {
                let Some(object_id) = entry["objectId"].as_str() else {
                    return error(400, "BadRequest", "an access policy entry has no objectId");
                };
                let keys: Vec<String> = entry
                    .pointer("/permissions/keys")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect();
                let existing = vault
                    .access_policies
                    .iter_mut()
                    .find(|p| p.object_id.eq_ignore_ascii_case(object_id));
                match (kind, existing) {
                    ("remove", Some(policy)) => policy
                        .keys
                        .retain(|held| !keys.iter().any(|k| k.eq_ignore_ascii_case(held))),
                    ("add", Some(policy)) => {
                        for key in keys {
                            if !policy
                                .keys
                                .iter()
                                .any(|held| held.eq_ignore_ascii_case(&key))
                            {
                                policy.keys.push(key);
                            }
                        }
                    }
                    ("replace", Some(policy)) => policy.keys = keys,
                    ("add" | "replace", None) => vault.access_policies.push(state::AccessPolicy {
                        object_id: object_id.to_string(),
                        keys,
                    }),
                    _ => {}
                }
            }
            vault
                .access_policies
                .retain(|policy| !policy.keys.is_empty());
            let policies =
                vault_json(tenant, &tenant.vaults[vault_index])["properties"]["accessPolicies"]
                    .clone();
            answer(
                200,
                &json!({
                    "id": format!("{vault_id}/accessPolicies/{kind}"),
                    "type": "Microsoft.KeyVault/vaults/accessPolicies",
                    "properties": {"accessPolicies": policies},
                }),
            )
        }
        _ => error(
            404,
            "NotFound",
            &format!("{method} {path} is not served by the twin's ARM"),
        ),
    }
}

fn role_definitions(
    tenant: &Tenant,
    caller: &Caller,
    scope: &str,
    query: &[(String, String)],
) -> Answer {
    if !tenant.may_manage(&caller.object_id, scope, ManagementAction::Read) {
        return forbidden(
            caller,
            "Microsoft.Authorization/roleDefinitions/read",
            scope,
        );
    }
    let wanted = find(query, "$filter").and_then(|f| filter_value(f, "roleName"));
    let value: Vec<Value> = ROLES
        .iter()
        .filter(|(_, name)| {
            wanted
                .as_deref()
                .is_none_or(|w| w.eq_ignore_ascii_case(name))
        })
        .map(|(id, name)| {
            json!({
                "id": format!("{scope}/providers/Microsoft.Authorization/roleDefinitions/{id}"),
                "name": id,
                "type": "Microsoft.Authorization/roleDefinitions",
                "properties": {"roleName": name, "type": "BuiltInRole"},
            })
        })
        .collect();
    answer(200, &json!({"value": value}))
}

/// The assignments at, above and below `scope`, for the principal of the filter, one page at a
/// time (`$skiptoken` is the offset of the page).
fn role_assignments(
    tenant: &Tenant,
    caller: &Caller,
    path: &str,
    scope: &str,
    query: &[(String, String)],
) -> Answer {
    if !tenant.may_manage(&caller.object_id, scope, ManagementAction::Read) {
        return forbidden(
            caller,
            "Microsoft.Authorization/roleAssignments/read",
            scope,
        );
    }
    let filter = find(query, "$filter").unwrap_or("");
    let principal = filter_value(filter, "principalId");
    let matching: Vec<&RoleAssignment> = tenant
        .role_assignments
        .iter()
        .filter(|a| scope_covers(&a.scope, scope) || scope_covers(scope, &a.scope))
        .filter(|a| {
            principal
                .as_deref()
                .is_none_or(|p| a.principal_id.eq_ignore_ascii_case(p))
        })
        .collect();
    let offset: usize = find(query, "$skiptoken")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(tenant.page_size)
        .map(|a| assignment_json(tenant, a))
        .collect();
    let mut body = json!({"value": page});
    let next = offset + tenant.page_size;
    if next < matching.len() {
        let api_version = find(query, "api-version").unwrap_or("");
        body["nextLink"] = json!(format!(
            "https://management.azure.com{path}?api-version={}&$filter={}&$skiptoken={next}",
            encode_component(api_version),
            encode_component(filter)
        ));
    }
    answer(200, &body)
}

// Key Vault keys.

fn challenge(tenant_id: &str) -> Answer {
    let mut response = error(
        401,
        "Unauthorized",
        "AKV10000: Request is missing a Bearer or PoP token.",
    );
    if let Ok(value) = hyper::header::HeaderValue::from_str(&format!(
        "Bearer authorization=\"https://{LOGIN_HOST}/{tenant_id}\", resource=\"https://vault.azure.net\""
    )) {
        response.headers_mut().insert("www-authenticate", value);
    }
    response
}

fn key_bundle(vault: &str, key: &str, version: &state::KeyVersion) -> Value {
    let public = RsaPublicKey::from(&version.private);
    let mut attributes = json!({
        "enabled": version.enabled,
        "created": version.created,
        "updated": version.created,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": 90,
    });
    if let Some(at) = version.expires_at {
        attributes["exp"] = json!(at);
    }
    json!({
        "key": {
            "kid": format!("https://{vault}.vault.azure.net/keys/{key}/{}", version.version),
            "kty": "RSA",
            "key_ops": version.key_ops,
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        },
        "attributes": attributes,
    })
}

fn key_forbidden(
    tenant: &Tenant,
    caller: &Caller,
    vault: &KeyVault,
    key: &str,
    operation: KeyOperation,
) -> Answer {
    let action = match operation {
        KeyOperation::Get => "Microsoft.KeyVault/vaults/keys/read",
        KeyOperation::WrapKey => "Microsoft.KeyVault/vaults/keys/wrap/action",
        KeyOperation::UnwrapKey => "Microsoft.KeyVault/vaults/keys/unwrap/action",
    };
    let (message, inner) = if vault.rbac {
        (
            format!(
                "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: appid={};oid={}\r\nAction: '{action}'\r\nResource: '{}/keys/{key}'",
                caller.client_id,
                caller.object_id,
                tenant.vault_id(vault).to_ascii_lowercase()
            ),
            "ForbiddenByRbac",
        )
    } else {
        (
            format!(
                "The user, group or application 'appid={};oid={}' does not have keys {} permission on key vault '{};location=westeurope'.",
                caller.client_id,
                caller.object_id,
                operation.permission(),
                vault.name
            ),
            "AccessDenied",
        )
    };
    answer(
        403,
        &json!({"error": {"code": "Forbidden", "message": message, "innererror": {"code": inner}}}),
    )
}

/// The operation a `POST /keys/...` path ends with.
fn data_operation(op: &str) -> Option<KeyOperation> {
    match op.to_ascii_lowercase().as_str() {
        "wrapkey" => Some(KeyOperation::WrapKey),
        "unwrapkey" => Some(KeyOperation::UnwrapKey),
        _ => None,
    }
}

/// Decodes a Key Vault base64url value (padding tolerated).
fn decode_value(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(text))
        .ok()
}

fn key_vault(
    cloud: &AzureCloud,
    vault_name: &str,
    authorization: Option<&str>,
    method: &str,
    path: &str,
    body: &[u8],
) -> (Answer, Option<String>) {
    let tenant_id = cloud.tenant().tenant_id.clone();
    if authorization.is_none() {
        return (challenge(&tenant_id), None);
    }
    let Some(caller) = caller(cloud, authorization, "https://vault.azure.net") else {
        return (challenge(&tenant_id), None);
    };
    let client = Some(caller.client_id.clone());
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let not_served = || {
        error(
            404,
            "NotFound",
            &format!("{method} {path} is not served by the twin's Key Vault"),
        )
    };
    let (key_name, version, operation) = match (method, segments.as_slice()) {
        ("GET", ["keys", key]) => (*key, None, Some(KeyOperation::Get)),
        ("GET", ["keys", key, version]) => (*key, Some(*version), Some(KeyOperation::Get)),
        ("POST", ["keys", key, op]) => (*key, None, data_operation(op)),
        ("POST", ["keys", key, version, op]) => (*key, Some(*version), data_operation(op)),
        _ => return (not_served(), client),
    };
    let Some(operation) = operation else {
        return (not_served(), client);
    };
    let tenant = cloud.tenant();
    let Some(vault) = tenant.vault(vault_name) else {
        return (
            error(404, "VaultNotFound", &format!("no vault {vault_name}")),
            client,
        );
    };
    if !tenant.may_use_key(&caller.object_id, vault, key_name, operation) {
        return (
            key_forbidden(&tenant, &caller, vault, key_name, operation),
            client,
        );
    }
    let not_found = || {
        error(
            404,
            "KeyNotFound",
            &format!(
                "A key with (name/id) {key_name}{} was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command.",
                version.map(|v| format!("/{v}")).unwrap_or_default()
            ),
        )
    };
    let Some(key) = vault
        .keys
        .iter()
        .find(|k| k.name.eq_ignore_ascii_case(key_name))
    else {
        return (not_found(), client);
    };
    let found = match version {
        None => key.versions.last(),
        Some(version) => key
            .versions
            .iter()
            .find(|v| v.version.eq_ignore_ascii_case(version)),
    };
    let Some(found) = found else {
        return (not_found(), client);
    };
    if operation == KeyOperation::Get {
        return (
            answer(200, &key_bundle(&vault.name, &key.name, found)),
            client,
        );
    }
    if let Some(why) = found.unusable() {
        return (error(403, "Forbidden", why), client);
    }
    if !found
        .key_ops
        .iter()
        .any(|op| op.eq_ignore_ascii_case(operation.permission()))
    {
        return (
            error(
                403,
                "Forbidden",
                &format!(
                    "Operation {} is not permitted on this key.",
                    operation.permission()
                ),
            ),
            client,
        );
    }
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if request["alg"] != "RSA-OAEP-256" {
        return (
            error(
                400,
                "BadParameter",
                "The twin's Key Vault wraps with alg RSA-OAEP-256 only.",
            ),
            client,
        );
    }
    let Some(value) = request["value"]
        .as_str()
        .and_then(decode_value)
        .filter(|v| !v.is_empty())
    else {
        return (
            error(
                400,
                "BadParameter",
                "Property value is required and must be base64url.",
            ),
            client,
        );
    };
    let kid = format!(
        "https://{}.vault.azure.net/keys/{}/{}",
        vault.name, key.name, found.version
    );
    let result = if operation == KeyOperation::WrapKey {
        RsaPublicKey::from(&found.private)
            .encrypt(
                &mut rsa::rand_core::OsRng,
                Oaep::new::<rsa::sha2::Sha256>(),
                &value,
            )
            .map_err(|e| e.to_string())
    } else {
        found
            .private
            .decrypt(Oaep::new::<rsa::sha2::Sha256>(), &value)
            .map_err(|e| e.to_string())
    };
    match result {
        Ok(bytes) => (
            answer(
                200,
                &json!({"kid": kid, "value": URL_SAFE_NO_PAD.encode(bytes)}),
            ),
            client,
        ),
        Err(why) => (
            error(
                400,
                "BadParameter",
                &format!("The cryptographic operation failed: {why}"),
            ),
            client,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_components_and_filters_decode() {
        assert_eq!(decode_component("a%20b+c%27"), "a b c'");
        assert_eq!(decode_component("100%"), "100%");
        assert_eq!(
            filter_value("principalId eq 'abc'", "principalId").as_deref(),
            Some("abc")
        );
        assert_eq!(
            filter_value("roleName eq 'O''Neil'", "roleName").as_deref(),
            Some("O'Neil")
        );
        assert_eq!(filter_value("appId eq 'x'", "principalId"), None);
        let filter = "principalId eq 'a b'";
        assert_eq!(decode_component(&encode_component(filter)), filter);
    }
}
