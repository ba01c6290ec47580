//! `preflight.key-access` and `keys.disable` on Azure Key Vault against recorded exchanges: the
//! replay server of `tests/replay` answers only the requests recorded in `tests/azure/*.json`
//! (shaped after the Microsoft documentation page each file names in `source`), checks their
//! bearer tokens, token-request forms and JSON bodies, and fails the test on any other request
//! (a deletion planx must not make among them) or any recorded request left unmade.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use planx::engine::Outcome;
use planx::journal::Journal;
use planx::keyservices::azure::{
    AzureCredential, AzureEndpoints, AzureError, KeyVaultTarget, Removal, check_key_access,
    plan_withdrawal,
};
use planx::secrets::Secret;
use tokio::net::TcpListener;

mod common;
mod replay;
use common::{scratch_dir, write_script};
use replay::Replay;
use replay::cases::{self, contains, ends_with, fails, is, passes, starts_with};
use replay::recorded::azure::{
    ARM_TOKEN, CLIENT_SECRET, FEDERATED_TOKEN, GRAPH_TOKEN, IDENTITY, KEY_VAULT_TOKEN, OBJECT_ID,
    OPERATOR_CLIENT_ID, PLANTED, ROLE, SUBSCRIPTION, TENANT, VAULT_ID,
    endpoints as azure_endpoints, environment, target, target_yaml,
};
use replay::recorded::{AZURE as FIXTURES, plan_text};

/// The calls of a whole RBAC check, in order.
/// Set on a child test process that checks what is read from the environment.
const CHILD: &str = "PLANX_TEST_CHILD";

const RBAC_CALLS: [&str; 7] = [
    "tokens#0",
    "service-principal#0",
    "tokens#1",
    "vault-rbac#0",
    "role-assignments-vault#0",
    "tokens#2",
    "key#0",
];

/// The recordings that lead to the vault in RBAC mode, then `rest`.
fn rbac(rest: &[&'static str]) -> Vec<&'static str> {
    [&["tokens", "service-principal", "vault-rbac"], rest].concat()
}

/// The calls that reach the vault in RBAC mode (tokens, service principal, vault), then `rest`.
fn rbac_calls(rest: &[&'static str]) -> Vec<&'static str> {
    [&RBAC_CALLS[..4], rest].concat()
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

/// The check of the target's key for the identity with `credential`.
async fn check_with(replay: &Replay, credential: &AzureCredential) -> Result<String, AzureError> {
    check_key_access(
        &azure_endpoints(replay),
        credential,
        &target(),
        IDENTITY,
        ROLE,
    )
    .await
}

/// The error's text and Debug, checked to hold no token and no secret.
fn message_without_secrets(error: &AzureError) -> String {
    cases::message_without(&PLANTED, error)
}

/// The check with the client secret, a case per recorded situation, named for what it shows.
#[tokio::test]
async fn key_access_check_cases() {
    let table = vec![
        passes(
            "role_at_the_vault_scope_passes",
            &rbac(&["role-assignments-vault", "key"]),
            ROLE,
            [is(format!(
                "identity {IDENTITY} (object id {OBJECT_ID}) holds {ROLE} on {VAULT_ID}; key vault-unseal-new enabled with wrapKey, unwrapKey"
            ))],
        )
        .calls(&RBAC_CALLS),
        // The identity holds the right role on another vault, on a resource group whose name
        // prefixes the vault's, and on another key of the vault; and only Reader on the vault.
        // The key is not looked at once the grant is missing.
        fails(
            "role_only_elsewhere_fails_with_the_az_fix",
            &rbac(&["role-assignments-other-vault"]),
            ROLE,
            [
                contains(IDENTITY),
                contains(ROLE),
                contains(VAULT_ID),
                contains(format!(
                    "az role assignment create --assignee-object-id {OBJECT_ID} --assignee-principal-type ServicePrincipal --role \"{ROLE}\" --scope {VAULT_ID}"
                )),
            ],
        )
        .calls(&rbac_calls(&["role-assignments-other-vault#0"])),
        passes(
            "role_at_the_resource_group_scope_passes",
            &rbac(&["role-assignments-resource-group", "key"]),
            ROLE,
            [contains(format!(
                "holds {ROLE} on /subscriptions/{SUBSCRIPTION}/resourcegroups/RG-VAULT-NEW;"
            ))],
        ),
        passes(
            "role_on_the_second_page_of_assignments_passes",
            &rbac(&["role-assignments-paged", "key"]),
            ROLE,
            [contains(format!("holds {ROLE} on {VAULT_ID};"))],
        )
        .calls(&rbac_calls(&[
            "role-assignments-paged#0",
            "role-assignments-paged#1",
            "tokens#2",
            "key#0",
        ])),
        fails(
            "next_link_off_the_resource_manager_is_not_followed",
            &rbac(&["role-assignments-foreign-next-link"]),
            ROLE,
            [
                contains("https://management.example.net"),
                contains("sends its token nowhere else"),
            ],
        ),
        // The built-in role at the vault does not count when the step asks for another role.
        passes(
            "custom_role_is_looked_up_by_name",
            &rbac(&["role-definition-custom", "role-assignments-custom-role", "key"]),
            "Vault Seal Operator",
            [contains(format!(
                "holds Vault Seal Operator on {VAULT_ID}/keys/vault-unseal-new;"
            ))],
        ),
        // No role assignment is read for a vault in access-policy mode.
        fails(
            "access_policy_without_unwrap_key_names_it",
            &["tokens", "service-principal", "vault-access-policy"],
            ROLE,
            [
                contains("it lacks unwrapKey;"),
                contains("has only get, wrapKey on keys"),
                contains(format!(
                    "az keyvault set-policy --name kv-new --object-id {OBJECT_ID} --key-permissions get wrapKey unwrapKey"
                )),
            ],
        )
        .calls(&[
            "tokens#0",
            "service-principal#0",
            "tokens#1",
            "vault-access-policy#0",
        ]),
        passes(
            "access_policy_with_all_key_permissions_passes",
            &["tokens", "service-principal", "vault-access-policy-all", "key"],
            ROLE,
            [contains(format!(
                "has get, wrapKey, unwrapKey on keys in the access policy of {VAULT_ID};"
            ))],
        ),
        fails(
            "disabled_key_fails",
            &rbac(&["role-assignments-vault", "key-disabled"]),
            ROLE,
            [contains("key vault-unseal-new in Key Vault kv-new is disabled")],
        ),
        fails(
            "key_without_unwrap_operation_fails",
            &rbac(&["role-assignments-vault", "key-without-unwrap"]),
            ROLE,
            [
                contains("does not allow unwrapKey"),
                contains("--ops encrypt decrypt wrapKey unwrapKey"),
            ],
        ),
        fails(
            "missing_key_names_vault_and_key",
            &rbac(&["role-assignments-vault", "key-not-found"]),
            ROLE,
            [starts_with(
                "Key Vault kv-new has no key vault-unseal-new (KeyNotFound: A key with (name/id) vault-unseal-new was not found",
            )],
        ),
        fails(
            "forbidden_vault_read_names_the_call_the_code_and_the_permission",
            &["tokens", "service-principal", "vault-forbidden"],
            ROLE,
            [
                starts_with(
                    "Azure Resource Manager: get Key Vault kv-new: HTTP 403 AuthorizationFailed: The client",
                ),
                ends_with(
                    "the operator running planx needs Reader (Microsoft.KeyVault/vaults/read) on the vault",
                ),
            ],
        ),
        fails(
            "throttled_vault_read_is_transient",
            &["tokens", "service-principal", "vault-throttled"],
            ROLE,
            [contains("HTTP 429 TooManyRequests")],
        )
        .transient(),
        fails(
            "vault_in_another_tenant_fails",
            &["tokens", "service-principal", "vault-other-tenant"],
            ROLE,
            [is(format!(
                "Key Vault `kv-new` belongs to tenant f0e1d2c3-b4a5-4968-8776-655443322110, the target says `tenant_id: {TENANT}`"
            ))],
        ),
        fails(
            "unknown_identity_has_no_service_principal",
            &["tokens", "service-principal-none"],
            ROLE,
            [starts_with(format!(
                "no service principal with client id {IDENTITY} in tenant {TENANT}"
            ))],
        ),
        fails(
            "rejected_client_secret_never_shows_in_the_error",
            &["token-invalid-client"],
            ROLE,
            [
                contains("HTTP 401 invalid_client: AADSTS7000215"),
                contains("/oauth2/v2.0/token"),
            ],
        ),
    ];
    cases::run(&FIXTURES, &PLANTED, table, check_with_client_secret).await;
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
    let dir = scratch_dir("azure-workload-identity");
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
    check_with(&replay, &credential).await.expect("access");
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
    check_with(&replay, &credential)
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
    let error = check_with(&replay, &credential)
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

    let endpoints = AzureEndpoints::from_lookup(common::lookup(&[
        ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us/"),
        ("PLANX_AZURE_ARM_URL", "http://127.0.0.1:8443/arm"),
        ("PLANX_AZURE_GRAPH_URL", ""),
        ("PLANX_AZURE_KEYVAULT_URL", "http://127.0.0.1:8443/{vault}/"),
    ]));
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
    let credential = |pairs: &[(&str, &str)]| AzureCredential::from_lookup(common::lookup(pairs));
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
    if std::env::var_os(CHILD).is_some() {
        // In the child, with the environment the parent set.
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
        return;
    }
    // The environment is set on a child process running this same test, so no thread of this
    // process ever sees it change.
    let output = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "from_env_reads_the_process_environment",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
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

/// One `preflight.key-access` step on an azurekeyvault target, `identity:` as given.
fn key_access_plan(identity: &str) -> planc::CompiledPlan {
    let text = plan_text(
        "azure-key-access",
        &target_yaml("new_keys"),
        "preflight.key-access",
        &[("new-key-access", "new_keys", identity)],
    );
    common::compile("azure-key-access", text)
}

/// The step run by the engine on `Live`, which takes endpoints and credentials from the
/// environment.
async fn run_key_access_step(identity: &str, run_dir: &Path) -> Outcome {
    let plan = key_access_plan(identity);
    let journal = Journal::create(&run_dir.join("journal.jsonl")).expect("journal");
    common::run_on_live(&plan, HashMap::new(), run_dir, journal, BTreeMap::new()).await
}

#[tokio::test]
async fn the_action_asks_for_the_identity_of_an_azure_target() {
    let dir = scratch_dir("azure-action-without-identity");
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
    if std::env::var_os(CHILD).is_some() {
        // In the child, with the environment the parent set.
        let dir = scratch_dir("azure-action-child");
        let outcome = run_key_access_step(IDENTITY, &dir).await;
        assert_eq!(outcome, Outcome::Completed);
        std::fs::remove_dir_all(dir).ok();
        return;
    }
    let replay = Replay::start(&FIXTURES, &rbac(&["role-assignments-vault", "key"])).await;
    // The environment is set on a child process running this same test.
    let output = tokio::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "the_action_checks_an_azure_target_with_credentials_from_the_environment",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .envs(environment(&replay))
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
async fn withdraw(replay: &Replay, role: &str) -> Result<String, AzureError> {
    let endpoints = azure_endpoints(replay);
    let (credential, target) = (client_secret(), target());
    let mut withdrawal = plan_withdrawal(&endpoints, &credential, &target, IDENTITY, role).await?;
    for removal in withdrawal.removals().to_vec() {
        withdrawal.remove(&removal).await?;
    }
    withdrawal.finish()
}

/// The id of a role assignment of the built-in role to the identity in the recordings.
fn assignment_id(scope: &str, guid: &str) -> String {
    format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{guid}")
}

/// The withdrawal as the action runs it, a case per recorded situation, named for what it shows.
#[tokio::test]
async fn withdrawal_cases() {
    let on_vault = assignment_id(VAULT_ID, "3c2b1a09-8f7e-4d6c-9b5a-4f3e2d1c0b9a");
    let key = format!("{VAULT_ID}/keys/vault-unseal-new");
    let resource_group = format!("/subscriptions/{SUBSCRIPTION}/resourcegroups/RG-VAULT-NEW");
    let table = vec![
        passes(
            "withdrawal_deletes_the_role_assignment_on_the_vault",
            &rbac(&["role-assignments-vault", "delete-role-assignment-vault"]),
            ROLE,
            [is(format!(
                "withdrew the access of identity {IDENTITY} (object id {OBJECT_ID}) to Key Vault kv-new: deleted role assignment {on_vault} ({ROLE} on {VAULT_ID})"
            ))],
        )
        .calls(&rbac_calls(&[
            "role-assignments-vault#0",
            "delete-role-assignment-vault#0",
        ])),
        // 204 No Content: "Role assignment was already deleted or does not exist".
        passes(
            "a_role_assignment_deleted_meanwhile_counts_as_deleted",
            &rbac(&["role-assignments-vault", "delete-role-assignment-gone"]),
            ROLE,
            [starts_with("withdrew the access of identity")],
        ),
        // The assignment on `another-key` was listed and left: no request deleted it.
        passes(
            "withdrawal_deletes_the_role_assignment_on_the_key_and_not_on_another_key",
            &rbac(&["role-assignments-key", "delete-role-assignment-key"]),
            ROLE,
            [ends_with(format!(
                ": deleted role assignment {} ({ROLE} on {key})",
                assignment_id(&key, "e1b2c3d4-0000-4000-8000-000000000001")
            ))],
        )
        .calls(&rbac_calls(&[
            "role-assignments-key#0",
            "delete-role-assignment-key#0",
        ])),
        // Nothing was deleted: the strict server would have refused any DELETE.
        fails(
            "withdrawal_refuses_an_assignment_above_the_vault_and_gives_the_az_command",
            &rbac(&["role-assignments-resource-group"]),
            ROLE,
            [is(format!(
                "identity {IDENTITY} (object id {OBJECT_ID}) still holds {ROLE} on Key Vault kv-new through an assignment above the vault ({resource_group}), which planx does not delete since it may grant access to other vaults too; if nothing else needs it, delete it and run the step again: az role assignment delete --ids {}",
                assignment_id(&resource_group, "b1b2c3d4-0000-4000-8000-000000000001")
            ))],
        )
        .calls(&rbac_calls(&["role-assignments-resource-group#0"])),
        passes(
            "withdrawal_reads_every_page_of_assignments",
            &rbac(&["role-assignments-paged", "delete-role-assignment-paged"]),
            ROLE,
            [contains(assignment_id(
                VAULT_ID,
                "c1b2c3d4-0000-4000-8000-000000000002",
            ))],
        ),
        // The PUT carried exactly the identity's entry with its key permissions (the recording's
        // `json`), and no role assignment was read.
        passes(
            "withdrawal_removes_the_key_permissions_of_an_access_policy",
            &[
                "tokens",
                "service-principal",
                "vault-access-policy",
                "access-policy-remove",
            ],
            ROLE,
            [is(format!(
                "withdrew the access of identity {IDENTITY} (object id {OBJECT_ID}) to Key Vault kv-new: removed key permissions get, wrapKey from its access policy"
            ))],
        )
        .calls(&[
            "tokens#0",
            "service-principal#0",
            "tokens#1",
            "vault-access-policy#0",
            "access-policy-remove#0",
        ]),
        fails(
            "forbidden_deletion_names_the_permission_the_operator_lacks",
            &rbac(&["role-assignments-vault", "delete-role-assignment-forbidden"]),
            ROLE,
            [
                starts_with(format!(
                    "Azure Resource Manager: delete role assignment {on_vault}: HTTP 403 AuthorizationFailed: The client"
                )),
                ends_with(
                    "; the operator running planx needs Microsoft.Authorization/roleAssignments/delete on the vault (Role Based Access Control Administrator or User Access Administrator)",
                ),
            ],
        ),
    ];
    cases::run(&FIXTURES, &PLANTED, table, withdraw).await;
}

#[tokio::test]
async fn withdrawal_deletes_on_the_vault_and_key_then_names_the_assignments_above() {
    let replay = Replay::start(
        &FIXTURES,
        &rbac(&[
            "role-assignments-vault-key-and-above",
            "delete-role-assignments-vault-and-key",
        ]),
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
async fn nothing_left_to_withdraw_is_done_and_says_so() {
    // The role on another vault, on a resource group whose name only prefixes the vault's, and on
    // another key; Crypto Officer on the vault: none gives this key, none is deleted.
    let replay = Replay::start(&FIXTURES, &rbac(&["role-assignments-other-vault"])).await;
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
