//! The whole move, end to end, on the twin with real OpenBao: `planx apply` of
//! `plans/vault-transit-migration.yaml` from OLD to NEW, then every secret of the source read back
//! through both domains; a run killed (SIGKILL) at chosen moments and resumed; a run that fails
//! after writes are blocked, rolled back until the OLD Vault serves again; and that rollback
//! killed after each of its undo steps in turn, from another folder, with the plan files gone.
//! Through every run a write probe writes every 50 ms through the old domain and through the
//! old cluster's `vault-active` ClusterIP (an in-cluster client); at the end every write the
//! probe got acknowledged is read back from the Vault that must hold it: none may be lost.
//!
//! One scenario at a time (each runs eight OpenBao processes).

mod common;

use common::twin_bed::{
    assert_no_write_lost, client, read_secrets, restart_pods_until_unsealed,
    run_until_a_new_step_succeeds, seal_status, summary, vault_pods,
};

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use twin::faults::{Fault, Verb};
use twin::httpc::Endpoint;
use twin::probe::{ProbePath, WriteProbe};
use twin::scenario::{Scenario, ScenarioOptions};

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

struct Bed {
    scenario: Scenario,
    dir: PathBuf,
    resolve: Vec<(String, SocketAddr)>,
    /// Every secret of the source, read before the move.
    source: BTreeMap<String, String>,
    /// Clients writing to the old Vault from outside and inside its cluster, until checked.
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
}

async fn bed(name: &str) -> Bed {
    bed_of(name, ScenarioOptions::vault_pair()).await
}

async fn bed_of(name: &str, options: ScenarioOptions) -> Bed {
    let dir = std::env::temp_dir().join(format!("planx-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = Scenario::start_async(options.dir(&dir.join("twin")))
        .await
        .expect("the scenario starts");
    let resolve = scenario.resolve_pairs("http");
    let token = scenario.vault("old").root_token().unwrap().to_string();
    let source = read_secrets(&resolve, "vault.old.test", &token).await;
    assert_eq!(source.len(), 300, "the scenario writes 300 secrets");
    let old = scenario.vault("old");
    let chart = old.chart;
    let in_cluster = scenario
        .twin()
        .cluster("old")
        .service_address(
            chart.namespace(),
            &format!("{}-active", chart.release()),
            8200,
        )
        .expect("the active Service has a ClusterIP");
    let probe = WriteProbe::start(
        vec![
            ProbePath {
                name: "old-domain".into(),
                endpoint: old.ingress_endpoint("http").expect("the old gateway"),
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
        resolve,
        source,
        probe: std::sync::Mutex::new(Some(probe)),
    }
}

fn planx_command(bed: &Bed, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_planx"));
    command
        .args(args)
        .current_dir(&bed.dir)
        .env("KUBECONFIG", bed.scenario.twin().kubeconfig_path());
    command
}

fn apply_args(bed: &Bed) -> Vec<String> {
    let files = bed.scenario.files();
    plan_args(bed, "vault-transit-migration.yaml", &[files.params()])
}

/// `planx apply plans/PLAN` with the parameter files, approving everything, JSON output.
fn plan_args(bed: &Bed, plan: &str, params: &[PathBuf]) -> Vec<String> {
    let mut args = vec![
        "apply".to_string(),
        root().join("plans").join(plan).display().to_string(),
    ];
    for file in params {
        args.push("--params".into());
        args.push(file.display().to_string());
    }
    args.extend([
        "--approve-all".into(),
        "--yes".into(),
        "--output".into(),
        "json".into(),
    ]);
    for (host, address) in &bed.resolve {
        args.push("--resolve".into());
        args.push(format!("{host}={address}"));
    }
    args
}

/// `planx apply` of the transit plan with the bed's parameters, which must complete; its stdout
/// and stderr.
fn apply_to_completion(bed: &Bed) -> (String, String) {
    let args = apply_args(bed);
    let out = planx_command(bed, &args.iter().map(String::as_str).collect::<Vec<_>>())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(summary(&stdout)["outcome"], "completed");
    (stdout, stderr)
}

/// Run planx with `args` and expect it to stop at `step`: exit 1, and a summary whose outcome
/// is `failed at `STEP`: ...`, which it returns.
fn apply_until_it_fails_at(bed: &Bed, args: &[String], step: &str) -> String {
    let out = planx_command(bed, &args.iter().map(String::as_str).collect::<Vec<_>>())
        .output()
        .unwrap();
    let (stdout, outcome) = failed(&out);
    assert!(
        outcome.starts_with(&format!("failed at `{step}`")),
        "{stdout}"
    );
    outcome
}

/// A planx run that must have failed (exit 1): its stdout and the outcome of its summary.
fn failed(out: &std::process::Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let outcome = summary(&stdout)["outcome"].as_str().unwrap().to_string();
    (stdout, outcome)
}

/// `planx rollback RUN --yes` of the bed's one run, which must finish; what it printed.
fn roll_back(bed: &Bed) -> String {
    roll_back_in(bed, &bed.dir)
}

/// `planx rollback RUN --yes`, run from `folder`, of the one run started there.
fn roll_back_in(bed: &Bed, folder: &Path) -> String {
    let run = run_dir_in(folder);
    let out = planx_command(bed, &["rollback", run.to_str().unwrap(), "--yes"])
        .current_dir(folder)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    stderr
}

fn run_dir(bed: &Bed) -> PathBuf {
    run_dir_in(&bed.dir)
}

/// The one run started from `folder`.
fn run_dir_in(folder: &Path) -> PathBuf {
    let runs: Vec<PathBuf> = std::fs::read_dir(folder.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1);
    runs[0].clone()
}

/// What a finished move must show: every secret through both domains with an old token, three
/// raft voters, no node in migration, the new key enough for a full restart, the tokens revoked.
async fn assert_moved(bed: &Bed) {
    assert_no_write_lost(bed.take_probe(), &bed.scenario, "new").await;
    let token = bed.scenario.vault("old").root_token().unwrap().to_string();
    for domain in ["vault.new.test", "vault.old.test"] {
        let read = read_secrets(&bed.resolve, domain, &token).await;
        assert_eq!(
            read, bed.source,
            "secrets read through {domain} differ from the source"
        );
    }
    let http = client(&bed.resolve);
    let raft: Value = http
        .get("http://vault.new.test/v1/sys/storage/raft/configuration")
        .header("X-Vault-Token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let servers = raft["data"]["config"]["servers"]
        .as_array()
        .expect("raft servers");
    assert_eq!(servers.len(), 3);
    assert!(servers.iter().all(|s| s["voter"] == true), "{servers:?}");
    let new = bed.scenario.vault("new");
    for ordinal in 0..3 {
        let address = new.pod_address(ordinal).unwrap();
        let status = seal_status(&http, address).await.expect("the pod answers");
        assert_eq!(status["migration"], false, "pod {ordinal}: {status}");
        assert_eq!(status["sealed"], false, "pod {ordinal}: {status}");
    }
    // The migration token was revoked: its accessor is gone.
    let journal = std::fs::read_to_string(run_dir(bed).join("journal.jsonl")).unwrap();
    let accessor = journal
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "step-succeeded" && e["step"] == "old-token")
        .find_map(|e| e["outputs"]["accessor"].as_str().map(str::to_owned))
        .expect("the token's accessor is journaled");
    let lookup = http
        .post("http://vault.new.test/v1/auth/token/lookup-accessor")
        .header("X-Vault-Token", &token)
        .json(&serde_json::json!({ "accessor": accessor }))
        .send()
        .await
        .unwrap();
    assert_ne!(
        lookup.status().as_u16(),
        200,
        "the migration token is still valid"
    );
    // The old key service goes; every NEW pod restarts and unseals with the new key alone.
    bed.scenario
        .vault("old")
        .key_service()
        .stop()
        .await
        .unwrap();
    restart_pods_until_unsealed(&bed.scenario, "new", "with the new key").await;
    assert_eq!(
        read_secrets(&bed.resolve, "vault.new.test", &token).await,
        bed.source
    );
}

/// Nothing a run writes holds a secret value of the scenario.
fn assert_no_secret_written(bed: &Bed, stdout: &str, stderr: &str) {
    let files = bed.scenario.files();
    let mut planted: Vec<String> = Vec::new();
    for name in [
        "old-root-token",
        "new-root-token",
        "old-kms-token",
        "new-kms-token",
    ] {
        // The live scenario's NEW is uninitialised: it has no root token.
        if let Ok(text) = std::fs::read_to_string(files.secret(name)) {
            planted.push(text.trim().to_string());
        }
    }
    for key in std::fs::read_to_string(files.secret("old-recovery-keys"))
        .unwrap()
        .lines()
    {
        planted.push(key.trim().to_string());
    }
    planted.retain(|p| p.len() >= 8);
    let mut written = vec![
        ("stdout".to_string(), stdout.to_string()),
        ("stderr".to_string(), stderr.to_string()),
    ];
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
        for secret in &planted {
            assert!(
                !text.contains(secret.as_str()),
                "{name} holds a secret value"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_full_migration_moves_every_secret() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = bed("full").await;
    let started = Instant::now();
    let (stdout, stderr) = apply_to_completion(&bed);
    let summary = summary(&stdout);
    let outage = summary["outage_secs"].as_f64().unwrap();
    let waits = summary["outage_waits_secs"].as_f64().unwrap();
    println!(
        "full migration: total {:.1}s (planx {:.1}s), outage window {outage:.1}s, of which {waits:.1}s waiting on the servers",
        started.elapsed().as_secs_f64(),
        summary["total_secs"].as_f64().unwrap(),
    );
    assert!(
        waits > 0.0 && waits <= outage,
        "the waits lie inside the outage: {waits} of {outage}"
    );
    let activities: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "activity")
        .collect();
    for (unit, what) in [
        ("bytes", "snapshot from"),
        ("bytes", "snapshot into"),
        ("seconds", "waiting for"),
    ] {
        assert!(
            activities
                .iter()
                .any(|a| a["unit"] == unit && a["detail"].as_str().unwrap().starts_with(what)),
            "no `{what}` activity in {activities:?}"
        );
    }
    assert_no_secret_written(&bed, &stdout, &stderr);
    assert_moved(&bed).await;
    std::fs::remove_dir_all(&bed.dir).ok();
}

/// The same plan on an install made with OpenBao's chart (`twin up --scenario openbao-pair`):
/// with `flavour: openbao-helm` every name comes from that chart (namespace and objects
/// `openbao`, container `openbao`, `openbao-active` labels), and the move completes as on the
/// Vault chart.
#[tokio::test(flavor = "multi_thread")]
async fn the_full_migration_on_openbao_chart_installs_moves_every_secret() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = bed_of("openbao-chart", ScenarioOptions::openbao_pair()).await;
    let params = std::fs::read_to_string(bed.scenario.files().params()).unwrap();
    assert!(params.contains("flavour: openbao-helm"), "{params}");
    assert!(params.contains("old_namespace: openbao"), "{params}");
    // The Vault chart's names do not fit this install: refused (not left waiting for a leader
    // that no pod can be), saying which flavour may, before anything changes (run from a
    // folder of its own).
    let elsewhere = bed.dir.join("wrong-flavour");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let mut wrong = apply_args(&bed);
    wrong.extend(["--set".to_string(), "flavour=vault-helm".to_string()]);
    let out = planx_command(&bed, &wrong.iter().map(String::as_str).collect::<Vec<_>>())
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    let (stdout, outcome) = failed(&out);
    assert!(
        outcome.contains("does not exist in namespace `openbao`")
            && outcome.contains("flavour: openbao-helm"),
        "{outcome}"
    );
    assert!(
        !stdout.contains("\"event\":\"ok\",\"step\":\"cutover"),
        "nothing changed: {stdout}"
    );
    // Rolled back (nothing to undo), the refused run leaves the clusters to the next one.
    roll_back_in(&bed, &elsewhere);
    let (stdout, stderr) = apply_to_completion(&bed);
    // The preflight found the server it runs, and journaled what it found.
    let journal = std::fs::read_to_string(run_dir(&bed).join("journal.jsonl")).unwrap();
    let server = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "step-succeeded" && e["step"] == "preflight.replicas")
        .map(|e| e["outputs"]["server"].clone());
    assert_eq!(server, Some(Value::from("OpenBao 2.7.2")), "{journal}");
    // The run's compiled plan names the chart's objects.
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir(&bed).join("run.json")).unwrap())
            .unwrap();
    let new_vault = &record["compiled"]["targets"]["new_vault"]["attributes"];
    for (attribute, expected) in [
        ("flavour", "openbao-helm"),
        ("statefulset", "openbao"),
        ("container", "openbao"),
        ("configmap", "openbao-config"),
        ("active_service", "openbao-active"),
        ("status_labels", "openbao"),
        ("env_prefix", "BAO_"),
        ("data_path", "/openbao/data"),
    ] {
        assert_eq!(
            new_vault[attribute]["Str"], expected,
            "{attribute} of new_vault: {new_vault}"
        );
    }
    assert_no_secret_written(&bed, &stdout, &stderr);
    assert_moved(&bed).await;
    // The new Vault's active pod carries OpenBao's service-registration label, which the
    // chart's active Service selects.
    let pods = vault_pods(&bed.scenario).await;
    assert!(
        pods.keys().any(|name| name.starts_with("new/openbao-")),
        "{pods:?}"
    );
    std::fs::remove_dir_all(&bed.dir).ok();
}

/// The online plan: the new Vault adopts the old key before the window, the snapshot streams
/// straight into it, the old domain is re-routed at once, and the seal moves to the new key while
/// clients are served. Every secret and every acknowledged write arrives.
#[tokio::test(flavor = "multi_thread")]
async fn the_online_migration_moves_every_secret() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = bed("online").await;
    let files = bed.scenario.files();
    let args = plan_args(
        &bed,
        "vault-transit-migration-online.yaml",
        &[files.params(), files.online_params()],
    );
    let out = planx_command(&bed, &args.iter().map(String::as_str).collect::<Vec<_>>())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let summary = summary(&stdout);
    assert_eq!(summary["outcome"], "completed");
    println!(
        "online migration: planx {:.1}s, outage window {:.1}s",
        summary["total_secs"].as_f64().unwrap(),
        summary["outage_secs"].as_f64().unwrap(),
    );
    let moved: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "activity" && e["unit"] == "bytes")
        .collect();
    assert!(
        moved.iter().all(|a| a["detail"]
            .as_str()
            .unwrap()
            .starts_with("snapshot from vault-")),
        "one streamed pass, no upload of a saved file: {moved:?}"
    );
    let run = run_dir(&bed);
    let copy = std::fs::read_dir(run.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .expect("the transfer keeps a copy");
    let journal = std::fs::read_to_string(run.join("journal.jsonl")).unwrap();
    let sha256 = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "step-succeeded" && e["step"] == "cutover.transfer")
        .and_then(|e| e["outputs"]["sha256"].as_str().map(str::to_owned))
        .expect("the transfer journals the copy's SHA-256");
    assert_eq!(
        planx::adapters::vault::file_sha256(&copy).await.unwrap(),
        sha256,
        "the copy is the snapshot that was restored"
    );
    assert_no_secret_written(&bed, &stdout, &stderr);
    assert_moved(&bed).await;
    std::fs::remove_dir_all(&bed.dir).ok();
}

/// A live run on a fresh `vault-pair-live` bed, SIGKILLed while planx waits for the first pod it
/// joined to catch up: that pod is a peer of the old cluster, the other two are still empty.
async fn live_run_killed_in_the_join(name: &str) -> Bed {
    let bed = bed_of(name, ScenarioOptions::vault_pair_live()).await;
    let files = bed.scenario.files();
    let args = plan_args(&bed, "vault-transit-migration-live.yaml", &[files.params()]);
    let reached = kill_when(&bed, &args, |event| {
        event["event"] == "activity"
            && event["detail"].as_str().is_some_and(|d| {
                d.starts_with("waiting for pod `vault-0` of `new_vault` to unseal")
            })
    })
    .await;
    assert!(reached, "the run never waited for the first joined pod");
    bed
}

/// The raft peers of the cluster serving `domain` (`vault.old.test`, `vault.new.test`), read with
/// the old root token.
async fn raft_servers(bed: &Bed, domain: &str) -> Vec<Value> {
    let token = bed.scenario.vault("old").root_token().unwrap().to_string();
    let raft: Value = client(&bed.resolve)
        .get(format!("http://{domain}/v1/sys/storage/raft/configuration"))
        .header("X-Vault-Token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    raft["data"]["config"]["servers"]
        .as_array()
        .unwrap_or_else(|| panic!("raft servers: {raft}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_live_migration_moves_every_secret_through_raft_without_a_snapshot() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = bed_of("live", ScenarioOptions::vault_pair_live()).await;
    let files = bed.scenario.files();
    let args = plan_args(&bed, "vault-transit-migration-live.yaml", &[files.params()]);
    let out = planx_command(&bed, &args.iter().map(String::as_str).collect::<Vec<_>>())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let summary = summary(&stdout);
    assert_eq!(summary["outcome"], "completed");
    println!(
        "live migration: planx {:.1}s",
        summary["total_secs"].as_f64().unwrap()
    );
    let run = run_dir(&bed);
    let snapshots = std::fs::read_dir(run.join("snapshots"))
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(snapshots, 0, "the live move takes no snapshot");
    let journal = std::fs::read_to_string(run.join("journal.jsonl")).unwrap();
    let joined = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "step-succeeded" && e["step"] == "handover.join")
        .and_then(|e| e["outputs"]["nodes"].as_array().cloned())
        .expect("the join journals the nodes that joined");
    assert_eq!(joined.len(), 3, "{joined:?}");
    assert_no_secret_written(&bed, &stdout, &stderr);
    // Three voters, all of them the nodes that joined: the old peers were removed.
    let mut ids: Vec<Value> = raft_servers(&bed, "vault.new.test")
        .await
        .iter()
        .map(|s| s["node_id"].clone())
        .collect();
    let mut expected = joined.clone();
    ids.sort_by_key(|v| v.to_string());
    expected.sort_by_key(|v| v.to_string());
    assert_eq!(ids, expected, "only the joined nodes are left");
    assert_moved(&bed).await;
    std::fs::remove_dir_all(&bed.dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_run_killed_after_the_first_pod_joined_resumes() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = live_run_killed_in_the_join("live-kill").await;
    resume_to_completion(&bed, &run_dir(&bed), "a kill in the join");
    assert_moved(&bed).await;
    std::fs::remove_dir_all(&bed.dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_run_killed_in_the_middle_of_the_join_rolls_back_to_the_old_cluster_alone() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = live_run_killed_in_the_join("live-kill-rollback").await;
    let stderr = roll_back(&bed);
    assert!(
        stderr.contains("removed pod vault-0 of new_vault"),
        "the node that joined is removed:\n{stderr}"
    );
    let servers = raft_servers(&bed, "vault.old.test").await;
    assert_eq!(servers.len(), 3, "the old cluster alone: {servers:?}");
    assert_rolled_back(&bed).await;
    std::fs::remove_dir_all(&bed.dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_live_plan_refuses_a_new_vault_that_cannot_join_before_any_change() {
    let _one = ONE_AT_A_TIME.lock().await;
    // vault-pair's NEW is initialised and its configuration has retry_join; and one new pod
    // no longer reaches the old cluster.
    let bed = bed("live-refused").await;
    bed.scenario
        .twin()
        .cluster("new")
        .cut_pod_from_other_clusters("vault", "vault-1");
    let files = bed.scenario.files();
    let params = bed.dir.join("live-params.yaml");
    let text = std::fs::read_to_string(files.params()).unwrap();
    let without_new_token: String = text
        .lines()
        .filter(|line| !line.starts_with("new_admin_token:"))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(&params, without_new_token).unwrap();
    let args = plan_args(&bed, "vault-transit-migration-live.yaml", &[params]);
    let outcome = apply_until_it_fails_at(&bed, &args, "new-can-join");
    assert!(outcome.contains("has `retry_join`"), "{outcome}");
    for pod in ["vault-0", "vault-1", "vault-2"] {
        assert!(
            outcome.contains(&format!("pod `{pod}` is initialised")),
            "{outcome}"
        );
    }
    // Six paths (API and cluster ports of three old peers) fail from vault-1, none from the
    // others.
    assert_eq!(
        outcome.matches("pod `vault-1` does not reach").count(),
        6,
        "{outcome}"
    );
    assert!(
        !outcome.contains("pod `vault-0` does not reach"),
        "{outcome}"
    );
    // Nothing changed: no proxy Service, the new Vault still sealed by its own key.
    let services = twin::catalog::find("", "v1", "services").unwrap();
    assert!(
        bed.scenario
            .twin()
            .cluster("old")
            .store()
            .get(services, "vault", "vault-migration-proxy")
            .is_err(),
        "the proxy Service was created"
    );
    let configmaps = twin::catalog::find("", "v1", "configmaps").unwrap();
    let config = bed
        .scenario
        .twin()
        .cluster("new")
        .store()
        .get(configmaps, "vault", "vault-config")
        .unwrap();
    assert!(
        config["data"]["extraconfig-from-values.hcl"]
            .as_str()
            .unwrap()
            .contains("new-unseal"),
        "{config}"
    );
    assert_no_write_lost(bed.take_probe(), &bed.scenario, "old").await;
    std::fs::remove_dir_all(&bed.dir).ok();
}

/// The live plan when the clusters lose each other in the middle of the join, as when the
/// peering between their networks goes: the Vault processes' own traffic between the clusters is
/// reset (planx, the gateways and clients still reach every pod). The join fails, and the
/// rollback, run while the cut lasts, removes the nodes that had joined: the old cluster is its
/// own three nodes again, serving every secret, with no acknowledged write lost.
#[tokio::test(flavor = "multi_thread")]
async fn a_live_run_whose_clusters_lose_each_other_mid_join_rolls_back_to_the_old_cluster_alone() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = bed_of("live-cut", ScenarioOptions::vault_pair_live()).await;
    let files = bed.scenario.files();
    let args = plan_args(&bed, "vault-transit-migration-live.yaml", &[files.params()]);
    let mut child = planx_command(&bed, &args.iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let output = tokio::task::spawn_blocking(move || std::io::read_to_string(stdout).unwrap());
    // Cut as planx joins the second pod: the first has joined and caught up.
    let twin = bed.scenario.twin();
    let cut = loop {
        let journal = std::fs::read_dir(bed.dir.join("runs"))
            .ok()
            .and_then(|mut runs| runs.next())
            .and_then(|run| std::fs::read_to_string(run.ok()?.path().join("journal.jsonl")).ok())
            .unwrap_or_default();
        if journal.contains("\"effect\":\"join pod vault-1 of new_vault") {
            break twin
                .cluster("new")
                .cut_network_to(twin.cluster("old"))
                .expect("the clusters' pods are cut off each other");
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "planx ended before it joined the second pod: {}",
            output.await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let status = child.wait().unwrap();
    let stdout = output.await.unwrap();
    assert_eq!(status.code(), Some(1), "{stdout}");
    let outcome = summary(&stdout)["outcome"].as_str().unwrap().to_string();
    assert!(
        outcome.starts_with("failed at `handover.join`"),
        "{outcome}"
    );
    let joined = raft_servers(&bed, "vault.old.test").await.len();
    assert!(joined >= 4, "the first new pod had joined: {joined} peers");
    let stderr = roll_back(&bed);
    assert!(
        stderr.contains("handover.join: undone"),
        "the joined nodes are removed:\n{stderr}"
    );
    assert_eq!(
        raft_servers(&bed, "vault.old.test").await.len(),
        3,
        "the old cluster is its own three nodes again"
    );
    drop(cut);
    assert_rolled_back(&bed).await;
    std::fs::remove_dir_all(&bed.dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_run_failing_after_the_join_rolls_back_to_the_old_cluster_alone() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = bed_of("live-rollback", ScenarioOptions::vault_pair_live()).await;
    bed.scenario.twin().cluster("new").inject(
        Fault::error(500, "InternalError")
            .on(Verb::Update)
            .path("/apis/networking.k8s.io/v1/namespaces/vault/ingresses"),
    );
    let files = bed.scenario.files();
    let args = plan_args(&bed, "vault-transit-migration-live.yaml", &[files.params()]);
    apply_until_it_fails_at(&bed, &args, "handover.new-ingress-to-every-pod");
    let peers = || async { raft_servers(&bed, "vault.old.test").await.len() };
    assert_eq!(peers().await, 6, "the new pods had joined the old cluster");
    let stderr = roll_back(&bed);
    assert!(
        stderr.contains("handover.join: undone"),
        "the joined nodes are removed:\n{stderr}"
    );
    assert_eq!(
        peers().await,
        3,
        "the old cluster is its own three nodes again"
    );
    assert_rolled_back(&bed).await;
    std::fs::remove_dir_all(&bed.dir).ok();
}

/// `planx resume RUN` (JSON output) must complete the run; `after` says what stopped it.
fn resume_to_completion(bed: &Bed, run: &Path, after: &str) {
    let run = run.to_str().unwrap();
    let out = planx_command(bed, &resume_args(run)).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "resume after {after}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(summary(&stdout)["outcome"], "completed");
}

/// `planx resume RUN` with every gate approved and JSON output.
fn resume_args(run: &str) -> [&str; 5] {
    ["resume", run, "--approve-all", "--output", "json"]
}

/// Start `apply`, SIGKILL it when the `nth` step whose key starts with `at` starts, then
/// `resume` until it completes.
async fn kill_at_and_resume(at: &str, nth: usize) {
    let bed = bed(&format!("crash-{}", at.replace(['[', ']', '.'], "-"))).await;
    kill_at(&bed, &apply_args(&bed), at, nth).await;
    let run = run_dir(&bed);
    resume_to_completion(&bed, &run, &format!("a kill at `{at}`"));
    assert_moved(&bed).await;
    std::fs::remove_dir_all(&bed.dir).ok();
}

/// Run planx with `args`, and SIGKILL it when the `nth` step whose key starts with `at` starts.
async fn kill_at(bed: &Bed, args: &[String], at: &str, nth: usize) {
    let target = at.to_string();
    let mut seen = 0;
    let reached = kill_when(bed, args, move |event| {
        if event["event"] == "started"
            && event["step"]
                .as_str()
                .is_some_and(|s| s.starts_with(target.as_str()))
        {
            seen += 1;
        }
        seen == nth
    })
    .await;
    assert!(reached, "the run never reached `{at}`");
}

/// Run planx and SIGKILL it at the first event of its JSON output for which `now` says so;
/// whether that event came.
async fn kill_when(
    bed: &Bed,
    args: &[String],
    mut now: impl FnMut(&Value) -> bool + Send + 'static,
) -> bool {
    let mut child = planx_command(bed, &args.iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let killed = tokio::task::spawn_blocking(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if now(&event) {
                return true;
            }
        }
        false
    });
    let reached = killed.await.unwrap();
    // SIGKILL: no chance to clean up.
    child.kill().unwrap();
    let _ = child.wait();
    reached
}

/// Write `values` kv-v2 secrets of 700,000 random base64 characters under `secret/bulk/` of the
/// old Vault: a snapshot big enough for a kill to land in the middle of its transfer.
async fn fill_with_bulk(bed: &Bed, values: usize) {
    use base64::Engine as _;
    let http = client(&bed.resolve);
    let token = bed.scenario.vault("old").root_token().unwrap().to_string();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for index in 0..values {
        let bytes: Vec<u8> = (0..525_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let value = base64::engine::general_purpose::STANDARD.encode(bytes);
        let status = http
            .put(format!(
                "http://vault.old.test/v1/secret/data/bulk/b{index:03}"
            ))
            .header("X-Vault-Token", &token)
            .json(&serde_json::json!({ "data": { "value": value } }))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "writing bulk value {index}: {status}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_in_the_middle_of_the_snapshot_transfer_resumes() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = bed("crash-mid-snapshot").await;
    let args = apply_args(&bed);
    kill_in_the_snapshot_and_resume(&bed, &args).await;
}

/// The online plan killed while the snapshot streams into the new Vault: the upload is cut
/// short, the new Vault keeps serving its own data, and the resumed run streams it again.
#[tokio::test(flavor = "multi_thread")]
async fn an_online_run_killed_in_the_middle_of_the_streamed_snapshot_resumes() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = bed("online-crash-mid-snapshot").await;
    let files = bed.scenario.files();
    let args = plan_args(
        &bed,
        "vault-transit-migration-online.yaml",
        &[files.params(), files.online_params()],
    );
    kill_in_the_snapshot_and_resume(&bed, &args).await;
}

/// Fill the old Vault with bulk data, run planx with `args`, SIGKILL it as soon as the first
/// snapshot bytes are reported, resume it to completion, and check the move.
async fn kill_in_the_snapshot_and_resume(bed: &Bed, args: &[String]) {
    fill_with_bulk(bed, 60).await;
    let mut child = planx_command(bed, &args.iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // The first bytes of the snapshot reported: SIGKILL at once.
    let received = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
        .find(|e| {
            e["event"] == "activity"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("snapshot from"))
        })
        .and_then(|e| e["done"].as_u64());
    child.kill().unwrap();
    let _ = child.wait();
    let reached = received.is_some();
    assert!(reached, "the run never started the snapshot transfer");
    let run = run_dir(bed);
    let snapshot_bytes = || -> u64 {
        std::fs::read_dir(run.join("snapshots"))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    };
    let on_disk = snapshot_bytes();
    resume_to_completion(bed, &run, "a kill in the snapshot transfer");
    let full = snapshot_bytes();
    let received = received.unwrap_or_default();
    println!(
        "killed after {received} of {full} snapshot bytes had arrived ({on_disk} written to disk)"
    );
    assert!(
        full > 30_000_000 && received > 0 && received < full && on_disk < full,
        "the kill landed in the middle of the transfer: {received} of {full} bytes"
    );
    assert_moved(bed).await;
    std::fs::remove_dir_all(&bed.dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_in_the_follower_loop_resumes() {
    let _one = ONE_AT_A_TIME.lock().await;
    // The second follower, whichever pods the election left as followers.
    kill_at_and_resume("seal-migration.migrate-followers[", 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_after_the_restore_resumes() {
    let _one = ONE_AT_A_TIME.lock().await;
    kill_at_and_resume("cutover.point-at-old-key", 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_after_writes_are_blocked_rolls_back_to_the_old_vault() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = bed("rollback").await;
    // The NEW cluster's API refuses ConfigMap updates: the seal cannot be pointed at the old key.
    bed.scenario.twin().cluster("new").inject(
        Fault::error(500, "InternalError")
            .on(Verb::Update)
            .path("/api/v1/namespaces/vault/configmaps"),
    );
    apply_until_it_fails_at(&bed, &apply_args(&bed), "cutover.point-at-old-key");
    // Writes are blocked: the old domain does not serve.
    let http = client(&bed.resolve);
    let blocked = http.get("http://vault.old.test/v1/sys/health").send().await;
    assert!(
        blocked.map(|r| r.status().as_u16() >= 400).unwrap_or(true),
        "the old domain still serves after the Ingress was deleted"
    );

    let stderr = roll_back(&bed);
    assert!(
        stderr.contains("cannot be undone"),
        "the restore into NEW is named as a point it cannot undo:\n{stderr}"
    );
    assert!(
        stderr.contains("old-token: revoked the token with accessor"),
        "the old Vault's migration token is revoked by its accessor:\n{stderr}"
    );
    assert!(
        stderr.contains("new-token: "),
        "the new Vault's migration token is accounted for:\n{stderr}"
    );
    assert_rolled_back(&bed).await;
    std::fs::remove_dir_all(&bed.dir).ok();
}

/// The online plan fails inside its window (the old cluster refuses to take the Services'
/// selectors off): the rollback brings the old Vault back with every secret, and keeps the new
/// Vault on the old key it adopted before the window (putting its first seal block back would
/// leave it unable to unseal at its next restart).
#[tokio::test(flavor = "multi_thread")]
async fn an_online_run_failing_in_its_window_rolls_back_and_leaves_the_new_vault_able_to_unseal() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = bed("online-rollback").await;
    bed.scenario.twin().cluster("old").inject(
        Fault::error(500, "InternalError")
            .on(Verb::Update)
            .path("/api/v1/namespaces/vault/services"),
    );
    let files = bed.scenario.files();
    let args = plan_args(
        &bed,
        "vault-transit-migration-online.yaml",
        &[files.params(), files.online_params()],
    );
    apply_until_it_fails_at(&bed, &args, "cutover.block-in-cluster-writes");
    let stderr = roll_back(&bed);
    assert!(
        stderr.contains(
            "adopt-old-key.remove-disabled: kept: `new_vault` passed the point of no return `adopt-old-key.migrate-followers`"
        ),
        "the new Vault's seal edits stay:\n{stderr}"
    );
    assert!(
        stderr.contains("cutover.block-writes: undone"),
        "the old Ingress is back:\n{stderr}"
    );
    assert_rolled_back(&bed).await;
    // Every NEW pod restarts and unseals: its configuration names the key its data is wrapped by.
    restart_pods_until_unsealed(&bed.scenario, "new", "after the rollback").await;
    std::fs::remove_dir_all(&bed.dir).ok();
}

/// After a rollback: the OLD Vault serves again through the old domain, with every secret.
async fn assert_rolled_back(bed: &Bed) {
    let http = client(&bed.resolve);
    let token = bed.scenario.vault("old").root_token().unwrap().to_string();
    common::eventually(
        "the old domain to serve after the rollback",
        Duration::from_secs(120),
        || async {
            let health = http.get("http://vault.old.test/v1/sys/health").send().await;
            health.is_ok_and(|r| r.status().as_u16() == 200)
        },
    )
    .await;
    assert_eq!(
        read_secrets(&bed.resolve, "vault.old.test", &token).await,
        bed.source
    );
    // Clients inside the old cluster are served again: the Services have their selectors back.
    let in_cluster = bed
        .scenario
        .twin()
        .cluster("old")
        .service_address("vault", "vault-active", 8200)
        .expect("vault-active keeps its ClusterIP");
    common::eventually(
        "vault-active to serve inside the old cluster after the rollback",
        Duration::from_secs(60),
        || async {
            let health = http
                .get(format!("http://{in_cluster}/v1/sys/health"))
                .send()
                .await;
            health.is_ok_and(|r| r.status().as_u16() == 200)
        },
    )
    .await;
    assert_no_write_lost(bed.take_probe(), &bed.scenario, "old").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_recovery_key_fails_before_any_restart() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = bed("wrong-key").await;
    let pods = vault_pods(&bed.scenario).await;
    assert_eq!(pods.len(), 6, "{pods:?}");
    // Three shares of the right length (33 bytes) that are not the old Vault's: enough for its
    // threshold of two.
    let wrong = bed.dir.join("wrong-recovery-keys");
    std::fs::write(
        &wrong,
        "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZn\nYWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXpBQkNERUZH\nMDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3\n",
    )
    .unwrap();
    let mut args = apply_args(&bed);
    args.push("--set".into());
    args.push(format!("old_recovery_keys=file:{}", wrong.display()));
    let outcome = apply_until_it_fails_at(&bed, &args, "old-recovery-keys");
    assert!(
        outcome.contains("the keys do not open this Vault"),
        "{outcome}"
    );
    for share in ["QUJDREVG", "YWJjZGVm", "MDEyMzQ1"] {
        assert!(!outcome.contains(share), "a key is never echoed: {outcome}");
    }
    assert_eq!(
        vault_pods(&bed.scenario).await,
        pods,
        "no pod was restarted"
    );
    let token = bed.scenario.vault("old").root_token().unwrap().to_string();
    assert_eq!(
        read_secrets(&bed.resolve, "vault.old.test", &token).await,
        bed.source,
        "the old Vault still serves everything"
    );
    assert_no_write_lost(bed.take_probe(), &bed.scenario, "old").await;
    std::fs::remove_dir_all(&bed.dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_after_each_step_in_turn_completes() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = bed("each-step").await;
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
        args = resume_args(run.to_str().unwrap())
            .map(String::from)
            .to_vec();
    };
    assert_eq!(summary["outcome"], "completed", "{output}");
    println!(
        "killed after {} steps in turn: {}",
        killed_after.len(),
        killed_after.join(", ")
    );
    // Every step of the plan (each follower too) was a kill point, save those that finished
    // beside a killed one before the kill landed.
    let plan_steps = planx::run::compile(&planc::CompileRequest {
        plan: root().join("plans/vault-transit-migration.yaml"),
        params_files: vec![bed.scenario.files().params()],
        set: Vec::new(),
    })
    .unwrap()
    .plan
    .steps
    .len();
    assert!(
        killed_after.len() + 3 >= plan_steps,
        "{} kill points for {plan_steps} steps: {killed_after:?}",
        killed_after.len()
    );
    assert_no_secret_written(&bed, &output, "");
    assert_moved(&bed).await;
    std::fs::remove_dir_all(&bed.dir).ok();
}

/// The cutover as it was before `vault.block-services`: only the Ingress is deleted before the
/// snapshot (L102 allowed on the snapshot step). A client inside the old cluster keeps writing
/// to the old Vault through `vault-active` until its pods restart: what it got acknowledged
/// after the snapshot is not in the new Vault. This is the loss the Services step prevents, and
/// the proof that the probe sees it. To make the gap certain rather than a race, the run is
/// killed as the step after the snapshot starts, the client writes for a second, and the run is
/// resumed.
#[tokio::test(flavor = "multi_thread")]
async fn without_blocking_in_cluster_clients_an_acknowledged_write_is_lost() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = bed("unblocked").await;
    let plans = bed.dir.join("unblocked");
    std::fs::create_dir_all(plans.join("modules")).unwrap();
    for entry in std::fs::read_dir(root().join("plans/modules")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, plans.join("modules").join(path.file_name().unwrap())).unwrap();
    }
    let cutover = std::fs::read_to_string(plans.join("modules/cutover.yaml")).unwrap();
    let block_step = "  - id: block-in-cluster-writes\n    uses: vault.block-services\n    on: old_vault\n    needs: [block-writes]\n\n";
    assert!(
        cutover.contains(block_step),
        "the cutover blocks in-cluster clients"
    );
    let unblocked = cutover.replace(block_step, "").replace(
        "    needs: [block-writes, block-in-cluster-writes]\n",
        "    needs: [block-writes]\n    allow: [L102]\n",
    );
    std::fs::write(plans.join("modules/cutover.yaml"), unblocked).unwrap();
    let plan = plans.join("vault-transit-migration.yaml");
    std::fs::copy(root().join("plans/vault-transit-migration.yaml"), &plan).unwrap();
    let mut args = apply_args(&bed);
    args[1] = plan.display().to_string();
    kill_at(&bed, &args, "cutover.disable-old", 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    resume_to_completion(&bed, &run_dir(&bed), "a kill after the snapshot");

    let probe = bed.probe.lock().unwrap().take().unwrap();
    let logs = probe.stop().await;
    let token = bed.scenario.vault("old").root_token().unwrap().to_string();
    let new = bed.scenario.vault("new").ingress_endpoint("http").unwrap();
    let reports = twin::probe::check(&logs, &new, &token).await;
    for report in &reports {
        println!("probe {report}");
    }
    let domain = reports.iter().find(|r| r.name == "old-domain").unwrap();
    let in_cluster = reports
        .iter()
        .find(|r| r.name == "old-vault-active")
        .unwrap();
    assert!(
        domain.lost.is_empty(),
        "the Ingress was blocked in time: {domain}"
    );
    assert!(
        !in_cluster.lost.is_empty(),
        "an in-cluster client writing after the snapshot loses its writes: {in_cluster}"
    );
    std::fs::remove_dir_all(&bed.dir).ok();
}

/// The transit plan with its targets named like real clusters (`aks-old`, `aks-old-vault`:
/// ids with dashes), and its modules, copied into `dir`; the plan's path.
fn dashed_plan(dir: &Path) -> PathBuf {
    let modules = dir.join("modules");
    std::fs::create_dir_all(&modules).unwrap();
    for entry in std::fs::read_dir(root().join("plans/modules")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, modules.join(path.file_name().unwrap())).unwrap();
    }
    let mut plan =
        std::fs::read_to_string(root().join("plans/vault-transit-migration.yaml")).unwrap();
    for (old, new) in [
        ("old", "aks-old"),
        ("new", "aks-new"),
        ("old_vault", "aks-old-vault"),
        ("new_vault", "aks-new-vault"),
    ] {
        let renamed: Vec<String> = plan
            .lines()
            .map(|line| {
                let key = line.trim_start().split(':').next().unwrap_or_default();
                let value = line.split_once(": ").map(|(_, v)| v);
                if line == format!("  {old}:") {
                    format!("  {new}:")
                } else if value == Some(old)
                    && [
                        "on",
                        "cluster",
                        "old_cluster",
                        "vault",
                        "old_vault",
                        "new_vault",
                    ]
                    .contains(&key)
                {
                    line.replacen(&format!(": {old}"), &format!(": {new}"), 1)
                } else {
                    line.to_string()
                }
            })
            .collect();
        plan = renamed.join("\n") + "\n";
    }
    assert!(plan.contains("  aks-old-vault:\n") && plan.contains("on: aks-new-vault\n"));
    let path = dir.join("dashed.yaml");
    std::fs::write(&path, plan).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_killed_after_each_undo_step_completes_from_another_folder() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = bed("rollback-kills").await;
    let plan_dir = bed.dir.join("checkout");
    let plan = dashed_plan(&plan_dir);
    bed.scenario.twin().cluster("new").inject(
        Fault::error(500, "InternalError")
            .on(Verb::Update)
            .path("/api/v1/namespaces/vault/configmaps"),
    );
    let mut args = apply_args(&bed);
    args[1] = plan.display().to_string();
    apply_until_it_fails_at(&bed, &args, "cutover.point-at-old-key");
    bed.scenario.twin().cluster("new").faults().clear();
    let run = run_dir(&bed);

    // The checkout is gone (another laptop during the incident); planx runs from elsewhere,
    // without KUBECONFIG: the run directory holds what it needs.
    std::fs::remove_dir_all(&plan_dir).unwrap();
    let elsewhere = bed.dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let mut killed_after: Vec<String> = Vec::new();
    let mut transcript = String::new();
    let finished = loop {
        assert!(killed_after.len() < 30, "no end in sight: {killed_after:?}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_planx"))
            .args(["rollback", run.to_str().unwrap(), "--yes"])
            .current_dir(&elsewhere)
            .env_remove("KUBECONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut killed = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            transcript.push_str(&line);
            transcript.push('\n');
            if let Some(step) = line.strip_suffix(": undone")
                && !killed_after.iter().any(|s| s == step)
            {
                child.kill().unwrap();
                killed_after.push(step.to_string());
                killed = true;
                break;
            }
        }
        let status = child.wait().unwrap();
        if !killed {
            break status;
        }
    };
    assert_eq!(finished.code(), Some(0), "{transcript}");
    println!(
        "rollback killed after {} undo steps in turn: {}",
        killed_after.len(),
        killed_after.join(", ")
    );
    assert!(
        killed_after.len() >= 4,
        "the rollback undoes the proxy-free cutover in several steps: {killed_after:?}\n{transcript}"
    );
    assert!(
        transcript.contains("old-token: revoked the token with accessor"),
        "the old migration token is revoked by its journaled accessor, even after kills:\n{transcript}"
    );
    assert!(
        !transcript.contains("unknown target"),
        "dashed target ids are read from the records:\n{transcript}"
    );
    let status = Command::new(env!("CARGO_BIN_EXE_planx"))
        .args(["status", run.to_str().unwrap()])
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout).to_string();
    for step in &killed_after {
        assert!(
            status
                .lines()
                .any(|l| l.contains(step.as_str()) && l.ends_with("undone")),
            "{step} is undone:\n{status}"
        );
    }

    assert_rolled_back(&bed).await;
    std::fs::remove_dir_all(&bed.dir).ok();
}
