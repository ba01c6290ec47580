//! The Kubernetes adapter: a client per kubeconfig context, objects read and written as JSON
//! (the form planc's edits work on) with planx's field manager, conflicts surfaced rather than
//! overwritten, pod restarts with uid preconditions that wait for a new uid Running, a Lease that
//! keeps a second run out, and port-forwards to one pod's port.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret as SecretObject, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams, Preconditions};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

/// The field manager planx writes with.
pub const FIELD_MANAGER: &str = "planx";

/// What went wrong with the Kubernetes API. Names the object and the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("context `{context}`: {message}")]
    Config { context: String, message: String },
    #[error("{action} {kind} `{name}` in `{context}`: {source}")]
    Api {
        action: &'static str,
        kind: String,
        name: String,
        context: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error(
        "{kind} `{name}` in `{context}` changed since it was read (resourceVersion conflict); re-plan"
    )]
    Conflict {
        kind: String,
        name: String,
        context: String,
    },
    #[error("{0}")]
    Refused(String),
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout { what: String, seconds: u64 },
}

impl ClusterError {
    /// Worth retrying: the API server hiccuped, not the request.
    pub fn is_transient(&self) -> bool {
        match self {
            ClusterError::Api { source, .. } => match source.as_ref() {
                kube::Error::Api(status) => matches!(status.code, 429 | 500 | 502 | 503 | 504),
                kube::Error::HyperError(_) | kube::Error::Service(_) => true,
                _ => false,
            },
            _ => false,
        }
    }
}

/// The API resource of a kind the catalog handles.
pub fn api_resource(kind: &str) -> Option<ApiResource> {
    Some(match kind {
        "ConfigMap" => ApiResource::erase::<ConfigMap>(&()),
        "Secret" => ApiResource::erase::<SecretObject>(&()),
        "Service" => ApiResource::erase::<Service>(&()),
        "Pod" => ApiResource::erase::<Pod>(&()),
        "StatefulSet" => ApiResource::erase::<StatefulSet>(&()),
        "Ingress" => ApiResource::erase::<Ingress>(&()),
        "EndpointSlice" => ApiResource::erase::<EndpointSlice>(&()),
        "PodDisruptionBudget" => ApiResource::erase::<PodDisruptionBudget>(&()),
        "Lease" => ApiResource::erase::<Lease>(&()),
        _ => return None,
    })
}

/// One kubeconfig context and the namespace a plan's target names.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    context: String,
    namespace: String,
}

/// Who holds the `planx-run` Lease of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The run id of the holder.
    pub holder: String,
    pub acquired: String,
    pub renewed: String,
    /// Renewed within its duration and not parked: the holder is running now.
    pub live: bool,
}

/// The annotation a run that stopped (a gate not approved, a failure, Ctrl-C) puts on the Lease
/// it keeps: held for its resume or rollback, but nobody is running it.
const STOPPED_ANNOTATION: &str = "planx.io/stopped";

impl LeaseHolder {
    fn of(lease: &Value, now: SystemTime) -> LeaseHolder {
        let text = |field: &str| lease["spec"][field].as_str().unwrap_or("?").to_string();
        let renewed = lease["spec"]["renewTime"].as_str().and_then(parse_rfc3339);
        let seconds = lease["spec"]["leaseDurationSeconds"].as_u64().unwrap_or(0);
        LeaseHolder {
            holder: text("holderIdentity"),
            acquired: text("acquireTime"),
            renewed: text("renewTime"),
            live: renewed.is_some_and(|at| at + Duration::from_secs(seconds) > now)
                && lease["metadata"]["annotations"][STOPPED_ANNOTATION].is_null(),
        }
    }
}

impl Cluster {
    /// A client for `context` of an already read kubeconfig (two contexts at once, one file).
    pub async fn connect(
        kubeconfig: &Kubeconfig,
        context: &str,
        namespace: &str,
    ) -> Result<Cluster, ClusterError> {
        crate::adapters::vault::install_crypto_provider();
        let config_error = |message: String| ClusterError::Config {
            context: context.to_string(),
            message,
        };
        let options = KubeConfigOptions {
            context: Some(context.to_string()),
            ..Default::default()
        };
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig.clone(), &options)
            .await
            .map_err(|e| config_error(e.to_string()))?;
        // kube takes HTTPS_PROXY for every API server; kubectl skips loopback and NO_PROXY.
        if let Some(proxy) = &config.proxy_url {
            let server = config.cluster_url.host().unwrap_or("").to_string();
            if crate::adapters::proxy::bypasses_proxy(
                &server,
                &crate::adapters::proxy::no_proxy_from_env(),
            ) {
                config.proxy_url = None;
            } else {
                return Err(config_error(format!(
                    "the API server {server} would be reached through the proxy {proxy} (HTTPS_PROXY or the kubeconfig's proxy-url); planx reaches API servers directly: add {server} to NO_PROXY, or remove proxy-url"
                )));
            }
        }
        let client = kube::Client::try_from(config).map_err(|e| config_error(e.to_string()))?;
        Ok(Cluster {
            client,
            context: context.to_string(),
            namespace: namespace.to_string(),
        })
    }

    pub fn context(&self) -> &str {
        &self.context
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn api(&self, kind: &str) -> Result<Api<DynamicObject>, ClusterError> {
        let resource = api_resource(kind).ok_or_else(|| {
            ClusterError::Refused(format!("planx does not handle objects of kind {kind}"))
        })?;
        Ok(Api::namespaced_with(
            self.client.clone(),
            &self.namespace,
            &resource,
        ))
    }

    fn error(
        &self,
        action: &'static str,
        kind: &str,
        name: &str,
        source: kube::Error,
    ) -> ClusterError {
        if let kube::Error::Api(status) = &source
            && status.code == 409
            && action != "create"
        {
            return ClusterError::Conflict {
                kind: kind.to_string(),
                name: name.to_string(),
                context: self.context.clone(),
            };
        }
        ClusterError::Api {
            action,
            kind: kind.to_string(),
            name: name.to_string(),
            context: self.context.clone(),
            source: Box::new(source),
        }
    }

    /// The API server's version (`gitVersion`).
    pub async fn server_version(&self) -> Result<String, ClusterError> {
        let info = self
            .client
            .apiserver_version()
            .await
            .map_err(|e| self.error("get", "version", "/version", e))?;
        Ok(info.git_version)
    }

    /// The API group versions of `wanted` (`v1`, `apps/v1`, ...) that the server does not serve.
    pub async fn missing_api_versions(
        &self,
        wanted: &[String],
    ) -> Result<Vec<String>, ClusterError> {
        let core = self
            .client
            .list_core_api_versions()
            .await
            .map_err(|e| self.error("list", "APIVersions", "/api", e))?;
        let groups = self
            .client
            .list_api_groups()
            .await
            .map_err(|e| self.error("list", "APIGroupList", "/apis", e))?;
        let mut served: Vec<String> = core.versions.clone();
        for group in &groups.groups {
            served.extend(group.versions.iter().map(|v| v.group_version.clone()));
        }
        Ok(wanted
            .iter()
            .filter(|w| !served.contains(w))
            .cloned()
            .collect())
    }

    /// The object as JSON, or `None` when it does not exist.
    pub async fn get(&self, kind: &str, name: &str) -> Result<Option<Value>, ClusterError> {
        let found = self
            .api(kind)?
            .get_opt(name)
            .await
            .map_err(|e| self.error("get", kind, name, e))?;
        Ok(found.map(|o| to_json(kind, &o)))
    }

    pub async fn create(&self, object: &Value) -> Result<Value, ClusterError> {
        let (kind, name) = kind_and_name(object);
        let dynamic: DynamicObject = serde_json::from_value(object.clone()).map_err(|e| {
            ClusterError::Refused(format!("{kind} `{name}` is not a valid object: {e}"))
        })?;
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let created = self
            .api(&kind)?
            .create(&params, &dynamic)
            .await
            .map_err(|e| self.error("create", &kind, &name, e))?;
        Ok(to_json(&kind, &created))
    }

    /// Replace an object; its `metadata.resourceVersion` makes a concurrent change a conflict.
    pub async fn replace(&self, object: &Value) -> Result<Value, ClusterError> {
        let (kind, name) = kind_and_name(object);
        let dynamic: DynamicObject = serde_json::from_value(object.clone()).map_err(|e| {
            ClusterError::Refused(format!("{kind} `{name}` is not a valid object: {e}"))
        })?;
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let replaced = self
            .api(&kind)?
            .replace(&name, &params, &dynamic)
            .await
            .map_err(|e| self.error("replace", &kind, &name, e))?;
        Ok(to_json(&kind, &replaced))
    }

    /// Delete an object (only the one with `uid`, when given) and wait until it is gone.
    pub async fn delete(
        &self,
        kind: &str,
        name: &str,
        uid: Option<&str>,
        wait: Duration,
    ) -> Result<(), ClusterError> {
        let params = DeleteParams {
            preconditions: uid.map(|uid| Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        let api = self.api(kind)?;
        match api.delete(name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
            Err(e) => return Err(self.error("delete", kind, name, e)),
        }
        let gone =
            kube::runtime::wait::await_condition(api, name, |object: Option<&DynamicObject>| {
                object.is_none_or(|o| uid.is_some_and(|uid| o.metadata.uid.as_deref() != Some(uid)))
            });
        tokio::time::timeout(wait, gone)
            .await
            .map_err(|_| ClusterError::Timeout {
                what: format!("{kind} `{name}` in `{}` to be deleted", self.context),
                seconds: wait.as_secs(),
            })?
            .map_err(|e| ClusterError::Refused(format!("watching {kind} `{name}`: {e}")))?;
        Ok(())
    }

    /// Pods matching a label selector, as JSON, ordered by name.
    pub async fn pods(&self, selector: &str) -> Result<Vec<Value>, ClusterError> {
        let api = self.api("Pod")?;
        let list = api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| self.error("list", "Pod", selector, e))?;
        let mut pods: Vec<Value> = list.items.iter().map(|p| to_json("Pod", p)).collect();
        pods.sort_by(|a, b| {
            a["metadata"]["name"]
                .as_str()
                .cmp(&b["metadata"]["name"].as_str())
        });
        Ok(pods)
    }

    /// Delete a pod with its uid as precondition and wait for its successor: a new uid in phase
    /// Running. Not Ready: a sealed Vault is NotReady. Returns the new uid.
    pub async fn restart_pod(&self, name: &str, wait: Duration) -> Result<String, ClusterError> {
        let pod = self.get("Pod", name).await?.ok_or_else(|| {
            ClusterError::Refused(format!("pod `{name}` does not exist in `{}`", self.context))
        })?;
        let old_uid = pod["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let started = std::time::Instant::now();
        self.delete("Pod", name, Some(&old_uid), wait).await?;
        let left = wait.saturating_sub(started.elapsed());
        let api = self.api("Pod")?;
        let successor =
            kube::runtime::wait::await_condition(api, name, |object: Option<&DynamicObject>| {
                object.is_some_and(|o| {
                    o.metadata.uid.as_deref().is_some_and(|uid| uid != old_uid)
                        && o.data["status"]["phase"] == "Running"
                })
            });
        let found = tokio::time::timeout(left, successor)
            .await
            .map_err(|_| ClusterError::Timeout {
                what: format!(
                    "pod `{name}` in `{}` to run again with a new uid",
                    self.context
                ),
                seconds: wait.as_secs(),
            })?
            .map_err(|e| ClusterError::Refused(format!("watching pod `{name}`: {e}")))?;
        Ok(found.and_then(|o| o.metadata.uid).unwrap_or_default())
    }

    /// Take the run's Lease (`planx-run`) for `holder` (a run id), or refuse when another run
    /// holds it. Another run's Lease is never taken over, even when it was not renewed in time: a
    /// run that stopped half-way keeps the cluster until it is resumed, rolled back or unlocked.
    pub async fn acquire_lease(
        &self,
        holder: &str,
        duration: Duration,
    ) -> Result<(), ClusterError> {
        let now = SystemTime::now();
        let spec = json!({
            "holderIdentity": holder,
            "leaseDurationSeconds": duration.as_secs(),
            "acquireTime": rfc3339_micros(now),
            "renewTime": rfc3339_micros(now),
        });
        match self.get("Lease", LEASE_NAME).await? {
            None => {
                let lease = json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": { "name": LEASE_NAME, "namespace": self.namespace },
                    "spec": spec,
                });
                match self.create(&lease).await {
                    Ok(_) => Ok(()),
                    Err(ClusterError::Api { source, .. }) if matches!(source.as_ref(), kube::Error::Api(status) if status.code == 409) => {
                        Err(ClusterError::Refused(format!(
                            "another planx run took the lease `{LEASE_NAME}` in `{}` just now",
                            self.context
                        )))
                    }
                    Err(e) => Err(e),
                }
            }
            Some(mut lease) => {
                let held = LeaseHolder::of(&lease, now);
                if held.holder != holder {
                    return Err(self.lease_refusal(&held));
                }
                lease["spec"] = spec;
                if let Some(annotations) = lease["metadata"]["annotations"].as_object_mut() {
                    annotations.remove(STOPPED_ANNOTATION);
                }
                self.replace(&lease).await.map(drop)
            }
        }
    }

    /// Renew the Lease `holder` holds; refused when it is gone or another run holds it.
    pub async fn renew_lease(&self, holder: &str) -> Result<(), ClusterError> {
        let lost = |what: String| {
            ClusterError::Refused(format!(
                "the lease `{LEASE_NAME}` in `{}` {what}; this run no longer has the cluster to itself",
                self.context
            ))
        };
        let Some(mut lease) = self.get("Lease", LEASE_NAME).await? else {
            return Err(lost("was deleted".into()));
        };
        let held = LeaseHolder::of(&lease, SystemTime::now());
        if held.holder != holder {
            return Err(lost(format!("is held by {}", held.holder)));
        }
        lease["spec"]["renewTime"] = json!(rfc3339_micros(SystemTime::now()));
        self.replace(&lease).await.map(drop)
    }

    /// Keep the Lease `holder` holds, marked as stopped: the run stays the cluster's until its
    /// resume or rollback (or `planx unlock`), and a run refused meanwhile is told nobody is
    /// running it.
    pub async fn park_lease(&self, holder: &str) -> Result<(), ClusterError> {
        let Some(mut lease) = self.get("Lease", LEASE_NAME).await? else {
            return Ok(());
        };
        if lease["spec"]["holderIdentity"] != holder {
            return Ok(());
        }
        lease["metadata"]["annotations"][STOPPED_ANNOTATION] =
            json!(rfc3339_micros(SystemTime::now()));
        self.replace(&lease).await.map(drop)
    }

    /// Who holds the Lease, when someone does.
    pub async fn lease_holder(&self) -> Result<Option<LeaseHolder>, ClusterError> {
        Ok(self
            .get("Lease", LEASE_NAME)
            .await?
            .map(|lease| LeaseHolder::of(&lease, SystemTime::now())))
    }

    fn lease_refusal(&self, held: &LeaseHolder) -> ClusterError {
        let state = if held.live {
            "renewed moments ago: it is running; wait for it to finish".to_string()
        } else {
            format!(
                "last renewed {}, and it is not running: resume it, roll it back, or release it with `planx unlock RUN`",
                held.renewed
            )
        };
        ClusterError::Refused(format!(
            "another planx run ({}, since {}) holds the lease `{LEASE_NAME}` in `{}`, {state}",
            held.holder, held.acquired, self.context
        ))
    }

    /// Give the Lease up (only when `holder` holds it).
    pub async fn release_lease(&self, holder: &str) -> Result<(), ClusterError> {
        if let Some(lease) = self.get("Lease", LEASE_NAME).await?
            && lease["spec"]["holderIdentity"] == holder
        {
            let uid = lease["metadata"]["uid"].as_str().map(str::to_owned);
            self.delete("Lease", LEASE_NAME, uid.as_deref(), Duration::from_secs(30))
                .await?;
        }
        Ok(())
    }

    /// Forward a local loopback port to `port` of a pod through the API server. Connections are
    /// accepted until the returned handle is dropped.
    pub async fn port_forward(&self, pod: &str, port: u16) -> Result<PortForward, ClusterError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| ClusterError::Refused(format!("cannot listen on loopback: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| ClusterError::Refused(format!("cannot listen on loopback: {e}")))?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let name = pod.to_string();
        let task = tokio::spawn(async move {
            while let Ok((mut connection, _)) = listener.accept().await {
                let pods = pods.clone();
                let name = name.clone();
                tokio::spawn(async move {
                    let Ok(mut forwarder) = pods.portforward(&name, &[port]).await else {
                        return;
                    };
                    if let Some(mut upstream) = forwarder.take_stream(port) {
                        let _ = tokio::io::copy_bidirectional(&mut connection, &mut upstream).await;
                    }
                    drop(forwarder);
                });
            }
        });
        Ok(PortForward { local, task })
    }
}

/// What a command run in a pod did: its exit code (`None` when the server said nothing of it)
/// and its standard error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    pub code: Option<i32>,
    pub stderr: String,
}

impl Cluster {
    /// Run `command` in `container` of `pod` (`pods/exec` over WebSocket), without stdin; its
    /// exit code and standard error, read within `timeout`.
    pub async fn exec(
        &self,
        pod: &str,
        container: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<Executed, ClusterError> {
        use tokio::io::AsyncReadExt as _;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let params = kube::api::AttachParams::default()
            .container(container)
            .stdin(false)
            .stdout(true)
            .stderr(true);
        let run = async {
            let mut process = pods
                .exec(pod, command.to_vec(), &params)
                .await
                .map_err(|e| ClusterError::Refused(format!("exec in pod {pod}: {e}")))?;
            let mut stderr = String::new();
            if let Some(mut reader) = process.stderr() {
                let _ = reader.read_to_string(&mut stderr).await;
            }
            if let Some(mut reader) = process.stdout() {
                let mut ignored = Vec::new();
                let _ = reader.read_to_end(&mut ignored).await;
            }
            let status = match process.take_status() {
                Some(status) => status.await,
                None => None,
            };
            let _ = process.join().await;
            let code = status.map(|status| {
                if status.status.as_deref() == Some("Success") {
                    0
                } else {
                    status
                        .details
                        .and_then(|details| details.causes)
                        .into_iter()
                        .flatten()
                        .find(|cause| cause.reason.as_deref() == Some("ExitCode"))
                        .and_then(|cause| cause.message)
                        .and_then(|code| code.parse().ok())
                        .unwrap_or(1)
                }
            });
            Ok(Executed { code, stderr })
        };
        tokio::time::timeout(timeout, run).await.map_err(|_| {
            ClusterError::Refused(format!(
                "exec in pod {pod} gave no answer within {}s",
                timeout.as_secs()
            ))
        })?
    }
}

impl Cluster {
    /// Of `accesses`, those the credentials of this context may not do in its namespace, asked
    /// of the API server one SelfSubjectAccessReview each (what `kubectl auth can-i` does).
    pub async fn denied(
        &self,
        accesses: &[planc::permissions::Access],
    ) -> Result<Vec<planc::permissions::Access>, ClusterError> {
        use k8s_openapi::api::authorization::v1::{
            ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
        };
        let reviews: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
        let mut denied = Vec::new();
        for access in accesses {
            let text = |value: &str| (!value.is_empty()).then(|| value.to_string());
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        namespace: Some(self.namespace.clone()),
                        verb: Some(access.verb.to_string()),
                        group: Some(access.group.to_string()),
                        resource: Some(access.resource.to_string()),
                        subresource: text(access.subresource),
                        ..ResourceAttributes::default()
                    }),
                    ..SelfSubjectAccessReviewSpec::default()
                },
                ..SelfSubjectAccessReview::default()
            };
            let answer = reviews
                .create(&PostParams::default(), &review)
                .await
                .map_err(|source| ClusterError::Api {
                    action: "review access to",
                    kind: "SelfSubjectAccessReview".to_string(),
                    name: access.describe(),
                    context: self.context.clone(),
                    source: Box::new(source),
                })?;
            if !answer.status.is_some_and(|status| status.allowed) {
                denied.push(*access);
            }
        }
        Ok(denied)
    }
}

/// A running port-forward; stops when dropped.
pub struct PortForward {
    pub local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PortForward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Name of the Lease a run holds in each cluster.
pub const LEASE_NAME: &str = "planx-run";

fn kind_and_name(object: &Value) -> (String, String) {
    (
        object["kind"].as_str().unwrap_or_default().to_string(),
        object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// A dynamic object as plain JSON with its kind and apiVersion (lists strip them).
fn to_json(kind: &str, object: &DynamicObject) -> Value {
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    if let (Some(map), Some(resource)) = (value.as_object_mut(), api_resource(kind)) {
        map.insert("kind".into(), json!(kind));
        map.insert("apiVersion".into(), json!(resource.api_version));
    }
    value
}

/// `2026-11-29T12:00:00.000000Z`, as Kubernetes' MicroTime.
pub fn rfc3339_micros(time: SystemTime) -> String {
    jiff::Timestamp::try_from(time)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}

/// Parse the RFC 3339 times Kubernetes writes (`Z`, optional fraction).
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    text.parse::<jiff::Timestamp>().ok().map(SystemTime::from)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn times_round_trip() {
        let time = UNIX_EPOCH + Duration::from_micros(1_796_040_000_123_456);
        let text = rfc3339_micros(time);
        assert_eq!(text, "2026-11-30T12:00:00.123456Z");
        assert_eq!(parse_rfc3339(&text), Some(time));
        assert_eq!(
            parse_rfc3339("2024-02-29T23:59:59Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_709_251_199))
        );
    }
}
