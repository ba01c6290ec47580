//! The catalog's actions on the real APIs: each step's typed inputs turned into calls on the
//! Kubernetes and Vault adapters, every change wrapped in a journaled effect, the objects changed
//! with planc's edit functions (the ones the preview showed), and an `observe` per action for
//! steps left in doubt by a crash.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use planc::CompiledPlan;
use planc::drift::Expectation;
use planc::edit::{k8s, seal};
use planc::expr::Resolved;
use planc::model::CompiledTarget;
use planc_schema::ActionKind;
use planc_schema::actions as inputs;
use planc_schema::plan::TargetKind;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::cluster::{Cluster, ClusterError, PortForward};
use crate::engine::{ActionError, Actions, ActivityUnit, BoxFuture, Effects, Progress, StepRun};
use crate::rundir::{ObjectRecord, RunDir};
use crate::secrets::Secret;
use crate::vault::{Vault, VaultError};

mod keys;

impl From<ClusterError> for ActionError {
    fn from(error: ClusterError) -> ActionError {
        ActionError {
            transient: error.is_transient(),
            message: error.to_string(),
        }
    }
}

impl From<VaultError> for ActionError {
    fn from(error: VaultError) -> ActionError {
        ActionError {
            transient: error.is_transient(),
            message: error.to_string(),
        }
    }
}

type Outputs = BTreeMap<String, Value>;

/// The actions of a run: one client per kubernetes target, the resolved secret parameters, the
/// run directory for backups and snapshots, and name overrides (`--resolve host=ip:port`).
pub struct Live {
    plan: CompiledPlan,
    clusters: HashMap<String, Cluster>,
    secrets: HashMap<String, Secret>,
    run_dir: RunDir,
    resolve: Vec<(String, SocketAddr)>,
    forwards: Mutex<HashMap<(String, String), PortForward>>,
    /// How long a restart or a seal change may take.
    pub wait: Duration,
    /// From a saved plan: the objects each step is the first to edit, as they were observed.
    expectations: BTreeMap<String, Vec<Expectation>>,
    /// When planx waited on the servers (restarts, elections, seal changes), for the summary.
    waits: std::sync::Mutex<Vec<(Instant, Instant)>>,
    /// Where activities inside a step are reported (snapshot bytes, waits).
    progress: Option<Arc<dyn Fn(Progress) + Send + Sync>>,
}

impl Live {
    pub fn new(
        plan: CompiledPlan,
        clusters: HashMap<String, Cluster>,
        secrets: HashMap<String, Secret>,
        run_dir: RunDir,
        resolve: Vec<(String, SocketAddr)>,
    ) -> Live {
        Live {
            plan,
            clusters,
            secrets,
            run_dir,
            resolve,
            forwards: Mutex::new(HashMap::new()),
            wait: Duration::from_secs(180),
            expectations: BTreeMap::new(),
            waits: std::sync::Mutex::new(Vec::new()),
            progress: None,
        }
    }

    /// Report activities inside steps (snapshot bytes, waits) to `progress`.
    pub fn report_to(&mut self, progress: Arc<dyn Fn(Progress) + Send + Sync>) {
        self.progress = Some(progress);
    }

    fn report_waiting(&self, what: &str, waited: Duration) {
        if let Some(progress) = &self.progress {
            progress(Progress::Activity {
                what: format!("waiting for {what}"),
                unit: ActivityUnit::Seconds,
                done: waited.as_secs(),
                total: Some(self.wait.as_secs()),
            });
        }
    }

    /// A reporter of bytes moved: at the first chunk, then at most every 200 ms, and at the end
    /// of a known total.
    fn byte_reporter(
        &self,
        what: String,
        total: Option<u64>,
    ) -> impl FnMut(u64) + Send + Sync + 'static {
        let progress = self.progress.clone();
        let mut last: Option<Instant> = None;
        move |bytes| {
            let due = last.is_none_or(|at| at.elapsed() >= Duration::from_millis(200));
            if let Some(progress) = &progress
                && (due || total == Some(bytes))
            {
                last = Some(Instant::now());
                progress(Progress::Activity {
                    what: what.clone(),
                    unit: ActivityUnit::Bytes,
                    done: bytes,
                    total,
                });
            }
        }
    }

    /// Run `wait`, its time counted as waiting on the servers.
    async fn waiting<T>(&self, wait: impl std::future::Future<Output = T>) -> T {
        let started = Instant::now();
        let result = wait.await;
        self.count_wait(started);
        result
    }

    fn count_wait(&self, started: Instant) {
        self.waits
            .lock()
            .expect("the waits lock is never poisoned")
            .push((started, Instant::now()));
    }

    /// How long, between `from` and `to`, planx was waiting on the servers: pod restarts,
    /// elections, seal changes (overlapping waits counted once).
    pub fn waited_between(&self, from: Instant, to: Instant) -> Duration {
        let mut spans: Vec<(Instant, Instant)> = self
            .waits
            .lock()
            .expect("the waits lock is never poisoned")
            .iter()
            .map(|&(start, end)| (start.max(from), end.min(to)))
            .filter(|(start, end)| start < end)
            .collect();
        spans.sort();
        let mut total = Duration::ZERO;
        let mut covered_until = from;
        for (start, end) in spans {
            let start = start.max(covered_until);
            if end > start {
                total += end - start;
                covered_until = end;
            }
        }
        total
    }

    /// Check, before each step that edits an object first, that it is as the saved plan saw it.
    pub fn expect(&mut self, expectations: BTreeMap<String, Vec<Expectation>>) {
        self.expectations = expectations;
    }

    /// Undo a `vault.token-create` step: revoke the token by its journaled accessor with the
    /// step's admin token, on the node that serves the Vault now.
    pub async fn revoke_created_token(
        &self,
        step: &planc::model::CompiledStep,
        accessor: &str,
    ) -> Result<String, ActionError> {
        let admin = match step.with.get("admin_token") {
            Some(Resolved::Secret { param, .. }) => self.secrets.get(param).cloned(),
            _ => None,
        }
        .ok_or_else(|| {
            ActionError::permanent(format!(
                "`{}` has no admin token to revoke with; revoke accessor {accessor} by hand",
                step.id
            ))
        })?;
        let serving = self.serving_vault(&step.on).await?;
        let (leader, _) = self.leader(&serving).await?;
        self.vault_on(&serving, &leader)
            .await?
            .revoke_accessor(&admin, accessor)
            .await?;
        Ok(format!(
            "revoked the token with accessor {accessor} on {serving}"
        ))
    }

    /// Refuse the step when an object it edits moved since the saved plan observed it.
    async fn refuse_drift(&self, run: &StepRun) -> Result<(), ActionError> {
        let Some(expectations) = self.expectations.get(&run.step.id) else {
            return Ok(());
        };
        let drifted = drift_reports(expectations, &self.clusters).await?;
        if drifted.is_empty() {
            return Ok(());
        }
        Err(ActionError::permanent(format!(
            "refusing to edit what changed since the plan was saved:\n{}\nmake the plan again with `planx plan` and review its previews, or put the object back",
            drifted.join("\n").trim_end()
        )))
    }

    fn target(&self, id: &str) -> Result<&CompiledTarget, ActionError> {
        self.plan
            .targets
            .get(id)
            .ok_or_else(|| ActionError::permanent(format!("unknown target `{id}`")))
    }

    /// The cluster a kubernetes target is, or a vault target lives in.
    fn cluster(&self, target: &str) -> Result<&Cluster, ActionError> {
        let target = self.target(target)?;
        let id = match target.kind {
            TargetKind::Kubernetes => target.id.as_str(),
            TargetKind::Vault => target.attribute("cluster").unwrap_or_default(),
            other => {
                return Err(ActionError::permanent(format!(
                    "a {} target has no cluster",
                    other.name()
                )));
            }
        };
        self.clusters
            .get(id)
            .ok_or_else(|| ActionError::permanent(format!("no connection to cluster `{id}`")))
    }

    /// A secret input: a parameter's resolved value, or an earlier step's in-memory output.
    fn secret(&self, run: &StepRun, input: &str) -> Result<Secret, ActionError> {
        match run.inputs.get(input) {
            Some(Resolved::Secret { param, reference }) => {
                if reference.starts_with("step:") {
                    run.step_secrets.get(reference).cloned().ok_or_else(|| {
                        ActionError::permanent(format!(
                            "`{input}` needs the output `{param}`, which this run does not hold (it is never journaled); resume runs the step that makes it again"
                        ))
                    })
                } else {
                    self.secrets.get(param).cloned().ok_or_else(|| {
                        ActionError::permanent(format!(
                            "secret parameter `{param}` was not resolved"
                        ))
                    })
                }
            }
            _ => Err(ActionError::permanent(format!(
                "`{input}` is not a secret reference"
            ))),
        }
    }

    fn secret_attribute(&self, target: &CompiledTarget, name: &str) -> Option<Secret> {
        match target.attributes.get(name)? {
            Resolved::Secret { param, .. } => self.secrets.get(param).cloned(),
            Resolved::Str(text) => Some(Secret::new(text.clone())),
            _ => None,
        }
    }

    /// A Vault client for one pod of a vault target: through a port-forward, or at its address.
    async fn vault_on(&self, vault: &str, pod: &str) -> Result<Vault, ActionError> {
        let target = self.target(vault)?;
        let port = match target.attributes.get("port") {
            Some(Resolved::Int(port)) => u16::try_from(*port).unwrap_or(8200),
            _ => 8200,
        };
        if target.attribute("reach") == Some("address") {
            let template = target.attribute("address_template").unwrap_or_default();
            return Ok(Vault::new(&template.replace("{pod}", pod), &self.resolve)?);
        }
        let cluster = self.cluster(vault)?;
        let key = (cluster.context().to_string(), pod.to_string());
        let mut forwards = self.forwards.lock().await;
        if !forwards.contains_key(&key) {
            let forward = cluster.port_forward(pod, port).await?;
            forwards.insert(key.clone(), forward);
        }
        let local = forwards[&key].local;
        Ok(Vault::new(&format!("http://{local}"), &self.resolve)?)
    }

    /// The pods of a vault target, by name.
    async fn vault_pods(&self, vault: &str) -> Result<Vec<String>, ActionError> {
        let target = self.target(vault)?;
        let selector = target
            .attribute("selector")
            .unwrap_or("app.kubernetes.io/name=vault");
        let pods = self.cluster(vault)?.pods(selector).await?;
        Ok(pods
            .iter()
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
            .collect())
    }

    /// Where the data of a vault target is served now: the target itself, or, once its
    /// StatefulSet runs `sleep` (disabled) and the plan restores its snapshot into another vault
    /// target, that one. A token of the source is valid there after the restore.
    async fn serving_vault(&self, vault: &str) -> Result<String, ActionError> {
        let target = self.target(vault)?;
        let name = target.attribute("statefulset").unwrap_or("vault");
        let container = target.attribute("container").unwrap_or("vault");
        let statefulset = self.cluster(vault)?.get("StatefulSet", name).await?;
        let disabled = statefulset
            .as_ref()
            .and_then(|s| k8s::container_args(s, container))
            .is_some_and(|args| {
                args.first()
                    .is_some_and(|a| a.trim_start().starts_with("sleep"))
            });
        if !disabled {
            return Ok(vault.to_string());
        }
        let saves: Vec<&str> = self
            .plan
            .steps
            .iter()
            .filter(|s| s.action == ActionKind::SnapshotSave && s.on == vault)
            .map(|s| s.id.as_str())
            .collect();
        self.plan
            .steps
            .iter()
            .find(|s| {
                s.action == ActionKind::SnapshotRestore
                    && matches!(s.with.get("snapshot"), Some(Resolved::StepOutput { step, .. }) if saves.contains(&step.as_str()))
            })
            .map(|s| s.on.clone())
            .ok_or_else(|| {
                ActionError::permanent(format!(
                    "`{vault}` is disabled (its StatefulSet runs sleep) and the plan restores its data nowhere"
                ))
            })
    }

    /// The active pod and the standbys, asked of each pod's Vault. An election may be under
    /// way after a restart: wait for a leader, up to `self.wait`.
    async fn leader(&self, vault: &str) -> Result<(String, Vec<String>), ActionError> {
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut election_since: Option<Instant> = None;
        loop {
            let mut leader = None;
            let mut followers = Vec::new();
            for pod in self.vault_pods(vault).await? {
                let client = self.vault_on(vault, &pod).await?;
                match client.leader().await {
                    Ok(answer) if answer.is_self => leader = Some(pod),
                    _ => followers.push(pod),
                }
            }
            if let Some(leader) = leader {
                if let Some(since) = election_since {
                    self.count_wait(since);
                }
                return Ok((leader, followers));
            }
            election_since.get_or_insert_with(Instant::now);
            if tokio::time::Instant::now() >= deadline {
                return Err(ActionError::transient(format!(
                    "no pod of `{vault}` became the active node within {}s",
                    self.wait.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The environment variables of a container spec that override a seal's configuration:
    /// from `env`, and from the ConfigMaps and Secrets of `envFrom` (their keys, with the
    /// source's prefix), each named with where it comes from. Only key names are read.
    async fn seal_overriding_variables(
        &self,
        cluster: &Cluster,
        container: &Value,
    ) -> Result<Vec<String>, ActionError> {
        let overrides = |name: &str| {
            name.starts_with("VAULT_SEAL_")
                || name.starts_with("VAULT_AZUREKEYVAULT_")
                || name.starts_with("VAULT_TRANSIT_SEAL_")
                || name.starts_with("VAULT_AWSKMS_SEAL_")
                || name.starts_with("VAULT_GCPCKMS_SEAL_")
                || name == "AZURE_TENANT_ID"
                || name == "AZURE_CLIENT_ID"
        };
        let mut found: Vec<String> = container["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["name"].as_str())
            .filter(|n| overrides(n))
            .map(str::to_owned)
            .collect();
        for source in container["envFrom"].as_array().into_iter().flatten() {
            let prefix = source["prefix"].as_str().unwrap_or_default();
            let (kind, name) = match (
                source["configMapRef"]["name"].as_str(),
                source["secretRef"]["name"].as_str(),
            ) {
                (Some(name), _) => ("ConfigMap", name),
                (None, Some(name)) => ("Secret", name),
                (None, None) => continue,
            };
            // A missing optional source adds nothing; a missing required one keeps the pod
            // from starting, which the restart reports.
            let Some(object) = cluster.get(kind, name).await? else {
                continue;
            };
            let keys = ["data", "binaryData", "stringData"]
                .into_iter()
                .filter_map(|field| object[field].as_object())
                .flat_map(|map| map.keys());
            for key in keys {
                let variable = format!("{prefix}{key}");
                if overrides(&variable) {
                    found.push(format!("{variable} (from {kind} `{name}`)"));
                }
            }
        }
        Ok(found)
    }

    /// Record an object as it is before a step changes it (`null` when it does not exist).
    async fn record_before(
        &self,
        run: &StepRun,
        target: &str,
        kind: &str,
        name: &str,
    ) -> Result<(), ActionError> {
        let cluster = self.cluster(target)?;
        let current = cluster.get(kind, name).await?;
        let path = self
            .run_dir
            .object_record_path(&run.key, target, kind, name);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            // A retry or a resume: the first record is the one that counts.
            return Ok(());
        }
        let record = ObjectRecord {
            target: target.to_string(),
            kind: kind.to_string(),
            namespace: cluster.namespace().to_string(),
            name: name.to_string(),
            object: current
                .map(|o| k8s::clean_for_backup(&o))
                .unwrap_or(Value::Null),
        };
        let value = serde_json::to_value(&record)
            .map_err(|e| ActionError::permanent(format!("cannot record {kind} {name}: {e}")))?;
        self.write_backup(&path, &value).await
    }

    /// Undo a step by putting back every object state recorded before it; returns what it did.
    pub async fn undo(&self, key: &str) -> Result<Vec<String>, ActionError> {
        let folder = self.run_dir.before_folder(key);
        let mut done = Vec::new();
        let Ok(mut entries) = tokio::fs::read_dir(&folder).await else {
            return Ok(done);
        };
        let mut files = Vec::new();
        while let Ok(Some(entry)) = entries.next_entry().await {
            files.push(entry.path());
        }
        files.sort();
        for path in files {
            let record: ObjectRecord =
                serde_json::from_value(self.read_backup(&path.display().to_string()).await?)
                    .map_err(|e| {
                        ActionError::permanent(format!(
                            "{} is not an object record planx made: {e}",
                            path.display()
                        ))
                    })?;
            let ObjectRecord {
                target,
                kind,
                name: object,
                object: before,
                ..
            } = record;
            let cluster = self.cluster(&target)?;
            let now = cluster
                .get(&kind, &object)
                .await?
                .map(|o| k8s::clean_for_backup(&o));
            let unchanged = match (&now, before.is_null()) {
                (None, true) => true,
                (Some(now), false) => strip_volatile(now) == strip_volatile(&before),
                _ => false,
            };
            if unchanged {
                done.push(format!(
                    "{kind} {object} in {target} is as it was; nothing to put back"
                ));
                continue;
            }
            if before.is_null() {
                cluster.delete(&kind, &object, None, self.wait).await?;
                done.push(format!(
                    "deleted {kind} {object} in {target}, which the step created"
                ));
            } else {
                self.put(cluster, &before).await?;
                done.push(format!("put {kind} {object} in {target} back as it was"));
            }
        }
        Ok(done)
    }

    /// Restart every pod of the vault targets that run from `statefulset` in `cluster`, and wait
    /// until they are unsealed: what a restored StatefulSet needs (updateStrategy OnDelete).
    pub async fn restart_vaults_of(
        &self,
        cluster_target: &str,
        statefulset: &str,
    ) -> Result<Vec<String>, ActionError> {
        let vaults: Vec<String> = self
            .plan
            .targets
            .values()
            .filter(|t| {
                t.kind == TargetKind::Vault
                    && t.attribute("cluster") == Some(cluster_target)
                    && t.attribute("statefulset").unwrap_or("vault") == statefulset
            })
            .map(|t| t.id.clone())
            .collect();
        let mut done = Vec::new();
        for vault in vaults {
            let cluster = self.cluster(&vault)?;
            let pods = self.vault_pods(&vault).await?;
            for pod in &pods {
                self.waiting(cluster.restart_pod(pod, self.wait)).await?;
            }
            for pod in &pods {
                self.wait_unsealed(&vault, pod, false).await?;
            }
            done.push(format!(
                "restarted the pods of {vault} ({})",
                pods.join(", ")
            ));
        }
        Ok(done)
    }

    /// Poll `check` every 250 ms until it holds, at most `self.wait`.
    async fn wait_for<'c, F>(&self, what: &str, mut check: F) -> Result<(), ActionError>
    where
        F: FnMut() -> BoxFuture<'c, bool> + Send,
    {
        let deadline = tokio::time::Instant::now() + self.wait;
        let started = Instant::now();
        let mut reported = None;
        loop {
            if check().await {
                self.count_wait(started);
                return Ok(());
            }
            // Once a second is enough for a person or a log.
            let waited = started.elapsed();
            if reported != Some(waited.as_secs()) {
                reported = Some(waited.as_secs());
                self.report_waiting(what, waited);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ActionError::permanent(format!(
                    "timed out after {}s waiting for {what}",
                    self.wait.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn wait_unsealed(&self, vault: &str, pod: &str, sealed: bool) -> Result<(), ActionError> {
        let client = self.vault_on(vault, pod).await?;
        let client = &client;
        let what = format!("pod `{pod}` to report sealed: {sealed}");
        self.wait_for(&what, move || {
            Box::pin(async move {
                client
                    .seal_status()
                    .await
                    .is_ok_and(|s| s.initialized && s.sealed == sealed)
            })
        })
        .await
    }

    /// Restart one pod of a vault target and wait as the step says.
    async fn restart(
        &self,
        vault: &str,
        pod: &str,
        wait: inputs::RestartWait,
        effects: &Effects,
    ) -> Result<(), ActionError> {
        let cluster = self.cluster(vault)?;
        effects
            .perform(&format!("delete pod {pod} of {vault}"), async {
                self.waiting(cluster.restart_pod(pod, self.wait))
                    .await
                    .map(drop)
                    .map_err(ActionError::from)
            })
            .await?;
        match wait {
            inputs::RestartWait::Running => Ok(()),
            inputs::RestartWait::Unsealed => self.wait_unsealed(vault, pod, false).await,
            inputs::RestartWait::Sealed => self.wait_unsealed(vault, pod, true).await,
        }
    }

    fn seal_attributes(
        &self,
        key_service: &str,
        extra: &indexmap::IndexMap<String, String>,
    ) -> Result<Vec<(String, String)>, ActionError> {
        let target = self.target(key_service)?;
        let names = seal::key_attributes(target.kind);
        let mut attributes = Vec::new();
        for name in names {
            let value = self.secret_attribute(target, name).ok_or_else(|| {
                ActionError::permanent(format!("key service `{key_service}` has no `{name}`"))
            })?;
            attributes.push((name.to_string(), value.expose().to_string()));
        }
        attributes.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(attributes)
    }

    /// Read the vault target's ConfigMap, apply a seal edit, write it back (conflicts surface).
    async fn edit_seal(
        &self,
        run: &StepRun,
        vault: &str,
        edit: seal::SealEdit,
        effects: &Effects,
    ) -> Result<(), ActionError> {
        let target = self.target(vault)?;
        let name = target
            .attribute("configmap")
            .unwrap_or("vault-config")
            .to_string();
        let key = target
            .attribute("config_key")
            .unwrap_or("extraconfig-from-values.hcl")
            .to_string();
        let cluster = self.cluster(vault)?;
        let configmap = cluster.get("ConfigMap", &name).await?.ok_or_else(|| {
            ActionError::permanent(format!(
                "ConfigMap `{name}` does not exist in `{}`",
                cluster.context()
            ))
        })?;
        let text =
            k8s::configmap_value(&configmap, &key).map_err(|e| ActionError::permanent(e.0))?;
        let edited = seal::apply(text, &edit).map_err(|e| {
            ActionError::permanent(format!("ConfigMap `{name}` key `{key}`: {}", e.0))
        })?;
        let updated = k8s::set_configmap_value(&configmap, &key, &edited)
            .map_err(|e| ActionError::permanent(e.0))?;
        let cluster_target = target.attribute("cluster").unwrap_or_default().to_string();
        self.record_before(run, &cluster_target, "ConfigMap", &name)
            .await?;
        effects
            .perform(&format!("update ConfigMap {name} of {vault}"), async {
                cluster
                    .replace(&updated)
                    .await
                    .map(drop)
                    .map_err(ActionError::from)
            })
            .await
    }

    /// The secret values of the run as they appear inside JSON text, with the marker that
    /// stands for each in a record: `{{planx-secret:PARAM}}`.
    fn secret_markers(&self) -> Vec<(String, String)> {
        let mut markers: Vec<(String, String)> = self
            .secrets
            .iter()
            .filter(|(_, secret)| secret.expose().len() >= 8 && !secret.expose().contains('\n'))
            .map(|(param, secret)| {
                let quoted = serde_json::to_string(secret.expose()).expect("strings serialise");
                (
                    quoted[1..quoted.len() - 1].to_string(),
                    format!("{{{{planx-secret:{param}}}}}"),
                )
            })
            .collect();
        // Longest first, so a secret that contains another is replaced whole.
        markers.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
        markers
    }

    /// Write an object record (0600), every secret value of the run replaced by its marker: a
    /// ConfigMap holding a seal's KMS token is recorded without it.
    async fn write_backup(&self, path: &Path, object: &Value) -> Result<(), ActionError> {
        let mut text = serde_json::to_string_pretty(object)
            .map_err(|e| ActionError::permanent(e.to_string()))?;
        for (value, marker) in self.secret_markers() {
            text = text.replace(&value, &marker);
        }
        let parent = path.parent().unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(parent).await.map_err(|e| {
            ActionError::permanent(format!("cannot create {}: {e}", parent.display()))
        })?;
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut file = options
            .open(path)
            .await
            .map_err(|e| ActionError::permanent(format!("cannot write {}: {e}", path.display())))?;
        tokio::io::AsyncWriteExt::write_all(&mut file, text.as_bytes())
            .await
            .and(file.sync_all().await)
            .map_err(|e| ActionError::permanent(format!("cannot write {}: {e}", path.display())))
    }

    /// Read an object record, putting the run's secret values back in place of their markers.
    async fn read_backup(&self, path: &str) -> Result<Value, ActionError> {
        let mut text = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| ActionError::permanent(format!("cannot read the backup {path}: {e}")))?;
        for (value, marker) in self.secret_markers() {
            text = text.replace(&marker, &value);
        }
        if let Some(start) = text.find("{{planx-secret:") {
            let param: String = text[start + 15..]
                .chars()
                .take_while(|c| *c != '}')
                .collect();
            return Err(ActionError::permanent(format!(
                "the backup {path} holds the secret parameter `{param}` by reference, and this plan has no such secret: give the plan a secret parameter `{param}` with the same value"
            )));
        }
        serde_json::from_str(&text)
            .map_err(|e| ActionError::permanent(format!("the backup {path} is not an object: {e}")))
    }

    /// Create the object, or replace the live one (carrying its resourceVersion).
    async fn put(&self, cluster: &Cluster, object: &Value) -> Result<(), ActionError> {
        let (kind, _, name) = k8s::identity(object);
        match cluster.get(&kind, &name).await? {
            None => cluster.create(object).await.map(drop)?,
            Some(live) => {
                let mut replacement = object.clone();
                replacement["metadata"]["resourceVersion"] =
                    live["metadata"]["resourceVersion"].clone();
                cluster.replace(&replacement).await.map(drop)?
            }
        }
        Ok(())
    }

    async fn resolve_host(&self, host: &str) -> Result<String, ActionError> {
        if let Some((_, address)) = self.resolve.iter().find(|(name, _)| name == host) {
            return Ok(address.ip().to_string());
        }
        let mut found = tokio::net::lookup_host((host, 443))
            .await
            .map_err(|e| ActionError::transient(format!("cannot resolve {host}: {e}")))?;
        found
            .find(|a| a.is_ipv4())
            .map(|a| a.ip().to_string())
            .ok_or_else(|| ActionError::permanent(format!("{host} has no IPv4 address")))
    }

    async fn apply_step(&self, run: &StepRun, effects: &Effects) -> Result<Outputs, ActionError> {
        let on = run.step.on.as_str();
        let mut outputs = Outputs::new();
        match run.step.action {
            ActionKind::PreflightCluster => {
                let input: inputs::PreflightClusterInput = typed(run)?;
                let cluster = self.cluster(on)?;
                let version = cluster.server_version().await?;
                let missing = cluster.missing_api_versions(&input.api_versions).await?;
                if !missing.is_empty() {
                    return Err(ActionError::permanent(format!(
                        "`{}` does not serve {}",
                        cluster.context(),
                        missing.join(", ")
                    )));
                }
                // The namespace is readable.
                let _: Option<Value> = cluster.get("ConfigMap", "planx-preflight-probe").await?;
                outputs.insert("server_version".into(), json!(version));
            }
            ActionKind::PreflightReplicas => {
                let input: inputs::PreflightReplicasInput = typed(run)?;
                let name = self
                    .target(on)?
                    .attribute("statefulset")
                    .unwrap_or("vault")
                    .to_string();
                let statefulset = self
                    .cluster(on)?
                    .get("StatefulSet", &name)
                    .await?
                    .ok_or_else(|| {
                        ActionError::permanent(format!("StatefulSet `{name}` does not exist"))
                    })?;
                let available = statefulset["status"]["availableReplicas"]
                    .as_u64()
                    .or(statefulset["status"]["readyReplicas"].as_u64())
                    .unwrap_or(0);
                if available < u64::from(input.expected) {
                    return Err(ActionError::permanent(format!(
                        "StatefulSet `{name}` has {available} available replicas, the plan expects {}",
                        input.expected
                    )));
                }
                outputs.insert("available".into(), json!(available));
            }
            ActionKind::PreflightSealOverrides => {
                let target = self.target(on)?;
                let name = target
                    .attribute("statefulset")
                    .unwrap_or("vault")
                    .to_string();
                let container = target.attribute("container").unwrap_or("vault").to_string();
                let statefulset = self
                    .cluster(on)?
                    .get("StatefulSet", &name)
                    .await?
                    .unwrap_or(Value::Null);
                let spec = statefulset["spec"]["template"]["spec"]["containers"]
                    .as_array()
                    .and_then(|c| c.iter().find(|c| c["name"] == container))
                    .cloned()
                    .unwrap_or(Value::Null);
                let overriding = self
                    .seal_overriding_variables(self.cluster(on)?, &spec)
                    .await?;
                if !overriding.is_empty() {
                    return Err(ActionError::permanent(format!(
                        "the container `{container}` sets {}, which override the seal configuration: both seal blocks would point at one key",
                        overriding.join(", ")
                    )));
                }
            }
            ActionKind::PreflightKeyAccess => {
                let target = self.target(on)?;
                match target.kind {
                    TargetKind::Azurekeyvault => {
                        let input: inputs::PreflightKeyAccessInput = typed(run)?;
                        let summary = crate::azure::check_key_access(
                            &crate::azure::AzureEndpoints::from_env(),
                            &crate::azure::AzureCredential::from_env(),
                            &crate::azure::KeyVaultTarget::from_compiled(target)?,
                            input.identity.as_deref().unwrap_or_default(),
                            &input.role,
                        )
                        .await?;
                        outputs.insert("summary".into(), json!(summary));
                    }
                    TargetKind::Transit => {
                        let token = self.transit_token(target)?;
                        crate::transit::TransitKey::from_compiled(target)
                            .probe(&token)
                            .await?;
                    }
                    TargetKind::Awskms => {
                        let input: inputs::PreflightKeyAccessInput = typed(run)?;
                        let summary = crate::awskms::check_key_access(
                            &crate::awskms::KmsEndpoint::from_env(),
                            &crate::awskms::AwsCredentials::from_env()?,
                            &crate::awskms::KmsKeyTarget::from_compiled(target)?,
                            input.identity.as_deref().unwrap_or_default(),
                        )
                        .await?;
                        outputs.insert("summary".into(), json!(summary));
                    }
                    TargetKind::Gcpckms => {
                        let input: inputs::PreflightKeyAccessInput = typed(run)?;
                        let summary = crate::gcpckms::check_key_access(
                            &crate::gcpckms::CloudKmsEndpoint::from_env(),
                            &crate::gcpckms::GcpCredential::from_env(),
                            &crate::gcpckms::CryptoKeyTarget::from_compiled(target)?,
                            input.identity.as_deref().unwrap_or_default(),
                        )
                        .await?;
                        outputs.insert("summary".into(), json!(summary));
                    }
                    other => {
                        return Err(ActionError::permanent(format!(
                            "`preflight.key-access` checks a key service, not a {} target",
                            other.name()
                        )));
                    }
                }
            }
            ActionKind::PreflightRecoveryKeys => {
                let keys = self.secret(run, "recovery_keys")?.lines();
                let token = self.secret(run, "token")?;
                let (leader, _) = self.leader(on).await?;
                let client = self.vault_on(on, &leader).await?;
                effects
                    .perform(
                        &format!(
                            "prove the recovery keys on {on} (a root token generated and revoked)"
                        ),
                        async {
                            client
                                .prove_keys(&token, &keys)
                                .await
                                .map_err(ActionError::from)
                        },
                    )
                    .await?;
            }
            ActionKind::TokenCreate => {
                let input: inputs::TokenCreateInput = typed(run)?;
                let admin = self.secret(run, "admin_token")?;
                let serving = self.serving_vault(on).await?;
                let (leader, _) = self.leader(&serving).await?;
                let client = self.vault_on(&serving, &leader).await?;
                let (token, accessor) = effects
                    .perform(&format!("create a migration token on {on}"), async {
                        client
                            .create_migration_token(&admin, &input.policy_name, &input.ttl)
                            .await
                            .map_err(ActionError::from)
                    })
                    .await?;
                outputs.insert("token".into(), json!(token.expose()));
                outputs.insert("accessor".into(), json!(accessor));
            }
            ActionKind::TokenRevoke => {
                let token = self.secret(run, "token")?;
                let (leader, _) = self.leader(on).await?;
                let client = self.vault_on(on, &leader).await?;
                effects
                    .perform(&format!("revoke a migration token on {on}"), async {
                        client.revoke_self(&token).await.map_err(ActionError::from)
                    })
                    .await?;
            }
            ActionKind::Backup => {
                let input: inputs::BackupInput = typed(run)?;
                let cluster = self.cluster(on)?;
                let found = cluster.get(input.kind.as_str(), &input.name).await?;
                if found.is_none() && input.if_exists {
                    outputs.insert("backup".into(), Value::Null);
                    return Ok(outputs);
                }
                let object = found.ok_or_else(|| {
                    ActionError::permanent(format!(
                        "{} `{}` does not exist in `{}`",
                        input.kind.as_str(),
                        input.name,
                        cluster.context()
                    ))
                })?;
                let path = self
                    .run_dir
                    .backup_path(on, input.kind.as_str(), &input.name);
                self.write_backup(&path, &k8s::clean_for_backup(&object))
                    .await?;
                outputs.insert("backup".into(), json!(path.display().to_string()));
            }
            ActionKind::Delete => {
                let input: inputs::DeleteInput = typed(run)?;
                let cluster = self.cluster(on)?;
                self.record_before(run, on, input.kind.as_str(), &input.name)
                    .await?;
                effects
                    .perform(
                        &format!("delete {} {} in {on}", input.kind.as_str(), input.name),
                        async {
                            cluster
                                .delete(input.kind.as_str(), &input.name, None, self.wait)
                                .await
                                .map_err(ActionError::from)
                        },
                    )
                    .await?;
            }
            ActionKind::Restore => {
                let input: inputs::RestoreInput = typed(run)?;
                let object = self.read_backup(&input.backup).await?;
                let cluster = self.cluster(on)?;
                let (kind, _, name) = k8s::identity(&object);
                self.record_before(run, on, &kind, &name).await?;
                effects
                    .perform(&format!("restore {kind} {name} in {on}"), async {
                        match input.mode {
                            inputs::RestoreMode::Create => cluster
                                .create(&object)
                                .await
                                .map(drop)
                                .map_err(ActionError::from),
                            inputs::RestoreMode::Replace => self.put(cluster, &object).await,
                        }
                    })
                    .await?;
            }
            ActionKind::PatchArgs => {
                let input: inputs::PatchArgsInput = typed(run)?;
                let cluster = self.cluster(on)?;
                let statefulset = cluster
                    .get("StatefulSet", &input.statefulset)
                    .await?
                    .ok_or_else(|| {
                        ActionError::permanent(format!(
                            "StatefulSet `{}` does not exist in `{}`",
                            input.statefulset,
                            cluster.context()
                        ))
                    })?;
                let patched = k8s::set_container_args(&statefulset, &input.container, &input.args)
                    .map_err(|e| ActionError::permanent(e.0))?;
                self.record_before(run, on, "StatefulSet", &input.statefulset)
                    .await?;
                effects
                    .perform(
                        &format!(
                            "set the args of {} in StatefulSet {}",
                            input.container, input.statefulset
                        ),
                        async {
                            cluster
                                .replace(&patched)
                                .await
                                .map(drop)
                                .map_err(ActionError::from)
                        },
                    )
                    .await?;
            }
            ActionKind::ProxyService => {
                let input: inputs::ProxyServiceInput = typed(run)?;
                let cluster = self.cluster(on)?;
                let address = self.resolve_host(&input.target_host).await?;
                let (service, slice) = k8s::proxy_objects(&k8s::Proxy {
                    namespace: cluster.namespace().to_string(),
                    name: input.name.clone(),
                    port: input.port,
                    port_name: input.port_name.clone(),
                    address: address.clone(),
                });
                self.record_before(run, on, "Service", &input.name).await?;
                self.record_before(run, on, "EndpointSlice", &input.name)
                    .await?;
                effects
                    .perform(
                        &format!("create the proxy {} to {address} in {on}", input.name),
                        async {
                            self.put(cluster, &service).await?;
                            self.put(cluster, &slice).await
                        },
                    )
                    .await?;
                outputs.insert("address".into(), json!(address));
            }
            ActionKind::IngressRewrite => {
                let input: inputs::IngressRewriteInput = typed(run)?;
                let cluster = self.cluster(on)?;
                let source = match &input.from_backup {
                    Some(path) => self.read_backup(path).await?,
                    None => cluster
                        .get("Ingress", &input.ingress)
                        .await?
                        .ok_or_else(|| {
                            ActionError::permanent(format!(
                                "Ingress `{}` does not exist in `{}`",
                                input.ingress,
                                cluster.context()
                            ))
                        })?,
                };
                let rewritten =
                    k8s::rewrite_ingress(&source, &k8s::IngressRewrite::from_input(&input))
                        .map_err(|e| ActionError::permanent(e.0))?;
                self.record_before(run, on, "Ingress", &input.ingress)
                    .await?;
                effects
                    .perform(
                        &format!("rewrite Ingress {} in {on}", input.ingress),
                        async { self.put(cluster, &rewritten).await },
                    )
                    .await?;
            }
            ActionKind::Restart => {
                let input: inputs::RestartInput = typed(run)?;
                let pods = match (&input.pod, input.pods) {
                    (Some(pod), _) => vec![pod.clone()],
                    (None, Some(inputs::PodSet::Leader)) => vec![self.leader(on).await?.0],
                    (None, Some(inputs::PodSet::Followers)) => self.leader(on).await?.1,
                    (None, _) => self.vault_pods(on).await?,
                };
                if input.pods == Some(inputs::PodSet::Followers) {
                    for pod in &pods {
                        self.restart(on, pod, input.wait, effects).await?;
                    }
                } else {
                    // All at once, as `kubectl delete pod --selector` does; then wait for each.
                    let cluster = self.cluster(on)?;
                    effects
                        .perform(&format!("delete pods {} of {on}", pods.join(", ")), async {
                            let mut restarts = tokio::task::JoinSet::new();
                            for pod in pods.clone() {
                                let cluster = cluster.clone();
                                let wait = self.wait;
                                restarts
                                    .spawn(async move { cluster.restart_pod(&pod, wait).await });
                            }
                            self.waiting(async {
                                while let Some(done) = restarts.join_next().await {
                                    done.map_err(|e| {
                                        ActionError::permanent(format!("a restart failed: {e}"))
                                    })??;
                                }
                                Ok::<(), ActionError>(())
                            })
                            .await
                        })
                        .await?;
                    for pod in &pods {
                        match input.wait {
                            inputs::RestartWait::Running => {}
                            inputs::RestartWait::Unsealed => {
                                self.wait_unsealed(on, pod, false).await?
                            }
                            inputs::RestartWait::Sealed => {
                                self.wait_unsealed(on, pod, true).await?
                            }
                        }
                    }
                    if input.wait == inputs::RestartWait::Unsealed {
                        // Every node restarted: the cluster serves once it elected a leader.
                        self.leader(on).await?;
                    }
                }
            }
            ActionKind::SnapshotSave => {
                let token = self.secret(run, "token")?;
                let (leader, _) = self.leader(on).await?;
                let client = self.vault_on(on, &leader).await?;
                let path = self.run_dir.snapshot_path(on, &run.key);
                tokio::fs::create_dir_all(path.parent().expect("a folder"))
                    .await
                    .map_err(|e| {
                        ActionError::permanent(format!("cannot create the snapshot folder: {e}"))
                    })?;
                let _ = tokio::fs::remove_file(&path).await;
                let received = self.byte_reporter(format!("snapshot from {leader} of {on}"), None);
                let file = client.snapshot_save(&token, &path, received).await?;
                outputs.insert("snapshot".into(), json!(path.display().to_string()));
                outputs.insert("sha256".into(), json!(file.sha256));
                outputs.insert("bytes".into(), json!(file.bytes));
            }
            ActionKind::SnapshotRestore => {
                let input: inputs::SnapshotRestoreInput = typed(run)?;
                let token = self.secret(run, "token")?;
                let path = PathBuf::from(&input.snapshot);
                let expected = match &input.sha256 {
                    Some(sha) => sha.clone(),
                    None => crate::vault::file_sha256(&path).await.map_err(|e| {
                        ActionError::permanent(format!("cannot read {}: {e}", path.display()))
                    })?,
                };
                let (leader, _) = self.leader(on).await?;
                let client = self.vault_on(on, &leader).await?;
                let size = tokio::fs::metadata(&path).await.map(|m| m.len()).ok();
                let sent = self.byte_reporter(format!("snapshot into {leader} of {on}"), size);
                effects
                    .perform(&format!("force-restore the snapshot into {on}"), async {
                        client
                            .snapshot_restore_force(&token, &path, &expected, sent)
                            .await
                            .map_err(ActionError::from)
                    })
                    .await?;
                for pod in self.vault_pods(on).await? {
                    self.wait_unsealed(on, &pod, true).await?;
                }
            }
            ActionKind::SealPointAtKey => {
                let input: inputs::SealPointAtKeyInput = typed(run)?;
                let attributes = self.seal_attributes(&input.key_service, &input.attributes)?;
                let edit = seal::SealEdit::PointAtKey {
                    selector: selector(&input.seal),
                    attributes,
                };
                self.edit_seal(run, on, edit, effects).await?;
            }
            ActionKind::SealDisableAndAdd => {
                let input: inputs::SealDisableAndAddInput = typed(run)?;
                let attributes = self.seal_attributes(&input.key_service, &input.attributes)?;
                let edit = seal::SealEdit::DisableAndAdd {
                    selector: selector(&input.seal),
                    new_type: self.target(&input.key_service)?.kind.name().to_string(),
                    new_name: input.name.clone().filter(|n| !n.is_empty()),
                    attributes,
                };
                self.edit_seal(run, on, edit, effects).await?;
            }
            ActionKind::SealRemoveDisabled => {
                let input: inputs::SealRemoveDisabledInput = typed(run)?;
                let edit = seal::SealEdit::RemoveDisabled {
                    selector: input.seal.as_ref().map(selector),
                };
                self.edit_seal(run, on, edit, effects).await?;
            }
            ActionKind::Leader => {
                let (leader, followers) = self.leader(on).await?;
                outputs.insert("leader".into(), json!(leader));
                outputs.insert("followers".into(), json!(followers));
            }
            ActionKind::SealMigrate => {
                let input: inputs::SealMigrateInput = typed(run)?;
                let keys = self.secret(run, "recovery_keys")?.lines();
                // The leader is looked up again before every restart: never restart the active node here.
                let (leader, _) = self.leader(on).await?;
                if leader == input.pod {
                    return Err(ActionError::permanent(format!(
                        "`{}` is the active node now; seal migration restarts followers only",
                        input.pod
                    )));
                }
                self.restart(on, &input.pod, inputs::RestartWait::Running, effects)
                    .await?;
                let client = self.vault_on(on, &input.pod).await?;
                let pod = input.pod.clone();
                let probe = &client;
                self.wait_for(
                    &format!("pod `{pod}` to start in seal migration"),
                    move || {
                        Box::pin(async move {
                            probe
                                .seal_status()
                                .await
                                .is_ok_and(|s| s.sealed && s.migration)
                        })
                    },
                )
                .await?;
                effects
                    .perform(&format!("unseal {} with migrate", input.pod), async {
                        for key in &keys {
                            let status = client.unseal(key, true).await?;
                            if !status.sealed {
                                break;
                            }
                        }
                        Ok::<(), ActionError>(())
                    })
                    .await?;
                self.wait_for(
                    &format!("pod `{pod}` to be an unsealed standby"),
                    move || {
                        Box::pin(async move {
                            let unsealed = probe.seal_status().await.is_ok_and(|s| !s.sealed);
                            unsealed && probe.leader().await.is_ok_and(|l| !l.is_self)
                        })
                    },
                )
                .await?;
            }
            ActionKind::StepDown => {
                let token = self.secret(run, "token")?;
                let (leader, _) = self.leader(on).await?;
                let client = self.vault_on(on, &leader).await?;
                effects
                    .perform(&format!("step {leader} of {on} down"), async {
                        client.step_down(&token).await.map_err(ActionError::from)
                    })
                    .await?;
                let deadline = tokio::time::Instant::now() + self.wait;
                let election = Instant::now();
                let new_leader = loop {
                    if let Ok((now, _)) = self.leader(on).await
                        && now != leader
                        && let Ok(client) = self.vault_on(on, &now).await
                        && client
                            .seal_status()
                            .await
                            .is_ok_and(|s| !s.sealed && !s.migration)
                    {
                        break now;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ActionError::permanent(format!(
                            "timed out after {}s waiting for a new leader of `{on}` that finished the seal migration",
                            self.wait.as_secs()
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                };
                self.count_wait(election);
                outputs.insert("leader".into(), json!(new_leader));
            }
            ActionKind::Verify => {
                let input: inputs::VerifyInput = typed(run)?;
                let token = self.secret(run, "token")?;
                for url in &input.urls {
                    verify(url, &token, &input.expect_mounts, &self.resolve).await?;
                }
            }
            ActionKind::KeysDisable => {
                let summary = self.withdraw_key_access(run, effects).await?;
                outputs.insert("summary".into(), json!(summary));
            }
        }
        Ok(outputs)
    }

    async fn observe_step(&self, run: &StepRun) -> Result<Option<Outputs>, ActionError> {
        let on = run.step.on.as_str();
        Ok(match run.step.action {
            ActionKind::Delete => {
                let input: inputs::DeleteInput = typed(run)?;
                self.cluster(on)?
                    .get(input.kind.as_str(), &input.name)
                    .await?
                    .is_none()
                    .then(Outputs::new)
            }
            ActionKind::PatchArgs => {
                let input: inputs::PatchArgsInput = typed(run)?;
                let live = self
                    .cluster(on)?
                    .get("StatefulSet", &input.statefulset)
                    .await?;
                live.and_then(|s| k8s::container_args(&s, &input.container))
                    .is_some_and(|args| args == input.args)
                    .then(Outputs::new)
            }
            ActionKind::SealMigrate => {
                let input: inputs::SealMigrateInput = typed(run)?;
                let client = self.vault_on(on, &input.pod).await?;
                let unsealed = client.seal_status().await.is_ok_and(|s| !s.sealed);
                let standby = client.leader().await.is_ok_and(|l| !l.is_self);
                (unsealed && standby).then(Outputs::new)
            }
            ActionKind::KeysDisable => self
                .key_access_withdrawn(run)
                .await?
                .map(|summary| Outputs::from([("summary".into(), json!(summary))])),
            _ => None,
        })
    }
}

/// What moved of the objects expected, read from the live clusters: one report per object.
pub async fn drift_reports(
    expectations: &[Expectation],
    clusters: &HashMap<String, Cluster>,
) -> Result<Vec<String>, ActionError> {
    let mut reports = Vec::new();
    for expectation in expectations {
        let object = &expectation.object;
        let cluster = clusters.get(&object.target).ok_or_else(|| {
            ActionError::permanent(format!("no connection to cluster `{}`", object.target))
        })?;
        let live = cluster.get(&object.kind, &object.name).await?;
        reports.extend(planc::drift::check(expectation, live.as_ref()));
    }
    Ok(reports)
}

impl Actions for Live {
    fn apply<'a>(
        &'a self,
        run: &'a StepRun,
        effects: &'a Effects,
    ) -> BoxFuture<'a, Result<Outputs, ActionError>> {
        Box::pin(async move {
            self.refuse_drift(run).await?;
            self.apply_step(run, effects).await
        })
    }

    fn observe<'a>(
        &'a self,
        run: &'a StepRun,
    ) -> BoxFuture<'a, Result<Option<Outputs>, ActionError>> {
        Box::pin(self.observe_step(run))
    }
}

/// An object without what the server adds on its own (managed fields, timestamps), for
/// comparing states.
fn strip_volatile(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object["metadata"].as_object_mut() {
        metadata
            .retain(|k, _| matches!(k.as_str(), "name" | "namespace" | "labels" | "annotations"));
    }
    object
}

/// The step's inputs as the action's input type (secrets stand in as placeholders).
fn typed<T: serde::de::DeserializeOwned>(run: &StepRun) -> Result<T, ActionError> {
    let json: serde_json::Map<String, Value> = run
        .inputs
        .iter()
        .map(|(k, v)| (k.clone(), v.to_check_json()))
        .collect();
    serde_json::from_value(Value::Object(json))
        .map_err(|e| ActionError::permanent(format!("inputs of `{}`: {e}", run.key)))
}

fn selector(seal: &inputs::SealSelector) -> seal::SealSelector {
    seal::SealSelector {
        seal_type: seal.seal_type.clone(),
        name: seal.name.clone().filter(|n| !n.is_empty()),
    }
}

/// Through a URL (a domain, via `--resolve`): the token works and the mounts are listed.
async fn verify(
    url: &str,
    token: &Secret,
    expect_mounts: &[String],
    resolve: &[(String, SocketAddr)],
) -> Result<(), ActionError> {
    let vault = Vault::new(url, resolve)?;
    let health = vault.health().await?;
    if health.sealed {
        return Err(ActionError::permanent(format!(
            "{url} answers but is sealed"
        )));
    }
    let http = reqwest::Client::builder();
    let mut http = http;
    for (host, address) in resolve {
        http = http.resolve(host, *address);
    }
    let http = http
        .build()
        .map_err(|e| ActionError::permanent(e.to_string()))?;
    let lookup = http
        .get(format!(
            "{}/v1/auth/token/lookup-self",
            url.trim_end_matches('/')
        ))
        .header("X-Vault-Token", token.expose())
        .send()
        .await
        .map_err(|e| ActionError::transient(format!("{url}: {e}")))?;
    if !lookup.status().is_success() {
        return Err(ActionError::permanent(format!(
            "{url}: the token is not valid there (HTTP {})",
            lookup.status().as_u16()
        )));
    }
    if !expect_mounts.is_empty() {
        let mounts: Value = http
            .get(format!("{}/v1/sys/mounts", url.trim_end_matches('/')))
            .header("X-Vault-Token", token.expose())
            .send()
            .await
            .map_err(|e| ActionError::transient(format!("{url}: {e}")))?
            .json()
            .await
            .unwrap_or(Value::Null);
        for mount in expect_mounts {
            let key = format!("{}/", mount.trim_end_matches('/'));
            if mounts.get(&key).is_none() && mounts["data"].get(&key).is_none() {
                return Err(ActionError::permanent(format!(
                    "{url}: the mount `{key}` is missing"
                )));
            }
        }
    }
    Ok(())
}
