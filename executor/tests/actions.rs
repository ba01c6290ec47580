//! The Kubernetes actions on the twin's API server through the engine: backups, the Ingress
//! deleted and rewritten from its backup, the StatefulSet patched to `sleep infinity` and
//! restored, the proxy Service and EndpointSlice. What they leave in the cluster is what
//! `planc diff` previewed, object for object: one code path.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use planc::edit::k8s::clean_for_backup;
use planc::state::{State, StateFile};
use planc::{CompileRequest, CompiledPlan, Loader};
use planx::actions::Live;
use planx::engine::Outcome;
use planx::journal::Journal;
use serde_json::Value;

const PLAN: &str = r#"
version: 1
name: k8s-actions
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
      upstream_vhost: vault.new.test
      annotations: {nginx.ingress.kubernetes.io/ssl-redirect: "true"}
    needs: [proxy]
  - id: restore-statefulset
    uses: k8s.restore
    on: old
    with: {backup: "{{ steps.backup-statefulset.outputs.backup }}"}
    needs: [reroute-ingress]
"#;

struct Memory;

impl Loader for Memory {
    fn load(&self, _: &Path) -> std::io::Result<String> {
        Ok(PLAN.to_string())
    }
}

fn plan() -> CompiledPlan {
    let compilation = planc::compile(
        &CompileRequest {
            plan: "k8s-actions.yaml".into(),
            ..Default::default()
        },
        &Memory,
    )
    .unwrap();
    compilation
        .plan
        .unwrap_or_else(|| panic!("{:?}", compilation.diagnostics))
}

/// What matters of an object, server fields and metadata noise aside.
fn essence(object: &Value) -> Value {
    let mut cleaned = clean_for_backup(object);
    if let Some(metadata) = cleaned["metadata"].as_object_mut() {
        metadata
            .retain(|k, _| matches!(k.as_str(), "name" | "namespace" | "labels" | "annotations"));
        if metadata
            .get("annotations")
            .is_some_and(|a| a.is_null() || a.as_object().is_some_and(|m| m.is_empty()))
        {
            metadata.remove("annotations");
        }
    }
    cleaned
}

#[tokio::test]
async fn the_kubernetes_actions_do_what_the_preview_showed() {
    // The old cluster of the seed document, as captured.
    let (_twin, cluster) = common::seeded_old_cluster().await;

    // The preview, from the objects as the cluster holds them now.
    let compiled = plan();
    let mut live_before = String::new();
    for kind in ["ConfigMap", "StatefulSet", "Ingress", "Service"] {
        for name in ["vault-config", "vault", "vault-active"] {
            if let Some(object) = cluster.get(kind, name).await.unwrap() {
                live_before.push_str("---\n");
                live_before.push_str(&serde_json::to_string(&object).unwrap());
                live_before.push('\n');
            }
        }
    }
    let mut sources = planc::SourceMap::default();
    let mut diagnostics = planc::Diagnostics::default();
    let state: State = planc::state::read_state(
        vec![StateFile {
            target: "old".into(),
            path: "live.yaml".into(),
            text: live_before,
        }],
        &compiled,
        &mut sources,
        &mut diagnostics,
    );
    let (effects, _) = planc::preview::apply_edits(&compiled, &state, &mut diagnostics);
    assert!(
        diagnostics.is_empty(),
        "{:?}",
        diagnostics.iter().collect::<Vec<_>>()
    );

    // The run.
    let dir = std::env::temp_dir().join(format!("planx-actions-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let live = Live::new(
        compiled.clone(),
        HashMap::from([("old".to_string(), cluster.clone())]),
        HashMap::new(),
        planx::rundir::RunDir::at(&dir),
        vec![(
            "vault.new.test".to_string(),
            "127.0.77.1:443".parse().unwrap(),
        )],
    );
    let journal = Journal::create(&dir.join("journal.jsonl")).unwrap();
    let outcome = common::run_approved(live, &compiled, journal, BTreeMap::new()).await;
    assert_eq!(outcome, Outcome::Completed);

    // Each object ends as the preview's last step left it.
    let mut expected: BTreeMap<(String, String), Option<Value>> = BTreeMap::new();
    for effect in &effects {
        for (key, _, after) in &effect.changes {
            expected.insert((key.kind.clone(), key.name.clone()), after.clone());
        }
    }
    assert!(
        expected.len() >= 4,
        "the preview changes the Ingress, StatefulSet, Service and EndpointSlice"
    );
    for ((kind, name), after) in &expected {
        let live = cluster.get(kind, name).await.unwrap();
        match (after, live) {
            (Some(after), Some(live)) => {
                let mut live = essence(&live);
                let mut after = essence(after);
                // The proxy's address is resolved at apply time; the preview shows a placeholder.
                if kind == "EndpointSlice" {
                    assert_eq!(live["endpoints"][0]["addresses"][0], "127.0.77.1");
                    live["endpoints"] = Value::Null;
                    after["endpoints"] = Value::Null;
                }
                if kind == "Service" {
                    for spec in [&mut live["spec"], &mut after["spec"]] {
                        if let Some(spec) = spec.as_object_mut() {
                            spec.retain(|k, _| k == "ports");
                        }
                    }
                }
                assert_eq!(live, after, "{kind} {name} differs from the preview");
            }
            (None, None) => {}
            (after, live) => panic!("{kind} {name}: preview {after:?}, cluster {live:?}"),
        }
    }
    // The StatefulSet is back as it was; the Ingress goes through the proxy.
    let statefulset = cluster.get("StatefulSet", "vault").await.unwrap().unwrap();
    assert_ne!(
        statefulset["spec"]["template"]["spec"]["containers"][0]["args"][0],
        "sleep infinity"
    );
    let ingress = cluster.get("Ingress", "vault").await.unwrap().unwrap();
    assert_eq!(
        ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
        "vault-migration-proxy"
    );
    // Backups are private files without server fields.
    let backup = dir.join("backups/old-Ingress-vault.json");
    let text = std::fs::read_to_string(&backup).unwrap();
    assert!(!text.contains("resourceVersion") && !text.contains("\"uid\""));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn seal_overrides_are_found_in_env_and_in_env_from() {
    let (_twin, cluster) = common::seeded_old_cluster().await;
    let plan = common::compile(
        "overrides",
        r#"
version: 1
name: overrides
targets:
  aks-old: {kind: kubernetes, context: old, namespace: vault}
  old-vault: {kind: vault, cluster: aks-old, url: http://vault.old.test}
steps:
  - id: seal-overrides
    uses: preflight.seal-overrides
    on: old-vault
"#
        .to_string(),
    );
    let check = |name: &'static str| {
        let plan = plan.clone();
        let cluster = cluster.clone();
        async move {
            let dir = common::scratch_dir(name);
            let live = Live::new(
                plan.clone(),
                HashMap::from([("aks-old".to_string(), cluster)]),
                HashMap::new(),
                planx::rundir::RunDir::at(&dir),
                vec![],
            );
            let journal = Journal::create(&dir.join("journal.jsonl")).unwrap();
            let outcome = common::run_approved(live, &plan, journal, BTreeMap::new()).await;
            std::fs::remove_dir_all(&dir).ok();
            outcome
        }
    };
    let set_container = |field: &'static str, value: Value| {
        let cluster = cluster.clone();
        async move {
            let mut statefulset = cluster.get("StatefulSet", "vault").await.unwrap().unwrap();
            let containers = statefulset["spec"]["template"]["spec"]["containers"]
                .as_array_mut()
                .unwrap();
            let vault = containers
                .iter_mut()
                .find(|c| c["name"] == "vault")
                .unwrap();
            vault[field] = value;
            cluster.replace(&statefulset).await.unwrap();
        }
    };
    assert_eq!(check("overrides-clean").await, Outcome::Completed);

    set_container(
        "env",
        serde_json::json!([{"name": "VAULT_SEAL_TYPE", "value": "transit"}]),
    )
    .await;
    let Outcome::Failed { error, .. } = check("overrides-env").await else {
        panic!("an env override is refused")
    };
    assert!(
        error.contains("sets VAULT_SEAL_TYPE, which override"),
        "{error}"
    );

    set_container("env", serde_json::json!([])).await;
    cluster
        .create(&serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "vault-env", "namespace": "vault"},
            "data": {"VAULT_AZUREKEYVAULT_VAULT_NAME": "kv-other", "LOG_LEVEL": "debug"}
        }))
        .await
        .unwrap();
    cluster
        .create(&serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "vault-seal", "namespace": "vault"},
            "data": {"SEAL_TYPE": "dHJhbnNpdA=="}
        }))
        .await
        .unwrap();
    set_container(
        "envFrom",
        serde_json::json!([
            {"configMapRef": {"name": "vault-env"}},
            {"secretRef": {"name": "vault-seal"}, "prefix": "VAULT_"},
            {"configMapRef": {"name": "absent", "optional": true}}
        ]),
    )
    .await;
    let Outcome::Failed { error, .. } = check("overrides-env-from").await else {
        panic!("an envFrom override is refused")
    };
    assert!(
        error.contains("VAULT_AZUREKEYVAULT_VAULT_NAME (from ConfigMap `vault-env`)")
            && error.contains("VAULT_SEAL_TYPE (from Secret `vault-seal`)")
            && !error.contains("LOG_LEVEL")
            && !error.contains("transit"),
        "{error}"
    );
}
