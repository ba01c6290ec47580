//! `preflight.key-access` and `keys.disable` on Azure Key Vault against recorded exchanges: the
//! replay server of `tests/replay` answers only the requests recorded in `tests/azure/*.json`
//! (shaped after the Microsoft documentation page each file names in `source`), checks their
//! bearer tokens, token-request forms and JSON bodies, and fails the test on any other request
//! (a deletion planx must not make among them) or any recorded request left unmade.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use planx::actions::Live;
use planx::azure::{
    AzureCredential, AzureEndpoints, AzureError, KeyVaultTarget, Removal, check_key_access,
    plan_withdrawal,
};
use planx::engine::{ActionError, Engine, Options, Outcome, Preapproved, run};
use planx::journal::Journal;
use planx::secrets::Secret;
use tokio::net::TcpListener;
use tokio::sync::watch;

mod replay;
use replay::{Fixtures, Replay};

const TENANT: &str = "8d3c5a1e-0f2b-4c6d-9e7f-1a2b3c4d5e6f";
const SUBSCRIPTION: &str = "3f2a1b0c-5d4e-4f6a-8b7c-9d0e1f2a3b4c";
const VAULT_ID: &str = "/subscriptions/3f2a1b0c-5d4e-4f6a-8b7c-9d0e1f2a3b4c/resourceGroups/rg-vault-new/providers/Microsoft.KeyVault/vaults/kv-new";
/// The client id of the managed identity the Vault pods use, and its object id in Graph.
const IDENTITY: &str = "11111111-2222-3333-4444-555555555555";
const OBJECT_ID: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
/// The application the operator runs planx as.
const OPERATOR_CLIENT_ID: &str = "c0ffee00-1111-4222-8333-444455556666";
const ROLE: &str = "Key Vault Crypto Service Encryption User";

const CLIENT_SECRET: &str = "planted~client~secret.Q8r";
const ARM_TOKEN: &str = "eyJ0eXAiOiJKV1QifQ.planted-arm-token.sig";
const GRAPH_TOKEN: &str = "eyJ0eXAiOiJKV1QifQ.planted-graph-token.sig";
const KEY_VAULT_TOKEN: &str = "eyJ0eXAiOiJKV1QifQ.planted-keyvault-token.sig";
const FEDERATED_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.planted-federated-token.sig";
const PLANTED: [&str; 5] = [
    CLIENT_SECRET,
    ARM_TOKEN,
    GRAPH_TOKEN,
    KEY_VAULT_TOKEN,
    FEDERATED_TOKEN,
];

/// The calls of a whole RBAC check, in order.
const RBAC_CALLS: [&str; 7] = [
    "tokens#0",
    "service-principal#0",
    "tokens#1",
    "vault-rbac#0",
    "role-assignments-vault#0",
    "tokens#2",
    "key#0",
];

/// The recordings in `tests/azure/`, shaped after Microsoft's documentation.
const FIXTURES: Fixtures = Fixtures {
    folder: "azure",
    documentation: &["https://learn.microsoft.com/"],
};

/// Every Azure endpoint on the replay server.
fn azure_endpoints(replay: &Replay) -> AzureEndpoints {
    AzureEndpoints {
        authority: format!("{}/login", replay.base),
        arm: format!("{}/arm", replay.base),
        graph: format!("{}/graph", replay.base),
        key_vault_url_template: format!("{}/kv/{{vault}}", replay.base),
    }
}

fn target() -> KeyVaultTarget {
    KeyVaultTarget {
        tenant_id: TENANT.into(),
        vault_name: "kv-new".into(),
        key_name: "vault-unseal-new".into(),
        subscription: Some(SUBSCRIPTION.into()),
        resource_group: Some("rg-vault-new".into()),
    }
}

fn client_secret() -> AzureCredential {
    AzureCredential::ClientSecret {
        tenant_id: TENANT.into(),
        client_id: OPERATOR_CLIENT_ID.into(),
        client_secret: Secret::new(CLIENT_SECRET),
    }
}

async fn check_with_client_secret(replay: &Replay, role: &str) -> Result<String, AzureError> {
    check_key_access(
        &azure_endpoints(replay),
        &client_secret(),
        &target(),
        IDENTITY,
        role,
    )
    .await
}

/// The error's text and Debug, checked to hold no token and no secret.
fn message_without_secrets(error: &AzureError) -> String {
    let message = error.to_string();
    let debug = format!("{error:?}");
    for planted in PLANTED {
        assert!(
            !message.contains(planted) && !debug.contains(planted),
            "a secret leaked into the error: {message}"
        );
    }
    message
}

#[tokio::test]
async fn role_at_the_vault_scope_passes() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "tokens",
            "service-principal",
            "vault-rbac",
            "role-assignments-vault",
            "key",
        ],
    )
    .await;
    let summary = check_with_client_secret(&replay, ROLE)
        .await
        .expect("access");
    assert_eq!(
        summary,
        format!(
            "identity {IDENTITY} (object id {OBJECT_ID}) holds {ROLE} on {VAULT_ID}; key vault-unseal-new enabled with wrapKey, unwrapKey"
        )
    );
    assert_eq!(replay.finish(), RBAC_CALLS);
}

#[tokio::test]
async fn role_only_elsewhere_fails_with_the_az_fix() {
    // The identity holds the right role on another vault, on a resource group whose name
    // prefixes the vault's, and on another key of the vault; and only Reader on the vault.
    let replay = Replay::start(
        &FIXTURES,
        &[
            "tokens",
            "service-principal",
            "vault-rbac",
            "role-assignments-other-vault",
        ],
    )
    .await;
    let error = check_with_client_secret(&replay, ROLE)
        .await
        .expect_err("no grant");
    let message = message_without_secrets(&error);
    assert!(!error.is_transient());
    assert!(message.contains(IDENTITY), "{message}");
    assert!(message.contains(ROLE), "{message}");
    assert!(message.contains(VAULT_ID), "{message}");
    assert!(
        message.contains(&format!(
            "az role assignment create --assignee-object-id {OBJECT_ID} --assignee-principal-type ServicePrincipal --role \"{ROLE}\" --scope {VAULT_ID}"
        )),
        "{message}"
    );
    // The key is not looked at once the grant is missing.
    assert_eq!(
        replay.finish(),
        [
            "tokens#0",
            "service-principal#0",
            "tokens#1",
            "vault-rbac#0",
            "role-assignments-other-vault#0"
        ]
    );
}

#[tokio::test]
async fn role_at_the_resource_group_scope_passes() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "tokens",
            "service-principal",
            "vault-rbac",
            "role-assignments-resource-group",
            "key",
        ],
    )
    .await;
    let summary = check_with_client_secret(&replay, ROLE)
        .await
        .expect("access through the resource group");
    assert!(
        summary.contains(&format!(
            "holds {ROLE} on /subscriptions/{SUBSCRIPTION}/resourcegroups/RG-VAULT-NEW;"
        )),
        "{summary}"
    );
    replay.finish();
}

#[tokio::test]
async fn role_on_the_second_page_of_assignments_passes() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "tokens",
            "service-principal",
            "vault-rbac",
            "role-assignments-paged",
            "key",
        ],
    )
    .await;
    let summary = check_with_client_secret(&replay, ROLE)
        .await
        .expect("access on page 2");
    assert!(summary.contains(&format!("holds {ROLE} on {VAULT_ID};")));
    let calls = replay.finish();
    assert_eq!(
        calls[4..6],
        ["role-assignments-paged#0", "role-assignments-paged#1"]
    );
}

#[tokio::test]
async fn next_link_off_the_resource_manager_is_not_followed() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "tokens",
            "service-principal",
            "vault-rbac",
            "role-assignments-foreign-next-link",
        ],
    )
    .await;
    let error = check_with_client_secret(&replay, ROLE)
        .await
        .expect_err("foreign next page");
    let message = message_without_secrets(&error);
    assert!(
        message.contains("https://management.example.net"),
        "{message}"
    );
    assert!(
        message.contains("sends its token nowhere else"),
        "{message}"
    );
    replay.finish();
}

#[tokio::test]
async fn custom_role_is_looked_up_by_name() {
    // The built-in role at the vault does not count when the step asks for another role.
    let replay = Replay::start(
        &FIXTURES,
        &[
            "tokens",
            "service-principal",
            "vault-rbac",
            "role-definition-custom",
            "role-assignments-custom-role",
            "key",
        ],
    )
    .await;
    let summary = check_with_client_secret(&replay, "Vault Seal Operator")
        .await
        .expect("custom role on the key");
    assert!(
        summary.contains(&format!(
            "holds Vault Seal Operator on {VAULT_ID}/keys/vault-unseal-new;"
        )),
        "{summary}"
    );
    replay.finish();
}

#[tokio::test]
async fn access_policy_without_unwrap_key_names_it() {
    let replay = Replay::start(
        &FIXTURES,
        &["tokens", "service-principal", "vault-access-policy"],
    )
    .await;
    let error = check_with_client_secret(&replay, ROLE)
        .await
        .expect_err("unwrapKey missing");
    let message = message_without_secrets(&error);
    assert!(message.contains("it lacks unwrapKey;"), "{message}");
    assert!(
        message.contains("has only get, wrapKey on keys"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "az keyvault set-policy --name kv-new --object-id {OBJECT_ID} --key-permissions get wrapKey unwrapKey"
        )),
        "{message}"
    );
    // No role assignment is read for a vault in access-policy mode.
    assert_eq!(
        replay.finish(),
        [
            "tokens#0",
            "service-principal#0",
            "tokens#1",
            "vault-access-policy#0"
        ]
    );
}

#[tokio::test]
async fn access_policy_with_all_key_permissions_passes() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "tokens",
            "service-principal",
            "vault-access-policy-all",
            "key",
        ],
    )
    .await;
    let summary = check_with_client_secret(&replay, ROLE)
        .await
        .expect("all counts");
    assert!(
        summary.contains(&format!(
            "has get, wrapKey, unwrapKey on keys in the access policy of {VAULT_ID};"
        )),
        "{summary}"
    );
    replay.finish();
}

#[tokio::test]
async fn disabled_key_fails() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "tokens",
            "service-principal",
            "vault-rbac",
            "role-assignments-vault",
            "key-disabled",
        ],
    )
    .await;
    let error = check_with_client_secret(&replay, ROLE)
        .await
        .expect_err("disabled");
    let message = message_without_secrets(&error);
    assert!(
        message.contains("key vault-unseal-new in Key Vault kv-new is disabled"),
        "{message}"
    );
    assert!(!error.is_transient());
    replay.finish();
}

#[tokio::test]
async fn key_without_unwrap_operation_fails() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "tokens",
            "service-principal",
            "vault-rbac",
            "role-assignments-vault",
            "key-without-unwrap",
        ],
    )
    .await;
    let error = check_with_client_secret(&replay, ROLE)
        .await
        .expect_err("no unwrapKey");
    let message = message_without_secrets(&error);
    assert!(message.contains("does not allow unwrapKey"), "{message}");
    assert!(
        message.contains("--ops encrypt decrypt wrapKey unwrapKey"),
        "{message}"
    );
    replay.finish();
}

#[tokio::test]
async fn missing_key_names_vault_and_key() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "tokens",
            "service-principal",
            "vault-rbac",
            "role-assignments-vault",
            "key-not-found",
        ],
    )
    .await;
    let error = check_with_client_secret(&replay, ROLE)
        .await
        .expect_err("no key");
    let message = message_without_secrets(&error);
    assert!(
        message.starts_with("Key Vault kv-new has no key vault-unseal-new (KeyNotFound: A key with (name/id) vault-unseal-new was not found"),
        "{message}"
    );
    assert!(!error.is_transient());
    replay.finish();
}

#[tokio::test]
async fn forbidden_vault_read_names_the_call_the_code_and_the_permission() {
    let replay = Replay::start(
        &FIXTURES,
        &["tokens", "service-principal", "vault-forbidden"],
    )
    .await;
    let error = check_with_client_secret(&replay, ROLE)
        .await
        .expect_err("403");
    let message = message_without_secrets(&error);
    assert!(
        message.starts_with(
            "Azure Resource Manager: get Key Vault kv-new: HTTP 403 AuthorizationFailed: The client"
        ),
        "{message}"
    );
    assert!(
        message.ends_with(
            "the operator running planx needs Reader (Microsoft.KeyVault/vaults/read) on the vault"
        ),
        "{message}"
    );
    assert!(!error.is_transient());
    let action: ActionError = error.into();
    assert!(!action.transient);
    replay.finish();
}

#[tokio::test]
async fn throttled_vault_read_is_transient() {
    let replay = Replay::start(
        &FIXTURES,
        &["tokens", "service-principal", "vault-throttled"],
    )
    .await;
    let error = check_with_client_secret(&replay, ROLE)
        .await
        .expect_err("429");
    let message = message_without_secrets(&error);
    assert!(message.contains("HTTP 429 TooManyRequests"), "{message}");
    assert!(error.is_transient());
    replay.finish();
}

#[tokio::test]
async fn vault_in_another_tenant_fails() {
    let replay = Replay::start(
        &FIXTURES,
        &["tokens", "service-principal", "vault-other-tenant"],
    )
    .await;
    let error = check_with_client_secret(&replay, ROLE)
        .await
        .expect_err("other tenant");
    let message = message_without_secrets(&error);
    assert_eq!(
        message,
        format!(
            "Key Vault `kv-new` belongs to tenant f0e1d2c3-b4a5-4968-8776-655443322110, the target says `tenant_id: {TENANT}`"
        )
    );
    replay.finish();
}

#[tokio::test]
async fn unknown_identity_has_no_service_principal() {
    let replay = Replay::start(&FIXTURES, &["tokens", "service-principal-none"]).await;
    let error = check_with_client_secret(&replay, ROLE)
        .await
        .expect_err("no principal");
    let message = message_without_secrets(&error);
    assert!(
        message.starts_with(&format!(
            "no service principal with client id {IDENTITY} in tenant {TENANT}"
        )),
        "{message}"
    );
    replay.finish();
}

#[tokio::test]
async fn rejected_client_secret_never_shows_in_the_error() {
    let replay = Replay::start(&FIXTURES, &["token-invalid-client"]).await;
    let error = check_with_client_secret(&replay, ROLE)
        .await
        .expect_err("invalid client");
    let message = message_without_secrets(&error);
    assert!(
        message.contains("HTTP 401 invalid_client: AADSTS7000215"),
        "{message}"
    );
    assert!(message.contains("/oauth2/v2.0/token"), "{message}");
    replay.finish();
}

#[tokio::test]
async fn transport_failure_is_transient_and_shows_no_secret() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let closed = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    let endpoints = AzureEndpoints {
        authority: closed.clone(),
        arm: closed.clone(),
        graph: closed.clone(),
        key_vault_url_template: format!("{closed}/{{vault}}"),
    };
    let error = check_key_access(&endpoints, &client_secret(), &target(), IDENTITY, ROLE)
        .await
        .expect_err("nothing listens");
    message_without_secrets(&error);
    assert!(error.is_transient(), "{error}");
}

#[tokio::test]
async fn workload_identity_sends_the_federated_token_as_assertion() {
    let dir = scratch_dir("workload-identity");
    let token_file = dir.join("azure-identity-token");
    std::fs::write(&token_file, format!("{FEDERATED_TOKEN}\n")).expect("token file");
    let credential = AzureCredential::WorkloadIdentity {
        tenant_id: TENANT.into(),
        client_id: OPERATOR_CLIENT_ID.into(),
        token_file,
    };
    let replay = Replay::start(
        &FIXTURES,
        &[
            "tokens-workload-identity",
            "service-principal",
            "vault-rbac",
            "role-assignments-vault",
            "key",
        ],
    )
    .await;
    check_key_access(
        &azure_endpoints(&replay),
        &credential,
        &target(),
        IDENTITY,
        ROLE,
    )
    .await
    .expect("access");
    assert_eq!(
        replay.finish()[..3],
        [
            "tokens-workload-identity#0",
            "service-principal#0",
            "tokens-workload-identity#1"
        ]
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn azure_cli_tokens_come_from_its_output() {
    let dir = scratch_dir("azure-cli");
    let signed_in = dir.join("az");
    let signed_out = dir.join("az-signed-out");
    let _ = std::fs::remove_file(dir.join("az.calls"));
    write_script(
        &signed_in,
        &format!(
            r#"#!/bin/sh
printf '%s\n' "$*" >> "$0.calls"
case "$*" in
  *"--resource https://graph.microsoft.com "*) token='{GRAPH_TOKEN}' ;;
  *"--resource https://management.azure.com "*) token='{ARM_TOKEN}' ;;
  *"--resource https://vault.azure.net "*) token='{KEY_VAULT_TOKEN}' ;;
  *) echo "ERROR: unexpected arguments: $*" >&2; exit 2 ;;
esac
printf '{{"accessToken": "%s", "expiresOn": "2030-01-01 00:00:00.000000", "expires_on": 1893456000, "tenant": "{TENANT}", "tokenType": "Bearer"}}\n' "$token"
"#
        ),
    );
    write_script(
        &signed_out,
        "#!/bin/sh\necho \"ERROR: Please run 'az login' to setup account.\" >&2\nexit 1\n",
    );

    let replay = Replay::start(
        &FIXTURES,
        &[
            "service-principal",
            "vault-rbac",
            "role-assignments-vault",
            "key",
        ],
    )
    .await;
    let credential = AzureCredential::AzureCli {
        program: signed_in.clone(),
    };
    check_key_access(
        &azure_endpoints(&replay),
        &credential,
        &target(),
        IDENTITY,
        ROLE,
    )
    .await
    .expect("access with the CLI's tokens");
    replay.finish();
    let calls = std::fs::read_to_string(dir.join("az.calls")).expect("calls");
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [
            format!(
                "account get-access-token --resource https://graph.microsoft.com --tenant {TENANT} -o json"
            ),
            format!(
                "account get-access-token --resource https://management.azure.com --tenant {TENANT} -o json"
            ),
            format!(
                "account get-access-token --resource https://vault.azure.net --tenant {TENANT} -o json"
            ),
        ]
    );

    let replay = Replay::start(&FIXTURES, &[]).await;
    let credential = AzureCredential::AzureCli {
        program: signed_out,
    };
    let error = check_key_access(
        &azure_endpoints(&replay),
        &credential,
        &target(),
        IDENTITY,
        ROLE,
    )
    .await
    .expect_err("signed out");
    let message = message_without_secrets(&error);
    assert!(
        message.contains("account get-access-token --resource https://graph.microsoft.com"),
        "{message}"
    );
    assert!(message.contains("Please run 'az login'"), "{message}");
    assert!(!error.is_transient());
    replay.finish();
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn empty_identity_asks_for_the_client_id_before_any_call() {
    let replay = Replay::start(&FIXTURES, &[]).await;
    for identity in ["", "  "] {
        let error = check_key_access(
            &azure_endpoints(&replay),
            &client_secret(),
            &target(),
            identity,
            ROLE,
        )
        .await
        .expect_err("no identity");
        assert!(
            error.to_string().starts_with(
                "set `identity:` to the client id of the managed identity the Vault pods use"
            ),
            "{error}"
        );
    }
    let error = check_key_access(
        &azure_endpoints(&replay),
        &client_secret(),
        &target(),
        "id-vault-new",
        ROLE,
    )
    .await
    .expect_err("a name, not a client id");
    assert!(error.to_string().contains("is not a client id"), "{error}");
    assert!(replay.finish().is_empty());
}

#[tokio::test]
async fn missing_subscription_or_resource_group_asks_for_them_before_any_call() {
    let replay = Replay::start(&FIXTURES, &[]).await;
    let mut without = target();
    without.resource_group = None;
    let error = check_key_access(
        &azure_endpoints(&replay),
        &client_secret(),
        &without,
        IDENTITY,
        ROLE,
    )
    .await
    .expect_err("no resource group");
    assert!(
        error
            .to_string()
            .ends_with("set `subscription:` and `resource_group:` on the target"),
        "{error}"
    );
    assert!(replay.finish().is_empty());
}

#[test]
fn endpoints_default_to_production_and_follow_their_variables() {
    let production = AzureEndpoints::from_lookup(|_| None);
    assert_eq!(production, AzureEndpoints::default());
    assert_eq!(production.authority, "https://login.microsoftonline.com");
    assert_eq!(production.arm, "https://management.azure.com");
    assert_eq!(production.graph, "https://graph.microsoft.com");
    assert_eq!(
        production.key_vault_url("kv-new"),
        "https://kv-new.vault.azure.net"
    );

    let variables = BTreeMap::from([
        ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us/"),
        ("PLANX_AZURE_ARM_URL", "http://127.0.0.1:8443/arm"),
        ("PLANX_AZURE_GRAPH_URL", ""),
        ("PLANX_AZURE_KEYVAULT_URL", "http://127.0.0.1:8443/{vault}/"),
    ]);
    let endpoints = AzureEndpoints::from_lookup(|name| variables.get(name).map(|v| v.to_string()));
    assert_eq!(endpoints.authority, "https://login.microsoftonline.us");
    assert_eq!(endpoints.arm, "http://127.0.0.1:8443/arm");
    assert_eq!(endpoints.graph, "https://graph.microsoft.com");
    assert_eq!(
        endpoints.key_vault_url("kv-new"),
        "http://127.0.0.1:8443/kv-new"
    );
}

#[test]
fn credentials_prefer_client_secret_then_workload_identity_then_the_cli() {
    let credential = |pairs: &[(&str, &str)]| {
        let variables: BTreeMap<&str, &str> = pairs.iter().copied().collect();
        AzureCredential::from_lookup(|name| variables.get(name).map(|v| v.to_string()))
    };
    let everything = [
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", OPERATOR_CLIENT_ID),
        ("AZURE_CLIENT_SECRET", CLIENT_SECRET),
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            "/var/run/secrets/azure/tokens/azure-identity-token",
        ),
    ];
    let secret = credential(&everything);
    assert_eq!(secret, client_secret());
    assert!(!format!("{secret:?}").contains(CLIENT_SECRET));
    assert_eq!(
        credential(&[
            everything[0],
            everything[1],
            ("AZURE_CLIENT_SECRET", " "),
            everything[3]
        ]),
        AzureCredential::WorkloadIdentity {
            tenant_id: TENANT.into(),
            client_id: OPERATOR_CLIENT_ID.into(),
            token_file: PathBuf::from("/var/run/secrets/azure/tokens/azure-identity-token"),
        }
    );
    let cli = AzureCredential::AzureCli {
        program: PathBuf::from("az"),
    };
    assert_eq!(credential(&everything[1..]), cli, "no tenant");
    assert_eq!(
        credential(&[everything[0], everything[2]]),
        cli,
        "no client id"
    );
    assert_eq!(credential(&[]), cli);
}

#[test]
fn from_env_reads_the_process_environment() {
    // The environment is set on a child process running the test below, so no thread of this
    // process ever sees it change.
    let output = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "from_env_in_a_child_process",
            "--ignored",
            "--test-threads=1",
        ])
        .env("AZURE_AUTHORITY_HOST", "http://127.0.0.1:9/login")
        .env("PLANX_AZURE_ARM_URL", "http://127.0.0.1:9/arm")
        .env("PLANX_AZURE_GRAPH_URL", "http://127.0.0.1:9/graph")
        .env("PLANX_AZURE_KEYVAULT_URL", "http://127.0.0.1:9/kv/{vault}")
        .env("AZURE_TENANT_ID", TENANT)
        .env("AZURE_CLIENT_ID", OPERATOR_CLIENT_ID)
        .env("AZURE_CLIENT_SECRET", CLIENT_SECRET)
        .env_remove("AZURE_FEDERATED_TOKEN_FILE")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
#[ignore = "run by from_env_reads_the_process_environment with its environment set"]
fn from_env_in_a_child_process() {
    assert_eq!(
        AzureEndpoints::from_env(),
        AzureEndpoints {
            authority: "http://127.0.0.1:9/login".into(),
            arm: "http://127.0.0.1:9/arm".into(),
            graph: "http://127.0.0.1:9/graph".into(),
            key_vault_url_template: "http://127.0.0.1:9/kv/{vault}".into(),
        }
    );
    assert_eq!(AzureCredential::from_env(), client_secret());
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("planx-azure-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// One `preflight.key-access` step on an azurekeyvault target, `identity:` as given.
fn key_access_plan(identity: &str) -> planc::CompiledPlan {
    struct Text(String);
    impl planc::Loader for Text {
        fn load(&self, _: &Path) -> std::io::Result<String> {
            Ok(self.0.clone())
        }
    }
    let plan = format!(
        r#"
version: 1
name: azure-key-access
targets:
  new_keys:
    kind: azurekeyvault
    tenant_id: {TENANT}
    vault_name: kv-new
    key_name: vault-unseal-new
    subscription: {SUBSCRIPTION}
    resource_group: rg-vault-new
steps:
  - id: new-key-access
    uses: preflight.key-access
    on: new_keys
    with: {{identity: "{identity}"}}
"#
    );
    let compilation = planc::compile(
        &planc::CompileRequest {
            plan: "azure-key-access.yaml".into(),
            ..Default::default()
        },
        &Text(plan),
    )
    .expect("compile");
    compilation
        .plan
        .unwrap_or_else(|| panic!("{:?}", compilation.diagnostics))
}

/// The step run by the engine on `Live`, which takes endpoints and credentials from the
/// environment.
async fn run_key_access_step(identity: &str, run_dir: &Path) -> Outcome {
    let plan = key_access_plan(identity);
    let live = Live::new(
        plan.clone(),
        HashMap::new(),
        HashMap::new(),
        run_dir.to_path_buf(),
        vec![],
    );
    let engine = Engine {
        actions: Arc::new(live),
        approver: Arc::new(Preapproved {
            all: true,
            steps: vec![],
        }),
        options: Options::default(),
    };
    let (_stop_sender, stop) = watch::channel(false);
    let journal = Journal::create(&run_dir.join("journal.jsonl")).expect("journal");
    run(engine, plan, BTreeMap::new(), journal, |_| {}, stop)
        .await
        .expect("run")
}

#[tokio::test]
async fn the_action_asks_for_the_identity_of_an_azure_target() {
    let dir = scratch_dir("action-without-identity");
    let outcome = run_key_access_step("", &dir).await;
    let Outcome::Failed { step, error } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(step, "new-key-access");
    assert!(
        error.contains(
            "set `identity:` to the client id of the managed identity the Vault pods use"
        ),
        "{error}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn the_action_checks_an_azure_target_with_credentials_from_the_environment() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "tokens",
            "service-principal",
            "vault-rbac",
            "role-assignments-vault",
            "key",
        ],
    )
    .await;
    let endpoints = azure_endpoints(&replay);
    // The environment is set on a child process running the ignored test below.
    let output = tokio::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "key_access_action_in_a_child_process",
            "--ignored",
            "--test-threads=1",
        ])
        .env("AZURE_AUTHORITY_HOST", &endpoints.authority)
        .env("PLANX_AZURE_ARM_URL", &endpoints.arm)
        .env("PLANX_AZURE_GRAPH_URL", &endpoints.graph)
        .env(
            "PLANX_AZURE_KEYVAULT_URL",
            &endpoints.key_vault_url_template,
        )
        .env("AZURE_TENANT_ID", TENANT)
        .env("AZURE_CLIENT_ID", OPERATOR_CLIENT_ID)
        .env("AZURE_CLIENT_SECRET", CLIENT_SECRET)
        .env_remove("AZURE_FEDERATED_TOKEN_FILE")
        .output()
        .await
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(replay.finish(), RBAC_CALLS);
}

#[tokio::test]
#[ignore = "run by the_action_checks_an_azure_target_with_credentials_from_the_environment"]
async fn key_access_action_in_a_child_process() {
    let dir = scratch_dir("action-child");
    let outcome = run_key_access_step(IDENTITY, &dir).await;
    assert_eq!(outcome, Outcome::Completed);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn key_vault_target_from_the_compiled_attributes() {
    let plan = key_access_plan(IDENTITY);
    let mut compiled = plan.targets["new_keys"].clone();
    assert_eq!(
        KeyVaultTarget::from_compiled(&compiled).expect("attributes"),
        target()
    );
    compiled.attributes.shift_remove("subscription");
    assert_eq!(
        KeyVaultTarget::from_compiled(&compiled)
            .expect("subscription is optional")
            .subscription,
        None
    );
    compiled.attributes.shift_remove("key_name");
    let error = KeyVaultTarget::from_compiled(&compiled).expect_err("key_name is required");
    assert_eq!(
        error.to_string(),
        "the azurekeyvault target `new_keys` has no `key_name`"
    );
}

/// `keys.disable` as the action runs it: what to remove found, each removal made, the summary.
async fn withdraw(replay: &Replay) -> Result<String, AzureError> {
    let endpoints = azure_endpoints(replay);
    let (credential, target) = (client_secret(), target());
    let mut withdrawal = plan_withdrawal(&endpoints, &credential, &target, IDENTITY, ROLE).await?;
    for removal in withdrawal.removals().to_vec() {
        withdrawal.remove(&removal).await?;
    }
    withdrawal.finish()
}

/// The id of a role assignment of the built-in role to the identity in the recordings.
fn assignment_id(scope: &str, guid: &str) -> String {
    format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{guid}")
}

#[tokio::test]
async fn withdrawal_deletes_the_role_assignment_on_the_vault() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "tokens",
            "service-principal",
            "vault-rbac",
            "role-assignments-vault",
            "delete-role-assignment-vault",
        ],
    )
    .await;
    let summary = withdraw(&replay).await.expect("withdrawn");
    let id = assignment_id(VAULT_ID, "3c2b1a09-8f7e-4d6c-9b5a-4f3e2d1c0b9a");
    assert_eq!(
        summary,
        format!(
            "withdrew the access of identity {IDENTITY} (object id {OBJECT_ID}) to Key Vault kv-new: deleted role assignment {id} ({ROLE} on {VAULT_ID})"
        )
    );
    assert_eq!(
        replay.finish(),
        [
            "tokens#0",
            "service-principal#0",
            "tokens#1",
            "vault-rbac#0",
            "role-assignments-vault#0",
            "delete-role-assignment-vault#0"
        ]
    );
}

#[tokio::test]
async fn a_role_assignment_deleted_meanwhile_counts_as_deleted() {
    // 204 No Content: "Role assignment was already deleted or does not exist".
    let replay = Replay::start(
        &FIXTURES,
        &[
            "tokens",
            "service-principal",
            "vault-rbac",
            "role-assignments-vault",
            "delete-role-assignment-gone",
        ],
    )
    .await;
    let summary = withdraw(&replay).await.expect("gone is withdrawn");
    assert!(
        summary.starts_with("withdrew the access of identity"),
        "{summary}"
    );
    replay.finish();
}

#[tokio::test]
async fn withdrawal_deletes_the_role_assignment_on_the_key_and_not_on_another_key() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "tokens",
            "service-principal",
            "vault-rbac",
            "role-assignments-key",
            "delete-role-assignment-key",
        ],
    )
    .await;
    let summary = withdraw(&replay).await.expect("withdrawn");
    let key = format!("{VAULT_ID}/keys/vault-unseal-new");
    assert!(
        summary.ends_with(&format!(
            ": deleted role assignment {} ({ROLE} on {key})",
            assignment_id(&key, "e1b2c3d4-0000-4000-8000-000000000001")
        )),
        "{summary}"
    );
    // The assignment on `another-key` was listed and left: no request deleted it.
    assert_eq!(
        replay.finish().last().map(String::as_str),
        Some("delete-role-assignment-key#0")
    );
}

#[tokio::test]
async fn withdrawal_refuses_an_assignment_above_the_vault_and_gives_the_az_command() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "tokens",
            "service-principal",
            "vault-rbac",
            "role-assignments-resource-group",
        ],
    )
    .await;
    let error = withdraw(&replay).await.expect_err("above the vault");
    let message = message_without_secrets(&error);
    let scope = format!("/subscriptions/{SUBSCRIPTION}/resourcegroups/RG-VAULT-NEW");
    assert_eq!(
        message,
        format!(
            "identity {IDENTITY} (object id {OBJECT_ID}) still holds {ROLE} on Key Vault kv-new through an assignment above the vault ({scope}), which planx does not delete since it may grant access to other vaults too; if nothing else needs it, delete it and run the step again: az role assignment delete --ids {}",
            assignment_id(&scope, "b1b2c3d4-0000-4000-8000-000000000001")
        )
    );
    assert!(!error.is_transient());
    // Nothing was deleted: the strict server would have refused any DELETE.
    assert_eq!(
        replay.finish().last().map(String::as_str),
        Some("role-assignments-resource-group#0")
    );
}

#[tokio::test]
async fn withdrawal_deletes_on_the_vault_and_key_then_names_the_assignments_above() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "tokens",
            "service-principal",
            "vault-rbac",
            "role-assignments-vault-key-and-above",
            "delete-role-assignments-vault-and-key",
        ],
    )
    .await;
    let endpoints = azure_endpoints(&replay);
    let (credential, target) = (client_secret(), target());
    let mut withdrawal = plan_withdrawal(&endpoints, &credential, &target, IDENTITY, ROLE)
        .await
        .expect("read");
    let key = format!("{VAULT_ID}/keys/vault-unseal-new");
    let on_vault = assignment_id(VAULT_ID, "f1b2c3d4-0000-4000-8000-000000000001");
    let on_key = assignment_id(&key, "f1b2c3d4-0000-4000-8000-000000000003");
    // Key Vault Crypto Officer on the vault is another role: not removed.
    assert_eq!(
        withdrawal.removals(),
        [
            Removal::RoleAssignment {
                id: on_vault.clone(),
                role: ROLE.into(),
                scope: VAULT_ID.into(),
            },
            Removal::RoleAssignment {
                id: on_key.clone(),
                role: ROLE.into(),
                scope: key.clone(),
            },
        ]
    );
    assert_eq!(
        withdrawal.removals()[0].to_string(),
        format!("delete role assignment {on_vault} ({ROLE} on {VAULT_ID})")
    );
    assert!(!withdrawal.is_withdrawn());
    for removal in withdrawal.removals().to_vec() {
        withdrawal.remove(&removal).await.expect("deleted");
    }
    let error = withdrawal
        .finish()
        .expect_err("assignments above the vault remain");
    let message = message_without_secrets(&error);
    let subscription = format!("/subscriptions/{SUBSCRIPTION}");
    let group = "/providers/Microsoft.Management/managementGroups/platform";
    assert!(
        message.starts_with(&format!(
            "deleted role assignment {on_vault} ({ROLE} on {VAULT_ID}); deleted role assignment {on_key} ({ROLE} on {key}); but identity {IDENTITY} (object id {OBJECT_ID}) still holds {ROLE} on Key Vault kv-new through assignments above the vault ({subscription}, {group}),"
        )),
        "{message}"
    );
    assert!(
        message.ends_with(&format!(
            "az role assignment delete --ids {} {}",
            assignment_id(&subscription, "f1b2c3d4-0000-4000-8000-000000000004"),
            assignment_id(group, "f1b2c3d4-0000-4000-8000-000000000005")
        )),
        "{message}"
    );
    replay.finish();
}

#[tokio::test]
async fn withdrawal_reads_every_page_of_assignments() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "tokens",
            "service-principal",
            "vault-rbac",
            "role-assignments-paged",
            "delete-role-assignment-paged",
        ],
    )
    .await;
    let summary = withdraw(&replay).await.expect("withdrawn");
    assert!(
        summary.contains(&assignment_id(
            VAULT_ID,
            "c1b2c3d4-0000-4000-8000-000000000002"
        )),
        "{summary}"
    );
    replay.finish();
}

#[tokio::test]
async fn withdrawal_removes_the_key_permissions_of_an_access_policy() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "tokens",
            "service-principal",
            "vault-access-policy",
            "access-policy-remove",
        ],
    )
    .await;
    let summary = withdraw(&replay).await.expect("withdrawn");
    assert_eq!(
        summary,
        format!(
            "withdrew the access of identity {IDENTITY} (object id {OBJECT_ID}) to Key Vault kv-new: removed key permissions get, wrapKey from its access policy"
        )
    );
    // The PUT carried exactly the identity's entry with its key permissions (the recording's
    // `json`), and no role assignment was read.
    assert_eq!(
        replay.finish(),
        [
            "tokens#0",
            "service-principal#0",
            "tokens#1",
            "vault-access-policy#0",
            "access-policy-remove#0"
        ]
    );
}

#[tokio::test]
async fn forbidden_deletion_names_the_permission_the_operator_lacks() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "tokens",
            "service-principal",
            "vault-rbac",
            "role-assignments-vault",
            "delete-role-assignment-forbidden",
        ],
    )
    .await;
    let error = withdraw(&replay).await.expect_err("403");
    let message = message_without_secrets(&error);
    let id = assignment_id(VAULT_ID, "3c2b1a09-8f7e-4d6c-9b5a-4f3e2d1c0b9a");
    assert!(
        message.starts_with(&format!(
            "Azure Resource Manager: delete role assignment {id}: HTTP 403 AuthorizationFailed: The client"
        )),
        "{message}"
    );
    assert!(
        message.ends_with(
            "; the operator running planx needs Microsoft.Authorization/roleAssignments/delete on the vault (Role Based Access Control Administrator or User Access Administrator)"
        ),
        "{message}"
    );
    assert!(!error.is_transient());
    replay.finish();
}

#[tokio::test]
async fn nothing_left_to_withdraw_is_done_and_says_so() {
    // The role on another vault, on a resource group whose name only prefixes the vault's, and on
    // another key; Crypto Officer on the vault: none gives this key, none is deleted.
    let replay = Replay::start(
        &FIXTURES,
        &[
            "tokens",
            "service-principal",
            "vault-rbac",
            "role-assignments-other-vault",
        ],
    )
    .await;
    let endpoints = azure_endpoints(&replay);
    let (credential, target) = (client_secret(), target());
    let withdrawal = plan_withdrawal(&endpoints, &credential, &target, IDENTITY, ROLE)
        .await
        .expect("read");
    // What a resume after a crash asks: the step is done.
    assert!(withdrawal.is_withdrawn());
    assert!(withdrawal.removals().is_empty());
    assert_eq!(
        withdrawal.finish().expect("nothing to do"),
        format!(
            "identity {IDENTITY} (object id {OBJECT_ID}) holds no assignment of {ROLE} on Key Vault kv-new, its key vault-unseal-new or a scope above them: nothing to withdraw"
        )
    );
    replay.finish();
}

#[tokio::test]
async fn withdrawal_asks_for_the_identity_before_any_call() {
    let replay = Replay::start(&FIXTURES, &[]).await;
    let endpoints = azure_endpoints(&replay);
    let (credential, target) = (client_secret(), target());
    let error = plan_withdrawal(&endpoints, &credential, &target, " ", ROLE)
        .await
        .err()
        .expect("no identity");
    assert_eq!(
        error.to_string(),
        "set `identity:` to the client id of the managed identity the Vault pods use, to withdraw its access to Key Vault `kv-new`"
    );
    assert!(replay.finish().is_empty());
}
