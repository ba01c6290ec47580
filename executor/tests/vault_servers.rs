//! HashiCorp Vault's side of the server differences, against replays of its documented
//! exchanges (`tests/vault-api/*.json`, each naming its page on developer.hashicorp.com): planx
//! tells Vault 1.19 and 2.0 from OpenBao by what `sys/seal-status` and `sys/health` say, proves
//! recovery keys at the unauthenticated `sys/generate-root` of Vault 1.x, sends the token there
//! on Vault 2.0, refuses on 2.0 without a token before any generation starts, and explains a
//! 405. OpenBao's side runs against the real server (2.6.2 and 2.7.2) in `tests/vault.rs`.

mod replay;

use planx::adapters::server::Product;
use planx::adapters::vault::{EarlierGeneration, Vault, VaultError};
use planx::secrets::Secret;
use replay::Replay;
use replay::recorded::VAULT_API;

const OPERATOR_TOKEN: &str = "hvs.OperatorTokenWithSudo0001";

fn keys() -> Vec<Secret> {
    vec![
        Secret::new("cmVjb3Zlcnkta2V5LW9uZQ=="),
        Secret::new("cmVjb3Zlcnkta2V5LXR3bw=="),
    ]
}

/// Serve the recordings `files` and prove the keys through them, with the operator's token when
/// `with_token`; the replay (to finish) and what planx answered.
async fn prove_through(files: &[&str], with_token: bool) -> (Replay, Result<(), VaultError>) {
    let replay = Replay::start(&VAULT_API, files).await;
    let vault = Vault::new(&replay.base, &[]).unwrap();
    let token = Secret::new(OPERATOR_TOKEN);
    let token = with_token.then_some(&token);
    let proved = match vault.begin_key_proof(token, &EarlierGeneration::None).await {
        Ok(proof) => vault.complete_key_proof(proof, &keys()).await,
        Err(error) => Err(error),
    };
    (replay, proved)
}

#[tokio::test]
async fn vault_1_19_is_identified_and_proves_keys_without_a_token() {
    let (replay, proved) = prove_through(
        &[
            "vault-1.19.0-seal-status",
            "vault-1.19.0-health",
            "generate-root-unauthenticated",
            "token-revoke-self",
        ],
        true,
    )
    .await;
    proved.expect("the keys are proved");
    let requests = replay.finish_with_requests();
    let generation: Vec<_> = requests
        .iter()
        .filter(|r| r.target.starts_with("/v1/sys/generate-root/"))
        .collect();
    assert_eq!(generation.len(), 4, "attempt read, started, two keys");
    assert!(
        generation
            .iter()
            .all(|r| !r.headers.contains_key("x-vault-token")),
        "Vault 1.x documents sys/generate-root as unauthenticated: planx sends no token there"
    );
}

#[tokio::test]
async fn vault_2_0_gets_the_token_on_generate_root() {
    let (replay, proved) = prove_through(
        &[
            "vault-2.0.0-seal-status",
            "vault-2.0.0-health",
            "generate-root-with-token",
            "token-revoke-self",
        ],
        true,
    )
    .await;
    proved.expect("the keys are proved with the token");
    replay.finish();
}

#[tokio::test]
async fn vault_2_0_without_a_token_is_refused_before_a_generation_starts() {
    let replay = Replay::start(
        &VAULT_API,
        &["vault-2.0.0-seal-status", "vault-2.0.0-health"],
    )
    .await;
    let vault = Vault::new(&replay.base, &[]).unwrap();
    let server = vault.server().await.unwrap();
    assert_eq!(
        (server.product, server.describe()),
        (Product::Vault, "HashiCorp Vault 2.0.0".to_string())
    );
    replay.finish();
    let (replay, proved) =
        prove_through(&["vault-2.0.0-seal-status", "vault-2.0.0-health"], false).await;
    let error = proved.unwrap_err().to_string();
    assert!(
        error.contains("HashiCorp Vault 2.0.0") && error.contains("give the step a `token`"),
        "{error}"
    );
    // Nothing but the two identifying reads was asked: no attempt was started.
    assert_eq!(replay.finish().len(), 2);
}

#[tokio::test]
async fn a_vault_that_switched_generate_root_off_is_explained() {
    let (replay, proved) = prove_through(
        &[
            "vault-1.19.0-seal-status",
            "vault-1.19.0-health",
            "generate-root-refused",
        ],
        true,
    )
    .await;
    let error = proved.unwrap_err().to_string();
    assert!(
        error.contains("HashiCorp Vault 1.19.0 refuses root-token generation"),
        "{error}"
    );
    assert!(!error.contains(OPERATOR_TOKEN));
    replay.finish();
}

/// The operations whose paths are the same on every supported release read Vault's documented
/// answers as they read OpenBao's: the raft configuration, the leader, a step-down.
#[tokio::test]
async fn vault_raft_leader_and_step_down_answers_are_read() {
    let replay = Replay::start(&VAULT_API, &["raft-configuration", "leader", "step-down"]).await;
    let vault = Vault::new(&replay.base, &[]).unwrap();
    let token = Secret::new(OPERATOR_TOKEN);
    let servers = vault.raft_configuration(&token).await.unwrap();
    let voters: Vec<(&str, bool, bool)> = servers
        .iter()
        .map(|s| (s.node_id.as_str(), s.leader, s.voter))
        .collect();
    assert_eq!(
        voters,
        [
            ("vault-0", true, true),
            ("vault-1", false, true),
            ("vault-2", false, false)
        ]
    );
    let leader = vault.leader().await.unwrap();
    assert!(leader.ha_enabled && !leader.is_self);
    assert_eq!(leader.raft_applied_index, 164);
    vault.step_down(&token).await.unwrap();
    replay.finish();
}
