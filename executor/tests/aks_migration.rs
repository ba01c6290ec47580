//! The seed's own move, end to end: `planx apply plans/vault-aks-migration.yaml` on the twin's
//! `vault-pair-azure`, where real OpenBao 2.6.2 seals with `seal "azurekeyvault"` against the
//! twin's Azure emulator, reached only through its proxy. The new pods sign in with workload
//! identity in one bed and as a service principal in the other. Checked: every secret through
//! both domains, no acknowledged write lost, the new identity's access to the old key withdrawn
//! and every NEW pod unsealing with the new key alone; a run killed after each step in turn; a
//! failure after writes are blocked rolled back; the preflight stopping a Vault that would not
//! start before any change; and no socket of any process of the run leaving loopback. And the
//! live plan (`plans/vault-aks-migration-live.yaml`) on `vault-pair-azure-live`: the new pods
//! join the old raft cluster sealed by the old key vault and move their seal online.
//!
//! One scenario at a time (each runs six OpenBao processes).

mod common;

use common::twin_bed::{
    assert_no_write_lost, client, read_secrets, restart_pods_until_unsealed,
    run_until_a_new_step_succeeds, seal_status, summary, vault_pods,
};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use planx::adapters::cluster::Cluster;
use serde_json::{Value, json};
use twin::faults::{Fault, Verb};
use twin::httpc::Endpoint;
use twin::netwatch::NetWatch;
use twin::probe::{ProbePath, WriteProbe};
use twin::scenario::{IdentityForm, Scenario, ScenarioOptions};
use twin::scenario_azure::ScenarioAzure;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const PLAN: &str = "vault-aks-migration.yaml";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

struct Bed {
    scenario: Scenario,
    dir: PathBuf,
    /// Domains pinned to the gateways' plain-HTTP port (the test's reads).
    resolve_http: Vec<(String, SocketAddr)>,
    /// Every secret of the source, read before the move.
    source: BTreeMap<String, String>,
    probe: std::sync::Mutex<Option<WriteProbe>>,
}

impl Bed {
    /// The write probe, to check once.
    fn take_probe(&self) -> WriteProbe {
        self.probe
            .lock()
            .unwrap()
            .take()
            .expect("the probe is checked once")
    }

    fn azure(&self) -> &ScenarioAzure {
        self.scenario.azure.as_ref().expect("an Azure scenario")
    }

    fn new_identity(&self) -> String {
        self.azure().identity_of("new").unwrap().client_id.clone()
    }
}

async fn bed(name: &str, identity: IdentityForm) -> Bed {
    bed_of(name, ScenarioOptions::vault_pair_azure(identity)).await
}

async fn bed_of(name: &str, options: ScenarioOptions) -> Bed {
    let dir = std::env::temp_dir().join(format!("planx-aks-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let started = Instant::now();
    let scenario = Scenario::start_async(options.dir(&dir.join("twin")))
        .await
        .expect("the Azure scenario starts");
    println!(
        "Azure scenario up in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let resolve_http = scenario.resolve_pairs("http");
    let token = scenario.vault("old").root_token().unwrap().to_string();
    let source = read_secrets(&resolve_http, "vault.old.test", &token).await;
    assert_eq!(source.len(), 300, "the scenario writes 300 secrets");
    let in_cluster = scenario
        .twin()
        .cluster("old")
        .service_address("vault", "vault-active", 8200)
        .expect("vault-active has a ClusterIP");
    let probe = WriteProbe::start(
        vec![
            ProbePath {
                name: "old-domain".into(),
                endpoint: scenario.vault("old").ingress_endpoint("http").unwrap(),
            },
            ProbePath {
                name: "old-vault-active".into(),
                endpoint: Endpoint::plain(in_cluster),
            },
        ],
        &token,
        Duration::from_millis(50),
    );
    Bed {
        scenario,
        dir,
        resolve_http,
        source,
        probe: std::sync::Mutex::new(Some(probe)),
    }
}

/// planx as an operator runs it against Azure: signed in as the operator's service principal,
/// Azure only through the twin's proxy, the twin's CA trusted, the domains and loopback direct.
fn planx_command(bed: &Bed, args: &[&str]) -> Command {
    let azure = bed.azure();
    let mut command = Command::new(env!("CARGO_BIN_EXE_planx"));
    command
        .args(args)
        .current_dir(&bed.dir)
        .env("KUBECONFIG", bed.scenario.twin().kubeconfig_path())
        .env("AZURE_TENANT_ID", &azure.tenant_id)
        .env("AZURE_CLIENT_ID", &azure.operator_client_id)
        .env("AZURE_CLIENT_SECRET", &azure.operator_secret)
        .env("HTTPS_PROXY", &azure.proxy_url)
        .env(
            "NO_PROXY",
            "localhost,127.0.0.0/8,vault.old.test,vault.new.test",
        )
        .env("PLANX_CA_FILE", bed.scenario.files().ca())
        .env_remove("AZURE_FEDERATED_TOKEN_FILE")
        .env_remove("https_proxy")
        .env_remove("no_proxy");
    command
}

/// `planx apply` of the AKS plan with the scenario's parameters, approving everything.
fn apply_args(bed: &Bed) -> Vec<String> {
    apply_plan_args(bed, PLAN)
}

/// `planx apply` of `plan` (under `plans/`) with the scenario's parameters, approving everything.
fn apply_plan_args(bed: &Bed, plan: &str) -> Vec<String> {
    let mut args = vec![
        "apply".to_string(),
        root().join("plans").join(plan).display().to_string(),
        "--params".into(),
        bed.scenario.files().params().display().to_string(),
        "--approve-all".into(),
        "--yes".into(),
        "--output".into(),
        "json".into(),
    ];
    for (host, address) in bed.scenario.resolve_pairs("https") {
        args.push("--resolve".into());
        args.push(format!("{host}={address}"));
    }
    args
}

fn run(bed: &Bed, args: &[String]) -> (Option<i32>, String, String) {
    let out = planx_command(bed, &args.iter().map(String::as_str).collect::<Vec<_>>())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn runs(bed: &Bed) -> Vec<PathBuf> {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(bed.dir.join("runs"))
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    runs.sort();
    runs
}

/// The newest run of the bed (by when its directory was made: two runs may share a second).
fn run_dir(bed: &Bed) -> PathBuf {
    runs(bed)
        .into_iter()
        .max_by_key(|run| {
            std::fs::metadata(run.join("run.json"))
                .and_then(|m| m.modified())
                .ok()
        })
        .expect("a run directory")
}

/// The Azure requests the emulator served since entry `from` of its log, counted by
/// (principal, host, operation), and every refused CONNECT.
fn azure_requests(bed: &Bed, from: usize) -> (BTreeMap<String, usize>, Vec<Value>) {
    let entries = bed.azure().cloud.requests();
    let mut counts = BTreeMap::new();
    let mut refused = Vec::new();
    let names: BTreeMap<String, String> = {
        let tenant = bed.azure().cloud.tenant();
        tenant
            .applications
            .iter()
            .map(|a| (a.client_id.clone(), a.display_name.clone()))
            .collect()
    };
    for entry in entries.into_iter().skip(from) {
        if entry.get("refused").is_some() {
            refused.push(entry);
            continue;
        }
        let operation = path_shape(entry["path"].as_str().unwrap_or_default());
        let who = entry["principal"]
            .as_str()
            .and_then(|id| names.get(id).cloned())
            .unwrap_or_else(|| "-".to_string());
        *counts
            .entry(format!(
                "{who:<16} {} {} {} -> {}",
                entry["host"].as_str().unwrap_or_default(),
                entry["method"].as_str().unwrap_or_default(),
                operation,
                entry["status"]
            ))
            .or_insert(0) += 1;
    }
    (counts, refused)
}

/// A request path with its ids (GUIDs, key versions) replaced by `{id}`.
fn path_shape(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            let hex = segment.chars().filter(char::is_ascii_hexdigit).count();
            if segment.len() >= 32 && hex + segment.matches('-').count() == segment.len() {
                "{id}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// What a finished AKS move must show: every secret through both domains, three voters out of
/// migration, the new identity without access to the old key, and every NEW pod unsealing with
/// the new key after a restart.
async fn assert_moved(bed: &Bed) {
    assert_no_write_lost(bed.take_probe(), &bed.scenario, "new").await;
    let token = bed.scenario.vault("old").root_token().unwrap().to_string();
    for domain in ["vault.new.test", "vault.old.test"] {
        assert_eq!(
            read_secrets(&bed.resolve_http, domain, &token).await,
            bed.source,
            "secrets read through {domain} differ from the source"
        );
    }
    let http = client(&bed.resolve_http);
    let new = bed.scenario.vault("new");
    for ordinal in 0..3 {
        let address = new.pod_address(ordinal).unwrap();
        let status = seal_status(&http, address).await.expect("the pod answers");
        assert_eq!(status["type"], "azurekeyvault", "pod {ordinal}: {status}");
        assert_eq!(status["migration"], false, "pod {ordinal}: {status}");
        assert_eq!(status["sealed"], false, "pod {ordinal}: {status}");
    }
    // The new identity may no longer use the old key.
    let identity = bed.new_identity();
    {
        let tenant = bed.azure().cloud.tenant();
        let object_id = tenant.application(&identity).unwrap().object_id.clone();
        let old_vault = tenant.vault("kv-vault-old").unwrap();
        for operation in [
            twin::azure::KeyOperation::WrapKey,
            twin::azure::KeyOperation::UnwrapKey,
        ] {
            assert!(
                !tenant.may_use_key(&object_id, old_vault, "vault-unseal-old", operation),
                "the new identity still has {operation:?} on the old key"
            );
        }
    }
    // Every NEW pod restarts and unseals: only the new key can be what unwraps its keys now.
    let from = bed.azure().cloud.requests().len();
    restart_pods_until_unsealed(&bed.scenario, "new", "with the new key").await;
    let unwraps: Vec<Value> = bed
        .azure()
        .cloud
        .requests()
        .into_iter()
        .skip(from)
        .filter(|e| {
            e["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("/unwrapkey"))
        })
        .collect();
    assert!(!unwraps.is_empty(), "the restarted pods unwrapped nothing");
    assert!(
        unwraps
            .iter()
            .all(|e| e["host"] == "kv-vault-new.vault.azure.net" && e["status"] == 200),
        "after the move NEW unwraps with the new key only: {unwraps:?}"
    );
    assert_eq!(
        read_secrets(&bed.resolve_http, "vault.new.test", &token).await,
        bed.source
    );
}

/// Nothing a run writes holds a secret value of the scenario (tokens, recovery keys, the
/// Azure client secrets).
fn assert_no_secret_written(bed: &Bed, output: &str) {
    let files = bed.scenario.files();
    // An uninitialised NEW (the live scenario) has no root token.
    let mut planted: Vec<String> = ["old-root-token", "new-root-token"]
        .iter()
        .filter_map(|name| std::fs::read_to_string(files.secret(name)).ok())
        .map(|token| token.trim().to_string())
        .collect();
    assert!(!planted.is_empty(), "the old root token is planted");
    planted.extend(
        std::fs::read_to_string(files.secret("old-recovery-keys"))
            .unwrap()
            .lines()
            .map(|k| k.trim().to_string()),
    );
    let azure = bed.azure();
    planted.push(azure.operator_secret.clone());
    planted.extend(
        azure
            .seal_identities
            .iter()
            .filter_map(|(_, identity)| identity.client_secret.clone()),
    );
    let mut written = vec![("output".to_string(), output.to_string())];
    let mut stack = vec![run_dir(bed)];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if path.extension().is_none_or(|e| e != "snap") {
            written.push((
                path.display().to_string(),
                String::from_utf8_lossy(&std::fs::read(&path).unwrap()).to_string(),
            ));
        }
    }
    for (name, text) in written {
        for secret in planted.iter().filter(|s| s.len() >= 8) {
            assert!(
                !text.contains(secret.as_str()),
                "{name} holds a secret value"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_aks_migration_moves_every_secret_with_workload_identity_and_nothing_leaves_loopback() {
    let _one = ONE_AT_A_TIME.lock().await;
    let watch = NetWatch::start(std::process::id(), Duration::from_millis(10));
    let bed = bed("workload-identity", IdentityForm::WorkloadIdentity).await;
    let from = bed.azure().cloud.requests().len();
    let started = Instant::now();
    let (code, stdout, stderr) = run(&bed, &apply_args(&bed));
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let summary = summary(&stdout);
    assert_eq!(summary["outcome"], "completed", "{stdout}");
    println!(
        "AKS migration (workload identity): total {:.1}s (planx {:.1}s), outage window {:.1}s",
        started.elapsed().as_secs_f64(),
        summary["total_secs"].as_f64().unwrap(),
        summary["outage_secs"].as_f64().unwrap_or(f64::NAN),
    );
    let withdrawn = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "ok" && e["step"] == "withdraw-old-key");
    assert!(
        withdrawn.is_some(),
        "the old key's access is withdrawn:\n{stdout}"
    );
    let (counts, refused) = azure_requests(&bed, from);
    println!(
        "Azure requests the emulator served during the run (principal, host, call -> status):"
    );
    for (request, count) in &counts {
        println!("  {count:>4}  {request}");
    }
    assert!(refused.is_empty(), "the proxy refused: {refused:?}");
    assert!(
        counts
            .keys()
            .any(|k| k.starts_with("planx-operator") && k.contains("DELETE")),
        "planx deleted the role assignment through ARM: {counts:?}"
    );
    assert_no_secret_written(&bed, &format!("{stdout}\n{stderr}"));
    assert_moved(&bed).await;
    let report = watch.stop();
    println!(
        "network watch: {} samples of every socket of the test, the twin's bao pods and planx",
        report.samples
    );
    assert!(
        report.samples > 100,
        "the watch sampled: {}",
        report.samples
    );
    assert!(
        report.escapes.is_empty(),
        "sockets left loopback: {:?}",
        report.escapes
    );
    let (_, refused) = azure_requests(&bed, 0);
    assert!(refused.is_empty(), "the proxy refused: {refused:?}");
    std::fs::remove_dir_all(&bed.dir).ok();
}

/// The AKS live plan on `vault-pair-azure-live`: the new pods, uninitialised and sealed by the
/// old key vault, join the old raft cluster, take over, and move their seal online to the new key
/// vault; every secret arrives through both domains, no snapshot is taken, and the new identity
/// loses the old key.
#[tokio::test(flavor = "multi_thread")]
async fn the_aks_live_migration_moves_every_secret_through_raft_and_moves_the_seal_online() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = bed_of(
        "live",
        ScenarioOptions::vault_pair_azure_live(IdentityForm::WorkloadIdentity),
    )
    .await;
    let started = Instant::now();
    let (code, stdout, stderr) = run(
        &bed,
        &apply_plan_args(&bed, "vault-aks-migration-live.yaml"),
    );
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let summary = summary(&stdout);
    assert_eq!(summary["outcome"], "completed", "{stdout}");
    println!(
        "AKS live migration: total {:.1}s (planx {:.1}s)",
        started.elapsed().as_secs_f64(),
        summary["total_secs"].as_f64().unwrap(),
    );
    let run = run_dir(&bed);
    let snapshots = std::fs::read_dir(run.join("snapshots"))
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(snapshots, 0, "the live move takes no snapshot");
    let (_, refused) = azure_requests(&bed, 0);
    assert!(refused.is_empty(), "the proxy refused: {refused:?}");
    assert_no_secret_written(&bed, &format!("{stdout}\n{stderr}"));
    assert_moved(&bed).await;
    std::fs::remove_dir_all(&bed.dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_aks_run_with_a_service_principal_killed_after_each_step_in_turn_completes() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = bed("each-step", IdentityForm::ServicePrincipal).await;
    let mut killed_after = Vec::new();
    let mut output = String::new();
    let mut args = apply_args(&bed);
    let summary = loop {
        assert!(killed_after.len() < 60, "no end in sight: {killed_after:?}");
        if let Some(summary) = run_until_a_new_step_succeeds(
            planx_command(&bed, &args.iter().map(String::as_str).collect::<Vec<_>>()),
            &mut killed_after,
            &mut output,
        ) {
            break summary;
        }
        let run = run_dir(&bed);
        args = [
            "resume",
            run.to_str().unwrap(),
            "--approve-all",
            "--output",
            "json",
        ]
        .map(String::from)
        .to_vec();
    };
    assert_eq!(summary["outcome"], "completed", "{output}");
    println!(
        "AKS run killed after {} steps in turn: {}",
        killed_after.len(),
        killed_after.join(", ")
    );
    assert!(killed_after.len() >= 25, "{killed_after:?}");
    // The service principal's secret went with the seal into the block of the new key (the
    // restart in `assert_moved` proves that it signs in with it).
    let secret = bed
        .azure()
        .identity_of("new")
        .unwrap()
        .client_secret
        .clone()
        .unwrap();
    let kubeconfig =
        kube::config::Kubeconfig::read_from(bed.scenario.twin().kubeconfig_path()).unwrap();
    let cluster = Cluster::connect(&kubeconfig, "new", "vault").await.unwrap();
    let configmap = cluster
        .get("ConfigMap", "vault-config")
        .await
        .unwrap()
        .unwrap();
    let config = configmap["data"]["extraconfig-from-values.hcl"]
        .as_str()
        .unwrap();
    let blocks = planc::edit::seal::block_attributes(config, "azurekeyvault");
    assert_eq!(blocks.len(), 1, "one seal block is left");
    let attribute = |name: &str| {
        blocks[0]
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.clone())
    };
    assert_eq!(attribute("vault_name").as_deref(), Some("kv-vault-new"));
    assert!(
        attribute("client_secret").as_deref() == Some(secret.as_str()),
        "the new block keeps the service principal's client_secret"
    );
    assert_no_secret_written(&bed, &output);
    assert_moved(&bed).await;
    std::fs::remove_dir_all(&bed.dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_aks_failure_after_writes_are_blocked_rolls_back_to_the_old_vault() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = bed("rollback", IdentityForm::WorkloadIdentity).await;
    bed.scenario.twin().cluster("new").inject(
        Fault::error(500, "InternalError")
            .on(Verb::Update)
            .path("/api/v1/namespaces/vault/configmaps"),
    );
    let (code, stdout, _) = run(&bed, &apply_args(&bed));
    assert_eq!(code, Some(1), "{stdout}");
    let outcome = summary(&stdout)["outcome"].as_str().unwrap().to_string();
    assert!(
        outcome.starts_with("failed at `cutover.point-at-old-key`"),
        "{outcome}"
    );
    let run = run_dir(&bed);
    let out = planx_command(&bed, &["rollback", run.to_str().unwrap(), "--yes"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let http = client(&bed.resolve_http);
    let token = bed.scenario.vault("old").root_token().unwrap().to_string();
    common::eventually(
        "the old domain to serve after the rollback",
        Duration::from_secs(120),
        || async {
            http.get("http://vault.old.test/v1/sys/health")
                .send()
                .await
                .is_ok_and(|r| r.status().as_u16() == 200)
        },
    )
    .await;
    assert_eq!(
        read_secrets(&bed.resolve_http, "vault.old.test", &token).await,
        bed.source
    );
    // The old pods came back on their own Azure key: they unseal as the old service principal.
    let old = bed.scenario.vault("old");
    for ordinal in 0..3 {
        let address = old.pod_address(ordinal).unwrap();
        let status = seal_status(&http, address).await.expect("the pod answers");
        assert_eq!(status["sealed"], false, "old pod {ordinal}: {status}");
    }
    assert_no_write_lost(bed.take_probe(), &bed.scenario, "old").await;
    std::fs::remove_dir_all(&bed.dir).ok();
}

/// Run the plan, expect it to stop in its preflight at `step` with `expected` in the message,
/// then roll it back (nothing to undo) so that the next run may take the lease.
fn preflight_refuses(bed: &Bed, step: &str, expected: &str) {
    let (code, stdout, _) = run(bed, &apply_args(bed));
    assert_eq!(code, Some(1), "{stdout}");
    let outcome = summary(&stdout)["outcome"].as_str().unwrap().to_string();
    assert!(
        outcome.starts_with(&format!("failed at `{step}`")) && outcome.contains(expected),
        "expected `{step}` to fail with {expected:?}: {outcome}"
    );
    let run = run_dir(bed);
    let out = planx_command(bed, &["rollback", run.to_str().unwrap(), "--yes"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Replace the NEW StatefulSet's container with `change` applied (through the API, as
/// `kubectl edit` would).
async fn edit_new_container(bed: &Bed, change: impl FnOnce(&mut Value)) {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(bed.scenario.twin().kubeconfig_path()).unwrap();
    let cluster = Cluster::connect(&kubeconfig, "new", "vault").await.unwrap();
    let mut statefulset = cluster.get("StatefulSet", "vault").await.unwrap().unwrap();
    change(&mut statefulset["spec"]["template"]["spec"]["containers"][0]);
    cluster.replace(&statefulset).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_aks_preflight_stops_a_vault_that_would_not_unseal_before_any_change() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = bed("preflight", IdentityForm::WorkloadIdentity).await;
    let pods = vault_pods(&bed.scenario).await;
    let cloud = bed.azure().cloud.clone();
    let identity = bed.new_identity();

    // The new identity lost its role on the old key.
    let (object_id, key_scope) = {
        let tenant = cloud.tenant();
        let vault = tenant.vault("kv-vault-old").unwrap().clone();
        (
            tenant.application(&identity).unwrap().object_id.clone(),
            format!("{}/keys/vault-unseal-old", tenant.vault_id(&vault)),
        )
    };
    assert_eq!(cloud.revoke_roles_on_vault(&identity, "kv-vault-old"), 1);
    preflight_refuses(&bed, "preflight.old-key-access", "does not hold the role");
    cloud.tenant().assign(
        &object_id,
        twin::azure::state::ROLE_CRYPTO_SERVICE_ENCRYPTION_USER,
        &key_scope,
    );

    // The new key is disabled, then expired.
    assert!(cloud.set_key_enabled("kv-vault-new", "vault-unseal-new", false));
    preflight_refuses(&bed, "preflight.new-key-access", "is disabled");
    assert!(cloud.set_key_enabled("kv-vault-new", "vault-unseal-new", true));
    assert!(cloud.set_key_expiry("kv-vault-new", "vault-unseal-new", -60));
    preflight_refuses(&bed, "preflight.new-key-access", "expired");
    assert!(cloud.set_key_expiry("kv-vault-new", "vault-unseal-new", 86_400));

    // The pods' environment names another identity than the seal block.
    edit_new_container(&bed, |container| {
        for entry in container["env"].as_array_mut().unwrap() {
            if entry["name"] == "AZURE_CLIENT_ID" {
                entry["value"] = json!("00000000-0000-0000-0000-00000000beef");
            }
        }
    })
    .await;
    preflight_refuses(
        &bed,
        "preflight.seal-overrides",
        "AZURE_CLIENT_ID=00000000-0000-0000-0000-00000000beef but the block has client_id",
    );
    edit_new_container(&bed, |container| {
        for entry in container["env"].as_array_mut().unwrap() {
            if entry["name"] == "AZURE_CLIENT_ID" {
                entry["value"] = json!(identity);
            }
        }
    })
    .await;

    // The seal block carries a client secret the plan was not given by reference: every record
    // of the ConfigMap would hold it.
    let kubeconfig =
        kube::config::Kubeconfig::read_from(bed.scenario.twin().kubeconfig_path()).unwrap();
    let new_cluster = Cluster::connect(&kubeconfig, "new", "vault").await.unwrap();
    let original = new_cluster
        .get("ConfigMap", "vault-config")
        .await
        .unwrap()
        .unwrap();
    let mut with_secret = original.clone();
    let config = original["data"]["extraconfig-from-values.hcl"]
        .as_str()
        .unwrap();
    with_secret["data"]["extraconfig-from-values.hcl"] = json!(config.replace(
        "  auth_method",
        "  client_secret = \"tw~not-given-to-the-plan-0123456789\"\n  auth_method"
    ));
    new_cluster.replace(&with_secret).await.unwrap();
    preflight_refuses(
        &bed,
        "preflight.seal-overrides",
        "holds a secret seal attribute",
    );
    let current = new_cluster
        .get("ConfigMap", "vault-config")
        .await
        .unwrap()
        .unwrap();
    let mut restored = original.clone();
    restored["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    new_cluster.replace(&restored).await.unwrap();
    for run in runs(&bed) {
        let mut stack = vec![run];
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            } else {
                let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).to_string();
                assert!(
                    !text.contains("tw~not-given-to-the-plan"),
                    "{} holds the secret",
                    path.display()
                );
            }
        }
    }

    // The pods are about to run OpenBao 2.7, which has no built-in Azure Key Vault seal.
    edit_new_container(&bed, |container| {
        container["image"] = json!("quay.io/openbao/openbao:2.7.2");
    })
    .await;
    preflight_refuses(
        &bed,
        "preflight.seal-overrides",
        "plugin \"kms\" \"azurekeyvault\"",
    );

    assert_eq!(
        vault_pods(&bed.scenario).await,
        pods,
        "no pod was restarted"
    );
    let token = bed.scenario.vault("old").root_token().unwrap().to_string();
    assert_eq!(
        read_secrets(&bed.resolve_http, "vault.old.test", &token).await,
        bed.source
    );
    assert_no_write_lost(bed.take_probe(), &bed.scenario, "old").await;
    std::fs::remove_dir_all(&bed.dir).ok();
}
