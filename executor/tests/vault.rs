//! The Vault adapter against real OpenBao servers (raft storage, real HTTP): seal status,
//! unseal, leader and health; a least-privilege migration token; a snapshot streamed out of one
//! cluster and forced into another, every secret read back afterwards.

mod common;

use std::time::Duration;

use common::{BaoNode, call, eventually, init};
use planx::adapters::vault::{EarlierGeneration, Vault, VaultError, file_sha256};
use planx::secrets::Secret;
use reqwest::Method;

/// A node initialised, unsealed and leading.
async fn ready(ip: &str) -> (BaoNode, Vault, common::Init) {
    ready_node(BaoNode::start(ip)).await
}

/// `node` initialised, unsealed and leading.
async fn ready_node(node: BaoNode) -> (BaoNode, Vault, common::Init) {
    let vault = Vault::new(&node.address, &[]).expect("client");
    let init = init(&node.address).await;
    let status = vault
        .unseal(&Secret::new(init.key.clone()), false)
        .await
        .expect("unseal");
    assert!(!status.sealed);
    eventually("a leader", Duration::from_secs(30), || async {
        vault.leader().await.is_ok_and(|l| l.is_self)
    })
    .await;
    (node, vault, init)
}

/// Prove `keys` as a step with nothing in doubt does: begin a root-token generation, submit.
async fn prove_keys(
    vault: &Vault,
    token: Option<&Secret>,
    keys: &[Secret],
) -> Result<(), VaultError> {
    let proof = vault
        .begin_key_proof(token, &EarlierGeneration::None)
        .await?;
    vault.complete_key_proof(proof, keys).await
}

#[tokio::test]
async fn seal_status_unseal_leader_and_health() {
    let node = BaoNode::start("127.0.9.1");
    let vault = Vault::new(&node.address, &[]).unwrap();
    let health = vault
        .health()
        .await
        .expect("health answers even uninitialised");
    assert!(!health.initialized && health.sealed);
    let init = init(&node.address).await;
    let status = vault.seal_status().await.unwrap();
    assert!(status.initialized && status.sealed);
    assert_eq!(
        (status.threshold, status.shares, status.seal_type.as_str()),
        (1, 1, "shamir")
    );
    let wrong = vault.unseal(&Secret::new("AAAA"), false).await.unwrap_err();
    assert!(
        matches!(wrong, VaultError::Status { status: 400, .. }),
        "{wrong}"
    );
    assert!(
        !wrong.to_string().contains("AAAA"),
        "errors never echo a key: {wrong}"
    );
    let status = vault.unseal(&Secret::new(init.key), false).await.unwrap();
    assert!(!status.sealed);
    eventually("the node to lead", Duration::from_secs(30), || async {
        vault
            .leader()
            .await
            .is_ok_and(|l| l.is_self && l.ha_enabled)
    })
    .await;
    let health = vault.health().await.unwrap();
    assert!(health.initialized && !health.sealed && !health.standby);
}

#[tokio::test]
async fn the_migration_token_can_do_only_its_job_and_is_revocable() {
    let (node, vault, init) = ready("127.0.9.2").await;
    let root = Secret::new(init.root_token.clone());
    let (token, accessor) = vault
        .create_migration_token(&root, "planx-migration", "15m")
        .await
        .expect("token");
    assert!(!accessor.is_empty());
    let servers = vault
        .raft_configuration(&token)
        .await
        .expect("raft configuration is allowed");
    assert_eq!(servers.len(), 1);
    assert!(servers[0].leader && servers[0].voter);
    let (status, _) = call(
        &node.address,
        token.expose(),
        Method::GET,
        "sys/mounts",
        None,
    )
    .await;
    assert_eq!(status, 403, "the migration token may not list mounts");
    let (status, _) = call(
        &node.address,
        token.expose(),
        Method::POST,
        "sys/policies/acl/anything",
        Some(serde_json::json!({"policy": ""})),
    )
    .await;
    assert_eq!(status, 403, "the migration token may not write policies");
    vault.step_down(&token).await.expect("step-down is allowed");
    eventually(
        "the single node to lead again",
        Duration::from_secs(30),
        || async { vault.leader().await.is_ok_and(|l| l.is_self) },
    )
    .await;
    vault.revoke_self(&token).await.expect("revoke");
    let error = vault.raft_configuration(&token).await.unwrap_err();
    assert!(
        matches!(error, VaultError::Status { status: 403, .. }),
        "{error}"
    );
}

#[tokio::test]
async fn a_snapshot_moves_every_secret_into_another_cluster() {
    let (source_node, source, source_init) = ready("127.0.9.3").await;
    let (target_node, target, target_init) = ready("127.0.9.4").await;
    let root = &source_init.root_token;
    let (status, _) = call(
        &source_node.address,
        root,
        Method::POST,
        "sys/mounts/secret",
        Some(serde_json::json!({"type": "kv", "options": {"version": "2"}})),
    )
    .await;
    assert_eq!(status, 204);
    for i in 0..50 {
        let mut written = 0;
        // The kv-v2 mount upgrades itself for a moment after it is enabled.
        while written != 200 {
            let (status, _) = call(
                &source_node.address,
                root,
                Method::PUT,
                &format!("secret/data/app/{i}"),
                Some(serde_json::json!({"data": {"value": format!("secret-value-{i}")}})),
            )
            .await;
            written = status;
            if status != 200 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let (token, _) = source
        .create_migration_token(&Secret::new(root.clone()), "planx-migration", "15m")
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("planx-snapshot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("old.snap");
    let _ = std::fs::remove_file(&path);
    let mut seen = 0;
    let file = source
        .snapshot_save(&token, &path, |bytes| seen = bytes)
        .await
        .expect("snapshot");
    assert!(file.bytes > 0 && seen == file.bytes);
    assert_eq!(file.sha256, file_sha256(&path).await.unwrap());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // A changed file (one byte in the middle flipped), the saved file with bytes after its end,
    // and a cut one are each refused, their upload cut short: the target, never given a whole
    // file, stays as it was (unsealed, its own token valid).
    let original = std::fs::read(&path).unwrap();
    let other = dir.join("other.snap");
    let (status, _) = call(
        &source_node.address,
        root,
        Method::POST,
        "secret/data/app/other",
        Some(serde_json::json!({"data": {"value": "other"}})),
    )
    .await;
    assert_eq!(status, 200);
    source
        .snapshot_save(&token, &other, |_| {})
        .await
        .expect("another snapshot");
    let other = std::fs::read(&other).unwrap();
    let mut flipped = original.clone();
    flipped[original.len() / 2] ^= 0xff;
    let mut extended = original.clone();
    extended.extend_from_slice(&vec![0u8; 1 << 20]);
    let cut = original[..original.len() - 100].to_vec();
    for (name, bytes, reason) in [
        ("changed.snap", other, "the file changed since it was saved"),
        ("flipped.snap", flipped.clone(), ""),
        (
            "extended.snap",
            extended,
            "the file goes on after the snapshot archive's end",
        ),
        ("cut.snap", cut.clone(), "the snapshot archive is damaged"),
    ] {
        let copy = dir.join(name);
        std::fs::write(&copy, bytes).unwrap();
        let error = target
            .snapshot_restore_force(
                &Secret::new(target_init.root_token.clone()),
                &copy,
                Some(&file.sha256),
                |_| {},
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(reason)
                && error.contains(
                    "refusing to restore it (the upload was cut short: nothing was restored)"
                ),
            "{name}: {error}"
        );
        assert_not_restored(&target, &target_node, &target_init, name).await;
    }

    // The same damage met in a transfer, where the snapshot streams from the source straight into
    // the target, replayed by a stand-in source: each transfer is refused, the target's upload
    // cut short before the archive's end. The archive followed, a second later, by more bytes is
    // the case the held-back tail decides: without it the target has the whole archive while
    // planx waits for what follows, and restores it.
    let target_root = Secret::new(target_init.root_token.clone());
    for (name, bytes, pause_at, broken_at, reason) in [
        ("flipped", flipped, None, None, ""),
        (
            "extended",
            [original.clone(), vec![0u8; 1 << 20]].concat(),
            Some(original.len()),
            None,
            "the file goes on after the snapshot archive's end",
        ),
        ("cut", cut, None, None, "the snapshot archive is damaged"),
        (
            "broken",
            original.clone(),
            None,
            Some(original.len() / 2),
            "",
        ),
    ] {
        let replayed = Vault::new(&replaying(bytes, pause_at, broken_at).await, &[]).unwrap();
        let error = replayed
            .snapshot_transfer(
                &Secret::new("replayed"),
                &target,
                &target_root,
                &dir.join(format!("transfer-{name}.snap")),
                |_| {},
            )
            .await
            .unwrap_err();
        match (&error, broken_at) {
            (VaultError::Transport { .. }, Some(_)) => {}
            (VaultError::Snapshot { message, .. }, None) => assert!(
                message.contains(reason)
                    && message.ends_with(
                        "refusing to restore it (the upload was cut short: nothing was restored)"
                    ),
                "{name}: {message}"
            ),
            _ => panic!("{name}: {error}"),
        }
        assert_not_restored(
            &target,
            &target_node,
            &target_init,
            &format!("transfer {name}"),
        )
        .await;
    }

    // Restore into the other cluster: it seals itself and comes back with the source's keys.
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    target
        .snapshot_restore_force(
            &Secret::new(target_init.root_token.clone()),
            &path,
            Some(&file.sha256),
            move |bytes| counter.store(bytes, std::sync::atomic::Ordering::Relaxed),
        )
        .await
        .expect("snapshot-force");
    assert_eq!(
        sent.load(std::sync::atomic::Ordering::Relaxed),
        file.bytes,
        "the progress saw every byte sent"
    );
    eventually(
        "the target to seal itself",
        Duration::from_secs(60),
        || async { target.seal_status().await.is_ok_and(|s| s.sealed) },
    )
    .await;
    let status = target
        .unseal(&Secret::new(source_init.key.clone()), false)
        .await
        .expect("unseal with the source's key");
    assert!(!status.sealed);
    eventually(
        "a leader on the target",
        Duration::from_secs(30),
        || async { target.leader().await.is_ok_and(|l| l.is_self) },
    )
    .await;
    for i in 0..50 {
        let mut answer = (0, serde_json::Value::Null);
        for _ in 0..50 {
            answer = call(
                &target_node.address,
                root,
                Method::GET,
                &format!("secret/data/app/{i}"),
                None,
            )
            .await;
            if answer.0 == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(answer.0, 200, "secret {i} is not readable on the target");
        assert_eq!(
            answer.1["data"]["data"]["value"],
            format!("secret-value-{i}")
        );
    }
    assert_eq!(
        mounts_status(&target_node, &target_init).await,
        403,
        "after the restore only the source's tokens are valid"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_archive_without_sealed_sums_or_with_bytes_after_its_end_is_refused() {
    let dir = std::env::temp_dir().join(format!("planx-archive-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fake.snap");
    let file = std::fs::File::create(&path).unwrap();
    let mut archive = tar::Builder::new(flate2::write::GzEncoder::new(
        file,
        flate2::Compression::fast(),
    ));
    let data = b"{}";
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_cksum();
    archive
        .append_data(&mut header, "meta.json", &data[..])
        .unwrap();
    archive.into_inner().unwrap().finish().unwrap();
    let error = planx::adapters::snapshot_archive::check_snapshot_archive(&path).unwrap_err();
    assert_eq!(
        error,
        "the archive has no SHA256SUMS.sealed: the snapshot cannot be verified"
    );
    // With its sums the archive passes, and fails again with bytes after its end.
    let file = std::fs::File::create(&path).unwrap();
    let mut archive = tar::Builder::new(flate2::write::GzEncoder::new(
        file,
        flate2::Compression::fast(),
    ));
    for (name, data) in [
        ("meta.json", &b"{}"[..]),
        ("SHA256SUMS.sealed", &b"sealed"[..]),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_cksum();
        archive.append_data(&mut header, name, data).unwrap();
    }
    archive.into_inner().unwrap().finish().unwrap();
    planx::adapters::snapshot_archive::check_snapshot_archive(&path).expect("a whole archive");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.push(0);
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(
        planx::adapters::snapshot_archive::check_snapshot_archive(&path).unwrap_err(),
        "the file goes on after the snapshot archive's end: it is not the snapshot that was saved"
    );
    std::fs::write(&path, b"not a gzip").unwrap();
    assert!(
        planx::adapters::snapshot_archive::check_snapshot_archive(&path)
            .unwrap_err()
            .starts_with("not a snapshot archive")
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A source that replays `body` (bytes a real OpenBao produced, then damaged) to one snapshot
/// request: `200` with the whole length announced, then the body in two writes split at
/// `pause_at` with a second between them, or, at `broken_at`, the connection closed. Its address.
async fn replaying(body: Vec<u8>, pause_at: Option<usize>, broken_at: Option<usize>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => request.extend_from_slice(&buffer[..read]),
            }
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let sent = &body[..broken_at.unwrap_or(body.len())];
        let (first, rest) = sent.split_at(pause_at.unwrap_or(sent.len()).min(sent.len()));
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(first).await;
        if !rest.is_empty() {
            let _ = stream.flush().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = stream.write_all(rest).await;
        }
        let _ = stream.shutdown().await;
    });
    address
}

/// Half a second after a refused restore, `target` is as it was: unsealed (a restore seals it)
/// and taking its own root token.
async fn assert_not_restored(target: &Vault, node: &BaoNode, init: &common::Init, what: &str) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !target.seal_status().await.unwrap().sealed,
        "{what}: the target did not restore (a restore seals it)"
    );
    assert_eq!(
        mounts_status(node, init).await,
        200,
        "{what}: the target still takes its own token"
    );
}

/// The status `sys/mounts` answers on `node` to the root token of `init`.
async fn mounts_status(node: &BaoNode, init: &common::Init) -> u16 {
    call(
        &node.address,
        &init.root_token,
        Method::GET,
        "sys/mounts",
        None,
    )
    .await
    .0
}

/// How many tokens the node holds.
async fn token_count(address: &str, root: &str) -> usize {
    let (status, body) = call(
        address,
        root,
        Method::from_bytes(b"LIST").unwrap(),
        "auth/token/accessors",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["keys"].as_array().expect("accessors").len()
}

/// OpenBao 2.6.2 and 2.7.2 say who they are; planx picks the authenticated
/// `sys/generate-root-token` on both, and refuses without a token, saying what to give.
#[tokio::test]
async fn each_openbao_release_is_identified_and_asked_for_a_token_to_prove_keys() {
    use planx::adapters::server::Product;
    use twin::bao::OpenBao;
    for (ip, release) in [
        ("127.0.9.8", OpenBao::WithAzureSeal),
        ("127.0.9.9", OpenBao::Latest),
    ] {
        let node = BaoNode::start_release(ip, Some(release));
        let vault = Vault::new(&node.address, &[]).unwrap();
        let server = vault.server().await.expect("identified uninitialised");
        assert_eq!(server.product, Product::OpenBao);
        assert_eq!(server.version_text, release.version());
        assert!(server.supported().is_ok());
        let init = init(&node.address).await;
        vault
            .unseal(&Secret::new(init.key.clone()), false)
            .await
            .expect("unseal");
        eventually("a leader", Duration::from_secs(30), || async {
            vault.leader().await.is_ok_and(|l| l.is_self)
        })
        .await;
        let error = prove_keys(&vault, None, &[Secret::new(init.key.clone())])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!("OpenBao {}", release.version()))
                && error.contains("give the step a `token`"),
            "{error}"
        );
        prove_keys(
            &vault,
            Some(&Secret::new(init.root_token.clone())),
            &[Secret::new(init.key.clone())],
        )
        .await
        .unwrap_or_else(|e| panic!("OpenBao {}: {e}", release.version()));
    }
}

#[tokio::test]
async fn keys_are_proved_without_leaving_a_token_or_an_attempt_behind() {
    let (node, vault, init) = ready("127.0.9.7").await;
    let before = token_count(&node.address, &init.root_token).await;
    let attempt = |address: String, root: String| async move {
        call(
            &address,
            &root,
            Method::GET,
            "sys/generate-root-token/attempt",
            None,
        )
        .await
        .1["data"]["started"]
            .as_bool()
            .expect("started")
    };

    let root = Secret::new(init.root_token.clone());
    // A key of the right length (32 bytes) that is not the key.
    let wrong = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=";
    let error = prove_keys(&vault, Some(&root), &[Secret::new(wrong)])
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("the keys do not open this Vault"), "{error}");
    assert!(!error.contains(wrong), "errors never echo a key: {error}");
    assert!(
        !attempt(node.address.clone(), init.root_token.clone()).await,
        "the attempt was cancelled"
    );

    prove_keys(&vault, Some(&root), &[Secret::new(init.key.clone())])
        .await
        .expect("the right key");
    assert_eq!(
        token_count(&node.address, &init.root_token).await,
        before,
        "the root token generated to prove the key was revoked"
    );
    assert!(!attempt(node.address.clone(), init.root_token.clone()).await);

    // Someone else's generation in progress is refused and left alone.
    let (status, _) = call(
        &node.address,
        &init.root_token,
        Method::PUT,
        "sys/generate-root-token/attempt",
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!(status, 200);
    let error = prove_keys(&vault, Some(&root), &[Secret::new(init.key.clone())])
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("already in progress"), "{error}");
    assert!(
        attempt(node.address.clone(), init.root_token.clone()).await,
        "not cancelled"
    );
}

/// A run killed while it proved keys leaves a root-token generation behind; the resumed step
/// cancels that one (named by the nonce it journaled, or, killed before journaling it, one no
/// key was given to) and proves the keys. A generation that is not planx's, or that holds a key
/// someone gave, stays. The node has two key shares, so a generation can hold one key.
#[tokio::test]
async fn a_resumed_proof_cancels_only_the_generation_planx_left_behind() {
    let node = BaoNode::start("127.0.9.5");
    let vault = Vault::new(&node.address, &[]).expect("client");
    let (status, init) = call(
        &node.address,
        "",
        Method::PUT,
        "sys/init",
        Some(serde_json::json!({ "secret_shares": 2, "secret_threshold": 2 })),
    )
    .await;
    assert_eq!(status, 200, "{init}");
    let keys: Vec<Secret> = init["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|key| Secret::new(key.as_str().expect("key")))
        .collect();
    for key in &keys {
        vault.unseal(key, false).await.expect("unseal");
    }
    eventually("a leader", Duration::from_secs(30), || async {
        vault.leader().await.is_ok_and(|l| l.is_self)
    })
    .await;
    let root_text = init["root_token"].as_str().expect("root token").to_string();
    let root = Secret::new(root_text.clone());
    let before = token_count(&node.address, &root_text).await;
    let generation = || {
        let (address, root) = (node.address.clone(), root_text.clone());
        async move {
            let (_, body) = call(
                &address,
                &root,
                Method::GET,
                "sys/generate-root-token/attempt",
                None,
            )
            .await;
            body["data"].clone()
        }
    };

    // Killed after the nonce was journaled: that generation is planx's.
    let left = vault
        .begin_key_proof(Some(&root), &EarlierGeneration::None)
        .await
        .expect("begin");
    let nonce = left.nonce().to_string();
    drop(left);
    for (earlier, what) in [
        (EarlierGeneration::None, "nothing in doubt"),
        (EarlierGeneration::Nonce("another".into()), "another nonce"),
    ] {
        let error = vault
            .begin_key_proof(Some(&root), &earlier)
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: someone else's generation was cancelled"))
            .to_string();
        assert!(
            error.contains(&format!("nonce {nonce}, 0 of 2 keys given"))
                && error.contains("planx did not begin it"),
            "{what}: {error}"
        );
        assert_eq!(generation().await["nonce"], nonce.as_str(), "{what}");
    }
    let resumed = vault
        .begin_key_proof(Some(&root), &EarlierGeneration::Nonce(nonce.clone()))
        .await
        .expect("the generation planx left is cancelled");
    assert_ne!(resumed.nonce(), nonce);
    vault
        .complete_key_proof(resumed, &keys)
        .await
        .expect("the keys are proved");
    assert_eq!(generation().await["started"], false);

    // Killed between asking for a generation and journaling its nonce: one that no key was
    // given to is taken for planx's.
    drop(
        vault
            .begin_key_proof(Some(&root), &EarlierGeneration::None)
            .await
            .expect("begin"),
    );
    let resumed = vault
        .begin_key_proof(Some(&root), &EarlierGeneration::Begun)
        .await
        .expect("a generation no key was given to is cancelled");
    vault
        .complete_key_proof(resumed, &keys)
        .await
        .expect("the keys are proved");
    assert_eq!(
        token_count(&node.address, &root_text).await,
        before,
        "every root token generated was revoked"
    );

    // One that holds a key someone gave is theirs.
    let (status, theirs) = call(
        &node.address,
        &root_text,
        Method::PUT,
        "sys/generate-root-token/attempt",
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!(status, 200, "{theirs}");
    let (status, progress) = call(
        &node.address,
        &root_text,
        Method::PUT,
        "sys/generate-root-token/update",
        Some(serde_json::json!({ "key": keys[0].expose(), "nonce": theirs["data"]["nonce"] })),
    )
    .await;
    assert_eq!(status, 200, "{progress}");
    let error = vault
        .begin_key_proof(Some(&root), &EarlierGeneration::Begun)
        .await
        .err()
        .expect("a generation holding a key is refused")
        .to_string();
    assert!(error.contains("1 of 2 keys given"), "{error}");
    assert_eq!(generation().await["progress"], 1, "not cancelled");
}

/// The live plan's preflight reads the names of the old active node's API certificate as a
/// joining node will check them, against real OpenBao serving TLS with a certificate for
/// `vault-0.vault-internal`: that name passes, another is refused naming what the certificate
/// has, and a plain-HTTP listener answers no TLS.
#[tokio::test]
async fn the_names_of_a_tls_certificate_are_read_as_a_joining_node_checks_them() {
    use planx::adapters::tls_names::certificate_is_valid_for;
    let key = rcgen::KeyPair::generate().unwrap();
    let certificate = rcgen::CertificateParams::new(vec!["vault-0.vault-internal".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let _tls = BaoNode::start_tls("127.0.9.10", &certificate.pem(), &key.serialize_pem());
    let address = "127.0.9.10:8200".parse().unwrap();
    let checked = tokio::task::spawn_blocking(move || {
        (
            certificate_is_valid_for(address, "vault-0.vault-internal", None),
            certificate_is_valid_for(
                address,
                "vault-0.vault-internal.vault.svc.cluster.local",
                None,
            ),
        )
    })
    .await
    .unwrap();
    checked
        .0
        .expect("the certificate names vault-0.vault-internal");
    let refused = checked.1.unwrap_err().to_string();
    assert!(refused.contains("vault-0.vault-internal"), "{refused}");
    let _plain = BaoNode::start("127.0.9.11");
    let plain = tokio::task::spawn_blocking(|| {
        certificate_is_valid_for(
            "127.0.9.11:8200".parse().unwrap(),
            "vault-0.vault-internal",
            None,
        )
    })
    .await
    .unwrap()
    .unwrap_err()
    .to_string();
    assert!(plain.contains("no TLS server answered"), "{plain}");
}

/// A private CA (certificate PEM, and the issuer its key signs with) named `name`.
fn private_ca(name: &str) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    (ca_pem, rcgen::Issuer::new(ca_params, ca_key))
}

/// A node joins a leader whose API certificate comes from a private CA only when the join
/// carries that CA (`leader_ca_cert`): without it the node refuses the leader's certificate and
/// joins nothing; with it the node joins, unseals with the leader's key and is a peer. The
/// preflight's chain check agrees with the node: another CA is refused, naming the chain, and
/// so is a CA that is no certificate; the leader's CA passes.
#[tokio::test]
async fn a_node_joins_an_https_leader_with_the_ca_it_is_given() {
    use planx::adapters::tls_names::{CertificateRefusal, certificate_is_valid_for};
    let (ca_pem, issuer) = private_ca("planx test private CA");
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.9.13".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let (_leader_node, leader, init) = ready_node(BaoNode::start_with_tls_port(
        "127.0.9.13",
        8300,
        &leaf.pem(),
        &leaf_key.serialize_pem(),
    ))
    .await;
    let joining_node = BaoNode::start("127.0.9.14");
    let joining = Vault::new(&joining_node.address, &[]).unwrap();
    let leader_api_addr = "https://127.0.9.13:8300";

    let refused = joining
        .raft_join(leader_api_addr, true, None)
        .await
        .unwrap_err()
        .to_string();
    let log = joining_node.log();
    assert!(
        refused.contains("failed to get raft challenge")
            && log.contains("certificate signed by unknown authority"),
        "without the CA the leader's certificate is refused: {refused}\n{log}"
    );
    assert!(!joining.seal_status().await.unwrap().initialized);

    let (other_ca_pem, _) = private_ca("another CA");
    let leader_tls = "127.0.9.13:8300".parse().unwrap();
    let checks = {
        let ca_pem = ca_pem.clone();
        tokio::task::spawn_blocking(move || {
            [
                certificate_is_valid_for(leader_tls, "127.0.9.13", Some(&other_ca_pem)),
                certificate_is_valid_for(leader_tls, "127.0.9.13", Some("not a certificate")),
                certificate_is_valid_for(leader_tls, "127.0.9.13", Some(&ca_pem)),
                certificate_is_valid_for(leader_tls, "127.0.9.14", Some(&ca_pem)),
            ]
        })
        .await
        .unwrap()
    };
    assert!(
        matches!(&checks[0], Err(CertificateRefusal::Chain(why)) if why.contains("UnknownIssuer")),
        "{:?}",
        checks[0]
    );
    assert!(
        matches!(&checks[1], Err(CertificateRefusal::UnusableCa(why)) if why.contains("no PEM certificate")),
        "{:?}",
        checks[1]
    );
    assert_eq!(checks[2], Ok(()), "the leader's own CA");
    assert!(
        matches!(&checks[3], Err(CertificateRefusal::Names(_))),
        "names are checked before the chain: {:?}",
        checks[3]
    );

    joining
        .raft_join(leader_api_addr, true, Some(&ca_pem))
        .await
        .expect("the join with the leader's CA");
    let token = Secret::new(init.root_token.clone());
    eventually(
        "the joined node to unseal and be a peer",
        Duration::from_secs(60),
        || async {
            let _ = joining.unseal(&Secret::new(init.key.clone()), false).await;
            leader
                .raft_configuration(&token)
                .await
                .is_ok_and(|servers| servers.iter().any(|s| s.node_id == "node-127.0.9.14"))
        },
    )
    .await;
}
