//! `planx` as a person runs it, against the twin's API server: apply a plan that blocks an
//! Ingress, patches a StatefulSet and reroutes the Ingress through a proxy; read its status;
//! roll it back and find the objects as they were; and a second run refused by the Lease.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use planx::adapters::cluster::Cluster;
use serde_json::Value;

const PLAN: &str = r#"
version: 1
name: reroute
targets:
  old:
    kind: kubernetes
    context: old
    namespace: vault
  old_vault:
    kind: vault
    cluster: old
    url: http://vault.old.test
steps:
  - id: backup-ingress
    uses: k8s.backup
    on: old
    with: {kind: Ingress, name: vault}
  - id: block-writes
    uses: k8s.delete
    on: old
    with: {kind: Ingress, name: vault}
    needs: [backup-ingress]
    gate: announce the maintenance window
  - id: backup-statefulset
    uses: k8s.backup
    on: old
    with: {kind: StatefulSet, name: vault}
  - id: disable-old
    uses: k8s.patch-args
    on: old
    with: {statefulset: vault, args: [sleep infinity]}
    needs: [backup-statefulset, block-writes]
  - id: proxy
    uses: k8s.proxy-service
    on: old
    with: {target_host: vault.new.test, port: 443}
    needs: [disable-old]
  - id: reroute-ingress
    uses: k8s.ingress-rewrite
    on: old
    with:
      ingress: vault
      from_backup: "{{ steps.backup-ingress.outputs.backup }}"
      from_service: vault-active
      service: vault-migration-proxy
      port: 443
    needs: [proxy]
"#;

struct Bed {
    twin: twin::Twin,
    dir: PathBuf,
    plan: PathBuf,
}

async fn bed(name: &str) -> (Bed, Cluster) {
    let (twin, cluster) = common::seeded_old_cluster().await;
    let dir = std::env::temp_dir().join(format!("planx-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let plan = dir.join("reroute.yaml");
    std::fs::write(&plan, PLAN).unwrap();
    (Bed { twin, dir, plan }, cluster)
}

fn planx(bed: &Bed, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_planx"))
        .args(args)
        .current_dir(&bed.dir)
        .env("KUBECONFIG", bed.twin.kubeconfig_path())
        .output()
        .expect("planx runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

fn only_run(dir: &Path) -> PathBuf {
    let runs: Vec<PathBuf> = std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

#[tokio::test]
async fn apply_status_and_rollback() {
    let (bed, cluster) = bed("apply").await;
    let original_ingress = cluster.get("Ingress", "vault").await.unwrap().unwrap();
    let original_statefulset = cluster.get("StatefulSet", "vault").await.unwrap().unwrap();
    let plan = bed.plan.to_str().unwrap().to_string();

    // Without --yes and without a terminal, planx refuses to start.
    let out = planx(
        &bed,
        &["apply", &plan, "--resolve", "vault.new.test=127.0.77.1:443"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("pass --yes"));

    // A gate not approved stops the run before the step.
    let out = planx(
        &bed,
        &[
            "apply",
            &plan,
            "--yes",
            "--resolve",
            "vault.new.test=127.0.77.1:443",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("stopped at gate `block-writes`, not approved"));
    assert!(
        cluster.get("Ingress", "vault").await.unwrap().is_some(),
        "nothing past the gate ran"
    );
    // The stopped run keeps the cluster for its resume: another run is refused and told that
    // nobody is running it; `planx unlock` gives the cluster up.
    let stopped = only_run(&bed.dir);
    let out = planx(
        &bed,
        &[
            "apply",
            &plan,
            "--yes",
            "--resolve",
            "vault.new.test=127.0.77.1:443",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("it is not running: resume it, roll it back, or release it"),
        "{}",
        text(&out.stderr)
    );
    let out = planx(&bed, &["unlock", stopped.to_str().unwrap(), "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    std::fs::remove_dir_all(bed.dir.join("runs")).unwrap();

    let out = planx(
        &bed,
        &[
            "apply",
            &plan,
            "--yes",
            "--approve",
            "block-writes",
            "--resolve",
            "vault.new.test=127.0.77.1:443",
            "--output",
            "json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let events: Vec<Value> = text(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "ok" && e["step"] == "reroute-ingress")
    );
    assert_eq!(events.last().unwrap()["event"], "summary");
    assert_eq!(events.last().unwrap()["outcome"], "completed");
    let ingress = cluster.get("Ingress", "vault").await.unwrap().unwrap();
    assert_eq!(
        ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
        "vault-migration-proxy"
    );

    let run = only_run(&bed.dir);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&run).unwrap().permissions().mode() & 0o777,
            0o700
        );
        for file in ["journal.jsonl", "run.json"] {
            assert_eq!(
                std::fs::metadata(run.join(file))
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777,
                0o600,
                "{file}"
            );
        }
    }
    let out = planx(&bed, &["status", run.to_str().unwrap()]);
    let status = text(&out.stdout);
    assert!(
        status.contains("reroute-ingress") && status.matches("succeeded").count() == 6,
        "{status}"
    );

    // Roll back: the Ingress and the StatefulSet as they were, the proxy gone.
    let out = planx(&bed, &["rollback", run.to_str().unwrap(), "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let restored = cluster.get("Ingress", "vault").await.unwrap().unwrap();
    assert_eq!(restored["spec"], original_ingress["spec"]);
    let statefulset = cluster.get("StatefulSet", "vault").await.unwrap().unwrap();
    assert_eq!(
        statefulset["spec"]["template"],
        original_statefulset["spec"]["template"]
    );
    assert!(
        cluster
            .get("Service", "vault-migration-proxy")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        cluster
            .get("EndpointSlice", "vault-migration-proxy")
            .await
            .unwrap()
            .is_none()
    );
    let out = planx(&bed, &["status", run.to_str().unwrap()]);
    assert!(
        text(&out.stdout).contains("undone"),
        "{}",
        text(&out.stdout)
    );
    let out = planx(&bed, &["resume", run.to_str().unwrap(), "--approve-all"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the run was rolled back"),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_dir_all(&bed.dir).ok();
}

#[tokio::test]
async fn a_second_run_is_refused_by_the_lease() {
    let (bed, cluster) = bed("lease").await;
    cluster
        .acquire_lease("someone-else", std::time::Duration::from_secs(600))
        .await
        .unwrap();
    let plan = bed.plan.to_str().unwrap().to_string();
    let out = planx(
        &bed,
        &[
            "apply",
            &plan,
            "--yes",
            "--approve-all",
            "--resolve",
            "vault.new.test=127.0.77.1:443",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("another planx run (someone-else, since "),
        "{}",
        text(&out.stderr)
    );
    assert!(
        cluster.get("Ingress", "vault").await.unwrap().is_some(),
        "nothing ran"
    );
    assert!(
        !bed.dir.join("runs").exists(),
        "a refused start leaves no run directory"
    );
    std::fs::remove_dir_all(&bed.dir).ok();
}

/// Add an annotation to an object, as a person with kubectl would.
async fn annotate(cluster: &Cluster, kind: &str, name: &str) {
    let mut object = cluster.get(kind, name).await.unwrap().unwrap();
    object["metadata"]["annotations"]["changed-by"] = Value::from("someone-else");
    cluster.replace(&object).await.unwrap();
}

#[tokio::test]
async fn a_saved_plan_is_refused_when_its_plan_or_the_objects_changed() {
    let (bed, cluster) = bed("saved").await;
    let plan = bed.plan.to_str().unwrap().to_string();
    let resolve = "vault.new.test=127.0.77.1:443";

    // `planx plan` reads the cluster and writes what every step will change.
    let out = planx(&bed, &["plan", &plan, "-o", "saved.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let previews = text(&out.stdout);
    assert!(
        previews.contains("step disable-old: k8s.patch-args on old"),
        "{previews}"
    );
    assert!(previews.contains("+        - sleep infinity"), "{previews}");
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(bed.dir.join("saved.json")).unwrap())
            .unwrap();
    assert_eq!(saved["format"], "planc.saved-plan/v1");
    let observed: Vec<&str> = saved["observed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["object"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(observed, vec!["Ingress", "StatefulSet"], "{saved}");
    let ingress_before = cluster.get("Ingress", "vault").await.unwrap().unwrap();

    // Someone edits the Ingress: the saved plan is refused before anything runs.
    annotate(&cluster, "Ingress", "vault").await;
    let out = planx(
        &bed,
        &[
            "apply",
            "saved.json",
            "--yes",
            "--approve-all",
            "--resolve",
            resolve,
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "refused to start: {stderr}");
    assert!(
        stderr.contains("Ingress `vault/vault` of `old` changed since the plan was saved"),
        "{stderr}"
    );
    assert!(stderr.contains("+    changed-by: someone-else"), "{stderr}");
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    assert!(!bed.dir.join("runs").exists(), "no run was started");
    let ingress = cluster.get("Ingress", "vault").await.unwrap().unwrap();
    assert_eq!(
        ingress["spec"], ingress_before["spec"],
        "the Ingress was not touched"
    );

    // A plan file that compiles to something else makes the saved plan stale.
    let out = planx(&bed, &["plan", &plan, "-o", "saved.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    std::fs::write(&bed.plan, PLAN.replace("sleep infinity", "sleep 3600")).unwrap();
    let out = planx(
        &bed,
        &["apply", "saved.json", "--yes", "--resolve", resolve],
    );
    assert_eq!(out.status.code(), Some(3), "refused to start");
    assert!(
        text(&out.stderr).contains("is stale"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(&bed.plan, PLAN).unwrap();

    // Drift after the run started: the gate stops the run, the StatefulSet is edited while it
    // waits, and the resumed run refuses to patch it.
    let out = planx(
        &bed,
        &["apply", "saved.json", "--yes", "--resolve", resolve],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("stopped at gate `block-writes`"));
    let run = only_run(&bed.dir);
    annotate(&cluster, "StatefulSet", "vault").await;
    let out = planx(&bed, &["resume", run.to_str().unwrap(), "--approve-all"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("failed at `disable-old`"), "{stderr}");
    assert!(
        stderr.contains("StatefulSet `vault/vault` of `old` changed since the plan was saved"),
        "{stderr}"
    );
    assert!(
        cluster.get("Ingress", "vault").await.unwrap().is_none(),
        "the Ingress, as observed, was deleted by the gated step"
    );
    let statefulset = cluster.get("StatefulSet", "vault").await.unwrap().unwrap();
    assert!(
        !statefulset.to_string().contains("sleep infinity"),
        "the drifted StatefulSet was not patched"
    );
    std::fs::remove_dir_all(&bed.dir).ok();
}

#[tokio::test]
async fn a_prompted_secret_without_a_terminal_is_refused_before_anything_runs() {
    let (bed, cluster) = bed("prompt").await;
    let plan = bed.dir.join("prompt.yaml");
    std::fs::write(
        &plan,
        r#"
version: 1
name: prompted
params:
  token: {type: secret, default: prompt}
targets:
  old: {kind: kubernetes, context: old, namespace: vault}
  old_vault: {kind: vault, cluster: old, url: http://vault.old.test}
steps:
  - id: backup-ingress
    uses: k8s.backup
    on: old
    with: {kind: Ingress, name: vault}
  - id: block-writes
    uses: k8s.delete
    on: old
    with: {kind: Ingress, name: vault}
    needs: [backup-ingress]
  - id: verify
    uses: vault.verify
    on: old_vault
    with: {urls: ["http://vault.old.test"], token: "{{ params.token }}"}
    needs: [block-writes]
"#,
    )
    .unwrap();
    let out = planx(&bed, &["apply", plan.to_str().unwrap(), "--yes"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "unreadable input: {stderr}");
    assert!(
        stderr.contains("secret `token` is set to `prompt` and there is no terminal to ask on"),
        "{stderr}"
    );
    assert!(
        cluster.get("Ingress", "vault").await.unwrap().is_some(),
        "nothing ran"
    );
    assert!(
        !bed.dir.join("runs").exists(),
        "a start that fails leaves no run directory"
    );
    assert!(
        cluster
            .get("Lease", planx::adapters::cluster::LEASE_NAME)
            .await
            .unwrap()
            .is_none(),
        "nor a Lease"
    );
    std::fs::remove_dir_all(&bed.dir).ok();
}

#[tokio::test]
async fn a_run_continues_from_another_folder_without_its_plan_files() {
    let (bed, cluster) = bed("elsewhere").await;
    let original_ingress = cluster.get("Ingress", "vault").await.unwrap().unwrap();
    let original_statefulset = cluster.get("StatefulSet", "vault").await.unwrap().unwrap();
    // Targets named like real clusters: ids with dashes.
    let dashed = PLAN
        .replace("  old:\n", "  aks-old:\n")
        .replace("  old_vault:\n", "  aks-old-vault:\n")
        .replace("cluster: old\n", "cluster: aks-old\n")
        .replace("on: old\n", "on: aks-old\n")
        .replace(
            "    needs: [proxy]\n",
            "    needs: [proxy]\n    gate: reroute the old domain\n",
        );
    std::fs::write(&bed.plan, &dashed).unwrap();
    let out = planx(
        &bed,
        &[
            "apply",
            "reroute.yaml",
            "--yes",
            "--approve",
            "block-writes",
            "--resolve",
            "vault.new.test=127.0.77.1:443",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("stopped at gate `reroute-ingress`"),
        "{}",
        text(&out.stderr)
    );
    let run = only_run(&bed.dir);
    let records: Vec<Value> = walk(&run.join("before"))
        .iter()
        .filter(|path| planx::rundir::is_record(path))
        .map(|path| serde_json::from_str(&planx::rundir::read_checked(path).unwrap()).unwrap())
        .collect();
    assert!(
        records.iter().any(|r| r["target"] == "aks-old"
            && r["kind"] == "StatefulSet"
            && r["name"] == "vault"
            && r["namespace"] == "vault"),
        "each record carries its identity: {records:?}"
    );

    // The plan is gone; planx runs from another folder.
    std::fs::remove_file(&bed.plan).unwrap();
    let elsewhere = bed.dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let in_elsewhere = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_planx"))
            .args(args)
            .current_dir(&elsewhere)
            .env("KUBECONFIG", "/nonexistent/the-run-keeps-its-own")
            .output()
            .expect("planx runs")
    };
    let run_arg = run.to_str().unwrap();
    let out = in_elsewhere(&["status", run_arg]);
    let status = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        status.contains("disable-old") && status.matches("succeeded").count() == 5,
        "{status}"
    );
    assert!(
        status.contains("reroute-ingress") && status.contains("not started"),
        "{status}"
    );
    let out = in_elsewhere(&["status", run_arg, "--output", "json"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["steps"][0]["state"], "succeeded", "{json}");

    // Plan files that compile to something else: said, and the stored plan goes on.
    let changed = elsewhere.join("changed.yaml");
    std::fs::write(&changed, dashed.replace("sleep infinity", "sleep 7200")).unwrap();
    let out = in_elsewhere(&["resume", run_arg, "--plan", "changed.yaml"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("compiles to another plan")
            && stderr.contains("continuing with the plan stored in the run"),
        "{stderr}"
    );
    assert!(
        stderr.contains("stopped at gate `reroute-ingress`"),
        "{stderr}"
    );

    // Roll back from there: every object as it was, the proxy gone.
    let out = in_elsewhere(&["rollback", run_arg, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let ingress = cluster.get("Ingress", "vault").await.unwrap().unwrap();
    assert_eq!(ingress["spec"], original_ingress["spec"]);
    let statefulset = cluster.get("StatefulSet", "vault").await.unwrap().unwrap();
    assert_eq!(
        statefulset["spec"]["template"],
        original_statefulset["spec"]["template"]
    );
    assert!(
        cluster
            .get("Service", "vault-migration-proxy")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        cluster
            .get("Lease", planx::adapters::cluster::LEASE_NAME)
            .await
            .unwrap()
            .is_none(),
        "the rollback gave the Lease back"
    );
    std::fs::remove_dir_all(&bed.dir).ok();
}

#[tokio::test]
async fn a_stopped_run_keeps_its_lease_until_unlocked() {
    let (bed, cluster) = bed("unlock").await;
    let plan = bed.plan.to_str().unwrap().to_string();
    let out = planx(
        &bed,
        &[
            "apply",
            &plan,
            "--yes",
            "--resolve",
            "vault.new.test=127.0.77.1:443",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "stopped at the gate: {}",
        text(&out.stderr)
    );
    let run = only_run(&bed.dir);
    let holder = cluster.lease_holder().await.unwrap().expect("kept");
    assert_eq!(run.file_name().unwrap().to_str().unwrap(), holder.holder);

    // Another run is refused.
    let other = bed.dir.join("other.yaml");
    std::fs::write(&other, PLAN.replace("name: reroute", "name: another")).unwrap();
    let out = planx(
        &bed,
        &[
            "apply",
            "other.yaml",
            "--yes",
            "--resolve",
            "vault.new.test=127.0.77.1:443",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&holder.holder),
        "{}",
        text(&out.stderr)
    );

    let out = planx(&bed, &["unlock", run.to_str().unwrap(), "--yes"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("lets another run start while this one's changes stay as they are"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("old: released the lease of {}", holder.holder)),
        "{stderr}"
    );
    assert!(cluster.lease_holder().await.unwrap().is_none());
    std::fs::remove_dir_all(&bed.dir).ok();
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Holds a gate for `hold`, then reads the Lease and tries to take it for another run.
struct SlowApprover {
    cluster: Cluster,
    hold: std::time::Duration,
    seen: std::sync::Mutex<Option<(planx::adapters::cluster::LeaseHolder, String)>>,
}

impl planx::engine::Approver for SlowApprover {
    fn approve<'a>(&'a self, _: &'a str, _: &'a str) -> planx::engine::BoxFuture<'a, bool> {
        Box::pin(async move {
            tokio::time::sleep(self.hold).await;
            let holder = self.cluster.lease_holder().await.unwrap().expect("held");
            let refusal = self
                .cluster
                .acquire_lease("intruder", std::time::Duration::from_secs(60))
                .await
                .unwrap_err()
                .to_string();
            *self.seen.lock().unwrap() = Some((holder, refusal));
            false
        })
    }
}

#[tokio::test]
async fn the_lease_is_renewed_while_a_gate_waits_past_its_duration() {
    let (bed, cluster) = bed("renew").await;
    let compiled = planx::run::compile(&planc::CompileRequest {
        plan: bed.plan.clone(),
        ..Default::default()
    })
    .unwrap();
    let record = planx::run::RunRecord::new(
        "renewed-run".into(),
        &compiled.request,
        compiled.plan,
        &compiled.sources,
        bed.twin.kubeconfig_path(),
        vec!["vault.new.test=127.0.77.1:443".into()],
        None,
    )
    .unwrap();
    let lease = std::time::Duration::from_secs(2);
    let session = planx::run::Session::open(record)
        .await
        .unwrap()
        .with_lease_duration(lease);
    let run_dir = planx::run::start(&session, &bed.dir.join("runs"), None)
        .await
        .unwrap();
    let approver = std::sync::Arc::new(SlowApprover {
        cluster: cluster.clone(),
        hold: lease * 3,
        seen: std::sync::Mutex::new(None),
    });
    let (_stop_sender, stop) = tokio::sync::watch::channel(false);
    let summary = planx::run::execute(session, &run_dir, false, approver.clone(), |_| {}, stop)
        .await
        .unwrap();
    assert_eq!(
        summary.outcome,
        planx::engine::Outcome::NotApproved {
            step: "block-writes".into()
        }
    );
    let (holder, refusal) = approver.seen.lock().unwrap().clone().expect("the gate ran");
    assert_eq!(holder.holder, "renewed-run");
    assert!(
        holder.live,
        "renewed within its {lease:?}, three times that after it was taken: {holder:?}"
    );
    assert!(
        refusal.contains("renewed moments ago: it is running"),
        "{refusal}"
    );
    std::fs::remove_dir_all(&bed.dir).ok();
}

/// `preflight.cluster` asks the cluster (SelfSubjectAccessReview) for everything the plan and
/// its rollback will do there, and refuses before any change, naming each access the
/// credentials lack.
#[tokio::test]
async fn the_permissions_preflight_names_what_the_credentials_may_not_do() {
    let (bed, cluster) = bed("permissions").await;
    let plan = bed.dir.join("permissions.yaml");
    let with_preflight = PLAN.replace(
        "steps:\n",
        "steps:\n  - id: old-cluster\n    uses: preflight.cluster\n    on: old\n",
    );
    let with_preflight = with_preflight.replace(
        "  - id: backup-ingress\n    uses: k8s.backup\n    on: old\n    with: {kind: Ingress, name: vault}\n",
        "  - id: backup-ingress\n    uses: k8s.backup\n    on: old\n    with: {kind: Ingress, name: vault}\n    needs: [old-cluster]\n",
    );
    std::fs::write(&plan, with_preflight).unwrap();
    bed.twin
        .cluster("old")
        .deny("delete", "networking.k8s.io/ingresses");
    bed.twin
        .cluster("old")
        .deny("create", "discovery.k8s.io/endpointslices");
    bed.twin.cluster("old").deny("delete", "pods");
    let out = planx(
        &bed,
        &["apply", plan.to_str().unwrap(), "--yes", "--approve-all"],
    );
    let stdout = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for denied in [
        "delete ingresses.networking.k8s.io",
        "create endpointslices.discovery.k8s.io",
        // The way back of `k8s.patch-args` restarts the pods the StatefulSet runs.
        "delete pods",
    ] {
        assert!(stdout.contains(denied), "{denied} is named:\n{stdout}");
    }
    assert!(
        stdout.contains("failed at `old-cluster`"),
        "the first step refuses:\n{stdout}"
    );
    assert!(
        cluster.get("Ingress", "vault").await.unwrap().is_some(),
        "nothing changed"
    );
    std::fs::remove_dir_all(&bed.dir).ok();
}
