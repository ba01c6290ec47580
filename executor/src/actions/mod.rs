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
use planc::edit::k8s;
use planc::expr::Resolved;
use planc::model::{CompiledStep, CompiledTarget, VaultTarget};
use planc_schema::ActionKind;
use planc_schema::actions as inputs;
use planc_schema::plan::TargetKind;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::adapters::cluster::{Cluster, ClusterError, PortForward};
use crate::adapters::vault::{Vault, VaultError};
use crate::engine::{
    ActionError, Actions, ActivityUnit, BoxFuture, Effects, Outputs, Progress, StepRun,
};
use crate::rundir::{self, ObjectRecord, RunDir};
use crate::secrets::Secret;

mod keys;
mod kubernetes;
mod preflight;
mod raft;
mod seals;
mod vault;

/// What one action does on the real APIs, in one place: apply, observe (a step left in doubt by
/// a crash) and undo. Each action implements it once, in its family's module (planc's
/// `actions/` holds the same action's catalog line, the objects it changes and its preview);
/// [`live_action`] is the one line per action that finds it.
trait LiveAction: Sync {
    fn apply<'a>(
        &self,
        live: &'a Live,
        run: &'a StepRun,
        effects: &'a Effects,
    ) -> BoxFuture<'a, Result<Outputs, ActionError>>;

    /// Its outputs when the step's effect is found done, `None` when it must run again (the
    /// default: actions without an observation run again).
    fn observe<'a>(
        &self,
        _live: &'a Live,
        _run: &'a StepRun,
    ) -> BoxFuture<'a, Result<Option<Outputs>, ActionError>> {
        Box::pin(async { Ok(None) })
    }

    /// Reverse a step as its catalog line says, on its own records (`keys`: the step's key and
    /// its items' `id[item]`) and `journaled` outputs; what it did, line by line. The default
    /// puts back the objects recorded before the step when the line says `RestoreRecorded`, and
    /// does nothing otherwise.
    fn undo<'a>(
        &self,
        live: &'a Live,
        step: &'a CompiledStep,
        keys: &'a [&'a String],
        _journaled: Option<&'a BTreeMap<String, Value>>,
    ) -> BoxFuture<'a, Result<Vec<String>, ActionError>> {
        Box::pin(live.put_back_step(step, keys))
    }
}

/// An action whose apply (and observation, if any) is a function of its family's module, with
/// the default undo.
macro_rules! live_action_fns {
    ($(#[$doc:meta])* $name:ident: apply $apply:path $(, observe $observe:path)?) => {
        $(#[$doc])*
        pub(super) struct $name;

        impl super::LiveAction for $name {
            fn apply<'a>(
                &self,
                live: &'a super::Live,
                run: &'a crate::engine::StepRun,
                effects: &'a crate::engine::Effects,
            ) -> crate::engine::BoxFuture<'a, Result<super::Outputs, crate::engine::ActionError>> {
                Box::pin($apply(live, run, effects))
            }
            $(
            fn observe<'a>(
                &self,
                live: &'a super::Live,
                run: &'a crate::engine::StepRun,
            ) -> crate::engine::BoxFuture<
                'a,
                Result<Option<super::Outputs>, crate::engine::ActionError>,
            > {
                Box::pin($observe(live, run))
            }
            )?
        }
    };
}
use live_action_fns;

/// Where each action of the catalog lives in planx: one line per action.
fn live_action(kind: ActionKind) -> &'static dyn LiveAction {
    use ActionKind as A;
    match kind {
        A::PreflightCluster => &preflight::Cluster,
        A::PreflightReplicas => &preflight::Replicas,
        A::PreflightSealOverrides => &preflight::SealOverrides,
        A::PreflightKeyAccess => &preflight::KeyAccess,
        A::PreflightRecoveryKeys => &preflight::RecoveryKeys,
        A::PreflightRaftJoin => &raft::Preflight,
        A::TokenCreate => &vault::TokenCreate,
        A::TokenRevoke => &vault::TokenRevoke,
        A::Backup => &kubernetes::Backup,
        A::Delete => &kubernetes::Delete,
        A::Restore => &kubernetes::Restore,
        A::PatchArgs => &kubernetes::PatchArgs,
        A::ProxyService => &kubernetes::ProxyService,
        A::IngressRewrite => &kubernetes::IngressRewrite,
        A::Restart => &vault::Restart,
        A::BlockServices => &vault::BlockServices,
        A::SnapshotSave => &vault::SnapshotSave,
        A::SnapshotRestore => &vault::SnapshotRestore,
        A::SnapshotTransfer => &vault::SnapshotTransfer,
        A::SealPointAtKey => &seals::PointAtKey,
        A::SealDisableAndAdd => &seals::DisableAndAdd,
        A::SealRemoveDisabled => &seals::RemoveDisabled,
        A::Leader => &vault::Leader,
        A::SealMigrate => &seals::Migrate,
        A::StepDown => &vault::StepDown,
        A::RaftJoin => &raft::Join,
        A::RaftPromote => &raft::Promote,
        A::RaftRemovePeer => &raft::RemovePeer,
        A::Verify => &vault::Verify,
        A::KeysDisable => &keys::Disable,
    }
}

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

    /// The vault target `id`, typed.
    fn vault_target(&self, id: &str) -> Result<VaultTarget<'_>, ActionError> {
        let target = self.target(id)?;
        target.vault().ok_or_else(|| {
            ActionError::permanent(format!(
                "`{id}` is a {} target, not a vault",
                target.kind.name()
            ))
        })
    }

    /// The cluster a kubernetes target is, or a vault target lives in.
    fn cluster(&self, target: &str) -> Result<&Cluster, ActionError> {
        let target = self.target(target)?;
        let id = match (target.kind, target.vault()) {
            (TargetKind::Kubernetes, _) => target.id.as_str(),
            (_, Some(vault)) => vault.cluster,
            (other, None) => {
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
        let target = self.vault_target(vault)?;
        let port = target.port;
        if let Some(template) = target.address_template {
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
        let selector = self.vault_target(vault)?.selector;
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
        let target = self.vault_target(vault)?;
        let (name, container) = (target.statefulset, target.container);
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
            .find(|s| match s.action {
                ActionKind::SnapshotRestore => {
                    matches!(s.with.get("snapshot"), Some(Resolved::StepOutput { step, .. }) if saves.contains(&step.as_str()))
                }
                ActionKind::SnapshotTransfer => {
                    s.with.get("from").and_then(Resolved::as_str) == Some(vault)
                }
                _ => false,
            })
            .map(|s| s.on.clone())
            .ok_or_else(|| {
                ActionError::permanent(format!(
                    "`{vault}` is disabled (its StatefulSet runs sleep) and the plan restores its data nowhere"
                ))
            })
    }

    /// When no pod matches a vault target's selector: refuse at once if its StatefulSet does
    /// not exist either (the target names another install), rather than wait for a leader.
    async fn refuse_missing_install(&self, vault: &str) -> Result<(), ActionError> {
        let target = self.vault_target(vault)?;
        let cluster = self.cluster(vault)?;
        if cluster
            .get("StatefulSet", target.statefulset)
            .await?
            .is_some()
        {
            return Ok(());
        }
        Err(ActionError::permanent(format!(
            "no pod matches `{}` and StatefulSet `{}` does not exist in namespace `{}` of `{}`{}",
            target.selector,
            target.statefulset,
            cluster.namespace(),
            cluster.context(),
            flavour_hint(&target)
        )))
    }

    /// The active pod and the standbys, asked of each pod's Vault. An election may be under
    /// way after a restart: wait for a leader, up to `self.wait`.
    async fn leader(&self, vault: &str) -> Result<(String, Vec<String>), ActionError> {
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut election_since: Option<Instant> = None;
        loop {
            let mut leader = None;
            let mut followers = Vec::new();
            let pods = self.vault_pods(vault).await?;
            if pods.is_empty() {
                self.refuse_missing_install(vault).await?;
            }
            for pod in pods {
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

    /// The vault targets that share `vault`'s raft cluster through the plan's `vault.raft-join`
    /// steps (one joined the other), `vault` first.
    fn raft_members(&self, vault: &str) -> Vec<String> {
        let mut members = vec![vault.to_string()];
        for step in self
            .plan
            .steps
            .iter()
            .filter(|s| s.action == ActionKind::RaftJoin)
        {
            let to = step.with.get("to").and_then(Resolved::as_str);
            let other = if step.on == vault {
                to.map(str::to_owned)
            } else if to == Some(vault) {
                Some(step.on.clone())
            } else {
                None
            };
            if let Some(other) = other
                && !members.contains(&other)
            {
                members.push(other);
            }
        }
        members
    }

    /// The active node of the raft cluster `vault` belongs to, as (vault target, pod), found
    /// among the pods of every target sharing it; waits for an election, up to `self.wait`.
    async fn raft_leader(&self, vault: &str) -> Result<(String, String), ActionError> {
        let members = self.raft_members(vault);
        let deadline = tokio::time::Instant::now() + self.wait;
        let started = Instant::now();
        loop {
            for member in &members {
                for pod in self.vault_pods(member).await? {
                    if let Ok(client) = self.vault_on(member, &pod).await
                        && client.leader().await.is_ok_and(|l| l.is_self)
                    {
                        if started.elapsed() > Duration::from_millis(300) {
                            self.count_wait(started);
                        }
                        return Ok((member.clone(), pod));
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ActionError::transient(format!(
                    "no pod of {} became the active node within {}s",
                    members.join(" or "),
                    self.wait.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// A pod's IP (`status.podIP`), if it has one.
    async fn pod_ip(&self, vault: &str, pod: &str) -> Result<Option<String>, ActionError> {
        Ok(self
            .cluster(vault)?
            .get("Pod", pod)
            .await?
            .and_then(|p| p["status"]["podIP"].as_str().map(str::to_owned)))
    }

    /// Record every object the step changes, as planc plans them (what `planc diff` showed),
    /// before it runs.
    async fn record_written(&self, run: &StepRun) -> Result<(), ActionError> {
        let inputs = planc::preview::checked_inputs(&run.inputs);
        let written =
            planc::preview::objects_written(&self.plan, run.step.action, &run.step.on, &inputs);
        for object in written {
            self.record_before(run, &object.target, &object.kind, &object.name)
                .await?;
        }
        Ok(())
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

    /// Undo a step of the run, as the `undo` of its action's `LiveAction` does it. What cannot be
    /// done is said, not failed (a token already gone).
    pub async fn undo_step(
        &self,
        step: &CompiledStep,
        keys: &[&String],
        journaled: Option<&BTreeMap<String, Value>>,
    ) -> Result<Vec<String>, ActionError> {
        live_action(step.action)
            .undo(self, step, keys, journaled)
            .await
    }

    /// The default undo: the objects recorded before the step put back, when its catalog line
    /// says `RestoreRecorded`.
    async fn put_back_step(
        &self,
        step: &CompiledStep,
        keys: &[&String],
    ) -> Result<Vec<String>, ActionError> {
        let mut done = Vec::new();
        if planc::catalog::spec(step.action).undo == planc::catalog::Undo::RestoreRecorded {
            for key in keys {
                done.extend(self.put_back_records(key).await?);
            }
        }
        Ok(done)
    }

    /// Put back every object state recorded before the step (or item) `key`; returns what it
    /// did.
    async fn put_back_records(&self, key: &str) -> Result<Vec<String>, ActionError> {
        let folder = self.run_dir.before_folder(key);
        let mut done = Vec::new();
        let Ok(mut entries) = tokio::fs::read_dir(&folder).await else {
            return Ok(done);
        };
        let mut files = Vec::new();
        while let Ok(Some(entry)) = entries.next_entry().await {
            if rundir::is_record(&entry.path()) {
                files.push(entry.path());
            }
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

    /// Wait until `vault` serves the data restored from `source`: every pod unsealed, and its
    /// active node accepting a token of the source (`sys/storage/raft/configuration`, which a
    /// migration token may read). A node that sealed itself cannot unwrap the restored keys.
    async fn wait_serving_data_of(
        &self,
        vault: &str,
        source: &str,
        source_token: &Secret,
    ) -> Result<(), ActionError> {
        let pods = self.vault_pods(vault).await?;
        let sealed: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
        let (pods, sealed_pod) = (&pods, &sealed);
        let what = format!("`{vault}` to serve the data of `{source}`");
        self.wait_for(&what, || {
            Box::pin(async move {
                for pod in pods {
                    if let Ok(client) = self.vault_on(vault, pod).await
                        && client.seal_status().await.is_ok_and(|s| s.sealed)
                    {
                        *sealed_pod.lock().expect("sealed pod") = Some(pod.clone());
                        return true;
                    }
                }
                let Ok((leader, _)) = self.leader(vault).await else {
                    return false;
                };
                let Ok(client) = self.vault_on(vault, &leader).await else {
                    return false;
                };
                client.raft_configuration(source_token).await.is_ok()
            })
        })
        .await?;
        match sealed.into_inner().expect("sealed pod") {
            Some(pod) => Err(ActionError::permanent(format!(
                "pod `{pod}` of `{vault}` sealed itself after the restore: its seal cannot unwrap the keys of `{source}`'s data; point it at `{source}`'s key (`vault.seal-point-at-key`) and restart it, or transfer with `expect: sealed`"
            ))),
            None => Ok(()),
        }
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

    /// A record never holds a secret: a ConfigMap whose configuration carries a secret seal
    /// attribute (`token`, `client_secret`, ...) whose value is not a secret parameter of the
    /// run, so that it could be replaced by its marker, is refused before the step changes it.
    pub(super) fn refuse_unknown_seal_secrets(&self, object: &Value) -> Result<(), ActionError> {
        if object["kind"] != "ConfigMap" {
            return Ok(());
        }
        let known: Vec<&str> = self.secrets.values().map(|s| s.expose()).collect();
        for (key, text) in object["data"].as_object().into_iter().flatten() {
            let Some(text) = text.as_str() else { continue };
            let mut unknown = false;
            planc::edit::seal::redact(text, |value| {
                if !value.is_empty() && !known.contains(&value) {
                    unknown = true;
                }
                String::new()
            });
            if unknown {
                return Err(ActionError::permanent(format!(
                    "ConfigMap `{}` key `{key}` holds a secret seal attribute ({}) whose value this plan does not know: planx records the ConfigMap before it changes it and never writes a secret; give the value to the plan as a secret parameter (for Azure: the client_secret parameter, e.g. `file:secrets/client-secret`)",
                    object["metadata"]["name"].as_str().unwrap_or("?"),
                    planc::edit::seal::SENSITIVE_ATTRIBUTES.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Write an object record (0600), every secret value of the run replaced by its marker: a
    /// ConfigMap holding a seal's KMS token is recorded without it.
    async fn write_backup(&self, path: &Path, object: &Value) -> Result<(), ActionError> {
        self.refuse_unknown_seal_secrets(object)?;
        let mut text = serde_json::to_string_pretty(object)
            .map_err(|e| ActionError::permanent(e.to_string()))?;
        for (value, marker) in self.secret_markers() {
            text = text.replace(&value, &marker);
        }
        let parent = path.parent().unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(parent).await.map_err(|e| {
            ActionError::permanent(format!("cannot create {}: {e}", parent.display()))
        })?;
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || rundir::write_checked(&path, text.as_bytes()))
            .await
            .map_err(|e| ActionError::permanent(e.to_string()))?
            .map_err(ActionError::permanent)
    }

    /// Read an object record, putting the run's secret values back in place of their markers.
    async fn read_backup(&self, path: &str) -> Result<Value, ActionError> {
        let owned = PathBuf::from(path);
        let mut text = tokio::task::spawn_blocking(move || rundir::read_checked(&owned))
            .await
            .map_err(|e| ActionError::permanent(e.to_string()))?
            .map_err(|e| ActionError::permanent(format!("the backup: {e}")))?;
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
            self.record_written(run).await?;
            live_action(run.step.action).apply(self, run, effects).await
        })
    }

    fn observe<'a>(
        &'a self,
        run: &'a StepRun,
    ) -> BoxFuture<'a, Result<Option<Outputs>, ActionError>> {
        live_action(run.step.action).observe(self, run)
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
    serde_json::from_value(planc::preview::checked_inputs(&run.inputs))
        .map_err(|e| ActionError::permanent(format!("inputs of `{}`: {e}", run.key)))
}

/// For a target that does not match the install: the flavour it has, and the other chart's.
pub(super) fn flavour_hint(target: &VaultTarget<'_>) -> String {
    let other = match target.flavour {
        "openbao-helm" => "vault-helm",
        _ => "openbao-helm",
    };
    format!(
        " (target `{}` has flavour `{}`; an install made with the other chart needs `flavour: {other}`, and any other names set on the target)",
        target.id, target.flavour
    )
}
