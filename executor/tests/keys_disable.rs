//! `keys.disable` through the real actions and the engine. On a transit target, against a real
//! OpenBao with the transit engine, a key and the seal's token (a policy that may encrypt and
//! decrypt with the key): the token revoked and proved to encrypt no more, the effect journaled
//! without the token, a step left in doubt by a crash observed, and a token that may not revoke
//! itself refused with what to do. On Azure Key Vault, AWS KMS and Cloud KMS targets, through
//! `planx apply` with the operator's credentials in the child's environment, against the replay
//! server of `tests/replay` and the recordings of `tests/azure/` and `tests/kms/`.

mod common;
mod replay;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{BaoNode, call, compile, eventually, init, run_on_live, scratch_dir};
use planc::CompiledPlan;
use planx::engine::Outcome;
use planx::journal::{Event, Journal, StepState, read, replay};
use planx::keyservices::transit::TransitKey;
use planx::secrets::Secret;
use replay::Replay;
use replay::recorded::azure::{
    IDENTITY as AZURE_IDENTITY, PLANTED as AZURE_PLANTED, VAULT_ID,
    environment as azure_environment, target_yaml as azure_target_yaml,
};
use replay::recorded::kms::{
    KEY_ARN, PLANTED as KMS_PLANTED, ROLE as AWS_ROLE, SERVICE_ACCOUNT, TARGETS_YAML,
    environment as kms_environment,
};
use replay::recorded::{AZURE, KMS, plan_text};
use reqwest::Method;
use serde_json::json;

const STEP: &str = "withdraw-old-key";
const KEY: &str = "old-unseal";

/// One `keys.disable` step on a transit target at `address`, without `with:` (no identity: the
/// seal's access is its token).
fn transit_plan(address: &str) -> CompiledPlan {
    compile(
        "withdraw-transit",
        format!(
            r#"
version: 1
name: withdraw-transit
params:
  seal_token:
    type: secret
    default: env:OLD_SEAL_TOKEN
targets:
  old_keys:
    kind: transit
    address: {address}
    key_name: {KEY}
    token: "{{{{ params.seal_token }}}}"
steps:
  - id: {STEP}
    uses: keys.disable
    on: old_keys
"#
        ),
    )
}

/// A node at `ip`, unsealed and active, with the transit engine, the key and the policy `seal`
/// that may encrypt and decrypt with it; its root token.
async fn transit_server(ip: &str) -> (BaoNode, String) {
    planx::adapters::vault::install_crypto_provider();
    let node = BaoNode::start(ip);
    let init = init(&node.address).await;
    let root = init.root_token;
    let (status, _) = call(
        &node.address,
        &root,
        Method::PUT,
        "sys/unseal",
        Some(json!({ "key": init.key })),
    )
    .await;
    assert_eq!(status, 200, "unseal");
    let address = node.address.clone();
    eventually(
        "the transit engine mounted",
        Duration::from_secs(30),
        || {
            let (address, root) = (address.clone(), root.clone());
            async move {
                let (status, _) = call(
                    &address,
                    &root,
                    Method::POST,
                    "sys/mounts/transit",
                    Some(json!({ "type": "transit" })),
                )
                .await;
                status == 204
            }
        },
    )
    .await;
    let policy = format!(
        "path \"transit/encrypt/{KEY}\" {{ capabilities = [\"update\"] }}\npath \"transit/decrypt/{KEY}\" {{ capabilities = [\"update\"] }}\n"
    );
    for (method, path, body) in [
        (Method::POST, format!("transit/keys/{KEY}"), json!({})),
        (
            Method::PUT,
            "sys/policies/acl/seal".to_string(),
            json!({ "policy": policy }),
        ),
    ] {
        let (status, answer) = call(&node.address, &root, method, &path, Some(body)).await;
        assert!((200..300).contains(&status), "{path}: {status} {answer}");
    }
    (node, root)
}

/// A token with the policy `seal` (and the default policy unless `without_default`).
async fn seal_token(node: &BaoNode, root: &str, without_default: bool) -> String {
    let (status, answer) = call(
        &node.address,
        root,
        Method::POST,
        "auth/token/create",
        Some(json!({
            "policies": ["seal"],
            "no_default_policy": without_default,
            "no_parent": true,
            "ttl": "1h",
        })),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer["auth"]["client_token"]
        .as_str()
        .expect("a token")
        .to_string()
}

/// What an encrypt with the key answers to `token`.
async fn encrypt_status(node: &BaoNode, token: &str) -> u16 {
    call(
        &node.address,
        token,
        Method::PUT,
        &format!("transit/encrypt/{KEY}"),
        Some(json!({ "plaintext": "aGVsbG8=" })),
    )
    .await
    .0
}

/// Run (or resume, with the journal's `states`) the plan on `Live` with the seal's token.
async fn run_transit(
    plan: &CompiledPlan,
    token: &str,
    run_dir: &Path,
    journal: Journal,
    states: BTreeMap<String, StepState>,
) -> Outcome {
    let secrets = HashMap::from([("seal_token".to_string(), Secret::new(token))]);
    run_on_live(plan, secrets, run_dir, journal, states).await
}

fn journal_events(path: &Path) -> (String, Vec<Event>) {
    let text = std::fs::read_to_string(path).expect("journal");
    let (events, _) = read(&text).expect("intact journal");
    (text, events)
}

fn effects_of(events: &[Event]) -> (Vec<&str>, Vec<&str>) {
    let mut intents = Vec::new();
    let mut done = Vec::new();
    for event in events {
        match event {
            Event::Intent { effect, .. } => intents.push(effect.as_str()),
            Event::Done { effect, .. } => done.push(effect.as_str()),
            _ => {}
        }
    }
    (intents, done)
}

/// The summary a step's success journaled.
fn summary_of<'e>(events: &'e [Event], step: &str) -> &'e str {
    events
        .iter()
        .find_map(|event| match event {
            Event::StepSucceeded { step: s, outputs } if s == step => outputs["summary"].as_str(),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no success of {step} in {events:?}"))
}

#[tokio::test]
async fn transit_token_is_revoked_journaled_and_proved() {
    let (node, root) = transit_server("127.0.33.1").await;
    let token = seal_token(&node, &root, false).await;
    let other = seal_token(&node, &root, false).await;
    let key = TransitKey {
        address: node.address.clone(),
        mount: "transit".into(),
        key_name: KEY.into(),
    };
    // What `preflight.key-access` proves before the move.
    key.probe(&Secret::new(token.clone())).await.expect("probe");
    let plan = transit_plan(&node.address);
    let dir = scratch_dir("keys-disable-transit");

    let path = dir.join("journal.jsonl");
    let journal = Journal::create(&path).expect("journal");
    let outcome = run_transit(&plan, &token, &dir, journal, BTreeMap::new()).await;
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(encrypt_status(&node, &token).await, 403, "the seal's token");
    assert_eq!(
        encrypt_status(&node, &other).await,
        200,
        "another token keeps its access"
    );
    let error = key
        .probe(&Secret::new(token.clone()))
        .await
        .expect_err("revoked");
    assert_eq!(
        error.message,
        format!(
            "transit at {}: encrypt with `{KEY}` answered HTTP 403",
            node.address
        )
    );
    // The proof refuses a token that still encrypts.
    let error = key
        .prove_withdrawn(&Secret::new(other.clone()))
        .await
        .expect_err("still encrypts");
    assert_eq!(
        error.message,
        format!(
            "transit at {}: the seal's token can still encrypt with `{KEY}`",
            node.address
        )
    );
    let (text, events) = journal_events(&path);
    assert!(!text.contains(&token), "the journal holds no token");
    let effect = format!(
        "revoke the seal's token at {} (transit key {KEY})",
        node.address
    );
    assert_eq!(
        effects_of(&events),
        (vec![effect.as_str()], vec![effect.as_str()])
    );
    assert_eq!(
        summary_of(&events, STEP),
        format!(
            "revoked the seal's token at {}: an encrypt with transit key {KEY} now answers 403",
            node.address
        )
    );

    // Run again: nothing left to withdraw, and no effect.
    let path = dir.join("journal-again.jsonl");
    let journal = Journal::create(&path).expect("journal");
    let outcome = run_transit(&plan, &token, &dir, journal, BTreeMap::new()).await;
    assert_eq!(outcome, Outcome::Completed);
    let (_, events) = journal_events(&path);
    assert_eq!(effects_of(&events), (vec![], vec![]));
    assert_eq!(
        summary_of(&events, STEP),
        format!(
            "the seal's token at {} is revoked already (lookup-self and an encrypt with transit key {KEY} answer 403): nothing to withdraw",
            node.address
        )
    );
    std::fs::remove_dir_all(dir).ok();
}

/// A journal as a crash leaves it: the step started and its effect announced, no more.
fn journal_in_doubt(path: &Path, effect: &str) -> (Journal, BTreeMap<String, StepState>) {
    let mut journal = Journal::create(path).expect("journal");
    for event in [
        Event::StepStarted {
            step: STEP.into(),
            attempt: 1,
        },
        Event::Intent {
            step: STEP.into(),
            effect: effect.into(),
        },
    ] {
        journal.append(event).expect("append");
    }
    drop(journal);
    let (journal, events) = Journal::reopen(path).expect("reopen");
    let states = replay(&events);
    assert!(matches!(states[STEP], StepState::InDoubt { .. }));
    (journal, states)
}

#[tokio::test]
async fn a_transit_step_in_doubt_is_observed_before_it_runs_again() {
    let (node, root) = transit_server("127.0.33.2").await;
    let plan = transit_plan(&node.address);
    let dir = scratch_dir("keys-disable-transit-in-doubt");
    let effect = format!(
        "revoke the seal's token at {} (transit key {KEY})",
        node.address
    );

    // The crash came after the revocation: observed done, not run again.
    let revoked = seal_token(&node, &root, false).await;
    let (status, _) = call(
        &node.address,
        &revoked,
        Method::POST,
        "auth/token/revoke-self",
        None,
    )
    .await;
    assert_eq!(status, 204);
    let path = dir.join("revoked.jsonl");
    let (journal, states) = journal_in_doubt(&path, &effect);
    let outcome = run_transit(&plan, &revoked, &dir, journal, states).await;
    assert_eq!(outcome, Outcome::Completed);
    let (_, events) = journal_events(&path);
    assert_eq!(
        effects_of(&events),
        (vec![effect.as_str()], vec![]),
        "no second intent"
    );
    // Observed, not applied: the step did not start a second time.
    let starts = events
        .iter()
        .filter(|event| matches!(event, Event::StepStarted { .. }))
        .count();
    assert_eq!(starts, 1);
    assert!(
        summary_of(&events, STEP).ends_with("answer 403): nothing to withdraw"),
        "{events:?}"
    );

    // The crash came before: the token still works, so the step runs again and revokes it.
    let live = seal_token(&node, &root, false).await;
    let path = dir.join("live.jsonl");
    let (journal, states) = journal_in_doubt(&path, &effect);
    let outcome = run_transit(&plan, &live, &dir, journal, states).await;
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(encrypt_status(&node, &live).await, 403);
    let (text, events) = journal_events(&path);
    assert!(!text.contains(&live));
    assert_eq!(
        effects_of(&events),
        (
            vec![effect.as_str(), effect.as_str()],
            vec![effect.as_str()]
        )
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_transit_token_that_may_not_revoke_itself_fails_with_what_to_do() {
    let (node, root) = transit_server("127.0.33.3").await;
    // Without the default policy, the token may encrypt but not revoke (or look up) itself.
    let token = seal_token(&node, &root, true).await;
    let plan = transit_plan(&node.address);
    let dir = scratch_dir("keys-disable-transit-no-default-policy");
    let path = dir.join("journal.jsonl");
    let journal = Journal::create(&path).expect("journal");
    let outcome = run_transit(&plan, &token, &dir, journal, BTreeMap::new()).await;
    let Outcome::Failed { step, error } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(step, STEP);
    assert!(
        error.starts_with(&format!(
            "transit at {}: the seal's token may not revoke itself (revoke-self answered HTTP 403;",
            node.address
        )),
        "{error}"
    );
    assert!(
        error.contains("vault token revoke -accessor ACCESSOR"),
        "{error}"
    );
    assert!(!error.contains(&token));
    assert_eq!(encrypt_status(&node, &token).await, 200, "left as it was");
    std::fs::remove_dir_all(dir).ok();
}

/// One `keys.disable` step on each cloud key service.
fn cloud_plan() -> String {
    plan_text(
        "withdraw-old-keys",
        &format!("{}{TARGETS_YAML}", azure_target_yaml("azure_keys")),
        "keys.disable",
        &[
            ("azure-old-key", "azure_keys", AZURE_IDENTITY),
            ("aws-old-key", "aws_keys", AWS_ROLE),
            ("gcp-old-key", "gcp_keys", SERVICE_ACCOUNT),
        ],
    )
}

/// `planx apply` on the cloud plan in `dir`.
async fn planx_apply(dir: &Path, azure: &Replay, kms: &Replay) -> std::process::Output {
    std::fs::write(dir.join("withdraw-old-keys.yaml"), cloud_plan()).expect("plan");
    planx(
        dir,
        &["apply", "withdraw-old-keys.yaml", "--yes"],
        azure,
        kms,
    )
    .await
}

/// `planx ARGS` in `dir`, the operator's credentials and the endpoints of the two replay servers
/// in the child's environment only.
async fn planx(dir: &Path, args: &[&str], azure: &Replay, kms: &Replay) -> std::process::Output {
    let env = [azure_environment(azure), kms_environment(kms)].concat();
    common::planx_without_clusters(dir, args, &env).await
}

fn only_run(dir: &Path) -> PathBuf {
    let runs: Vec<PathBuf> = std::fs::read_dir(dir.join("runs"))
        .expect("runs")
        .map(|entry| entry.expect("entry").path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

fn only_journal(dir: &Path) -> PathBuf {
    only_run(dir).join("journal.jsonl")
}

#[tokio::test]
async fn cloud_key_services_are_withdrawn_through_planx_apply() {
    let azure = Replay::start(
        &AZURE,
        &[
            "tokens",
            "service-principal",
            "vault-rbac",
            "role-assignments-vault",
            "delete-role-assignment-vault",
        ],
    )
    .await;
    let kms = Replay::start(
        &KMS,
        &[
            "aws-describe-key",
            "aws-list-grants",
            "aws-key-policy-other-role",
            "aws-revoke-grant",
            "gcp-iam-policy",
            "gcp-set-iam-policy",
        ],
    )
    .await;
    let dir = scratch_dir("keys-disable-cloud");
    let output = planx_apply(&dir, &azure, &kms).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for step in ["azure-old-key", "aws-old-key", "gcp-old-key"] {
        assert!(stderr.contains(&format!("ok        {step}")), "{stderr}");
    }
    let (text, events) = journal_events(&only_journal(&dir));
    for planted in AZURE_PLANTED.iter().chain(&KMS_PLANTED) {
        assert!(
            !text.contains(planted) && !stdout.contains(planted) && !stderr.contains(planted),
            "a secret leaked"
        );
    }
    let assignment = format!(
        "{VAULT_ID}/providers/Microsoft.Authorization/roleAssignments/3c2b1a09-8f7e-4d6c-9b5a-4f3e2d1c0b9a"
    );
    let (mut intents, mut done) = effects_of(&events);
    intents.sort();
    done.sort();
    let expected = [
        format!(
            "delete role assignment {assignment} (Key Vault Crypto Service Encryption User on {VAULT_ID})"
        ),
        format!(
            "remove serviceAccount:{SERVICE_ACCOUNT} from roles/cloudkms.cryptoKeyEncrypterDecrypter in the IAM policy of key projects/vault-prod/locations/europe-west1/keyRings/vault/cryptoKeys/vault-seal-new"
        ),
        format!(
            "revoke grant 0c237476b39f8bc44e45212e08498fbe3151305030726c0590dd8d3e9f3d6a60 (Encrypt, Decrypt, DescribeKey) of {AWS_ROLE} on key {KEY_ARN}"
        ),
        format!(
            "revoke grant 91ad875e49b04a9d1f3bdeb84d821f9db6ea95e1098813f6d47f0c65fbe2a172 (ReEncryptFrom, ReEncryptTo) of {AWS_ROLE} on key {KEY_ARN}"
        ),
    ];
    assert_eq!(intents, expected);
    assert_eq!(done, expected);
    assert!(summary_of(&events, "azure-old-key").starts_with(&format!(
        "withdrew the access of identity {AZURE_IDENTITY} (object id"
    )));
    assert!(summary_of(&events, "aws-old-key").starts_with("revoked the grants of"));
    assert!(summary_of(&events, "gcp-old-key").starts_with("removed serviceAccount:"));
    azure.finish();
    kms.finish();
    std::fs::remove_dir_all(dir).ok();
}

/// Recordings of a world where no role assignment, grant or IAM binding gives the identities
/// the old keys any more, and the AWS key policy is the recording `key_policy`.
async fn without_grants(key_policy: &'static str) -> (Replay, Replay) {
    let azure = Replay::start(
        &AZURE,
        &[
            "tokens",
            "service-principal",
            "vault-rbac",
            "role-assignments-other-vault",
        ],
    )
    .await;
    let kms = Replay::start(
        &KMS,
        &[
            "aws-describe-key",
            "aws-list-grants-none",
            key_policy,
            "gcp-iam-policy-other-members",
        ],
    )
    .await;
    (azure, kms)
}

/// Recordings of a world where nothing grants the identities the old keys any more.
async fn withdrawn_already() -> (Replay, Replay) {
    without_grants("aws-key-policy-other-role").await
}

#[tokio::test]
async fn a_key_policy_naming_the_role_fails_the_step_through_planx_apply() {
    let (azure, kms) = without_grants("aws-key-policy").await;
    let dir = scratch_dir("keys-disable-cloud-policy");
    let output = planx_apply(&dir, &azure, &kms).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "failed    aws-old-key  {AWS_ROLE} holds no grant on key {KEY_ARN}; the key policy still names {AWS_ROLE} in statement \"Allow use of the key\""
        )),
        "{stderr}"
    );
    // Nothing was left to withdraw on the other two, and nothing was changed anywhere.
    let (_, events) = journal_events(&only_journal(&dir));
    assert_eq!(effects_of(&events), (vec![], vec![]));
    assert!(summary_of(&events, "azure-old-key").ends_with("nothing to withdraw"));
    assert!(summary_of(&events, "gcp-old-key").starts_with(&format!(
        "serviceAccount:{SERVICE_ACCOUNT} not found on the key"
    )));
    azure.finish();
    kms.finish();
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn cloud_steps_in_doubt_are_observed_by_planx_resume() {
    let dir = scratch_dir("keys-disable-cloud-resume");
    let (azure, kms) = withdrawn_already().await;
    let output = planx_apply(&dir, &azure, &kms).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    azure.finish();
    kms.finish();

    // Rewrite the journal as a crash after each step's effect would leave it.
    let path = only_journal(&dir);
    let (_, events) = journal_events(&path);
    let crashed = dir.join("crashed.jsonl");
    let mut journal = Journal::create(&crashed).expect("journal");
    journal.append(events[0].clone()).expect("run started");
    for step in ["azure-old-key", "aws-old-key", "gcp-old-key"] {
        journal
            .append(Event::StepStarted {
                step: step.into(),
                attempt: 1,
            })
            .expect("append");
        journal
            .append(Event::Intent {
                step: step.into(),
                effect: format!("the effect of {step}"),
            })
            .expect("append");
    }
    drop(journal);
    std::fs::rename(&crashed, &path).expect("journal in doubt");

    // Each step is observed done: read again, nothing changed, not started again.
    let (azure, kms) = withdrawn_already().await;
    let run = only_run(&dir);
    let output = planx(&dir, &["resume", run.to_str().expect("path")], &azure, &kms).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let (_, events) = journal_events(&path);
    let starts = events
        .iter()
        .filter(|event| matches!(event, Event::StepStarted { .. }))
        .count();
    assert_eq!(starts, 3, "only the crashed run's starts");
    assert_eq!(effects_of(&events).0.len(), 3, "no new intent");
    assert!(summary_of(&events, "azure-old-key").ends_with("nothing to withdraw"));
    assert!(summary_of(&events, "aws-old-key").starts_with(&format!("{AWS_ROLE} holds no grant")));
    assert!(summary_of(&events, "gcp-old-key").starts_with(&format!(
        "serviceAccount:{SERVICE_ACCOUNT} not found on the key"
    )));
    // Every read the observations need was made, and no write (the servers refuse them).
    azure.finish();
    kms.finish();
    std::fs::remove_dir_all(dir).ok();
}
